//! A WebSocket connection as a byte stream: each write goes out as one binary message, each
//! binary message read comes back as bytes. Text messages are not part of the protocol and
//! are dropped; pings are answered by soketto while reading.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::BoxStream;
use futures::{AsyncRead, AsyncWrite, Sink, Stream, StreamExt};
use rw_stream_sink::RwStreamSink;

/// The largest WebSocket message accepted: a Noise frame is at most 64 KiB, so anything much
/// larger is a peer trying to make us buffer.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// A connection's bytes, read and written as WebSocket binary messages.
pub type WebStream = RwStreamSink<Frames>;

/// Binary messages in and out of one WebSocket connection.
pub struct Frames {
    rx: BoxStream<'static, io::Result<Vec<u8>>>,
    tx: Pin<Box<dyn Sink<Out, Error = io::Error> + Send>>,
    /// The sink failed once: every later call fails too (the sink underneath must not be
    /// used after an error).
    failed: bool,
    /// The close frame is on its way.
    closing: bool,
}

/// What goes out: a message, or the close frame.
enum Out {
    Data(Vec<u8>),
    Close,
}

/// Finishes a handshake's builder into a byte stream.
pub fn stream<T>(mut builder: soketto::connection::Builder<T>) -> WebStream
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    builder.set_max_message_size(MAX_MESSAGE);
    builder.set_max_frame_size(MAX_MESSAGE);
    let (sender, receiver) = builder.finish();
    let rx = futures::stream::unfold(Some(receiver), |state| async move {
        let mut receiver = state?;
        let mut message = Vec::new();
        loop {
            match receiver.receive_data(&mut message).await {
                Ok(soketto::Data::Binary(_)) => return Some((Ok(message), Some(receiver))),
                Ok(soketto::Data::Text(_)) => message.clear(),
                Err(soketto::connection::Error::Closed) => return None,
                Err(e) => return Some((Err(io::Error::other(e)), None)),
            }
        }
    })
    .boxed();
    let tx = futures::sink::unfold(sender, |mut sender, out: Out| async move {
        match out {
            Out::Data(data) => {
                sender
                    .send_binary_mut(data)
                    .await
                    .map_err(io::Error::other)?;
                sender.flush().await.map_err(io::Error::other)?;
            }
            // A close frame, then the write side closed (TLS close_notify, FIN).
            Out::Close => sender.close().await.map_err(io::Error::other)?,
        }
        Ok::<_, io::Error>(sender)
    });
    RwStreamSink::new(Frames {
        rx,
        tx: Box::pin(tx),
        failed: false,
        closing: false,
    })
}

impl Frames {
    fn broken() -> io::Error {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "WebSocket connection failed earlier",
        )
    }

    /// Notes a failure so that the sink is never used again.
    fn track<T>(&mut self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(_)) = &r {
            self.failed = true;
        }
        r
    }
}

impl Stream for Frames {
    type Item = io::Result<Vec<u8>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_next_unpin(cx)
    }
}

impl Sink<Vec<u8>> for Frames {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed || self.closing {
            return Poll::Ready(Err(Self::broken()));
        }
        let r = self.tx.as_mut().poll_ready(cx);
        self.track(r)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Vec<u8>) -> io::Result<()> {
        if self.failed || self.closing {
            return Err(Self::broken());
        }
        let r = self.tx.as_mut().start_send(Out::Data(item));
        if r.is_err() {
            self.failed = true;
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(Self::broken()));
        }
        let r = self.tx.as_mut().poll_flush(cx);
        self.track(r)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(Self::broken()));
        }
        if !self.closing {
            let r = self.tx.as_mut().poll_ready(cx);
            std::task::ready!(self.track(r))?;
            let r = self.tx.as_mut().start_send(Out::Close);
            if r.is_err() {
                self.failed = true;
            }
            r?;
            self.closing = true;
        }
        let r = self.tx.as_mut().poll_close(cx);
        self.track(r)
    }
}
