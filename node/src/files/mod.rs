//! Files: content-addressed, chunked, integrity-checked; stored sealed at rest, announced in
//! the DHT and fetched chunk by chunk from any provider.

#![warn(clippy::arithmetic_side_effects)]

mod blobs;
pub mod content;
mod download;
mod import;
pub mod sealed;

pub use blobs::{BlobError, BlobStore};
pub use download::{Ask, Download, DownloadStatus};
pub use import::{ImportError, Importer};

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use prost::Message;
use samizdat_proto::v1;
use sha2::{Digest, Sha256};

/// Bytes per chunk of files this node creates.
pub const CHUNK_SIZE: usize = 1024 * 1024;
/// Largest chunk accepted from others.
pub const MAX_CHUNK_SIZE: usize = 4 * 1024 * 1024;
/// Smallest chunk size accepted from others (keeps manifests small).
const MIN_CHUNK_SIZE: u32 = 16 * 1024;

/// A file's content id: SHA-256 of its encoded manifest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid(pub [u8; 32]);

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE32_NOPAD.encode(&self.0).to_ascii_lowercase())
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl FromStr for Cid {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BASE32_NOPAD
            .decode(s.trim().to_ascii_uppercase().as_bytes())
            .ok()
            .and_then(|v| v.try_into().ok())
            .map(Cid)
            .ok_or(ManifestError::BadCid)
    }
}

/// The DHT key under which a file's providers announce themselves.
pub fn provider_key(cid: &Cid) -> libp2p::kad::RecordKey {
    libp2p::kad::RecordKey::new(&format!("/samizdat/file/{cid}"))
}

/// Why a manifest or content id was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Not 52 base32 characters.
    #[error("not a valid file id: expected 52 base32 characters")]
    BadCid,
    /// Does not decode, or its fields disagree.
    #[error("file manifest is malformed")]
    Malformed,
    /// Does not hash to the requested cid.
    #[error("file manifest does not match its id")]
    WrongCid,
    /// Larger than this node accepts.
    #[error("file is {size} bytes; this node accepts at most {max}")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
}

/// A verified file manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its content id.
    pub cid: Cid,
    /// File size in bytes.
    pub size: u64,
    /// Bytes per chunk.
    pub chunk_size: u32,
    /// SHA-256 of each chunk.
    pub chunks: Vec<[u8; 32]>,
    /// The encoded form (what the cid hashes).
    pub encoded: Vec<u8>,
}

impl Manifest {
    /// Builds the manifest of a file with these chunk hashes.
    pub fn new(size: u64, chunk_size: u32, chunks: Vec<[u8; 32]>) -> Self {
        let encoded = v1::FileManifest {
            size,
            chunk_size,
            chunks: chunks.iter().map(|c| c.to_vec()).collect(),
        }
        .encode_to_vec();
        Self {
            cid: Cid(Sha256::digest(&encoded).into()),
            size,
            chunk_size,
            chunks,
            encoded,
        }
    }

    /// Decodes and checks a manifest received for `cid`.
    pub fn verify(cid: &Cid, encoded: &[u8], max_size: u64) -> Result<Self, ManifestError> {
        if <[u8; 32]>::from(Sha256::digest(encoded)) != cid.0 {
            return Err(ManifestError::WrongCid);
        }
        let m = v1::FileManifest::decode(encoded).map_err(|_| ManifestError::Malformed)?;
        if m.size > max_size {
            return Err(ManifestError::TooLarge {
                size: m.size,
                max: max_size,
            });
        }
        if m.chunk_size < MIN_CHUNK_SIZE || m.chunk_size as usize > MAX_CHUNK_SIZE {
            return Err(ManifestError::Malformed);
        }
        let expected = m.size.div_ceil(u64::from(m.chunk_size));
        if m.chunks.len() as u64 != expected {
            return Err(ManifestError::Malformed);
        }
        let chunks = m
            .chunks
            .iter()
            .map(|c| {
                c.as_slice()
                    .try_into()
                    .map_err(|_| ManifestError::Malformed)
            })
            .collect::<Result<Vec<[u8; 32]>, _>>()?;
        Ok(Self {
            cid: *cid,
            size: m.size,
            chunk_size: m.chunk_size,
            chunks,
            encoded: encoded.to_vec(),
        })
    }

    /// Length of chunk `i`.
    pub fn chunk_len(&self, i: usize) -> usize {
        let start = (i as u64).saturating_mul(u64::from(self.chunk_size));
        let len = self
            .size
            .saturating_sub(start)
            .min(u64::from(self.chunk_size));
        usize::try_from(len).unwrap_or(0)
    }
}

/// A guess of the MIME type from a file name (for previews; never trusted for anything else).
pub fn mime_from_name(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        "ogv" => "video/ogg",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "m4a" => "audio/mp4",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_and_checks() {
        let data = vec![3u8; 40_000];
        let chunks: Vec<[u8; 32]> = data
            .chunks(16 * 1024)
            .map(|c| Sha256::digest(c).into())
            .collect();
        let m = Manifest::new(data.len() as u64, 16 * 1024, chunks);
        let back = Manifest::verify(&m.cid, &m.encoded, u64::MAX).expect("verify");
        assert_eq!(back, m);
        assert_eq!(m.chunk_len(2), 40_000 - 32 * 1024);
        assert_eq!(m.chunk_len(9), 0);
        let other = Cid([0; 32]);
        assert_eq!(
            Manifest::verify(&other, &m.encoded, u64::MAX),
            Err(ManifestError::WrongCid)
        );
        assert!(matches!(
            Manifest::verify(&m.cid, &m.encoded, 10),
            Err(ManifestError::TooLarge { .. })
        ));
        let bad = Manifest::new(100_000, 16 * 1024, vec![[0; 32]]);
        assert_eq!(
            Manifest::verify(&bad.cid, &bad.encoded, u64::MAX),
            Err(ManifestError::Malformed)
        );
        assert_eq!(m.cid.to_string().parse::<Cid>().expect("parse"), m.cid);
    }
}
