//! Test harness: real `samizdat` and `samizdat-bootstrap` processes on loopback, each in its
//! own temporary home, stopped and cleaned up when dropped; plus a hostile libp2p peer.

pub mod attacker;
pub mod front;
pub mod netns;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The log filter of [`NodeProc::debug`]: the node at debug, its libraries at info.
pub const DEBUG_LOG: &str = "samizdat_node=debug,info";

/// Path of a workspace binary (`target/<profile>/<name>`, beside the test executable's
/// directory), built first if needed so that a test never runs a stale binary.
/// `SAMIZDAT_BIN_DIR` overrides the directory (and skips the build).
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SAMIZDAT_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    static BUILT: std::sync::Once = std::sync::Once::new();
    BUILT.call_once(|| build_binaries(&profile_dir));
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} not found", path.display());
    path
}

/// `cargo test -p samizdat-tests` alone does not rebuild the other packages' binaries, so
/// build them here (a no-op when they are current), with the profile this test was built in.
/// Packages with integration tests (node, bootstrap) get their binaries built by this.
fn build_binaries(profile_dir: &Path) {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return;
    };
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(p) => p.to_string(),
        None => return,
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace");
    let mut cmd = Command::new(cargo);
    // Drop what cargo set for this test crate: build scripts track some of these variables
    // (ring tracks CARGO_MANIFEST_DIR), and a changed value would rebuild half the tree.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_PKG_")
            || matches!(
                k.as_str(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            )
        {
            cmd.env_remove(k);
        }
    }
    // The same package set and targets as `cargo test --workspace` (the README's command),
    // so features unify the same way and this is a no-op after it. Building only the two
    // binaries would resolve dependency features differently (the bench's openmls enables
    // some) and recompile a few hundred crates.
    let out = cmd
        .current_dir(workspace)
        .args([
            "test",
            "--no-run",
            "--quiet",
            "--workspace",
            "--profile",
            &profile,
        ])
        .output()
        .expect("running cargo build for the binaries");
    assert!(
        out.status.success(),
        "building the binaries failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The texts of a list of posts or messages, in order (entries without text are skipped).
pub fn texts(h: &[Value]) -> Vec<String> {
    h.iter()
        .filter_map(|p| p["text"].as_str().map(String::from))
        .collect()
}

/// Polls `f` every 100 ms until it returns `Some`, or fails after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A command for a workspace binary, inside network namespace `ns` when given.
fn command(ns: Option<&str>, name: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(bin(name));
            c
        }
        None => Command::new(bin(name)),
    }
}

fn terminate(child: &mut Child) {
    // SIGTERM first (graceful: flushes the store); SIGKILL if it does not stop.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A `samizdat-bootstrap` process.
pub struct BootstrapProc {
    child: Child,
    /// Its full listen addresses (with /p2p/).
    pub addrs: Vec<String>,
    _home: tempfile::TempDir,
}

impl BootstrapProc {
    /// Starts one on 127.0.0.1 with a random port.
    pub fn start() -> Result<Self> {
        Self::start_in(None, &["/ip4/127.0.0.1/tcp/0"])
    }

    /// Starts one in network namespace `ns` (if given) on these listen addresses.
    pub fn start_in(ns: Option<&str>, listen: &[&str]) -> Result<Self> {
        let home = tempfile::tempdir()?;
        let mut cmd = command(ns, "samizdat-bootstrap");
        cmd.arg("--home").arg(home.path());
        for l in listen {
            cmd.args(["--listen", l]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting samizdat-bootstrap")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .context("bootstrap peer printed no address")?;
        let mut addrs = vec![first];
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            addrs.push(l);
        }
        Ok(Self {
            child,
            addrs,
            _home: home,
        })
    }
}

impl Drop for BootstrapProc {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// A node: a home directory, and a `samizdat run` process while it is started.
pub struct NodeProc {
    /// A label for messages.
    pub name: String,
    home: PathBuf,
    _dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    env: Vec<(String, String)>,
    ns: Option<String>,
}

impl NodeProc {
    /// A node in a fresh temporary home, nothing run yet (in network namespace `ns`, if any).
    fn fresh(name: &str, ns: Option<&str>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Ok(Self {
            name: name.to_string(),
            home: dir.path().join("home"),
            _dir: Some(dir),
            child: None,
            env: Vec::new(),
            ns: ns.map(str::to_string),
        })
    }

    /// A new node with a fresh temporary home (`samizdat init` run).
    pub fn new(name: &str) -> Result<Self> {
        let n = Self::fresh(name, None)?;
        n.cli_ok(&["init"])?;
        Ok(n)
    }

    /// A new node (as [`NodeProc::new`]) that logs the node's debug lines, for tests that
    /// read its log.
    pub fn debug(name: &str) -> Result<Self> {
        let mut n = Self::new(name)?;
        n.set_env("RUST_LOG", DEBUG_LOG);
        Ok(n)
    }

    /// A new node living in network namespace `ns` (`samizdat init` run there, so its config
    /// has a port of its own; `start` then listens on every interface of the namespace).
    pub fn new_in(name: &str, ns: &str) -> Result<Self> {
        let n = Self::fresh(name, Some(ns))?;
        n.cli_ok(&["init"])?;
        Ok(n)
    }

    /// A new device joining an account: `samizdat init --link LINK --name NAME` in a fresh
    /// home (linking completes once it runs while the linking device runs).
    pub fn linked(name: &str, link: &str) -> Result<Self> {
        Self::linked_json(name, link).map(|(n, _)| n)
    }

    /// As [`NodeProc::linked`], with what `init --link --json` printed
    /// (`{"peer_id", "home", "created", "code"}`).
    pub fn linked_json(name: &str, link: &str) -> Result<(Self, Value)> {
        let n = Self::fresh(name, None)?;
        let v = n.json(&["init", "--link", link, "--name", name])?;
        Ok((n, v))
    }

    /// Adds `other`'s contact card (from its running daemon) as a contact named after it.
    pub fn add_contact_of(&self, other: &NodeProc) -> Result<()> {
        let card = other.json(&["contact", "card"])?;
        let link = card["link"].as_str().context("contact card link")?;
        self.json(&["contact", "add", link, "--name", &other.name])?;
        Ok(())
    }

    /// Runs a `--json` command whose answer is a list.
    pub fn list(&self, args: &[&str]) -> Result<Vec<Value>> {
        Ok(self
            .json(args)?
            .as_array()
            .with_context(|| format!("samizdat {} is not a list", args.join(" ")))?
            .clone())
    }

    /// A node without `init` (for error-path tests), with extra environment.
    pub fn bare(name: &str, env: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Ok(Self {
            name: name.to_string(),
            home: dir.path().join("home"),
            _dir: Some(dir),
            child: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ns: None,
        })
    }

    /// Sets an environment variable for this node's future commands and daemon runs.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Runs `samizdat --home HOME ARGS...` and returns its output.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = command(self.ns.as_deref(), "samizdat");
        cmd.arg("--home").arg(&self.home).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.env_remove("RUST_LOG");
        Ok(cmd.output()?)
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "{}: samizdat {} failed: {}",
                self.name,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Runs a CLI command with `--json` and parses its output.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli_ok(&a)?;
        serde_json::from_str(out.trim()).with_context(|| format!("not JSON: {out}"))
    }

    /// Starts `samizdat run` with these bootstrap addresses; waits until its API answers.
    pub fn start(&mut self, bootstrap: &[String]) -> Result<()> {
        self.start_with(bootstrap, &[])
    }

    /// Starts `samizdat run` with extra flags.
    pub fn start_with(&mut self, bootstrap: &[String], extra: &[&str]) -> Result<()> {
        let _ = std::fs::remove_file(self.home.join("api.addr"));
        let mut cmd = command(self.ns.as_deref(), "samizdat");
        cmd.arg("--home")
            .arg(&self.home)
            .arg("run")
            .args(["--api", "127.0.0.1:0"]);
        if self.ns.is_none() && !extra.contains(&"--listen") {
            cmd.args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
        }
        for b in bootstrap {
            cmd.arg("--bootstrap").arg(b);
        }
        cmd.args(extra);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // Appended, so a restarted node's log still shows its first run.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.with_extension("log"))?;
        cmd.stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().context("starting samizdat run")?);
        let name = self.name.clone();
        wait_for(&format!("{name}'s API"), Duration::from_secs(60), || {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                return Some(Err(anyhow::anyhow!("{name} exited early: {status}")));
            }
            self.home
                .join("api.addr")
                .exists()
                .then(|| self.json(&["id"]).ok())
                .flatten()
                .map(|_| Ok(()))
        })?
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Peak resident memory of the daemon so far (VmHWM, KiB), on Linux.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Whether the daemon process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the daemon gracefully (SIGTERM).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
    }

    /// Kills the daemon (SIGKILL), like a power cut.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.with_extension("log")).unwrap_or_default()
    }

    /// GETs an API path with the node's token; returns the body as text.
    pub fn api_text(&self, path: &str) -> Result<String> {
        let home = samizdat_node::home::Home::at(&self.home);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let api = samizdat_node::api::ApiClient::from_home(&home)?;
            let mut out = Vec::new();
            api.download(path, &mut out).await?;
            Ok(String::from_utf8(out)?)
        })
    }

    /// POSTs an empty JSON object to an API path with the node's token; returns the answer.
    pub fn api_post(&self, path: &str) -> Result<Value> {
        let home = samizdat_node::home::Home::at(&self.home);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let api = samizdat_node::api::ApiClient::from_home(&home)?;
            Ok(api.post(path, &serde_json::json!({})).await?)
        })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> Result<String> {
        Ok(self.json(&["id"])?["peer_id"]
            .as_str()
            .context("peer_id")?
            .to_string())
    }

    /// The full dialable addresses of the running daemon.
    pub fn addrs(&self) -> Result<Vec<String>> {
        Ok(self.json(&["id"])?["addrs"]
            .as_array()
            .context("addrs")?
            .iter()
            .filter_map(|a| a.as_str().map(String::from))
            .collect())
    }

    /// A channel's history as JSON values.
    pub fn history(&self, channel: &str) -> Result<Vec<Value>> {
        Ok(self
            .json(&["channel", "history", channel])?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until the node sees at least `n` peers on the channel's topic.
    pub fn wait_topic_peers(&self, channel: &str, n: u64) -> Result<()> {
        wait_for(
            &format!("{} to see {n} topic peers", self.name),
            Duration::from_secs(60),
            || {
                self.json(&["channel", "show", channel])
                    .ok()
                    .and_then(|v| v["peers"].as_u64())
                    .filter(|p| *p >= n)
            },
        )
        .map(|_| ())
    }

    /// Follows a channel by link or id.
    pub fn follow(&self, target: &str) -> Result<()> {
        self.cli_ok(&["channel", "follow", target]).map(|_| ())
    }

    /// Posts text; returns the post's JSON.
    pub fn post(&self, channel: &str, text: &str) -> Result<Value> {
        self.json(&["channel", "post", channel, text])
    }

    /// The channel's sync status JSON.
    pub fn sync_status(&self, channel: &str) -> Result<Value> {
        self.json(&["channel", "sync-status", channel])
    }

    /// Opens this node's store directly (the daemon must be stopped): for checking what is on
    /// disk, as someone holding the device and its key would see it.
    pub fn open_store(&self) -> Result<samizdat_node::store::SledStore> {
        let home = samizdat_node::home::Home::at(&self.home);
        let pass = self
            .env
            .iter()
            .find(|(k, _)| k == "SAMIZDAT_PASSPHRASE")
            .map(|(_, v)| v.as_str());
        let key = samizdat_node::crypto::Keyring::unlock(&home, pass)?;
        Ok(samizdat_node::store::SledStore::open(
            &home.store_dir(),
            std::sync::Arc::new(key),
        )?)
    }

    /// Waits for a message request from `peer` (a direct message or a group invitation from
    /// a peer this node does not know) and accepts it.
    pub fn accept_request_from(&self, peer: &str) -> Result<()> {
        wait_for(
            &format!("{} to get a request from {peer}", self.name),
            Duration::from_secs(90),
            || {
                self.json(&["requests", "list"])
                    .ok()?
                    .as_array()?
                    .iter()
                    .any(|r| r["peer_id"] == peer)
                    .then_some(())
            },
        )?;
        self.cli_ok(&["requests", "accept", peer]).map(|_| ())
    }

    /// Waits until the channel's history holds `n` posts; returns them.
    pub fn wait_history(&self, channel: &str, n: usize, timeout: Duration) -> Result<Vec<Value>> {
        wait_for(&format!("{} to hold {n} posts", self.name), timeout, || {
            self.history(channel).ok().filter(|h| h.len() >= n)
        })
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.stop();
        // Keep the daemon's log where a failed CI run can show it.
        if std::env::var_os("SAMIZDAT_KEEP_LOGS").is_some() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-logs");
            let _ = std::fs::create_dir_all(&dir);
            let name = format!(
                "{}-{}-{}.log",
                std::thread::current()
                    .name()
                    .unwrap_or("test")
                    .replace("::", "-"),
                self.name,
                std::process::id()
            );
            let _ = std::fs::copy(self.home.with_extension("log"), dir.join(name));
        }
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Files under `dir` that contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}
