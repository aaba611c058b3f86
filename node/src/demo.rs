//! `samizdat demo`: a bootstrap peer and a few nodes in one process on loopback, a channel
//! created, followed and posted to, with the posts shown arriving and stored encrypted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::api::parse_follow_target;
use crate::channel::{ChannelId, PostDraft};
use crate::cli::DemoArgs;
use crate::home::Home;
use crate::net::bootstrap_peer::{BootstrapPeer, BootstrapPeerConfig};
use crate::node::views::Event;
use crate::node::{Node, NodeHandle, NodeOptions};

/// Runs the demo; prints progress (or a JSON summary with `json`).
pub async fn run(args: DemoArgs, json: bool) -> Result<()> {
    let say = |s: String| {
        if !json {
            println!("{s}");
        }
    };
    let shutdown = CancellationToken::new();
    let tmp = tempfile::Builder::new()
        .prefix("samizdat-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let loopback: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/0".parse()?;

    let boot = BootstrapPeer::spawn(
        libp2p::identity::Keypair::generate_ed25519(),
        BootstrapPeerConfig {
            listen: vec![loopback.clone()],
            ..Default::default()
        },
        None,
        shutdown.clone(),
    )
    .await?;
    let boot_addr = boot
        .listen_addrs
        .first()
        .cloned()
        .context("bootstrap peer has no address")?;
    say(format!("bootstrap peer  {boot_addr}"));

    let mut nodes: Vec<(String, Node)> = Vec::new();
    for i in 0..args.nodes {
        let name = format!("node-{}", (b'A' + u8::try_from(i).unwrap_or(0)) as char);
        let home = Home::at(tmp.path().join(&name));
        let node = Node::start(
            &home,
            NodeOptions {
                listen: vec![loopback.clone()],
                bootstrap: vec![boot_addr.clone()],
                init_if_missing: true,
                // All nodes share this host: show discovery through the bootstrap peer.
                mdns: Some(false),
                ..Default::default()
            },
            shutdown.clone(),
        )
        .await?;
        say(format!("{name:<15} {}", node.info().peer_id));
        nodes.push((name, node));
    }
    let handles: Vec<(String, NodeHandle)> = nodes
        .iter()
        .map(|(n, node)| (n.clone(), node.handle()))
        .collect();
    let result = exercise(&handles, args.posts, tmp.path(), &say).await;

    shutdown.cancel();
    for (_, n) in nodes {
        n.stopped().await;
    }
    boot.stopped().await;
    let summary = result?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        say(format!("cleaned up {}", tmp.path().display()));
    }
    Ok(())
}

async fn exercise(
    nodes: &[(String, NodeHandle)],
    posts: u16,
    dir: &std::path::Path,
    say: &impl Fn(String),
) -> Result<serde_json::Value> {
    let (owner_name, owner) = &nodes[0];
    let ch = owner
        .create_channel("demo".into(), "a channel with no server".into())
        .await?;
    let link = ch.link.clone().context("new channel has no link")?;
    let id: ChannelId = ch.id.parse()?;
    say(format!(
        "{owner_name} created channel \"demo\"\n  link: {link}"
    ));

    for (name, n) in &nodes[1..] {
        n.follow(parse_follow_target(&link).map_err(|e| anyhow::anyhow!(e.message))?)
            .await?;
        say(format!("{name} follows it"));
    }
    // Gossipsub forms its mesh on a heartbeat: wait until every follower sees the owner's topic.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, n) in &nodes[1..] {
        while n.channel(id).await?.peers == 0 {
            if Instant::now() > deadline {
                bail!("{name} found no peer on the channel's topic within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let mut subs: Vec<_> = nodes[1..]
        .iter()
        .map(|(n, h)| (n.clone(), h.subscribe()))
        .collect();
    let started = Instant::now();
    for i in 1..=posts {
        owner
            .post(
                id,
                PostDraft {
                    text: format!(
                        "post {i} of {posts}: nobody in the middle can read or block this"
                    ),
                    ..Default::default()
                },
            )
            .await?;
    }
    say(format!("{owner_name} posted {posts} signed posts"));

    let mut received: HashMap<String, u16> = HashMap::new();
    for (name, rx) in &mut subs {
        while received.get(name.as_str()).copied().unwrap_or(0) < posts {
            let ev = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .with_context(|| format!("{name} did not receive every post within 30 s"))?;
            match ev {
                Ok(Event::Post { post }) if post.channel == ch.id => {
                    let n = received.entry(name.clone()).or_default();
                    *n += 1;
                    say(format!(
                        "{name} verified and stored seq {:>3} after {:>4} ms: {}",
                        post.seq,
                        started.elapsed().as_millis(),
                        post.text
                    ));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => bail!("{name} stopped"),
            }
        }
    }

    let mut stored = Vec::new();
    for (name, n) in nodes {
        let (page, _) = n.history(id, None, usize::from(posts) + 10).await?;
        let in_order = page.iter().map(|p| p.seq).eq(1..=u64::from(posts));
        say(format!(
            "{name} history: {} posts, in order: {in_order}",
            page.len()
        ));
        stored.push(serde_json::json!({"node": name, "posts": page.len(), "in_order": in_order}));
    }
    let leaked = plaintext_on_disk(dir, b"nobody in the middle")?;
    say(format!(
        "plaintext of any post found in the nodes' files on disk: {}",
        if leaked {
            "YES (bug)"
        } else {
            "no — history is encrypted at rest"
        }
    ));
    Ok(
        serde_json::json!({"channel": ch.id, "posts": posts, "nodes": stored, "plaintext_on_disk": leaked}),
    )
}

fn plaintext_on_disk(dir: &std::path::Path, needle: &[u8]) -> Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            if plaintext_on_disk(&p, needle)? {
                return Ok(true);
            }
        } else if std::fs::read(&p)?
            .windows(needle.len())
            .any(|w| w == needle)
        {
            return Ok(true);
        }
    }
    Ok(false)
}
