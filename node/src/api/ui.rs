//! The web UI: its files, embedded in the binary, and the login that turns a one-time token
//! printed by `samizdat ui` into a browser session. The UI is a client of the same API.
//!
//! The session is not a cookie: browsers send a host's cookies to every port of it, so any
//! local web server the user visits would receive one. The page keeps the session id in
//! `sessionStorage` (isolated per origin, port included, and gone with the tab) and sends it
//! in a header, which the browser never adds by itself. A request carrying it must say it came
//! from this origin (`Sec-Fetch-Site: same-origin`), and it lapses after hours of idleness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How long a login link works (it works once).
const LOGIN_TTL: Duration = Duration::from_secs(300);
/// How long an unused browser session lives: the open UI touches it every few seconds.
pub(super) const SESSION_IDLE: Duration = Duration::from_secs(2 * 3600);
/// How long a browser session lives at most, used or not.
const SESSION_MAX: Duration = Duration::from_secs(24 * 3600);
/// Most login links outstanding, and most sessions held: the oldest go first.
const MAX_LOGINS: usize = 16;
const MAX_SESSIONS: usize = 64;
/// The request header that carries the session id.
pub(super) const SESSION_HEADER: &str = "x-samizdat-session";

/// The UI's files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../ui/index.html"),
    ),
    // The entry module; it imports the others (plain ES modules, no build step).
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/api.js"),
    ),
    (
        "composer.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/composer.js"),
    ),
    (
        "contacts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/contacts.js"),
    ),
    (
        "conversation.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/conversation.js"),
    ),
    (
        "devices.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/devices.js"),
    ),
    (
        "dialogs.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/dialogs.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/dom.js"),
    ),
    (
        "events.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/events.js"),
    ),
    (
        "files.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/files.js"),
    ),
    (
        "format.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/format.js"),
    ),
    (
        "groups.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/groups.js"),
    ),
    (
        "loading.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/loading.js"),
    ),
    (
        "messages.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/messages.js"),
    ),
    (
        "network.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/network.js"),
    ),
    (
        "requests.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/requests.js"),
    ),
    (
        "router.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/router.js"),
    ),
    (
        "sidebar.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/sidebar.js"),
    ),
    (
        "state.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/state.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../ui/style.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../ui/icon.svg"),
    ),
];

/// The page's policy: nothing from anywhere but this node, no inline script, no framing.
const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
                   style-src 'self'; script-src 'self'; connect-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// One-time login tokens and browser sessions, held in memory (a restart logs browsers out).
#[derive(Clone, Default)]
pub(super) struct UiSessions {
    inner: Arc<Mutex<Sessions>>,
}

#[derive(Default)]
struct Sessions {
    /// SHA-256 of a login token → when it stops working.
    logins: HashMap<[u8; 32], Instant>,
    /// SHA-256 of a session id → its lifetime.
    sessions: HashMap<[u8; 32], Session>,
}

/// A browser session's lifetime: idle expiry, pushed back by each use, within a hard end.
#[derive(Clone, Copy)]
struct Session {
    idle_until: Instant,
    ends: Instant,
}

impl Session {
    fn until(&self) -> Instant {
        self.idle_until.min(self.ends)
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn random_token() -> String {
    data_encoding::HEXLOWER.encode(&crate::crypto::random_bytes::<32>())
}

/// Drops expired entries, then the soonest-expiring ones beyond `max`.
fn prune<V>(
    map: &mut HashMap<[u8; 32], V>,
    max: usize,
    now: Instant,
    until: impl Fn(&V) -> Instant,
) {
    map.retain(|_, v| until(v) > now);
    while map.len() > max {
        let Some(oldest) = map.iter().min_by_key(|(_, v)| until(v)).map(|(k, _)| *k) else {
            break;
        };
        map.remove(&oldest);
    }
}

impl UiSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // A panic while holding this lock cannot leave the maps inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new one-time login token.
    pub(super) fn issue_login(&self) -> String {
        let token = random_token();
        let now = Instant::now();
        let mut s = self.lock();
        s.logins.insert(digest(&token), now + LOGIN_TTL);
        prune(&mut s.logins, MAX_LOGINS, now, |t| *t);
        token
    }

    /// Whether a login token is live (without spending it).
    fn login_is_live(&self, token: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .logins
            .get(&digest(token))
            .is_some_and(|until| *until > now)
    }

    /// Spends a login token: a new session id, or None if the token is unknown or used.
    fn redeem(&self, token: &str) -> Option<String> {
        self.redeem_at(token, Instant::now())
    }

    fn redeem_at(&self, token: &str, now: Instant) -> Option<String> {
        let mut s = self.lock();
        let until = s.logins.remove(&digest(token))?;
        if until <= now {
            return None;
        }
        let session = random_token();
        s.sessions.insert(
            digest(&session),
            Session {
                idle_until: now + SESSION_IDLE,
                ends: now + SESSION_MAX,
            },
        );
        prune(&mut s.sessions, MAX_SESSIONS, now, Session::until);
        Some(session)
    }

    /// Whether this session id is live; a live one's idle expiry starts again.
    pub(super) fn is_session(&self, id: &str) -> bool {
        self.touch_at(id, Instant::now())
    }

    fn touch_at(&self, id: &str, now: Instant) -> bool {
        let mut s = self.lock();
        let key = digest(id);
        match s.sessions.get_mut(&key) {
            Some(session) if session.until() > now => {
                session.idle_until = now + SESSION_IDLE;
                true
            }
            Some(_) => {
                s.sessions.remove(&key);
                false
            }
            None => false,
        }
    }
}

/// Whether the request carries a live session of this node, sent by a page of this origin.
/// The browser sets `Sec-Fetch-Site` itself and a page cannot change it; a request without it
/// did not come from a browser page, so a session id replayed from elsewhere is refused.
pub(super) fn has_session(ui: &UiSessions, headers: &HeaderMap) -> bool {
    from_own_page(headers)
        && headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|id| ui.is_session(id))
}

/// Whether the browser says this request comes from a page of this origin (port included).
fn from_own_page(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"same-origin")
}

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    token: Option<String>,
}

/// `GET /ui/login?token=...`: sends the browser on to the UI with the token in the address's
/// fragment (which browsers never send to a server), where the page spends it. A wrong or
/// used token gets a page that says so.
pub(super) async fn login(
    State(s): State<super::server::AppState>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    let plain =
        !token.is_empty() && token.len() <= 128 && token.bytes().all(|b| b.is_ascii_hexdigit());
    if !plain || !s.ui.login_is_live(&token) {
        return refused(
            "This login link is wrong, expired or already used. Run `samizdat ui` for a new one.",
        );
    }
    let mut res = (StatusCode::SEE_OTHER, "").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/#login={token}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut res);
    res
}

/// The body of `POST /ui/session`.
#[derive(Deserialize)]
pub(super) struct SessionRequest {
    login: String,
}

/// `POST /ui/session`: the page spends a login token for a session id it keeps to itself.
pub(super) async fn session(
    State(s): State<super::server::AppState>,
    headers: HeaderMap,
    Json(req): Json<SessionRequest>,
) -> Response {
    let refused = |message: &str| {
        let mut res = super::ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
        .into_response();
        secure_headers(&mut res);
        res
    };
    if !from_own_page(&headers) {
        return refused("a session is given to the UI's own page only");
    }
    let Some(session) = s.ui.redeem(&req.login) else {
        return refused("this login link is wrong, expired or already used: run `samizdat ui`");
    };
    let mut res = Json(serde_json::json!({
        "session": session,
        "idle_timeout_s": SESSION_IDLE.as_secs(),
    }))
    .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_headers(&mut res);
    res
}

/// `GET /` and `GET /{file}`: the UI's files. They hold no data of this node (the page asks
/// the API for everything with its session), so they are served to anyone who can reach the
/// loopback port.
pub(super) async fn page(file: Option<Path<String>>) -> Response {
    let name = file.map_or_else(|| "index.html".to_string(), |Path(f)| f);
    match asset(&name) {
        Some((mime, body)) => {
            let mut res = ([(header::CONTENT_TYPE, mime)], body).into_response();
            // The files change with the binary.
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            secure_headers(&mut res);
            res
        }
        None => {
            let mut res = (StatusCode::NOT_FOUND, "no such file").into_response();
            secure_headers(&mut res);
            res
        }
    }
}

/// A file of the UI: the embedded one, or with `SAMIZDAT_UI_DIR` set (working on the UI), the
/// one in that directory.
fn asset(name: &str) -> Option<(String, Vec<u8>)> {
    if let Some(dir) = std::env::var_os("SAMIZDAT_UI_DIR") {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !plain {
            return None;
        }
        let body = std::fs::read(std::path::Path::new(&dir).join(name)).ok()?;
        return Some((mime_of(name).to_string(), body));
    }
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, mime, body)| (mime.to_string(), body.to_vec()))
}

fn mime_of(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// A 401 page that says what to do, and nothing of the UI.
fn refused(message: &str) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Samizdat</title><h1>Samizdat</h1><p>{}</p>",
        message.replace('&', "&amp;").replace('<', "&lt;")
    );
    let mut res = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    secure_headers(&mut res);
    res
}

fn secure_headers(res: &mut Response) {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// The contact card's link as an SVG QR code.
pub(super) fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::new(text.as_bytes())?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_token_works_once() {
        let ui = UiSessions::default();
        let token = ui.issue_login();
        let session = ui.redeem(&token).expect("first use");
        assert!(ui.is_session(&session));
        assert!(ui.redeem(&token).is_none(), "second use");
        assert!(ui.redeem("00").is_none());
        assert!(!ui.is_session(&token), "a login token is not a session");
        assert!(!ui.is_session("nonsense"));
    }

    #[test]
    fn old_logins_are_dropped_beyond_the_limit() {
        let ui = UiSessions::default();
        let first = ui.issue_login();
        for _ in 0..MAX_LOGINS {
            ui.issue_login();
        }
        assert!(ui.redeem(&first).is_none());
    }

    fn headers(session: &str, site: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            SESSION_HEADER,
            HeaderValue::from_str(session).expect("header"),
        );
        if let Some(site) = site {
            h.insert("sec-fetch-site", HeaderValue::from_static(site));
        }
        h
    }

    #[test]
    fn a_session_counts_only_from_the_own_origin() {
        let ui = UiSessions::default();
        let session = ui.redeem(&ui.issue_login()).expect("session");
        assert!(has_session(&ui, &headers(&session, Some("same-origin"))));
        // Replayed by a tool (no Sec-Fetch-Site), or sent by a page of another port.
        assert!(!has_session(&ui, &headers(&session, None)));
        assert!(!has_session(&ui, &headers(&session, Some("same-site"))));
        assert!(!has_session(&ui, &headers(&session, Some("cross-site"))));
        assert!(!has_session(&ui, &headers(&session, Some("none"))));
        assert!(!has_session(&ui, &headers("junk", Some("same-origin"))));
        assert!(!has_session(&ui, &HeaderMap::new()));
    }

    #[test]
    fn an_idle_session_lapses_and_use_keeps_it() {
        let ui = UiSessions::default();
        let t0 = Instant::now();
        let idle = ui.redeem_at(&ui.issue_login(), t0).expect("session");
        let used = ui.redeem_at(&ui.issue_login(), t0).expect("session");
        let half = SESSION_IDLE / 2;
        assert!(ui.touch_at(&used, t0 + half));
        assert!(ui.touch_at(&used, t0 + half * 2));
        assert!(!ui.touch_at(&idle, t0 + SESSION_IDLE + Duration::from_secs(1)));
        assert!(ui.touch_at(&used, t0 + half * 3));
        // Use does not stretch a session past its hard end.
        let mut t = t0 + half * 3;
        while t < t0 + SESSION_MAX {
            t += half;
            ui.touch_at(&used, t);
        }
        assert!(!ui.touch_at(&used, t0 + SESSION_MAX + Duration::from_secs(1)));
    }

    /// The UI's JavaScript modules, as they sit in `node/ui`.
    fn module_files() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/ui");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("the ui directory")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".js"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_module_is_served_as_javascript_under_the_policy() {
        let modules = module_files();
        assert!(modules.len() > 1 && modules.iter().any(|n| n == "app.js"));
        for name in &modules {
            let embedded = FILES.iter().find(|(n, _, _)| n == name);
            assert!(embedded.is_some(), "{name} is not embedded in FILES");
            assert_eq!(
                embedded.map(|f| f.1),
                Some("text/javascript; charset=utf-8")
            );
            assert_eq!(mime_of(name), "text/javascript; charset=utf-8");
            let res = futures::executor::block_on(page(Some(Path(name.clone()))));
            assert_eq!(res.status(), StatusCode::OK, "{name}");
            let h = res.headers();
            assert_eq!(
                h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
                Some("text/javascript; charset=utf-8"),
                "{name}"
            );
            assert_eq!(
                h.get(header::CONTENT_SECURITY_POLICY)
                    .and_then(|v| v.to_str().ok()),
                Some(CSP),
                "{name}"
            );
        }
        // Module scripts load under `script-src 'self'`; nothing inline or looser is allowed.
        assert!(CSP.contains("script-src 'self';") && !CSP.contains("unsafe"));
        // The page loads the entry as a module, and every module a module imports is embedded.
        let index = std::str::from_utf8(include_bytes!("../../ui/index.html")).expect("utf-8");
        assert!(index.contains(r#"<script type="module" src="/app.js"></script>"#));
        for (name, _, body) in FILES.iter().filter(|(n, _, _)| n.ends_with(".js")) {
            let text = std::str::from_utf8(body).expect("utf-8");
            for part in text.split(" from './").skip(1) {
                let target = part.split('\'').next().unwrap_or_default();
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == target),
                    "{name} imports {target}, which is not embedded"
                );
            }
        }
    }

    #[test]
    fn the_qr_code_is_svg() {
        let svg = qr_svg("samizdat://contact/abc").expect("qr");
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
