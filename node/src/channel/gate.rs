//! Which posts arriving live on a channel's topic are taken: the order of the checks and what
//! each outcome costs the peer that forwarded it. Cheap checks first (a replay costs a hash
//! and a lookup, not a signature check); only what is provably forged or malformed is held
//! against the forwarder, never what an honest peer may pass on (clock skew, a fork it saw
//! only one side of, a revocation it has not heard of). I/O-free: the engine answers the
//! lookups.

use prost::Message as _;
use samizdat_proto::v1;

use super::{AdminCert, ChainCheck, ChannelId, Post, PostError, PostId};

/// Live posts come from now: an older timestamp on gossip is either a post that waited in an
/// outbox (history sync brings it) or one back-dated into an admin certificate's lifetime;
/// neither is taken live.
pub const LIVE_WINDOW_MS: u64 = 3600 * 1000;

/// Why a post is dropped without blame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// Held already (checked before its signature).
    Held,
    /// Dated too far ahead: clock skew is not proof of malice.
    FromFuture,
    /// Expired.
    Expired,
    /// Older than the live window (history sync is the way for it).
    NotLive,
    /// By an admin revoked before it (the forwarder may not know yet).
    Revoked,
    /// Its place in the author's chain is taken by this very post.
    Duplicate,
    /// Its place is taken by another post: a fork; the first one seen is kept.
    Conflict,
    /// The store could not be read: not the peer's fault.
    StoreFault,
}

/// What happens to a post from gossip.
#[derive(Debug)]
pub enum Verdict {
    /// Verified and new: store it and forward it.
    Take(Box<Post>),
    /// Drop it, do not forward, no penalty.
    Drop(Drop),
    /// Forged or malformed: drop it and penalise the forwarder.
    Reject(PostError),
}

/// What the gate asks of the node's state.
pub trait Lookups {
    /// Whether a post with this id is held (or being written).
    fn held(&self, id: &PostId) -> bool;
    /// Whether the author's admin rights were revoked before `seq`.
    fn revoked(&self, author: &[u8; 32], seq: u64) -> bool;
    /// Where the post stands in its author's chain (None: the store failed).
    fn chain(&self, post: &Post) -> Option<ChainCheck>;
    /// The held certificate byte-identical to `cert`, verified when it was adopted.
    fn known_cert(&self, cert: &v1::AdminCert) -> Option<&AdminCert>;
}

/// Decides a post that arrived on `channel`'s topic at `now_ms`.
pub fn admit(channel: &ChannelId, sp: &v1::SignedPost, now_ms: u64, at: &impl Lookups) -> Verdict {
    if at.held(&PostId::of_body(&sp.body)) {
        return Verdict::Drop(Drop::Held);
    }
    let known = sp.cert.as_ref().and_then(|c| at.known_cert(c));
    let post = match Post::verify_known(&sp.encode_to_vec(), Some(channel), now_ms, known) {
        Ok(p) => p,
        Err(PostError::FromFuture) => return Verdict::Drop(Drop::FromFuture),
        Err(e) => return Verdict::Reject(e),
    };
    if post.is_expired(now_ms) {
        return Verdict::Drop(Drop::Expired);
    }
    if post.timestamp_ms.saturating_add(LIVE_WINDOW_MS) < now_ms {
        return Verdict::Drop(Drop::NotLive);
    }
    if at.revoked(&post.author_key.to_bytes(), post.seq) {
        return Verdict::Drop(Drop::Revoked);
    }
    match at.chain(&post) {
        Some(ChainCheck::New) => Verdict::Take(Box::new(post)),
        Some(ChainCheck::Duplicate) => Verdict::Drop(Drop::Duplicate),
        Some(ChainCheck::Conflict) => Verdict::Drop(Drop::Conflict),
        None => Verdict::Drop(Drop::StoreFault),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use libp2p::identity::ed25519;

    use super::*;
    use crate::channel::PostDraft;

    const NOW: u64 = 10 * LIVE_WINDOW_MS;

    #[derive(Default)]
    struct State {
        held: Vec<PostId>,
        revoked_from: Option<u64>,
        chain: Option<ChainCheck>,
        store_fails: bool,
        certs: Vec<AdminCert>,
    }

    impl Lookups for State {
        fn held(&self, id: &PostId) -> bool {
            self.held.contains(id)
        }
        fn revoked(&self, _: &[u8; 32], seq: u64) -> bool {
            self.revoked_from.is_some_and(|from| seq >= from)
        }
        fn chain(&self, _: &Post) -> Option<ChainCheck> {
            if self.store_fails {
                None
            } else {
                Some(self.chain.unwrap_or(ChainCheck::New))
            }
        }
        fn known_cert(&self, cert: &v1::AdminCert) -> Option<&AdminCert> {
            self.certs.iter().find(|c| c.signed == *cert)
        }
    }

    fn signed(key: &ed25519::Keypair, seq: u64, at: u64, expires: Option<u64>) -> v1::SignedPost {
        let id = ChannelId::from_key(&key.public());
        let draft = PostDraft {
            text: format!("post {seq}"),
            expires_at_ms: expires,
            ..Default::default()
        };
        let prev = (seq > 1).then_some(PostId([1; 32]));
        let p = Post::sign(&id, key, None, seq, prev, at, draft).unwrap();
        v1::SignedPost::decode(p.wire.as_slice()).unwrap()
    }

    fn verdict(key: &ed25519::Keypair, sp: &v1::SignedPost, state: &State) -> Verdict {
        admit(&ChannelId::from_key(&key.public()), sp, NOW, state)
    }

    #[test]
    fn a_fresh_post_is_taken_and_its_replay_costs_no_signature_check() {
        let key = ed25519::Keypair::generate();
        let sp = signed(&key, 1, NOW - 1_000, None);
        assert!(matches!(verdict(&key, &sp, &State::default()), Verdict::Take(p) if p.seq == 1));
        // A held post with a broken signature is still only a replay: dropped before any
        // verification, so a flood of replays cannot make the node verify signatures.
        let mut broken = sp.clone();
        broken.signature[0] ^= 1;
        let held = State {
            held: vec![PostId::of_body(&sp.body)],
            ..Default::default()
        };
        assert!(matches!(
            verdict(&key, &broken, &held),
            Verdict::Drop(Drop::Held)
        ));
        assert!(matches!(
            verdict(&key, &broken, &State::default()),
            Verdict::Reject(PostError::BadSignature)
        ));
    }

    #[test]
    fn forgeries_are_rejected_and_honest_mistakes_are_not() {
        let key = ed25519::Keypair::generate();
        let other = ed25519::Keypair::generate();
        let sp = signed(&key, 1, NOW, None);
        assert!(
            matches!(verdict(&other, &sp, &State::default()), Verdict::Reject(_)),
            "another channel's post"
        );
        let future = signed(&key, 2, NOW + 24 * LIVE_WINDOW_MS, None);
        assert!(matches!(
            verdict(&key, &future, &State::default()),
            Verdict::Drop(Drop::FromFuture)
        ));
        let old = signed(&key, 3, NOW - 2 * LIVE_WINDOW_MS, None);
        assert!(matches!(
            verdict(&key, &old, &State::default()),
            Verdict::Drop(Drop::NotLive)
        ));
        let gone = signed(&key, 4, NOW - 1_000, Some(NOW - 1));
        assert!(matches!(
            verdict(&key, &gone, &State::default()),
            Verdict::Drop(Drop::Expired)
        ));
    }

    #[test]
    fn revoked_admins_forks_and_store_faults_are_dropped_without_blame() {
        let key = ed25519::Keypair::generate();
        let sp = signed(&key, 5, NOW, None);
        let revoked = State {
            revoked_from: Some(5),
            ..Default::default()
        };
        assert!(matches!(
            verdict(&key, &sp, &revoked),
            Verdict::Drop(Drop::Revoked)
        ));
        let before = State {
            revoked_from: Some(6),
            ..Default::default()
        };
        assert!(matches!(verdict(&key, &sp, &before), Verdict::Take(_)));
        for (chain, expected) in [
            (ChainCheck::Conflict, Drop::Conflict),
            (ChainCheck::Duplicate, Drop::Duplicate),
        ] {
            let s = State {
                chain: Some(chain),
                ..Default::default()
            };
            assert!(matches!(verdict(&key, &sp, &s), Verdict::Drop(d) if d == expected));
        }
        let failing = State {
            store_fails: true,
            ..Default::default()
        };
        assert!(matches!(
            verdict(&key, &sp, &failing),
            Verdict::Drop(Drop::StoreFault)
        ));
    }

    #[test]
    fn a_known_certificate_is_trusted_only_byte_for_byte() {
        let owner = ed25519::Keypair::generate();
        let admin = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&owner.public());
        let cert = AdminCert::issue(&owner, &admin.public(), 0, None);
        let draft = PostDraft {
            text: "by an admin".into(),
            ..Default::default()
        };
        let p = Post::sign(&id, &admin, Some(&cert), 1, None, NOW - 1_000, draft).unwrap();
        let sp = v1::SignedPost::decode(p.wire.as_slice()).unwrap();
        let knows = State {
            certs: vec![cert.clone()],
            ..Default::default()
        };
        assert!(matches!(admit(&id, &sp, NOW, &knows), Verdict::Take(_)));
        assert!(matches!(
            admit(&id, &sp, NOW, &State::default()),
            Verdict::Take(_)
        ));
        // The certificate is outside the author's signature: a forged one attached to a
        // genuine post is verified (and refused), not waved through as the known one.
        let mut forged = sp.clone();
        if let Some(c) = forged.cert.as_mut() {
            c.signature[0] ^= 1;
        }
        assert!(matches!(
            admit(&id, &forged, NOW, &knows),
            Verdict::Reject(_)
        ));
    }
}
