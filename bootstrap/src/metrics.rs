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
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use samizdat_net::bootstrap_peer::BootstrapStats;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    stats: Arc<BootstrapStats>,
    connected: Gauge,
    routing: Gauge,
    records: Gauge,
    providers: Gauge,
    dht_dropped: Counter,
    provider_adds: Counter,
    refused: Counter,
    reservations: Gauge,
    circuits: Gauge,
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
    let records = Gauge::default();
    let providers = Gauge::default();
    let dht_dropped = Counter::default();
    let provider_adds = Counter::default();
    let reservations = Gauge::default();
    let circuits = Gauge::default();
    let refused = Counter::default();
    registry.register(
        "refused_connections",
        "Incoming connections refused at a limit (total, per peer, per IP, handshaking, memory)",
        refused.clone(),
    );
    registry.register("dht_records", "DHT value records held", records.clone());
    registry.register(
        "dht_provider_records",
        "DHT provider records held for other peers",
        providers.clone(),
    );
    registry.register(
        "dht_dropped",
        "DHT records and provider records refused or evicted at the per-source and total bounds",
        dht_dropped.clone(),
    );
    registry.register(
        "dht_provider_records_received",
        "Provider records other peers asked this peer to hold",
        provider_adds.clone(),
    );
    registry.register(
        "relay_reservations",
        "Relay reservations held for nodes behind NAT",
        reservations.clone(),
    );
    registry.register(
        "relay_circuits",
        "Relayed connections open",
        circuits.clone(),
    );
    let shared = Shared {
        registry: Arc::new(registry),
        stats,
        connected,
        routing,
        records,
        providers,
        dht_dropped,
        provider_adds,
        refused,
        reservations,
        circuits,
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
    let get = |a: &std::sync::atomic::AtomicUsize| {
        i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
    };
    let (c, r) = (
        get(&s.stats.connected_peers),
        get(&s.stats.routing_table_peers),
    );
    s.connected.set(c);
    s.routing.set(r);
    s.records.set(get(&s.stats.dht_records));
    s.providers.set(get(&s.stats.dht_providers));
    s.reservations.set(get(&s.stats.relay_reservations));
    s.circuits.set(get(&s.stats.relay_circuits));
    // Counters only go up: add what arrived since the last scrape.
    for (counter, total) in [
        (&s.provider_adds, &s.stats.dht_provider_adds),
        (&s.refused, &s.stats.refused_connections),
        (&s.dht_dropped, &s.stats.dht_dropped),
    ] {
        let (total, seen) = (total.load(Ordering::Relaxed) as u64, counter.get());
        if total > seen {
            counter.inc_by(total - seen);
        }
    }
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
