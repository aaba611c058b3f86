//! Acting only on what is on disk. The swarm task writes direct and group messages, MLS state,
//! channel and contact records without waiting for the disk (a flush there would stall every
//! peer for a disk round trip); what must not happen before those writes are durable (an
//! answer to the user, an `accepted` to a peer, a ciphertext leaving after the ratchet moved)
//! waits here until the writer thread's flush covers them. I/O-free: write counts come from
//! the store ([`crate::store::Store::write_seq`]), flushes are asked by the caller.

use std::collections::VecDeque;

/// Actions waiting for the writes made before them to be flushed.
pub(crate) struct Durable<A> {
    /// (writes that must be durable first, action), in the order they were made: write
    /// counts only grow, so the front is always the first to become ready.
    waiting: VecDeque<(u64, A)>,
    /// The write count the last flush asked for covers.
    asked: u64,
}

impl<A> Default for Durable<A> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            asked: 0,
        }
    }
}

impl<A> Durable<A> {
    /// `action` to run once the first `written` writes are durable (it comes out of
    /// [`Durable::ready`], after every action pushed before it).
    pub fn push(&mut self, written: u64, action: A) {
        self.waiting.push_back((written, action));
    }

    /// Whether a flush must be asked for (something waits for writes no asked flush covers);
    /// call [`Durable::asked`] once it is.
    pub fn needs_flush(&self) -> bool {
        self.waiting.back().is_some_and(|(w, _)| *w > self.asked)
    }

    /// A flush was asked when the store counted `written` writes: it covers them all.
    pub fn asked(&mut self, written: u64) {
        self.asked = self.asked.max(written);
    }

    /// The actions whose writes the store now reports durable, in order.
    pub fn ready(&mut self, durable: u64) -> Vec<A> {
        let mut out = Vec::new();
        while self.waiting.front().is_some_and(|(w, _)| *w <= durable) {
            if let Some((_, a)) = self.waiting.pop_front() {
                out.push(a);
            }
        }
        out
    }

    /// An asked flush is done and the store now counts `durable` writes durable: if it did
    /// not cover what waits (it failed), the next [`Durable::needs_flush`] asks again.
    pub fn flush_done(&mut self, durable: u64) {
        if self.waiting.front().is_some_and(|(w, _)| *w > durable) {
            self.asked = self.asked.min(durable);
        }
    }

    /// How many actions wait.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_unflushed_runs_at_once() {
        let mut d = Durable::default();
        d.push(3, "reply");
        assert_eq!(d.ready(3), vec!["reply"]);
        assert!(!d.needs_flush(), "nothing waits: no flush to ask");
        assert_eq!(d.len(), 0);
        d.push(0, "first");
        assert_eq!(d.ready(0), vec!["first"]);
    }

    #[test]
    fn waits_for_the_flush_that_covers_its_writes() {
        let mut d = Durable::default();
        d.push(5, "accepted");
        assert!(d.ready(4).is_empty(), "durable up to 4 only");
        assert!(d.needs_flush());
        d.asked(5);
        assert!(!d.needs_flush(), "one flush asked covers it");
        // A flush that began before the fifth write does not release it.
        assert!(d.ready(4).is_empty());
        assert_eq!(d.ready(5), vec!["accepted"]);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn later_writes_need_another_flush_and_keep_order() {
        let mut d = Durable::default();
        d.push(2, "a");
        d.asked(2);
        d.push(2, "b");
        assert!(
            !d.needs_flush(),
            "same writes: the asked flush covers b too"
        );
        d.push(7, "c");
        assert!(d.needs_flush(), "c's writes came after the flush was asked");
        d.asked(7);
        assert_eq!(d.ready(3), vec!["a", "b"]);
        d.push(7, "d");
        // d's writes are durable already, but it comes out after c, never before.
        assert_eq!(d.ready(9), vec!["c", "d"]);
    }

    #[test]
    fn a_failed_flush_is_asked_again() {
        let mut d = Durable::default();
        d.push(4, "reply");
        d.asked(4);
        assert!(!d.needs_flush());
        // The flush failed: the store still counts 1 durable.
        assert!(d.ready(1).is_empty());
        d.flush_done(1);
        assert!(d.needs_flush(), "ask again");
        d.asked(4);
        assert_eq!(d.ready(4), vec!["reply"]);
    }
}
