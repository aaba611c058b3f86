//! `/v1/groups/...`: private groups, their members and messages.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::error::ApiErrors;
use super::extract::{AppState, Body, parse_group, parse_peer};
use super::{ApiError, CreateGroupRequest, DmRequest, InviteRequest};
use crate::group::{GroupMessageView, GroupView};

/// `GET /v1/groups`.
#[utoipa::path(get, path = "/v1/groups", tag = "groups", responses((status = 200, description = "Private groups", body = Vec<GroupView>), ApiErrors))]
pub(super) async fn groups(State(s): State<AppState>) -> Result<Json<Vec<GroupView>>, ApiError> {
    Ok(Json(s.node.groups().await?))
}

/// `POST /v1/groups`.
#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = CreateGroupRequest, responses((status = 201, description = "The new group", body = GroupView), ApiErrors))]
pub(super) async fn create_group(
    State(s): State<AppState>,
    Body(req): Body<CreateGroupRequest>,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.node.group_create(req.name).await?),
    ))
}

/// `POST /v1/groups/{id}/members`.
#[utoipa::path(post, path = "/v1/groups/{id}/members", tag = "groups", params(("id" = String, Path, description = "Group id (32 hex digits)")), request_body = InviteRequest, responses((status = 200, description = "The group", body = GroupView), ApiErrors))]
pub(super) async fn invite_member(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<InviteRequest>,
) -> Result<Json<GroupView>, ApiError> {
    let group = parse_group(&id)?;
    Ok(Json(
        s.node
            .group_invite(group, parse_peer(&req.peer_id)?)
            .await?,
    ))
}

/// `DELETE /v1/groups/{id}/members/{peer}`.
#[utoipa::path(delete, path = "/v1/groups/{id}/members/{peer}", tag = "groups", params(("id" = String, Path, description = "Group id (32 hex digits)"), ("peer" = String, Path, description = "Peer id")), responses((status = 200, description = "The group", body = GroupView), ApiErrors))]
pub(super) async fn remove_member(
    State(s): State<AppState>,
    Path((id, peer)): Path<(String, String)>,
) -> Result<Json<GroupView>, ApiError> {
    let group = parse_group(&id)?;
    Ok(Json(s.node.group_remove(group, parse_peer(&peer)?).await?))
}

/// `GET /v1/groups/{id}/messages`.
#[utoipa::path(get, path = "/v1/groups/{id}/messages", tag = "groups", params(("id" = String, Path, description = "Group id (32 hex digits)")), responses((status = 200, description = "The group's messages", body = Vec<GroupMessageView>), ApiErrors))]
pub(super) async fn group_history(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<GroupMessageView>>, ApiError> {
    Ok(Json(s.node.group_history(parse_group(&id)?).await?))
}

/// `POST /v1/groups/{id}/messages`.
#[utoipa::path(post, path = "/v1/groups/{id}/messages", tag = "groups", params(("id" = String, Path, description = "Group id (32 hex digits)")), request_body = DmRequest, responses((status = 201, description = "The message sent", body = GroupMessageView), ApiErrors))]
pub(super) async fn group_post(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<DmRequest>,
) -> Result<(StatusCode, Json<GroupMessageView>), ApiError> {
    let group = parse_group(&id)?;
    if req.file.is_some() {
        return Err(ApiError::bad_request(
            "groups take an encrypted `attachment` (POST /v1/files?private=true), not a bare `file`",
        ));
    }
    let view = s
        .node
        .group_post(
            group,
            req.text,
            req.expires_in_ms.map(std::time::Duration::from_millis),
            req.attachment,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}
