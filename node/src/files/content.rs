//! Reading a held file out: as stored, or a private attachment decrypted segment by segment.

use std::future::Future;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use zeroize::Zeroizing;

use super::Manifest;
use super::sealed::{self, SealedError};

/// Why a file could not be read out.
#[derive(Debug, thiserror::Error)]
pub enum ContentError<E> {
    /// The key given is not 64 hex digits.
    #[error("the key must be 64 hex digits")]
    BadKey,
    /// The key does not open the file (found on its first segment).
    #[error(transparent)]
    WrongKey(SealedError),
    /// Reading a chunk failed.
    #[error(transparent)]
    Read(E),
}

/// A file's bytes as they are served: their length and the stream that yields them.
pub struct Content<S> {
    /// Bytes the stream yields in total.
    pub size: u64,
    /// The bytes, chunk by chunk.
    pub stream: S,
}

/// Streams `manifest`'s chunks, read with `read`, decrypting each with `key` (hex) when given.
/// A wrong key is a clear error before anything is returned, not a broken download.
pub async fn open<R, F, E>(
    manifest: &Manifest,
    key: Option<&str>,
    read: R,
) -> Result<Content<impl Stream<Item = std::io::Result<Vec<u8>>> + use<R, F, E>>, ContentError<E>>
where
    R: Fn([u8; 32]) -> F + Clone + Send + 'static,
    F: Future<Output = Result<Vec<u8>, E>> + Send,
    E: std::fmt::Display,
{
    let key = match key {
        Some(k) => Some(Arc::new(Zeroizing::new(
            sealed::parse_key(k).map_err(|_| ContentError::BadKey)?,
        ))),
        None => None,
    };
    let count = manifest.chunks.len() as u64;
    if let (Some(k), Some(first)) = (&key, manifest.chunks.first()) {
        let chunk = read(*first).await.map_err(ContentError::Read)?;
        sealed::open_segment(k, 0, count, &chunk).map_err(ContentError::WrongKey)?;
    }
    let size = if key.is_some() {
        sealed::plain_size(manifest.size)
    } else {
        manifest.size
    };
    let chunks: Vec<(u64, [u8; 32])> = (0u64..).zip(manifest.chunks.iter().copied()).collect();
    let stream = futures::stream::iter(chunks).then(move |(i, hash)| {
        let read = read.clone();
        let key = key.clone();
        async move {
            let chunk = read(hash)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            match &key {
                Some(k) => sealed::open_segment(k, i, count, &chunk)
                    .map_err(|e| std::io::Error::other(e.to_string())),
                None => Ok(chunk),
            }
        }
    });
    Ok(Content { size, stream })
}
