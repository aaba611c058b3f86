//! Expiry: the sweep that turns due posts into tombstones.

use std::ops::Bound;

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::SledStore;
use crate::store::sealed::{SealedTree, tx_result};
use crate::store::{ExpiredPost, StoreError};

impl SledStore {
    pub(super) fn expire_due(&self, now_ms: u64) -> Result<Vec<ExpiredPost>, StoreError> {
        let mut end = [0xffu8; 48];
        end[..8].copy_from_slice(&now_ms.to_be_bytes());
        let mut out = Vec::new();
        let due = self.expiry.keys(
            (Bound::Unbounded, Bound::Included(&end[..])),
            false,
            usize::MAX,
        );
        for (k, v) in self.expiry.records(due)? {
            if v.len() != 56 || k.len() != 48 {
                self.expiry.remove(&k)?;
                continue;
            }
            let posts_key = &k[8..48];
            let post = self.load_post(posts_key)?;
            let (chain_key, id_key) = v.split_at(40);
            // What stays of the post: its signed header, served as the proof that it expired.
            let tombstone = post
                .as_ref()
                .map(|p| self.tombstones.prepare(chain_key, &p.header().wire));
            let chain_entry = self.chain.prepare(chain_key, &[]);
            let id_entry = self.ids.prepare(id_key, &[]);
            let r = (
                self.posts.raw(),
                self.chain.raw(),
                self.ids.raw(),
                self.expiry.raw(),
                self.outbox.raw(),
                self.tombstones.raw(),
            )
                .transaction(|(posts, chain, ids, expiry, outbox, tombstones)| {
                    self.posts.tx_remove(posts, posts_key)?;
                    SealedTree::tx_insert(chain, &chain_entry)?;
                    SealedTree::tx_insert(ids, &id_entry)?;
                    self.expiry.tx_remove(expiry, &k)?;
                    self.outbox.tx_remove(outbox, posts_key)?;
                    if let Some(t) = &tombstone {
                        SealedTree::tx_insert(tombstones, t)?;
                    }
                    Ok::<_, ConflictableTransactionError<StoreError>>(())
                });
            tx_result(r)?;
            self.posts.unindexed(posts_key);
            self.expiry.unindexed(&k);
            self.outbox.unindexed(posts_key);
            self.chain.indexed(chain_key);
            if let Some(p) = post {
                out.push(ExpiredPost {
                    channel: p.channel,
                    id: p.id,
                });
            }
        }
        if !out.is_empty() {
            self.sync()?;
        }
        Ok(out)
    }

    pub(super) fn next_expiry(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .expiry
            .keys((Bound::Unbounded, Bound::Unbounded), false, 1)
            .first()
            .and_then(|k| {
                let b: [u8; 8] = k.get(..8)?.try_into().ok()?;
                Some(u64::from_be_bytes(b))
            }))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {

    use std::sync::Arc;

    use libp2p::identity::ed25519;

    use super::super::tests::{chain_of, open};

    use crate::channel::{ChannelId, Post, PostDraft, PostHeader, PostId};
    use crate::crypto::DataKey;

    use crate::store::{ExpiredPost, InsertOutcome, Slot};

    #[test]
    fn gaps_slots_and_expiry() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let s = open(dir.path(), &key);
        let ck = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ck.public());
        let author = ck.public().to_bytes();
        let mut posts = chain_of(10, &ck, "p");
        // Make seq 4 expire at t=50 (re-signed with an expiry), drop 6..=7 (a gap).
        let four = Post::sign(
            &id,
            &ck,
            None,
            4,
            Some(posts[2].id),
            posts[3].timestamp_ms,
            PostDraft {
                text: "short-lived".into(),
                expires_at_ms: Some(50),
                file: None,
            },
        )
        .expect("sign");
        posts[3] = four.clone();
        let keep: Vec<Post> = posts
            .iter()
            .filter(|p| p.seq != 6 && p.seq != 7)
            .cloned()
            .collect();
        s.insert_posts(&keep).expect("insert");
        assert_eq!(
            s.missing(&id, &author, 12).expect("missing"),
            vec![(6, 7), (11, 12)]
        );
        assert_eq!(s.next_expiry().expect("next"), Some(50));
        assert!(s.expire_due(49).expect("early").is_empty());
        let gone = s.expire_due(50).expect("due");
        assert_eq!(
            gone,
            vec![ExpiredPost {
                channel: id,
                id: four.id
            }]
        );
        assert_eq!(s.next_expiry().expect("next"), None);
        assert!(s.post_at(&id, &author, 4).expect("at").is_none());
        assert_eq!(s.count(&id).expect("count"), 7);
        // The slot is a tombstone: not missing, reported as expired, never re-inserted.
        assert_eq!(s.missing(&id, &author, 10).expect("missing"), vec![(6, 7)]);
        let slots = s.slots(&id, &author, 3, 5, 10).expect("slots");
        assert_eq!(
            slots.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(matches!(&slots[1].1, Slot::Expired(h) if h.id == four.id && h.seq == 4));
        assert_eq!(
            s.insert_posts(&[four]).expect("again")[0],
            InsertOutcome::Expired
        );
        // Expiry proofs learned from peers fill holes only: seq 6 expired (its header proves
        // it); a header for seq 8, which is held, is another post's and changes nothing.
        let expiring = |seq: u64, prev: PostId, text: &str| {
            Post::sign(
                &id,
                &ck,
                None,
                seq,
                Some(prev),
                2_000,
                PostDraft {
                    text: text.into(),
                    expires_at_ms: Some(60),
                    file: None,
                },
            )
            .expect("sign")
        };
        let six = expiring(6, posts[4].id, "six");
        let eight = expiring(8, posts[6].id, "eight");
        assert_eq!(
            s.insert_tombstones(&[six.header(), eight.header()])
                .expect("tombstones"),
            vec![InsertOutcome::Inserted, InsertOutcome::Conflict]
        );
        assert_eq!(
            s.insert_tombstones(&[six.header()]).expect("again"),
            vec![InsertOutcome::Expired]
        );
        assert_eq!(s.missing(&id, &author, 10).expect("missing"), vec![(7, 7)]);
        assert!(s.post_at(&id, &author, 8).expect("at").is_some());
        let st = &s.authors(&id).expect("authors")[0];
        assert_eq!((st.max_seq, st.held, st.expired), (10, 9, 2));
        // The cheap head lookup agrees with the full scan, and proves the head.
        assert_eq!(s.heads(&id).expect("heads"), vec![(author, 10)]);
        let proofs = s.head_headers(&id, 10).expect("head headers");
        assert_eq!(proofs.len(), 1);
        assert_eq!((proofs[0].seq, proofs[0].id), (10, posts[9].id));
        assert!(PostHeader::verify(&proofs[0].wire, &id, 0).is_ok());
        // The tombstone of seq 4 is served as its header.
        let slots = s.slots(&id, &author, 6, 6, 10).expect("slots");
        assert!(matches!(&slots[0].1, Slot::Expired(h) if h.id == six.id));
    }

    #[test]
    fn an_expired_newest_post_still_holds_its_place_in_the_chain() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let s = open(dir.path(), &key);
        let ck = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ck.public());
        let first = chain_of(1, &ck, "stays").remove(0);
        let second = Post::sign(
            &id,
            &ck,
            None,
            2,
            Some(first.id),
            2_000,
            PostDraft {
                text: "goes".into(),
                expires_at_ms: Some(3_000),
                file: None,
            },
        )
        .expect("sign");
        s.insert_posts(&[first, second.clone()]).expect("insert");
        s.expire_due(3_000).expect("expire");
        // The author's next post goes after the expired one (seq 3), not into its slot.
        let head = s
            .chain_head(&id, &ck.public().to_bytes())
            .expect("head")
            .expect("a head");
        assert_eq!((head.seq, head.id), (2, second.id));
    }
}
