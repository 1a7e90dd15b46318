//! How a client adapter reports the machine's events in its log: the level of each, and its
//! text. Decided here so that every adapter's log reads the same; the adapter only hands the
//! text to its logger.
//!
//! Invariants: lifecycle events are `Info`, except a close for good that is not the
//! application's own (`Warn`); losses and refusals (gaps, refused joins and publishes, server
//! errors) are `Warn`; quality changes are `Debug`; what the application receives anyway (room
//! events, joins, acks) is not logged.

use core::fmt;

use super::ClientEvent;
use crate::code::CloseCode;

/// The level at which an adapter logs a [`ClientEvent`]; see [`ClientEvent::log_level`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Level {
    /// Detail: link quality changes.
    Debug,
    /// The connection's lifecycle.
    Info,
    /// Something was lost or refused.
    Warn,
}

impl ClientEvent<'_> {
    /// The level at which to log this event; `None` for what only the application needs.
    pub fn log_level(&self) -> Option<Level> {
        match self {
            ClientEvent::Connecting { .. }
            | ClientEvent::Open { .. }
            | ClientEvent::Reconnecting { .. } => Some(Level::Info),
            ClientEvent::Closed {
                code: Some(CloseCode::NORMAL),
                ..
            } => Some(Level::Info),
            ClientEvent::Closed { .. }
            | ClientEvent::Gap { .. }
            | ClientEvent::SubscribeFailed { .. }
            | ClientEvent::PublishFailed { .. }
            | ClientEvent::ServerError { .. } => Some(Level::Warn),
            ClientEvent::Quality(_) => Some(Level::Debug),
            ClientEvent::Event { .. }
            | ClientEvent::Subscribed { .. }
            | ClientEvent::PublishAcked { .. } => None,
        }
    }
}

/// The log text of an event: what happened, then its fields.
impl fmt::Display for ClientEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientEvent::Connecting { attempt } => write!(f, "connecting (attempt {attempt})"),
            ClientEvent::Open { session_id } => write!(f, "session {session_id} open"),
            ClientEvent::Reconnecting {
                attempt,
                delay,
                code,
            } => {
                write!(f, "reconnecting in {delay:?} (attempt {attempt}")?;
                if let Some(code) = code {
                    write!(f, ", code {code}")?;
                }
                f.write_str(")")
            }
            ClientEvent::Closed {
                code: Some(CloseCode::NORMAL),
                reason,
            } => write!(f, "closed: {reason:?}"),
            ClientEvent::Closed {
                code: Some(code),
                reason,
            } => write!(f, "closed for good: {code} {reason:?}"),
            ClientEvent::Closed { code: None, .. } => {
                f.write_str("closed for good: reconnect attempts exhausted")
            }
            ClientEvent::Event {
                room,
                position,
                kind,
                payload,
            } => write!(
                f,
                "event {kind} at {room} {position} ({} bytes)",
                payload.len()
            ),
            ClientEvent::Gap { room, missed } => write!(f, "gap in {room}: {missed:?}"),
            ClientEvent::Subscribed { room, position } => {
                write!(f, "subscribed to {room} after {position}")
            }
            ClientEvent::SubscribeFailed { room, code } => {
                write!(f, "subscription to {room} refused: {code}")
            }
            ClientEvent::PublishAcked { id, position } => {
                write!(f, "publish {id} acknowledged at {position}")
            }
            ClientEvent::PublishFailed { id, code } => write!(f, "publish {id} refused: {code}"),
            ClientEvent::Quality(quality) => write!(f, "link quality {quality}"),
            ClientEvent::ServerError { code, reason } => {
                write!(f, "server error {code}: {reason:?}")
            }
        }
    }
}
