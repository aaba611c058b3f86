//! A limit on connections from one IP address (established and handshaking), which
//! libp2p's `connection_limits` does not have: one host opening hundreds of connections must
//! not take every slot of the node's total.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Refuses an incoming connection from an IP (for IPv6: a /64) that already holds `max`
/// connections.
pub struct Behaviour {
    max: u32,
    /// Whether loopback addresses count (off by default: several local nodes and tests share
    /// 127.0.0.1).
    limit_loopback: bool,
    per_ip: HashMap<IpAddr, u32>,
    /// Incoming connections counted, pending or established, and their IP.
    counted: HashMap<ConnectionId, IpAddr>,
}

/// The error a refused connection carries (and the node logs).
#[derive(Debug, thiserror::Error)]
#[error("{ip} already holds {limit} connections (per-IP limit)")]
pub struct PerIpLimitExceeded {
    /// The address.
    pub ip: IpAddr,
    /// The limit.
    pub limit: u32,
}

/// The IP a remote address comes from, unless it is relayed (the relay's IP is shared by
/// everyone it relays, and the relay has its own limits).
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        // One host usually holds a whole /64: counted as one address.
        Protocol::Ip6(ip) => {
            let mut s = ip.segments();
            if !ip.is_loopback() {
                s[4..].fill(0);
            }
            Some(IpAddr::V6(s.into()))
        }
        _ => None,
    }
}

impl Behaviour {
    /// At most `max` connections per IP.
    pub fn new(max: u32, limit_loopback: bool) -> Self {
        Self {
            max,
            limit_loopback,
            per_ip: HashMap::new(),
            counted: HashMap::new(),
        }
    }

    fn release(&mut self, id: ConnectionId) {
        if let Some(ip) = self.counted.remove(&id)
            && let Some(n) = self.per_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        if ip.is_loopback() && !self.limit_loopback {
            return Ok(());
        }
        let n = self.per_ip.entry(ip).or_insert(0);
        if *n >= self.max {
            return Err(ConnectionDenied::new(PerIpLimitExceeded {
                ip,
                limit: self.max,
            }));
        }
        *n += 1;
        self.counted.insert(id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _id: ConnectionId,
        _peer: PeerId,
        _local: &Multiaddr,
        _remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(c) => self.release(c.connection_id),
            FromSwarm::ListenFailure(f) => self.release(f.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        // The dummy handler emits nothing.
        match event {}
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    #[test]
    fn the_limit_holds_per_ip_and_frees_on_close() {
        let mut b = Behaviour::new(2, false);
        let local = addr("/ip4/10.0.0.1/tcp/1");
        let a = addr("/ip4/203.0.113.5/tcp/4000");
        let other = addr("/ip4/203.0.113.6/tcp/4000");
        let (c1, c2, c3, c4) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
            ConnectionId::new_unchecked(4),
        );
        assert!(b.handle_pending_inbound_connection(c1, &local, &a).is_ok());
        assert!(b.handle_pending_inbound_connection(c2, &local, &a).is_ok());
        let refused = b.handle_pending_inbound_connection(c3, &local, &a);
        assert!(refused.is_err());
        assert!(
            b.handle_pending_inbound_connection(c4, &local, &other)
                .is_ok()
        );
        b.release(c1);
        assert!(b.handle_pending_inbound_connection(c3, &local, &a).is_ok());
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_limit() {
        let mut b = Behaviour::new(2, false);
        let local = addr("/ip6/2001:db8::1/tcp/1");
        for (i, a) in ["2001:db8:1:2::1", "2001:db8:1:2::ffff:2"]
            .iter()
            .enumerate()
        {
            let remote = addr(&format!("/ip6/{a}/tcp/4000"));
            let id = ConnectionId::new_unchecked(i);
            assert!(
                b.handle_pending_inbound_connection(id, &local, &remote)
                    .is_ok()
            );
        }
        let same64 = addr("/ip6/2001:db8:1:2:aaaa::3/tcp/4000");
        let other64 = addr("/ip6/2001:db8:1:3::1/tcp/4000");
        let (c3, c4) = (
            ConnectionId::new_unchecked(3),
            ConnectionId::new_unchecked(4),
        );
        assert!(
            b.handle_pending_inbound_connection(c3, &local, &same64)
                .is_err()
        );
        assert!(
            b.handle_pending_inbound_connection(c4, &local, &other64)
                .is_ok()
        );
    }

    #[test]
    fn loopback_and_relayed_connections_are_not_counted_unless_asked() {
        let local = addr("/ip4/127.0.0.1/tcp/1");
        let lo = addr("/ip4/127.0.0.1/tcp/4000");
        let relayed = addr(
            "/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit",
        );
        let mut b = Behaviour::new(1, false);
        for i in 0..5 {
            let id = ConnectionId::new_unchecked(i);
            assert!(b.handle_pending_inbound_connection(id, &local, &lo).is_ok());
            let id = ConnectionId::new_unchecked(100 + i);
            assert!(
                b.handle_pending_inbound_connection(id, &local, &relayed)
                    .is_ok()
            );
        }
        let mut strict = Behaviour::new(1, true);
        assert!(
            strict
                .handle_pending_inbound_connection(ConnectionId::new_unchecked(1), &local, &lo)
                .is_ok()
        );
        assert!(
            strict
                .handle_pending_inbound_connection(ConnectionId::new_unchecked(2), &local, &lo)
                .is_err()
        );
    }
}
