//! File transfer throughput: one node fetching a file from another on loopback, against a
//! plain TCP copy of the same bytes in the same run.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use crate::harness::{Cluster, mib, round, tcp_copy, until};

pub fn run(quick: bool) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(measure(if quick { 16 } else { 256 } << 20))
}

async fn measure(size: usize) -> Result<Value> {
    let cluster = Cluster::start(2).await?;
    let a = cluster.nodes[0].handle();
    let b = cluster.nodes[1].handle();

    // Content that does not repeat per chunk (each chunk hashes differently).
    let piece = 256 * 1024;
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = (0..size / piece)
        .map(|i| {
            let mut v = vec![0u8; piece];
            for (j, w) in v.chunks_mut(8).enumerate() {
                w.copy_from_slice(
                    &((i * piece + j) as u64)
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        .to_le_bytes(),
                );
            }
            Ok(v)
        })
        .collect();
    let t = Instant::now();
    let added = a
        .add_file("bench.bin".into(), futures::stream::iter(pieces))
        .await?;
    let add_secs = t.elapsed().as_secs_f64();
    let cid: samizdat_node::files::Cid = added.cid.parse()?;

    let t = Instant::now();
    b.fetch_file(cid, "bench.bin".into()).await?;
    // Finding the provider in the DHT is timed apart from the transfer itself.
    let first = until("the first chunk", Duration::from_secs(120), || {
        let b = b.clone();
        async move { b.file_status(cid).await.ok().filter(|s| s.have > 0) }
    })
    .await?;
    let t_first = Instant::now();
    let discovery_secs = (t_first - t).as_secs_f64();
    until(
        "the download to complete",
        Duration::from_secs(1800),
        || {
            let b = b.clone();
            async move { b.file_status(cid).await.ok().filter(|s| s.complete) }
        },
    )
    .await?;
    let fetch_secs = t_first.elapsed().as_secs_f64();
    let fetched = size as u64 - first.bytes;
    drop((a, b));
    cluster.stop().await;

    let tcp_secs = tcp_copy(size, 1 << 20).await?;
    let rate = mib(fetched) / fetch_secs;
    let tcp_rate = mib(size as u64) / tcp_secs;
    Ok(json!({
        "size_mib": round(mib(size as u64), 0),
        "add_mib_per_s": round(mib(size as u64) / add_secs, 1),
        "discovery_s": round(discovery_secs, 2),
        "fetch_s": round(fetch_secs, 2),
        "fetch_mib_per_s": round(rate, 1),
        "baseline_tcp_mib_per_s": round(tcp_rate, 1),
        "fetch_vs_tcp": round(rate / tcp_rate, 4),
    }))
}
