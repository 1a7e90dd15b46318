//! Errors of encoding and decoding frames.

use core::fmt;

use crate::code::CloseCode;
use crate::text::Invalid;

/// Why bytes did not decode into a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message was empty.
    Empty,
    /// The message is larger than the limit; it was rejected before any parsing and nothing was
    /// buffered or allocated for it. For a byte stream, `size` is a lower bound.
    TooLarge {
        /// Size of the message in bytes (at least this much, for a stream).
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A frame kind this version does not know. Peers ignore such frames (see the versioning
    /// rules in `docs/PROTOCOL.md`); `tag` is the binary tag, `None` in the JSON form.
    UnknownKind {
        /// The binary tag, when it fits a `u32`.
        tag: Option<u32>,
    },
    /// The message ended in the middle of a frame.
    Truncated,
    /// The bytes do not follow the frame grammar; the text says where.
    Malformed(&'static str),
    /// The frame parsed but a field breaks its rule.
    Invalid(Invalid),
}

impl DecodeError {
    /// The close code a peer sends when it receives this, or `None` when the frame is to be
    /// ignored and the connection kept (an unknown kind).
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            DecodeError::UnknownKind { .. } => None,
            DecodeError::TooLarge { .. } => Some(CloseCode::MESSAGE_TOO_BIG),
            DecodeError::Invalid(_) => Some(CloseCode::INVALID_DATA),
            DecodeError::Empty | DecodeError::Truncated | DecodeError::Malformed(_) => {
                Some(CloseCode::PROTOCOL_ERROR)
            }
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty message"),
            DecodeError::TooLarge { size, limit } => {
                write!(f, "message of {size} bytes exceeds the limit of {limit}")
            }
            DecodeError::UnknownKind { tag: Some(t) } => write!(f, "unknown frame kind {t}"),
            DecodeError::UnknownKind { tag: None } => f.write_str("unknown frame kind"),
            DecodeError::Truncated => f.write_str("message ends inside a frame"),
            DecodeError::Malformed(what) => write!(f, "malformed frame: {what}"),
            DecodeError::Invalid(i) => write!(f, "invalid frame: {i}"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The output buffer is too small; `needed` is the size the frame takes.
    BufferTooSmall {
        /// Bytes the encoded frame needs.
        needed: usize,
    },
    /// A field breaks its rule; a peer would reject the frame.
    Invalid(Invalid),
    /// A pre-encoded list inside the frame does not parse.
    Malformed(&'static str),
    /// The JSON form was asked for, but a payload is not JSON text.
    PayloadNotJson,
}

impl From<DecodeError> for EncodeError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Invalid(i) => EncodeError::Invalid(i),
            DecodeError::Malformed(m) => EncodeError::Malformed(m),
            _ => EncodeError::Malformed("frame"),
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: the frame needs {needed} bytes")
            }
            EncodeError::Invalid(i) => write!(f, "cannot encode an invalid frame: {i}"),
            EncodeError::Malformed(m) => write!(f, "cannot encode a malformed {m}"),
            EncodeError::PayloadNotJson => {
                f.write_str("the JSON form needs payloads that are JSON text")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// What a transport (a WebSocket library, say) refused on its own, before any frame was decoded.
/// Client and server connections close with the same code for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// A message over the transport's size limit (closes with `MESSAGE_TOO_BIG`).
    TooBig,
    /// A broken transport rule, such as a malformed WebSocket frame (closes with
    /// `PROTOCOL_ERROR`).
    Protocol,
}

impl TransportError {
    /// The code the connection closes with.
    pub fn close_code(self) -> CloseCode {
        match self {
            TransportError::TooBig => CloseCode::MESSAGE_TOO_BIG,
            TransportError::Protocol => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::TooBig => f.write_str("message over the transport's size limit"),
            TransportError::Protocol => f.write_str("transport protocol violation"),
        }
    }
}

impl core::error::Error for TransportError {}
