//! Cutting a byte stream into chunks as it arrives, storing each, and building the manifest.

use sha2::{Digest, Sha256};

use super::{BlobError, BlobStore, CHUNK_SIZE, Manifest, ManifestError};

/// Incremental importer: feed bytes, then finish to get the manifest.
#[derive(Debug)]
pub struct Importer {
    blobs: BlobStore,
    buf: Vec<u8>,
    chunks: Vec<[u8; 32]>,
    size: u64,
    max_size: u64,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Writing a chunk failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The file is over the limit.
    #[error(transparent)]
    TooLarge(#[from] ManifestError),
}

impl Importer {
    /// An importer writing into `blobs`, refusing more than `max_size` bytes.
    pub fn new(blobs: BlobStore, max_size: u64) -> Self {
        Self {
            blobs,
            buf: Vec::with_capacity(CHUNK_SIZE),
            chunks: Vec::new(),
            size: 0,
            max_size,
        }
    }

    /// Adds bytes; stores every chunk that fills up (blocking I/O: call off the event loop).
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ImportError> {
        self.size = self.size.saturating_add(data.len() as u64);
        if self.size > self.max_size {
            return Err(ManifestError::TooLarge {
                size: self.size,
                max: self.max_size,
            }
            .into());
        }
        while !data.is_empty() {
            let take = CHUNK_SIZE.saturating_sub(self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK_SIZE {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<(), ImportError> {
        let h: [u8; 32] = Sha256::digest(&self.buf).into();
        self.blobs.put_hashed(&h, &self.buf, true)?;
        self.chunks.push(h);
        self.buf.clear();
        Ok(())
    }

    /// Stores the last partial chunk and returns the manifest.
    pub fn finish(mut self) -> Result<Manifest, ImportError> {
        if !self.buf.is_empty() {
            self.flush_chunk()?;
        }
        self.blobs.sync()?;
        Ok(Manifest::new(self.size, CHUNK_SIZE as u32, self.chunks))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn import_in_odd_pieces_gives_a_verifiable_manifest() {
        let dir = tempfile::tempdir().expect("tmp");
        let blobs = BlobStore::open(dir.path(), Arc::new(crate::crypto::DataKey::generate()))
            .expect("blobs");
        let data: Vec<u8> = (0..(2 * CHUNK_SIZE + 123))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut imp = Importer::new(blobs.clone(), u64::MAX);
        for piece in data.chunks(77_777) {
            imp.feed(piece).expect("feed");
        }
        let m = imp.finish().expect("finish");
        assert_eq!(m.size, data.len() as u64);
        assert_eq!(m.chunks.len(), 3);
        let back = Manifest::verify(&m.cid, &m.encoded, u64::MAX).expect("verify");
        let mut joined = Vec::new();
        for h in &back.chunks {
            joined.extend(blobs.get(h).expect("get").expect("present"));
        }
        assert_eq!(joined, data);
        let mut small = Importer::new(blobs, 10);
        assert!(small.feed(&[0; 11]).is_err());
    }
}
