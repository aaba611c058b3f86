//! `samizdat device`: this account's devices — a link for a new one, the list, revoking.

use anyhow::Result;
use clap::Subcommand;

use super::output::Output;
use super::{client, path_peer};
use crate::home::Home;
use crate::node::views::{DeviceLinkView, DeviceView, RevokeView};

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
    Revoke {
        /// The device's peer id.
        peer_id: String,
    },
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
        DeviceCommand::Revoke { peer_id } => {
            let peer = path_peer(peer_id)?;
            let r: RevokeView = client(home)?.delete(&format!("/v1/devices/{peer}")).await?;
            out.value(&r, || {
                let mut lines = vec![format!(
                    "revoked {} (device list version {})",
                    r.revoked, r.version
                )];
                for g in &r.groups {
                    lines.push(format!(
                        "group {}: {}",
                        g.group,
                        if g.removed { "removed" } else { &g.note }
                    ));
                }
                lines.join("\n")
            })
        }
    }
}
