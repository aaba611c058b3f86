//! `samizdat dm`: direct messages, and the message body shared with groups.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use super::files::url_escape;
use super::output::{self, Output};
use super::{client, path_peer};
use crate::api::{ApiClient, DmRequest};
use crate::dm::DmView;
use crate::home::Home;
use crate::node::FileAdded;

#[derive(Debug, Subcommand)]
pub(super) enum DmCommand {
    /// Send a message: `{"id"}`. Delivered when the peer is online, else held for it.
    Send {
        /// The peer's id.
        peer_id: String,
        /// The text.
        text: String,
        /// Delete it on both sides after this long (e.g. 30s, 1h, 7d).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<humantime::Duration>,
        /// Attach a file (not supported in direct messages yet).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// The conversation with a peer, oldest first.
    History {
        /// The peer's id.
        peer_id: String,
    },
    /// Conversations, the most recently active first: `[{"peer","name","last","count"}]`
    /// (message requests are under `samizdat requests`).
    List,
}

pub(super) async fn dm(home: &Home, out: &Output, cmd: &DmCommand) -> Result<()> {
    match cmd {
        DmCommand::Send {
            peer_id,
            text,
            expires_in,
            file,
        } => {
            let peer = path_peer(peer_id)?;
            let api = client(home)?;
            let req = message_request(&api, text, expires_in.as_ref(), file.as_deref()).await?;
            let m: DmView = api.post(&format!("/v1/dm/{peer}"), &req).await?;
            out.value(&m, || format!("sent {}", m.id))
        }
        DmCommand::History { peer_id } => {
            let peer = path_peer(peer_id)?;
            let list: Vec<DmView> = client(home)?.get(&format!("/v1/dm/{peer}")).await?;
            out.value(&list, || output::dm_history(&list))
        }
        DmCommand::List => {
            let list: Vec<crate::dm::DmConversationView> = client(home)?.get("/v1/dm").await?;
            out.value(&list, || {
                if list.is_empty() {
                    return "no conversations".to_string();
                }
                list.iter()
                    .map(|c| {
                        format!(
                            "{} {} ({} messages)",
                            c.peer,
                            c.name.as_deref().unwrap_or(""),
                            c.count
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

/// The body of a direct or group message: text, expiry, and the file (uploaded encrypted).
pub(super) async fn message_request(
    api: &ApiClient,
    text: &str,
    expires_in: Option<&humantime::Duration>,
    file: Option<&std::path::Path>,
) -> Result<DmRequest> {
    let attachment = match file {
        Some(p) => Some(attach(api, p).await?),
        None => None,
    };
    Ok(DmRequest {
        text: text.to_string(),
        expires_in_ms: expires_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        file: None,
        attachment,
    })
}

/// Adds a file as a private attachment (encrypted under a new key) and describes it.
async fn attach(api: &ApiClient, path: &std::path::Path) -> Result<crate::dm::AttachmentView> {
    let f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    if !f.metadata().await?.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let added: FileAdded = api
        .upload(
            &format!("/v1/files?name={}&private=true", url_escape(&name)),
            f,
        )
        .await?;
    Ok(crate::dm::AttachmentView {
        cid: added.cid,
        key: added
            .key
            .context("the node did not encrypt the attachment")?,
        name: added.name,
        size: added.size,
        mime: added.mime,
    })
}
