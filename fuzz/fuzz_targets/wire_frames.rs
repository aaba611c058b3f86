//! The length-prefixed frames of every request-response protocol (sync, files, direct
//! messages and groups, peer exchange): a frame reader fed arbitrary bytes returns a frame
//! within its limit or an error, and the frame's decoding never panics.
#![no_main]

use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use samizdat_node::net::wire::read_frame;
use samizdat_proto::v1;

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    // Small limits so the fuzzer reaches the over-limit paths too.
    let max = [16usize, 1024, 64 * 1024][usize::from(which >> 4) % 3];
    let Ok(frame) = block_on(read_frame(&mut Cursor::new(data), max)) else {
        return;
    };
    assert!(frame.len() <= max, "frame over its limit");
    match which % 8 {
        0 => drop(v1::SyncRequest::decode(frame.as_slice())),
        1 => drop(v1::SyncResponse::decode(frame.as_slice())),
        2 => drop(v1::FileRequest::decode(frame.as_slice())),
        3 => drop(v1::FileResponse::decode(frame.as_slice())),
        4 => drop(v1::DmRequest::decode(frame.as_slice())),
        5 => drop(v1::DmResponse::decode(frame.as_slice())),
        6 => drop(v1::PeerExchangeRequest::decode(frame.as_slice())),
        _ => drop(v1::PeerExchangeResponse::decode(frame.as_slice())),
    }
});
