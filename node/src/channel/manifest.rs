//! A channel's manifest: its name and description, signed by the channel key.

use libp2p::identity::ed25519;
use prost::Message;
use samizdat_proto::v1;

use super::{ChannelId, sign, verify};

const DOMAIN: &[u8] = b"samizdat/v1/channel-manifest";
/// Longest channel name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest channel description, in bytes of UTF-8.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Not a protobuf ChannelManifest.
    #[error("malformed channel manifest")]
    Malformed,
    /// The channel key in the body is not a valid ed25519 key.
    #[error("channel manifest names an invalid channel key")]
    BadChannel,
    /// The signature does not verify under the channel key.
    #[error("channel manifest signature is invalid")]
    BadSignature,
    /// Name or description too long, or the name is empty.
    #[error(
        "channel name must be 1..={MAX_NAME_BYTES} bytes and description at most {MAX_DESCRIPTION_BYTES}"
    )]
    BadLength,
}

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
        let body = v1::ChannelManifestBody::decode(signed.body.as_slice())
            .map_err(|_| ManifestError::Malformed)?;
        let channel = ChannelId::from_slice(&body.channel).ok_or(ManifestError::BadChannel)?;
        if !verify(
            &channel.public_key(),
            DOMAIN,
            &signed.body,
            &signed.signature,
        ) {
            return Err(ManifestError::BadSignature);
        }
        check_lengths(&body.name, &body.description)?;
        Ok(Self {
            channel,
            name: body.name,
            description: body.description,
            created_at_ms: body.created_at_ms,
            version: body.version,
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

fn check_lengths(name: &str, description: &str) -> Result<(), ManifestError> {
    if name.trim().is_empty()
        || name.len() > MAX_NAME_BYTES
        || description.len() > MAX_DESCRIPTION_BYTES
    {
        return Err(ManifestError::BadLength);
    }
    Ok(())
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
