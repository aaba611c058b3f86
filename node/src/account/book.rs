//! The device lists a node knows: its own account's and its contacts'. Answers who a peer is
//! (which account, revoked or not) and whom a message to a person goes to. I/O-free.

#![warn(clippy::arithmetic_side_effects)]

use std::collections::HashMap;

use libp2p::PeerId;

use super::{AccountError, AccountId, DeviceList};

/// Most accounts of others kept (contacts and their devices).
pub const MAX_ACCOUNTS: usize = 10_000;

/// What taking a list changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Not newer than the list held.
    Unchanged,
    /// Newer (or the first of this account): devices added and revoked since the list held.
    Changed {
        /// Devices that are new.
        added: Vec<PeerId>,
        /// Devices revoked since.
        revoked: Vec<PeerId>,
    },
}

/// The device lists this node holds.
#[derive(Debug)]
pub struct Accounts {
    me: PeerId,
    own: Option<DeviceList>,
    others: HashMap<AccountId, DeviceList>,
    /// Every device (current or revoked) of every list held, to its account.
    by_device: HashMap<PeerId, AccountId>,
    /// Every device any held list revokes: refused whatever other list names it.
    revoked: std::collections::HashSet<PeerId>,
}

impl Accounts {
    /// The lists of node `me`: its own account's (None until it founds or joins one) and
    /// others'.
    pub fn new(me: PeerId, own: Option<DeviceList>, others: Vec<DeviceList>) -> Self {
        let mut a = Self {
            me,
            own: None,
            others: HashMap::new(),
            by_device: HashMap::new(),
            revoked: Default::default(),
        };
        if let Some(own) = own {
            a.index(&own);
            a.own = Some(own);
        }
        for l in others {
            if a.own.as_ref().is_some_and(|o| o.account() == l.account()) {
                continue;
            }
            a.index(&l);
            a.others.insert(l.account().clone(), l);
        }
        a
    }

    fn index(&mut self, l: &DeviceList) {
        for d in l.devices() {
            // A node consents to one account; were it listed by two, the first one held stays.
            self.by_device
                .entry(d.peer_id)
                .or_insert_with(|| l.account().clone());
        }
        for r in l.revoked() {
            self.by_device
                .entry(*r)
                .or_insert_with(|| l.account().clone());
            self.revoked.insert(*r);
        }
    }

    /// This node's own account's list.
    pub fn own(&self) -> Option<&DeviceList> {
        self.own.as_ref()
    }

    /// Whether this node has been revoked from its own account.
    pub fn revoked_me(&self) -> bool {
        self.own.as_ref().is_some_and(|o| o.is_revoked(&self.me))
    }

    /// This node's other current devices.
    pub fn my_other_devices(&self) -> Vec<PeerId> {
        if self.revoked_me() {
            return Vec::new();
        }
        self.own
            .iter()
            .flat_map(|o| o.devices())
            .map(|d| d.peer_id)
            .filter(|p| *p != self.me)
            .collect()
    }

    /// Whether `peer` is another current device of this node's account.
    pub fn is_my_device(&self, peer: &PeerId) -> bool {
        *peer != self.me
            && !self.revoked_me()
            && self.own.as_ref().is_some_and(|o| o.is_device(peer))
    }

    /// The list of the account `target` names: an account id (in peer-id form) or any of its
    /// devices, current or revoked.
    pub fn resolve(&self, target: &PeerId) -> Option<&DeviceList> {
        let by_id = AccountId::from_peer_id(target).and_then(|a| self.list(&a));
        by_id.or_else(|| self.by_device.get(target).and_then(|a| self.list(a)))
    }

    /// An account's list by its id.
    pub fn list(&self, account: &AccountId) -> Option<&DeviceList> {
        match &self.own {
            Some(o) if o.account() == account => Some(o),
            _ => self.others.get(account),
        }
    }

    /// Whether `peer` is a device some held list revokes (nothing it sends is taken), even if
    /// another list names it too (a seized device's key can consent to a second account).
    pub fn is_revoked(&self, peer: &PeerId) -> bool {
        self.revoked.contains(peer)
    }

    /// Whether a list of an account not held yet may be taken from `sender`: it names the
    /// sender as a current device, and the sender is not a device of any account held (so one
    /// peer vouches for one account at most).
    pub fn may_vouch(&self, sender: &PeerId, list: &DeviceList) -> bool {
        list.is_device(sender) && !self.by_device.contains_key(sender)
    }

    /// The devices a message to `target` goes to (never this node): every current device of
    /// its account when the account is known, else `target` itself.
    pub fn recipients(&self, target: &PeerId) -> Vec<PeerId> {
        match self.resolve(target) {
            Some(l) => l
                .devices()
                .iter()
                .map(|d| d.peer_id)
                .filter(|p| *p != self.me)
                .collect(),
            None if *target != self.me => vec![*target],
            None => Vec::new(),
        }
    }

    /// Every peer id a conversation with `target` may be stored under: the account's id and
    /// all its devices, current and revoked (their old messages stay in the history).
    pub fn conversation_peers(&self, target: &PeerId) -> Vec<PeerId> {
        let Some(l) = self.resolve(target) else {
            return vec![*target];
        };
        let mut peers: Vec<PeerId> = l.account().as_peer_id().into_iter().collect();
        peers.extend(l.devices().iter().map(|d| d.peer_id));
        peers.extend(l.revoked().iter().copied());
        if !peers.contains(target) {
            peers.push(*target);
        }
        peers
    }

    /// The id a conversation with `peer` is shown under: its account's, when known.
    pub fn display_id(&self, peer: &PeerId) -> PeerId {
        self.resolve(peer)
            .filter(|l| self.own.as_ref().map(|o| o.account()) != Some(l.account()))
            .and_then(|l| l.account().as_peer_id())
            .unwrap_or(*peer)
    }

    /// Takes a newer list of this node's own account (`list` must name this node, current or
    /// revoked).
    pub fn take_own(&mut self, list: DeviceList) -> Result<Taken, AccountError> {
        if !list.is_device(&self.me) && !list.is_revoked(&self.me) {
            return Err(AccountError::NotAllowed("the list does not name this node"));
        }
        let taken = match &self.own {
            None => Taken::Changed {
                added: list.devices().iter().map(|d| d.peer_id).collect(),
                revoked: list.revoked().to_vec(),
            },
            Some(held) => diff(held, &list)?,
        };
        if taken != Taken::Unchanged {
            self.index(&list);
            self.others.remove(list.account());
            self.own = Some(list);
        }
        Ok(taken)
    }

    /// Takes another account's list. A list of an account not held yet is taken only when
    /// `vouched` (it came from one of its devices over an authenticated connection, or in a
    /// contact card the user added).
    pub fn take(&mut self, list: DeviceList, vouched: bool) -> Result<Taken, AccountError> {
        if self
            .own
            .as_ref()
            .is_some_and(|o| o.account() == list.account())
        {
            return self.take_own(list);
        }
        let taken = match self.others.get(list.account()) {
            Some(held) => diff(held, &list)?,
            None if !vouched => return Ok(Taken::Unchanged),
            None if list
                .revoked()
                .iter()
                .chain(list.devices().iter().map(|d| &d.peer_id))
                .any(|p| self.revoked.contains(p) && !list.is_revoked(p)) =>
            {
                // Lists a device another account revoked: a seized device's key at work.
                return Err(AccountError::NotAllowed(
                    "lists a device another account revoked",
                ));
            }
            None => {
                if self.others.len() >= MAX_ACCOUNTS {
                    return Err(AccountError::NotAllowed("too many accounts held"));
                }
                Taken::Changed {
                    added: list.devices().iter().map(|d| d.peer_id).collect(),
                    revoked: list.revoked().to_vec(),
                }
            }
        };
        if taken != Taken::Unchanged {
            self.index(&list);
            self.others.insert(list.account().clone(), list);
        }
        Ok(taken)
    }
}

fn diff(held: &DeviceList, newer: &DeviceList) -> Result<Taken, AccountError> {
    if !held.superseded_by(newer)? {
        return Ok(Taken::Unchanged);
    }
    Ok(Taken::Changed {
        added: newer
            .devices()
            .iter()
            .map(|d| d.peer_id)
            .filter(|p| !held.is_device(p))
            .collect(),
        revoked: newer
            .revoked()
            .iter()
            .copied()
            .filter(|p| !held.is_revoked(p))
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::super::consent;
    use super::*;
    use crate::identity::peer_id_of;
    use libp2p::identity::ed25519;

    fn key() -> (ed25519::Keypair, PeerId) {
        let k = ed25519::Keypair::generate();
        let p = peer_id_of(&k.public());
        (k, p)
    }

    fn link(l: &DeviceList, by: &ed25519::Keypair, new: &ed25519::Keypair) -> DeviceList {
        l.link(
            by,
            peer_id_of(&new.public()),
            consent(new, l.account()),
            "d",
            2,
        )
        .expect("link")
    }

    #[test]
    fn messages_to_a_person_reach_all_their_devices_and_mine() {
        let (a1, pa1) = key();
        let (a2, pa2) = key();
        let (b1, pb1) = key();
        let (b2, pb2) = key();
        let mine = link(&DeviceList::found(&a1, "a1", 1).expect("a"), &a1, &a2);
        let theirs0 = DeviceList::found(&b1, "b1", 1).expect("b");
        let theirs = link(&theirs0, &b1, &b2);
        let mut book = Accounts::new(pa1, Some(mine.clone()), vec![]);
        // Unvouched strangers' lists are not taken.
        assert_eq!(book.take(theirs0.clone(), false), Ok(Taken::Unchanged));
        assert!(book.resolve(&pb1).is_none());
        assert_eq!(book.recipients(&pb1), vec![pb1]);
        assert!(matches!(
            book.take(theirs0, true),
            Ok(Taken::Changed { .. })
        ));
        // Their newer list adds b2, without a new contact exchange.
        assert_eq!(
            book.take(theirs.clone(), false),
            Ok(Taken::Changed {
                added: vec![pb2],
                revoked: vec![]
            })
        );
        let account = theirs.account().as_peer_id().expect("peer form");
        for target in [pb1, pb2, account] {
            let mut r = book.recipients(&target);
            r.sort();
            let mut want = vec![pb1, pb2];
            want.sort();
            assert_eq!(r, want);
            assert_eq!(book.display_id(&target), account);
        }
        assert_eq!(book.my_other_devices(), vec![pa2]);
        assert!(book.is_my_device(&pa2) && !book.is_my_device(&pa1) && !book.is_my_device(&pb1));
        // Revoking b2: it no longer receives, and is known as revoked.
        let revoked = theirs.revoke(&b1, &pb2, 3).expect("revoke");
        assert!(matches!(
            book.take(revoked, false),
            Ok(Taken::Changed { .. })
        ));
        assert_eq!(book.recipients(&account), vec![pb1]);
        assert!(book.is_revoked(&pb2) && !book.is_revoked(&pb1));
        assert!(book.conversation_peers(&pb1).contains(&pb2));
    }

    #[test]
    fn one_peer_vouches_for_one_account_and_a_revocation_holds_across_lists() {
        let (a1, pa1) = key();
        let (x1, px1) = key();
        let mine = DeviceList::found(&a1, "a1", 1).expect("a");
        let mut book = Accounts::new(pa1, Some(mine), vec![]);
        let (b1, pb1) = key();
        let theirs = DeviceList::found(&b1, "b1", 1).expect("b");
        assert!(book.may_vouch(&pb1, &theirs));
        assert!(matches!(
            book.take(theirs.clone(), true),
            Ok(Taken::Changed { .. })
        ));
        // b1 is now a device of a held account: it vouches for no second one.
        let second = DeviceList::found(&b1, "b1 again", 1).expect("b2");
        assert!(!book.may_vouch(&pb1, &second));
        // Nor does a list vouch for a sender it does not name as a current device.
        let other = DeviceList::found(&x1, "x", 1).expect("x");
        assert!(!book.may_vouch(&pb1, &other));
        assert!(book.may_vouch(&px1, &other));
        // b1's account revokes its second device; a seized copy of that device's key that
        // founds an account of its own is still refused.
        let (b2, pb2) = key();
        let two = link(&theirs, &b1, &b2);
        assert!(book.take(two.clone(), false).is_ok());
        assert!(
            book.take(two.revoke(&b1, &pb2, 3).expect("revoke"), false)
                .is_ok()
        );
        assert!(book.is_revoked(&pb2));
        let stolen = DeviceList::found(&b2, "seized", 4).expect("stolen");
        assert!(book.take(stolen, true).is_err());
        assert!(book.is_revoked(&pb2));
    }

    #[test]
    fn a_revoked_device_learns_it_and_sends_to_nobody_of_its_own() {
        let (a1, pa1) = key();
        let (a2, pa2) = key();
        let l = link(&DeviceList::found(&a1, "a1", 1).expect("a"), &a1, &a2);
        let mut book = Accounts::new(pa2, Some(l.clone()), vec![]);
        assert_eq!(book.my_other_devices(), vec![pa1]);
        let r = l.revoke(&a1, &pa2, 3).expect("revoke");
        assert!(matches!(book.take_own(r), Ok(Taken::Changed { .. })));
        assert!(book.revoked_me());
        assert!(book.my_other_devices().is_empty());
        // A list of another account is never taken as one's own.
        let other = DeviceList::found(&key().0, "x", 1).expect("other");
        assert!(book.take_own(other).is_err());
    }
}
