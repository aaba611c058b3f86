//! Files in the event loop: announcing what this node holds, serving chunks, and driving
//! downloads from several providers at once.

use crate::net::rate_limit::RateLimiter;
use crate::net::requests::{Exchange, Requests};
use crate::net::wire::Frame;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::kad::QueryId;
use libp2p::request_response;
use samizdat_proto::v1;

use super::{EventLoop, Internal};
use crate::channel::now_ms;
use crate::files::{Ask, Cid, Download, DownloadStatus, Manifest, provider_key};
use crate::node::NodeError;
use crate::node::views::Event;
use crate::store::FileRecord;

/// Chunk requests in flight per download.
const PARALLEL: usize = 16;
/// Look for more providers this often while a download has fewer than two...
const LOOKUP_EVERY: Duration = Duration::from_secs(5);
/// ...and this often while it has none at all (a new file's announcement may still be
/// spreading).
const LOOKUP_WHEN_NONE: Duration = Duration::from_secs(1);

/// The file component's state in the event loop.
pub(super) struct Files {
    /// Downloads in progress.
    pub(super) fetches: HashMap<Cid, Fetch>,
    /// Chunk and manifest requests out.
    pub(super) requests: Requests<(Cid, Ask)>,
    /// Provider lookups, by query.
    pub(super) queries: HashMap<QueryId, Cid>,
    /// Peers' requests to this node, per peer.
    pub(super) limiter: RateLimiter,
    /// Files this node announces as a provider.
    pub(super) provided: HashSet<Cid>,
    /// Final status of downloads finished since start.
    pub(super) finished: HashMap<Cid, DownloadStatus>,
}

impl Files {
    pub(super) fn new() -> Self {
        Self {
            fetches: HashMap::new(),
            requests: Requests::default(),
            queries: HashMap::new(),
            // Per peer: 256 chunk requests/s (256 MiB/s: bandwidth, not this, is the real
            // bound), bursts of 512.
            limiter: RateLimiter::new(256.0, 512.0),
            provided: HashSet::new(),
            finished: HashMap::new(),
        }
    }
}

/// A download plus when its providers were last looked up.
pub(super) struct Fetch {
    pub download: Download,
    pub last_lookup: Option<Instant>,
    /// Dropped if the manifest says the file is larger (fetches nobody explicitly asked for:
    /// an attachment's claimed size is only the sender's word).
    pub max_bytes: Option<u64>,
    /// Started by the node itself (an attachment prefetch): counts against the quota.
    pub prefetch: bool,
}

impl EventLoop {
    /// Announces every complete file in the store (at startup).
    pub(super) fn announce_files(&mut self) {
        match self.store.files() {
            Ok(files) => {
                for f in files {
                    let cid = Cid(f.cid);
                    if f.complete {
                        self.announce_file(&cid);
                    } else {
                        // An interrupted download: resume it.
                        let _ = self.fetch_file(cid, f.name, None);
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list files: {e}"),
        }
    }

    /// Tells the DHT that this node provides the file.
    pub(crate) fn announce_file(&mut self, cid: &Cid) {
        self.files.provided.insert(*cid);
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .start_providing(provider_key(cid))
        {
            tracing::debug!(%cid, "cannot announce file: {e}");
        }
    }

    /// Starts (or continues) fetching a file; returns its status.
    /// An attachment arrived in a private message: small ones are fetched at once (while its
    /// sender is likely still online); larger ones when the user asks.
    pub(super) fn prefetch_attachment(&mut self, a: &samizdat_proto::v1::Attachment) {
        const PREFETCH_BYTES: u64 = 64 * 1024 * 1024;
        // The sealed file is the plaintext plus 16 bytes a segment (1 MiB): a manifest much
        // larger than the size the message claims is not fetched.
        let bound = a.size.saturating_add(a.size / 4096 + 4096);
        if a.size > PREFETCH_BYTES {
            return;
        }
        // All prefetches together stay within the quota (files held, and fetches running).
        let held: u64 = self
            .store
            .files()
            .unwrap_or_default()
            .iter()
            .filter(|f| f.prefetched)
            .filter_map(|f| {
                prost::Message::decode(f.manifest.as_slice())
                    .ok()
                    .map(|m: samizdat_proto::v1::FileManifest| m.size)
            })
            .fold(0u64, u64::saturating_add);
        let running: u64 = self
            .files
            .fetches
            .values()
            .filter(|f| f.prefetch && f.download.manifest().is_none())
            .filter_map(|f| f.max_bytes)
            .fold(0u64, u64::saturating_add);
        if held.saturating_add(running).saturating_add(bound) > self.max_prefetch_bytes {
            tracing::info!(
                size = a.size,
                "attachment not fetched in advance: the prefetch quota (max_prefetch_bytes) is reached"
            );
            return;
        }
        if let Ok(cid) = a.cid.parse::<Cid>() {
            let asked_already = self.files.fetches.contains_key(&cid);
            match self.fetch_file(cid, a.name.clone(), Some(bound)) {
                Ok(_) => {
                    if let Some(f) = self.files.fetches.get_mut(&cid).filter(|_| !asked_already) {
                        f.prefetch = true;
                    }
                }
                Err(e) => tracing::debug!("attachment not fetched: {e}"),
            }
        }
    }

    pub(crate) fn fetch_file(
        &mut self,
        cid: Cid,
        name: String,
        max_bytes: Option<u64>,
    ) -> Result<DownloadStatus, NodeError> {
        if let Some(f) = self.files.fetches.get(&cid) {
            return Ok(f.download.status());
        }
        let record = self.store.file(&cid.0)?;
        let mut download = Download::new(
            cid,
            record.as_ref().map_or(name.clone(), |r| r.name.clone()),
        );
        if let Some(rec) = &record
            && let Ok(m) = Manifest::verify(&cid, &rec.manifest, u64::MAX)
        {
            let have = m.chunks.iter().map(|h| self.blobs.has(h)).collect();
            download.set_manifest(m, have);
            if rec.complete && download.is_complete() {
                return Ok(download.status());
            }
        }
        let status = download.status();
        self.files.fetches.insert(
            cid,
            Fetch {
                download,
                last_lookup: None,
                max_bytes,
                prefetch: false,
            },
        );
        self.lookup_file_providers(&cid);
        Ok(status)
    }

    /// A file's status: downloading, held, or unknown.
    pub(crate) fn file_status(&self, cid: &Cid) -> Result<DownloadStatus, NodeError> {
        if let Some(f) = self.files.fetches.get(cid) {
            return Ok(f.download.status());
        }
        if let Some(st) = self.files.finished.get(cid) {
            return Ok(st.clone());
        }
        let rec = self
            .store
            .file(&cid.0)?
            .ok_or_else(|| NodeError::UnknownFile(cid.to_string()))?;
        let m = Manifest::verify(cid, &rec.manifest, u64::MAX)
            .map_err(|e| NodeError::Internal(format!("stored file {cid}: {e}")))?;
        let mut d = Download::new(*cid, rec.name);
        let have = m.chunks.iter().map(|h| self.blobs.has(h)).collect();
        d.set_manifest(m, have);
        Ok(d.status())
    }

    fn lookup_file_providers(&mut self, cid: &Cid) {
        let q: QueryId = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(provider_key(cid));
        self.files.queries.insert(q, *cid);
        if let Some(f) = self.files.fetches.get_mut(cid) {
            f.last_lookup = Some(Instant::now());
        }
    }

    /// Providers found in the DHT.
    pub(super) fn on_file_providers(
        &mut self,
        cid: &Cid,
        providers: impl IntoIterator<Item = PeerId>,
    ) {
        let me = *self.swarm.local_peer_id();
        if let Some(f) = self.files.fetches.get_mut(cid) {
            for p in providers {
                if p != me {
                    f.download.add_provider(p);
                }
            }
        }
        // Ask now, while the lookup that knows the providers' addresses is still running.
        self.pump(cid);
    }

    /// Sends what a download should ask next.
    pub(super) fn pump(&mut self, cid: &Cid) {
        let Some(f) = self.files.fetches.get_mut(cid) else {
            return;
        };
        let asks = f.download.next_requests(Instant::now(), PARALLEL);
        for (peer, ask) in asks {
            let req = v1::FileRequest {
                cid: cid.0.to_vec(),
                kind: Some(match ask {
                    Ask::Manifest => v1::file_request::Kind::Manifest(true),
                    Ask::Chunk(i) => v1::file_request::Kind::Chunk(i),
                }),
            };
            let rid = self
                .swarm
                .behaviour_mut()
                .files
                .send_request(&peer, Frame::Valid(req));
            self.files.requests.insert(rid, (*cid, ask));
        }
    }

    /// Housekeeping: more providers where needed, retries after backoff.
    pub(super) fn files_tick(&mut self) {
        let cids: Vec<Cid> = self.files.fetches.keys().copied().collect();
        for cid in cids {
            let lookup = self.files.fetches.get(&cid).is_some_and(|f| {
                let every = if f.download.provider_count() == 0 {
                    LOOKUP_WHEN_NONE
                } else {
                    LOOKUP_EVERY
                };
                f.download.provider_count() < 2
                    && f.last_lookup.is_none_or(|t| t.elapsed() >= every)
            });
            if lookup {
                self.lookup_file_providers(&cid);
            }
            self.pump(&cid);
        }
    }

    pub(super) fn on_file_event(
        &mut self,
        event: request_response::Event<Frame<v1::FileRequest>, v1::FileResponse>,
    ) {
        match self.files.requests.on_event(event) {
            Exchange::Malformed { peer, why } => self.protocol_violation(peer, "file", &why),
            Exchange::Request {
                peer,
                request,
                channel,
            } => self.serve_file_request(peer, request, channel),
            Exchange::Response {
                peer,
                response,
                context: (cid, ask),
                ..
            } => self.on_file_response(peer, cid, ask, response),
            Exchange::Failed {
                peer,
                context: (cid, ask),
                error,
                ..
            } => {
                tracing::debug!(%cid, %peer, "file request failed: {error}");
                if let Some(f) = self.files.fetches.get_mut(&cid) {
                    f.download.request_failed(ask, peer, Instant::now());
                }
                self.pump(&cid);
            }
            Exchange::InboundFailed { peer, error } => {
                tracing::debug!(%peer, "inbound file request failed: {error}");
            }
            Exchange::Nothing => {}
        }
    }

    fn serve_file_request(
        &mut self,
        peer: PeerId,
        req: v1::FileRequest,
        channel: request_response::ResponseChannel<v1::FileResponse>,
    ) {
        let error = |e: &str| v1::FileResponse {
            kind: Some(v1::file_response::Kind::Error(e.to_string())),
        };
        if !self.files.limiter.allow(peer, Instant::now()) {
            let _ = self
                .swarm
                .behaviour_mut()
                .files
                .send_response(channel, error("rate limited"));
            return;
        }
        let Ok(cid) = <[u8; 32]>::try_from(req.cid.as_slice()) else {
            let _ = self
                .swarm
                .behaviour_mut()
                .files
                .send_response(channel, error("bad cid"));
            return;
        };
        let store = self.store.clone();
        let blobs = self.blobs.clone();
        let tx = self.internal_tx.clone();
        tokio::task::spawn_blocking(move || {
            let resp = (|| {
                let Some(rec) = store.file(&cid).ok().flatten() else {
                    return error("not found");
                };
                match req.kind {
                    Some(v1::file_request::Kind::Manifest(_)) => v1::FileResponse {
                        kind: Some(v1::file_response::Kind::Manifest(rec.manifest)),
                    },
                    Some(v1::file_request::Kind::Chunk(i)) => {
                        let Ok(m) = Manifest::verify(&Cid(cid), &rec.manifest, u64::MAX) else {
                            return error("not found");
                        };
                        let Some(h) = m.chunks.get(i as usize) else {
                            return error("no such chunk");
                        };
                        match blobs.get(h) {
                            Ok(Some(data)) => v1::FileResponse {
                                kind: Some(v1::file_response::Kind::Chunk(data)),
                            },
                            Ok(None) => error("chunk not held"),
                            Err(e) => {
                                tracing::warn!("blob store: {e}");
                                error("chunk unreadable")
                            }
                        }
                    }
                    None => error("empty request"),
                }
            })();
            let _ = tx.send(Internal::FileRespond(channel, resp));
        });
    }

    fn on_file_response(
        &mut self,
        peer: PeerId,
        cid: Cid,
        ask: crate::files::Ask,
        resp: v1::FileResponse,
    ) {
        let now = Instant::now();
        let max = self.max_file_bytes;
        let Some(f) = self.files.fetches.get_mut(&cid) else {
            return;
        };
        match (ask, resp.kind) {
            (Ask::Manifest, Some(v1::file_response::Kind::Manifest(bytes))) => {
                match Manifest::verify(&cid, &bytes, max) {
                    Ok(m) if f.max_bytes.is_some_and(|mb| m.size > mb) => {
                        tracing::info!(%cid, size = m.size, "file larger than asked for: not fetched");
                        self.files.fetches.remove(&cid);
                    }
                    Ok(m) => {
                        let have = m.chunks.iter().map(|h| self.blobs.has(h)).collect();
                        let rec = FileRecord {
                            cid: cid.0,
                            manifest: m.encoded.clone(),
                            name: f.download.name.clone(),
                            mime: crate::files::mime_from_name(&f.download.name).to_string(),
                            complete: false,
                            added_at_ms: now_ms(),
                            prefetched: f.prefetch,
                        };
                        f.download.set_manifest(m, have);
                        if let Err(e) = self.store.put_file(&rec) {
                            tracing::warn!("store: {e}");
                        }
                        self.check_complete(&cid);
                    }
                    Err(e) => {
                        tracing::warn!(%cid, %peer, "manifest refused: {e}");
                        f.download.manifest_rejected(peer);
                    }
                }
            }
            (Ask::Chunk(i), Some(v1::file_response::Kind::Chunk(data))) => {
                let Some(m) = f.download.manifest().cloned() else {
                    return;
                };
                // Hashing and sealing 1 MiB is slow work: off the loop.
                let blobs = self.blobs.clone();
                let tx = self.internal_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let idx = i as usize;
                    // put() checks the hash; the length check catches a short chunk first.
                    let ok = data.len() == m.chunk_len(idx)
                        && m.chunks
                            .get(idx)
                            .is_some_and(|h| blobs.put(h, &data, false).is_ok());
                    let _ = tx.send(Internal::ChunkStored {
                        cid,
                        index: i,
                        peer,
                        ok,
                    });
                });
                return;
            }
            (ask, Some(v1::file_response::Kind::Error(e))) if e == "rate limited" => {
                f.download.throttled(ask, peer, now);
            }
            (ask, _) => f.download.request_failed(ask, peer, now),
        }
        self.pump(&cid);
    }

    /// A chunk was checked (and stored if valid) off the loop.
    pub(super) fn on_chunk_stored(&mut self, cid: Cid, index: u32, peer: PeerId, ok: bool) {
        let Some(f) = self.files.fetches.get_mut(&cid) else {
            return;
        };
        if !ok {
            tracing::warn!(%cid, %peer, chunk = index, "corrupted chunk refused; asking another provider");
        }
        f.download.chunk_arrived(index, peer, ok);
        let status = f.download.status();
        let _ = self.events.send(Event::FileProgress { status });
        self.check_complete(&cid);
        self.pump(&cid);
    }

    fn check_complete(&mut self, cid: &Cid) {
        let done = self
            .files
            .fetches
            .get(cid)
            .is_some_and(|f| f.download.is_complete());
        if !done {
            return;
        }
        let Some(f) = self.files.fetches.remove(cid) else {
            return;
        };
        if let Some(m) = f.download.manifest() {
            let rec = FileRecord {
                cid: cid.0,
                manifest: m.encoded.clone(),
                name: f.download.name.clone(),
                mime: crate::files::mime_from_name(&f.download.name).to_string(),
                complete: true,
                added_at_ms: now_ms(),
                prefetched: f.prefetch,
            };
            if let Err(e) = self.store.put_file(&rec) {
                tracing::warn!("store: {e}");
            }
        }
        tracing::info!(%cid, "file complete");
        let status = f.download.status();
        // Keep the final figures (e.g. corrupted chunks refused) for status queries.
        if self.files.finished.len() >= 256 {
            self.files.finished.clear();
        }
        self.files.finished.insert(*cid, status.clone());
        let _ = self.events.send(Event::FileProgress { status });
        // Now this node can serve it too.
        self.announce_file(cid);
    }
}
