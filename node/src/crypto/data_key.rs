//! The data key: seals every record at rest (XChaCha20-Poly1305) and keys the store's index hashes.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::random_bytes;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Version byte in front of every sealed record, so the format can change later.
const SEAL_V1: u8 = 1;

/// A sealed record could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Too short, or of an unknown format version.
    #[error("sealed record is malformed ({0} bytes)")]
    Malformed(usize),
    /// Wrong key, or the bytes were changed (bit flip, truncation, swapped records).
    #[error("sealed record failed authentication (wrong key or corrupted data)")]
    Authentication,
}

/// The 256-bit key that protects the store; itself kept wrapped in the keyring.
pub struct DataKey {
    raw: Zeroizing<[u8; 32]>,
    seal: XChaCha20Poly1305,
    index: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self::from_bytes(random_bytes())
    }

    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let raw = Zeroizing::new(bytes);
        // Separate subkeys for sealing and for index hashing, so that neither use can leak
        // anything about the other.
        let hk = Hkdf::<Sha256>::new(Some(b"samizdat/v1/data-key"), raw.as_slice());
        let mut seal_key = Zeroizing::new([0u8; 32]);
        let mut index = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        #[allow(clippy::expect_used)]
        {
            hk.expand(b"seal", seal_key.as_mut_slice())
                .expect("32-byte HKDF output");
            hk.expand(b"index", index.as_mut_slice())
                .expect("32-byte HKDF output");
        }
        let seal = XChaCha20Poly1305::new(&Key::from(*seal_key));
        Self { raw, seal, index }
    }

    /// The raw key bytes, for wrapping into the keyring.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.raw
    }

    /// Encrypts `plaintext`, binding it to `aad` (where the record lives), with a random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
        let nonce = XNonce::from(nonce_bytes);
        // Encryption with a valid key and in-memory buffers cannot fail.
        #[allow(clippy::expect_used)]
        let ct = self
            .seal
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEAL_V1);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts what [`DataKey::seal`] produced with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEAL_V1 {
            return Err(OpenError::Malformed(sealed.len()));
        }
        let (nonce_bytes, ct) = sealed[1..].split_at(NONCE_LEN);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(nonce_bytes);
        self.seal
            .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
            .map_err(|_| OpenError::Authentication)
    }

    /// A keyed hash, so that store keys reveal nothing about the names behind them.
    pub fn index_hash(&self, domain: &[u8], data: &[u8]) -> [u8; 32] {
        #[allow(clippy::expect_used)]
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(self.index.as_slice())
            .expect("HMAC accepts any key length");
        mac.update(&(domain.len() as u64).to_be_bytes());
        mac.update(domain);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let k = DataKey::generate();
        let sealed = k.seal(b"where", b"secret text");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(k.open(b"where", &sealed).expect("open"), b"secret text");
    }

    #[test]
    fn wrong_key_aad_or_tampering_fail_cleanly() {
        let k = DataKey::generate();
        let other = DataKey::generate();
        let sealed = k.seal(b"a", b"payload");
        assert!(matches!(
            other.open(b"a", &sealed),
            Err(OpenError::Authentication)
        ));
        assert!(matches!(
            k.open(b"b", &sealed),
            Err(OpenError::Authentication)
        ));
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(k.open(b"a", &bad).is_err(), "bit flip at {i} accepted");
        }
        for len in 0..sealed.len() {
            assert!(
                k.open(b"a", &sealed[..len]).is_err(),
                "truncation to {len} accepted"
            );
        }
    }

    #[test]
    fn index_hash_is_keyed_and_domain_separated() {
        let k = DataKey::from_bytes([7; 32]);
        let k2 = DataKey::from_bytes([8; 32]);
        assert_eq!(k.index_hash(b"d", b"x"), k.index_hash(b"d", b"x"));
        assert_ne!(k.index_hash(b"d", b"x"), k2.index_hash(b"d", b"x"));
        assert_ne!(k.index_hash(b"d", b"x"), k.index_hash(b"e", b"x"));
        assert_ne!(k.index_hash(b"dx", b""), k.index_hash(b"d", b"x"));
    }
}
