//! `samizdat device`: this account's devices — a link for a new one, the list, revoking.

use anyhow::Result;
use clap::Subcommand;

use super::output::Output;
use super::{client, path_peer};
use crate::home::Home;
use crate::node::views::{DeviceLinkView, DeviceView, RevokeView};

#[derive(Debug, Subcommand)]
pub(super) enum DeviceCommand {
    /// A one-time link (valid 10 minutes) for a new device: `{"link", "code", "expires_at"}`.
    /// On the new device: `samizdat --home NEW init --link LINK`, then `samizdat run`.
    Link,
    /// This account's devices: `[{"peer_id", "name", "linked_at", "this", "connected"}]`.
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
        DeviceCommand::Link => {
            let mut v: DeviceLinkView = client(home)?
                .post("/v1/devices/link", &serde_json::json!({}))
                .await?;
            v.qr_svg = None;
            out.value(&v, || {
                format!(
                    "{}\n\ncode: {} (the new device shows the same code)\nvalid for 10 minutes, once",
                    v.link, v.code
                )
            })
        }
        DeviceCommand::List => {
            let list: Vec<DeviceView> = client(home)?.get("/v1/devices").await?;
            out.value(&list, || {
                list.iter()
                    .map(|d| {
                        format!(
                            "{} {}{}{}",
                            d.peer_id,
                            d.name,
                            if d.this { " (this device)" } else { "" },
                            if d.connected { " (connected)" } else { "" }
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
