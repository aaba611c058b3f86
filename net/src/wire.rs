//! Request-response framing for Samizdat's own protocols: one protobuf message per stream
//! direction, prefixed by its length as an unsigned varint, with a hard size limit per side.

#![warn(clippy::arithmetic_side_effects)]

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

/// History sync protocol id.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/samizdat/sync/2");
/// File transfer protocol id.
pub const FILE_PROTOCOL: StreamProtocol = StreamProtocol::new("/samizdat/file/1");
/// Direct-message protocol id.
pub const DM_PROTOCOL: StreamProtocol = StreamProtocol::new("/samizdat/dm/1");
/// Peer exchange protocol id.
pub const PX_PROTOCOL: StreamProtocol = StreamProtocol::new("/samizdat/px/1");

/// A request as it came off the wire: the message, or why it is not one. Malformed requests
/// reach the node (instead of dying inside libp2p) so that it can count them against the peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<M> {
    /// A well-formed message.
    Valid(M),
    /// An oversized frame or bytes that are not this protocol's message (read, never sent).
    Invalid(String),
}

/// Length-prefixed protobuf codec with size limits.
#[derive(Debug)]
pub struct ProtoCodec<Req, Resp> {
    max_request: usize,
    max_response: usize,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Clone for ProtoCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            max_request: self.max_request,
            max_response: self.max_response,
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> ProtoCodec<Req, Resp> {
    /// A codec refusing requests above `max_request` and responses above `max_response` bytes.
    pub fn new(max_request: usize, max_response: usize) -> Self {
        Self {
            max_request,
            max_response,
            _types: PhantomData,
        }
    }
}

/// Reads one unsigned-varint length-prefixed frame of at most `max` bytes.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len: u64 = 0;
    for i in 0u32..10 {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        // The tenth byte holds the 64th bit only: anything more is not a u64.
        if i == 9 && b[0] > 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "frame length overflows 64 bits",
            ));
        }
        len |= u64::from(b[0] & 0x7f).wrapping_shl(i.saturating_mul(7));
        if b[0] & 0x80 == 0 {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > max {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("frame of {len} bytes exceeds the limit of {max}"),
                ));
            }
            let mut buf = vec![0u8; len];
            io.read_exact(&mut buf).await?;
            return Ok(buf);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "length prefix too long",
    ))
}

/// Writes one length-prefixed frame.
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, data: &[u8]) -> io::Result<()> {
    let mut len = data.len() as u64;
    let mut prefix = Vec::with_capacity(10);
    loop {
        let b = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            prefix.push(b);
            break;
        }
        prefix.push(b | 0x80);
    }
    io.write_all(&prefix).await?;
    io.write_all(data).await?;
    io.close().await
}

fn decode<M: prost::Message + Default>(bytes: &[u8]) -> io::Result<M> {
    M::decode(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl<Req, Resp> Codec for ProtoCodec<Req, Resp>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Default + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Frame<Req>;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame<Req>>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_frame(io, self.max_request).await {
            Ok(bytes) => Ok(match decode(&bytes) {
                Ok(m) => Frame::Valid(m),
                Err(e) => Frame::Invalid(format!("undecodable request: {e}")),
            }),
            // Oversized or a runaway length prefix: the peer's fault, not the network's.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(Frame::Invalid(e.to_string())),
            Err(e) => Err(e),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_frame(io, self.max_response).await?)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame<Req>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Frame::Valid(m) => write_frame(io, &m.encode_to_vec()).await,
            Frame::Invalid(_) => Err(io::Error::other("an invalid frame is never sent")),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res.encode_to_vec()).await
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_limits_hold() {
        futures::executor::block_on(async {
            for len in [0usize, 1, 127, 128, 300, 70_000] {
                let data = vec![7u8; len];
                let mut buf = futures::io::Cursor::new(Vec::new());
                write_frame(&mut buf, &data).await.expect("write");
                let mut rd = futures::io::Cursor::new(buf.into_inner());
                assert_eq!(read_frame(&mut rd, 70_000).await.expect("read"), data);
            }
            let mut buf = futures::io::Cursor::new(Vec::new());
            write_frame(&mut buf, &[0u8; 100]).await.expect("write");
            let mut rd = futures::io::Cursor::new(buf.into_inner());
            assert!(read_frame(&mut rd, 99).await.is_err());
            // A length prefix that never ends, and a truncated body.
            let mut rd = futures::io::Cursor::new(vec![0xffu8; 20]);
            assert!(read_frame(&mut rd, 1 << 20).await.is_err());
            let mut rd = futures::io::Cursor::new(vec![10u8, 1, 2]);
            assert!(read_frame(&mut rd, 1 << 20).await.is_err());
        });
    }
}
