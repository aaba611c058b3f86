//! A `samizdat-bootstrap` process under load: memory per connection with thousands of
//! connected peers, and DHT queries per second before its answers slow down. Clients are
//! light libp2p swarms in this process (TCP + noise + yamux + Kademlia client).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, kad, noise, tcp, yamux};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::harness::{binary, round};

#[derive(NetworkBehaviour)]
struct Client {
    kad: samizdat_node::net::Kademlia,
}

enum Cmd {
    Query(oneshot::Sender<Duration>),
    Connected(oneshot::Sender<bool>),
}

async fn client(boot: Multiaddr, boot_id: PeerId) -> Result<mpsc::UnboundedSender<Cmd>> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| Client {
            kad: samizdat_node::net::kademlia(key.public().to_peer_id(), Some(kad::Mode::Client)),
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    swarm
        .behaviour_mut()
        .kad
        .add_address(&boot_id, boot.clone());
    swarm.dial(boot)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
    tokio::spawn(async move {
        let mut pending: std::collections::HashMap<
            kad::QueryId,
            (Instant, oneshot::Sender<Duration>),
        > = Default::default();
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Query(r)) => {
                        let q = swarm.behaviour_mut().kad.get_closest_peers(PeerId::random());
                        pending.insert(q, (Instant::now(), r));
                    }
                    Some(Cmd::Connected(r)) => { let _ = r.send(swarm.is_connected(&boot_id)); }
                    None => break,
                },
                ev = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(ClientEvent::Kad(kad::Event::OutboundQueryProgressed { id, step, .. })) = ev
                        && step.last
                        && let Some((t, r)) = pending.remove(&id)
                    {
                        let _ = r.send(t.elapsed());
                    }
                }
            }
        }
    });
    Ok(tx)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

async fn queries(clients: &[mpsc::UnboundedSender<Cmd>], rate: f64, seconds: f64) -> Vec<f64> {
    let n = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut waits = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until((start + interval * i as u32).into()).await;
        let (tx, rx) = oneshot::channel();
        let _ = clients[i % clients.len()].send(Cmd::Query(tx));
        waits.push(rx);
    }
    let mut out = Vec::with_capacity(n);
    for w in waits {
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(30), w).await {
            out.push(d.as_secs_f64() * 1000.0);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn run(quick: bool) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(measure(quick))
}

async fn measure(quick: bool) -> Result<Value> {
    let conns = if quick { 200 } else { 2000 };
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(binary("samizdat-bootstrap")?)
        .arg("--home")
        .arg(dir.path())
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let line = {
        use std::io::BufRead;
        let out = child.stdout.take().context("stdout")?;
        std::io::BufReader::new(out)
            .lines()
            .next()
            .context("no address")??
    };
    let pid = child.id();
    let full: Multiaddr = line.parse()?;
    let (boot_id, base) = samizdat_node::net::split_peer_addr(&full);
    let boot_id = boot_id.context("peer id")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = rss_mib(pid);

    let mut clients = Vec::with_capacity(conns);
    for chunk in 0..conns.div_ceil(100) {
        for _ in 0..100.min(conns - chunk * 100) {
            clients.push(client(base.clone(), boot_id).await?);
        }
        // Let handshakes finish: the bootstrap peer limits handshakes in progress.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut connected = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        connected = 0;
        for c in &clients {
            let (tx, rx) = oneshot::channel();
            let _ = c.send(Cmd::Connected(tx));
            if rx.await.unwrap_or(false) {
                connected += 1;
            }
        }
        if connected == conns {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = rss_mib(pid);

    // DHT queries per second: latency at a low rate, then up a ladder until it degrades.
    let askers = &clients[..clients.len().min(100)];
    let secs = if quick { 1.5 } else { 3.0 };
    let base_lat = queries(askers, 50.0, secs).await;
    let base_p50 = pct(&base_lat, 0.5).max(0.5);
    let ladder: &[f64] = if quick {
        &[200.0, 800.0]
    } else {
        &[200.0, 500.0, 1000.0, 2000.0, 4000.0]
    };
    let mut held = 50.0;
    let mut steps = Vec::new();
    for &r in ladder {
        let lat = queries(askers, r, secs).await;
        let ok = lat.len() as f64 >= 0.99 * r * secs && pct(&lat, 0.5) <= 2.0 * base_p50;
        steps.push(json!({"rate": r, "answered": lat.len(), "p50_ms": round(pct(&lat, 0.5), 2), "p99_ms": round(pct(&lat, 0.99), 2)}));
        if ok {
            held = r;
        } else {
            break;
        }
    }
    let rss_after = rss_mib(pid);
    drop(clients);
    let _ = child.kill();
    let _ = child.wait();
    Ok(json!({
        "connections": connected,
        "rss_idle_mib": round(rss0, 1),
        "rss_with_connections_mib": round(rss, 1),
        "kib_per_connection": round((rss - rss0) * 1024.0 / connected.max(1) as f64, 1),
        "dht_query_p50_ms_at_50_per_s": round(base_p50, 2),
        "dht_queries_per_s_held": held,
        "dht_ladder": steps,
        "rss_after_queries_mib": round(rss_after, 1),
    }))
}
