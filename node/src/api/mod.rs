//! The local API: HTTP + JSON and Server-Sent Events on 127.0.0.1, guarded by a bearer token.
//! The CLI, the web UI and bots are its clients.

mod auth;
mod channels;
mod client;
mod contacts;
mod devices;
mod dm;
mod error;
mod events;
mod extract;
mod files;
mod groups;
mod metrics;
mod node;
mod openapi;
mod requests;
mod server;
mod ui;

pub use channels::parse_follow_target;
pub use client::{ApiClient, ClientError};
pub use error::ApiError;
pub use openapi::document as openapi_document;
pub use server::serve;

use serde::{Deserialize, Serialize};

/// Body of `POST /v1/channels`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateChannelRequest {
    /// Channel name.
    pub name: String,
    /// Optional description.
    #[serde(default)]
    pub description: String,
    /// Put this node's own addresses in the invite link (whoever gets the link learns where
    /// the node is); by default the link names only bootstrap peers and relays.
    #[serde(default)]
    pub include_my_address: bool,
}

/// Body of `POST /v1/channels/follow`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FollowRequest {
    /// An invite link or a channel id.
    pub target: String,
}

/// Body of `POST /v1/channels/{id}/posts`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostRequest {
    /// The text.
    pub text: String,
    /// Delete everywhere this many milliseconds after posting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
    /// Content id of a file this node holds, to attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The header that carries a private attachment's key to `GET /v1/files/{cid}/content`.
pub const KEY_HEADER: &str = "x-samizdat-key";

/// Body of `POST /v1/dm/{peer}` and `POST /v1/groups/{id}/messages`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DmRequest {
    /// The text.
    pub text: String,
    /// Delete on both sides this many milliseconds after sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_ms: Option<u64>,
    /// A bare content id (refused: private conversations take `attachment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A private attachment, as `POST /v1/files?private=true` returned it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<crate::dm::AttachmentView>,
}

/// Body of `POST /v1/groups`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateGroupRequest {
    /// The group's name (seen by members only).
    pub name: String,
}

/// Body of `POST /v1/groups/{id}/members`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InviteRequest {
    /// The invitee's peer id.
    pub peer_id: String,
}

/// Body of `POST /v1/channels/{id}/admins`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AdminRequest {
    /// The PeerId of the new admin.
    pub peer_id: String,
}

/// Body of `POST /v1/contacts`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AddContactRequest {
    /// `samizdat://contact/...`
    pub link: String,
    /// A name for it.
    #[serde(default)]
    pub name: Option<String>,
}

/// Body of `POST /v1/dial`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DialRequest {
    /// A multiaddr.
    pub addr: String,
}

/// Response of `GET /v1/channels/{id}/posts`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryPage {
    /// Posts, oldest first.
    pub posts: Vec<crate::node::views::PostView>,
    /// Cursor for the next page, or null at the end.
    pub next: Option<String>,
    /// With `last=N`: cursor to pass as `before` for the older page, or null at the start.
    #[serde(default)]
    pub prev: Option<String>,
}
