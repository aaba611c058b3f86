//! Node cost, measured on a real `samizdat run` process: resident memory idle and while
//! following many busy channels, and CPU per 1,000 received posts. Cold start: time from
//! `samizdat run` to the first post received, through a bootstrap peer and through the peer
//! cache alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use samizdat_node::channel::{ChannelId, PostDraft};
use serde_json::{Value, json};

use crate::harness::{Cluster, binary, round, until};

struct Proc {
    child: Child,
    home: PathBuf,
}

impl Proc {
    fn cli(&self, args: &[&str]) -> Result<Value> {
        let out = Command::new(binary("samizdat")?)
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .arg("--json")
            .output()?;
        if !out.status.success() {
            bail!(
                "samizdat {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(home: &Path, bootstrap: &[String]) -> Result<Proc> {
    let _ = std::fs::remove_file(home.join("api.addr"));
    let mut cmd = Command::new(binary("samizdat")?);
    cmd.arg("--home")
        .arg(home)
        .args(["run", "--api", "127.0.0.1:0"]);
    for b in bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let p = Proc {
        child,
        home: home.to_path_buf(),
    };
    let t = Instant::now();
    while p.cli(&["id"]).is_err() {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "samizdat run did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(p)
}

fn status_kib(pid: u32, field: &str) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} not in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0))
}

/// utime + stime of a process, in seconds (clock ticks are 100 Hz on Linux).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = s.rsplit(')').next().context("stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    Ok(ticks / 100.0)
}

pub fn run(quick: bool) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(measure(quick))
}

async fn measure(quick: bool) -> Result<Value> {
    let channels = if quick { 10 } else { 100 };
    let rate = if quick { 20.0 } else { 100.0 };
    let seconds = if quick { 8.0 } else { 30.0 };
    let cluster = Cluster::start(1).await?;
    let boot = cluster
        .boot
        .as_ref()
        .and_then(|b| b.listen_addrs.first())
        .context("bootstrap address")?
        .to_string();
    let owner = cluster.nodes[0].handle();
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("follower");
    let init = Command::new(binary("samizdat")?)
        .arg("--home")
        .arg(&home)
        .arg("init")
        .output()?;
    anyhow::ensure!(init.status.success(), "init failed");

    // Idle: running, connected to a bootstrap peer, no channels.
    let p = start(&home, std::slice::from_ref(&boot))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = status_kib(p.pid(), "VmRSS:")? / 1024.0;

    // Busy: follows `channels` channels, each getting posts.
    let mut ids: Vec<ChannelId> = Vec::new();
    for i in 0..channels {
        let ch = owner
            .create_channel(format!("busy {i}"), String::new())
            .await?;
        p.cli(&["channel", "follow", ch.link.as_deref().context("link")?])?;
        ids.push(ch.id.parse()?);
    }
    let me: libp2p::PeerId = p.cli(&["id"])?["peer_id"].as_str().context("id")?.parse()?;
    until(
        "the follower on every topic",
        Duration::from_secs(120),
        || {
            let owner = owner.clone();
            let ids = ids.clone();
            async move {
                for id in &ids {
                    if owner.channel(*id).await.ok()?.peers == 0 {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await?;
    let _ = me;
    // What the node spends with nothing arriving (DHT, gossip heartbeats, probes), so that it
    // is not charged to the posts.
    let idle0 = (cpu_seconds(p.pid())?, Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_rate = (cpu_seconds(p.pid())? - idle0.0) / idle0.1.elapsed().as_secs_f64();
    let cpu0 = cpu_seconds(p.pid())?;
    let busy_start = Instant::now();
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now();
    for i in 0..total {
        tokio::time::sleep_until((t0 + interval * i as u32).into()).await;
        owner
            .post(
                ids[i % ids.len()],
                PostDraft {
                    text: format!("busy post {i} {}", "x".repeat(150)),
                    ..Default::default()
                },
            )
            .await?;
    }
    let want = total as u64;
    let received = until(
        "the follower to store every post",
        Duration::from_secs(120),
        || {
            let p = &p;
            async move {
                let list = p.cli(&["channel", "list"]).ok()?;
                let n: u64 = list
                    .as_array()?
                    .iter()
                    .filter_map(|c| c["posts"].as_u64())
                    .sum();
                (n >= want).then_some(n)
            }
        },
    )
    .await?;
    let cpu_total = cpu_seconds(p.pid())? - cpu0;
    let cpu = (cpu_total - idle_rate * busy_start.elapsed().as_secs_f64()).max(0.0);
    let busy_rss = status_kib(p.pid(), "VmRSS:")? / 1024.0;
    let peak = status_kib(p.pid(), "VmHWM:")? / 1024.0;
    drop(p);

    // Cold start through the bootstrap peer, then through the peer cache alone.
    let probe = ids[0];
    let cold = |bootstrap: Vec<String>, label: &'static str| {
        let owner = owner.clone();
        let home = home.clone();
        async move {
            let t = Instant::now();
            let p = start(&home, &bootstrap)?;
            let before = p
                .cli(&["channel", "history", &probe.to_string()])?
                .as_array()
                .map_or(0, |a| a.len());
            // The owner keeps posting; the first one to arrive ends the clock.
            let mut i = 0;
            loop {
                owner
                    .post(
                        probe,
                        PostDraft {
                            text: format!("{label} {i}"),
                            ..Default::default()
                        },
                    )
                    .await?;
                i += 1;
                let now = p
                    .cli(&["channel", "history", &probe.to_string()])?
                    .as_array()
                    .map_or(0, |a| a.len());
                if now > before {
                    return Ok::<f64, anyhow::Error>(t.elapsed().as_secs_f64());
                }
                anyhow::ensure!(
                    t.elapsed() < Duration::from_secs(120),
                    "{label}: nothing arrived"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let with_boot = cold(vec![boot.clone()], "with bootstrap").await?;
    let cache_only = cold(Vec::new(), "peer cache only").await?;
    drop(owner);
    cluster.stop().await;

    Ok(json!({
        "idle_rss_mib": round(idle_rss, 1),
        "node": {
            "idle_rss_mib": round(idle_rss, 1),
            "busy_channels": channels,
            "busy_posts_per_s": rate,
            "busy_rss_mib": round(busy_rss, 1),
            "busy_peak_rss_mib": round(peak, 1),
            "posts_received": received,
            "cpu_ms_per_1000_posts": round(cpu * 1000.0 / (received as f64 / 1000.0), 1),
            "idle_cpu_percent": round(idle_rate * 100.0, 2),
            "cold_start_with_bootstrap_s": round(with_boot, 2),
            "cold_start_peer_cache_only_s": round(cache_only, 2),
        }
    }))
}
