//! Requests to the event loop. Each carries a oneshot sender for its reply.

use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::NodeError;
use super::views::{AdminView, ChannelView, NodeInfo, PeerView, PostView, SyncStatus};
use crate::channel::{ChannelId, Invite, PostDraft};
use crate::files::{Cid, DownloadStatus};

/// What to follow.
#[derive(Debug, Clone)]
pub enum FollowTarget {
    /// A full invite link (manifest and bootstrap addresses).
    Invite(Box<Invite>),
    /// A bare channel id (the manifest is fetched from the DHT).
    Id(ChannelId),
}

/// What to do with a peer's message requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestAction {
    /// Show them; the peer is known from now on.
    Accept,
    /// Drop them.
    Decline,
    /// Drop them and block the peer.
    Block,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// A request to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    Info(Reply<NodeInfo>),
    ContactCard(Reply<crate::contact::ContactCard>),
    /// A contact was added: remember where to find it.
    LearnContact(crate::contact::ContactCard),
    DeviceLink(Reply<super::views::DeviceLinkView>),
    DeviceList(Reply<Vec<super::views::DeviceView>>),
    DeviceRevoke {
        peer: PeerId,
        reply: Reply<super::views::RevokeView>,
    },
    DeviceRemovals(Reply<Vec<super::views::RevokeGroupView>>),
    Peers(Reply<Vec<PeerView>>),
    Channels(Reply<Vec<ChannelView>>),
    /// A channel's view; its link carries this node's own addresses when the flag is set.
    Channel(ChannelId, bool, Reply<ChannelView>),
    CreateChannel {
        include_my_address: bool,
        name: String,
        description: String,
        reply: Reply<ChannelView>,
    },
    Follow {
        target: FollowTarget,
        reply: Reply<ChannelView>,
    },
    Unfollow {
        channel: ChannelId,
        reply: Reply<()>,
    },
    Post {
        channel: ChannelId,
        draft: PostDraft,
        reply: Reply<PostView>,
    },
    AddAdmin {
        channel: ChannelId,
        peer: PeerId,
        reply: Reply<()>,
    },
    RemoveAdmin {
        channel: ChannelId,
        peer: PeerId,
        reply: Reply<AdminView>,
    },
    Admins(ChannelId, Reply<Vec<AdminView>>),
    Requests(Reply<Vec<super::views::RequestView>>),
    AnswerRequests {
        peer: PeerId,
        action: RequestAction,
        reply: Reply<usize>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    SyncStatus(ChannelId, Reply<SyncStatus>),
    AnnounceFile(Cid),
    FetchFile {
        cid: Cid,
        name: String,
        max_bytes: Option<u64>,
        reply: Reply<DownloadStatus>,
    },
    FileStatus(Cid, Reply<DownloadStatus>),
    Block {
        peer: PeerId,
        block: bool,
        reply: Reply<()>,
    },
    DmSend {
        peer: PeerId,
        text: String,
        expires_in: Option<std::time::Duration>,
        attachment: Option<samizdat_proto::v1::Attachment>,
        reply: Reply<crate::dm::DmView>,
    },
    DmHistory(PeerId, Reply<Vec<crate::dm::DmView>>),
    DmConversations(Reply<Vec<crate::dm::DmConversationView>>),
    GroupCreate {
        name: String,
        reply: Reply<crate::group::GroupView>,
    },
    /// Answered once the member is added (its KeyPackage found), or after a minute.
    GroupInvite {
        group: crate::group::GroupId,
        peer: PeerId,
        reply: Reply<crate::group::GroupView>,
    },
    GroupRemove {
        group: crate::group::GroupId,
        peer: PeerId,
        reply: Reply<crate::group::GroupView>,
    },
    GroupPost {
        group: crate::group::GroupId,
        text: String,
        expires_in: Option<std::time::Duration>,
        attachment: Option<samizdat_proto::v1::Attachment>,
        reply: Reply<crate::group::GroupMessageView>,
    },
    GroupHistory(
        crate::group::GroupId,
        Reply<Vec<crate::group::GroupMessageView>>,
    ),
    GroupList(Reply<Vec<crate::group::GroupView>>),
}
