//! A channel's manifest record: name and description signed by the channel key, stored in the
//! DHT under `/samizdat/channel-manifest/<channel id>`.

use data_encoding::BASE32_NOPAD;
use libp2p::identity::ed25519;
use libp2p::kad::RecordKey;
use prost::Message;
use samizdat_proto::v1;

use super::signed::verify;

/// Signature domain of channel manifests.
pub const MANIFEST_DOMAIN: &[u8] = b"samizdat/v1/channel-manifest";
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

/// A manifest whose signature and lengths hold.
#[derive(Debug, Clone)]
pub struct OpenedManifest {
    /// The channel key that signed it.
    pub channel_key: [u8; 32],
    /// The decoded body.
    pub body: v1::ChannelManifestBody,
}

/// Verifies a signed manifest received from anywhere.
pub fn open_manifest(signed: &v1::ChannelManifest) -> Result<OpenedManifest, ManifestError> {
    let body = v1::ChannelManifestBody::decode(signed.body.as_slice())
        .map_err(|_| ManifestError::Malformed)?;
    let channel_key: [u8; 32] = body
        .channel
        .as_slice()
        .try_into()
        .map_err(|_| ManifestError::BadChannel)?;
    let public =
        ed25519::PublicKey::try_from_bytes(&channel_key).map_err(|_| ManifestError::BadChannel)?;
    if !verify(&public, MANIFEST_DOMAIN, &signed.body, &signed.signature) {
        return Err(ManifestError::BadSignature);
    }
    check_lengths(&body.name, &body.description)?;
    Ok(OpenedManifest { channel_key, body })
}

/// Checks a manifest's name and description lengths.
pub fn check_lengths(name: &str, description: &str) -> Result<(), ManifestError> {
    if name.trim().is_empty()
        || name.len() > MAX_NAME_BYTES
        || description.len() > MAX_DESCRIPTION_BYTES
    {
        return Err(ManifestError::BadLength);
    }
    Ok(())
}

/// The text form of a channel key: lowercase unpadded base32 (52 characters), as channel ids
/// are written everywhere.
pub fn channel_text(channel_key: &[u8; 32]) -> String {
    BASE32_NOPAD.encode(channel_key).to_ascii_lowercase()
}

/// The DHT key of a channel's manifest record.
pub fn manifest_key(channel_key: &[u8; 32]) -> RecordKey {
    RecordKey::new(&format!(
        "/samizdat/channel-manifest/{}",
        channel_text(channel_key)
    ))
}
