//! Private groups end to end: real `samizdat` processes over loopback, an MLS group of ten
//! nodes, a removal that locks the removed member out, and a non-member's forged posts.

use std::time::Duration;

use anyhow::{Context, Result};
use prost::Message as _;
use samizdat_proto::v1;
use samizdat_tests::attacker::Attacker;
use samizdat_tests::{BootstrapProc, NodeProc, files_containing, texts, wait_for};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(90);

fn history(n: &NodeProc, group: &str) -> Result<Vec<Value>> {
    n.list(&["group", "history", group])
}

fn wait_text(n: &NodeProc, group: &str, text: &str) -> Result<Vec<Value>> {
    wait_for(&format!("{} to read {text:?}", n.name), LONG, || {
        history(n, group)
            .ok()
            .filter(|h| texts(h).iter().any(|t| t == text))
    })
}

fn group_entry(n: &NodeProc, group: &str) -> Option<Value> {
    n.json(&["group", "list"])
        .ok()?
        .as_array()?
        .iter()
        .find(|g| g["id"] == group)
        .cloned()
}

fn post(n: &NodeProc, group: &str, text: &str) -> Result<String> {
    let v = n.json(&["group", "post", group, text])?;
    Ok(v["id"].as_str().context("id")?.to_string())
}

#[test]
fn ten_nodes_read_the_group_and_a_removed_member_reads_nothing_posted_after() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut nodes: Vec<NodeProc> = Vec::new();
    for i in 0..10 {
        let mut n = NodeProc::debug(&format!("n{i}"))?;
        n.start(&boot.addrs)?;
        nodes.push(n);
    }
    let t0 = std::time::Instant::now();
    let owner = &nodes[0];
    let ids: Vec<String> = nodes.iter().map(|n| n.peer_id()).collect::<Result<_>>()?;
    let g = owner.json(&["group", "create", "Samizdat editors"])?;
    let group = g["id"].as_str().context("group id")?.to_string();
    assert_eq!(group.len(), 32, "{g}");

    // The owner invites nine peers; each invitation returns once the member is added.
    for (i, peer) in ids.iter().enumerate().skip(1) {
        let v = wait_for(&format!("n{i} to be added"), LONG, || {
            owner.json(&["group", "invite", &group, peer]).ok()
        })?;
        assert!(
            v["members"].as_array().is_some_and(|m| m.len() == i + 1),
            "{v}"
        );
    }
    eprintln!("nine members added {:.1?} after start", t0.elapsed());
    // None of them knows the owner: each invitation waits as a message request until accepted.
    for n in &nodes[1..] {
        n.accept_request_from(&ids[0])?;
    }
    for n in &nodes[1..] {
        let entry = wait_for(&format!("{} to list the group", n.name), LONG, || {
            group_entry(n, &group)
        })?;
        assert_eq!(entry["name"], "Samizdat editors");
        assert_eq!(entry["owner"], ids[0].as_str());
        assert_eq!(entry["active"], true);
    }

    eprintln!("group listed by all {:.1?} after start", t0.elapsed());
    // Posts from the owner and from a member reach all ten, with the contract's fields.
    let t1 = std::time::Instant::now();
    let first = post(owner, &group, "welcome, editors")?;
    post(&nodes[3], &group, "n3 here")?;
    for n in &nodes {
        let h = wait_text(n, &group, "n3 here")?;
        let h = if texts(&h).iter().any(|t| t == "welcome, editors") {
            h
        } else {
            wait_text(n, &group, "welcome, editors")?
        };
        let w = h
            .iter()
            .find(|m| m["text"] == "welcome, editors")
            .context("welcome")?;
        assert_eq!(w["id"], first.as_str());
        assert_eq!(w["author"], ids[0].as_str());
        assert!(w["timestamp"].as_u64().is_some_and(|t| t > 0));
    }

    eprintln!("two posts read by all ten in {:.1?}", t1.elapsed());
    // The owner removes n9: the others move to a new epoch, n9 learns it is out.
    let t2 = std::time::Instant::now();
    let removed = &nodes[9];
    let v = owner.json(&["group", "remove", &group, &ids[9]])?;
    assert!(v["members"].as_array().is_some_and(|m| m.len() == 9), "{v}");
    wait_for("n9 to see its removal", LONG, || {
        group_entry(removed, &group).filter(|e| e["active"] == false)
    })?;
    post(owner, &group, "after the removal: owner")?;
    post(&nodes[5], &group, "after the removal: n5")?;
    for n in &nodes[..9] {
        wait_text(n, &group, "after the removal: owner")?;
        wait_text(n, &group, "after the removal: n5")?;
    }
    eprintln!(
        "removal + two posts read by the nine in {:.1?}",
        t2.elapsed()
    );
    // Give n9 every chance to receive them (gossip, catch-up), then check it has neither.
    std::thread::sleep(Duration::from_secs(3));
    let h = texts(&history(removed, &group)?);
    assert!(
        h.contains(&"n3 here".to_string()),
        "n9 lost its history: {h:?}"
    );
    assert!(
        !h.iter().any(|t| t.starts_with("after the removal")),
        "the removed member read a later post: {h:?}"
    );
    // A removed member can no longer post to the group.
    let out = removed.cli(&["group", "post", &group, "let me back"])?;
    assert!(!out.status.success());
    assert!(nodes[9].is_running());

    // Invited again, n9 reads what is posted from then on, and still not what it missed.
    wait_for("n9 to be added again", LONG, || {
        nodes[0].json(&["group", "invite", &group, &ids[9]]).ok()
    })?;
    wait_for("n9 to be back in the group", LONG, || {
        group_entry(&nodes[9], &group).filter(|e| e["active"] == true)
    })?;
    post(&nodes[0], &group, "welcome back, n9")?;
    wait_text(&nodes[9], &group, "welcome back, n9")?;
    std::thread::sleep(Duration::from_secs(2));
    let h = texts(&history(&nodes[9], &group)?);
    assert!(
        !h.iter().any(|t| t.starts_with("after the removal")),
        "the re-invited member read what was posted while it was out: {h:?}"
    );

    // History is sealed at rest: no node's disk holds the text.
    for n in nodes.iter_mut() {
        n.stop();
    }
    for n in &nodes {
        let hits = files_containing(n.home(), b"after the removal");
        assert!(hits.is_empty(), "{} holds plaintext in {hits:?}", n.name);
    }
    Ok(())
}

#[test]
fn non_members_cannot_post_invite_or_catch_up() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut alice = NodeProc::debug("alice")?;
    let mut bob = NodeProc::debug("bob")?;
    alice.start(&boot.addrs)?;
    bob.start(&boot.addrs)?;
    let (a, b) = (alice.peer_id()?, bob.peer_id()?);
    let group = alice.json(&["group", "create", "book club"])?["id"]
        .as_str()
        .context("id")?
        .to_string();
    wait_for("bob to be added", LONG, || {
        alice.json(&["group", "invite", &group, &b]).ok()
    })?;
    bob.accept_request_from(&a)?;
    wait_for("bob to list the group", LONG, || group_entry(&bob, &group))?;
    post(&alice, &group, "first chapter")?;
    wait_text(&bob, &group, "first chapter")?;

    // Mallory knows the group id (say, from a former member) and builds an MLS group with
    // the same id, then posts into the group's topic and hands the post over directly.
    let mallory = Attacker::spawn()?;
    mallory.dial(&bob.addrs()?[0])?;
    let group_id: samizdat_node::group::GroupId = group.parse()?;
    let gid = group_id.as_bytes().to_vec();
    let topic = samizdat_node::group::topic(&group_id).to_string();
    mallory.subscribe(&topic)?;
    wait_for("mallory to see bob on the topic", LONG, || {
        (mallory.topic_peers(&topic).ok()? > 0).then_some(())
    })?;
    let fake =
        samizdat_node::mls::MlsClient::new(libp2p::identity::ed25519::Keypair::generate(), None)?;
    fake.group_create_with_id(&gid)?;
    // One add puts the fake group in the real one's epoch (Bob's first), so Bob must actually
    // try, and fail, to decrypt rather than skip an epoch before his own.
    let extra_key = libp2p::identity::ed25519::Keypair::generate();
    let extra_peer =
        libp2p::PeerId::from_public_key(&libp2p::identity::PublicKey::from(extra_key.public()));
    let extra = samizdat_node::mls::MlsClient::new(extra_key, None)?;
    fake.group_add(&gid, &extra_peer, &extra.key_package()?)?;
    let body = v1::DmBody {
        id: vec![1; 16],
        text: "forged by mallory".into(),
        sent_ms: samizdat_node::channel::now_ms(),
        seq: 1,
        expires_at_ms: 0,
        attachment: None,
        conversation: Vec::new(),
    };
    let forged = fake.encrypt(&gid, &body.encode_to_vec())?;
    let wire = v1::GroupWire {
        sent_ms: body.sent_ms,
        mls_message: forged.clone(),
    };
    mallory.publish(&topic, wire.encode_to_vec())?;
    mallory.publish(&topic, b"not a group message".to_vec())?;
    let bob_peer: libp2p::PeerId = b.parse()?;
    let req = |kind| v1::DmRequest { kind: Some(kind) }.encode_to_vec();
    let envelope = v1::DmEnvelope {
        sender: mallory.peer_id.to_bytes(),
        recipient: bob_peer.to_bytes(),
        sent_ms: body.sent_ms,
        expires_ms: body.sent_ms + 60_000,
        mls_message: forged,
        group_invite: Vec::new(),
    };
    let raw = mallory.dm_raw(
        bob_peer,
        req(v1::dm_request::Kind::Deliver(v1::DmDeliver {
            envelopes: vec![envelope],
        })),
    )?;
    let r = v1::DmResponse::decode(raw.as_slice())?;
    assert!(!r.error.is_empty(), "forged group post accepted: {r:?}");
    // A catch-up request from a non-member gets nothing.
    let raw = mallory.dm_raw(
        bob_peer,
        req(v1::dm_request::Kind::GroupSync(v1::GroupSync {
            group_id: gid.clone(),
            since_ms: 0,
            epoch: u64::MAX,
        })),
    )?;
    let r = v1::DmResponse::decode(raw.as_slice())?;
    assert!(r.group_messages.is_empty(), "{r:?}");
    assert!(r.error.contains("not a member"), "{r:?}");
    // A Welcome "invitation" that is garbage.
    let invite = v1::DmEnvelope {
        sender: mallory.peer_id.to_bytes(),
        recipient: bob_peer.to_bytes(),
        sent_ms: body.sent_ms,
        expires_ms: body.sent_ms + 60_000,
        mls_message: b"\x00\x01garbage welcome".to_vec(),
        group_invite: vec![9; 40],
    };
    let raw = mallory.dm_raw(
        bob_peer,
        req(v1::dm_request::Kind::Deliver(v1::DmDeliver {
            envelopes: vec![invite],
        })),
    )?;
    let r = v1::DmResponse::decode(raw.as_slice())?;
    assert!(!r.error.is_empty(), "{r:?}");

    wait_for("bob to reject the forged gossip", LONG, || {
        bob.log().contains("group message rejected").then_some(())
    })?;
    // Nothing of it stored; the group still works; only the owner invites or removes.
    post(&alice, &group, "second chapter")?;
    let h = texts(&wait_text(&bob, &group, "second chapter")?);
    assert_eq!(h, ["first chapter", "second chapter"]);
    assert_eq!(
        bob.json(&["group", "list"])?.as_array().map(|l| l.len()),
        Some(1)
    );
    let out = bob.cli(&["group", "remove", &group, &a])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("owner"));
    let out = bob.cli(&["group", "invite", &group, &mallory.peer_id.to_string()])?;
    assert!(!out.status.success());
    // Unknown and malformed group ids: clear errors.
    let out = bob.cli(&["group", "history", "00112233445566778899aabbccddeeff"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown group"));
    let out = bob.cli(&["group", "post", "not-a-group", "x"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a group id"));
    assert!(bob.is_running() && alice.is_running());
    Ok(())
}

#[test]
fn a_member_away_catches_up_and_disappearing_messages_vanish_everywhere() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut alice = NodeProc::debug("alice")?;
    let mut bob = NodeProc::debug("bob")?;
    let mut carol = NodeProc::debug("carol")?;
    for n in [&mut alice, &mut bob, &mut carol] {
        n.start(&boot.addrs)?;
    }
    let (a, b, c) = (alice.peer_id()?, bob.peer_id()?, carol.peer_id()?);
    let group = alice.json(&["group", "create", "night shift"])?["id"]
        .as_str()
        .context("id")?
        .to_string();
    for p in [&b, &c] {
        wait_for("a member to be added", LONG, || {
            alice.json(&["group", "invite", &group, p]).ok()
        })?;
    }
    for n in [&bob, &carol] {
        n.accept_request_from(&a)?;
    }
    wait_for("carol to list the group", LONG, || {
        group_entry(&carol, &group)
    })?;
    post(&alice, &group, "before carol left")?;
    wait_text(&carol, &group, "before carol left")?;

    // Carol is away (her node restarts later from disk) while Alice and Bob write.
    carol.stop();
    for i in 1..=3 {
        post(&alice, &group, &format!("while carol was away {i}"))?;
    }
    post(&bob, &group, "bob, while carol was away")?;
    wait_text(&bob, &group, "while carol was away 3")?;
    carol.start(&boot.addrs)?;
    let h = wait_text(&carol, &group, "bob, while carol was away")?;
    let h = if texts(&h).len() >= 5 {
        h
    } else {
        wait_for("carol to catch up on all five", LONG, || {
            history(&carol, &group).ok().filter(|h| h.len() >= 5)
        })?
    };
    let mut got = texts(&h);
    got.sort();
    assert_eq!(
        got,
        [
            "before carol left",
            "bob, while carol was away",
            "while carol was away 1",
            "while carol was away 2",
            "while carol was away 3"
        ],
        "caught up with duplicates or gaps"
    );
    // And she can still write to the group after the restart.
    post(&carol, &group, "back again")?;
    wait_text(&alice, &group, "back again")?;

    // Disappearing messages, in the group and in a direct conversation: read, then gone from
    // every node's history.
    let v = alice.json(&[
        "group",
        "post",
        &group,
        "this one disappears",
        "--expires-in",
        "4s",
    ])?;
    assert!(v["expires_at"].as_u64().is_some(), "{v}");
    let v = alice.json(&["dm", "send", &b, "so does this dm", "--expires-in", "4s"])?;
    assert!(v["expires_at"].as_u64().is_some(), "{v}");
    for n in [&bob, &carol] {
        wait_text(n, &group, "this one disappears")?;
    }
    wait_for("bob to read the dm", LONG, || {
        bob.json(&["dm", "history", &a])
            .ok()
            .filter(|h| h.as_array().is_some_and(|l| !l.is_empty()))
    })?;
    for n in [&alice, &bob, &carol] {
        wait_for(
            &format!("{} to delete the group message", n.name),
            LONG,
            || {
                history(n, &group)
                    .ok()
                    .filter(|h| !texts(h).iter().any(|t| t == "this one disappears"))
            },
        )?;
    }
    for (n, peer) in [(&alice, &b), (&bob, &a)] {
        wait_for(&format!("{} to delete the dm", n.name), LONG, || {
            n.json(&["dm", "history", peer])
                .ok()
                .filter(|h| h.as_array().is_some_and(|l| l.is_empty()))
        })?;
    }
    assert_eq!(history(&carol, &group)?.len(), 6);
    let _ = c;
    Ok(())
}

#[test]
fn attachments_are_encrypted_end_to_end_in_dms_and_groups() -> Result<()> {
    use sha2::Digest;
    let boot = BootstrapProc::start()?;
    let mut alice = NodeProc::debug("alice")?;
    let mut bob = NodeProc::debug("bob")?;
    let mut carol = NodeProc::debug("carol")?;
    for n in [&mut alice, &mut bob, &mut carol] {
        n.start(&boot.addrs)?;
    }
    let (a, b) = (alice.peer_id()?, bob.peer_id()?);
    let dir = tempfile::tempdir()?;
    // 2.5 MiB: three chunks, so segment order and the last-segment flag are exercised.
    let plain: Vec<u8> = (0..(5 * 1024 * 1024 / 2))
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let path = dir.path().join("photo.jpg");
    std::fs::write(&path, &plain)?;
    let digest = sha2::Sha256::digest(&plain);

    // A direct message with the file: Bob sees the attachment and opens it with its key.
    let p = path.to_string_lossy().to_string();
    let sent = alice.json(&["dm", "send", &b, "the photo", "--file", &p])?;
    let f = &sent["file"];
    assert_eq!(f["name"], "photo.jpg");
    assert_eq!(f["size"].as_u64(), Some(plain.len() as u64));
    let h = wait_for("bob to get the dm", LONG, || {
        bob.json(&["dm", "history", &a])
            .ok()
            .filter(|h| h.as_array().is_some_and(|l| !l.is_empty()))
    })?;
    let got = &h[0]["file"];
    assert_eq!(got["cid"], f["cid"]);
    let (cid, key) = (
        got["cid"].as_str().context("cid")?,
        got["key"].as_str().context("key")?,
    );
    let out = dir.path().join("bob.jpg");
    let o = out.to_string_lossy().to_string();
    bob.json(&["file", "get", cid, &o, "--key", key, "--timeout", "60s"])?;
    assert_eq!(sha2::Sha256::digest(std::fs::read(&out)?), digest);

    // Carol can fetch the same cid (anyone can): all she gets is ciphertext, and a wrong key
    // is a clear error.
    let c_out = dir.path().join("carol.bin");
    let co = c_out.to_string_lossy().to_string();
    carol.json(&["file", "get", cid, &co, "--timeout", "60s"])?;
    let sealed = std::fs::read(&c_out)?;
    assert!(sealed.len() > plain.len());
    assert!(!sealed.windows(64).any(|w| w == &plain[1000..1064]));
    let wrong = "00".repeat(32);
    let bad = carol.cli(&["file", "get", cid, &co, "--key", &wrong])?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not decrypt"));

    // In a group: the member reads the attachment; the key is inside the MLS ciphertext.
    let group = alice.json(&["group", "create", "photos"])?["id"]
        .as_str()
        .context("id")?
        .to_string();
    wait_for("bob to be added", LONG, || {
        alice.json(&["group", "invite", &group, &b]).ok()
    })?;
    bob.accept_request_from(&a)?;
    wait_for("bob to list the group", LONG, || group_entry(&bob, &group))?;
    alice.json(&["group", "post", &group, "album", "--file", &p])?;
    let h = wait_text(&bob, &group, "album")?;
    let gf = &h[0]["file"];
    let out2 = dir.path().join("bob2.jpg");
    let o2 = out2.to_string_lossy().to_string();
    bob.json(&[
        "file",
        "get",
        gf["cid"].as_str().context("cid")?,
        &o2,
        "--key",
        gf["key"].as_str().context("key")?,
        "--timeout",
        "60s",
    ])?;
    assert_eq!(sha2::Sha256::digest(std::fs::read(&out2)?), digest);
    // Carol's node relayed and fetched ciphertext only: nothing of the photo on her disk.
    carol.stop();
    assert!(files_containing(carol.home(), &plain[5000..5064]).is_empty());
    Ok(())
}
