//! `/v1/channels/...`: owned and followed channels, their posts, admins and sync state.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::ApiErrors;
use super::extract::{AppState, Body, done, parse_channel, parse_cid, parse_cursor, parse_peer};
use super::{
    AdminRequest, ApiError, CreateChannelRequest, FollowRequest, HistoryPage, PostRequest,
};
use crate::channel::{ChannelId, Invite, PostDraft, now_ms};
use crate::node::FollowTarget;
use crate::node::views::{AdminView, ChannelView, PostView, SyncStatus};

/// Largest history page.
const MAX_PAGE: usize = 1000;

/// `GET /v1/channels`.
#[utoipa::path(get, path = "/v1/channels", tag = "channels", responses((status = 200, description = "Channels owned or followed", body = Vec<ChannelView>), ApiErrors))]
pub(super) async fn channels(
    State(s): State<AppState>,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    Ok(Json(s.node.channels().await?))
}

/// Query of `GET /v1/channels/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LinkQuery {
    /// Put this node's own addresses in the invite link.
    #[serde(default)]
    include_my_address: bool,
}

/// `GET /v1/channels/{id}`.
#[utoipa::path(get, path = "/v1/channels/{id}", tag = "channels", params(("id" = String, Path, description = "Channel id (base32)"), LinkQuery), responses((status = 200, description = "The channel", body = ChannelView), ApiErrors))]
pub(super) async fn channel(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LinkQuery>,
) -> Result<Json<ChannelView>, ApiError> {
    Ok(Json(
        s.node
            .channel_with_link(parse_channel(&id)?, q.include_my_address)
            .await?,
    ))
}

/// `POST /v1/channels`.
#[utoipa::path(post, path = "/v1/channels", tag = "channels", request_body = CreateChannelRequest, responses((status = 201, description = "The new channel", body = ChannelView), ApiErrors))]
pub(super) async fn create_channel(
    State(s): State<AppState>,
    Body(req): Body<CreateChannelRequest>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    let view = s
        .node
        .create_channel_with_link(req.name, req.description, req.include_my_address)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `POST /v1/channels/follow`.
#[utoipa::path(post, path = "/v1/channels/follow", tag = "channels", request_body = FollowRequest, responses((status = 200, description = "The followed channel", body = ChannelView), ApiErrors))]
pub(super) async fn follow(
    State(s): State<AppState>,
    Body(req): Body<FollowRequest>,
) -> Result<Json<ChannelView>, ApiError> {
    let target = parse_follow_target(&req.target)?;
    Ok(Json(s.node.follow(target).await?))
}

/// Parses what `channel follow` accepts: a link (`samizdat://channel/...`) or a bare channel id.
pub fn parse_follow_target(s: &str) -> Result<FollowTarget, ApiError> {
    let s = s.trim();
    if s.to_ascii_lowercase().starts_with("samizdat://") {
        let inv: Invite = s
            .parse()
            .map_err(|e: crate::channel::InviteError| ApiError::bad_request(e.to_string()))?;
        return Ok(FollowTarget::Invite(Box::new(inv)));
    }
    s.parse::<ChannelId>()
        .map(FollowTarget::Id)
        .map_err(|_| ApiError::bad_request(format!("not a channel id or samizdat:// link: {s:?}")))
}

/// `DELETE /v1/channels/{id}`.
#[utoipa::path(delete, path = "/v1/channels/{id}", tag = "channels", params(("id" = String, Path, description = "Channel id (base32)")), responses((status = 200, description = "Unfollowed: an empty object", body = serde_json::Value), ApiErrors))]
pub(super) async fn unfollow(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.node.unfollow(parse_channel(&id)?).await?;
    Ok(done())
}

/// Query of `GET /v1/channels/{id}/posts`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// Oldest-first paging: posts after this cursor.
    after: Option<String>,
    /// Oldest-first paging: at most this many posts.
    limit: Option<usize>,
    /// Newest-first paging: the last N posts (before `before`, if given).
    last: Option<usize>,
    /// Newest-first paging: posts before this cursor.
    before: Option<String>,
}

/// `GET /v1/channels/{id}/posts`.
#[utoipa::path(get, path = "/v1/channels/{id}/posts", tag = "channels", params(("id" = String, Path, description = "Channel id (base32)"), HistoryQuery), responses((status = 200, description = "A page of posts, oldest first", body = HistoryPage), ApiErrors))]
pub(super) async fn history(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryPage>, ApiError> {
    let channel = parse_channel(&id)?;
    if let Some(last) = q.last {
        if q.after.is_some() {
            return Err(ApiError::bad_request(
                "`last` pages backwards: use `before`, not `after`",
            ));
        }
        let before = parse_cursor(q.before.as_deref())?;
        let (posts, prev) = s
            .node
            .history_before(channel, before, last.clamp(1, MAX_PAGE))
            .await?;
        return Ok(Json(HistoryPage {
            posts,
            next: None,
            prev: prev.map(|c| c.to_hex()),
        }));
    }
    if q.before.is_some() {
        return Err(ApiError::bad_request("`before` goes with `last=N`"));
    }
    let after = parse_cursor(q.after.as_deref())?;
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let (posts, next) = s.node.history(channel, after, limit).await?;
    Ok(Json(HistoryPage {
        posts,
        next: next.map(|c| c.to_hex()),
        prev: None,
    }))
}

/// `POST /v1/channels/{id}/posts`.
#[utoipa::path(post, path = "/v1/channels/{id}/posts", tag = "channels", params(("id" = String, Path, description = "Channel id (base32)")), request_body = PostRequest, responses((status = 201, description = "The new post", body = PostView), ApiErrors))]
pub(super) async fn post_to_channel(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<PostRequest>,
) -> Result<(StatusCode, Json<PostView>), ApiError> {
    let channel = parse_channel(&id)?;
    let expires_at_ms = req.expires_in_ms.map(|d| now_ms().saturating_add(d));
    let file = match req.file.as_deref() {
        Some(c) => Some(parse_cid(c)?),
        None => None,
    };
    let view = s
        .node
        .post_with_file(
            channel,
            PostDraft {
                text: req.text,
                expires_at_ms,
                file: None,
            },
            file,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/channels/{id}/admins`.
#[utoipa::path(get, path = "/v1/channels/{id}/admins", tag = "channels", params(("id" = String, Path, description = "Channel id (base32)")), responses((status = 200, description = "The channel's admins", body = Vec<AdminView>), ApiErrors))]
pub(super) async fn admins(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<AdminView>>, ApiError> {
    Ok(Json(s.node.admins(parse_channel(&id)?).await?))
}

/// `POST /v1/channels/{id}/admins`.
#[utoipa::path(post, path = "/v1/channels/{id}/admins", tag = "channels", params(("id" = String, Path, description = "Channel id (base32)")), request_body = AdminRequest, responses((status = 200, description = "Added: an empty object", body = serde_json::Value), ApiErrors))]
pub(super) async fn add_admin(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<AdminRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let channel = parse_channel(&id)?;
    s.node.add_admin(channel, parse_peer(&req.peer_id)?).await?;
    Ok(done())
}

/// `DELETE /v1/channels/{id}/admins/{peer}`.
#[utoipa::path(delete, path = "/v1/channels/{id}/admins/{peer}", tag = "channels", params(("id" = String, Path, description = "Channel id (base32)"), ("peer" = String, Path, description = "Peer id")), responses((status = 200, description = "The revoked admin", body = AdminView), ApiErrors))]
pub(super) async fn remove_admin(
    State(s): State<AppState>,
    Path((id, peer)): Path<(String, String)>,
) -> Result<Json<AdminView>, ApiError> {
    let channel = parse_channel(&id)?;
    Ok(Json(
        s.node.remove_admin(channel, parse_peer(&peer)?).await?,
    ))
}

/// `GET /v1/channels/{id}/sync`.
#[utoipa::path(get, path = "/v1/channels/{id}/sync", tag = "channels", params(("id" = String, Path, description = "Channel id (base32)")), responses((status = 200, description = "How far history sync has come", body = SyncStatus), ApiErrors))]
pub(super) async fn sync_status(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SyncStatus>, ApiError> {
    Ok(Json(s.node.sync_status(parse_channel(&id)?).await?))
}
