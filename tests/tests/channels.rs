//! Public channels end to end: real `samizdat` and `samizdat-bootstrap` processes on loopback.

use std::time::Duration;

use anyhow::{Context, Result};
use libp2p::identity::ed25519;
use prost::Message;
use samizdat_node::channel::{AdminCert, ChannelId, Post, PostDraft};
use samizdat_proto::v1;
use samizdat_tests::attacker::Attacker;
use samizdat_tests::{BootstrapProc, NodeProc, files_containing, wait_for};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(90);

/// A bootstrap peer, an owner with a channel, and followers that joined by link.
struct Net {
    boot: BootstrapProc,
    owner: NodeProc,
    followers: Vec<NodeProc>,
    channel: String,
}

fn net(followers: usize) -> Result<Net> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::new("owner")?;
    owner.start(&boot.addrs)?;
    let ch = owner.json(&["channel", "create", "news"])?;
    let channel = ch["id"].as_str().context("id")?.to_string();
    let link = ch["link"].as_str().context("link")?.to_string();
    assert!(link.starts_with("samizdat://"), "link: {link}");
    let mut fs = Vec::new();
    for i in 0..followers {
        let mut f = NodeProc::new(&format!("follower{i}"))?;
        f.start(&boot.addrs)?;
        f.cli_ok(&["channel", "follow", &link])?;
        fs.push(f);
    }
    for f in &fs {
        f.wait_topic_peers(&channel, 1)?;
    }
    Ok(Net {
        boot,
        owner,
        followers: fs,
        channel,
    })
}

fn texts(h: &[Value]) -> Vec<String> {
    h.iter()
        .map(|p| p["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn fifty_posts_reach_both_followers_in_order_and_survive_a_restart() -> Result<()> {
    let mut n = net(2)?;
    let mut ids = Vec::new();
    for i in 1..=50 {
        let p = n
            .owner
            .json(&["channel", "post", &n.channel, &format!("post number {i}")])?;
        ids.push(p["id"].as_str().context("post id")?.to_string());
    }
    let expected: Vec<String> = (1..=50).map(|i| format!("post number {i}")).collect();
    for f in &n.followers {
        let h = f.wait_history(&n.channel, 50, LONG)?;
        assert_eq!(h.len(), 50, "{} holds extra posts", f.name);
        assert_eq!(texts(&h), expected, "{} order or content differs", f.name);
        let seqs: Vec<u64> = h.iter().filter_map(|p| p["seq"].as_u64()).collect();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        let got: Vec<String> = h
            .iter()
            .filter_map(|p| p["id"].as_str().map(String::from))
            .collect();
        assert_eq!(got, ids, "post ids differ at {}", f.name);
        for p in &h {
            assert_eq!(p["author"].as_str(), Some(n.channel.as_str()));
            assert!(p["timestamp"].as_u64().is_some());
        }
    }
    // Restart one follower: its history comes back from its encrypted store.
    let f = &mut n.followers[0];
    f.stop();
    f.start(&n.boot.addrs)?;
    let h = f.history(&n.channel)?;
    assert_eq!(texts(&h), expected);
    // And it keeps receiving after the restart.
    f.wait_topic_peers(&n.channel, 1)?;
    n.owner
        .json(&["channel", "post", &n.channel, "after restart"])?;
    let h = f.wait_history(&n.channel, 51, LONG)?;
    assert_eq!(
        h.last().and_then(|p| p["text"].as_str()),
        Some("after restart")
    );
    Ok(())
}

fn signed_post_bytes(
    body: &v1::PostBody,
    text: &str,
    signer: &ed25519::Keypair,
    cert: Option<v1::AdminCert>,
) -> v1::SignedPost {
    use sha2::Digest;
    let content = v1::PostContent {
        text: text.into(),
        file: None,
    }
    .encode_to_vec();
    let body = v1::PostBody {
        content_hash: sha2::Sha256::digest(&content).to_vec(),
        ..body.clone()
    }
    .encode_to_vec();
    let mut msg = b"samizdat/v2/post".to_vec();
    msg.extend_from_slice(&body);
    v1::SignedPost {
        signature: signer.sign(&msg),
        body,
        cert,
        content,
    }
}

fn envelope(sp: v1::SignedPost) -> Vec<u8> {
    v1::ChannelMessage {
        kind: Some(v1::channel_message::Kind::Post(sp)),
    }
    .encode_to_vec()
}

#[test]
fn forged_unauthorised_replayed_and_oversized_posts_are_rejected_by_every_node() -> Result<()> {
    let n = net(2)?;
    let channel: ChannelId = n.channel.parse()?;
    let topic = format!("samizdat/channel/{}", n.channel);
    n.owner
        .json(&["channel", "post", &n.channel, "genuine one"])?;
    for f in &n.followers {
        f.wait_history(&n.channel, 1, LONG)?;
    }

    let attacker = Attacker::spawn()?;
    for node in std::iter::once(&n.owner).chain(&n.followers) {
        attacker.dial(&node.addrs()?[0])?;
    }
    attacker.subscribe(&topic)?;
    wait_for("attacker to join the topic", LONG, || {
        attacker.topic_peers(&topic).ok().filter(|p| *p >= 3)
    })?;
    // Capture a genuine post as it travels, to replay it later.
    n.owner
        .json(&["channel", "post", &n.channel, "genuine two"])?;
    let captured = wait_for("attacker to see a genuine post", LONG, || {
        attacker.received().ok().and_then(|r| r.into_iter().next())
    })?;

    let mallory = ed25519::Keypair::generate();
    let base = v1::PostBody {
        channel: channel.as_bytes().to_vec(),
        author: channel.as_bytes().to_vec(),
        seq: 3,
        prev: vec![0; 32],
        timestamp_ms: samizdat_node::channel::now_ms(),
        ..Default::default()
    };
    // 1. Claims to be the channel key, signed by another key.
    let _ = attacker.publish(
        &topic,
        envelope(signed_post_bytes(
            &base,
            "FORGED as the owner",
            &mallory,
            None,
        )),
    );
    // 2. Signed by its own key without a certificate, and with a certificate it made itself.
    let own = v1::PostBody {
        author: mallory.public().to_bytes().to_vec(),
        seq: 1,
        prev: Vec::new(),
        ..base.clone()
    };
    let _ = attacker.publish(
        &topic,
        envelope(signed_post_bytes(
            &own,
            "FORGED unauthorised",
            &mallory,
            None,
        )),
    );
    let self_cert = AdminCert::issue(&mallory, &mallory.public(), 0, None).signed;
    let _ = attacker.publish(
        &topic,
        envelope(signed_post_bytes(
            &own,
            "FORGED self-certified",
            &mallory,
            Some(self_cert),
        )),
    );
    // 3. A genuine post with its text changed (its signed hash no longer matches).
    let v1::ChannelMessage {
        kind: Some(v1::channel_message::Kind::Post(mut genuine)),
        ..
    } = v1::ChannelMessage::decode(captured.as_slice())?
    else {
        anyhow::bail!("captured message is not a post");
    };
    let tampered = v1::PostContent {
        text: "FORGED tampered".into(),
        file: None,
    }
    .encode_to_vec();
    let original_content = std::mem::replace(&mut genuine.content, tampered);
    let _ = attacker.publish(&topic, envelope(genuine.clone()));
    // 4. Replays of the genuine post: verbatim, and re-wrapped so gossipsub sees new bytes
    //    (an unknown field appended): not the canonical encoding, refused before anything.
    genuine.content = original_content;
    let _ = attacker.publish(&topic, captured.clone());
    let mut rewrapped = envelope(genuine);
    rewrapped.extend_from_slice(&[0x78, 0x01]); // field 15, varint 1: ignored by decoders
    let _ = attacker.publish(&topic, rewrapped);
    // 5. Oversized: above the post limit (64 KiB) and above the gossip frame limit (128 KiB).
    for size in [100 * 1024, 300 * 1024] {
        let big = "FORGED ".repeat(size / 7);
        let _ = attacker.publish(
            &topic,
            envelope(signed_post_bytes(&own, &big, &mallory, None)),
        );
    }
    // 6. Garbage.
    let _ = attacker.publish(&topic, b"\xff\xfe garbage, not protobuf".to_vec());

    // The honest owner keeps posting, and that still arrives everywhere.
    n.owner
        .json(&["channel", "post", &n.channel, "genuine three"])?;
    for node in std::iter::once(&n.owner).chain(&n.followers) {
        let h = node.wait_history(&n.channel, 3, LONG)?;
        // Give stragglers a moment, then check nothing forged got in.
        std::thread::sleep(Duration::from_millis(500));
        let h2 = node.history(&n.channel)?;
        assert_eq!(h.len(), h2.len());
        assert_eq!(
            texts(&h2),
            vec!["genuine one", "genuine two", "genuine three"],
            "{} stored something it should not have",
            node.name
        );
    }
    // The nodes it reached scored the attacker down for its invalid posts and disconnected it.
    wait_for("a node to graylist the attacker", LONG, || {
        std::iter::once(&n.owner)
            .chain(&n.followers)
            .any(|node| {
                node.json(&["id"])
                    .ok()
                    .and_then(|v| v["graylisted_peers"].as_u64())
                    .is_some_and(|g| g >= 1)
            })
            .then_some(())
    })?;
    // The owner's API refuses an oversized post with a clear error.
    let out = n
        .owner
        .cli(&["channel", "post", &n.channel, &"x".repeat(17 * 1024)])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limit"), "unclear error: {err}");
    // A valid post from a key the channel never authorised does not verify locally either.
    assert!(
        Post::sign(
            &channel,
            &mallory,
            None,
            1,
            None,
            1,
            PostDraft {
                text: "x".into(),
                ..Default::default()
            }
        )
        .is_err()
    );
    Ok(())
}

#[test]
fn the_store_holds_none_of_the_posted_plaintext() -> Result<()> {
    let n = net(1)?;
    let marker = "PLAINTEXT-CANARY-7f3a";
    for i in 0..5 {
        n.owner
            .json(&["channel", "post", &n.channel, &format!("{marker} {i}")])?;
    }
    n.followers[0].wait_history(&n.channel, 5, LONG)?;
    for node in [&n.owner, &n.followers[0]] {
        for needle in [marker.as_bytes(), b"news".as_slice()] {
            let hits = files_containing(&node.home().join("store"), needle);
            assert!(
                hits.is_empty(),
                "{} has {:?} in {hits:?}",
                node.name,
                String::from_utf8_lossy(needle)
            );
        }
        let hits = files_containing(node.home(), marker.as_bytes());
        assert!(hits.is_empty(), "{}: plaintext in {hits:?}", node.name);
    }
    Ok(())
}

#[test]
fn errors_are_clear_and_nonzero() -> Result<()> {
    // No daemon running.
    let idle = NodeProc::new("idle")?;
    let out = idle.cli(&["channel", "list", "--json"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no samizdat daemon is running"));
    let out = idle.cli(&["id"])?;
    assert!(!out.status.success());

    // Wrong passphrase, and a missing one.
    let mut locked = NodeProc::bare("locked", &[("SAMIZDAT_PASSPHRASE", "correct horse")])?;
    locked.cli_ok(&["init"])?;
    let mut wrong = NodeProc::bare("wrong", &[("SAMIZDAT_PASSPHRASE", "battery staple")])?;
    std::fs::remove_dir_all(wrong.home()).ok();
    copy_dir(locked.home(), wrong.home())?;
    let err = wrong
        .start(&[])
        .expect_err("wrong passphrase must not start");
    assert!(
        wrong.log().contains("wrong passphrase"),
        "log: {}",
        wrong.log()
    );
    drop(err);
    let mut none = NodeProc::bare("none", &[])?;
    std::fs::remove_dir_all(none.home()).ok();
    copy_dir(locked.home(), none.home())?;
    assert!(none.start(&[]).is_err());
    assert!(none.log().contains("passphrase"), "log: {}", none.log());
    // The right passphrase works.
    locked.start(&[])?;

    // Unknown channel (a valid id nobody here follows), malformed id, bad link.
    let stranger = ChannelId::from_key(&ed25519::Keypair::generate().public()).to_string();
    for args in [
        vec!["channel", "history", stranger.as_str()],
        vec!["channel", "post", stranger.as_str(), "hi"],
        vec!["channel", "history", "not-a-channel"],
        vec!["channel", "follow", "samizdat://channel/garbage"],
    ] {
        let out = locked.cli(&args)?;
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
    let out = locked.cli(&["channel", "history", &stranger])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown channel"));
    // A second daemon on the same home is refused clearly.
    let mut twin = NodeProc::bare("twin", &[("SAMIZDAT_PASSPHRASE", "correct horse")])?;
    std::fs::remove_dir_all(twin.home()).ok();
    std::os::unix::fs::symlink(locked.home(), twin.home())?;
    assert!(twin.start(&[]).is_err());
    assert!(
        twin.log().contains("in use by another process"),
        "log: {}",
        twin.log()
    );
    assert!(locked.is_running());
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest)?;
        } else {
            std::fs::copy(e.path(), dest)?;
        }
    }
    Ok(())
}
