//! `/v1/files/...`: adding, fetching and reading out files and private attachments.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::error::ApiErrors;
use super::extract::{AppState, parse_cid};
use super::{ApiError, KEY_HEADER};
use crate::files::DownloadStatus;
use crate::files::content::{self, ContentError};
use crate::node::FileAdded;

/// Query of `POST /v1/files` and `POST /v1/files/{cid}/fetch`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AddFileQuery {
    /// The file's name.
    name: Option<String>,
    /// Encrypt it as a private attachment (the answer carries its key).
    #[serde(default)]
    private: bool,
    /// Fetch: give up if the file is larger than this (automatic previews).
    max_bytes: Option<u64>,
}

/// `POST /v1/files`: the request body is the file.
#[utoipa::path(post, path = "/v1/files", tag = "files", params(AddFileQuery), request_body(content = Vec<u8>, description = "The file's bytes", content_type = "application/octet-stream"), responses((status = 201, description = "The file, held here", body = FileAdded), ApiErrors))]
pub(super) async fn add_file(
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

/// `GET /v1/files/{cid}`.
#[utoipa::path(get, path = "/v1/files/{cid}", tag = "files", params(("cid" = String, Path, description = "Content id (52 base32 characters)")), responses((status = 200, description = "What this node holds of the file", body = DownloadStatus), ApiErrors))]
pub(super) async fn file_status(
    State(s): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<DownloadStatus>, ApiError> {
    Ok(Json(s.node.file_status(parse_cid(&cid)?).await?))
}

/// `POST /v1/files/{cid}/fetch`.
#[utoipa::path(post, path = "/v1/files/{cid}/fetch", tag = "files", params(("cid" = String, Path, description = "Content id (52 base32 characters)"), AddFileQuery), responses((status = 200, description = "The download, started or going on", body = DownloadStatus), ApiErrors))]
pub(super) async fn fetch_file(
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

/// `GET /v1/files/{cid}/content`: the file's bytes; a private attachment is decrypted on the
/// way out when its key comes with the request.
#[utoipa::path(get, path = "/v1/files/{cid}/content", tag = "files", params(("cid" = String, Path, description = "Content id (52 base32 characters)"), ("x-samizdat-key" = Option<String>, Header, description = "A private attachment's key (64 hex digits): the file is decrypted on the way out")), responses((status = 200, description = "The file's bytes", body = Vec<u8>, content_type = "application/octet-stream"), ApiErrors))]
pub(super) async fn file_content(
    State(s): State<AppState>,
    Path(cid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (rec, manifest) = s.node.file_manifest(parse_cid(&cid)?).await?;
    let key = match headers.get(KEY_HEADER) {
        Some(v) => Some(v.to_str().map_err(|_| key_error(ContentError::BadKey))?),
        None => None,
    };
    let node = s.node.clone();
    let content = content::open(&manifest, key, move |hash| {
        let node = node.clone();
        async move { node.read_chunk(hash).await }
    })
    .await
    .map_err(key_error)?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        rec.name.replace(['"', '\\'], "_")
    );
    Response::builder()
        .header(header::CONTENT_TYPE, rec.mime)
        .header(header::CONTENT_LENGTH, content.size)
        .header(header::CONTENT_DISPOSITION, disposition)
        .header("x-content-type-options", "nosniff")
        // Whatever a peer put in the file (HTML, SVG with script) must not run as this origin.
        .header(
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'",
        )
        .body(axum::body::Body::from_stream(content.stream))
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A malformed or wrong key is the caller's mistake; a failed read is the node's.
fn key_error(e: ContentError<crate::node::NodeError>) -> ApiError {
    match e {
        ContentError::Read(e) => ApiError::from(e),
        e => ApiError::bad_request(e.to_string()),
    }
}
