//! `/v1/requests/...`: messages from strangers waiting for an answer.

use axum::Json;
use axum::extract::{Path, State};

use super::ApiError;
use super::error::ApiErrors;
use super::extract::{AppState, parse_peer};
use crate::node::RequestAction;
use crate::node::views::RequestView;

/// `GET /v1/requests`.
#[utoipa::path(get, path = "/v1/requests", tag = "requests", responses((status = 200, description = "Pending message requests", body = Vec<RequestView>), ApiErrors))]
pub(super) async fn requests(
    State(s): State<AppState>,
) -> Result<Json<Vec<RequestView>>, ApiError> {
    Ok(Json(s.node.requests().await?))
}

/// `POST /v1/requests/{peer}/{action}`: `accept`, `decline` or `block`.
#[utoipa::path(post, path = "/v1/requests/{peer}/{action}", tag = "requests", params(("peer" = String, Path, description = "Peer id"), ("action" = String, Path, description = "accept, decline or block")), responses((status = 200, description = "`{\"requests\": n}`: how many requests were answered", body = serde_json::Value), ApiErrors))]
pub(super) async fn answer_request(
    State(s): State<AppState>,
    Path((peer, action)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let peer = parse_peer(&peer)?;
    let action = match action.as_str() {
        "accept" => RequestAction::Accept,
        "decline" => RequestAction::Decline,
        "block" => RequestAction::Block,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown action {other:?}: accept, decline or block"
            )));
        }
    };
    let n = s.node.answer_requests(peer, action).await?;
    Ok(Json(serde_json::json!({ "requests": n })))
}
