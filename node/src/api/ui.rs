//! The web UI: its files, embedded in the binary, and the login that turns a one-time token
//! printed by `samizdat ui` into a session cookie. The UI is a client of the same API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How long a login link works (it works once).
const LOGIN_TTL: Duration = Duration::from_secs(300);
/// How long a browser session lasts (sessions also end when the node stops).
const SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most login links outstanding, and most sessions held: the oldest go first.
const MAX_LOGINS: usize = 16;
const MAX_SESSIONS: usize = 64;

/// The UI's files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../ui/app.js"),
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
    /// SHA-256 of a session id → when it ends.
    sessions: HashMap<[u8; 32], Instant>,
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn random_token() -> String {
    data_encoding::HEXLOWER.encode(&crate::crypto::random_bytes::<32>())
}

/// Drops expired entries, then the soonest-expiring ones beyond `max`.
fn prune(map: &mut HashMap<[u8; 32], Instant>, max: usize, now: Instant) {
    map.retain(|_, until| *until > now);
    while map.len() > max {
        let Some(oldest) = map.iter().min_by_key(|(_, until)| **until).map(|(k, _)| *k) else {
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
        prune(&mut s.logins, MAX_LOGINS, now);
        token
    }

    /// Spends a login token: a new session id, or None if the token is unknown or used.
    fn redeem(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut s = self.lock();
        let until = s.logins.remove(&digest(token))?;
        if until <= now {
            return None;
        }
        let session = random_token();
        s.sessions.insert(digest(&session), now + SESSION_TTL);
        prune(&mut s.sessions, MAX_SESSIONS, now);
        Some(session)
    }

    /// Whether this session id is live.
    pub(super) fn is_session(&self, id: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .sessions
            .get(&digest(id))
            .is_some_and(|until| *until > now)
    }
}

/// The session cookie's name: it carries the port because browsers share cookies between the
/// ports of one host, and two nodes on one machine must not log each other's browsers out.
pub(super) fn cookie_name(port: u16) -> String {
    format!("samizdat_session_{port}")
}

/// The session ids the request's cookies carry under this node's name (a page on another
/// port of the host can plant a cookie of the same name, so every one is looked at).
pub(super) fn session_cookies(headers: &HeaderMap, port: u16) -> Vec<String> {
    let name = cookie_name(port);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .collect()
}

/// Whether the request carries a live session of this node.
pub(super) fn has_session(ui: &UiSessions, headers: &HeaderMap, port: u16) -> bool {
    session_cookies(headers, port)
        .iter()
        .any(|id| ui.is_session(id))
}

/// Whether the browser says this request comes from a page of this origin (or was typed):
/// a page of another port on the same host is "same-site", and must not ride on the cookie.
pub(super) fn from_own_page(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-site").map(|v| v.to_str()) {
        None => true,
        Some(Ok(site)) => site == "same-origin" || site == "none",
        Some(Err(_)) => false,
    }
}

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    token: Option<String>,
}

/// `GET /ui/login?token=...`: spends the token, sets the session cookie, and sends the browser
/// on to the UI (so the token leaves the address bar). The hop to `/` starts from this page,
/// not from a redirect: a SameSite=Strict cookie is withheld from a redirect chain that began
/// elsewhere (a file `samizdat ui` opened, a link clicked in another app).
pub(super) async fn login(
    State(s): State<super::server::AppState>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let Some(session) = q.token.as_deref().and_then(|t| s.ui.redeem(t)) else {
        return refused(
            "This login link is wrong, expired or already used. Run `samizdat ui` for a new one.",
        );
    };
    let cookie = format!(
        "{}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        cookie_name(s.port),
        SESSION_TTL.as_secs()
    );
    let page = "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url=/\">\
                <title>Samizdat</title><p><a href=\"/\">Open Samizdat</a>";
    let mut res = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    secure_headers(&mut res);
    res
}

/// `GET /` and `GET /{file}`: the UI, for a browser holding a session.
pub(super) async fn page(
    State(s): State<super::server::AppState>,
    file: Option<Path<String>>,
    headers: HeaderMap,
) -> Response {
    let logged_in = has_session(&s.ui, &headers, s.port);
    if !logged_in {
        return refused("Not logged in. Run `samizdat ui` and open the link it prints.");
    }
    let name = file.map_or_else(|| "index.html".to_string(), |Path(f)| f);
    match asset(&name) {
        Some((mime, body)) => {
            let mut res = ([(header::CONTENT_TYPE, mime)], body).into_response();
            // The files change with the binary; a session lasts longer than one binary.
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

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static(
                "a=1; samizdat_session_7420=junk; samizdat_session_7421=x; samizdat_session_7420=abc",
            ),
        );
        assert_eq!(session_cookies(&h, 7420), ["junk", "abc"]);
        assert_eq!(session_cookies(&h, 7421), ["x"]);
        assert!(session_cookies(&h, 7422).is_empty());
        // A planted cookie of the same name does not hide the real one.
        let ui = UiSessions::default();
        let session = ui.redeem(&ui.issue_login()).expect("session");
        let mut h = HeaderMap::new();
        let planted = format!("samizdat_session_7420=junk; samizdat_session_7420={session}");
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&planted).expect("header"),
        );
        assert!(has_session(&ui, &h, 7420));
    }

    #[test]
    fn only_own_pages_ride_on_the_cookie() {
        let mut h = HeaderMap::new();
        assert!(from_own_page(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(from_own_page(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(!from_own_page(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!from_own_page(&h));
    }

    #[test]
    fn the_qr_code_is_svg() {
        let svg = qr_svg("samizdat://contact/abc").expect("qr");
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
