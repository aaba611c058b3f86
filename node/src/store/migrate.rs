//! Upgrading a store of format 1 (wire protocol 1). Posts of protocol 1 signed their text
//! inside the body; protocol 2 signs a header that binds the content by its hash, so no
//! protocol-1 post is valid any more and every node drops them and syncs again. The one history
//! nobody could sync back is a channel owner's own: the owner's node holds the channel key,
//! so it signs its posts again, in protocol 2, with the same sequence numbers, times, texts,
//! files and expiries (a slot that had already expired becomes a signed expiry proof).

use libp2p::identity::ed25519;
use prost::Message;

use crate::channel::{ChannelId, FileRef, Post, PostDraft, PostHeader, PostId};

/// A post as protocol 1 encoded it (the schema no longer has it).
#[derive(Clone, PartialEq, Message)]
struct V1SignedPost {
    #[prost(bytes = "vec", tag = "1")]
    body: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct V1PostBody {
    #[prost(uint64, tag = "3")]
    seq: u64,
    #[prost(uint64, tag = "5")]
    timestamp_ms: u64,
    #[prost(string, tag = "6")]
    text: String,
    #[prost(uint64, tag = "7")]
    expires_at_ms: u64,
    #[prost(message, optional, tag = "8")]
    file: Option<samizdat_proto::v1::FileRef>,
}

/// One slot of an owner's protocol-1 chain, as found in the store.
#[derive(Debug, Clone)]
pub(super) enum OldSlot {
    /// The post's protocol-1 `SignedPost` bytes.
    Post(Vec<u8>),
    /// The slot had expired (protocol 1 kept nothing of it).
    Expired,
}

/// What the owner's chain becomes.
#[derive(Debug, Default)]
pub(super) struct Resigned {
    pub posts: Vec<Post>,
    pub tombstones: Vec<PostHeader>,
}

/// Signs an owner's protocol-1 chain again, from seq 1 up to the first gap (a later post
/// could not link to a slot nobody has).
pub(super) fn resign_owner_chain(
    channel: &ChannelId,
    key: &ed25519::Keypair,
    slots: Vec<(u64, OldSlot)>,
) -> Resigned {
    let mut out = Resigned::default();
    let mut prev: Option<PostId> = None;
    let mut last_ts = 0u64;
    for (expected, (seq, slot)) in (1u64..).zip(slots) {
        if seq != expected {
            tracing::warn!(channel = %channel, seq, "a gap in the owner's old chain: the rest is not carried over");
            break;
        }
        let old = match slot {
            OldSlot::Post(wire) => V1SignedPost::decode(wire.as_slice())
                .ok()
                .and_then(|sp| V1PostBody::decode(sp.body.as_slice()).ok()),
            OldSlot::Expired => None,
        };
        let (id, ts) = match old {
            Some(b) => {
                let ts = b.timestamp_ms.max(last_ts);
                let file = b.file.and_then(|f| {
                    Some(FileRef {
                        cid: f.cid.as_slice().try_into().ok()?,
                        name: f.name,
                        size: f.size,
                        mime: f.mime,
                    })
                });
                let draft = PostDraft {
                    text: b.text,
                    expires_at_ms: (b.expires_at_ms != 0).then_some(b.expires_at_ms),
                    file,
                };
                match Post::sign(channel, key, None, seq, prev, ts, draft) {
                    Ok(p) => {
                        let id = p.id;
                        out.posts.push(p);
                        (id, ts)
                    }
                    Err(e) => {
                        tracing::warn!(channel = %channel, seq, "old post not carried over: {e}");
                        break;
                    }
                }
            }
            None => {
                let h = Post::sign_expired_header(channel, key, seq, prev, last_ts);
                let id = h.id;
                out.tombstones.push(h);
                (id, last_ts)
            }
        };
        prev = Some(id);
        last_ts = ts;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_chain_is_signed_again_with_its_expired_slots_proven() {
        let k = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&k.public());
        let old = |seq: u64, text: &str| {
            let body = V1PostBody {
                seq,
                timestamp_ms: 1_000 + seq,
                text: text.into(),
                expires_at_ms: 0,
                file: None,
            }
            .encode_to_vec();
            OldSlot::Post(V1SignedPost { body }.encode_to_vec())
        };
        let slots = vec![
            (1, old(1, "one")),
            (2, OldSlot::Expired),
            (3, old(3, "three")),
            (5, old(5, "after a gap")),
        ];
        let r = resign_owner_chain(&id, &k, slots);
        assert_eq!(r.posts.len(), 2);
        assert_eq!(r.tombstones.len(), 1);
        assert_eq!(r.posts[0].text, "one");
        assert_eq!(r.posts[1].seq, 3);
        // The chain links through the expired slot, and everything verifies as protocol 2.
        assert_eq!(r.tombstones[0].prev, Some(r.posts[0].id));
        assert_eq!(r.posts[1].prev, Some(r.tombstones[0].id));
        assert!(Post::verify(&r.posts[1].wire, Some(&id), 10_000).is_ok());
        let t = PostHeader::verify(&r.tombstones[0].wire, &id, 10_000).expect("header");
        assert!(t.is_expired(10_000));
    }
}
