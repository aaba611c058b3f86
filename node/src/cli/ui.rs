//! `samizdat ui`: a one-time login link to the web UI.

use anyhow::{Context, Result};

use super::client;
use super::output::Output;
use crate::home::Home;

pub(super) async fn ui(home: &Home, out: &Output, print_only: bool) -> Result<()> {
    let api = client(home)?;
    let login: serde_json::Value = api.post("/v1/ui/login", &serde_json::json!({})).await?;
    let url = login
        .get("url")
        .and_then(|u| u.as_str())
        .context("the node answered no login link")?
        .to_string();
    if print_only {
        println!("{url}");
        return Ok(());
    }
    let desktop = std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
        || cfg!(target_os = "macos");
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    // The browser gets a 0600 file that forwards to the link, not the link itself: a command
    // line is readable by every local user (/proc/*/cmdline), who could spend the token first.
    let forward = home.path().join("ui-login.html");
    let html = format!(
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url={u}\">\
         <title>Samizdat</title><a href=\"{u}\">Open Samizdat</a>",
        u = url.replace('&', "&amp;").replace('"', "&quot;")
    );
    let opened = desktop
        && crate::home::write_private(&forward, html.as_bytes()).is_ok()
        && std::process::Command::new(opener)
            .arg(&forward)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !out.json {
        if opened {
            println!("Opened the web UI in your browser. The link works once, for 5 minutes:");
        } else {
            println!("Open this link in a browser on this machine (it works once, for 5 minutes):");
        }
    }
    out.value(&serde_json::json!({ "url": url, "opened": opened }), || {
        url.clone()
    })
}
