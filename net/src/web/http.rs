//! The HTTP side of the web transport: reading a request head within bounds, deciding whether
//! it is the one WebSocket upgrade this listener serves, and the ordinary web answer everyone
//! else gets (a prober must see a web server, never libp2p).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite};

/// Most web servers refuse request heads above 8 KiB; so do we.
pub const MAX_HEAD: usize = 8 * 1024;
/// Headers parsed in a request head (browsers send a dozen or two; nginx takes many more).
const MAX_HEADERS: usize = 100;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A well-formed WebSocket upgrade on the served path; the `Sec-WebSocket-Accept` value
    /// to answer with, and where the head ends.
    Upgrade {
        /// The answer's `Sec-WebSocket-Accept`.
        accept: String,
        /// Bytes of the request head (what follows is already the connection's).
        head_len: usize,
    },
    /// The site's front page (`head`: a HEAD request, answered without a body).
    Page {
        /// A HEAD request.
        head: bool,
    },
    /// Any other path, or an upgrade on a wrong path.
    NotFound {
        /// A HEAD request.
        head: bool,
    },
    /// Not an HTTP request at all, or a malformed upgrade.
    Bad,
}

/// RFC 6455's GUID, appended to the client's key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Classifies a complete request head against the listener's WebSocket path.
pub fn classify(head: &[u8], ws_path: &str) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Request::Bad,
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Request::Bad;
    };
    let path = target.split('?').next().unwrap_or(target);
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    let is_head = method == "HEAD";
    // HTTP/1.1 without Host is a bad request to nginx too.
    if req.version == Some(1) && header("host").is_none() {
        return Request::Bad;
    }
    let upgrade = header("upgrade").is_some_and(|v| v.contains("websocket"))
        && header("sec-websocket-key").is_some();
    // A listener without a path of its own ("/", the default) takes the upgrade on any path,
    // as libp2p's WebSocket listeners always did: a web front may forward its path unchanged.
    // With a path of its own, only that path upgrades; everything else gets the web answer.
    if method == "GET" && upgrade && (path == ws_path || ws_path == "/") {
        let key = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
            .map(|h| h.value.trim_ascii())
            .unwrap_or_default();
        let well_formed = req.version == Some(1)
            && header("connection").is_some_and(|v| v.contains("upgrade"))
            && header("sec-websocket-version").is_some_and(|v| v.trim() == "13")
            && key.len() == 24;
        if !well_formed {
            return Request::Bad;
        }
        return Request::Upgrade {
            accept: accept_key(key),
            head_len,
        };
    }
    if (method == "GET" || is_head) && (path == "/" || path == "/index.html") {
        Request::Page { head: is_head }
    } else {
        Request::NotFound { head: is_head }
    }
}

/// RFC 6455: base64 of the SHA-1 of the client's key and the GUID.
fn accept_key(key: &[u8]) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(key);
    h.update(WS_GUID.as_bytes());
    data_encoding::BASE64.encode(&h.finalize())
}

/// The `101 Switching Protocols` answer to an upgrade, with a web server's headers.
pub fn upgrade_response(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nServer: nginx\r\nDate: {}\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    )
    .into_bytes()
}

/// The answer to anything but the upgrade: what a stock web server sends.
pub fn cover_response(req: &Request) -> Vec<u8> {
    let (status, body, head) = match req {
        Request::Page { head } => ("200 OK", PAGE, *head),
        Request::Upgrade { .. } => ("200 OK", PAGE, false),
        Request::NotFound { head } => ("404 Not Found", NOT_FOUND, *head),
        Request::Bad => ("400 Bad Request", BAD_REQUEST, false),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nServer: nginx\r\nDate: {}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now()),
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

const PAGE: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\nworking. Further configuration is required.</p>\n</body>\n</html>\n";
const NOT_FOUND: &str = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
const BAD_REQUEST: &str = "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// Reads until a request head is complete or can no longer be one (as a web server answers
/// 400 as soon as a request line is malformed), at most [`MAX_HEAD`] bytes; returns everything
/// read.
pub async fn read_head<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() >= MAX_HEAD || !incomplete(&buf) {
            return Ok(buf);
        }
    }
}

/// Whether more bytes could still make `buf` a valid request head.
fn incomplete(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    matches!(
        httparse::Request::new(&mut headers).parse(buf),
        Ok(httparse::Status::Partial)
    )
}

/// A stream that first replays bytes already read from it (the request head), so the
/// WebSocket handshake can parse the request the classifier looked at.
pub struct Replay<T> {
    head: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T> Replay<T> {
    /// `inner`, read as if `head` had not been taken from it yet.
    pub fn new(head: Vec<u8>, inner: T) -> Self {
        Self {
            head,
            pos: 0,
            inner,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pos < this.head.len() {
            let n = buf.len().min(this.head.len() - this.pos);
            buf[..n].copy_from_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(n));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replay<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// A stream whose reads are capped until the cap is lifted: a server's answer to the upgrade
/// is read by soketto, which would otherwise keep reading an endless header for as long as the
/// handshake may last.
pub struct Capped<T> {
    inner: T,
    read: usize,
    limit: usize,
    lifted: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<T> Capped<T> {
    /// `inner`, of which at most `limit` bytes may be read before `lifted` is set.
    pub fn new(
        inner: T,
        limit: usize,
        lifted: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Self {
            inner,
            read: 0,
            limit,
            lifted,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Capped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let capped = !this.lifted.load(std::sync::atomic::Ordering::Relaxed);
        if capped && this.read >= this.limit {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the server's answer to the upgrade is too long",
            )));
        }
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if capped {
            this.read = this.read.saturating_add(n);
        }
        Poll::Ready(Ok(n))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Capped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /news HTTP/1.1\r\nHost: news.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn only_the_upgrade_on_the_served_path_is_an_upgrade() {
        // RFC 6455's own example key and answer.
        let upgrade = Request::Upgrade {
            accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
            head_len: UPGRADE.len(),
        };
        let not_found = Request::NotFound { head: false };
        assert_eq!(classify(UPGRADE.as_bytes(), "/news"), upgrade);
        assert_eq!(classify(UPGRADE.as_bytes(), "/other"), not_found);
        // No path of its own: any upgrade (a front forwarding "/news" as is), but still only
        // an upgrade.
        assert_eq!(classify(UPGRADE.as_bytes(), "/"), upgrade);
        let plain_get = b"GET /news HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(classify(plain_get, "/"), not_found);
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(classify(get, "/news"), Request::Page { head: false });
        let head = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(classify(head, "/news"), Request::Page { head: true });
        // HTTP/1.1 without Host: nginx says 400.
        assert_eq!(classify(b"GET / HTTP/1.1\r\n\r\n", "/news"), Request::Bad);
        let admin = b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(classify(admin, "/news"), not_found);
        // An upgrade without a key is not one (a prober half-speaking WebSocket); one on the
        // right path with a wrong version or key is a bad request, answered as such.
        let keyless = "GET /news HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(classify(keyless.as_bytes(), "/news"), not_found);
        let v8 = UPGRADE.replace("Version: 13", "Version: 8");
        assert_eq!(classify(v8.as_bytes(), "/news"), Request::Bad);
        let short = UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
        assert_eq!(classify(short.as_bytes(), "/news"), Request::Bad);
        assert_eq!(classify(b"/multistream/1.0.0\n", "/"), Request::Bad);
        assert_eq!(classify(&[0x16, 3, 1, 0, 0], "/"), Request::Bad);
    }

    #[test]
    fn the_cover_answer_looks_like_a_web_server() {
        let page = String::from_utf8(cover_response(&Request::Page { head: false })).expect("utf8");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("Welcome to nginx!"));
        assert!(!page.to_lowercase().contains("libp2p") && !page.contains("multistream"));
        let nf =
            String::from_utf8(cover_response(&Request::NotFound { head: false })).expect("utf8");
        assert!(nf.starts_with("HTTP/1.1 404"));
        assert!(nf.contains("\r\nDate: "), "{nf}");
        // HEAD: the same headers, no body.
        let head = cover_response(&Request::Page { head: true });
        assert!(head.ends_with(b"\r\n\r\n"));
        assert!(
            String::from_utf8_lossy(&head).contains(&format!("Content-Length: {}", PAGE.len()))
        );
        let up = String::from_utf8(upgrade_response("abc=")).expect("utf8");
        assert!(up.starts_with("HTTP/1.1 101 Switching Protocols\r\nServer: nginx\r\n"));
        assert!(!up.contains("soketto"), "{up}");
        let len: usize = page
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("length");
        assert_eq!(len, PAGE.len());
    }

    #[tokio::test]
    async fn a_head_is_read_within_bounds_and_replayed() {
        let mut input = futures::io::Cursor::new(format!("{UPGRADE}rest").into_bytes());
        let head = read_head(&mut input).await.expect("read");
        assert!(head.starts_with(b"GET /news"));
        let mut replay = Replay::new(head, input);
        let mut all = Vec::new();
        replay.read_to_end(&mut all).await.expect("replay");
        assert_eq!(all, format!("{UPGRADE}rest").into_bytes());

        // Not HTTP: decided at the first byte that cannot start a request, without waiting.
        let mut probe = futures::io::Cursor::new(b"/multistream/1.0.0\n".to_vec());
        let head = read_head(&mut probe).await.expect("read");
        assert_eq!(classify(&head, "/"), Request::Bad);

        let lifted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut capped = Capped::new(
            futures::io::Cursor::new(vec![b'a'; 100_000]),
            4096,
            lifted.clone(),
        );
        let mut sink = Vec::new();
        assert!(
            capped.read_to_end(&mut sink).await.is_err(),
            "read past the cap"
        );
        assert!(sink.len() < 100_000, "{}", sink.len());
        lifted.store(true, std::sync::atomic::Ordering::Relaxed);
        capped.read_to_end(&mut sink).await.expect("lifted");
        assert_eq!(sink.len(), 100_000);

        let mut endless = futures::io::Cursor::new(vec![b'a'; 100_000]);
        let head = read_head(&mut endless).await.expect("read");
        assert!(head.len() <= MAX_HEAD + 1024, "{}", head.len());
    }
}
