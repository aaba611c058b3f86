//! Domain-separated ed25519 signatures: every signed Samizdat object covers DOMAIN || body, so
//! a signature made for one kind of object never verifies as another.

use libp2p::PeerId;
use libp2p::identity::{self, ed25519};

/// Signs `body` for `domain`.
pub fn sign(key: &ed25519::Keypair, domain: &[u8], body: &[u8]) -> Vec<u8> {
    key.sign(&domained(domain, body))
}

/// Checks a signature made by [`sign`].
pub fn verify(key: &ed25519::PublicKey, domain: &[u8], body: &[u8], sig: &[u8]) -> bool {
    key.verify(&domained(domain, body), sig)
}

fn domained(domain: &[u8], body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(domain.len().saturating_add(body.len()));
    msg.extend_from_slice(domain);
    msg.extend_from_slice(body);
    msg
}

/// The ed25519 public key inside a PeerId, when it has one inline (all Samizdat peers do).
pub fn ed25519_of(peer: &PeerId) -> Option<ed25519::PublicKey> {
    let mh = peer.as_ref();
    // Code 0x00 is the identity multihash: the digest is the protobuf-encoded public key.
    if mh.code() != 0x00 {
        return None;
    }
    identity::PublicKey::try_decode_protobuf(mh.digest())
        .ok()?
        .try_into_ed25519()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_domain_only() {
        let k = ed25519::Keypair::generate();
        let sig = sign(&k, b"a", b"body");
        assert!(verify(&k.public(), b"a", b"body", &sig));
        assert!(!verify(&k.public(), b"b", b"body", &sig));
        assert!(!verify(&k.public(), b"a", b"bodz", &sig));
        let peer = PeerId::from_public_key(&identity::PublicKey::from(k.public()));
        assert_eq!(ed25519_of(&peer), Some(k.public()));
    }
}
