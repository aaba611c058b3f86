//! `samizdat device`: this account's devices — a link for a new one, the list, revoking.

use anyhow::Result;
use clap::Subcommand;

use super::output::Output;
use super::{client, path_peer};
use crate::home::Home;
use crate::node::views::{DeviceLinkView, DeviceView, RevokeGroupView, RevokeView};

#[derive(Debug, Subcommand)]
pub(super) enum DeviceCommand {
    /// A one-time link (valid 10 minutes) for a new device: `{"link", "expires_at"}`.
    /// On the new device: `samizdat --home NEW init --link LINK`, then `samizdat run`.
    Link {
        /// Print the link as a QR code too (on stderr with --json).
        #[arg(long)]
        qr: bool,
    },
    /// This account's devices: `[{"peer_id", "name", "linked_at", "this", "connected", "code"?}]`.
    List,
    /// Revoke a device (lost or seized; it may be offline): it is removed from the groups,
    /// its channel certificates withdrawn, and nothing it sends is accepted any more.
    /// `{"revoked", "version", "groups": [{"group", "device", "removed", "note", "reached",
    /// "pending"}]}`.
    Revoke {
        /// The device's peer id.
        peer_id: String,
        /// Wait up to this many seconds (at most 3600) for the groups' members to hold the
        /// removal (0: report at once; `device removals` tells later).
        #[arg(long, default_value_t = 5)]
        wait: u64,
    },
    /// Revoked devices' removals from private groups, and which members are known to hold
    /// them: `[{"group", "device", "removed", "note", "reached", "pending"}]`.
    Removals,
}

/// Whether every removal of a revocation is made and every member known to hold it.
fn settled(groups: &[RevokeGroupView]) -> bool {
    groups.iter().all(|g| g.removed && g.pending.is_empty())
}

fn removal_lines(groups: &[RevokeGroupView]) -> Vec<String> {
    groups
        .iter()
        .map(|g| {
            format!(
                "group {} device {}: {} ({} members hold it, {} not yet)",
                g.group,
                g.device,
                g.note,
                g.reached.len(),
                g.pending.len()
            )
        })
        .collect()
}

pub(super) async fn device(home: &Home, out: &Output, cmd: &DeviceCommand) -> Result<()> {
    match cmd {
        DeviceCommand::Link { qr } => {
            let mut v: DeviceLinkView = client(home)?
                .post("/v1/devices/link", &serde_json::json!({}))
                .await?;
            v.qr_svg = None;
            if *qr {
                let code = super::output::qr(&v.link)?;
                if out.json {
                    eprintln!("{code}");
                } else {
                    println!("{code}");
                }
            }
            out.value(&v, || {
                format!(
                    "{}\n\nvalid for 10 minutes, for one device. Once it is linked, `samizdat device list`\nshows its code: compare it with the one the new device showed.",
                    v.link
                )
            })
        }
        DeviceCommand::List => {
            let list: Vec<DeviceView> = client(home)?.get("/v1/devices").await?;
            out.value(&list, || {
                list.iter()
                    .map(|d| {
                        format!(
                            "{} {}{}{}{}",
                            d.peer_id,
                            d.name,
                            if d.this { " (this device)" } else { "" },
                            if d.connected { " (connected)" } else { "" },
                            d.code
                                .as_ref()
                                .map(|c| format!(" code {c}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        DeviceCommand::Revoke { peer_id, wait } => {
            let peer = path_peer(peer_id)?;
            let api = client(home)?;
            let mut r: RevokeView = api.delete(&format!("/v1/devices/{peer}")).await?;
            // (At most an hour: the revocation is done; this only waits for news of it.)
            let deadline =
                tokio::time::Instant::now() + std::time::Duration::from_secs((*wait).min(3600));
            while !settled(&r.groups) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let now: Vec<RevokeGroupView> = match api.get("/v1/devices/removals").await {
                    Ok(now) => now,
                    Err(e) => {
                        // The device is revoked already: report what is known.
                        eprintln!("could not follow the removals: {e:#}");
                        break;
                    }
                };
                for g in &mut r.groups {
                    if let Some(n) = now
                        .iter()
                        .find(|n| n.group == g.group && n.device == g.device)
                    {
                        // The note of a failed removal says why; keep it.
                        let note = if g.removed || n.removed {
                            n.note.clone()
                        } else {
                            g.note.clone()
                        };
                        *g = RevokeGroupView { note, ..n.clone() };
                    }
                }
            }
            out.value(&r, || {
                let mut lines = vec![format!(
                    "revoked {} (device list version {})",
                    r.revoked, r.version
                )];
                lines.extend(removal_lines(&r.groups));
                lines.join("\n")
            })
        }
        DeviceCommand::Removals => {
            let list: Vec<RevokeGroupView> = client(home)?.get("/v1/devices/removals").await?;
            out.value(&list, || removal_lines(&list).join("\n"))
        }
    }
}
