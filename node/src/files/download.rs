//! A file download's bookkeeping, with no I/O: which chunks are held, which are on the way and
//! from whom, which providers to ask next, and who sent bad data.

#![warn(clippy::arithmetic_side_effects)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use super::{Cid, Manifest};

/// Requests in flight per provider.
const PER_PEER: usize = 4;
/// Longest a failing provider is left alone before being tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// A request unanswered for this long, while another provider could be asked, is asked of
/// that one instead (the request timeout is 60 s: a provider that holds requests without
/// answering must not hold the download for that long).
const SLOW: Duration = Duration::from_secs(15);

/// What a client sees of a file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DownloadStatus {
    /// Content id.
    pub cid: String,
    /// Name, if known.
    pub name: String,
    /// Size in bytes, once the manifest is known.
    pub size: Option<u64>,
    /// Number of chunks, once the manifest is known.
    pub chunks: Option<u64>,
    /// Chunks held and verified.
    pub have: u64,
    /// Bytes held and verified.
    pub bytes: u64,
    /// All chunks held and verified.
    pub complete: bool,
    /// Providers known.
    pub providers: u64,
    /// Chunks that arrived corrupted and were thrown away.
    pub rejected_chunks: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Strikes {
    failures: u32,
    until: Option<Instant>,
    banned: bool,
}

/// State of one download.
#[derive(Debug)]
pub struct Download {
    /// The file.
    pub cid: Cid,
    /// Its name (from the post that referenced it, if any).
    pub name: String,
    manifest: Option<Manifest>,
    have: Vec<bool>,
    /// Chunk → who was asked, and when.
    in_flight: HashMap<u32, (PeerId, Instant)>,
    manifest_from: Option<(PeerId, Instant)>,
    /// Requests given up on as too slow.
    slow: u64,
    providers: Vec<PeerId>,
    cursor: usize,
    strikes: HashMap<PeerId, Strikes>,
    rejected: u64,
}

/// What to ask next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// The manifest.
    Manifest,
    /// Chunk N.
    Chunk(u32),
}

impl Download {
    /// A download of `cid` that knows nothing yet.
    pub fn new(cid: Cid, name: String) -> Self {
        Self {
            cid,
            name,
            manifest: None,
            have: Vec::new(),
            in_flight: HashMap::new(),
            manifest_from: None,
            slow: 0,
            providers: Vec::new(),
            cursor: 0,
            strikes: HashMap::new(),
            rejected: 0,
        }
    }

    /// The manifest, once known.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Sets the verified manifest and which chunks are already on disk (resume).
    pub fn set_manifest(&mut self, m: Manifest, have: Vec<bool>) {
        self.have = have;
        self.have.resize(m.chunks.len(), false);
        self.manifest = Some(m);
        self.manifest_from = None;
    }

    /// Adds a provider (ignored if known or banned).
    pub fn add_provider(&mut self, p: PeerId) {
        if !self.providers.contains(&p) && !self.strikes.get(&p).is_some_and(|s| s.banned) {
            self.providers.push(p);
        }
    }

    /// Usable providers.
    pub fn provider_count(&self) -> usize {
        self.providers.len()
    }

    /// Whether every chunk is held.
    pub fn is_complete(&self) -> bool {
        self.manifest.is_some() && self.have.iter().all(|h| *h)
    }

    fn available(&self, p: &PeerId, now: Instant) -> bool {
        match self.strikes.get(p) {
            Some(s) if s.banned => false,
            Some(Strikes { until: Some(t), .. }) => now >= *t,
            _ => true,
        }
    }

    /// The requests to send now, keeping at most `parallel` in flight in total.
    pub fn next_requests(&mut self, now: Instant, parallel: usize) -> Vec<(PeerId, Ask)> {
        let mut out = Vec::new();
        if self.providers.is_empty() {
            return out;
        }
        self.give_up_on_slow(now);
        if self.manifest.is_none() {
            if self.manifest_from.is_none()
                && let Some(p) = self.pick(now, &HashMap::new())
            {
                self.manifest_from = Some((p, now));
                out.push((p, Ask::Manifest));
            }
            return out;
        }
        let mut load: HashMap<PeerId, usize> = HashMap::new();
        for (p, _) in self.in_flight.values() {
            let l = load.entry(*p).or_default();
            *l = l.saturating_add(1);
        }
        let mut next = 0usize;
        while self.in_flight.len() < parallel {
            let Some(idx) = (next..self.have.len())
                .find(|i| !self.have[*i] && !self.in_flight.contains_key(&(*i as u32)))
            else {
                break;
            };
            next = idx.saturating_add(1);
            let Some(p) = self.pick(now, &load) else {
                break;
            };
            let l = load.entry(p).or_default();
            *l = l.saturating_add(1);
            self.in_flight.insert(idx as u32, (p, now));
            out.push((p, Ask::Chunk(idx as u32)));
        }
        out
    }

    /// Requests older than `SLOW` are re-asked of another provider, if one is available, and
    /// the slow provider is left alone for a while. A late answer still counts when it comes.
    fn give_up_on_slow(&mut self, now: Instant) {
        let mut slow: Vec<PeerId> = Vec::new();
        if let Some((p, at)) = self.manifest_from
            && now.duration_since(at) >= SLOW
        {
            slow.push(p);
        }
        slow.extend(
            self.in_flight
                .values()
                .filter(|(_, at)| now.duration_since(*at) >= SLOW)
                .map(|(p, _)| *p),
        );
        slow.sort();
        slow.dedup();
        for p in slow {
            let alternative = self
                .providers
                .iter()
                .any(|q| *q != p && self.available(q, now));
            if !alternative {
                continue;
            }
            tracing::debug!(cid = %self.cid, provider = %p, "provider too slow: asking another");
            if self.manifest_from.is_some_and(|(q, _)| q == p) {
                self.manifest_from = None;
                self.slow = self.slow.saturating_add(1);
            }
            let before = self.in_flight.len();
            self.in_flight.retain(|_, (q, _)| *q != p);
            self.slow = self
                .slow
                .saturating_add(before.saturating_sub(self.in_flight.len()) as u64);
            self.strikes.entry(p).or_default().until = now.checked_add(SLOW);
        }
    }

    /// Round-robin over providers that are available and not at their per-peer limit.
    fn pick(&mut self, now: Instant, load: &HashMap<PeerId, usize>) -> Option<PeerId> {
        let n = self.providers.len();
        for k in 0..n {
            let i = self.cursor.wrapping_add(k).checked_rem(n).unwrap_or(0);
            let p = self.providers[i];
            if self.available(&p, now) && load.get(&p).copied().unwrap_or(0) < PER_PEER {
                self.cursor = i.wrapping_add(1).checked_rem(n).unwrap_or(0);
                return Some(p);
            }
        }
        None
    }

    /// A chunk arrived: `valid` says whether it matched its hash and was stored.
    pub fn chunk_arrived(&mut self, idx: u32, from: PeerId, valid: bool) {
        if self.in_flight.get(&idx).is_some_and(|(p, _)| *p == from) || valid {
            self.in_flight.remove(&idx);
        }
        if valid {
            if let Some(h) = self.have.get_mut(idx as usize) {
                *h = true;
            }
            if self.strikes.get(&from).is_some_and(|s| !s.banned) {
                self.strikes.remove(&from);
            }
        } else {
            // Bad data is not an accident of the network: never ask this peer again.
            self.rejected = self.rejected.saturating_add(1);
            self.ban(from);
        }
    }

    /// The manifest request got an answer that did not verify.
    pub fn manifest_rejected(&mut self, from: PeerId) {
        self.manifest_from = None;
        self.ban(from);
    }

    fn ban(&mut self, p: PeerId) {
        self.strikes.entry(p).or_default().banned = true;
        self.providers.retain(|q| *q != p);
    }

    /// A request failed (unreachable, timed out, "not found"): back off from that provider.
    pub fn request_failed(&mut self, ask: Ask, to: PeerId, now: Instant) {
        self.forget_ask(ask, to);
        let s = self.strikes.entry(to).or_default();
        s.failures = s.failures.saturating_add(1);
        let backoff = Duration::from_millis(250u64.saturating_mul(1 << s.failures.min(7)));
        s.until = now.checked_add(backoff.min(MAX_BACKOFF));
    }

    /// Drops the record of a request to `to`, unless it was since given to someone else.
    fn forget_ask(&mut self, ask: Ask, to: PeerId) {
        match ask {
            Ask::Manifest => {
                if self.manifest_from.is_some_and(|(p, _)| p == to) {
                    self.manifest_from = None;
                }
            }
            Ask::Chunk(i) => {
                if self.in_flight.get(&i).is_some_and(|(p, _)| *p == to) {
                    self.in_flight.remove(&i);
                }
            }
        }
    }

    /// The provider asked to slow down: wait a moment, without counting it as a failure.
    pub fn throttled(&mut self, ask: Ask, by: PeerId, now: Instant) {
        self.forget_ask(ask, by);
        let s = self.strikes.entry(by).or_default();
        s.until = now.checked_add(Duration::from_millis(200));
    }

    /// What clients see.
    pub fn status(&self) -> DownloadStatus {
        let (size, chunks, bytes) = match &self.manifest {
            Some(m) => {
                let bytes = self
                    .have
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| **h)
                    .map(|(i, _)| m.chunk_len(i) as u64)
                    .sum();
                (Some(m.size), Some(m.chunks.len() as u64), bytes)
            }
            None => (None, None, 0),
        };
        DownloadStatus {
            cid: self.cid.to_string(),
            name: self.name.clone(),
            size,
            chunks,
            have: self.have.iter().filter(|h| **h).count() as u64,
            bytes,
            complete: self.is_complete(),
            providers: self.providers.len() as u64,
            rejected_chunks: self.rejected,
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn manifest(n: usize) -> Manifest {
        let chunks = (0..n).map(|i| Sha256::digest([i as u8]).into()).collect();
        Manifest::new((n as u64) * 16 * 1024, 16 * 1024, chunks)
    }

    #[test]
    fn a_provider_that_does_not_answer_is_replaced_when_another_can_serve() {
        let t0 = Instant::now();
        let m = manifest(2);
        let mut d = Download::new(m.cid, "f".into());
        let (silent, good) = (PeerId::random(), PeerId::random());
        d.add_provider(silent);
        d.set_manifest(m, vec![false; 2]);
        let first = d.next_requests(t0, 8);
        assert!(first.iter().all(|(p, _)| *p == silent), "{first:?}");
        // Alone, a slow provider is waited for.
        assert!(d.next_requests(t0 + SLOW * 2, 8).is_empty());
        d.add_provider(good);
        let again = d.next_requests(t0 + SLOW * 2, 8);
        assert_eq!(again.len(), 2, "{again:?}");
        assert!(again.iter().all(|(p, _)| *p == good));
        // The silent one's late failure does not cancel the good one's requests.
        for (_, ask) in &first {
            d.request_failed(*ask, silent, t0 + SLOW * 3);
        }
        assert!(d.next_requests(t0 + SLOW * 3, 8).is_empty(), "asked twice");
        for (p, ask) in &again {
            if let Ask::Chunk(i) = ask {
                d.chunk_arrived(*i, *p, true);
            }
        }
        assert!(d.is_complete());
    }

    #[test]
    fn spreads_chunks_over_providers_and_bans_bad_ones() {
        let now = Instant::now();
        let m = manifest(20);
        let mut d = Download::new(m.cid, "f".into());
        assert!(d.next_requests(now, 8).is_empty(), "no providers yet");
        let (a, b) = (PeerId::random(), PeerId::random());
        d.add_provider(a);
        d.add_provider(b);
        assert_eq!(d.next_requests(now, 8).len(), 1, "manifest first");
        d.set_manifest(m, vec![false; 20]);
        let reqs = d.next_requests(now, 8);
        assert_eq!(reqs.len(), 8);
        assert_eq!(reqs.iter().filter(|(p, _)| *p == a).count(), 4);
        assert_eq!(reqs.iter().filter(|(p, _)| *p == b).count(), 4);
        // b sends garbage: banned, its chunk asked again from a.
        let Ask::Chunk(bad) = reqs
            .iter()
            .find(|(p, _)| *p == b)
            .map(|(_, c)| *c)
            .expect("b")
        else {
            panic!("chunk expected");
        };
        d.chunk_arrived(bad, b, false);
        assert_eq!(d.status().rejected_chunks, 1);
        for (p, ask) in &reqs {
            if let Ask::Chunk(i) = ask
                && *i != bad
            {
                d.chunk_arrived(*i, *p, true);
            }
        }
        let again = d.next_requests(now, 8);
        assert!(again.iter().all(|(p, _)| *p == a));
        assert!(again.contains(&(a, Ask::Chunk(bad))));
        d.add_provider(b);
        assert_eq!(d.provider_count(), 1, "a banned provider stays banned");
    }

    #[test]
    fn failing_provider_backs_off_then_is_retried_and_resume_skips_held_chunks() {
        let now = Instant::now();
        let m = manifest(3);
        let mut d = Download::new(m.cid, "f".into());
        let a = PeerId::random();
        d.add_provider(a);
        d.set_manifest(m, vec![true, false, true]);
        let reqs = d.next_requests(now, 8);
        assert_eq!(reqs, vec![(a, Ask::Chunk(1))]);
        d.request_failed(Ask::Chunk(1), a, now);
        assert!(d.next_requests(now, 8).is_empty(), "backing off");
        let later = now + MAX_BACKOFF;
        assert_eq!(d.next_requests(later, 8), vec![(a, Ask::Chunk(1))]);
        d.chunk_arrived(1, a, true);
        assert!(d.is_complete());
        let s = d.status();
        assert_eq!((s.have, s.chunks, s.complete), (3, Some(3), true));
    }
}
