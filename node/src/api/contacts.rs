//! `/v1/contacts/...`: the address book and this node's own contact card.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiErrors;
use super::extract::{AppState, Body};
use super::{AddContactRequest, ApiError, ui};
use crate::node::views::{ContactCardView, ContactView};

/// `GET /v1/contacts`.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", responses((status = 200, description = "Contacts", body = Vec<ContactView>), ApiErrors))]
pub(super) async fn contacts(
    State(s): State<AppState>,
) -> Result<Json<Vec<ContactView>>, ApiError> {
    let list = s.node.contacts().await?;
    Ok(Json(list.iter().map(ContactView::from).collect()))
}

/// `POST /v1/contacts`.
#[utoipa::path(post, path = "/v1/contacts", tag = "contacts", request_body = AddContactRequest, responses((status = 200, description = "The contact", body = ContactView), ApiErrors))]
pub(super) async fn add_contact(
    State(s): State<AppState>,
    Body(req): Body<AddContactRequest>,
) -> Result<Json<ContactView>, ApiError> {
    let c = s.node.add_contact(&req.link, req.name).await?;
    Ok(Json(ContactView::from(&c)))
}

/// `GET /v1/contacts/card`.
#[utoipa::path(get, path = "/v1/contacts/card", tag = "contacts", responses((status = 200, description = "This node's contact card", body = ContactCardView), ApiErrors))]
pub(super) async fn contact_card(
    State(s): State<AppState>,
) -> Result<Json<ContactCardView>, ApiError> {
    let card = s.node.contact_card().await?;
    Ok(Json(ContactCardView {
        link: card.to_string(),
        peer_id: card.peer_id.to_string(),
    }))
}

/// `GET /v1/contacts/card/qr.svg`.
#[utoipa::path(get, path = "/v1/contacts/card/qr.svg", tag = "contacts", responses((status = 200, description = "This node's contact card as a QR code", body = String, content_type = "image/svg+xml"), ApiErrors))]
pub(super) async fn contact_card_qr(State(s): State<AppState>) -> Result<Response, ApiError> {
    let card = s.node.contact_card().await?;
    let svg = ui::qr_svg(&card.to_string()).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("QR code: {e}"),
    })?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}
