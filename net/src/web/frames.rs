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
    tx: Pin<Box<dyn Sink<Vec<u8>, Error = io::Error> + Send>>,
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
    let tx = futures::sink::unfold(sender, |mut sender, data: Vec<u8>| async move {
        sender
            .send_binary_mut(data)
            .await
            .map_err(io::Error::other)?;
        sender.flush().await.map_err(io::Error::other)?;
        Ok::<_, io::Error>(sender)
    });
    RwStreamSink::new(Frames {
        rx,
        tx: Box::pin(tx),
    })
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
        self.tx.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, item: Vec<u8>) -> io::Result<()> {
        self.tx.as_mut().start_send(item)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx.as_mut().poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx.as_mut().poll_close(cx)
    }
}
