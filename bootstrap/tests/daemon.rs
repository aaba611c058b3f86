//! The `samizdat-bootstrap` binary: prints its addresses, serves metrics, keeps its identity.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(home: &std::path::Path, metrics: &str) -> (Proc, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_samizdat-bootstrap"))
        .arg("--home")
        .arg(home)
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ])
        .args(["--metrics", metrics])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let a = lines.next().expect("first line").expect("utf8");
    let b = lines.next().expect("second line").expect("utf8");
    (Proc(child), vec![a, b])
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read");
    body
}

#[test]
fn prints_full_addresses_serves_metrics_and_keeps_its_identity() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let metrics = format!("127.0.0.1:{port}");
    let (p, addrs) = start(dir.path(), &metrics);
    let peer = addrs[0]
        .rsplit("/p2p/")
        .next()
        .expect("peer id")
        .to_string();
    assert!(addrs[0].starts_with("/ip4/127.0.0.1/tcp/"), "{addrs:?}");
    assert!(addrs[1].contains("/quic-v1/p2p/"), "{addrs:?}");
    assert!(addrs.iter().all(|a| a.ends_with(&format!("/p2p/{peer}"))));

    let mut health = String::new();
    for _ in 0..50 {
        health = http_get(&metrics, "/healthz");
        if health.contains("200 OK") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let m = http_get(&metrics, "/metrics");
    assert!(m.contains("samizdat_bootstrap_connected_peers"), "{m}");
    drop(p);

    // Restarted on the same home, it has the same PeerId.
    let (_p, again) = start(dir.path(), "127.0.0.1:0");
    assert!(again[0].ends_with(&format!("/p2p/{peer}")));
}
