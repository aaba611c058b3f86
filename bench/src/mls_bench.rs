//! MLS (RFC 9420, `openmls`) costs for private conversations: adding a member to and removing
//! one from groups of 100, 1,000 and 5,000 (time and bytes on the wire), what an existing
//! member pays to process those commits, and encrypt/decrypt rates in a direct conversation
//! (a group of two) and in a group — against raw ChaCha20-Poly1305 on the same bytes.
//!
//! The ciphersuite is DESIGN.md's: MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use serde_json::{Value, json};

use crate::harness::round;

const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;
/// Bytes of a message in the rate measurements (a chat message with some room).
const MESSAGE_BYTES: usize = 377;

/// One MLS participant: its crypto provider (which holds its private keys) and signer.
struct Participant {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

impl Participant {
    fn new(name: &str) -> Result<Self> {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(SUITE.signature_algorithm())
            .map_err(|e| anyhow!("signature key: {e:?}"))?;
        signer
            .store(provider.storage())
            .map_err(|e| anyhow!("store signer: {e:?}"))?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        Ok(Self {
            provider,
            signer,
            credential,
        })
    }

    fn key_package(&self) -> Result<KeyPackage> {
        Ok(KeyPackage::builder()
            .build(SUITE, &self.provider, &self.signer, self.credential.clone())
            .map_err(|e| anyhow!("key package: {e:?}"))?
            .key_package()
            .clone())
    }
}

fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(SUITE)
        .use_ratchet_tree_extension(true)
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .build()
}

fn bytes_of(m: &MlsMessageOut) -> Result<Vec<u8>> {
    m.to_bytes().map_err(|e| anyhow!("serialize: {e:?}"))
}

/// Key packages of `count` further members, each with its own signature key (MLS refuses
/// duplicates). Their private keys all live in one provider: only the owner and one
/// observing member process anything, and one provider keeps 5,000 members within memory.
fn crowd_key_packages(count: usize) -> Result<Vec<KeyPackage>> {
    let provider = OpenMlsRustCrypto::default();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let signer =
            SignatureKeyPair::new(SUITE.signature_algorithm()).map_err(|e| anyhow!("{e:?}"))?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(format!("member {i}").into_bytes()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        let kp = KeyPackage::builder()
            .build(SUITE, &provider, &signer, credential)
            .map_err(|e| anyhow!("key package: {e:?}"))?;
        out.push(kp.key_package().clone());
    }
    Ok(out)
}

/// A member joins from a Welcome.
fn join(p: &Participant, welcome: &[u8]) -> Result<MlsGroup> {
    let msg = MlsMessageIn::tls_deserialize_exact(welcome).map_err(|e| anyhow!("{e:?}"))?;
    let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
        return Err(anyhow!("not a welcome"));
    };
    StagedWelcome::new_from_welcome(&p.provider, &join_config(), welcome, None)
        .map_err(|e| anyhow!("staged welcome: {e:?}"))?
        .into_group(&p.provider)
        .map_err(|e| anyhow!("join: {e:?}"))
}

/// A member processes a commit and merges it; returns how long that took.
fn process_commit(p: &Participant, group: &mut MlsGroup, commit: &[u8]) -> Result<Duration> {
    let t = Instant::now();
    let msg = MlsMessageIn::tls_deserialize_exact(commit).map_err(|e| anyhow!("{e:?}"))?;
    let processed = group
        .process_message(
            &p.provider,
            msg.try_into_protocol_message()
                .map_err(|e| anyhow!("{e:?}"))?,
        )
        .map_err(|e| anyhow!("process commit: {e:?}"))?;
    match processed.into_content() {
        ProcessedMessageContent::StagedCommitMessage(staged) => group
            .merge_staged_commit(&p.provider, *staged)
            .map_err(|e| anyhow!("merge: {e:?}"))?,
        _ => return Err(anyhow!("expected a commit")),
    }
    Ok(t.elapsed())
}

/// Add and remove costs in a group of `n` members.
fn membership(n: usize) -> Result<Value> {
    let owner = Participant::new("owner")?;
    let observer = Participant::new("observer")?;
    let mut group = MlsGroup::new(
        &owner.provider,
        &owner.signer,
        &create_config(),
        owner.credential.clone(),
    )
    .map_err(|e| anyhow!("new group: {e:?}"))?;
    let mut kps = vec![observer.key_package()?];
    kps.extend(crowd_key_packages(n - 2)?);
    let t = Instant::now();
    let (_, welcome, _) = group
        .add_members(&owner.provider, &owner.signer, &kps)
        .map_err(|e| anyhow!("initial add: {e:?}"))?;
    group
        .merge_pending_commit(&owner.provider)
        .map_err(|e| anyhow!("{e:?}"))?;
    let setup = t.elapsed();
    let mut observer_group = join(&observer, &bytes_of(&welcome)?)?;
    // The observer commits once, so the tree has a second populated path (as in a group
    // that has been in use), and the owner processes it.
    let (commit, _, _) = observer_group
        .self_update(
            &observer.provider,
            &observer.signer,
            openmls::treesync::LeafNodeParameters::default(),
        )
        .map_err(|e| anyhow!("self update: {e:?}"))?
        .into_contents();
    observer_group
        .merge_pending_commit(&observer.provider)
        .map_err(|e| anyhow!("{e:?}"))?;
    process_commit(&owner, &mut group, &bytes_of(&commit)?)?;

    // One more member joins a group of n.
    let newcomer = Participant::new("newcomer")?;
    let kp = newcomer.key_package()?;
    let t = Instant::now();
    let (commit, welcome, _) = group
        .add_members(&owner.provider, &owner.signer, &[kp])
        .map_err(|e| anyhow!("add: {e:?}"))?;
    group
        .merge_pending_commit(&owner.provider)
        .map_err(|e| anyhow!("{e:?}"))?;
    let add_ms = t.elapsed();
    let (add_commit, add_welcome) = (bytes_of(&commit)?, bytes_of(&welcome)?);
    let add_process = process_commit(&observer, &mut observer_group, &add_commit)?;
    let t = Instant::now();
    let newcomer_group = join(&newcomer, &add_welcome)?;
    let join_time = t.elapsed();

    // The newcomer is removed again: a new epoch it cannot read.
    let leaf = newcomer_group.own_leaf_index();
    let t = Instant::now();
    let (commit, _, _) = group
        .remove_members(&owner.provider, &owner.signer, &[leaf])
        .map_err(|e| anyhow!("remove: {e:?}"))?;
    group
        .merge_pending_commit(&owner.provider)
        .map_err(|e| anyhow!("{e:?}"))?;
    let remove_ms = t.elapsed();
    let remove_commit = bytes_of(&commit)?;
    let remove_process = process_commit(&observer, &mut observer_group, &remove_commit)?;
    let (state_whole, state_changed, diff_time) = state_written_per_message(&owner, &mut group)?;
    if group.members().count() != n {
        return Err(anyhow!(
            "group has {} members, not {n}",
            group.members().count()
        ));
    }
    let ms = |d: Duration| round(d.as_secs_f64() * 1000.0, 2);
    Ok(json!({
        "members": n,
        "create_with_all_members_ms": ms(setup),
        "add_commit_ms": ms(add_ms),
        "add_commit_bytes": add_commit.len(),
        "add_welcome_bytes": add_welcome.len(),
        "add_process_ms": ms(add_process),
        "join_from_welcome_ms": ms(join_time),
        "remove_commit_ms": ms(remove_ms),
        "remove_commit_bytes": remove_commit.len(),
        "remove_process_ms": ms(remove_process),
        "message_state_bytes_whole": state_whole,
        "message_state_bytes_changed": state_changed,
        "message_state_diff_ms": ms(diff_time),
    }))
}

/// What the sender's store writes for one message: the whole MLS state (as nodes did before
/// it was stored entry by entry) and the entries the message changed (what they write now),
/// and what finding those entries costs (a keyed hash of every value, as the node does).
fn state_written_per_message(
    p: &Participant,
    group: &mut MlsGroup,
) -> Result<(usize, usize, Duration)> {
    let snapshot = || -> std::collections::HashMap<Vec<u8>, Vec<u8>> {
        match p.provider.storage().values.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    };
    let before = snapshot();
    group
        .create_message(&p.provider, &p.signer, &[b'm'; MESSAGE_BYTES])
        .map_err(|e| anyhow!("{e:?}"))?;
    let after = snapshot();
    let hasher = std::hash::RandomState::new();
    let t = Instant::now();
    let hashes: Vec<u64> = after
        .values()
        .map(|v| std::hash::BuildHasher::hash_one(&hasher, v.as_slice()))
        .collect();
    let diff_time = t.elapsed();
    std::hint::black_box(hashes);
    let whole = after.iter().map(|(k, v)| k.len() + v.len()).sum();
    let changed = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| k.len() + v.len())
        .sum::<usize>()
        + before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| k.len())
            .sum::<usize>();
    Ok((whole, changed, diff_time))
}

/// Messages per second sealed by one member and opened by another in a group of `n`.
fn rates(n: usize, messages: usize) -> Result<(f64, f64)> {
    let owner = Participant::new("owner")?;
    let reader = Participant::new("reader")?;
    let mut group = MlsGroup::new(
        &owner.provider,
        &owner.signer,
        &create_config(),
        owner.credential.clone(),
    )
    .map_err(|e| anyhow!("{e:?}"))?;
    let mut kps = vec![reader.key_package()?];
    kps.extend(crowd_key_packages(n - 2)?);
    let (_, welcome, _) = group
        .add_members(&owner.provider, &owner.signer, &kps)
        .map_err(|e| anyhow!("{e:?}"))?;
    group
        .merge_pending_commit(&owner.provider)
        .map_err(|e| anyhow!("{e:?}"))?;
    let mut reader_group = join(&reader, &bytes_of(&welcome)?)?;
    let text = vec![b'm'; MESSAGE_BYTES];
    let t = Instant::now();
    let mut sealed = Vec::with_capacity(messages);
    for _ in 0..messages {
        let m = group
            .create_message(&owner.provider, &owner.signer, &text)
            .map_err(|e| anyhow!("{e:?}"))?;
        sealed.push(bytes_of(&m)?);
    }
    let enc = messages as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for bytes in &sealed {
        let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|e| anyhow!("{e:?}"))?;
        let processed = reader_group
            .process_message(
                &reader.provider,
                msg.try_into_protocol_message()
                    .map_err(|e| anyhow!("{e:?}"))?,
            )
            .map_err(|e| anyhow!("{e:?}"))?;
        let plain = match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => app.into_bytes(),
            _ => Vec::new(),
        };
        if plain != text {
            return Err(anyhow!("message did not decrypt to what was sent"));
        }
    }
    let dec = messages as f64 / t.elapsed().as_secs_f64();
    Ok((enc, dec))
}

/// Raw ChaCha20-Poly1305 seals per second on the same bytes (the floor).
fn raw_chacha(messages: usize) -> f64 {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(&[7u8; 32].into());
    let text = vec![b'm'; MESSAGE_BYTES];
    let t = Instant::now();
    let mut n = 0usize;
    for i in 0..messages {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
        if let Ok(c) = cipher.encrypt(&nonce.into(), text.as_slice()) {
            n += c.len();
        }
    }
    std::hint::black_box(n);
    messages as f64 / t.elapsed().as_secs_f64()
}

pub fn run(quick: bool) -> Result<Value> {
    let sizes: &[usize] = if quick { &[100] } else { &[100, 1000, 5000] };
    let mut rows = Vec::new();
    for &n in sizes {
        eprintln!("   mls: group of {n}");
        rows.push(membership(n)?);
    }
    let messages = if quick { 2_000 } else { 20_000 };
    let (dm_enc, dm_dec) = rates(2, messages)?;
    let (group_enc, group_dec) = rates(100, messages)?;
    let raw = raw_chacha(messages);
    Ok(json!({
        "mls": {
            "ciphersuite": "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519",
            "membership": rows,
            "message_bytes": MESSAGE_BYTES,
            "dm_encrypt_per_s": round(dm_enc, 0),
            "dm_decrypt_per_s": round(dm_dec, 0),
            "group100_encrypt_per_s": round(group_enc, 0),
            "group100_decrypt_per_s": round(group_dec, 0),
            "raw_chacha20poly1305_seal_per_s": round(raw, 0),
            "dm_encrypt_vs_raw": round(dm_enc / raw, 4),
        }
    }))
}
