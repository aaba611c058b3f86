//! The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations.
//! The router is built from the same annotations (`utoipa_axum::routes!`), so every route is
//! documented by construction; it is served at `GET /v1/openapi.json` and checked in as
//! `docs/openapi.json`.

use axum::Json;
use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::extract::AppState;
use super::{
    auth, channels, contacts, devices, dm, events, files, groups, metrics, node, requests,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Samizdat local API",
        description = "The node's HTTP + JSON API on 127.0.0.1: the CLI, the web UI and bots are \
                       its clients. Errors answer `{\"error\": \"...\"}`."
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security),
    security(("bearer" = []), ("session" = [])),
    tags(
        (name = "node", description = "The node itself, its peers and the UI login"),
        (name = "channels", description = "Owned and followed channels"),
        (name = "dm", description = "Direct conversations"),
        (name = "groups", description = "Private groups"),
        (name = "files", description = "Files and private attachments"),
        (name = "contacts", description = "The address book"),
        (name = "devices", description = "This account's devices: link, list, revoke"),
        (name = "requests", description = "Messages from strangers"),
        (name = "events", description = "Server-Sent Events"),
    )
)]
struct ApiDoc;

/// Adds the two ways to authorise a request.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The API token (api.token in the node's home)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                super::ui::SESSION_HEADER,
                "The web UI's session, from its own page only (no bearer token with it)",
            ))),
        );
    }
}

/// The documented routes: those behind the token or a UI session, and those open to all.
pub(super) fn routes() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    let guarded = OpenApiRouter::new()
        .routes(routes!(node::node_info))
        .routes(routes!(node::peers))
        .routes(routes!(node::dial))
        .routes(routes!(node::block_peer, node::unblock_peer))
        .routes(routes!(metrics::metrics))
        .routes(routes!(auth::ui_login))
        .routes(routes!(contacts::contacts, contacts::add_contact))
        .routes(routes!(contacts::contact_card))
        .routes(routes!(contacts::contact_card_qr))
        .routes(routes!(devices::devices))
        .routes(routes!(devices::device_link))
        .routes(routes!(devices::revoke_device))
        .routes(routes!(devices::device_removals))
        .routes(routes!(dm::dm_conversations))
        .routes(routes!(dm::dm_history, dm::dm_send))
        .routes(routes!(groups::groups, groups::create_group))
        .routes(routes!(groups::invite_member))
        .routes(routes!(groups::remove_member))
        .routes(routes!(groups::group_history, groups::group_post))
        .routes(routes!(channels::channels, channels::create_channel))
        .routes(routes!(channels::follow))
        .routes(routes!(channels::channel, channels::unfollow))
        .routes(routes!(channels::history, channels::post_to_channel))
        .routes(routes!(channels::admins, channels::add_admin))
        .routes(routes!(channels::remove_admin))
        .routes(routes!(channels::sync_status))
        .routes(routes!(requests::requests))
        .routes(routes!(requests::answer_request))
        // A file may be larger than any JSON body.
        .routes(routes!(files::add_file).layer(DefaultBodyLimit::disable()))
        .routes(routes!(files::file_status))
        .routes(routes!(files::fetch_file))
        .routes(routes!(files::file_content))
        .routes(routes!(events::events));
    let open = OpenApiRouter::new()
        .routes(routes!(node::health))
        .routes(routes!(openapi_json));
    (guarded, open)
}

/// The API's OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    let (guarded, open) = routes();
    let mut doc = ApiDoc::openapi();
    doc.merge(guarded.into_openapi());
    doc.merge(open.into_openapi());
    doc
}

/// `GET /v1/openapi.json`: this document (no token needed).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "node",
    security(()),
    responses((status = 200, description = "The API's OpenAPI 3.1 document", body = serde_json::Value))
)]
pub(super) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use sha2::{Digest, Sha256};
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;
    use crate::home::Home;
    use crate::node::{Node, NodeOptions};

    const TOKEN: &str = "test-token";

    fn doc_json() -> serde_json::Value {
        serde_json::to_value(document()).expect("the document encodes")
    }

    /// A path of the document with each `{param}` filled with a value no parser accepts, so
    /// handlers answer 400 rather than look anything up.
    fn fill(path: &str) -> String {
        let mut out = String::new();
        let mut rest = path;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            out.push('x');
            rest = &rest[close..];
        }
        out.push_str(rest);
        out
    }

    /// Every (method, path) the document lists, and whether it needs authorisation.
    fn operations(doc: &serde_json::Value) -> Vec<(String, String, bool)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                // An operation-level `security: [{}]` opts out of the document-wide schemes.
                let open = op["security"].as_array().is_some_and(|s| {
                    s.iter()
                        .any(|r| r.as_object().is_some_and(|r| r.is_empty()))
                });
                ops.push((method.to_ascii_uppercase(), path.clone(), !open));
            }
        }
        ops
    }

    #[test]
    fn document_is_openapi_3_1_with_auth_and_resolvable_refs() {
        let doc = doc_json();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!(schemes["session"]["name"], crate::api::ui::SESSION_HEADER);
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap_or_default();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "$ref to {name} does not resolve"
            );
        }
        assert!(operations(&doc).len() >= 40, "{:?}", operations(&doc));
    }

    #[tokio::test]
    async fn every_documented_operation_reaches_its_handler() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let shutdown = CancellationToken::new();
        let node = Node::start(
            &Home::at(tmp.path().join("home")),
            NodeOptions {
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
                init_if_missing: true,
                mdns: Some(false),
                ..Default::default()
            },
            shutdown.clone(),
        )
        .await
        .expect("node starts");
        let addr: std::net::SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let app = crate::api::server::router(AppState {
            node: node.handle(),
            token_hash: Sha256::digest(TOKEN.as_bytes()).into(),
            port: addr.port(),
            addr,
            ui: Default::default(),
        });
        let send = |method: &str, uri: &str, token: bool| {
            let mut req = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::HOST, addr.to_string());
            if token {
                req = req.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
            }
            let req = req.body(Body::empty()).expect("request");
            let app = app.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(30), app.oneshot(req))
                    .await
                    .expect("answered in time")
                    .expect("infallible")
                    .status()
            }
        };
        // The checks below can tell a missing route or method from a served one.
        assert_eq!(
            send("GET", "/v1/no-such-thing", true).await,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            send("PUT", "/v1/channels", true).await,
            StatusCode::METHOD_NOT_ALLOWED
        );
        let doc = doc_json();
        let ops = operations(&doc);
        assert!(!ops.is_empty());
        for (method, path, guarded) in ops {
            let uri = fill(&path);
            let status = send(&method, &uri, true).await;
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but the router answers {status} to {uri}"
            );
            let anonymous = send(&method, &uri, false).await;
            assert_eq!(
                anonymous == StatusCode::UNAUTHORIZED,
                guarded,
                "{method} {path}: documented {} but answers {anonymous} without a token",
                if guarded { "as guarded" } else { "as open" }
            );
        }
        shutdown.cancel();
        node.stopped().await;
    }

    /// `docs/openapi.json` is this document; `SAMIZDAT_BLESS=1` rewrites it.
    #[test]
    fn checked_in_document_is_current() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
        let generated = format!(
            "{}\n",
            document().to_pretty_json().expect("the document encodes")
        );
        if std::env::var_os("SAMIZDAT_BLESS").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "docs/openapi.json differs from the document the handlers generate: regenerate it \
             with `SAMIZDAT_BLESS=1 cargo test -p samizdat-node --lib api::openapi` and commit it"
        );
    }
}
