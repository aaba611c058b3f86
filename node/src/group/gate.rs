//! Which group messages reach the MLS engine: the checks made on what a peer hands over
//! (gossip neighbour, catch-up server, envelope sender) before anything is decrypted, from
//! the message's clear header and this node's standing in the group. I/O-free: the engine
//! reads the store and the group's state, this decides.

use super::{GroupId, MAX_GROUP_MESSAGE_BYTES};
use crate::dm::DmError;
use crate::mls::group::Header;

/// How many epochs ahead of this node's a message may be and still wait for its commits
/// (further ahead, this node is too far behind to read it anyway; catch-up brings it).
pub const MAX_EPOCHS_AHEAD: u64 = 16;

/// This node's standing in a group, as far as admission goes.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    /// Still a member (a removed node keeps what it read and reads nothing new).
    pub active: bool,
    /// The epoch it joined in.
    pub join_epoch: u64,
    /// The epoch it is in.
    pub epoch: u64,
}

/// What to do with a group message.
#[derive(Debug)]
pub enum Gate {
    /// Hand it to MLS.
    Process,
    /// Drop it quietly: a duplicate, or unreadable by design (sent before this node joined,
    /// older than the keys kept, too far ahead, or this node was removed). Not malice.
    Drop,
    /// Refuse it: whoever handed it over sent something no honest member sends.
    Refuse(DmError),
}

/// A group message's admission.
pub struct Arrival<'a> {
    /// The group it came for.
    pub group: &'a GroupId,
    /// Its MLS bytes' length.
    pub len: usize,
    /// Processed already (its id is in the seen table).
    pub seen: bool,
    /// This node's standing (None: no such group here).
    pub standing: Option<Standing>,
    /// Its clear header (None: not an MLS private message).
    pub header: Option<&'a Header>,
}

/// Decides a group message's admission (the order of the checks is the cheapest first, and a
/// duplicate is never held against anyone).
pub fn admit(a: &Arrival<'_>) -> Gate {
    if a.len > MAX_GROUP_MESSAGE_BYTES {
        return Gate::Refuse(DmError::NotAllowed("group message too large"));
    }
    if a.seen {
        return Gate::Drop;
    }
    let Some(s) = a.standing else {
        return Gate::Refuse(DmError::UnknownGroup);
    };
    if !s.active {
        return Gate::Drop;
    }
    let Some(h) = a.header else {
        return Gate::Refuse(DmError::Malformed);
    };
    if h.group != a.group.as_bytes() {
        return Gate::Refuse(DmError::NotAllowed("message of another group"));
    }
    // The epoch is the sender's claim, up to u64::MAX: every comparison saturates.
    let kept = crate::mls::MAX_PAST_EPOCHS as u64;
    if h.epoch < s.join_epoch
        || h.epoch.saturating_add(kept) < s.epoch
        || h.epoch > s.epoch.saturating_add(MAX_EPOCHS_AHEAD)
    {
        return Gate::Drop;
    }
    Gate::Process
}

/// A message's send time as logged: the sender's claim, never in the future, so no one can
/// push other members' catch-up (which starts from the newest time held) past what they missed.
pub fn log_time(claimed_ms: u64, now_ms: u64) -> u64 {
    claimed_ms.min(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: GroupId = GroupId([5; 16]);

    fn header(epoch: u64) -> Header {
        Header {
            group: G.as_bytes().to_vec(),
            epoch,
            commit: false,
        }
    }

    fn arrival<'a>(h: Option<&'a Header>, standing: Option<Standing>) -> Arrival<'a> {
        Arrival {
            group: &G,
            len: 1_000,
            seen: false,
            standing,
            header: h,
        }
    }

    const MEMBER: Standing = Standing {
        active: true,
        join_epoch: 3,
        epoch: 10,
    };

    #[test]
    fn a_current_message_is_processed_and_a_duplicate_dropped_whatever_else_it_claims() {
        let h = header(10);
        assert!(matches!(
            admit(&arrival(Some(&h), Some(MEMBER))),
            Gate::Process
        ));
        let mut again = arrival(None, None);
        again.seen = true;
        assert!(
            matches!(admit(&again), Gate::Drop),
            "a duplicate costs nobody"
        );
    }

    #[test]
    fn what_no_honest_member_sends_is_refused() {
        let h = header(10);
        let mut big = arrival(Some(&h), Some(MEMBER));
        big.len = MAX_GROUP_MESSAGE_BYTES + 1;
        big.seen = true;
        assert!(
            matches!(admit(&big), Gate::Refuse(_)),
            "size first, before any lookup"
        );
        assert!(matches!(
            admit(&arrival(None, Some(MEMBER))),
            Gate::Refuse(DmError::Malformed)
        ));
        assert!(matches!(
            admit(&arrival(Some(&h), None)),
            Gate::Refuse(DmError::UnknownGroup)
        ));
        let other = Header {
            group: vec![6; 16],
            ..header(10)
        };
        assert!(matches!(
            admit(&arrival(Some(&other), Some(MEMBER))),
            Gate::Refuse(DmError::NotAllowed(_))
        ));
    }

    #[test]
    fn unreadable_epochs_are_dropped_without_blame_and_claims_cannot_overflow() {
        for (epoch, what) in [
            (2, "before this node joined"),
            (5, "older than the kept keys"),
            (27, "too far ahead"),
            (u64::MAX, "the largest claim"),
        ] {
            let h = header(epoch);
            assert!(
                matches!(admit(&arrival(Some(&h), Some(MEMBER))), Gate::Drop),
                "{what}"
            );
        }
        for epoch in [6, 9, 11, 26] {
            let h = header(epoch);
            assert!(
                matches!(admit(&arrival(Some(&h), Some(MEMBER))), Gate::Process),
                "epoch {epoch} is within the window"
            );
        }
        let removed = Standing {
            active: false,
            ..MEMBER
        };
        let h = header(10);
        assert!(matches!(
            admit(&arrival(Some(&h), Some(removed))),
            Gate::Drop
        ));
        let huge = Standing {
            epoch: u64::MAX,
            ..MEMBER
        };
        let h = header(u64::MAX);
        assert!(matches!(
            admit(&arrival(Some(&h), Some(huge))),
            Gate::Process
        ));
    }

    #[test]
    fn a_claimed_time_in_the_future_is_logged_as_now() {
        assert_eq!(log_time(5_000, 1_000), 1_000);
        assert_eq!(log_time(500, 1_000), 500);
    }
}
