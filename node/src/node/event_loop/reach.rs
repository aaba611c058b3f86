//! Staying reachable and finding ways in: which addresses to announce, carrying out what
//! [`crate::node::reach`] decides (the DHT mode AutoNAT's verdict drives, relay reservations,
//! peer-exchange pacing), hole punching, mDNS on the local network, and peer exchange that
//! keeps the peer cache full.

use crate::net::requests::Exchange;
use crate::net::wire::Frame;
use std::time::Instant;

use libp2p::request_response::{self, ResponseChannel};
use libp2p::{Multiaddr, PeerId, autonat, dcutr, mdns};
use samizdat_proto::v1;

use super::EventLoop;
use crate::channel::now_ms;
use crate::net::{is_global, is_relayed, worth_dialing};
use crate::node::reach::{Action as ReachAction, Reachability};
use crate::store::PeerRecord;

/// Most peers given or taken in one exchange.
const PX_MAX: usize = 32;

impl EventLoop {
    pub(super) fn on_new_listen_addr(&mut self, addr: Multiaddr) {
        tracing::info!(address = %addr, "listening");
        if is_relayed(&addr) {
            // Reachable through the relay: tell others so (provider records, identify).
            self.swarm.add_external_address(addr);
            self.reannounce();
            return;
        }
        // A public address is reachable as far as anyone can know without asking; private
        // and loopback ones wait for AutoNAT to confirm that peers can dial them.
        if self.peers.announce_listen && is_global(&addr) {
            self.swarm.add_external_address(addr);
            self.set_reachability(Reachability::Public);
        }
    }

    /// An address was confirmed reachable (by AutoNAT, or added above).
    pub(super) fn on_external_confirmed(&mut self, addr: &Multiaddr) {
        tracing::info!(address = %addr, "reachable address confirmed");
        // Provider records carry this node's addresses: publish them again with the new one.
        self.reannounce();
    }

    /// Re-announces every channel and file, so that provider records carry current addresses.
    pub(super) fn reannounce(&mut self) {
        let ids: Vec<_> = self.channels.by_id.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.channels.by_id.get_mut(&id) {
                s.last_provide = None;
            }
            self.discover(&id, false);
        }
        let files: Vec<_> = self.files.provided.iter().copied().collect();
        for cid in files {
            self.announce_file(&cid);
        }
    }

    pub(super) fn on_autonat(&mut self, event: autonat::Event) {
        match event {
            autonat::Event::StatusChanged { old, new } => {
                tracing::info!(?old, ?new, "reachability changed");
                match new {
                    autonat::NatStatus::Public(_) => self.set_reachability(Reachability::Public),
                    autonat::NatStatus::Private => self.set_reachability(Reachability::Private),
                    autonat::NatStatus::Unknown => {}
                }
            }
            other => tracing::trace!(?other, "autonat"),
        }
    }

    fn set_reachability(&mut self, r: Reachability) {
        let actions = self.reach.set(r, |p| self.swarm.is_connected(p));
        self.apply_reach(actions);
    }

    /// Remembers a peer that offers relaying, and reserves on it if this node needs relays.
    pub(super) fn note_relay(&mut self, peer: PeerId, addrs: &[Multiaddr]) {
        let actions = self
            .reach
            .note_relay(peer, addrs, |p| self.swarm.is_connected(p));
        self.apply_reach(actions);
    }

    fn apply_reach(&mut self, actions: Vec<ReachAction>) {
        for action in actions {
            match action {
                ReachAction::DhtMode(mode) => {
                    self.swarm.behaviour_mut().kad.set_mode(Some(mode));
                }
                ReachAction::Reserve { relay, circuit } => {
                    match self.swarm.listen_on(circuit.clone()) {
                        Ok(id) => {
                            tracing::info!(%relay, "reserving a relay slot");
                            self.reach.reserving(relay, id);
                        }
                        Err(e) => tracing::debug!(%circuit, "cannot listen through relay: {e}"),
                    }
                }
            }
        }
    }

    /// A relay listener closed (reservation refused or lost): try again later.
    pub(super) fn on_listener_closed(&mut self, id: libp2p::core::transport::ListenerId) {
        self.reach.listener_closed(id);
    }

    pub(super) fn on_dcutr(&mut self, event: dcutr::Event) {
        match event.result {
            Ok(_) => {
                tracing::info!(peer = %event.remote_peer_id, "relayed connection upgraded to a direct one");
                self.peers.direct_upgrades.insert(event.remote_peer_id);
            }
            Err(e) => {
                tracing::info!(peer = %event.remote_peer_id, "hole punching failed, staying relayed: {e}");
            }
        }
    }

    pub(super) fn on_mdns(&mut self, event: mdns::Event) {
        if let mdns::Event::Discovered(found) = event {
            let me = *self.swarm.local_peer_id();
            let mut by_peer: std::collections::HashMap<PeerId, Vec<Multiaddr>> = Default::default();
            for (peer, addr) in found {
                // A LAN peer announces its loopback addresses too: dialing one reaches this
                // node itself, and that wrong peer id would fail the whole dial.
                if peer != me && worth_dialing(&addr, false) {
                    by_peer.entry(peer).or_default().push(addr);
                }
            }
            for (peer, addrs) in by_peer {
                if self.swarm.is_connected(&peer) {
                    continue;
                }
                tracing::debug!(%peer, "found on the local network");
                let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                    .addresses(addrs)
                    .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
    }

    /// Asks an identified Samizdat peer which peers it knows (at most every ten minutes).
    pub(super) fn maybe_exchange_peers(&mut self, peer: PeerId) {
        if !self.reach.ask_peers(peer, Instant::now()) {
            return;
        }
        let id = self
            .swarm
            .behaviour_mut()
            .px
            .send_request(&peer, Frame::Valid(v1::PeerExchangeRequest {}));
        self.peers.px_requests.insert(id, ());
    }

    pub(super) fn on_px_event(
        &mut self,
        event: request_response::Event<Frame<v1::PeerExchangeRequest>, v1::PeerExchangeResponse>,
    ) {
        match self.peers.px_requests.on_event(event) {
            Exchange::Malformed { peer, why } => {
                self.protocol_violation(peer, "peer-exchange", &why)
            }
            Exchange::Request { peer, channel, .. } => self.answer_px(peer, channel),
            // Only answers to our own asking teach us peers.
            Exchange::Response { peer, response, .. } => self.learn_px(peer, response),
            Exchange::Failed { peer, error, .. } => {
                tracing::trace!(%peer, "peer exchange failed: {error}");
            }
            Exchange::InboundFailed { peer, error } => {
                tracing::debug!(%peer, "inbound peer exchange request failed: {error}");
            }
            Exchange::Nothing => {}
        }
    }

    fn answer_px(&mut self, to: PeerId, channel: ResponseChannel<v1::PeerExchangeResponse>) {
        let me = *self.swarm.local_peer_id();
        let peers = self
            .peers
            .book
            .newest(PX_MAX, |p| *p == to || *p == me)
            .into_iter()
            .map(|r| v1::PeerInfo {
                peer_id: r.peer_id.to_bytes(),
                addrs: r.addrs.iter().take(8).map(|a| a.to_vec()).collect(),
            })
            .collect();
        let _ = self
            .swarm
            .behaviour_mut()
            .px
            .send_response(channel, v1::PeerExchangeResponse { peers });
    }

    fn learn_px(&mut self, from: PeerId, resp: v1::PeerExchangeResponse) {
        let me = *self.swarm.local_peer_id();
        let local = self.over_loopback(&from);
        let mut learned = 0;
        for info in resp.peers.into_iter().take(PX_MAX) {
            let Ok(peer) = PeerId::from_bytes(&info.peer_id) else {
                continue;
            };
            if peer == me || self.peers.book.contains(&peer) {
                continue;
            }
            let addrs: Vec<Multiaddr> = info
                .addrs
                .into_iter()
                .take(8)
                .filter_map(|a| Multiaddr::try_from(a).ok())
                .filter(|a| worth_dialing(a, local))
                .collect();
            if addrs.is_empty() {
                continue;
            }
            // Heard of, not seen: ranks below every peer this node has talked to.
            let rec = PeerRecord {
                peer_id: peer,
                addrs,
                last_seen_ms: now_ms().saturating_sub(24 * 3600 * 1000),
            };
            self.remember_peer(rec);
            learned += 1;
        }
        if learned > 0 {
            tracing::debug!(%from, learned, "peers learned by exchange");
        }
    }
}
