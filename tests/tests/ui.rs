//! The web UI in a real browser: two nodes and a bootstrap peer on loopback, each driven by
//! its own headless Chromium through `tests/ui/run.mjs` (playwright-core). Screenshots land in
//! `target/ui-screenshots/`.
//!
//! Needs `node`, Debian's `chromium` and `npm ci --prefix tests/ui` (CI installs them); without
//! them the test says so and passes, unless SAMIZDAT_UI_REQUIRED is set (CI sets it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use samizdat_tests::{BootstrapProc, NodeProc, wait_for};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chromium() -> Option<PathBuf> {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/usr/bin/chromium")))
        .filter(|p| p.exists())
}

/// What is missing to run a browser here, if anything.
fn missing() -> Option<String> {
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node".into());
    }
    if chromium().is_none() {
        return Some("chromium (/usr/bin/chromium or $CHROMIUM)".into());
    }
    if !repo()
        .join("tests/ui/node_modules/playwright-core")
        .exists()
    {
        return Some("playwright-core (npm ci --prefix tests/ui)".into());
    }
    None
}

/// `samizdat ui --print`: the login link is the last line of stdout.
fn login_url(n: &NodeProc) -> Result<String> {
    let out = n.cli_ok(&["ui", "--print"])?;
    let url = out
        .lines()
        .last()
        .context("ui --print printed nothing")?
        .trim();
    ensure!(
        url.starts_with("http://127.0.0.1:") && url.contains("/ui/login?token="),
        "ui --print's last line is not a login link: {url:?}"
    );
    Ok(url.to_string())
}

#[test]
fn two_browsers_share_a_channel_an_image_and_a_direct_message() -> Result<()> {
    if let Some(what) = missing() {
        if std::env::var_os("SAMIZDAT_UI_REQUIRED").is_some() {
            bail!("the browser test needs {what}");
        }
        eprintln!("skipping the browser test: {what} is missing");
        return Ok(());
    }
    let boot = BootstrapProc::start()?;
    let mut a = NodeProc::new("ui-a")?;
    let mut b = NodeProc::new("ui-b")?;
    a.start(&boot.addrs)?;
    b.start(&boot.addrs)?;
    // Both should have joined the DHT before B looks for A's key package.
    for n in [&a, &b] {
        wait_for(
            &format!("{} to reach the bootstrap peer", n.name),
            Duration::from_secs(30),
            || {
                n.json(&["id"]).ok().filter(|v| {
                    v["bootstrap"]
                        .as_array()
                        .is_some_and(|l| l.iter().any(|b| b["connected"] == true))
                })
            },
        )?;
    }
    let (peer_a, peer_b) = (a.peer_id()?, b.peer_id()?);
    let (ui_a, ui_b) = (login_url(&a)?, login_url(&b)?);
    // A link works once: a second login with it is refused (checked in the browser too).
    let shots = repo().join("target/ui-screenshots");
    std::fs::create_dir_all(&shots)?;
    let status = Command::new("node")
        .arg(repo().join("tests/ui/run.mjs"))
        .env("UI_A", &ui_a)
        .env("UI_B", &ui_b)
        .env("PEER_A", &peer_a)
        .env("PEER_B", &peer_b)
        .env("CHROMIUM", chromium().context("chromium")?)
        .env("SHOTS", &shots)
        .env("IMAGE", repo().join("tests/ui/fixtures/sample.png"))
        .status()
        .context("running node tests/ui/run.mjs")?;
    ensure!(status.success(), "the browser test failed ({status})");

    // What the browsers did is on the nodes, not only on the screen.
    let dm = a.json(&["dm", "history", &peer_b])?;
    ensure!(
        dm.as_array().is_some_and(|l| l
            .iter()
            .any(|m| m["text"] == "hi A" && m["from"] == peer_b.as_str())),
        "A's node does not hold B's message: {dm}"
    );
    let channels = b.json(&["channel", "list"])?;
    ensure!(
        channels
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["name"] == "news")),
        "B does not follow the channel: {channels}"
    );
    for name in [
        "a-channel.png",
        "b-channel-with-image.png",
        "a-requests.png",
        "a-dm-unread.png",
        "a-dm.png",
        "b-phone.png",
        "a-devices.png",
    ] {
        let len = std::fs::metadata(shots.join(name))
            .with_context(|| format!("screenshot {name}"))?
            .len();
        ensure!(len > 1000, "screenshot {name} is empty");
    }
    Ok(())
}
