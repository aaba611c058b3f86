//! Accounts above devices: a person is an account whose signed device list names the nodes
//! (peer ids, and so their MLS credentials) that act for it.
//!
//! The list is a chain of versions. Version 1 is signed by the account key, which is made for
//! that one signature and then erased; every later version is signed by a device the version
//! before it lists. So any current device can link or revoke, losing a device loses neither
//! the account nor the power to change it, and once a verifier holds a version that revokes a
//! device, nothing that device signs is accepted by it. Revocations only grow: a revoked peer
//! id is never listed again. I/O-free; the event loop keeps the lists ([`book::Accounts`]).

#![warn(clippy::arithmetic_side_effects)]

pub mod book;
pub mod link;

use std::fmt;
use std::str::FromStr;

use libp2p::PeerId;
use libp2p::identity::ed25519;
use prost::Message as _;
use samizdat_proto::v1;
use sha2::{Digest, Sha256};

use crate::identity::{ed25519_of, peer_id_of};
use samizdat_net::records::signed::{sign, verify};

/// Signature domain of a device list version.
pub const DEVICE_LIST_DOMAIN: &[u8] = b"samizdat/v1/device-list";
/// Signature domain of a device's consent to act for an account.
pub const CONSENT_DOMAIN: &[u8] = b"samizdat/v1/device-consent";
/// Most current devices of an account.
pub const MAX_DEVICES: usize = 8;
/// Most revoked devices an account may name.
pub const MAX_REVOKED: usize = 64;
/// Most versions of a list (each link or revocation adds one).
pub const MAX_VERSIONS: usize = 256;
/// Longest device name (bytes).
pub const MAX_NAME_BYTES: usize = 64;

/// Why a device list was refused or a change could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountError {
    /// Bytes that are not a device list of the expected shape.
    #[error("malformed device list: {0}")]
    Malformed(&'static str),
    /// A signature does not verify, or a version is signed by a device that may not sign it.
    #[error("device list signature does not verify: {0}")]
    BadSignature(&'static str),
    /// The list is of another account than the one it was meant to update.
    #[error("device list of another account")]
    OtherAccount,
    /// Two different lists claim the same version: the account forked.
    #[error("device list conflicts with the one held (same version, different content)")]
    Conflict,
    /// A change the rules forbid (too many devices, a revoked device, the last device).
    #[error("{0}")]
    NotAllowed(&'static str),
}

/// An account's id: its account key (shown like a peer id, base58).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId([u8; 32]);

impl AccountId {
    /// The id of an account key.
    pub fn of(key: &ed25519::PublicKey) -> Self {
        Self(key.to_bytes())
    }

    /// From its 32 key bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let key = ed25519::PublicKey::try_from_bytes(b).ok()?;
        Some(Self::of(&key))
    }

    /// Its key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The account key.
    pub fn key(&self) -> Option<ed25519::PublicKey> {
        ed25519::PublicKey::try_from_bytes(&self.0).ok()
    }

    /// The id in peer-id form: accepted wherever a peer id is (the CLI, the API's paths).
    pub fn as_peer_id(&self) -> Option<PeerId> {
        self.key().map(|k| peer_id_of(&k))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_peer_id() {
            Some(p) => write!(f, "{p}"),
            None => write!(f, "{}", data_encoding::HEXLOWER.encode(&self.0)),
        }
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({self})")
    }
}

impl FromStr for AccountId {
    type Err = AccountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let peer: PeerId = s
            .trim()
            .parse()
            .map_err(|_| AccountError::Malformed("not an account id"))?;
        Self::from_peer_id(&peer).ok_or(AccountError::Malformed("not an account id"))
    }
}

impl AccountId {
    /// The account id written in peer-id form.
    pub fn from_peer_id(peer: &PeerId) -> Option<Self> {
        ed25519_of(peer).map(|k| Self::of(&k))
    }
}

/// One device of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Its node.
    pub peer_id: PeerId,
    /// Its name (as the device that linked it gave it).
    pub name: String,
    /// When it was linked (ms since the epoch).
    pub linked_ms: u64,
    /// Its signature consenting to act for the account.
    pub consent: Vec<u8>,
}

/// A device's consent to act for `account`, signed with its identity key.
pub fn consent(device: &ed25519::Keypair, account: &AccountId) -> Vec<u8> {
    sign(device, CONSENT_DOMAIN, account.as_bytes())
}

/// A verified device list: every version from 1, the newest deciding who the devices are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList {
    account: AccountId,
    versions: Vec<v1::SignedDeviceList>,
    /// The newest version's body, decoded.
    newest: Checked,
}

/// A version's body as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checked {
    version: u64,
    hash: [u8; 32],
    devices: Vec<Device>,
    revoked: Vec<PeerId>,
    created_ms: u64,
}

/// Most bytes of a whole list (every version): a few hundred changes of a full account.
pub const MAX_LIST_BYTES: usize = 256 * 1024;

fn check_size(list: &v1::DeviceList) -> Result<(), AccountError> {
    let bytes = list.versions.iter().fold(0usize, |n, v| {
        n.saturating_add(v.body.len())
            .saturating_add(v.signature.len())
    });
    if bytes > MAX_LIST_BYTES {
        return Err(AccountError::Malformed("list too large"));
    }
    Ok(())
}

fn hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

fn peer(b: &[u8]) -> Result<PeerId, AccountError> {
    PeerId::from_bytes(b).map_err(|_| AccountError::Malformed("peer id"))
}

/// Checks one version against the version before it (None for version 1).
fn check_version(
    account: &AccountId,
    signed: &v1::SignedDeviceList,
    prev: Option<&Checked>,
) -> Result<Checked, AccountError> {
    let body = v1::DeviceListBody::decode(signed.body.as_slice())
        .map_err(|_| AccountError::Malformed("body"))?;
    if body.account.as_slice() != account.as_bytes() {
        return Err(AccountError::OtherAccount);
    }
    let expected = prev.map_or(Some(1), |p| p.version.checked_add(1));
    if Some(body.version) != expected {
        return Err(AccountError::Malformed("versions out of order"));
    }
    if body.devices.is_empty() || body.devices.len() > MAX_DEVICES {
        return Err(AccountError::Malformed("number of devices"));
    }
    if body.revoked.len() > MAX_REVOKED {
        return Err(AccountError::Malformed("number of revoked devices"));
    }
    let devices = body
        .devices
        .iter()
        .map(|d| {
            if d.name.len() > MAX_NAME_BYTES {
                return Err(AccountError::Malformed("device name too long"));
            }
            let peer_id = peer(&d.peer_id)?;
            let key = ed25519_of(&peer_id).ok_or(AccountError::Malformed("device key"))?;
            if !verify(&key, CONSENT_DOMAIN, account.as_bytes(), &d.consent) {
                return Err(AccountError::BadSignature("a device's consent"));
            }
            Ok(Device {
                peer_id,
                name: d.name.clone(),
                linked_ms: d.linked_ms,
                consent: d.consent.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let revoked = body
        .revoked
        .iter()
        .map(|r| peer(r))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, d) in devices.iter().enumerate() {
        if devices
            .iter()
            .skip(i.saturating_add(1))
            .any(|o| o.peer_id == d.peer_id)
        {
            return Err(AccountError::Malformed("a device listed twice"));
        }
        if revoked.contains(&d.peer_id) {
            return Err(AccountError::Malformed("a revoked device listed"));
        }
    }
    match prev {
        None => {
            if !body.prev.is_empty() || !body.signer.is_empty() || !revoked.is_empty() {
                return Err(AccountError::Malformed("version 1"));
            }
            let key = account
                .key()
                .ok_or(AccountError::Malformed("account key"))?;
            if !verify(&key, DEVICE_LIST_DOMAIN, &signed.body, &signed.signature) {
                return Err(AccountError::BadSignature("version 1 by the account key"));
            }
        }
        Some(p) => {
            if body.prev.as_slice() != p.hash {
                return Err(AccountError::Malformed("chain broken"));
            }
            // Revocations are forever; only a device of the account can be revoked (else an
            // account could "revoke" anyone's node); a device leaves only by revocation.
            if !p.revoked.iter().all(|r| revoked.contains(r)) {
                return Err(AccountError::NotAllowed("a revocation was undone"));
            }
            if revoked
                .iter()
                .any(|r| !p.revoked.contains(r) && !p.devices.iter().any(|d| d.peer_id == *r))
            {
                return Err(AccountError::NotAllowed(
                    "revokes a node that is not its device",
                ));
            }
            if p.devices.iter().any(|d| {
                !revoked.contains(&d.peer_id) && !devices.iter().any(|n| n.peer_id == d.peer_id)
            }) {
                return Err(AccountError::NotAllowed(
                    "a device dropped without being revoked",
                ));
            }
            let signer = peer(&body.signer)?;
            if !p.devices.iter().any(|d| d.peer_id == signer) {
                return Err(AccountError::BadSignature(
                    "signed by a device the version before does not list",
                ));
            }
            if revoked.contains(&signer) {
                return Err(AccountError::BadSignature("signed by a device it revokes"));
            }
            let key = ed25519_of(&signer).ok_or(AccountError::Malformed("signer key"))?;
            if !verify(&key, DEVICE_LIST_DOMAIN, &signed.body, &signed.signature) {
                return Err(AccountError::BadSignature("signer"));
            }
        }
    }
    Ok(Checked {
        version: body.version,
        hash: hash(&signed.body),
        devices,
        revoked,
        created_ms: body.created_ms,
    })
}

impl DeviceList {
    /// Founds an account: a new account key signs version 1 naming the device `first` and is
    /// erased.
    pub fn found(first: &ed25519::Keypair, name: &str, now_ms: u64) -> Result<Self, AccountError> {
        let key = ed25519::Keypair::generate();
        let account = AccountId::of(&key.public());
        let device = entry(
            peer_id_of(&first.public()),
            name,
            now_ms,
            consent(first, &account),
        )?;
        let body = v1::DeviceListBody {
            account: account.as_bytes().to_vec(),
            version: 1,
            prev: Vec::new(),
            devices: vec![to_entry(&device)],
            revoked: Vec::new(),
            signer: Vec::new(),
            created_ms: now_ms,
        }
        .encode_to_vec();
        let signature = sign(&key, DEVICE_LIST_DOMAIN, &body);
        // `key` is dropped here: ed25519 secret keys zeroize themselves.
        Self::verify(v1::DeviceList {
            versions: vec![v1::SignedDeviceList { body, signature }],
        })
    }

    /// Checks every version of a received list.
    pub fn verify(list: v1::DeviceList) -> Result<Self, AccountError> {
        if list.versions.is_empty() || list.versions.len() > MAX_VERSIONS {
            return Err(AccountError::Malformed("number of versions"));
        }
        check_size(&list)?;
        let first = v1::DeviceListBody::decode(list.versions[0].body.as_slice())
            .map_err(|_| AccountError::Malformed("body"))?;
        let account =
            AccountId::from_bytes(&first.account).ok_or(AccountError::Malformed("account key"))?;
        let mut newest: Option<Checked> = None;
        for v in &list.versions {
            newest = Some(check_version(&account, v, newest.as_ref())?);
        }
        let newest = newest.ok_or(AccountError::Malformed("number of versions"))?;
        Ok(Self {
            account,
            versions: list.versions,
            newest,
        })
    }

    /// The account a received list claims to be of (nothing checked yet).
    pub fn claimed_account(list: &v1::DeviceList) -> Option<AccountId> {
        let first = list.versions.first()?;
        let body = v1::DeviceListBody::decode(first.body.as_slice()).ok()?;
        AccountId::from_bytes(&body.account)
    }

    /// A received list of this account, checking only the versions this one lacks: None when
    /// it is not newer. The versions both hold must be byte for byte the same (else a fork).
    pub fn extended(&self, newer: v1::DeviceList) -> Result<Option<Self>, AccountError> {
        if newer.versions.len() > MAX_VERSIONS {
            return Err(AccountError::Malformed("number of versions"));
        }
        check_size(&newer)?;
        let held = self.versions.len();
        let shared = held.min(newer.versions.len());
        if newer.versions.get(..shared) != self.versions.get(..shared) {
            return Err(AccountError::Conflict);
        }
        if newer.versions.len() <= held {
            return Ok(None);
        }
        let mut newest = self.newest.clone();
        for v in newer.versions.get(held..).unwrap_or_default() {
            newest = check_version(&self.account, v, Some(&newest))?;
        }
        Ok(Some(Self {
            account: self.account.clone(),
            versions: newer.versions,
            newest,
        }))
    }

    /// Decodes and checks the stored or wire bytes of a list.
    pub fn decode(bytes: &[u8]) -> Result<Self, AccountError> {
        Self::verify(
            v1::DeviceList::decode(bytes).map_err(|_| AccountError::Malformed("encoding"))?,
        )
    }

    /// The wire form.
    pub fn to_proto(&self) -> v1::DeviceList {
        v1::DeviceList {
            versions: self.versions.clone(),
        }
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The account.
    pub fn account(&self) -> &AccountId {
        &self.account
    }

    /// The newest version's number.
    pub fn version(&self) -> u64 {
        self.newest.version
    }

    /// When the newest version was made.
    pub fn updated_ms(&self) -> u64 {
        self.newest.created_ms
    }

    /// The current devices, oldest first.
    pub fn devices(&self) -> &[Device] {
        &self.newest.devices
    }

    /// The revoked devices.
    pub fn revoked(&self) -> &[PeerId] {
        &self.newest.revoked
    }

    /// Whether `peer` is a current device.
    pub fn is_device(&self, peer: &PeerId) -> bool {
        self.newest.devices.iter().any(|d| d.peer_id == *peer)
    }

    /// Whether `peer` was a device and is revoked.
    pub fn is_revoked(&self, peer: &PeerId) -> bool {
        self.newest.revoked.contains(peer)
    }

    /// The next version, signed by the current device `signer`, with `change` applied.
    fn next(
        &self,
        signer: &ed25519::Keypair,
        now_ms: u64,
        change: impl FnOnce(&mut Vec<Device>, &mut Vec<PeerId>) -> Result<(), AccountError>,
    ) -> Result<Self, AccountError> {
        let me = peer_id_of(&signer.public());
        if !self.is_device(&me) {
            return Err(AccountError::NotAllowed(
                "this node is not a current device of the account",
            ));
        }
        let mut devices = self.newest.devices.clone();
        let mut revoked = self.newest.revoked.clone();
        change(&mut devices, &mut revoked)?;
        if self.versions.len() >= MAX_VERSIONS {
            return Err(AccountError::NotAllowed(
                "the account's device list is full",
            ));
        }
        let body = v1::DeviceListBody {
            account: self.account.as_bytes().to_vec(),
            version: self
                .newest
                .version
                .checked_add(1)
                .ok_or(AccountError::NotAllowed("version"))?,
            prev: self.newest.hash.to_vec(),
            devices: devices.iter().map(to_entry).collect(),
            revoked: revoked.iter().map(|p| p.to_bytes()).collect(),
            signer: me.to_bytes(),
            created_ms: now_ms,
        }
        .encode_to_vec();
        let signature = sign(signer, DEVICE_LIST_DOMAIN, &body);
        let mut versions = self.versions.clone();
        versions.push(v1::SignedDeviceList { body, signature });
        Self::verify(v1::DeviceList { versions })
    }

    /// The next version with `device` added (its `consent` signed for this account), signed
    /// by the current device `signer`.
    pub fn link(
        &self,
        signer: &ed25519::Keypair,
        device: PeerId,
        consent: Vec<u8>,
        name: &str,
        now_ms: u64,
    ) -> Result<Self, AccountError> {
        self.next(signer, now_ms, |devices, revoked| {
            if revoked.contains(&device) {
                return Err(AccountError::NotAllowed(
                    "a revoked device cannot be linked again",
                ));
            }
            if devices.iter().any(|d| d.peer_id == device) {
                return Err(AccountError::NotAllowed("already a device of this account"));
            }
            if devices.len() >= MAX_DEVICES {
                return Err(AccountError::NotAllowed(
                    "the account has the most devices it may have",
                ));
            }
            devices.push(entry(device, name, now_ms, consent)?);
            Ok(())
        })
    }

    /// The next version with `device` revoked, signed by another current device `signer`.
    pub fn revoke(
        &self,
        signer: &ed25519::Keypair,
        device: &PeerId,
        now_ms: u64,
    ) -> Result<Self, AccountError> {
        if peer_id_of(&signer.public()) == *device {
            return Err(AccountError::NotAllowed(
                "a device cannot revoke itself; revoke it from another device",
            ));
        }
        self.next(signer, now_ms, |devices, revoked| {
            if !devices.iter().any(|d| d.peer_id == *device) {
                return Err(AccountError::NotAllowed("not a device of this account"));
            }
            if revoked.len() >= MAX_REVOKED {
                return Err(AccountError::NotAllowed(
                    "the account has revoked the most devices it may",
                ));
            }
            devices.retain(|d| d.peer_id != *device);
            revoked.push(*device);
            Ok(())
        })
    }

    /// How `newer` relates to this list: a later version of the same chain (Ok(true)), the
    /// same or an older one (Ok(false)), or a fork or another account (Err).
    pub fn superseded_by(&self, newer: &DeviceList) -> Result<bool, AccountError> {
        if newer.account != self.account {
            return Err(AccountError::OtherAccount);
        }
        let shared = self.versions.len().min(newer.versions.len());
        if self.versions[..shared] != newer.versions[..shared] {
            return Err(AccountError::Conflict);
        }
        Ok(newer.versions.len() > self.versions.len())
    }
}

fn entry(peer: PeerId, name: &str, now_ms: u64, consent: Vec<u8>) -> Result<Device, AccountError> {
    let name = name.trim();
    if name.len() > MAX_NAME_BYTES {
        return Err(AccountError::NotAllowed("device name longer than 64 bytes"));
    }
    Ok(Device {
        peer_id: peer,
        name: name.to_string(),
        linked_ms: now_ms,
        consent,
    })
}

fn to_entry(d: &Device) -> v1::DeviceEntry {
    v1::DeviceEntry {
        peer_id: d.peer_id.to_bytes(),
        name: d.name.clone(),
        linked_ms: d.linked_ms,
        consent: d.consent.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn device() -> (ed25519::Keypair, PeerId) {
        let k = ed25519::Keypair::generate();
        let p = peer_id_of(&k.public());
        (k, p)
    }

    fn add(
        l: &DeviceList,
        signer: &ed25519::Keypair,
        new: &ed25519::Keypair,
        t: u64,
    ) -> Result<DeviceList, AccountError> {
        l.link(
            signer,
            peer_id_of(&new.public()),
            consent(new, l.account()),
            "d",
            t,
        )
    }

    #[test]
    fn found_link_revoke_and_verify_the_chain() {
        let (k1, p1) = device();
        let (k2, p2) = device();
        let (k3, p3) = device();
        let l1 = DeviceList::found(&k1, "laptop", 1).expect("found");
        assert_eq!((l1.version(), l1.devices().len()), (1, 1));
        let l2 = add(&l1, &k1, &k2, 2).expect("link");
        let l3 = add(&l2, &k2, &k3, 3).expect("the new device links another");
        assert!(l3.is_device(&p3));
        let l4 = l3.revoke(&k2, &p1, 4).expect("revoke");
        assert!(l4.is_revoked(&p1) && !l4.is_device(&p1));
        assert_eq!(l4.devices().len(), 2);
        // The wire form checks again, and the account id is the same all along.
        let back = DeviceList::decode(&l4.encode()).expect("decode");
        assert_eq!(back, l4);
        assert_eq!(back.account(), l1.account());
        assert!(l1.superseded_by(&l4).expect("same chain"));
        // Extending a held list checks only what it lacks, and gives the same list.
        assert_eq!(l1.extended(l4.to_proto()), Ok(Some(l4.clone())));
        assert_eq!(l4.extended(l2.to_proto()), Ok(None));
        assert_eq!(
            DeviceList::claimed_account(&l4.to_proto()).as_ref(),
            Some(l1.account())
        );
        assert!(!l4.superseded_by(&l2).expect("older"));
        // The revoked device signs nothing more, and cannot be linked again.
        assert!(matches!(
            add(&l4, &k1, &device().0, 5),
            Err(AccountError::NotAllowed(_))
        ));
        assert!(add(&l4, &k2, &k1, 5).is_err());
        // Nobody lists a node without its consent (here: consent for another account).
        let (k5, p5) = device();
        let other = DeviceList::found(&device().0, "x", 1).expect("other");
        assert!(
            l4.link(&k2, p5, consent(&k5, other.account()), "x", 5)
                .is_err()
        );
        // A device cannot revoke itself.
        assert!(l4.revoke(&k2, &p2, 5).is_err());
    }

    #[test]
    fn a_revoked_device_cannot_extend_the_chain_by_hand() {
        let (k1, p1) = device();
        let (k2, _p2) = device();
        let l2 = DeviceList::found(&k1, "a", 1)
            .and_then(|l| add(&l, &k1, &k2, 2))
            .expect("two devices");
        let l3 = l2.revoke(&k2, &p1, 3).expect("revoke 1");
        // Device 1 (revoked) forges version 4 re-adding itself, signing with its own key.
        let mut forged = l3.to_proto();
        let body = v1::DeviceListBody {
            account: l3.account().as_bytes().to_vec(),
            version: 4,
            prev: hash(&forged.versions[2].body).to_vec(),
            devices: vec![v1::DeviceEntry {
                peer_id: p1.to_bytes(),
                name: "a".into(),
                linked_ms: 4,
                consent: consent(&k1, l3.account()),
            }],
            revoked: vec![],
            signer: p1.to_bytes(),
            created_ms: 4,
        }
        .encode_to_vec();
        let signature = sign(&k1, DEVICE_LIST_DOMAIN, &body);
        forged
            .versions
            .push(v1::SignedDeviceList { body, signature });
        assert!(DeviceList::verify(forged).is_err());
    }

    /// Signs a next version by hand, as a hostile account would.
    fn forge(
        l: &DeviceList,
        signer: &ed25519::Keypair,
        devices: Vec<Device>,
        revoked: Vec<PeerId>,
    ) -> Result<DeviceList, AccountError> {
        let mut p = l.to_proto();
        let body = v1::DeviceListBody {
            account: l.account().as_bytes().to_vec(),
            version: l.version() + 1,
            prev: hash(&p.versions.last().expect("a version").body).to_vec(),
            devices: devices.iter().map(to_entry).collect(),
            revoked: revoked.iter().map(|r| r.to_bytes()).collect(),
            signer: peer_id_of(&signer.public()).to_bytes(),
            created_ms: 9,
        }
        .encode_to_vec();
        let signature = sign(signer, DEVICE_LIST_DOMAIN, &body);
        p.versions.push(v1::SignedDeviceList { body, signature });
        DeviceList::verify(p)
    }

    #[test]
    fn an_account_revokes_only_its_own_devices_and_drops_none_silently() {
        let (k1, _) = device();
        let (k2, p2) = device();
        let l = add(&DeviceList::found(&k1, "a", 1).expect("found"), &k1, &k2, 2).expect("two");
        let mine = l.devices().to_vec();
        // "Revoking" a stranger's node (to be taken as its account, or to silence it): refused.
        let victim = PeerId::random();
        assert_eq!(
            forge(&l, &k1, mine.clone(), vec![victim]),
            Err(AccountError::NotAllowed(
                "revokes a node that is not its device"
            ))
        );
        // Dropping a device without revoking it (to re-add it later): refused.
        let only_first = vec![mine[0].clone()];
        assert_eq!(
            forge(&l, &k1, only_first.clone(), vec![]),
            Err(AccountError::NotAllowed(
                "a device dropped without being revoked"
            ))
        );
        // The honest way passes.
        assert!(forge(&l, &k1, only_first, vec![p2]).is_ok());
    }

    #[test]
    fn forks_tampering_and_other_accounts_are_refused() {
        let (k1, _) = device();
        let l1 = DeviceList::found(&k1, "a", 1).expect("found");
        let a = add(&l1, &k1, &device().0, 2).expect("a");
        let b = add(&l1, &k1, &device().0, 2).expect("b");
        assert_eq!(a.superseded_by(&b), Err(AccountError::Conflict));
        assert_eq!(a.extended(b.to_proto()), Err(AccountError::Conflict));
        let other = DeviceList::found(&k1, "a", 1).expect("another account");
        assert_eq!(a.superseded_by(&other), Err(AccountError::OtherAccount));
        // Any bit flipped anywhere is refused.
        let bytes = a.encode();
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            if let Ok(l) = DeviceList::decode(&t) {
                // (A flip inside protobuf framing may decode to the same list.)
                assert_eq!(l, a, "byte {i} changed the list and still verified");
            }
        }
        // Versions dropped from the front or shuffled do not verify.
        let mut p = a.to_proto();
        p.versions.remove(0);
        assert!(DeviceList::verify(p).is_err());
        assert!(DeviceList::decode(b"junk").is_err());
        assert!(DeviceList::verify(v1::DeviceList::default()).is_err());
    }

    #[test]
    fn bounds_hold() {
        let (k1, _) = device();
        let mut l = DeviceList::found(&k1, "a", 1).expect("found");
        for i in 1..MAX_DEVICES {
            l = add(&l, &k1, &device().0, i as u64).expect("link");
        }
        assert!(add(&l, &k1, &device().0, 99).is_err());
        let fresh = DeviceList::found(&k1, "a", 1).expect("found");
        let (k9, p9) = device();
        assert!(
            fresh
                .link(&k1, p9, consent(&k9, fresh.account()), &"n".repeat(65), 99)
                .is_err()
        );
        let id = l.account().to_string();
        assert_eq!(id.parse::<AccountId>().expect("parse"), *l.account());
    }
}
