//! Public broadcast channels: identifiers, the signed manifest, admin certificates, posts and
//! their verification, and invite links. Pure logic, no I/O.

#![warn(clippy::arithmetic_side_effects)]

mod admins;
mod cert;
pub mod chain;
pub mod gate;
mod id;
mod invite;
mod manifest;
mod post;

pub use admins::{Admins, MAX_ADMINS};
pub use cert::{AdminCert, AdminRevocation, CERT_LIFETIME_MS, CertError, peek_cert};
pub use chain::ChainCheck;
pub use id::{ChannelId, IdParseError, PostId};
pub use invite::{Invite, InviteError, MAX_LINK_ADDRS};
pub use manifest::{Manifest, ManifestError};
pub use post::{
    Author, FileRef, MAX_HEADER_BYTES, MAX_POST_BYTES, MAX_TEXT_BYTES, Post, PostDraft, PostError,
    PostHeader,
};

/// The gossipsub topic of a channel.
pub fn topic(channel: &ChannelId) -> libp2p::gossipsub::IdentTopic {
    libp2p::gossipsub::IdentTopic::new(format!("samizdat/channel/{channel}"))
}

/// The Kademlia key under which followers of a channel announce themselves as providers.
pub fn provider_key(channel: &ChannelId) -> libp2p::kad::RecordKey {
    libp2p::kad::RecordKey::new(&format!("/samizdat/channel-followers/{channel}"))
}

/// The Kademlia key of a channel's signed manifest record.
pub fn manifest_key(channel: &ChannelId) -> libp2p::kad::RecordKey {
    samizdat_net::records::manifest::manifest_key(channel.as_bytes())
}

/// The `ChannelMessage` carrying an encoded `SignedPost`, built without re-encoding the post
/// (field 1, length-delimited).
pub fn post_envelope(signed_post: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(signed_post.len().saturating_add(6));
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(signed_post.len() as u64, &mut out);
    out.extend_from_slice(signed_post);
    out
}

/// Domain-separated signatures (DOMAIN || body), shared with the network layer's records.
pub(crate) use samizdat_net::records::signed::{sign, verify};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use prost::Message;
    use samizdat_proto::v1;

    #[test]
    fn post_envelope_is_a_channel_message() {
        let sp = v1::SignedPost {
            body: vec![1; 300],
            signature: vec![2; 64],
            cert: None,
            content: vec![3; 40],
        };
        let wire = sp.encode_to_vec();
        let expected = v1::ChannelMessage {
            kind: Some(v1::channel_message::Kind::Post(sp)),
        }
        .encode_to_vec();
        assert_eq!(super::post_envelope(&wire), expected);
    }
}
