//! Through deep packet inspection: a censor in the network-namespace harness that drops QUIC,
//! resets any TCP flow carrying libp2p's plaintext handshake or a plaintext WebSocket
//! upgrade, blocks known names by SNI and the bootstrap peer by IP, and lets other TLS
//! through. Inside nodes reach the world through a web front (nginx, TLS for an innocuous
//! site, one path forwarded to the bootstrap peer) and their own TLS listeners. Recovery
//! times go to `target/netns/report.jsonl`.
//!
//! Needs root, `ip`, `iptables`, `nginx` and `tcpdump` (`.ci/run` installs them); without
//! them the scenarios are skipped, unless `SAMIZDAT_NETNS_REQUIRED=1`.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use samizdat_tests::front::{Front, nginx_available};
use samizdat_tests::netns::{Attach, Host, Internet, report, require};
use samizdat_tests::{BootstrapProc, NodeProc, texts, wait_for};

const LONG: Duration = Duration::from_secs(180);

/// What libp2p says in clear when it is not hidden; none of it may cross the censor.
const SIGNATURES: &[&[u8]] = &[
    b"/multistream/1.0.0",
    b"/noise",
    b"/yamux",
    b"Upgrade: websocket",
];

fn until_everyone_has(nodes: &[&NodeProc], channel: &str, text: &str) -> Result<f64> {
    let t = Instant::now();
    for n in nodes {
        wait_for(&format!("{} to receive {text:?}", n.name), LONG, || {
            n.history(channel)
                .ok()
                .filter(|h| texts(h).iter().any(|t| t == text))
        })?;
    }
    Ok(t.elapsed().as_secs_f64())
}

fn peer_of(addr: &str) -> Result<String> {
    addr.rsplit("/p2p/")
        .next()
        .map(String::from)
        .context("address without /p2p/")
}

/// nginx on `front` for news.example, forwarding /static/ws to the bootstrap peer's plain
/// WebSocket listener on `boot` (port 8080).
fn front_for(front: &Host, boot: &Host) -> Result<Front> {
    Front::start(
        &front.ns,
        front.public_ip,
        SocketAddrV4::new(boot.public_ip, 8080),
        "news.example",
        "/static/ws",
    )
}

fn inside_flags() -> Vec<&'static str> {
    vec![
        "--listen",
        "/ip4/0.0.0.0/tcp/4001",
        "--listen",
        "/ip4/0.0.0.0/udp/4001/quic-v1",
        // Each inside node serves TLS of its own, as a web site would, on a path of its own.
        "--listen",
        "/ip4/0.0.0.0/tcp/443/tls/x-parity-ws/%2Fnews",
    ]
}

fn skip() -> Result<bool> {
    if !require()? {
        return Ok(true);
    }
    if !nginx_available() {
        if std::env::var("SAMIZDAT_NETNS_REQUIRED").is_ok_and(|v| v == "1") {
            bail!("the DPI scenarios need nginx here (apt install nginx)");
        }
        eprintln!("skipping DPI scenario: nginx is not installed");
        return Ok(true);
    }
    Ok(false)
}

#[test]
fn dpi_1_to_3_inside_nodes_cross_a_dpi_censor_through_a_web_front() -> Result<()> {
    if skip()? {
        return Ok(());
    }
    let t0 = Instant::now();
    let mut net = Internet::new()?;
    let bh = net.host(Attach::Public)?;
    let fh = net.host(Attach::Public)?;
    let oh = net.host(Attach::Public)?;
    let inside_hosts: Vec<Host> = (0..4)
        .map(|_| net.host(Attach::Public))
        .collect::<Result<_>>()?;
    let inside: Vec<&Host> = inside_hosts.iter().collect();
    eprintln!("dpi-1: hosts after {:?}", t0.elapsed());

    // The bootstrap peer, outside, with a plain WebSocket listener only its front reaches.
    let boot = BootstrapProc::start_in(
        Some(&bh.ns),
        &[
            "/ip4/0.0.0.0/tcp/4001",
            "/ip4/0.0.0.0/udp/4001/quic-v1",
            "/ip4/0.0.0.0/tcp/8080/ws",
        ],
    )?;
    let boot_direct: Vec<String> = boot
        .addrs
        .iter()
        .filter(|a| a.contains(&format!("/{}/tcp/4001/", bh.public_ip)))
        .cloned()
        .collect();
    let boot_id = peer_of(boot_direct.first().context("bootstrap address")?)?;
    eprintln!("dpi-1: bootstrap peer after {:?}", t0.elapsed());
    let front = front_for(&fh, &bh)?;
    let fronted = front.addr(&boot_id)?;

    // The censor next to every inside node; the capture records what it lets through.
    net.dpi_censor(&inside, &[bh.public_ip], &["samizdat"])?;
    let capture = tempfile::NamedTempFile::new()?;
    net.capture(&inside, capture.path())?;

    eprintln!(
        "dpi-1: network, bootstrap peer and front up after {:?}",
        t0.elapsed()
    );
    let t = Instant::now();
    let mut outside = NodeProc::new_in("outside", &oh.ns)?;
    outside.start(&boot_direct)?;
    let mut nodes = Vec::new();
    for (i, h) in inside_hosts.iter().enumerate() {
        let mut n = NodeProc::new_in(&format!("inside{i}"), &h.ns)?;
        n.start_with(std::slice::from_ref(&fronted), &inside_flags())?;
        nodes.push(n);
    }
    for n in &nodes {
        wait_for(
            &format!("{} to reach the bootstrap peer", n.name),
            LONG,
            || {
                let info = n.json(&["id"]).ok()?;
                info["connection_transports"]
                    .as_array()?
                    .iter()
                    .any(|c| c["peer_id"] == boot_id.as_str() && c["transport"] == "tls-ws")
                    .then_some(())
            },
        )?;
    }
    report(
        "dpi-1-fronted",
        "every inside node connected to the bootstrap peer through the web front",
        t.elapsed().as_secs_f64(),
        serde_json::json!({}),
    );

    // (1) A channel from outside, followed inside by its invite link.
    let ch = outside.json(&["channel", "create", "world news"])?;
    let world = ch["id"].as_str().context("id")?.to_string();
    for n in &nodes {
        n.follow(ch["link"].as_str().context("link")?)?;
    }
    let t = Instant::now();
    outside.post(&world, "news from outside")?;
    let inward = until_everyone_has(
        &nodes.iter().collect::<Vec<_>>(),
        &world,
        "news from outside",
    )?;
    report(
        "dpi-1-fronted",
        "post from outside reached every inside node",
        t.elapsed().as_secs_f64(),
        serde_json::json!({ "inward_s": inward }),
    );

    // ... and one from inside, out.
    let ch = nodes[0].json(&["channel", "create", "from inside"])?;
    let local = ch["id"].as_str().context("id")?.to_string();
    outside.follow(ch["link"].as_str().context("link")?)?;
    for n in &nodes[1..] {
        n.follow(ch["link"].as_str().context("link")?)?;
    }
    let t = Instant::now();
    nodes[0].post(&local, "news from inside")?;
    let mut readers: Vec<&NodeProc> = nodes[1..].iter().collect();
    readers.push(&outside);
    until_everyone_has(&readers, &local, "news from inside")?;
    report(
        "dpi-1-fronted",
        "post from inside reached the outside node and the other inside nodes",
        t.elapsed().as_secs_f64(),
        serde_json::json!({}),
    );

    // Direct messages both ways, between an inside node and the outside one, after a contact
    // exchange by card links (which carry fronted and relayed addresses).
    let inner = &nodes[0];
    for (to, of) in [(&outside, inner), (inner, &outside)] {
        let card = of.json(&["contact", "card"])?;
        to.json(&[
            "contact",
            "add",
            card["link"].as_str().context("card link")?,
            "--name",
            &of.name,
        ])?;
    }
    let (inner_id, outside_id) = (inner.peer_id()?, outside.peer_id()?);
    let t = Instant::now();
    for (from, from_id, to, to_id, text) in [
        (inner, &inner_id, &outside, &outside_id, "hello from inside"),
        (
            &outside,
            &outside_id,
            inner,
            &inner_id,
            "hello from outside",
        ),
    ] {
        from.json(&["dm", "send", to_id, text])?;
        wait_for(&format!("{} to read {text:?}", to.name), LONG, || {
            let h = to.json(&["dm", "history", from_id]).ok()?;
            h.as_array()?
                .iter()
                .any(|m| m["text"] == text)
                .then_some(())
        })?;
    }
    report(
        "dpi-1-fronted",
        "direct messages crossed both ways between inside and outside",
        t.elapsed().as_secs_f64(),
        serde_json::json!({}),
    );

    // (2) Every inside node restarts with no bootstrap flag: its peer cache holds the fronted
    // address and what it learned, and that is enough.
    for n in &mut nodes {
        n.stop();
    }
    let t = Instant::now();
    for n in &mut nodes {
        n.start_with(&[], &inside_flags())?;
    }
    outside.post(&world, "after the restart")?;
    until_everyone_has(
        &nodes.iter().collect::<Vec<_>>(),
        &world,
        "after the restart",
    )?;
    report(
        "dpi-2-restart",
        "inside nodes restarted from their peer cache and received a new post",
        t.elapsed().as_secs_f64(),
        serde_json::json!({}),
    );

    eprintln!("dpi-2: done after {:?}", t0.elapsed());
    // (3) The censor worked: it dropped QUIC and reset plain libp2p handshakes it saw...
    let counters = net.dpi_counters()?;
    eprintln!("DPI counters: {counters:?}");
    for rule in ["quic", "multistream"] {
        assert!(
            counters.get(rule).copied().unwrap_or(0) > 0,
            "the censor never matched {rule}: the scenario did not test it ({counters:?})"
        );
    }
    // ... and nothing it let through to or from an inside node carries a signature.
    let pcap = std::fs::read(capture.path())?;
    assert!(
        pcap.len() > 10_000,
        "the capture is nearly empty: {} bytes",
        pcap.len()
    );
    for sig in SIGNATURES {
        assert!(
            !pcap.windows(sig.len()).any(|w| w == *sig),
            "{:?} crossed the censor in an inside flow",
            String::from_utf8_lossy(sig)
        );
    }
    report(
        "dpi-3-capture",
        "capture of every inside flow the censor passed: no libp2p signature",
        0.0,
        serde_json::json!({ "captured_bytes": pcap.len(), "censor_drops": counters }),
    );
    Ok(())
}

#[test]
fn dpi_4_a_prober_sees_a_web_site() -> Result<()> {
    if skip()? {
        return Ok(());
    }
    let mut net = Internet::new()?;
    let bh = net.host(Attach::Public)?;
    let fh = net.host(Attach::Public)?;
    let ph = net.host(Attach::Public)?;
    let nh = net.host(Attach::Public)?;
    let boot = BootstrapProc::start_in(Some(&bh.ns), &["/ip4/0.0.0.0/tcp/8080/ws"])?;
    let boot_id = peer_of(boot.addrs.first().context("address")?)?;
    let front = front_for(&fh, &bh)?;
    let _ = front.addr(&boot_id)?;
    let mut node = NodeProc::new_in("tls-node", &nh.ns)?;
    node.start_with(
        &[],
        &["--listen", "/ip4/0.0.0.0/tcp/443/tls/x-parity-ws/%2Fnews"],
    )?;

    // A prober that knows neither path: the front and the node's own TLS port both answer as
    // web servers, never with libp2p.
    for (target, ip) in [("front", fh.public_ip), ("node", nh.public_ip)] {
        for path in ["/", "/ws", "/static"] {
            let out = std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ph.ns,
                    "curl",
                    "-sk",
                    "-i",
                    "--max-time",
                    "10",
                ])
                .arg(format!("https://{ip}{path}"))
                .output()
                .context("running curl")?;
            let answer = String::from_utf8_lossy(&out.stdout);
            assert!(answer.starts_with("HTTP/1.1 "), "{target}{path}: {answer}");
            assert!(
                !answer.contains("libp2p") && !answer.contains("multistream"),
                "{target}{path}: {answer}"
            );
        }
    }
    report(
        "dpi-4-probe",
        "a prober got web pages from the front and a node's TLS port",
        0.0,
        serde_json::json!({}),
    );
    Ok(())
}
