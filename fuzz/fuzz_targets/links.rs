//! Everything a user pastes: invite links, contact links, device links, and the ids the CLI and
//! API parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_node::channel::{ChannelId, Invite};
use samizdat_node::contact::ContactCard;
use samizdat_node::files::Cid;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(inv) = s.parse::<Invite>() {
        // A link that parses prints back to a link that parses to the same channel.
        let again: Invite = inv.to_string().parse().expect("printed link parses");
        assert_eq!(again.channel(), inv.channel());
    }
    if let Ok(card) = s.parse::<ContactCard>() {
        card.verify().expect("a parsed card is verified");
    }
    if let Ok(t) = s.parse::<samizdat_node::account::link::Ticket>() {
        let again: samizdat_node::account::link::Ticket =
            t.to_string().parse().expect("printed device link parses");
        assert_eq!(again.peer_id, t.peer_id);
    }
    let _ = s.parse::<samizdat_node::account::AccountId>();
    let _ = s.parse::<ChannelId>();
    let _ = s.parse::<Cid>();
    let _ = s.parse::<libp2p::PeerId>();
    let _ = s.parse::<samizdat_node::group::GroupId>();
    let _ = samizdat_node::files::sealed::parse_key(s);
});
