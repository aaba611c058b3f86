//! Whether a group's removal commits have reached its members: the epochs members are known
//! to be in (from the catch-up requests they send, which name their epoch, and from their
//! messages this node decrypted), and the removals this node asked for or saw coming.
//! No I/O; the engine feeds it.

use std::collections::{HashMap, HashSet};

use libp2p::PeerId;

/// Removals remembered per group (at the bound, the oldest that every member holds is
/// forgotten first, else the oldest).
pub const MAX_REMOVALS: usize = 16;

/// One removal this node follows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Removal {
    device: PeerId,
    /// The first epoch without the device, once this node holds it.
    epoch: Option<u64>,
}

/// What a group's members are known to have reached.
#[derive(Debug, Default)]
pub struct Reach {
    /// Newest epoch each member is known to be in. Only members; a claim about itself is all a
    /// member can make, so a false one misreports only its own row.
    epochs: HashMap<PeerId, u64>,
    removals: Vec<Removal>,
}

/// How far one removal has gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovalReach {
    /// The device removed.
    pub device: PeerId,
    /// The removal commit is made and this node holds it.
    pub removed: bool,
    /// Members (other than this node) known to be in the epoch without the device.
    pub reached: Vec<PeerId>,
    /// Members not known to be there yet.
    pub pending: Vec<PeerId>,
}

impl Reach {
    /// A member is known to be in `epoch` (or later).
    pub fn note_epoch(&mut self, peer: PeerId, epoch: u64, members: &HashSet<PeerId>) {
        if !members.contains(&peer) {
            return;
        }
        let e = self.epochs.entry(peer).or_insert(epoch);
        *e = (*e).max(epoch);
    }

    /// This node follows the removal of `device`; `epoch` is the first epoch without it when
    /// this node made the commit, `None` while another member (the owner) is to make it.
    /// (A member that links and revokes devices without end pushes out finished removals
    /// first, not one still on its way.)
    pub fn removing(
        &mut self,
        device: PeerId,
        epoch: Option<u64>,
        members: &HashSet<PeerId>,
        me: &PeerId,
    ) {
        if let Some(r) = self.removals.iter_mut().find(|r| r.device == device) {
            r.epoch = r.epoch.or(epoch);
            return;
        }
        if self.removals.len() >= MAX_REMOVALS {
            let done = self.removals.iter().position(|r| {
                let reach = self.one(r, members, me);
                reach.removed && reach.pending.is_empty()
            });
            self.removals.remove(done.unwrap_or(0));
        }
        self.removals.push(Removal { device, epoch });
    }

    /// The group moved to `epoch` with these members: removals waiting for their commit that
    /// it carried are placed, and former members' epochs forgotten. No members: this node
    /// was removed (or knows nothing yet), which places nothing.
    pub fn members_changed(&mut self, members: &HashSet<PeerId>, epoch: u64) {
        if members.is_empty() {
            return;
        }
        self.epochs.retain(|p, _| members.contains(p));
        for r in &mut self.removals {
            if r.epoch.is_none() && !members.contains(&r.device) {
                r.epoch = Some(epoch);
            }
        }
    }

    /// Each followed removal, with who is known to have it.
    pub fn report(&self, members: &HashSet<PeerId>, me: &PeerId) -> Vec<RemovalReach> {
        self.removals
            .iter()
            .map(|r| self.one(r, members, me))
            .collect()
    }

    /// The removal of `device`, if this node follows it.
    pub fn of(
        &self,
        device: &PeerId,
        members: &HashSet<PeerId>,
        me: &PeerId,
    ) -> Option<RemovalReach> {
        self.removals
            .iter()
            .find(|r| r.device == *device)
            .map(|r| self.one(r, members, me))
    }

    fn one(&self, r: &Removal, members: &HashSet<PeerId>, me: &PeerId) -> RemovalReach {
        let removed = r.epoch.is_some() && !members.contains(&r.device);
        let mut others: Vec<PeerId> = members
            .iter()
            .filter(|p| *p != me && **p != r.device)
            .copied()
            .collect();
        others.sort();
        let (reached, pending) = others.into_iter().partition(|p| {
            removed
                && r.epoch
                    .zip(self.epochs.get(p))
                    .is_some_and(|(need, have)| *have >= need)
        });
        RemovalReach {
            device: r.device,
            removed,
            reached,
            pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn a_removal_reaches_the_members_that_report_its_epoch_and_no_one_else() {
        let p = peers(4);
        let (me, phone, bob, carol) = (p[0], p[1], p[2], p[3]);
        let mut members: HashSet<PeerId> = p.iter().copied().collect();
        let mut reach = Reach::default();
        reach.note_epoch(bob, 3, &members);
        // The owner (this node) commits the removal: epoch 3 → 4.
        members.remove(&phone);
        reach.removing(phone, Some(4), &members, &me);
        reach.members_changed(&members, 4);
        let r = reach.of(&phone, &members, &me).expect("followed");
        assert!(r.removed);
        assert!(r.reached.is_empty(), "epoch 3 is before the removal");
        assert_eq!(r.pending.len(), 2);
        assert!(!r.pending.contains(&me) && !r.pending.contains(&phone));
        // Bob catches up naming epoch 4; a stranger's and the removed device's claims count
        // for nothing.
        reach.note_epoch(bob, 4, &members);
        reach.note_epoch(PeerId::random(), 9, &members);
        reach.note_epoch(phone, 9, &members);
        let r = reach.of(&phone, &members, &me).expect("followed");
        assert_eq!(r.reached, vec![bob]);
        assert_eq!(r.pending, vec![carol]);
        // An older claim does not move a member back.
        reach.note_epoch(bob, 1, &members);
        reach.note_epoch(carol, u64::MAX, &members);
        let r = reach.of(&phone, &members, &me).expect("followed");
        assert_eq!(r.reached.len(), 2);
        assert!(r.pending.is_empty());
    }

    #[test]
    fn a_removal_another_member_commits_is_placed_when_its_commit_arrives() {
        let p = peers(3);
        let (me, phone, bob) = (p[0], p[1], p[2]);
        let mut members: HashSet<PeerId> = p.iter().copied().collect();
        let mut reach = Reach::default();
        reach.removing(phone, None, &members, &me);
        reach.note_epoch(bob, 7, &members);
        let r = reach.of(&phone, &members, &me).expect("followed");
        assert!(!r.removed, "no commit yet");
        assert!(r.reached.is_empty());
        assert_eq!(r.pending, vec![bob]);
        // A commit that keeps the phone places nothing.
        reach.members_changed(&members, 8);
        assert!(!reach.of(&phone, &members, &me).expect("followed").removed);
        members.remove(&phone);
        reach.members_changed(&members, 9);
        let r = reach.of(&phone, &members, &me).expect("followed");
        assert!(r.removed);
        assert_eq!(r.pending, vec![bob], "bob was seen at 7, not 9");
        reach.note_epoch(bob, 9, &members);
        assert_eq!(
            reach.of(&phone, &members, &me).expect("followed").reached,
            vec![bob]
        );
    }

    #[test]
    fn removals_are_bounded_and_former_members_forgotten() {
        let me = PeerId::random();
        let members: HashSet<PeerId> = [me].into_iter().collect();
        let mut reach = Reach::default();
        let devices = peers(MAX_REMOVALS + 3);
        for d in &devices {
            reach.removing(*d, Some(1), &members, &me);
            reach.removing(*d, None, &members, &me); // again: one entry, its epoch kept
        }
        let report = reach.report(&members, &me);
        assert_eq!(report.len(), MAX_REMOVALS);
        assert_eq!(report[0].device, devices[3], "the oldest forgotten first");
        assert!(report.iter().all(|r| r.removed));
        // This node is removed from the group: its empty view places nothing.
        let mut waiting = Reach::default();
        let phone = PeerId::random();
        waiting.removing(phone, None, &members, &me);
        waiting.members_changed(&HashSet::new(), 9);
        assert!(!waiting.of(&phone, &members, &me).expect("followed").removed);
        let bob = PeerId::random();
        let with_bob: HashSet<PeerId> = [me, bob].into_iter().collect();
        reach.note_epoch(bob, 5, &with_bob);
        reach.members_changed(&members, 6);
        reach.note_epoch(bob, 5, &members);
        assert!(reach.epochs.is_empty());
    }

    #[test]
    fn at_the_bound_a_finished_removal_goes_before_one_on_its_way() {
        let p = peers(3);
        let (me, bob, mine) = (p[0], p[1], p[2]);
        let members: HashSet<PeerId> = [me, bob].into_iter().collect();
        let mut reach = Reach::default();
        // This account's device: removed at epoch 100, Bob not there yet.
        reach.removing(mine, Some(100), &members, &me);
        reach.note_epoch(bob, 50, &members);
        // A member links and revokes devices of its own without end; Bob holds each removal.
        let churn = peers(MAX_REMOVALS * 2);
        for (i, d) in churn.iter().enumerate() {
            reach.removing(*d, Some(10 + i as u64 % 30), &members, &me);
        }
        let r = reach.of(&mine, &members, &me).expect("still followed");
        assert_eq!(r.pending, vec![bob]);
        assert_eq!(reach.report(&members, &me).len(), MAX_REMOVALS);
    }
}
