//! The HTTP side of the web transport: reading a request head within bounds, deciding whether
//! it is the one WebSocket upgrade this listener serves, and the ordinary web answer everyone
//! else gets (a prober must see a web server, never libp2p).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite};

/// Most web servers refuse request heads above 8 KiB; so do we.
pub const MAX_HEAD: usize = 8 * 1024;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A WebSocket upgrade on the served path.
    Upgrade,
    /// The site's front page.
    Page,
    /// Any other path, or an upgrade on a wrong path.
    NotFound,
    /// Not an HTTP request at all.
    Bad,
}

/// Classifies a complete request head against the listener's WebSocket path.
pub fn classify(head: &[u8], ws_path: &str) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Request::Bad,
    }
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
    let upgrade = header("upgrade").is_some_and(|v| v.contains("websocket"))
        && header("sec-websocket-key").is_some();
    if method == "GET" && upgrade && path == ws_path {
        Request::Upgrade
    } else if (method == "GET" || method == "HEAD") && (path == "/" || path == "/index.html") {
        Request::Page
    } else {
        Request::NotFound
    }
}

/// The answer to anything but the upgrade: what a stock web server sends.
pub fn cover_response(req: Request) -> Vec<u8> {
    let (status, body) = match req {
        Request::Page | Request::Upgrade => ("200 OK", PAGE),
        Request::NotFound => ("404 Not Found", NOT_FOUND),
        Request::Bad => ("400 Bad Request", BAD_REQUEST),
    };
    format!(
        "HTTP/1.1 {status}\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
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
    let mut headers = [httparse::EMPTY_HEADER; 32];
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

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /news HTTP/1.1\r\nHost: news.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn only_the_upgrade_on_the_served_path_is_an_upgrade() {
        assert_eq!(classify(UPGRADE.as_bytes(), "/news"), Request::Upgrade);
        assert_eq!(classify(UPGRADE.as_bytes(), "/"), Request::NotFound);
        let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(classify(get, "/news"), Request::Page);
        assert_eq!(
            classify(b"GET /admin HTTP/1.1\r\n\r\n", "/news"),
            Request::NotFound
        );
        // An upgrade without a key is not one (a prober half-speaking WebSocket).
        let keyless = "GET /news HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(classify(keyless.as_bytes(), "/news"), Request::NotFound);
        assert_eq!(classify(b"/multistream/1.0.0\n", "/"), Request::Bad);
        assert_eq!(classify(&[0x16, 3, 1, 0, 0], "/"), Request::Bad);
    }

    #[test]
    fn the_cover_answer_looks_like_a_web_server() {
        let page = String::from_utf8(cover_response(Request::Page)).expect("utf8");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("Welcome to nginx!"));
        assert!(!page.to_lowercase().contains("libp2p") && !page.contains("multistream"));
        let nf = String::from_utf8(cover_response(Request::NotFound)).expect("utf8");
        assert!(nf.starts_with("HTTP/1.1 404"));
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

        let mut endless = futures::io::Cursor::new(vec![b'a'; 100_000]);
        let head = read_head(&mut endless).await.expect("read");
        assert!(head.len() <= MAX_HEAD + 1024, "{}", head.len());
    }
}
