//! Files from other peers: manifests (checked against their content id and the size limit),
//! file requests and responses, and private attachments' sealed segments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use samizdat_node::files::{Cid, Manifest, sealed};
use samizdat_proto::v1;
use sha2::Digest;

fuzz_target!(|data: &[u8]| {
    // With the right cid the fuzzer gets past the hash check into the field checks.
    let cid = Cid(sha2::Sha256::digest(data).into());
    if let Ok(m) = Manifest::verify(&cid, data, 1 << 32) {
        assert!(m.chunks.len() as u64 * u64::from(m.chunk_size) >= m.size);
        for i in 0..m.chunks.len().min(4) {
            assert!(m.chunk_len(i) <= m.chunk_size as usize);
        }
    }
    let _ = Manifest::verify(&Cid([0; 32]), data, 1 << 20);
    let _ = v1::FileRequest::decode(data);
    let _ = v1::FileResponse::decode(data);
    if data.len() > 2 {
        let _ = sealed::open_segment(&[5; 32], u64::from(data[0]), u64::from(data[1]), &data[2..]);
    }
    let _ = sealed::plain_size(u64::from_le_bytes(
        data.get(..8)
            .and_then(|b| b.try_into().ok())
            .unwrap_or([0; 8]),
    ));
});
