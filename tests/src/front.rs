//! A web front, the way an operator hides a bootstrap peer behind an existing web site: nginx
//! from Debian's packages terminates TLS for an innocuous domain, serves an ordinary page, and
//! forwards one path as WebSocket to the bootstrap peer's plain `/ws` listener. The config is
//! the one in `bootstrap/deploy/nginx-front.conf`, with its placeholders filled in.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

use crate::wait_for;

/// The operator's template, shipped in `bootstrap/deploy/`.
const TEMPLATE: &str = include_str!("../../bootstrap/deploy/nginx-front.conf");

/// Whether nginx is installed.
pub fn nginx_available() -> bool {
    Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running nginx front inside a network namespace; stopped on drop.
pub struct Front {
    child: Child,
    dir: tempfile::TempDir,
    /// The site's name (TLS SNI and `Host`).
    pub name: String,
    /// The path forwarded as WebSocket.
    pub path: String,
    /// The front's address.
    pub ip: Ipv4Addr,
}

impl Front {
    /// Starts nginx in namespace `ns` (address `ip`) on port 443 for `name`, forwarding `path`
    /// to `backend` (a bootstrap peer's plain WebSocket listener). Its certificate is
    /// self-signed for `name`.
    pub fn start(
        ns: &str,
        ip: Ipv4Addr,
        backend: SocketAddrV4,
        name: &str,
        path: &str,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()])?;
        std::fs::write(d.join("cert.pem"), cert.cert.pem())?;
        std::fs::write(d.join("key.pem"), cert.key_pair.serialize_pem())?;
        std::fs::create_dir_all(d.join("www"))?;
        std::fs::create_dir_all(d.join("tmp"))?;
        std::fs::write(
            d.join("www/index.html"),
            "<!DOCTYPE html><html><head><title>Local news</title></head><body><h1>Local news</h1><p>Nothing new today.</p></body></html>\n",
        )?;
        let conf = TEMPLATE
            .replace("@DIR@", &d.display().to_string())
            .replace("@NAME@", name)
            .replace("@PATH@", path)
            .replace("@BACKEND@", &backend.to_string())
            .replace("@CERT@", &d.join("cert.pem").display().to_string())
            .replace("@KEY@", &d.join("key.pem").display().to_string())
            .replace("@ROOT@", &d.join("www").display().to_string());
        let conf = format!("user root;\npid {}/nginx.pid;\n{conf}", d.display());
        std::fs::write(d.join("nginx.conf"), conf)?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "nginx", "-e"])
            .arg(d.join("error.log"))
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        let mut front = Self {
            child,
            dir,
            name: name.into(),
            path: path.into(),
            ip,
        };
        wait_for("nginx to listen on 443", Duration::from_secs(20), || {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "ss", "-ltn"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains(":443 ")
                .then_some(())
        })
        .or_else(|e| {
            let log =
                std::fs::read_to_string(front.dir.path().join("error.log")).unwrap_or_default();
            bail!("{e}; nginx said: {log}")
        })?;
        if let Ok(Some(status)) = front.child.try_wait() {
            bail!("nginx exited: {status}");
        }
        Ok(front)
    }

    /// The fronted address of the peer behind it:
    /// `/ip4/IP/tcp/443/tls/sni/NAME/x-parity-ws/PATH/p2p/PEER`.
    pub fn addr(&self, peer: &str) -> Result<String> {
        let peer: libp2p::PeerId = peer.parse().context("peer id")?;
        let a = Multiaddr::empty()
            .with(Protocol::Ip4(self.ip))
            .with(Protocol::Tcp(443))
            .with(Protocol::Tls)
            .with(Protocol::Sni(self.name.clone().into()))
            .with(Protocol::Ws(self.path.clone().into()))
            .with(Protocol::P2p(peer));
        Ok(a.to_string())
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
