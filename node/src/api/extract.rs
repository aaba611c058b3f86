//! What every handler shares: the server state, the JSON body extractor and the parsers of
//! path and query values (each a 400 with the API's error shape when the value is malformed).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};

use super::ApiError;
use super::ui::UiSessions;
use crate::channel::ChannelId;
use crate::files::Cid;
use crate::node::NodeHandle;
use crate::store::Cursor;

/// The state every handler sees.
#[derive(Clone)]
pub(super) struct AppState {
    /// The node the API drives.
    pub(super) node: NodeHandle,
    /// SHA-256 of the API token.
    pub(super) token_hash: [u8; 32],
    /// The port the server listens on.
    pub(super) port: u16,
    /// The address the server listens on.
    pub(super) addr: std::net::SocketAddr,
    /// The web UI's login links and sessions.
    pub(super) ui: UiSessions,
}

/// JSON body extractor whose rejections use the API's error shape.
pub(super) struct Body<T>(pub(super) T);

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

/// An empty JSON object, the answer of actions that return nothing.
pub(super) fn done() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

/// A channel id from a path.
pub(super) fn parse_channel(id: &str) -> Result<ChannelId, ApiError> {
    id.parse()
        .map_err(|e: crate::channel::IdParseError| ApiError::bad_request(e.to_string()))
}

/// A group id from a path.
pub(super) fn parse_group(s: &str) -> Result<crate::group::GroupId, ApiError> {
    s.parse()
        .map_err(|e: crate::dm::DmError| ApiError::bad_request(e.to_string()))
}

/// A peer id from a path or body.
pub(super) fn parse_peer(p: &str) -> Result<libp2p::PeerId, ApiError> {
    p.parse()
        .map_err(|_| ApiError::bad_request(format!("not a peer id: {p}")))
}

/// A file's content id from a path or body.
pub(super) fn parse_cid(s: &str) -> Result<Cid, ApiError> {
    s.parse()
        .map_err(|e: crate::files::ManifestError| ApiError::bad_request(e.to_string()))
}

/// A history cursor from a query.
pub(super) fn parse_cursor(c: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    c.map(|c| Cursor::from_hex(c).ok_or_else(|| ApiError::bad_request("bad cursor")))
        .transpose()
}
