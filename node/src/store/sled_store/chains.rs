//! Authors' chains (`chain`, `authors`) and the headers kept of expired slots (`tombstones`):
//! heads, slots, gaps, and retraction.

use std::ops::Bound;

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::{SledStore, seq_of};
use crate::channel::{ChannelId, PostHeader};
use crate::store::sealed::{SealedTree, tx_result};
use crate::store::{AuthorState, InsertOutcome, Retracted, Slot, StoreError};

/// An author of a channel: its chain prefix (its `authors` key) and its public key.
type AuthorEntry = (Vec<u8>, [u8; 32]);

impl SledStore {
    pub(super) fn authors(&self, channel: &ChannelId) -> Result<Vec<AuthorState>, StoreError> {
        let mut out = Vec::new();
        for (k, author) in self.channel_authors(channel)? {
            let mut max_seq = 0;
            let mut held = 0u64;
            let mut expired = 0u64;
            for (key, value) in self.chain.scan_prefix(&k)? {
                max_seq = max_seq.max(seq_of(&key));
                held = held.saturating_add(1);
                if value.is_empty() {
                    expired = expired.saturating_add(1);
                }
            }
            out.push(AuthorState {
                author,
                max_seq,
                held,
                expired,
            });
        }
        Ok(out)
    }

    pub(super) fn heads(&self, channel: &ChannelId) -> Result<Vec<([u8; 32], u64)>, StoreError> {
        let mut out = Vec::new();
        for (k, author) in self.channel_authors(channel)? {
            // Chain keys end in the big-endian seq: the last key is the head.
            let max_seq = self
                .chain
                .prefix_keys(&k, true, 1)
                .first()
                .map_or(0, |k| seq_of(k));
            out.push((author, max_seq));
        }
        Ok(out)
    }

    pub(super) fn head_headers(
        &self,
        channel: &ChannelId,
        limit: usize,
    ) -> Result<Vec<PostHeader>, StoreError> {
        let mut out = Vec::new();
        for (k, _) in self.channel_authors(channel)? {
            if out.len() >= limit {
                break;
            }
            if let Some(h) = self.newest_slot(&k)? {
                out.push(h);
            }
        }
        Ok(out)
    }

    pub(super) fn chain_head(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
    ) -> Result<Option<PostHeader>, StoreError> {
        self.newest_slot(&self.chain_prefix(channel, author))
    }

    pub(super) fn slots(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Slot)>, StoreError> {
        let start = self.chain_key(channel, author, from);
        let end = self.chain_key(channel, author, to);
        let keys = self.chain.keys(
            (Bound::Included(&start[..]), Bound::Included(&end[..])),
            false,
            limit,
        );
        let mut out = Vec::new();
        for (k, pk) in self.chain.records(keys)? {
            let seq = seq_of(&k);
            if pk.is_empty() {
                if let Some(h) = self.load_tombstone(&k)? {
                    out.push((seq, Slot::Expired(Box::new(h))));
                }
            } else if let Some(p) = self.load_post(&pk)? {
                out.push((seq, Slot::Post(Box::new(p))));
            }
        }
        Ok(out)
    }

    pub(super) fn missing(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        upto: u64,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut out = Vec::new();
        // None: past u64::MAX (a slot at the very end is held; nothing can follow it).
        let mut next = Some(1u64);
        for k in self
            .chain
            .prefix_keys(&self.chain_prefix(channel, author), false, usize::MAX)
        {
            let seq = seq_of(&k);
            if seq > upto {
                break;
            }
            if let Some(n) = next
                && seq > n
            {
                out.push((n, seq.saturating_sub(1)));
            }
            next = seq.checked_add(1);
        }
        if let Some(n) = next
            && n <= upto
        {
            out.push((n, upto));
        }
        Ok(out)
    }

    pub(super) fn insert_tombstones(
        &self,
        headers: &[PostHeader],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        use crate::store::sealed::Prepared as Rec;
        struct Prepared {
            chain: Rec,
            author: Rec,
            id: Rec,
            tombstone: Rec,
        }
        let prepared: Vec<Prepared> = headers
            .iter()
            .map(|h| {
                let author = h.author_key.to_bytes();
                let author_key = self.chain_prefix(&h.channel, &author);
                let chain_key = self.chain_key(&h.channel, &author, h.seq);
                let id_key = self.id_key(&h.id);
                Prepared {
                    chain: self.chain.prepare(&chain_key, &[]),
                    author: self.authors.prepare(&author_key, &author),
                    id: self.ids.prepare(&id_key, &[]),
                    tombstone: self.tombstones.prepare(&chain_key, &h.wire),
                }
            })
            .collect();
        let result = (
            self.chain.raw(),
            self.ids.raw(),
            self.authors.raw(),
            self.tombstones.raw(),
        )
            .transaction(|(chain, ids, authors, tombstones)| {
                let mut outcomes = Vec::with_capacity(prepared.len());
                for p in &prepared {
                    if let Some(existing) = self.ids.tx_get_at(ids, &p.id)? {
                        // Held (its own expiry sweep turns it into a tombstone) or expired.
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
                    SealedTree::tx_insert(chain, &p.chain)?;
                    SealedTree::tx_insert(ids, &p.id)?;
                    SealedTree::tx_insert(tombstones, &p.tombstone)?;
                    if !SealedTree::tx_contains_at(authors, &p.author)? {
                        SealedTree::tx_insert(authors, &p.author)?;
                    }
                    outcomes.push(InsertOutcome::Inserted);
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(outcomes)
            });
        let outcomes = tx_result(result)?;
        for (p, o) in prepared.iter().zip(&outcomes) {
            if *o == InsertOutcome::Inserted {
                self.chain.indexed(p.chain.key());
                self.authors.indexed(p.author.key());
            }
        }
        Ok(outcomes)
    }

    pub(super) fn retract(
        &self,
        channel: &ChannelId,
        author: &[u8; 32],
        after_seq: u64,
    ) -> Result<Retracted, StoreError> {
        let mut out = Retracted::default();
        let Some(from) = after_seq.checked_add(1) else {
            return Ok(out);
        };
        let start = self.chain_key(channel, author, from);
        let end = self.chain_key(channel, author, u64::MAX);
        let keys = self.chain.keys(
            (Bound::Included(&start[..]), Bound::Included(&end[..])),
            false,
            usize::MAX,
        );
        for (ck, pk) in self.chain.records(keys)? {
            if pk.is_empty() {
                if let Some(h) = self.load_tombstone(&ck)? {
                    self.ids.remove(&self.id_key(&h.id))?;
                }
                self.tombstones.remove(&ck)?;
                out.tombstones = out.tombstones.saturating_add(1);
            } else {
                if let Some(p) = self.load_post(&pk)? {
                    self.ids.remove(&self.id_key(&p.id))?;
                    if let Some(at) = p.expires_at_ms {
                        let mut k = at.to_be_bytes().to_vec();
                        k.extend_from_slice(&pk);
                        self.expiry.remove(&k)?;
                    }
                }
                self.posts.remove(&pk)?;
                self.outbox.remove(&pk)?;
                out.posts = out.posts.saturating_add(1);
            }
            self.chain.remove(&ck)?;
        }
        if out != Retracted::default() {
            self.wrote();
        }
        Ok(out)
    }

    /// A channel's authors: each one's chain prefix (its `authors` key) and its key.
    fn channel_authors(&self, channel: &ChannelId) -> Result<Vec<AuthorEntry>, StoreError> {
        let mut out = Vec::new();
        for (k, plain) in self.authors.scan_prefix(&self.ch16(channel))? {
            let author: [u8; 32] = plain
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("authors"))?;
            out.push((k, author));
        }
        Ok(out)
    }

    /// The header of the newest slot of a chain (its `authors` key) with something to show
    /// for it: a post, or a proven expiry.
    fn newest_slot(&self, chain_prefix: &[u8]) -> Result<Option<PostHeader>, StoreError> {
        for ck in self.chain.prefix_keys(chain_prefix, true, usize::MAX) {
            let Some(pk) = self.chain.get(&ck)? else {
                continue;
            };
            let header = if pk.is_empty() {
                self.load_tombstone(&ck)?
            } else {
                self.load_post(&pk)?.map(|p| p.header())
            };
            if header.is_some() {
                return Ok(header);
            }
        }
        Ok(None)
    }

    /// The header kept for an expired slot (none for slots expired before headers were kept).
    fn load_tombstone(&self, chain_key: &[u8]) -> Result<Option<PostHeader>, StoreError> {
        let Some(wire) = self.tombstones.get(chain_key)? else {
            return Ok(None);
        };
        PostHeader::from_store(wire)
            .map(Some)
            .map_err(|_| StoreError::Corrupt("tombstones"))
    }
}
