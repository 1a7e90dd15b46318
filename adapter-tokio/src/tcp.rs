//! The plain TCP listener: COBS-framed binary frames on a raw byte stream, for devices with no
//! WebSocket stack. See [`TcpServer`] for the framing and the limits.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eventwire_core::hub::Hub as CoreHub;
use eventwire_core::server::{Connection, Framing};
use eventwire_core::time::Instant;
use eventwire_core::CloseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tracing::{debug, info_span, Instrument};

use crate::conn::drive;
use crate::hub::Hub;
use crate::hub::Tokio;
use crate::server::{Server, ServerConfig, ServerState, Transport};
use crate::wire::{Recv, Wire};

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
    shared: Arc<ServerState>,
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

/// A plain TCP connection carrying COBS-framed frames; the core's connection decodes them.
pub(crate) struct TcpWire {
    read: OwnedReadHalf,
    write: BufWriter<OwnedWriteHalf>,
}

impl TcpWire {
    pub(crate) fn new(stream: TcpStream, write_buffer: usize) -> Self {
        let (read, write) = stream.into_split();
        TcpWire {
            read,
            write: BufWriter::with_capacity(write_buffer.max(READ_CHUNK), write),
        }
    }
}

impl Wire for TcpWire {
    type Unit = Vec<u8>;

    fn framing(&self) -> Framing {
        Framing::Stream
    }

    async fn feed(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write.write_all(bytes).await
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

    fn input(conn: &mut Connection<Tokio>, now: Instant, hub: &CoreHub<Tokio>, unit: &Vec<u8>) {
        conn.handle_stream(now, hub, unit);
    }
}
