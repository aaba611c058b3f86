//! The API's HTTP server (axum).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::sync::CancellationToken;

use super::{
    AddContactRequest, AdminRequest, ApiError, CreateChannelRequest, DialRequest, DmRequest,
    FollowRequest, HistoryPage, PostRequest,
};
use crate::channel::{ChannelId, Invite, PostDraft, now_ms};
use crate::files::{Cid, DownloadStatus};
use crate::group::{GroupMessageView, GroupView};
use crate::node::views::{
    ChannelView, ContactCardView, ContactView, NodeInfo, PeerView, PostView, SyncStatus,
};
use crate::node::{FileAdded, FollowTarget, NodeHandle};
use crate::store::Cursor;

use super::ui::{self, UiSessions};

/// Largest request body accepted (a post is at most 16 KiB of text).
const MAX_BODY: usize = 256 * 1024;
/// Largest history page.
const MAX_PAGE: usize = 1000;

#[derive(Clone)]
pub(super) struct AppState {
    node: NodeHandle,
    token_hash: [u8; 32],
    pub(super) port: u16,
    addr: std::net::SocketAddr,
    pub(super) ui: UiSessions,
}

/// How a request was authorised: the API token (CLI, bots) or a browser session (the UI).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AuthorizedBy {
    Token,
    Session,
}

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
    let api = Router::new()
        .route("/v1/node", get(node_info))
        .route("/v1/peers", get(peers))
        .route("/v1/metrics", get(metrics))
        .route("/v1/contacts", get(contacts).post(add_contact))
        .route("/v1/contacts/card", get(contact_card))
        .route("/v1/contacts/card/qr.svg", get(contact_card_qr))
        .route("/v1/ui/login", post(ui_login))
        .route("/v1/dm", get(dm_conversations))
        .route("/v1/dial", post(dial))
        .route("/v1/dm/{peer}", get(dm_history).post(dm_send))
        .route("/v1/groups", get(groups).post(create_group))
        .route("/v1/groups/{id}/members", post(invite_member))
        .route("/v1/groups/{id}/members/{peer}", delete(remove_member))
        .route(
            "/v1/groups/{id}/messages",
            get(group_history).post(group_post),
        )
        .route("/v1/channels", get(channels).post(create_channel))
        .route("/v1/channels/follow", post(follow))
        .route("/v1/channels/{id}", get(channel).delete(unfollow))
        .route(
            "/v1/channels/{id}/posts",
            get(history).post(post_to_channel),
        )
        .route("/v1/requests", get(requests))
        .route("/v1/requests/{peer}/{action}", post(answer_request))
        .route("/v1/channels/{id}/admins", get(admins).post(add_admin))
        .route(
            "/v1/channels/{id}/admins/{peer}",
            axum::routing::delete(remove_admin),
        )
        .route("/v1/channels/{id}/sync", get(sync_status))
        .route(
            "/v1/files",
            post(add_file).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/files/{cid}", get(file_status))
        .route("/v1/files/{cid}/fetch", post(fetch_file))
        .route("/v1/files/{cid}/content", get(file_content))
        .route(
            "/v1/peers/{peer}/block",
            post(block_peer).delete(unblock_peer),
        )
        .route("/v1/events", get(events))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .route("/v1/health", get(|| async { "ok" }))
        .route("/ui/login", get(ui::login))
        .route("/ui/session", post(ui::session))
        .route("/", get(ui::page))
        .route("/{file}", get(ui::page))
        .layer(middleware::from_fn_with_state(state.clone(), same_origin))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: "no such endpoint".into(),
            }
        })
        .with_state(state);
    axum::serve(listener, api)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

/// Refuses requests whose Host or Origin is not this loopback server: a web page elsewhere
/// must not be able to drive the node (cross-origin requests, DNS rebinding).
async fn same_origin(State(s): State<AppState>, req: Request, next: Next) -> Response {
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

async fn authorize(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
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

/// `POST /v1/ui/login`: a one-time login link for the web UI (API token only: a browser
/// session cannot mint more sessions).
async fn ui_login(
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

async fn contact_card_qr(State(s): State<AppState>) -> Result<Response, ApiError> {
    let card = s.node.contact_card().await?;
    let svg = ui::qr_svg(&card.to_string()).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("QR code: {e}"),
    })?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn dm_conversations(
    State(s): State<AppState>,
) -> Result<Json<Vec<crate::dm::DmConversationView>>, ApiError> {
    Ok(Json(s.node.dm_conversations().await?))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// JSON body extractor whose rejections use the API's error shape.
struct Body<T>(T);

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError {
                status: e.status(),
                message: e.body_text(),
            }),
        }
    }
}

fn parse_channel(id: &str) -> Result<ChannelId, ApiError> {
    id.parse()
        .map_err(|e: crate::channel::IdParseError| ApiError::bad_request(e.to_string()))
}

async fn node_info(State(s): State<AppState>) -> Result<Json<NodeInfo>, ApiError> {
    Ok(Json(s.node.info().await?))
}

/// `GET /v1/metrics`: the node's counters in the OpenMetrics text format, for Prometheus.
async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    let info = s.node.info().await?;
    let channels = s.node.channels().await?.len();
    let groups = s.node.groups().await?.len();
    let mut registry = prometheus_client::registry::Registry::with_prefix("samizdat_node");
    let gauge = |v: usize| {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    let counter = |v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        c
    };
    registry.register(
        "connected_peers",
        "Peers with an open connection",
        gauge(info.connected_peers),
    );
    registry.register(
        "bootstrap_peers_connected",
        "Bootstrap peers this node is connected to",
        gauge(info.bootstrap.iter().filter(|b| b.connected).count()),
    );
    registry.register(
        "relays",
        "Relays holding a reservation for this node",
        gauge(info.relays.len()),
    );
    registry.register("channels", "Channels owned or followed", gauge(channels));
    registry.register("groups", "Private groups", gauge(groups));
    registry.register(
        "refused_connections",
        "Incoming connections refused at a limit (total, per peer, per IP, handshaking, memory)",
        counter(info.refused_connections),
    );
    registry.register(
        "peers_cut_off",
        "Peers disconnected and refused for 10 minutes (invalid gossip, malformed requests, bad \
         sync answers, floods)",
        counter(info.graylisted_peers),
    );
    registry.register(
        "dropped_dht",
        "DHT records and provider records refused or evicted at the per-source and total bounds",
        counter(info.dropped.dht),
    );
    registry.register(
        "dropped_held_messages",
        "Direct and group messages dropped while waiting for their Welcome or commit",
        counter(info.dropped.held_messages),
    );
    registry.register(
        "dropped_mail",
        "Mail held for others evicted to make room for other senders, or expired",
        counter(info.dropped.mail),
    );
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &registry).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("metrics: {e}"),
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

async fn peers(State(s): State<AppState>) -> Result<Json<Vec<PeerView>>, ApiError> {
    Ok(Json(s.node.peers().await?))
}

async fn contact_card(State(s): State<AppState>) -> Result<Json<ContactCardView>, ApiError> {
    let card = s.node.contact_card().await?;
    Ok(Json(ContactCardView {
        link: card.to_string(),
        peer_id: card.peer_id.to_string(),
    }))
}

async fn contacts(State(s): State<AppState>) -> Result<Json<Vec<ContactView>>, ApiError> {
    let list = s.node.contacts().await?;
    Ok(Json(list.iter().map(ContactView::from).collect()))
}

async fn add_contact(
    State(s): State<AppState>,
    Body(req): Body<AddContactRequest>,
) -> Result<Json<ContactView>, ApiError> {
    let c = s.node.add_contact(&req.link, req.name).await?;
    Ok(Json(ContactView::from(&c)))
}

async fn dm_send(
    State(s): State<AppState>,
    Path(peer): Path<String>,
    Body(req): Body<DmRequest>,
) -> Result<(StatusCode, Json<crate::dm::DmView>), ApiError> {
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

fn parse_group(s: &str) -> Result<Vec<u8>, ApiError> {
    crate::group::parse_group_id(s).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn groups(State(s): State<AppState>) -> Result<Json<Vec<GroupView>>, ApiError> {
    Ok(Json(s.node.groups().await?))
}

async fn create_group(
    State(s): State<AppState>,
    Body(req): Body<crate::api::CreateGroupRequest>,
) -> Result<(StatusCode, Json<GroupView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.node.group_create(req.name).await?),
    ))
}

async fn invite_member(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<crate::api::InviteRequest>,
) -> Result<Json<GroupView>, ApiError> {
    let group = parse_group(&id)?;
    Ok(Json(
        s.node
            .group_invite(group, parse_peer(&req.peer_id)?)
            .await?,
    ))
}

async fn remove_member(
    State(s): State<AppState>,
    Path((id, peer)): Path<(String, String)>,
) -> Result<Json<GroupView>, ApiError> {
    let group = parse_group(&id)?;
    Ok(Json(s.node.group_remove(group, parse_peer(&peer)?).await?))
}

async fn group_post(
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

async fn group_history(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<GroupMessageView>>, ApiError> {
    Ok(Json(s.node.group_history(parse_group(&id)?).await?))
}

async fn dm_history(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<Vec<crate::dm::DmView>>, ApiError> {
    Ok(Json(s.node.dm_history(parse_peer(&peer)?).await?))
}

async fn dial(
    State(s): State<AppState>,
    Body(req): Body<DialRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let addr = req
        .addr
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad multiaddr: {e}")))?;
    s.node.dial(addr).await?;
    Ok(Json(serde_json::json!({})))
}

async fn channels(State(s): State<AppState>) -> Result<Json<Vec<ChannelView>>, ApiError> {
    Ok(Json(s.node.channels().await?))
}

#[derive(Debug, Deserialize)]
struct LinkQuery {
    #[serde(default)]
    include_my_address: bool,
}

async fn channel(
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

async fn create_channel(
    State(s): State<AppState>,
    Body(req): Body<CreateChannelRequest>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    let view = s
        .node
        .create_channel_with_link(req.name, req.description, req.include_my_address)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn follow(
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

async fn unfollow(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.node.unfollow(parse_channel(&id)?).await?;
    Ok(Json(serde_json::json!({})))
}

#[derive(Deserialize)]
struct HistoryQuery {
    after: Option<String>,
    limit: Option<usize>,
    /// Newest-first paging: the last N posts (before `before`, if given).
    last: Option<usize>,
    before: Option<String>,
}

fn parse_cursor(c: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    c.map(|c| Cursor::from_hex(c).ok_or_else(|| ApiError::bad_request("bad cursor")))
        .transpose()
}

async fn history(
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

async fn post_to_channel(
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

async fn add_admin(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<AdminRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let channel = parse_channel(&id)?;
    let peer = req
        .peer_id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("not a peer id: {}", req.peer_id)))?;
    s.node.add_admin(channel, peer).await?;
    Ok(Json(serde_json::json!({})))
}

async fn requests(
    State(s): State<AppState>,
) -> Result<Json<Vec<crate::node::views::RequestView>>, ApiError> {
    Ok(Json(s.node.requests().await?))
}

async fn answer_request(
    State(s): State<AppState>,
    Path((peer, action)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::node::RequestAction;
    let peer = peer
        .parse()
        .map_err(|_| ApiError::bad_request(format!("not a peer id: {peer}")))?;
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

async fn admins(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<crate::node::views::AdminView>>, ApiError> {
    Ok(Json(s.node.admins(parse_channel(&id)?).await?))
}

async fn remove_admin(
    State(s): State<AppState>,
    Path((id, peer)): Path<(String, String)>,
) -> Result<Json<crate::node::views::AdminView>, ApiError> {
    let channel = parse_channel(&id)?;
    let peer = peer
        .parse()
        .map_err(|_| ApiError::bad_request(format!("not a peer id: {peer}")))?;
    Ok(Json(s.node.remove_admin(channel, peer).await?))
}

async fn events(
    State(s): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = BroadcastStream::new(s.node.subscribe()).map(|item| {
        Ok(match item {
            Ok(ev) => SseEvent::default()
                .event(event_name(&ev))
                .json_data(&ev)
                .unwrap_or_else(|_| SseEvent::default().comment("unencodable event")),
            // A slow client missed events: tell it, so it can re-read history.
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                SseEvent::default().event("lagged").data(n.to_string())
            }
        })
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn event_name(ev: &crate::node::views::Event) -> &'static str {
    use crate::node::views::Event;
    match ev {
        Event::Post { .. } => "post",
        Event::PeerConnected { .. } => "peer_connected",
        Event::PeerDisconnected { .. } => "peer_disconnected",
        Event::ChannelUpdated { .. } => "channel_updated",
        Event::SyncProgress { .. } => "sync_progress",
        Event::PostExpired { .. } => "post_expired",
        Event::DirectMessage { .. } => "direct_message",
        Event::GroupMessage { .. } => "group_message",
        Event::GroupChanged { .. } => "group_changed",
        Event::FileProgress { .. } => "file_progress",
        Event::RequestsChanged { .. } => "requests_changed",
    }
}

fn parse_cid(s: &str) -> Result<Cid, ApiError> {
    s.parse()
        .map_err(|e: crate::files::ManifestError| ApiError::bad_request(e.to_string()))
}

async fn sync_status(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SyncStatus>, ApiError> {
    Ok(Json(s.node.sync_status(parse_channel(&id)?).await?))
}

#[derive(Deserialize)]
struct AddFileQuery {
    name: Option<String>,
    /// Encrypt it as a private attachment (the answer carries its key).
    #[serde(default)]
    private: bool,
    /// Fetch: give up if the file is larger than this (automatic previews).
    max_bytes: Option<u64>,
}

async fn add_file(
    State(s): State<AppState>,
    Query(q): Query<AddFileQuery>,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<FileAdded>), ApiError> {
    let name = q.name.unwrap_or_else(|| "file".to_string());
    let added = if q.private {
        s.node
            .add_private_file(name, body.into_data_stream())
            .await?
    } else {
        s.node.add_file(name, body.into_data_stream()).await?
    };
    Ok((StatusCode::CREATED, Json(added)))
}

async fn file_status(
    State(s): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<DownloadStatus>, ApiError> {
    Ok(Json(s.node.file_status(parse_cid(&cid)?).await?))
}

async fn fetch_file(
    State(s): State<AppState>,
    Path(cid): Path<String>,
    Query(q): Query<AddFileQuery>,
) -> Result<Json<DownloadStatus>, ApiError> {
    let name = q.name.unwrap_or_default();
    Ok(Json(
        s.node
            .fetch_file_at_most(parse_cid(&cid)?, name, q.max_bytes)
            .await?,
    ))
}

async fn file_content(
    State(s): State<AppState>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (rec, manifest) = s.node.file_manifest(parse_cid(&cid)?).await?;
    // A private attachment is decrypted on the way out when its key comes with the request.
    let key = match headers.get(crate::api::KEY_HEADER) {
        Some(v) => Some(std::sync::Arc::new(zeroize::Zeroizing::new(
            v.to_str()
                .ok()
                .and_then(|k| crate::files::sealed::parse_key(k).ok())
                .ok_or_else(|| ApiError::bad_request("the key must be 64 hex digits"))?,
        ))),
        None => None,
    };
    let count = manifest.chunks.len() as u64;
    // A wrong key is a clear error before anything is sent, not a broken download.
    if let (Some(k), Some(first)) = (&key, manifest.chunks.first()) {
        let chunk = s.node.read_chunk(*first).await?;
        crate::files::sealed::open_segment(k, 0, count, &chunk)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let node = s.node.clone();
    let size = if key.is_some() {
        crate::files::sealed::plain_size(manifest.size)
    } else {
        manifest.size
    };
    let chunks: Vec<(u64, [u8; 32])> = (0u64..).zip(manifest.chunks.iter().copied()).collect();
    let stream = futures::stream::iter(chunks).then(move |(i, hash)| {
        let node = node.clone();
        let key = key.clone();
        async move {
            let chunk = node
                .read_chunk(hash)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let chunk = match &key {
                Some(k) => crate::files::sealed::open_segment(k, i, count, &chunk)
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
                None => chunk,
            };
            Ok::<_, std::io::Error>(axum::body::Bytes::from(chunk))
        }
    });
    let disposition = format!(
        "attachment; filename=\"{}\"",
        rec.name.replace(['"', '\\'], "_")
    );
    Response::builder()
        .header(header::CONTENT_TYPE, rec.mime)
        .header(header::CONTENT_LENGTH, size)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header("x-content-type-options", "nosniff")
        // Whatever a peer put in the file (HTML, SVG with script) must not run as this origin.
        .header(
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        )
        .body(axum::body::Body::from_stream(stream))
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

fn parse_peer(p: &str) -> Result<libp2p::PeerId, ApiError> {
    p.parse()
        .map_err(|_| ApiError::bad_request(format!("not a peer id: {p}")))
}

async fn block_peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.node.block(parse_peer(&peer)?, true).await?;
    Ok(Json(serde_json::json!({})))
}

async fn unblock_peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.node.block(parse_peer(&peer)?, false).await?;
    Ok(Json(serde_json::json!({})))
}
