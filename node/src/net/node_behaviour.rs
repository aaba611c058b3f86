//! The personal node's composed `NetworkBehaviour`.

// The NetworkBehaviour derive generates an event enum without doc comments.
#![allow(missing_docs)]

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify, identity, kad, mdns,
    memory_connection_limits, ping, relay, request_response,
};
use samizdat_proto::v1;
use sha2::Digest;

use super::NetError;
use super::wire::{DM_PROTOCOL, FILE_PROTOCOL, PX_PROTOCOL, ProtoCodec, SYNC_PROTOCOL};
use crate::config::{Config, DhtMode};

/// Everything a personal node speaks.
#[derive(NetworkBehaviour)]
pub struct NodeBehaviour {
    /// Peers the user blocked (first: a blocked peer gets nothing else).
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Connection-count limits (before others allocate anything).
    pub limits: connection_limits::Behaviour,
    /// Connections per IP address.
    pub ip_limit: super::ip_limit::Behaviour,
    /// Refuse connections under memory pressure.
    pub memory: memory_connection_limits::Behaviour,
    /// Exchange of addresses and protocol lists.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// The DHT: peer routing, channel provider records, manifest records.
    pub kad: crate::net::Kademlia,
    /// Channel topics.
    pub gossipsub: gossipsub::Behaviour,
    /// History sync (`/samizdat/sync/2`).
    pub sync: request_response::Behaviour<ProtoCodec<v1::SyncRequest, v1::SyncResponse>>,
    /// File chunks (`/samizdat/file/1`).
    pub files: request_response::Behaviour<ProtoCodec<v1::FileRequest, v1::FileResponse>>,
    /// Peer exchange (`/samizdat/px/1`).
    pub px:
        request_response::Behaviour<ProtoCodec<v1::PeerExchangeRequest, v1::PeerExchangeResponse>>,
    /// Direct messages and mail for offline peers (`/samizdat/dm/1`).
    pub dm: request_response::Behaviour<ProtoCodec<v1::DmRequest, v1::DmResponse>>,
    /// Reachability: are this node's addresses dialable from outside?
    pub autonat: autonat::Behaviour,
    /// Listening and dialing through relays when not directly reachable.
    pub relay: relay::client::Behaviour,
    /// Upgrading relayed connections to direct ones (hole punching).
    pub dcutr: dcutr::Behaviour,
    /// Finding peers on the local network without any server.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

impl NodeBehaviour {
    /// Builds the behaviour for a node with this key and configuration.
    pub fn new(
        key: &identity::Keypair,
        relay: relay::client::Behaviour,
        config: &Config,
    ) -> Result<Self, NetError> {
        let peer_id = key.public().to_peer_id();
        let gossip_cfg = gossipsub::ConfigBuilder::default()
            // Messages name no publisher: a post is signed by its channel or admin key and a
            // group message by MLS, so gossipsub's `from`, sequence number and signature would
            // only tell every subscriber, however many hops away, which node published each
            // post: where a channel's owner or a group member is. Messages that carry them
            // are dropped.
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            // Nothing is forwarded until the node has checked the post (accept/reject/ignore).
            .validate_messages()
            // Content-addressed ids: the same post republished (outbox, sync) is one message.
            .message_id_fn(|m: &gossipsub::Message| {
                gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
            })
            .max_transmit_size(super::MAX_GOSSIP_BYTES)
            // Publish to the mesh (D peers), not to every peer on the topic: the DHT leaves a
            // node briefly connected to many peers, and flooding each post to all of them
            // measured 30-50x the baseline's latency at 50 nodes.
            .flood_publish(false)
            .duplicate_cache_time(std::time::Duration::from_secs(10 * 60))
            .build()
            .map_err(|e| NetError::Behaviour(format!("gossipsub config: {e}")))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_cfg)
                .map_err(|e| NetError::Behaviour(format!("gossipsub: {e}")))?;
        // Peers that send invalid messages lose score and stop being heard (net/scoring.rs);
        // topics get their parameters when the node subscribes.
        gossipsub
            .with_peer_score(super::scoring::peer_params(), super::scoring::thresholds())
            .map_err(|e| NetError::Behaviour(format!("gossipsub scoring: {e}")))?;
        let rr = |timeout| {
            request_response::Config::default()
                .with_request_timeout(std::time::Duration::from_secs(timeout))
                .with_max_concurrent_streams(64)
        };
        Ok(Self {
            blocked: allow_block_list::Behaviour::default(),
            limits: super::connection_limits(&config.limits),
            ip_limit: super::ip_limit(&config.limits),
            memory: super::memory_limits(&config.limits),
            identify: super::identify(key, &format!("samizdat/{}", env!("CARGO_PKG_VERSION"))),
            ping: ping::Behaviour::default(),
            kad: super::kademlia(
                peer_id,
                match config.dht_mode {
                    DhtMode::Auto => None,
                    DhtMode::Server => Some(kad::Mode::Server),
                    DhtMode::Client => Some(kad::Mode::Client),
                },
            ),
            gossipsub,
            sync: request_response::Behaviour::with_codec(
                ProtoCodec::new(
                    crate::sync::MAX_REQUEST_BYTES,
                    crate::sync::MAX_RESPONSE_BYTES,
                ),
                [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr(30),
            ),
            files: request_response::Behaviour::with_codec(
                ProtoCodec::new(1024, crate::files::MAX_CHUNK_SIZE + 64 * 1024),
                [(FILE_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr(60),
            ),
            px: request_response::Behaviour::with_codec(
                ProtoCodec::new(64, 32 * 1024),
                [(PX_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr(20),
            ),
            dm: request_response::Behaviour::with_codec(
                ProtoCodec::new(crate::dm::MAX_DM_FRAME, crate::dm::MAX_DM_FRAME),
                [(DM_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr(30),
            ),
            autonat: super::autonat(peer_id, true),
            relay,
            dcutr: dcutr::Behaviour::new(peer_id),
            mdns: Toggle::from(if config.mdns {
                Some(
                    mdns::tokio::Behaviour::new(
                        mdns::Config {
                            query_interval: std::time::Duration::from_secs(10),
                            ..Default::default()
                        },
                        peer_id,
                    )
                    .map_err(|e| NetError::Behaviour(format!("mdns: {e}")))?,
                )
            } else {
                None
            }),
        })
    }
}
