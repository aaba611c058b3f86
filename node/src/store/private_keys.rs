//! The keys of direct and group messages in the private trees ([`super::Private`]): the one
//! place that knows their layout, so the engine builds and reads them by name, not by byte
//! offsets. Keys sort in the order they are read in: a conversation's messages by time, each
//! peer's envelopes by time, expiries by when they fall due.

/// Where the MLS state's entries are kept in the `Mls` tree: `m` | openmls' own key.
pub const MLS_ENTRY: &[u8] = b"m";
/// The whole MLS state as one value, as stores kept it before entries were kept one by one
/// (moved at the first save).
pub const MLS_BLOB: &[u8] = b"state";

/// Bytes of a conversation's index (a keyed hash of the peer or group: [`super::Store::index`]).
pub const INDEX_LEN: usize = 16;

/// A message's key in `Messages` or `GroupMessages`: conversation index (16) | sent_ms (8) | id.
pub fn message_key(conversation: &[u8; INDEX_LEN], sent_ms: u64, id: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(INDEX_LEN.saturating_add(8).saturating_add(id.len()));
    k.extend_from_slice(conversation);
    k.extend_from_slice(&sent_ms.to_be_bytes());
    k.extend_from_slice(id);
    k
}

/// When the message under this key was sent.
pub fn message_sent_ms(key: &[u8]) -> Option<u64> {
    key.get(INDEX_LEN..INDEX_LEN.checked_add(8)?)?
        .try_into()
        .ok()
        .map(u64::from_be_bytes)
}

/// A record of the `Mls` tree besides the MLS state's own entries ([`MLS_ENTRY`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MlsKey {
    /// A direct conversation's bookkeeping: `c` | peer index (16).
    Conversation([u8; INDEX_LEN]),
    /// A peer whose message requests the user accepted: `a` | peer index (16).
    Accepted([u8; INDEX_LEN]),
    /// This node's published KeyPackage record: `kp`.
    KeyPackage,
    /// A private group's record: `g` | group id (16).
    Group([u8; 16]),
    /// An account's device list: `d` | account index (16).
    DeviceList([u8; INDEX_LEN]),
    /// The id of this node's own account: `ow`.
    OwnAccount,
    /// The device link this node was initialised with, until linking completes: `jl`.
    Joining,
    /// An invitation waiting for the invitee's KeyPackage: `gi` | group id (16) | peer id.
    /// (Told from a group whose id starts with `i` by its length.)
    Invite {
        /// The group.
        group: [u8; 16],
        /// The invitee's peer id, as bytes.
        peer: Vec<u8>,
    },
}

impl MlsKey {
    /// The key's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut k = Vec::new();
        match self {
            Self::Conversation(i) => {
                k.push(b'c');
                k.extend_from_slice(i);
            }
            Self::Accepted(i) => {
                k.push(b'a');
                k.extend_from_slice(i);
            }
            Self::KeyPackage => k.extend_from_slice(b"kp"),
            Self::DeviceList(i) => {
                k.push(b'd');
                k.extend_from_slice(i);
            }
            Self::OwnAccount => k.extend_from_slice(b"ow"),
            Self::Joining => k.extend_from_slice(b"jl"),
            Self::Group(g) => {
                k.push(b'g');
                k.extend_from_slice(g);
            }
            Self::Invite { group, peer } => {
                k.extend_from_slice(b"gi");
                k.extend_from_slice(group);
                k.extend_from_slice(peer);
            }
        }
        k
    }

    /// The record a stored key names (None for MLS entries and other layouts).
    pub fn decode(k: &[u8]) -> Option<Self> {
        let index = |b: &[u8]| -> Option<[u8; INDEX_LEN]> { b.try_into().ok() };
        Some(match k {
            [b'c', rest @ ..] => Self::Conversation(index(rest)?),
            [b'a', rest @ ..] => Self::Accepted(index(rest)?),
            b"kp" => Self::KeyPackage,
            b"ow" => Self::OwnAccount,
            b"jl" => Self::Joining,
            [b'd', rest @ ..] => Self::DeviceList(index(rest)?),
            [b'g', rest @ ..] if rest.len() == 16 => Self::Group(rest.try_into().ok()?),
            [b'g', b'i', rest @ ..] if rest.len() > 16 => Self::Invite {
                group: rest.get(..16)?.try_into().ok()?,
                peer: rest.get(16..)?.to_vec(),
            },
            _ => return None,
        })
    }

    /// The prefix of every conversation, accepted requester, or group and invitation.
    pub fn prefix(of: MlsRecords) -> &'static [u8] {
        match of {
            MlsRecords::Conversations => b"c",
            MlsRecords::Accepted => b"a",
            MlsRecords::GroupsAndInvites => b"g",
            MlsRecords::DeviceLists => b"d",
        }
    }
}

/// Families of [`MlsKey`] records, for [`MlsKey::prefix`].
#[derive(Debug, Clone, Copy)]
pub enum MlsRecords {
    /// [`MlsKey::Conversation`].
    Conversations,
    /// [`MlsKey::Accepted`].
    Accepted,
    /// [`MlsKey::Group`] and [`MlsKey::Invite`].
    GroupsAndInvites,
    /// [`MlsKey::DeviceList`].
    DeviceLists,
}

/// An entry of the `Outbox` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxKey {
    /// An envelope sealed for a peer, until it is delivered or deposited:
    /// `E` | peer index (16) | sent_ms (8) | first 8 bytes of the envelope's id.
    Envelope {
        /// The recipient's index.
        peer: [u8; INDEX_LEN],
        /// When it was sent.
        sent_ms: u64,
        /// Tells envelopes of the same millisecond apart.
        id: [u8; 8],
    },
    /// A direct message waiting to be sealed (no KeyPackage yet, or a key update pending):
    /// `Q` | its message key.
    Queued {
        /// The message's key in `Messages`.
        message: Vec<u8>,
    },
    /// When a direct message expires: `X` | expires_ms (8) | its message key.
    DmExpiry {
        /// When.
        at: u64,
        /// The message's key in `Messages`.
        message: Vec<u8>,
    },
    /// When a group message expires: `Y` | expires_ms (8) | its message key.
    GroupExpiry {
        /// When.
        at: u64,
        /// The message's key in `GroupMessages`.
        message: Vec<u8>,
    },
}

const ENVELOPE: u8 = b'E';
const QUEUED: u8 = b'Q';
const DM_EXPIRY: u8 = b'X';
const GROUP_EXPIRY: u8 = b'Y';

impl OutboxKey {
    /// The key's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut k = Vec::new();
        match self {
            Self::Envelope { peer, sent_ms, id } => {
                k.push(ENVELOPE);
                k.extend_from_slice(peer);
                k.extend_from_slice(&sent_ms.to_be_bytes());
                k.extend_from_slice(id);
            }
            Self::Queued { message } => {
                k.push(QUEUED);
                k.extend_from_slice(message);
            }
            Self::DmExpiry { at, message } | Self::GroupExpiry { at, message } => {
                k.push(if matches!(self, Self::DmExpiry { .. }) {
                    DM_EXPIRY
                } else {
                    GROUP_EXPIRY
                });
                k.extend_from_slice(&at.to_be_bytes());
                k.extend_from_slice(message);
            }
        }
        k
    }

    /// The entry a stored key names (None for a key of another layout).
    pub fn decode(k: &[u8]) -> Option<Self> {
        let (&tag, rest) = k.split_first()?;
        let u64_at = |b: &[u8], i: usize| -> Option<u64> {
            b.get(i..i.checked_add(8)?)?
                .try_into()
                .ok()
                .map(u64::from_be_bytes)
        };
        Some(match tag {
            ENVELOPE if rest.len() == INDEX_LEN + 16 => Self::Envelope {
                peer: rest.get(..INDEX_LEN)?.try_into().ok()?,
                sent_ms: u64_at(rest, INDEX_LEN)?,
                id: rest.get(INDEX_LEN + 8..)?.try_into().ok()?,
            },
            QUEUED => Self::Queued {
                message: rest.to_vec(),
            },
            DM_EXPIRY | GROUP_EXPIRY => {
                let at = u64_at(rest, 0)?;
                let message = rest.get(8..)?.to_vec();
                if tag == DM_EXPIRY {
                    Self::DmExpiry { at, message }
                } else {
                    Self::GroupExpiry { at, message }
                }
            }
            _ => return None,
        })
    }

    /// The prefix of every envelope (`peer`: only that peer's).
    pub fn envelopes(peer: Option<&[u8; INDEX_LEN]>) -> Vec<u8> {
        let mut k = vec![ENVELOPE];
        if let Some(p) = peer {
            k.extend_from_slice(p);
        }
        k
    }

    /// The prefix of every queued message (`peer`: only those to that peer).
    pub fn queued(peer: Option<&[u8; INDEX_LEN]>) -> Vec<u8> {
        let mut k = vec![QUEUED];
        if let Some(p) = peer {
            k.extend_from_slice(p);
        }
        k
    }

    /// The prefix of the expiries of direct messages, or of group messages.
    pub fn expiries(group: bool) -> Vec<u8> {
        vec![if group { GROUP_EXPIRY } else { DM_EXPIRY }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_in_reading_order() {
        let peer = [7u8; 16];
        let m1 = message_key(&peer, 1_000, b"id-one");
        let m2 = message_key(&peer, 2_000, b"id-two");
        assert!(m1 < m2, "a conversation reads by time");
        assert_eq!(message_sent_ms(&m2), Some(2_000));
        let keys = [
            OutboxKey::Envelope {
                peer,
                sent_ms: 5,
                id: [1; 8],
            },
            OutboxKey::Queued {
                message: m1.clone(),
            },
            OutboxKey::DmExpiry {
                at: 9,
                message: m2.clone(),
            },
            OutboxKey::GroupExpiry { at: 3, message: m1 },
        ];
        for k in keys {
            assert_eq!(OutboxKey::decode(&k.encode()), Some(k.clone()));
        }
        // Expiries sort by when they fall due, whatever the message.
        let soon = OutboxKey::DmExpiry {
            at: 10,
            message: vec![0xff; 24],
        }
        .encode();
        let later = OutboxKey::DmExpiry {
            at: 11,
            message: vec![0; 24],
        }
        .encode();
        assert!(soon < later);
        assert!(soon.starts_with(&OutboxKey::expiries(false)));
        // A peer's prefix finds its envelopes and queued messages, not another peer's.
        let e = OutboxKey::Envelope {
            peer,
            sent_ms: 1,
            id: [0; 8],
        }
        .encode();
        assert!(e.starts_with(&OutboxKey::envelopes(Some(&peer))));
        assert!(!e.starts_with(&OutboxKey::envelopes(Some(&[8u8; 16]))));
        let q = OutboxKey::Queued { message: m2 }.encode();
        assert!(q.starts_with(&OutboxKey::queued(Some(&peer))));
    }

    #[test]
    fn mls_records_round_trip_and_a_group_starting_with_i_is_no_invitation() {
        let mut g = [3u8; 16];
        g[0] = b'i';
        let keys = [
            MlsKey::Conversation([1; 16]),
            MlsKey::Accepted([2; 16]),
            MlsKey::KeyPackage,
            MlsKey::Group(g),
            MlsKey::Invite {
                group: g,
                peer: vec![9; 38],
            },
        ];
        for k in keys {
            assert_eq!(MlsKey::decode(&k.encode()), Some(k.clone()));
        }
        let group = MlsKey::Group(g).encode();
        assert!(group.starts_with(b"gi"), "the ambiguity is real");
        assert!(group.starts_with(MlsKey::prefix(MlsRecords::GroupsAndInvites)));
        // MLS entries and the old blob are not records.
        assert_eq!(MlsKey::decode(b"state"), None);
        assert_eq!(MlsKey::decode(&[MLS_ENTRY, b"c"].concat()), None);
        assert_eq!(MlsKey::decode(b"c-short"), None);
    }

    #[test]
    fn other_and_truncated_keys_are_not_misread() {
        for k in [&b""[..], b"Z123", b"E short", b"X1234567"] {
            assert_eq!(OutboxKey::decode(k), None, "{k:?}");
        }
        assert_eq!(message_sent_ms(b"too short"), None);
    }
}
