//! `samizdat group`: private groups.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::dm::message_request;
use super::output::{self, Output};
use super::{client, path_peer};
use crate::api::{CreateGroupRequest, InviteRequest};
use crate::group::{GroupMessageView, GroupView};
use crate::home::Home;

#[derive(Debug, Subcommand)]
pub(super) enum GroupCommand {
    /// Create a group owned by this node: `{"id"}`.
    Create {
        /// Its name (only members see it).
        name: String,
    },
    /// Invite a peer (owner only); returns once it is added.
    Invite {
        /// The group's id.
        group_id: String,
        /// The peer's id.
        peer_id: String,
    },
    /// Remove a member (owner only): it cannot read anything posted afterwards.
    Remove {
        /// The group's id.
        group_id: String,
        /// The member's peer id.
        peer_id: String,
    },
    /// Post a message: `{"id"}`.
    Post {
        /// The group's id.
        group_id: String,
        /// The text.
        text: String,
        /// Delete it at every member after this long (e.g. 30s, 1h, 7d).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<humantime::Duration>,
        /// Attach a file (not supported in groups yet).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// The group's messages held here, oldest first.
    History {
        /// The group's id.
        group_id: String,
    },
    /// Groups this node created or joined.
    List,
}

pub(super) async fn group(home: &Home, out: &Output, cmd: &GroupCommand) -> Result<()> {
    let api = client(home)?;
    let gid = |s: &str| -> Result<String> {
        s.parse::<crate::group::GroupId>()
            .map(|g| g.to_string())
            .map_err(|_| anyhow::anyhow!("not a group id: {s}"))
    };
    match cmd {
        GroupCommand::Create { name } => {
            let g: GroupView = api
                .post("/v1/groups", &CreateGroupRequest { name: name.clone() })
                .await?;
            out.value(&g, || format!("created group {} ({})", g.name, g.id))
        }
        GroupCommand::Invite { group_id, peer_id } => {
            let (id, peer) = (gid(group_id)?, path_peer(peer_id)?);
            let g: GroupView = api
                .post(
                    &format!("/v1/groups/{id}/members"),
                    &InviteRequest {
                        peer_id: peer.to_string(),
                    },
                )
                .await?;
            out.value(&g, || {
                format!("{peer} added to {} ({} members)", g.name, g.members.len())
            })
        }
        GroupCommand::Remove { group_id, peer_id } => {
            let (id, peer) = (gid(group_id)?, path_peer(peer_id)?);
            let g: GroupView = api
                .delete(&format!("/v1/groups/{id}/members/{peer}"))
                .await?;
            out.value(&g, || {
                format!(
                    "{peer} removed from {} ({} members)",
                    g.name,
                    g.members.len()
                )
            })
        }
        GroupCommand::Post {
            group_id,
            text,
            expires_in,
            file,
        } => {
            let id = gid(group_id)?;
            let req = message_request(&api, text, expires_in.as_ref(), file.as_deref()).await?;
            let m: GroupMessageView = api.post(&format!("/v1/groups/{id}/messages"), &req).await?;
            out.value(&m, || format!("posted {}", m.id))
        }
        GroupCommand::History { group_id } => {
            let id = gid(group_id)?;
            let list: Vec<GroupMessageView> = api.get(&format!("/v1/groups/{id}/messages")).await?;
            out.value(&list, || output::group_history(&list))
        }
        GroupCommand::List => {
            let list: Vec<GroupView> = api.get("/v1/groups").await?;
            out.value(&list, || output::groups(&list))
        }
    }
}
