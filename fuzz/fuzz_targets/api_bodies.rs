//! The local API's request bodies (JSON), as any local client may send them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_node::api;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<api::CreateChannelRequest>(data);
    let _ = serde_json::from_slice::<api::FollowRequest>(data);
    let _ = serde_json::from_slice::<api::PostRequest>(data);
    if let Ok(r) = serde_json::from_slice::<api::DmRequest>(data)
        && let Some(a) = r.attachment
    {
        let _ = a.to_wire();
    }
    let _ = serde_json::from_slice::<api::CreateGroupRequest>(data);
    let _ = serde_json::from_slice::<api::InviteRequest>(data);
    let _ = serde_json::from_slice::<api::AdminRequest>(data);
    let _ = serde_json::from_slice::<api::AddContactRequest>(data);
    let _ = serde_json::from_slice::<api::DialRequest>(data);
});
