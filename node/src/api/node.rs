//! `/v1/node`, `/v1/peers/...`, `/v1/dial`, `/v1/health`: the node itself and its peers.

use axum::Json;
use axum::extract::{Path, State};

use super::error::ApiErrors;
use super::extract::{AppState, Body, done, parse_peer};
use super::{ApiError, DialRequest};
use crate::node::views::{NodeInfo, PeerView};

/// `GET /v1/health`: answers `ok` while the server runs (no token needed).
#[utoipa::path(get, path = "/v1/health", tag = "node", security(()), responses((status = 200, description = "`ok` while the server runs", body = String, content_type = "text/plain")))]
pub(super) async fn health() -> &'static str {
    "ok"
}

/// `GET /v1/node`.
#[utoipa::path(get, path = "/v1/node", tag = "node", responses((status = 200, description = "This node", body = NodeInfo), ApiErrors))]
pub(super) async fn node_info(State(s): State<AppState>) -> Result<Json<NodeInfo>, ApiError> {
    Ok(Json(s.node.info().await?))
}

/// `GET /v1/peers`.
#[utoipa::path(get, path = "/v1/peers", tag = "node", responses((status = 200, description = "Connected peers", body = Vec<PeerView>), ApiErrors))]
pub(super) async fn peers(State(s): State<AppState>) -> Result<Json<Vec<PeerView>>, ApiError> {
    Ok(Json(s.node.peers().await?))
}

/// `POST /v1/dial`.
#[utoipa::path(post, path = "/v1/dial", tag = "node", request_body = DialRequest, responses((status = 200, description = "Dialling: an empty object", body = serde_json::Value), ApiErrors))]
pub(super) async fn dial(
    State(s): State<AppState>,
    Body(req): Body<DialRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let addr = req
        .addr
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad multiaddr: {e}")))?;
    s.node.dial(addr).await?;
    Ok(done())
}

/// `POST /v1/peers/{peer}/block`.
#[utoipa::path(post, path = "/v1/peers/{peer}/block", tag = "node", params(("peer" = String, Path, description = "Peer id")), responses((status = 200, description = "Blocked: an empty object", body = serde_json::Value), ApiErrors))]
pub(super) async fn block_peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.node.block(parse_peer(&peer)?, true).await?;
    Ok(done())
}

/// `DELETE /v1/peers/{peer}/block`.
#[utoipa::path(delete, path = "/v1/peers/{peer}/block", tag = "node", params(("peer" = String, Path, description = "Peer id")), responses((status = 200, description = "Unblocked: an empty object", body = serde_json::Value), ApiErrors))]
pub(super) async fn unblock_peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.node.block(parse_peer(&peer)?, false).await?;
    Ok(done())
}
