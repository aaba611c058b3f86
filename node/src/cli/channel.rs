//! `samizdat channel`: public broadcast channels.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use super::admin::{AdminCommand, admin};
use super::client;
use super::files::add_file;
use super::output::{self, Output};
use crate::api::{ApiClient, CreateChannelRequest, FollowRequest, HistoryPage, PostRequest};
use crate::home::Home;
use crate::node::views::{ChannelView, PostView, SyncStatus};

#[derive(Debug, Subcommand)]
pub(super) enum ChannelCommand {
    /// Create a channel owned by this node.
    Create {
        /// Its name.
        name: String,
        /// A description.
        #[arg(long, default_value = "")]
        description: String,
        /// Put this node's own addresses in the invite link: whoever gets the link learns
        /// where this node is. By default the link names bootstrap peers and relays only.
        #[arg(long)]
        include_my_address: bool,
    },
    /// Follow a channel by invite link or id.
    Follow {
        /// `samizdat://channel/...` or a channel id.
        target: String,
    },
    /// Stop following a channel.
    Unfollow {
        /// Channel id.
        id: String,
    },
    /// Post to a channel this node owns or administers.
    Post {
        /// Channel id.
        id: String,
        /// The text.
        text: String,
        /// Delete the post everywhere after this long (e.g. 30s, 10m, 1d).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<humantime::Duration>,
        /// Attach this file (it is added to the node first).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Show how far history sync has come: `{"complete", "have", "known"}`.
    SyncStatus {
        /// Channel id.
        id: String,
    },
    /// Show a channel's history, oldest first.
    History {
        /// Channel id.
        id: String,
        /// Show at most this many posts (the most recent ones).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// List channels owned or followed.
    List,
    /// Show one channel and its invite link.
    Show {
        /// Channel id.
        id: String,
        /// Put this node's own addresses in the invite link shown (see `create`).
        #[arg(long)]
        include_my_address: bool,
    },
    /// Manage the channel's admins.
    #[command(subcommand)]
    Admin(AdminCommand),
}

pub(super) async fn channel(home: &Home, out: &Output, cmd: &ChannelCommand) -> Result<()> {
    let api = client(home)?;
    match cmd {
        ChannelCommand::Create {
            name,
            description,
            include_my_address,
        } => {
            let ch: ChannelView = api
                .post(
                    "/v1/channels",
                    &CreateChannelRequest {
                        name: name.clone(),
                        description: description.clone(),
                        include_my_address: *include_my_address,
                    },
                )
                .await?;
            warn_about_link(&ch);
            out.value(&ch, || output::channel_created(&ch))
        }
        ChannelCommand::Follow { target } => {
            let ch: ChannelView = api
                .post(
                    "/v1/channels/follow",
                    &FollowRequest {
                        target: target.clone(),
                    },
                )
                .await?;
            out.value(&ch, || output::channel(&ch))
        }
        ChannelCommand::Unfollow { id } => {
            let v: serde_json::Value = api
                .delete(&format!("/v1/channels/{}", path_id(id)?))
                .await?;
            out.value(&v, || format!("no longer following {id}"))
        }
        ChannelCommand::Post {
            id,
            text,
            expires_in,
            file,
        } => {
            let id = path_id(id)?;
            let file = match file {
                Some(p) => Some(add_file(&api, p).await?.cid),
                None => None,
            };
            let req = PostRequest {
                text: text.clone(),
                expires_in_ms: expires_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                file,
            };
            let p: PostView = api.post(&format!("/v1/channels/{id}/posts"), &req).await?;
            out.value(&p, || format!("posted {} (seq {})", p.id, p.seq))
        }
        ChannelCommand::History { id, limit } => {
            let id = path_id(id)?;
            let posts = history(&api, &id).await?;
            if !out.json {
                let sync: SyncStatus = api.get(&format!("/v1/channels/{id}/sync")).await?;
                if !sync.complete {
                    eprintln!(
                        "note: history sync still running ({} of {} known posts here)",
                        sync.have, sync.known
                    );
                }
            }
            let posts = match limit {
                Some(n) if posts.len() > *n => posts[posts.len() - n..].to_vec(),
                _ => posts,
            };
            out.value(&posts, || output::history(&posts))
        }
        ChannelCommand::SyncStatus { id } => {
            let st: SyncStatus = api
                .get(&format!("/v1/channels/{}/sync", path_id(id)?))
                .await?;
            out.value(&st, || {
                format!(
                    "{}: {} of {} known posts held{}",
                    if st.complete {
                        "complete"
                    } else {
                        "incomplete"
                    },
                    st.have,
                    st.known,
                    if st.syncing { ", syncing now" } else { "" }
                )
            })
        }
        ChannelCommand::List => {
            let list: Vec<ChannelView> = api.get("/v1/channels").await?;
            out.value(&list, || output::channels(&list))
        }
        ChannelCommand::Show {
            id,
            include_my_address,
        } => {
            let path = format!(
                "/v1/channels/{}{}",
                path_id(id)?,
                if *include_my_address {
                    "?include_my_address=true"
                } else {
                    ""
                }
            );
            let ch: ChannelView = api.get(&path).await?;
            warn_about_link(&ch);
            out.value(&ch, || output::channel(&ch))
        }
        ChannelCommand::Admin(cmd) => admin(&api, out, cmd).await,
    }
}

/// Says on stderr what an invite link gives away or lacks (stdout stays the link or JSON).
fn warn_about_link(ch: &ChannelView) {
    if let Some(w) = &ch.link_warning {
        eprintln!("warning: {w}");
    }
}

/// Validates a channel id locally, so that a typo gets a clear message before any request.
pub(super) fn path_id(id: &str) -> Result<String> {
    let parsed: crate::channel::ChannelId =
        id.parse().map_err(|e| anyhow::anyhow!("{e}: {id:?}"))?;
    Ok(parsed.to_string())
}

/// Every page of a channel's history.
async fn history(api: &ApiClient, id: &str) -> Result<Vec<PostView>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(c) => format!("/v1/channels/{id}/posts?after={c}"),
            None => format!("/v1/channels/{id}/posts"),
        };
        let page: HistoryPage = api.get(&path).await?;
        all.extend(page.posts);
        match page.next {
            Some(c) => after = Some(c),
            None => return Ok(all),
        }
    }
}
