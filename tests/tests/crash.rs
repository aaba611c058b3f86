//! Crash consistency: nodes killed with SIGKILL (a power cut, as far as the process can tell)
//! at random moments while they write and ingest posts and send direct messages, 50 times;
//! after every restart the store opens and every post and message the API had acknowledged
//! is there, and the peer reads every message (a crash never makes the MLS ratchet reuse a
//! key). The same for a bootstrap peer's identity.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use samizdat_tests::{BootstrapProc, NodeProc, bin, wait_for};

const KILLS: usize = 50;

/// A small deterministic generator (the seed is printed, so a failure can be replayed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("SAMIZDAT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// What was acknowledged (id, text) but is not in `history`.
fn unheld(
    acked: &Mutex<Vec<(String, String)>>,
    history: &[serde_json::Value],
) -> Vec<(String, String)> {
    let have: std::collections::HashSet<&str> =
        history.iter().filter_map(|m| m["id"].as_str()).collect();
    acked
        .lock()
        .map(|a| {
            a.iter()
                .filter(|(id, _)| !have.contains(id.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn acknowledged_posts_survive_fifty_sigkills_while_writing_and_ingesting() -> Result<()> {
    let seed = seed();
    eprintln!("crash test seed {seed} (SAMIZDAT_CRASH_SEED replays it)");
    let mut rng = Lcg(seed);
    let boot = BootstrapProc::start()?;
    let mut victim = NodeProc::new("victim")?;
    let mut writer = NodeProc::new("writer")?;
    victim.start(&boot.addrs)?;
    writer.start(&boot.addrs)?;
    // The victim owns a channel it writes to, and follows the writer's, which it ingests.
    let own = victim.json(&["channel", "create", "victim's own"])?;
    let own_id = own["id"].as_str().context("id")?.to_string();
    let theirs = writer.json(&["channel", "create", "ingested"])?;
    let their_id = theirs["id"].as_str().context("id")?.to_string();
    victim.follow(theirs["link"].as_str().context("link")?)?;
    victim.wait_topic_peers(&their_id, 1)?;
    // And it writes to the writer's node directly.
    let card = writer.json(&["contact", "card"])?;
    victim.json(&["contact", "add", card["link"].as_str().context("link")?])?;
    let writer_peer = writer.peer_id()?;
    let victim_peer = victim.peer_id()?;

    // Acknowledged: what `channel post` returned an id for, before the kill.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let acked_dms: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut ingested_total = 0usize;
    let home = victim.home().to_path_buf();
    let started = Instant::now();
    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let poster = {
            let (stop, acked, acked_dms, home, own_id, to) = (
                stop.clone(),
                acked.clone(),
                acked_dms.clone(),
                home.clone(),
                own_id.clone(),
                writer_peer.clone(),
            );
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    // Every third write a direct message: its MLS state and outbox entry are
                    // written by the swarm task and made durable by the writer's flush.
                    let dm = i % 3 == 0;
                    let text = format!("round {round} {} {i}", if dm { "dm" } else { "post" });
                    let args: [&str; 5] = if dm {
                        ["dm", "send", &to, &text, "--json"]
                    } else {
                        ["channel", "post", &own_id, &text, "--json"]
                    };
                    let out = Command::new(bin("samizdat"))
                        .arg("--home")
                        .arg(&home)
                        .args(args)
                        .env_remove("RUST_LOG")
                        .output();
                    if let Ok(o) = out
                        && o.status.success()
                        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout)
                        && let Some(id) = v["id"].as_str()
                    {
                        let list = if dm { &acked_dms } else { &acked };
                        list.lock().map(|mut a| a.push((id.to_string(), text))).ok();
                    }
                }
            })
        };
        // The writer's posts arrive by gossip while the victim is killed.
        for j in 0..3 {
            writer.post(&their_id, &format!("ingest {round}.{j}"))?;
            ingested_total += 1;
        }
        std::thread::sleep(Duration::from_millis(30 + rng.next(400)));
        victim.kill();
        stop.store(true, Ordering::Relaxed);
        let _ = poster.join();
        victim.start(&boot.addrs)?;
        // Every acknowledged post is there, after every single kill.
        let lost = unheld(&acked, &victim.history(&own_id)?);
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged posts lost after SIGKILL: {lost:?} (seed {seed})"
        );
        let history = victim.json(&["dm", "history", &writer_peer])?;
        let lost = unheld(&acked_dms, history.as_array().context("history is a list")?);
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged direct messages lost after SIGKILL: {lost:?} (seed {seed})"
        );
    }
    let acked_total = acked.lock().map(|a| a.len()).unwrap_or(0);
    eprintln!(
        "{KILLS} SIGKILLs in {:.0?}: {acked_total} acknowledged posts all present",
        started.elapsed()
    );
    assert!(
        acked_total >= KILLS,
        "too few posts acknowledged to mean anything"
    );
    // And what it was ingesting: all of the writer's posts, by gossip or by history sync.
    victim.wait_history(&their_id, ingested_total, Duration::from_secs(120))?;
    // The writer's node reads every acknowledged direct message: none was lost on the way,
    // and none was sealed with a key the victim had used before a crash (it would be refused).
    let dms = acked_dms.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(
        !dms.is_empty(),
        "no direct message acknowledged (seed {seed})"
    );
    let texts = |h: &serde_json::Value| -> std::collections::HashSet<String> {
        h.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["text"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let missing = |have: &std::collections::HashSet<String>| -> Vec<String> {
        dms.iter()
            .filter(|(_, t)| !have.contains(t))
            .map(|(_, t)| t.clone())
            .collect()
    };
    let read = wait_for(
        "the writer's node to read every acknowledged direct message",
        Duration::from_secs(180),
        || {
            let h = writer.json(&["dm", "history", &victim_peer]).ok()?;
            missing(&texts(&h)).is_empty().then_some(())
        },
    );
    if read.is_err() {
        let h = writer.json(&["dm", "history", &victim_peer])?;
        panic!(
            "direct messages acknowledged by the victim never read by its peer: {:?} (seed {seed})",
            missing(&texts(&h))
        );
    }
    eprintln!(
        "{} acknowledged direct messages all read by the peer",
        dms.len()
    );
    // The store itself opens and verifies offline.
    victim.stop();
    let store = victim.open_store()?;
    drop(store);
    Ok(())
}

#[test]
fn a_bootstrap_peer_killed_while_starting_keeps_one_identity() -> Result<()> {
    let seed = seed();
    eprintln!("bootstrap crash seed {seed}");
    let mut rng = Lcg(seed);
    let home = tempfile::tempdir()?;
    let start = |kill_after: Option<Duration>| -> Result<Option<String>> {
        let mut child = Command::new(bin("samizdat-bootstrap"))
            .arg("--home")
            .arg(home.path())
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        if let Some(d) = kill_after {
            std::thread::sleep(d);
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        let stdout = child.stdout.take().context("stdout")?;
        let line = BufReader::new(stdout)
            .lines()
            .next()
            .context("no address printed")??;
        let _ = child.kill();
        let _ = child.wait();
        Ok(Some(
            line.rsplit("/p2p/")
                .next()
                .context("address without /p2p/")?
                .to_string(),
        ))
    };
    let mut identity: Option<String> = None;
    for _ in 0..KILLS {
        // Killed at a random moment of its start (creating or reading its identity,
        // binding, joining) ...
        start(Some(Duration::from_millis(rng.next(120))))?;
        // ... it starts again, with the identity it had if it had one.
        let id = wait_for(
            "the bootstrap peer to start",
            Duration::from_secs(30),
            || start(None).ok().flatten(),
        )?;
        match &identity {
            None => identity = Some(id),
            Some(first) => assert_eq!(&id, first, "identity changed after a kill (seed {seed})"),
        }
    }
    let key = home.path().join("identity.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    }
    Ok(())
}
