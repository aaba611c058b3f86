//! Surviving blocking, on a simulated censored network: Linux network namespaces, a censor's
//! nftables rules on the "internet" router, NAT gateways, a LAN, and a bad link. Real
//! `samizdat` and `samizdat-bootstrap` processes. Each scenario prints how long recovery took
//! and appends it to `target/netns/report.jsonl`.
//!
//! Needs root, `ip`, `nft` and `iptables` (`.ci/run` installs them); without them the
//! scenarios are skipped, unless `SAMIZDAT_NETNS_REQUIRED=1`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use samizdat_tests::netns::{Attach, Host, Internet, report, require};
use samizdat_tests::{BootstrapProc, NodeProc, texts, wait_for};

const LONG: Duration = Duration::from_secs(120);

/// Bootstrap peers' addresses that are reachable over the simulated internet.
fn boot_addrs(b: &BootstrapProc, host: &Host) -> Vec<String> {
    let ip = host.public_ip.to_string();
    b.addrs
        .iter()
        .filter(|a| a.contains(&format!("/{ip}/")))
        .cloned()
        .collect()
}

/// Waits until every node holds a post with this text; returns the seconds it took.
fn until_everyone_has(
    nodes: &[&NodeProc],
    channel: &str,
    text: &str,
    timeout: Duration,
) -> Result<f64> {
    let t = Instant::now();
    for n in nodes {
        wait_for(&format!("{} to receive {text:?}", n.name), timeout, || {
            n.history(channel)
                .ok()
                .filter(|h| texts(h).iter().any(|t| t == text))
        })?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// A network of public hosts: bootstrap peers and nodes; node 0 owns a channel the others
/// follow from its link.
struct World {
    net: Internet,
    boot_hosts: Vec<Host>,
    boots: Vec<BootstrapProc>,
    hosts: Vec<Host>,
    nodes: Vec<NodeProc>,
    channel: String,
    link: String,
}

fn world(nodes: usize, boots: usize) -> Result<World> {
    let mut net = Internet::new()?;
    let mut boot_hosts = Vec::new();
    let mut bs = Vec::new();
    let mut boot_list = Vec::new();
    for _ in 0..boots {
        let h = net.host(Attach::Public)?;
        let b = BootstrapProc::start_in(
            Some(&h.ns),
            &["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"],
        )?;
        boot_list.extend(boot_addrs(&b, &h));
        boot_hosts.push(h);
        bs.push(b);
    }
    let mut hosts = Vec::new();
    let mut ns = Vec::new();
    for i in 0..nodes {
        let h = net.host(Attach::Public)?;
        let mut n = NodeProc::new_in(&format!("node{i}"), &h.ns)?;
        n.start(&boot_list)?;
        hosts.push(h);
        ns.push(n);
    }
    let ch = ns[0].json(&["channel", "create", "uncensored"])?;
    let channel = ch["id"].as_str().context("id")?.to_string();
    let link = ch["link"].as_str().context("link")?.to_string();
    for n in &ns[1..] {
        n.follow(&link)?;
    }
    for n in &ns[1..] {
        n.wait_topic_peers(&channel, 1)?;
    }
    Ok(World {
        net,
        boot_hosts,
        boots: bs,
        hosts,
        nodes: ns,
        channel,
        link,
    })
}

#[test]
fn scenario_1_and_2_bootstrap_peers_blocked_after_joining_and_before_restart() -> Result<()> {
    if !require()? {
        return Ok(());
    }
    let mut w = world(8, 2)?;
    let ch = w.channel.clone();
    w.nodes[0].post(&ch, "before the block")?;
    let followers: Vec<&NodeProc> = w.nodes[1..].iter().collect();
    until_everyone_has(&followers, &ch, "before the block", LONG)?;

    // 1. The censor drops everything to and from both bootstrap peers.
    let boot_refs: Vec<&Host> = w.boot_hosts.iter().collect();
    w.net.block_hosts(&boot_refs)?;
    w.nodes[0].post(&ch, "during the block")?;
    let secs = until_everyone_has(&followers, &ch, "during the block", LONG)?;
    report(
        "1-bootstrap-blocked",
        "first post reached all 7 followers",
        secs,
        serde_json::json!({}),
    );

    // 2. Every node restarts while the bootstrap peers stay unreachable: peer caches only.
    for n in &mut w.nodes {
        n.stop();
    }
    let t = Instant::now();
    let boot_list: Vec<String> = w
        .boots
        .iter()
        .zip(&w.boot_hosts)
        .flat_map(|(b, h)| boot_addrs(b, h))
        .collect();
    for n in &mut w.nodes {
        n.start(&boot_list)?;
    }
    w.nodes[0].wait_topic_peers(&ch, 1)?;
    w.nodes[0].post(&ch, "after the restart")?;
    let followers: Vec<&NodeProc> = w.nodes[1..].iter().collect();
    until_everyone_has(&followers, &ch, "after the restart", LONG)?;
    report(
        "2-restart-without-bootstrap",
        "all 8 restarted nodes exchanged a post again (from the first restart)",
        t.elapsed().as_secs_f64(),
        serde_json::json!({}),
    );
    // Nobody reached a bootstrap peer: the way back in was the peer cache.
    for n in &w.nodes {
        let peers = n.json(&["peers"])?;
        for p in peers.as_array().context("peers")? {
            let agent = p["agent"].as_str().unwrap_or_default();
            assert!(
                !agent.starts_with("samizdat-bootstrap"),
                "{} reached a blocked bootstrap peer",
                n.name
            );
        }
    }
    let _ = &w.hosts;
    Ok(())
}

#[test]
fn scenario_3_a_lan_with_no_internet_finds_itself_by_mdns() -> Result<()> {
    if !require()? {
        return Ok(());
    }
    let mut net = Internet::new()?;
    let mut nodes = Vec::new();
    let t = Instant::now();
    for i in 0..3 {
        let h = net.host(Attach::Lan)?;
        let mut n = NodeProc::new_in(&format!("lan{i}"), &h.ns)?;
        n.start(&[])?;
        nodes.push(n);
    }
    let ch = nodes[0].json(&["channel", "create", "kitchen table"])?;
    let id = ch["id"].as_str().context("id")?.to_string();
    // Following by bare id: no addresses anywhere; only mDNS can find the owner.
    for n in &nodes[1..] {
        n.follow(&id)?;
    }
    nodes[0].wait_topic_peers(&id, 2)?;
    nodes[0].post(&id, "no internet needed")?;
    let followers: Vec<&NodeProc> = nodes[1..].iter().collect();
    until_everyone_has(&followers, &id, "no internet needed", LONG)?;
    report(
        "3-lan-mdns",
        "post delivered on a LAN with no bootstrap (from node start)",
        t.elapsed().as_secs_f64(),
        serde_json::json!({}),
    );
    Ok(())
}

#[test]
fn scenario_4_two_nodes_behind_nat_meet_through_a_relay() -> Result<()> {
    if !require()? {
        return Ok(());
    }
    let mut net = Internet::new()?;
    let bh = net.host(Attach::Public)?;
    let boot = BootstrapProc::start_in(
        Some(&bh.ns),
        &["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"],
    )?;
    let boots = boot_addrs(&boot, &bh);
    let ha = net.host(Attach::Nat)?;
    let hb = net.host(Attach::Nat)?;
    let mut a = NodeProc::new_in("alice", &ha.ns)?;
    let mut b = NodeProc::new_in("bob", &hb.ns)?;
    a.set_env("RUST_LOG", "info,samizdat_node=debug");
    b.set_env("RUST_LOG", "info,samizdat_node=debug");
    a.start(&boots)?;
    b.start(&boots)?;
    // Each learns it is not reachable and takes a relay slot.
    for n in [&a, &b] {
        wait_for(
            &format!("{} to listen through the relay", n.name),
            LONG,
            || {
                n.addrs()
                    .ok()
                    .filter(|addrs| addrs.iter().any(|x| x.contains("p2p-circuit")))
            },
        )?;
    }
    let t = Instant::now();
    let ch = a.json(&["channel", "create", "behind nat"])?;
    let id = ch["id"].as_str().context("id")?.to_string();
    b.follow(ch["link"].as_str().context("link")?)?;
    b.wait_topic_peers(&id, 1)?;
    a.post(&id, "through the NAT")?;
    until_everyone_has(&[&b], &id, "through the NAT", LONG)?;
    let secs = t.elapsed().as_secs_f64();
    // Give hole punching a moment, then see how alice and bob are connected.
    let a_id = a.peer_id()?;
    let direct = wait_for("a direct connection", Duration::from_secs(20), || {
        let peers = b.json(&["peers"]).ok()?;
        peers
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == a_id.as_str())
            .and_then(|p| {
                p["addrs"]
                    .as_array()?
                    .iter()
                    .any(|x| x.as_str().is_some_and(|s| !s.contains("p2p-circuit")))
                    .then_some(())
            })
    })
    .is_ok();
    let how = if direct {
        "hole punching upgraded it to a direct connection"
    } else {
        "stayed relayed (hole punching failed)"
    };
    report(
        "4-behind-nat",
        "post delivered between two NATed nodes (from channel creation)",
        secs,
        serde_json::json!({"connection": if direct { "direct" } else { "relayed" }, "detail": how}),
    );
    Ok(())
}

#[test]
fn scenario_5_only_websocket_on_443_gets_through() -> Result<()> {
    if !require()? {
        return Ok(());
    }
    let mut net = Internet::new()?;
    net.only_https_port()?;
    let bh = net.host(Attach::Public)?;
    let boot = BootstrapProc::start_in(
        Some(&bh.ns),
        &[
            "/ip4/0.0.0.0/tcp/4001",
            "/ip4/0.0.0.0/udp/4001/quic-v1",
            "/ip4/0.0.0.0/tcp/443/ws",
        ],
    )?;
    let boots = boot_addrs(&boot, &bh);
    assert!(boots.iter().any(|a| a.contains("/tcp/443/ws")), "{boots:?}");
    let t = Instant::now();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let h = net.host(Attach::Public)?;
        let mut n = NodeProc::new_in(&format!("ws{i}"), &h.ns)?;
        n.start_with(
            &boots,
            &[
                "--listen",
                "/ip4/0.0.0.0/tcp/4001",
                "--listen",
                "/ip4/0.0.0.0/udp/4001/quic-v1",
                "--listen",
                "/ip4/0.0.0.0/tcp/443/ws",
            ],
        )?;
        nodes.push(n);
    }
    let ch = nodes[0].json(&["channel", "create", "over the web"])?;
    let id = ch["id"].as_str().context("id")?.to_string();
    for n in &nodes[1..] {
        n.follow(ch["link"].as_str().context("link")?)?;
    }
    nodes[0].wait_topic_peers(&id, 2)?;
    nodes[0].post(&id, "via websocket")?;
    let followers: Vec<&NodeProc> = nodes[1..].iter().collect();
    until_everyone_has(&followers, &id, "via websocket", LONG)?;
    // Every connection the owner has is a WebSocket one: nothing else gets through.
    let peers = nodes[0].json(&["peers"])?;
    for p in peers.as_array().context("peers")? {
        for a in p["addrs"].as_array().context("addrs")? {
            let a = a.as_str().unwrap_or_default();
            assert!(
                a.contains("/ws"),
                "non-WebSocket connection through the censor: {a}"
            );
        }
    }
    report(
        "5-only-websocket",
        "post delivered with only TCP 443 open (from node start)",
        t.elapsed().as_secs_f64(),
        serde_json::json!({}),
    );
    Ok(())
}

#[test]
fn scenario_6_partition_and_heal() -> Result<()> {
    if !require()? {
        return Ok(());
    }
    let w = world(6, 1)?;
    let ch = w.channel.clone();
    // The owner's second voice: node 3 becomes an admin, on the other side of the cut.
    w.nodes[0].cli_ok(&["channel", "admin", "add", &ch, &w.nodes[3].peer_id()?])?;
    wait_for("the admin certificate", LONG, || {
        w.nodes[3]
            .json(&["channel", "show", &ch])
            .ok()
            .filter(|c| c["role"] == "admin")
    })?;
    let side_a: Vec<&Host> = vec![&w.hosts[0], &w.hosts[1], &w.hosts[2], &w.boot_hosts[0]];
    let side_b: Vec<&Host> = vec![&w.hosts[3], &w.hosts[4], &w.hosts[5]];
    w.net.partition(&side_a, &side_b)?;
    for i in 1..=5 {
        w.nodes[0].post(&ch, &format!("side A {i}"))?;
        w.nodes[3].post(&ch, &format!("side B {i}"))?;
    }
    // While apart, neither side sees the other's posts.
    std::thread::sleep(Duration::from_secs(3));
    for n in &w.nodes[..3] {
        let h = texts(&n.history(&ch)?);
        assert!(
            !h.iter().any(|t| t.starts_with("side B")),
            "{} saw across the cut",
            n.name
        );
    }
    for n in &w.nodes[3..] {
        let h = texts(&n.history(&ch)?);
        assert!(
            !h.iter().any(|t| t.starts_with("side A")),
            "{} saw across the cut",
            n.name
        );
    }
    w.net.lift_censor()?;
    let t = Instant::now();
    let all: Vec<&NodeProc> = w.nodes.iter().collect();
    until_everyone_has(&all, &ch, "side A 5", LONG)?;
    until_everyone_has(&all, &ch, "side B 5", LONG)?;
    for n in &all {
        let h = wait_for(&format!("{} to hold all 10", n.name), LONG, || {
            n.history(&ch).ok().filter(|h| h.len() >= 10)
        })?;
        assert_eq!(h.len(), 10, "{}", n.name);
    }
    report(
        "6-partition-heal",
        "every node held both halves' posts after healing",
        t.elapsed().as_secs_f64(),
        serde_json::json!({}),
    );
    let _ = &w.link;
    Ok(())
}

#[test]
fn scenario_7_a_bad_link_with_200ms_and_5_percent_loss() -> Result<()> {
    if !require()? {
        return Ok(());
    }
    let mut w = world(4, 1)?;
    let ch = w.channel.clone();
    // Two followers sit behind a bad link.
    let (h2, h3) = (w.hosts[2].clone(), w.hosts[3].clone());
    w.net.degrade(&h2, Duration::from_millis(200), 0.05)?;
    w.net.degrade(&h3, Duration::from_millis(200), 0.05)?;
    // The links are really slow now: a post takes at least the added delay to get there.
    w.nodes[0].post(&ch, "probe")?;
    let probe = until_everyone_has(&[&w.nodes[2]], &ch, "probe", LONG)?;
    assert!(probe >= 0.19, "the bad link added no delay ({probe:.3} s)");
    let t = Instant::now();
    for i in 1..=20 {
        w.nodes[0].post(&ch, &format!("lossy {i}"))?;
    }
    let followers: Vec<&NodeProc> = w.nodes[1..].iter().collect();
    for n in &followers {
        let h = n.wait_history(&ch, 21, Duration::from_secs(180))?;
        let expected: Vec<String> = std::iter::once("probe".to_string())
            .chain((1..=20).map(|i| format!("lossy {i}")))
            .collect();
        assert_eq!(texts(&h), expected, "{} misses posts", n.name);
    }
    report(
        "7-bad-link",
        "all 20 posts at every follower over 200 ms / 5 % loss links",
        t.elapsed().as_secs_f64(),
        serde_json::json!({}),
    );
    Ok(())
}
