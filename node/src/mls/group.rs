//! Private groups on the node's MLS client: creating a group, adding and removing members
//! (owner only), joining from a Welcome, and processing the group's messages. The same
//! client (and exported state) serves direct conversations.

#![warn(clippy::arithmetic_side_effects)]

use libp2p::PeerId;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_traits::OpenMlsProvider;

use super::{MlsClient, MlsError, SUITE, create_config, is_peer, join_config, mls};
use crate::group::{INVITE_LABEL, MAX_MEMBERS};

/// What a received group message turned out to be.
#[derive(Debug)]
pub enum GroupIncoming {
    /// An application message.
    Application {
        /// Its author (a current member).
        author: PeerId,
        /// The plaintext.
        plaintext: Vec<u8>,
    },
    /// The owner's commit, merged: the group is in a new epoch.
    Commit {
        /// Whether it removed this node (the group is then closed to it).
        removed_me: bool,
    },
}

/// What adding a member produced.
#[derive(Debug)]
pub struct Added {
    /// The commit, for the current members.
    pub commit: Vec<u8>,
    /// The Welcome, for the new member.
    pub welcome: Vec<u8>,
    /// The exporter key that seals the invitation in the Welcome's epoch.
    pub invite_key: Vec<u8>,
}

/// The clear header of a group's MLS message: its group, epoch and whether it is a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The MLS group id.
    pub group: Vec<u8>,
    /// The epoch it was sent in.
    pub epoch: u64,
    /// Whether it is a commit (which moves the group to the next epoch).
    pub commit: bool,
}

/// Reads the clear header of a PrivateMessage (nothing is decrypted or verified).
pub fn header(message: &[u8]) -> Option<Header> {
    let msg = MlsMessageIn::tls_deserialize_exact(message).ok()?;
    let MlsMessageBodyIn::PrivateMessage(m) = msg.extract() else {
        return None;
    };
    let p = ProtocolMessage::from(m);
    Some(Header {
        group: p.group_id().to_vec(),
        epoch: p.epoch().as_u64(),
        commit: p.content_type() == ContentType::Commit,
    })
}

/// The peer id a member's credential names, if its signature key is that peer's.
fn member_peer(m: &Member) -> Option<PeerId> {
    let basic = BasicCredential::try_from(m.credential.clone()).ok()?;
    let peer = PeerId::from_bytes(basic.identity()).ok()?;
    is_peer(&m.credential, &m.signature_key, &peer).then_some(peer)
}

impl MlsClient {
    /// Creates a group with this node as its only member; returns its id.
    pub fn group_create(&self) -> Result<Vec<u8>, MlsError> {
        self.group_create_with_id(&crate::crypto::random_bytes::<16>())
    }

    /// Creates a group with a chosen id (tests use it to impersonate a group).
    pub fn group_create_with_id(&self, id: &[u8]) -> Result<Vec<u8>, MlsError> {
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &create_config(),
            GroupId::from_slice(id),
            self.credential.clone(),
        )
        .map_err(mls("new group"))?;
        Ok(group.group_id().to_vec())
    }

    /// Adds `peer` from its KeyPackage, the commit already merged here.
    pub fn group_add(
        &self,
        group: &[u8],
        peer: &PeerId,
        key_package: &[u8],
    ) -> Result<Added, MlsError> {
        let kp = KeyPackageIn::tls_deserialize_exact(key_package)
            .map_err(|_| MlsError::BadKeyPackage("does not decode"))?
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(|_| MlsError::BadKeyPackage("signature or lifetime invalid"))?;
        if kp.ciphersuite() != SUITE {
            return Err(MlsError::BadKeyPackage("other ciphersuite"));
        }
        let leaf = kp.leaf_node();
        if !is_peer(leaf.credential(), leaf.signature_key().as_slice(), peer) {
            return Err(MlsError::BadKeyPackage("not the peer's key"));
        }
        let mut g = self.load(group)?;
        if !g.is_active() {
            return Err(MlsError::NotAllowed("this node is no longer in the group"));
        }
        if g.members().any(|m| member_peer(&m).as_ref() == Some(peer)) {
            return Err(MlsError::NotAllowed("already a member"));
        }
        if g.members().count() >= MAX_MEMBERS {
            return Err(MlsError::NotAllowed("the group is full (5,000 members)"));
        }
        let (commit, welcome, _) = g
            .add_members(&self.provider, &self.signer, &[kp])
            .map_err(mls("add member"))?;
        g.merge_pending_commit(&self.provider)
            .map_err(mls("merge"))?;
        let key = g
            .export_secret(self.provider.crypto(), INVITE_LABEL, group, 32)
            .map_err(mls("export"))?;
        Ok(Added {
            commit: commit.to_bytes().map_err(mls("encode commit"))?,
            welcome: welcome.to_bytes().map_err(mls("encode welcome"))?,
            invite_key: key,
        })
    }

    /// Removes `peer`: returns the commit, already merged here (a new epoch whose keys the
    /// removed member never learns).
    pub fn group_remove(&self, group: &[u8], peer: &PeerId) -> Result<Vec<u8>, MlsError> {
        let mut g = self.load(group)?;
        if !g.is_active() {
            return Err(MlsError::NotAllowed("this node is no longer in the group"));
        }
        if *peer == self.me {
            return Err(MlsError::NotAllowed("the owner cannot remove itself"));
        }
        let index = g
            .members()
            .find(|m| member_peer(m).as_ref() == Some(peer))
            .map(|m| m.index)
            .ok_or(MlsError::NotAMember)?;
        let (commit, _, _) = g
            .remove_members(&self.provider, &self.signer, &[index])
            .map_err(mls("remove member"))?;
        g.merge_pending_commit(&self.provider)
            .map_err(mls("merge"))?;
        commit.to_bytes().map_err(mls("encode commit"))
    }

    /// Joins a group from a Welcome that `from` sent: returns the group id and the key that
    /// opens the invitation.
    pub fn group_join(
        &self,
        from: &PeerId,
        welcome: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), MlsError> {
        let msg = MlsMessageIn::tls_deserialize_exact(welcome).map_err(|_| MlsError::Malformed)?;
        let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
            return Err(MlsError::Malformed);
        };
        let staged = StagedWelcome::new_from_welcome(&self.provider, &join_config(), welcome, None)
            .map_err(|e| MlsError::Undecryptable(format!("welcome: {e:?}")))?;
        let sender = staged.welcome_sender().map_err(mls("welcome sender"))?;
        if !is_peer(sender.credential(), sender.signature_key().as_slice(), from) {
            return Err(MlsError::NotAllowed(
                "a welcome must come from the member that added us",
            ));
        }
        if !staged
            .members()
            .any(|m| is_peer(&m.credential, &m.signature_key, &self.me))
        {
            return Err(MlsError::NotAllowed(
                "a welcome that does not add this node",
            ));
        }
        let id = staged.group_context().group_id().to_vec();
        if self.load(&id).is_ok() {
            return Err(MlsError::NotAllowed("already in this group"));
        }
        let group = staged.into_group(&self.provider).map_err(mls("join"))?;
        let key = group
            .export_secret(self.provider.crypto(), INVITE_LABEL, &id, 32)
            .map_err(mls("export"))?;
        Ok((id, key))
    }

    /// Processes a message of `group`, whose commits only `owner` may make.
    pub fn group_receive(
        &self,
        group: &[u8],
        owner: &PeerId,
        message: &[u8],
    ) -> Result<GroupIncoming, MlsError> {
        let msg = MlsMessageIn::tls_deserialize_exact(message).map_err(|_| MlsError::Malformed)?;
        let MlsMessageBodyIn::PrivateMessage(m) = msg.extract() else {
            // Groups use ciphertext only.
            return Err(MlsError::Malformed);
        };
        let protocol = ProtocolMessage::from(m);
        if protocol.group_id().as_slice() != group {
            return Err(MlsError::NotAllowed("message of another group"));
        }
        let mut g = self.load(group)?;
        if !g.is_active() {
            return Err(MlsError::NotAllowed("this node is no longer in the group"));
        }
        if protocol.epoch() > g.epoch() {
            return Err(MlsError::FutureEpoch);
        }
        let processed = g
            .process_message(&self.provider, protocol)
            .map_err(|e| MlsError::Undecryptable(format!("{e:?}")))?;
        let author = match processed.sender() {
            Sender::Member(index) => g
                .member_at(*index)
                .filter(|m| &m.credential == processed.credential())
                .as_ref()
                .and_then(member_peer)
                .ok_or(MlsError::NotAMember)?,
            _ => return Err(MlsError::NotAMember),
        };
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => Ok(GroupIncoming::Application {
                author,
                plaintext: app.into_bytes(),
            }),
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                if author != *owner {
                    return Err(MlsError::NotAllowed("only the group's owner commits"));
                }
                let removed_me = staged.self_removed();
                g.merge_staged_commit(&self.provider, *staged)
                    .map_err(mls("merge commit"))?;
                Ok(GroupIncoming::Commit { removed_me })
            }
            _ => Err(MlsError::NotAllowed("not used in groups")),
        }
    }

    /// A group's current members, and its epoch, as this node sees them.
    pub fn group_state(&self, group: &[u8]) -> Result<(Vec<PeerId>, u64, bool), MlsError> {
        let g = self.load(group)?;
        let members = if g.is_active() {
            g.members().filter_map(|m| member_peer(&m)).collect()
        } else {
            Vec::new()
        };
        Ok((members, g.epoch().as_u64(), g.is_active()))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use libp2p::identity::ed25519;

    fn client() -> MlsClient {
        MlsClient::new(ed25519::Keypair::generate(), None).expect("client")
    }

    fn text(i: GroupIncoming) -> Vec<u8> {
        match i {
            GroupIncoming::Application { plaintext, .. } => plaintext,
            other => panic!("expected an application message, got {other:?}"),
        }
    }

    /// Owner `o` and members: each joins from its Welcome; earlier members process the commit.
    fn group(n: usize) -> (MlsClient, Vec<MlsClient>, Vec<u8>) {
        let o = client();
        let g = o.group_create().expect("create");
        let mut members: Vec<MlsClient> = Vec::new();
        for _ in 0..n {
            let m = client();
            let Added {
                commit,
                welcome,
                invite_key: key,
            } = o
                .group_add(&g, &m.me, &m.key_package().expect("kp"))
                .expect("add");
            for old in &members {
                assert!(matches!(
                    old.group_receive(&g, &o.me, &commit).expect("commit"),
                    GroupIncoming::Commit { removed_me: false }
                ));
            }
            let (id, k) = m.group_join(&o.me, &welcome).expect("join");
            assert_eq!(
                (id.as_slice(), k.as_slice()),
                (g.as_slice(), key.as_slice())
            );
            members.push(m);
        }
        (o, members, g)
    }

    #[test]
    fn members_read_each_other_and_a_removed_member_reads_nothing_after() {
        let (o, ms, g) = group(3);
        let (a, b, c) = (&ms[0], &ms[1], &ms[2]);
        let m = b.encrypt(&g, b"from b").expect("enc");
        for r in [&o, a, c] {
            let got = r.group_receive(&g, &o.me, &m).expect("dec");
            match got {
                GroupIncoming::Application { author, plaintext } => {
                    assert_eq!(author, b.me);
                    assert_eq!(plaintext, b"from b");
                }
                other => panic!("{other:?}"),
            }
        }
        let remove = o.group_remove(&g, &c.me).expect("remove");
        for r in [a, b] {
            assert!(matches!(
                r.group_receive(&g, &o.me, &remove).expect("commit"),
                GroupIncoming::Commit { removed_me: false }
            ));
        }
        assert!(matches!(
            c.group_receive(&g, &o.me, &remove).expect("commit"),
            GroupIncoming::Commit { removed_me: true }
        ));
        let after = a.encrypt(&g, b"after the removal").expect("enc");
        assert_eq!(
            text(o.group_receive(&g, &o.me, &after).expect("o")),
            b"after the removal"
        );
        assert_eq!(
            text(b.group_receive(&g, &o.me, &after).expect("b")),
            b"after the removal"
        );
        assert!(c.group_receive(&g, &o.me, &after).is_err());
        assert_eq!(o.group_state(&g).expect("state").0.len(), 3);
        assert!(!c.group_state(&g).expect("state").2);
        // Its node forgets the dead state; invited again, it reads what is posted from then on.
        c.forget(&g).expect("forget");
        let again = o
            .group_add(&g, &c.me, &c.key_package().expect("kp"))
            .expect("re-add");
        c.group_join(&o.me, &again.welcome).expect("rejoin");
        let back = o.encrypt(&g, b"welcome back").expect("enc");
        assert_eq!(
            text(c.group_receive(&g, &o.me, &back).expect("c")),
            b"welcome back"
        );
    }

    #[test]
    fn a_state_copied_before_removal_cannot_read_the_next_epoch() {
        let (o, ms, g) = group(2);
        let stolen =
            MlsClient::new(ms[1].signer_key(), Some(ms[1].export().as_slice())).expect("copy");
        let remove = o.group_remove(&g, &ms[1].me).expect("remove");
        ms[0].group_receive(&g, &o.me, &remove).expect("commit");
        let after = o.encrypt(&g, b"secret").expect("enc");
        // Without the commit: wrong epoch. With it: removed.
        assert!(stolen.group_receive(&g, &o.me, &after).is_err());
        let _ = stolen.group_receive(&g, &o.me, &remove);
        assert!(stolen.group_receive(&g, &o.me, &after).is_err());
    }

    #[test]
    fn strangers_members_commits_and_garbage_are_refused() {
        let (o, ms, g) = group(2);
        let outsider = client();
        let og = outsider.group_create().expect("own group");
        // A non-member's message (its own group, pretending to be this one) is refused.
        let forged = outsider.encrypt(&og, b"let me in").expect("enc");
        assert!(ms[0].group_receive(&g, &o.me, &forged).is_err());
        // A member may not commit: only the owner does.
        let commit = {
            let m = client();
            ms[0]
                .group_add(&g, &m.me, &m.key_package().expect("kp"))
                .expect("a member can build a commit locally")
                .commit
        };
        assert!(matches!(
            ms[1].group_receive(&g, &o.me, &commit),
            Err(MlsError::NotAllowed(_))
        ));
        assert!(ms[1].group_receive(&g, &o.me, b"\x00junk").is_err());
        // A Welcome claimed to come from someone else is refused.
        let m = client();
        let welcome = o
            .group_add(&g, &m.me, &m.key_package().expect("kp"))
            .expect("add")
            .welcome;
        assert!(m.group_join(&outsider.me, &welcome).is_err());
        assert!(m.group_join(&o.me, &welcome).is_ok());
        // Adding twice, removing a stranger, or the owner removing itself: refused.
        assert!(
            o.group_add(&g, &m.me, &m.key_package().expect("kp"))
                .is_err()
        );
        assert!(o.group_remove(&g, &outsider.me).is_err());
        assert!(o.group_remove(&g, &o.me).is_err());
    }

    #[test]
    fn headers_show_epoch_and_kind_only() {
        let (o, ms, g) = group(1);
        let m = o.encrypt(&g, b"x").expect("enc");
        let h = header(&m).expect("header");
        assert_eq!(
            (h.group.as_slice(), h.epoch, h.commit),
            (g.as_slice(), 1, false)
        );
        let n = client();
        let Added {
            commit, welcome, ..
        } = o
            .group_add(&g, &n.me, &n.key_package().expect("kp"))
            .expect("add");
        assert!(header(&commit).expect("header").commit);
        assert!(header(&welcome).is_none());
        // A message of a later epoch waits for its commit.
        let later = o.encrypt(&g, b"y").expect("enc");
        assert!(matches!(
            ms[0].group_receive(&g, &o.me, &later),
            Err(MlsError::FutureEpoch)
        ));
        ms[0].group_receive(&g, &o.me, &commit).expect("commit");
        assert_eq!(
            text(ms[0].group_receive(&g, &o.me, &later).expect("dec")),
            b"y"
        );
    }
}
