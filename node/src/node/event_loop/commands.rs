//! The local API's commands: what the loop answers and the views it builds.

use super::*;

impl EventLoop {
    /// Runs a command of the node's handle (the writes it makes are what its answer waits
    /// for).
    pub(super) fn on_command(&mut self, cmd: Command) {
        self.command_seq = self.store.write_seq();
        cmd(self);
    }

    /// This node's contact card.
    pub(crate) fn contact_card(&self) -> crate::contact::ContactCard {
        crate::contact::ContactCard::own(&self.identity, self.own_addrs(), self.devices.book.own())
    }

    /// Every channel owned or followed, oldest followed first.
    pub(crate) fn channel_list(&self) -> Result<Vec<ChannelView>, NodeError> {
        let mut ids: Vec<ChannelId> = self.channels.by_id.keys().copied().collect();
        ids.sort_by_key(|id| self.channels.by_id[id].record.followed_at_ms);
        ids.iter().map(|id| self.channel_view(id, false)).collect()
    }

    /// Dials an address the user gave.
    pub(crate) fn dial_addr(&mut self, addr: Multiaddr) -> Result<(), NodeError> {
        self.swarm
            .dial(addr)
            .map_err(|e| NodeError::InvalidInput(format!("cannot dial: {e}")))
    }

    /// `group invite`: a person is invited with all their devices; the answer is the first
    /// one's.
    pub(crate) fn group_invite_person(
        &mut self,
        group: crate::group::GroupId,
        peer: PeerId,
        reply: Reply<crate::group::GroupView>,
    ) {
        let mut devices = self.devices.book.recipients(&peer).into_iter();
        match devices.next() {
            Some(first) => {
                for other in devices {
                    let (tx, _rx) = oneshot::channel();
                    self.group_invite(group, other, tx);
                }
                self.group_invite(group, first, reply);
            }
            None => self.group_invite(group, peer, reply),
        }
    }

    pub(crate) fn block_peer(&mut self, peer: PeerId, block: bool) -> Result<(), NodeError> {
        if peer == *self.swarm.local_peer_id() {
            return Err(NodeError::InvalidInput("a node cannot block itself".into()));
        }
        self.store.set_blocked(&peer, block)?;
        if block {
            self.user_blocked.insert(peer);
        } else {
            self.user_blocked.remove(&peer);
        }
        let b = &mut self.swarm.behaviour_mut().blocked;
        if block {
            b.block_peer(peer);
            tracing::info!(%peer, "peer blocked");
        } else {
            b.unblock_peer(peer);
            tracing::info!(%peer, "peer unblocked");
        }
        Ok(())
    }

    pub(super) fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::SyncRespond(channel, resp) => {
                let _ = self.swarm.behaviour_mut().sync.send_response(channel, resp);
            }
            Internal::FileRespond(channel, resp) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .files
                    .send_response(channel, resp);
            }
            Internal::ChunkStored {
                cid,
                index,
                peer,
                ok,
            } => self.on_chunk_stored(cid, index, peer, ok),
        }
    }

    pub(super) fn on_report(&mut self, report: Report<PostReply>) {
        match report {
            Report::Written(batch) => self.on_written(batch),
            Report::Durable => {
                self.durable.flush_done(self.store.durable_seq());
                self.run_durable();
            }
            Report::Expired(gone) => {
                for e in gone {
                    self.note_expired(&e.channel);
                    tracing::debug!(channel = %e.channel, post = %e.id, "post expired and deleted");
                    let _ = self.events.send(Event::PostExpired {
                        channel: e.channel.to_string(),
                        id: e.id.to_string(),
                    });
                }
            }
        }
    }

    pub(crate) fn info(&self) -> NodeInfo {
        let peer_id = *self.swarm.local_peer_id();
        let listen: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
        NodeInfo {
            peer_id: peer_id.to_string(),
            account: self.devices.account().map(|a| a.to_string()),
            listen_addrs: listen.iter().map(|a| a.to_string()).collect(),
            addrs: listen
                .iter()
                .map(|a| a.clone().with(Protocol::P2p(peer_id)).to_string())
                .collect(),
            connected_peers: self.swarm.connected_peers().count(),
            connections: self.conns.open(),
            connections_peak: self.conns.most(),
            connection_transports: self
                .conns
                .iter()
                .flat_map(|(p, addrs, _)| {
                    addrs
                        .iter()
                        .map(|a| crate::node::views::ConnectionView {
                            peer_id: p.to_string(),
                            transport: samizdat_net::transport_name(a).to_string(),
                            addr: a.to_string(),
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
            connections_trimmed: self.conns.trimmed(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            reachability: self.reach.reachability().as_str().to_string(),
            external_addrs: self
                .swarm
                .external_addresses()
                .map(|a| a.to_string())
                .collect(),
            relays: self.reach.reserved().map(|p| p.to_string()).collect(),
            graylisted_peers: self.police.refused_total(),
            refused_connections: self.conns.refused_total(),
            dropped: self.dropped(),
            bootstrap: self
                .peers
                .bootstrap
                .iter()
                .map(|a| crate::node::views::BootstrapView {
                    addr: a.to_string(),
                    connected: match a.iter().last() {
                        Some(Protocol::P2p(p)) => self.swarm.is_connected(&p),
                        _ => false,
                    },
                })
                .collect(),
        }
    }

    pub(super) fn dropped(&self) -> crate::node::views::DroppedView {
        crate::node::views::DroppedView {
            dht: self
                .upkeep
                .dht_drops
                .records
                .saturating_add(self.upkeep.dht_drops.providers),
            held_messages: self.held_dropped(),
            mail: self.dm_mail_evicted(),
        }
    }

    pub(crate) fn peers(&self) -> Vec<PeerView> {
        let mut out: Vec<PeerView> = self
            .conns
            .iter()
            .map(|(p, addrs, agent)| PeerView {
                peer_id: p.to_string(),
                addrs: addrs.iter().map(|a| a.to_string()).collect(),
                agent: agent.map(str::to_string),
                relayed: addrs.iter().all(|a| crate::net::is_relayed(a)),
                transports: addrs
                    .iter()
                    .map(|a| samizdat_net::transport_name(a).to_string())
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    pub(crate) fn channel_view(
        &self,
        id: &ChannelId,
        include_my_address: bool,
    ) -> Result<ChannelView, NodeError> {
        let state = self
            .channels
            .by_id
            .get(id)
            .ok_or_else(|| NodeError::UnknownChannel(id.to_string()))?;
        let posts = self.store.count(id)?;
        let peers = self.topic_peers(&state.topic.hash());
        let link = state
            .manifest
            .as_ref()
            .map(|m| self.invite_link(m, include_my_address));
        Ok(ChannelView {
            id: id.to_string(),
            name: state.manifest.as_ref().map(|m| m.name.clone()),
            description: state.manifest.as_ref().map(|m| m.description.clone()),
            role: state.role_name().to_string(),
            link: link.as_ref().map(|(l, _)| l.clone()),
            link_warning: link.and_then(|(_, w)| w),
            posts,
            peers,
        })
    }

    /// This node's own reachable addresses for links and cards: confirmed external ones, else
    /// listen addresses; non-loopback first, so a link works from other machines, then
    /// loopback for peers on this one.
    pub(super) fn own_addrs(&self) -> Vec<Multiaddr> {
        let mut own: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        if own.is_empty() {
            own = self
                .swarm
                .listeners()
                .filter(|a| !is_unspecified(a))
                .cloned()
                .collect();
        }
        own.sort_by_key(is_loopback);
        own
    }

    /// An invite link: the manifest and ways into the network — the bootstrap peers this node
    /// knows and the relays it holds reservations on, and this node's own addresses only when
    /// asked. With what it gives away or lacks, as a warning.
    pub(super) fn invite_link(
        &self,
        manifest: &Manifest,
        include_my_address: bool,
    ) -> (String, Option<String>) {
        let me = *self.swarm.local_peer_id();
        let mut addrs: Vec<Multiaddr> = Vec::new();
        let mut push = |a: Multiaddr| {
            if addrs.len() < crate::channel::MAX_LINK_ADDRS && !addrs.contains(&a) {
                addrs.push(a);
            }
        };
        if include_my_address {
            for a in self.own_addrs() {
                push(a.with(Protocol::P2p(me)));
            }
        }
        for a in &self.peers.bootstrap {
            if split_peer_addr(a).0 != Some(me) {
                push(a.clone());
            }
        }
        for (relay, a) in self.reach.reserved_addrs() {
            push(a.clone().with(Protocol::P2p(relay)));
        }
        let warning = if include_my_address {
            Some(
                "this link carries your node's own addresses: whoever gets it learns where \
                 your node is (its IP addresses)"
                    .to_string(),
            )
        } else if addrs.is_empty() {
            Some(
                "this link names no bootstrap peer or relay: whoever opens it needs another way \
                 into the network (a bootstrap address of their own, or a peer on their LAN)"
                    .to_string(),
            )
        } else {
            None
        };
        let link = Invite {
            manifest: manifest.clone(),
            bootstrap: addrs,
        }
        .to_string();
        (link, warning)
    }

    pub(super) fn topic_peers(&self, topic: &TopicHash) -> usize {
        self.swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(_, topics)| topics.contains(&topic))
            .count()
    }
}
