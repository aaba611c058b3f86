//! Private from the state: what an invite link gives away, admins who can be revoked (and whose
//! certificates expire), what a seized disk says, strangers kept at the door. Real processes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use prost::Message as _;
use samizdat_proto::v1;
use samizdat_tests::attacker::Attacker;
use samizdat_tests::{BootstrapProc, NodeProc, wait_for};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(90);

/// The invite link names the bootstrap peers, not the creating node: whoever gets a channel's
/// link does not learn where its owner is, unless the owner asks for that (with a warning).
#[test]
fn invite_links_do_not_locate_the_owner_unless_asked() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::debug("owner")?;
    owner.start(&boot.addrs)?;
    let me = owner.peer_id()?;
    let out = owner.cli(&["channel", "create", "samizdat news", "--json"])?;
    assert!(out.status.success());
    let ch: Value = serde_json::from_slice(&out.stdout)?;
    let link = ch["link"].as_str().context("link")?;
    let invite: samizdat_node::channel::Invite = link.parse()?;
    let addrs: Vec<String> = invite.bootstrap.iter().map(|a| a.to_string()).collect();
    assert!(!addrs.is_empty(), "the link names a way in");
    assert!(
        addrs.iter().all(|a| !a.contains(&me)),
        "the owner's own address in its link: {addrs:?}"
    );
    assert!(addrs.iter().all(|a| boot.addrs.contains(a)), "{addrs:?}");
    assert!(ch.get("link_warning").is_none());

    // Asked for, the owner's addresses are in, with a warning on stderr.
    let id = ch["id"].as_str().context("id")?;
    let out = owner.cli(&["channel", "show", id, "--include-my-address", "--json"])?;
    assert!(out.status.success());
    let shown: Value = serde_json::from_slice(&out.stdout)?;
    let mine: samizdat_node::channel::Invite = shown["link"].as_str().context("link")?.parse()?;
    assert!(mine.bootstrap.iter().any(|a| a.to_string().contains(&me)));
    assert!(String::from_utf8_lossy(&out.stderr).contains("where your node is"));

    // A node with no bootstrap peer names no way in, and says so.
    let mut alone = NodeProc::debug("alone")?;
    alone.start(&[])?;
    let out = alone.cli(&["channel", "create", "alone", "--json"])?;
    let ch: Value = serde_json::from_slice(&out.stdout)?;
    let invite: samizdat_node::channel::Invite = ch["link"].as_str().context("link")?.parse()?;
    assert!(invite.bootstrap.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("names no bootstrap peer or relay"));
    assert!(ch["link_warning"].is_string());

    // A follower still finds the owner from the link alone (through the DHT).
    let mut follower = NodeProc::debug("follower")?;
    follower.start(&boot.addrs)?;
    follower.follow(link)?;
    owner.post(id, "found without its address")?;
    follower.wait_history(id, 1, LONG)?;
    Ok(())
}

/// Admin certificates expire (7 days, renewed while the owner is online) and can be revoked:
/// the admin's earlier posts stay, anything later is refused by followers online at once and
/// by followers that were offline once they sync; a post back-dated into the certificate's
/// lifetime is refused live.
#[test]
fn a_revoked_admin_posts_nothing_anyone_accepts() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::debug("owner")?;
    let mut online = NodeProc::debug("online")?;
    let mut offline = NodeProc::debug("offline")?;
    for n in [&mut owner, &mut online, &mut offline] {
        n.start(&boot.addrs)?;
    }
    let ch = owner.json(&["channel", "create", "editorial"])?;
    let id = ch["id"].as_str().context("id")?.to_string();
    let link = ch["link"].as_str().context("link")?.to_string();
    let channel: [u8; 32] = ch["id"]
        .as_str()
        .context("id")?
        .parse::<samizdat_node::channel::ChannelId>()?
        .as_bytes()
        .to_owned();
    for n in [&online, &offline] {
        n.follow(&link)?;
        n.wait_topic_peers(&id, 1)?;
    }
    // The admin is a peer whose key the test holds (a device that could be seized).
    let admin = Attacker::spawn()?;
    let topic = format!("samizdat/channel/{id}");
    for n in [&owner, &online, &offline] {
        admin.dial(&n.addrs()?[0])?;
    }
    admin.subscribe(&topic)?;
    wait_for("the admin on the topic", LONG, || {
        admin.topic_peers(&topic).ok().filter(|p| *p >= 3)
    })?;
    owner.cli_ok(&["channel", "admin", "add", &id, &admin.peer_id.to_string()])?;
    let cert = wait_for("the admin's certificate", LONG, || {
        admin.received().ok()?.into_iter().find_map(|m| {
            match v1::ChannelMessage::decode(m.as_slice()).ok()?.kind {
                Some(v1::channel_message::Kind::AdminCert(c)) => Some(c),
                _ => None,
            }
        })
    })?;
    let list = owner.json(&["channel", "admin", "list", &id])?;
    let expires = list[0]["expires_at"].as_u64().context("an expiry")?;
    let now = samizdat_node::channel::now_ms();
    let week = 7 * 24 * 3600 * 1000;
    assert!(
        expires > now + week - 60_000 && expires <= now + week,
        "{list}"
    );

    // Two posts as admin: both arrive.
    let t = samizdat_node::channel::now_ms();
    let (p1, id1) = admin.signed_post(&channel, Some(cert.clone()), 1, None, t, "admin one");
    admin.publish(&topic, p1)?;
    let (p2, id2) = admin.signed_post(
        &channel,
        Some(cert.clone()),
        2,
        Some(id1),
        t + 1,
        "admin two",
    );
    admin.publish(&topic, p2)?;
    for n in [&online, &offline, &owner] {
        n.wait_history(&id, 2, LONG)?;
    }
    offline.stop();

    // Revoked: its posts up to seq 2 stay.
    let started = Instant::now();
    let r = owner.json(&[
        "channel",
        "admin",
        "remove",
        &id,
        &admin.peer_id.to_string(),
    ])?;
    assert_eq!(r["revoked"], true);
    assert_eq!(r["last_seq"], 2);
    let revoked = |n: &NodeProc| {
        n.json(&["channel", "admin", "list", &id])
            .ok()
            .and_then(|l| l.as_array().cloned())
            .is_some_and(|l| l.iter().any(|a| a["revoked"] == true))
    };
    wait_for(
        "the online follower to learn of the revocation",
        LONG,
        || revoked(&online).then_some(()),
    )?;
    let to_online = started.elapsed();

    // What the seized device posts next is refused everywhere, and so is a post back-dated into
    // its certificate's lifetime.
    let t = samizdat_node::channel::now_ms();
    let (p3, _) = admin.signed_post(
        &channel,
        Some(cert.clone()),
        3,
        Some(id2),
        t,
        "after revocation",
    );
    let _ = admin.publish(&topic, p3);
    let (old, _) = admin.signed_post(
        &channel,
        Some(cert),
        3,
        Some(id2),
        t - 2 * 3600 * 1000,
        "back-dated",
    );
    let _ = admin.publish(&topic, old);
    owner.post(&id, "the owner goes on")?;
    online.wait_history(&id, 3, LONG)?;
    std::thread::sleep(Duration::from_secs(2));
    let texts: Vec<String> = online
        .history(&id)?
        .iter()
        .filter_map(|p| p["text"].as_str().map(String::from))
        .collect();
    assert_eq!(texts, vec!["admin one", "admin two", "the owner goes on"]);

    // The follower that was away learns it from history sync when it comes back.
    let back = Instant::now();
    offline.start(&boot.addrs)?;
    wait_for(
        "the offline follower to learn of the revocation",
        LONG,
        || revoked(&offline).then_some(()),
    )?;
    let to_offline = back.elapsed();
    offline.wait_history(&id, 3, LONG)?;
    eprintln!(
        "revocation reached the online follower in {:.2} s, the offline one {:.2} s after it \
         came back",
        to_online.as_secs_f64(),
        to_offline.as_secs_f64()
    );
    Ok(())
}

/// A stranger's direct message (with an attachment) and group invitation wait as message
/// requests: listed with a preview, nothing of them fetched, no conversation or group shown,
/// until accepted. Declined requests go; a blocked stranger is refused.
#[test]
fn strangers_wait_at_the_door_as_message_requests() -> Result<()> {
    let boot = BootstrapProc::start()?;
    let mut victim = NodeProc::debug("victim")?;
    let mut stranger = NodeProc::debug("stranger")?;
    let mut pest = NodeProc::debug("pest")?;
    for n in [&mut victim, &mut stranger, &mut pest] {
        n.start(&boot.addrs)?;
    }
    let (v, s, p) = (victim.peer_id()?, stranger.peer_id()?, pest.peer_id()?);
    let doc = stranger.home().with_extension("doc");
    std::fs::write(&doc, vec![0x42u8; 200 * 1024])?;
    let sent = stranger.json(&[
        "dm",
        "send",
        &v,
        "buy my stuff",
        "--file",
        &doc.to_string_lossy(),
    ])?;
    let cid = sent["file"]["cid"].as_str().context("cid")?.to_string();
    let group = stranger.json(&["group", "create", "friends of the stranger"])?["id"]
        .as_str()
        .context("id")?
        .to_string();
    wait_for("the stranger's invitation to go out", LONG, || {
        stranger.json(&["group", "invite", &group, &v]).ok()
    })?;

    // Both wait as requests, with the contract's fields.
    let list = wait_for("two requests", LONG, || {
        victim
            .json(&["requests", "list"])
            .ok()?
            .as_array()
            .filter(|l| l.len() == 2)
            .cloned()
    })?;
    let dm = list
        .iter()
        .find(|r| r["kind"] == "dm")
        .context("a dm request")?;
    assert_eq!(dm["peer_id"], s.as_str());
    assert_eq!(dm["preview"], "buy my stuff");
    assert!(dm["received_at"].as_u64().is_some_and(|t| t > 0));
    let g = list
        .iter()
        .find(|r| r["kind"] == "group")
        .context("a group request")?;
    assert_eq!(g["peer_id"], s.as_str());
    assert_eq!(g["preview"], "friends of the stranger");
    // Nothing shown, nothing fetched.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        victim.json(&["dm", "list"])?.as_array().map(|l| l.len()),
        Some(0)
    );
    assert_eq!(
        victim.json(&["group", "list"])?.as_array().map(|l| l.len()),
        Some(0)
    );
    assert!(
        !victim.cli(&["file", "status", &cid])?.status.success(),
        "the stranger's attachment was fetched before the request was accepted"
    );

    // Accepted: the conversation and the group show, the attachment comes by itself.
    victim.cli_ok(&["requests", "accept", &s])?;
    assert_eq!(
        victim
            .json(&["requests", "list"])?
            .as_array()
            .map(|l| l.len()),
        Some(0)
    );
    wait_for("the conversation to show", LONG, || {
        victim
            .json(&["dm", "list"])
            .ok()?
            .as_array()?
            .iter()
            .any(|c| c["peer"] == s.as_str())
            .then_some(())
    })?;
    wait_for("the group to show", LONG, || {
        victim
            .json(&["group", "list"])
            .ok()?
            .as_array()?
            .iter()
            .any(|x| x["id"] == group.as_str())
            .then_some(())
    })?;
    wait_for("the attachment to be fetched", LONG, || {
        victim
            .json(&["file", "status", &cid])
            .ok()
            .filter(|st| st["complete"] == true)
    })?;
    // Accepted senders become contacts (without a card until one is added).
    let contacts = victim.json(&["contact", "list"])?;
    assert!(
        contacts
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["peer_id"] == s.as_str())),
        "the accepted sender is not a contact: {contacts}"
    );
    // Accepted is known: the next message is an ordinary one.
    stranger.json(&["dm", "send", &v, "thanks"])?;
    wait_for("the next message", LONG, || {
        victim
            .json(&["dm", "history", &s])
            .ok()?
            .as_array()
            .filter(|h| h.iter().any(|m| m["text"] == "thanks"))
            .map(|_| ())
    })?;
    assert_eq!(
        victim
            .json(&["requests", "list"])?
            .as_array()
            .map(|l| l.len()),
        Some(0)
    );

    // Declined: gone. Blocked: refused from then on.
    pest.json(&["dm", "send", &v, "hello?"])?;
    let pending = |who: &str| {
        victim
            .json(&["requests", "list"])
            .ok()
            .and_then(|l| l.as_array().cloned())
            .is_some_and(|l| l.iter().any(|r| r["peer_id"] == who))
    };
    wait_for("the pest's request", LONG, || pending(&p).then_some(()))?;
    victim.cli_ok(&["requests", "decline", &p])?;
    assert!(!pending(&p), "a declined request is still listed");
    assert!(
        !victim
            .json(&["dm", "list"])?
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["peer"] == p.as_str())),
        "a declined request became a conversation"
    );
    pest.json(&["dm", "send", &v, "hello again?"])?;
    wait_for("the pest's second request", LONG, || {
        victim
            .json(&["requests", "list"])
            .ok()?
            .as_array()?
            .iter()
            .any(|r| r["peer_id"] == p.as_str())
            .then_some(())
    })?;
    victim.cli_ok(&["requests", "block", &p])?;
    assert!(
        !victim
            .json(&["requests", "list"])?
            .as_array()
            .is_some_and(|l| l.iter().any(|r| r["peer_id"] == p.as_str()))
    );
    assert!(
        !victim
            .json(&["dm", "list"])?
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["peer"] == p.as_str()))
    );
    Ok(())
}

/// Every encoding of a time an investigator would try: milliseconds and seconds, as 8-byte
/// big- and little-endian integers and as decimal text.
fn time_needles(ms: u64) -> Vec<(String, Vec<u8>)> {
    let s = ms / 1000;
    vec![
        (format!("{ms} ms BE"), ms.to_be_bytes().to_vec()),
        (format!("{ms} ms LE"), ms.to_le_bytes().to_vec()),
        (format!("{ms} ms text"), ms.to_string().into_bytes()),
        (format!("{s} s BE"), s.to_be_bytes().to_vec()),
        (format!("{s} s LE"), s.to_le_bytes().to_vec()),
        (format!("{s} s text"), s.to_string().into_bytes()),
    ]
}

/// A seized disk says nothing of what its owner follows or whom they talk to: the files of a
/// stopped follower and of a stopped channel owner are searched for the times of every post,
/// direct and group message (every encoding), the channel, group and post ids, the peer ids
/// of the contact and the invitee, and the hash of an encrypted attachment (a ciphertext
/// hash), in raw and text forms. Nothing is found.
#[test]
fn a_seized_disk_says_nothing_of_what_it_follows_or_whom_it_talks_to() -> Result<()> {
    use std::str::FromStr as _;
    let boot = BootstrapProc::start()?;
    let mut owner = NodeProc::debug("owner")?;
    let mut reader = NodeProc::debug("reader")?;
    owner.start(&boot.addrs)?;
    reader.start(&boot.addrs)?;
    let (o, r) = (owner.peer_id()?, reader.peer_id()?);

    // A channel with posts (one of them disappearing), followed by the reader.
    let channel = owner.json(&["channel", "create", "opposition news"])?;
    let ch = channel["id"].as_str().context("id")?.to_string();
    let link = channel["link"].as_str().context("link")?.to_string();
    for i in 0..6 {
        owner.post(&ch, &format!("bulletin {i}"))?;
    }
    owner.cli_ok(&["channel", "post", &ch, "gone soon", "--expires-in", "1h"])?;
    reader.follow(&link)?;
    let posts = reader.wait_history(&ch, 7, LONG)?;

    // Contacts both ways, direct messages with an encrypted attachment, a private group.
    let card = owner.json(&["contact", "card"])?["link"]
        .as_str()
        .context("card")?
        .to_string();
    reader.cli_ok(&["contact", "add", &card, "--name", "editor"])?;
    let card = reader.json(&["contact", "card"])?["link"]
        .as_str()
        .context("card")?
        .to_string();
    owner.cli_ok(&["contact", "add", &card, "--name", "source"])?;
    let doc = owner.home().with_extension("leak");
    std::fs::write(&doc, vec![0x5au8; 64 * 1024])?;
    let sent = owner.json(&[
        "dm",
        "send",
        &r,
        "the documents",
        "--file",
        &doc.to_string_lossy(),
    ])?;
    let cid = sent["file"]["cid"].as_str().context("cid")?.to_string();
    reader.json(&["dm", "send", &o, "received, thank you"])?;
    let group = owner.json(&["group", "create", "editorial board"])?["id"]
        .as_str()
        .context("group id")?
        .to_string();
    wait_for("the reader to be invited", LONG, || {
        owner.json(&["group", "invite", &group, &r]).ok()
    })?;
    wait_for("the reader in the group", LONG, || {
        reader
            .json(&["group", "list"])
            .ok()?
            .as_array()?
            .iter()
            .any(|g| g["id"] == group.as_str())
            .then_some(())
    })?;
    owner.json(&["group", "post", &group, "meeting at noon"])?;
    let dms = wait_for(
        "both direct messages and the attachment on the reader",
        LONG,
        || {
            let h = reader.json(&["dm", "history", &o]).ok()?;
            let done = h.as_array()?.len() >= 2
                && reader
                    .json(&["file", "status", &cid])
                    .ok()
                    .is_some_and(|s| s["complete"] == true);
            done.then_some(h)
        },
    )?;
    let gmsgs = wait_for("the group message on the reader", LONG, || {
        reader.json(&["group", "history", &group]).ok().filter(|h| {
            h.as_array()
                .is_some_and(|a| a.iter().any(|m| m["text"] == "meeting at noon"))
        })
    })?;
    owner.stop();
    reader.stop();

    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    let mut times: Vec<u64> = posts
        .iter()
        .filter_map(|p| p["timestamp"].as_u64())
        .collect();
    times.extend(posts.iter().filter_map(|p| p["expires_at"].as_u64()));
    for list in [&dms, &gmsgs] {
        times.extend(
            list.as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["timestamp"].as_u64()),
        );
    }
    assert!(times.len() >= 10, "too few times to look for: {times:?}");
    for t in &times {
        needles.extend(time_needles(*t));
    }
    let id = samizdat_node::channel::ChannelId::from_str(&ch)?;
    needles.push(("channel id".into(), id.as_bytes().to_vec()));
    needles.push(("channel id text".into(), ch.clone().into_bytes()));
    for p in &posts {
        let pid = p["id"].as_str().context("post id")?;
        needles.push((format!("post id {pid}"), pid.as_bytes().to_vec()));
        if let Ok(raw) = samizdat_node::channel::PostId::from_str(pid) {
            needles.push((format!("post id {pid} raw"), raw.as_bytes().to_vec()));
        }
    }
    needles.push(("group id text".into(), group.clone().into_bytes()));
    needles.push((
        "group id raw".into(),
        data_encoding::HEXLOWER_PERMISSIVE.decode(group.as_bytes())?,
    ));
    for (who, peer) in [("owner", &o), ("reader", &r)] {
        let pid = libp2p::PeerId::from_str(peer)?;
        needles.push((format!("{who} peer id text"), peer.clone().into_bytes()));
        needles.push((format!("{who} peer id raw"), pid.to_bytes()));
    }
    needles.push(("attachment cid text".into(), cid.clone().into_bytes()));
    let raw_cid = samizdat_node::files::Cid::from_str(&cid)?;
    needles.push(("attachment cid".into(), raw_cid.0.to_vec()));
    needles.push(("attachment cid prefix".into(), raw_cid.0[..8].to_vec()));

    let mut hits = Vec::new();
    let mut searched = 0usize;
    for (who, home) in [("owner", owner.home()), ("reader", reader.home())] {
        // A node's own peer id on its own disk is no lead (its identity key is there too).
        for file in samizdat_tests::files_under(home) {
            let bytes = std::fs::read(&file)?;
            searched = searched.saturating_add(bytes.len());
            for (what, needle) in &needles {
                if what.starts_with(&format!("{who} peer id")) {
                    continue;
                }
                if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                    hits.push(format!("{who}: {what} in {}", file.display()));
                }
            }
        }
    }
    eprintln!(
        "searched {searched} bytes in two homes for {} patterns ({} times): {} hits",
        needles.len(),
        times.len(),
        hits.len()
    );
    assert!(hits.is_empty(), "found on disk:\n  {}", hits.join("\n  "));
    Ok(())
}
