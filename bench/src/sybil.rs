//! Sybils at scale: honest followers of a channel among four times as many hostile peers (the
//! ratio of the gossipsub v1.1 evaluation, where 1,000 honest nodes held full delivery against
//! 4,000 Sybils). The hostile peers look like nodes (identify, DHT server, gossipsub) and:
//! join the channel's topic and forward nothing; answer history sync with forged heads or
//! with genuine heads and then nothing; announce themselves as the channel's followers in the
//! DHT; and dial every honest node the moment it starts (they connect first). Honest nodes
//! join by a link that names only the bootstrap peer (no owner address), as a newcomer does.
//!
//! Reported against the same scenario without hostile peers, in the same run: delivery of the
//! owner's posts to every honest follower, post-to-stored latency, and how long newcomers that
//! join after the posts take to hold the whole history (sync reports `complete`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, identify, kad, noise, request_response, tcp, yamux};
use prost::Message as _;
use samizdat_node::channel::{ChannelId, Invite, PostDraft};
use samizdat_node::net::wire::{ProtoCodec, SYNC_PROTOCOL};
use samizdat_node::node::FollowTarget;
use samizdat_node::node::views::Event;
use samizdat_proto::v1;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::sync::mpsc;

use crate::harness::{Cluster, round, until};
use crate::mesh::Run;

/// Post id → (receiving node, when).
type Receipts = HashMap<String, Vec<(usize, Instant)>>;

/// What one scenario measured.
struct Outcome {
    run: Run,
    /// Seconds each newcomer took to hold the whole history (None: not within the limit).
    newcomers: Vec<Option<f64>>,
    /// Peers the honest nodes cut off.
    cut_off: u64,
}

pub fn run(quick: bool) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let honest = if quick { 4 } else { 10 };
    let hostile = 4 * honest;
    let posts = if quick { 20 } else { 60 };
    let rate = 2.0;
    eprintln!("   sybil: {honest} honest nodes alone");
    let clean = rt.block_on(scenario(honest, 0, posts, rate))?;
    eprintln!("   sybil: {honest} honest nodes among {hostile} hostile peers");
    let attacked = rt.block_on(scenario(honest, hostile, posts, rate))?;
    let secs = |o: &Outcome| -> Value {
        let mut v: Vec<f64> = o.newcomers.iter().flatten().copied().collect();
        v.sort_by(f64::total_cmp);
        json!(v.last().map(|s| round(*s, 1)))
    };
    let complete = |o: &Outcome| o.newcomers.iter().filter(|n| n.is_some()).count();
    Ok(json!({
        "honest_nodes": honest,
        "hostile_peers": hostile,
        "posts": posts,
        "rate_posts_per_s": rate,
        "delivery_ratio": round(attacked.run.ratio(), 4),
        "p50_ms": round(attacked.run.pct(0.5), 1),
        "p99_ms": round(attacked.run.pct(0.99), 1),
        "max_ms": round(attacked.run.pct(1.0), 1),
        "baseline_delivery_ratio": round(clean.run.ratio(), 4),
        "baseline_p50_ms": round(clean.run.pct(0.5), 1),
        "baseline_p99_ms": round(clean.run.pct(0.99), 1),
        "p99_vs_baseline": round(attacked.run.pct(0.99) / clean.run.pct(0.99), 2),
        "newcomers": attacked.newcomers.len(),
        "newcomers_complete": complete(&attacked),
        "newcomer_complete_s": secs(&attacked),
        "baseline_newcomers_complete": complete(&clean),
        "baseline_newcomer_complete_s": secs(&clean),
        "hostile_cut_off": attacked.cut_off,
    }))
}

async fn scenario(honest: usize, hostile: usize, posts: usize, rate: f64) -> Result<Outcome> {
    let mut cluster = Cluster::start_in(1, Some(std::path::Path::new("/dev/shm"))).await?;
    let owner = cluster.nodes[0].handle();
    let ch = owner.create_channel("sybil".into(), String::new()).await?;
    let id: ChannelId = ch.id.parse()?;
    let full: Invite = ch.link.context("link")?.parse()?;
    // A link with the bootstrap peer only: followers find each other through the DHT.
    let link = Invite {
        manifest: full.manifest,
        bootstrap: vec![cluster.boot_addr.clone()],
    };
    let topic = samizdat_node::channel::topic(&id);
    let followers_key = samizdat_node::channel::provider_key(&id).to_vec();
    let mut sybils = Vec::new();
    for i in 0..hostile {
        let role = if i % 2 == 0 {
            Role::Forger
        } else {
            Role::Withholder
        };
        sybils.push(spawn_sybil(
            role,
            cluster.boot_addr.clone(),
            topic.clone(),
            followers_key.clone(),
        )?);
    }
    // Let them take the channel's provider records and join the topic first.
    tokio::time::sleep(Duration::from_secs(if hostile > 0 { 5 } else { 0 })).await;
    let dial_all = |addr: &Multiaddr| {
        for s in &sybils {
            let _ = s.send(addr.clone());
        }
    };
    let owner_addr = owner_address(&owner).await?;
    dial_all(&owner_addr);
    for _ in 1..honest {
        let i = cluster.add_node().await?;
        let h = cluster.nodes[i].handle();
        // They connect first.
        dial_all(&owner_address(&h).await?);
        h.follow(FollowTarget::Invite(Box::new(link.clone())))
            .await?;
    }
    let handles: Vec<_> = cluster.nodes.iter().map(|n| n.handle()).collect();

    // Probes until every follower has one: the honest part of the mesh has formed.
    let mut probes = 0;
    until(
        "every honest follower to receive a probe",
        Duration::from_secs(300),
        || {
            probes += 1;
            let owner = owner.clone();
            let handles = handles.clone();
            async move {
                let _ = owner
                    .post(
                        id,
                        PostDraft {
                            text: format!("probe {probes}"),
                            ..Default::default()
                        },
                    )
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
                for h in &handles[1..] {
                    if h.channel(id).await.ok()?.posts == 0 {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await?;

    // The measured posts.
    let received: Arc<Mutex<Receipts>> = Arc::default();
    let mut listeners = Vec::new();
    for (i, h) in handles.iter().enumerate().skip(1) {
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
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut sent = Vec::with_capacity(posts);
    for i in 0..posts {
        tokio::time::sleep_until((start + interval * i as u32).into()).await;
        let t0 = Instant::now();
        let p = owner
            .post(
                id,
                PostDraft {
                    text: format!("sybil bench post {i}"),
                    ..Default::default()
                },
            )
            .await?;
        sent.push((p.id, t0));
    }
    let expected = posts * (honest - 1);
    let count = |r: &Receipts| -> usize {
        sent.iter()
            .map(|(id, _)| r.get(id).map_or(0, Vec::len))
            .sum()
    };
    // Everything delivered (gossip, or history sync filling gaps), or a generous limit.
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if received.lock().map(|r| count(&r)).unwrap_or(0) >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut latencies = Vec::with_capacity(expected);
    if let Ok(r) = received.lock() {
        for (id, t0) in &sent {
            for (_, t) in r.get(id).into_iter().flatten() {
                latencies.push(t.saturating_duration_since(*t0).as_secs_f64() * 1000.0);
            }
        }
    }
    for l in listeners {
        l.abort();
    }
    latencies.sort_by(f64::total_cmp);
    let run = Run {
        nodes: honest,
        delivered: latencies.len(),
        expected,
        wire_bytes_per_delivery: 0.0,
        latencies,
        ..Default::default()
    };

    // Newcomers: they join now and must end up with the whole history.
    let total = owner.channel(id).await?.posts;
    let mut newcomers = Vec::new();
    for _ in 0..2 {
        let i = cluster.add_node().await?;
        let h = cluster.nodes[i].handle();
        dial_all(&owner_address(&h).await?);
        let t0 = Instant::now();
        h.follow(FollowTarget::Invite(Box::new(link.clone())))
            .await?;
        let done = until(
            "a newcomer to hold the history",
            Duration::from_secs(240),
            || {
                let h = h.clone();
                async move {
                    let s = h.sync_status(id).await.ok()?;
                    (s.complete && s.have >= total).then_some(())
                }
            },
        )
        .await;
        newcomers.push(done.ok().map(|_| t0.elapsed().as_secs_f64()));
    }
    let mut cut_off = 0;
    for n in &cluster.nodes {
        cut_off += n
            .handle()
            .info()
            .await
            .map(|i| i.graylisted_peers)
            .unwrap_or(0);
    }
    drop(sybils);
    cluster.stop().await;
    Ok(Outcome {
        run,
        newcomers,
        cut_off,
    })
}

async fn owner_address(h: &samizdat_node::node::NodeHandle) -> Result<Multiaddr> {
    let info = h.info().await?;
    info.addrs
        .first()
        .context("node address")?
        .parse()
        .context("address")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Answers heads with `u64::MAX` and no proof.
    Forger,
    /// Answers heads with the genuine heads it heard, then serves nothing.
    Withholder,
}

#[derive(NetworkBehaviour)]
struct SybilBehaviour {
    identify: identify::Behaviour,
    kad: samizdat_node::net::Kademlia,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<ProtoCodec<v1::SyncRequest, v1::SyncResponse>>,
}

/// Starts a hostile peer; send it addresses to dial. It stops when the sender is dropped.
fn spawn_sybil(
    role: Role,
    boot: Multiaddr,
    topic: IdentTopic,
    provide: Vec<u8>,
) -> Result<mpsc::UnboundedSender<Multiaddr>> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| {
            let cfg = gossipsub::ConfigBuilder::default()
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                // Nothing it receives is ever validated: nothing is forwarded.
                .validate_messages()
                .message_id_fn(|m: &gossipsub::Message| {
                    gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
                })
                .max_transmit_size(samizdat_node::net::MAX_GOSSIP_BYTES)
                .build()
                .map_err(|e| e.to_string())?;
            let peer_id = key.public().to_peer_id();
            Ok(SybilBehaviour {
                identify: samizdat_node::net::identify(key, "samizdat/0.1.0"),
                kad: samizdat_node::net::kademlia(peer_id, Some(kad::Mode::Server)),
                gossipsub: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Anonymous,
                    cfg,
                )?,
                sync: request_response::Behaviour::with_codec(
                    ProtoCodec::new(
                        samizdat_node::sync::MAX_REQUEST_BYTES,
                        samizdat_node::sync::MAX_RESPONSE_BYTES,
                    ),
                    [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default(),
                ),
            })
        })?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let (boot_peer, boot_base) = samizdat_node::net::split_peer_addr(&boot);
    if let Some(p) = boot_peer {
        swarm.behaviour_mut().kad.add_address(&p, boot_base);
    }
    swarm.dial(boot)?;
    let _ = swarm.behaviour_mut().kad.bootstrap();
    swarm.behaviour_mut().gossipsub.subscribe(&topic)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Multiaddr>();
    tokio::spawn(async move {
        let mut provided = false;
        // The newest genuine header it heard per author, to show as heads.
        let mut heads: HashMap<Vec<u8>, (u64, Vec<u8>)> = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(addr) => { let _ = swarm.dial(addr); }
                    None => break,
                },
                _ = tick.tick() => {
                    if !provided {
                        provided = swarm
                            .behaviour_mut()
                            .kad
                            .start_providing(kad::RecordKey::new(&provide))
                            .is_ok();
                    }
                }
                ev = swarm.select_next_some() => match ev {
                    SwarmEvent::Behaviour(SybilBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                        samizdat_node::net::learn_from_identify(&mut swarm.behaviour_mut().kad, &peer_id, &info);
                    }
                    SwarmEvent::Behaviour(SybilBehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                        remember_head(&mut heads, &message.data);
                    }
                    SwarmEvent::Behaviour(SybilBehaviourEvent::Sync(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. }, ..
                    })) => {
                        let resp = answer(role, &heads, request);
                        let _ = swarm.behaviour_mut().sync.send_response(channel, resp);
                    }
                    _ => {}
                },
            }
        }
    });
    Ok(tx)
}

fn remember_head(heads: &mut HashMap<Vec<u8>, (u64, Vec<u8>)>, data: &[u8]) {
    let Ok(v1::ChannelMessage {
        kind: Some(v1::channel_message::Kind::Post(mut p)),
    }) = v1::ChannelMessage::decode(data)
    else {
        return;
    };
    let Ok(body) = v1::PostBody::decode(p.body.as_slice()) else {
        return;
    };
    p.content = Vec::new();
    let e = heads.entry(body.author).or_insert((0, Vec::new()));
    if body.seq > e.0 {
        *e = (body.seq, p.encode_to_vec());
    }
}

fn answer(
    role: Role,
    heads: &HashMap<Vec<u8>, (u64, Vec<u8>)>,
    req: samizdat_node::net::wire::Frame<v1::SyncRequest>,
) -> v1::SyncResponse {
    use v1::sync_response::Kind as R;
    let samizdat_node::net::wire::Frame::Valid(req) = req else {
        return v1::SyncResponse {
            kind: Some(R::Error("bad request".into())),
        };
    };
    let kind = match (role, req.kind) {
        (Role::Forger, Some(v1::sync_request::Kind::Heads(h))) => R::Heads(v1::SyncHeadsResponse {
            authors: vec![v1::AuthorHead {
                author: h.channel,
                max_seq: u64::MAX,
                head: Vec::new(),
            }],
            ..Default::default()
        }),
        (Role::Withholder, Some(v1::sync_request::Kind::Heads(_))) => {
            R::Heads(v1::SyncHeadsResponse {
                authors: heads
                    .iter()
                    .map(|(a, (seq, head))| v1::AuthorHead {
                        author: a.clone(),
                        max_seq: *seq,
                        head: head.clone(),
                    })
                    .collect(),
                ..Default::default()
            })
        }
        (_, Some(v1::sync_request::Kind::Range(_))) => R::Range(v1::SyncRangeResponse::default()),
        (_, None) => R::Error("empty request".into()),
    };
    v1::SyncResponse { kind: Some(kind) }
}
