//! The API's HTTP server (axum): the routes, their guards, and `serve`.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(super) use super::extract::AppState;
use super::ui::{self, UiSessions};
use super::{ApiError, auth, openapi};
use crate::node::NodeHandle;

/// Largest request body accepted (a post is at most 16 KiB of text).
const MAX_BODY: usize = 256 * 1024;

/// Serves the API on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    node: NodeHandle,
    token: &str,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let state = AppState {
        node,
        token_hash: Sha256::digest(token.as_bytes()).into(),
        port: addr.port(),
        addr,
        ui: UiSessions::default(),
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Every route: the documented API (behind the token or a UI session, but for health and the
/// document itself), then the UI's pages, all behind the same-origin guard.
pub(super) fn router(state: AppState) -> Router {
    let (guarded, open) = openapi::routes();
    let (guarded, _) = guarded.split_for_parts();
    let (open, _) = open.split_for_parts();
    guarded
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .merge(open)
        .route("/ui/login", get(ui::login))
        .route("/ui/session", post(ui::session))
        .route("/", get(ui::page))
        .route("/{file}", get(ui::page))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::same_origin,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: "no such endpoint".into(),
            }
        })
        .with_state(state)
}
