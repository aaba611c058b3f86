//! The transport over real loopback TCP: both ends, a prober, and an older TLS server.

use std::pin::Pin;
use std::sync::Arc;

use futures::future::poll_fn;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::core::Endpoint;
use libp2p::core::Transport;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportEvent};

use super::*;

fn dial_opts() -> DialOpts {
    DialOpts {
        role: Endpoint::Dialer,
        port_use: PortUse::New,
    }
}

async fn next_event(
    t: &mut WebTransport,
) -> TransportEvent<BoxFuture<'static, Result<WebStream, WebError>>, WebError> {
    poll_fn(|cx| Pin::new(&mut *t).poll(cx)).await
}

/// Listens on loopback and returns the announced address.
async fn listen(t: &mut WebTransport, addr: &str) -> Multiaddr {
    t.listen_on(ListenerId::next(), addr.parse().expect("addr"))
        .expect("listen");
    loop {
        if let TransportEvent::NewAddress { listen_addr, .. } = next_event(t).await {
            return listen_addr;
        }
    }
}

/// The next incoming connection's upgrade, driven to its end.
async fn incoming(t: &mut WebTransport) -> Result<WebStream, WebError> {
    loop {
        if let TransportEvent::Incoming { upgrade, .. } = next_event(t).await {
            return upgrade.await;
        }
    }
}

#[tokio::test]
async fn bytes_cross_websocket_inside_tls_on_the_served_path_only() {
    let mut server = WebTransport::new(&WebConfig::default()).expect("server");
    let mut client = WebTransport::new(&WebConfig::default()).expect("client");
    let addr = listen(&mut server, "/ip4/127.0.0.1/tcp/0/tls/x-parity-ws/%2Fnews").await;
    assert!(
        addr.to_string().ends_with("/tls/x-parity-ws/%2Fnews"),
        "{addr}"
    );

    let dial = client.dial(addr.clone(), dial_opts()).expect("dial");
    let (dialed, accepted) = tokio::join!(dial, incoming(&mut server));
    let (mut a, mut b) = (dialed.expect("dialed"), accepted.expect("accepted"));
    a.write_all(b"hello over tls").await.expect("write");
    a.flush().await.expect("flush");
    let mut buf = [0u8; 14];
    b.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"hello over tls");
    let big = vec![7u8; 200_000];
    b.write_all(&big).await.expect("write big");
    b.flush().await.expect("flush");
    let mut got = vec![0u8; big.len()];
    a.read_exact(&mut got).await.expect("read big");
    assert_eq!(got, big);
    // Closing sends a close frame and ends the other side's reads cleanly (EOF, no error);
    // writing after that fails, and keeps failing, without a panic.
    a.close().await.expect("close");
    let mut rest = Vec::new();
    b.read_to_end(&mut rest).await.expect("EOF after close");
    assert!(rest.is_empty());
    assert!(a.write_all(b"after close").await.is_err());
    assert!(a.write_all(b"again").await.is_err());

    // The same address with another path is refused by the server's web answer.
    let wrong: Multiaddr = addr
        .to_string()
        .replace("%2Fnews", "%2Fother")
        .parse()
        .expect("addr");
    let dial = client.dial(wrong, dial_opts()).expect("dial");
    let (dialed, accepted) = tokio::join!(dial, incoming(&mut server));
    assert!(
        matches!(dialed.as_ref().err(), Some(WebError::Refused(404))),
        "{:?}",
        dialed.err()
    );
    assert!(
        matches!(accepted.as_ref().err(), Some(WebError::NotUpgrade)),
        "{:?}",
        accepted.err()
    );
}

#[tokio::test]
async fn a_prober_gets_a_web_page_not_libp2p() {
    let mut server = WebTransport::new(&WebConfig {
        name: Some("news.example".into()),
        ..WebConfig::default()
    })
    .expect("server");
    let addr = listen(&mut server, "/ip4/127.0.0.1/tcp/0/tls/x-parity-ws/%2Fnews").await;
    let port = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(p) => Some(p),
            _ => None,
        })
        .expect("port");
    for (request, status) in [
        ("GET / HTTP/1.1\r\nHost: news.example\r\n\r\n", "200 OK"),
        ("GET /news HTTP/1.1\r\nHost: news.example\r\n\r\n", "404"),
        ("/multistream/1.0.0\n/noise\n", "400"),
        // Even the upgrade itself is answered with a web server's headers.
        (
            "GET /news HTTP/1.1\r\nHost: news.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "101 Switching Protocols",
        ),
    ] {
        let probe = async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let tls =
                futures_rustls::TlsConnector::from(Arc::new(tls::client_config().expect("cfg")));
            let name = ServerName::try_from("news.example").expect("name");
            let mut s = tls
                .connect(name, tcp::tokio::TcpStream(tcp))
                .await
                .expect("tls");
            s.write_all(request.as_bytes()).await.expect("write");
            s.flush().await.expect("flush");
            // The head of the answer: to its blank line, or to the end.
            let mut answer = Vec::new();
            let mut byte = [0u8; 1];
            while !answer.ends_with(b"\r\n\r\n") && s.read(&mut byte).await.unwrap_or(0) == 1 {
                answer.push(byte[0]);
            }
            String::from_utf8_lossy(&answer).into_owned()
        };
        let (answer, accepted) = tokio::join!(probe, incoming(&mut server));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert!(answer.contains("Server: nginx\r\n"), "{answer}");
        assert!(
            !answer.contains("libp2p") && !answer.contains("soketto"),
            "{answer}"
        );
        if status.starts_with("101") {
            assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
            assert!(accepted.is_ok(), "{:?}", accepted.err());
        } else {
            assert!(
                matches!(accepted.as_ref().err(), Some(WebError::NotUpgrade)),
                "{:?}",
                accepted.err()
            );
        }
    }
}

#[tokio::test]
async fn plain_websocket_still_works_and_an_old_tls_server_is_spoken_to() {
    let mut server = WebTransport::new(&WebConfig::default()).expect("server");
    let mut client = WebTransport::new(&WebConfig::default()).expect("client");
    let addr = listen(&mut server, "/ip4/127.0.0.1/tcp/0/ws").await;
    let (dialed, accepted) = tokio::join!(
        client.dial(addr, dial_opts()).expect("dial"),
        incoming(&mut server)
    );
    dialed.expect("plain dial");
    accepted.expect("plain accept");

    // A server that speaks only TLS 1.2 (older web servers and fronts) still gets through.
    let made = rcgen::generate_simple_self_signed(vec!["old.example".into()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into());
    let old = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("tls12")
    .with_no_client_auth()
    .with_single_cert(vec![made.cert.der().clone()], key)
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let serve = async {
        let (tcp, _) = listener.accept().await.expect("accept");
        let spec = addr::ListenSpec {
            tls: true,
            path: "/".into(),
        };
        accept(
            tcp::tokio::TcpStream(tcp),
            spec,
            Some(futures_rustls::TlsAcceptor::from(Arc::new(old))),
        )
        .await
    };
    let target: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/tls/sni/old.example/ws")
        .parse()
        .expect("addr");
    let (dialed, served) = tokio::join!(client.dial(target, dial_opts()).expect("dial"), serve);
    dialed.expect("TLS 1.2 dial");
    served.expect("TLS 1.2 accept");
}
