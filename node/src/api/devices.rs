//! `/v1/devices/...`: this account's devices — linking a new one, listing, revoking.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::error::ApiErrors;
use super::extract::{AppState, parse_peer};
use super::{ApiError, ui};
use crate::node::views::{DeviceLinkView, DeviceView, RevokeGroupView, RevokeView};

/// `GET /v1/devices`.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", responses((status = 200, description = "This account's devices", body = Vec<DeviceView>), ApiErrors))]
pub(super) async fn devices(State(s): State<AppState>) -> Result<Json<Vec<DeviceView>>, ApiError> {
    Ok(Json(s.node.devices().await?))
}

/// `POST /v1/devices/link`.
#[utoipa::path(post, path = "/v1/devices/link", tag = "devices", responses((status = 201, description = "A one-time link (and its QR code) for a new device", body = DeviceLinkView), ApiErrors))]
pub(super) async fn device_link(
    State(s): State<AppState>,
) -> Result<(StatusCode, Json<DeviceLinkView>), ApiError> {
    let mut view = s.node.device_link().await?;
    view.qr_svg = Some(ui::qr_svg(&view.link).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("QR code: {e}"),
    })?);
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/devices/removals`.
#[utoipa::path(get, path = "/v1/devices/removals", tag = "devices", responses((status = 200, description = "Revoked devices' removals from private groups, and which members are known to hold them", body = Vec<RevokeGroupView>), ApiErrors))]
pub(super) async fn device_removals(
    State(s): State<AppState>,
) -> Result<Json<Vec<RevokeGroupView>>, ApiError> {
    Ok(Json(s.node.device_removals().await?))
}

/// `DELETE /v1/devices/{peer}`.
#[utoipa::path(delete, path = "/v1/devices/{peer}", tag = "devices", params(("peer" = String, Path, description = "The device's peer id")), responses((status = 200, description = "What revoking did", body = RevokeView), ApiErrors))]
pub(super) async fn revoke_device(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<RevokeView>, ApiError> {
    Ok(Json(s.node.revoke_device(parse_peer(&peer)?).await?))
}
