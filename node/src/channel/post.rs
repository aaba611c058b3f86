//! Posts: signing, and the verification every received post passes before it is stored or
//! forwarded.

use libp2p::PeerId;
use libp2p::identity::ed25519;
use prost::Message;
use samizdat_proto::v1;

use super::{AdminCert, CertError, ChannelId, PostId, sign, verify};
use crate::identity::peer_id_of;

const DOMAIN: &[u8] = b"samizdat/v1/post";
/// Longest post text, in bytes of UTF-8 (Telegram allows 4096 characters; this fits that in
/// any script).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Largest encoded SignedPost accepted from anyone.
pub const MAX_POST_BYTES: usize = 64 * 1024;
/// How far in the future a post's timestamp may be (clock skew between honest nodes).
const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;
const MAX_FILE_NAME_BYTES: usize = 255;

/// Why a post was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PostError {
    /// The encoded post is larger than [`MAX_POST_BYTES`].
    #[error("post is {0} bytes; the limit is {MAX_POST_BYTES}")]
    TooLarge(usize),
    /// The text is longer than [`MAX_TEXT_BYTES`].
    #[error("post text is {0} bytes; the limit is {MAX_TEXT_BYTES}")]
    TextTooLong(usize),
    /// Neither text nor a file.
    #[error("post is empty")]
    Empty,
    /// Not protobuf of the expected shape.
    #[error("malformed post")]
    Malformed,
    /// The post names another channel than the one it arrived on.
    #[error("post belongs to another channel")]
    WrongChannel,
    /// The author key is not a valid ed25519 key.
    #[error("post author key is invalid")]
    BadAuthor,
    /// The signature does not verify.
    #[error("post signature is invalid")]
    BadSignature,
    /// The author is not the channel key and brought no certificate.
    #[error("post author is not the channel owner and has no admin certificate")]
    NotAuthorized,
    /// The certificate is invalid.
    #[error("post admin certificate: {0}")]
    Cert(#[from] CertError),
    /// The certificate is for another key than the author's.
    #[error("admin certificate was issued to another key")]
    CertNotForAuthor,
    /// The certificate had expired when the post was made.
    #[error("admin certificate had expired at the post's time")]
    CertExpired,
    /// Sequence numbers start at 1; `prev` must be present exactly when seq > 1.
    #[error("post sequence or previous-post link is inconsistent")]
    BadChain,
    /// The timestamp is too far in the future.
    #[error("post timestamp is in the future")]
    FromFuture,
    /// A file reference is malformed.
    #[error("post file reference is malformed")]
    BadFile,
}

/// Who signed a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Author {
    /// The channel key itself.
    Owner,
    /// An admin node, by its PeerId.
    Admin(PeerId),
}

/// A reference to a content-addressed file attached to a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// Root hash of the file.
    pub cid: [u8; 32],
    /// File name as the sender gave it (display only).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type, if known.
    pub mime: String,
}

/// What a user asks to post.
#[derive(Debug, Clone, Default)]
pub struct PostDraft {
    /// The text.
    pub text: String,
    /// When every node should delete it (ms since epoch).
    pub expires_at_ms: Option<u64>,
    /// An attached file.
    pub file: Option<FileRef>,
}

/// A post whose signature and structure have been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    /// SHA-256 of the signed body.
    pub id: PostId,
    /// The channel.
    pub channel: ChannelId,
    /// The signer's key.
    pub author_key: ed25519::PublicKey,
    /// Per (channel, author) sequence number, from 1.
    pub seq: u64,
    /// The author's previous post in this channel.
    pub prev: Option<PostId>,
    /// Author's clock (ms since epoch).
    pub timestamp_ms: u64,
    /// The text.
    pub text: String,
    /// Expiry (ms since epoch).
    pub expires_at_ms: Option<u64>,
    /// Attached file.
    pub file: Option<FileRef>,
    /// The encoded SignedPost, exactly as signed and received.
    pub wire: Vec<u8>,
}

impl Post {
    /// Builds and signs a post. `cert` is required when `signer` is not the channel key.
    pub fn sign(
        channel: &ChannelId,
        signer: &ed25519::Keypair,
        cert: Option<&AdminCert>,
        seq: u64,
        prev: Option<PostId>,
        timestamp_ms: u64,
        draft: PostDraft,
    ) -> Result<Self, PostError> {
        if draft.text.len() > MAX_TEXT_BYTES {
            return Err(PostError::TextTooLong(draft.text.len()));
        }
        let body = v1::PostBody {
            channel: channel.as_bytes().to_vec(),
            author: signer.public().to_bytes().to_vec(),
            seq,
            prev: prev.map(|p| p.0.to_vec()).unwrap_or_default(),
            timestamp_ms,
            text: draft.text,
            expires_at_ms: draft.expires_at_ms.unwrap_or(0),
            file: draft.file.map(|f| v1::FileRef {
                cid: f.cid.to_vec(),
                name: f.name,
                size: f.size,
                mime: f.mime,
            }),
        }
        .encode_to_vec();
        let signature = sign(signer, DOMAIN, &body);
        let wire = v1::SignedPost {
            body,
            signature,
            cert: cert.map(|c| c.signed.clone()),
        }
        .encode_to_vec();
        // Check what we built by the same rules as anyone's posts, except the signature we
        // just made (verifying it again would double the cost of posting).
        let signed = v1::SignedPost::decode(wire.as_slice()).map_err(|_| PostError::Malformed)?;
        let post = Self::verify_signed(signed, wire, Some(channel), Some(timestamp_ms), false)?;
        if post.wire.len() > MAX_POST_BYTES {
            return Err(PostError::TooLarge(post.wire.len()));
        }
        Ok(post)
    }

    /// Verifies an encoded SignedPost: size, structure, signature, authorisation.
    /// `channel` is the channel it arrived for; `now_ms` bounds the timestamp.
    pub fn verify(
        wire: &[u8],
        channel: Option<&ChannelId>,
        now_ms: u64,
    ) -> Result<Self, PostError> {
        if wire.len() > MAX_POST_BYTES {
            return Err(PostError::TooLarge(wire.len()));
        }
        let signed = v1::SignedPost::decode(wire).map_err(|_| PostError::Malformed)?;
        Self::verify_signed(signed, wire.to_vec(), channel, Some(now_ms), true)
    }

    /// Decodes a post from this node's own store. The AEAD seal already proves the bytes are
    /// the ones this node verified when it stored them, so the signature is not checked again.
    pub(crate) fn from_store(wire: Vec<u8>) -> Result<Self, PostError> {
        let signed = v1::SignedPost::decode(wire.as_slice()).map_err(|_| PostError::Malformed)?;
        Self::verify_signed(signed, wire, None, None, false)
    }

    fn verify_signed(
        signed: v1::SignedPost,
        wire: Vec<u8>,
        expected: Option<&ChannelId>,
        // `None` when decoding from our own store: authorisation and clocks were checked on
        // entry.
        now_ms: Option<u64>,
        check_signature: bool,
    ) -> Result<Self, PostError> {
        let body =
            v1::PostBody::decode(signed.body.as_slice()).map_err(|_| PostError::Malformed)?;
        let channel = ChannelId::from_slice(&body.channel).ok_or(PostError::WrongChannel)?;
        if expected.is_some_and(|e| *e != channel) {
            return Err(PostError::WrongChannel);
        }
        let author_key =
            ed25519::PublicKey::try_from_bytes(&body.author).map_err(|_| PostError::BadAuthor)?;
        if check_signature && !verify(&author_key, DOMAIN, &signed.body, &signed.signature) {
            return Err(PostError::BadSignature);
        }
        if now_ms.is_some() && author_key.to_bytes() != *channel.as_bytes() {
            let cert = signed.cert.ok_or(PostError::NotAuthorized)?;
            let cert = AdminCert::verify(cert, &channel)?;
            if cert.admin != author_key {
                return Err(PostError::CertNotForAuthor);
            }
            if !cert.valid_at(body.timestamp_ms) {
                return Err(PostError::CertExpired);
            }
        }
        let prev = match (body.seq, body.prev.len()) {
            (0, _) => return Err(PostError::BadChain),
            (1, 0) => None,
            (s, 32) if s > 1 => {
                let mut p = [0u8; 32];
                p.copy_from_slice(&body.prev);
                Some(PostId(p))
            }
            _ => return Err(PostError::BadChain),
        };
        if now_ms.is_some_and(|now| body.timestamp_ms > now.saturating_add(MAX_CLOCK_SKEW_MS)) {
            return Err(PostError::FromFuture);
        }
        if body.text.len() > MAX_TEXT_BYTES {
            return Err(PostError::TextTooLong(body.text.len()));
        }
        let file = match body.file {
            None => None,
            Some(f) => {
                let cid: [u8; 32] = f
                    .cid
                    .as_slice()
                    .try_into()
                    .map_err(|_| PostError::BadFile)?;
                if f.name.len() > MAX_FILE_NAME_BYTES || f.mime.len() > MAX_FILE_NAME_BYTES {
                    return Err(PostError::BadFile);
                }
                Some(FileRef {
                    cid,
                    name: f.name,
                    size: f.size,
                    mime: f.mime,
                })
            }
        };
        if body.text.is_empty() && file.is_none() {
            return Err(PostError::Empty);
        }
        Ok(Self {
            id: PostId::of_body(&signed.body),
            channel,
            author_key,
            seq: body.seq,
            prev,
            timestamp_ms: body.timestamp_ms,
            text: body.text,
            expires_at_ms: (body.expires_at_ms != 0).then_some(body.expires_at_ms),
            file,
            wire,
        })
    }

    /// Who signed it.
    pub fn author(&self) -> Author {
        if self.author_key.to_bytes() == *self.channel.as_bytes() {
            Author::Owner
        } else {
            Author::Admin(peer_id_of(&self.author_key))
        }
    }

    /// The author as users see it: the channel id for the owner, the PeerId for an admin.
    pub fn author_string(&self) -> String {
        match self.author() {
            Author::Owner => self.channel.to_string(),
            Author::Admin(p) => p.to_string(),
        }
    }

    /// Whether the post has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|e| e <= now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> (ed25519::Keypair, ChannelId) {
        let k = ed25519::Keypair::generate();
        let id = ChannelId::from_key(&k.public());
        (k, id)
    }

    fn draft(text: &str) -> PostDraft {
        PostDraft {
            text: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn owner_post_verifies_and_chains() {
        let (k, id) = channel();
        let p1 = Post::sign(&id, &k, None, 1, None, 100, draft("hello")).expect("p1");
        let p2 = Post::sign(&id, &k, None, 2, Some(p1.id), 101, draft("again")).expect("p2");
        let back = Post::verify(&p2.wire, Some(&id), 200).expect("verify");
        assert_eq!(back, p2);
        assert_eq!(back.prev, Some(p1.id));
        assert_eq!(back.author(), Author::Owner);
        assert_eq!(back.author_string(), id.to_string());
    }

    #[test]
    fn forged_and_unauthorised_posts_are_rejected() {
        let (k, id) = channel();
        let stranger = ed25519::Keypair::generate();
        // A stranger signs a post claiming to be the channel: signature fails.
        let mut body = v1::PostBody {
            channel: id.as_bytes().to_vec(),
            author: id.as_bytes().to_vec(),
            seq: 1,
            timestamp_ms: 1,
            text: "forged".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let wire = v1::SignedPost {
            signature: sign(&stranger, DOMAIN, &body),
            body: body.clone(),
            cert: None,
        }
        .encode_to_vec();
        assert_eq!(
            Post::verify(&wire, Some(&id), 10),
            Err(PostError::BadSignature)
        );

        // A stranger signs as itself, without a certificate.
        let err = Post::sign(&id, &stranger, None, 1, None, 1, draft("x"));
        assert_eq!(err, Err(PostError::NotAuthorized));

        // With a certificate issued to someone else.
        let admin = ed25519::Keypair::generate();
        let cert = AdminCert::issue(&k, &admin.public(), 0, None);
        let err = Post::sign(&id, &stranger, Some(&cert), 1, None, 1, draft("x"));
        assert_eq!(err, Err(PostError::CertNotForAuthor));

        // The real admin may post; its certificate must not be expired at post time.
        let ok = Post::sign(&id, &admin, Some(&cert), 1, None, 1, draft("x")).expect("admin");
        assert!(matches!(ok.author(), Author::Admin(_)));
        let expiring = AdminCert::issue(&k, &admin.public(), 0, Some(5));
        let err = Post::sign(&id, &admin, Some(&expiring), 1, None, 9, draft("x"));
        assert_eq!(err, Err(PostError::CertExpired));

        // Tampering with a valid post's body breaks the signature.
        let good = Post::sign(&id, &k, None, 1, None, 1, draft("good")).expect("good");
        let mut signed = v1::SignedPost::decode(good.wire.as_slice()).expect("decode");
        let mut b = v1::PostBody::decode(signed.body.as_slice()).expect("body");
        b.text = "evil".into();
        body = b.encode_to_vec();
        signed.body = body;
        assert_eq!(
            Post::verify(&signed.encode_to_vec(), Some(&id), 10),
            Err(PostError::BadSignature)
        );
    }

    #[test]
    fn structural_limits() {
        let (k, id) = channel();
        let other = ChannelId::from_key(&ed25519::Keypair::generate().public());
        let p = Post::sign(&id, &k, None, 1, None, 1, draft("x")).expect("p");
        assert_eq!(
            Post::verify(&p.wire, Some(&other), 10),
            Err(PostError::WrongChannel)
        );
        assert_eq!(
            Post::sign(&id, &k, None, 0, None, 1, draft("x")),
            Err(PostError::BadChain)
        );
        assert_eq!(
            Post::sign(&id, &k, None, 2, None, 1, draft("x")),
            Err(PostError::BadChain)
        );
        assert_eq!(
            Post::sign(&id, &k, None, 1, Some(p.id), 1, draft("x")),
            Err(PostError::BadChain)
        );
        assert!(matches!(
            Post::sign(
                &id,
                &k,
                None,
                1,
                None,
                1,
                draft(&"x".repeat(MAX_TEXT_BYTES + 1))
            ),
            Err(PostError::TextTooLong(_))
        ));
        assert_eq!(
            Post::sign(&id, &k, None, 1, None, 1, draft("")),
            Err(PostError::Empty)
        );
        let future = Post::sign(&id, &k, None, 1, None, 10_000_000, draft("x")).expect("signed");
        assert_eq!(
            Post::verify(&future.wire, Some(&id), 0),
            Err(PostError::FromFuture)
        );
        assert!(matches!(
            Post::verify(&vec![0u8; MAX_POST_BYTES + 1], Some(&id), 0),
            Err(PostError::TooLarge(_))
        ));
        assert_eq!(
            Post::verify(b"\x0a\xff", Some(&id), 0),
            Err(PostError::Malformed)
        );
    }
}
