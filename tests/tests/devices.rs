//! One person, several devices, end to end: real `samizdat` processes over loopback. A second
//! device joins Alice's account by a one-time link; a contact who added Alice once reaches
//! both devices; each device's sent messages reach the other; the account's channel takes
//! posts from both; a revoked device, offline when revoked, reads nothing sent afterwards and
//! is refused when it writes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use samizdat_tests::{BootstrapProc, NodeProc, texts, wait_for};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(90);
const LOG: &str = samizdat_tests::DEBUG_LOG;

fn history(n: &NodeProc, peer: &str) -> Result<Vec<Value>> {
    n.list(&["dm", "history", peer])
}

fn wait_text(n: &NodeProc, peer: &str, text: &str) -> Result<Vec<Value>> {
    wait_for(
        &format!("{} to hold {text:?} with {peer}", n.name),
        LONG,
        || {
            history(n, peer)
                .ok()
                .filter(|h| texts(h).iter().any(|t| t == text))
        },
    )
}

fn group_texts(n: &NodeProc, group: &str) -> Vec<String> {
    n.list(&["group", "history", group])
        .map(|h| texts(&h))
        .unwrap_or_default()
}

fn wait_group_text(n: &NodeProc, group: &str, text: &str) -> Result<()> {
    wait_for(
        &format!("{} to read {text:?} in the group", n.name),
        LONG,
        || {
            group_texts(n, group)
                .iter()
                .any(|t| t == text)
                .then_some(())
        },
    )
}

fn devices(n: &NodeProc) -> Result<Vec<Value>> {
    n.list(&["device", "list"])
}

fn peer_ids(list: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .filter_map(|d| d["peer_id"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn a_linked_device_chats_posts_and_once_revoked_reads_and_sends_nothing() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut alice = NodeProc::debug("alice")?;
    let mut bob = NodeProc::debug("bob")?;
    alice.start(&boot.addrs)?;
    bob.start(&boot.addrs)?;
    let (a1, b) = (alice.peer_id()?, bob.peer_id()?);
    let account = alice.json(&["id"])?["account"]
        .as_str()
        .context("every node has an account")?
        .to_string();
    assert_ne!(account, a1);
    alice.add_contact_of(&bob)?;
    bob.add_contact_of(&alice)?;
    let ch = alice.json(&["channel", "create", "alice's news"])?;
    let channel = ch["id"].as_str().context("id")?.to_string();
    let channel_link = ch["link"].as_str().context("link")?.to_string();
    bob.follow(&channel_link)?;
    alice.post(&channel, "from the laptop 1")?;
    let group = alice.json(&["group", "create", "family"])?["id"]
        .as_str()
        .context("group id")?
        .to_string();
    wait_for("bob to be added to alice's group", LONG, || {
        alice.json(&["group", "invite", &group, &b]).ok()
    })?;
    // Said before the phone exists: MLS will not let it read this; the link carries it.
    wait_for("bob to post in alice's group", LONG, || {
        bob.json(&["group", "post", &group, "group before the phone"])
            .ok()
    })?;
    wait_group_text(&alice, &group, "group before the phone")?;

    // Linking: a one-time link, a new home, both running.
    let link = alice.json(&["device", "link"])?;
    let link = link["link"].as_str().context("link")?.to_string();
    assert!(link.starts_with("samizdat://device/"), "{link}");
    let (mut phone, init) = NodeProc::linked_json("phone", &link)?;
    let code = init["code"]
        .as_str()
        .context("init --link shows a code")?
        .to_string();
    phone.set_env("RUST_LOG", LOG);
    let t0 = Instant::now();
    phone.start(&boot.addrs)?;
    let a2 = phone.peer_id()?;
    let both = {
        let mut v = vec![a1.clone(), a2.clone()];
        v.sort();
        v
    };
    for n in [&alice, &phone] {
        wait_for(&format!("{} to list both devices", n.name), LONG, || {
            devices(n).ok().filter(|d| peer_ids(d) == both)
        })?;
    }
    let linked_in = t0.elapsed();
    println!("REPORT link_s {:.2}", linked_in.as_secs_f64());
    let on_phone = devices(&phone)?;
    assert!(
        on_phone
            .iter()
            .any(|d| d["peer_id"] == a2.as_str() && d["this"] == true && d["name"] == "phone")
    );
    assert!(on_phone.iter().all(|d| d["linked_at"].as_u64().is_some()));
    assert_eq!(phone.json(&["id"])?["account"], account.as_str());
    // The linking device shows the code of the device that used its link: the same.
    let listed = devices(&alice)?;
    let entry = listed
        .iter()
        .find(|d| d["peer_id"] == a2.as_str())
        .context("phone listed")?;
    assert_eq!(entry["code"], code.as_str(), "{entry}");
    // The link worked once: another node that tries it is refused, and becomes a device of an
    // account of its own.
    let mut late = NodeProc::linked("late", &link)?;
    late.start(&boot.addrs)?;
    let own = wait_for("the late node to found its own account", LONG, || {
        late.json(&["id"]).ok()?["account"]
            .as_str()
            .map(str::to_string)
    })?;
    assert_ne!(own, account);
    assert_eq!(peer_ids(&devices(&late)?), vec![late.peer_id()?]);
    assert_eq!(peer_ids(&devices(&alice)?), both);
    late.stop();

    // The group Alice owns adds her phone: Bob's post reaches it, and its post reaches Bob.
    wait_for("the phone to join alice's group", LONG, || {
        phone
            .json(&["group", "list"])
            .ok()?
            .as_array()?
            .iter()
            .find(|g| g["id"] == group.as_str() && g["active"] == true)
            .cloned()
    })?;
    wait_for("bob to see the phone in the group", LONG, || {
        bob.json(&["group", "list"])
            .ok()?
            .as_array()?
            .iter()
            .find(|g| {
                g["id"] == group.as_str()
                    && g["members"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|p| p == a2.as_str()))
            })
            .cloned()
    })?;
    assert!(
        group_texts(&phone, &group)
            .iter()
            .any(|t| t == "group before the phone"),
        "the phone was not given the group's history"
    );
    bob.json(&["group", "post", &group, "group hello from bob"])?;
    wait_group_text(&phone, &group, "group hello from bob")?;
    wait_group_text(&alice, &group, "group hello from bob")?;
    phone.json(&["group", "post", &group, "group hello from the phone"])?;
    wait_group_text(&bob, &group, "group hello from the phone")?;
    wait_group_text(&alice, &group, "group hello from the phone")?;

    // The phone got Alice's contacts: Bob's new message to Alice's *account* reaches both
    // devices, and Bob never exchanged anything with the phone.
    wait_for("bob to learn alice's phone", LONG, || {
        let log = bob.log();
        log.lines()
            .any(|l| l.contains("device list updated") && l.contains("version=2"))
            .then_some(())
    })?;
    bob.json(&["dm", "send", &account, "hello both of you"])?;
    wait_text(&alice, &b, "hello both of you")?;
    wait_text(&phone, &b, "hello both of you")?;

    // The phone writes to Bob: Bob has it under Alice's account, and the laptop holds it as
    // sent by this account.
    phone.json(&["dm", "send", &b, "written on the phone"])?;
    let h = wait_text(&bob, &account, "written on the phone")?;
    assert!(texts(&h).contains(&"hello both of you".to_string()));
    let h = wait_text(&alice, &b, "written on the phone")?;
    let copy = h
        .iter()
        .find(|m| m["text"] == "written on the phone")
        .context("copy")?;
    assert_eq!(copy["outgoing"], true, "{copy}");
    // Each message once, in order.
    let t = texts(&h);
    assert_eq!(
        t.iter().filter(|x| *x == "hello both of you").count(),
        1,
        "{t:?}"
    );

    // The account's channel takes the phone's posts too (an admin certificate from the
    // laptop); Bob sees one history.
    wait_for("the phone to post to the account's channel", LONG, || {
        phone.post(&channel, "from the phone 2").ok()
    })?;
    alice.post(&channel, "from the laptop 3")?;
    let posts = bob.wait_history(&channel, 3, LONG)?;
    let pt: Vec<&str> = posts.iter().filter_map(|p| p["text"].as_str()).collect();
    assert_eq!(
        pt,
        ["from the laptop 1", "from the phone 2", "from the laptop 3"],
        "one history, in order"
    );

    // A third device, linked from the phone (any device links); it is offline while Bob
    // writes, and catches up from the mail held for it.
    let link3 = phone.json(&["device", "link"])?["link"]
        .as_str()
        .context("link")?
        .to_string();
    let mut tablet = NodeProc::linked("tablet", &link3)?;
    tablet.set_env("RUST_LOG", LOG);
    tablet.start(&boot.addrs)?;
    let a3 = tablet.peer_id()?;
    let three = {
        let mut v = vec![a1.clone(), a2.clone(), a3.clone()];
        v.sort();
        v
    };
    for n in [&alice, &phone, &tablet] {
        wait_for(&format!("{} to list three devices", n.name), LONG, || {
            devices(n).ok().filter(|d| peer_ids(d) == three)
        })?;
    }
    wait_for("bob to learn alice's tablet", LONG, || {
        bob.log()
            .lines()
            .any(|l| l.contains("device list updated") && l.contains("version=3"))
            .then_some(())
    })?;
    // The tablet talks once so that its conversations exist, then goes offline.
    tablet.json(&["dm", "send", &b, "hello from the tablet"])?;
    wait_text(&bob, &account, "hello from the tablet")?;
    wait_text(&alice, &b, "hello from the tablet")?;
    wait_text(&phone, &b, "hello from the tablet")?;
    tablet.stop();
    bob.json(&["dm", "send", &account, "while the tablet sleeps"])?;
    for n in [&alice, &phone] {
        wait_text(n, &b, "while the tablet sleeps")?;
    }
    tablet.start(&boot.addrs)?;
    let h = wait_text(&tablet, &b, "while the tablet sleeps")?;
    for want in ["hello from the tablet", "while the tablet sleeps"] {
        assert_eq!(texts(&h).iter().filter(|t| *t == want).count(), 1, "{h:?}");
    }
    tablet.stop();

    // Revoke the phone while it is offline.
    phone.stop();
    let t1 = Instant::now();
    let r = alice.json(&["device", "revoke", &a2, "--wait", "0"])?;
    assert_eq!(r["revoked"], a2.as_str());
    let in_group = r["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["group"] == group.as_str()).cloned())
        .context("the revocation reports the group")?;
    assert_eq!(in_group["removed"], true, "{r}");
    let has =
        |v: &Value, key: &str, p: &str| v[key].as_array().is_some_and(|l| l.iter().any(|x| x == p));
    // At once, nobody is known to hold the removal; Bob's catch-up request then names its
    // epoch. The removed phone is in neither list.
    assert!(has(&in_group, "pending", &b), "{in_group}");
    let reached = wait_for("bob to hold the phone's removal", LONG, || {
        alice
            .list(&["device", "removals"])
            .ok()?
            .into_iter()
            .find(|g| g["group"] == group.as_str() && g["device"] == a2.as_str())
            .filter(|g| has(g, "reached", &b))
    })?;
    assert!(
        !has(&reached, "reached", &a2) && !has(&reached, "pending", &a2),
        "{reached}"
    );
    println!("REPORT removal_reached_s {:.2}", t1.elapsed().as_secs_f64());
    let two = {
        let mut v = vec![a1.clone(), a3.clone()];
        v.sort();
        v
    };
    assert_eq!(peer_ids(&devices(&alice)?), two);
    // Bob learns it (pushed by the laptop) and writes to Alice: only the laptop gets it.
    wait_for("bob to learn the revocation", LONG, || {
        let log = bob.log();
        log.lines()
            .any(|l| l.contains("device list updated") && l.contains("version=4"))
            .then_some(())
    })?;
    bob.json(&["dm", "send", &account, "after the revocation"])?;
    wait_text(&alice, &b, "after the revocation")?;
    println!("REPORT revoke_s {:.2}", t1.elapsed().as_secs_f64());
    bob.json(&["group", "post", &group, "group after the revocation"])?;
    wait_group_text(&alice, &group, "group after the revocation")?;
    phone.start(&boot.addrs)?;
    phone
        .json(&["group", "post", &group, "group post by the revoked phone"])
        .ok();
    phone
        .json(&["dm", "send", &b, "sent by the revoked phone"])
        .ok();
    alice.json(&["dm", "send", &b, "after the phone is back"])?;
    wait_text(&bob, &account, "after the phone is back")?;
    // Time for anything still on its way to arrive.
    std::thread::sleep(Duration::from_secs(8));
    let on_phone = texts(&history(&phone, &b)?);
    assert!(
        !on_phone
            .iter()
            .any(|t| t == "after the revocation" || t == "after the phone is back"),
        "the revoked phone read {on_phone:?}"
    );
    let in_group = group_texts(&phone, &group);
    assert!(
        !in_group.iter().any(|t| t == "group after the revocation"),
        "the revoked phone read the group: {in_group:?}"
    );
    assert!(
        !group_texts(&bob, &group)
            .iter()
            .any(|t| t == "group post by the revoked phone")
    );
    let on_bob = texts(&history(&bob, &account)?);
    assert!(
        !on_bob.iter().any(|t| t == "sent by the revoked phone"),
        "bob accepted {on_bob:?}"
    );
    // The channel no longer takes its posts.
    assert!(
        phone.post(&channel, "revoked post").is_err() || {
            std::thread::sleep(Duration::from_secs(3));
            !bob.history(&channel)?
                .iter()
                .any(|p| p["text"] == "revoked post")
        }
    );
    Ok(())
}

#[test]
fn bad_device_links_are_clear_errors() -> Result<()> {
    let n = NodeProc::bare("new", &[])?;
    for bad in [
        "samizdat://device/",
        "https://example.com",
        "samizdat://device/aaaa",
    ] {
        let out = n.cli(&["init", "--link", bad])?;
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("device link"), "{err}");
    }
    // An existing node does not join an account.
    let old = NodeProc::debug("old")?;
    let mut alice = NodeProc::debug("alice")?;
    alice.start(&[])?;
    let link = alice.json(&["device", "link"])?["link"]
        .as_str()
        .context("link")?
        .to_string();
    let out = old.cli(&["init", "--link", &link])?;
    assert!(!out.status.success());
    // Revoking oneself, or a node that is not a device of the account, is refused.
    let me = alice.peer_id()?;
    assert!(!alice.cli(&["device", "revoke", &me])?.status.success());
    let other = old.json(&["init"])?["peer_id"]
        .as_str()
        .context("peer id")?
        .to_string();
    let out = alice.cli(&["device", "revoke", &other])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a device"));
    assert_eq!(devices(&alice)?.len(), 1);
    Ok(())
}
