//! The node's identity: an ed25519 libp2p keypair (its PeerId, which signs) and an x25519 key
//! for encryption, bound to it by a signature. Kept in `identity.key`, sealed with the data key.

use libp2p::PeerId;
use libp2p::identity::{self, ed25519};
use zeroize::Zeroizing;

use crate::crypto::{DataKey, OpenError};
use crate::home::{Home, write_private};

const FILE_AAD: &[u8] = b"samizdat/v1/identity.key";
/// Signature domain for binding the x25519 key to the ed25519 identity.
pub const X25519_BINDING_DOMAIN: &[u8] = b"samizdat/v1/x25519-binding";
const FORMAT_V1: u8 = 1;

/// Errors loading or saving the identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read or written.
    #[error("identity.key: {0}")]
    Io(#[from] std::io::Error),
    /// The file does not decrypt with this home's data key.
    #[error("identity.key cannot be decrypted: {0}")]
    Sealed(#[from] OpenError),
    /// The decrypted contents are not a valid identity.
    #[error("identity.key is corrupt: {0}")]
    Corrupt(String),
}

/// The node's long-term keys.
pub struct Identity {
    signing: ed25519::Keypair,
    x25519: x25519_dalek::StaticSecret,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// New random keys.
    pub fn generate() -> Self {
        Self {
            signing: ed25519::Keypair::generate(),
            x25519: x25519_dalek::StaticSecret::from(crate::crypto::random_bytes::<32>()),
        }
    }

    /// The libp2p keypair (for the swarm and gossipsub signing).
    pub fn keypair(&self) -> identity::Keypair {
        identity::Keypair::from(self.signing.clone())
    }

    /// The raw ed25519 keypair (for signing posts as an admin).
    pub fn signing(&self) -> &ed25519::Keypair {
        &self.signing
    }

    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        PeerId::from_public_key(&identity::PublicKey::from(self.signing.public()))
    }

    /// The public half of the encryption key.
    pub fn x25519_public(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(&self.x25519)
    }

    /// Signature by the identity key over the x25519 public key: proves they belong together.
    pub fn x25519_binding(&self) -> Vec<u8> {
        let mut msg = X25519_BINDING_DOMAIN.to_vec();
        msg.extend_from_slice(self.x25519_public().as_bytes());
        self.signing.sign(&msg)
    }

    /// Writes the identity to `identity.key` (0600), sealed with `key`.
    pub fn save(&self, home: &Home, key: &DataKey) -> Result<(), IdentityError> {
        let mut plain = Zeroizing::new(Vec::with_capacity(1 + 64 + 32));
        plain.push(FORMAT_V1);
        plain.extend_from_slice(Zeroizing::new(self.signing.to_bytes()).as_slice());
        plain.extend_from_slice(Zeroizing::new(self.x25519.to_bytes()).as_slice());
        write_private(&home.identity_file(), &key.seal(FILE_AAD, &plain))?;
        Ok(())
    }

    /// Reads `identity.key` and opens it with `key`.
    pub fn load(home: &Home, key: &DataKey) -> Result<Self, IdentityError> {
        let sealed = std::fs::read(home.identity_file())?;
        let plain = Zeroizing::new(key.open(FILE_AAD, &sealed)?);
        if plain.len() != 1 + 64 + 32 || plain[0] != FORMAT_V1 {
            return Err(IdentityError::Corrupt(format!(
                "unexpected length {} or version",
                plain.len()
            )));
        }
        let mut kp = Zeroizing::new([0u8; 64]);
        kp.copy_from_slice(&plain[1..65]);
        let signing = ed25519::Keypair::try_from_bytes(kp.as_mut_slice())
            .map_err(|e| IdentityError::Corrupt(e.to_string()))?;
        let mut x = Zeroizing::new([0u8; 32]);
        x.copy_from_slice(&plain[65..97]);
        Ok(Self {
            signing,
            x25519: x25519_dalek::StaticSecret::from(*x),
        })
    }
}

pub use samizdat_net::records::signed::ed25519_of;

/// The PeerId of an ed25519 public key.
pub fn peer_id_of(key: &ed25519::PublicKey) -> PeerId {
    PeerId::from_public_key(&identity::PublicKey::from(key.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_wrong_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::at(dir.path());
        let key = DataKey::generate();
        let id = Identity::generate();
        id.save(&home, &key).expect("save");
        let back = Identity::load(&home, &key).expect("load");
        assert_eq!(back.peer_id(), id.peer_id());
        assert_eq!(back.x25519_public(), id.x25519_public());
        assert!(matches!(
            Identity::load(&home, &DataKey::generate()),
            Err(IdentityError::Sealed(_))
        ));
    }

    #[test]
    fn peer_id_and_key_convert_both_ways() {
        let id = Identity::generate();
        let pk = ed25519_of(&id.peer_id()).expect("inline key");
        assert_eq!(pk, id.signing().public());
        assert_eq!(peer_id_of(&pk), id.peer_id());
    }

    #[test]
    fn binding_signature_verifies() {
        let id = Identity::generate();
        let mut msg = X25519_BINDING_DOMAIN.to_vec();
        msg.extend_from_slice(id.x25519_public().as_bytes());
        assert!(id.signing().public().verify(&msg, &id.x25519_binding()));
    }
}
