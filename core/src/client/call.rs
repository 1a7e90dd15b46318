//! An application's call on a client, as an adapter's handle sends it to the loop that owns the
//! [`Connection`] (feature `alloc`), and its answer.
//!
//! Both adapters' handles (an async one and a blocking one) send the same calls over their own
//! channels; what a call does to the connection and what it answers is decided once here, in
//! [`Connection::answer`]. The adapter names its reply channel with a [`Channel`] (a local marker
//! type whose `Sender<T>` is its one-shot sender), so a [`Call`] carries a sender typed for its
//! answer and no answer can be mismatched. Closing is not a call: it needs the sink and `now`,
//! and each adapter answers it only once its loop ended.
//!
//! Invariants: every call is answered exactly once (a sender whose receiver is gone drops the
//! answer); a call changes nothing but what its answer reports.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{ClientError, Connection};
use crate::frame::Position;

/// An adapter's reply channel: how an answer of type `T` goes back to the caller.
pub trait Channel {
    /// The sending half of a one-shot channel of `T`.
    type Sender<T>;

    /// Sends `value`; a caller that stopped waiting is no error.
    fn send<T>(sender: Self::Sender<T>, value: T);
}

/// One application call with the sender of its answer.
pub enum Call<C: Channel> {
    /// Hold `room`, resuming after `from` or from its head; answered with the verdict.
    Subscribe {
        /// The room.
        room: String,
        /// Where to resume, if known.
        from: Option<Position>,
        /// The verdict.
        reply: C::Sender<Result<(), ClientError>>,
    },
    /// Leave `room`; answered with whether it was held.
    Unsubscribe {
        /// The room.
        room: String,
        /// Whether it was held.
        reply: C::Sender<bool>,
    },
    /// Publish; answered with the publish id or why it was refused.
    Publish {
        /// The room.
        room: String,
        /// The event kind.
        kind: String,
        /// The payload bytes.
        payload: Vec<u8>,
        /// The id, or the refusal.
        reply: C::Sender<Result<u64, ClientError>>,
    },
    /// The rooms held and their last delivered positions.
    Positions {
        /// The rooms.
        reply: C::Sender<Vec<(String, Option<Position>)>>,
    },
}

impl<C: Channel> Call<C> {
    /// Hold `room`, resuming after `from` (or from its head when `None`).
    pub fn subscribe(
        room: &str,
        from: Option<Position>,
        reply: C::Sender<Result<(), ClientError>>,
    ) -> Self {
        Call::Subscribe {
            room: room.into(),
            from,
            reply,
        }
    }

    /// Leave `room`.
    pub fn unsubscribe(room: &str, reply: C::Sender<bool>) -> Self {
        Call::Unsubscribe {
            room: room.into(),
            reply,
        }
    }

    /// Publish `payload` (the bytes [`json_payload`](super::handle::json_payload) or
    /// [`raw_payload`](super::handle::raw_payload) made) as `kind` to `room`.
    pub fn publish(
        room: &str,
        kind: &str,
        payload: Vec<u8>,
        reply: C::Sender<Result<u64, ClientError>>,
    ) -> Self {
        Call::Publish {
            room: room.into(),
            kind: kind.into(),
            payload,
            reply,
        }
    }
}

/// What the call is, for logs (without its payload).
impl<C: Channel> fmt::Display for Call<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Subscribe {
                room,
                from: Some(from),
                ..
            } => write!(f, "subscribe {room} after {from}"),
            Call::Subscribe { room, .. } => write!(f, "subscribe {room}"),
            Call::Unsubscribe { room, .. } => write!(f, "unsubscribe {room}"),
            Call::Publish {
                room,
                kind,
                payload,
                ..
            } => write!(f, "publish {kind} to {room} ({} bytes)", payload.len()),
            Call::Positions { .. } => f.write_str("positions"),
        }
    }
}

impl<const ROOMS: usize, const OUTBOX: usize, const OUTBOX_BYTES: usize>
    Connection<ROOMS, OUTBOX, OUTBOX_BYTES>
{
    /// Carries out `call` and sends its answer; returns whether the connection accepted it (a
    /// refused subscribe or publish is `false`), for the adapter's log.
    pub fn answer<C: Channel>(&mut self, call: Call<C>) -> bool {
        match call {
            Call::Subscribe { room, from, reply } => {
                let result = self.subscribe_at(&room, from);
                let ok = result.is_ok();
                C::send(reply, result);
                ok
            }
            Call::Unsubscribe { room, reply } => {
                C::send(reply, self.unsubscribe(&room));
                true
            }
            Call::Publish {
                room,
                kind,
                payload,
                reply,
            } => {
                let result = self.publish(&room, &kind, &payload);
                let ok = result.is_ok();
                C::send(reply, result);
                ok
            }
            Call::Positions { reply } => {
                C::send(reply, self.positions());
                true
            }
        }
    }
}
