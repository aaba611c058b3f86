//! Invite links: `samizdat://channel/<base32>` carrying the signed manifest and a few bootstrap
//! addresses, so that a link alone is enough to join the network and the channel.

#![warn(clippy::arithmetic_side_effects)]

use std::fmt;
use std::str::FromStr;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use prost::Message;
use samizdat_proto::v1;

use super::{ChannelId, Manifest, ManifestError};

const PREFIX: &str = "samizdat://channel/";
/// Most bootstrap addresses a link carries (keeps links and QR codes small).
pub const MAX_LINK_ADDRS: usize = 8;
/// Longest link accepted (bytes of text).
const MAX_LINK_LEN: usize = 8 * 1024;

/// Why a link was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InviteError {
    /// Not a `samizdat://channel/` link, or not base32.
    #[error("not a samizdat channel link (expected samizdat://channel/...)")]
    NotALink,
    /// The payload is not a ChannelInvite.
    #[error("channel link is corrupt")]
    Malformed,
    /// The manifest inside does not verify.
    #[error("channel link: {0}")]
    Manifest(#[from] ManifestError),
}

/// A decoded, verified invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The channel's signed manifest.
    pub manifest: Manifest,
    /// Where to enter the network: multiaddrs ending in /p2p/<peer id>.
    pub bootstrap: Vec<Multiaddr>,
}

impl Invite {
    /// The channel it invites to.
    pub fn channel(&self) -> ChannelId {
        self.manifest.channel
    }
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = v1::ChannelInvite {
            manifest: Some(self.manifest.signed.clone()),
            bootstrap: self
                .bootstrap
                .iter()
                .take(MAX_LINK_ADDRS)
                .map(|a| a.to_vec())
                .collect(),
        };
        f.write_str(&crate::link::encode(PREFIX, &msg.encode_to_vec()))
    }
}

impl FromStr for Invite {
    type Err = InviteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = crate::link::decode(PREFIX, s, MAX_LINK_LEN).map_err(|e| match e {
            crate::link::Shape::TooLong => InviteError::Malformed,
            crate::link::Shape::NotALink => InviteError::NotALink,
        })?;
        let msg =
            v1::ChannelInvite::decode(bytes.as_slice()).map_err(|_| InviteError::Malformed)?;
        let manifest = Manifest::verify(msg.manifest.ok_or(InviteError::Malformed)?)?;
        // Addresses that do not parse or do not name a peer are skipped, not fatal: the link
        // still identifies the channel, and the node has other ways in.
        let bootstrap = msg
            .bootstrap
            .into_iter()
            .take(MAX_LINK_ADDRS)
            .filter_map(|b| Multiaddr::try_from(b).ok())
            // A fronted address's name must survive DNS resolution (TLS sends it as SNI).
            .map(|a| samizdat_net::web::keep_name(&a))
            .filter(|a| matches!(a.iter().last(), Some(Protocol::P2p(_))))
            .collect();
        Ok(Self {
            manifest,
            bootstrap,
        })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use libp2p::identity::ed25519;

    #[test]
    fn link_round_trip_and_garbage() {
        let key = ed25519::Keypair::generate();
        let manifest = Manifest::sign(&key, "news", "", 1, 1).expect("sign");
        let addr: Multiaddr =
            "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .parse()
                .expect("addr");
        let inv = Invite {
            manifest,
            bootstrap: vec![addr],
        };
        let link = inv.to_string();
        assert!(link.starts_with(PREFIX));
        assert_eq!(link.parse::<Invite>().expect("parse"), inv);
        assert_eq!("http://x".parse::<Invite>(), Err(InviteError::NotALink));
        assert_eq!(
            "samizdat://channel/!!".parse::<Invite>(),
            Err(InviteError::NotALink)
        );
        assert_eq!(
            "samizdat://channel/aaaa".parse::<Invite>(),
            Err(InviteError::Malformed)
        );
        // Flip one character of the payload: either it no longer decodes or the signature fails.
        let mut chars: Vec<char> = link.chars().collect();
        let i = PREFIX.len() + 40;
        chars[i] = if chars[i] == 'a' { 'b' } else { 'a' };
        let tampered: String = chars.into_iter().collect();
        assert!(tampered.parse::<Invite>().is_err());
    }
}
