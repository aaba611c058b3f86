//! Linking a new device: a one-time `samizdat://device/...` link shown on a device of the
//! account (its peer id, addresses and a 32-byte secret), and the proof the new device sends
//! back over a connection to that peer id. The connection's Noise handshake authenticates both
//! peer ids; the proof shows the requester read the link, which only the user who holds the
//! existing device could have shown it. I/O-free: time is passed in.

#![warn(clippy::arithmetic_side_effects)]

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use prost::Message as _;
use samizdat_proto::v1;
use sha2::Sha256;
use zeroize::Zeroizing;

const PREFIX: &str = "samizdat://device/";
const PROOF_DOMAIN: &[u8] = b"samizdat/v1/device-link";
const CODE_DOMAIN: &[u8] = b"samizdat/v1/device-code";
/// How long a link may be used.
pub const LINK_TTL_MS: u64 = 10 * 60 * 1000;
/// Most links waiting at once on one device.
pub const MAX_PENDING: usize = 4;
/// Most addresses a link carries.
const MAX_ADDRS: usize = 8;
/// Longest link accepted (bytes of text).
const MAX_LINK_LEN: usize = 4 * 1024;

/// Why a device link was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    /// Not a `samizdat://device/` link.
    #[error("not a samizdat device link (expected samizdat://device/...)")]
    NotALink,
    /// The payload is not a ticket.
    #[error("device link is corrupt")]
    Malformed,
    /// Used, expired, or never issued.
    #[error("device link expired or already used; make a new one with `samizdat device link`")]
    Expired,
}

/// What a device link carries.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The device that issued it.
    pub peer_id: PeerId,
    /// Where that device listens (each ending in its /p2p/ id).
    pub addrs: Vec<Multiaddr>,
    /// The one-time secret.
    pub secret: Zeroizing<[u8; 32]>,
    /// When it stops working.
    pub expires_ms: u64,
    /// The account the new device joins.
    pub account: super::AccountId,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("peer_id", &self.peer_id)
            .field("addrs", &self.addrs)
            .field("expires_ms", &self.expires_ms)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl Ticket {
    /// The proof a new device `requester` sends to show it holds this link.
    pub fn proof(&self, requester: &PeerId) -> Vec<u8> {
        proof(&self.secret, requester)
    }

    /// The short code both devices show once `device` used this link, for the user to
    /// compare (it binds the link to the device that used it).
    pub fn code_for(&self, device: &PeerId) -> String {
        code(&self.secret, device)
    }

    /// The stored form (sealed at rest by the store).
    pub fn encode(&self) -> Vec<u8> {
        v1::DeviceLinkTicket {
            peer_id: self.peer_id.to_bytes(),
            addrs: self.addrs.iter().map(|a| a.to_vec()).collect(),
            secret: self.secret.to_vec(),
            expires_ms: self.expires_ms,
            account: self.account.as_bytes().to_vec(),
        }
        .encode_to_vec()
    }

    /// From the stored or link form.
    pub fn decode(bytes: &[u8]) -> Result<Self, LinkError> {
        let pb = v1::DeviceLinkTicket::decode(bytes).map_err(|_| LinkError::Malformed)?;
        let peer_id = PeerId::from_bytes(&pb.peer_id).map_err(|_| LinkError::Malformed)?;
        if pb.addrs.len() > MAX_ADDRS {
            return Err(LinkError::Malformed);
        }
        let addrs = pb
            .addrs
            .into_iter()
            .map(|a| {
                let a = Multiaddr::try_from(a).map_err(|_| LinkError::Malformed)?;
                let a = samizdat_net::web::keep_name(&a);
                match a.iter().last() {
                    Some(Protocol::P2p(p)) if p == peer_id => Ok(a),
                    Some(Protocol::P2p(_)) => Err(LinkError::Malformed),
                    _ => Ok(a.with(Protocol::P2p(peer_id))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let secret: [u8; 32] = pb
            .secret
            .as_slice()
            .try_into()
            .map_err(|_| LinkError::Malformed)?;
        let account = super::AccountId::from_bytes(&pb.account).ok_or(LinkError::Malformed)?;
        Ok(Self {
            peer_id,
            addrs,
            secret: Zeroizing::new(secret),
            expires_ms: pb.expires_ms,
            account,
        })
    }
}

impl fmt::Display for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::link::encode(PREFIX, &self.encode()))
    }
}

impl FromStr for Ticket {
    type Err = LinkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = crate::link::decode(PREFIX, s, MAX_LINK_LEN).map_err(|e| match e {
            crate::link::Shape::TooLong => LinkError::Malformed,
            crate::link::Shape::NotALink => LinkError::NotALink,
        })?;
        Self::decode(&bytes)
    }
}

fn mac(secret: &[u8; 32], domain: &[u8], data: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts 32-byte keys"));
    m.update(domain);
    m.update(data);
    m
}

fn proof(secret: &[u8; 32], requester: &PeerId) -> Vec<u8> {
    mac(secret, PROOF_DOMAIN, &requester.to_bytes())
        .finalize()
        .into_bytes()
        .to_vec()
}

fn code(secret: &[u8; 32], device: &PeerId) -> String {
    let d = mac(secret, CODE_DOMAIN, &device.to_bytes())
        .finalize()
        .into_bytes();
    let n = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % 1_000_000;
    format!("{:03}-{:03}", n / 1000, n % 1000)
}

/// A link this device issued: its secret, expiry, and the device that used it (which may
/// ask again, should the answer be lost, until the link expires; nobody else may).
struct Issued {
    secret: Zeroizing<[u8; 32]>,
    expires_ms: u64,
    used_by: Option<PeerId>,
}

/// The links this device issued that have not expired.
#[derive(Default)]
pub struct Pending {
    links: Vec<Issued>,
}

impl Pending {
    /// A new link's secret and expiry (the oldest pending link is dropped past the bound).
    pub fn issue(&mut self, now_ms: u64) -> (Zeroizing<[u8; 32]>, u64) {
        self.links.retain(|l| l.expires_ms > now_ms);
        if self.links.len() >= MAX_PENDING {
            self.links.remove(0);
        }
        let secret = Zeroizing::new(crate::crypto::random_bytes::<32>());
        let expires_ms = now_ms.saturating_add(LINK_TTL_MS);
        self.links.push(Issued {
            secret: secret.clone(),
            expires_ms,
            used_by: None,
        });
        (secret, expires_ms)
    }

    /// Whether `proof` from `requester` matches a live link not used by another device; the
    /// link is then bound to `requester`. Returns the code both devices show.
    pub fn redeem(
        &mut self,
        requester: &PeerId,
        proof_bytes: &[u8],
        now_ms: u64,
    ) -> Result<String, LinkError> {
        self.links.retain(|l| l.expires_ms > now_ms);
        // `verify_slice` compares in constant time.
        let found = self.links.iter_mut().find(|l| {
            l.used_by.is_none_or(|p| p == *requester)
                && mac(&l.secret, PROOF_DOMAIN, &requester.to_bytes())
                    .verify_slice(proof_bytes)
                    .is_ok()
        });
        let link = found.ok_or(LinkError::Expired)?;
        link.used_by = Some(*requester);
        Ok(code(&link.secret, requester))
    }

    /// Whether any link is waiting.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// The history a new device is given: of `(sent_ms, encoded length, item)`, those sent at or
/// after `since_ms`, newest first while they fit `max_items` and `max_bytes` (an item that
/// does not fit is skipped; smaller older ones may still), returned oldest first.
pub fn newest_within<T>(
    mut items: Vec<(u64, usize, T)>,
    since_ms: u64,
    max_items: usize,
    max_bytes: usize,
) -> Vec<T> {
    items.retain(|(t, _, _)| *t >= since_ms);
    items.sort_by_key(|(t, _, _)| std::cmp::Reverse(*t));
    let mut left = max_bytes;
    let mut kept: Vec<(u64, T)> = Vec::new();
    for (t, len, item) in items {
        if kept.len() >= max_items {
            break;
        }
        if let Some(rest) = left.checked_sub(len) {
            left = rest;
            kept.push((t, item));
        }
    }
    kept.reverse();
    kept.into_iter().map(|(_, item)| item).collect()
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn ticket(pending: &mut Pending, now: u64) -> Ticket {
        let (secret, expires_ms) = pending.issue(now);
        let peer_id = PeerId::random();
        Ticket {
            peer_id,
            addrs: vec!["/ip4/192.0.2.1/tcp/4001".parse().expect("addr")],
            secret,
            expires_ms,
            account: crate::account::AccountId::of(
                &libp2p::identity::ed25519::Keypair::generate().public(),
            ),
        }
    }

    #[test]
    fn a_link_round_trips_and_is_used_once() {
        let mut pending = Pending::default();
        let t = ticket(&mut pending, 1_000);
        let back: Ticket = t.to_string().parse().expect("parses");
        assert_eq!(back.peer_id, t.peer_id);
        assert!(back.addrs[0].to_string().ends_with(&t.peer_id.to_string()));
        let new = PeerId::random();
        assert_eq!(back.code_for(&new), t.code_for(&new));
        assert_ne!(t.code_for(&new), t.code_for(&PeerId::random()));
        // A proof made for another peer id (a relay or eavesdropper replaying it) fails.
        assert_eq!(
            pending.redeem(&PeerId::random(), &back.proof(&new), 2_000),
            Err(LinkError::Expired)
        );
        assert_eq!(
            pending.redeem(&new, &back.proof(&new), 2_000),
            Ok(t.code_for(&new))
        );
        // The same device may ask again (its answer may have been lost); another may not,
        // even with the secret.
        assert!(pending.redeem(&new, &back.proof(&new), 2_000).is_ok());
        let thief = PeerId::random();
        assert_eq!(
            pending.redeem(&thief, &back.proof(&thief), 2_000),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn links_expire_and_are_bounded() {
        let mut pending = Pending::default();
        let t = ticket(&mut pending, 0);
        let new = PeerId::random();
        assert_eq!(
            pending.redeem(&new, &t.proof(&new), LINK_TTL_MS + 1),
            Err(LinkError::Expired)
        );
        let first = ticket(&mut pending, 0);
        for _ in 0..MAX_PENDING {
            ticket(&mut pending, 0);
        }
        assert_eq!(
            pending.redeem(&new, &first.proof(&new), 1),
            Err(LinkError::Expired)
        );
        assert!(pending.redeem(&new, b"", 1).is_err());
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert_eq!("https://x".parse::<Ticket>(), Err(LinkError::NotALink));
        assert_eq!(
            "samizdat://device/aaaa".parse::<Ticket>(),
            Err(LinkError::Malformed)
        );
        let long = format!("{PREFIX}{}", "a".repeat(10_000));
        assert_eq!(long.parse::<Ticket>(), Err(LinkError::Malformed));
    }

    #[test]
    fn a_grant_keeps_the_newest_history_that_fits() {
        // (sent, length, name)
        let items = vec![
            (5, 10, "old"),
            (50, 10, "c"),
            (10, 10, "a"),
            (40, 900, "huge"),
            (30, 10, "b"),
            (60, usize::MAX, "absurd"),
        ];
        // Since 10: "old" is too old; the huge and absurd ones do not fit 100 bytes, the
        // smaller older ones still do; oldest first.
        assert_eq!(
            newest_within(items.clone(), 10, 10, 100),
            vec!["a", "b", "c"]
        );
        // Two items: the newest two that fit.
        assert_eq!(newest_within(items.clone(), 0, 2, 100), vec!["b", "c"]);
        // 25 bytes: the newest two of ten bytes each.
        assert_eq!(newest_within(items.clone(), 0, 10, 25), vec!["b", "c"]);
        assert!(newest_within(items, 0, 0, 100).is_empty());
        assert!(newest_within(Vec::<(u64, usize, ())>::new(), 0, 10, 10).is_empty());
    }
}
