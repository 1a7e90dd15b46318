//! Frames in WebSocket messages: one frame per message, binary or text by the negotiated codec.
//!
//! Shared by the server's connections and the client, so both turn messages into frames and
//! back the same way.

use eventwire_core::codec::Codec;
use eventwire_core::frame::Frame;
use eventwire_core::{CloseCode, DecodeError, EncodeError};
use tokio_tungstenite::tungstenite::Message;

/// Why a received message did not give a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// A frame kind this version does not know: ignore it (forward compatibility).
    Ignore,
    /// The connection must close with this code.
    Close(CloseCode),
}

/// What a text payload that is not UTF-8 fails with (the JSON codec writes UTF-8 only).
pub(crate) const NOT_TEXT: EncodeError = EncodeError::Malformed("JSON text");

/// Encodes `frame` for `codec` into the payload of one message (binary or text by
/// [`Codec::is_text`]), reusing `buf`'s allocation where it can. Every WebSocket library's
/// message type is built from this.
pub(crate) fn encode_payload(
    codec: Codec,
    frame: &Frame<'_>,
    buf: &mut Vec<u8>,
) -> Result<bytes::Bytes, EncodeError> {
    buf.clear();
    codec.encode_into(frame, buf)?;
    Ok(bytes::Bytes::copy_from_slice(buf))
}

/// Encodes `frame` for `codec` into a message, reusing `buf`'s allocation where it can.
pub(crate) fn encode(
    codec: Codec,
    frame: &Frame<'_>,
    buf: &mut Vec<u8>,
) -> Result<Message, EncodeError> {
    let bytes = encode_payload(codec, frame, buf)?;
    Ok(if codec.is_text() {
        let text =
            tokio_tungstenite::tungstenite::Utf8Bytes::try_from(bytes).map_err(|_| NOT_TEXT)?;
        Message::Text(text)
    } else {
        Message::Binary(bytes)
    })
}

/// Checks a data message's type (`text`, or binary) against the codec's.
pub(crate) fn check_kind(codec: Codec, text: bool) -> Result<(), Inbound> {
    eventwire_core::handshake::check_message_type(codec, text).map_err(Inbound::Close)
}

/// The payload bytes of a data message, checked against the codec's message type.
pub(crate) fn data(codec: Codec, message: &Message) -> Result<Option<&[u8]>, Inbound> {
    match message {
        Message::Binary(b) => check_kind(codec, false).map(|()| Some(&b[..])),
        Message::Text(t) => check_kind(codec, true).map(|()| Some(t.as_bytes())),
        // Control messages are answered by tungstenite itself.
        _ => Ok(None),
    }
}

/// Decodes a frame, mapping errors to what the connection does about them.
pub(crate) fn decode(
    codec: Codec,
    bytes: &[u8],
    max_frame: usize,
) -> Result<Frame<'_>, (Inbound, DecodeError)> {
    codec
        .decode(bytes, max_frame)
        .map_err(|e| match e.close_code() {
            Some(code) => (Inbound::Close(code), e),
            None => (Inbound::Ignore, e),
        })
}

/// The WebSocket close frame for `code`.
pub(crate) fn close_frame(
    code: CloseCode,
    reason: &str,
) -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: code.0.into(),
        reason: reason.to_owned().into(),
    }
}
