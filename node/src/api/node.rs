//! `/v1/node`, `/v1/peers/...`, `/v1/dial`, `/v1/health`: the node itself and its peers.

use axum::Json;
use axum::extract::{Path, State};

use super::extract::{AppState, Body, done, parse_peer};
use super::{ApiError, DialRequest};
use crate::node::views::{NodeInfo, PeerView};

/// `GET /v1/health`: answers `ok` while the server runs (no token needed).
pub(super) async fn health() -> &'static str {
    "ok"
}

/// `GET /v1/node`.
pub(super) async fn node_info(State(s): State<AppState>) -> Result<Json<NodeInfo>, ApiError> {
    Ok(Json(s.node.info().await?))
}

/// `GET /v1/peers`.
pub(super) async fn peers(State(s): State<AppState>) -> Result<Json<Vec<PeerView>>, ApiError> {
    Ok(Json(s.node.peers().await?))
}

/// `POST /v1/dial`.
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
pub(super) async fn block_peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.node.block(parse_peer(&peer)?, true).await?;
    Ok(done())
}

/// `DELETE /v1/peers/{peer}/block`.
pub(super) async fn unblock_peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.node.block(parse_peer(&peer)?, false).await?;
    Ok(done())
}
