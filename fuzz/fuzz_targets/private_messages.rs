//! Direct-message and group input from peers: envelopes, KeyPackage records, MLS messages
//! (Welcomes, application messages, commits), group headers and sealed invitations.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use samizdat_node::mls::MlsClient;
use samizdat_node::dm::{keypackage_key, mailbox::check_envelope, open_keypackage_record};
use samizdat_proto::v1;

fn client() -> &'static (MlsClient, Vec<u8>) {
    static C: OnceLock<(MlsClient, Vec<u8>)> = OnceLock::new();
    C.get_or_init(|| {
        let key = libp2p::identity::ed25519::Keypair::from(
            libp2p::identity::ed25519::SecretKey::try_from_bytes([3u8; 32]).expect("key"),
        );
        let c = MlsClient::new(key, None).expect("client");
        let g = c.group_create_with_id(&[4u8; 16]).expect("group");
        (c, g)
    })
}

fuzz_target!(|data: &[u8]| {
    let now = 1_800_000_000_000;
    if let Ok(env) = v1::DmEnvelope::decode(data) {
        let _ = check_envelope(&env, now);
    }
    let peer = libp2p::PeerId::from_bytes(&[
        0, 36, 8, 1, 18, 32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
        21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    ])
    .unwrap_or(libp2p::PeerId::random());
    let _ = open_keypackage_record(&keypackage_key(&peer), data);
    let (c, g) = client();
    let _ = c.receive(&peer, data);
    let _ = c.group_receive(g, &peer, data);
    let _ = c.group_join(&peer, data);
    let _ = samizdat_node::mls::group::header(data);
    let _ = MlsClient::group_of(data);
    let _ = samizdat_node::group::open_invite(&[6; 32], g, data);
});
