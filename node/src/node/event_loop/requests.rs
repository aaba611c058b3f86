//! Message requests, as in the messengers people use: a direct message or a group invitation
//! from someone this node does not know waits as a request — kept, not shown, not announced,
//! nothing it mentions fetched — until the user accepts (the sender becomes known), declines
//! (it is dropped) or blocks the sender.

use libp2p::PeerId;

use super::EventLoop;
use crate::node::NodeError;
use crate::node::command::RequestAction;
use crate::node::views::{Event, RequestView};

/// Longest preview of a request's text.
const PREVIEW_CHARS: usize = 100;

impl EventLoop {
    /// Every pending request, oldest first.
    pub(crate) fn requests(&self) -> Vec<RequestView> {
        let mut out: Vec<RequestView> = self
            .dm_requests()
            .into_iter()
            .map(|(peer, last, at)| RequestView {
                peer_id: peer.to_string(),
                kind: "dm".into(),
                received_at: at,
                preview: last
                    .map(|m| m.text.chars().take(PREVIEW_CHARS).collect())
                    .unwrap_or_default(),
                group_id: None,
            })
            .collect();
        out.extend(
            self.group_requests()
                .into_iter()
                .map(|(id, owner, name, at)| RequestView {
                    peer_id: owner.to_string(),
                    kind: "group".into(),
                    received_at: at,
                    preview: name.chars().take(PREVIEW_CHARS).collect(),
                    group_id: Some(id.to_string()),
                }),
        );
        out.sort_by_key(|r| r.received_at);
        out
    }

    /// Accepts, declines or blocks everything `peer` asked.
    pub(crate) fn answer_requests(
        &mut self,
        peer: PeerId,
        action: RequestAction,
    ) -> Result<usize, NodeError> {
        let n = match action {
            RequestAction::Accept => self.accept_requests(&peer)?,
            RequestAction::Decline | RequestAction::Block => {
                let dms = usize::from(self.decline_dm_requests(&peer)?);
                dms.saturating_add(self.decline_group_requests(&peer)?)
            }
        };
        if action == RequestAction::Block {
            self.block_peer(peer, true)?;
        }
        self.requests_changed();
        Ok(n)
    }

    /// Accepts `peer`'s requests (direct and group): it is a contact from now on (without a
    /// card until the user adds one; its name is empty).
    pub(super) fn accept_requests(&mut self, peer: &PeerId) -> Result<usize, NodeError> {
        let dm = usize::from(self.accept_dm_requests(peer)?);
        let n = dm.saturating_add(self.accept_group_requests(peer)?);
        if n > 0 {
            self.add_contact_if_new(peer)?;
        }
        Ok(n)
    }

    /// Makes `peer` a contact (without a card; its name is empty) unless it is one.
    pub(super) fn add_contact_if_new(&mut self, peer: &PeerId) -> Result<(), NodeError> {
        if !self.store.contacts()?.iter().any(|c| c.peer_id == *peer) {
            self.store.put_contact(&crate::contact::Contact {
                peer_id: *peer,
                card: None,
                name: String::new(),
                added_ms: crate::channel::now_ms(),
            })?;
            self.devices.contacts_changed();
        }
        Ok(())
    }

    /// Tells clients how many requests wait (no content: it is not a notification of them).
    pub(super) fn requests_changed(&self) {
        let pending = self
            .dm_requests()
            .len()
            .saturating_add(self.group_requests().len());
        let _ = self.events.send(Event::RequestsChanged { pending });
    }
}
