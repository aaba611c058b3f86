//! Every protobuf message of `proto/`: decoding arbitrary bytes never panics, and whatever
//! decodes re-encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use samizdat_proto::v1;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(m) = M::decode(data) {
        let again = M::decode(m.encode_to_vec().as_slice()).expect("re-encoded message decodes");
        assert_eq!(m, again);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    match which % 48 {
        0 => round_trip::<v1::ChannelManifestBody>(data),
        1 => round_trip::<v1::ChannelManifest>(data),
        2 => round_trip::<v1::AdminCertBody>(data),
        3 => round_trip::<v1::AdminCert>(data),
        4 => round_trip::<v1::FileRef>(data),
        5 => round_trip::<v1::PostBody>(data),
        6 => round_trip::<v1::SignedPost>(data),
        7 => round_trip::<v1::ChannelMessage>(data),
        8 => round_trip::<v1::ChannelInvite>(data),
        9 => round_trip::<v1::SyncRequest>(data),
        10 => round_trip::<v1::SyncHeadsRequest>(data),
        11 => round_trip::<v1::AuthorHead>(data),
        12 => round_trip::<v1::SyncHeadsResponse>(data),
        13 => round_trip::<v1::SyncRangeRequest>(data),
        14 => round_trip::<v1::SyncRangeResponse>(data),
        15 => round_trip::<v1::SyncResponse>(data),
        16 => round_trip::<v1::FileManifest>(data),
        17 => round_trip::<v1::FileRequest>(data),
        18 => round_trip::<v1::FileResponse>(data),
        19 => round_trip::<v1::PeerExchangeRequest>(data),
        20 => round_trip::<v1::PeerInfo>(data),
        21 => round_trip::<v1::PeerExchangeResponse>(data),
        22 => round_trip::<v1::ContactCard>(data),
        23 => round_trip::<v1::StoredContact>(data),
        24 => round_trip::<v1::KeyPackageRecordBody>(data),
        25 => round_trip::<v1::KeyPackageRecord>(data),
        26 => round_trip::<v1::DmEnvelope>(data),
        27 => round_trip::<v1::DmBody>(data),
        28 => round_trip::<v1::Attachment>(data),
        29 => round_trip::<v1::DmRequest>(data),
        30 => round_trip::<v1::DmDeliver>(data),
        31 => round_trip::<v1::DmDeposit>(data),
        32 => round_trip::<v1::DmCollect>(data),
        33 => round_trip::<v1::GroupSync>(data),
        34 => round_trip::<v1::DmResponse>(data),
        35 => round_trip::<v1::MlsStateEntry>(data),
        36 => round_trip::<v1::MlsState>(data),
        37 => round_trip::<v1::GroupInvite>(data),
        38 => round_trip::<v1::GroupWire>(data),
        39 => round_trip::<v1::StoredGroupMessage>(data),
        40 => round_trip::<v1::DeviceLinkRequest>(data),
        41 => round_trip::<v1::DeviceListPush>(data),
        42 => round_trip::<v1::DeviceLinkGrant>(data),
        43 => round_trip::<v1::DeviceEntry>(data),
        44 => round_trip::<v1::DeviceListBody>(data),
        45 => round_trip::<v1::SignedDeviceList>(data),
        46 => {
            round_trip::<v1::DeviceList>(data);
            // A list that checks prints back to one that checks the same.
            if let Ok(l) = samizdat_node::account::DeviceList::decode(data) {
                let again = samizdat_node::account::DeviceList::decode(&l.encode())
                    .expect("a checked list re-encodes to a checked list");
                assert_eq!(again, l);
            }
        }
        _ => round_trip::<v1::StoredDm>(data),
    }
});
