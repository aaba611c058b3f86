//! Private attachments: a file encrypted before it is chunked, so the chunks every provider
//! stores and serves are ciphertext. The random per-file key travels only inside the
//! end-to-end encrypted message that carries the attachment.
//!
//! Format: the plaintext is cut into segments of [`SEGMENT`] bytes (the last one shorter, or
//! empty), each sealed with XChaCha20-Poly1305 under the file key, nonce = segment index
//! (8 bytes big-endian, then zeros), AAD = domain || index || last flag. A sealed segment is
//! exactly one 1 MiB chunk, and the last flag makes truncation detectable.

#![warn(clippy::arithmetic_side_effects)]

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::CHUNK_SIZE;

/// Plaintext bytes per sealed segment (a sealed segment fills one chunk).
pub const SEGMENT: usize = CHUNK_SIZE - 16;
const DOMAIN: &[u8] = b"samizdat/v1/attachment";

/// Why a sealed file did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealedError {
    /// The key is not 32 bytes.
    #[error("an attachment key is 32 bytes (64 hex digits)")]
    BadKey,
    /// A segment failed authentication (wrong key, tampered or truncated file).
    #[error("attachment does not decrypt: wrong key, or the file was altered")]
    Corrupt,
}

fn cipher(key: &[u8]) -> Result<XChaCha20Poly1305, SealedError> {
    XChaCha20Poly1305::new_from_slice(key).map_err(|_| SealedError::BadKey)
}

fn nonce(index: u64) -> XNonce {
    let mut n = [0u8; 24];
    n[..8].copy_from_slice(&index.to_be_bytes());
    XNonce::from(n)
}

fn aad(index: u64, last: bool) -> Vec<u8> {
    let mut a = DOMAIN.to_vec();
    a.extend_from_slice(&index.to_be_bytes());
    a.push(u8::from(last));
    a
}

/// Seals a stream of plaintext pieces into sealed segments.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    buf: Vec<u8>,
    index: u64,
}

impl Sealer {
    /// A sealer for `key` (32 bytes).
    pub fn new(key: &[u8]) -> Result<Self, SealedError> {
        Ok(Self {
            cipher: cipher(key)?,
            buf: Vec::with_capacity(SEGMENT + 1),
            index: 0,
        })
    }

    fn seal(&mut self, segment: &[u8], last: bool) -> Vec<u8> {
        let out = self
            .cipher
            .encrypt(
                &nonce(self.index),
                Payload {
                    msg: segment,
                    aad: &aad(self.index, last),
                },
            )
            // Encryption of an in-memory buffer under a valid key cannot fail.
            .unwrap_or_default();
        self.index = self.index.saturating_add(1);
        out
    }

    /// Adds plaintext; returns the segments sealed so far (a full segment is sealed only once
    /// more data follows, so the last one is known to be last).
    pub fn feed(&mut self, mut data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while !data.is_empty() {
            if self.buf.len() == SEGMENT {
                let seg = std::mem::take(&mut self.buf);
                out.push(self.seal(&seg, false));
                self.buf = seg;
                self.buf.clear();
            }
            let take = SEGMENT.saturating_sub(self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        out
    }

    /// Seals what is left as the last segment.
    pub fn finish(mut self) -> Vec<u8> {
        let seg = std::mem::take(&mut self.buf);
        self.seal(&seg, true)
    }
}

/// Opens sealed segment `index` of `count`.
pub fn open_segment(
    key: &[u8],
    index: u64,
    count: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, SealedError> {
    cipher(key)?
        .decrypt(
            &nonce(index),
            Payload {
                msg: sealed,
                aad: &aad(index, index.checked_add(1) == Some(count)),
            },
        )
        .map_err(|_| SealedError::Corrupt)
}

/// The plaintext size of a sealed file of `sealed_size` bytes.
pub fn plain_size(sealed_size: u64) -> u64 {
    let segments = sealed_size.div_ceil(CHUNK_SIZE as u64).max(1);
    sealed_size.saturating_sub(segments.saturating_mul(16))
}

/// Parses a key as users and messages carry it (hex).
pub fn parse_key(s: &str) -> Result<Vec<u8>, SealedError> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(s.trim().as_bytes())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or(SealedError::BadKey)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn seal_all(key: &[u8], data: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut s = Sealer::new(key).expect("key");
        let mut segs = Vec::new();
        for p in data.chunks(piece.max(1)) {
            segs.extend(s.feed(p));
        }
        segs.push(s.finish());
        segs
    }

    #[test]
    fn round_trip_at_every_boundary_and_tampering_is_caught() {
        let key = [3u8; 32];
        for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let segs = seal_all(&key, &data, 100_000);
            let total: u64 = segs.iter().map(|s| s.len() as u64).sum();
            assert_eq!(plain_size(total), len as u64, "len {len}");
            assert!(segs[..segs.len() - 1].iter().all(|s| s.len() == CHUNK_SIZE));
            let n = segs.len() as u64;
            let back: Vec<u8> = segs
                .iter()
                .enumerate()
                .flat_map(|(i, s)| open_segment(&key, i as u64, n, s).expect("open"))
                .collect();
            assert_eq!(back, data, "len {len}");
            // The wrong key, a flipped bit, a dropped last segment, swapped segments: refused.
            assert_eq!(
                open_segment(&[4u8; 32], 0, n, &segs[0]),
                Err(SealedError::Corrupt)
            );
            let mut bad = segs[0].clone();
            bad[0] ^= 1;
            assert_eq!(open_segment(&key, 0, n, &bad), Err(SealedError::Corrupt));
            if n > 1 {
                assert!(open_segment(&key, n - 2, n - 1, &segs[(n - 2) as usize]).is_err());
                assert!(open_segment(&key, 0, n, &segs[1]).is_err());
            }
        }
        assert_eq!(parse_key(&"ab".repeat(32)).expect("key").len(), 32);
        assert!(parse_key("abcd").is_err());
    }
}
