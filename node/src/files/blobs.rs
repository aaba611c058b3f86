//! Chunks on disk: one file per chunk under `HOME/blobs/`, named by a keyed hash of its content
//! hash and sealed with the data key, so the directory reveals neither names nor contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::crypto::{DataKey, OpenError};

/// Errors reading or writing chunks.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// File system error.
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
    /// A chunk file does not open with the data key (corruption or tampering).
    #[error("blob store: chunk fails authentication: {0}")]
    Sealed(#[from] OpenError),
    /// A chunk's content does not match its hash.
    #[error("blob store: chunk content does not match its hash")]
    Mismatch,
}

/// Chunk storage.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    key: Arc<DataKey>,
}

impl BlobStore {
    /// The store in `dir` (created if missing).
    pub fn open(dir: &Path, key: Arc<DataKey>) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
        })
    }

    fn path(&self, hash: &[u8; 32]) -> PathBuf {
        let name = data_encoding::HEXLOWER.encode(&self.key.index_hash(b"blob", hash)[..20]);
        self.dir.join(&name[..2]).join(&name[2..])
    }

    fn aad(hash: &[u8; 32]) -> Vec<u8> {
        let mut a = b"blob\0".to_vec();
        a.extend_from_slice(hash);
        a
    }

    /// Whether the chunk with this hash is stored.
    pub fn has(&self, hash: &[u8; 32]) -> bool {
        self.path(hash).exists()
    }

    /// Stores a chunk after checking that its hash is `hash`; `durable` fsyncs it.
    pub fn put(&self, hash: &[u8; 32], data: &[u8], durable: bool) -> Result<(), BlobError> {
        if <[u8; 32]>::from(Sha256::digest(data)) != *hash {
            return Err(BlobError::Mismatch);
        }
        self.put_hashed(hash, data, durable)
    }

    /// Stores a chunk whose hash the caller has just computed from these very bytes.
    pub(crate) fn put_hashed(
        &self,
        hash: &[u8; 32],
        data: &[u8],
        durable: bool,
    ) -> Result<(), BlobError> {
        let path = self.path(hash);
        if path.exists() {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        std::io::Write::write_all(&mut tmp, &self.key.seal(&Self::aad(hash), data))?;
        if durable {
            tmp.as_file().sync_all()?;
        }
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }

    /// Reads a chunk. Its seal authenticates the content together with its hash (the hash is
    /// the associated data, and only this node's key seals), so it is not hashed again.
    pub fn get(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, BlobError> {
        let sealed = match std::fs::read(self.path(hash)) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(self.key.open(&Self::aad(hash), &sealed)?))
    }

    /// Removes a chunk (e.g. when it failed to open).
    pub fn remove(&self, hash: &[u8; 32]) {
        let _ = std::fs::remove_file(self.path(hash));
    }

    /// Makes chunk writes so far durable (directory entries).
    pub fn sync(&self) -> Result<(), BlobError> {
        #[cfg(unix)]
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_sealed_and_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = Arc::new(DataKey::generate());
        let b = BlobStore::open(&dir.path().join("blobs"), key.clone()).expect("open");
        let data = b"CHUNK-PLAINTEXT-MARKER".repeat(100);
        let h: [u8; 32] = Sha256::digest(&data).into();
        assert!(matches!(
            b.put(&h, b"other", false),
            Err(BlobError::Mismatch)
        ));
        b.put(&h, &data, true).expect("put");
        assert!(b.has(&h));
        assert_eq!(b.get(&h).expect("get").as_deref(), Some(data.as_slice()));
        let files: Vec<_> = walk(dir.path());
        assert_eq!(files.len(), 1);
        let raw = std::fs::read(&files[0]).expect("read");
        assert!(!raw.windows(22).any(|w| w == b"CHUNK-PLAINTEXT-MARKER"));
        // Tampering is detected.
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&files[0], bad).expect("write");
        assert!(b.get(&h).is_err());
        // Another key cannot read it.
        std::fs::write(&files[0], raw).expect("restore");
        let other = BlobStore::open(&dir.path().join("blobs"), Arc::new(DataKey::generate()))
            .expect("open");
        assert_eq!(other.get(&h).expect("get"), None);
    }

    fn walk(d: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(d).expect("read_dir").flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
