//! The `client_machine` target: `eventwire_core::client::Connection`, the byte-level client
//! connection both adapters drive, fed an arbitrary sequence of operations and checked against
//! the guarantees its docs and `docs/PROTOCOL.md` state after every step.
//!
//! An operation is an application call (subscribe, unsubscribe, publish, connect, close), a
//! transport event (opened, closed, closed by the server with a code, a transport error), time
//! passing, or a WebSocket message from the server: either raw bytes of either message type, or
//! a well-formed frame built from arbitrary fields relative to the client's state (offsets just
//! after, at or before its position, the epoch it holds or another, the ids it has in flight)
//! and encoded in the connection's form, or in the binary or JSON form whatever the
//! connection's. The server is arbitrary, not honest: the checks are what the client keeps
//! whatever it is sent.
//!
//! After every input the harness drains `poll_transmit` (decoding every message it appends) and
//! `poll_action` (the driving contract) and, like an adapter, calls `handle_timeout` while
//! `poll_timeout` is not in the future.
//!
//! # Invariants checked
//! - Delivery (per room, from what the sink saw): events only of rooms the application holds;
//!   within an epoch, offsets strictly increase (each event at most once, in order); an event of
//!   another epoch than the last delivered only after a reset gap (or the first join) announced
//!   it. Range gaps and join answers never license a replay of what was delivered.
//! - Rooms: `rooms()` is exactly the set the application holds (subscribed, not left, not
//!   refused); `unsubscribe` says whether it was held; at most `ROOMS`.
//! - Outbox: ids strictly increase; each publish is answered (acked or failed) at most once and
//!   only if made; `outbox_len()` is the number awaiting an answer; at most `OUTBOX` publishes and
//!   `OUTBOX_BYTES` bytes; a refusal as full is justified; every publish sent is one awaiting an
//!   answer, with its bytes unchanged, inside the window of `publish_window` ids.
//! - Frames sent validate, go client to server, survive both codecs; a hello only while
//!   handshaking, lists at most 64 rooms, all held; subscribes only of held rooms.
//! - State: each state event matches the state after the input; `session()` only when open; a
//!   `Connect` action only when connecting; a deadline exactly in the states that wait for one,
//!   and handling it at the same instant settles in a few rounds (no busy loop).
//! - Stats: events, gaps and sessions count exactly what the sink saw.
//! - Bytes: every message appended is one message of the connection's type that decodes in its
//!   form; the counts add up (bytes in are the bytes fed while reading, bytes out the bytes
//!   appended). A message of the other type closes the transport with `UNSUPPORTED_DATA`, a
//!   transport error with `MESSAGE_TOO_BIG` or `PROTOCOL_ERROR`, the server's close with its
//!   code echoed when sendable (`NORMAL` without one, `PROTOCOL_ERROR` otherwise): one
//!   `Disconnect` action with that code, and nothing of that transport is read after it.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use eventwire_core::client::{
    Action, ClientConfig, ClientError, ClientEvent, ConnState, Connection, Counts,
};
use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_core::codec::{binary, json, Codec};
use eventwire_core::error::TransportError;
use eventwire_core::frame::Seq;
use eventwire_core::frame::{
    Batch, BatchEvent, Close, ErrorFrame, Event, Frame, Gap, Missed, Ping, Position, PublishAck,
    Subscribed, Welcome,
};
use eventwire_core::outbox::OutboxError;
use eventwire_core::payload::Payload;
use eventwire_core::text::MAX_SAFE_INTEGER;
use eventwire_core::time::Instant;

use super::ops::{self, variant, Advance, Bytes, Encode, Via};

/// Room capacity of the client under test: small, so that `TooManyRooms` happens.
pub const ROOMS: usize = 4;
/// Outbox capacity in publishes: small, so that `Full` happens.
pub const OUTBOX: usize = 8;
/// Outbox capacity in bytes.
pub const OUTBOX_BYTES: usize = 256;

/// Largest message the connection accepts.
const MAX_MESSAGE: usize = 65_536;

type Conn = Connection<ROOMS, OUTBOX, OUTBOX_BYTES>;

/// The client's configuration, read first.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Setup {
    /// Seed of the machine's jitter and nonces.
    pub seed: u64,
    /// `publish_window`, 1 to 8 (taken modulo 8, plus 1).
    pub window: u8,
    /// `max_batch` asked of the server.
    pub max_batch: u8,
    /// `dead_after`, 1 to 4.
    pub dead_after: u8,
    /// `connect_timeout` in milliseconds, at least 1.
    pub connect_timeout_ms: u16,
    /// `max_attempts` of the backoff, 0 to 3, if any.
    pub max_attempts: Option<u8>,
    /// Whether the hello carries a token.
    pub token: bool,
    /// Whether the connection speaks the JSON form (text messages) rather than binary.
    pub json: bool,
}

impl Encode for Setup {
    fn encode(&self, out: &mut Vec<u8>) {
        self.seed.encode(out);
        self.window.encode(out);
        self.max_batch.encode(out);
        self.dead_after.encode(out);
        self.connect_timeout_ms.encode(out);
        self.max_attempts.encode(out);
        self.token.encode(out);
        self.json.encode(out);
    }
}

/// An epoch relative to what the client holds in the frame's room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum EpochSel {
    /// The epoch of the room's position (1 without one).
    Current,
    /// That plus one.
    Next,
    /// Any.
    Other(u32),
}

/// An offset relative to what the client holds in the frame's room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum OffsetSel {
    /// The room's offset (0 without a position) plus this.
    After(u8),
    /// The room's offset minus this (at least 0).
    Before(u8),
    /// Any (masked to 2^53 - 1, which a frame may carry).
    Abs(u64),
}

/// A position relative to what the client holds in the frame's room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub struct PosSel {
    /// The epoch.
    pub epoch: EpochSel,
    /// The offset.
    pub offset: OffsetSel,
}

/// A publish id relative to the client's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum IdSel {
    /// One of the ids awaiting an answer (by index, modulo their number; 1 if none).
    Outstanding(u8),
    /// Any small id.
    Abs(u16),
}

/// A well-formed frame from the server, built relative to the client's state.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum ServerFrame {
    /// A welcome; `version` 0 to 2 (0 and 2 are refused), any heartbeat.
    Welcome { version: u8, heartbeat_ms: u32 },
    /// A join answer.
    Subscribed { room: u8, position: PosSel },
    /// A batch of `1 + count % 8` events: from `start`, each next offset one further, or two
    /// where `skips` has a bit set (a superseded event stepped over).
    Batch {
        room: u8,
        epoch: EpochSel,
        start: OffsetSel,
        count: u8,
        skips: u8,
        payload: u8,
    },
    /// A single event.
    Event {
        room: u8,
        position: PosSel,
        payload: u8,
    },
    /// A range gap of `first..=first + len`.
    GapRange {
        room: u8,
        epoch: EpochSel,
        first: OffsetSel,
        len: u8,
    },
    /// A reset gap.
    GapReset { room: u8, position: PosSel },
    /// A publish acknowledgement.
    PublishAck { id: IdSel, position: PosSel },
    /// An error, with code `code % 8` (0 is not a code; 7 is unknown to this version).
    Error {
        code: u8,
        id: Option<IdSel>,
        room: Option<u8>,
        retry_after_ms: Option<u16>,
    },
    /// A ping.
    Ping { nonce: u32 },
    /// A pong: with the nonce of the last ping the client sent, or any.
    Pong { echo: bool, nonce: u32 },
    /// A close, with a code from a table of known and unknown ones.
    Close {
        code: u8,
        retry_after_ms: Option<u16>,
    },
}

/// One step of the scenario.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum Op {
    /// `connect`.
    Connect,
    /// The transport opened (`handle_connected`).
    Connected,
    /// The transport closed or failed (`handle_disconnected`).
    Disconnected,
    /// `close`.
    Close,
    /// Time passes, then `handle_timeout`.
    Advance(Advance),
    /// `subscribe`, or `subscribe_from` with a position.
    Subscribe { room: u8, from: Option<(u8, u16)> },
    /// `unsubscribe`.
    Unsubscribe { room: u8 },
    /// `publish` of `len` bytes of JSON digits (none when 0).
    Publish { room: u8, kind: u8, len: u8 },
    /// A frame from the server built from fields, as a message: `Direct` in the connection's
    /// form, `Binary` and `Json` in that form (and message type) whatever the connection's.
    Server { frame: ServerFrame, via: Via },
    /// A message from the server as raw bytes, a text message when `json`, binary otherwise.
    Raw { json: bool, bytes: Bytes },
    /// The server closed the WebSocket with this code (from a table of codes that may and may
    /// not be sent), or without one.
    PeerClose { code: Option<u8> },
    /// The transport refused what the server sent: a message over its limit, or a broken
    /// WebSocket rule.
    TransportError { too_big: bool },
}

/// Close codes a server may put in its WebSocket close, sendable and not (RFC 6455 7.4).
const PEER_CODES: [u16; 8] = [1000, 1001, 1005, 1006, 1011, 1015, 2999, 4001];

/// The input of the `client_machine` target.
pub type Input = ops::Scenario<Setup, Op>;

/// Runs one raw input of the `client_machine` target; returns the number of events delivered to the application (so the
/// stable replay can check that the seeds reach that far).
pub fn run(data: &[u8]) -> u64 {
    let (setup, ops) = ops::ops::<Setup, Op>(data);
    run_scenario(&ops::Scenario { setup, ops })
}

/// Runs one scenario of the `client_machine` target; returns the number of events delivered to the application.
pub fn run_scenario(input: &Input) -> u64 {
    let mut h = Harness::new(&input.setup);
    for op in &input.ops {
        h.step(op);
    }
    h.events
}

/// A sink event, owned, in the order the sink saw it.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Connecting,
    Open,
    Reconnecting,
    Closed,
    Event { room: String, position: Position },
    Gap { room: String, missed: Missed },
    Subscribed { room: String, position: Position },
    SubscribeFailed { room: String },
    Acked { id: u64 },
    Failed { id: u64 },
    Other,
}

fn seen(e: &ClientEvent<'_>) -> Seen {
    match *e {
        ClientEvent::Connecting { .. } => Seen::Connecting,
        ClientEvent::Open { .. } => Seen::Open,
        ClientEvent::Reconnecting { .. } => Seen::Reconnecting,
        ClientEvent::Closed { .. } => Seen::Closed,
        ClientEvent::Event { room, position, .. } => Seen::Event {
            room: room.to_string(),
            position,
        },
        ClientEvent::Gap { room, missed } => Seen::Gap {
            room: room.to_string(),
            missed,
        },
        ClientEvent::Subscribed { room, position } => Seen::Subscribed {
            room: room.to_string(),
            position,
        },
        ClientEvent::SubscribeFailed { room, .. } => Seen::SubscribeFailed {
            room: room.to_string(),
        },
        ClientEvent::PublishAcked { id, .. } => Seen::Acked { id },
        ClientEvent::PublishFailed { id, .. } => Seen::Failed { id },
        _ => Seen::Other,
    }
}

/// What the application knows of one room it holds.
#[derive(Debug, Default)]
struct RoomModel {
    /// The floor of delivery: the last position delivered, or announced by a join answer or a
    /// gap as where delivery continues. Within its epoch, nothing at or before it may come.
    /// `None` before anything bounds it (joined at the head, not answered yet).
    floor: Option<Position>,
    /// Whether the floor is known. It is not after a subscribe that left the client's own
    /// position elsewhere than the application asked (a `subscribe_from` of a room already
    /// joined, which keeps the position delivered; joining again a room being left, which keeps
    /// its position): then only an event or a reset tells where delivery stands.
    known: bool,
}
struct Harness {
    client: Conn,
    codec: Codec,
    /// The message `poll_transmit` appends to.
    buf: Vec<u8>,
    /// What the counts must add up to since the start.
    counted: Counts,
    /// Bytes fed while the connection was reading.
    fed: u64,
    /// Bytes appended by `poll_transmit`.
    appended: u64,
    /// The close this connection owes the adapter after the last input, if it decided one.
    expect_close: Option<CloseCode>,
    now: Instant,
    window: u64,
    /// Rooms the application holds.
    rooms: BTreeMap<String, RoomModel>,
    /// Publishes awaiting an answer: id -> (room, kind, payload).
    outstanding: BTreeMap<u64, (String, String, Vec<u8>)>,
    last_id: u64,
    last_ping: Option<u64>,
    events: u64,
    gaps: u64,
    sessions: u64,
}

impl Harness {
    fn new(setup: &Setup) -> Self {
        let backoff = eventwire_core::backoff::BackoffPolicy::new()
            .max_attempts(setup.max_attempts.map(|a| u32::from(a % 4)));
        let mut config = ClientConfig::new(setup.seed)
            .publish_window(u16::from(setup.window % 8) + 1)
            .max_batch(u16::from(setup.max_batch))
            .dead_after(u32::from(setup.dead_after % 4) + 1)
            .connect_timeout(std::time::Duration::from_millis(
                u64::from(setup.connect_timeout_ms).max(1),
            ))
            .backoff(backoff);
        if setup.token {
            config = match config.token("eyJhbGciOiJIUzI1NiJ9.e30.sig-_") {
                Ok(c) => c,
                Err(e) => panic!("a valid token is refused: {e:?}"),
            };
        }
        let window = u64::from(config.publish_window);
        let codec = if setup.json {
            Codec::Json
        } else {
            Codec::Binary
        };
        Harness {
            client: Conn::new(config, codec, MAX_MESSAGE, setup.seed),
            codec,
            buf: Vec::new(),
            counted: Counts::default(),
            fed: 0,
            appended: 0,
            expect_close: None,
            now: Instant::ZERO,
            window,
            rooms: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            last_id: 0,
            last_ping: None,
            events: 0,
            gaps: 0,
            sessions: 0,
        }
    }

    fn step(&mut self, op: &Op) {
        let now = self.now;
        let mut seen_events = Vec::new();
        match op {
            Op::Connect => self
                .client
                .connect(now, &mut |e| seen_events.push(seen(&e))),
            Op::Connected => self
                .client
                .handle_connected(now, &mut |e| seen_events.push(seen(&e))),
            Op::Disconnected => self
                .client
                .handle_disconnected(now, &mut |e| seen_events.push(seen(&e))),
            Op::Close => self.client.close(now, &mut |e| seen_events.push(seen(&e))),
            Op::Advance(by) => {
                self.now = by.apply(now, self.client.poll_timeout());
                let now = self.now;
                self.client
                    .handle_timeout(now, &mut |e| seen_events.push(seen(&e)));
            }
            Op::Subscribe { room, from } => self.subscribe(ops::room(*room), *from),
            Op::Unsubscribe { room } => {
                let room = ops::room(*room);
                let held = self.client.unsubscribe(room);
                assert_eq!(
                    held,
                    self.rooms.remove(room).is_some(),
                    "unsubscribe({room}) disagrees with what the application holds"
                );
            }
            Op::Publish { room, kind, len } => {
                self.publish(ops::room(*room), ops::kind(*kind), usize::from(*len))
            }
            Op::Server { frame, via } => {
                let mut events = Vec::new();
                let frame = self.build(frame, &mut events);
                self.feed(&frame, *via, &mut seen_events);
            }
            Op::Raw { json, bytes } => self.message(&bytes.0, *json, &mut seen_events),
            Op::PeerClose { code } => {
                let code = code.map(|c| CloseCode(PEER_CODES[usize::from(c) % PEER_CODES.len()]));
                if self.client.is_reading() {
                    self.expect_close = Some(match code {
                        None => CloseCode::NORMAL,
                        Some(c) if matches!(c.0, 1000..=1003 | 1007..=1014 | 3000..=4999) => c,
                        Some(_) => CloseCode::PROTOCOL_ERROR,
                    });
                }
                self.client
                    .handle_peer_close(now, code, &mut |e| seen_events.push(seen(&e)));
            }
            Op::TransportError { too_big } => {
                let (error, code) = if *too_big {
                    (TransportError::TooBig, CloseCode::MESSAGE_TOO_BIG)
                } else {
                    (TransportError::Protocol, CloseCode::PROTOCOL_ERROR)
                };
                if self.client.is_reading() {
                    self.expect_close = Some(code);
                }
                self.client
                    .handle_transport_error(now, error, &mut |e| seen_events.push(seen(&e)));
            }
        }
        self.after_input(&seen_events);
        self.settle();
    }

    /// Feeds a built frame as a message in the form `via` says. A frame the JSON form cannot
    /// carry (a payload that is not JSON text) is no message a server could send: it is skipped.
    fn feed(&mut self, frame: &Frame<'_>, via: Via, seen_events: &mut Vec<Seen>) {
        let json = match via {
            Via::Direct => self.codec.is_text(),
            Via::Binary => false,
            Via::Json => true,
        };
        let mut bytes = Vec::new();
        if json {
            match json::encode(frame) {
                Ok(text) => bytes = text,
                Err(_) => return,
            }
        } else if let Err(e) = binary::encode_into(frame, &mut bytes) {
            panic!("a built frame {frame:?} does not encode: {e:?}");
        }
        self.message(&bytes, json, seen_events);
    }

    /// Feeds one data message and works out what the connection must decide about it.
    fn message(&mut self, bytes: &[u8], text: bool, seen_events: &mut Vec<Seen>) {
        let now = self.now;
        if self.client.is_reading() {
            self.fed += bytes.len() as u64;
            if text != self.codec.is_text() {
                self.expect_close = Some(CloseCode::UNSUPPORTED_DATA);
            } else if let Err(e) = self.codec.decode(bytes, MAX_MESSAGE) {
                self.expect_close = e.close_code();
            }
        }
        self.client
            .handle_message(now, bytes, text, &mut |e| seen_events.push(seen(&e)));
    }

    fn subscribe(&mut self, room: &str, from: Option<(u8, u16)>) {
        let from = from.map(|(e, o)| Position::new(u32::from(e), u64::from(o)));
        let result = match from {
            Some(p) => self.client.subscribe_from(room, p),
            None => self.client.subscribe(room),
        };
        let valid = room != "bad/room";
        match result {
            Ok(()) => {
                assert!(valid, "an invalid room name was taken");
                if from.is_none() && self.rooms.contains_key(room) {
                    // Joining a room held, at the head: nothing changes.
                    return;
                }
                let known = self.client.position(room) == from;
                self.rooms.insert(
                    room.to_string(),
                    RoomModel {
                        floor: from.filter(|_| known),
                        known,
                    },
                );
            }
            Err(ClientError::Invalid(_)) => assert!(!valid, "a valid room name was refused"),
            // A room being left holds its place until its unsubscribe goes out, so the rooms
            // held may be fewer than the capacity; a room held is never refused.
            Err(ClientError::TooManyRooms) => assert!(
                !self.rooms.contains_key(room),
                "TooManyRooms for {room}, which is held"
            ),
            Err(ClientError::Closed) => assert_eq!(self.client.state(), ConnState::Closed),
            Err(e) => panic!("subscribe({room}) failed with {e:?}"),
        }
    }

    fn publish(&mut self, room: &str, kind: &str, len: usize) {
        let payload = vec![b'7'; len];
        let before_bytes = self.client.machine().outbox_bytes();
        let size = room.len() + kind.len() + len;
        match self.client.publish(room, kind, &payload) {
            Ok(id) => {
                assert!(id > self.last_id, "publish id {id} after {}", self.last_id);
                self.last_id = id;
                self.outstanding
                    .insert(id, (room.to_string(), kind.to_string(), payload));
            }
            Err(ClientError::Closed) => assert_eq!(self.client.state(), ConnState::Closed),
            Err(ClientError::Outbox(OutboxError::Invalid(_))) => {
                assert!(
                    room == "bad/room" || kind == "no kind",
                    "valid names refused"
                )
            }
            Err(ClientError::Outbox(OutboxError::TooLarge { size: s, limit }))
                if limit == self.client.frame_limit() =>
            {
                // The connection's check: the frame with the longest id is over what the
                // server takes.
                assert!(s > limit, "a publish frame that fits refused as too large");
            }
            Err(ClientError::Outbox(OutboxError::TooLarge { size: s, limit })) => {
                assert_eq!((s, limit), (size, OUTBOX_BYTES), "TooLarge misreported");
                assert!(
                    size > OUTBOX_BYTES,
                    "a publish that fits refused as too large"
                );
            }
            Err(ClientError::Outbox(OutboxError::Full)) => {
                // Finished publishes still in the queue behind an unanswered one hold their
                // place, so only "no room at all" is checked against what awaits an answer.
                assert!(
                    !self.outstanding.is_empty(),
                    "an outbox with nothing awaiting an answer refused a publish as full \
                     ({before_bytes} bytes held, {size} asked)"
                );
            }
            Err(e) => panic!("publish failed with {e:?}"),
        }
    }

    /// Builds a server frame from its fields and the client's state.
    /// Batch events go to `events`, which the frame borrows.
    fn build<'s>(&self, f: &ServerFrame, events: &'s mut Vec<BatchEvent<'static>>) -> Frame<'s> {
        let epoch_of = |room: &str, sel: EpochSel| {
            let current = self.client.position(room).map_or(1, |p| p.epoch);
            match sel {
                EpochSel::Current => current,
                EpochSel::Next => current.wrapping_add(1),
                EpochSel::Other(e) => e,
            }
        };
        let offset_of = |room: &str, sel: OffsetSel| {
            let current = self.client.position(room).map_or(0, |p| p.offset);
            let o = match sel {
                OffsetSel::After(n) => current + u64::from(n),
                OffsetSel::Before(n) => current.saturating_sub(u64::from(n)),
                OffsetSel::Abs(o) => o,
            };
            o & MAX_SAFE_INTEGER
        };
        let pos_of = |room: &str, p: PosSel| {
            Position::new(epoch_of(room, p.epoch), offset_of(room, p.offset))
        };
        let id_of = |sel: IdSel| match sel {
            IdSel::Outstanding(i) => {
                let ids: Vec<u64> = self.outstanding.keys().copied().collect();
                if ids.is_empty() {
                    1
                } else {
                    ids[usize::from(i) % ids.len()]
                }
            }
            IdSel::Abs(id) => u64::from(id),
        };
        match *f {
            ServerFrame::Welcome {
                version,
                heartbeat_ms,
            } => Frame::Welcome(Welcome {
                version: u16::from(version % 3),
                session_id: 1,
                heartbeat_ms,
                max_frame: 65_536,
                max_subscriptions: 64,
                publish_rate: 100,
            }),
            ServerFrame::Subscribed { room, position } => {
                let room = ops::valid_room(room);
                Frame::Subscribed(Subscribed {
                    room,
                    position: pos_of(room, position),
                })
            }
            ServerFrame::Batch {
                room,
                epoch,
                start,
                count,
                skips,
                payload,
            } => {
                let room = ops::valid_room(room);
                let mut offset = offset_of(room, start);
                let n = usize::from(count % 8) + 1;
                for i in 0..n {
                    events.push(BatchEvent {
                        offset: offset.min(MAX_SAFE_INTEGER),
                        kind: "agent.metrics",
                        payload: Payload(ops::payload(payload.wrapping_add(i as u8))),
                    });
                    offset += 1 + u64::from((skips >> (i % 8)) & 1);
                }
                // Offsets clamped at the top may repeat; a batch must keep them increasing.
                events.dedup_by_key(|e| e.offset);
                Frame::Batch(Batch {
                    room,
                    epoch: epoch_of(room, epoch),
                    events: Seq::from_slice(events),
                })
            }
            ServerFrame::Event {
                room,
                position,
                payload,
            } => {
                let room = ops::valid_room(room);
                Frame::Event(Event {
                    room,
                    position: pos_of(room, position),
                    kind: "agent.status",
                    payload: Payload(ops::payload(payload)),
                })
            }
            ServerFrame::GapRange {
                room,
                epoch,
                first,
                len,
            } => {
                let room = ops::valid_room(room);
                let first = offset_of(room, first);
                let last = (first + u64::from(len)).min(MAX_SAFE_INTEGER);
                Frame::Gap(Gap {
                    room,
                    missed: Missed::Range {
                        epoch: epoch_of(room, epoch),
                        first: first.min(last),
                        last,
                    },
                })
            }
            ServerFrame::GapReset { room, position } => {
                let room = ops::valid_room(room);
                Frame::Gap(Gap {
                    room,
                    missed: Missed::Reset {
                        position: pos_of(room, position),
                    },
                })
            }
            ServerFrame::PublishAck { id, position } => Frame::PublishAck(PublishAck {
                id: id_of(id),
                position: pos_of("agents", position),
            }),
            ServerFrame::Error {
                code,
                id,
                room,
                retry_after_ms,
            } => Frame::Error(ErrorFrame {
                code: ErrorCode(u16::from(code % 8)),
                id: id.map(id_of),
                room: room.map(ops::valid_room),
                retry_after_ms: retry_after_ms.map(u32::from),
                reason: "fuzz",
            }),
            ServerFrame::Ping { nonce } => Frame::Ping(Ping {
                nonce: u64::from(nonce),
            }),
            ServerFrame::Pong { echo, nonce } => Frame::Pong(Ping {
                nonce: match (echo, self.last_ping) {
                    (true, Some(n)) => n,
                    _ => u64::from(nonce),
                },
            }),
            ServerFrame::Close {
                code,
                retry_after_ms,
            } => {
                const CODES: [CloseCode; 8] = [
                    CloseCode::NORMAL,
                    CloseCode::GOING_AWAY,
                    CloseCode::PROTOCOL_ERROR,
                    CloseCode::POLICY_VIOLATION,
                    CloseCode::TRY_AGAIN_LATER,
                    CloseCode::UNAUTHORIZED,
                    CloseCode::UNSUPPORTED_VERSION,
                    CloseCode(4999),
                ];
                Frame::Close(Close {
                    code: CODES[usize::from(code) % CODES.len()],
                    retry_after_ms: retry_after_ms.map(u32::from),
                    reason: "",
                })
            }
        }
    }

    /// Checks what the sink saw during one input, then drains the outputs.
    fn after_input(&mut self, seen_events: &[Seen]) {
        let state = self.client.state();
        let mut lifecycle = None;
        for e in seen_events {
            match e {
                Seen::Connecting | Seen::Reconnecting | Seen::Closed => lifecycle = Some(e),
                Seen::Open => {
                    lifecycle = Some(e);
                    self.sessions += 1;
                }
                Seen::Event { room, position } => {
                    self.events += 1;
                    let Some(model) = self.rooms.get_mut(room) else {
                        panic!("event {position} of {room}, a room the application does not hold");
                    };
                    if let Some(floor) = model.floor.filter(|_| model.known) {
                        assert_eq!(
                            floor.epoch, position.epoch,
                            "event {position} of {room} from an epoch not announced (floor {floor})"
                        );
                        assert!(
                            position.offset > floor.offset,
                            "event {position} of {room} at or before {floor}: delivered twice or out of order"
                        );
                    }
                    model.floor = Some(*position);
                    model.known = true;
                }
                Seen::Gap { room, missed } => {
                    self.gaps += 1;
                    let Some(model) = self.rooms.get_mut(room) else {
                        panic!("gap {missed:?} of {room}, a room the application does not hold");
                    };
                    match *missed {
                        // Positions held are void: delivery continues after this one.
                        Missed::Reset { position } => {
                            model.floor = Some(position);
                            model.known = true;
                        }
                        Missed::Range { epoch, last, .. } if model.known => {
                            model.floor = raise(model.floor, Position::new(epoch, last))
                        }
                        Missed::Range { .. } => {}
                    }
                }
                Seen::Subscribed { room, position } => {
                    let Some(model) = self.rooms.get_mut(room) else {
                        panic!("join answer of {room}, a room the application does not hold");
                    };
                    if model.known {
                        model.floor = raise(model.floor, *position);
                    }
                }
                Seen::SubscribeFailed { room } => {
                    assert!(
                        self.rooms.remove(room).is_some(),
                        "join refusal of {room}, a room the application does not hold"
                    );
                }
                Seen::Acked { id } | Seen::Failed { id } => assert!(
                    self.outstanding.remove(id).is_some(),
                    "publish {id} answered but not awaiting an answer ({e:?})"
                ),
                Seen::Other => {}
            }
        }
        if let Some(e) = lifecycle {
            let expected = match e {
                Seen::Connecting => ConnState::Connecting,
                Seen::Open => ConnState::Open,
                Seen::Reconnecting => ConnState::Backoff,
                _ => ConnState::Closed,
            };
            assert_eq!(state, expected, "state after {e:?}");
        }
        self.drain();
        self.check_state();
    }

    /// Drains `poll_transmit` and `poll_action`, checking each output.
    fn drain(&mut self) {
        let now = self.now;
        let state = self.client.state();
        let held: BTreeSet<String> = self.rooms.keys().cloned().collect();
        let lowest = self.outstanding.keys().next().copied();
        let mut sent = 0;
        let mut ping = None;
        let mut publishes = Vec::new();
        let text = self.client.is_text();
        assert_eq!(
            text,
            self.codec.is_text(),
            "message type is not the codec's"
        );
        let mut buf = core::mem::take(&mut self.buf);
        buf.clear();
        while let Some(len) = self.client.poll_transmit(now, &mut buf) {
            sent += 1;
            assert!(sent < 10_000, "poll_transmit never returns None");
            assert_eq!(
                len,
                buf.len(),
                "poll_transmit appended another length than it said"
            );
            self.appended += len as u64;
            let frame = match self.codec.decode(&buf, usize::MAX) {
                Ok(frame) => frame,
                Err(e) => panic!("a message sent does not decode in its form: {e:?}"),
            };
            check_sent_frame(&frame);
            match &frame {
                Frame::Hello(h) => {
                    assert_eq!(state, ConnState::Handshaking, "hello while {state:?}");
                    for r in h.rooms.iter() {
                        assert!(held.contains(r.room), "hello resumes {}, not held", r.room);
                    }
                }
                Frame::Subscribe(s) => {
                    assert!(held.contains(s.room), "subscribe to {}, not held", s.room)
                }
                Frame::Ping(p) => ping = Some(p.nonce),
                Frame::Publish(p) => publishes.push((
                    p.id,
                    p.room.to_string(),
                    p.kind.to_string(),
                    p.payload.0.to_vec(),
                )),
                _ => {}
            }
            buf.clear();
        }
        self.buf = buf;
        if ping.is_some() {
            self.last_ping = ping;
        }
        for (id, room, kind, payload) in publishes {
            let Some(held) = self.outstanding.get(&id) else {
                panic!("publish {id} sent but not awaiting an answer");
            };
            assert_eq!(
                (&room, &kind, &payload),
                (&held.0, &held.1, &held.2),
                "publish {id} sent with other content than it was made with"
            );
            if let Some(lowest) = lowest {
                assert!(
                    id < lowest + self.window,
                    "publish {id} sent outside the window (lowest unanswered {lowest}, window {})",
                    self.window
                );
            }
        }
        let owed = self.expect_close.take();
        let mut first = true;
        while let Some(action) = self.client.poll_action() {
            if let Some(code) = owed.filter(|_| first) {
                assert_eq!(
                    action,
                    Action::Disconnect { code },
                    "the transport is not closed with the code its input calls for"
                );
                assert!(!self.client.is_reading(), "reading a transport closed");
            }
            first = false;
            if action == Action::Connect {
                assert_eq!(
                    self.client.state(),
                    ConnState::Connecting,
                    "Connect asked while not connecting"
                );
            }
        }
        if let Some(code) = owed {
            assert!(!first, "no Disconnect for a transport closed with {code}");
        }
        let counts = self.client.take_counts();
        let c = &mut self.counted;
        c.bytes_in += counts.bytes_in;
        c.bytes_out += counts.bytes_out;
        assert_eq!(
            c.bytes_in, self.fed,
            "bytes in are not the bytes fed while reading"
        );
        assert_eq!(
            c.bytes_out, self.appended,
            "bytes out are not the bytes appended"
        );
    }

    fn check_state(&self) {
        let c = &self.client;
        let state = c.state();
        let rooms: BTreeSet<&str> = c.rooms().map(|(r, _)| r).collect();
        let held: BTreeSet<&str> = self.rooms.keys().map(|r| r.as_str()).collect();
        assert_eq!(rooms, held, "rooms() is not what the application holds");
        assert!(rooms.len() <= ROOMS);
        assert_eq!(
            c.machine().outbox_len(),
            self.outstanding.len(),
            "outbox_len() is not the number of publishes awaiting an answer"
        );
        assert!(
            c.machine().outbox_len() <= OUTBOX,
            "outbox over its capacity"
        );
        assert!(
            c.machine().outbox_bytes() <= OUTBOX_BYTES,
            "outbox over its bytes"
        );
        let held_bytes: usize = self
            .outstanding
            .values()
            .map(|(r, k, p)| r.len() + k.len() + p.len())
            .sum();
        assert!(
            c.machine().outbox_bytes() >= held_bytes,
            "outbox holds fewer bytes than its unanswered publishes"
        );
        assert_eq!(
            c.session().is_some(),
            state == ConnState::Open,
            "session() outside the open state"
        );
        let stats = c.stats();
        assert_eq!(stats.events, self.events, "stats.events");
        assert_eq!(stats.gaps, self.gaps, "stats.gaps");
        assert_eq!(stats.sessions, self.sessions, "stats.sessions");
        let waits = matches!(
            state,
            ConnState::Connecting | ConnState::Handshaking | ConnState::Open | ConnState::Backoff
        );
        assert_eq!(
            c.poll_timeout().is_some(),
            waits,
            "a deadline in state {state:?}: {:?}",
            c.poll_timeout()
        );
    }

    /// Like an adapter: while the deadline is not in the future, handle it at `now`. A machine
    /// that keeps a past deadline after a few rounds would make its adapter spin.
    fn settle(&mut self) {
        for _ in 0..16 {
            match self.client.poll_timeout() {
                Some(at) if at <= self.now => {
                    let now = self.now;
                    let mut seen_events = Vec::new();
                    self.client
                        .handle_timeout(now, &mut |e| seen_events.push(seen(&e)));
                    self.after_input(&seen_events);
                }
                _ => return,
            }
        }
        panic!(
            "deadline {:?} stays at or before now {} after 16 rounds (state {:?})",
            self.client.poll_timeout(),
            self.now,
            self.client.state()
        );
    }
}

/// Raises a floor to `to` within its epoch; another epoch's position does not move it (only a
/// reset announces a new epoch).
fn raise(floor: Option<Position>, to: Position) -> Option<Position> {
    match floor {
        None => Some(to),
        Some(f) if f.epoch == to.epoch => Some(if to.offset > f.offset { to } else { f }),
        Some(f) => Some(f),
    }
}

fn check_sent_frame(frame: &Frame<'_>) {
    // A client's publishes may carry any bytes; only the JSON form of those is optional.
    ops::check_sent(frame, true, false);
}

impl Encode for EpochSel {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            EpochSel::Current => variant(out, 0, 3),
            EpochSel::Next => variant(out, 1, 3),
            EpochSel::Other(e) => {
                variant(out, 2, 3);
                e.encode(out);
            }
        }
    }
}

impl Encode for OffsetSel {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            OffsetSel::After(n) => {
                variant(out, 0, 3);
                n.encode(out);
            }
            OffsetSel::Before(n) => {
                variant(out, 1, 3);
                n.encode(out);
            }
            OffsetSel::Abs(o) => {
                variant(out, 2, 3);
                o.encode(out);
            }
        }
    }
}

impl Encode for PosSel {
    fn encode(&self, out: &mut Vec<u8>) {
        self.epoch.encode(out);
        self.offset.encode(out);
    }
}

impl Encode for IdSel {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            IdSel::Outstanding(i) => {
                variant(out, 0, 2);
                i.encode(out);
            }
            IdSel::Abs(id) => {
                variant(out, 1, 2);
                id.encode(out);
            }
        }
    }
}

impl Encode for (u8, u16) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
}

impl Encode for ServerFrame {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 11;
        match self {
            ServerFrame::Welcome {
                version,
                heartbeat_ms,
            } => {
                variant(out, 0, N);
                version.encode(out);
                heartbeat_ms.encode(out);
            }
            ServerFrame::Subscribed { room, position } => {
                variant(out, 1, N);
                room.encode(out);
                position.encode(out);
            }
            ServerFrame::Batch {
                room,
                epoch,
                start,
                count,
                skips,
                payload,
            } => {
                variant(out, 2, N);
                room.encode(out);
                epoch.encode(out);
                start.encode(out);
                count.encode(out);
                skips.encode(out);
                payload.encode(out);
            }
            ServerFrame::Event {
                room,
                position,
                payload,
            } => {
                variant(out, 3, N);
                room.encode(out);
                position.encode(out);
                payload.encode(out);
            }
            ServerFrame::GapRange {
                room,
                epoch,
                first,
                len,
            } => {
                variant(out, 4, N);
                room.encode(out);
                epoch.encode(out);
                first.encode(out);
                len.encode(out);
            }
            ServerFrame::GapReset { room, position } => {
                variant(out, 5, N);
                room.encode(out);
                position.encode(out);
            }
            ServerFrame::PublishAck { id, position } => {
                variant(out, 6, N);
                id.encode(out);
                position.encode(out);
            }
            ServerFrame::Error {
                code,
                id,
                room,
                retry_after_ms,
            } => {
                variant(out, 7, N);
                code.encode(out);
                id.encode(out);
                room.encode(out);
                retry_after_ms.encode(out);
            }
            ServerFrame::Ping { nonce } => {
                variant(out, 8, N);
                nonce.encode(out);
            }
            ServerFrame::Pong { echo, nonce } => {
                variant(out, 9, N);
                echo.encode(out);
                nonce.encode(out);
            }
            ServerFrame::Close {
                code,
                retry_after_ms,
            } => {
                variant(out, 10, N);
                code.encode(out);
                retry_after_ms.encode(out);
            }
        }
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 12;
        match self {
            Op::Connect => variant(out, 0, N),
            Op::Connected => variant(out, 1, N),
            Op::Disconnected => variant(out, 2, N),
            Op::Close => variant(out, 3, N),
            Op::Advance(by) => {
                variant(out, 4, N);
                by.encode(out);
            }
            Op::Subscribe { room, from } => {
                variant(out, 5, N);
                room.encode(out);
                from.encode(out);
            }
            Op::Unsubscribe { room } => {
                variant(out, 6, N);
                room.encode(out);
            }
            Op::Publish { room, kind, len } => {
                variant(out, 7, N);
                room.encode(out);
                kind.encode(out);
                len.encode(out);
            }
            Op::Server { frame, via } => {
                variant(out, 8, N);
                frame.encode(out);
                via.encode(out);
            }
            Op::Raw { json, bytes } => {
                variant(out, 9, N);
                json.encode(out);
                bytes.encode(out);
            }
            Op::PeerClose { code } => {
                variant(out, 10, N);
                code.encode(out);
            }
            Op::TransportError { too_big } => {
                variant(out, 11, N);
                too_big.encode(out);
            }
        }
    }
}
