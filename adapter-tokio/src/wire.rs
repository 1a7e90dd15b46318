//! The transports a server connection runs over, behind one small trait, so that the connection
//! loop in `conn` is written once for WebSocket (tokio-tungstenite, and axum's upgrade) and for
//! byte streams.

use eventwire_core::codec::Codec;
use eventwire_core::frame::Frame;
use eventwire_core::{CloseCode, DecodeError, EncodeError};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::message::{self, Inbound};

/// What one wait on the transport gave.
pub(crate) enum Recv<U> {
    /// Data to decode with [`Wire::decode`].
    Data(U),
    /// Something the transport handled itself (a WebSocket ping, say).
    Nothing,
    /// The peer broke a transport rule; the session closes with this code.
    Violation(CloseCode, &'static str),
    /// The peer is gone.
    Ended,
}

/// A transport for one server connection.
pub(crate) trait Wire {
    /// A unit of received data (a message, or a chunk of a byte stream).
    type Unit;
    /// An encoded frame, ready to send.
    type Out;

    /// The form frames take on this transport (the session needs it to pick what it copies).
    fn codec(&self) -> Codec;
    /// Encodes a frame (synchronously: the hub may be locked while the frame is borrowed).
    fn encode(&mut self, frame: &Frame<'_>) -> Result<Self::Out, EncodeError>;
    /// Size of an encoded frame, for the byte counters.
    fn out_len(out: &Self::Out) -> usize;
    /// Queues an encoded frame, waiting while the transport's buffer is full.
    async fn feed(&mut self, out: Self::Out) -> std::io::Result<()>;
    /// Sends what is queued.
    async fn flush(&mut self) -> std::io::Result<()>;
    /// Closes the transport with `code` (the protocol close frame went out before).
    async fn close(&mut self, code: CloseCode);
    /// Waits for the next received data.
    async fn recv(&mut self) -> Recv<Self::Unit>;
    /// Decodes received data into frames, handing each to `on`.
    fn decode(
        &mut self,
        unit: &Self::Unit,
        max_frame: usize,
        on: &mut dyn FnMut(Result<Frame<'_>, DecodeError>),
    );
}

/// WebSocket through tokio-tungstenite: one frame per message.
pub(crate) struct WsWire<T> {
    ws: WebSocketStream<T>,
    codec: Codec,
    buf: Vec<u8>,
}

impl<T> WsWire<T> {
    pub(crate) fn new(ws: WebSocketStream<T>, codec: Codec) -> Self {
        WsWire {
            ws,
            codec,
            buf: Vec::with_capacity(1024),
        }
    }
}

impl<T> Wire for WsWire<T>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    type Unit = Message;
    type Out = Message;

    fn codec(&self) -> Codec {
        self.codec
    }

    fn encode(&mut self, frame: &Frame<'_>) -> Result<Message, EncodeError> {
        message::encode(self.codec, frame, &mut self.buf)
    }

    fn out_len(out: &Message) -> usize {
        out.len()
    }

    async fn feed(&mut self, out: Message) -> std::io::Result<()> {
        self.ws.feed(out).await.map_err(std::io::Error::other)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.ws.flush().await.map_err(std::io::Error::other)
    }

    async fn close(&mut self, code: CloseCode) {
        let close = Message::Close(Some(message::close_frame(code, code.name())));
        let _ = self.ws.send(close).await;
        // Closing a socket with unread bytes makes the kernel reset the connection, which can
        // destroy the close frames just sent (after an oversize message, the rest of it is still
        // arriving). Read and discard what the peer still sends, briefly and boundedly.
        let socket = self.ws.get_mut();
        let mut scratch = [0u8; 4096];
        let mut budget = 256 * 1024usize;
        let drain = async {
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
            Some(Ok(msg)) => match message::data(self.codec, &msg) {
                Ok(Some(_)) => Recv::Data(msg),
                Ok(None) => Recv::Nothing,
                Err(Inbound::Close(code)) => Recv::Violation(code, "wrong message type"),
                Err(Inbound::Ignore) => Recv::Nothing,
            },
            // tungstenite refuses an oversize message from its header, before buffering it.
            Some(Err(WsError::Capacity(_))) => {
                Recv::Violation(CloseCode::MESSAGE_TOO_BIG, "message too big")
            }
            Some(Err(_)) => Recv::Violation(CloseCode::PROTOCOL_ERROR, "websocket error"),
        }
    }

    fn decode(
        &mut self,
        unit: &Message,
        max_frame: usize,
        on: &mut dyn FnMut(Result<Frame<'_>, DecodeError>),
    ) {
        if let Ok(Some(bytes)) = message::data(self.codec, unit) {
            on(self.codec.decode(bytes, max_frame));
        }
    }
}
