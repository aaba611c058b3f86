//! Mesh propagation: N Samizdat nodes in one process (loopback TCP, homes on tmpfs) following
//! one channel with several authors, against N plain rust-libp2p gossipsub nodes with default
//! configuration and no validation, storage or encryption, at the same load in the same run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, noise, tcp, yamux};
use samizdat_node::channel::{ChannelId, PostDraft};
use samizdat_node::node::views::Event;
use samizdat_node::node::{FollowTarget, NodeHandle};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::harness::{Cluster, round, until};

/// One measured run.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub nodes: usize,
    pub delivered: usize,
    pub expected: usize,
    /// Milliseconds, sorted.
    pub latencies: Vec<f64>,
    pub wire_bytes_per_delivery: f64,
    /// Connections per node at the end of the run: (max, mean), and the most any node held
    /// at once during it. Zero for the baseline (not measured).
    pub connections: (usize, f64, usize),
    /// Milliseconds from an author's post call to its answer (the post durable and handed to
    /// gossipsub), sorted. Empty for the baseline.
    pub acks: Vec<f64>,
    /// Cores busy on average while posting (all of the process: nodes, bench and runtime).
    pub cpu_cores: f64,
    /// Before posting, once settled: cores busy while idle, and peers per node.
    pub idle: Option<(f64, f64)>,
}

/// CPU seconds this process has used so far (user + system).
pub fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<String> = s
                .rsplit(')')
                .next()?
                .split_whitespace()
                .map(String::from)
                .collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .unwrap_or(0.0)
        / 100.0
}

/// `--nodes N`: measure only a mesh of N nodes (set once by `main`).
pub static NODES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
/// `--quick` (set once by `main`).
pub static QUICK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

impl Run {
    pub fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }
    pub fn ratio(&self) -> f64 {
        self.delivered as f64 / self.expected.max(1) as f64
    }
    /// The `p` quantile of the authors' acknowledgement times.
    pub fn ack_pct(&self, p: f64) -> f64 {
        if self.acks.is_empty() {
            return f64::NAN;
        }
        let i = ((self.acks.len() as f64 - 1.0) * p).round() as usize;
        self.acks[i.min(self.acks.len() - 1)]
    }
}

/// Bytes received on the loopback interface so far (all of this process's traffic on it).
fn loopback_rx_bytes() -> u64 {
    std::fs::read_to_string("/sys/class/net/lo/statistics/rx_bytes")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn text(i: usize) -> String {
    let head = format!("mesh post {i:>6} ");
    format!("{head}{}", "x".repeat(200 - head.len()))
}

pub fn run(quick: bool) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // `--nodes N`, or SAMIZDAT_BENCH_MESH_SIZES=50,100, measures only those sizes (to look at
    // one closely): no rate ladder then.
    let one_size = NODES.get().copied();
    let sizes: Vec<usize> = match (one_size, std::env::var("SAMIZDAT_BENCH_MESH_SIZES")) {
        (Some(n), _) => vec![n.max(2)],
        (None, Ok(v)) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        (None, Err(_)) if quick => vec![10],
        (None, Err(_)) => vec![10, 50, 100, 200],
    };
    let posts = if quick { 40 } else { 200 };
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    for &n in &sizes {
        // A load the baseline sustains here: every node of the mesh shares the same 2 cores,
        // so the total work (posts x nodes) is kept near 20 posts/s x 50 nodes.
        let rate = match n {
            0..=50 => 20.0,
            51..=100 => 10.0,
            _ => 5.0,
        };
        eprintln!("   mesh: {n} nodes, {posts} posts at {rate}/s");
        let s = rt.block_on(samizdat_mesh(n, posts, rate, None))?;
        let b = rt.block_on(baseline_mesh(n, posts, rate))?;
        rows.push(json!({
            "nodes": n,
            "posts": posts,
            "rate_posts_per_s": rate,
            "settle_s": settle_secs(),
            "watermarks": crate::harness::fit_watermarks(n).unwrap_or((32, 96)),
            "delivery_ratio": round(s.ratio(), 4),
            "p50_ms": round(s.pct(0.5), 1),
            "p99_ms": round(s.pct(0.99), 1),
            "max_ms": round(s.pct(1.0), 1),
            "baseline_delivery_ratio": round(b.ratio(), 4),
            "baseline_p50_ms": round(b.pct(0.5), 1),
            "baseline_p99_ms": round(b.pct(0.99), 1),
            "baseline_max_ms": round(b.pct(1.0), 1),
            "p99_vs_baseline": round(s.pct(0.99) / b.pct(0.99), 2),
            "wire_bytes_per_delivered_post": round(s.wire_bytes_per_delivery, 0),
            "baseline_wire_bytes_per_delivered_post": round(b.wire_bytes_per_delivery, 0),
            "posts_per_s": Value::Null,
            "baseline_posts_per_s": Value::Null,
            "connections_per_node_max": s.connections.0,
            "connections_per_node_mean": round(s.connections.1, 1),
            "connections_per_node_peak": s.connections.2,
            "author_ack_p50_ms": round(s.ack_pct(0.5), 1),
            "author_ack_p99_ms": round(s.ack_pct(0.99), 1),
            "cpu_cores": round(s.cpu_cores, 2),
            "baseline_cpu_cores": round(b.cpu_cores, 2),
            "idle_core_fraction_per_node": s.idle.map(|(c, _)| round(c / n as f64, 5)),
            "idle_peers_per_node": s.idle.map(|(_, p)| round(p, 1)),
        }));
        runs.push((s, b));
    }
    // The highest rate each sustains before latency degrades (p99 over 3x its own p99 at the
    // base rate, or deliveries lost), on the smaller meshes.
    let sustain_sizes: Vec<usize> =
        if one_size.is_some() || std::env::var("SAMIZDAT_BENCH_MESH_SIZES").is_ok() {
            Vec::new()
        } else if quick {
            vec![10]
        } else {
            vec![10, 50]
        };
    for (row, &n) in rows.iter_mut().zip(&sizes) {
        if !sustain_sizes.contains(&n) {
            continue;
        }
        let ladder: &[f64] = if quick {
            &[50.0, 200.0]
        } else {
            &[50.0, 100.0, 200.0, 400.0, 800.0]
        };
        let base_p99 = row["p99_ms"].as_f64().unwrap_or(100.0).max(20.0);
        let base_b99 = row["baseline_p99_ms"].as_f64().unwrap_or(100.0).max(20.0);
        let rate = row["rate_posts_per_s"].as_f64().unwrap_or(20.0);
        let mut best = (rate, rate);
        for &r in ladder {
            let count = (r * if quick { 1.5 } else { 3.0 }) as usize;
            eprintln!("   mesh: {n} nodes at {r} posts/s");
            let s = rt.block_on(samizdat_mesh(n, count, r, None))?;
            let b = rt.block_on(baseline_mesh(n, count, r))?;
            if s.ratio() >= 0.999 && s.pct(0.99) <= 3.0 * base_p99 {
                best.0 = r;
            }
            if b.ratio() >= 0.999 && b.pct(0.99) <= 3.0 * base_b99 {
                best.1 = r;
            }
        }
        row["posts_per_s"] = json!(best.0);
        row["baseline_posts_per_s"] = json!(best.1);
    }
    // Background cost: what idle nodes burn with nothing posted.
    let idle_n = one_size
        .or_else(|| {
            std::env::var("SAMIZDAT_BENCH_IDLE_NODES")
                .ok()
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(if quick { 10 } else { 50 });
    // (Measured already on the settled mesh of that size, when there was one.)
    let measured = runs
        .iter()
        .find(|(r, _)| r.nodes == idle_n)
        .and_then(|(r, _)| r.idle);
    let (idle, idle_peers) = match measured {
        Some(m) => m,
        None => rt.block_on(idle_cpu(idle_n, if quick { 5 } else { 15 }))?,
    };
    eprintln!(
        "   mesh: {idle_n} idle nodes use {:.0}% of a core ({:.1}% each), {idle_peers:.1} peers each",
        idle * 100.0,
        idle * 100.0 / idle_n.max(1) as f64
    );
    crate::plot::latency_cdf(&runs)?;
    crate::plot::scaling(&runs)?;
    Ok(json!({
        "mesh": rows,
        "mesh_idle_cpu": {
            "nodes": idle_n,
            "core_fraction": round(idle, 3),
            "core_fraction_per_node": round(idle / idle_n.max(1) as f64, 5),
            "peers_per_node": round(idle_peers, 1),
        },
    }))
}

/// Starts `n` nodes, makes node 0 the owner of a channel with `authors - 1` admins, and has
/// everyone follow it; returns once a probe from every author reached every node.
pub async fn channel_mesh(n: usize, authors: usize) -> Result<(Cluster, ChannelId, Vec<usize>)> {
    channel_mesh_on(n, authors, LOOPBACK_TCP).await
}

/// Loopback TCP, where the mesh runs unless told otherwise.
pub const LOOPBACK_TCP: &str = "/ip4/127.0.0.1/tcp/0";

/// As [`channel_mesh`], every node listening on `listen` only.
pub async fn channel_mesh_on(
    n: usize,
    authors: usize,
    listen: &str,
) -> Result<(Cluster, ChannelId, Vec<usize>)> {
    let cluster =
        Cluster::start_on(n, Some(std::path::Path::new("/dev/shm")), listen.parse()?).await?;
    let handles: Vec<NodeHandle> = cluster.nodes.iter().map(|n| n.handle()).collect();
    let ch = handles[0]
        .create_channel("mesh".into(), String::new())
        .await?;
    let id: ChannelId = ch.id.parse()?;
    let link: samizdat_node::channel::Invite = ch.link.context("link")?.parse()?;
    for h in &handles[1..] {
        h.follow(FollowTarget::Invite(Box::new(link.clone())))
            .await?;
    }
    let authors: Vec<usize> = (0..authors.min(n)).collect();
    for &a in &authors[1..] {
        let peer = handles[a].info().await?.peer_id.parse()?;
        handles[0].add_admin(id, peer).await?;
    }
    for &a in &authors[1..] {
        let h = handles[a].clone();
        until("an admin certificate", Duration::from_secs(120), || {
            let h = h.clone();
            async move { h.channel(id).await.ok().filter(|c| c.role == "admin") }
        })
        .await?;
    }
    // Probes: one per author, until every node holds all of them.
    for &a in &authors {
        handles[a]
            .post(
                id,
                PostDraft {
                    text: format!("probe from {a}"),
                    ..Default::default()
                },
            )
            .await?;
    }
    for h in &handles {
        let h = h.clone();
        let want = authors.len() as u64;
        until(
            "the probes to reach every node",
            Duration::from_secs(300),
            || {
                let h = h.clone();
                async move { h.channel(id).await.ok().filter(|c| c.posts >= want) }
            },
        )
        .await?;
    }
    Ok((cluster, id, authors))
}

/// Samizdat: `posts` posts at `rate` per second from the authors in turn; latency from the
/// author's post call to each follower's "stored" event.
pub async fn samizdat_mesh(
    n: usize,
    posts: usize,
    rate: f64,
    authors: Option<usize>,
) -> Result<Run> {
    samizdat_mesh_on(n, posts, rate, authors, LOOPBACK_TCP, settle_secs()).await
}

/// As [`samizdat_mesh`], every node listening on `listen` only, settling `settle_s` first.
pub async fn samizdat_mesh_on(
    n: usize,
    posts: usize,
    rate: f64,
    authors: Option<usize>,
    listen: &str,
    settle_s: u64,
) -> Result<Run> {
    let (cluster, id, authors) = channel_mesh_on(n, authors.unwrap_or(3), listen).await?;
    let handles: Vec<NodeHandle> = cluster.nodes.iter().map(|n| n.handle()).collect();
    if settle_s > 0 {
        eprintln!("   mesh: settling for {settle_s} s");
        tokio::time::sleep(Duration::from_secs(settle_s)).await;
    }
    // A settled mesh is idle: measure what it burns before posting into it.
    let idle = if settle_s > 0 {
        Some(measure_idle(&handles, 15).await)
    } else {
        None
    };
    let received: Arc<Mutex<Receipts>> = Arc::default();
    let mut listeners = Vec::new();
    for (i, h) in handles.iter().enumerate() {
        let mut rx = h.subscribe();
        let received = received.clone();
        listeners.push(tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(Event::Post { post }) => {
                        if let Ok(mut r) = received.lock() {
                            r.entry(post.id).or_default().push((i, Instant::now()));
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    let lo_before = loopback_rx_bytes();
    let (cpu_before, cpu_t0) = (process_cpu_seconds(), Instant::now());
    // (Markers for profiling the posting phase alone.)
    eprintln!("   mesh: posting");
    let mut acks: Vec<f64> = Vec::with_capacity(posts);
    let mut sent: Vec<(String, usize, Instant)> = Vec::with_capacity(posts);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut inflight = futures::stream::FuturesUnordered::new();
    for i in 0..posts {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let a = authors[i % authors.len()];
        let h = handles[a].clone();
        // A task of its own, so the ack is timed when it comes, not when this loop next
        // looks (that quantised every ack to the posting interval: 200 ms at 5 posts/s).
        inflight.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let r = h
                .post(
                    id,
                    PostDraft {
                        text: text(i),
                        ..Default::default()
                    },
                )
                .await;
            (r, a, t0, t0.elapsed())
        }));
        while let Some(Some(done)) = futures::FutureExt::now_or_never(inflight.next()) {
            let (r, a, t0, ack) = done?;
            sent.push((r?.id, a, t0));
            acks.push(ack.as_secs_f64() * 1000.0);
        }
    }
    while let Some(done) = inflight.next().await {
        let (r, a, t0, ack) = done?;
        sent.push((r?.id, a, t0));
        acks.push(ack.as_secs_f64() * 1000.0);
    }
    let cpu_cores = (process_cpu_seconds() - cpu_before) / cpu_t0.elapsed().as_secs_f64();
    eprintln!("   mesh: posted");
    acks.sort_by(f64::total_cmp);
    // Everything delivered, or a generous grace period.
    let expected = posts * (n - 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = received
            .lock()
            .map(|r| {
                sent.iter()
                    .map(|(id, a, _)| {
                        r.get(id)
                            .map_or(0, |v| v.iter().filter(|(i, _)| i != a).count())
                    })
                    .sum::<usize>()
            })
            .unwrap_or(0);
        if got >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lo_bytes = loopback_rx_bytes().saturating_sub(lo_before);
    let mut latencies = Vec::with_capacity(expected);
    if let Ok(r) = received.lock() {
        for (id, a, t0) in &sent {
            for (i, t) in r.get(id).into_iter().flatten() {
                if i != a {
                    latencies.push(t.saturating_duration_since(*t0).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    for l in listeners {
        l.abort();
    }
    let connections = connections_per_node(&handles).await;
    drop(handles);
    cluster.stop().await;
    latencies.sort_by(f64::total_cmp);
    Ok(Run {
        nodes: n,
        delivered: latencies.len(),
        expected,
        wire_bytes_per_delivery: lo_bytes as f64 / latencies.len().max(1) as f64,
        latencies,
        connections,
        acks,
        cpu_cores,
        idle,
    })
}

/// How long a freshly started mesh is left to finish its startup work (DHT lookups,
/// announcements, the first mailbox rounds of every node at once) before posts are measured:
/// SAMIZDAT_BENCH_SETTLE_S, by default 90 s (none with `--quick`). A network does not start
/// all at once; measured cold, every node's startup lookups overlap the posts.
pub fn settle_secs() -> u64 {
    std::env::var("SAMIZDAT_BENCH_SETTLE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if QUICK.get().copied().unwrap_or(false) {
            0
        } else {
            90
        })
}

/// Waits [`settle_secs`].
pub async fn settle() {
    let s = settle_secs();
    if s > 0 {
        eprintln!("   mesh: settling for {s} s");
        tokio::time::sleep(Duration::from_secs(s)).await;
    }
}

/// Post id → (receiving node, when).
type Receipts = HashMap<String, Vec<(usize, Instant)>>;

enum Cmd {
    Dial(Multiaddr),
    Publish(Vec<u8>),
}

/// The baseline: plain gossipsub swarms, default configuration, TCP + noise + yamux on
/// loopback, each dialing a few earlier ones (a connected graph like Samizdat's discovery
/// builds), the same message sizes at the same rate.
pub async fn baseline_mesh(n: usize, posts: usize, rate: f64) -> Result<Run> {
    let topic = IdentTopic::new("baseline");
    let (recv_tx, mut recv_rx) = mpsc::unbounded_channel::<(usize, Vec<u8>, Instant)>();
    let mut cmds = Vec::new();
    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..n {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|key| {
                gossipsub::Behaviour::<
                    gossipsub::IdentityTransform,
                    gossipsub::AllowAllSubscriptionFilter,
                >::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossipsub::Config::default(),
                )
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        swarm.behaviour_mut().subscribe(&topic)?;
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address.with(libp2p::multiaddr::Protocol::P2p(*swarm.local_peer_id()));
            }
        };
        addrs.push(addr);
        let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
        cmds.push(tx);
        let recv_tx = recv_tx.clone();
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(Cmd::Dial(a)) => { let _ = swarm.dial(a); }
                        Some(Cmd::Publish(d)) => { let _ = swarm.behaviour_mut().publish(topic.clone(), d); }
                        None => break,
                    },
                    ev = swarm.select_next_some() => {
                        if let SwarmEvent::Behaviour(gossipsub::Event::Message { message, .. }) = ev {
                            let _ = recv_tx.send((i, message.data, Instant::now()));
                        }
                    }
                }
            }
        }));
    }
    // Each node dials up to 4 random earlier ones.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for (i, cmd) in cmds.iter().enumerate().skip(1) {
        for _ in 0..4.min(i) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let j = (x % i as u64) as usize;
            let _ = cmd.send(Cmd::Dial(addrs[j].clone()));
        }
    }
    // Wait for the mesh: probes until one reaches everybody.
    let mut probe = 0u64;
    let formed = Instant::now();
    loop {
        probe += 1;
        let tag = format!("probe{probe}").into_bytes();
        let _ = cmds[0].send(Cmd::Publish(tag.clone()));
        let mut seen = std::collections::HashSet::new();
        let wait = Instant::now();
        while wait.elapsed() < Duration::from_secs(2) {
            if let Ok(Some((i, d, _))) =
                tokio::time::timeout(Duration::from_millis(100), recv_rx.recv()).await
                && d == tag
            {
                seen.insert(i);
            }
            if seen.len() == n - 1 {
                break;
            }
        }
        if seen.len() == n - 1 {
            break;
        }
        anyhow::ensure!(
            formed.elapsed() < Duration::from_secs(300),
            "baseline mesh did not form"
        );
    }
    while recv_rx.try_recv().is_ok() {}

    let lo_before = loopback_rx_bytes();
    let (cpu_before, cpu_t0) = (process_cpu_seconds(), Instant::now());
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut sent = Vec::with_capacity(posts);
    for i in 0..posts {
        tokio::time::sleep_until((start + interval * i as u32).into()).await;
        let author = i % 3.min(n);
        // Same size as a Samizdat post on the wire (~380 bytes); unique per message.
        let mut data = text(i).into_bytes();
        data.resize(380, b'.');
        sent.push((data.clone(), author, Instant::now()));
        let _ = cmds[author].send(Cmd::Publish(data));
    }
    let cpu_cores = (process_cpu_seconds() - cpu_before) / cpu_t0.elapsed().as_secs_f64();
    let expected = posts * (n - 1);
    let mut got: HashMap<Vec<u8>, Vec<(usize, Instant)>> = HashMap::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while count < expected && Instant::now() < deadline {
        if let Ok(Some((i, d, t))) =
            tokio::time::timeout(Duration::from_millis(100), recv_rx.recv()).await
        {
            got.entry(d).or_default().push((i, t));
            count += 1;
        }
    }
    let lo_bytes = loopback_rx_bytes().saturating_sub(lo_before);
    let mut latencies = Vec::with_capacity(expected);
    for (data, a, t0) in &sent {
        for (i, t) in got.get(data).into_iter().flatten() {
            if i != a {
                latencies.push(t.saturating_duration_since(*t0).as_secs_f64() * 1000.0);
            }
        }
    }
    drop(cmds);
    for t in tasks {
        let _ = t.await;
    }
    latencies.sort_by(f64::total_cmp);
    Ok(Run {
        nodes: n,
        delivered: latencies.len(),
        expected,
        wire_bytes_per_delivery: lo_bytes as f64 / latencies.len().max(1) as f64,
        latencies,
        connections: (0, 0.0, 0),
        acks: Vec::new(),
        cpu_cores,
        idle: None,
    })
}

/// Connections each node holds now: (max, mean), and the most any node held at once.
pub async fn connections_per_node(handles: &[NodeHandle]) -> (usize, f64, usize) {
    let (mut max, mut sum, mut peak) = (0, 0, 0);
    for h in handles {
        if let Ok(info) = h.info().await {
            max = max.max(info.connections);
            sum += info.connections;
            peak = peak.max(info.connections_peak);
        }
    }
    (max, sum as f64 / handles.len().max(1) as f64, peak)
}

/// CPU the process spends per second with `n` idle nodes on one channel (background work:
/// DHT, gossip heartbeats, probes, sync rounds), as a fraction of one core; and the mean
/// number of peers each node stays connected to.
pub async fn idle_cpu(n: usize, seconds: u64) -> Result<(f64, f64)> {
    let (cluster, _, _) = channel_mesh(n, 1).await?;
    if settle_secs() == 0 {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    settle().await;
    let handles: Vec<NodeHandle> = cluster.nodes.iter().map(|n| n.handle()).collect();
    let idle = measure_idle(&handles, seconds).await;
    drop(handles);
    cluster.stop().await;
    Ok(idle)
}

/// CPU the process uses per second over `seconds` (a fraction of one core), and the mean
/// number of peers per node after.
async fn measure_idle(handles: &[NodeHandle], seconds: u64) -> (f64, f64) {
    let (c0, t0) = (process_cpu_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let used = (process_cpu_seconds() - c0) / t0.elapsed().as_secs_f64();
    let mut peers = 0;
    for h in handles {
        peers += h.peers().await.map(|p| p.len()).unwrap_or(0);
    }
    (used, peers as f64 / handles.len().max(1) as f64)
}
