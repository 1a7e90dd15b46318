//! The frames eventwire peers exchange, in both directions.
//!
//! A frame is one protocol message. Frames borrow their strings and payloads from the buffer they
//! were decoded from, so receiving one allocates nothing. The binary form is postcard: a varint
//! tag (the frame kind, in the order of [`Frame`]'s variants) followed by the fields in order.
//! The JSON form is an object with one key, the kind's name, holding an object of the fields.
//! `docs/PROTOCOL.md` is the normative description; the golden vectors in `core/tests/vectors/`
//! pin both forms down byte for byte.
//!
//! Invariants kept here: tags never change meaning (a new kind takes a new tag); every frame a
//! decoder returns has passed [`Frame::validate`].

use core::fmt;

use serde::de::{self, Deserializer, EnumAccess, IgnoredAny, VariantAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::code::{CloseCode, ErrorCode};
use crate::error::DecodeError;
use crate::payload::Payload;
pub use crate::seq::Seq;
use crate::text::{check_int, check_name, check_reason, check_token, Invalid};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Most rooms a hello may resume; a client with more subscribes to the rest after the welcome.
pub const MAX_HELLO_ROOMS: usize = 64;

/// Most events one batch may carry on the wire (the server's batcher usually sends fewer: 50 by
/// default, or what the client asked for in its hello).
pub const MAX_BATCH_EVENTS: usize = 1024;

/// Where an event sits in its room's log.
///
/// The `epoch` changes whenever the log's history is lost (for example a server restart without a
/// shared history); offsets are only comparable within one epoch. Offsets start at 1 and grow by
/// one per event appended, so offset 0 means "before the first event".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The log's epoch.
    pub epoch: u32,
    /// The event's offset in that epoch.
    pub offset: u64,
}

impl Position {
    /// A position in `epoch` at `offset`.
    pub const fn new(epoch: u32, offset: u64) -> Self {
        Position { epoch, offset }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.offset)
    }
}

/// Client to server, first frame of every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello<'a> {
    /// Highest protocol version the client speaks.
    pub version: u16,
    /// The client's identity, chosen once and kept across reconnects; with the publish counter it
    /// makes publishes idempotent. At most 2^53 - 1.
    pub client_id: u64,
    /// Authentication token handed to the server application, if any.
    #[serde(borrow)]
    pub token: Option<&'a str>,
    /// Largest frame the client accepts, in bytes.
    pub max_frame: u32,
    /// Most events the client wants in one batch.
    pub max_batch: u16,
    /// Rooms to join at once, each from the position the client already has.
    #[serde(borrow)]
    pub rooms: Seq<'a, Resume<'a>>,
}

/// A room to join and where to resume it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume<'a> {
    /// The room.
    pub room: &'a str,
    /// The last position the client has; `None` joins at the live head.
    pub from: Option<Position>,
}

/// Server to client, the reply to an accepted hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The protocol version both sides now speak.
    pub version: u16,
    /// Identifies this connection in the server's logs. At most 2^53 - 1.
    pub session_id: u64,
    /// How often each side should ping when it has heard nothing, in milliseconds.
    pub heartbeat_ms: u32,
    /// Largest frame the server accepts, in bytes.
    pub max_frame: u32,
    /// Most rooms this connection may join.
    pub max_subscriptions: u16,
    /// Most publishes per second this connection may send.
    pub publish_rate: u16,
}

/// Client to server: join a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe<'a> {
    /// The room.
    pub room: &'a str,
    /// The last position the client has; `None` joins at the live head.
    pub from: Option<Position>,
}

/// Server to client: a join was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed<'a> {
    /// The room.
    pub room: &'a str,
    /// The position delivery continues after: the client's own position when it is still in the
    /// history (the replay follows), otherwise the live head (after a gap notice).
    pub position: Position,
}

/// Client to server: leave a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsubscribe<'a> {
    /// The room.
    pub room: &'a str,
}

/// Server to client: one event of a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event<'a> {
    /// The room.
    pub room: &'a str,
    /// Where the event sits in the room's log.
    pub position: Position,
    /// What the event is, for example `agent.status`.
    pub kind: &'a str,
    /// The application's bytes.
    #[serde(borrow)]
    pub payload: Payload<'a>,
}

/// Server to client: consecutive events of one room, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch<'a> {
    /// The room.
    pub room: &'a str,
    /// The epoch of every event in the batch.
    pub epoch: u32,
    /// The events, offsets strictly increasing. Offsets may skip where events were superseded by
    /// a newer one with the same coalescing key.
    #[serde(borrow)]
    pub events: Seq<'a, BatchEvent<'a>>,
}

/// One event inside a [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEvent<'a> {
    /// The event's offset in the batch's epoch.
    pub offset: u64,
    /// What the event is.
    pub kind: &'a str,
    /// The application's bytes.
    #[serde(borrow)]
    pub payload: Payload<'a>,
}

/// Client to server: an upstream event for a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish<'a> {
    /// The room.
    pub room: &'a str,
    /// Counter of this client's publishes; with the hello's `client_id` it identifies the publish
    /// across reconnects, so a retry is applied once. At most 2^53 - 1.
    pub id: u64,
    /// What the event is.
    pub kind: &'a str,
    /// The application's bytes.
    #[serde(borrow)]
    pub payload: Payload<'a>,
}

/// Server to client: a publish was applied (or had been applied before: the ack is repeated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAck {
    /// The publish's id.
    pub id: u64,
    /// Where the publish landed in its room.
    pub position: Position,
}

/// Either direction: a liveness probe; the peer answers with a [`Frame::Pong`] with the same nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Matches the pong to its ping. At most 2^53 - 1.
    pub nonce: u64,
}

/// Server to client: events of a room will not be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap<'a> {
    /// The room.
    pub room: &'a str,
    /// What was missed.
    pub missed: Missed,
}

/// The events a [`Gap`] announces as lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Offsets `first..=last` of `epoch` fell out of the history before they could be sent.
    Range {
        /// The epoch.
        epoch: u32,
        /// First missed offset.
        first: u64,
        /// Last missed offset.
        last: u64,
    },
    /// The room's history was reset (new epoch): positions the client held are void, and
    /// delivery continues after `position`.
    Reset {
        /// The new resume point.
        position: Position,
    },
}

/// Server to client: one request failed; the connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame<'a> {
    /// What went wrong.
    pub code: ErrorCode,
    /// The publish this refers to, if any.
    pub id: Option<u64>,
    /// The room this refers to, if any.
    pub room: Option<&'a str>,
    /// When to try again, in milliseconds, if trying again can help.
    pub retry_after_ms: Option<u32>,
    /// Human-readable detail.
    pub reason: &'a str,
}

/// Either direction: the sender is ending the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Close<'a> {
    /// Why.
    pub code: CloseCode,
    /// How long to wait before reconnecting, in milliseconds.
    pub retry_after_ms: Option<u32>,
    /// Human-readable detail.
    pub reason: &'a str,
}

/// One protocol message. The variant order is the binary tag and must never change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Frame<'a> {
    /// Tag 0, client to server: open a session.
    Hello(Hello<'a>),
    /// Tag 1, server to client: the session is open.
    Welcome(Welcome),
    /// Tag 2, client to server: join a room.
    Subscribe(Subscribe<'a>),
    /// Tag 3, server to client: a join was accepted.
    Subscribed(Subscribed<'a>),
    /// Tag 4, client to server: leave a room.
    Unsubscribe(Unsubscribe<'a>),
    /// Tag 5, server to client: one event.
    Event(Event<'a>),
    /// Tag 6, server to client: several events of one room.
    Batch(Batch<'a>),
    /// Tag 7, client to server: an upstream event.
    Publish(Publish<'a>),
    /// Tag 8, server to client: a publish was applied.
    PublishAck(PublishAck),
    /// Tag 9, either direction: liveness probe.
    Ping(Ping),
    /// Tag 10, either direction: answer to a ping.
    Pong(Ping),
    /// Tag 11, server to client: announced loss.
    Gap(Gap<'a>),
    /// Tag 12, server to client: a request failed.
    Error(ErrorFrame<'a>),
    /// Tag 13, either direction: the connection ends.
    Close(Close<'a>),
}

/// Kind names in tag order; the JSON form uses them as the object's key.
pub(crate) const KIND_NAMES: [&str; 14] = [
    "hello",
    "welcome",
    "subscribe",
    "subscribed",
    "unsubscribe",
    "event",
    "batch",
    "publish",
    "publish_ack",
    "ping",
    "pong",
    "gap",
    "error",
    "close",
];

/// Which peer may send a frame kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Only clients send it.
    ToServer,
    /// Only servers send it.
    ToClient,
    /// Both may send it.
    Both,
}

impl Frame<'_> {
    /// The binary tag of this frame's kind.
    pub fn tag(&self) -> u32 {
        match self {
            Frame::Hello(_) => 0,
            Frame::Welcome(_) => 1,
            Frame::Subscribe(_) => 2,
            Frame::Subscribed(_) => 3,
            Frame::Unsubscribe(_) => 4,
            Frame::Event(_) => 5,
            Frame::Batch(_) => 6,
            Frame::Publish(_) => 7,
            Frame::PublishAck(_) => 8,
            Frame::Ping(_) => 9,
            Frame::Pong(_) => 10,
            Frame::Gap(_) => 11,
            Frame::Error(_) => 12,
            Frame::Close(_) => 13,
        }
    }

    /// The kind's name, as used in the JSON form.
    pub fn kind_name(&self) -> &'static str {
        KIND_NAMES[self.tag() as usize]
    }

    /// Which peer may send this frame.
    pub fn direction(&self) -> Direction {
        match self {
            Frame::Hello(_) | Frame::Subscribe(_) | Frame::Unsubscribe(_) | Frame::Publish(_) => {
                Direction::ToServer
            }
            Frame::Ping(_) | Frame::Pong(_) | Frame::Close(_) => Direction::Both,
            _ => Direction::ToClient,
        }
    }

    /// Checks every field rule of [`crate::text`] and the structural rules (batch offsets strictly
    /// increasing, list lengths, gap ranges). Decoders call this; encoders too, so a peer never
    /// sends what the other side would reject.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let inv = |i: Invalid| DecodeError::Invalid(i);
        match self {
            Frame::Hello(h) => {
                check_int(h.client_id, "client_id").map_err(inv)?;
                if let Some(token) = h.token {
                    check_token(token).map_err(inv)?;
                }
                let n = h
                    .rooms
                    .check(DecodeError::Malformed("hello room list"), |r| {
                        check_name(r.room, "room").map_err(inv)?;
                        check_position(r.from)
                    })?;
                if n > MAX_HELLO_ROOMS {
                    return Err(inv(Invalid::TooMany {
                        field: "rooms",
                        max: MAX_HELLO_ROOMS,
                    }));
                }
            }
            Frame::Welcome(w) => check_int(w.session_id, "session_id").map_err(inv)?,
            Frame::Subscribe(s) => {
                check_name(s.room, "room").map_err(inv)?;
                check_position(s.from)?;
            }
            Frame::Subscribed(s) => {
                check_name(s.room, "room").map_err(inv)?;
                check_position(Some(s.position))?;
            }
            Frame::Unsubscribe(u) => check_name(u.room, "room").map_err(inv)?,
            Frame::Event(e) => {
                check_name(e.room, "room").map_err(inv)?;
                check_position(Some(e.position))?;
                check_name(e.kind, "kind").map_err(inv)?;
            }
            Frame::Batch(b) => {
                check_name(b.room, "room").map_err(inv)?;
                let mut last = None;
                let n = b
                    .events
                    .check(DecodeError::Malformed("batch event list"), |e| {
                        check_int(e.offset, "offset").map_err(inv)?;
                        check_name(e.kind, "kind").map_err(inv)?;
                        if last.is_some_and(|l| e.offset <= l) {
                            return Err(DecodeError::Malformed("batch offsets not increasing"));
                        }
                        last = Some(e.offset);
                        Ok(())
                    })?;
                if n > MAX_BATCH_EVENTS {
                    return Err(inv(Invalid::TooMany {
                        field: "events",
                        max: MAX_BATCH_EVENTS,
                    }));
                }
            }
            Frame::Publish(p) => {
                check_name(p.room, "room").map_err(inv)?;
                check_int(p.id, "id").map_err(inv)?;
                check_name(p.kind, "kind").map_err(inv)?;
            }
            Frame::PublishAck(a) => {
                check_int(a.id, "id").map_err(inv)?;
                check_position(Some(a.position))?;
            }
            Frame::Ping(p) | Frame::Pong(p) => check_int(p.nonce, "nonce").map_err(inv)?,
            Frame::Gap(g) => {
                check_name(g.room, "room").map_err(inv)?;
                match g.missed {
                    Missed::Range { first, last, .. } => {
                        check_int(last, "last").map_err(inv)?;
                        if first > last {
                            return Err(inv(Invalid::EmptyRange));
                        }
                    }
                    Missed::Reset { position } => check_position(Some(position))?,
                }
            }
            Frame::Error(e) => {
                if let Some(id) = e.id {
                    check_int(id, "id").map_err(inv)?;
                }
                if let Some(room) = e.room {
                    check_name(room, "room").map_err(inv)?;
                }
                check_reason(e.reason).map_err(inv)?;
            }
            Frame::Close(c) => check_reason(c.reason).map_err(inv)?,
        }
        Ok(())
    }
}

fn check_position(p: Option<Position>) -> Result<(), DecodeError> {
    match p {
        Some(p) => check_int(p.offset, "offset").map_err(DecodeError::Invalid),
        None => Ok(()),
    }
}

/// What a decoder read: a frame, or a kind this version does not know (which the protocol says to
/// ignore rather than treat as an error, so newer peers can add kinds).
pub(crate) enum Inbound<'a> {
    Frame(Frame<'a>),
    Unknown(Option<u32>),
}

enum Tag {
    Known(u32),
    Unknown(Option<u32>),
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TagVisitor;
        impl Visitor<'_> for TagVisitor {
            type Value = Tag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a frame kind")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tag, E> {
                Ok(match u32::try_from(v) {
                    Ok(t) if (t as usize) < KIND_NAMES.len() => Tag::Known(t),
                    Ok(t) => Tag::Unknown(Some(t)),
                    Err(_) => Tag::Unknown(None),
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tag, E> {
                Ok(match KIND_NAMES.iter().position(|n| *n == v) {
                    Some(t) => Tag::Known(t as u32),
                    None => Tag::Unknown(None),
                })
            }
        }
        d.deserialize_identifier(TagVisitor)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Inbound<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InboundVisitor<'a> {
            // A self-describing form (JSON) lets an unknown kind's body be skipped; postcard does
            // not, and needs no skipping since what follows a frame is ignored.
            self_describing: bool,
            _a: core::marker::PhantomData<&'a ()>,
        }
        impl<'de: 'a, 'a> Visitor<'de> for InboundVisitor<'a> {
            type Value = Inbound<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an eventwire frame")
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Inbound<'a>, A::Error> {
                let (tag, v) = data.variant::<Tag>()?;
                let frame = match tag {
                    Tag::Unknown(t) => {
                        if self.self_describing {
                            v.newtype_variant::<IgnoredAny>()?;
                        }
                        return Ok(Inbound::Unknown(t));
                    }
                    Tag::Known(0) => Frame::Hello(v.newtype_variant()?),
                    Tag::Known(1) => Frame::Welcome(v.newtype_variant()?),
                    Tag::Known(2) => Frame::Subscribe(v.newtype_variant()?),
                    Tag::Known(3) => Frame::Subscribed(v.newtype_variant()?),
                    Tag::Known(4) => Frame::Unsubscribe(v.newtype_variant()?),
                    Tag::Known(5) => Frame::Event(v.newtype_variant()?),
                    Tag::Known(6) => Frame::Batch(v.newtype_variant()?),
                    Tag::Known(7) => Frame::Publish(v.newtype_variant()?),
                    Tag::Known(8) => Frame::PublishAck(v.newtype_variant()?),
                    Tag::Known(9) => Frame::Ping(v.newtype_variant()?),
                    Tag::Known(10) => Frame::Pong(v.newtype_variant()?),
                    Tag::Known(11) => Frame::Gap(v.newtype_variant()?),
                    Tag::Known(12) => Frame::Error(v.newtype_variant()?),
                    Tag::Known(_) => Frame::Close(v.newtype_variant()?),
                };
                Ok(Inbound::Frame(frame))
            }
        }
        let self_describing = d.is_human_readable();
        d.deserialize_enum(
            "Frame",
            &KIND_NAMES,
            InboundVisitor {
                self_describing,
                _a: core::marker::PhantomData,
            },
        )
    }
}
