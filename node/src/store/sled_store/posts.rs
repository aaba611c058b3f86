//! Posts of a channel's history (`posts`, `ids`, and the `expiry` index they enter) and the
//! `outbox` of posts still to publish.

use std::ops::Bound;

use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::SledStore;
use crate::channel::{ChannelId, Post, PostId, now_ms};
use crate::store::records::StoredPostPb;
use crate::store::sealed::{SealedTree, tx_result};
use crate::store::{Cursor, InsertOutcome, StoreError};

fn decode_post(plain: &[u8]) -> Result<Post, StoreError> {
    let pb = StoredPostPb::decode(plain).map_err(|_| StoreError::Corrupt("posts"))?;
    Post::from_store(pb.wire).map_err(|_| StoreError::Corrupt("posts"))
}

impl SledStore {
    pub(super) fn insert_posts(&self, posts: &[Post]) -> Result<Vec<InsertOutcome>, StoreError> {
        use crate::store::sealed::Prepared as Rec;
        // Everything that needs the data key is computed before the transaction, which sled
        // may run more than once.
        struct Prepared {
            post: Rec,
            chain: Rec,
            author: Rec,
            id: Rec,
            expiry: Option<Rec>,
        }
        let received_at_ms = now_ms();
        // Keyed hashes of (channel, author), and its `authors` record, are the same for a
        // whole batch of one author: computed once, not for every post.
        let mut prefixes: std::collections::HashMap<(ChannelId, [u8; 32]), ([u8; 32], Rec)> =
            std::collections::HashMap::new();
        let prepared: Vec<Prepared> = posts
            .iter()
            .map(|p| {
                let author = p.author_key.to_bytes();
                let (author_key, author_rec) = prefixes
                    .entry((p.channel, author))
                    .or_insert_with(|| {
                        let k = self.chain_prefix(&p.channel, &author);
                        let rec = self.authors.prepare(&k, &author);
                        (k, rec)
                    })
                    .clone();
                let mut posts_key = [0u8; 40];
                posts_key[..16].copy_from_slice(&author_key[..16]);
                posts_key[16..24].copy_from_slice(&p.timestamp_ms.to_be_bytes());
                posts_key[24..32].copy_from_slice(&author_key[16..24]);
                posts_key[32..].copy_from_slice(&p.seq.to_be_bytes());
                let value = StoredPostPb {
                    wire: p.wire.clone(),
                    received_at_ms,
                }
                .encode_to_vec();
                let mut chain_key = [0u8; 40];
                chain_key[..32].copy_from_slice(&author_key);
                chain_key[32..].copy_from_slice(&p.seq.to_be_bytes());
                let id_key = self.id_key(&p.id);
                let expiry = p.expires_at_ms.map(|at| {
                    let mut k = [0u8; 48];
                    k[..8].copy_from_slice(&at.to_be_bytes());
                    k[8..].copy_from_slice(&posts_key);
                    let mut v = [0u8; 56];
                    v[..40].copy_from_slice(&chain_key);
                    v[40..].copy_from_slice(&id_key);
                    self.expiry.prepare(&k, &v)
                });
                Prepared {
                    post: self.posts.prepare(&posts_key, &value),
                    chain: self.chain.prepare(&chain_key, &posts_key),
                    author: author_rec,
                    id: self.ids.prepare(&id_key, &posts_key),
                    expiry,
                }
            })
            .collect();

        let result = (
            self.posts.raw(),
            self.chain.raw(),
            self.ids.raw(),
            self.authors.raw(),
            self.expiry.raw(),
        )
            .transaction(|(posts, chain, ids, authors, expiry)| {
                let mut outcomes = Vec::with_capacity(prepared.len());
                for p in &prepared {
                    if let Some(existing) = self.ids.tx_get_at(ids, &p.id)? {
                        outcomes.push(if existing.is_empty() {
                            InsertOutcome::Expired
                        } else {
                            InsertOutcome::Duplicate
                        });
                        continue;
                    }
                    if SealedTree::tx_contains_at(chain, &p.chain)? {
                        outcomes.push(InsertOutcome::Conflict);
                        continue;
                    }
                    SealedTree::tx_insert(posts, &p.post)?;
                    SealedTree::tx_insert(chain, &p.chain)?;
                    SealedTree::tx_insert(ids, &p.id)?;
                    if !SealedTree::tx_contains_at(authors, &p.author)? {
                        SealedTree::tx_insert(authors, &p.author)?;
                    }
                    if let Some(e) = &p.expiry {
                        SealedTree::tx_insert(expiry, e)?;
                    }
                    outcomes.push(InsertOutcome::Inserted);
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(outcomes)
            });
        let outcomes = tx_result(result)?;
        for (p, o) in prepared.iter().zip(&outcomes) {
            if *o == InsertOutcome::Inserted {
                self.posts.indexed(p.post.key());
                self.chain.indexed(p.chain.key());
                self.authors.indexed(p.author.key());
                if let Some(e) = &p.expiry {
                    self.expiry.indexed(e.key());
                }
            }
        }
        Ok(outcomes)
    }

    pub(super) fn post_at(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        seq: u64,
    ) -> Result<Option<Post>, StoreError> {
        match self.chain.get(&self.chain_key(channel, author, seq))? {
            Some(pk) if !pk.is_empty() => self.load_post(&pk),
            _ => Ok(None),
        }
    }

    pub(super) fn contains(&self, id: &PostId) -> Result<bool, StoreError> {
        self.ids.contains_key(&self.id_key(id))
    }

    pub(super) fn history(
        &self,
        channel: &ChannelId,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError> {
        let prefix = self.ch16(channel);
        let mut end = [0xffu8; 40];
        end[..16].copy_from_slice(&prefix);
        let mut start = [0u8; 40];
        start[..16].copy_from_slice(&prefix);
        let lower = match after {
            Some(c) => {
                start[16..].copy_from_slice(&c.0);
                Bound::Excluded(&start[..])
            }
            None => Bound::Included(&prefix[..]),
        };
        self.posts_in((lower, Bound::Included(&end[..])), false, limit)
    }

    pub(super) fn history_before(
        &self,
        channel: &ChannelId,
        before: Option<&Cursor>,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError> {
        let prefix = self.ch16(channel);
        let mut end = [0xffu8; 40];
        end[..16].copy_from_slice(&prefix);
        let upper = match before {
            Some(c) => {
                end[16..].copy_from_slice(&c.0);
                Bound::Excluded(&end[..])
            }
            None => Bound::Included(&end[..]),
        };
        let mut out = self.posts_in((Bound::Included(&prefix[..]), upper), true, limit)?;
        out.reverse();
        Ok(out)
    }

    pub(super) fn count(&self, channel: &ChannelId) -> Result<u64, StoreError> {
        Ok(self.posts.prefix_count(&self.ch16(channel)) as u64)
    }

    pub(super) fn load_post(&self, posts_key: &[u8]) -> Result<Option<Post>, StoreError> {
        match self.posts.get(posts_key)? {
            Some(plain) => decode_post(&plain).map(Some),
            None => Ok(None),
        }
    }

    /// Posts of a channel whose keys lie in `range`, in order (or reverse order).
    fn posts_in(
        &self,
        range: (Bound<&[u8]>, Bound<&[u8]>),
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(Cursor, Post)>, StoreError> {
        let mut out = Vec::new();
        for (k, plain) in self.posts.records(self.posts.keys(range, rev, limit))? {
            let post = decode_post(&plain)?;
            let c: [u8; 24] = k
                .get(16..40)
                .and_then(|c| c.try_into().ok())
                .ok_or(StoreError::Corrupt("posts"))?;
            out.push((Cursor(c), post));
        }
        Ok(out)
    }

    pub(super) fn outbox_add(&self, post: &Post) -> Result<(), StoreError> {
        self.outbox.insert(&self.posts_key(post), &[])
    }

    pub(super) fn outbox_remove(&self, post: &Post) -> Result<(), StoreError> {
        self.outbox.remove(&self.posts_key(post))
    }

    pub(super) fn outbox(&self) -> Result<Vec<Post>, StoreError> {
        let mut out = Vec::new();
        for k in self
            .outbox
            .keys((Bound::Unbounded, Bound::Unbounded), false, usize::MAX)
        {
            match self.load_post(&k)? {
                Some(p) => out.push(p),
                // Expired or removed meanwhile: nothing left to publish.
                None => self.outbox.remove(&k)?,
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {

    use std::sync::Arc;

    use libp2p::identity::ed25519;

    use super::super::tests::{chain_of, open};

    use crate::channel::ChannelId;
    use crate::crypto::DataKey;

    use crate::store::{AuthorState, InsertOutcome, Store};

    #[test]
    fn posts_round_trip_in_order_with_paging() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let s = open(dir.path(), &key);
        let ck = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ck.public());
        let mut posts = chain_of(25, &ck, "hello");
        posts.reverse(); // insertion order must not matter
        let outcomes = s.insert_posts(&posts).expect("insert");
        assert!(outcomes.iter().all(|o| *o == InsertOutcome::Inserted));
        assert_eq!(
            s.insert_posts(&posts[..1]).expect("dup")[0],
            InsertOutcome::Duplicate
        );
        s.flush().expect("flush");

        let page1 = s.history(&id, None, 10).expect("page1");
        let page2 = s.history(&id, Some(&page1[9].0), 100).expect("page2");
        let seqs: Vec<u64> = page1
            .iter()
            .chain(page2.iter())
            .map(|(_, p)| p.seq)
            .collect();
        assert_eq!(seqs, (1..=25).collect::<Vec<_>>());
        assert_eq!(s.count(&id).expect("count"), 25);

        // Backwards, as a UI scrolls: the newest 10, the 10 before, the last 5.
        let mut back = Vec::new();
        let mut before = None;
        loop {
            let page = s.history_before(&id, before.as_ref(), 10).expect("back");
            let Some((first, _)) = page.first() else {
                break;
            };
            before = Some(first.clone());
            let seqs: Vec<u64> = page.iter().map(|(_, p)| p.seq).collect();
            back.push(seqs);
        }
        assert_eq!(
            back,
            vec![
                (16..=25).collect::<Vec<_>>(),
                (6..=15).collect(),
                (1..=5).collect()
            ]
        );
        let author = ck.public().to_bytes();
        assert_eq!(
            s.chain_head(&id, &author).expect("head").map(|p| p.seq),
            Some(25)
        );
        assert_eq!(
            s.post_at(&id, &author, 7).expect("at").map(|p| p.text),
            Some("hello 7".into())
        );
        assert_eq!(
            s.authors(&id).expect("authors"),
            vec![AuthorState {
                author,
                max_seq: 25,
                held: 25,
                expired: 0
            }]
        );
        assert!(s.contains(&posts[3].id).expect("contains"));
    }

    #[test]
    fn equivocation_is_a_conflict() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let s = open(dir.path(), &key);
        let ck = ed25519::Keypair::generate();
        let a = chain_of(1, &ck, "first");
        let b = chain_of(1, &ck, "other");
        assert_eq!(s.insert_posts(&a).expect("a")[0], InsertOutcome::Inserted);
        assert_eq!(s.insert_posts(&b).expect("b")[0], InsertOutcome::Conflict);
    }
}
