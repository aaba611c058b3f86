//! The node's MLS client (RFC 9420, `openmls`), shared by direct conversations and private
//! groups: KeyPackages, two-member groups for direct conversations, encryption and
//! decryption, update commits, and (in [`group`]) groups of many. Its state (openmls' storage,
//! a map of keys to values) is kept sealed in the node's store key by key: after each
//! operation only the entries it changed are written ([`MlsClient::changes`]), not the whole
//! state (which reaches megabytes in a group of thousands).

#![warn(clippy::arithmetic_side_effects)]

pub mod group;

use std::collections::HashMap;
use std::sync::RwLock;

use libp2p::PeerId;
use libp2p::identity::ed25519;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_rust_crypto::{MemoryStorage, RustCrypto};
use openmls_traits::OpenMlsProvider;
use openmls_traits::signatures::{Signer, SignerError};
use prost::Message as _;
use samizdat_proto::v1;

use crate::identity::ed25519_of;

/// DESIGN.md's ciphersuite: X25519, ChaCha20-Poly1305, SHA-256, Ed25519.
pub const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;
/// Past epochs whose keys are kept, for messages that arrive after a commit.
pub(crate) const MAX_PAST_EPOCHS: usize = 4;
/// Messages of one epoch that may arrive out of order (direct delivery and mailboxes race).
const OUT_OF_ORDER: u32 = 64;
/// Ciphertexts are padded to a multiple of this, so their size says less about the text.
const PADDING: usize = 64;

/// Why an MLS operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MlsError {
    /// Bytes that are not an MLS message of a known group.
    #[error("malformed message")]
    Malformed,
    /// A KeyPackage that cannot be used.
    #[error("unusable key package: {0}")]
    BadKeyPackage(&'static str),
    /// A message for a group this client is not in.
    #[error("unknown conversation")]
    UnknownGroup,
    /// The sender is not a member.
    #[error("sender is not a member of the conversation")]
    NotAMember,
    /// Decryption or verification failed.
    #[error("cannot decrypt: {0}")]
    Undecryptable(String),
    /// Something the group does not allow.
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// A key update of this client waits for the committer.
    #[error("a key update is waiting to be committed")]
    PendingUpdate,
    /// A message of an epoch this client has not reached.
    #[error("message of a later epoch")]
    FutureEpoch,
    /// The stored state does not decode.
    #[error("the stored MLS state is corrupt")]
    CorruptState,
    /// openmls reported an error.
    #[error("mls: {0}")]
    Openmls(String),
}

/// openmls' crypto and storage, the storage owned here so it can be exported.
pub(crate) struct Provider {
    crypto: RustCrypto,
    storage: MemoryStorage,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MemoryStorage;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

/// Signs MLS structures with the node's ed25519 identity key, so a member's MLS signature key
/// *is* its peer id's key and a KeyPackage or commit is bound to the peer id by itself.
pub(crate) struct IdentitySigner(ed25519::Keypair);

impl Signer for IdentitySigner {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload))
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// What a received MLS message turned out to be.
#[derive(Debug)]
pub enum Incoming {
    /// A Welcome: this node joined a new conversation with the sender.
    Joined {
        /// The new group's id.
        group: Vec<u8>,
    },
    /// An application message's plaintext.
    Application {
        /// Its group.
        group: Vec<u8>,
        /// The plaintext.
        plaintext: Vec<u8>,
    },
    /// A commit, merged: the group is in a new epoch.
    Commit {
        /// Its group.
        group: Vec<u8>,
    },
    /// The other member proposes to renew its keys; the group's committer should commit it.
    UpdateProposal {
        /// Its group.
        group: Vec<u8>,
    },
}

/// The MLS client of one node.
pub struct MlsClient {
    pub(crate) provider: Provider,
    pub(crate) signer: IdentitySigner,
    pub(crate) me: PeerId,
    pub(crate) credential: CredentialWithKey,
    /// A keyed hash of each entry's value as last handed out by [`MlsClient::changes`]
    /// (keyed with a secret of this process, so nobody can make a change look unchanged).
    persisted: HashMap<Vec<u8>, u64>,
    hasher: std::hash::RandomState,
}

/// A change to the stored MLS state: an entry's key and new value, or `None` if removed.
pub type StateChange = (Vec<u8>, Option<zeroize::Zeroizing<Vec<u8>>>);

impl std::fmt::Debug for MlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlsClient")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

pub(crate) fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(SUITE)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .padding_size(PADDING)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(OUT_OF_ORDER, 1000))
        .build()
}

pub(crate) fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .padding_size(PADDING)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(OUT_OF_ORDER, 1000))
        .build()
}

pub(crate) fn mls<E: std::fmt::Debug>(what: &'static str) -> impl FnOnce(E) -> MlsError {
    move |e| MlsError::Openmls(format!("{what}: {e:?}"))
}

/// Whether an MLS credential and signature key are those of `peer`.
pub(crate) fn is_peer(credential: &Credential, signature_key: &[u8], peer: &PeerId) -> bool {
    let Ok(basic) = BasicCredential::try_from(credential.clone()) else {
        return false;
    };
    basic.identity() == peer.to_bytes().as_slice()
        && ed25519_of(peer).is_some_and(|k| k.to_bytes().as_slice() == signature_key)
}

impl MlsClient {
    /// The client of the node with this identity key, from an exported state (or fresh).
    pub fn new(key: ed25519::Keypair, state: Option<&[u8]>) -> Result<Self, MlsError> {
        let mut values = HashMap::new();
        if let Some(bytes) = state {
            let pb = v1::MlsState::decode(bytes).map_err(|_| MlsError::CorruptState)?;
            for e in pb.entries {
                values.insert(e.key, e.value);
            }
        }
        // Nothing of an exported state is stored key by key yet.
        Ok(Self::with_values(key, values, false))
    }

    /// The client from its state as stored key by key (every entry already persisted).
    pub fn from_entries(key: ed25519::Keypair, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        Self::with_values(key, entries.into_iter().collect(), true)
    }

    fn with_values(
        key: ed25519::Keypair,
        values: HashMap<Vec<u8>, Vec<u8>>,
        persisted: bool,
    ) -> Self {
        let me = crate::identity::peer_id_of(&key.public());
        let hasher = std::hash::RandomState::new();
        let persisted = if persisted {
            values
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        std::hash::BuildHasher::hash_one(&hasher, v.as_slice()),
                    )
                })
                .collect()
        } else {
            HashMap::new()
        };
        let credential = CredentialWithKey {
            credential: BasicCredential::new(me.to_bytes()).into(),
            signature_key: key.public().to_bytes().to_vec().into(),
        };
        Self {
            provider: Provider {
                crypto: RustCrypto::default(),
                storage: MemoryStorage {
                    values: RwLock::new(values),
                },
            },
            signer: IdentitySigner(key),
            me,
            credential,
            persisted,
            hasher,
        }
    }

    /// The entries written or removed since the last [`MlsClient::persisted`] (all of them
    /// after [`MlsClient::new`]): the caller stores them, atomically, before anything
    /// encrypted with the new state leaves the node. Costs one pass over the state in memory,
    /// and disk writes for what changed only.
    pub fn changes(&self) -> Vec<StateChange> {
        let values = match self.provider.storage.values.read() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out = Vec::new();
        for (k, v) in values.iter() {
            let h = std::hash::BuildHasher::hash_one(&self.hasher, v.as_slice());
            if self.persisted.get(k) != Some(&h) {
                out.push((k.clone(), Some(zeroize::Zeroizing::new(v.clone()))));
            }
        }
        for k in self.persisted.keys() {
            if !values.contains_key(k) {
                out.push((k.clone(), None));
            }
        }
        out
    }

    /// The store holds these changes now (a failed write just leaves them to the next
    /// [`MlsClient::changes`]).
    pub fn persisted(&mut self, changes: &[StateChange]) {
        for (k, v) in changes {
            match v {
                Some(v) => {
                    let h = std::hash::BuildHasher::hash_one(&self.hasher, v.as_slice());
                    self.persisted.insert(k.clone(), h);
                }
                None => {
                    self.persisted.remove(k);
                }
            }
        }
    }

    /// The identity key (tests copy a client's state with it).
    #[cfg(test)]
    pub(crate) fn signer_key(&self) -> ed25519::Keypair {
        self.signer.0.clone()
    }

    /// The whole state, to be sealed and stored (and passed back to [`MlsClient::new`]). It
    /// holds private keys: the buffer, and the copies made on the way, are wiped when dropped.
    pub fn export(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let values = match self.provider.storage.values.read() {
            Ok(v) => v,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut entries: Vec<v1::MlsStateEntry> = values
            .iter()
            .map(|(k, v)| v1::MlsStateEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        let mut state = v1::MlsState { entries };
        let bytes = zeroize::Zeroizing::new(state.encode_to_vec());
        for e in &mut state.entries {
            zeroize::Zeroize::zeroize(&mut e.value);
        }
        bytes
    }

    /// A new last-resort KeyPackage (TLS bytes): usable by several senders, so one published
    /// record serves everyone who starts a conversation while this node is offline.
    pub fn key_package(&self) -> Result<Vec<u8>, MlsError> {
        let bundle = KeyPackage::builder()
            // The last-resort extension must be among the leaf's declared capabilities.
            .leaf_node_capabilities(Capabilities::new(
                None,
                Some(&[SUITE]),
                Some(&[ExtensionType::LastResort]),
                None,
                None,
            ))
            .mark_as_last_resort()
            .build(SUITE, &self.provider, &self.signer, self.credential.clone())
            .map_err(mls("key package"))?;
        bundle
            .key_package()
            .tls_serialize_detached()
            .map_err(mls("encode key package"))
    }

    /// Starts a conversation with `peer` from its KeyPackage: returns the group id and the
    /// Welcome (TLS bytes of an MLSMessage) to send it.
    pub fn start(&self, peer: &PeerId, key_package: &[u8]) -> Result<(Vec<u8>, Vec<u8>), MlsError> {
        let kp = KeyPackageIn::tls_deserialize_exact(key_package)
            .map_err(|_| MlsError::BadKeyPackage("does not decode"))?
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(|e| {
                tracing::debug!("key package refused: {e:?}");
                MlsError::BadKeyPackage("signature or lifetime invalid")
            })?;
        if kp.ciphersuite() != SUITE {
            return Err(MlsError::BadKeyPackage("other ciphersuite"));
        }
        let leaf = kp.leaf_node();
        if !is_peer(leaf.credential(), leaf.signature_key().as_slice(), peer) {
            return Err(MlsError::BadKeyPackage("not the peer's key"));
        }
        let mut group = MlsGroup::new(
            &self.provider,
            &self.signer,
            &create_config(),
            self.credential.clone(),
        )
        .map_err(mls("new group"))?;
        let (_commit, welcome, _) = group
            .add_members(&self.provider, &self.signer, &[kp])
            .map_err(mls("add member"))?;
        group
            .merge_pending_commit(&self.provider)
            .map_err(mls("merge"))?;
        let welcome = welcome.to_bytes().map_err(mls("encode welcome"))?;
        Ok((group.group_id().to_vec(), welcome))
    }

    pub(crate) fn load(&self, group: &[u8]) -> Result<MlsGroup, MlsError> {
        MlsGroup::load(self.provider.storage(), &GroupId::from_slice(group))
            .map_err(mls("load group"))?
            .ok_or(MlsError::UnknownGroup)
    }

    /// Whether this client is a member of `group`.
    pub fn has_group(&self, group: &[u8]) -> bool {
        self.load(group).is_ok()
    }

    /// Encrypts an application message for `group` (TLS bytes of an MLSMessage).
    pub fn encrypt(&self, group: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, MlsError> {
        let mut g = self.load(group)?;
        g.create_message(&self.provider, &self.signer, plaintext)
            .map_err(|e| match e {
                // MLS sends nothing new while a proposal waits for its commit.
                CreateMessageError::GroupStateError(MlsGroupStateError::PendingProposal) => {
                    MlsError::PendingUpdate
                }
                e => MlsError::Openmls(format!("encrypt: {e:?}")),
            })?
            .to_bytes()
            .map_err(mls("encode"))
    }

    /// Withdraws this member's proposals that were not committed (the committer is away).
    pub fn clear_proposals(&self, group: &[u8]) -> Result<(), MlsError> {
        let mut g = self.load(group)?;
        g.clear_pending_proposals(self.provider.storage())
            .map_err(mls("clear proposals"))
    }

    /// A commit renewing this member's keys (post-compromise security), already merged here.
    pub fn update(&self, group: &[u8]) -> Result<Vec<u8>, MlsError> {
        let mut g = self.load(group)?;
        let bundle = g
            .self_update(&self.provider, &self.signer, LeafNodeParameters::default())
            .map_err(mls("self update"))?;
        let (commit, _, _) = bundle.into_contents();
        g.merge_pending_commit(&self.provider)
            .map_err(mls("merge"))?;
        commit.to_bytes().map_err(mls("encode commit"))
    }

    /// A proposal to renew this member's keys, for a member that does not commit itself: its
    /// state heals once the committer commits the proposal.
    pub fn propose_update(&self, group: &[u8]) -> Result<Vec<u8>, MlsError> {
        let mut g = self.load(group)?;
        let (proposal, _) = g
            .propose_self_update(&self.provider, &self.signer, LeafNodeParameters::default())
            .map_err(mls("propose update"))?;
        proposal.to_bytes().map_err(mls("encode proposal"))
    }

    /// A commit of the proposals received (the other member's key update), already merged.
    pub fn commit_pending(&self, group: &[u8]) -> Result<Vec<u8>, MlsError> {
        let mut g = self.load(group)?;
        let (commit, _, _) = g
            .commit_to_pending_proposals(&self.provider, &self.signer)
            .map_err(mls("commit proposals"))?;
        g.merge_pending_commit(&self.provider)
            .map_err(mls("merge"))?;
        commit.to_bytes().map_err(mls("encode commit"))
    }

    /// The group an MLS protocol message belongs to, without decrypting it.
    pub fn group_of(message: &[u8]) -> Option<Vec<u8>> {
        let msg = MlsMessageIn::tls_deserialize_exact(message).ok()?;
        match msg.extract() {
            MlsMessageBodyIn::PrivateMessage(m) => {
                Some(ProtocolMessage::from(m).group_id().to_vec())
            }
            MlsMessageBodyIn::PublicMessage(m) => {
                Some(ProtocolMessage::from(m).group_id().to_vec())
            }
            _ => None,
        }
    }

    /// Processes an MLS message that `from` sent: a Welcome into a conversation with it, or a
    /// message of a conversation with it. Anything else is refused.
    pub fn receive(&self, from: &PeerId, message: &[u8]) -> Result<Incoming, MlsError> {
        let msg = MlsMessageIn::tls_deserialize_exact(message).map_err(|_| MlsError::Malformed)?;
        let protocol = match msg.extract() {
            MlsMessageBodyIn::Welcome(welcome) => return self.join(from, welcome),
            MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
            // Conversations use ciphertext only: a plaintext handshake is not ours.
            _ => return Err(MlsError::Malformed),
        };
        let group_id = protocol.group_id().to_vec();
        let mut group = self.load(&group_id)?;
        let other_is_sender = group.members().any(|m| {
            m.index != group.own_leaf_index() && is_peer(&m.credential, &m.signature_key, from)
        });
        if !other_is_sender {
            return Err(MlsError::NotAMember);
        }
        let processed = group
            .process_message(&self.provider, protocol)
            .map_err(|e| MlsError::Undecryptable(format!("{e:?}")))?;
        let sender_ok = match processed.sender() {
            Sender::Member(index) => {
                group
                    .member(*index)
                    .is_some_and(|c| c == processed.credential())
                    && BasicCredential::try_from(processed.credential().clone())
                        .is_ok_and(|b| b.identity() == from.to_bytes().as_slice())
            }
            _ => false,
        };
        if !sender_ok {
            return Err(MlsError::NotAMember);
        }
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => Ok(Incoming::Application {
                group: group_id,
                plaintext: app.into_bytes(),
            }),
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                // A conversation stays between its two members: a commit that adds or
                // removes anyone is refused.
                if staged.add_proposals().next().is_some()
                    || staged.remove_proposals().next().is_some()
                {
                    return Err(MlsError::NotAllowed("membership change in a conversation"));
                }
                group
                    .merge_staged_commit(&self.provider, *staged)
                    .map_err(mls("merge commit"))?;
                Ok(Incoming::Commit { group: group_id })
            }
            ProcessedMessageContent::ProposalMessage(p) => {
                // Only a member's own key update is ever proposed in a conversation.
                if !matches!(p.proposal(), Proposal::Update(_)) {
                    return Err(MlsError::NotAllowed(
                        "only key updates are proposed in conversations",
                    ));
                }
                group
                    .store_pending_proposal(self.provider.storage(), *p)
                    .map_err(mls("store proposal"))?;
                Ok(Incoming::UpdateProposal { group: group_id })
            }
            _ => Err(MlsError::NotAllowed("not used in conversations")),
        }
    }

    fn join(&self, from: &PeerId, welcome: Welcome) -> Result<Incoming, MlsError> {
        let staged = StagedWelcome::new_from_welcome(&self.provider, &join_config(), welcome, None)
            .map_err(|e| MlsError::Undecryptable(format!("welcome: {e:?}")))?;
        // Exactly two members: the sender (who added us) and this node.
        let sender = staged.welcome_sender().map_err(mls("welcome sender"))?;
        let members: Vec<Member> = staged.members().collect();
        let me_ok = members
            .iter()
            .any(|m| is_peer(&m.credential, &m.signature_key, &self.me));
        if members.len() != 2
            || !me_ok
            || !is_peer(sender.credential(), sender.signature_key().as_slice(), from)
        {
            return Err(MlsError::NotAllowed(
                "a welcome into a conversation must come from its other member",
            ));
        }
        let group = staged.into_group(&self.provider).map_err(mls("join"))?;
        Ok(Incoming::Joined {
            group: group.group_id().to_vec(),
        })
    }

    /// Forgets a group (its keys leave the state).
    pub fn forget(&self, group: &[u8]) -> Result<(), MlsError> {
        let mut g = self.load(group)?;
        g.delete(self.provider.storage())
            .map_err(mls("delete group"))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn client() -> MlsClient {
        MlsClient::new(ed25519::Keypair::generate(), None).expect("client")
    }

    /// Alice starts a conversation with Bob; both return with the group id.
    fn pair() -> (MlsClient, MlsClient, Vec<u8>) {
        let (a, b) = (client(), client());
        let kp = b.key_package().expect("kp");
        let (group, welcome) = a.start(&b.me, &kp).expect("start");
        match b.receive(&a.me, &welcome).expect("join") {
            Incoming::Joined { group: g } => assert_eq!(g, group),
            other => panic!("expected a join, got {other:?}"),
        }
        (a, b, group)
    }

    fn text(i: &Incoming) -> &[u8] {
        match i {
            Incoming::Application { plaintext, .. } => plaintext,
            other => panic!("expected an application message, got {other:?}"),
        }
    }

    #[test]
    fn both_ways_and_state_survives_export() {
        let (a, b, g) = pair();
        let m = a.encrypt(&g, b"hello bob").expect("enc");
        assert_eq!(text(&b.receive(&a.me, &m).expect("dec")), b"hello bob");
        // Bob's state goes to disk and comes back.
        let b = MlsClient::new(b.signer.0.clone(), Some(b.export().as_slice())).expect("reload");
        let r = b.encrypt(&g, b"hi alice").expect("enc");
        assert_eq!(text(&a.receive(&b.me, &r).expect("dec")), b"hi alice");
        // A replay is refused (its key was used and deleted).
        assert!(b.receive(&a.me, &m).is_err());
    }

    /// What [`MlsClient::changes`] hands out, applied to a map as the store would.
    fn apply(disk: &mut HashMap<Vec<u8>, Vec<u8>>, c: &mut MlsClient) -> usize {
        let changes = c.changes();
        for (k, v) in &changes {
            match v {
                Some(v) => disk.insert(k.clone(), v.to_vec()),
                None => disk.remove(k),
            };
        }
        c.persisted(&changes);
        changes.len()
    }

    #[test]
    fn state_is_stored_by_the_entries_each_operation_changes() {
        let (mut a, b, g) = pair();
        let mut disk = HashMap::new();
        let all = apply(&mut disk, &mut a);
        assert!(all > 0, "the first save writes everything");
        assert_eq!(a.changes().len(), 0, "nothing changed since");
        // One message moves the sending ratchet: a few entries, not the whole state.
        let m = a.encrypt(&g, b"one").expect("enc");
        let few = apply(&mut disk, &mut a);
        assert!(few > 0 && few < all, "{few} of {all} entries written");
        assert_eq!(text(&b.receive(&a.me, &m).expect("dec")), b"one");
        // A forgotten group's entries are removed from the disk too.
        let c = client();
        let (g2, _) = a
            .start(&c.me, &c.key_package().expect("kp"))
            .expect("start");
        apply(&mut disk, &mut a);
        let with_two = disk.len();
        a.forget(&g2).expect("forget");
        assert!(apply(&mut disk, &mut a) > 0);
        assert!(disk.len() < with_two, "removed entries leave the disk");
        // What the disk holds is the whole state: a client loaded from it carries on.
        let mut entries: Vec<_> = disk.clone().into_iter().collect();
        entries.sort();
        let a2 = MlsClient::from_entries(a.signer.0.clone(), entries);
        assert_eq!(a2.export().as_slice(), a.export().as_slice());
        assert_eq!(a2.changes().len(), 0, "loaded entries are already on disk");
        let m = a2.encrypt(&g, b"two").expect("enc");
        assert_eq!(text(&b.receive(&a2.me, &m).expect("dec")), b"two");
    }

    #[test]
    fn strangers_and_wrong_keys_are_refused() {
        let (a, b, g) = pair();
        let m = a.encrypt(&g, b"for bob only").expect("enc");
        // Carol is not a member, and cannot pretend Alice's message is hers.
        let c = client();
        assert!(c.receive(&a.me, &m).is_err());
        assert!(matches!(b.receive(&c.me, &m), Err(MlsError::NotAMember)));
        // A KeyPackage presented as someone else's is refused.
        let kp = c.key_package().expect("kp");
        assert!(matches!(
            a.start(&b.me, &kp),
            Err(MlsError::BadKeyPackage(_))
        ));
        // Garbage.
        assert!(matches!(
            b.receive(&a.me, b"\x00\x01junk"),
            Err(MlsError::Malformed)
        ));
        // A Welcome for Bob is useless to Carol (encrypted to Bob's KeyPackage).
        let (_, welcome) = a
            .start(&b.me, &b.key_package().expect("kp"))
            .expect("start");
        assert!(c.receive(&a.me, &welcome).is_err());
    }

    /// Forward secrecy: a member's state copied out now does not decrypt what it already read.
    #[test]
    fn copied_state_cannot_read_earlier_messages() {
        let (a, b, g) = pair();
        let earlier: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                a.encrypt(&g, format!("earlier {i}").as_bytes())
                    .expect("enc")
            })
            .collect();
        for m in &earlier {
            b.receive(&a.me, m).expect("bob reads");
        }
        let stolen = MlsClient::new(b.signer.0.clone(), Some(b.export().as_slice())).expect("copy");
        for m in &earlier {
            assert!(
                stolen.receive(&a.me, m).is_err(),
                "earlier message decrypted"
            );
        }
    }

    /// Post-compromise security for the member that does not commit: it proposes an update,
    /// the creator commits it, and a copy of its old state reads nothing sent afterwards.
    #[test]
    fn copied_state_of_the_joiner_cannot_read_after_its_proposed_update() {
        let (a, b, g) = pair();
        let stolen = MlsClient::new(b.signer.0.clone(), Some(b.export().as_slice())).expect("copy");
        let proposal = b.propose_update(&g).expect("propose");
        assert!(matches!(
            a.receive(&b.me, &proposal).expect("proposal"),
            Incoming::UpdateProposal { .. }
        ));
        let commit = a.commit_pending(&g).expect("commit");
        assert!(matches!(
            b.receive(&a.me, &commit).expect("commit"),
            Incoming::Commit { .. }
        ));
        let after = a.encrypt(&g, b"after").expect("enc");
        assert_eq!(text(&b.receive(&a.me, &after).expect("dec")), b"after");
        let _ = stolen.receive(&b.me, &proposal);
        let _ = stolen.receive(&a.me, &commit);
        assert!(
            stolen.receive(&a.me, &after).is_err(),
            "post-update message decrypted"
        );
    }

    /// Post-compromise security: after the member's update commit, a copy of its old state
    /// reads nothing sent afterwards.
    #[test]
    fn copied_state_cannot_read_after_an_update() {
        let (a, b, g) = pair();
        let stolen = MlsClient::new(a.signer.0.clone(), Some(a.export().as_slice())).expect("copy");
        let before = b.encrypt(&g, b"before").expect("enc");
        // The copy works until the update (that is what compromise means) ...
        assert_eq!(
            text(&stolen.receive(&b.me, &before).expect("dec")),
            b"before"
        );
        let commit = a.update(&g).expect("update");
        assert!(matches!(
            b.receive(&a.me, &commit).expect("commit"),
            Incoming::Commit { .. }
        ));
        let after = b.encrypt(&g, b"after").expect("enc");
        assert_eq!(text(&a.receive(&b.me, &after).expect("dec")), b"after");
        // ... and not after it, even with the commit in hand.
        let _ = stolen.receive(&a.me, &commit);
        assert!(
            stolen.receive(&b.me, &after).is_err(),
            "post-update message decrypted"
        );
    }
}
