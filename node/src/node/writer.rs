//! Group commit: one thread applies every post write and makes each batch durable with a
//! single flush, so acknowledging only durable posts does not cost one fsync per post. The same
//! thread deletes expired posts, so that all writes to the history are serialised.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::channel::{Post, now_ms};
use crate::store::{ExpiredPost, InsertOutcome, Store, StoreError};

/// Posts waiting for the writer; beyond this, new ones are refused (back-pressure).
const QUEUE: usize = 4096;
/// Most posts in one transaction and flush.
const MAX_BATCH: usize = 512;
/// Posts received from peers are made durable at least this often. They are not acknowledged
/// to anyone, and a crash before the flush loses only what history sync fetches again; a
/// flush per received batch measured as the largest CPU cost of a busy node.
const REMOTE_FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Who is waiting for a write.
pub(crate) enum Origin<R> {
    /// Made on this node: the outbox entry is written with it, `R` is acknowledged after.
    Local(R),
    /// Received from a peer.
    Remote,
}

/// A post to store.
pub(crate) struct WriteRequest<R> {
    pub post: Post,
    pub origin: Origin<R>,
}

/// A post stored (or not), reported back to the event loop.
pub(crate) struct WriteDone<R> {
    pub post: Post,
    pub origin: Origin<R>,
    pub result: Result<InsertOutcome, Arc<StoreError>>,
}

/// What the writer reports back to the event loop.
pub(crate) enum Report<R> {
    /// A batch was written (or failed).
    Written(Vec<WriteDone<R>>),
    /// Posts were deleted because they expired.
    Expired(Vec<ExpiredPost>),
}

/// Handle to the writer thread.
pub(crate) struct Writer<R> {
    tx: Option<SyncSender<WriteRequest<R>>>,
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
            Some(tx) => tx.try_send(req).map_err(|e| match e {
                TrySendError::Full(r) | TrySendError::Disconnected(r) => r.origin,
            }),
            None => Err(req.origin),
        }
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

fn run<R>(store: Arc<dyn Store>, rx: Receiver<WriteRequest<R>>, done: UnboundedSender<Report<R>>) {
    let mut next_expiry = store.next_expiry().ok().flatten();
    // When received posts were first written and not yet flushed.
    let mut dirty_since: Option<std::time::Instant> = None;
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
                REMOTE_FLUSH_EVERY
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
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let has_expiry = batch.iter().any(|r| r.post.expires_at_ms.is_some());
            // Posts made here are acknowledged only once durable: flush now. Received ones
            // wait for the next periodic flush.
            let local = batch.iter().any(|r| matches!(r.origin, Origin::Local(_)));
            let written = apply(store.as_ref(), batch, local);
            if local {
                dirty_since = None;
            } else if dirty_since.is_none() {
                dirty_since = Some(std::time::Instant::now());
            }
            if done.send(Report::Written(written)).is_err() {
                break;
            }
            if has_expiry {
                next_expiry = store.next_expiry().ok().flatten();
            }
        }
        if dirty_since.is_some_and(|t| t.elapsed() >= REMOTE_FLUSH_EVERY) {
            if let Err(e) = store.flush() {
                tracing::error!("store flush failed: {e}");
            }
            dirty_since = None;
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
    let (posts, origins): (Vec<Post>, Vec<Origin<R>>) =
        batch.into_iter().map(|r| (r.post, r.origin)).unzip();
    match write_batch(store, &posts, &origins, flush) {
        Ok(outcomes) => posts
            .into_iter()
            .zip(origins)
            .zip(outcomes)
            .map(|((post, origin), o)| WriteDone {
                post,
                origin,
                result: Ok(o),
            })
            .collect(),
        Err(e) => {
            tracing::error!("store write failed: {e}");
            let e = Arc::new(e);
            posts
                .into_iter()
                .zip(origins)
                .map(|(post, origin)| WriteDone {
                    post,
                    origin,
                    result: Err(e.clone()),
                })
                .collect()
        }
    }
}

fn write_batch<R>(
    store: &dyn Store,
    posts: &[Post],
    origins: &[Origin<R>],
    flush: bool,
) -> Result<Vec<InsertOutcome>, StoreError> {
    let outcomes = store.insert_posts(posts)?;
    for ((post, origin), outcome) in posts.iter().zip(origins).zip(&outcomes) {
        if matches!(origin, Origin::Local(_)) && *outcome == InsertOutcome::Inserted {
            store.outbox_add(post)?;
        }
    }
    if flush {
        store.flush()?;
    }
    Ok(outcomes)
}
