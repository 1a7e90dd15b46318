//! The plain TCP listener: COBS-framed binary frames on a raw byte stream, for devices with no
//! WebSocket stack. See [`TcpServer`] for the framing and the limits.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventwire_core::codec::stream::{self, StreamDecoder};
use eventwire_core::codec::Codec;
use eventwire_core::frame::Frame;
use eventwire_core::{CloseCode, DecodeError, EncodeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tracing::{debug, info_span, Instrument};

use crate::conn::drive;
use crate::hub::Hub;
use crate::server::{Server, ServerConfig, Shared, Transport};
use crate::wire::{Recv, Wire};

/// Largest inbound frame (before COBS) a TCP connection accepts, whatever `session.max_frame`.
pub(crate) const MAX_FRAME: usize = 64 * 1024;
/// The decoder's buffer: the COBS encoding of a `MAX_FRAME` frame and its zero.
const DECODE_BUF: usize = MAX_FRAME + MAX_FRAME / 254 + 2;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 4 * 1024;
/// How long, and how much, is read and dropped after closing, so the close frame arrives.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// A standalone server for COBS-framed binary frames on plain TCP, for devices with no WebSocket
/// stack (microcontrollers, serial bridges, the core's `bare_loop` example); dropping it does not
/// stop it, [`TcpServer::shutdown`] does.
///
/// Each frame is the binary (postcard) form, COBS-encoded and ended by a zero byte
/// ([`eventwire_core::codec::stream`]), in both directions. A connection runs the same loop as a
/// WebSocket one, with the accept loop and shutdown of [`Server`]: the same session limits,
/// connection limit (close 1013), authentication and room hooks (the authentication hook gets
/// no headers), and shutdown (close 1001 with the retry-after hint). Closes are the protocol's
/// close frame followed by the end of the TCP stream.
///
/// | limit | value | on breach |
/// |---|---|---|
/// | inbound frame size | `session.max_frame`, capped at 64 KiB | close 1009 |
/// | bytes that are not a frame | - | close 1002 |
/// | read chunk | 4 KiB | - |
/// | write buffer | `write_buffer` | the connection waits for the socket |
///
/// A `session.max_frame` above 64 KiB is capped for inbound frames: the stream decoder's buffer
/// is allocated once per connection at that size. After the close frame went out, the socket is
/// shut down and what the peer still sends is read and dropped for at most a second, so that
/// the close frame is not lost to a connection reset.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// use eventwire_tokio::{Hub, ServerConfig, TcpServer};
///
/// let hub = Hub::new(Default::default());
/// let server = TcpServer::bind("127.0.0.1:9002", hub.clone(), ServerConfig::default()).await?;
/// hub.emit("feed", "tick", &1).unwrap();
/// server.shutdown(std::time::Duration::from_secs(1)).await;
/// # Ok(())
/// # }
/// ```
pub struct TcpServer {
    inner: Server,
}

impl TcpServer {
    /// Binds `addr` and starts serving `hub` in the background.
    pub async fn bind<A: ToSocketAddrs>(
        addr: A,
        hub: Hub,
        config: ServerConfig,
    ) -> io::Result<TcpServer> {
        let inner = Server::bind_with(addr, hub, config, Transport::Cobs).await?;
        Ok(TcpServer { inner })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    /// The hub it serves.
    pub fn hub(&self) -> &Hub {
        self.inner.hub()
    }

    /// Stops accepting, tells every client to reconnect after `retry_after` (close 1001 with the
    /// hint), and waits for the connections to end (at most the write timeout).
    pub async fn shutdown(self, retry_after: Duration) {
        self.inner.shutdown(retry_after).await
    }
}

/// Serves one accepted TCP connection to its end.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    over_capacity: bool,
) {
    let span = info_span!("tcp connection", %peer);
    async move {
        debug!("connected");
        let wire = TcpWire::new(stream, shared.config.write_buffer);
        drive(wire, peer, Vec::new(), &shared, over_capacity).await;
        debug!("closed");
    }
    .instrument(span)
    .await
}

/// A TCP stream carrying COBS-framed binary frames.
pub(crate) struct TcpWire {
    read: OwnedReadHalf,
    write: BufWriter<OwnedWriteHalf>,
    decoder: Box<StreamDecoder<DECODE_BUF>>,
    /// Encoded bytes of the frame being received, up to its zero.
    partial: usize,
    /// A frame was refused with a close code: the rest is not decoded.
    failed: bool,
    scratch: Vec<u8>,
}

impl TcpWire {
    pub(crate) fn new(stream: TcpStream, write_buffer: usize) -> Self {
        let (read, write) = stream.into_split();
        TcpWire {
            read,
            write: BufWriter::with_capacity(write_buffer.max(READ_CHUNK), write),
            decoder: Box::default(),
            partial: 0,
            failed: false,
            scratch: vec![0; 1024],
        }
    }
}

impl Wire for TcpWire {
    type Unit = Vec<u8>;
    type Out = Vec<u8>;

    fn codec(&self) -> Codec {
        Codec::Binary
    }

    fn encode(&mut self, frame: &Frame<'_>) -> Result<Vec<u8>, EncodeError> {
        let n = match stream::encode(frame, &mut self.scratch) {
            Ok(bytes) => bytes.len(),
            Err(EncodeError::BufferTooSmall { needed }) => {
                self.scratch.resize(needed, 0);
                stream::encode(frame, &mut self.scratch)?.len()
            }
            Err(e) => return Err(e),
        };
        Ok(self.scratch[..n].to_vec())
    }

    fn out_len(out: &Vec<u8>) -> usize {
        out.len()
    }

    async fn feed(&mut self, out: Vec<u8>) -> io::Result<()> {
        self.write.write_all(&out).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.write.flush().await
    }

    async fn close(&mut self, code: CloseCode) {
        debug!(%code, "closing");
        let _ = self.write.flush().await;
        let _ = self.write.shutdown().await;
        // Closing with unread input would reset the connection, and the peer could lose the
        // close frame: read and drop what it still sends, for a short while.
        let drain = async {
            let mut sink = [0u8; READ_CHUNK];
            let mut left = LINGER_BYTES;
            while left > 0 {
                match self.read.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }

    async fn recv(&mut self) -> Recv<Vec<u8>> {
        // `read_buf` is cancel-safe: the loop's select may drop this future.
        let mut chunk = Vec::with_capacity(READ_CHUNK);
        match self.read.read_buf(&mut chunk).await {
            Ok(0) | Err(_) => Recv::Ended,
            Ok(_) => Recv::Data(chunk),
        }
    }

    fn decode(
        &mut self,
        unit: &Vec<u8>,
        max_frame: usize,
        on: &mut dyn FnMut(Result<Frame<'_>, DecodeError>),
    ) {
        let limit = max_frame.min(MAX_FRAME);
        // The COBS encoding of a frame within the limit, without its zero.
        let encoded_limit = limit + limit / 254 + 1;
        let mut input = &unit[..];
        while !input.is_empty() && !self.failed {
            let zero = input.iter().position(|&b| b == 0);
            let body = zero.unwrap_or(input.len());
            if self.partial + body > encoded_limit {
                self.failed = true;
                on(Err(DecodeError::TooLarge {
                    size: self.partial + body,
                    limit,
                }));
                return;
            }
            self.partial = if zero.is_some() {
                0
            } else {
                self.partial + body
            };
            let (mut part, rest) = input.split_at(zero.map_or(input.len(), |z| z + 1));
            input = rest;
            while !part.is_empty() {
                let (decoded, left) = self.decoder.feed(part);
                part = left;
                if let Some(decoded) = decoded {
                    let fatal = matches!(&decoded, Err(e) if e.close_code().is_some());
                    on(decoded);
                    if fatal {
                        self.failed = true;
                        return;
                    }
                }
            }
        }
    }
}
