//! How the envelopes waiting for one peer get there: delivered straight over a connection,
//! the peer dialed while it is away, and deposited with mailbox holders once it has been away
//! a while. I/O-free: the caller passes the time, whether the peer is connected and how far the
//! disk has caught up, and carries out the [`Step`].

use std::time::{Duration, Instant};

/// Redial an unreachable peer at most this often.
pub const REDIAL_EVERY: Duration = Duration::from_secs(20);
/// Deposit with mailbox holders once a peer has been unreachable this long.
pub const DEPOSIT_AFTER: Duration = Duration::from_secs(3);
/// And again this often while it stays away (holders may have gone).
pub const REDEPOSIT_EVERY: Duration = Duration::from_secs(300);
/// After a failed delivery, wait this long.
pub const FAILED_BACKOFF: Duration = Duration::from_secs(10);
/// After a `busy` answer (too much of ours waits there for a Welcome), wait this long.
pub const BUSY_BACKOFF: Duration = Duration::from_secs(30);

/// What to do now for a peer's envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing now (a delivery in flight, a backoff, or nothing due).
    Wait,
    /// Something queued is not on disk yet: ask again once it is.
    AwaitDisk,
    /// Send them over the open connection (then [`Route::sent`]).
    Deliver,
    /// The peer is away: dial it, and/or deposit with mailbox holders.
    Reach {
        /// Dial the peer.
        dial: bool,
        /// Deposit with mailbox holders.
        deposit: bool,
    },
}

/// The delivery state of the envelopes waiting for one peer.
#[derive(Debug, Clone)]
pub struct Route {
    /// Since when the peer has been unreachable (or the first envelope was queued).
    since: Instant,
    in_flight: bool,
    retry_at: Option<Instant>,
    last_dial: Option<Instant>,
    last_deposit: Option<Instant>,
    /// The store's write count when the newest envelope was queued: none leaves before the
    /// disk has it (and the MLS state it was encrypted with).
    queued_seq: u64,
    /// A [`Step::AwaitDisk`] was given and not yet answered.
    awaiting_disk: bool,
}

impl Route {
    /// Envelopes began to wait at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            since: now,
            in_flight: false,
            retry_at: None,
            last_dial: None,
            last_deposit: None,
            queued_seq: 0,
            awaiting_disk: false,
        }
    }

    /// An envelope was queued; the store had counted `written` writes with it.
    pub fn queued(&mut self, written: u64) {
        self.queued_seq = self.queued_seq.max(written);
    }

    /// What to do at `now`, given whether the peer is connected and how many writes the
    /// store has made durable. Notes the dials and deposits it asks for.
    pub fn step(&mut self, now: Instant, connected: bool, durable: u64) -> Step {
        if self.in_flight || self.retry_at.is_some_and(|t| t > now) {
            return Step::Wait;
        }
        if self.queued_seq > durable {
            if self.awaiting_disk {
                return Step::Wait;
            }
            self.awaiting_disk = true;
            return Step::AwaitDisk;
        }
        self.awaiting_disk = false;
        if connected {
            return Step::Deliver;
        }
        let due = |t: Option<Instant>, every: Duration| {
            t.is_none_or(|t| now.saturating_duration_since(t) >= every)
        };
        let dial = due(self.last_dial, REDIAL_EVERY);
        let deposit = now.saturating_duration_since(self.since) >= DEPOSIT_AFTER
            && due(self.last_deposit, REDEPOSIT_EVERY);
        if dial {
            self.last_dial = Some(now);
        }
        if deposit {
            self.last_deposit = Some(now);
        }
        if dial || deposit {
            Step::Reach { dial, deposit }
        } else {
            Step::Wait
        }
    }

    /// The disk caught up after a [`Step::AwaitDisk`].
    pub fn disk_ready(&mut self) {
        self.awaiting_disk = false;
    }

    /// A delivery request went out.
    pub fn sent(&mut self) {
        self.in_flight = true;
    }

    /// The delivery failed (no answer, connection lost).
    pub fn failed(&mut self, now: Instant) {
        self.in_flight = false;
        self.retry_at = now.checked_add(FAILED_BACKOFF);
    }

    /// The peer answered; `busy` if it took nothing more for now.
    pub fn answered(&mut self, now: Instant, busy: bool) {
        self.in_flight = false;
        // It was reachable just now: deposits wait until it has been away a while again.
        self.since = now;
        self.last_deposit = None;
        if busy {
            self.retry_at = now.checked_add(BUSY_BACKOFF);
        }
    }

    /// The peer connected: try at once.
    pub fn connected(&mut self) {
        self.last_dial = None;
        self.retry_at = None;
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn nothing_leaves_before_the_disk_has_it() {
        let t0 = Instant::now();
        let mut r = Route::new(t0);
        r.queued(7);
        assert_eq!(r.step(t0, true, 6), Step::AwaitDisk);
        // Asked once: more attempts before the flush do not ask again.
        assert_eq!(r.step(t0, true, 6), Step::Wait);
        r.disk_ready();
        assert_eq!(r.step(t0, true, 7), Step::Deliver);
    }

    #[test]
    fn one_delivery_at_a_time_and_backoffs_after_failure_and_busy() {
        let t0 = Instant::now();
        let mut r = Route::new(t0);
        assert_eq!(r.step(t0, true, 0), Step::Deliver);
        r.sent();
        assert_eq!(r.step(t0, true, 0), Step::Wait, "one in flight");
        r.failed(t0);
        assert_eq!(r.step(t0 + 9 * S, true, 0), Step::Wait);
        assert_eq!(r.step(t0 + FAILED_BACKOFF, true, 0), Step::Deliver);
        r.sent();
        let t1 = t0 + 20 * S;
        r.answered(t1, true);
        assert_eq!(r.step(t1 + 29 * S, true, 0), Step::Wait);
        assert_eq!(r.step(t1 + BUSY_BACKOFF, true, 0), Step::Deliver);
        // A connection clears the backoff.
        r.failed(t1);
        r.connected();
        assert_eq!(r.step(t1, true, 0), Step::Deliver);
    }

    #[test]
    fn an_absent_peer_is_redialed_and_reached_through_mailboxes() {
        let t0 = Instant::now();
        let mut r = Route::new(t0);
        assert_eq!(
            r.step(t0, false, 0),
            Step::Reach {
                dial: true,
                deposit: false
            }
        );
        assert_eq!(r.step(t0 + S, false, 0), Step::Wait);
        assert_eq!(
            r.step(t0 + DEPOSIT_AFTER, false, 0),
            Step::Reach {
                dial: false,
                deposit: true
            }
        );
        assert_eq!(
            r.step(t0 + REDIAL_EVERY, false, 0),
            Step::Reach {
                dial: true,
                deposit: false
            }
        );
        // Deposited again only after REDEPOSIT_EVERY.
        let later = t0 + DEPOSIT_AFTER + REDEPOSIT_EVERY;
        assert_eq!(
            r.step(later, false, 0),
            Step::Reach {
                dial: true,
                deposit: true
            }
        );
        // Once it answers, it must be away a while again before mail is deposited.
        r.answered(later, false);
        assert_eq!(r.step(later + S, false, 0), Step::Wait);
        assert!(matches!(
            r.step(later + REDIAL_EVERY, false, 0),
            Step::Reach {
                dial: true,
                deposit: true
            }
        ));
    }
}
