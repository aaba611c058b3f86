//! What arrives on a channel's gossip topic and in DHT records: signed posts, manifests and
//! admin certificates. Verification of arbitrary bytes returns an error, never panics, and
//! never accepts a post whose signature it did not check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use samizdat_node::channel::{AdminCert, ChannelId, Manifest, Post, PostHeader};
use samizdat_proto::v1;

fuzz_target!(|data: &[u8]| {
    let now = 1_800_000_000_000;
    let channel = libp2p::identity::ed25519::SecretKey::try_from_bytes([7u8; 32])
        .ok()
        .map(|k| ChannelId::from_key(&libp2p::identity::ed25519::Keypair::from(k).public()));
    if let Ok(post) = Post::verify(data, channel.as_ref(), now) {
        // Anything accepted re-verifies from its own wire bytes (no state smuggled in).
        let again = Post::verify(&post.wire, channel.as_ref(), now).expect("re-verifies");
        assert_eq!(again.id, post.id);
    }
    let _ = Post::verify(data, None, now);
    if let Some(ch) = channel.as_ref()
        && let Ok(h) = PostHeader::verify(data, ch, now)
    {
        // A header verified is exactly its bytes, and never a whole post.
        assert_eq!(h.wire, data);
        assert!(Post::verify(data, Some(ch), now).is_err());
    }
    if let Ok(m) = v1::ChannelManifest::decode(data) {
        let _ = Manifest::verify(m);
    }
    let _ = Manifest::from_bytes(data);
    if let (Ok(c), Some(ch)) = (v1::AdminCert::decode(data), channel) {
        let _ = AdminCert::verify(c, &ch);
    }
    if let Ok(msg) = v1::ChannelMessage::decode(data) {
        let _ = msg.encoded_len();
    }
});
