//! A censor that joins the network: ordinary-looking peers that attack from inside, against
//! real nodes. Each test mounts one attack of issue 13 with the hostile peer of
//! `samizdat_tests::attacker` and checks the rule that stops it: nothing a peer claims
//! without a signature changes what a node stores, serves or refuses; whatever a peer can make
//! a node keep is bounded per peer and in total; nothing off the wire makes a node panic.

use std::time::Duration;

use anyhow::{Context, Result};
use prost::Message as _;
use samizdat_proto::v1;
use samizdat_tests::attacker::{Attacker, SyncMode, forged_private_message};
use samizdat_tests::{BootstrapProc, NodeProc, wait_for};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(90);
/// Memory an attack may add to a node's peak (issue 13: within 64 MiB of the idle figure).
const MAX_GROWTH_KIB: u64 = 64 * 1024;

fn info(n: &NodeProc) -> Value {
    n.json(&["id"]).unwrap_or(Value::Null)
}

fn graylisted(n: &NodeProc) -> u64 {
    info(n)["graylisted_peers"].as_u64().unwrap_or(0)
}

fn rss(n: &NodeProc) -> u64 {
    n.peak_rss_kib().unwrap_or(0)
}

fn assert_bounded(n: &NodeProc, before_kib: u64, what: &str) {
    let after = rss(n);
    let growth = after.saturating_sub(before_kib);
    eprintln!(
        "{}: peak RSS {} MiB -> {} MiB under {what}",
        n.name,
        before_kib / 1024,
        after / 1024
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "{} grew by {} MiB under {what}",
        n.name,
        growth / 1024
    );
}

fn topic_of(channel: &str) -> String {
    format!("samizdat/channel/{channel}")
}

/// Attacks 1 and 2: one peer answers history sync with heads of `u64::MAX` and no proof,
/// another with the genuine (signed) heads of what it captured and then the posts stripped to
/// headers, as if they had expired. A newcomer that meets only them neither loops, nor stores
/// a single "expired" slot, nor calls the channel complete; both liars are cut off. When the
/// owner returns, the newcomer gets every post and the owner posts as before.
#[test]
fn forged_heads_and_expiry_claims_neither_crash_erase_nor_lock_out() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::debug("owner")?;
    owner.start(&boot.addrs)?;
    let ch = owner.json(&["channel", "create", "contested"])?;
    let channel = ch["id"].as_str().context("id")?.to_string();
    let link = ch["link"].as_str().context("link")?.to_string();
    let topic = topic_of(&channel);

    // The attackers follow the channel like anyone and capture its posts.
    let huge = Attacker::spawn()?;
    let eraser = Attacker::spawn()?;
    for a in [&huge, &eraser] {
        a.dial(&owner.addrs()?[0])?;
        a.subscribe(&topic)?;
        wait_for("an attacker on the topic", LONG, || {
            a.topic_peers(&topic).ok().filter(|p| *p >= 1)
        })?;
    }
    let posts = 20;
    for i in 0..posts {
        owner.post(&channel, &format!("post {i}"))?;
    }
    wait_for("the eraser to capture every post", LONG, || {
        (eraser.received().ok()?.len() >= posts).then_some(())
    })?;
    huge.set_sync_mode(SyncMode::HugeHeads)?;
    eraser.set_sync_mode(SyncMode::ClaimExpired)?;

    // The owner goes away: a newcomer meets only the attackers on the topic.
    owner.stop();
    let mut newcomer = NodeProc::debug("newcomer")?;
    newcomer.start(&boot.addrs)?;
    let rss0 = rss(&newcomer);
    newcomer.follow(&link)?;
    for a in [&huge, &eraser] {
        a.dial(&newcomer.addrs()?[0])?;
    }
    wait_for("the newcomer to cut both liars off", LONG, || {
        (graylisted(&newcomer) >= 2).then_some(())
    })?;
    assert!(newcomer.is_running(), "the newcomer survived");
    let status = newcomer.sync_status(&channel)?;
    assert_eq!(status["have"], 0, "{status}");
    assert_eq!(
        status["complete"], false,
        "nothing proven, nothing complete"
    );
    assert_bounded(&newcomer, rss0, "forged heads and expiry claims");
    assert!(
        newcomer.log().contains("invalid sync answer refused"),
        "the refusal is logged"
    );

    // The owner returns: the newcomer syncs everything, every slot a post, none "expired".
    owner.start(&boot.addrs)?;
    newcomer.cli_ok(&["dial", &owner.addrs()?[0]])?;
    let after = owner.post(&channel, "after the attack")?;
    assert!(after["id"].is_string(), "the owner still posts: {after}");
    let h = newcomer.wait_history(&channel, posts + 1, LONG)?;
    assert_eq!(h.len(), posts + 1);
    let status = wait_for("the newcomer to be complete", LONG, || {
        newcomer
            .sync_status(&channel)
            .ok()
            .filter(|s| s["complete"] == true)
    })?;
    assert_eq!(status["have"], posts as u64 + 1);
    assert_eq!(status["known"], posts as u64 + 1);
    Ok(())
}

/// Attack 3: direct messages for a conversation the victim is not in (real MLS ciphertext of
/// a group only the attacker knows), large and small, by the hundred. They are not kept beyond
/// small per-peer and total bounds, the flooder is cut off, memory stays flat, and a contact's
/// messages (past a key update) still arrive.
#[test]
fn junk_for_conversations_nobody_is_in_is_bounded_and_a_contact_gets_through() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut victim = NodeProc::debug("victim")?;
    let mut friend = NodeProc::debug("friend")?;
    victim.start(&boot.addrs)?;
    friend.start(&boot.addrs)?;
    let (v, f) = (victim.peer_id()?, friend.peer_id()?);
    for (a, b) in [(&victim, &friend), (&friend, &victim)] {
        let card = b.json(&["contact", "card"])?;
        a.json(&["contact", "add", card["link"].as_str().context("link")?])?;
    }
    friend.json(&["dm", "send", &v, "hello before the flood"])?;
    wait_for("the first message", LONG, || {
        let h = victim.json(&["dm", "history", &f]).ok()?;
        (h.as_array()?.len() == 1).then_some(())
    })?;
    let rss0 = rss(&victim);

    let flooder = Attacker::spawn()?;
    flooder.dial(&victim.addrs()?[0])?;
    let victim_id = v.parse()?;
    wait_for("the flooder to connect", LONG, || {
        flooder.is_connected(victim_id).ok().filter(|c| *c)
    })?;
    // 300 of about 1 MiB (the old limit kept 256 of them in memory), then small ones.
    let (taken_big, _) = flooder.dm_junk(victim_id, 300, 1_000_000)?;
    let (taken_small, errors) = flooder.dm_junk(victim_id, 300, 3_000)?;
    eprintln!("victim took {taken_big} large and {taken_small} small junk messages");
    assert!(
        errors.iter().any(|e| e.contains("busy")) || graylisted(&victim) >= 1,
        "the flood met a bound: {errors:?}"
    );
    wait_for("the victim to cut the flooder off", LONG, || {
        (graylisted(&victim) >= 1).then_some(())
    })?;
    let dropped = info(&victim)["dropped"]["held_messages"]
        .as_u64()
        .unwrap_or(0);
    assert!(dropped > 0, "what was dropped is counted");
    assert_bounded(&victim, rss0, "300 MiB of junk direct messages");

    // The contact's messages still arrive, past the key update after 50.
    for i in 0..55 {
        friend.json(&["dm", "send", &v, &format!("message {i}")])?;
    }
    wait_for("the contact's 56 messages", LONG, || {
        let h = victim.json(&["dm", "history", &f]).ok()?;
        (h.as_array()?.len() == 56).then_some(())
    })?;
    assert!(victim.is_running());
    Ok(())
}

/// Attack 4: the channel's manifest (from its public link) and an admin certificate (captured
/// off the topic), replayed verbatim and re-encoded with padding so that each copy is a new
/// gossip message. The follower they are sent to refuses the re-encodings (and cuts the sender
/// off), ignores the verbatim copies it holds already, and forwards none of them: a second
/// listener on the follower hears nothing.
#[test]
fn replayed_and_re_encoded_manifests_and_certificates_are_not_forwarded() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::debug("owner")?;
    let mut follower = NodeProc::debug("follower")?;
    let mut admin = NodeProc::debug("admin")?;
    for n in [&mut owner, &mut follower, &mut admin] {
        n.start(&boot.addrs)?;
    }
    let ch = owner.json(&["channel", "create", "replayed"])?;
    let channel = ch["id"].as_str().context("id")?.to_string();
    let link = ch["link"].as_str().context("link")?.to_string();
    let topic = topic_of(&channel);
    follower.follow(&link)?;
    follower.wait_topic_peers(&channel, 1)?;

    // Both attackers reach the channel only through the follower.
    let replayer = Attacker::spawn()?;
    let listener = Attacker::spawn()?;
    for a in [&replayer, &listener] {
        a.dial(&follower.addrs()?[0])?;
        a.subscribe(&topic)?;
        wait_for("an attacker on the topic", LONG, || {
            a.topic_peers(&topic).ok().filter(|p| *p >= 1)
        })?;
    }
    // A delegation: the certificate crosses the follower once, to both.
    owner.cli_ok(&["channel", "admin", "add", &channel, &admin.peer_id()?])?;
    let is_cert = |m: &Vec<u8>| {
        matches!(
            v1::ChannelMessage::decode(m.as_slice()).map(|c| c.kind),
            Ok(Some(v1::channel_message::Kind::AdminCert(_)))
        )
    };
    let is_manifest = |m: &Vec<u8>| {
        matches!(
            v1::ChannelMessage::decode(m.as_slice()).map(|c| c.kind),
            Ok(Some(v1::channel_message::Kind::Manifest(_)))
        )
    };
    let cert = wait_for("the replayer to capture the certificate", LONG, || {
        replayer.received().ok()?.into_iter().find(|m| is_cert(m))
    })?;
    wait_for("the listener to hear the certificate once", LONG, || {
        (listener
            .received()
            .ok()?
            .iter()
            .filter(|m| is_cert(m))
            .count()
            == 1)
            .then_some(())
    })?;
    let invite: samizdat_node::channel::Invite = link.parse()?;
    let manifest = v1::ChannelMessage {
        kind: Some(v1::channel_message::Kind::Manifest(invite.manifest.signed)),
    }
    .encode_to_vec();

    // Verbatim copies, then copies padded with an unknown field (new bytes each time).
    for round in 0..3u8 {
        let _ = replayer.publish(&topic, manifest.clone());
        let _ = replayer.publish(&topic, cert.clone());
        for base in [&manifest, &cert] {
            let mut padded = base.clone();
            padded.extend_from_slice(&[0x78, round + 1]); // field 15 (v1's "republish")
            let _ = replayer.publish(&topic, padded);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for("the follower to cut the replayer off", LONG, || {
        (graylisted(&follower) >= 1).then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(3));
    let heard = listener.received()?;
    assert_eq!(
        heard.iter().filter(|m| is_cert(m)).count(),
        1,
        "no replayed certificate was forwarded"
    );
    assert_eq!(
        heard.iter().filter(|m| is_manifest(m)).count(),
        0,
        "no replayed manifest was forwarded"
    );
    Ok(())
}

/// Attack 5: one peer announces thousands of random keys and stores hundreds of self-signed
/// records; twenty fresh identities announce themselves as followers of a channel before its
/// real followers. The node still announces its own channel, its records still resolve, and a
/// newcomer that knows only the channel id finds a real follower after the owner has gone.
#[test]
fn dht_stuffing_neither_silences_a_node_nor_hides_a_channels_followers() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::debug("owner")?;
    owner.start(&boot.addrs)?;
    let rss0 = rss(&owner);

    let stuffer = Attacker::spawn()?;
    stuffer.dial(&owner.addrs()?[0])?;
    stuffer.join_dht(&boot.addrs[0])?;
    std::thread::sleep(Duration::from_secs(2));
    // More keys than libp2p's memory store holds in all (4,096), and records signed by
    // identities made for the purpose, each carrying 7 KiB of junk.
    let keys: Vec<Vec<u8>> = (0..4_500u32)
        .map(|i| format!("/stuffing/{i}").into_bytes())
        .collect();
    stuffer.provide(keys)?;
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..300)
        .map(|_| {
            let k = libp2p::identity::ed25519::Keypair::generate();
            let peer = libp2p::PeerId::from_public_key(&k.public().into());
            let rec = samizdat_node::dm::sign_keypackage_record(&k, vec![0x55; 7 * 1024]);
            (samizdat_node::dm::keypackage_key(&peer).to_vec(), rec)
        })
        .collect();
    stuffer.put_records(records)?;
    wait_for("the stuffer's announcements to go out", LONG, || {
        (stuffer.providing().ok()? == 0).then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(3));
    assert_bounded(&owner, rss0, "DHT stuffing");

    // The node still announces what it has: a channel created now is found by its id alone.
    let ch = owner.json(&["channel", "create", "findable"])?;
    let channel = ch["id"].as_str().context("id")?.to_string();
    let link = ch["link"].as_str().context("link")?.to_string();
    owner.post(&channel, "hello")?;
    // Any node looking the channel up in the DHT finds its owner (its announcement got in).
    let key = format!("/samizdat/channel-followers/{channel}").into_bytes();
    let prober = Attacker::spawn()?;
    prober.join_dht(&boot.addrs[0])?;
    let owner_id: libp2p::PeerId = owner.peer_id()?.parse()?;
    wait_for("the owner among the channel's providers", LONG, || {
        prober
            .providers(&key)
            .ok()?
            .contains(&owner_id)
            .then_some(())
    })?;
    let mut first = NodeProc::debug("first-reader")?;
    first.start(&boot.addrs)?;
    first.follow(&channel)?;
    first.wait_history(&channel, 1, LONG)?;
    first.stop();
    // What the stuffing could not make the owner keep is counted.
    let dropped = info(&owner)["dropped"]["dht"].as_u64().unwrap_or(0);
    assert!(
        dropped > 1_000,
        "DHT records and providers refused: {dropped}"
    );

    // Twenty identities announce themselves as the channel's followers before its next one.
    let sybils: Vec<Attacker> = (0..20).map(|_| Attacker::spawn()).collect::<Result<_>>()?;
    for s in &sybils {
        s.join_dht(&boot.addrs[0])?;
    }
    std::thread::sleep(Duration::from_secs(2));
    for s in &sybils {
        s.provide(vec![key.clone()])?;
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut follower = NodeProc::debug("follower")?;
    follower.start(&boot.addrs)?;
    follower.follow(&link)?;
    follower.wait_history(&channel, 1, LONG)?;
    // The follower gets a place among the Sybils' provider records, then the owner leaves.
    let follower_id: libp2p::PeerId = follower.peer_id()?.parse()?;
    wait_for("the follower among the channel's providers", LONG, || {
        prober
            .providers(&key)
            .ok()?
            .contains(&follower_id)
            .then_some(())
    })?;
    owner.stop();

    let mut newcomer = NodeProc::debug("newcomer")?;
    newcomer.start(&boot.addrs)?;
    newcomer.follow(&channel)?;
    let h = newcomer.wait_history(&channel, 1, Duration::from_secs(150))?;
    assert_eq!(h[0]["text"], "hello");
    Ok(())
}

/// Attack 6: fresh identities fill a holder's mailbox for an offline victim with back-dated
/// junk. Quotas are per (sender, recipient), the largest sender makes room, and collection
/// takes a turn per sender in arrival order: the contact's mail, deposited after the junk,
/// reaches the victim when it comes back, while the contact itself stays away.
#[test]
fn a_crowd_of_fresh_identities_cannot_fill_a_mailbox_or_get_ahead_of_a_contact() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut holder = NodeProc::debug("holder")?;
    let mut victim = NodeProc::debug("victim")?;
    let mut friend = NodeProc::debug("friend")?;
    for n in [&mut holder, &mut victim, &mut friend] {
        n.start(&boot.addrs)?;
    }
    let (v, f) = (victim.peer_id()?, friend.peer_id()?);
    for (a, b) in [(&victim, &friend), (&friend, &victim)] {
        let card = b.json(&["contact", "card"])?;
        a.json(&["contact", "add", card["link"].as_str().context("link")?])?;
    }
    friend.json(&["dm", "send", &v, "first, while online"])?;
    wait_for("the first message", LONG, || {
        let h = victim.json(&["dm", "history", &f]).ok()?;
        (h.as_array()?.len() == 1).then_some(())
    })?;
    victim.stop();
    let rss0 = rss(&holder);

    let holder_id = holder.peer_id()?.parse()?;
    let victim_id = v.parse()?;
    let mut taken = 0;
    let sybils: Vec<Attacker> = (0..10).map(|_| Attacker::spawn()).collect::<Result<_>>()?;
    for s in &sybils {
        s.dial(&holder.addrs()?[0])?;
        wait_for("a sybil to connect", LONG, || {
            s.is_connected(holder_id).ok().filter(|c| *c)
        })?;
        taken += s.deposit_junk(holder_id, victim_id, 64, 2_000, 6 * 24 * 3_600_000)?;
    }
    eprintln!("holder took {taken} junk envelopes for the victim");
    assert!(taken >= 512, "the sybils filled the victim's share first");

    // The friend writes while the victim is away, and deposits with the holder.
    friend.cli_ok(&["dial", &holder.addrs()?[0]])?;
    friend.json(&["dm", "send", &v, "while you were away"])?;
    wait_for("the holder to take the friend's mail", LONG, || {
        holder
            .log()
            .contains(&format!("peer={f}"))
            .then_some(())
            .filter(|_| holder.log().contains("mail held for an offline peer"))
    })?;
    std::thread::sleep(Duration::from_secs(2));
    friend.stop();
    assert_bounded(&holder, rss0, "mailbox stuffing");

    // The victim returns; only the holder has the message.
    victim.start(&boot.addrs)?;
    victim.cli_ok(&["dial", &holder.addrs()?[0]])?;
    let h = wait_for("the friend's mail to arrive", LONG, || {
        let h = victim.json(&["dm", "history", &f]).ok()?;
        h.as_array().filter(|h| h.len() == 2).cloned()
    })?;
    assert_eq!(h[1]["text"], "while you were away");
    Ok(())
}

/// Attack 7: a peer that knows a group's id puts messages on its topic (and sends them as
/// envelopes) claiming epochs up to `u64::MAX`. Nothing panics, nothing is held for epochs far
/// ahead, and the group goes on.
#[test]
fn forged_group_epochs_neither_panic_nor_stop_a_group() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::debug("owner")?;
    let mut member = NodeProc::debug("member")?;
    owner.start(&boot.addrs)?;
    member.start(&boot.addrs)?;
    let m = member.peer_id()?;
    let group = owner.json(&["group", "create", "targets"])?["id"]
        .as_str()
        .context("id")?
        .to_string();
    wait_for("the member to join", LONG, || {
        owner.json(&["group", "invite", &group, &m]).ok()
    })?;
    member.accept_request_from(&owner.peer_id()?)?;
    owner.json(&["group", "post", &group, "before"])?;
    wait_for("the member to read the group", LONG, || {
        let h = member.json(&["group", "history", &group]).ok()?;
        (h.as_array()?.len() == 1).then_some(())
    })?;

    let gid = data_encoding::HEXLOWER.decode(group.as_bytes())?;
    let topic = samizdat_node::group::topic(&group.parse::<samizdat_node::group::GroupId>()?)
        .hash()
        .into_string();
    let forger = Attacker::spawn()?;
    forger.dial(&member.addrs()?[0])?;
    forger.subscribe(&topic)?;
    wait_for("the forger on the group's topic", LONG, || {
        forger.topic_peers(&topic).ok().filter(|p| *p >= 1)
    })?;
    let now = samizdat_node::channel::now_ms();
    for epoch in [u64::MAX, u64::MAX - 3, u64::MAX / 2, 2, 3, 1_000] {
        let wire = v1::GroupWire {
            sent_ms: now,
            mls_message: forged_private_message(&gid, epoch),
        };
        let _ = forger.publish(&topic, wire.encode_to_vec());
        // The same as an envelope addressed to the member.
        let env = v1::DmEnvelope {
            sender: forger.peer_id.to_bytes(),
            recipient: member.peer_id()?.parse::<libp2p::PeerId>()?.to_bytes(),
            sent_ms: now,
            expires_ms: now + 3_600_000,
            mls_message: forged_private_message(&gid, epoch),
            group_invite: Vec::new(),
        };
        let req = v1::DmRequest {
            kind: Some(v1::dm_request::Kind::Deliver(v1::DmDeliver {
                envelopes: vec![env],
            })),
        };
        let _ = forger.dm_raw(member.peer_id()?.parse()?, req.encode_to_vec());
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(member.is_running(), "the member survived");
    owner.json(&["group", "post", &group, "after"])?;
    wait_for("the member to read on", LONG, || {
        let h = member.json(&["group", "history", &group]).ok()?;
        (h.as_array()?.len() == 2).then_some(())
    })?;
    assert!(
        !member.log().contains("panicked"),
        "nothing panicked:\n{}",
        member.log()
    );
    Ok(())
}

/// Issue 16: a crowd of fresh identities connecting to a node (and joining its channel's
/// topic, so gossipsub keeps every connection open) does not push its connections past the
/// connection manager's high watermark, and the manager never closes the channel's only
/// honest peer: the owner's posts keep arriving.
#[test]
fn a_crowd_of_connections_is_trimmed_and_the_honest_peer_kept() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::debug("owner")?;
    owner.start(&boot.addrs)?;
    let ch = owner.json(&["channel", "create", "crowded"])?;
    let channel = ch["id"].as_str().context("id")?.to_string();
    let link = ch["link"].as_str().context("link")?.to_string();
    let topic = topic_of(&channel);
    let mut victim = NodeProc::debug("victim")?;
    // The victim's topic mesh (up to 12 peers: gossipsub's mesh_n_high) is protected, so the
    // high watermark sits above it: 24 Sybils on the topic are 26 connections.
    let high = 16;
    std::fs::write(
        victim.home().join("config.toml"),
        format!("[connections]\nlow = 3\nhigh = {high}\ngrace = \"2s\"\n"),
    )?;
    victim.start(&boot.addrs)?;
    victim.follow(&link)?;
    owner.post(&channel, "before the crowd")?;
    victim.wait_history(&channel, 1, LONG)?;
    let owner_id = owner.peer_id()?;

    let crowd: Vec<Attacker> = (0..24).map(|_| Attacker::spawn()).collect::<Result<_>>()?;
    let victim_addr = victim.addrs()?[0].clone();
    for a in &crowd {
        a.dial(&victim_addr)?;
        a.subscribe(&topic)?;
    }
    let settled = wait_for("the victim to trim the crowd", LONG, || {
        let i = info(&victim);
        let open = i["connections"].as_u64()?;
        (i["connections_trimmed"].as_u64()? >= 1 && open <= high).then_some(i)
    })?;
    eprintln!(
        "victim: {} connections after trimming {} peers (peak {})",
        settled["connections"], settled["connections_trimmed"], settled["connections_peak"]
    );
    assert!(
        settled["connections_peak"].as_u64().unwrap_or(0) > high,
        "the crowd was above the watermark before: {settled}"
    );
    let peers = victim.json(&["peers"])?;
    assert!(
        peers
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["peer_id"] == owner_id.as_str())),
        "the honest peer is still connected: {peers}"
    );
    owner.post(&channel, "after the crowd")?;
    victim.wait_history(&channel, 2, LONG)?;
    // It stays bounded: nothing redials what was closed.
    std::thread::sleep(Duration::from_secs(3));
    let open = info(&victim)["connections"].as_u64().unwrap_or(u64::MAX);
    assert!(open <= high, "{open} connections, above {high}");
    Ok(())
}
