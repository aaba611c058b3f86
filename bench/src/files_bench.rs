//! File transfer throughput: one node fetching a file from another on loopback, against a
//! plain TCP copy of the same bytes in the same run, and against the cryptography a fetch
//! must do per byte (its ceiling on this machine, measured in the same run). The fetch runs
//! twice, over libp2p's TCP and over the web transport (WebSocket inside TLS, what nodes use
//! through a DPI censor), and reports the second against the first.

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
    let tcp = fetch_over(size, "/ip4/127.0.0.1/tcp/0").await?;
    let web = fetch_over(size, "/ip4/127.0.0.1/tcp/0/tls/ws").await?;
    let tcp_secs = tcp_copy(size, 1 << 20).await?;
    let crypto_secs = tokio::task::spawn_blocking(move || crypto_work(size)).await?;
    let rate = mib(tcp.fetched) / tcp.fetch_secs;
    let web_rate = mib(web.fetched) / web.fetch_secs;
    let tcp_rate = mib(size as u64) / tcp_secs;
    let crypto_rate = mib(size as u64) / crypto_secs;
    Ok(json!({
        "size_mib": round(mib(size as u64), 0),
        "add_mib_per_s": round(mib(size as u64) / tcp.add_secs, 1),
        "discovery_s": round(tcp.discovery_secs, 2),
        "fetch_s": round(tcp.fetch_secs, 2),
        "fetch_mib_per_s": round(rate, 1),
        "baseline_tcp_mib_per_s": round(tcp_rate, 1),
        "fetch_vs_tcp": round(rate / tcp_rate, 4),
        "crypto_work_mib_per_s_one_core": round(crypto_rate, 1),
        "fetch_vs_crypto_work": round(rate / crypto_rate, 3),
        "fetch_tls_ws_mib_per_s": round(web_rate, 1),
        "fetch_tls_ws_vs_libp2p_tcp": round(web_rate / rate, 3),
    }))
}

/// One fetch's figures.
struct Fetch {
    add_secs: f64,
    discovery_secs: f64,
    fetch_secs: f64,
    fetched: u64,
}

/// Two nodes listening on `listen` only; the second fetches a `size`-byte file from the first.
async fn fetch_over(size: usize, listen: &str) -> Result<Fetch> {
    let cluster = Cluster::start_on(2, None, listen.parse()?).await?;
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
    Ok(Fetch {
        add_secs,
        discovery_secs,
        fetch_secs,
        fetched,
    })
}

/// Seconds one core takes for the cryptography every fetched byte goes through, in the order
/// it happens: the provider opens the chunk sealed at rest (XChaCha20-Poly1305) and Noise
/// encrypts it (ChaCha20-Poly1305, 64 KiB frames); the fetcher decrypts it, checks its
/// SHA-256 and seals it at rest. A plain TCP copy does none of this: the ratio to it says what
/// encryption costs, this one what the rest of the path (yamux, protobuf, files) adds.
fn crypto_work(size: usize) -> f64 {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{ChaCha20Poly1305, Nonce};
    use sha2::Digest;
    const CHUNK: usize = 1 << 20;
    const FRAME: usize = 65_535 - 16;
    let at_rest = samizdat_node::crypto::DataKey::generate();
    let noise = ChaCha20Poly1305::new(&[7u8; 32].into());
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let sealed = at_rest.seal(b"chunk", &chunk);
    let t = Instant::now();
    let mut nonce = 0u64;
    for _ in 0..size / CHUNK {
        let plain = at_rest.open(b"chunk", &sealed).unwrap_or_default();
        let mut received = Vec::with_capacity(plain.len());
        for frame in plain.chunks(FRAME) {
            nonce += 1;
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&nonce.to_le_bytes());
            let n = Nonce::from(n);
            let ct = noise
                .encrypt(
                    &n,
                    Payload {
                        msg: frame,
                        aad: &[],
                    },
                )
                .unwrap_or_default();
            received.extend(
                noise
                    .decrypt(&n, Payload { msg: &ct, aad: &[] })
                    .unwrap_or_default(),
            );
        }
        let hash = sha2::Sha256::digest(&received);
        std::hint::black_box(at_rest.seal(&hash, &received));
    }
    t.elapsed().as_secs_f64()
}
