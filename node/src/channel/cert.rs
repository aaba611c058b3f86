//! Admin certificates: the channel key's signed permission for another key to post, and its
//! signed revocation.

use libp2p::identity::ed25519;
use prost::Message;
use samizdat_proto::v1;

use super::{ChannelId, sign, verify};

const DOMAIN: &[u8] = b"samizdat/v1/admin-cert";
const REVOCATION_DOMAIN: &[u8] = b"samizdat/v2/admin-revocation";
/// How long a certificate this node issues is valid; the owner's node renews it at half-life.
pub const CERT_LIFETIME_MS: u64 = 7 * 24 * 3600 * 1000;

/// Why a certificate was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    /// Not a protobuf AdminCert.
    #[error("malformed admin certificate")]
    Malformed,
    /// Not signed by the channel key.
    #[error("admin certificate signature is invalid")]
    BadSignature,
    /// Issued for another channel.
    #[error("admin certificate is for another channel")]
    WrongChannel,
    /// The admin key is not a valid ed25519 key.
    #[error("admin certificate names an invalid key")]
    BadAdminKey,
}

/// A verified admin certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCert {
    /// The channel that delegates.
    pub channel: ChannelId,
    /// The key allowed to post.
    pub admin: ed25519::PublicKey,
    /// Issue time (ms).
    pub issued_at_ms: u64,
    /// Expiry (ms); `None` never expires.
    pub expires_at_ms: Option<u64>,
    /// Wire form, kept verbatim.
    pub signed: v1::AdminCert,
}

impl AdminCert {
    /// The channel key issues a certificate for `admin`.
    pub fn issue(
        channel_key: &ed25519::Keypair,
        admin: &ed25519::PublicKey,
        issued_at_ms: u64,
        expires_at_ms: Option<u64>,
    ) -> Self {
        let body = v1::AdminCertBody {
            channel: channel_key.public().to_bytes().to_vec(),
            admin: admin.to_bytes().to_vec(),
            issued_at_ms,
            expires_at_ms: expires_at_ms.unwrap_or(0),
        }
        .encode_to_vec();
        let signature = sign(channel_key, DOMAIN, &body);
        Self {
            channel: ChannelId::from_key(&channel_key.public()),
            admin: admin.clone(),
            issued_at_ms,
            expires_at_ms,
            signed: v1::AdminCert { body, signature },
        }
    }

    /// Verifies a certificate for `channel`.
    pub fn verify(signed: v1::AdminCert, channel: &ChannelId) -> Result<Self, CertError> {
        let body =
            v1::AdminCertBody::decode(signed.body.as_slice()).map_err(|_| CertError::Malformed)?;
        if body.channel.as_slice() != channel.as_bytes() {
            return Err(CertError::WrongChannel);
        }
        if !verify(
            &channel.public_key(),
            DOMAIN,
            &signed.body,
            &signed.signature,
        ) {
            return Err(CertError::BadSignature);
        }
        let admin =
            ed25519::PublicKey::try_from_bytes(&body.admin).map_err(|_| CertError::BadAdminKey)?;
        Ok(Self {
            channel: *channel,
            admin,
            issued_at_ms: body.issued_at_ms,
            expires_at_ms: (body.expires_at_ms != 0).then_some(body.expires_at_ms),
            signed,
        })
    }

    /// Whether the certificate was valid at `t_ms`: not before it was issued (give or take
    /// ten minutes of clock skew between owner and admin), not at or after its expiry.
    pub fn valid_at(&self, t_ms: u64) -> bool {
        const SKEW_MS: u64 = 10 * 60 * 1000;
        t_ms.saturating_add(SKEW_MS) >= self.issued_at_ms
            && self.expires_at_ms.is_none_or(|e| t_ms < e)
    }
}

/// The issue time and admin key a certificate claims, read without checking its signature
/// (to decide cheaply whether it could be news).
pub fn peek_cert(signed: &v1::AdminCert) -> Option<([u8; 32], u64)> {
    let body = v1::AdminCertBody::decode(signed.body.as_slice()).ok()?;
    Some((body.admin.as_slice().try_into().ok()?, body.issued_at_ms))
}

/// A verified revocation: the owner's word that `admin` may post no more, and which of its
/// posts stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRevocation {
    /// The channel.
    pub channel: ChannelId,
    /// The admin's key.
    pub admin: [u8; 32],
    /// Its posts up to this seq stay valid; later ones never are.
    pub last_seq: u64,
    /// When the owner revoked it.
    pub revoked_at_ms: u64,
    /// Wire form, kept verbatim.
    pub signed: v1::AdminRevocation,
}

impl AdminRevocation {
    /// The channel key revokes `admin`, keeping its posts up to `last_seq`.
    pub fn issue(
        channel_key: &ed25519::Keypair,
        admin: &[u8; 32],
        last_seq: u64,
        revoked_at_ms: u64,
    ) -> Self {
        let body = v1::AdminRevocationBody {
            channel: channel_key.public().to_bytes().to_vec(),
            admin: admin.to_vec(),
            last_seq,
            revoked_at_ms,
        }
        .encode_to_vec();
        let signature = sign(channel_key, REVOCATION_DOMAIN, &body);
        Self {
            channel: ChannelId::from_key(&channel_key.public()),
            admin: *admin,
            last_seq,
            revoked_at_ms,
            signed: v1::AdminRevocation { body, signature },
        }
    }

    /// Verifies a revocation for `channel`.
    pub fn verify(signed: v1::AdminRevocation, channel: &ChannelId) -> Result<Self, CertError> {
        let body = v1::AdminRevocationBody::decode(signed.body.as_slice())
            .map_err(|_| CertError::Malformed)?;
        if body.channel.as_slice() != channel.as_bytes() {
            return Err(CertError::WrongChannel);
        }
        if !verify(
            &channel.public_key(),
            REVOCATION_DOMAIN,
            &signed.body,
            &signed.signature,
        ) {
            return Err(CertError::BadSignature);
        }
        let admin: [u8; 32] = body
            .admin
            .as_slice()
            .try_into()
            .map_err(|_| CertError::BadAdminKey)?;
        Ok(Self {
            channel: *channel,
            admin,
            last_seq: body.last_seq,
            revoked_at_ms: body.revoked_at_ms,
            signed,
        })
    }

    /// Whether the revocation refuses `admin`'s post at `seq`.
    pub fn refuses(&self, admin: &[u8; 32], seq: u64) -> bool {
        self.admin == *admin && seq > self.last_seq
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_and_reject() {
        let ch = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ch.public());
        let admin = ed25519::Keypair::generate();
        let cert = AdminCert::issue(&ch, &admin.public(), 10, Some(20));
        let back = AdminCert::verify(cert.signed.clone(), &id).expect("verify");
        assert_eq!(back, cert);
        assert!(back.valid_at(19) && !back.valid_at(20));

        // Self-issued by someone else for this channel.
        let forged = AdminCert::issue(&admin, &admin.public(), 10, None);
        let mut signed = forged.signed;
        let mut body = v1::AdminCertBody::decode(signed.body.as_slice()).expect("body");
        body.channel = id.as_bytes().to_vec();
        signed.body = body.encode_to_vec();
        assert_eq!(AdminCert::verify(signed, &id), Err(CertError::BadSignature));

        let other = ChannelId::from_key(&ed25519::Keypair::generate().public());
        assert_eq!(
            AdminCert::verify(cert.signed.clone(), &other),
            Err(CertError::WrongChannel)
        );
        assert_eq!(
            peek_cert(&cert.signed),
            Some((admin.public().to_bytes(), 10))
        );
    }

    #[test]
    fn revocations_are_the_owners_and_keep_earlier_posts() {
        let ch = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&ch.public());
        let admin = ed25519::Keypair::generate().public().to_bytes();
        let r = AdminRevocation::issue(&ch, &admin, 7, 100);
        let back = AdminRevocation::verify(r.signed.clone(), &id).expect("verify");
        assert_eq!(back, r);
        assert!(!back.refuses(&admin, 7) && back.refuses(&admin, 8));
        assert!(!back.refuses(&[0; 32], 8), "another admin");
        // Only the channel key revokes.
        let forged = AdminRevocation::issue(&ed25519::Keypair::generate(), &admin, 0, 1);
        let mut signed = forged.signed;
        let mut body = v1::AdminRevocationBody::decode(signed.body.as_slice()).expect("body");
        body.channel = id.as_bytes().to_vec();
        signed.body = body.encode_to_vec();
        assert_eq!(
            AdminRevocation::verify(signed, &id),
            Err(CertError::BadSignature)
        );
    }
}
