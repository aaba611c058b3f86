//! Admin certificates: the channel key's signed permission for another key to post.

use libp2p::identity::ed25519;
use prost::Message;
use samizdat_proto::v1;

use super::{ChannelId, sign, verify};

const DOMAIN: &[u8] = b"samizdat/v1/admin-cert";

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

    /// Whether the certificate was valid at `t_ms`.
    pub fn valid_at(&self, t_ms: u64) -> bool {
        self.expires_at_ms.is_none_or(|e| t_ms < e)
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
            AdminCert::verify(cert.signed, &other),
            Err(CertError::WrongChannel)
        );
    }
}
