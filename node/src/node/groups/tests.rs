//! The group component driven the way the event loop drives it, several nodes at once: real
//! MLS clients, real sled stores in temporary directories, the time injected, and the
//! actions carried between nodes by the test (gossip, envelopes, catch-up requests).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects
)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::gossipsub::{MessageAcceptance, TopicHash};
use libp2p::identity::ed25519;
use prost::Message as _;
use samizdat_proto::v1;

use super::*;
use crate::crypto::DataKey;
use crate::store::SledStore;

/// What a node knows of connections and revocations.
#[derive(Default)]
struct Known {
    connected: HashSet<PeerId>,
    revoked: HashSet<PeerId>,
}

impl Facts for Known {
    fn connected(&self, peer: &PeerId) -> bool {
        self.connected.contains(peer)
    }
    fn revoked(&self, peer: &PeerId) -> bool {
        self.revoked.contains(peer)
    }
}

/// Answers of `group invite`, by number.
type Reply = u32;

struct Node {
    me: PeerId,
    mls: MlsClient,
    store: Arc<SledStore>,
    known: Known,
    groups: Groups<Reply>,
    _dir: tempfile::TempDir,
}

/// What a node's actions sent out or showed, once its writes are applied.
#[derive(Default)]
struct Out {
    verdicts: Vec<MessageAcceptance>,
    published: Vec<(TopicHash, Vec<u8>)>,
    asked: Vec<(PeerId, GroupId, v1::GroupSync)>,
    dials: Vec<PeerId>,
    subscribed: Vec<TopicHash>,
    unsubscribed: Vec<TopicHash>,
    events: Vec<Event>,
    envelopes: Vec<(PeerId, v1::DmEnvelope)>,
    want_kp: Vec<PeerId>,
    answers: Vec<(Reply, Result<GroupView, NodeError>)>,
    messages: Vec<v1::StoredGroupMessage>,
    requests_changed: bool,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let store =
            Arc::new(SledStore::open(dir.path(), Arc::new(DataKey::generate())).expect("open"));
        let mls = MlsClient::new(ed25519::Keypair::generate(), None).expect("mls");
        Self {
            me: mls.me,
            mls,
            store,
            known: Known::default(),
            groups: Groups::default(),
            _dir: dir,
        }
    }

    /// Carries out the actions the way the loop does: writes applied in order, the rest
    /// collected.
    fn run(&mut self, actions: Vec<Action<Reply>>) -> Out {
        let mut out = Out::default();
        for a in actions {
            match a {
                Action::Verdict(v) => out.verdicts.push(v),
                Action::Write(Write::Mls) => {
                    let changes = self.mls.changes();
                    self.store
                        .private_records()
                        .save_mls(&changes, false)
                        .expect("mls saved");
                    self.mls.persisted(&changes);
                }
                Action::Write(w) => {
                    if let Write::Message(m) = &w {
                        out.messages.push(m.clone());
                    }
                    w.apply(&*self.store).expect("write");
                }
                Action::Publish { topic, data } => out.published.push((topic, data)),
                Action::Ask { peer, group, query } => out.asked.push((peer, group, query)),
                Action::Dial(p) => out.dials.push(p),
                Action::Subscribe(t) => out.subscribed.push(t.hash()),
                Action::Unsubscribe(t) => out.unsubscribed.push(t.hash()),
                Action::Emit(e) => out.events.push(e),
                Action::Envelope {
                    peer,
                    sent_ms,
                    mls_message,
                    invite,
                } => out.envelopes.push((
                    peer,
                    v1::DmEnvelope {
                        sender: self.me.to_bytes(),
                        recipient: peer.to_bytes(),
                        sent_ms,
                        expires_ms: sent_ms + 1_000_000,
                        mls_message,
                        group_invite: invite,
                    },
                )),
                Action::WantKeyPackage(p) => out.want_kp.push(p),
                Action::Prefetch(_) => {}
                Action::RequestsChanged => out.requests_changed = true,
                Action::Answer(r, result) => out.answers.push((r, result)),
                Action::Expire => {
                    let next = self.store.private_records().expire_messages(true, 0).ok();
                    self.groups.expired(next.map(|(_, n)| n));
                }
            }
        }
        out
    }

    fn handle(&mut self, input: Input, now: Now) -> Out {
        let ctx = Ctx {
            me: self.me,
            mls: &self.mls,
            store: &*self.store,
            facts: &self.known,
        };
        let actions = self.groups.handle(&ctx, input, now);
        self.run(actions)
    }

    fn command<T>(&mut self, f: impl FnOnce(&mut Groups<Reply>, &Ctx<'_>) -> T) -> (T, Out) {
        let ctx = Ctx {
            me: self.me,
            mls: &self.mls,
            store: &*self.store,
            facts: &self.known,
        };
        let t = f(&mut self.groups, &ctx);
        let actions = self.groups.take();
        (t, self.run(actions))
    }

    fn gossip(&mut self, topic: &TopicHash, data: &[u8], via: PeerId, now: Now) -> Out {
        self.handle(
            Input::Gossip {
                topic: topic.clone(),
                data: data.to_vec(),
                via,
            },
            now,
        )
    }

    fn history(&mut self, group: &GroupId, now: Now) -> Vec<String> {
        let (h, _) = self.command(|g, ctx| g.history(ctx, group, now));
        h.expect("history").into_iter().map(|m| m.text).collect()
    }

    fn state(&self, group: &GroupId) -> &crate::group::state::GroupState {
        self.groups.state.groups.get(group).expect("group")
    }
}

impl SledStore {
    fn private_records(&self) -> crate::store::private::PrivateRecords<'_> {
        (self as &dyn Store).private()
    }
}

fn at(start: Instant, secs: u64) -> Now {
    Now {
        at: start + Duration::from_secs(secs),
        ms: 1_000_000 + secs * 1000,
    }
}

/// `owner` makes a group and adds each member (each joins from its Welcome; members in
/// already take the commit by gossip). Returns the group and its topic.
fn group_of(owner: &mut Node, members: &mut [&mut Node], now: Now) -> (GroupId, TopicHash) {
    let (view, out) = owner.command(|g, ctx| g.create(ctx, "friends".into(), now));
    let view = view.expect("created");
    let group = view.id.parse::<GroupId>().expect("id");
    let topic = out.subscribed[0].clone();
    for i in 0..members.len() {
        let peer = members[i].me;
        let out = add_unseen(owner, group, members[i], now);
        assert!(matches!(out.answers.as_slice(), [(7, Ok(v))] if v.members.len() == i + 2));
        let (commit_topic, commit) = out.published[0].clone();
        for earlier in members.iter_mut().take(i) {
            let seen = earlier.gossip(&commit_topic, &commit, owner.me, now);
            assert_eq!(seen.verdicts, [MessageAcceptance::Accept]);
        }
        let (to, env) = out.envelopes[0].clone();
        assert_eq!(to, peer);
        let me = &mut members[i];
        let owner_id = owner.me;
        let (joined, out) = me.command(|g, ctx| g.invite_arrived(ctx, &owner_id, &env, true, now));
        joined.expect("joined");
        assert_eq!(out.subscribed, std::slice::from_ref(&topic));
        assert_eq!(
            out.asked[0].0, owner_id,
            "a new member catches up from the owner"
        );
        me.handle(Input::SyncFailed { group }, now);
    }
    (group, topic)
}

/// The owner adds `member` (invitation number 7, then its KeyPackage); nobody takes the
/// commit yet.
fn add_unseen(owner: &mut Node, group: GroupId, member: &Node, now: Now) -> Out {
    let peer = member.me;
    let (_, out) = owner.command(|g, ctx| g.invite(ctx, group, peer, 7, now));
    assert_eq!(out.want_kp, [peer], "the invitee's KeyPackage is looked up");
    let key_package = member.mls.key_package().expect("kp");
    owner.handle(
        Input::KeyPackage {
            group,
            peer,
            key_package,
        },
        now,
    )
}

fn post(node: &mut Node, group: GroupId, text: &str, now: Now) -> Vec<u8> {
    let (view, out) = node.command(|g, ctx| g.post(ctx, group, text.into(), None, None, now));
    view.expect("posted");
    out.published[0].1.clone()
}

#[test]
fn a_post_reaches_members_once_and_a_forged_or_padded_copy_is_refused() {
    let start = Instant::now();
    let now = at(start, 0);
    let (mut owner, mut bob) = (Node::new(), Node::new());
    let (group, topic) = group_of(&mut owner, &mut [&mut bob], now);
    let data = post(&mut owner, group, "hello", now);
    let out = bob.gossip(&topic, &data, owner.me, now);
    assert_eq!(out.verdicts, [MessageAcceptance::Accept]);
    assert_eq!(out.messages.len(), 1);
    assert!(matches!(
        out.events.as_slice(),
        [Event::GroupMessage { .. }]
    ));
    assert_eq!(bob.history(&group, now), ["hello"]);
    // The same message again: nothing new, no blame.
    let again = bob.gossip(&topic, &data, owner.me, now);
    assert_eq!(again.verdicts, [MessageAcceptance::Ignore]);
    assert!(again.messages.is_empty());
    // One message, one encoding: a padded copy would be new to gossipsub.
    let mut padded = data.clone();
    padded.extend_from_slice(&[0x2a, 0]);
    let out = bob.gossip(&topic, &padded, owner.me, now);
    assert_eq!(out.verdicts, [MessageAcceptance::Reject]);
    // Bytes that are no group message, and a genuine message of another group on this topic.
    let junk = v1::GroupWire {
        sent_ms: 1,
        mls_message: vec![1, 2, 3],
    }
    .encode_to_vec();
    assert_eq!(
        bob.gossip(&topic, &junk, owner.me, now).verdicts,
        [MessageAcceptance::Reject]
    );
    let mut carol = Node::new();
    let (other, _) = group_of(&mut owner, &mut [&mut carol], now);
    let foreign = post(&mut owner, other, "elsewhere", now);
    assert_eq!(
        bob.gossip(&topic, &foreign, owner.me, now).verdicts,
        [MessageAcceptance::Reject]
    );
    assert_eq!(bob.history(&group, now), ["hello"]);
    // A topic that is no group's is not this component's to judge.
    let stray = TopicHash::from_raw("stray");
    assert_eq!(
        bob.gossip(&stray, &data, owner.me, now).verdicts,
        [MessageAcceptance::Ignore]
    );
}

#[test]
fn a_message_ahead_of_its_commit_waits_for_it_and_asks_the_neighbour() {
    let start = Instant::now();
    let now = at(start, 0);
    let (mut owner, mut bob, carol) = (Node::new(), Node::new(), Node::new());
    let (group, topic) = group_of(&mut owner, &mut [&mut bob], now);
    // Carol is added (a commit Bob misses), then the owner writes in the new epoch.
    let added = add_unseen(&mut owner, group, &carol, now);
    let commit = added.published[0].1.clone();
    let later = at(start, 5);
    let data = post(&mut owner, group, "after carol", later);
    let out = bob.gossip(&topic, &data, owner.me, later);
    assert_eq!(out.verdicts, [MessageAcceptance::Ignore], "not blamed");
    assert!(out.messages.is_empty());
    assert_eq!(out.asked.len(), 1, "catches up from the neighbour");
    assert_eq!(out.asked[0].0, owner.me);
    assert_eq!(out.asked[0].2.epoch, 1);
    // The commit arrives: the held message is read after it.
    let out = bob.gossip(&topic, &commit, owner.me, later);
    assert_eq!(out.verdicts, [MessageAcceptance::Accept]);
    assert_eq!(out.messages.len(), 1);
    assert_eq!(bob.history(&group, later), ["after carol"]);
    assert_eq!(bob.state(&group).epoch, 2);
    assert_eq!(bob.state(&group).members.len(), 3);
}

#[test]
fn catch_up_serves_current_members_only_and_their_epoch_claims_are_clamped() {
    let start = Instant::now();
    let now = at(start, 0);
    let (mut owner, mut bob, mut carol) = (Node::new(), Node::new(), Node::new());
    let (group, _) = group_of(&mut owner, &mut [&mut bob, &mut carol], now);
    for i in 0..3 {
        post(&mut owner, group, &format!("m{i}"), at(start, i));
    }
    let ask = |epoch| v1::GroupSync {
        group_id: group.as_bytes().to_vec(),
        since_ms: 0,
        epoch,
    };
    let serve = |owner: &mut Node, peer: PeerId, q: &v1::GroupSync| {
        let mut resp = v1::DmResponse::default();
        owner.command(|g, ctx| g.serve(ctx, &peer, q, &mut resp));
        resp
    };
    // A stranger (even one that names the group) learns nothing, not even sizes.
    let stranger = PeerId::random();
    let resp = serve(&mut owner, stranger, &ask(2));
    assert_eq!(resp.error, "not a member");
    assert!(resp.group_messages.is_empty());
    let resp = serve(
        &mut owner,
        bob.me,
        &v1::GroupSync {
            group_id: vec![9; 3],
            ..ask(2)
        },
    );
    assert_eq!(resp.error, "unknown group");
    // Bob is served the log: the two commits that added members and the three posts.
    let resp = serve(&mut owner, bob.me, &ask(u64::MAX));
    assert!(resp.error.is_empty());
    assert_eq!(resp.group_messages.len(), 5);
    // Bob caught up with everything; his claim of epoch u64::MAX was taken as the owner's own.
    let out = bob.handle(
        Input::SyncAnswer {
            peer: owner.me,
            group,
            response: resp,
        },
        now,
    );
    assert_eq!(out.messages.len(), 3);
    assert_eq!(bob.history(&group, at(start, 9)), ["m0", "m1", "m2"]);
    // Carol is removed: a removal the owner follows, reached by whoever names its epoch.
    let carol_id = carol.me;
    let (view, out) = owner.command(|g, ctx| g.remove(ctx, group, carol_id, now));
    assert_eq!(view.expect("removed").members.len(), 2);
    assert_eq!(
        out.envelopes[0].0, carol_id,
        "the removed member is told directly"
    );
    let me = owner.me;
    owner.groups.follow_removal(&me, &group, carol_id);
    let r = owner
        .groups
        .removal(&group, &carol_id, &me)
        .expect("followed");
    assert!(r.removed);
    assert_eq!(r.pending, [bob.me.to_string()]);
    let resp = serve(&mut owner, carol_id, &ask(u64::MAX));
    assert_eq!(
        resp.error, "not a member",
        "a removed member is no longer served"
    );
    let r = owner
        .groups
        .removal(&group, &carol_id, &me)
        .expect("followed");
    assert_eq!(
        r.pending,
        [bob.me.to_string()],
        "its claims count for nothing"
    );
    serve(&mut owner, bob.me, &ask(u64::MAX));
    let r = owner
        .groups
        .removal(&group, &carol_id, &me)
        .expect("followed");
    assert_eq!(r.reached, [bob.me.to_string()]);
}

#[test]
fn a_member_that_sees_a_removal_owes_the_owner_its_epoch_until_the_owner_answers() {
    let start = Instant::now();
    let now = at(start, 0);
    let (mut owner, mut bob, mut carol) = (Node::new(), Node::new(), Node::new());
    let (group, topic) = group_of(&mut owner, &mut [&mut bob, &mut carol], now);
    let carol_id = carol.me;
    let (_, removed) = owner.command(|g, ctx| g.remove(ctx, group, carol_id, now));
    let commit = removed.published[0].1.clone();
    // Bob is not connected to the owner: he owes it, and the tick dials it.
    let out = bob.gossip(&topic, &commit, PeerId::random(), now);
    assert_eq!(out.verdicts, [MessageAcceptance::Accept]);
    assert!(out.asked.is_empty());
    assert!(bob.state(&group).owes_owner_epoch);
    let out = bob.handle(Input::Tick, at(start, 1));
    assert!(out.dials.contains(&owner.me));
    // Not dialed again before the pause between dials.
    let out = bob.handle(Input::Tick, at(start, 2));
    assert!(!out.dials.contains(&owner.me));
    // Connected: the tick asks the owner, naming the new epoch.
    bob.known.connected.insert(owner.me);
    let out = bob.handle(Input::Tick, at(start, 3));
    let asked: Vec<_> = out.asked.iter().filter(|a| a.0 == owner.me).collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].2.epoch, 3);
    // A refusal leaves it owed; an answer without error settles it.
    let refused = v1::DmResponse {
        error: "store error".into(),
        ..Default::default()
    };
    bob.handle(
        Input::SyncAnswer {
            peer: owner.me,
            group,
            response: refused,
        },
        at(start, 4),
    );
    assert!(bob.state(&group).owes_owner_epoch);
    // Another member's answer settles nothing.
    bob.handle(
        Input::SyncAnswer {
            peer: carol_id,
            group,
            response: v1::DmResponse::default(),
        },
        at(start, 5),
    );
    assert!(bob.state(&group).owes_owner_epoch);
    bob.handle(
        Input::SyncAnswer {
            peer: owner.me,
            group,
            response: v1::DmResponse::default(),
        },
        at(start, 6),
    );
    assert!(!bob.state(&group).owes_owner_epoch);
    // Carol takes the commit sent to her directly: she leaves and reads nothing new.
    let (to, env) = removed.envelopes[0].clone();
    assert_eq!(to, carol_id);
    let wire = v1::GroupWire {
        sent_ms: env.sent_ms,
        mls_message: env.mls_message,
    };
    let owner_id = owner.me;
    let (r, out) = carol.command(|g, ctx| g.receive_direct(ctx, &group, wire, owner_id, now));
    r.expect("taken");
    assert_eq!(out.unsubscribed, std::slice::from_ref(&topic));
    assert!(!carol.state(&group).record.active);
    let data = post(&mut owner, group, "without carol", at(start, 7));
    let out = carol.gossip(&topic, &data, owner.me, at(start, 7));
    assert_eq!(out.verdicts, [MessageAcceptance::Ignore]);
    assert!(out.messages.is_empty());
    let out = bob.gossip(&topic, &data, owner.me, at(start, 7));
    assert_eq!(out.messages.len(), 1);
}

#[test]
fn a_stranger_s_invitation_waits_as_a_request_and_follows_nothing_until_accepted() {
    let start = Instant::now();
    let now = at(start, 0);
    let (mut owner, mut bob) = (Node::new(), Node::new());
    let (created, _) = owner.command(|g, ctx| g.create(ctx, "club".into(), now));
    let group: GroupId = created.expect("created").id.parse().expect("id");
    let out = add_unseen(&mut owner, group, &bob, now);
    let (_, env) = out.envelopes[0].clone();
    let owner_id = owner.me;
    // Forged: the sealed invitation names another owner than the sender.
    let mallory = PeerId::random();
    let (r, _) = bob.command(|g, ctx| g.invite_arrived(ctx, &mallory, &env, true, now));
    assert!(r.is_err(), "only the group's owner invites");
    let (r, out) = bob.command(|g, ctx| g.invite_arrived(ctx, &owner_id, &env, false, now));
    r.expect("held");
    assert!(out.requests_changed);
    assert!(out.subscribed.is_empty() && out.asked.is_empty());
    let (list, _) = bob.command(|g, ctx| g.list(&ctx.me));
    assert!(list.is_empty(), "a request is not listed");
    assert_eq!(bob.groups.requests().len(), 1);
    let (posted, _) = bob.command(|g, ctx| g.post(ctx, group, "hi".into(), None, None, now));
    assert!(matches!(posted, Err(NodeError::NotAllowed(_))));
    let (n, out) = bob.command(|g, ctx| g.accept_from(ctx, &owner_id, now));
    assert_eq!(n, 1);
    assert_eq!(out.subscribed.len(), 1);
    assert_eq!(out.asked[0].0, owner_id);
    assert!(bob.groups.requests().is_empty());
}

#[test]
fn an_invitation_whose_key_package_never_comes_is_answered_after_a_while_and_stays_pending() {
    let start = Instant::now();
    let mut owner = Node::new();
    let (created, _) = owner.command(|g, ctx| g.create(ctx, "club".into(), at(start, 0)));
    let group: GroupId = created.expect("created").id.parse().expect("id");
    let away = PeerId::random();
    owner.command(|g, ctx| g.invite(ctx, group, away, 3, at(start, 0)));
    assert!(owner.handle(Input::Tick, at(start, 44)).answers.is_empty());
    let out = owner.handle(Input::Tick, at(start, 45));
    assert!(matches!(
        out.answers.as_slice(),
        [(3, Err(NodeError::InvalidInput(_)))]
    ));
    assert!(owner.groups.wants_keypackage(&away), "still pending");
    // Invitations are the owner's alone, and never twice to a member.
    let me = owner.me;
    let (_, out) = owner.command(|g, ctx| g.invite(ctx, group, me, 4, at(start, 46)));
    assert!(matches!(
        out.answers.as_slice(),
        [(4, Err(NodeError::NotAllowed(_)))]
    ));
    let (_, out) = owner.command(|g, ctx| {
        g.invite(
            ctx,
            GroupId::from_slice(&[1; 16]).expect("id"),
            away,
            5,
            at(start, 46),
        )
    });
    assert!(matches!(
        out.answers.as_slice(),
        [(5, Err(NodeError::UnknownGroup(_)))]
    ));
    // Withdrawn by `group remove` before it was answered.
    let (view, _) = owner.command(|g, ctx| g.remove(ctx, group, away, at(start, 47)));
    assert!(view.expect("withdrawn").invited.is_empty());
    assert!(!owner.groups.wants_keypackage(&away));
}

#[test]
fn a_revoked_device_s_messages_are_taken_off_the_wire_but_never_shown() {
    let start = Instant::now();
    let now = at(start, 0);
    let (mut owner, mut bob, mut carol) = (Node::new(), Node::new(), Node::new());
    let (group, topic) = group_of(&mut owner, &mut [&mut bob, &mut carol], now);
    let data = post(&mut carol, group, "from a stolen phone", now);
    bob.known.revoked.insert(carol.me);
    let out = bob.gossip(&topic, &data, owner.me, now);
    assert_eq!(out.verdicts, [MessageAcceptance::Accept]);
    assert!(out.messages.is_empty() && out.events.is_empty());
    assert!(bob.history(&group, now).is_empty());
}

#[test]
fn a_neighbour_cannot_fill_memory_with_messages_of_epochs_to_come() {
    let start = Instant::now();
    let now = at(start, 0);
    let (mut owner, mut bob, carol) = (Node::new(), Node::new(), Node::new());
    let (group, topic) = group_of(&mut owner, &mut [&mut bob], now);
    add_unseen(&mut owner, group, &carol, now);
    // One neighbour hands over many messages of the epoch Bob has not reached.
    let sybil = PeerId::random();
    for i in 0..(EARLY.per_peer + 10) as u64 {
        let data = post(&mut owner, group, &format!("{i}"), at(start, i));
        let out = bob.gossip(&topic, &data, sybil, at(start, i));
        assert_eq!(out.verdicts, [MessageAcceptance::Ignore]);
    }
    assert_eq!(bob.groups.state.early.len().0, EARLY.per_peer);
    assert!(bob.groups.early_dropped() >= 10);
    // They wait at most their time.
    bob.handle(Input::Tick, at(start, 10_000));
    assert_eq!(bob.groups.state.early.len().0, 0);
}
