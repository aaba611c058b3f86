//! Churn: a channel mesh in which a fifth of the nodes leave and as many newcomers join while
//! three authors post. Reports delivery to the nodes present (those that were there when a
//! post was made and still are), latency, and how soon each newcomer holds the whole history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use samizdat_node::channel::PostDraft;
use samizdat_node::node::views::Event;
use samizdat_node::node::{FollowTarget, NodeHandle};
use serde_json::{Value, json};

use crate::harness::round;
use crate::mesh::{NODES, channel_mesh};

/// Post id → (receiving node, when).
type Receipts = Arc<Mutex<HashMap<String, Vec<(usize, Instant)>>>>;

pub fn run(quick: bool) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let n = NODES.get().copied().unwrap_or(if quick { 10 } else { 200 });
    let (posts, rate) = if quick { (40, 10.0) } else { (300, 5.0) };
    eprintln!("   churn: {n} nodes, a fifth replaced while {posts} posts go out at {rate}/s");
    rt.block_on(churn(n.max(5), posts, rate))
}

/// Counts `node`'s "stored" events into `receipts`.
fn listen(h: &NodeHandle, node: usize, receipts: &Receipts) -> tokio::task::JoinHandle<()> {
    let mut rx = h.subscribe();
    let receipts = receipts.clone();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(Event::Post { post }) => {
                    if let Ok(mut r) = receipts.lock() {
                        r.entry(post.id).or_default().push((node, Instant::now()));
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    })
}

async fn churn(n: usize, posts: usize, rate: f64) -> Result<Value> {
    let (mut cluster, id, authors) = channel_mesh(n, 3).await?;
    crate::mesh::settle().await;
    let link = cluster.nodes[0]
        .handle()
        .channel_with_link(id, false)
        .await?
        .link
        .context("link")?;
    let invite: samizdat_node::channel::Invite = link.parse()?;
    let receipts: Receipts = Arc::default();
    let mut handles: Vec<NodeHandle> = cluster.nodes.iter().map(|n| n.handle()).collect();
    let mut listeners: Vec<_> = handles
        .iter()
        .enumerate()
        .map(|(i, h)| listen(h, i, &receipts))
        .collect();
    // When each node came and went (the first n were there from the start).
    let start = Instant::now();
    let mut joined: Vec<Instant> = vec![start; n];
    let mut left: Vec<Option<Instant>> = vec![None; n];
    // A fifth of the followers leave, spread over the run, each replaced by a newcomer.
    let leavers: Vec<usize> = (authors.len()..n).step_by(5).collect();
    let k = leavers.len();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let run_for = interval * posts as u32;
    let churn_at: Vec<Duration> = (0..k)
        .map(|j| run_for.mul_f64((j as f64 + 0.5) / k as f64))
        .collect();
    let mut next_churn = 0;
    let mut newcomers: Vec<usize> = Vec::new();
    let mut sent: Vec<(String, usize, Instant)> = Vec::with_capacity(posts);
    let mut inflight = futures::stream::FuturesUnordered::new();
    for i in 0..posts {
        let due = start + interval * i as u32;
        while next_churn < k && start + churn_at[next_churn] <= due {
            let gone = leavers[next_churn];
            cluster.leave(gone);
            left[gone] = Some(Instant::now());
            let new = cluster.add_node().await?;
            let h = cluster.nodes[new].handle();
            listeners.push(listen(&h, new, &receipts));
            h.follow(FollowTarget::Invite(Box::new(invite.clone())))
                .await?;
            joined.push(Instant::now());
            left.push(None);
            handles.push(h);
            newcomers.push(new);
            next_churn += 1;
        }
        tokio::time::sleep_until(due.into()).await;
        let a = authors[i % authors.len()];
        let h = handles[a].clone();
        inflight.push(async move {
            let t0 = Instant::now();
            let r = h
                .post(
                    id,
                    PostDraft {
                        text: format!("churn post {i}"),
                        ..Default::default()
                    },
                )
                .await;
            (r, a, t0)
        });
        while let Some(Some((r, a, t0))) = futures::FutureExt::now_or_never(inflight.next()) {
            sent.push((r?.id, a, t0));
        }
    }
    while let Some((r, a, t0)) = inflight.next().await {
        sent.push((r?.id, a, t0));
    }
    // Live delivery: every post to every node there when it was made and still there.
    let present = |node: usize, t0: Instant| joined[node] <= t0 && left[node].is_none();
    let expected: usize = sent
        .iter()
        .map(|(_, a, t0)| {
            (0..handles.len())
                .filter(|&x| x != *a && present(x, *t0))
                .count()
        })
        .sum();
    let count = || -> usize {
        receipts
            .lock()
            .map(|r| {
                sent.iter()
                    .map(|(pid, a, t0)| {
                        r.get(pid).map_or(0, |v| {
                            v.iter()
                                .filter(|(x, t)| x != a && present(*x, *t0) && *t >= *t0)
                                .count()
                        })
                    })
                    .sum()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = count();
    let mut latencies: Vec<f64> = Vec::new();
    if let Ok(r) = receipts.lock() {
        for (pid, a, t0) in &sent {
            for (x, t) in r.get(pid).into_iter().flatten() {
                if x != a && present(*x, *t0) {
                    latencies.push(t.saturating_duration_since(*t0).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    // History: each newcomer ends up holding every post (and the authors' probes), by history
    // sync for what was posted before it came.
    let want = (posts + authors.len()) as u64;
    let mut complete_after: Vec<f64> = Vec::new();
    let history_deadline = Instant::now() + Duration::from_secs(120);
    for &x in &newcomers {
        loop {
            let held = handles[x].channel(id).await.map(|c| c.posts).unwrap_or(0);
            if held >= want {
                complete_after.push(joined[x].elapsed().as_secs_f64());
                break;
            }
            if Instant::now() > history_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for l in listeners {
        l.abort();
    }
    drop(handles);
    cluster.stop().await;
    let ratio = delivered as f64 / expected.max(1) as f64;
    eprintln!(
        "   churn: {k} left, {k} joined; delivery {delivered}/{expected} ({ratio:.4}); p50 {:.1} ms, p99 {:.1} ms; {}/{k} newcomers hold the whole history",
        pct(0.5),
        pct(0.99),
        complete_after.len(),
    );
    let mean = complete_after.iter().sum::<f64>() / complete_after.len().max(1) as f64;
    let max = complete_after.iter().copied().fold(0.0, f64::max);
    Ok(json!({
        "nodes": n,
        "left": k,
        "joined": k,
        "posts": posts,
        "rate_posts_per_s": rate,
        "expected": expected,
        "delivered": delivered,
        "delivery_ratio": round(ratio, 4),
        "p50_ms": round(pct(0.5), 1),
        "p99_ms": round(pct(0.99), 1),
        "newcomers_with_full_history": complete_after.len(),
        "history_complete_s_mean": round(mean, 1),
        "history_complete_s_max": round(max, 1),
    }))
}
