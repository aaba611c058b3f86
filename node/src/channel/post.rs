//! Posts: signing, and the verification every received post passes before it is stored or
//! forwarded. A post is a signed header (`PostBody`) plus its content, bound by the content's
//! hash; the header alone ([`PostHeader`]) proves that a slot of an author's chain exists and,
//! once its expiry has passed, that it expired.

use libp2p::PeerId;
use libp2p::identity::ed25519;
use prost::Message;
use samizdat_proto::v1;
use sha2::Digest;

use super::{AdminCert, CertError, ChannelId, PostId, sign, verify};
use crate::identity::peer_id_of;

const DOMAIN: &[u8] = b"samizdat/v2/post";
/// Longest post text, in bytes of UTF-8 (Telegram allows 4096 characters; this fits that in
/// any script).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Largest encoded SignedPost accepted from anyone.
pub const MAX_POST_BYTES: usize = 64 * 1024;
/// Largest encoded header (a SignedPost without content, certificate included).
pub const MAX_HEADER_BYTES: usize = 2 * 1024;
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
    /// Valid protobuf, but not the one canonical encoding (unknown fields, other field order,
    /// padded varints): the same post must not travel in several forms.
    #[error("post is not canonically encoded")]
    NonCanonical,
    /// The content does not hash to the header's `content_hash`.
    #[error("post content does not match its signed hash")]
    ContentMismatch,
    /// A header where a whole post was expected, or the reverse.
    #[error("post header without content, or content where only a header belongs")]
    WrongForm,
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
    /// The channel key's own post carries a certificate (it needs none, and the signature
    /// does not cover it).
    #[error("the owner's post carries a certificate")]
    UnexpectedCert,
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

/// A verified post header: one slot of an author's chain, without its content. Held in place
/// of a post that expired (and served as the proof that it did), and sent with heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostHeader {
    /// SHA-256 of the signed body: the post's id.
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
    /// Expiry (ms since epoch).
    pub expires_at_ms: Option<u64>,
    /// The encoded SignedPost without content, exactly as signed.
    pub wire: Vec<u8>,
}

impl PostHeader {
    /// Verifies an encoded header (a SignedPost without content): size, canonical form,
    /// signature, authorisation, chain fields. `channel` is the channel it was asked for.
    pub fn verify(wire: &[u8], channel: &ChannelId, now_ms: u64) -> Result<Self, PostError> {
        if wire.len() > MAX_HEADER_BYTES {
            return Err(PostError::TooLarge(wire.len()));
        }
        let signed = decode_canonical(wire)?;
        if !signed.content.is_empty() {
            return Err(PostError::WrongForm);
        }
        let (h, _) = verify_header(
            &signed,
            wire.to_vec(),
            Some(channel),
            Some(now_ms),
            true,
            None,
        )?;
        Ok(h)
    }

    /// Whether it has expired at `now_ms` (then it proves its slot expired).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|e| e <= now_ms)
    }

    /// Decodes a header from this node's own store (verified when it was stored).
    pub(crate) fn from_store(wire: Vec<u8>) -> Result<Self, PostError> {
        let signed = v1::SignedPost::decode(wire.as_slice()).map_err(|_| PostError::Malformed)?;
        verify_header(&signed, wire, None, None, false, None).map(|(h, _)| h)
    }
}

/// A post whose signature, content and structure have been verified.
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
        if draft.text.is_empty() && draft.file.is_none() {
            return Err(PostError::Empty);
        }
        let content = v1::PostContent {
            text: draft.text,
            file: draft.file.map(|f| v1::FileRef {
                cid: f.cid.to_vec(),
                name: f.name,
                size: f.size,
                mime: f.mime,
            }),
        }
        .encode_to_vec();
        let body = v1::PostBody {
            channel: channel.as_bytes().to_vec(),
            author: signer.public().to_bytes().to_vec(),
            seq,
            prev: prev.map(|p| p.0.to_vec()).unwrap_or_default(),
            timestamp_ms,
            expires_at_ms: draft.expires_at_ms.unwrap_or(0),
            content_hash: sha2::Sha256::digest(&content).to_vec(),
        }
        .encode_to_vec();
        let signature = sign(signer, DOMAIN, &body);
        let wire = v1::SignedPost {
            body,
            signature,
            cert: cert.map(|c| c.signed.clone()),
            content,
        }
        .encode_to_vec();
        // Check what we built by the same rules as anyone's posts, except the signature we
        // just made (verifying it again would double the cost of posting).
        let signed = v1::SignedPost::decode(wire.as_slice()).map_err(|_| PostError::Malformed)?;
        let post =
            Self::verify_signed(signed, wire, Some(channel), Some(timestamp_ms), false, cert)?;
        if post.wire.len() > MAX_POST_BYTES {
            return Err(PostError::TooLarge(post.wire.len()));
        }
        Ok(post)
    }

    /// The owner's signed header for a slot whose post had already expired and whose content
    /// is gone (a store upgraded from protocol 1 kept nothing of such slots): an expiry proof
    /// that keeps the owner's chain linked.
    pub(crate) fn sign_expired_header(
        channel: &ChannelId,
        owner: &ed25519::Keypair,
        seq: u64,
        prev: Option<PostId>,
        timestamp_ms: u64,
    ) -> PostHeader {
        let body = v1::PostBody {
            channel: channel.as_bytes().to_vec(),
            author: owner.public().to_bytes().to_vec(),
            seq,
            prev: prev.map(|p| p.0.to_vec()).unwrap_or_default(),
            timestamp_ms,
            expires_at_ms: timestamp_ms.max(1),
            content_hash: sha2::Sha256::digest([]).to_vec(),
        }
        .encode_to_vec();
        let signature = sign(owner, DOMAIN, &body);
        let wire = v1::SignedPost {
            body: body.clone(),
            signature,
            cert: None,
            content: Vec::new(),
        }
        .encode_to_vec();
        PostHeader {
            id: PostId::of_body(&body),
            channel: *channel,
            author_key: owner.public(),
            seq,
            prev,
            timestamp_ms,
            expires_at_ms: Some(timestamp_ms.max(1)),
            wire,
        }
    }

    /// Verifies an encoded SignedPost: size, canonical form, structure, signature, content
    /// hash, authorisation. `channel` is the channel it arrived for; `now_ms` bounds the
    /// timestamp.
    pub fn verify(
        wire: &[u8],
        channel: Option<&ChannelId>,
        now_ms: u64,
    ) -> Result<Self, PostError> {
        Self::verify_known(wire, channel, now_ms, None)
    }

    /// [`Post::verify`], trusting `known` (a certificate this node verified and holds) when
    /// the post carries exactly it: an admin's posts all carry one certificate, and checking
    /// its signature again for each was a third of the cost of verifying them.
    pub fn verify_known(
        wire: &[u8],
        channel: Option<&ChannelId>,
        now_ms: u64,
        known: Option<&AdminCert>,
    ) -> Result<Self, PostError> {
        if wire.len() > MAX_POST_BYTES {
            return Err(PostError::TooLarge(wire.len()));
        }
        let signed = decode_canonical(wire)?;
        Self::verify_signed(signed, wire.to_vec(), channel, Some(now_ms), true, known)
    }

    /// Decodes a post from this node's own store. The AEAD seal already proves the bytes are
    /// the ones this node verified when it stored them, so the signature is not checked again.
    pub(crate) fn from_store(wire: Vec<u8>) -> Result<Self, PostError> {
        let signed = v1::SignedPost::decode(wire.as_slice()).map_err(|_| PostError::Malformed)?;
        Self::verify_signed(signed, wire, None, None, false, None)
    }

    fn verify_signed(
        signed: v1::SignedPost,
        wire: Vec<u8>,
        expected: Option<&ChannelId>,
        // `None` when decoding from our own store: authorisation and clocks were checked on
        // entry.
        now_ms: Option<u64>,
        check_signature: bool,
        known: Option<&AdminCert>,
    ) -> Result<Self, PostError> {
        if signed.content.is_empty() {
            return Err(PostError::WrongForm);
        }
        let content_bytes = signed.content.clone();
        let (h, body) = verify_header(&signed, wire, expected, now_ms, check_signature, known)?;
        if sha2::Sha256::digest(&content_bytes).as_slice() != body.content_hash.as_slice() {
            return Err(PostError::ContentMismatch);
        }
        let content =
            v1::PostContent::decode(content_bytes.as_slice()).map_err(|_| PostError::Malformed)?;
        if now_ms.is_some() && content.encode_to_vec() != content_bytes {
            return Err(PostError::NonCanonical);
        }
        if content.text.len() > MAX_TEXT_BYTES {
            return Err(PostError::TextTooLong(content.text.len()));
        }
        let file = match content.file {
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
        if content.text.is_empty() && file.is_none() {
            return Err(PostError::Empty);
        }
        Ok(Self {
            id: h.id,
            channel: h.channel,
            author_key: h.author_key,
            seq: h.seq,
            prev: h.prev,
            timestamp_ms: h.timestamp_ms,
            text: content.text,
            expires_at_ms: h.expires_at_ms,
            file,
            wire: h.wire,
        })
    }

    /// The post's header: what remains of it once it expires, and what proves its slot.
    pub fn header(&self) -> PostHeader {
        let wire = match v1::SignedPost::decode(self.wire.as_slice()) {
            Ok(mut sp) => {
                sp.content = Vec::new();
                sp.encode_to_vec()
            }
            // A Post only exists once its wire decoded: unreachable, and harmless (an empty
            // header verifies as nothing anywhere).
            Err(_) => Vec::new(),
        };
        PostHeader {
            id: self.id,
            channel: self.channel,
            author_key: self.author_key.clone(),
            seq: self.seq,
            prev: self.prev,
            timestamp_ms: self.timestamp_ms,
            expires_at_ms: self.expires_at_ms,
            wire,
        }
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

/// Decodes a SignedPost that must be in its canonical encoding.
fn decode_canonical(wire: &[u8]) -> Result<v1::SignedPost, PostError> {
    let signed = v1::SignedPost::decode(wire).map_err(|_| PostError::Malformed)?;
    if signed.encode_to_vec() != wire {
        return Err(PostError::NonCanonical);
    }
    Ok(signed)
}

/// Checks everything a header carries: the body's form, channel, signature, authorisation,
/// chain fields and clock. Returns the header and the decoded body.
fn verify_header(
    signed: &v1::SignedPost,
    wire: Vec<u8>,
    expected: Option<&ChannelId>,
    // `None` when decoding from our own store.
    now_ms: Option<u64>,
    check_signature: bool,
    // A certificate verified before: one byte-identical to it is not verified again.
    known: Option<&AdminCert>,
) -> Result<(PostHeader, v1::PostBody), PostError> {
    let body = v1::PostBody::decode(signed.body.as_slice()).map_err(|_| PostError::Malformed)?;
    if now_ms.is_some() && body.encode_to_vec() != signed.body {
        return Err(PostError::NonCanonical);
    }
    if body.content_hash.len() != 32 {
        return Err(PostError::Malformed);
    }
    let channel = ChannelId::from_slice(&body.channel).ok_or(PostError::WrongChannel)?;
    if expected.is_some_and(|e| *e != channel) {
        return Err(PostError::WrongChannel);
    }
    let author_key =
        ed25519::PublicKey::try_from_bytes(&body.author).map_err(|_| PostError::BadAuthor)?;
    if check_signature && !verify(&author_key, DOMAIN, &signed.body, &signed.signature) {
        return Err(PostError::BadSignature);
    }
    // The certificate is not covered by the author's signature: it must be exactly what the
    // author needs, or anyone could attach any bytes to a genuine post.
    if now_ms.is_some() && author_key.to_bytes() == *channel.as_bytes() && signed.cert.is_some() {
        return Err(PostError::UnexpectedCert);
    }
    if now_ms.is_some() && author_key.to_bytes() != *channel.as_bytes() {
        let carried = signed.cert.as_ref().ok_or(PostError::NotAuthorized)?;
        let verified;
        let cert = match known {
            Some(k) if k.channel == channel && k.signed == *carried => k,
            _ => {
                verified = AdminCert::verify(carried.clone(), &channel)?;
                &verified
            }
        };
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
    let header = PostHeader {
        id: PostId::of_body(&signed.body),
        channel,
        author_key,
        seq: body.seq,
        prev,
        timestamp_ms: body.timestamp_ms,
        expires_at_ms: (body.expires_at_ms != 0).then_some(body.expires_at_ms),
        wire,
    };
    Ok((header, body))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
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
        let content = v1::PostContent {
            text: "forged".into(),
            file: None,
        }
        .encode_to_vec();
        let body = v1::PostBody {
            channel: id.as_bytes().to_vec(),
            author: id.as_bytes().to_vec(),
            seq: 1,
            timestamp_ms: 1,
            content_hash: sha2::Sha256::digest(&content).to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        let wire = v1::SignedPost {
            signature: sign(&stranger, DOMAIN, &body),
            body: body.clone(),
            cert: None,
            content,
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

        // Tampering with a valid post's body breaks the signature; swapping its content breaks
        // the content hash.
        let good = Post::sign(&id, &k, None, 1, None, 1, draft("good")).expect("good");
        let mut signed = v1::SignedPost::decode(good.wire.as_slice()).expect("decode");
        let mut b = v1::PostBody::decode(signed.body.as_slice()).expect("body");
        b.timestamp_ms = 2;
        let mut tampered = signed.clone();
        tampered.body = b.encode_to_vec();
        assert_eq!(
            Post::verify(&tampered.encode_to_vec(), Some(&id), 10),
            Err(PostError::BadSignature)
        );
        signed.content = v1::PostContent {
            text: "evil".into(),
            file: None,
        }
        .encode_to_vec();
        assert_eq!(
            Post::verify(&signed.encode_to_vec(), Some(&id), 10),
            Err(PostError::ContentMismatch)
        );
    }

    #[test]
    fn an_owner_post_carries_no_certificate() {
        let (k, id) = channel();
        let good = Post::sign(&id, &k, None, 1, None, 1, draft("good")).expect("good");
        let mut sp = v1::SignedPost::decode(good.wire.as_slice()).expect("decode");
        // Anyone can attach bytes the author never signed, e.g. a certificate of junk.
        sp.cert = Some(v1::AdminCert {
            body: vec![0x55; 4000],
            signature: vec![1; 64],
        });
        assert_eq!(
            Post::verify(&sp.encode_to_vec(), Some(&id), 10),
            Err(PostError::UnexpectedCert)
        );
        let mut h = v1::SignedPost::decode(good.header().wire.as_slice()).expect("decode");
        h.cert = sp.cert.clone();
        assert!(PostHeader::verify(&h.encode_to_vec(), &id, 10).is_err());
    }

    #[test]
    fn one_post_has_one_encoding() {
        let (k, id) = channel();
        let good = Post::sign(&id, &k, None, 1, None, 1, draft("good")).expect("good");
        // An unknown field appended (padding to make a replay look new).
        let mut padded = good.wire.clone();
        prost::encoding::encode_key(99, prost::encoding::WireType::Varint, &mut padded);
        prost::encoding::encode_varint(7, &mut padded);
        assert_eq!(
            Post::verify(&padded, Some(&id), 10),
            Err(PostError::NonCanonical)
        );
        // Fields out of order: the same message, another encoding.
        let sp = v1::SignedPost::decode(good.wire.as_slice()).expect("decode");
        let mut reordered = Vec::new();
        for (tag, bytes) in [(4u32, &sp.content), (1, &sp.body), (2, &sp.signature)] {
            prost::encoding::bytes::encode(tag, bytes, &mut reordered);
        }
        assert_eq!(
            Post::verify(&reordered, Some(&id), 10),
            Err(PostError::NonCanonical)
        );
        assert!(Post::verify(&good.wire, Some(&id), 10).is_ok());
    }

    #[test]
    fn headers_prove_slots_and_expiry() {
        let (k, id) = channel();
        let p = Post::sign(
            &id,
            &k,
            None,
            1,
            None,
            100,
            PostDraft {
                text: "gone soon".into(),
                expires_at_ms: Some(500),
                file: None,
            },
        )
        .expect("sign");
        let h = p.header();
        assert!(h.wire.len() < p.wire.len());
        let back = PostHeader::verify(&h.wire, &id, 1_000).expect("header verifies");
        assert_eq!(back, h);
        assert_eq!((back.id, back.seq), (p.id, 1));
        assert!(back.is_expired(500) && !back.is_expired(499));
        // A header is not a post, nor a post a header.
        assert_eq!(
            Post::verify(&h.wire, Some(&id), 1_000),
            Err(PostError::WrongForm)
        );
        assert_eq!(
            PostHeader::verify(&p.wire, &id, 1_000),
            Err(PostError::WrongForm)
        );
        // A header signed by anyone else proves nothing.
        let mut forged = v1::SignedPost::decode(h.wire.as_slice()).expect("decode");
        forged.signature = sign(&ed25519::Keypair::generate(), DOMAIN, &forged.body);
        assert_eq!(
            PostHeader::verify(&forged.encode_to_vec(), &id, 1_000),
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
