//! The client machine's events in owned form, as adapters hand them to applications (feature
//! `alloc`).
//!
//! A [`ClientEvent`] borrows from the frame that carried it; an adapter that queues events for the
//! application owns them first with [`ClientEvent::to_owned_event`]. The connection's lifecycle
//! (connecting, open, reconnecting, closed) becomes one [`Status`], every other event an [`OwnedEvent`]
//! variant of the same name; quality changes stay with the adapter (a snapshot, not a queued
//! event).
//!
//! Invariants: the conversion copies each string and payload once and keeps every field; it drops
//! nothing an application sees but [`ClientEvent::Quality`] and kinds a later core adds.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use super::ClientEvent;
use crate::code::{CloseCode, ErrorCode};
use crate::frame::{Missed, Position};

/// The connection state, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// A connection attempt is under way (first, or after a backoff).
    Connecting,
    /// The session is open.
    Open,
    /// The connection failed or was lost; the next attempt comes after `delay`.
    Reconnecting {
        /// Failed attempts since the last stable session.
        attempt: u32,
        /// Wait before the next attempt.
        delay: Duration,
    },
    /// Stopped for good; the events end after the ones already received.
    Closed {
        /// Why: `NORMAL` for the client's `close` (or dropping the client), the server's fatal
        /// code (for example `UNAUTHORIZED`), or `None` when reconnect attempts ran out.
        code: Option<CloseCode>,
        /// The server's reason, if it sent one.
        reason: String,
    },
}

/// Something the application receives from a client, in the order it happened, with payload
/// bytes of type `P` (`Vec<u8>`, or an adapter's shared buffer type).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OwnedEvent<P = Vec<u8>> {
    /// An event of a subscribed room, in order, at most once.
    Event {
        /// The room.
        room: String,
        /// Its position; the client resumes after the last one delivered.
        position: Position,
        /// Its kind, for example `agent.status_changed`.
        kind: String,
        /// The application's bytes.
        payload: P,
    },
    /// Events of a room were lost, as announced by the server.
    Gap {
        /// The room.
        room: String,
        /// What was missed.
        missed: Missed,
    },
    /// A subscription was accepted; events after `position` follow. Comes again after each
    /// reconnect.
    Subscribed {
        /// The room.
        room: String,
        /// Where delivery continues after.
        position: Position,
    },
    /// A subscription was refused; the room is no longer held.
    SubscribeFailed {
        /// The room.
        room: String,
        /// Why.
        code: ErrorCode,
    },
    /// A publish reached its room, exactly once.
    PublishAcked {
        /// The id the client's `publish` returned.
        id: u64,
        /// Where it landed.
        position: Position,
    },
    /// A publish was refused for good.
    PublishFailed {
        /// The id the client's `publish` returned.
        id: u64,
        /// Why.
        code: ErrorCode,
    },
    /// The server reported an error that concerns no room or publish of this client.
    ServerError {
        /// The code.
        code: ErrorCode,
        /// The server's reason.
        reason: String,
    },
    /// The connection's status changed. Only clients that deliver status changes in order with
    /// the events (the blocking adapter) yield it; the tokio client reports them through a
    /// `watch` instead.
    Status(Status),
}

impl<P> OwnedEvent<P> {
    /// The same event with its payload converted by `f` (for an adapter's buffer type).
    pub fn map_payload<Q>(self, f: impl FnOnce(P) -> Q) -> OwnedEvent<Q> {
        match self {
            OwnedEvent::Event {
                room,
                position,
                kind,
                payload,
            } => OwnedEvent::Event {
                room,
                position,
                kind,
                payload: f(payload),
            },
            OwnedEvent::Gap { room, missed } => OwnedEvent::Gap { room, missed },
            OwnedEvent::Subscribed { room, position } => OwnedEvent::Subscribed { room, position },
            OwnedEvent::SubscribeFailed { room, code } => {
                OwnedEvent::SubscribeFailed { room, code }
            }
            OwnedEvent::PublishAcked { id, position } => OwnedEvent::PublishAcked { id, position },
            OwnedEvent::PublishFailed { id, code } => OwnedEvent::PublishFailed { id, code },
            OwnedEvent::ServerError { code, reason } => OwnedEvent::ServerError { code, reason },
            OwnedEvent::Status(status) => OwnedEvent::Status(status),
        }
    }
}

#[cfg(feature = "json")]
impl<P: AsRef<[u8]>> OwnedEvent<P> {
    /// The payload of an [`OwnedEvent::Event`] deserialised from JSON; `None` for other variants.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        match self {
            OwnedEvent::Event { payload, .. } => Some(serde_json::from_slice(payload.as_ref())),
            _ => None,
        }
    }

    /// The typed dashboard event of an [`OwnedEvent::Event`] (its kind and JSON payload), borrowing
    /// from `self`; `None` for other variants. An unknown kind is
    /// `Some(Err(DashboardError::UnknownKind))`.
    pub fn dashboard(
        &self,
    ) -> Option<Result<crate::dashboard::DashboardEvent<'_>, crate::dashboard::DashboardError>>
    {
        match self {
            OwnedEvent::Event { kind, payload, .. } => Some(
                crate::dashboard::DashboardEvent::decode_json(kind, payload.as_ref()),
            ),
            _ => None,
        }
    }
}

impl ClientEvent<'_> {
    /// This event in owned form: lifecycle events as an [`OwnedEvent::Status`], the others as the
    /// variant of the same name (room, kind, reason and payload copied). `None` for
    /// [`ClientEvent::Quality`] and for kinds a later core adds.
    pub fn to_owned_event(&self) -> Option<OwnedEvent> {
        Some(match *self {
            ClientEvent::Connecting { .. } => OwnedEvent::Status(Status::Connecting),
            ClientEvent::Open { .. } => OwnedEvent::Status(Status::Open),
            ClientEvent::Reconnecting { attempt, delay, .. } => {
                OwnedEvent::Status(Status::Reconnecting { attempt, delay })
            }
            ClientEvent::Closed { code, reason } => OwnedEvent::Status(Status::Closed {
                code,
                reason: reason.to_owned(),
            }),
            ClientEvent::Event {
                room,
                position,
                kind,
                payload,
            } => OwnedEvent::Event {
                room: room.to_owned(),
                position,
                kind: kind.to_owned(),
                payload: payload.to_vec(),
            },
            ClientEvent::Gap { room, missed } => OwnedEvent::Gap {
                room: room.to_owned(),
                missed,
            },
            ClientEvent::Subscribed { room, position } => OwnedEvent::Subscribed {
                room: room.to_owned(),
                position,
            },
            ClientEvent::SubscribeFailed { room, code } => OwnedEvent::SubscribeFailed {
                room: room.to_owned(),
                code,
            },
            ClientEvent::PublishAcked { id, position } => OwnedEvent::PublishAcked { id, position },
            ClientEvent::PublishFailed { id, code } => OwnedEvent::PublishFailed { id, code },
            ClientEvent::ServerError { code, reason } => OwnedEvent::ServerError {
                code,
                reason: reason.to_owned(),
            },
            _ => return None,
        })
    }
}
