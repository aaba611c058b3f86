//! What the web transport costs: post latency in a small channel mesh with every node
//! listening only on WebSocket inside TLS (what nodes use through a DPI censor or a web
//! front), against the same mesh on libp2p's TCP, in the same run. (File throughput over it is
//! in the `files` bench: `fetch_tls_ws_vs_libp2p_tcp`.)

use anyhow::Result;
use serde_json::{Value, json};

use crate::harness::round;
use crate::mesh::{LOOPBACK_TCP, samizdat_mesh_on};

/// Nodes in the mesh, posts, and posts per second.
const NODES: usize = 10;
const RATE: f64 = 20.0;

pub fn run(quick: bool) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let posts = if quick { 100 } else { 400 };
    // No settling: each mesh is measured once a probe has reached every node, alike for both.
    let settle_s = 0;
    let tcp = rt.block_on(samizdat_mesh_on(
        NODES,
        posts,
        RATE,
        Some(1),
        LOOPBACK_TCP,
        settle_s,
    ))?;
    let web = rt.block_on(samizdat_mesh_on(
        NODES,
        posts,
        RATE,
        Some(1),
        "/ip4/127.0.0.1/tcp/0/tls/ws",
        settle_s,
    ))?;
    Ok(json!({
        "nodes": NODES,
        "posts": posts,
        "posts_per_s": RATE,
        "tcp_p50_ms": round(tcp.pct(0.5), 2),
        "tcp_p99_ms": round(tcp.pct(0.99), 2),
        "tcp_delivery": round(tcp.ratio(), 4),
        "tls_ws_p50_ms": round(web.pct(0.5), 2),
        "tls_ws_p99_ms": round(web.pct(0.99), 2),
        "tls_ws_delivery": round(web.ratio(), 4),
        "tls_ws_vs_tcp_p50": round(web.pct(0.5) / tcp.pct(0.5), 2),
        "tls_ws_vs_tcp_p99": round(web.pct(0.99) / tcp.pct(0.99), 2),
    }))
}
