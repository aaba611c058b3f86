//! Mapping of node errors to HTTP status codes and `{"error": "..."}` bodies, in one place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::node::NodeError;

/// An error answered by the API.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
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

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        use crate::channel::PostError;
        let status = match &e {
            NodeError::UnknownChannel(_)
            | NodeError::UnknownGroup(_)
            | NodeError::UnknownFile(_) => StatusCode::NOT_FOUND,
            NodeError::NotAllowed(_) => StatusCode::FORBIDDEN,
            NodeError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            NodeError::Post(PostError::TooLarge(_) | PostError::TextTooLong(_)) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            NodeError::Post(_) => StatusCode::BAD_REQUEST,
            NodeError::Busy | NodeError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("API request failed: {e}");
        }
        Self {
            status,
            message: e.to_string(),
        }
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
