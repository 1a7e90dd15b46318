//! Frames in WebSocket messages: one frame per message, binary or text by the negotiated codec.
//! The decisions (which message type a codec uses, which close code a bad message gets) are the
//! core's; this only moves bytes between tungstenite's `Message` and frames.

use eventwire_core::codec::Codec;
use eventwire_core::frame::Frame;
use eventwire_core::handshake::check_message_type;
use eventwire_core::{CloseCode, DecodeError, EncodeError};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Bytes, Message, Utf8Bytes};

/// Encodes `frame` for `codec` into a message, reusing `buf`'s allocation.
pub(crate) fn encode(
    codec: Codec,
    frame: &Frame<'_>,
    buf: &mut Vec<u8>,
) -> Result<Message, EncodeError> {
    buf.clear();
    codec.encode_into(frame, buf)?;
    let bytes = Bytes::copy_from_slice(buf);
    Ok(if codec.is_text() {
        let text = Utf8Bytes::try_from(bytes).map_err(|_| EncodeError::Malformed("JSON text"))?;
        Message::Text(text)
    } else {
        Message::Binary(bytes)
    })
}

/// The payload of a data message, checked against the codec's message type; `Ok(None)` for
/// control messages (tungstenite answers pings and closes itself).
pub(crate) fn data(codec: Codec, message: &Message) -> Result<Option<&[u8]>, CloseCode> {
    match message {
        Message::Binary(b) => check_message_type(codec, false).map(|()| Some(&b[..])),
        Message::Text(t) => check_message_type(codec, true).map(|()| Some(t.as_bytes())),
        _ => Ok(None),
    }
}

/// Decodes a frame; an error carries the close code it calls for (`None`: ignore the frame).
pub(crate) fn decode(
    codec: Codec,
    bytes: &[u8],
    max_frame: usize,
) -> Result<Frame<'_>, (Option<CloseCode>, DecodeError)> {
    codec
        .decode(bytes, max_frame)
        .map_err(|e| (e.close_code(), e))
}

/// The WebSocket close frame for `code`.
pub(crate) fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame {
        code: code.0.into(),
        reason: reason.to_owned().into(),
    }
}
