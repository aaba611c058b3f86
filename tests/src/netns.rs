//! A small internet on one machine: Linux network namespaces joined by veth pairs through a
//! router namespace (the "internet"), with nftables rules for a censor, NAT gateways, a LAN
//! segment on a bridge, and latency and loss on chosen links. Real `samizdat` and
//! `samizdat-bootstrap` processes run inside the namespaces. Needs root, `ip`, `nft` and
//! `iptables`; everything it creates is removed when the [`Internet`] is dropped.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::bin;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Why the harness cannot run here, if it cannot (not root, tools missing).
pub fn unavailable() -> Option<String> {
    // `id -u` rather than a libc call: the workspace forbids unsafe code.
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("network-namespace tests need root".into());
    }
    for (tool, arg) in [
        ("ip", "-V"),
        ("nft", "--version"),
        ("iptables", "--version"),
    ] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// Runs a scenario if the machine allows it. With `SAMIZDAT_NETNS_REQUIRED=1` (set by CI), a
/// machine that cannot run it is an error instead of a skip.
pub fn require() -> Result<bool> {
    match unavailable() {
        None => Ok(true),
        Some(why) if std::env::var("SAMIZDAT_NETNS_REQUIRED").is_ok_and(|v| v == "1") => {
            bail!("network-namespace tests are required here but cannot run: {why}")
        }
        Some(why) => {
            eprintln!("skipping network-namespace scenario: {why}");
            Ok(false)
        }
    }
}

/// Prints how long a scenario took to recover and appends it to `target/netns/report.jsonl`.
pub fn report(scenario: &str, what: &str, seconds: f64, extra: serde_json::Value) {
    use std::io::Write;
    eprintln!("RECOVERY {scenario}: {what} after {seconds:.2} s {extra}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/netns");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("report.jsonl"))
    {
        let line = serde_json::json!({
            "scenario": scenario, "what": what, "seconds": (seconds * 100.0).round() / 100.0, "extra": extra,
        });
        let _ = writeln!(f, "{line}");
    }
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn in_ns(ns: &str, args: &[&str]) -> Result<()> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

/// Where a host is plugged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Directly on the internet (its own link to the router).
    Public,
    /// Behind its own NAT gateway (masquerade) on the internet.
    Nat,
    /// On the shared LAN bridge (no router, no internet).
    Lan,
}

/// One machine of the simulated network.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its namespace.
    pub ns: String,
    /// Its own IPv4 address (private behind a NAT).
    pub ip: Ipv4Addr,
    /// The address the internet sees it at (its NAT gateway's, behind a NAT).
    pub public_ip: Ipv4Addr,
    /// How it is attached.
    pub attach: Attach,
}

/// The simulated network; removed on drop.
pub struct Internet {
    prefix: String,
    router: String,
    namespaces: Vec<String>,
    hosts: usize,
    lan: Option<String>,
    netem: Vec<Child>,
}

impl Internet {
    /// An empty internet: just the router namespace.
    pub fn new() -> Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // Interface names are limited to 15 characters: keep the prefix short.
        let prefix = format!("z{:x}{n}", std::process::id() % 0xfff);
        let router = format!("{prefix}r");
        let mut net = Self {
            prefix,
            router: router.clone(),
            namespaces: Vec::new(),
            hosts: 0,
            lan: None,
            netem: Vec::new(),
        };
        net.add_ns(&router)?;
        in_ns(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        // The censor's table exists from the start, empty.
        in_ns(&router, &["nft", "add", "table", "inet", "censor"])?;
        in_ns(
            &router,
            &[
                "nft",
                "add chain inet censor forward { type filter hook forward priority 0 ; policy accept ; }",
            ],
        )?;
        Ok(net)
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        run(&["ip", "netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        in_ns(ns, &["ip", "link", "set", "lo", "up"])
    }

    fn veth(&self, a_ns: &str, a_if: &str, b_ns: &str, b_if: &str) -> Result<()> {
        run(&[
            "ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if,
        ])?;
        run(&["ip", "link", "set", a_if, "netns", a_ns])?;
        run(&["ip", "link", "set", b_if, "netns", b_ns])?;
        in_ns(a_ns, &["ip", "link", "set", a_if, "up"])?;
        in_ns(b_ns, &["ip", "link", "set", b_if, "up"])
    }

    /// Adds a host.
    pub fn host(&mut self, attach: Attach) -> Result<Host> {
        self.hosts += 1;
        let i = self.hosts;
        let p = self.prefix.clone();
        let ns = format!("{p}h{i}");
        self.add_ns(&ns)?;
        let wan = Ipv4Addr::new(10, 0, u8::try_from(i)?, 2);
        match attach {
            Attach::Public => {
                self.veth(&self.router, &format!("{p}a{i}"), &ns, &format!("{p}b{i}"))?;
                in_ns(
                    &self.router,
                    &[
                        "ip",
                        "addr",
                        "add",
                        &format!("10.0.{i}.1/24"),
                        "dev",
                        &format!("{p}a{i}"),
                    ],
                )?;
                in_ns(
                    &ns,
                    &[
                        "ip",
                        "addr",
                        "add",
                        &format!("{wan}/24"),
                        "dev",
                        &format!("{p}b{i}"),
                    ],
                )?;
                in_ns(
                    &ns,
                    &[
                        "ip",
                        "route",
                        "add",
                        "default",
                        "via",
                        &format!("10.0.{i}.1"),
                    ],
                )?;
                Ok(Host {
                    ns,
                    ip: wan,
                    public_ip: wan,
                    attach,
                })
            }
            Attach::Nat => {
                let gw = format!("{p}g{i}");
                self.add_ns(&gw)?;
                in_ns(&gw, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
                self.veth(&self.router, &format!("{p}a{i}"), &gw, &format!("{p}b{i}"))?;
                in_ns(
                    &self.router,
                    &[
                        "ip",
                        "addr",
                        "add",
                        &format!("10.0.{i}.1/24"),
                        "dev",
                        &format!("{p}a{i}"),
                    ],
                )?;
                in_ns(
                    &gw,
                    &[
                        "ip",
                        "addr",
                        "add",
                        &format!("{wan}/24"),
                        "dev",
                        &format!("{p}b{i}"),
                    ],
                )?;
                in_ns(
                    &gw,
                    &[
                        "ip",
                        "route",
                        "add",
                        "default",
                        "via",
                        &format!("10.0.{i}.1"),
                    ],
                )?;
                self.veth(&gw, &format!("{p}c{i}"), &ns, &format!("{p}d{i}"))?;
                let inside = Ipv4Addr::new(192, 168, u8::try_from(i)?, 2);
                in_ns(
                    &gw,
                    &[
                        "ip",
                        "addr",
                        "add",
                        &format!("192.168.{i}.1/24"),
                        "dev",
                        &format!("{p}c{i}"),
                    ],
                )?;
                in_ns(
                    &ns,
                    &[
                        "ip",
                        "addr",
                        "add",
                        &format!("{inside}/24"),
                        "dev",
                        &format!("{p}d{i}"),
                    ],
                )?;
                in_ns(
                    &ns,
                    &[
                        "ip",
                        "route",
                        "add",
                        "default",
                        "via",
                        &format!("192.168.{i}.1"),
                    ],
                )?;
                // A home router: masquerade outgoing traffic, nothing gets in unsolicited.
                in_ns(&gw, &["nft", "add", "table", "ip", "nat"])?;
                in_ns(
                    &gw,
                    &[
                        "nft",
                        "add chain ip nat post { type nat hook postrouting priority 100 ; }",
                    ],
                )?;
                in_ns(
                    &gw,
                    &[
                        "nft",
                        &format!("add rule ip nat post oifname \"{p}b{i}\" masquerade"),
                    ],
                )?;
                // Unsolicited packets from outside are dropped silently (no RST, no ICMP), as
                // home routers do: what makes hole punching possible at all.
                in_ns(&gw, &["nft", "add", "table", "inet", "fw"])?;
                for hook in ["input", "forward"] {
                    let chain = format!(
                        "add chain inet fw {hook} {{ type filter hook {hook} priority 0 ; policy accept ; }}"
                    );
                    in_ns(&gw, &["nft", &chain])?;
                    let wan = format!("{p}b{i}");
                    in_ns(
                        &gw,
                        &[
                            "nft",
                            &format!(
                                "add rule inet fw {hook} iifname \"{wan}\" ct state established,related accept"
                            ),
                        ],
                    )?;
                    in_ns(
                        &gw,
                        &[
                            "nft",
                            &format!("add rule inet fw {hook} iifname \"{wan}\" drop"),
                        ],
                    )?;
                }
                Ok(Host {
                    ns,
                    ip: inside,
                    public_ip: wan,
                    attach,
                })
            }
            Attach::Lan => {
                let lan = match &self.lan {
                    Some(l) => l.clone(),
                    None => {
                        let l = format!("{p}l");
                        self.add_ns(&l)?;
                        in_ns(&l, &["ip", "link", "add", "br0", "type", "bridge"])?;
                        in_ns(&l, &["ip", "link", "set", "br0", "up"])?;
                        self.lan = Some(l.clone());
                        l
                    }
                };
                self.veth(&lan, &format!("{p}a{i}"), &ns, &format!("{p}b{i}"))?;
                in_ns(
                    &lan,
                    &["ip", "link", "set", &format!("{p}a{i}"), "master", "br0"],
                )?;
                let ip = Ipv4Addr::new(10, 5, 0, u8::try_from(i)?);
                in_ns(
                    &ns,
                    &[
                        "ip",
                        "addr",
                        "add",
                        &format!("{ip}/24"),
                        "dev",
                        &format!("{p}b{i}"),
                    ],
                )?;
                // mDNS needs a multicast route.
                in_ns(
                    &ns,
                    &[
                        "ip",
                        "route",
                        "add",
                        "224.0.0.0/4",
                        "dev",
                        &format!("{p}b{i}"),
                    ],
                )?;
                Ok(Host {
                    ns,
                    ip,
                    public_ip: ip,
                    attach,
                })
            }
        }
    }

    /// Adds censor rules (nft rule bodies for the router's forward chain), returning handles
    /// so that they can be lifted again.
    pub fn censor(&self, rules: &[String]) -> Result<()> {
        for r in rules {
            in_ns(
                &self.router,
                &["nft", &format!("add rule inet censor forward {r}")],
            )?;
        }
        Ok(())
    }

    /// Removes every censor rule.
    pub fn lift_censor(&self) -> Result<()> {
        in_ns(&self.router, &["nft", "flush chain inet censor forward"])
    }

    /// Drops every packet to and from these hosts (as seen on the internet).
    pub fn block_hosts(&self, hosts: &[&Host]) -> Result<()> {
        let rules: Vec<String> = hosts
            .iter()
            .flat_map(|h| {
                [
                    format!("ip saddr {} drop", h.public_ip),
                    format!("ip daddr {} drop", h.public_ip),
                ]
            })
            .collect();
        self.censor(&rules)
    }

    /// Cuts the internet in two: nothing passes between the groups.
    pub fn partition(&self, a: &[&Host], b: &[&Host]) -> Result<()> {
        let mut rules = Vec::new();
        for x in a {
            for y in b {
                rules.push(format!(
                    "ip saddr {} ip daddr {} drop",
                    x.public_ip, y.public_ip
                ));
                rules.push(format!(
                    "ip saddr {} ip daddr {} drop",
                    y.public_ip, x.public_ip
                ));
            }
        }
        self.censor(&rules)
    }

    /// Lets through only TCP to or from port 443 (what a censor that allows "the web" does).
    pub fn only_https_port(&self) -> Result<()> {
        self.censor(&[
            "tcp dport 443 accept".into(),
            "tcp sport 443 accept".into(),
            "drop".into(),
        ])
    }

    /// Adds one-way `delay` and random `loss` to everything to and from `host`, in user space
    /// (NFQUEUE and the harness's `samizdat-netem`), or with `tc netem` where the kernel has it.
    pub fn degrade(&mut self, host: &Host, delay: Duration, loss: f64) -> Result<()> {
        let queue = self.netem.len();
        let ip = host.public_ip.to_string();
        for dir in ["-s", "-d"] {
            in_ns(
                &self.router,
                &[
                    "iptables",
                    "-A",
                    "FORWARD",
                    dir,
                    &ip,
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    &queue.to_string(),
                ],
            )?;
        }
        let child = Command::new("ip")
            .args(["netns", "exec", &self.router])
            .arg(bin("samizdat-netem"))
            .args(["--queue", &queue.to_string()])
            .args(["--delay-ms", &delay.as_millis().to_string()])
            .args(["--loss", &loss.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting samizdat-netem")?;
        self.netem.push(child);
        // Give it a moment to bind the queue; until then, packets are dropped, not passed.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// A censor with deep packet inspection in front of every `inside` host, as TSPU sits near
    /// every end user: it drops all UDP (QUIC), drops everything to and from `blocked_ips`,
    /// and resets any TCP flow whose payload carries libp2p's plaintext handshake
    /// (multistream-select, Noise negotiation), a plaintext WebSocket upgrade, or one of
    /// `blocked_names` (a TLS SNI). Other TLS passes. Matches on payload bytes with iptables'
    /// string match; every rule counts what it dropped ([`Internet::dpi_counters`]).
    pub fn dpi_censor(
        &self,
        inside: &[&Host],
        blocked_ips: &[Ipv4Addr],
        blocked_names: &[&str],
    ) -> Result<()> {
        let r = &self.router;
        in_ns(r, &["iptables", "-N", "DPI"])?;
        let mut rules: Vec<Vec<String>> = vec![vec![
            "-p".into(),
            "udp".into(),
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            "quic".into(),
            "-j".into(),
            "DROP".into(),
        ]];
        for ip in blocked_ips {
            for dir in ["-s", "-d"] {
                rules.push(
                    [
                        dir,
                        &ip.to_string(),
                        "-m",
                        "comment",
                        "--comment",
                        "ip-block",
                        "-j",
                        "DROP",
                    ]
                    .map(String::from)
                    .to_vec(),
                );
            }
        }
        let mut strings = vec![
            ("multistream", "/multistream/1.0.0".to_string()),
            ("noise", "/noise".to_string()),
            ("plain-websocket", "Upgrade: websocket".to_string()),
        ];
        strings.extend(blocked_names.iter().map(|n| ("sni", n.to_string())));
        for (name, needle) in strings {
            rules.push(
                [
                    "-p",
                    "tcp",
                    "-m",
                    "string",
                    "--algo",
                    "bm",
                    "--icase",
                    "--string",
                    &needle,
                    "-m",
                    "comment",
                    "--comment",
                    name,
                    "-j",
                    "REJECT",
                    "--reject-with",
                    "tcp-reset",
                ]
                .map(String::from)
                .to_vec(),
            );
        }
        for rule in rules {
            let mut args = vec!["iptables", "-A", "DPI"];
            args.extend(rule.iter().map(String::as_str));
            in_ns(r, &args)?;
        }
        for h in inside {
            let ip = h.public_ip.to_string();
            for dir in ["-s", "-d"] {
                in_ns(r, &["iptables", "-A", "FORWARD", dir, &ip, "-j", "DPI"])?;
            }
        }
        Ok(())
    }

    /// Packets each DPI rule dropped, by rule name (`quic`, `ip-block`, `multistream`,
    /// `noise`, `plain-websocket`, `sni`), summed over rules of the same name.
    pub fn dpi_counters(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router,
                "iptables",
                "-L",
                "DPI",
                "-v",
                "-n",
                "-x",
            ])
            .output()
            .context("reading the DPI counters")?;
        let mut counts = std::collections::BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines().skip(2) {
            let packets: u64 = match line.split_whitespace().next().map(str::parse) {
                Some(Ok(n)) => n,
                _ => continue,
            };
            if let Some(name) = line.split("/* ").nth(1).and_then(|c| c.split(" */").next()) {
                *counts.entry(name.to_string()).or_insert(0) += packets;
            }
        }
        Ok(counts)
    }

    /// Records every packet the router lets out to or from these hosts (after the censor:
    /// what crossed it) into a pcap file, until the internet is dropped.
    pub fn capture(&mut self, hosts: &[&Host], file: &std::path::Path) -> Result<()> {
        let filter = hosts
            .iter()
            .map(|h| format!("host {}", h.public_ip))
            .collect::<Vec<_>>()
            .join(" or ");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router,
                "tcpdump",
                "-i",
                "any",
                "-Q",
                "out",
                "-U",
                "-w",
            ])
            .arg(file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tcpdump (apt install tcpdump)")?;
        self.netem.push(child);
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    /// Runs a command inside a host.
    pub fn command(&self, host: &Host, program: PathBuf) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host.ns]).arg(program);
        c
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        for c in &mut self.netem {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Processes still inside a namespace would keep it alive: kill them first.
        for ns in self.namespaces.iter().rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
