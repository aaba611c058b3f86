//! History for newcomers, partitions healing, disappearing messages, hostile sync peers:
//! real `samizdat` processes over loopback.

use std::time::Duration;

use anyhow::{Context, Result};
use samizdat_node::channel::{ChannelId, PostId};
use samizdat_node::store::Store;
use samizdat_tests::attacker::{Attacker, SyncMode};
use samizdat_tests::{BootstrapProc, NodeProc, texts, wait_for};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(120);

fn ids(h: &[Value]) -> Vec<String> {
    h.iter()
        .filter_map(|p| p["id"].as_str().map(String::from))
        .collect()
}

fn create(owner: &NodeProc, name: &str) -> Result<(String, String)> {
    let ch = owner.json(&["channel", "create", name])?;
    Ok((
        ch["id"].as_str().context("id")?.to_string(),
        ch["link"].as_str().context("link")?.to_string(),
    ))
}

#[test]
fn a_newcomer_gets_all_500_posts_from_followers_after_the_owner_left() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::new("owner")?;
    owner.start(&boot.addrs)?;
    let (id, link) = create(&owner, "archive")?;
    let mut followers = Vec::new();
    for i in 0..2 {
        let mut f = NodeProc::new(&format!("follower{i}"))?;
        f.start(&boot.addrs)?;
        f.follow(&link)?;
        followers.push(f);
    }
    for f in &followers {
        f.wait_topic_peers(&id, 1)?;
    }
    for i in 1..=500 {
        owner.post(&id, &format!("archived post {i}"))?;
    }
    let original = owner.history(&id)?;
    assert_eq!(original.len(), 500);
    for f in &followers {
        let h = f.wait_history(&id, 500, LONG)?;
        assert_eq!(ids(&h), ids(&original), "{} differs from the owner", f.name);
    }
    owner.stop();

    let mut newcomer = NodeProc::new("newcomer")?;
    newcomer.start(&boot.addrs)?;
    newcomer.follow(&link)?;
    let h = newcomer.wait_history(&id, 500, LONG)?;
    assert_eq!(ids(&h), ids(&original), "newcomer's history differs");
    assert_eq!(
        texts(&h),
        (1..=500)
            .map(|i| format!("archived post {i}"))
            .collect::<Vec<_>>()
    );
    let st = wait_for("sync to report complete", LONG, || {
        newcomer
            .sync_status(&id)
            .ok()
            .filter(|s| s["complete"] == true)
    })?;
    assert_eq!(st["have"], 500);
    assert_eq!(st["known"], 500);
    Ok(())
}

#[test]
fn partitioned_followers_converge_after_the_partition_heals() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::new("owner")?;
    owner.start(&boot.addrs)?;
    let (id, link) = create(&owner, "split")?;
    let mut admin = NodeProc::new("admin")?;
    let mut f1 = NodeProc::new("f1")?;
    let mut f2 = NodeProc::new("f2")?;
    for n in [&mut admin, &mut f1, &mut f2] {
        n.start(&boot.addrs)?;
        n.follow(&link)?;
        n.wait_topic_peers(&id, 1)?;
    }
    owner.cli_ok(&["channel", "admin", "add", &id, &admin.peer_id()?])?;
    wait_for("the admin certificate to arrive", LONG, || {
        admin
            .json(&["channel", "show", &id])
            .ok()
            .filter(|c| c["role"] == "admin")
    })?;
    owner.post(&id, "before the split")?;
    for n in [&admin, &f1, &f2] {
        n.wait_history(&id, 1, LONG)?;
    }

    // Split: {owner, f1} | {admin, f2}. Each side blocks every node of the other.
    let side_a = [&owner, &f1];
    let side_b = [&admin, &f2];
    let a_ids: Vec<String> = side_a.iter().map(|n| n.peer_id()).collect::<Result<_>>()?;
    let b_ids: Vec<String> = side_b.iter().map(|n| n.peer_id()).collect::<Result<_>>()?;
    for n in side_a {
        for p in &b_ids {
            n.cli_ok(&["block", p])?;
        }
    }
    for n in side_b {
        for p in &a_ids {
            n.cli_ok(&["block", p])?;
        }
    }
    for i in 1..=15 {
        owner.post(&id, &format!("owner during split {i}"))?;
        admin.post(&id, &format!("admin during split {i}"))?;
    }
    // Each side sees only its own half.
    let h1 = f1.wait_history(&id, 16, LONG)?;
    let h2 = f2.wait_history(&id, 16, LONG)?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(f1.history(&id)?.len(), 16, "the partition leaked to f1");
    assert_eq!(f2.history(&id)?.len(), 16, "the partition leaked to f2");
    assert!(texts(&h1).iter().all(|t| !t.starts_with("admin")));
    assert!(texts(&h2).iter().all(|t| !t.starts_with("owner")));

    // Heal.
    for n in side_a {
        for p in &b_ids {
            n.cli_ok(&["unblock", p])?;
        }
    }
    for n in side_b {
        for p in &a_ids {
            n.cli_ok(&["unblock", p])?;
        }
    }
    let all = [&owner, &admin, &f1, &f2];
    let mut histories = Vec::new();
    for n in all {
        histories.push(n.wait_history(&id, 31, LONG)?);
    }
    for (n, h) in all.iter().zip(&histories) {
        assert_eq!(h.len(), 31, "{} holds extra posts", n.name);
        assert_eq!(
            ids(h),
            ids(&histories[0]),
            "{} has a different history",
            n.name
        );
        // Each author's posts keep their order.
        for who in ["owner", "admin"] {
            let seq: Vec<String> = texts(h)
                .into_iter()
                .filter(|t| t.starts_with(who))
                .collect();
            let expected: Vec<String> = (1..=15)
                .map(|i| format!("{who} during split {i}"))
                .collect();
            assert_eq!(seq, expected, "{}: {who}'s posts out of order", n.name);
        }
    }
    Ok(())
}

#[test]
fn an_expired_post_is_deleted_everywhere_and_never_reaches_a_later_follower() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::new("owner")?;
    owner.start(&boot.addrs)?;
    let (id, link) = create(&owner, "ephemeral")?;
    let mut f1 = NodeProc::new("f1")?;
    f1.start(&boot.addrs)?;
    f1.follow(&link)?;
    f1.wait_topic_peers(&id, 1)?;
    owner.post(&id, "stays")?;
    let gone = owner.json(&["channel", "post", &id, "vanishes", "--expires-in", "3s"])?;
    let gone_id = gone["id"].as_str().context("id")?.to_string();
    assert!(gone["expires_at"].as_u64().is_some());
    owner.post(&id, "stays too")?;
    let h = f1.wait_history(&id, 3, LONG)?;
    assert!(texts(&h).contains(&"vanishes".to_string()));
    assert!(h.iter().any(|p| p["expires_at"].as_u64().is_some()));

    for n in [&owner, &f1] {
        wait_for("the post to expire", Duration::from_secs(20), || {
            n.history(&id)
                .ok()
                .filter(|h| !texts(h).contains(&"vanishes".to_string()))
        })?;
    }
    // A later follower never receives it (sync never serves it).
    let mut f2 = NodeProc::new("f2")?;
    f2.start(&boot.addrs)?;
    f2.follow(&link)?;
    wait_for("the newcomer to finish syncing", LONG, || {
        f2.sync_status(&id).ok().filter(|s| s["complete"] == true)
    })?;
    assert_eq!(texts(&f2.history(&id)?), vec!["stays", "stays too"]);

    // On disk: the record is gone from every store, only a tombstone of its id remains.
    let channel: ChannelId = id.parse()?;
    let post: PostId = gone_id.parse()?;
    for n in [&mut owner, &mut f1, &mut f2] {
        n.stop();
        let store = n.open_store()?;
        assert_eq!(store.count(&channel)?, 2, "{} still counts it", n.name);
        let held: Vec<PostId> = store
            .history(&channel, None, 100)?
            .into_iter()
            .map(|(_, p)| p.id)
            .collect();
        assert!(
            !held.contains(&post),
            "{} still holds the expired post",
            n.name
        );
        assert_eq!(
            store.next_expiry()?,
            None,
            "{} has a pending expiry",
            n.name
        );
    }
    Ok(())
}

#[test]
fn forged_out_of_range_and_oversized_sync_pages_are_refused() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::new("owner")?;
    owner.start(&boot.addrs)?;
    let (id, link) = create(&owner, "contested")?;
    let topic = format!("samizdat/channel/{id}");
    let mut honest = NodeProc::new("honest")?;
    honest.start(&boot.addrs)?;
    honest.follow(&link)?;
    honest.wait_topic_peers(&id, 1)?;

    // Attackers listen on the topic while the owner posts, so they hold genuine posts.
    let modes = [
        SyncMode::Forged,
        SyncMode::OutOfRange,
        SyncMode::Oversized,
        SyncMode::Garbage,
    ];
    let attackers: Vec<Attacker> = modes
        .iter()
        .map(|_| Attacker::spawn())
        .collect::<Result<_>>()?;
    for a in &attackers {
        a.dial(&owner.addrs()?[0])?;
        a.subscribe(&topic)?;
    }
    for a in &attackers {
        wait_for("attacker to join", LONG, || {
            a.topic_peers(&topic).ok().filter(|n| *n >= 1)
        })?;
    }
    for i in 1..=30 {
        owner.post(&id, &format!("real {i}"))?;
    }
    let original = owner.history(&id)?;
    honest.wait_history(&id, 30, LONG)?;
    for a in &attackers {
        wait_for("attacker to capture posts", LONG, || {
            a.received().ok().filter(|r| !r.is_empty())
        })?;
    }
    owner.stop();
    honest.stop();
    for (a, m) in attackers.iter().zip(modes) {
        a.set_sync_mode(m)?;
    }

    // A newcomer whose only topic peers are the attackers.
    let mut newcomer = NodeProc::new("newcomer")?;
    newcomer.set_env("RUST_LOG", "samizdat_node=debug");
    newcomer.start(&boot.addrs)?;
    newcomer.follow(&link)?;
    for a in &attackers {
        a.dial(&newcomer.addrs()?[0])?;
    }
    wait_for("every attacker to be asked for history", LONG, || {
        attackers
            .iter()
            .all(|a| a.sync_requests().unwrap_or(0) >= 2)
            .then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        newcomer.history(&id)?.is_empty(),
        "a hostile page was stored"
    );
    let log = newcomer.log();
    assert!(
        log.contains("invalid sync answer refused"),
        "no refusal logged:\n{log}"
    );
    assert!(
        log.contains("exceeds the limit"),
        "oversized frame not refused:\n{log}"
    );
    let st = newcomer.sync_status(&id)?;
    assert_eq!(
        st["complete"], false,
        "sync must not claim completeness: {st}"
    );

    // An honest follower comes back: the newcomer gets exactly the real history.
    honest.start(&boot.addrs)?;
    let h = newcomer.wait_history(&id, 30, LONG)?;
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(ids(&newcomer.history(&id)?), ids(&original));
    assert_eq!(ids(&h), ids(&original));
    Ok(())
}
