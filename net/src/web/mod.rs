//! The web transport: libp2p over WebSocket, plain or inside TLS, that passes for an ordinary
//! HTTPS web site on the wire (TLS 1.2/1.3 with ALPN `http/1.1` and a web site's SNI, an HTTP
//! upgrade on one path) and answers everyone else like a stock web server, so a censor's DPI
//! and active probes see a web site. Noise and yamux run inside, as on TCP; the certificate
//! authenticates nothing, so self-signed and real certificates both work.
//!
//! It replaces rust-libp2p's WebSocket transport, whose TLS client trusts only public roots
//! and whose server upgrades any path.

pub mod addr;
mod frames;
pub mod http;
pub mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, FutureExt};
use libp2p::Multiaddr;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::tcp;
use rustls::pki_types::ServerName;

pub use addr::{is_tls, is_web, keep_name};
pub use frames::WebStream;
pub use tls::TlsSetupError;

/// How long a connection may take from TCP to an open WebSocket (TLS, request, answer).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// The certificate a node or bootstrap peer serves on TLS listen addresses (`[tls]` in both
/// config files). It does not authenticate the peer (Noise inside does); it makes the port
/// look like a web site's.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// PEM certificate chain (an operator's real certificate); with `key`, replaces the
    /// self-signed certificate made at start.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// The name a self-signed certificate carries (a web site's, never "samizdat").
    pub name: Option<String>,
}

impl WebConfig {
    /// Why these settings cannot be used, if they cannot.
    pub fn problem(&self) -> Option<&'static str> {
        (self.cert.is_some() != self.key.is_some())
            .then_some("[tls] needs both `cert` and `key`, or neither")
    }
}

/// The name a self-signed certificate carries when none is configured.
pub const DEFAULT_NAME: &str = "localhost";

/// Errors of the web transport.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// TCP failed.
    #[error("tcp: {0}")]
    Tcp(std::io::Error),
    /// The TLS handshake failed.
    #[error("tls: {0}")]
    Tls(std::io::Error),
    /// The WebSocket handshake failed.
    #[error("websocket handshake: {0}")]
    Handshake(#[from] soketto::handshake::Error),
    /// The server answered the upgrade with something else (a web front without the route).
    #[error("web server refused the upgrade (HTTP {0})")]
    Refused(u16),
    /// The request was not the upgrade this listener serves: it got the ordinary web answer.
    #[error("not a WebSocket upgrade on the served path: answered as a web site")]
    NotUpgrade,
    /// A TLS listener without a certificate.
    #[error("a TLS listener needs a certificate")]
    NoCertificate,
    /// A name that cannot go into SNI.
    #[error("invalid TLS server name {0:?}")]
    BadName(String),
    /// The handshake took too long.
    #[error("handshake timed out")]
    Timeout,
}

/// WebSocket (plain or inside TLS) over TCP.
pub struct WebTransport {
    inner: tcp::tokio::Transport,
    client: futures_rustls::TlsConnector,
    server: Option<futures_rustls::TlsAcceptor>,
    listeners: HashMap<ListenerId, addr::ListenSpec>,
}

impl WebTransport {
    /// A transport serving TLS with `config`'s certificate (or a self-signed one).
    pub fn new(config: &WebConfig) -> Result<Self, TlsSetupError> {
        let server = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => tls::server_config_from_files(cert, key)?,
            (None, None) => {
                tls::server_config_self_signed(config.name.as_deref().unwrap_or(DEFAULT_NAME))?
            }
            _ => return Err(TlsSetupError::Incomplete),
        };
        Ok(Self {
            inner: tcp::tokio::Transport::new(tcp::Config::default().nodelay(true)),
            client: futures_rustls::TlsConnector::from(Arc::new(tls::client_config()?)),
            server: Some(futures_rustls::TlsAcceptor::from(Arc::new(server))),
            listeners: HashMap::new(),
        })
    }
}

/// A connection's byte stream before it is known whether TLS wraps it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl libp2p::core::Transport for WebTransport {
    type Output = WebStream;
    type Error = WebError;
    type ListenerUpgrade = BoxFuture<'static, Result<WebStream, WebError>>;
    type Dial = BoxFuture<'static, Result<WebStream, WebError>>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<WebError>> {
        let Some((tcp_addr, spec)) = addr::parse_listen(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        if spec.tls && self.server.is_none() {
            return Err(TransportError::Other(WebError::NoCertificate));
        }
        self.inner.listen_on(id, tcp_addr).map_err(|e| match e {
            TransportError::MultiaddrNotSupported(_) => TransportError::MultiaddrNotSupported(addr),
            TransportError::Other(e) => TransportError::Other(WebError::Tcp(e)),
        })?;
        self.listeners.insert(id, spec);
        Ok(())
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        // The spec stays until the listener's `ListenerClosed`: connections it accepted before
        // closing must still be served as what they are.
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<WebError>> {
        // Hole punching dials as the listener on both sides; over WebSocket both would then
        // wait for the other's request. Left to TCP and QUIC.
        if opts.role == libp2p::core::Endpoint::Listener {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        let Some(target) = addr::parse_dial(&addr) else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        let tcp_dial = self
            .inner
            .dial(target.tcp.clone(), opts)
            .map_err(|e| match e {
                TransportError::MultiaddrNotSupported(_) => {
                    TransportError::MultiaddrNotSupported(addr)
                }
                TransportError::Other(e) => TransportError::Other(WebError::Tcp(e)),
            })?;
        let connector = self.client.clone();
        Ok(timed(async move {
            let tcp = tcp_dial.await.map_err(WebError::Tcp)?;
            connect(tcp, target, connector).await
        }))
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, WebError>> {
        let this = &mut *self;
        loop {
            let event = match Pin::new(&mut this.inner).poll(cx) {
                Poll::Ready(e) => e,
                Poll::Pending => return Poll::Pending,
            };
            // Every inner listener is one of ours; anything else is dropped, never served as
            // a default it was not asked to be.
            let Some(spec) = this.listeners.get(&event_listener(&event)).cloned() else {
                continue;
            };
            return Poll::Ready(match event {
                TransportEvent::NewAddress {
                    listener_id,
                    listen_addr,
                } => TransportEvent::NewAddress {
                    listen_addr: spec.address(listen_addr),
                    listener_id,
                },
                TransportEvent::AddressExpired {
                    listener_id,
                    listen_addr,
                } => TransportEvent::AddressExpired {
                    listen_addr: spec.address(listen_addr),
                    listener_id,
                },
                TransportEvent::Incoming {
                    listener_id,
                    upgrade,
                    local_addr,
                    send_back_addr,
                } => {
                    let acceptor = if spec.tls { this.server.clone() } else { None };
                    let (local, remote) = (spec.address(local_addr), spec.address(send_back_addr));
                    TransportEvent::Incoming {
                        listener_id,
                        upgrade: timed(async move {
                            let tcp = upgrade.await.map_err(WebError::Tcp)?;
                            accept(tcp, spec, acceptor).await
                        }),
                        local_addr: local,
                        send_back_addr: remote,
                    }
                }
                TransportEvent::ListenerClosed {
                    listener_id,
                    reason,
                } => {
                    this.listeners.remove(&listener_id);
                    TransportEvent::ListenerClosed {
                        listener_id,
                        reason: reason.map_err(WebError::Tcp),
                    }
                }
                TransportEvent::ListenerError { listener_id, error } => {
                    TransportEvent::ListenerError {
                        listener_id,
                        error: WebError::Tcp(error),
                    }
                }
            });
        }
    }
}

/// The listener an event is about.
fn event_listener<U, E>(event: &TransportEvent<U, E>) -> ListenerId {
    match event {
        TransportEvent::NewAddress { listener_id, .. }
        | TransportEvent::AddressExpired { listener_id, .. }
        | TransportEvent::Incoming { listener_id, .. }
        | TransportEvent::ListenerClosed { listener_id, .. }
        | TransportEvent::ListenerError { listener_id, .. } => *listener_id,
    }
}

fn timed(
    fut: impl std::future::Future<Output = Result<WebStream, WebError>> + Send + 'static,
) -> BoxFuture<'static, Result<WebStream, WebError>> {
    async move {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
            .await
            .unwrap_or(Err(WebError::Timeout))
    }
    .boxed()
}

/// The client side: TLS if asked, then the HTTP upgrade.
async fn connect(
    tcp: tcp::tokio::TcpStream,
    target: addr::DialTarget,
    connector: futures_rustls::TlsConnector,
) -> Result<WebStream, WebError> {
    let io: Box<dyn Io> = if target.tls {
        let name = match &target.sni {
            Some(n) => ServerName::try_from(n.clone()).map_err(|_| WebError::BadName(n.clone()))?,
            // A bare IP address: rustls sends no SNI, like a browser typed an IP.
            None => match ip_of(&target.tcp) {
                Some(ip) => ServerName::IpAddress(ip.into()),
                None => return Err(WebError::BadName(target.host.clone())),
            },
        };
        Box::new(connector.connect(name, tcp).await.map_err(WebError::Tls)?)
    } else {
        Box::new(tcp)
    };
    // The server's answer is read within the same bound as a request head.
    let lifted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let io = http::Capped::new(io, 2 * http::MAX_HEAD, lifted.clone());
    let mut client = soketto::handshake::Client::new(io, &target.host, &target.path);
    let answer = client.handshake().await;
    lifted.store(true, std::sync::atomic::Ordering::Relaxed);
    match answer? {
        soketto::handshake::ServerResponse::Accepted { .. } => {}
        soketto::handshake::ServerResponse::Redirect { status_code, .. }
        | soketto::handshake::ServerResponse::Rejected { status_code } => {
            return Err(WebError::Refused(status_code));
        }
    }
    Ok(frames::stream(client.into_builder()))
}

/// The server side: TLS if the listener serves it, then the request; only the upgrade on the
/// listener's path opens a connection, everything else gets the web server's answer.
async fn accept(
    tcp: tcp::tokio::TcpStream,
    spec: addr::ListenSpec,
    acceptor: Option<futures_rustls::TlsAcceptor>,
) -> Result<WebStream, WebError> {
    let mut io: Box<dyn Io> = match (spec.tls, acceptor) {
        (true, Some(a)) => Box::new(a.accept(tcp).await.map_err(WebError::Tls)?),
        (true, None) => return Err(WebError::NoCertificate),
        (false, _) => Box::new(tcp),
    };
    let mut head = http::read_head(&mut io).await.map_err(WebError::Tcp)?;
    if head.is_empty() {
        // Connected and said nothing: a web server closes without a word.
        return Err(WebError::NotUpgrade);
    }
    let (accept, head_len) = match http::classify(&head, &spec.path) {
        http::Request::Upgrade { accept, head_len } => (accept, head_len),
        other => {
            // Best effort: the prober may already be gone.
            let _ = io.write_all(&http::cover_response(&other)).await;
            let _ = io.close().await;
            return Err(WebError::NotUpgrade);
        }
    };
    // The answer is written here, not by soketto, whose own names soketto in `Server:`.
    io.write_all(&http::upgrade_response(&accept))
        .await
        .map_err(WebError::Tcp)?;
    io.flush().await.map_err(WebError::Tcp)?;
    // Whatever the client sent after its head already belongs to the connection.
    let rest = head.split_off(head_len.min(head.len()));
    Ok(frames::stream(soketto::connection::Builder::new(
        http::Replay::new(rest, io),
        soketto::connection::Mode::Server,
    )))
}

fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip.into()),
        libp2p::multiaddr::Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
