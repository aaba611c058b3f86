//! Checking what a peer answers to a sync request, before anything of it is stored: every
//! post verified like a live one, every expired slot proven by its signed header, every head
//! beyond what this node knows proven by its signed header, ranges and links consistent.

#![warn(clippy::arithmetic_side_effects)]

use libp2p::identity::ed25519;
use prost::Message as _;
use samizdat_proto::v1;

use super::{MAX_AUTHORS, MAX_PAGE_POSTS};
use crate::channel::{AdminCert, ChannelId, MAX_POST_BYTES, Post, PostError, PostHeader, PostId};

/// How far ahead of this node's clock an author's timestamp may be (as for live posts).
const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;

/// Why an answer from a peer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    /// A post or header failed verification.
    #[error("post in sync page: {0}")]
    Post(#[from] PostError),
    /// An entry is by another author or outside the requested range, or out of order.
    #[error("sync page holds a post outside the requested range")]
    OutOfRange,
    /// Consecutive entries do not link (prev hash).
    #[error("sync page breaks the author's hash chain")]
    BrokenChain,
    /// Too many entries, a continuation that makes no progress, a head claim without its
    /// proof, or the header of a post that never expires passed off as an expiry.
    #[error("sync answer is malformed")]
    Malformed,
}

/// One slot of an author's chain as received: a post, or the proof that it expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A verified post, not expired.
    Post(Post),
    /// A verified header whose expiry has passed.
    Expired(PostHeader),
}

impl Entry {
    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Entry::Post(p) => p.seq,
            Entry::Expired(h) => h.seq,
        }
    }

    /// Its id.
    pub fn id(&self) -> PostId {
        match self {
            Entry::Post(p) => p.id,
            Entry::Expired(h) => h.id,
        }
    }

    /// The id of the author's previous post.
    pub fn prev(&self) -> Option<PostId> {
        match self {
            Entry::Post(p) => p.prev,
            Entry::Expired(h) => h.prev,
        }
    }

    /// The author's key.
    pub fn author_key(&self) -> &ed25519::PublicKey {
        match self {
            Entry::Post(p) => &p.author_key,
            Entry::Expired(h) => &h.author_key,
        }
    }
}

/// An author's head as a peer reported it: how far its chain reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenHead {
    /// The author.
    pub author: [u8; 32],
    /// The highest sequence number the peer holds.
    pub max_seq: u64,
    /// Its verified header, when the claim went beyond what this node already knew (and so
    /// needed a proof); `None` when the claim was within known ground.
    pub proof: Option<PostHeader>,
}

/// Checks a heads answer. `known(author)` is the highest sequence number this node already
/// knows for an author: a claim up to it needs no proof, a claim beyond it must carry the
/// signed header of that slot, or the whole answer is refused. Heads from the future (clock
/// skew) are skipped.
pub fn check_heads(
    channel: &ChannelId,
    heads: &v1::SyncHeadsResponse,
    known: impl Fn(&[u8; 32]) -> u64,
    now_ms: u64,
) -> Result<Vec<ProvenHead>, PageError> {
    if heads.authors.len() > MAX_AUTHORS {
        return Err(PageError::Malformed);
    }
    let mut out = Vec::with_capacity(heads.authors.len());
    let mut seen = std::collections::HashSet::with_capacity(heads.authors.len());
    for h in &heads.authors {
        let author: [u8; 32] = h
            .author
            .as_slice()
            .try_into()
            .map_err(|_| PageError::Malformed)?;
        // Each author once: repeats would only make this node verify the same proof again.
        if !seen.insert(author) {
            return Err(PageError::Malformed);
        }
        if h.max_seq == 0 {
            continue;
        }
        if h.max_seq <= known(&author) {
            out.push(ProvenHead {
                author,
                max_seq: h.max_seq,
                proof: None,
            });
            continue;
        }
        let proof = match PostHeader::verify(&h.head, channel, now_ms) {
            Ok(p) => p,
            // An honest peer whose clock runs ahead: not proof of malice, just not usable.
            Err(PostError::FromFuture) => continue,
            Err(e) => return Err(e.into()),
        };
        if proof.author_key.to_bytes() != author || proof.seq != h.max_seq {
            return Err(PageError::Malformed);
        }
        out.push(ProvenHead {
            author,
            max_seq: h.max_seq,
            proof: Some(proof),
        });
    }
    Ok(out)
}

/// Checks a range page received for (channel, author, from..=to): every post verified like a
/// live one and every header as a proof of expiry, in range, ascending, consecutive ones
/// linked; a continuation (`next_seq`) only after at least one entry, beyond the last. A post
/// that expired meanwhile becomes its proof. Entries this node cannot use yet — a header whose
/// expiry has not passed here, a post from the future of this node's clock — are checked the
/// same way and skipped.
pub fn check_page(
    channel: &ChannelId,
    author: &[u8; 32],
    from: u64,
    to: u64,
    page: &v1::SyncRangeResponse,
    now_ms: u64,
    // The author's certificate as this node holds it (verified): the same one on each post
    // of the page is not verified again.
    known: Option<&AdminCert>,
) -> Result<Vec<Entry>, PageError> {
    if page.posts.len() > MAX_PAGE_POSTS {
        return Err(PageError::Malformed);
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(page.posts.len());
    let mut last: Option<(u64, PostId)> = None;
    for wire in &page.posts {
        let d = decode_entry(wire, channel, author, (from, to), now_ms, known)?;
        if let Some((last_seq, last_id)) = last {
            if d.seq <= last_seq {
                return Err(PageError::OutOfRange);
            }
            if last_seq.checked_add(1) == Some(d.seq) && d.prev != Some(last_id) {
                return Err(PageError::BrokenChain);
            }
        }
        last = Some((d.seq, d.id));
        if let Some(e) = d.entry {
            entries.push(e);
        }
    }
    if page.next_seq != 0 {
        // Each continuation must be paid for with signed entries, or a peer could keep a
        // follower asking forever: it must follow the last entry and stay in the range.
        let Some((last_seq, _)) = last else {
            return Err(PageError::Malformed);
        };
        if page.next_seq <= last_seq || page.next_seq > to {
            return Err(PageError::OutOfRange);
        }
    }
    Ok(entries)
}

/// An entry of a page, verified: its place in the chain, and what to keep of it (`None`: not
/// usable here yet).
struct Decoded {
    seq: u64,
    id: PostId,
    prev: Option<PostId>,
    entry: Option<Entry>,
}

/// One entry: a whole post, or a header proving an expiry. The cheap checks (author, range)
/// come before the signature, so that a page of junk costs no verification.
fn decode_entry(
    wire: &[u8],
    channel: &ChannelId,
    author: &[u8; 32],
    (from, to): (u64, u64),
    now_ms: u64,
    known: Option<&AdminCert>,
) -> Result<Decoded, PageError> {
    if wire.len() > MAX_POST_BYTES {
        return Err(PostError::TooLarge(wire.len()).into());
    }
    let signed = v1::SignedPost::decode(wire).map_err(|_| PostError::Malformed)?;
    let body = v1::PostBody::decode(signed.body.as_slice()).map_err(|_| PostError::Malformed)?;
    if body.author.as_slice() != author || body.seq < from || body.seq > to {
        return Err(PageError::OutOfRange);
    }
    // Verified with the clock check off: an entry from the future of this node's clock (its
    // author's runs ahead) is the author's doing, not the server's: skipped below, not refused.
    let future = body.timestamp_ms > now_ms.saturating_add(MAX_CLOCK_SKEW_MS);
    if !signed.content.is_empty() {
        let post = Post::verify_known(wire, Some(channel), u64::MAX, known)?;
        let entry = match () {
            () if future => None,
            () if post.is_expired(now_ms) => Some(Entry::Expired(post.header())),
            () => Some(Entry::Post(post.clone())),
        };
        return Ok(Decoded {
            seq: post.seq,
            id: post.id,
            prev: post.prev,
            entry,
        });
    }
    let header = PostHeader::verify(wire, channel, u64::MAX)?;
    let entry = match header.expires_at_ms {
        // A header of a post that never expires proves nothing but withheld content: a lie.
        None => return Err(PageError::Malformed),
        Some(at) if at <= now_ms && !future => Some(Entry::Expired(header.clone())),
        // Not expired on this node's clock (the server's runs ahead, or it withholds): it
        // proves the slot, not its expiry; skipped.
        Some(_) => None,
    };
    Ok(Decoded {
        seq: header.seq,
        id: header.id,
        prev: header.prev,
        entry,
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::super::serve;
    use super::super::tests::{page_of, range, setup};
    use super::*;
    use crate::channel::PostDraft;

    #[test]
    fn forged_out_of_range_and_unlinked_pages_are_refused() {
        let (_d, s, k, id, posts) = setup(10);
        let author = k.public().to_bytes();
        let good = page_of(serve(&s, range(&id, &k, 4, 8), 0).expect("serve"));
        assert!(check_page(&id, &author, 4, 8, &good, 0, None).is_ok());
        // Out of the requested range.
        assert_eq!(
            check_page(&id, &author, 5, 8, &good, 0, None),
            Err(PageError::OutOfRange)
        );
        // Another author's posts under this author.
        let other = ed25519::Keypair::generate().public().to_bytes();
        assert_eq!(
            check_page(&id, &other, 4, 8, &good, 0, None),
            Err(PageError::OutOfRange)
        );
        // A tampered post.
        let mut bad = good.clone();
        let mut sp = v1::SignedPost::decode(bad.posts[0].as_slice()).expect("decode");
        sp.content = v1::PostContent {
            text: "evil".into(),
            file: None,
        }
        .encode_to_vec();
        bad.posts[0] = sp.encode_to_vec();
        assert!(matches!(
            check_page(&id, &author, 4, 8, &bad, 0, None),
            Err(PageError::Post(_))
        ));
        // Out of order.
        let mut rev = good.clone();
        rev.posts.reverse();
        assert_eq!(
            check_page(&id, &author, 4, 8, &rev, 0, None),
            Err(PageError::OutOfRange)
        );
        // A chain that does not link: seq 5 from a different history.
        let forked = Post::sign(
            &id,
            &k,
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
            check_page(&id, &author, 4, 8, &fork, 0, None),
            Err(PageError::BrokenChain)
        );
        // Oversized pages never get here: the codec refuses frames above MAX_RESPONSE_BYTES.
        let mut huge = good.clone();
        huge.posts = vec![Vec::new(); MAX_PAGE_POSTS + 1];
        assert_eq!(
            check_page(&id, &author, 4, 8, &huge, 0, None),
            Err(PageError::Malformed)
        );
        // A continuation without entries, or one that does not move forward.
        let empty = v1::SyncRangeResponse {
            posts: Vec::new(),
            next_seq: 6,
        };
        assert_eq!(
            check_page(&id, &author, 5, 8, &empty, 0, None),
            Err(PageError::Malformed)
        );
        let mut stuck = good;
        stuck.next_seq = 5;
        assert_eq!(
            check_page(&id, &author, 4, 8, &stuck, 0, None),
            Err(PageError::OutOfRange)
        );
    }

    #[test]
    fn expiry_needs_the_authors_signed_header() {
        let (_d, s, k, id, posts) = setup(5);
        let author = k.public().to_bytes();
        // Seq 3 expires at t=1000. Before then its header proves nothing and withholding the
        // content is refused; within the clock skew it is skipped; after, it is a proof.
        let h3 = posts[2].header();
        let only = |w: Vec<u8>| v1::SyncRangeResponse {
            posts: vec![w],
            next_seq: 0,
        };
        assert!(matches!(
            check_page(&id, &author, 3, 3, &only(h3.wire.clone()), 500, None).expect("not yet")[..],
            []
        ));
        let late = Post::sign(
            &id,
            &k,
            None,
            6,
            Some(posts[4].id),
            6,
            PostDraft {
                text: "expires much later".into(),
                expires_at_ms: Some(10_000_000),
                file: None,
            },
        )
        .expect("sign");
        // Far from its expiry here: still only skipped (a server's clock may be far ahead);
        // never stored as expired.
        assert!(
            check_page(
                &id,
                &author,
                6,
                6,
                &only(late.header().wire),
                10_000_000 - MAX_CLOCK_SKEW_MS - 1,
                None
            )
            .expect("skipped")
            .is_empty()
        );
        // A continuation after only skipped entries still moves forward.
        let cont = v1::SyncRangeResponse {
            posts: vec![late.header().wire],
            next_seq: 7,
        };
        assert!(
            check_page(&id, &author, 6, 9, &cont, 0, None)
                .expect("ok")
                .is_empty()
        );
        let got =
            check_page(&id, &author, 3, 3, &only(h3.wire.clone()), 1_000, None).expect("proof");
        assert_eq!(got, vec![Entry::Expired(h3)]);
        // The header of a post that never expires never proves an expiry.
        assert_eq!(
            check_page(
                &id,
                &author,
                1,
                1,
                &only(posts[0].header().wire),
                u64::MAX,
                None
            ),
            Err(PageError::Malformed)
        );
        // The whole post, expired by now, stands as its own proof.
        let p = page_of(serve(&s, range(&id, &k, 3, 3), 0).expect("serve"));
        let got = check_page(&id, &author, 3, 3, &p, 5_000, None).expect("post");
        assert!(matches!(&got[..], [Entry::Expired(h)] if h.id == posts[2].id));
    }

    #[test]
    fn heads_beyond_what_is_known_need_proof() {
        let (_d, s, k, id, posts) = setup(10);
        let author = k.public().to_bytes();
        let claim = |max_seq: u64, head: Vec<u8>| v1::SyncHeadsResponse {
            authors: vec![v1::AuthorHead {
                author: author.to_vec(),
                max_seq,
                head,
            }],
            ..Default::default()
        };
        // A proven head.
        let ok = check_heads(&id, &claim(10, posts[9].header().wire), |_| 0, 0).expect("ok");
        assert_eq!(ok[0].max_seq, 10);
        assert!(ok[0].proof.is_some());
        // u64::MAX without proof, or with the proof of another slot: refused.
        assert_eq!(
            check_heads(&id, &claim(u64::MAX, Vec::new()), |_| 0, 0),
            Err(PageError::Post(PostError::Malformed))
        );
        assert_eq!(
            check_heads(&id, &claim(u64::MAX, posts[9].header().wire), |_| 0, 0),
            Err(PageError::Malformed)
        );
        // Within known ground, no proof is needed.
        let ok = check_heads(&id, &claim(7, Vec::new()), |_| 10, 0).expect("known");
        assert_eq!((ok[0].max_seq, ok[0].proof.is_none()), (7, true));
        // One author listed twice (to make the follower verify its proof again and again).
        let mut twice = claim(10, posts[9].header().wire);
        twice.authors.push(twice.authors[0].clone());
        assert_eq!(
            check_heads(&id, &twice, |_| 0, 0),
            Err(PageError::Malformed)
        );
        drop(s);
    }
}
