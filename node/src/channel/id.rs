//! Channel and post identifiers, written as lowercase unpadded base32 (52 characters).

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use libp2p::identity::ed25519;

/// An identifier that is not 52 characters of base32 for 32 bytes.
#[derive(Debug, thiserror::Error)]
#[error("not a valid {what}: expected 52 base32 characters")]
pub struct IdParseError {
    what: &'static str,
}

fn encode(bytes: &[u8; 32]) -> String {
    // The same text form names channels in DHT keys.
    samizdat_net::records::manifest::channel_text(bytes)
}

fn decode(s: &str, what: &'static str) -> Result<[u8; 32], IdParseError> {
    BASE32_NOPAD
        .decode(s.trim().to_ascii_uppercase().as_bytes())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(IdParseError { what })
}

/// A channel's identity: its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId([u8; 32]);

impl ChannelId {
    /// The id of the channel whose key is `key`.
    pub fn from_key(key: &ed25519::PublicKey) -> Self {
        Self(key.to_bytes())
    }

    /// The id from raw bytes, if they are a valid ed25519 public key.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let key = ed25519::PublicKey::try_from_bytes(bytes).ok()?;
        Some(Self::from_key(&key))
    }

    /// The channel's public key.
    pub fn public_key(&self) -> ed25519::PublicKey {
        // Every ChannelId is built from a valid key (see constructors), so this cannot fail.
        #[allow(clippy::expect_used)]
        ed25519::PublicKey::try_from_bytes(&self.0).expect("ChannelId holds a valid key")
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode(&self.0))
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({self})")
    }
}

impl FromStr for ChannelId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = decode(s, "channel id")?;
        Self::from_slice(&bytes).ok_or(IdParseError { what: "channel id" })
    }
}

/// A post's identity: SHA-256 of its signed body.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PostId(pub [u8; 32]);

impl PostId {
    /// The id of the post whose encoded body is `body`.
    pub fn of_body(body: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(body).into())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode(&self.0))
    }
}

impl fmt::Debug for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostId({self})")
    }
}

impl FromStr for PostId {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode(s, "post id").map(Self)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn channel_id_round_trips_and_rejects_garbage() {
        let key = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&key.public());
        let s = id.to_string();
        assert_eq!(s.len(), 52);
        assert_eq!(s, s.to_ascii_lowercase());
        assert_eq!(s.parse::<ChannelId>().expect("parse"), id);
        assert_eq!(
            s.to_ascii_uppercase().parse::<ChannelId>().expect("upper"),
            id
        );
        assert!("".parse::<ChannelId>().is_err());
        assert!("zz".parse::<ChannelId>().is_err());
        assert!(s[..51].parse::<ChannelId>().is_err());
        assert!(format!("{s}a").parse::<ChannelId>().is_err());
    }
}
