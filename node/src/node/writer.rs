//! Group commit: one thread applies every write to the channels' history (posts, and expiry
//! proofs learned from peers) and makes each batch durable with a single flush, so
//! acknowledging only durable posts does not cost one fsync per post. The same thread deletes
//! expired posts, so that all writes to the history are serialised. It also makes durable, on
//! request, what the swarm task wrote without flushing (direct and group messages, MLS state,
//! records): a barrier joins the next batch's flush, so the swarm task never waits for the disk.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::channel::{Post, PostHeader, now_ms};
use crate::store::{ExpiredPost, InsertOutcome, Store, StoreError};

/// Posts waiting for the writer; beyond this, new ones are refused (back-pressure).
const QUEUE: usize = 4096;
/// Most posts in one transaction and flush.
const MAX_BATCH: usize = 512;
/// What is written without waiting for the disk is made durable at least this often: posts
/// received from peers, and what the swarm task wrote (peer cache, records). Neither is
/// acknowledged to anyone, and a crash before the flush loses only what history sync fetches
/// again or the node learns again. A flush per received batch measured as the largest CPU
/// cost of a busy node, and at 250 ms (with sled's own 1 s timer beside it) flushes were
/// still a fifth of a 200-node mesh's CPU: this thread is now the only one that flushes.
const FLUSH_EVERY: Duration = Duration::from_millis(1000);

/// Who is waiting for a write.
pub(crate) enum Origin<R> {
    /// Made on this node: the outbox entry is written with it, `R` is acknowledged after.
    Local(R),
    /// Received from a peer.
    Remote,
}

/// What goes into a channel's history.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// A verified post.
    Post(Post),
    /// A verified header proving that its slot expired.
    Tombstone(PostHeader),
}

/// Work for the writer.
// Writes are nearly all the traffic and went by value before barriers existed: boxing them to
// shrink the rare barrier would add an allocation per post.
#[allow(clippy::large_enum_variant)]
enum Job<R> {
    Write(WriteRequest<R>),
    /// Flush, and report [`Report::Durable`].
    Barrier,
}

/// A write to make.
pub(crate) struct WriteRequest<R> {
    pub item: Item,
    pub origin: Origin<R>,
}

impl<R> WriteRequest<R> {
    /// A post made here (`reply` waits for it) or received.
    pub fn post(post: Post, origin: Origin<R>) -> Self {
        Self {
            item: Item::Post(post),
            origin,
        }
    }
}

/// A write made (or not), reported back to the event loop.
pub(crate) struct WriteDone<R> {
    pub item: Item,
    pub origin: Origin<R>,
    pub result: Result<InsertOutcome, Arc<StoreError>>,
}

/// What the writer reports back to the event loop.
pub(crate) enum Report<R> {
    /// A batch was written (or failed).
    Written(Vec<WriteDone<R>>),
    /// Posts were deleted because they expired.
    Expired(Vec<ExpiredPost>),
    /// A barrier's flush is done: see [`crate::store::Store::durable_seq`].
    Durable,
}

/// Handle to the writer thread.
pub(crate) struct Writer<R> {
    tx: Option<SyncSender<Job<R>>>,
    thread: Option<JoinHandle<()>>,
}

impl<R: Send + 'static> Writer<R> {
    /// Starts the thread; results go to `done`.
    pub fn spawn(store: Arc<dyn Store>, done: UnboundedSender<Report<R>>) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(store, rx, done))
            .ok();
        Self {
            tx: Some(tx),
            thread,
        }
    }

    /// Queues a write; gives the origin back if the queue is full or the writer is gone.
    pub fn submit(&self, req: WriteRequest<R>) -> Result<(), Origin<R>> {
        match &self.tx {
            Some(tx) => tx.try_send(Job::Write(req)).map_err(|e| match e {
                TrySendError::Full(j) | TrySendError::Disconnected(j) => match j {
                    Job::Write(r) => r.origin,
                    // (Only a write was sent.)
                    Job::Barrier => Origin::Remote,
                },
            }),
            None => Err(req.origin),
        }
    }

    /// Asks for a flush of everything written so far and a [`Report::Durable`] after it;
    /// false if the queue is full or the writer is gone (ask again later).
    pub fn barrier(&self) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(Job::Barrier).is_ok())
    }

    /// Finishes queued writes, flushes, and stops the thread.
    pub fn close(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

impl<R> Drop for Writer<R> {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run<R>(store: Arc<dyn Store>, rx: Receiver<Job<R>>, done: UnboundedSender<Report<R>>) {
    let mut next_expiry = store.next_expiry().ok().flatten();
    // When received posts were first written and not yet flushed.
    let mut dirty_since: Option<std::time::Instant> = None;
    let mut last_flush = std::time::Instant::now();
    loop {
        // Sleep until a write arrives, the next post is due to expire (checked at least once
        // a second, so a post expiring "now" goes within about a second), or received posts
        // are due for their flush.
        let mut wait = match next_expiry {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms()).clamp(1, 1000)),
            None => Duration::from_secs(1),
        };
        if let Some(t) = dirty_since {
            wait = wait.min(
                FLUSH_EVERY
                    .saturating_sub(t.elapsed())
                    .max(Duration::from_millis(1)),
            );
        }
        let first = match rx.recv_timeout(wait) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Some(first) = first {
            let mut batch = Vec::new();
            let mut barrier = false;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Write(r) => batch.push(r),
                    Job::Barrier => barrier = true,
                }
                if batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            let has_expiry = batch
                .iter()
                .any(|r| matches!(&r.item, Item::Post(p) if p.expires_at_ms.is_some()));
            // Posts made here are acknowledged only once durable: flush now. Received ones
            // wait for the next periodic flush.
            let local = barrier || batch.iter().any(|r| matches!(r.origin, Origin::Local(_)));
            if !batch.is_empty() {
                let written = apply(store.as_ref(), batch, local);
                if done.send(Report::Written(written)).is_err() {
                    break;
                }
            } else if let Err(e) = store.flush() {
                // The barrier's actions keep waiting; the next barrier tries again.
                tracing::error!("store flush failed: {e}");
            }
            if local {
                dirty_since = None;
                last_flush = std::time::Instant::now();
            } else if dirty_since.is_none() {
                dirty_since = Some(std::time::Instant::now());
            }
            if barrier && done.send(Report::Durable).is_err() {
                break;
            }
            if has_expiry {
                next_expiry = store.next_expiry().ok().flatten();
            }
        }
        let posts_due = dirty_since.is_some_and(|t| t.elapsed() >= FLUSH_EVERY);
        let writes_due =
            store.write_seq() > store.durable_seq() && last_flush.elapsed() >= FLUSH_EVERY;
        if posts_due || writes_due {
            if let Err(e) = store.flush() {
                tracing::error!("store flush failed: {e}");
            }
            dirty_since = None;
            last_flush = std::time::Instant::now();
        }
        if next_expiry.is_some_and(|at| at <= now_ms()) {
            match store.expire_due(now_ms()) {
                Ok(gone) if !gone.is_empty() => {
                    if done.send(Report::Expired(gone)).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!("expiring posts failed: {e}"),
            }
            next_expiry = store.next_expiry().ok().flatten();
        }
    }
    if let Err(e) = store.flush() {
        tracing::error!("final store flush failed: {e}");
    }
}

fn apply<R>(store: &dyn Store, batch: Vec<WriteRequest<R>>, flush: bool) -> Vec<WriteDone<R>> {
    // Posts and tombstones go in one transaction each (no copies of the posts): remember
    // where each came from to report in the batch's order.
    let mut posts = Vec::new();
    let mut headers = Vec::new();
    let mut order = Vec::with_capacity(batch.len());
    for r in batch {
        match r.item {
            Item::Post(p) => {
                order.push((true, r.origin));
                posts.push(p);
            }
            Item::Tombstone(h) => {
                order.push((false, r.origin));
                headers.push(h);
            }
        }
    }
    let result = write_batch(store, &posts, &headers, &order, flush);
    let (post_outcomes, header_outcomes) = match result {
        Ok((p, h)) => (
            p.into_iter().map(Ok).collect(),
            h.into_iter().map(Ok).collect(),
        ),
        Err(e) => {
            tracing::error!("store write failed: {e}");
            let e = Arc::new(e);
            (
                vec![Err(e.clone()); posts.len()],
                vec![Err(e); headers.len()],
            )
        }
    };
    let mut posts = posts.into_iter().zip::<Vec<_>>(post_outcomes);
    let mut headers = headers.into_iter().zip::<Vec<_>>(header_outcomes);
    order
        .into_iter()
        .filter_map(|(is_post, origin)| {
            let (item, result) = if is_post {
                posts.next().map(|(p, r)| (Item::Post(p), r))?
            } else {
                headers.next().map(|(h, r)| (Item::Tombstone(h), r))?
            };
            Some(WriteDone {
                item,
                origin,
                result,
            })
        })
        .collect()
}

type Outcomes = (Vec<InsertOutcome>, Vec<InsertOutcome>);

/// Writes posts and tombstones (two transactions, one flush).
fn write_batch<R>(
    store: &dyn Store,
    posts: &[Post],
    headers: &[PostHeader],
    order: &[(bool, Origin<R>)],
    flush: bool,
) -> Result<Outcomes, StoreError> {
    let post_outcomes = store.insert_posts(posts)?;
    let header_outcomes = if headers.is_empty() {
        Vec::new()
    } else {
        store.insert_tombstones(headers)?
    };
    let origins = order.iter().filter(|(is_post, _)| *is_post).map(|(_, o)| o);
    for ((post, origin), outcome) in posts.iter().zip(origins).zip(&post_outcomes) {
        if matches!(origin, Origin::Local(_)) && *outcome == InsertOutcome::Inserted {
            store.outbox_add(post)?;
        }
    }
    if flush {
        store.flush()?;
    }
    Ok((post_outcomes, header_outcomes))
}
