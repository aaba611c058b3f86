//! A channel's manifest: its name and description, signed by the channel key.

use libp2p::identity::ed25519;
use prost::Message;
use samizdat_proto::v1;

use super::{ChannelId, sign};

pub use samizdat_net::records::manifest::ManifestError;
use samizdat_net::records::manifest::{MANIFEST_DOMAIN as DOMAIN, check_lengths, open_manifest};

/// A verified channel manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The channel it describes.
    pub channel: ChannelId,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When the channel was created (ms since epoch).
    pub created_at_ms: u64,
    /// Higher replaces lower.
    pub version: u64,
    /// The signed wire form, kept verbatim.
    pub signed: v1::ChannelManifest,
}

impl Manifest {
    /// Signs a new manifest with the channel key.
    pub fn sign(
        key: &ed25519::Keypair,
        name: &str,
        description: &str,
        created_at_ms: u64,
        version: u64,
    ) -> Result<Self, ManifestError> {
        check_lengths(name, description)?;
        let body = v1::ChannelManifestBody {
            channel: key.public().to_bytes().to_vec(),
            name: name.to_string(),
            description: description.to_string(),
            created_at_ms,
            version,
        }
        .encode_to_vec();
        let signature = sign(key, DOMAIN, &body);
        Self::verify(v1::ChannelManifest { body, signature })
    }

    /// Verifies a manifest received from anywhere.
    pub fn verify(signed: v1::ChannelManifest) -> Result<Self, ManifestError> {
        let opened = open_manifest(&signed)?;
        let channel =
            ChannelId::from_slice(&opened.channel_key).ok_or(ManifestError::BadChannel)?;
        Ok(Self {
            channel,
            name: opened.body.name,
            description: opened.body.description,
            created_at_ms: opened.body.created_at_ms,
            version: opened.body.version,
            signed,
        })
    }

    /// Decodes and verifies the protobuf bytes of a manifest.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        let signed = v1::ChannelManifest::decode(bytes).map_err(|_| ManifestError::Malformed)?;
        Self::verify(signed)
    }

    /// The protobuf bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.signed.encode_to_vec()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let key = ed25519::Keypair::generate();
        let m = Manifest::sign(&key, "news", "daily", 1, 1).expect("sign");
        let back = Manifest::from_bytes(&m.to_bytes()).expect("verify");
        assert_eq!(back, m);

        let mut forged = m.signed.clone();
        let mut body = v1::ChannelManifestBody::decode(forged.body.as_slice()).expect("body");
        body.name = "fake".into();
        forged.body = body.encode_to_vec();
        assert_eq!(Manifest::verify(forged), Err(ManifestError::BadSignature));

        let other = ed25519::Keypair::generate();
        let mut resigned = m.signed.clone();
        resigned.signature = sign(&other, DOMAIN, &resigned.body);
        assert_eq!(Manifest::verify(resigned), Err(ManifestError::BadSignature));

        assert_eq!(
            Manifest::from_bytes(b"\xff\xff"),
            Err(ManifestError::Malformed)
        );
        assert_eq!(
            Manifest::sign(&key, "", "", 1, 1).map(|_| ()),
            Err(ManifestError::BadLength)
        );
        assert_eq!(
            Manifest::sign(&key, &"x".repeat(129), "", 1, 1).map(|_| ()),
            Err(ManifestError::BadLength)
        );
    }
}
