//! `samizdat requests`: message requests from peers you do not know.

use anyhow::Result;
use clap::Subcommand;

use super::client;
use super::output::Output;
use crate::home::Home;

#[derive(Debug, Subcommand)]
pub(super) enum RequestsCommand {
    /// Pending requests: `[{"peer_id","kind","received_at","preview"}]`, oldest first.
    List,
    /// Accept a peer's requests: its messages show, its invitations are joined, and it is
    /// known from now on.
    Accept {
        /// Its peer id.
        peer_id: String,
    },
    /// Decline a peer's requests: they are dropped (a later message asks again).
    Decline {
        /// Its peer id.
        peer_id: String,
    },
    /// Decline a peer's requests and block it.
    Block {
        /// Its peer id.
        peer_id: String,
    },
}

pub(super) async fn requests(home: &Home, out: &Output, cmd: &RequestsCommand) -> Result<()> {
    let api = client(home)?;
    let (peer, action) = match cmd {
        RequestsCommand::List => {
            let list: Vec<crate::node::views::RequestView> = api.get("/v1/requests").await?;
            return out.value(&list, || {
                if list.is_empty() {
                    return "no message requests".to_string();
                }
                list.iter()
                    .map(|r| format!("{} {} {}: {}", r.received_at, r.kind, r.peer_id, r.preview))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        RequestsCommand::Accept { peer_id } => (peer_id, "accept"),
        RequestsCommand::Decline { peer_id } => (peer_id, "decline"),
        RequestsCommand::Block { peer_id } => (peer_id, "block"),
    };
    let _: libp2p::PeerId = peer
        .parse()
        .map_err(|_| anyhow::anyhow!("not a peer id: {peer:?}"))?;
    let v: serde_json::Value = api
        .post(
            &format!("/v1/requests/{peer}/{action}"),
            &serde_json::json!({}),
        )
        .await?;
    out.value(&v, || {
        format!(
            "{action}ed {} request(s) from {peer}",
            v["requests"].as_u64().unwrap_or(0)
        )
    })
}
