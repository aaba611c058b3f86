//! History sync throughput: a follower catching up on N posts from one peer on loopback,
//! against a plain TCP copy of the same number of bytes in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use samizdat_node::channel::{ChannelId, Invite, Post, PostDraft};
use samizdat_node::node::FollowTarget;
use serde_json::{Value, json};

use crate::harness::{Cluster, mib, round, tcp_copy, until};

const TEXT_BYTES: usize = 200;

pub fn run(quick: bool) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(measure(if quick { 2_000 } else { 100_000 }))
}

fn text(i: usize) -> String {
    let head = format!("post {i:>8} ");
    format!("{head}{}", "x".repeat(TEXT_BYTES - head.len()))
}

async fn measure(n: usize) -> Result<Value> {
    let cluster = Cluster::start(2).await?;
    let a = cluster.nodes[0].handle();
    let b = cluster.nodes[1].handle();
    let ch = a.create_channel("bench".into(), String::new()).await?;
    let id: ChannelId = ch.id.parse()?;

    // Fill the owner's history through its API, 256 posts in flight (group commit at work).
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let a = a.clone();
            async move {
                a.post(
                    id,
                    PostDraft {
                        text: text(i),
                        ..Default::default()
                    },
                )
                .await
            }
        })
        .buffer_unordered(256)
        .try_collect::<Vec<_>>()
        .await?;
    let post_secs = t.elapsed().as_secs_f64();

    // The size of one such post on the wire (same text length, same fields).
    let key = libp2p::identity::ed25519::Keypair::generate();
    let probe = Post::sign(
        &ChannelId::from_key(&key.public()),
        &key,
        None,
        2,
        Some(samizdat_node::channel::PostId([0; 32])),
        1,
        PostDraft {
            text: text(0),
            ..Default::default()
        },
    )?;
    let wire = probe.wire.len();

    let link: Invite = ch.link.context("link")?.parse()?;
    let t_follow = Instant::now();
    b.follow(FollowTarget::Invite(Box::new(link))).await?;
    until(
        "the follower to find the owner",
        Duration::from_secs(60),
        || {
            let b = b.clone();
            async move { b.channel(id).await.ok().filter(|c| c.peers > 0) }
        },
    )
    .await?;
    let t_connected = Instant::now();
    let st = until("sync to complete", Duration::from_secs(1800), || {
        let b = b.clone();
        async move {
            b.sync_status(id)
                .await
                .ok()
                .filter(|s| s.have as usize >= n && s.complete)
        }
    })
    .await?;
    let sync_secs = t_connected.elapsed().as_secs_f64();
    let discovery_secs = (t_connected - t_follow).as_secs_f64();
    anyhow::ensure!(st.have as usize == n, "follower holds {} of {n}", st.have);
    drop((a, b));
    cluster.stop().await;

    let bytes = n * wire;
    let tcp_secs = tcp_copy(bytes, 64 * 1024).await?;
    let sync_rate = n as f64 / sync_secs;
    let tcp_rate = n as f64 / tcp_secs;
    Ok(json!({
        "posts": n,
        "post_wire_bytes": wire,
        "owner_posts_per_s": round(n as f64 / post_secs, 0),
        "discovery_s": round(discovery_secs, 2),
        "sync_s": round(sync_secs, 2),
        "sync_posts_per_s": round(sync_rate, 0),
        "sync_mib_per_s": round(mib(bytes as u64) / sync_secs, 2),
        "baseline_tcp_posts_per_s": round(tcp_rate, 0),
        "baseline_tcp_mib_per_s": round(mib(bytes as u64) / tcp_secs, 1),
        "sync_vs_tcp": round(sync_rate / tcp_rate, 4),
    }))
}
