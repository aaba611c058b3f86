//! Who may call the API: the same-origin guard, the bearer token or UI session check, and the
//! UI login links only the token holder may mint.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::ApiError;
use super::error::ApiErrors;
use super::extract::AppState;
use super::ui;

/// How a request was authorised: the API token (CLI, bots) or a browser session (the UI).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthorizedBy {
    /// `Authorization: Bearer <api token>`.
    Token,
    /// The web UI's session header.
    Session,
}

/// Refuses requests whose Host or Origin is not this loopback server: a web page elsewhere
/// must not be able to drive the node (cross-origin requests, DNS rebinding).
pub(super) async fn same_origin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let allowed = |host: &str| {
        [
            format!("127.0.0.1:{}", s.port),
            format!("localhost:{}", s.port),
            format!("[::1]:{}", s.port),
        ]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
    };
    let headers = req.headers();
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(allowed);
    let origin_ok = match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        None => true,
        Some(Ok(o)) => o.strip_prefix("http://").is_some_and(allowed),
        Some(Err(_)) => false,
    };
    if !host_ok || !origin_ok {
        return ApiError {
            status: StatusCode::FORBIDDEN,
            message: "cross-origin requests are not allowed".into(),
        }
        .into_response();
    }
    next.run(req).await
}

/// Lets through requests with the API token or a UI session, and records which it was.
pub(super) async fn authorize(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let presented = bearer(headers);
    // Compare digests: equal-length values, so the comparison time says nothing useful.
    let by = if presented
        .is_some_and(|t| <[u8; 32]>::from(Sha256::digest(t.as_bytes())) == s.token_hash)
    {
        Some(AuthorizedBy::Token)
    } else if presented.is_none() && ui::has_session(&s.ui, headers) {
        Some(AuthorizedBy::Session)
    } else {
        None
    };
    let Some(by) = by else {
        return ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong API token (see api.token in the node's home)".into(),
        }
        .into_response();
    };
    req.extensions_mut().insert(by);
    next.run(req).await
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// `POST /v1/ui/login`: a one-time login link for the web UI (API token only: a browser
/// session cannot mint more sessions).
#[utoipa::path(post, path = "/v1/ui/login", tag = "node", responses((status = 200, description = "`{\"url\": ...}`: a one-time login link for the web UI (API token only)", body = serde_json::Value), ApiErrors))]
pub(super) async fn ui_login(
    State(s): State<AppState>,
    axum::Extension(by): axum::Extension<AuthorizedBy>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if by != AuthorizedBy::Token {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "login links are issued to the API token holder only".into(),
        });
    }
    let token = s.ui.issue_login();
    Ok(Json(serde_json::json!({
        "url": format!("http://{}/ui/login?token={token}", s.addr),
    })))
}
