//! Prometheus `/metrics` and `/healthz` over HTTP, on the address the operator chose.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use libp2p::PeerId;
use libp2p::metrics::Registry;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use samizdat_node::net::bootstrap_peer::BootstrapStats;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    stats: Arc<BootstrapStats>,
    connected: Gauge,
    routing: Gauge,
    peer_id: PeerId,
}

pub(crate) async fn serve(
    listener: TcpListener,
    mut registry: Registry,
    stats: Arc<BootstrapStats>,
    peer_id: PeerId,
    shutdown: CancellationToken,
) {
    let connected = Gauge::default();
    let routing = Gauge::default();
    registry.register(
        "connected_peers",
        "Peers with at least one open connection",
        connected.clone(),
    );
    registry.register(
        "routing_table_peers",
        "Peers in the Kademlia routing table",
        routing.clone(),
    );
    let shared = Shared {
        registry: Arc::new(registry),
        stats,
        connected,
        routing,
        peer_id,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
    {
        tracing::error!("metrics server: {e}");
    }
}

fn refresh(s: &Shared) -> (i64, i64) {
    let c = i64::try_from(s.stats.connected_peers.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    let r = i64::try_from(s.stats.routing_table_peers.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    s.connected.set(c);
    s.routing.set(r);
    (c, r)
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    refresh(&s);
    let mut body = String::new();
    match encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

async fn healthz(State(s): State<Shared>) -> impl IntoResponse {
    let (c, r) = refresh(&s);
    axum::Json(serde_json::json!({
        "status": "ok",
        "peer_id": s.peer_id.to_string(),
        "connected_peers": c,
        "routing_table_peers": r,
    }))
}
