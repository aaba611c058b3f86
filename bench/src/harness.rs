//! Shared pieces: in-process nodes on loopback, the TCP-copy baseline, and table printing.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use samizdat_node::home::Home;
use samizdat_node::net::bootstrap_peer::{BootstrapPeer, BootstrapPeerConfig};
use samizdat_node::node::{Node, NodeOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A bootstrap peer and `n` nodes in this process, each with a temporary home.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub boot: Option<BootstrapPeer>,
    /// The bootstrap peer's address (with /p2p/).
    pub boot_addr: libp2p::Multiaddr,
    pub shutdown: CancellationToken,
    /// Each node's own stop (a child of `shutdown`), for nodes that leave mid-run.
    stops: Vec<CancellationToken>,
    /// Connection watermarks the nodes run with, when the defaults do not fit (see
    /// [`fit_watermarks`]).
    pub watermarks: Option<(u32, u32)>,
    /// What every node and the bootstrap peer listen on (loopback TCP unless asked).
    listen: libp2p::Multiaddr,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(n: usize) -> Result<Self> {
        Self::start_in(n, None).await
    }

    /// As [`Cluster::start`], with the homes under `base` (e.g. tmpfs: with every node on one
    /// disk, fsyncs from hundreds of nodes would measure the disk, not the nodes).
    pub async fn start_in(n: usize, base: Option<&std::path::Path>) -> Result<Self> {
        Self::start_on(n, base, "/ip4/127.0.0.1/tcp/0".parse()?).await
    }

    /// As [`Cluster::start_in`], every node and the bootstrap peer listening on `listen` only
    /// (e.g. `/ip4/127.0.0.1/tcp/0/tls/ws` to measure the web transport).
    pub async fn start_on(
        n: usize,
        base: Option<&std::path::Path>,
        listen: libp2p::Multiaddr,
    ) -> Result<Self> {
        let shutdown = CancellationToken::new();
        let dir = match base.filter(|b| b.is_dir()) {
            Some(b) => tempfile::tempdir_in(b)?,
            None => tempfile::tempdir()?,
        };
        let boot = BootstrapPeer::spawn(
            libp2p::identity::Keypair::generate_ed25519(),
            BootstrapPeerConfig {
                listen: vec![listen.clone()],
                ..Default::default()
            },
            None,
            shutdown.clone(),
        )
        .await?;
        let boot_addr = boot
            .listen_addrs
            .first()
            .cloned()
            .context("bootstrap address")?;
        let mut this = Self {
            nodes: Vec::new(),
            boot: Some(boot),
            boot_addr,
            shutdown,
            stops: Vec::new(),
            watermarks: fit_watermarks(n),
            listen,
            _dir: dir,
        };
        for _ in 0..n {
            this.add_node().await?;
        }
        Ok(this)
    }

    /// Starts one more node, through the same bootstrap peer; returns its index.
    pub async fn add_node(&mut self) -> Result<usize> {
        let i = self.nodes.len();
        let home = Home::at(self._dir.path().join(format!("n{i}")));
        // SAMIZDAT_BENCH_CONFIG: config.toml lines every node starts with (to compare
        // settings, e.g. `idle_connection_timeout = "10s"`); and the connection watermarks
        // that fit this process's descriptors (see `fit_watermarks`).
        let mut config = std::env::var("SAMIZDAT_BENCH_CONFIG")
            .unwrap_or_default()
            .replace("\\n", "\n");
        if let Some((low, high)) = self.watermarks
            && !config.contains("[connections]")
        {
            config.push_str(&format!("\n[connections]\nlow = {low}\nhigh = {high}\n"));
        }
        if !config.trim().is_empty() {
            std::fs::create_dir_all(home.path())?;
            std::fs::write(home.config_file(), config)?;
        }
        let stop = self.shutdown.child_token();
        self.stops.push(stop.clone());
        self.nodes.push(
            Node::start(
                &home,
                NodeOptions {
                    listen: vec![self.listen.clone()],
                    bootstrap: vec![self.boot_addr.clone()],
                    init_if_missing: true,
                    // One host, many nodes: mDNS would connect all of them to all others,
                    // which is not the network being measured.
                    mdns: Some(false),
                    ..Default::default()
                },
                stop,
            )
            .await?,
        );
        Ok(i)
    }

    /// Stops node `i` (it leaves the network; its index stays, its handle stops answering).
    pub fn leave(&self, i: usize) {
        if let Some(s) = self.stops.get(i) {
            s.cancel();
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for n in self.nodes.drain(..) {
            n.stopped().await;
        }
        if let Some(b) = self.boot.take() {
            b.stopped().await;
        }
    }
}

/// The node's default connection watermarks (low, high).
const DEFAULT_WATERMARKS: (u32, u32) = (32, 96);

/// Watermarks for `n` nodes in this process: the defaults, unless `n` nodes each at the high
/// mark would hold more descriptors than the process may open (every connection is two
/// sockets here, one per end). This machine allows 20,000, so 200 nodes get high = 40: at
/// the defaults the nodes would measure descriptor exhaustion (refused connections).
pub fn fit_watermarks(n: usize) -> Option<(u32, u32)> {
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?;
    // A fifth kept for listeners, stores and the bench itself.
    let per_node = (soft as usize * 4 / 5) / (2 * n.max(1));
    let (low, high) = DEFAULT_WATERMARKS;
    if per_node >= high as usize {
        return None;
    }
    let high = (per_node as u32).max(12);
    Some((low.min(high / 2), high))
}

/// Polls `f` every 20 ms until it yields, or fails after `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Baseline: copying `bytes` bytes over one loopback TCP connection, in `piece`-sized writes.
/// Returns seconds.
pub async fn tcp_copy(bytes: usize, piece: usize) -> Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut n = 0usize;
        loop {
            let r = s.read(&mut buf).await?;
            if r == 0 {
                return Ok::<usize, std::io::Error>(n);
            }
            n += r;
        }
    });
    let data = vec![0x42u8; piece.max(1)];
    let start = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut sent = 0;
    while sent < bytes {
        let n = piece.min(bytes - sent);
        s.write_all(&data[..n]).await?;
        sent += n;
    }
    s.shutdown().await?;
    let got = reader.await??;
    anyhow::ensure!(got == bytes, "baseline copied {got} of {bytes} bytes");
    Ok(start.elapsed().as_secs_f64())
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// Prints a benchmark's figures: scalar fields as a two-column table, nested objects under
/// their name, arrays of objects as one line per row.
pub fn print_table(name: &str, v: &Value) {
    println!("\n{name}");
    println!("{:-<60}", "");
    print_value(v, 1);
}

fn print_value(v: &Value, depth: usize) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                match val {
                    Value::Object(_) => {
                        println!("{pad}{k}:");
                        print_value(val, depth + 1);
                    }
                    Value::Array(rows) => {
                        println!("{pad}{k}:");
                        for r in rows {
                            if let Value::Object(cols) = r {
                                let line: Vec<String> =
                                    cols.iter().map(|(c, x)| format!("{c}={x}")).collect();
                                println!("{pad}  {}", line.join(" "));
                            }
                        }
                    }
                    other => println!("{pad}{k:<40} {other}"),
                }
            }
        }
        other => println!("{pad}{other}"),
    }
}

/// The cargo profile the node binaries are built with: `release`, or `SAMIZDAT_BENCH_PROFILE`
/// (CI's smoke run uses `ci`, whose artifacts the tests have just built).
fn profile() -> String {
    std::env::var("SAMIZDAT_BENCH_PROFILE")
        .ok()
        .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or_else(|| "release".into())
}

/// Path of a workspace binary in `target/<profile>`, built first (a no-op when current).
pub fn binary(name: &str) -> Result<std::path::PathBuf> {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        // Cargo's per-crate variables would make build scripts think things changed.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("CARGO_PKG_")
                || k == "CARGO_MANIFEST_DIR"
                || k == "CARGO_MANIFEST_PATH"
                || k == "CARGO_CRATE_NAME"
                || k == "CARGO_PRIMARY_PACKAGE"
            {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .current_dir(&root)
            // The bench package is selected too, so that dependency features unify as they
            // did for `cargo run -p samizdat-bench` (its openmls enables some): building only
            // the two binaries would recompile a few hundred crates with other features.
            .args([
                "build",
                "--quiet",
                "--profile",
                &profile(),
                "-p",
                "samizdat-bench",
                "-p",
                "samizdat-node",
                "-p",
                "samizdat-bootstrap",
                "--bins",
            ])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    if let Err(e) = built {
        anyhow::bail!("building {name}: {e}");
    }
    Ok(root.join("target").join(profile()).join(name))
}
