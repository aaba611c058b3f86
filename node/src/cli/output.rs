//! How the CLI prints: one JSON value with `--json`, readable text otherwise.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Result;
use serde::Serialize;

use crate::files::DownloadStatus;
use crate::node::views::{ChannelView, NodeInfo, PeerView, PostView};

/// Where and how to print.
pub(crate) struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `v` as JSON, or the text `human` makes.
    pub fn value<T: Serialize>(&self, v: &T, human: impl FnOnce() -> String) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string(v)?);
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{text}");
            }
        }
        Ok(())
    }
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

pub(crate) fn node_info(i: &NodeInfo) -> String {
    let mut s = format!(
        "peer id: {}\nconnected peers: {}\naddresses:",
        i.peer_id, i.connected_peers
    );
    for a in &i.addrs {
        s.push_str(&format!("\n  {a}"));
    }
    s
}

pub(crate) fn peers(p: &[PeerView]) -> String {
    if p.is_empty() {
        return "no connected peers".into();
    }
    p.iter()
        .map(|p| {
            format!(
                "{}  {}  {}",
                p.peer_id,
                p.agent.as_deref().unwrap_or("?"),
                p.addrs.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn channel_created(c: &ChannelView) -> String {
    format!(
        "created channel {} ({})\ninvite link: {}",
        c.name.as_deref().unwrap_or("?"),
        c.id,
        c.link.as_deref().unwrap_or("-")
    )
}

pub(crate) fn channel(c: &ChannelView) -> String {
    format!(
        "{} ({})\nid: {}\nrole: {}\nposts held: {}\npeers on topic: {}\ninvite link: {}",
        c.name.as_deref().unwrap_or("(name not yet known)"),
        c.description
            .as_deref()
            .filter(|d| !d.is_empty())
            .unwrap_or("no description"),
        c.id,
        c.role,
        c.posts,
        c.peers,
        c.link.as_deref().unwrap_or("(not yet known)")
    )
}

pub(crate) fn channels(list: &[ChannelView]) -> String {
    if list.is_empty() {
        return "no channels yet: `samizdat channel create NAME` or `samizdat channel follow LINK`"
            .into();
    }
    list.iter()
        .map(|c| {
            format!(
                "{}  {:<8}  {:>6} posts  {}",
                c.id,
                c.role,
                c.posts,
                c.name.as_deref().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn history(posts: &[PostView]) -> String {
    if posts.is_empty() {
        return "no posts yet".into();
    }
    posts
        .iter()
        .map(|p| {
            let author: String = p.author.chars().take(12).collect();
            let expiry = p
                .expires_at
                .map(|e| format!("  (disappears {})", time(e)))
                .unwrap_or_default();
            format!(
                "[{}] {author}… #{}: {}{expiry}",
                time(p.timestamp),
                p.seq,
                p.text
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn file_status(s: &DownloadStatus) -> String {
    format!(
        "{} {}: {}{} of {} chunks, {} providers{}",
        s.cid,
        s.name,
        if s.complete { "complete, " } else { "" },
        s.have,
        s.chunks.map_or("?".into(), |c| c.to_string()),
        s.providers,
        if s.rejected_chunks > 0 {
            format!(", {} corrupted chunks refused", s.rejected_chunks)
        } else {
            String::new()
        }
    )
}

/// A QR code of `text` drawn with Unicode half blocks (two modules per character row).
pub fn qr(text: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(text.as_bytes())?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .build())
}

/// Contacts as lines of text.
pub fn contacts(list: &[crate::node::views::ContactView]) -> String {
    if list.is_empty() {
        return "no contacts yet (add one with `samizdat contact add LINK`)".into();
    }
    list.iter()
        .map(|c| {
            let name = if c.name.is_empty() {
                "(no name)"
            } else {
                &c.name
            };
            format!("{name}  {}", c.peer_id)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A conversation, one line per message.
pub(crate) fn group_history(list: &[crate::group::GroupMessageView]) -> String {
    if list.is_empty() {
        return "no messages".into();
    }
    list.iter()
        .map(|m| {
            let who = if m.outgoing {
                "me".to_string()
            } else {
                short(&m.author)
            };
            format!("{} {who}: {}", time(m.timestamp), m.text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn groups(list: &[crate::group::GroupView]) -> String {
    if list.is_empty() {
        return "no groups".into();
    }
    list.iter()
        .map(|g| {
            let state = if g.active {
                format!("{} members", g.members.len())
            } else {
                "removed".into()
            };
            format!("{}  {} ({}, {state})", g.id, g.name, g.role)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn short(peer: &str) -> String {
    let n = peer.len();
    if n > 12 {
        format!("…{}", &peer[n - 8..])
    } else {
        peer.to_string()
    }
}

pub(crate) fn dm_history(list: &[crate::dm::DmView]) -> String {
    if list.is_empty() {
        return "no messages".into();
    }
    list.iter()
        .map(|m| {
            let who = if m.outgoing { "me" } else { "them" };
            let pending = if m.outgoing && !m.delivered {
                " (not delivered yet)"
            } else {
                ""
            };
            format!("{} {who}: {}{pending}", time(m.timestamp), m.text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
