//! Mapping of node errors to HTTP status codes and `{"error": "..."}` bodies, in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::node::NodeError;
use crate::store::StoreError;

/// An error answered by the API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
}

/// The body of every error answer, as the OpenAPI document describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only described, never built: ApiError writes the same shape
pub(crate) struct ErrorBody {
    /// What went wrong.
    error: String,
}

/// The error answers every endpoint may give, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only described, never built
pub(crate) enum ApiErrors {
    /// The request is wrong: a malformed id, query or body (400), a missing or wrong token
    /// (401), a right this node lacks or a foreign origin (403), an unknown channel, group or
    /// file (404), a post too large (413).
    #[response(status = "4XX")]
    Client(ErrorBody),
    /// A fault of the node: its store, disk or a corrupt record (500), or it is busy or
    /// stopping (503).
    #[response(status = "5XX")]
    Server(ErrorBody),
}

impl ApiError {
    /// A 400 with this message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

/// The HTTP status of a node error. Every variant is listed, so a new one gets a deliberate
/// status: the caller's mistakes are 4xx, faults of the node (disk, store, corrupt records,
/// configuration) are 500.
pub fn status_of(e: &NodeError) -> StatusCode {
    use crate::channel::PostError;
    match e {
        NodeError::UnknownChannel(_) | NodeError::UnknownGroup(_) | NodeError::UnknownFile(_) => {
            StatusCode::NOT_FOUND
        }
        NodeError::NotAllowed(_) => StatusCode::FORBIDDEN,
        NodeError::InvalidInput(_) => StatusCode::BAD_REQUEST,
        NodeError::Post(PostError::TooLarge(_) | PostError::TextTooLong(_)) => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        NodeError::Post(_) => StatusCode::BAD_REQUEST,
        NodeError::Busy | NodeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        NodeError::NotInitialized(_)
        | NodeError::Home(_)
        | NodeError::Config(_)
        | NodeError::Keyring(_)
        | NodeError::Identity(_)
        | NodeError::Store(_)
        | NodeError::SharedStore(_)
        | NodeError::Blob(_)
        | NodeError::Internal(_)
        | NodeError::Net(_)
        | NodeError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let status = status_of(&e);
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!("API request failed: {e}");
        }
        Self {
            status,
            message: e.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        NodeError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::channel::PostError;
    use crate::files::BlobError;

    fn status(e: impl Into<ApiError>) -> StatusCode {
        e.into().status
    }

    #[test]
    fn storage_faults_are_server_errors() {
        let faults = [
            NodeError::Store(StoreError::Corrupt("posts")),
            NodeError::Store(StoreError::Locked),
            NodeError::SharedStore(Arc::new(StoreError::Corrupt("posts"))),
            NodeError::from(Arc::new(StoreError::Corrupt("heads"))),
            NodeError::Blob(BlobError::Mismatch),
            NodeError::Blob(BlobError::Io(std::io::Error::other("disk full"))),
            NodeError::Io(std::io::Error::other("disk full")),
            NodeError::Internal("chunk missing".into()),
        ];
        for e in faults {
            let shown = e.to_string();
            assert_eq!(status(e), StatusCode::INTERNAL_SERVER_ERROR, "{shown}");
        }
        assert_eq!(
            status(StoreError::Corrupt("groups")),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn bad_input_stays_4xx() {
        let cases = [
            (NodeError::UnknownChannel("x".into()), StatusCode::NOT_FOUND),
            (NodeError::UnknownGroup("x".into()), StatusCode::NOT_FOUND),
            (NodeError::UnknownFile("x".into()), StatusCode::NOT_FOUND),
            (NodeError::NotAllowed("no".into()), StatusCode::FORBIDDEN),
            (
                NodeError::InvalidInput("bad".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                NodeError::Post(PostError::TextTooLong(99_999)),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (NodeError::Busy, StatusCode::SERVICE_UNAVAILABLE),
            (NodeError::Stopped, StatusCode::SERVICE_UNAVAILABLE),
        ];
        for (e, want) in cases {
            let shown = e.to_string();
            assert_eq!(status(e), want, "{shown}");
        }
    }

    #[tokio::test]
    async fn body_is_error_json() {
        let res = ApiError::from(NodeError::Store(StoreError::Corrupt("posts"))).into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["error"], "store record posts is corrupt");
    }
}
