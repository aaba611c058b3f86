//! `/v1/dm/...`: direct conversations with one peer.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::error::ApiErrors;
use super::extract::{AppState, Body, parse_peer};
use super::{ApiError, DmRequest};
use crate::dm::{DmConversationView, DmView};

/// `GET /v1/dm`.
#[utoipa::path(get, path = "/v1/dm", tag = "dm", responses((status = 200, description = "Direct conversations", body = Vec<DmConversationView>), ApiErrors))]
pub(super) async fn dm_conversations(
    State(s): State<AppState>,
) -> Result<Json<Vec<DmConversationView>>, ApiError> {
    Ok(Json(s.node.dm_conversations().await?))
}

/// `GET /v1/dm/{peer}`.
#[utoipa::path(get, path = "/v1/dm/{peer}", tag = "dm", params(("peer" = String, Path, description = "Peer id")), responses((status = 200, description = "The conversation's messages", body = Vec<DmView>), ApiErrors))]
pub(super) async fn dm_history(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<Vec<DmView>>, ApiError> {
    Ok(Json(s.node.dm_history(parse_peer(&peer)?).await?))
}

/// `POST /v1/dm/{peer}`.
#[utoipa::path(post, path = "/v1/dm/{peer}", tag = "dm", params(("peer" = String, Path, description = "Peer id")), request_body = DmRequest, responses((status = 201, description = "The message sent", body = DmView), ApiErrors))]
pub(super) async fn dm_send(
    State(s): State<AppState>,
    Path(peer): Path<String>,
    Body(req): Body<DmRequest>,
) -> Result<(StatusCode, Json<DmView>), ApiError> {
    if req.file.is_some() {
        return Err(ApiError::bad_request(
            "direct messages take an encrypted `attachment` (POST /v1/files?private=true), not a bare `file`",
        ));
    }
    let view = s
        .node
        .dm_send(
            parse_peer(&peer)?,
            req.text,
            req.expires_in_ms.map(std::time::Duration::from_millis),
            req.attachment,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}
