//! Typed codes for error and close frames.
//!
//! Codes are open newtypes rather than enums: a peer must accept a code it does not know (a newer
//! server may send one), so unknown values are kept as they are and classified by range.
//! Close codes reuse the WebSocket registry (RFC 6455 section 7.4) so an adapter can send the same
//! number in the WebSocket close frame; eventwire's own close codes live in the private-use range
//! 4000-4999.

use core::fmt;
use serde::{Deserialize, Serialize};

/// Why a connection ends. Sent in a [`Close`](crate::frame::Close) frame and, on WebSocket, as the
/// close code of the connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// The session ended on purpose (user close, or the server no longer wants this client).
    /// Clients do not reconnect.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// The server is shutting down or restarting. Clients reconnect, honouring `retry_after_ms`.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// A frame could not be decoded, or arrived where the protocol does not allow it.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// A message of the wrong type for the negotiated codec (text on binary, or binary on JSON).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// A frame decoded but broke a field rule (see [`crate::text`]).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// The peer broke a policy: a disallowed Origin, or too many frames in one polling request.
    /// Clients do not reconnect.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// A frame or message was larger than the negotiated limit. Nothing was buffered for it.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// The server failed; clients reconnect with backoff.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// The server is at capacity (connection limit). Clients reconnect, honouring
    /// `retry_after_ms`.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// The handshake did not complete in time.
    pub const HANDSHAKE_TIMEOUT: CloseCode = CloseCode(4000);
    /// Authentication failed. Clients do not reconnect: retrying with the same token cannot help.
    pub const UNAUTHORIZED: CloseCode = CloseCode(4001);
    /// No protocol version in common. Clients do not reconnect.
    pub const UNSUPPORTED_VERSION: CloseCode = CloseCode(4002);
    /// The peer stopped answering pings within the dead-link timeout.
    pub const HEARTBEAT_TIMEOUT: CloseCode = CloseCode(4003);
    /// The client kept sending faster than its publish rate after being told to slow down.
    pub const RATE_LIMITED: CloseCode = CloseCode(4004);

    /// Whether a client that receives this code should reconnect (with backoff). Codes this
    /// version does not know are treated as transient.
    pub fn should_reconnect(self) -> bool {
        !matches!(
            self,
            CloseCode::NORMAL
                | CloseCode::POLICY_VIOLATION
                | CloseCode::UNAUTHORIZED
                | CloseCode::UNSUPPORTED_VERSION
        )
    }

    /// A short name for logs; `"unknown"` for codes this version does not know.
    pub fn name(self) -> &'static str {
        match self {
            CloseCode::NORMAL => "normal",
            CloseCode::GOING_AWAY => "going away",
            CloseCode::PROTOCOL_ERROR => "protocol error",
            CloseCode::UNSUPPORTED_DATA => "unsupported data",
            CloseCode::INVALID_DATA => "invalid data",
            CloseCode::POLICY_VIOLATION => "policy violation",
            CloseCode::MESSAGE_TOO_BIG => "message too big",
            CloseCode::INTERNAL_ERROR => "internal error",
            CloseCode::TRY_AGAIN_LATER => "try again later",
            CloseCode::HANDSHAKE_TIMEOUT => "handshake timeout",
            CloseCode::UNAUTHORIZED => "unauthorized",
            CloseCode::UNSUPPORTED_VERSION => "unsupported version",
            CloseCode::HEARTBEAT_TIMEOUT => "heartbeat timeout",
            CloseCode::RATE_LIMITED => "rate limited",
            _ => "unknown",
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// Why a single request failed while the connection stays open. Sent in an
/// [`Error`](crate::frame::ErrorFrame) frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The application refused a join to this room.
    pub const FORBIDDEN_ROOM: ErrorCode = ErrorCode(1);
    /// The connection already holds as many subscriptions as the server allows.
    pub const TOO_MANY_SUBSCRIPTIONS: ErrorCode = ErrorCode(2);
    /// A publish came faster than the connection's publish rate; retry after `retry_after_ms`.
    pub const RATE_LIMITED: ErrorCode = ErrorCode(3);
    /// The application refused a publish. Retrying the same publish will not help.
    pub const PUBLISH_REJECTED: ErrorCode = ErrorCode(4);
    /// A frame kind this peer does not know was received and ignored.
    pub const UNKNOWN_KIND: ErrorCode = ErrorCode(5);
    /// The frame is not valid in this direction or state (for example a second hello).
    pub const UNEXPECTED_FRAME: ErrorCode = ErrorCode(6);
    /// The room does not exist and the connection may not create it: the server creates its
    /// rooms (or grants clients the right to). The join or publish is refused; a client may try
    /// again once the room exists.
    pub const NO_SUCH_ROOM: ErrorCode = ErrorCode(7);

    /// A short name for logs; `"unknown"` for codes this version does not know.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::FORBIDDEN_ROOM => "forbidden room",
            ErrorCode::TOO_MANY_SUBSCRIPTIONS => "too many subscriptions",
            ErrorCode::RATE_LIMITED => "rate limited",
            ErrorCode::PUBLISH_REJECTED => "publish rejected",
            ErrorCode::UNKNOWN_KIND => "unknown frame kind",
            ErrorCode::UNEXPECTED_FRAME => "unexpected frame",
            ErrorCode::NO_SUCH_ROOM => "no such room",
            _ => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn fatal_codes_stop_reconnects() {
        for code in [
            CloseCode::NORMAL,
            CloseCode::POLICY_VIOLATION,
            CloseCode::UNAUTHORIZED,
            CloseCode::UNSUPPORTED_VERSION,
        ] {
            assert!(!code.should_reconnect(), "{code}");
        }
        for code in [
            CloseCode::GOING_AWAY,
            CloseCode::TRY_AGAIN_LATER,
            CloseCode::HEARTBEAT_TIMEOUT,
            CloseCode(4999),
        ] {
            assert!(code.should_reconnect(), "{code}");
        }
    }

    #[test]
    fn unknown_codes_are_kept() {
        assert_eq!(CloseCode(4321).name(), "unknown");
        assert_eq!(ErrorCode(77).to_string(), "77 (unknown)");
    }
}
