//! The API's HTTP server (axum): the routes, their guards, and `serve`.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{delete, get, post};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(super) use super::extract::AppState;
use super::ui::{self, UiSessions};
use super::{
    ApiError, auth, channels, contacts, dm, events, files, groups, metrics, node, requests,
};
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

/// Every route: the API behind the token or a UI session, then health and the UI's pages,
/// all behind the same-origin guard.
pub(super) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/node", get(node::node_info))
        .route("/v1/peers", get(node::peers))
        .route("/v1/metrics", get(metrics::metrics))
        .route(
            "/v1/contacts",
            get(contacts::contacts).post(contacts::add_contact),
        )
        .route("/v1/contacts/card", get(contacts::contact_card))
        .route("/v1/contacts/card/qr.svg", get(contacts::contact_card_qr))
        .route("/v1/ui/login", post(auth::ui_login))
        .route("/v1/dm", get(dm::dm_conversations))
        .route("/v1/dial", post(node::dial))
        .route("/v1/dm/{peer}", get(dm::dm_history).post(dm::dm_send))
        .route("/v1/groups", get(groups::groups).post(groups::create_group))
        .route("/v1/groups/{id}/members", post(groups::invite_member))
        .route(
            "/v1/groups/{id}/members/{peer}",
            delete(groups::remove_member),
        )
        .route(
            "/v1/groups/{id}/messages",
            get(groups::group_history).post(groups::group_post),
        )
        .route(
            "/v1/channels",
            get(channels::channels).post(channels::create_channel),
        )
        .route("/v1/channels/follow", post(channels::follow))
        .route(
            "/v1/channels/{id}",
            get(channels::channel).delete(channels::unfollow),
        )
        .route(
            "/v1/channels/{id}/posts",
            get(channels::history).post(channels::post_to_channel),
        )
        .route("/v1/requests", get(requests::requests))
        .route(
            "/v1/requests/{peer}/{action}",
            post(requests::answer_request),
        )
        .route(
            "/v1/channels/{id}/admins",
            get(channels::admins).post(channels::add_admin),
        )
        .route(
            "/v1/channels/{id}/admins/{peer}",
            delete(channels::remove_admin),
        )
        .route("/v1/channels/{id}/sync", get(channels::sync_status))
        .route(
            "/v1/files",
            post(files::add_file).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{cid}", get(files::file_status))
        .route("/v1/files/{cid}/fetch", post(files::fetch_file))
        .route("/v1/files/{cid}/content", get(files::file_content))
        .route(
            "/v1/peers/{peer}/block",
            post(node::block_peer).delete(node::unblock_peer),
        )
        .route("/v1/events", get(events::events))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .route("/v1/health", get(node::health))
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
