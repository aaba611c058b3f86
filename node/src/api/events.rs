//! `GET /v1/events`: the node's events as Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::error::ApiErrors;
use super::extract::AppState;
use crate::node::views::Event;

/// `GET /v1/events`: one SSE event per node event, named after its kind.
#[utoipa::path(get, path = "/v1/events", tag = "events", responses((status = 200, description = "Server-Sent Events, one per node event, named after its `type` (and `lagged` when the client fell behind)", body = String, content_type = "text/event-stream"), ApiErrors))]
pub(super) async fn events(
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

fn event_name(ev: &Event) -> &'static str {
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
        Event::DevicesChanged { .. } => "devices_changed",
    }
}
