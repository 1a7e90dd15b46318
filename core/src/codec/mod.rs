//! Turning frames into bytes and back.
//!
//! - [`binary`]: postcard, one frame per message (WebSocket binary messages).
//! - `json` (feature `json`): JSON text, one frame per message (WebSocket text messages).
//! - [`stream`]: COBS-framed binary frames on a byte stream (TCP, serial).
//!
//! [`Codec`] picks one of the message forms from a WebSocket subprotocol, so every adapter makes
//! that choice the same way.

pub mod binary;
#[cfg(feature = "json")]
pub mod json;
pub mod stream;

use crate::error::DecodeError;
#[cfg(feature = "alloc")]
use crate::error::EncodeError;
use crate::frame::Frame;

/// WebSocket subprotocol of the binary form.
pub const SUBPROTOCOL_BINARY: &str = "eventwire.v1";
/// WebSocket subprotocol of the JSON form.
pub const SUBPROTOCOL_JSON: &str = "eventwire.v1.json";

/// A message form of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// postcard in binary messages.
    Binary,
    /// JSON in text messages.
    #[cfg(feature = "json")]
    Json,
}

impl Codec {
    /// The WebSocket subprotocol that selects this form.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Codec::Binary => SUBPROTOCOL_BINARY,
            #[cfg(feature = "json")]
            Codec::Json => SUBPROTOCOL_JSON,
        }
    }

    /// The form a subprotocol name selects, if this build supports it.
    pub fn from_subprotocol(name: &str) -> Option<Codec> {
        match name.trim() {
            SUBPROTOCOL_BINARY => Some(Codec::Binary),
            #[cfg(feature = "json")]
            SUBPROTOCOL_JSON => Some(Codec::Json),
            _ => None,
        }
    }

    /// Picks the form for a `Sec-WebSocket-Protocol` request header (comma-separated, in the
    /// client's order of preference): the first one this build supports.
    pub fn negotiate(header: &str) -> Option<Codec> {
        header.split(',').find_map(Codec::from_subprotocol)
    }

    /// Whether messages of this form are WebSocket text messages (otherwise binary).
    pub fn is_text(self) -> bool {
        !matches!(self, Codec::Binary)
    }

    /// Decodes one whole message.
    pub fn decode(self, bytes: &[u8], max_frame: usize) -> Result<Frame<'_>, DecodeError> {
        match self {
            Codec::Binary => binary::decode(bytes, max_frame),
            #[cfg(feature = "json")]
            Codec::Json => json::decode(bytes, max_frame),
        }
    }

    /// Encodes one frame, appended to `out`.
    #[cfg(feature = "alloc")]
    pub fn encode_into(
        self,
        frame: &Frame<'_>,
        out: &mut alloc::vec::Vec<u8>,
    ) -> Result<(), EncodeError> {
        match self {
            Codec::Binary => binary::encode_into(frame, out),
            #[cfg(feature = "json")]
            Codec::Json => json::encode_into(frame, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_client_order() {
        assert_eq!(
            Codec::negotiate("chat, eventwire.v1 ,x"),
            Some(Codec::Binary)
        );
        assert_eq!(Codec::negotiate("chat"), None);
        #[cfg(feature = "json")]
        {
            assert_eq!(
                Codec::negotiate("eventwire.v1.json, eventwire.v1"),
                Some(Codec::Json)
            );
            assert!(Codec::Json.is_text());
        }
    }
}
