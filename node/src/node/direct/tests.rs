//! The direct-message component driven the way the event loop drives it, two or three nodes
//! at once: real MLS clients, real sled stores in temporary directories, the time injected,
//! and the actions carried between nodes by the test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects
)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::dm::DmError;
use samizdat_proto::v1;

use super::*;
use crate::crypto::DataKey;
use crate::dm::mailbox::check_envelope;
use crate::store::SledStore;

#[derive(Default)]
struct Known {
    connected: HashSet<PeerId>,
}

impl Facts for Known {
    fn connected(&self, peer: &PeerId) -> bool {
        self.connected.contains(peer)
    }
    fn group_of(&self, _: &[u8]) -> Option<GroupId> {
        None
    }
}

struct Node {
    me: PeerId,
    mls: Mls,
    store: Arc<dyn Store>,
    book: Accounts,
    identity: Identity,
    known: Known,
    dm: Direct,
    _dir: tempfile::TempDir,
}

/// What a node's actions asked for.
#[derive(Default, Debug)]
struct Out {
    requests: Vec<(PeerId, v1::DmRequest, Sent)>,
    lookups: Vec<PeerId>,
    durable_waits: Vec<PeerId>,
    messages: Vec<crate::dm::DmView>,
    requests_changed: bool,
    penalised: Vec<(PeerId, Offence)>,
    find_holders: usize,
    dials: Vec<PeerId>,
}

impl Node {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(dir.path(), Arc::new(DataKey::generate())).expect("open"));
        let identity = Identity::generate();
        let mls = Mls {
            client: MlsClient::new(identity.signing().clone(), None).expect("mls"),
            blob: false,
        };
        let me = mls.client.me;
        let dm = Direct::open(&store, Now::current()).expect("open");
        Self {
            me,
            mls,
            book: Accounts::new(me, None, Vec::new()),
            store,
            identity,
            known: Known::default(),
            dm,
            _dir: dir,
        }
    }

    fn with<T>(
        &mut self,
        now: Now,
        f: impl FnOnce(&mut Direct, &mut Ctx<'_>, Now) -> T,
    ) -> (T, Out) {
        let mut ctx = Ctx {
            me: self.me,
            mls: &mut self.mls,
            store: &*self.store,
            book: &self.book,
            identity: &self.identity,
            dht_ready: false,
            facts: &self.known,
        };
        let t = f(&mut self.dm, &mut ctx, now);
        let actions = self.dm.take();
        (t, self.collect(actions))
    }

    fn handle(&mut self, input: Input, now: Now) -> Out {
        self.with(now, |d, ctx, now| {
            let actions = d.handle(ctx, input, now);
            d.out = actions;
        })
        .1
    }

    fn collect(&self, actions: Vec<Action>) -> Out {
        let mut out = Out::default();
        for a in actions {
            match a {
                Action::Request {
                    peer,
                    request,
                    sent,
                } => out.requests.push((peer, request, sent)),
                Action::LookupKeyPackage(p) => out.lookups.push(p),
                Action::WhenDurable(p) => out.durable_waits.push(p),
                Action::Emit(Event::DirectMessage { message }) => out.messages.push(message),
                Action::RequestsChanged => out.requests_changed = true,
                Action::Penalise(p, o) => out.penalised.push((p, o)),
                Action::FindHolders(_) => out.find_holders += 1,
                Action::Dial(p) => out.dials.push(p),
                _ => {}
            }
        }
        out
    }

    fn history(&self) -> Vec<String> {
        let mut all = Vec::new();
        for p in self.dm.conversation_peer_ids() {
            let r = Reader {
                me: self.me,
                book: &self.book,
                store: &*self.store,
            };
            all.extend(
                self.dm
                    .history(&r, &p)
                    .expect("history")
                    .into_iter()
                    .map(|m| m.text),
            );
        }
        all
    }

    /// Takes each envelope of a delivery the way the loop does; the count accepted.
    fn take(
        &mut self,
        from: PeerId,
        envelopes: Vec<v1::DmEnvelope>,
        now: Now,
    ) -> (u32, Out, Option<DmError>) {
        let me = self.me;
        let ((accepted, error), out) = self.with(now, |d, ctx, now| {
            let (mut accepted, mut error) = (0, None);
            for env in envelopes {
                let (sender, recipient) = check_envelope(&env, now.ms).expect("form");
                assert_eq!((sender, recipient), (from, me));
                match d.receive(ctx, &from, &from, env, now) {
                    Err(DmError::Busy) => {
                        error = Some(DmError::Busy);
                        break;
                    }
                    Err(e) => error = Some(e),
                    Ok(r) => assert!(matches!(r, Routed::Done)),
                }
                accepted += 1;
            }
            (accepted, error)
        });
        (accepted, out, error)
    }
}

fn at(start: Instant, secs: u64) -> Now {
    Now {
        at: start + Duration::from_secs(secs),
        ms: crate::channel::now_ms() + secs * 1000,
    }
}

fn deliveries(out: &Out, to: &PeerId) -> Vec<v1::DmEnvelope> {
    out.requests
        .iter()
        .filter(|(p, _, s)| p == to && matches!(s, Sent::Deliver { .. }))
        .flat_map(|(_, r, _)| match &r.kind {
            Some(v1::dm_request::Kind::Deliver(d)) => d.envelopes.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// Alice writes to Bob (connected) and the envelopes the component hands the loop are what
/// Bob reads: the message waits for Bob's KeyPackage, then for the disk, then goes.
fn alice_writes(
    alice: &mut Node,
    bob: &mut Node,
    texts: &[&str],
    start: Instant,
) -> Vec<v1::DmEnvelope> {
    let bob_id = bob.me;
    alice.known.connected.insert(bob_id);
    for t in texts {
        let (sent, out) = alice.with(at(start, 0), |d, ctx, now| {
            d.send(ctx, bob_id, (*t).into(), None, None, now)
        });
        sent.expect("sent");
        assert!(
            deliveries(&out, &bob_id).is_empty(),
            "nothing to seal with yet"
        );
    }
    let kp = bob.mls.client.key_package().expect("kp");
    let out = alice.handle(
        Input::KeyPackage {
            peer: bob_id,
            key_package: kp,
        },
        at(start, 1),
    );
    // The ratchet moved: nothing leaves before the disk has it.
    assert!(deliveries(&out, &bob_id).is_empty());
    assert_eq!(out.durable_waits, [bob_id]);
    alice.store.flush().expect("flush");
    let out = alice.handle(Input::DiskReady(bob_id), at(start, 1));
    let envs = deliveries(&out, &bob_id);
    assert_eq!(envs.len(), texts.len() + 1, "the Welcome and the messages");
    envs
}

#[test]
fn a_message_waits_for_the_key_package_and_the_disk_then_is_read_once_and_marked_delivered() {
    let start = Instant::now();
    let (mut alice, mut bob) = (Node::new(), Node::new());
    let alice_id = alice.me;
    // Bob knows Alice (he accepted her before): her message is shown at once.
    bob.with(at(start, 0), |d, _, _| d.accepted.insert(alice_id));
    let (sent, out) = alice.with(at(start, 0), |d, ctx, now| {
        d.send(ctx, bob.me, "   ".into(), None, None, now)
    });
    assert!(
        sent.is_err() && out.requests.is_empty(),
        "an empty message is refused"
    );
    let envs = alice_writes(&mut alice, &mut bob, &["hello", "again"], start);
    let (accepted, out, error) = bob.take(alice_id, envs.clone(), at(start, 2));
    assert_eq!((accepted, error.is_none()), (3, true));
    assert_eq!(out.messages.len(), 2);
    assert_eq!(bob.history(), ["hello", "again"]);
    // The same envelopes again (a holder's copy, a retry): nothing new.
    let (accepted, out, _) = bob.take(alice_id, envs, at(start, 3));
    assert_eq!(accepted, 3);
    assert!(out.messages.is_empty());
    assert_eq!(bob.history().len(), 2);
    // Bob's answer: Alice forgets the envelopes and shows her messages delivered.
    let (keys, peer) = {
        let out = alice.handle(Input::Connected(bob.me), at(start, 4));
        assert!(out.requests.is_empty(), "the delivery is in flight");
        let outbox = alice
            .store
            .private()
            .envelopes(Some(&bob.me))
            .expect("outbox");
        (
            outbox.into_iter().map(|o| o.key).collect::<Vec<_>>(),
            bob.me,
        )
    };
    let out = alice.handle(
        Input::Response {
            peer,
            sent: Sent::Deliver { peer, keys },
            response: v1::DmResponse {
                accepted: 3,
                ..Default::default()
            },
        },
        at(start, 4),
    );
    assert_eq!(out.messages.len(), 2);
    assert!(out.messages.iter().all(|m| m.delivered));
    assert!(
        alice
            .store
            .private()
            .envelopes(Some(&bob.me))
            .expect("outbox")
            .is_empty()
    );
}

#[test]
fn a_stranger_s_message_is_a_request_shown_only_once_accepted() {
    let start = Instant::now();
    let (mut alice, mut bob) = (Node::new(), Node::new());
    let alice_id = alice.me;
    let envs = alice_writes(&mut alice, &mut bob, &["hi, it's me"], start);
    let (_, out, error) = bob.take(alice_id, envs, at(start, 2));
    assert!(error.is_none());
    assert!(out.messages.is_empty(), "not announced");
    assert!(out.requests_changed);
    let r = Reader {
        me: bob.me,
        book: &bob.book,
        store: &*bob.store,
    };
    assert_eq!(bob.dm.requests(&r).len(), 1);
    assert!(
        bob.dm.conversations(&r).expect("list").is_empty(),
        "not listed"
    );
    let (accepted, out) = bob.with(at(start, 3), |d, ctx, _| d.accept(ctx, &alice_id));
    assert!(accepted.expect("accepted"));
    assert_eq!(out.messages.len(), 1);
    let r = Reader {
        me: bob.me,
        book: &bob.book,
        store: &*bob.store,
    };
    assert!(bob.dm.requests(&r).is_empty());
    assert!(bob.dm.is_known(&bob.book, &*bob.store, &alice_id));
}

#[test]
fn messages_before_their_welcome_wait_within_bounds_and_a_flooding_sender_is_told_busy() {
    let start = Instant::now();
    let (mut alice, mut bob) = (Node::new(), Node::new());
    let alice_id = alice.me;
    bob.with(at(start, 0), |d, _, _| d.accepted.insert(alice_id));
    let texts: Vec<String> = (0..EARLY.per_peer + 3).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut envs = alice_writes(&mut alice, &mut bob, &refs, start);
    let welcome = envs.remove(0);
    // The messages come first: as many as the bound allows wait, then the sender is busy.
    let (accepted, out, error) = bob.take(alice_id, envs.clone(), at(start, 2));
    assert_eq!(accepted as usize, EARLY.per_peer);
    assert!(matches!(error, Some(DmError::Busy)));
    assert_eq!(out.penalised, [(alice_id, Offence::HeldOverQuota)]);
    assert!(out.messages.is_empty());
    // The Welcome arrives: what waited is read, in order.
    let (_, out, error) = bob.take(alice_id, vec![welcome], at(start, 3));
    assert!(error.is_none());
    assert_eq!(out.messages.len(), EARLY.per_peer);
    // The rest, retried by the sender, is read now.
    let rest = envs[EARLY.per_peer..].to_vec();
    let (_, out, error) = bob.take(alice_id, rest, at(start, 4));
    assert!(error.is_none());
    assert_eq!(out.messages.len(), 3);
    assert_eq!(bob.history(), texts);
}

#[test]
fn a_holder_keeps_mail_within_a_sender_s_quota_and_hands_it_only_to_its_recipient() {
    let start = Instant::now();
    let (mut alice, mut bob, mut holder) = (Node::new(), Node::new(), Node::new());
    let (alice_id, bob_id) = (alice.me, bob.me);
    bob.with(at(start, 0), |d, _, _| d.accepted.insert(alice_id));
    let envs = alice_writes(&mut alice, &mut bob, &["while you were away"], start);
    let deposit = v1::DmDeposit {
        envelopes: envs.clone(),
    };
    let (resp, out) = holder.with(at(start, 2), |d, _, now| {
        let mut resp = v1::DmResponse::default();
        d.answer_deposit(alice_id, &deposit, &mut resp, now);
        resp
    });
    assert_eq!(resp.accepted, 2);
    assert!(out.penalised.is_empty());
    // Someone else asking gets nothing; Bob gets his mail, once.
    let (resp, _) = holder.with(at(start, 3), |d, _, now| {
        let mut resp = v1::DmResponse::default();
        d.answer_collect(alice_id, &mut resp, now);
        resp
    });
    assert!(resp.envelopes.is_empty());
    let (resp, _) = holder.with(at(start, 3), |d, _, now| {
        let mut resp = v1::DmResponse::default();
        d.answer_collect(bob_id, &mut resp, now);
        resp
    });
    assert_eq!(resp.envelopes.len(), 2);
    let holder_id = holder.me;
    let mail = collected(&bob_id, &holder_id, resp, at(start, 4));
    assert!(mail.iter().all(|(sender, _)| *sender == alice_id));
    let (_, out, error) = bob.take(
        alice_id,
        mail.into_iter().map(|(_, e)| e).collect(),
        at(start, 4),
    );
    assert!(error.is_none());
    assert_eq!(out.messages.len(), 1);
    assert_eq!(bob.history(), ["while you were away"]);
    // A sender that keeps depositing past its quota is penalised.
    let mut flood = Vec::new();
    for i in 0..400u64 {
        // Each a different envelope (the holder keeps one copy of each).
        let mut e = envs[1].clone();
        e.mls_message.extend_from_slice(&i.to_le_bytes());
        flood.push(e);
    }
    let mut penalised = false;
    for chunk in flood.chunks(MAX_ENVELOPES_PER_REQUEST_FOR_TESTS) {
        let deposit = v1::DmDeposit {
            envelopes: chunk.to_vec(),
        };
        let (_, out) = holder.with(at(start, 5), |d, _, now| {
            let mut resp = v1::DmResponse::default();
            d.answer_deposit(alice_id, &deposit, &mut resp, now);
        });
        penalised |= out.penalised.contains(&(alice_id, Offence::MailOverQuota));
    }
    assert!(penalised);
}

const MAX_ENVELOPES_PER_REQUEST_FOR_TESTS: usize = crate::dm::MAX_ENVELOPES_PER_REQUEST;

#[test]
fn an_unreachable_peer_is_dialed_and_its_mail_left_with_holders_and_lookups_are_paced() {
    let start = Instant::now();
    let (mut alice, bob) = (Node::new(), Node::new());
    let bob_id = bob.me;
    let (_, out) = alice.with(at(start, 0), |d, ctx, now| {
        d.send(ctx, bob_id, "are you there?".into(), None, None, now)
    });
    assert_eq!(out.lookups, [bob_id]);
    // Looked up again only after the pause, and never twice at once.
    assert!(alice.handle(Input::Tick, at(start, 1)).lookups.is_empty());
    assert!(
        alice.handle(Input::Tick, at(start, 6)).lookups.is_empty(),
        "one in flight"
    );
    alice.dm.lookup_ended(&bob_id);
    assert_eq!(alice.handle(Input::Tick, at(start, 6)).lookups, [bob_id]);
    let kp = bob.mls.client.key_package().expect("kp");
    alice.handle(
        Input::KeyPackage {
            peer: bob_id,
            key_package: kp,
        },
        at(start, 7),
    );
    alice.store.flush().expect("flush");
    // Not connected: a dial and, in time, a deposit with holders.
    let (mut holders_asked, mut dials) = (0, 0);
    for s in 8..200 {
        let out = alice.handle(Input::Tick, at(start, s));
        holders_asked += out.find_holders;
        dials += out.dials.iter().filter(|p| **p == bob_id).count();
    }
    assert!(dials >= 1, "the peer is dialed");
    assert!(holders_asked >= 1, "mail is left with holders");
    assert!(holders_asked < 20, "and not every second");
}

#[test]
fn a_delivery_answer_counts_a_prefix_that_ends_at_busy_and_refuses_others_envelopes() {
    let start = Instant::now();
    let (mut alice, mut bob) = (Node::new(), Node::new());
    let envs = alice_writes(&mut alice, &mut bob, &["one", "two"], start);
    let now = at(start, 2);
    // Alice delivers; an envelope naming another sender is refused but counts as handed
    // over (she must not send it again); busy stops the count.
    let mut answer = DeliveryAnswer::new(alice.me, bob.me);
    assert!(answer.admit(&envs[0], now).is_ok());
    let mut theirs = envs[1].clone();
    theirs.sender = PeerId::random().to_bytes();
    assert!(answer.admit(&theirs, now).is_err());
    let mut not_mine = envs[1].clone();
    not_mine.recipient = PeerId::random().to_bytes();
    assert!(answer.admit(&not_mine, now).is_err());
    assert!(answer.record(Taken::Yes));
    assert!(answer.record(Taken::Refused(
        "envelope not from this peer to this node".into()
    )));
    assert!(!answer.record(Taken::Busy));
    let resp = answer.finish();
    assert_eq!(resp.accepted, 2);
    assert_eq!(resp.error, DmError::Busy.to_string());
    // Someone else delivering Alice's envelopes is refused.
    let mallory = DeliveryAnswer::new(PeerId::random(), bob.me);
    assert!(mallory.admit(&envs[0], now).is_err());
}
