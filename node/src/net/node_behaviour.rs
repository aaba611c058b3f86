//! The personal node's composed `NetworkBehaviour`.

// The NetworkBehaviour derive generates an event enum without doc comments.
#![allow(missing_docs)]

use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, gossipsub, identify, identity, kad, memory_connection_limits, ping,
};
use sha2::Digest;

use super::NetError;
use crate::config::{Config, DhtMode};

/// Everything a personal node speaks.
#[derive(NetworkBehaviour)]
pub struct NodeBehaviour {
    /// Connection-count limits (first, so it can deny before others allocate).
    pub limits: connection_limits::Behaviour,
    /// Refuse connections under memory pressure.
    pub memory: memory_connection_limits::Behaviour,
    /// Exchange of addresses and protocol lists.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// The DHT: peer routing, channel provider records, manifest records.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Channel topics.
    pub gossipsub: gossipsub::Behaviour,
}

impl NodeBehaviour {
    /// Builds the behaviour for a node with this key and configuration.
    pub fn new(key: &identity::Keypair, config: &Config) -> Result<Self, NetError> {
        let peer_id = key.public().to_peer_id();
        let gossip_cfg = gossipsub::ConfigBuilder::default()
            // Every message must carry its publisher's signature; unsigned ones are dropped.
            .validation_mode(gossipsub::ValidationMode::Strict)
            // Nothing is forwarded until the node has checked the post (accept/reject/ignore).
            .validate_messages()
            // Content-addressed ids: the same post republished (outbox, sync) is one message.
            .message_id_fn(|m: &gossipsub::Message| {
                gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
            })
            .max_transmit_size(super::MAX_GOSSIP_BYTES)
            .duplicate_cache_time(std::time::Duration::from_secs(10 * 60))
            .build()
            .map_err(|e| NetError::Behaviour(format!("gossipsub config: {e}")))?;
        let gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_cfg,
        )
        .map_err(|e| NetError::Behaviour(format!("gossipsub: {e}")))?;
        Ok(Self {
            limits: super::connection_limits(&config.limits),
            memory: super::memory_limits(&config.limits),
            identify: super::identify(key, &format!("samizdat/{}", env!("CARGO_PKG_VERSION"))),
            ping: ping::Behaviour::default(),
            kad: super::kademlia(peer_id, config.dht_mode == DhtMode::Server),
            gossipsub,
        })
    }
}
