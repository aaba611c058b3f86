//! Outbound requests in flight on a request-response protocol, and the one place that turns
//! its events into what the caller acts on: a request to answer, a malformed request, the
//! answer to one of ours with what we noted when asking, or its failure.

use std::collections::HashMap;
use std::hash::Hash;

use libp2p::PeerId;
use libp2p::request_response::{
    self, InboundFailure, OutboundFailure, OutboundRequestId, ResponseChannel,
};

use crate::wire::Frame;

/// What a request-response event means for the protocol's owner.
#[derive(Debug)]
pub enum Exchange<Req, Resp, T> {
    /// A well-formed request to answer on `channel`.
    Request {
        /// Who asks.
        peer: PeerId,
        /// What it asks.
        request: Req,
        /// Where the answer goes.
        channel: ResponseChannel<Resp>,
    },
    /// A request that is not this protocol's message (a protocol violation by `peer`).
    Malformed {
        /// Who sent it.
        peer: PeerId,
        /// What was wrong.
        why: String,
    },
    /// The answer to one of our requests.
    Response {
        /// Who answered.
        peer: PeerId,
        /// Our request's id.
        id: OutboundRequestId,
        /// The answer.
        response: Resp,
        /// What we noted when asking.
        context: T,
    },
    /// One of our requests failed: no answer will come.
    Failed {
        /// Whom we asked.
        peer: PeerId,
        /// Our request's id.
        id: OutboundRequestId,
        /// What we noted when asking.
        context: T,
        /// Why.
        error: OutboundFailure,
    },
    /// A request from `peer` that could not be read or answered (for the owner's log).
    InboundFailed {
        /// Who asked.
        peer: PeerId,
        /// Why.
        error: InboundFailure,
    },
    /// Nothing to act on: an answer or failure of a request no longer tracked, a response
    /// sent.
    Nothing,
}

/// The requests one protocol has in flight, keyed by request id, each with its context.
#[derive(Debug)]
pub struct Requests<T, K = OutboundRequestId> {
    pending: HashMap<K, T>,
}

impl<T, K> Default for Requests<T, K> {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
        }
    }
}

impl<T, K: Hash + Eq> Requests<T, K> {
    /// Notes a request just sent, with what its answer will need.
    pub fn insert(&mut self, id: K, context: T) {
        self.pending.insert(id, context);
    }

    /// Takes the context of a request that was answered or failed (`None`: not ours, or
    /// given up on).
    pub fn take(&mut self, id: &K) -> Option<T> {
        self.pending.remove(id)
    }

    /// How many requests are in flight.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Forgets the requests `keep` refuses (a session given up on; its late answer is then
    /// `Nothing`).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.pending.retain(|_, t| keep(t));
    }
}

impl<T> Requests<T> {
    /// Demultiplexes one event of the protocol.
    pub fn on_event<Req, Resp>(
        &mut self,
        event: request_response::Event<Frame<Req>, Resp>,
    ) -> Exchange<Req, Resp, T> {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => match request {
                Frame::Valid(request) => Exchange::Request {
                    peer,
                    request,
                    channel,
                },
                Frame::Invalid(why) => Exchange::Malformed { peer, why },
            },
            E::Message {
                peer,
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => match self.take(&request_id) {
                Some(context) => Exchange::Response {
                    peer,
                    id: request_id,
                    response,
                    context,
                },
                None => Exchange::Nothing,
            },
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => match self.take(&request_id) {
                Some(context) => Exchange::Failed {
                    peer,
                    id: request_id,
                    context,
                    error,
                },
                None => Exchange::Nothing,
            },
            E::InboundFailure { peer, error, .. } => Exchange::InboundFailed { peer, error },
            E::ResponseSent { .. } => Exchange::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ProtoCodec;
    use libp2p::StreamProtocol;
    use libp2p::swarm::ConnectionId;
    use samizdat_proto::v1;

    type Codec = ProtoCodec<v1::PeerExchangeRequest, v1::PeerExchangeResponse>;

    /// Real request ids: the behaviour hands them out without a swarm.
    fn ids(n: usize) -> Vec<OutboundRequestId> {
        let mut b = request_response::Behaviour::with_codec(
            Codec::new(1024, 1024),
            [(
                StreamProtocol::new("/t/1"),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default(),
        );
        let peer = PeerId::random();
        (0..n)
            .map(|_| b.send_request(&peer, Frame::Valid(v1::PeerExchangeRequest {})))
            .collect()
    }

    fn response(
        peer: PeerId,
        id: OutboundRequestId,
    ) -> request_response::Event<Frame<v1::PeerExchangeRequest>, v1::PeerExchangeResponse> {
        request_response::Event::Message {
            peer,
            connection_id: ConnectionId::new_unchecked(1),
            message: request_response::Message::Response {
                request_id: id,
                response: v1::PeerExchangeResponse::default(),
            },
        }
    }

    #[test]
    fn answers_carry_their_context_once() {
        let ids = ids(2);
        let mut r = Requests::default();
        r.insert(ids[0], "first");
        let peer = PeerId::random();
        match r.on_event(response(peer, ids[0])) {
            Exchange::Response { context, id, .. } => {
                assert_eq!(context, "first");
                assert_eq!(id, ids[0]);
            }
            other => panic!("expected a response, got {other:?}"),
        }
        // A second answer to the same request, or one to a request never made, is nothing.
        assert!(matches!(
            r.on_event(response(peer, ids[0])),
            Exchange::Nothing
        ));
        assert!(matches!(
            r.on_event(response(peer, ids[1])),
            Exchange::Nothing
        ));
        assert!(r.is_empty());
    }

    #[test]
    fn failures_release_their_request() {
        let ids = ids(2);
        let mut r = Requests::default();
        r.insert(ids[0], 1u8);
        r.insert(ids[1], 2u8);
        let peer = PeerId::random();
        let failed = r.on_event::<v1::PeerExchangeRequest, v1::PeerExchangeResponse>(
            request_response::Event::OutboundFailure {
                peer,
                connection_id: ConnectionId::new_unchecked(1),
                request_id: ids[1],
                error: OutboundFailure::Timeout,
            },
        );
        assert!(matches!(failed, Exchange::Failed { context: 2, .. }));
        assert_eq!(r.len(), 1);
        r.retain(|c| *c != 1);
        assert!(r.is_empty());
    }
}
