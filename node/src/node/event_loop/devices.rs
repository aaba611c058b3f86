//! Accounts and devices in the event loop: linking a new device (both sides), revoking one,
//! keeping the device lists of this node's account and its contacts' accounts, pushing this
//! account's list to the peers that should know it, and what a change means for the groups
//! and channels this node owns. The rules are in [`crate::account`]; this is the I/O.

#![warn(clippy::arithmetic_side_effects)]

use super::*;
use crate::account::book::{Accounts, Taken};
use crate::account::link::{Pending, Ticket};
use crate::account::{AccountId, DeviceList, consent};
use crate::group::GroupId;
use crate::node::views::{DeviceLinkView, DeviceView, RevokeGroupView, RevokeView};

/// How often a new device asks the linking device again while linking has not completed.
const ASK_EVERY: Duration = Duration::from_secs(3);
/// Recent direct and group messages a new device receives (their age).
const HISTORY_MS: u64 = 7 * 24 * 3600 * 1000;
/// Most messages (direct and group together), contacts and channels in one grant.
const GRANT_ITEMS: usize = 1000;
/// Most bytes of direct and group messages in one grant (the frame limit is 3 MiB).
const GRANT_MESSAGE_BYTES: usize = 1536 * 1024;
/// Most bytes of contacts and channel links in one grant (with the messages and a list of
/// at most [`crate::account::MAX_LIST_BYTES`], well under the 3 MiB frame).
const GRANT_LIST_BYTES: usize = 768 * 1024;

/// A node joining an account by a device link.
struct Joining {
    ticket: Ticket,
    name: String,
    asked: Option<Instant>,
    in_flight: bool,
}

/// Device state of the event loop.
pub(crate) struct Devices {
    pub(super) book: Accounts,
    pending: Pending,
    joining: Option<Joining>,
    /// The version of this account's list each peer was sent since start (a failed push is
    /// forgotten, so it is sent again).
    pushed: HashMap<PeerId, u64>,
    /// When connected peers were last checked for a push they lack.
    last_push_sweep: Option<Instant>,
    /// The peers that are contacts, read from the store when needed (None: read again).
    contacts: std::cell::RefCell<Option<std::collections::HashSet<PeerId>>>,
    /// The code of each device linked by this one since start, for `device list`.
    codes: HashMap<PeerId, String>,
    /// Pushes each peer may make (each costs a decode and at least one signature check).
    push_limiter: crate::net::rate_limit::RateLimiter,
    /// First lists each peer may have checked whole (up to 256 versions of signatures: a
    /// contact that made fresh accounts without end would otherwise buy the loop's time).
    first_list_limiter: crate::net::rate_limit::RateLimiter,
}

/// A stored joining link: name length (1 byte), name, ticket.
pub(crate) fn encode_joining(ticket: &Ticket, name: &str) -> Vec<u8> {
    let name = name.as_bytes();
    let len = u8::try_from(name.len().min(crate::account::MAX_NAME_BYTES)).unwrap_or(0);
    let mut v = vec![len];
    v.extend_from_slice(name.get(..usize::from(len)).unwrap_or_default());
    v.extend_from_slice(&ticket.encode());
    v
}

fn decode_joining(b: &[u8]) -> Option<(Ticket, String)> {
    let (&len, rest) = b.split_first()?;
    let name = rest.get(..usize::from(len))?;
    let ticket = Ticket::decode(rest.get(usize::from(len)..)?).ok()?;
    Some((ticket, String::from_utf8_lossy(name).into_owned()))
}

/// Records, in a new node's store, the device link it joins its account by.
pub fn set_joining(store: &dyn Store, link: &str, name: &str) -> Result<Ticket, NodeError> {
    let ticket: Ticket = link
        .parse()
        .map_err(|e: crate::account::link::LinkError| NodeError::InvalidInput(e.to_string()))?;
    store
        .private()
        .set_joining(Some(&encode_joining(&ticket, name)))?;
    Ok(ticket)
}

/// This machine's name, for naming a device when the user did not.
pub fn default_device_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .take(crate::account::MAX_NAME_BYTES)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "device".to_string())
}

impl Devices {
    /// Loads the lists; a node that has no account and joins none founds its own.
    pub(crate) fn open(store: &Arc<dyn Store>, identity: &Identity) -> Result<Self, NodeError> {
        let me = identity.peer_id();
        let records = store.private();
        let mut lists = Vec::new();
        for bytes in records.device_lists()? {
            match DeviceList::decode(&bytes) {
                Ok(l) => lists.push(l),
                Err(e) => tracing::warn!("a stored device list does not verify, dropped: {e}"),
            }
        }
        let own_id = records
            .own_account()?
            .and_then(|b| AccountId::from_bytes(&b));
        let (own, others): (Vec<DeviceList>, Vec<DeviceList>) = lists
            .into_iter()
            .partition(|l| Some(l.account()) == own_id.as_ref());
        let joining = records
            .joining()?
            .and_then(|b| decode_joining(&b))
            .map(|(ticket, name)| Joining {
                ticket,
                name,
                asked: None,
                in_flight: false,
            });
        let mut own = own.into_iter().next();
        if own.is_none() && joining.is_none() {
            // Every node is a device of an account: one of its own until it is linked.
            let list = DeviceList::found(identity.signing(), &default_device_name(), now_ms())
                .map_err(|e| NodeError::Internal(format!("founding the account: {e}")))?;
            records.put_device_list(list.account().as_bytes(), &list.encode())?;
            records.set_own_account(list.account().as_bytes())?;
            tracing::info!(account = %list.account(), "account founded");
            own = Some(list);
        }
        Ok(Self {
            book: Accounts::new(me, own, others),
            pending: Pending::default(),
            joining,
            pushed: HashMap::new(),
            last_push_sweep: None,
            contacts: Default::default(),
            codes: HashMap::new(),
            // Honest pushes are rare: one per list change, again after a failure, and on
            // each new connection to a peer lacking the version.
            push_limiter: crate::net::rate_limit::RateLimiter::new(1.0, 10.0),
            first_list_limiter: crate::net::rate_limit::RateLimiter::new(1.0 / 60.0, 3.0),
        })
    }

    /// This node's account, once it has one.
    pub(crate) fn account(&self) -> Option<&AccountId> {
        self.book.own().map(DeviceList::account)
    }

    /// The contacts changed: read them again when next needed.
    pub(crate) fn contacts_changed(&self) {
        self.contacts.replace(None);
    }
}

/// How often connected peers are checked for a push of this account's list they lack.
const PUSH_SWEEP_EVERY: Duration = Duration::from_secs(10);

impl EventLoop {
    /// `device link`: a one-time link for a new device.
    pub(crate) fn device_link(&mut self) -> Result<DeviceLinkView, NodeError> {
        let own = self.own_list_for_change()?;
        let account = own.account().clone();
        let (secret, expires_ms) = self.devices.pending.issue(now_ms());
        let ticket = Ticket {
            peer_id: *self.swarm.local_peer_id(),
            addrs: self
                .own_addrs()
                .into_iter()
                .take(8)
                .map(|a| {
                    a.with(libp2p::multiaddr::Protocol::P2p(
                        *self.swarm.local_peer_id(),
                    ))
                })
                .collect(),
            secret,
            expires_ms,
            account,
        };
        Ok(DeviceLinkView {
            link: ticket.to_string(),
            expires_at: expires_ms,
            qr_svg: None,
        })
    }

    fn own_list_for_change(&self) -> Result<DeviceList, NodeError> {
        if self.devices.book.revoked_me() {
            return Err(NodeError::NotAllowed(
                "this device was revoked from its account".into(),
            ));
        }
        self.devices.book.own().cloned().ok_or_else(|| {
            NodeError::NotAllowed("this device is still being linked to its account".into())
        })
    }

    /// `device list`.
    pub(crate) fn device_list(&self) -> Vec<DeviceView> {
        let me = *self.swarm.local_peer_id();
        let Some(own) = self.devices.book.own() else {
            return Vec::new();
        };
        own.devices()
            .iter()
            .map(|d| DeviceView {
                peer_id: d.peer_id.to_string(),
                name: d.name.clone(),
                linked_at: d.linked_ms,
                this: d.peer_id == me,
                connected: d.peer_id != me && self.swarm.is_connected(&d.peer_id),
                code: self.devices.codes.get(&d.peer_id).cloned(),
            })
            .collect()
    }

    /// `device revoke`: a new list without the device, removals from the groups this node
    /// owns, its channel certificates withdrawn; pushed to every device and contact.
    pub(crate) fn device_revoke(&mut self, peer: PeerId) -> Result<RevokeView, NodeError> {
        let own = self.own_list_for_change()?;
        let next = own
            .revoke(self.identity.signing(), &peer, now_ms())
            .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
        let groups = self.take_list(next, true, None)?;
        tracing::info!(%peer, "device revoked");
        Ok(RevokeView {
            revoked: peer.to_string(),
            version: self.devices.book.own().map_or(0, DeviceList::version),
            groups,
        })
    }

    /// Takes a list (own or another account's) and acts on what changed: stored, groups and
    /// channels this node owns updated, this account's list pushed. Returns what happened in
    /// each group a revoked device was in.
    fn take_list(
        &mut self,
        list: DeviceList,
        vouched: bool,
        from: Option<PeerId>,
    ) -> Result<Vec<RevokeGroupView>, NodeError> {
        let own = self
            .devices
            .book
            .own()
            .is_some_and(|o| o.account() == list.account());
        let account = list.account().clone();
        let version = list.version();
        let bytes = list.encode();
        let taken = if own {
            self.devices.book.take_own(list)
        } else {
            self.devices.book.take(list, vouched)
        }
        .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
        let Taken::Changed { added, revoked } = taken else {
            return Ok(Vec::new());
        };
        self.store
            .private()
            .put_device_list(account.as_bytes(), &bytes)?;
        tracing::info!(%account, version, added = added.len(), revoked = revoked.len(), ?from, "device list updated");
        for p in &revoked {
            // Nothing more goes to it (what it was already sent, or holders keep, stays).
            self.dm_forget_outbox(p);
        }
        let groups = self.apply_device_changes(&account, own, &added, &revoked);
        if own {
            if self.devices.book.revoked_me() {
                tracing::warn!("this device was revoked from its account");
            }
            self.push_own_list();
        }
        let _ = self.events.send(Event::DevicesChanged {
            account: account.to_string(),
        });
        Ok(groups)
    }

    /// Groups and channels this node owns follow an account's devices.
    fn apply_device_changes(
        &mut self,
        account: &AccountId,
        own: bool,
        added: &[PeerId],
        revoked: &[PeerId],
    ) -> Vec<RevokeGroupView> {
        let me = *self.swarm.local_peer_id();
        let Some(list) = self.devices.book.list(account).cloned() else {
            return Vec::new();
        };
        let of_account = |p: &PeerId| list.is_device(p) || list.is_revoked(p);
        let mut report = Vec::new();
        let groups: Vec<(GroupId, PeerId, bool)> = self
            .groups
            .state
            .groups
            .iter()
            .filter(|(_, s)| s.record.active && s.members.iter().any(of_account))
            .map(|(g, s)| (*g, s.owner, s.members.contains(&me)))
            .collect();
        for (group, owner, _) in groups {
            let members = self
                .groups
                .state
                .groups
                .get(&group)
                .map(|s| s.members.clone())
                .unwrap_or_default();
            if owner == me {
                for p in added.iter().filter(|p| **p != me && !members.contains(p)) {
                    let (tx, _rx) = oneshot::channel();
                    self.group_invite(group, *p, tx);
                }
            }
            for p in revoked.iter().filter(|p| members.contains(p)) {
                let note = if owner == me {
                    match self.group_remove(group, *p) {
                        Ok(_) => "removal commit sent to the group".to_string(),
                        Err(e) => e.to_string(),
                    }
                } else {
                    format!("the group's owner {owner} removes it when it learns of the revocation")
                };
                self.group_follow_removal(&group, *p);
                if let Some(mut view) = self.removal_view(&group, p) {
                    view.note = note;
                    report.push(view);
                }
            }
        }
        if own {
            let owned: Vec<ChannelId> = self
                .channels
                .by_id
                .iter()
                .filter(|(_, s)| s.record.role == crate::store::Role::Owner)
                .map(|(id, _)| *id)
                .collect();
            for id in owned {
                for p in added.iter().filter(|p| **p != me) {
                    if let Err(e) = self.add_admin(&id, *p) {
                        tracing::debug!(channel = %id, "device not made an admin: {e}");
                    }
                }
                for p in revoked {
                    if let Err(e) = self.remove_admin(&id, *p) {
                        tracing::debug!(channel = %id, "revoked device's certificate: {e}");
                    }
                }
            }
        }
        report
    }

    /// How far the removal of `device` from `group` has gone, if this node follows it.
    fn removal_view(&self, group: &GroupId, device: &PeerId) -> Option<RevokeGroupView> {
        self.groups
            .removal(group, device, self.swarm.local_peer_id())
    }

    /// `device removals`: every removal of a revoked device this node follows, and which
    /// members are known to have it.
    pub(crate) fn device_removals(&self) -> Vec<RevokeGroupView> {
        self.groups.removals(self.swarm.local_peer_id())
    }

    /// Sends this account's list to every connected peer that should know it and has not got
    /// this version yet: this account's other devices and its contacts' devices.
    pub(super) fn push_own_list(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            self.push_own_list_to(p);
        }
    }

    fn push_own_list_to(&mut self, peer: PeerId) {
        let Some(own) = self.devices.book.own() else {
            return;
        };
        let version = own.version();
        if self.devices.pushed.get(&peer) >= Some(&version) {
            return;
        }
        let wanted = own.is_device(&peer)
            || own.is_revoked(&peer)
            || self.devices.book.resolve(&peer).is_some()
            || self.shares_a_group(&peer)
            || self.is_contact(&peer);
        if !wanted {
            return;
        }
        let req = v1::DmRequest {
            kind: Some(v1::dm_request::Kind::Devices(v1::DeviceListPush {
                list: Some(own.to_proto()),
            })),
        };
        self.send_dm_request(&peer, req, dm::Sent::Devices);
        self.devices.pushed.insert(peer, version);
    }

    /// Whether `peer` is a member of a group this node is in (its owner then adds this
    /// account's new devices, and removes revoked ones, from this account's list).
    fn shares_a_group(&self, peer: &PeerId) -> bool {
        self.groups
            .state
            .groups
            .values()
            .any(|g| g.record.active && g.members.contains(peer))
    }

    fn is_contact(&self, peer: &PeerId) -> bool {
        let mut cache = self.devices.contacts.borrow_mut();
        if cache.is_none() {
            match self.store.contacts() {
                Ok(cs) => *cache = Some(cs.into_iter().map(|c| c.peer_id).collect()),
                Err(e) => {
                    tracing::warn!("contacts unreadable: {e}");
                    return false;
                }
            }
        }
        cache.as_ref().is_some_and(|c| c.contains(peer))
    }

    /// A push of this account's list failed: it is sent again later.
    pub(super) fn device_push_failed(&mut self, peer: &PeerId) {
        self.devices.pushed.remove(peer);
    }

    /// A Samizdat peer identified itself: it gets this account's list if it should.
    pub(super) fn devices_on_identified(&mut self, peer: PeerId) {
        self.push_own_list_to(peer);
        if self
            .devices
            .joining
            .as_ref()
            .is_some_and(|j| j.ticket.peer_id == peer)
        {
            self.ask_to_link();
        }
    }

    /// A peer pushed its account's list.
    pub(super) fn answer_devices(&mut self, peer: PeerId, push: v1::DeviceListPush) -> String {
        let Some(list) = push.list else {
            return "no list".into();
        };
        let now = Instant::now();
        if !self.devices.push_limiter.allow(peer, now) {
            // (The string the pusher knows: it sends again later.)
            return "rate limited".into();
        }
        let held =
            DeviceList::claimed_account(&list).and_then(|a| self.devices.book.list(&a).cloned());
        let (list, vouched) = match held {
            // A list of a held account, from anyone: only the versions it adds are checked
            // (the same list again costs a comparison, not thousands of signatures).
            Some(held) => match held.extended(list) {
                Ok(Some(l)) => (l, false),
                Ok(None) => return String::new(),
                Err(e) => return e.to_string(),
            },
            // A first list: only from a contact or a group co-member (a stranger's is dropped
            // unread), checked whole, and only if it names the sender as a current device
            // and the sender vouches for no other account.
            None => {
                if !self.is_contact(&peer) && !self.shares_a_group(&peer) {
                    return "not a contact".into();
                }
                // A device of a held account vouches for no other: refused before any
                // signature is checked. Whole checks are few per peer.
                if self.devices.book.resolve(&peer).is_some() {
                    return "the sender is a device of another account".into();
                }
                if !self.devices.first_list_limiter.allow(peer, now) {
                    return "rate limited".into();
                }
                match DeviceList::verify(list) {
                    Ok(l) if self.devices.book.may_vouch(&peer, &l) => (l, true),
                    Ok(_) => return "the list does not name its sender".into(),
                    Err(e) => return e.to_string(),
                }
            }
        };
        match self.take_list(list, vouched, Some(peer)) {
            Ok(_) => String::new(),
            Err(e) => {
                tracing::debug!(%peer, "device list refused: {e}");
                e.to_string()
            }
        }
    }

    // ----- linking: the device that shows the link -------------------------------------------

    /// A new device asks to join this account.
    pub(super) fn answer_link(
        &mut self,
        peer: PeerId,
        req: v1::DeviceLinkRequest,
    ) -> Result<v1::DeviceLinkGrant, String> {
        let own = self.own_list_for_change().map_err(|e| e.to_string())?;
        let code = self
            .devices
            .pending
            .redeem(&peer, &req.proof, now_ms())
            .map_err(|e| e.to_string())?;
        if own.is_device(&peer) {
            // The same device asks again (its answer was lost): the same answer.
            return Ok(self.grant(&peer, own));
        }
        let name = if req.name.trim().is_empty() {
            "device".to_string()
        } else {
            req.name.clone()
        };
        let next = own
            .link(self.identity.signing(), peer, req.consent, &name, now_ms())
            .map_err(|e| e.to_string())?;
        self.take_list(next.clone(), true, Some(peer))
            .map_err(|e| e.to_string())?;
        tracing::info!(%peer, %code, "device linked");
        self.devices.codes.insert(peer, code);
        Ok(self.grant(&peer, next))
    }

    /// What a new device receives: the list, contacts, channels, recent direct messages.
    fn grant(&self, device: &PeerId, list: DeviceList) -> v1::DeviceLinkGrant {
        // Contacts and channel links share a budget of their own, so that the frame (3 MiB)
        // holds them and the messages whatever the user has.
        let mut budget = GRANT_LIST_BYTES;
        let mut fits = |len: usize| {
            budget = budget.saturating_sub(len);
            budget > 0
        };
        let contacts = self
            .store
            .contacts()
            .unwrap_or_default()
            .into_iter()
            .take(GRANT_ITEMS)
            .filter_map(|c| v1::StoredContact::decode(c.encode().as_slice()).ok())
            .take_while(|c| fits(c.encoded_len()))
            .collect();
        let channels = self
            .channels
            .by_id
            .values()
            .filter_map(|s| s.manifest.as_ref())
            .map(|m| self.invite_link(m, true).0)
            .take(GRANT_ITEMS)
            .take_while(|l| fits(l.len()))
            .collect();
        // Direct and group messages share one budget, the newest kept first.
        enum Recent {
            Dm(v1::StoredDm),
            Group(v1::StoredGroupMessage),
        }
        let now = now_ms();
        let cutoff = now.saturating_sub(HISTORY_MS);
        // Its time: when this node got it, if earlier than the author's claim (a message
        // dated in the future must not stay "newest" and crowd out the rest); kept if recent
        // and not expired.
        let recent_at = |b: &Option<v1::DmBody>, received_ms: u64| {
            let b = b.as_ref()?;
            let at = match received_ms {
                0 => b.sent_ms,
                r => b.sent_ms.min(r),
            };
            (at >= cutoff && (b.expires_at_ms == 0 || b.expires_at_ms > now)).then_some(at)
        };
        let mut recent: Vec<(u64, usize, Recent)> = Vec::new();
        for p in self.conversation_peer_ids().iter().filter(|p| *p != device) {
            for m in self.store.private().messages(p).unwrap_or_default() {
                if let Some(at) = recent_at(&m.body, m.received_ms) {
                    recent.push((at, m.encoded_len(), Recent::Dm(m)));
                }
            }
        }
        let groups: Vec<GroupId> = self
            .groups
            .state
            .groups
            .iter()
            .filter(|(_, s)| s.record.active && !s.record.request)
            .map(|(g, _)| *g)
            .collect();
        for g in groups {
            for m in self.store.private().group_messages(&g).unwrap_or_default() {
                if let Some(at) = recent_at(&m.body, m.received_ms) {
                    recent.push((at, m.encoded_len(), Recent::Group(m)));
                }
            }
        }
        let kept =
            crate::account::link::newest_within(recent, cutoff, GRANT_ITEMS, GRANT_MESSAGE_BYTES);
        let (mut messages, mut group_messages) = (Vec::new(), Vec::new());
        for r in kept {
            match r {
                Recent::Dm(m) => messages.push(m),
                Recent::Group(m) => group_messages.push(m),
            }
        }
        v1::DeviceLinkGrant {
            list: Some(list.to_proto()),
            contacts,
            channels,
            messages,
            group_messages,
        }
    }

    // ----- linking: the new device -----------------------------------------------------------

    /// Pushes this account's list to connected peers that lack it (a push may have failed);
    /// while joining, dials the linking device and asks it once connected.
    pub(super) fn devices_tick(&mut self) {
        if self
            .devices
            .last_push_sweep
            .is_none_or(|t| t.elapsed() >= PUSH_SWEEP_EVERY)
        {
            self.devices.last_push_sweep = Some(Instant::now());
            self.push_own_list();
        }
        let Some(j) = &self.devices.joining else {
            return;
        };
        if j.in_flight || j.asked.is_some_and(|t| t.elapsed() < ASK_EVERY) {
            return;
        }
        if j.ticket.expires_ms <= now_ms() {
            tracing::warn!(
                "the device link expired before linking completed: this node founds an account of its own"
            );
            self.give_up_joining();
            return;
        }
        let peer = j.ticket.peer_id;
        if self.swarm.is_connected(&peer) {
            self.ask_to_link();
            return;
        }
        let addrs = j.ticket.addrs.clone();
        if let Some(j) = self.devices.joining.as_mut() {
            j.asked = Some(Instant::now());
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(addrs.iter().map(|a| split_peer_addr(a).1).collect())
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, "cannot dial the linking device: {e}");
        }
    }

    fn ask_to_link(&mut self) {
        let me = *self.swarm.local_peer_id();
        let Some(j) = self.devices.joining.as_mut() else {
            return;
        };
        if j.in_flight {
            return;
        }
        j.in_flight = true;
        j.asked = Some(Instant::now());
        let req = v1::DmRequest {
            kind: Some(v1::dm_request::Kind::Link(v1::DeviceLinkRequest {
                proof: j.ticket.proof(&me),
                name: j.name.clone(),
                consent: consent(self.identity.signing(), &j.ticket.account),
            })),
        };
        let peer = j.ticket.peer_id;
        let code = j.ticket.code_for(&me);
        self.send_dm_request(&peer, req, dm::Sent::Link);
        tracing::info!(%peer, %code, "asking to be linked");
    }

    /// The linking device answered.
    pub(super) fn on_link_answer(&mut self, peer: PeerId, resp: v1::DmResponse) {
        let Some(j) = self.devices.joining.as_mut() else {
            return;
        };
        j.in_flight = false;
        if j.ticket.peer_id != peer {
            return;
        }
        let Some(grant) = resp.link else {
            tracing::warn!(%peer, "linking refused: {}", resp.error);
            if resp.error.contains("expired") {
                // A used or expired link will not work again.
                self.give_up_joining();
            }
            return;
        };
        if let Err(e) = self.on_link_granted(grant) {
            tracing::warn!(%peer, "linking failed: {e}");
        }
    }

    /// Linking failed for good: this node becomes a device of an account of its own.
    fn give_up_joining(&mut self) {
        self.devices.joining = None;
        let founded = DeviceList::found(self.identity.signing(), &default_device_name(), now_ms())
            .map_err(|e| NodeError::Internal(e.to_string()))
            .and_then(|list| {
                let records = self.store.private();
                records.put_device_list(list.account().as_bytes(), &list.encode())?;
                records.set_own_account(list.account().as_bytes())?;
                records.set_joining(None)?;
                Ok(list)
            });
        match founded {
            Ok(list) => {
                tracing::info!(account = %list.account(), "account founded");
                if let Err(e) = self.devices.book.take_own(list) {
                    tracing::warn!("cannot take the founded account: {e}");
                }
            }
            Err(e) => tracing::warn!("cannot found an account: {e}"),
        }
    }

    /// Joins the account the grant names, and takes what it carries.
    fn on_link_granted(&mut self, grant: v1::DeviceLinkGrant) -> Result<(), NodeError> {
        let me = *self.swarm.local_peer_id();
        let list = DeviceList::verify(grant.list.unwrap_or_default())
            .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
        let expected = self
            .devices
            .joining
            .as_ref()
            .map(|j| j.ticket.account.clone());
        if Some(list.account()) != expected.as_ref() || !list.is_device(&me) {
            return Err(NodeError::InvalidInput(
                "the grant's list is not of the link's account or does not name this device".into(),
            ));
        }
        let account = list.account().clone();
        self.devices
            .book
            .take_own(list.clone())
            .map_err(|e| NodeError::InvalidInput(e.to_string()))?;
        self.store
            .private()
            .put_device_list(account.as_bytes(), &list.encode())?;
        self.store.private().set_own_account(account.as_bytes())?;
        self.store.private().set_joining(None)?;
        self.devices.joining = None;
        for c in grant.contacts.into_iter().take(GRANT_ITEMS) {
            let Ok(contact) = crate::contact::Contact::decode(&c.encode_to_vec()) else {
                continue;
            };
            if contact.peer_id == me {
                continue;
            }
            self.store.put_contact(&contact)?;
            self.devices.contacts_changed();
            if let Some(card) = &contact.card {
                self.learn_card(card);
            }
        }
        for link in grant.channels.into_iter().take(GRANT_ITEMS) {
            match link.parse::<Invite>() {
                Ok(inv) => {
                    if let Err(e) = self.follow(FollowTarget::Invite(Box::new(inv))) {
                        tracing::debug!("channel of the account not followed: {e}");
                    }
                }
                Err(e) => tracing::debug!("channel link of the account refused: {e}"),
            }
        }
        // 1,000 messages in all, direct and group.
        let taken_dms = grant.messages.len().min(GRANT_ITEMS);
        for m in grant.messages.into_iter().take(GRANT_ITEMS) {
            let ok = m
                .body
                .as_ref()
                .is_some_and(|b| crate::dm::check_body(b).is_ok())
                && PeerId::from_bytes(&m.peer).is_ok();
            if ok {
                self.store_granted_dm(&m);
            }
        }
        // The groups' recent history: MLS lets this device read only what is sent after the
        // owner adds it. Shown once it is a member (a group it never joins stays hidden).
        let room = GRANT_ITEMS.saturating_sub(taken_dms);
        for m in grant.group_messages.into_iter().take(room) {
            let ok = m
                .body
                .as_ref()
                .is_some_and(|b| crate::dm::check_body(b).is_ok())
                && GroupId::from_slice(&m.group_id).is_some()
                && PeerId::from_bytes(&m.author).is_ok();
            if ok && let Err(e) = self.store_granted_group_message(m) {
                tracing::debug!("a group message of the grant not stored: {e}");
            }
        }
        tracing::info!(%account, "linked to the account");
        let _ = self.events.send(Event::DevicesChanged {
            account: account.to_string(),
        });
        Ok(())
    }

    /// A contact card was added or received: its addresses, and its account's devices.
    pub(crate) fn learn_card(&mut self, card: &crate::contact::ContactCard) {
        self.devices.contacts_changed();
        for a in &card.addrs {
            let (_, base) = split_peer_addr(a);
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&card.peer_id, base);
        }
        // The card's list names the card's node (checked when the card was read); the user
        // added the card, so it vouches for that account (if the node vouches for no other).
        let vouched = card.devices.as_ref().is_some_and(|l| {
            self.devices.book.list(l.account()).is_some()
                || self.devices.book.may_vouch(&card.peer_id, l)
        });
        if let Some(list) = card.devices.as_ref().filter(|_| vouched)
            && let Err(e) = self.take_list(list.clone(), true, Some(card.peer_id))
        {
            tracing::debug!(peer = %card.peer_id, "contact's device list refused: {e}");
        }
        self.push_own_list_to(card.peer_id);
    }
}
