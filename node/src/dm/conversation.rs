//! A direct conversation's bookkeeping: its MLS groups, who commits, message numbering and
//! times, when keys are renewed, and whether it is still a message request. No I/O: the
//! engine stores it and does the MLS operations it calls for.

use libp2p::PeerId;

/// A conversation's committer renews its keys after this many messages sent on it.
pub const UPDATE_EVERY: u64 = 50;

/// A conversation with one peer, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conversation {
    /// The peer, as text.
    pub peer: String,
    /// Its MLS groups (two when both sides started one at once); the smallest id is the one
    /// both sides send on.
    pub groups: Vec<Vec<u8>>,
    /// Groups this node created (it is their committer).
    pub created: Vec<Vec<u8>>,
    /// The number of this node's last message.
    pub next_seq: u64,
    /// When this node last sent something (times only go forward).
    pub last_sent_ms: u64,
    /// Messages this node sealed since its keys were last renewed.
    pub sent_since_update: u64,
    /// Started by a peer this node does not know (not a contact, never accepted, never
    /// written to): a message request. Its messages are kept but not shown or announced, and
    /// nothing they mention is fetched, until the user accepts.
    #[serde(default)]
    pub request: bool,
}

impl Conversation {
    /// A new conversation with `peer`.
    pub fn new(peer: &PeerId) -> Self {
        Self {
            peer: peer.to_string(),
            ..Default::default()
        }
    }

    /// The group both sides send on (the smallest id, so a crossed start converges).
    pub fn send_group(&self) -> Option<&Vec<u8>> {
        self.groups.iter().min()
    }

    /// Whether this node commits in `group` (it created it).
    pub fn is_committer(&self, group: &[u8]) -> bool {
        self.created.iter().any(|g| g == group)
    }

    /// Whether this node has written to the peer (so the peer is known, unless a request).
    pub fn written_to(&self) -> bool {
        self.next_seq > 0 && !self.request
    }

    /// The send time of this node's next envelope: now, but always after the last one (the
    /// peer reads in time order; a clock stepping back must not reorder).
    pub fn next_sent_ms(&mut self, now_ms: u64) -> u64 {
        self.last_sent_ms = now_ms.max(self.last_sent_ms.saturating_add(1));
        self.last_sent_ms
    }

    /// The time and number of this node's next message.
    pub fn next_message(&mut self, now_ms: u64) -> (u64, u64) {
        let sent_ms = self.next_sent_ms(now_ms);
        self.next_seq = self.next_seq.saturating_add(1);
        (sent_ms, self.next_seq)
    }

    /// This node started `group` with the peer (it is its committer).
    pub fn started(&mut self, peer: &PeerId, group: Vec<u8>) {
        self.peer = peer.to_string();
        self.created.push(group.clone());
        self.groups.push(group);
    }

    /// This node joined the peer's `group` (its Welcome arrived). A first contact from a
    /// stranger becomes a message request.
    pub fn joined(&mut self, peer: &PeerId, group: Vec<u8>, stranger: bool) {
        if self.groups.is_empty() && self.next_seq == 0 && stranger {
            self.request = true;
        }
        self.peer = peer.to_string();
        if !self.groups.contains(&group) {
            self.groups.push(group);
        }
    }

    /// A message was sealed in `group`: whether this node should now renew its keys. The
    /// committer commits its renewal at once; the other side proposes only while the
    /// committer is connected to commit it (MLS sends nothing over a pending proposal).
    pub fn sealed(&mut self, group: &[u8], committer_connected: bool) -> bool {
        self.sent_since_update = self.sent_since_update.saturating_add(1);
        self.sent_since_update >= UPDATE_EVERY && (self.is_committer(group) || committer_connected)
    }

    /// Keys renewed (or renewal proposed).
    pub fn renewed(&mut self) {
        self.sent_since_update = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_only_go_forward_and_messages_are_numbered() {
        let mut c = Conversation::new(&PeerId::random());
        assert_eq!(c.next_message(1_000), (1_000, 1));
        assert_eq!(c.next_message(1_000), (1_001, 2), "same millisecond");
        assert_eq!(c.next_message(500), (1_002, 3), "the clock stepped back");
        assert_eq!(
            c.next_sent_ms(9_000),
            9_000,
            "a Welcome takes a time, not a number"
        );
        assert_eq!(c.next_message(u64::MAX), (u64::MAX, 4));
        assert_eq!(c.next_message(0), (u64::MAX, 5), "saturates, never wraps");
    }

    #[test]
    fn crossed_starts_converge_on_the_smallest_group() {
        let (me, peer) = (PeerId::random(), PeerId::random());
        let mut mine = Conversation::new(&peer);
        mine.started(&peer, vec![9; 16]);
        mine.joined(&peer, vec![3; 16], false);
        mine.joined(&peer, vec![3; 16], false);
        assert_eq!(mine.groups.len(), 2, "a Welcome twice is one group");
        let mut theirs = Conversation::new(&me);
        theirs.started(&me, vec![3; 16]);
        theirs.joined(&me, vec![9; 16], false);
        assert_eq!(mine.send_group(), theirs.send_group());
        assert!(mine.is_committer(&[9; 16]) && !mine.is_committer(&[3; 16]));
        assert!(!mine.request, "this node wrote first");
    }

    #[test]
    fn a_strangers_first_contact_is_a_request_and_a_known_conversation_is_not() {
        let peer = PeerId::random();
        let mut c = Conversation::default();
        c.joined(&peer, vec![1; 16], true);
        assert!(c.request && !c.written_to());
        let mut answered = Conversation::new(&peer);
        answered.next_message(1);
        answered.joined(&peer, vec![1; 16], true);
        assert!(
            !answered.request && answered.written_to(),
            "this node wrote to it first"
        );
    }

    #[test]
    fn keys_are_renewed_every_fifty_messages_by_whoever_may() {
        let peer = PeerId::random();
        let mut c = Conversation::new(&peer);
        c.started(&peer, vec![1; 16]);
        c.joined(&peer, vec![0; 16], false);
        let due = |c: &mut Conversation, group: &[u8], connected| {
            (1..=UPDATE_EVERY)
                .map(|_| c.sealed(group, connected))
                .filter(|d| *d)
                .count()
        };
        assert_eq!(
            due(&mut c, &[1; 16], false),
            1,
            "the committer renews alone"
        );
        c.renewed();
        assert_eq!(
            due(&mut c, &[0; 16], false),
            0,
            "the other side waits for the committer"
        );
        assert!(c.sealed(&[0; 16], true), "and proposes once it is there");
        c.renewed();
        assert_eq!(c.sent_since_update, 0);
    }
}
