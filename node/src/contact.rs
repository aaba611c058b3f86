//! Contact cards: a node's peer id, its X25519 key bound to the identity by an ed25519
//! signature, and a few addresses, shared as a `samizdat://contact/...` link or QR code.

#![warn(clippy::arithmetic_side_effects)]

use std::fmt;
use std::str::FromStr;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use prost::Message;
use samizdat_proto::v1;

use crate::identity::{Identity, X25519_BINDING_DOMAIN, ed25519_of};

const PREFIX: &str = "samizdat://contact/";
/// Signature domain of a whole card (so addresses cannot be swapped either).
const CARD_DOMAIN: &[u8] = b"samizdat/v1/contact-card";
/// Most addresses a card carries (keeps links and QR codes small).
pub const MAX_CARD_ADDRS: usize = 8;
/// Longest link accepted (bytes of text): a card with its account's device list.
const MAX_LINK_LEN: usize = 16 * 1024;
/// A card leaves out its device list past this many bytes (QR codes hold ~2.9 KB); the contact
/// then gets the list from the node itself on first contact.
const MAX_CARD_WITH_DEVICES: usize = 1600;

/// Why a contact link was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContactError {
    /// Not a `samizdat://contact/` link, or not base32.
    #[error("not a samizdat contact link (expected samizdat://contact/...)")]
    NotALink,
    /// The payload is not a contact card.
    #[error("contact link is corrupt")]
    Malformed,
    /// The X25519 key is not signed by the card's identity: tampered or forged.
    #[error("contact card signature does not verify: the link was altered or forged")]
    BadSignature,
    /// A node cannot add itself.
    #[error("this is your own contact card")]
    OwnCard,
}

/// A decoded, verified contact card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactCard {
    /// The contact's node.
    pub peer_id: PeerId,
    /// Its X25519 public key.
    pub x25519: [u8; 32],
    /// The identity key's signature over the X25519 key.
    pub binding: Vec<u8>,
    /// Where it was reachable: multiaddrs ending in /p2p/<peer id>.
    pub addrs: Vec<Multiaddr>,
    /// The identity key's signature over the key and the addresses.
    pub signature: Vec<u8>,
    /// The account the node is a device of (verified; lists the node).
    pub devices: Option<crate::account::DeviceList>,
}

fn card_message(x25519: &[u8; 32], addrs: &[Multiaddr]) -> Vec<u8> {
    let mut msg = CARD_DOMAIN.to_vec();
    msg.extend_from_slice(x25519);
    for a in addrs {
        let b = a.to_vec();
        msg.extend_from_slice(&u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes());
        msg.extend_from_slice(&b);
    }
    msg
}

impl ContactCard {
    /// This node's own card, listing `addrs` (bare or ending in its /p2p/ id).
    pub fn own(
        identity: &Identity,
        addrs: impl IntoIterator<Item = Multiaddr>,
        devices: Option<&crate::account::DeviceList>,
    ) -> Self {
        let peer_id = identity.peer_id();
        let addrs = addrs
            .into_iter()
            .map(|a| match a.iter().last() {
                Some(Protocol::P2p(_)) => a,
                _ => a.with(Protocol::P2p(peer_id)),
            })
            .take(MAX_CARD_ADDRS)
            .collect::<Vec<_>>();
        let x25519 = identity.x25519_public().to_bytes();
        let signature = identity.signing().sign(&card_message(&x25519, &addrs));
        let mut card = Self {
            peer_id,
            x25519,
            binding: identity.x25519_binding(),
            addrs,
            signature,
            devices: devices.cloned(),
        };
        if card.to_proto().encoded_len() > MAX_CARD_WITH_DEVICES {
            card.devices = None;
        }
        card
    }

    /// The account named by the card, if it carries its device list.
    pub fn account(&self) -> Option<&crate::account::AccountId> {
        self.devices.as_ref().map(|d| d.account())
    }

    /// Checks that the X25519 key and the addresses are signed by the identity behind the
    /// peer id.
    pub fn verify(&self) -> Result<(), ContactError> {
        let key = ed25519_of(&self.peer_id).ok_or(ContactError::Malformed)?;
        let mut msg = X25519_BINDING_DOMAIN.to_vec();
        msg.extend_from_slice(&self.x25519);
        if key.verify(&msg, &self.binding)
            && key.verify(&card_message(&self.x25519, &self.addrs), &self.signature)
        {
            Ok(())
        } else {
            Err(ContactError::BadSignature)
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> v1::ContactCard {
        v1::ContactCard {
            peer_id: self.peer_id.to_bytes(),
            x25519: self.x25519.to_vec(),
            binding: self.binding.clone(),
            addrs: self.addrs.iter().map(|a| a.to_vec()).collect(),
            signature: self.signature.clone(),
            devices: self.devices.as_ref().map(|d| d.to_proto()),
        }
    }

    /// Decodes and verifies the wire form.
    pub fn from_proto(pb: v1::ContactCard) -> Result<Self, ContactError> {
        let peer_id = PeerId::from_bytes(&pb.peer_id).map_err(|_| ContactError::Malformed)?;
        let x25519: [u8; 32] = pb
            .x25519
            .as_slice()
            .try_into()
            .map_err(|_| ContactError::Malformed)?;
        if pb.addrs.len() > MAX_CARD_ADDRS {
            return Err(ContactError::Malformed);
        }
        let addrs = pb
            .addrs
            .into_iter()
            .map(|a| {
                Multiaddr::try_from(a)
                    .map(|a| samizdat_net::web::keep_name(&a))
                    .map_err(|_| ContactError::Malformed)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !addrs
            .iter()
            .all(|a| matches!(a.iter().last(), Some(Protocol::P2p(p)) if p == peer_id))
        {
            return Err(ContactError::Malformed);
        }
        let devices = pb
            .devices
            .map(crate::account::DeviceList::verify)
            .transpose()
            .map_err(|_| ContactError::Malformed)?;
        if devices.as_ref().is_some_and(|d| !d.is_device(&peer_id)) {
            return Err(ContactError::Malformed);
        }
        let card = Self {
            peer_id,
            x25519,
            binding: pb.binding,
            addrs,
            signature: pb.signature,
            devices,
        };
        card.verify()?;
        Ok(card)
    }
}

impl fmt::Display for ContactCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::link::encode(
            PREFIX,
            &self.to_proto().encode_to_vec(),
        ))
    }
}

impl FromStr for ContactCard {
    type Err = ContactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = crate::link::decode(PREFIX, s, MAX_LINK_LEN).map_err(|e| match e {
            crate::link::Shape::TooLong => ContactError::Malformed,
            crate::link::Shape::NotALink => ContactError::NotALink,
        })?;
        let pb = v1::ContactCard::decode(bytes.as_slice()).map_err(|_| ContactError::Malformed)?;
        Self::from_proto(pb)
    }
}

/// A contact this node added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Its peer id.
    pub peer_id: PeerId,
    /// Its verified card; none for a peer that became a contact by an accepted message
    /// request (adding its card later fills it in).
    pub card: Option<ContactCard>,
    /// The name this user gave it.
    pub name: String,
    /// When it was added (ms since the epoch).
    pub added_ms: u64,
}

impl Contact {
    /// Bytes for the store. The card is kept without its device list: the node keeps
    /// accounts' lists apart (and reading contacts back need not check them again).
    pub fn encode(&self) -> Vec<u8> {
        v1::StoredContact {
            card: self.card.as_ref().map(|c| v1::ContactCard {
                devices: None,
                ..c.to_proto()
            }),
            name: self.name.clone(),
            added_ms: self.added_ms,
            peer_id: if self.card.is_some() {
                Vec::new()
            } else {
                self.peer_id.to_bytes()
            },
        }
        .encode_to_vec()
    }

    /// From the store's bytes (the card is verified again).
    pub fn decode(bytes: &[u8]) -> Result<Self, ContactError> {
        let pb = v1::StoredContact::decode(bytes).map_err(|_| ContactError::Malformed)?;
        let card = pb.card.map(ContactCard::from_proto).transpose()?;
        let peer_id = match &card {
            Some(c) => c.peer_id,
            None => PeerId::from_bytes(&pb.peer_id).map_err(|_| ContactError::Malformed)?,
        };
        Ok(Self {
            peer_id,
            card,
            name: pb.name,
            added_ms: pb.added_ms,
        })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn card() -> (Identity, ContactCard) {
        let id = Identity::generate();
        let addr: Multiaddr = "/ip4/192.0.2.7/tcp/4001".parse().expect("addr");
        let devices = crate::account::DeviceList::found(id.signing(), "laptop", 1).expect("found");
        let card = ContactCard::own(&id, [addr], Some(&devices));
        assert!(card.devices.is_some(), "a one-device list fits in a card");
        (id, card)
    }

    #[test]
    fn contacts_with_and_without_a_card_round_trip() {
        let (_, card) = card();
        let with = Contact {
            peer_id: card.peer_id,
            card: Some(card.clone()),
            name: "Ana".into(),
            added_ms: 5,
        };
        let back = Contact::decode(&with.encode()).expect("decode");
        assert_eq!(back.peer_id, card.peer_id);
        let stored = back.card.expect("card kept");
        assert_eq!((stored.peer_id, stored.x25519), (card.peer_id, card.x25519));
        // The device list is kept apart, not in the stored card.
        assert!(card.devices.is_some() && stored.devices.is_none());
        let accepted = Contact {
            peer_id: PeerId::random(),
            card: None,
            name: String::new(),
            added_ms: 6,
        };
        let back = Contact::decode(&accepted.encode()).expect("decode");
        assert_eq!(
            (back.peer_id, back.card.is_none()),
            (accepted.peer_id, true)
        );
        // Neither a card nor a peer id: refused.
        let empty = v1::StoredContact::default().encode_to_vec();
        assert!(Contact::decode(&empty).is_err());
    }

    #[test]
    fn link_round_trips_and_verifies() {
        let (id, card) = card();
        let back: ContactCard = card.to_string().parse().expect("parses");
        assert_eq!(back, card);
        assert_eq!(back.peer_id, id.peer_id());
        assert_eq!(back.x25519, id.x25519_public().to_bytes());
        assert!(
            back.addrs[0]
                .to_string()
                .ends_with(&id.peer_id().to_string())
        );
    }

    #[test]
    fn a_swapped_key_or_flipped_bit_is_refused() {
        let (_, mut card) = card();
        let other = Identity::generate();
        // A man in the middle puts in his own encryption key: the signature no longer matches.
        card.x25519 = other.x25519_public().to_bytes();
        let forged = card.to_string();
        assert_eq!(
            forged.parse::<ContactCard>(),
            Err(ContactError::BadSignature)
        );
        // Any character changed anywhere in the payload (key, address, signature) is refused.
        let (_, card) = self::card();
        let link = card.to_string();
        for i in PREFIX.len()..link.len() {
            let mut b = link.clone().into_bytes();
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            let s = String::from_utf8(b).expect("ascii");
            assert!(
                s.parse::<ContactCard>().is_err(),
                "accepted a change at {i}"
            );
        }
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert_eq!(
            "https://example.com".parse::<ContactCard>(),
            Err(ContactError::NotALink)
        );
        assert_eq!(
            "samizdat://contact/!!!".parse::<ContactCard>(),
            Err(ContactError::NotALink)
        );
        assert_eq!(
            "samizdat://contact/aaaa".parse::<ContactCard>(),
            Err(ContactError::Malformed)
        );
        let long = format!("{PREFIX}{}", "a".repeat(10_000));
        assert_eq!(long.parse::<ContactCard>(), Err(ContactError::Malformed));
    }
}
