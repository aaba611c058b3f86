//! `samizdat channel admin`: the nodes that may post to a channel besides its owner.

use anyhow::Result;
use clap::Subcommand;

use super::channel::path_id;
use super::output::Output;
use crate::api::{AdminRequest, ApiClient};

#[derive(Debug, Subcommand)]
pub(super) enum AdminCommand {
    /// Let another node post to this channel (its certificate lasts 7 days and is renewed
    /// while this node is online).
    Add {
        /// Channel id.
        id: String,
        /// The admin's peer id.
        peer_id: String,
    },
    /// Revoke an admin: its posts so far stay, anything it posts later is refused everywhere
    /// (and removed where it already arrived).
    Remove {
        /// Channel id.
        id: String,
        /// The admin's peer id.
        peer_id: String,
    },
    /// The channel's admins: `[{"peer_id","expires_at","revoked","last_seq"}]`.
    List {
        /// Channel id.
        id: String,
    },
}

pub(super) async fn admin(api: &ApiClient, out: &Output, cmd: &AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::Add { id, peer_id } => {
            let v: serde_json::Value = api
                .post(
                    &format!("/v1/channels/{}/admins", path_id(id)?),
                    &AdminRequest {
                        peer_id: peer_id.clone(),
                    },
                )
                .await?;
            out.value(&v, || format!("{peer_id} may now post to {id}"))
        }
        AdminCommand::Remove { id, peer_id } => {
            let v: serde_json::Value = api
                .delete(&format!("/v1/channels/{}/admins/{peer_id}", path_id(id)?))
                .await?;
            out.value(&v, || {
                format!(
                    "{peer_id} revoked: its posts up to seq {} stay, later ones are refused",
                    v["last_seq"].as_u64().unwrap_or(0)
                )
            })
        }
        AdminCommand::List { id } => {
            let v: Vec<crate::node::views::AdminView> = api
                .get(&format!("/v1/channels/{}/admins", path_id(id)?))
                .await?;
            out.value(&v, || {
                if v.is_empty() {
                    return "no admins".to_string();
                }
                v.iter()
                    .map(|a| {
                        if a.revoked {
                            format!(
                                "{} revoked (posts up to seq {})",
                                a.peer_id,
                                a.last_seq.unwrap_or(0)
                            )
                        } else {
                            format!(
                                "{} certificate expires {}",
                                a.peer_id,
                                a.expires_at.map_or("never".to_string(), |t| t.to_string())
                            )
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}
