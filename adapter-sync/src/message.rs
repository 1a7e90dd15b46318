//! Bytes in tungstenite messages. What goes in a message, its type and every close code are the
//! core connections' decisions; this only wraps their bytes and codes in tungstenite's types.

use eventwire_core::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Bytes, Message, Utf8Bytes};

/// The message carrying bytes a connection wrote: text for the JSON form (which serde_json
/// writes as UTF-8, so the check never fails in practice), binary otherwise.
pub(crate) fn from_payload(text: bool, bytes: Bytes) -> Result<Message, tungstenite::Error> {
    Ok(if text {
        Message::Text(Utf8Bytes::try_from(bytes)?)
    } else {
        Message::Binary(bytes)
    })
}

/// The WebSocket close frame for `code`.
pub(crate) fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    CloseFrame {
        code: code.0.into(),
        reason: reason.to_owned().into(),
    }
}
