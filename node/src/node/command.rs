//! Requests to the event loop: closures it runs on its task. What they answer goes back
//! through a oneshot sender, once on disk.

use tokio::sync::oneshot;

use super::NodeError;
use crate::channel::{ChannelId, Invite};

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

/// A request to the event loop: run on its task with the loop at hand (the handle's method
/// wraps the loop method it calls, and answers through a oneshot sender).
pub(crate) type Command = Box<dyn FnOnce(&mut super::event_loop::EventLoop) + Send>;
