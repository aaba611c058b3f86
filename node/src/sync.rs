//! History sync (`/samizdat/sync/1`): serving a channel's history from the store, and checking
//! a page received from a peer before anything of it is stored.

use samizdat_proto::v1;

use crate::channel::{ChannelId, Post, PostError};
use crate::store::{Slot, Store, StoreError};

/// Most posts in one range response.
pub const MAX_PAGE_POSTS: usize = 256;
/// Most bytes of posts in one range response.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Largest encoded sync request accepted.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024;
/// Largest encoded sync response accepted (a full page plus framing).
pub const MAX_RESPONSE_BYTES: usize = MAX_PAGE_BYTES + 512 * 1024;
/// Most authors listed in a heads response.
pub const MAX_AUTHORS: usize = 4096;

/// Why a page from a peer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    /// A post failed verification.
    #[error("post in sync page: {0}")]
    Post(#[from] PostError),
    /// A post is by another author or outside the requested range, or out of order.
    #[error("sync page holds a post outside the requested range")]
    OutOfRange,
    /// Consecutive posts do not link (prev hash).
    #[error("sync page breaks the author's hash chain")]
    BrokenChain,
    /// Too many posts or an expired slot outside the range.
    #[error("sync page is malformed")]
    Malformed,
}

/// Answers a sync request from the store (blocking: run off the event loop).
pub fn serve(
    store: &dyn Store,
    req: v1::SyncRequest,
    now_ms: u64,
) -> Result<v1::SyncResponse, StoreError> {
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
            if store.channel(&channel)?.is_none() {
                return Ok(error("unknown channel"));
            }
            let authors = store
                .heads(&channel)?
                .into_iter()
                .take(MAX_AUTHORS)
                .map(|(author, max_seq)| v1::AuthorHead {
                    author: author.to_vec(),
                    max_seq,
                })
                .collect();
            R::Heads(v1::SyncHeadsResponse { authors })
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
    let slots = store.slots(channel, author, from, to, MAX_PAGE_POSTS + 1)?;
    for (i, (seq, slot)) in slots.into_iter().enumerate() {
        let wire_len = match &slot {
            Slot::Post(p) => p.wire.len(),
            Slot::Expired => 0,
        };
        if i == MAX_PAGE_POSTS || bytes + wire_len > MAX_PAGE_BYTES {
            page.next_seq = seq;
            break;
        }
        match slot {
            // Never hand out what has expired, even if the local sweep has not run yet.
            Slot::Post(p) if !p.is_expired(now_ms) => {
                bytes += p.wire.len();
                page.posts.push(p.wire);
            }
            _ => page.expired.push(seq),
        }
    }
    Ok(page)
}

/// Checks a range page received for (channel, author, from..=to): every post verified like a
/// live one, in range, ascending, linked; expired seqs in range. Returns the posts to store
/// (minus any that expired meanwhile) and the expired seqs.
pub fn check_page(
    channel: &ChannelId,
    author: &[u8; 32],
    from: u64,
    to: u64,
    page: &v1::SyncRangeResponse,
    now_ms: u64,
) -> Result<(Vec<Post>, Vec<u64>), PageError> {
    if page.posts.len() > MAX_PAGE_POSTS || page.expired.len() > MAX_PAGE_POSTS + 1 {
        return Err(PageError::Malformed);
    }
    if page.next_seq != 0 && (page.next_seq <= from || page.next_seq > to) {
        return Err(PageError::OutOfRange);
    }
    let mut posts: Vec<Post> = Vec::with_capacity(page.posts.len());
    for wire in &page.posts {
        let p = Post::verify(wire, Some(channel), now_ms)?;
        if p.author_key.to_bytes() != *author || p.seq < from || p.seq > to {
            return Err(PageError::OutOfRange);
        }
        if let Some(last) = posts.last() {
            if p.seq <= last.seq {
                return Err(PageError::OutOfRange);
            }
            if p.seq == last.seq + 1 && p.prev != Some(last.id) {
                return Err(PageError::BrokenChain);
            }
        }
        posts.push(p);
    }
    if page.expired.iter().any(|s| *s < from || *s > to) {
        return Err(PageError::Malformed);
    }
    let expired = page.expired.clone();
    posts.retain(|p| !p.is_expired(now_ms));
    Ok((posts, expired))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use libp2p::identity::ed25519;
    use prost::Message;

    use super::*;
    use crate::channel::PostDraft;
    use crate::crypto::DataKey;
    use crate::store::{ChannelRecord, Role, SledStore};

    fn setup(
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
            issued_certs: Vec::new(),
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

    fn range(id: &ChannelId, k: &ed25519::Keypair, from: u64, to: u64) -> v1::SyncRequest {
        v1::SyncRequest {
            kind: Some(v1::sync_request::Kind::Range(v1::SyncRangeRequest {
                channel: id.as_bytes().to_vec(),
                author: k.public().to_bytes().to_vec(),
                from_seq: from,
                to_seq: to,
            })),
        }
    }

    fn page_of(r: v1::SyncResponse) -> v1::SyncRangeResponse {
        match r.kind {
            Some(v1::sync_response::Kind::Range(p)) => p,
            other => panic!("expected a range page, got {other:?}"),
        }
    }

    #[test]
    fn pages_are_bounded_continue_and_never_carry_expired_posts() {
        let (_d, s, k, id, _) = setup(300);
        let author = k.public().to_bytes();
        let p = page_of(serve(&s, range(&id, &k, 1, 300), 2_000).expect("serve"));
        assert_eq!(p.posts.len() + p.expired.len(), MAX_PAGE_POSTS);
        assert_eq!(p.expired, vec![3], "seq 3 expired at t=1000");
        assert_eq!(p.next_seq, MAX_PAGE_POSTS as u64 + 1);
        let (posts, expired) = check_page(&id, &author, 1, 300, &p, 2_000).expect("valid");
        assert_eq!(posts.len(), MAX_PAGE_POSTS - 1);
        assert_eq!(expired, vec![3]);
        let p2 = page_of(serve(&s, range(&id, &k, p.next_seq, 300), 2_000).expect("serve"));
        assert_eq!(p2.next_seq, 0);
        assert_eq!(p2.posts.len(), 300 - MAX_PAGE_POSTS);
        let heads = serve(
            &s,
            v1::SyncRequest {
                kind: Some(v1::sync_request::Kind::Heads(v1::SyncHeadsRequest {
                    channel: id.as_bytes().to_vec(),
                })),
            },
            0,
        )
        .expect("heads");
        let Some(v1::sync_response::Kind::Heads(h)) = heads.kind else {
            panic!("heads expected");
        };
        assert_eq!(h.authors[0].max_seq, 300);
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

    #[test]
    fn forged_out_of_range_and_unlinked_pages_are_refused() {
        let (_d, s, k, id, posts) = setup(10);
        let author = k.public().to_bytes();
        let good = page_of(serve(&s, range(&id, &k, 4, 8), 0).expect("serve"));
        assert!(check_page(&id, &author, 4, 8, &good, 0).is_ok());
        // Out of the requested range.
        assert_eq!(
            check_page(&id, &author, 5, 8, &good, 0),
            Err(PageError::OutOfRange)
        );
        // Another author's posts under this author.
        let other = ed25519::Keypair::generate().public().to_bytes();
        assert_eq!(
            check_page(&id, &other, 4, 8, &good, 0),
            Err(PageError::OutOfRange)
        );
        // A tampered post.
        let mut bad = good.clone();
        let mut sp = v1::SignedPost::decode(bad.posts[0].as_slice()).expect("decode");
        let mut body = v1::PostBody::decode(sp.body.as_slice()).expect("body");
        body.text = "evil".into();
        sp.body = body.encode_to_vec();
        bad.posts[0] = sp.encode_to_vec();
        assert!(matches!(
            check_page(&id, &author, 4, 8, &bad, 0),
            Err(PageError::Post(_))
        ));
        // Out of order.
        let mut rev = good.clone();
        rev.posts.reverse();
        assert_eq!(
            check_page(&id, &author, 4, 8, &rev, 0),
            Err(PageError::OutOfRange)
        );
        // A chain that does not link: seq 5 from a different history.
        let k2 = k.clone();
        let forked = Post::sign(
            &id,
            &k2,
            None,
            5,
            Some(posts[0].id),
            5,
            PostDraft {
                text: "fork".into(),
                ..Default::default()
            },
        )
        .expect("sign");
        let mut fork = good.clone();
        fork.posts[1] = forked.wire;
        assert_eq!(
            check_page(&id, &author, 4, 8, &fork, 0),
            Err(PageError::BrokenChain)
        );
        // Oversized pages never get here: the codec refuses frames above MAX_RESPONSE_BYTES.
        let mut huge = good;
        huge.posts = vec![Vec::new(); MAX_PAGE_POSTS + 1];
        assert_eq!(
            check_page(&id, &author, 4, 8, &huge, 0),
            Err(PageError::Malformed)
        );
    }
}
