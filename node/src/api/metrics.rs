//! `GET /v1/metrics`: the node's counters for Prometheus.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::error::ApiErrors;
use super::extract::AppState;

/// `GET /v1/metrics`: the node's counters in the OpenMetrics text format, for Prometheus.
#[utoipa::path(get, path = "/v1/metrics", tag = "node", responses((status = 200, description = "Counters in the OpenMetrics text format", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"), ApiErrors))]
pub(super) async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;
    let info = s.node.info().await?;
    let channels = s.node.channels().await?.len();
    let groups = s.node.groups().await?.len();
    let mut registry = prometheus_client::registry::Registry::with_prefix("samizdat_node");
    let gauge = |v: usize| {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        g
    };
    let counter = |v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        c
    };
    registry.register(
        "connected_peers",
        "Peers with an open connection",
        gauge(info.connected_peers),
    );
    registry.register(
        "connections",
        "Open connections (kept under the connection manager's high watermark)",
        gauge(info.connections),
    );
    registry.register(
        "connections_peak",
        "Most connections open at once since start",
        gauge(info.connections_peak),
    );
    registry.register(
        "connections_trimmed",
        "Peers closed by the connection manager above its high watermark",
        counter(info.connections_trimmed),
    );
    registry.register(
        "bootstrap_peers_connected",
        "Bootstrap peers this node is connected to",
        gauge(info.bootstrap.iter().filter(|b| b.connected).count()),
    );
    registry.register(
        "relays",
        "Relays holding a reservation for this node",
        gauge(info.relays.len()),
    );
    registry.register("channels", "Channels owned or followed", gauge(channels));
    registry.register("groups", "Private groups", gauge(groups));
    registry.register(
        "refused_connections",
        "Incoming connections refused at a limit (total, per peer, per IP, handshaking, memory)",
        counter(info.refused_connections),
    );
    registry.register(
        "peers_cut_off",
        "Peers disconnected and refused for 10 minutes (invalid gossip, malformed requests, bad \
         sync answers, floods)",
        counter(info.graylisted_peers),
    );
    registry.register(
        "dropped_dht",
        "DHT records and provider records refused or evicted at the per-source and total bounds",
        counter(info.dropped.dht),
    );
    registry.register(
        "dropped_held_messages",
        "Direct and group messages dropped while waiting for their Welcome or commit",
        counter(info.dropped.held_messages),
    );
    registry.register(
        "dropped_mail",
        "Mail held for others evicted to make room for other senders, or expired",
        counter(info.dropped.mail),
    );
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &registry).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("metrics: {e}"),
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
