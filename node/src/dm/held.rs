//! Messages that arrived before what makes them readable: direct messages whose Welcome has
//! not come yet, group messages of an epoch whose commit has not. Held in memory, with no I/O,
//! bounded per peer and in total by count and bytes, and for a limited time; released by the
//! (group, epoch) they wait for, never all at once.

#![warn(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// The bounds of a [`Held`] queue.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most messages held from one peer.
    pub per_peer: usize,
    /// Most bytes held from one peer.
    pub per_peer_bytes: usize,
    /// Most messages held in all.
    pub total: usize,
    /// Most bytes held in all.
    pub total_bytes: usize,
    /// Largest single message held.
    pub max_item_bytes: usize,
    /// How long a message waits before it is dropped.
    pub ttl: Duration,
}

/// Why a message was not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotHeld {
    /// The peer already has as much waiting as it may.
    #[error("too many messages waiting from this peer")]
    PeerQuota,
    /// Larger than anything that may wait.
    #[error("message too large to wait")]
    TooLarge,
}

struct Item<T> {
    group: Vec<u8>,
    epoch: u64,
    id: [u8; 32],
    peer: PeerId,
    bytes: usize,
    at: Instant,
    value: T,
}

/// A bounded waiting room, keyed by (group, epoch).
pub struct Held<T> {
    limits: Limits,
    /// By arrival.
    items: BTreeMap<u64, Item<T>>,
    ids: HashSet<[u8; 32]>,
    per_peer: HashMap<PeerId, (usize, usize)>,
    bytes: usize,
    next: u64,
    /// Messages dropped at a bound or by age since start.
    dropped: u64,
}

impl<T> std::fmt::Debug for Held<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("messages", &self.items.len())
            .field("bytes", &self.bytes)
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl<T> Held<T> {
    /// An empty queue with these bounds.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            items: BTreeMap::new(),
            ids: HashSet::new(),
            per_peer: HashMap::new(),
            bytes: 0,
            next: 0,
            dropped: 0,
        }
    }

    /// Messages and bytes held.
    pub fn len(&self) -> (usize, usize) {
        (self.items.len(), self.bytes)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Messages dropped at a bound or by age since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Holds `value` (message `id`, `bytes` long, from `peer`) until `(group, epoch)` is
    /// released. A message held already is not held twice. When the queue is full, the oldest
    /// message of the peer holding the most bytes makes room; a peer over its own quota is
    /// refused instead (the caller may count that against it).
    #[allow(clippy::too_many_arguments)]
    pub fn hold(
        &mut self,
        peer: PeerId,
        group: Vec<u8>,
        epoch: u64,
        id: [u8; 32],
        bytes: usize,
        value: T,
        now: Instant,
    ) -> Result<(), NotHeld> {
        if self.ids.contains(&id) {
            return Ok(());
        }
        if bytes > self.limits.max_item_bytes {
            self.dropped = self.dropped.saturating_add(1);
            return Err(NotHeld::TooLarge);
        }
        let (count, held) = self.per_peer.get(&peer).copied().unwrap_or_default();
        if count >= self.limits.per_peer || held.saturating_add(bytes) > self.limits.per_peer_bytes
        {
            self.dropped = self.dropped.saturating_add(1);
            return Err(NotHeld::PeerQuota);
        }
        while !self.items.is_empty()
            && (self.items.len() >= self.limits.total
                || self.bytes.saturating_add(bytes) > self.limits.total_bytes)
        {
            self.evict_from_largest();
        }
        let key = self.next;
        self.next = self.next.wrapping_add(1);
        self.ids.insert(id);
        let e = self.per_peer.entry(peer).or_default();
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.saturating_add(bytes);
        self.bytes = self.bytes.saturating_add(bytes);
        self.items.insert(
            key,
            Item {
                group,
                epoch,
                id,
                peer,
                bytes,
                at: now,
                value,
            },
        );
        Ok(())
    }

    /// Takes out, oldest first, the messages of `group` whose epoch is at most `epoch`.
    pub fn release(&mut self, group: &[u8], epoch: u64) -> Vec<(PeerId, T)> {
        let keys: Vec<u64> = self
            .items
            .iter()
            .filter(|(_, i)| i.group == group && i.epoch <= epoch)
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.remove(k))
            .map(|i| (i.peer, i.value))
            .collect()
    }

    /// Drops every message of `group`.
    pub fn forget_group(&mut self, group: &[u8]) {
        let keys: Vec<u64> = self
            .items
            .iter()
            .filter(|(_, i)| i.group == group)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.remove(k);
        }
    }

    /// Drops what waited longer than the limit; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.limits.ttl;
        let keys: Vec<u64> = self
            .items
            .iter()
            .filter(|(_, i)| now.saturating_duration_since(i.at) >= ttl)
            .map(|(k, _)| *k)
            .collect();
        let n = keys.len();
        for k in keys {
            self.remove(k);
        }
        self.dropped = self.dropped.saturating_add(n as u64);
        n
    }

    fn evict_from_largest(&mut self) {
        let Some(peer) = self
            .per_peer
            .iter()
            .max_by_key(|(_, (_, bytes))| *bytes)
            .map(|(p, _)| *p)
        else {
            return;
        };
        let oldest = self
            .items
            .iter()
            .find(|(_, i)| i.peer == peer)
            .map(|(k, _)| *k);
        if let Some(k) = oldest.or_else(|| self.items.keys().next().copied()) {
            self.remove(k);
            self.dropped = self.dropped.saturating_add(1);
        }
    }

    fn remove(&mut self, key: u64) -> Option<Item<T>> {
        let item = self.items.remove(&key)?;
        self.ids.remove(&item.id);
        self.bytes = self.bytes.saturating_sub(item.bytes);
        if let Some(e) = self.per_peer.get_mut(&item.peer) {
            e.0 = e.0.saturating_sub(1);
            e.1 = e.1.saturating_sub(item.bytes);
            if e.0 == 0 {
                self.per_peer.remove(&item.peer);
            }
        }
        Some(item)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            per_peer: 4,
            per_peer_bytes: 400,
            total: 10,
            total_bytes: 1_000,
            max_item_bytes: 200,
            ttl: Duration::from_secs(60),
        }
    }

    fn id(n: u32) -> [u8; 32] {
        let mut i = [0u8; 32];
        i[..4].copy_from_slice(&n.to_be_bytes());
        i
    }

    #[test]
    fn bounded_per_peer_and_in_total_released_by_epoch() {
        let t0 = Instant::now();
        let mut h: Held<u32> = Held::new(limits());
        let (a, b) = (PeerId::random(), PeerId::random());
        let g = b"group".to_vec();
        for n in 0..4 {
            h.hold(a, g.clone(), 5 + u64::from(n % 2), id(n), 100, n, t0)
                .expect("within quota");
        }
        // Held already: not twice.
        h.hold(a, g.clone(), 5, id(0), 100, 0, t0).expect("dup");
        assert_eq!(h.len(), (4, 400));
        assert_eq!(
            h.hold(a, g.clone(), 5, id(99), 10, 99, t0),
            Err(NotHeld::PeerQuota)
        );
        assert_eq!(
            h.hold(b, g.clone(), 5, id(98), 201, 98, t0),
            Err(NotHeld::TooLarge)
        );
        // The commit to epoch 5 releases epoch-5 messages only, oldest first.
        let out: Vec<u32> = h.release(&g, 5).into_iter().map(|(_, v)| v).collect();
        assert_eq!(out, vec![0, 2]);
        assert!(h.release(b"other", u64::MAX).is_empty());
        assert_eq!(h.release(&g, 6).len(), 2);
        assert!(h.is_empty());
    }

    #[test]
    fn a_flood_of_identities_evicts_the_largest_holder_first() {
        let t0 = Instant::now();
        let mut h: Held<()> = Held::new(limits());
        let honest = PeerId::random();
        h.hold(honest, b"g".to_vec(), 1, id(0), 50, (), t0)
            .expect("honest");
        let mut n = 1;
        for _ in 0..100 {
            let sybil = PeerId::random();
            for _ in 0..2 {
                let _ = h.hold(sybil, b"x".to_vec(), 1, id(n), 200, (), t0);
                n += 1;
            }
        }
        let (count, bytes) = h.len();
        assert!(count <= 10 && bytes <= 1_000, "{count} {bytes}");
        assert!(h.dropped() > 100);
        // The honest peer's small message survived: the largest holders went first.
        assert_eq!(h.release(b"g", 1).len(), 1);
        // Everything goes once it is too old.
        h.hold(honest, b"g".to_vec(), 1, id(0), 50, (), t0)
            .expect("again");
        let held = h.len().0;
        assert_eq!(h.expire(t0 + Duration::from_secs(59)), 0);
        assert_eq!(h.expire(t0 + Duration::from_secs(60)), held);
        assert!(h.is_empty());
    }
}
