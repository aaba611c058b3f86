//! Who may post to a channel besides its owner: the newest certificate per admin and the
//! owner's revocations, as one node knows them. No I/O: the event loop stores what changes and
//! tells the network.

use std::collections::HashMap;

use prost::Message;
use samizdat_proto::v1;

use super::{AdminCert, AdminRevocation, CERT_LIFETIME_MS, ChannelId, peek_cert};

/// Most admins (certificates) and revocations kept per channel.
pub const MAX_ADMINS: usize = 256;

/// The admin registry of one channel.
#[derive(Debug, Clone)]
pub struct Admins {
    channel: ChannelId,
    certs: HashMap<[u8; 32], AdminCert>,
    revocations: HashMap<[u8; 32], AdminRevocation>,
}

/// What adopting something changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changed {
    /// The registry changed (store it, and it is news worth passing on).
    pub changed: bool,
}

impl Admins {
    /// The registry as stored (encoded certificates and revocations; invalid ones are dropped).
    pub fn from_stored(channel: ChannelId, certs: &[Vec<u8>], revocations: &[Vec<u8>]) -> Self {
        let mut this = Self {
            channel,
            certs: HashMap::new(),
            revocations: HashMap::new(),
        };
        for r in revocations {
            if let Ok(r) = v1::AdminRevocation::decode(r.as_slice())
                && let Ok(r) = AdminRevocation::verify(r, &channel)
            {
                this.adopt_revocation(r);
            }
        }
        for c in certs {
            if let Ok(c) = v1::AdminCert::decode(c.as_slice())
                && let Ok(c) = AdminCert::verify(c, &channel)
            {
                this.adopt_cert(c);
            }
        }
        this
    }

    /// What to store: encoded certificates and revocations.
    pub fn to_stored(&self) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        (
            self.certs
                .values()
                .map(|c| c.signed.encode_to_vec())
                .collect(),
            self.revocations
                .values()
                .map(|r| r.signed.encode_to_vec())
                .collect(),
        )
    }

    /// Certificates and revocations as the wire carries them (sync heads).
    pub fn wire(&self) -> (Vec<v1::AdminCert>, Vec<v1::AdminRevocation>) {
        (
            self.certs.values().map(|c| c.signed.clone()).collect(),
            self.revocations
                .values()
                .map(|r| r.signed.clone())
                .collect(),
        )
    }

    /// The current certificate of `admin`, if it has one.
    pub fn cert(&self, admin: &[u8; 32]) -> Option<&AdminCert> {
        self.certs.get(admin)
    }

    /// Every current certificate, and every revocation.
    pub fn all(&self) -> (Vec<&AdminCert>, Vec<&AdminRevocation>) {
        (
            self.certs.values().collect(),
            self.revocations.values().collect(),
        )
    }

    /// Whether an encoded certificate could change anything (checked without its signature:
    /// replays and older copies cost no verification).
    pub fn cert_is_news(&self, signed: &v1::AdminCert) -> bool {
        let Some((admin, issued)) = peek_cert(signed) else {
            return true; // malformed: let verification refuse it
        };
        if self
            .revocations
            .get(&admin)
            .is_some_and(|r| issued <= r.revoked_at_ms)
        {
            return false;
        }
        match self.certs.get(&admin) {
            Some(held) => issued > held.issued_at_ms,
            None => self.certs.len() < MAX_ADMINS,
        }
    }

    /// The held certificate byte-identical to `signed` (verified when it was adopted).
    pub fn held(&self, signed: &v1::AdminCert) -> Option<&AdminCert> {
        let (admin, _) = peek_cert(signed)?;
        self.certs.get(&admin).filter(|c| c.signed == *signed)
    }

    /// Adopts a verified certificate if it is the admin's newest and not revoked.
    pub fn adopt_cert(&mut self, cert: AdminCert) -> Changed {
        let admin = cert.admin.to_bytes();
        let revoked = self
            .revocations
            .get(&admin)
            .is_some_and(|r| cert.issued_at_ms <= r.revoked_at_ms);
        let newer = self
            .certs
            .get(&admin)
            .is_none_or(|held| cert.issued_at_ms > held.issued_at_ms);
        let room = self.certs.contains_key(&admin) || self.certs.len() < MAX_ADMINS;
        if revoked || !newer || !room || cert.channel != self.channel {
            return Changed::default();
        }
        self.certs.insert(admin, cert);
        Changed { changed: true }
    }

    /// Whether an encoded revocation could change anything (checked without its signature).
    pub fn revocation_is_news(&self, signed: &v1::AdminRevocation) -> bool {
        let Ok(body) = v1::AdminRevocationBody::decode(signed.body.as_slice()) else {
            return true;
        };
        let Ok(admin) = <[u8; 32]>::try_from(body.admin.as_slice()) else {
            return true;
        };
        match self.revocations.get(&admin) {
            Some(held) => body.revoked_at_ms > held.revoked_at_ms,
            None => self.revocations.len() < MAX_ADMINS,
        }
    }

    /// Adopts a verified revocation (the newest per admin): the admin's certificates issued up to
    /// it are withdrawn.
    pub fn adopt_revocation(&mut self, r: AdminRevocation) -> Changed {
        let newer = self
            .revocations
            .get(&r.admin)
            .is_none_or(|held| r.revoked_at_ms > held.revoked_at_ms);
        let room = self.revocations.contains_key(&r.admin) || self.revocations.len() < MAX_ADMINS;
        if !newer || !room || r.channel != self.channel {
            return Changed::default();
        }
        if self
            .certs
            .get(&r.admin)
            .is_some_and(|c| c.issued_at_ms <= r.revoked_at_ms)
        {
            self.certs.remove(&r.admin);
        }
        self.revocations.insert(r.admin, r);
        Changed { changed: true }
    }

    /// Whether a post of `author` at `seq` is refused by a revocation (one the owner has not
    /// since superseded by appointing the same key again).
    pub fn refuses(&self, author: &[u8; 32], seq: u64) -> bool {
        self.revocations.get(author).is_some_and(|r| {
            r.refuses(author, seq)
                && self
                    .certs
                    .get(author)
                    .is_none_or(|c| c.issued_at_ms <= r.revoked_at_ms)
        })
    }

    /// The revocation of `admin`, if any.
    pub fn revocation(&self, admin: &[u8; 32]) -> Option<&AdminRevocation> {
        self.revocations.get(admin)
    }

    /// Admins whose certificate the owner should renew now: past half its lifetime, or one of
    /// the never-expiring kind older versions issued.
    pub fn due_for_renewal(&self, now_ms: u64) -> Vec<[u8; 32]> {
        self.certs
            .iter()
            .filter(|(_, c)| {
                c.expires_at_ms
                    .is_none_or(|e| e.saturating_sub(now_ms) < CERT_LIFETIME_MS / 2)
            })
            .map(|(a, _)| *a)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use libp2p::identity::ed25519;

    #[test]
    fn newest_cert_wins_revocations_withdraw_and_stick() {
        let owner = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&owner.public());
        let admin = ed25519::Keypair::generate();
        let a = admin.public().to_bytes();
        let mut reg = Admins::from_stored(id, &[], &[]);
        let c1 = AdminCert::issue(
            &owner,
            &admin.public(),
            1_000,
            Some(1_000 + CERT_LIFETIME_MS),
        );
        assert!(reg.cert_is_news(&c1.signed));
        assert!(reg.adopt_cert(c1.clone()).changed);
        assert!(!reg.cert_is_news(&c1.signed), "a replay is not news");
        let c2 = AdminCert::issue(
            &owner,
            &admin.public(),
            2_000,
            Some(2_000 + CERT_LIFETIME_MS),
        );
        assert!(reg.adopt_cert(c2.clone()).changed);
        assert!(
            !reg.adopt_cert(c1.clone()).changed,
            "an older one changes nothing"
        );
        assert_eq!(reg.cert(&a).map(|c| c.issued_at_ms), Some(2_000));
        // Renewal at half-life.
        assert!(reg.due_for_renewal(2_000).is_empty());
        assert_eq!(reg.due_for_renewal(2_001 + CERT_LIFETIME_MS / 2), vec![a]);
        // Revoked: its certificate goes, older ones are never news again, earlier posts stay.
        let r = AdminRevocation::issue(&owner, &a, 5, 3_000);
        assert!(reg.revocation_is_news(&r.signed));
        assert!(reg.adopt_revocation(r.clone()).changed);
        assert!(reg.cert(&a).is_none());
        assert!(!reg.cert_is_news(&c2.signed));
        assert!(!reg.adopt_cert(c2).changed);
        assert!(reg.refuses(&a, 6) && !reg.refuses(&a, 5));
        // It survives a round trip through the store.
        let (certs, revs) = reg.to_stored();
        let back = Admins::from_stored(id, &certs, &revs);
        assert!(back.refuses(&a, 6) && back.cert(&a).is_none());
        // Appointed again later: a newer certificate is news.
        let c3 = AdminCert::issue(
            &owner,
            &admin.public(),
            4_000,
            Some(4_000 + CERT_LIFETIME_MS),
        );
        assert!(reg.cert_is_news(&c3.signed));
        assert!(reg.adopt_cert(c3).changed);
        assert!(!reg.refuses(&a, 6), "appointed again, its chain goes on");
    }
}
