//! The Kademlia record store of nodes and bootstrap peers: what other peers ask this one to
//! keep in the DHT, bounded per source and in total, with this peer's own records and provider
//! announcements kept apart (never evicted, never counted against the shared caps).
//!
//! libp2p's `MemoryStore` refuses new keys once full and keeps the first providers of a key:
//! a peer announcing random keys could stop this node announcing its own, and twenty fresh
//! identities could own a channel's followers key. Here a full store makes room instead: the
//! source holding the most gives way, and a full provider list replaces a random entry, so
//! that whoever floods mostly displaces itself and honest providers keep coming back.

#![warn(clippy::arithmetic_side_effects)]

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, hash_map};

use libp2p::PeerId;
use libp2p::kad::store::{Error, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};

/// The bounds of a [`DhtStore`].
#[derive(Debug, Clone, Copy)]
pub struct DhtLimits {
    /// Most value records kept for others.
    pub records: usize,
    /// Most bytes of record values kept for others.
    pub record_bytes: usize,
    /// Largest record value.
    pub max_value_bytes: usize,
    /// Most value records kept from one source peer.
    pub records_per_source: usize,
    /// Most provider records kept for others, over all keys.
    pub providers: usize,
    /// Most providers kept per key.
    pub providers_per_key: usize,
    /// Most keys one peer may be kept as a provider of.
    pub provided_keys_per_source: usize,
    /// Most addresses kept per provider record.
    pub addresses_per_provider: usize,
}

impl Default for DhtLimits {
    fn default() -> Self {
        Self {
            records: 4096,
            record_bytes: 16 * 1024 * 1024,
            max_value_bytes: 8 * 1024,
            records_per_source: 256,
            providers: 32 * 1024,
            providers_per_key: 20,
            provided_keys_per_source: 1024,
            addresses_per_provider: 8,
        }
    }
}

/// What the store dropped to stay within its bounds, since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhtDrops {
    /// Records refused (over a source's quota, too large) or evicted to make room.
    pub records: u64,
    /// Provider records refused (over a source's quota) or evicted to make room.
    pub providers: u64,
}

/// Which keys each source has in the store, with the sources ordered by how many: the one
/// holding the most is found in O(log n) when room must be made.
#[derive(Debug, Default)]
struct SourceIndex {
    keys: HashMap<PeerId, Vec<RecordKey>>,
    by_count: BTreeSet<(usize, PeerId)>,
}

impl SourceIndex {
    fn count(&self, source: &PeerId) -> usize {
        self.keys.get(source).map_or(0, Vec::len)
    }

    fn add(&mut self, source: PeerId, key: RecordKey) {
        let list = self.keys.entry(source).or_default();
        self.by_count.remove(&(list.len(), source));
        list.push(key);
        self.by_count.insert((list.len(), source));
    }

    fn remove(&mut self, source: &PeerId, key: &RecordKey) {
        let Some(list) = self.keys.get_mut(source) else {
            return;
        };
        let Some(i) = list.iter().position(|k| k == key) else {
            return;
        };
        self.by_count.remove(&(list.len(), *source));
        list.swap_remove(i);
        if list.is_empty() {
            self.keys.remove(source);
        } else {
            self.by_count.insert((list.len(), *source));
        }
    }

    /// The source holding the most, and one of its keys.
    fn largest(&self) -> Option<(PeerId, RecordKey)> {
        let (_, source) = self.by_count.last()?;
        let key = self.keys.get(source)?.last()?.clone();
        Some((*source, key))
    }
}

/// A record kept for someone else, and who sent it (opaque outside the store).
#[derive(Debug, Clone)]
pub struct Kept {
    record: Record,
    source: PeerId,
}

/// The bounded record store.
#[derive(Debug)]
pub struct DhtStore {
    local: PeerId,
    limits: DhtLimits,
    own_records: HashMap<RecordKey, Record>,
    records: HashMap<RecordKey, Kept>,
    record_bytes: usize,
    records_by_source: SourceIndex,
    /// This peer's own provider announcements.
    provided: HashMap<RecordKey, ProviderRecord>,
    providers: HashMap<RecordKey, Vec<ProviderRecord>>,
    provider_total: usize,
    provided_by_source: SourceIndex,
    drops: DhtDrops,
    /// A small xorshift state for random replacement (not security sensitive: an attacker
    /// that could predict it still only chooses which random entry it displaces).
    rng: u64,
}

impl DhtStore {
    /// An empty store of peer `local`.
    pub fn new(local: PeerId, limits: DhtLimits) -> Self {
        let mut seed = [0u8; 8];
        // Unpredictability only spreads replacements; a clock seed is an acceptable fallback.
        if getrandom::fill(&mut seed).is_err() {
            seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                .to_le_bytes();
        }
        let seed = u64::from_le_bytes(seed) | 1;
        Self {
            local,
            limits,
            own_records: HashMap::new(),
            records: HashMap::new(),
            record_bytes: 0,
            records_by_source: SourceIndex::default(),
            provided: HashMap::new(),
            providers: HashMap::new(),
            provider_total: 0,
            provided_by_source: SourceIndex::default(),
            drops: DhtDrops::default(),
            rng: seed,
        }
    }

    /// The peer whose store this is.
    pub fn local(&self) -> PeerId {
        self.local
    }

    /// What was dropped at a bound since start.
    pub fn drops(&self) -> DhtDrops {
        self.drops
    }

    /// Drops records and provider records whose time is up (Kademlia drops them lazily, when
    /// asked for them; this bounds what lingers).
    pub fn prune_expired(&mut self, now: std::time::Instant) {
        let records: Vec<RecordKey> = self
            .records
            .iter()
            .filter(|(_, k)| k.record.is_expired(now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in records {
            self.remove_kept(&key);
        }
        let providers: Vec<(RecordKey, PeerId)> = self
            .providers
            .iter()
            .flat_map(|(key, list)| {
                list.iter()
                    .filter(|p| p.is_expired(now))
                    .map(|p| (key.clone(), p.provider))
            })
            .collect();
        for (key, provider) in providers {
            self.remove_provider(&key, &provider);
        }
    }

    /// Records kept for others, and provider records kept for others.
    pub fn held(&self) -> (usize, usize) {
        (self.records.len(), self.provider_total)
    }

    fn random(&mut self, n: usize) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng.checked_rem(n as u64).unwrap_or(0)) as usize
    }

    /// Keeps a (checked) record that `source` asked this peer to store. Whatever the record
    /// says of its publisher, it is charged to `source` and never taken for this peer's own.
    pub fn put_from(&mut self, source: PeerId, record: Record) -> Result<()> {
        if record.value.len() > self.limits.max_value_bytes {
            self.drops.records = self.drops.records.saturating_add(1);
            return Err(Error::ValueTooLarge);
        }
        // A source at its quota may still replace what it sent itself, nothing else.
        let replaces_own = self
            .records
            .get(&record.key)
            .is_some_and(|k| k.source == source);
        if !replaces_own && self.records_by_source.count(&source) >= self.limits.records_per_source
        {
            self.drops.records = self.drops.records.saturating_add(1);
            return Err(Error::MaxRecords);
        }
        // Replacing a record (a newer version) is charged to its new source.
        self.remove_kept(&record.key);
        let len = record.value.len();
        while !self.records.is_empty()
            && (self.records.len() >= self.limits.records
                || self.record_bytes.saturating_add(len) > self.limits.record_bytes)
        {
            self.evict_record();
        }
        self.record_bytes = self.record_bytes.saturating_add(len);
        self.records_by_source.add(source, record.key.clone());
        self.records
            .insert(record.key.clone(), Kept { record, source });
        Ok(())
    }

    /// Evicts a record of the source holding the most.
    fn evict_record(&mut self) {
        if let Some((_, key)) = self.records_by_source.largest() {
            self.remove_kept(&key);
            self.drops.records = self.drops.records.saturating_add(1);
        }
    }

    fn remove_kept(&mut self, key: &RecordKey) {
        if let Some(k) = self.records.remove(key) {
            self.record_bytes = self.record_bytes.saturating_sub(k.record.value.len());
            self.records_by_source.remove(&k.source, key);
        }
    }

    fn remove_provider_at(&mut self, key: &RecordKey, index: usize) {
        let Some(list) = self.providers.get_mut(key) else {
            return;
        };
        if index >= list.len() {
            return;
        }
        let gone = list.swap_remove(index);
        if list.is_empty() {
            self.providers.remove(key);
        }
        self.provider_total = self.provider_total.saturating_sub(1);
        self.provided_by_source.remove(&gone.provider, key);
    }

    /// Evicts a provider record of the peer providing the most keys.
    fn evict_provider(&mut self) {
        let Some((source, key)) = self.provided_by_source.largest() else {
            return;
        };
        if let Some(i) = self
            .providers
            .get(&key)
            .and_then(|l| l.iter().position(|p| p.provider == source))
        {
            self.remove_provider_at(&key, i);
            self.drops.providers = self.drops.providers.saturating_add(1);
        }
    }
}

impl RecordStore for DhtStore {
    type RecordsIter<'a> = std::iter::Chain<
        std::iter::Map<hash_map::Values<'a, RecordKey, Record>, fn(&'a Record) -> Cow<'a, Record>>,
        std::iter::Map<hash_map::Values<'a, RecordKey, Kept>, fn(&'a Kept) -> Cow<'a, Record>>,
    >;
    type ProvidedIter<'a> = std::iter::Map<
        hash_map::Values<'a, RecordKey, ProviderRecord>,
        fn(&'a ProviderRecord) -> Cow<'a, ProviderRecord>,
    >;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.own_records
            .get(k)
            .or_else(|| self.records.get(k).map(|kept| &kept.record))
            .map(Cow::Borrowed)
    }

    fn put(&mut self, r: Record) -> Result<()> {
        // Only Kademlia itself calls this: for this peer's own records (`put_record` sets the
        // publisher), and when it republishes records it holds (charged to their publisher).
        // What other peers send arrives through `put_from`.
        if r.publisher == Some(self.local) {
            if r.value.len() > self.limits.max_value_bytes {
                return Err(Error::ValueTooLarge);
            }
            self.own_records.insert(r.key.clone(), r);
            return Ok(());
        }
        let source = r.publisher.unwrap_or(self.local);
        self.put_from(source, r)
    }

    fn remove(&mut self, k: &RecordKey) {
        self.own_records.remove(k);
        self.remove_kept(k);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.own_records
            .values()
            .map(borrow_record as fn(&Record) -> Cow<'_, Record>)
            .chain(
                self.records
                    .values()
                    .map(borrow_kept as fn(&Kept) -> Cow<'_, Record>),
            )
    }

    fn add_provider(&mut self, mut record: ProviderRecord) -> Result<()> {
        if record.provider == self.local {
            self.provided.insert(record.key.clone(), record);
            return Ok(());
        }
        record
            .addresses
            .truncate(self.limits.addresses_per_provider);
        // A refresh of a record held: in place, no new charge.
        if let Some(list) = self.providers.get_mut(&record.key)
            && let Some(p) = list.iter_mut().find(|p| p.provider == record.provider)
        {
            *p = record;
            return Ok(());
        }
        let source = record.provider;
        if self.provided_by_source.count(&source) >= self.limits.provided_keys_per_source {
            self.drops.providers = self.drops.providers.saturating_add(1);
            return Err(Error::MaxProvidedKeys);
        }
        let full_key = self
            .providers
            .get(&record.key)
            .map_or(0, Vec::len)
            .checked_sub(self.limits.providers_per_key)
            .is_some();
        if full_key {
            // The first providers of a key do not own it: a random one makes room.
            let n = self.providers.get(&record.key).map_or(0, Vec::len);
            let i = self.random(n);
            let key = record.key.clone();
            self.remove_provider_at(&key, i);
            self.drops.providers = self.drops.providers.saturating_add(1);
        }
        while self.provider_total >= self.limits.providers && self.provider_total > 0 {
            let before = self.provider_total;
            self.evict_provider();
            if self.provider_total == before {
                break;
            }
        }
        self.provided_by_source.add(source, record.key.clone());
        self.provider_total = self.provider_total.saturating_add(1);
        self.providers
            .entry(record.key.clone())
            .or_default()
            .push(record);
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let mut out: Vec<ProviderRecord> = self.provided.get(key).cloned().into_iter().collect();
        if let Some(list) = self.providers.get(key) {
            out.extend(list.iter().cloned());
        }
        out
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.provided
            .values()
            .map(borrow_provider as fn(&ProviderRecord) -> Cow<'_, ProviderRecord>)
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if *provider == self.local {
            self.provided.remove(key);
            return;
        }
        if let Some(i) = self
            .providers
            .get(key)
            .and_then(|l| l.iter().position(|p| p.provider == *provider))
        {
            self.remove_provider_at(key, i);
        }
    }
}

fn borrow_record(r: &Record) -> Cow<'_, Record> {
    Cow::Borrowed(r)
}

fn borrow_kept(k: &Kept) -> Cow<'_, Record> {
    Cow::Borrowed(&k.record)
}

fn borrow_provider(p: &ProviderRecord) -> Cow<'_, ProviderRecord> {
    Cow::Borrowed(p)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn key(n: u32) -> RecordKey {
        RecordKey::new(&format!("/k/{n}"))
    }

    fn small() -> DhtLimits {
        DhtLimits {
            records: 8,
            record_bytes: 1024,
            max_value_bytes: 256,
            records_per_source: 4,
            providers: 16,
            providers_per_key: 3,
            provided_keys_per_source: 4,
            addresses_per_provider: 2,
        }
    }

    #[test]
    fn own_announcements_survive_a_flood_of_random_keys() {
        let me = PeerId::random();
        let mut s = DhtStore::new(me, small());
        s.add_provider(ProviderRecord::new(key(0), me, Vec::new()))
            .expect("own");
        let mut own = Record::new(key(1), b"mine".to_vec());
        own.publisher = Some(me);
        s.put(own).expect("own record");
        // A stranger's record claiming to be this peer's own is charged to the stranger.
        let liar = PeerId::random();
        for i in 0..10u32 {
            let mut r = Record::new(key(500 + i), vec![0; 10]);
            r.publisher = Some(me);
            let _ = s.put_from(liar, r);
        }
        assert_eq!(s.own_records.len(), 1);
        assert_eq!(s.records_by_source.count(&liar), 4, "the liar's quota");
        // Hundreds of identities, each within its quota, announce random keys.
        for i in 0..200u32 {
            let p = PeerId::random();
            for j in 0..4 {
                s.add_provider(ProviderRecord::new(key(1000 + i * 4 + j), p, Vec::new()))
                    .expect("within the source's quota");
            }
        }
        assert!(s.held().1 <= 16);
        assert_eq!(s.provided().count(), 1, "own announcement kept");
        assert_eq!(s.providers(&key(0)).len(), 1);
        assert!(s.get(&key(1)).is_some());
        assert!(s.drops().providers > 700);
    }

    #[test]
    fn one_source_gets_its_quota_and_full_stores_make_room() {
        let me = PeerId::random();
        let mut s = DhtStore::new(me, small());
        let flooder = PeerId::random();
        for i in 0..10u32 {
            let _ = s.put_from(flooder, Record::new(key(i), vec![0; 100]));
        }
        assert_eq!(s.held().0, 4, "quota per source");
        // Honest sources still get in while the store is full of others.
        for i in 0..8u32 {
            let honest = PeerId::random();
            s.put_from(honest, Record::new(key(100 + i), vec![1; 100]))
                .expect("room is made");
        }
        assert!(s.held().0 <= 8);
        assert!(s.get(&key(107)).is_some());
        assert!(matches!(
            s.put_from(flooder, Record::new(key(999), vec![0; 300])),
            Err(Error::ValueTooLarge)
        ));
        // A provider quota per source, and the first providers of a key do not own it.
        let k = key(5000);
        let sybils: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for p in &sybils {
            s.add_provider(ProviderRecord::new(k.clone(), *p, Vec::new()))
                .expect("sybil");
        }
        let honest = PeerId::random();
        s.add_provider(ProviderRecord::new(k.clone(), honest, Vec::new()))
            .expect("honest");
        let list = s.providers(&k);
        assert_eq!(list.len(), 3);
        assert!(list.iter().any(|p| p.provider == honest));
        let addrs = vec!["/ip4/1.2.3.4/tcp/1".parse().expect("addr"); 50];
        s.add_provider(ProviderRecord::new(key(6000), honest, addrs))
            .expect("addresses trimmed");
        assert_eq!(s.providers(&key(6000))[0].addresses.len(), 2);
    }
}
