//! The transports a server connection runs over, behind one small trait, so that the connection
//! loop in `conn` is written once for WebSocket (tokio-tungstenite, and axum's upgrade) and for
//! byte streams.

use bytes::{Bytes, BytesMut};
use eventwire_core::codec::Codec;
use eventwire_core::hub::Hub as CoreHub;
use eventwire_core::server::{Connection, Framing, TransportError};
use eventwire_core::time::Instant;
use eventwire_core::CloseCode;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::hub::Tokio;
use crate::message;

/// What one wait on the transport gave.
pub(crate) enum Recv<U> {
    /// Data for [`Wire::input`].
    Data(U),
    /// Something the transport handled itself (a WebSocket ping, say).
    Nothing,
    /// The transport refused what the peer sent.
    Violation(TransportError),
    /// The peer is gone.
    Ended,
}

/// A transport for one server connection: it moves bytes, the core's [`Connection`] decides.
pub(crate) trait Wire {
    /// A unit of received data (a message, or a chunk of a byte stream).
    type Unit;

    /// How frames travel on this transport.
    fn framing(&self) -> Framing;
    /// Queues one message (or stream bytes) the connection wrote, waiting while the
    /// transport's buffer is full.
    async fn feed(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// Sends what is queued.
    async fn flush(&mut self) -> std::io::Result<()>;
    /// Closes the transport with `code` (the protocol close frame went out before).
    async fn close(&mut self, code: CloseCode);
    /// Waits for the next received data.
    async fn recv(&mut self) -> Recv<Self::Unit>;
    /// Hands received data to the connection.
    fn input(conn: &mut Connection<Tokio>, now: Instant, hub: &CoreHub<Tokio>, unit: &Self::Unit);
}

/// WebSocket through tokio-tungstenite: one frame per message.
pub(crate) struct WsWire<T> {
    ws: WebSocketStream<T>,
    codec: Codec,
    out: Outgoing,
    /// tungstenite failed to parse what the peer sent: it must not read again (its buffer state
    /// is undefined), and the rest of the message is still arriving as raw bytes.
    unparsed: bool,
}

impl<T> WsWire<T> {
    pub(crate) fn new(ws: WebSocketStream<T>, codec: Codec) -> Self {
        WsWire {
            ws,
            codec,
            out: Outgoing::default(),
            unparsed: false,
        }
    }
}

/// The payloads of outgoing messages, cut from one buffer: a message owns its bytes until the
/// WebSocket has written them into its own buffer and dropped them, after which the next message
/// reuses the same memory (`BytesMut` reclaims a buffer nobody else holds), so sending allocates
/// nothing in the steady state.
#[derive(Default)]
pub(crate) struct Outgoing(BytesMut);

impl Outgoing {
    /// `bytes` as a message payload.
    pub(crate) fn payload(&mut self, bytes: &[u8]) -> Bytes {
        self.0.reserve(bytes.len());
        self.0.extend_from_slice(bytes);
        self.0.split().freeze()
    }
}

impl<T> Wire for WsWire<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    type Unit = Message;

    fn framing(&self) -> Framing {
        Framing::Message(self.codec)
    }

    async fn feed(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let payload = self.out.payload(bytes);
        let message =
            message::from_payload(self.codec.is_text(), payload).map_err(std::io::Error::other)?;
        self.ws.feed(message).await.map_err(std::io::Error::other)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.ws.flush().await.map_err(std::io::Error::other)
    }

    async fn close(&mut self, code: CloseCode) {
        // After the peer's own close this fails (tungstenite already queued the echo); the
        // flush sends that echo either way.
        let close = Message::Close(Some(message::close_frame(code, code.name())));
        let _ = self.ws.send(close).await;
        let _ = self.ws.flush().await;
        // Closing a socket with unread bytes makes the kernel reset the connection, which can
        // destroy the close frames just sent. So read what the peer still sends, briefly and
        // boundedly: through the WebSocket until the close handshake completes (the peer's
        // close, or its reply to ours), after which the server closes TCP at once (RFC 6455
        // 7.1.1) instead of waiting for the peer to; or, after a message tungstenite could not
        // parse (an oversize one, whose rest is still arriving), as raw bytes until EOF.
        let mut budget = 256 * 1024usize;
        let drain = async {
            if !self.unparsed {
                while budget > 0 {
                    match self.ws.next().await {
                        Some(Ok(message)) => budget = budget.saturating_sub(message.len().max(1)),
                        Some(Err(_)) | None => return,
                    }
                }
                return;
            }
            let socket = self.ws.get_mut();
            let mut scratch = [0u8; 4096];
            while budget > 0 {
                match socket.read(&mut scratch).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => budget = budget.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), drain).await;
    }

    async fn recv(&mut self) -> Recv<Message> {
        match self.ws.next().await {
            Some(Ok(Message::Close(_))) | None => Recv::Ended,
            Some(Ok(msg @ (Message::Binary(_) | Message::Text(_)))) => Recv::Data(msg),
            // Control messages are answered by tungstenite itself.
            Some(Ok(_)) => Recv::Nothing,
            // tungstenite refuses an oversize message from its header, before buffering it.
            Some(Err(WsError::Capacity(_))) => {
                self.unparsed = true;
                Recv::Violation(TransportError::TooBig)
            }
            Some(Err(_)) => {
                self.unparsed = true;
                Recv::Violation(TransportError::Protocol)
            }
        }
    }

    fn input(conn: &mut Connection<Tokio>, now: Instant, hub: &CoreHub<Tokio>, unit: &Message) {
        match unit {
            Message::Binary(b) => conn.handle_message(now, hub, b, false),
            Message::Text(t) => conn.handle_message(now, hub, t.as_bytes(), true),
            _ => {}
        }
    }
}
