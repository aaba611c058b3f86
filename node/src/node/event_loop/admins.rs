//! A channel's admins in the event loop: appointing (a certificate that expires and that the
//! owner's node renews while online), revoking (a signed revocation that keeps the admin's
//! earlier posts and refuses later ones, and removes any later ones already stored), and
//! learning both from the topic and from history sync. The registry itself is
//! [`crate::channel::Admins`].

use libp2p::PeerId;
use prost::Message as _;
use samizdat_proto::v1;

use super::EventLoop;
use crate::channel::{AdminCert, AdminRevocation, CERT_LIFETIME_MS, ChannelId, now_ms};
use crate::identity::{ed25519_of, peer_id_of};
use crate::node::NodeError;
use crate::node::channels::Signer;
use crate::node::views::{AdminView, Event};
use crate::store::Role;

impl EventLoop {
    /// Whether an encoded certificate could change this channel's admins (checked before any
    /// signature: replays and older copies cost nothing).
    pub(super) fn cert_is_news(&self, id: &ChannelId, c: &v1::AdminCert) -> bool {
        self.channels
            .by_id
            .get(id)
            .is_some_and(|s| s.admins.cert_is_news(c))
    }

    /// Whether an encoded revocation could change this channel's admins.
    pub(super) fn revocation_is_news(&self, id: &ChannelId, r: &v1::AdminRevocation) -> bool {
        self.channels
            .by_id
            .get(id)
            .is_some_and(|s| s.admins.revocation_is_news(r))
    }

    /// Whether a post of `author` at `seq` in `id` is refused by a revocation.
    pub(super) fn revoked_post(&self, id: &ChannelId, author: &[u8; 32], seq: u64) -> bool {
        self.channels
            .by_id
            .get(id)
            .is_some_and(|s| s.admins.refuses(author, seq))
    }

    /// Keeps a verified certificate if it is its admin's newest (served with sync heads), and
    /// makes this node an admin (or renews its own certificate) if it names this node.
    pub(super) fn adopt_cert(&mut self, cert: AdminCert) {
        let me = self.identity.signing().public();
        let Some(state) = self.channels.by_id.get_mut(&cert.channel) else {
            return;
        };
        if !state.admins.adopt_cert(cert.clone()).changed {
            return;
        }
        (state.record.certs, state.record.revocations) = state.admins.to_stored();
        if cert.admin == me && state.record.role != Role::Owner {
            if state.record.role == Role::Follower {
                tracing::info!(channel = %cert.channel, "this node is now an admin of the channel");
            }
            state.record.role = Role::Admin;
            state.record.admin_cert = Some(cert.signed.encode_to_vec());
            state.signer = Some(Signer::Admin(cert.clone()));
            state.head = None;
        }
        if let Err(e) = self.store.put_channel(&state.record) {
            tracing::warn!("store: {e}");
        }
    }

    /// Applies a verified revocation: the admin's certificate goes, its posts after
    /// `last_seq` are removed here and refused from now on; if it names this node, this node
    /// posts no more.
    pub(super) fn adopt_revocation(&mut self, r: AdminRevocation) {
        let me = self.identity.signing().public().to_bytes();
        let id = r.channel;
        let Some(state) = self.channels.by_id.get_mut(&id) else {
            return;
        };
        if !state.admins.adopt_revocation(r.clone()).changed {
            return;
        }
        (state.record.certs, state.record.revocations) = state.admins.to_stored();
        if r.admin == me && state.record.role == Role::Admin {
            tracing::warn!(channel = %id, "the owner revoked this node's admin rights");
            state.record.role = Role::Follower;
            state.record.admin_cert = None;
            state.signer = None;
            state.head = None;
        }
        if let Err(e) = self.store.put_channel(&state.record) {
            tracing::warn!("store: {e}");
        }
        self.channels.forget_heads(&id);
        match self.store.retract(&id, &r.admin, r.last_seq) {
            Ok(gone) => {
                if gone.posts > 0 || gone.tombstones > 0 {
                    tracing::info!(channel = %id, posts = gone.posts, "posts of a revoked admin removed");
                }
                if let Some(st) = self.sync.channels.get_mut(&id) {
                    st.note_retracted(r.admin, r.last_seq, gone.posts, gone.tombstones);
                }
            }
            Err(e) => tracing::warn!("store: {e}"),
        }
        if let Ok(view) = self.channel_view(&id, false) {
            let _ = self.events.send(Event::ChannelUpdated { channel: view });
        }
    }

    /// `channel admin add`: a certificate for `peer`, valid for [`CERT_LIFETIME_MS`].
    pub(crate) fn add_admin(&mut self, id: &ChannelId, peer: PeerId) -> Result<(), NodeError> {
        let key = self.owner_key(id)?;
        let admin = ed25519_of(&peer).ok_or_else(|| {
            NodeError::InvalidInput(format!("{peer} does not carry an ed25519 key"))
        })?;
        let full = self.channels.by_id.get(id).is_some_and(|s| {
            s.admins.cert(&admin.to_bytes()).is_none()
                && s.admins.all().0.len() >= crate::channel::MAX_ADMINS
        });
        if full {
            return Err(NodeError::NotAllowed(format!(
                "a channel has at most {} admins",
                crate::channel::MAX_ADMINS
            )));
        }
        self.issue_cert(id, &key, &admin)
    }

    fn issue_cert(
        &mut self,
        id: &ChannelId,
        key: &libp2p::identity::ed25519::Keypair,
        admin: &libp2p::identity::ed25519::PublicKey,
    ) -> Result<(), NodeError> {
        let now = now_ms();
        let cert = AdminCert::issue(key, admin, now, Some(now.saturating_add(CERT_LIFETIME_MS)));
        self.adopt_cert(cert.clone());
        self.channels
            .unpublished_meta
            .entry(*id)
            .or_default()
            .push(v1::channel_message::Kind::AdminCert(cert.signed));
        self.flush_unpublished(id);
        Ok(())
    }

    /// `channel admin remove`: revokes `peer`, keeping its posts up to the newest this node
    /// holds; tells every follower (now by gossip, later by history sync).
    pub(crate) fn remove_admin(
        &mut self,
        id: &ChannelId,
        peer: PeerId,
    ) -> Result<AdminView, NodeError> {
        let key = self.owner_key(id)?;
        let admin = ed25519_of(&peer)
            .ok_or_else(|| {
                NodeError::InvalidInput(format!("{peer} does not carry an ed25519 key"))
            })?
            .to_bytes();
        let known = self.channels.by_id.get(id).is_some_and(|s| {
            s.admins.cert(&admin).is_some() || s.admins.revocation(&admin).is_some()
        });
        if !known {
            return Err(NodeError::NotAllowed(format!(
                "{peer} is not an admin of this channel"
            )));
        }
        let last_seq = self.store.chain_head(id, &admin)?.map_or(0, |h| h.seq);
        let r = AdminRevocation::issue(&key, &admin, last_seq, now_ms());
        self.adopt_revocation(r.clone());
        self.channels
            .unpublished_meta
            .entry(*id)
            .or_default()
            .push(v1::channel_message::Kind::Revocation(r.signed));
        self.flush_unpublished(id);
        tracing::info!(channel = %id, admin = %peer, last_seq, "admin revoked");
        Ok(AdminView {
            peer_id: peer.to_string(),
            expires_at: None,
            revoked: true,
            last_seq: Some(last_seq),
        })
    }

    /// `channel admin list`.
    pub(crate) fn admin_list(&self, id: &ChannelId) -> Result<Vec<AdminView>, NodeError> {
        let state = self
            .channels
            .by_id
            .get(id)
            .ok_or_else(|| NodeError::UnknownChannel(id.to_string()))?;
        let (certs, revocations) = state.admins.all();
        let mut out: Vec<AdminView> = certs
            .iter()
            .map(|c| AdminView {
                peer_id: peer_id_of(&c.admin).to_string(),
                expires_at: c.expires_at_ms,
                revoked: false,
                last_seq: None,
            })
            .collect();
        for r in revocations {
            if certs.iter().any(|c| c.admin.to_bytes() == r.admin) {
                continue; // appointed again since
            }
            if let Ok(k) = libp2p::identity::ed25519::PublicKey::try_from_bytes(&r.admin) {
                out.push(AdminView {
                    peer_id: peer_id_of(&k).to_string(),
                    expires_at: None,
                    revoked: true,
                    last_seq: Some(r.last_seq),
                });
            }
        }
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        Ok(out)
    }

    /// The owner renews each certificate past half its lifetime (once a minute).
    pub(super) fn renew_certs(&mut self) {
        let now = now_ms();
        let due: Vec<(ChannelId, Vec<[u8; 32]>)> = self
            .channels
            .by_id
            .iter()
            .filter(|(_, s)| matches!(s.signer, Some(Signer::Owner(_))))
            .map(|(id, s)| (*id, s.admins.due_for_renewal(now)))
            .filter(|(_, d)| !d.is_empty())
            .collect();
        for (id, admins) in due {
            let Ok(key) = self.owner_key(&id) else {
                continue;
            };
            for a in admins {
                if let Ok(admin) = libp2p::identity::ed25519::PublicKey::try_from_bytes(&a) {
                    tracing::debug!(channel = %id, "admin certificate renewed");
                    let _ = self.issue_cert(&id, &key, &admin);
                }
            }
        }
    }

    fn owner_key(&self, id: &ChannelId) -> Result<libp2p::identity::ed25519::Keypair, NodeError> {
        let state = self
            .channels
            .by_id
            .get(id)
            .ok_or_else(|| NodeError::UnknownChannel(id.to_string()))?;
        match &state.signer {
            Some(Signer::Owner(key)) => Ok(key.clone()),
            _ => Err(NodeError::NotAllowed(
                "only the channel owner can appoint or revoke admins".into(),
            )),
        }
    }
}
