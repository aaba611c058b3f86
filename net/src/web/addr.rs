//! Which multiaddrs the web transport serves, and what they mean: `/tcp/P/ws` (plain),
//! `/tcp/P/tls/ws`, `/tcp/P/tls/sni/NAME/ws` and `/tcp/P/wss` (WebSocket inside TLS), each with
//! an optional path (`/x-parity-ws/%2Fpath`, `/x-parity-wss/%2Fpath`) and a trailing `/p2p/ID`.

use std::borrow::Cow;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Where and how to dial: the TCP address underneath, and the TLS and HTTP details on top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialTarget {
    /// The address handed to TCP (with its `/p2p` if the original had one).
    pub tcp: Multiaddr,
    /// Whether the WebSocket runs inside TLS.
    pub tls: bool,
    /// The name sent as TLS SNI (none when dialing a bare IP address without `/sni`).
    pub sni: Option<String>,
    /// The HTTP `Host` header.
    pub host: String,
    /// The HTTP path of the WebSocket upgrade.
    pub path: String,
}

/// What a listener serves: TLS or not, and the one path that upgrades to WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// Whether connections start with a TLS handshake.
    pub tls: bool,
    /// The path of the WebSocket upgrade; every other request gets an ordinary web answer.
    pub path: String,
}

impl ListenSpec {
    /// The address a listener on `tcp` announces.
    pub fn address(&self, tcp: Multiaddr) -> Multiaddr {
        let mut a = tcp;
        if self.tls {
            a.push(Protocol::Tls);
        }
        a.push(Protocol::Ws(Cow::Owned(self.path.clone())));
        a
    }
}

/// Splits a dialable web address; `None` for anything else (plain TCP, QUIC, relayed).
pub fn parse_dial(addr: &Multiaddr) -> Option<DialTarget> {
    let mut rest = addr.clone();
    let mut p2p = None;
    if let Some(Protocol::P2p(id)) = rest.iter().last() {
        p2p = Some(id);
        rest.pop();
    }
    let (tls, path, sni) = match rest.pop()? {
        Protocol::Wss(path) => (true, path.into_owned(), None),
        Protocol::Ws(path) => match rest.iter().last() {
            Some(Protocol::Tls) => {
                rest.pop();
                (true, path.into_owned(), None)
            }
            Some(Protocol::Sni(name)) => {
                let name = name.into_owned();
                rest.pop();
                if rest.pop()? != Protocol::Tls {
                    return None;
                }
                (true, path.into_owned(), Some(name))
            }
            _ => (false, path.into_owned(), None),
        },
        _ => return None,
    };
    // What is left must be exactly host then TCP port: no relay hops, no nesting.
    let mut it = rest.iter();
    let (host, dns_name) = match it.next()? {
        Protocol::Ip4(ip) => (ip.to_string(), None),
        Protocol::Ip6(ip) => (format!("[{ip}]"), None),
        Protocol::Dns(n) | Protocol::Dns4(n) | Protocol::Dns6(n) => {
            (n.to_string(), Some(n.to_string()))
        }
        _ => return None,
    };
    let Some(Protocol::Tcp(port)) = it.next() else {
        return None;
    };
    if it.next().is_some() {
        return None;
    }
    let sni = if tls { sni.or(dns_name) } else { None };
    let host = match (&sni, port) {
        (Some(name), 443) if tls => name.clone(),
        (Some(name), _) => format!("{name}:{port}"),
        // What a browser sends: no port when it is the scheme's own.
        (None, 443) if tls => host,
        (None, 80) if !tls => host,
        (None, _) => format!("{host}:{port}"),
    };
    let path = normal_path(&path);
    // Both go into the HTTP request as they are, and addresses come from other peers: a
    // CR/LF or space in them would let a peer write request lines of its choosing.
    if !printable(&path) || !printable(&host) {
        return None;
    }
    let tcp = match p2p {
        Some(id) => rest.with(Protocol::P2p(id)),
        None => rest,
    };
    Some(DialTarget {
        tcp,
        tls,
        sni,
        host,
        path,
    })
}

/// Visible ASCII only (no spaces, no control characters).
fn printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Splits a listen address into the TCP address to bind and what to serve on it.
pub fn parse_listen(addr: &Multiaddr) -> Option<(Multiaddr, ListenSpec)> {
    // A listener names itself by its certificate, not by `/sni`.
    if addr.iter().any(|p| matches!(p, Protocol::Sni(_))) {
        return None;
    }
    let target = parse_dial(addr)?;
    let mut tcp = target.tcp;
    if let Some(Protocol::P2p(_)) = tcp.iter().last() {
        tcp.pop();
    }
    Some((
        tcp,
        ListenSpec {
            tls: target.tls,
            path: target.path,
        },
    ))
}

/// Rewrites a DNS-named TLS address so its name survives DNS resolution as `/sni/NAME`
/// (`/dns4/a.org/tcp/443/wss` → `/dns4/a.org/tcp/443/tls/sni/a.org/ws`): the resolver in
/// front of the transport replaces the name with an IP address, and TLS must still send it.
pub fn keep_name(addr: &Multiaddr) -> Multiaddr {
    let Some(target) = parse_dial(addr) else {
        return addr.clone();
    };
    let explicit_sni = addr.iter().any(|p| matches!(p, Protocol::Sni(_)));
    let (true, Some(name), false) = (target.tls, target.sni.clone(), explicit_sni) else {
        return addr.clone();
    };
    let mut out = Multiaddr::empty();
    for p in target.tcp.iter() {
        if matches!(p, Protocol::P2p(_)) {
            continue;
        }
        out.push(p);
    }
    out.push(Protocol::Tls);
    out.push(Protocol::Sni(Cow::Owned(name)));
    out.push(Protocol::Ws(Cow::Owned(target.path)));
    if let Some(Protocol::P2p(id)) = addr.iter().last() {
        out.push(Protocol::P2p(id));
    }
    out
}

/// Whether an address is carried by this transport (for the API's transport names).
pub fn is_web(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::Ws(_) | Protocol::Wss(_)))
}

/// Whether an address is WebSocket inside TLS.
pub fn is_tls(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::Tls | Protocol::Wss(_)))
}

fn normal_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    #[test]
    fn plain_tls_and_named_addresses_are_read() {
        let t = parse_dial(&ma("/ip4/10.0.0.1/tcp/80/ws")).expect("plain");
        assert_eq!(
            (t.tls, t.sni, t.host.as_str(), t.path.as_str()),
            (false, None, "10.0.0.1", "/")
        );
        assert_eq!(t.tcp, ma("/ip4/10.0.0.1/tcp/80"));

        let t = parse_dial(&ma("/ip4/10.0.0.1/tcp/8443/tls/ws")).expect("tls by ip");
        assert_eq!(
            (t.tls, t.sni, t.host.as_str()),
            (true, None, "10.0.0.1:8443")
        );

        let t = parse_dial(&ma(
            "/ip4/10.0.0.1/tcp/443/tls/sni/news.example/x-parity-ws/%2Fstatic%2Fws",
        ))
        .expect("sni and path");
        assert_eq!(t.sni.as_deref(), Some("news.example"));
        assert_eq!(t.host, "news.example");
        assert_eq!(t.path, "/static/ws");

        let t = parse_dial(&ma("/dns4/news.example/tcp/443/wss")).expect("wss");
        assert_eq!((t.tls, t.sni.as_deref()), (true, Some("news.example")));
        assert_eq!(t.tcp, ma("/dns4/news.example/tcp/443"));
    }

    #[test]
    fn a_peer_id_is_kept_and_other_transports_are_not_ours() {
        let id = libp2p::PeerId::random();
        let t = parse_dial(&ma(&format!("/ip4/1.2.3.4/tcp/443/tls/ws/p2p/{id}"))).expect("p2p");
        assert_eq!(t.tcp, ma(&format!("/ip4/1.2.3.4/tcp/443/p2p/{id}")));
        for other in [
            "/ip4/1.2.3.4/tcp/443",
            "/ip4/1.2.3.4/udp/443/quic-v1",
            "/ip4/1.2.3.4/tcp/443/ws/p2p-circuit",
            "/ip4/1.2.3.4/tcp/1/tcp/2/ws",
            "/ip4/1.2.3.4/tcp/443/sni/x/ws",
            // Request-line and header injection through the path or the name.
            "/ip4/1.2.3.4/tcp/443/x-parity-ws/%2Fa%0D%0AFLUSHALL%0D%0A",
            "/ip4/1.2.3.4/tcp/443/x-parity-ws/%2Fa%20b",
        ] {
            assert_eq!(parse_dial(&ma(other)), None, "{other}");
        }
        let injected = Multiaddr::empty()
            .with(Protocol::Dns4("a\r\nX: y".into()))
            .with(Protocol::Tcp(443))
            .with(Protocol::Wss("/".into()));
        assert_eq!(parse_dial(&injected), None);
    }

    #[test]
    fn a_dns_name_survives_resolution_as_sni() {
        assert_eq!(
            keep_name(&ma("/dns4/news.example/tcp/443/wss")),
            ma("/dns4/news.example/tcp/443/tls/sni/news.example/ws")
        );
        let with_sni = ma("/dns4/cdn.example/tcp/443/tls/sni/front.example/ws");
        assert_eq!(keep_name(&with_sni), with_sni);
        let plain = ma("/dns4/news.example/tcp/80/ws");
        assert_eq!(keep_name(&plain), plain);
        let ip = ma("/ip4/1.2.3.4/tcp/443/tls/ws");
        assert_eq!(keep_name(&ip), ip);
    }

    #[test]
    fn listeners_announce_what_they_serve() {
        let (tcp, spec) =
            parse_listen(&ma("/ip4/0.0.0.0/tcp/443/tls/x-parity-ws/%2Fnews")).expect("listen");
        assert_eq!(tcp, ma("/ip4/0.0.0.0/tcp/443"));
        assert_eq!(
            spec,
            ListenSpec {
                tls: true,
                path: "/news".into()
            }
        );
        assert_eq!(
            spec.address(ma("/ip4/10.1.1.1/tcp/443")),
            ma("/ip4/10.1.1.1/tcp/443/tls/x-parity-ws/%2Fnews")
        );
        let (_, plain) = parse_listen(&ma("/ip4/0.0.0.0/tcp/80/ws")).expect("plain");
        assert_eq!(
            plain.address(ma("/ip4/10.1.1.1/tcp/80")),
            ma("/ip4/10.1.1.1/tcp/80/ws")
        );
        assert!(
            is_tls(&ma("/ip4/10.1.1.1/tcp/443/wss")) && !is_tls(&ma("/ip4/10.1.1.1/tcp/80/ws"))
        );
    }
}
