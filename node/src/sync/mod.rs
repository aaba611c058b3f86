//! History sync (`/samizdat/sync/2`): serving a channel's history from the store ([`serve`]),
//! checking what a peer sends before anything of it is stored ([`page`]), and the state of
//! each channel's sync with its peers, with no I/O ([`state`]).
//!
//! Nothing a peer claims without a signature changes what a node stores, serves or refuses:
//! every head a peer names beyond what this node knows comes with its signed header, and an
//! expired slot is only ever recorded from the author's own signed header of that slot.

#![warn(clippy::arithmetic_side_effects)]

pub mod page;
pub mod state;

pub use page::{Entry, PageError, ProvenHead, check_heads, check_page};

use samizdat_proto::v1;

use crate::channel::ChannelId;
use crate::store::{Slot, Store, StoreError};

/// Most entries (posts and expiry proofs) in one range response.
pub const MAX_PAGE_POSTS: usize = 256;
/// Most bytes of entries in one range response.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest encoded sync request accepted.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024;
/// Largest encoded sync response accepted (a full page plus framing).
pub const MAX_RESPONSE_BYTES: usize = MAX_PAGE_BYTES + 512 * 1024;
/// Most authors listed in a heads response.
pub const MAX_AUTHORS: usize = 4096;
/// Most admin certificates sent with heads (and kept per channel).
pub const MAX_CERTS: usize = 256;

/// What a node serves of a channel besides its posts: the signed manifest and the admin
/// certificates it knows.
#[derive(Debug, Clone, Default)]
pub struct ChannelMeta {
    /// The encoded `ChannelManifest`, if held.
    pub manifest: Option<Vec<u8>>,
    /// Encoded `AdminCert`s.
    pub certs: Vec<Vec<u8>>,
}

/// Answers a sync request from the store (blocking: run off the event loop).
pub fn serve(
    store: &dyn Store,
    req: v1::SyncRequest,
    now_ms: u64,
) -> Result<v1::SyncResponse, StoreError> {
    use prost::Message;
    use v1::sync_request::Kind;
    use v1::sync_response::Kind as R;
    let error = |e: &str| v1::SyncResponse {
        kind: Some(R::Error(e.to_string())),
    };
    let kind = match req.kind {
        Some(Kind::Heads(h)) => {
            let Some(channel) = ChannelId::from_slice(&h.channel) else {
                return Ok(error("bad channel id"));
            };
            let Some(record) = store.channel(&channel)? else {
                return Ok(error("unknown channel"));
            };
            let authors = store
                .head_headers(&channel, MAX_AUTHORS)?
                .into_iter()
                .map(|h| v1::AuthorHead {
                    author: h.author_key.to_bytes().to_vec(),
                    max_seq: h.seq,
                    head: h.wire,
                })
                .collect();
            R::Heads(v1::SyncHeadsResponse {
                authors,
                manifest: record
                    .manifest
                    .as_deref()
                    .and_then(|m| v1::ChannelManifest::decode(m).ok()),
                certs: record
                    .certs
                    .iter()
                    .take(MAX_CERTS)
                    .filter_map(|c| v1::AdminCert::decode(c.as_slice()).ok())
                    .collect(),
                revocations: record
                    .revocations
                    .iter()
                    .take(MAX_CERTS)
                    .filter_map(|r| v1::AdminRevocation::decode(r.as_slice()).ok())
                    .collect(),
            })
        }
        Some(Kind::Range(r)) => {
            let Some(channel) = ChannelId::from_slice(&r.channel) else {
                return Ok(error("bad channel id"));
            };
            let Ok(author) = <[u8; 32]>::try_from(r.author.as_slice()) else {
                return Ok(error("bad author"));
            };
            if r.from_seq == 0 || r.to_seq < r.from_seq {
                return Ok(error("bad range"));
            }
            if store.channel(&channel)?.is_none() {
                return Ok(error("unknown channel"));
            }
            R::Range(range_page(
                store, &channel, &author, r.from_seq, r.to_seq, now_ms,
            )?)
        }
        None => return Ok(error("empty request")),
    };
    Ok(v1::SyncResponse { kind: Some(kind) })
}

fn range_page(
    store: &dyn Store,
    channel: &ChannelId,
    author: &[u8; 32],
    from: u64,
    to: u64,
    now_ms: u64,
) -> Result<v1::SyncRangeResponse, StoreError> {
    let mut page = v1::SyncRangeResponse::default();
    let mut bytes = 0usize;
    // One more than a page, to know whether the range continues.
    let slots = store.slots(channel, author, from, to, MAX_PAGE_POSTS.saturating_add(1))?;
    for (i, (seq, slot)) in slots.into_iter().enumerate() {
        // Never hand out the content of what has expired, even if the local sweep has not run
        // yet: its header is the proof that it expired.
        let wire = match slot {
            Slot::Post(p) if p.is_expired(now_ms) => p.header().wire,
            Slot::Post(p) => p.wire,
            Slot::Expired(h) => h.wire,
        };
        if i == MAX_PAGE_POSTS || bytes.saturating_add(wire.len()) > MAX_PAGE_BYTES {
            page.next_seq = seq;
            break;
        }
        bytes = bytes.saturating_add(wire.len());
        page.posts.push(wire);
    }
    Ok(page)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use std::sync::Arc;

    use libp2p::identity::ed25519;
    use prost::Message;

    use super::*;
    use crate::channel::{Post, PostDraft};
    use crate::crypto::DataKey;
    use crate::store::{ChannelRecord, Role, SledStore};

    pub(crate) fn setup(
        n: u64,
    ) -> (
        tempfile::TempDir,
        SledStore,
        ed25519::Keypair,
        ChannelId,
        Vec<Post>,
    ) {
        let dir = tempfile::tempdir().expect("tmp");
        let s = SledStore::open(dir.path(), Arc::new(DataKey::generate())).expect("open");
        let k = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&k.public());
        s.put_channel(&ChannelRecord {
            id,
            role: Role::Follower,
            manifest: None,
            secret_key: None,
            admin_cert: None,
            followed_at_ms: 0,
            certs: Vec::new(),
            revocations: Vec::new(),
        })
        .expect("channel");
        let mut prev = None;
        let posts: Vec<Post> = (1..=n)
            .map(|seq| {
                let p = Post::sign(
                    &id,
                    &k,
                    None,
                    seq,
                    prev,
                    seq,
                    PostDraft {
                        text: format!("post {seq}"),
                        expires_at_ms: (seq == 3).then_some(1_000),
                        file: None,
                    },
                )
                .expect("sign");
                prev = Some(p.id);
                p
            })
            .collect();
        s.insert_posts(&posts).expect("insert");
        (dir, s, k, id, posts)
    }

    pub(crate) fn range(
        id: &ChannelId,
        k: &ed25519::Keypair,
        from: u64,
        to: u64,
    ) -> v1::SyncRequest {
        v1::SyncRequest {
            kind: Some(v1::sync_request::Kind::Range(v1::SyncRangeRequest {
                channel: id.as_bytes().to_vec(),
                author: k.public().to_bytes().to_vec(),
                from_seq: from,
                to_seq: to,
            })),
        }
    }

    pub(crate) fn page_of(r: v1::SyncResponse) -> v1::SyncRangeResponse {
        match r.kind {
            Some(v1::sync_response::Kind::Range(p)) => p,
            other => panic!("expected a range page, got {other:?}"),
        }
    }

    fn heads_of(s: &SledStore, id: &ChannelId) -> v1::SyncHeadsResponse {
        let r = serve(
            s,
            v1::SyncRequest {
                kind: Some(v1::sync_request::Kind::Heads(v1::SyncHeadsRequest {
                    channel: id.as_bytes().to_vec(),
                })),
            },
            0,
        )
        .expect("heads");
        match r.kind {
            Some(v1::sync_response::Kind::Heads(h)) => h,
            other => panic!("heads expected, got {other:?}"),
        }
    }

    #[test]
    fn pages_are_bounded_continue_and_carry_expiry_proofs_not_content() {
        let (_d, s, k, id, posts) = setup(300);
        let author = k.public().to_bytes();
        let p = page_of(serve(&s, range(&id, &k, 1, 300), 2_000).expect("serve"));
        assert_eq!(p.posts.len(), MAX_PAGE_POSTS);
        assert_eq!(p.next_seq, MAX_PAGE_POSTS as u64 + 1);
        // Seq 3 expired at t=1000: sent as its header, without the text.
        let third = v1::SignedPost::decode(p.posts[2].as_slice()).expect("decode");
        assert!(third.content.is_empty());
        assert_eq!(p.posts[2], posts[2].header().wire);
        let entries = check_page(&id, &author, 1, 300, &p, 2_000, None).expect("valid");
        assert_eq!(entries.len(), MAX_PAGE_POSTS);
        assert!(matches!(&entries[2], Entry::Expired(h) if h.seq == 3));
        assert!(
            entries
                .iter()
                .filter(|e| matches!(e, Entry::Post(_)))
                .count()
                == 255
        );
        let p2 = page_of(serve(&s, range(&id, &k, p.next_seq, 300), 2_000).expect("serve"));
        assert_eq!(p2.next_seq, 0);
        assert_eq!(p2.posts.len(), 300 - MAX_PAGE_POSTS);
        // A range spanning the whole u64 space costs no more than the slots it holds.
        let all = page_of(serve(&s, range(&id, &k, 290, u64::MAX), 2_000).expect("serve"));
        assert_eq!((all.posts.len(), all.next_seq), (11, 0));
        let heads = heads_of(&s, &id);
        assert_eq!(heads.authors.len(), 1);
        assert_eq!(heads.authors[0].max_seq, 300);
        assert_eq!(heads.authors[0].head, posts[299].header().wire);
    }

    #[test]
    fn unknown_channels_and_bad_ranges_get_errors() {
        let (_d, s, k, _, _) = setup(2);
        let other = ChannelId::from_key(&ed25519::Keypair::generate().public());
        for req in [
            range(&other, &k, 1, 2),
            range(&other, &k, 0, 2),
            v1::SyncRequest::default(),
        ] {
            let r = serve(&s, req, 0).expect("serve");
            assert!(matches!(r.kind, Some(v1::sync_response::Kind::Error(_))));
        }
    }
}
