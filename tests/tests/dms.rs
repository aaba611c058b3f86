//! Direct messages end to end: real `samizdat` processes over loopback, MLS conversations,
//! mail held by other peers while the recipient is offline, and hostile input on the protocol.

use std::time::Duration;

use anyhow::{Context, Result};
use prost::Message as _;
use samizdat_proto::v1;
use samizdat_tests::attacker::Attacker;
use samizdat_tests::{BootstrapProc, NodeProc, files_containing, wait_for};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(90);

fn send(from: &NodeProc, to: &str, text: &str) -> Result<String> {
    let v = from.json(&["dm", "send", to, text])?;
    Ok(v["id"].as_str().context("id")?.to_string())
}

fn history(n: &NodeProc, peer: &str) -> Result<Vec<Value>> {
    n.list(&["dm", "history", peer])
}

fn wait_history(n: &NodeProc, peer: &str, count: usize) -> Result<Vec<Value>> {
    wait_for(
        &format!("{} to hold {count} messages with {peer}", n.name),
        LONG,
        || history(n, peer).ok().filter(|h| h.len() >= count),
    )
}

fn texts(h: &[Value]) -> Vec<&str> {
    h.iter().filter_map(|m| m["text"].as_str()).collect()
}

fn wait_log(n: &NodeProc, needle: &str) -> Result<()> {
    wait_for(&format!("{} to log {needle:?}", n.name), LONG, || {
        n.log().contains(needle).then_some(())
    })
}

#[test]
fn two_nodes_chat_both_ways_and_the_peer_holding_their_mail_sees_only_ciphertext() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut alice = NodeProc::debug("alice")?;
    let mut bob = NodeProc::debug("bob")?;
    let mut carol = NodeProc::debug("carol")?;
    // Carol logs everything, so the test can check that no plaintext passes through her.
    carol.set_env("RUST_LOG", "trace");
    for n in [&mut alice, &mut bob, &mut carol] {
        n.start(&boot.addrs)?;
    }
    let (a, b) = (alice.peer_id()?, bob.peer_id()?);
    alice.add_contact_of(&bob)?;
    bob.add_contact_of(&alice)?;

    // Both ways, in order, with the contract's fields.
    let first = send(&alice, &b, "Hello Bob, it is Alice")?;
    let h = wait_history(&bob, &a, 1)?;
    assert_eq!(h[0]["id"], first.as_str());
    assert_eq!(h[0]["from"], a.as_str());
    assert_eq!(h[0]["text"], "Hello Bob, it is Alice");
    assert!(h[0]["timestamp"].as_u64().is_some_and(|t| t > 0));
    send(&bob, &a, "Hi Alice")?;
    let h = wait_history(&alice, &b, 2)?;
    assert_eq!(texts(&h), ["Hello Bob, it is Alice", "Hi Alice"]);
    assert_eq!(h[1]["from"], b.as_str());
    wait_for("alice's message to show as delivered", LONG, || {
        history(&alice, &b)
            .ok()
            .filter(|h| h[0]["delivered"] == true)
    })?;

    // Bob goes offline; Alice writes; her node deposits the ciphertext with mailbox holders
    // (Carol), then Alice goes offline too: only the holders can deliver now.
    bob.stop();
    send(&alice, &b, "secret while you were away 1")?;
    send(&alice, &b, "secret while you were away 2")?;
    wait_for("carol to hold alice's mail", LONG, || {
        carol
            .log()
            .contains("mail held for an offline peer")
            .then_some(())
    })?;
    wait_for("both messages deposited", LONG, || {
        alice.log().contains("accepted=2").then_some(())
    })?;
    alice.stop();
    bob.start(&boot.addrs)?;
    let h = wait_history(&bob, &a, 4)?;
    assert_eq!(
        texts(&h),
        [
            "Hello Bob, it is Alice",
            "Hi Alice",
            "secret while you were away 1",
            "secret while you were away 2"
        ]
    );
    wait_log(&carol, "mail handed over")?;
    // Once, even after more visits to the holders and a restart.
    std::thread::sleep(Duration::from_secs(3));
    bob.stop();
    bob.start(&boot.addrs)?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(history(&bob, &a)?.len(), 4, "a message arrived twice");

    // Carol carried it and saw ciphertext only: nothing readable on her disk or in her logs
    // (at trace level, libp2p's included). Nor on Alice's or Bob's disks: history is sealed.
    let carol_log = carol.log();
    assert!(
        carol_log.len() > 10_000,
        "carol's trace log is too short to mean anything"
    );
    carol.stop();
    bob.stop();
    for secret in [&b"secret while you were away"[..], b"Hello Bob"] {
        assert!(
            !carol_log
                .as_bytes()
                .windows(secret.len())
                .any(|w| w == secret),
            "plaintext in the holder's log"
        );
        for n in [&carol, &alice, &bob] {
            assert!(
                files_containing(n.home(), secret).is_empty(),
                "plaintext on {}'s disk",
                n.name
            );
        }
    }
    Ok(())
}

#[test]
fn a_message_to_a_peer_that_is_offline_is_held_and_received_once() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut carol = NodeProc::debug("carol")?;
    carol.start(&boot.addrs)?;
    // Bob was online once: long enough to publish his KeyPackage and hand out his card.
    let mut bob = NodeProc::debug("bob")?;
    bob.start(&boot.addrs)?;
    wait_log(&bob, "key package published")?;
    let b = bob.peer_id()?;
    let bob_card = bob.json(&["contact", "card"])?;
    bob.stop();

    // Alice has never been connected to Bob. She writes; the conversation starts from his
    // published KeyPackage and the Welcome and message wait with the holders.
    let mut alice = NodeProc::debug("alice")?;
    alice.start(&boot.addrs)?;
    let a = alice.peer_id()?;
    alice.json(&["contact", "add", bob_card["link"].as_str().context("link")?])?;
    let id = send(&alice, &b, "first words, sent while you were offline")?;
    assert_eq!(history(&alice, &b)?.len(), 1);
    wait_log(&alice, "conversation started")?;
    wait_log(&alice, "accepted=2")?;
    alice.stop();

    bob.start(&boot.addrs)?;
    let h = wait_history(&bob, &a, 1)?;
    assert_eq!(h[0]["id"], id.as_str());
    assert_eq!(h[0]["from"], a.as_str());
    assert_eq!(texts(&h), ["first words, sent while you were offline"]);

    // Bob answers while Alice is away; she gets it when she is back.
    send(&bob, &a, "got it")?;
    wait_log(&bob, "accepted=1")?;
    bob.stop();
    alice.start(&boot.addrs)?;
    let h = wait_history(&alice, &b, 2)?;
    assert_eq!(
        texts(&h),
        ["first words, sent while you were offline", "got it"]
    );
    // Received once.
    bob.start(&boot.addrs)?;
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(history(&bob, &a)?.len(), 2);
    assert_eq!(history(&alice, &b)?.len(), 2);
    Ok(())
}

#[test]
fn a_long_conversation_renews_the_keys_of_both_sides_and_loses_nothing() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut alice = NodeProc::debug("alice")?;
    let mut bob = NodeProc::debug("bob")?;
    alice.start(&boot.addrs)?;
    bob.start(&boot.addrs)?;
    let (a, b) = (alice.peer_id()?, bob.peer_id()?);
    alice.add_contact_of(&bob)?;
    send(&alice, &b, "opening")?; // Alice creates the conversation: she is its committer
    wait_history(&bob, &a, 1)?;
    // More than UPDATE_EVERY (50) messages each way: Bob proposes a key update that Alice
    // commits, and Alice commits her own, while messages keep flowing.
    for i in 0..55 {
        send(&bob, &a, &format!("bob {i}"))?;
    }
    let h = wait_history(&alice, &b, 56)?;
    let expected: Vec<String> = std::iter::once("opening".to_string())
        .chain((0..55).map(|i| format!("bob {i}")))
        .collect();
    assert_eq!(texts(&h), expected);
    wait_log(&alice, "peer's key update committed")?;
    wait_log(&bob, "conversation keys renewed")?;
    for i in 0..55 {
        send(&alice, &b, &format!("alice {i}"))?;
    }
    let h = wait_history(&bob, &a, 111)?;
    assert_eq!(texts(&h).last(), Some(&"alice 54"));
    assert_eq!(h.len(), 111);
    Ok(())
}

fn envelope(from: &libp2p::PeerId, to: &str, mls: Vec<u8>) -> Result<v1::DmEnvelope> {
    let now = samizdat_node::channel::now_ms();
    Ok(v1::DmEnvelope {
        sender: from.to_bytes(),
        recipient: to.parse::<libp2p::PeerId>()?.to_bytes(),
        sent_ms: now,
        expires_ms: now + 60_000,
        mls_message: mls,
        group_invite: Vec::new(),
    })
}

fn request(kind: v1::dm_request::Kind) -> Vec<u8> {
    v1::DmRequest { kind: Some(kind) }.encode_to_vec()
}

#[test]
fn garbage_and_forged_envelopes_are_refused_and_nothing_is_stored() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut alice = NodeProc::debug("alice")?;
    let mut bob = NodeProc::debug("bob")?;
    alice.start(&boot.addrs)?;
    bob.start(&boot.addrs)?;
    let (a, b) = (alice.peer_id()?, bob.peer_id()?);
    let alice_peer: libp2p::PeerId = a.parse()?;

    let mallory = Attacker::spawn()?;
    mallory.dial(&alice.addrs()?[0])?;
    let answer = |bytes: Vec<u8>| -> Result<v1::DmResponse> {
        let raw = wait_for("alice to answer", LONG, || {
            mallory.dm_raw(alice_peer, bytes.clone()).ok()
        })?;
        Ok(v1::DmResponse::decode(raw.as_slice())?)
    };

    // Bytes that are not a request: the stream is dropped, the node keeps running.
    assert!(
        mallory
            .dm_raw(alice_peer, b"\xff\xff\xff\xffnot protobuf".to_vec())
            .is_err()
    );
    // An envelope claiming to be from Bob, handed over by Mallory.
    let forged = envelope(&b.parse()?, &a, b"\x00\x01\x00\x02".to_vec())?;
    let r = answer(request(v1::dm_request::Kind::Deliver(v1::DmDeliver {
        envelopes: vec![forged.clone()],
    })))?;
    assert!(r.error.contains("not from this peer"), "{r:?}");
    // From Mallory, but not an MLS message of any conversation.
    let junk = envelope(&mallory.peer_id, &a, b"junk that is not MLS".to_vec())?;
    let r = answer(request(v1::dm_request::Kind::Deliver(v1::DmDeliver {
        envelopes: vec![junk.clone()],
    })))?;
    assert!(r.error.contains("malformed"), "{r:?}");
    // Mail deposited in someone else's name, and mail that asks to be held for a year.
    let r = answer(request(v1::dm_request::Kind::Deposit(v1::DmDeposit {
        envelopes: vec![forged],
    })))?;
    assert_eq!(r.accepted, 0, "{r:?}");
    let mut long = envelope(&mallory.peer_id, &b, b"x".to_vec())?;
    long.expires_ms = long.sent_ms + 365 * 24 * 3600 * 1000;
    let r = answer(request(v1::dm_request::Kind::Deposit(v1::DmDeposit {
        envelopes: vec![long],
    })))?;
    assert_eq!(r.accepted, 0, "{r:?}");
    // Nobody's mail but its own is handed over: Mallory collects nothing.
    let r = answer(request(v1::dm_request::Kind::Collect(v1::DmCollect {})))?;
    assert!(r.envelopes.is_empty());
    // An oversized frame.
    assert!(
        mallory
            .dm_raw(alice_peer, vec![0u8; samizdat_node::dm::MAX_DM_FRAME + 1])
            .is_err()
    );

    // Nothing was stored, and Alice still works: Bob reaches her.
    assert!(history(&alice, &mallory.peer_id.to_string())?.is_empty());
    assert!(history(&alice, &b)?.is_empty());
    send(&bob, &a, "still there?")?;
    assert_eq!(texts(&wait_history(&alice, &b, 1)?), ["still there?"]);
    assert!(alice.is_running());

    // And the CLI refuses what it cannot do, clearly.
    let out = alice.cli(&["dm", "send", "not-a-peer-id", "hi"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a peer id"));
    let out = alice.cli(&["dm", "send", &a, "to myself"])?;
    assert!(!out.status.success());
    Ok(())
}
