//! The server side of one connection: a session state machine reading rooms from a shared
//! [`Hub`], and the [`Connection`] around it that adapters drive in bytes.
//!
//! Adapters use [`Connection`] (its module docs give the loop); the session below is the protocol
//! logic it wraps, driven in frames, which the tests and the simulation drive directly. HTTP
//! long-polling sessions (their requests' checks, the session table, held requests) are
//! [`polling`]'s; the HTTP answers of a server (refusals, CORS) are [`http`]'s.
//!
//! # Driving it
//! Like the client, the session never touches a socket or a clock. Per connection an adapter:
//!
//! 1. Feeds inputs with `now`: [`ServerSession::handle_frame`] for each decoded frame (with the
//!    hub, since joins and publishes touch rooms), [`ServerSession::handle_timeout`] when the
//!    deadline passed, and the application's decisions ([`ServerSession::accept`],
//!    [`ServerSession::reject`], [`ServerSession::allow`], [`ServerSession::deny`],
//!    [`ServerSession::publish_done`]) when it has them (they may be asynchronous).
//! 2. While the transport can take more, drains [`ServerSession::poll_transmit`]. This is the
//!    backpressure point: the session reads room logs only when asked, so a slow connection falls
//!    behind in the log instead of growing a queue, and gets a gap notice if the log moves past it.
//! 3. Acts on [`ServerSession::poll_action`] (close the transport, after sending what step 2 gave).
//! 4. Sleeps until [`ServerSession::poll_timeout`], new bytes, writable socket, or new events in a
//!    room it holds (the room wakes the waker the session registered when it joined).
//!
//! The session keeps a handle to each room it holds and reads them through it: its outputs take
//! no hub and no lock but those rooms' (see [`crate::hub`]).
//!
//! Requests the application decides are handed to the `sink` of the call that raised them as
//! [`ServerEvent`]s.
//!
//! # Batching
//! A subscription's events go out in batches of at most `max_batch` events (and the frame limit).
//! If the session sent nothing for a batch interval, available events go out at once: batching
//! adds no latency at low rates. Otherwise the next batch waits for the interval to pass since the
//! last one, unless `max_batch` events are waiting. The interval is `batch_interval` (100 ms) for
//! ordinary events and `metrics_interval` (500 ms) when the next event has a coalescing key
//! (metrics); on a degraded link both double, on a poor one they quadruple, and coalescing in the
//! log then drops more superseded metric values before they are sent.
//!
//! # Bounds
//! Per session: the subscriptions (`max_subscriptions`), the joins awaiting authorisation (the
//! same), the publishes awaiting the application (the client's window, checked by the
//! deduplication window), a control queue of [`CONTROL_CAPACITY`] frames (a peer that makes the
//! server queue more, by pinging without reading for example, is closed with `POLICY_VIOLATION`)
//! and one scratch buffer of the frame limit (two for a JSON peer: the batch's events in both
//! forms, so that its frame is still validated on the binary form and written from the JSON one).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use heapless::String;

use crate::code::{CloseCode, ErrorCode};
use crate::codec::Codec;
use crate::dedup::Verdict;
use crate::frame::{
    Batch, Close, ErrorFrame, Frame, Gap, Missed, Ping, Position, PublishAck, Subscribed, Welcome,
    PROTOCOL_VERSION,
};
use crate::history::{Read, RoomLog};
use crate::hub::{Host, Hub, HubError, Local, RoomRef};
use crate::rng::Rng;
use crate::rtt::{LinkQuality, Quality, QualityConfig};
use crate::seq::Seq;
use crate::text::{MAX_NAME_LEN, MAX_SAFE_INTEGER};
use crate::time::Instant;

/// Most control frames (acks, errors, pongs, ...) a session queues before it closes the peer.
pub const CONTROL_CAPACITY: usize = 256;

/// Who applies publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishMode {
    /// The session appends each new publish to its room itself and acknowledges it; the
    /// application sees [`ServerEvent::Published`].
    AppendToRoom,
    /// The application gets [`ServerEvent::Publish`] and answers with
    /// [`ServerSession::publish_done`].
    Application,
}

/// Limits and timings of server sessions. Build with [`ServerConfig::new`] and the setters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerConfig {
    /// Ping interval when nothing was heard. Default 15 s.
    pub heartbeat: Duration,
    /// The link is dead after this many silent heartbeat intervals. Default 3.
    pub dead_after: u32,
    /// Longest time from connection to accepted hello, including authentication. Default 10 s.
    pub handshake_timeout: Duration,
    /// Largest frame accepted and sent. Default 64 KiB.
    pub max_frame: u32,
    /// Most rooms per connection. Default 64.
    pub max_subscriptions: u16,
    /// Publishes per second per connection (token bucket with a burst of one second). Default 100.
    pub publish_rate: u16,
    /// Rate-limit errors a connection may cause before it is closed. Default 100.
    pub rate_strikes: u32,
    /// Bytes a connection may send per second, whatever they carry (publishes, pings,
    /// subscriptions, junk): a token bucket holding one second's worth, or two frames of
    /// `max_frame` if that is more. Beyond it the connection is closed with `RATE_LIMITED`
    /// (4004) and a retry-after of one second. Default 1 MiB; 0 turns the limit off.
    pub max_bytes_in: u32,
    /// Most events per batch. Default 50.
    pub max_batch: u16,
    /// Batch interval of ordinary events. Default 100 ms.
    pub batch_interval: Duration,
    /// Batch interval of coalescable (metrics) events. Default 500 ms.
    pub metrics_interval: Duration,
    /// Link quality thresholds.
    pub quality: QualityConfig,
    /// Who applies publishes. Default [`PublishMode::AppendToRoom`].
    pub publish_mode: PublishMode,
}

impl ServerConfig {
    /// The defaults.
    pub const fn new() -> Self {
        ServerConfig {
            heartbeat: Duration::from_secs(15),
            dead_after: 3,
            handshake_timeout: Duration::from_secs(10),
            max_frame: 64 * 1024,
            max_subscriptions: 64,
            publish_rate: 100,
            rate_strikes: 100,
            max_bytes_in: 1024 * 1024,
            max_batch: 50,
            batch_interval: Duration::from_millis(100),
            metrics_interval: Duration::from_millis(500),
            quality: QualityConfig::new(),
            publish_mode: PublishMode::AppendToRoom,
        }
    }

    /// Sets the bytes a connection may send per second (0: no limit).
    pub const fn max_bytes_in(mut self, bytes_per_second: u32) -> Self {
        self.max_bytes_in = bytes_per_second;
        self
    }

    /// Sets the heartbeat interval.
    pub const fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Sets the handshake timeout.
    pub const fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the frame limit.
    pub const fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets the subscription limit.
    pub const fn max_subscriptions(mut self, rooms: u16) -> Self {
        self.max_subscriptions = rooms;
        self
    }

    /// Sets the publish rate.
    pub const fn publish_rate(mut self, per_second: u16) -> Self {
        self.publish_rate = per_second;
        self
    }

    /// Sets the batch size.
    pub const fn max_batch(mut self, events: u16) -> Self {
        self.max_batch = events;
        self
    }

    /// Sets the batch intervals of ordinary and metrics events.
    pub const fn intervals(mut self, batch: Duration, metrics: Duration) -> Self {
        self.batch_interval = batch;
        self.metrics_interval = metrics;
        self
    }

    /// Sets who applies publishes.
    pub const fn publish_mode(mut self, mode: PublishMode) -> Self {
        self.publish_mode = mode;
        self
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// A request for the application, or news about the session.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent<'a> {
    /// A hello arrived: call [`ServerSession::accept`] or [`ServerSession::reject`].
    Authenticate {
        /// The client's identity.
        client_id: u64,
        /// Its token, if any.
        token: Option<&'a str>,
    },
    /// The client asks to join `room`: call [`ServerSession::allow`] or [`ServerSession::deny`].
    Authorize {
        /// The room.
        room: &'a str,
    },
    /// A new publish (in [`PublishMode::Application`]): call [`ServerSession::publish_done`].
    Publish {
        /// Its room.
        room: &'a str,
        /// Its id.
        id: u64,
        /// Its kind.
        kind: &'a str,
        /// Its bytes.
        payload: &'a [u8],
    },
    /// A publish outside the connection's [`Grants`] was refused with `FORBIDDEN_ROOM`.
    PublishRefused {
        /// The room it named.
        room: &'a str,
        /// Its id.
        id: u64,
    },
    /// A publish was appended to its room (in [`PublishMode::AppendToRoom`]).
    Published {
        /// Its room.
        room: &'a str,
        /// Where it landed.
        position: Position,
        /// Its kind.
        kind: &'a str,
        /// Its bytes.
        payload: &'a [u8],
    },
    /// The link quality level changed.
    Quality(Quality),
    /// The session ended; the adapter drops it after closing the transport.
    Closed {
        /// Why.
        code: CloseCode,
    },
}

/// The session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting for the hello.
    AwaitHello,
    /// Waiting for the application's authentication decision.
    AwaitAuth,
    /// Open.
    Open,
    /// Ended.
    Closed,
}

/// Why an application decision was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecisionError {
    /// Nothing awaits that decision.
    NotPending,
    /// The session is not in a state that takes it.
    WrongState,
}

impl fmt::Display for DecisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecisionError::NotPending => f.write_str("nothing awaits this decision"),
            DecisionError::WrongState => f.write_str("the session does not take this decision now"),
        }
    }
}

impl core::error::Error for DecisionError {}

/// Counters for observability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Events sent.
    pub events_out: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Gap notices sent because this connection fell out of the history.
    pub gaps: u64,
    /// Publishes applied.
    pub publishes: u64,
    /// Publishes answered as duplicates.
    pub duplicates: u64,
    /// Publishes refused: outside the connection's [`Grants`].
    pub refused: u64,
}

type Name = String<MAX_NAME_LEN>;

fn name(s: &str) -> Name {
    let mut n = Name::new();
    // Names come from validated frames, so they fit.
    let _ = n.push_str(s);
    n
}

struct Sub<H: Host> {
    room: RoomRef<H>,
    /// The session's slot among the room's watchers.
    watch: usize,
    name: Name,
    at: At,
}

/// Where a subscription stands in its room.
struct At {
    /// Last offset sent (or announced as missed).
    cursor: u64,
    epoch: u32,
    last_flush: Option<Instant>,
}

#[derive(Debug, Clone)]
enum Control {
    Welcome(Welcome),
    Subscribed(Name, Position),
    Error {
        code: ErrorCode,
        id: Option<u64>,
        room: Option<Name>,
        retry_after_ms: Option<u32>,
        reason: &'static str,
    },
    Ack(PublishAck),
    Ping(u64),
    Pong(u64),
    Close {
        code: CloseCode,
        retry_after_ms: Option<u32>,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    Handshake,
    Heartbeat,
    DeadLink,
}
const TIMERS: usize = 3;

/// One connection's session; see the module docs for the driving loop.
pub struct ServerSession<H: Host = Local> {
    config: ServerConfig,
    /// Registered in every room the session holds, so that appends wake it.
    waker: H::Waker,
    state: SessionState,
    session_id: u64,
    client_id: u64,
    max_frame: u32,
    max_batch: u16,
    subs: Vec<Sub<H>>,
    joins: VecDeque<(Name, Option<Position>)>,
    /// What the application granted the connection ([`ServerSession::grant`]); none until then.
    grants: Grants,
    publishes: Vec<u64>,
    control: VecDeque<Control>,
    /// The control frame being sent; frames borrow from it.
    current: Option<Control>,
    scratch: Vec<u8>,
    /// The form frames are encoded in; see [`ServerSession::set_codec`].
    codec: Codec,
    /// The JSON forms of a batch's events, for a JSON peer.
    #[cfg(feature = "json")]
    json_scratch: Vec<u8>,
    timers: [Option<Instant>; TIMERS],
    action: Option<CloseCode>,
    quality: LinkQuality,
    rng: Rng,
    outstanding_ping: Option<(u64, Instant)>,
    tokens: u32,
    tokens_at: Instant,
    strikes: u32,
    next_sub: usize,
    stats: SessionStats,
}

impl ServerSession<Local> {
    /// A single-threaded session for a connection that opened at `now`. `seed` drives ping
    /// nonces.
    pub fn new(now: Instant, config: ServerConfig, session_id: u64, seed: u64) -> Self {
        Self::with_waker(now, config, session_id, seed, ())
    }
}

impl<H: Host> Drop for ServerSession<H> {
    fn drop(&mut self) {
        for sub in &self.subs {
            sub.room.unwatch(sub.watch);
        }
    }
}

impl<H: Host> ServerSession<H> {
    /// A session on host `H`: appends to the rooms it holds wake `waker`.
    pub fn with_waker(
        now: Instant,
        config: ServerConfig,
        session_id: u64,
        seed: u64,
        waker: H::Waker,
    ) -> Self {
        let mut timers = [None; TIMERS];
        timers[Timer::Handshake as usize] = Some(now + config.handshake_timeout);
        ServerSession {
            waker,
            state: SessionState::AwaitHello,
            session_id: session_id & MAX_SAFE_INTEGER,
            client_id: 0,
            max_frame: config.max_frame,
            max_batch: config.max_batch.max(1),
            // Both grow on demand (to `max_subscriptions` and a frame at most): an idle
            // connection costs only what it uses.
            subs: Vec::new(),
            joins: VecDeque::new(),
            grants: Grants::none(),
            publishes: Vec::new(),
            control: VecDeque::new(),
            current: None,
            scratch: Vec::new(),
            codec: Codec::Binary,
            #[cfg(feature = "json")]
            json_scratch: Vec::new(),
            timers,
            action: None,
            quality: LinkQuality::new(config.quality),
            rng: Rng::new(seed),
            outstanding_ping: None,
            tokens: u32::from(config.publish_rate),
            tokens_at: now,
            strikes: 0,
            next_sub: 0,
            stats: SessionStats::default(),
            config,
        }
    }

    /// Tells the session which form its frames are encoded in (the connection's negotiated
    /// [`Codec`]; binary until told). For a JSON peer a batch carries the JSON forms its room
    /// log wrote once at append (see `HistoryConfig::json_form`), so encoding it is a copy as in
    /// the binary form, and an event whose payload is not JSON text, which has no JSON form, is
    /// announced as missed (a gap) instead of making the encoding of its batch fail. Call it
    /// before the first [`ServerSession::poll_transmit`].
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    // ---- getters

    /// The state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The client's identity (after the hello).
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The frame limit this session enforces.
    pub(crate) fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// The session id sent in the welcome.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The link quality level as measured from this side.
    pub fn quality(&self) -> Quality {
        self.quality.level()
    }

    /// Rooms subscribed, with the last offset sent in each.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, Position)> {
        self.subs
            .iter()
            .map(|s| (s.name.as_str(), Position::new(s.at.epoch, s.at.cursor)))
    }

    /// Control frames queued.
    pub fn queued(&self) -> usize {
        self.control.len()
    }

    /// Whether the session holds `room`.
    pub fn holds(&self, room: &str) -> bool {
        self.subs.iter().any(|s| s.name == room)
    }

    // ---- application decisions

    /// Accepts the hello: sends the welcome and asks for authorisation of the rooms it listed.
    pub fn accept(
        &mut self,
        now: Instant,
        sink: &mut impl FnMut(ServerEvent<'_>),
    ) -> Result<(), DecisionError> {
        if self.state != SessionState::AwaitAuth {
            return Err(DecisionError::WrongState);
        }
        self.state = SessionState::Open;
        self.timers[Timer::Handshake as usize] = None;
        self.timers[Timer::Heartbeat as usize] = Some(now + self.config.heartbeat);
        self.arm_dead_link(now);
        if self.control.len() >= CONTROL_CAPACITY {
            self.close_with(CloseCode::POLICY_VIOLATION, None, "control queue full");
            return Ok(());
        }
        // The welcome answers the hello, so it goes out before whatever was queued while the
        // hello waited (errors for hello rooms over the limit, pongs): a client takes nothing
        // else before the welcome.
        self.control.push_front(Control::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            session_id: self.session_id,
            heartbeat_ms: u32::try_from(self.config.heartbeat.as_millis()).unwrap_or(u32::MAX),
            max_frame: self.config.max_frame,
            max_subscriptions: self.config.max_subscriptions,
            publish_rate: self.config.publish_rate,
        }));
        for (room, _) in self.joins.iter() {
            sink(ServerEvent::Authorize {
                room: room.as_str(),
            });
        }
        Ok(())
    }

    /// Refuses the hello: closes with `code` (for example [`CloseCode::UNAUTHORIZED`]).
    pub fn reject(&mut self, code: CloseCode, reason: &'static str) -> Result<(), DecisionError> {
        if self.state != SessionState::AwaitAuth {
            return Err(DecisionError::WrongState);
        }
        self.close_with(code, None, reason);
        Ok(())
    }

    /// Sets what the connection may do beyond reading (see [`Grants`]): usually with
    /// [`ServerSession::accept`], from the application's authentication verdict. A session starts
    /// with [`Grants::none`].
    pub fn grant(&mut self, grants: Grants) {
        self.grants = grants;
    }

    /// Allows a join asked for by [`ServerEvent::Authorize`].
    pub fn allow(&mut self, hub: &Hub<H>, room: &str) -> Result<(), DecisionError> {
        let (name, from) = self.take_join(room)?;
        // A room already held is replaced below, so it does not count against the limit.
        let others = self.subs.iter().filter(|s| s.name != room).count();
        if others >= self.config.max_subscriptions as usize {
            self.room_error(
                ErrorCode::TOO_MANY_SUBSCRIPTIONS,
                name,
                "subscription limit",
            );
            return Ok(());
        }
        let may_create = self.grants.may_create(room);
        let waker = self.waker.clone();
        let joined = hub.client_room(room, may_create, |handle| {
            (handle.clone(), handle.watch(waker), handle.head())
        });
        let (handle, watch, head) = match joined {
            Ok(joined) => joined,
            Err(HubError::NoSuchRoom) => {
                self.room_error(ErrorCode::NO_SUCH_ROOM, name, "no such room");
                return Ok(());
            }
            Err(_) => {
                self.room_error(ErrorCode::FORBIDDEN_ROOM, name, "room limit of the server");
                return Ok(());
            }
        };
        // Delivery continues after the client's own position; whether it is still in the
        // history (replay) or not (gap) is found out when reading.
        let start = from.unwrap_or(head);
        self.drop_sub(room);
        self.subs.push(Sub {
            room: handle,
            watch,
            name: name.clone(),
            at: At {
                cursor: start.offset,
                epoch: start.epoch,
                last_flush: None,
            },
        });
        self.push(Control::Subscribed(name, start));
        Ok(())
    }

    /// Refuses a join asked for by [`ServerEvent::Authorize`].
    pub fn deny(&mut self, room: &str) -> Result<(), DecisionError> {
        let (name, _) = self.take_join(room)?;
        self.room_error(ErrorCode::FORBIDDEN_ROOM, name, "room not allowed");
        Ok(())
    }

    /// Answers a [`ServerEvent::Publish`]: `Ok(position)` once the application applied it,
    /// `Err(code)` if it refused it.
    pub fn publish_done(
        &mut self,
        hub: &Hub<H>,
        now: Instant,
        id: u64,
        result: Result<Position, ErrorCode>,
    ) -> Result<(), DecisionError> {
        let i = self
            .publishes
            .iter()
            .position(|p| *p == id)
            .ok_or(DecisionError::NotPending)?;
        self.publishes.swap_remove(i);
        match result {
            Ok(position) => {
                hub.dedup(|d| d.record(now, self.client_id, id, position));
                self.stats.publishes += 1;
                self.push(Control::Ack(PublishAck { id, position }));
            }
            Err(code) => {
                // Refused for good: the id is answered, so the client's window moves on.
                hub.dedup(|d| d.record_refused(now, self.client_id, id));
                self.push(Control::Error {
                    code,
                    id: Some(id),
                    room: None,
                    retry_after_ms: None,
                    reason: "publish refused",
                });
            }
        }
        Ok(())
    }

    /// Ends the session from the server side (for example on shutdown, with
    /// [`CloseCode::GOING_AWAY`] and a retry-after hint).
    pub fn close(&mut self, code: CloseCode, retry_after: Option<Duration>, reason: &'static str) {
        if self.state == SessionState::Closed {
            return;
        }
        let ms = retry_after.map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
        self.close_with(code, ms, reason);
    }

    // ---- inputs

    /// A frame arrived.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        frame: &Frame<'_>,
        hub: &Hub<H>,
        sink: &mut impl FnMut(ServerEvent<'_>),
    ) {
        if self.state == SessionState::Closed {
            return;
        }
        self.stats.frames_in += 1;
        self.arm_dead_link(now);
        match (self.state, frame) {
            (_, Frame::Close(c)) => {
                self.state = SessionState::Closed;
                self.action = Some(c.code);
                sink(ServerEvent::Closed { code: c.code });
            }
            (_, Frame::Ping(p)) => self.push(Control::Pong(p.nonce)),
            (SessionState::AwaitHello, Frame::Hello(h)) => {
                if h.version == 0 {
                    self.close_with(CloseCode::UNSUPPORTED_VERSION, None, "version 0");
                    return;
                }
                self.client_id = h.client_id;
                self.max_frame = self.config.max_frame.min(h.max_frame.max(256));
                self.max_batch = self.config.max_batch.min(h.max_batch).max(1);
                for r in h.rooms.iter() {
                    if self.joins.len() >= self.config.max_subscriptions as usize {
                        self.room_error(
                            ErrorCode::TOO_MANY_SUBSCRIPTIONS,
                            name(r.room),
                            "subscription limit",
                        );
                        continue;
                    }
                    self.joins.push_back((name(r.room), r.from));
                }
                self.state = SessionState::AwaitAuth;
                sink(ServerEvent::Authenticate {
                    client_id: h.client_id,
                    token: h.token,
                });
            }
            (SessionState::Open, Frame::Pong(p)) => {
                if let Some((nonce, sent)) = self.outstanding_ping {
                    if nonce == p.nonce {
                        self.outstanding_ping = None;
                        if let Some(q) = self.quality.on_pong(now.saturating_duration_since(sent)) {
                            sink(ServerEvent::Quality(q));
                        }
                    }
                }
            }
            (SessionState::Open, Frame::Subscribe(s)) => {
                let pending =
                    self.subs.iter().filter(|x| x.name != s.room).count() + self.joins.len();
                if pending >= self.config.max_subscriptions as usize {
                    self.room_error(
                        ErrorCode::TOO_MANY_SUBSCRIPTIONS,
                        name(s.room),
                        "subscription limit",
                    );
                    return;
                }
                self.joins.retain(|(r, _)| r != s.room);
                self.joins.push_back((name(s.room), s.from));
                sink(ServerEvent::Authorize { room: s.room });
            }
            (SessionState::Open, Frame::Unsubscribe(u)) => {
                self.drop_sub(u.room);
                self.joins.retain(|(r, _)| r != u.room);
            }
            (SessionState::Open, Frame::Publish(p)) => self.handle_publish(now, p, hub, sink),
            (SessionState::Open, Frame::Hello(_)) => self.push(Control::Error {
                code: ErrorCode::UNEXPECTED_FRAME,
                id: None,
                room: None,
                retry_after_ms: None,
                reason: "second hello",
            }),
            _ => self.close_with(CloseCode::PROTOCOL_ERROR, None, "unexpected frame"),
        }
    }

    /// Timers that are due fire; calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut impl FnMut(ServerEvent<'_>)) {
        if self.state == SessionState::Closed {
            return;
        }
        if self.due(Timer::Handshake, now) {
            self.timers[Timer::Handshake as usize] = None;
            if self.state != SessionState::Open {
                self.close_with(CloseCode::HANDSHAKE_TIMEOUT, None, "handshake timeout");
                sink(ServerEvent::Closed {
                    code: CloseCode::HANDSHAKE_TIMEOUT,
                });
                return;
            }
        }
        if self.due(Timer::DeadLink, now) {
            self.timers[Timer::DeadLink as usize] = None;
            self.close_with(CloseCode::HEARTBEAT_TIMEOUT, None, "no traffic");
            sink(ServerEvent::Closed {
                code: CloseCode::HEARTBEAT_TIMEOUT,
            });
            return;
        }
        if self.due(Timer::Heartbeat, now) {
            self.timers[Timer::Heartbeat as usize] = Some(now + self.config.heartbeat);
            if self.outstanding_ping.take().is_some() {
                if let Some(q) = self.quality.on_missed_pong() {
                    sink(ServerEvent::Quality(q));
                }
            }
            let nonce = self.rng.next_u64() & MAX_SAFE_INTEGER;
            self.outstanding_ping = Some((nonce, now));
            self.push(Control::Ping(nonce));
        }
    }

    // ---- outputs

    /// The next frame to send, if any. Call while the transport can take more; the session reads
    /// room logs only here, so not calling it is how backpressure reaches the logs.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Frame<'_>> {
        if matches!(
            self.state,
            SessionState::AwaitHello | SessionState::AwaitAuth
        ) {
            // A client takes nothing before the welcome (it fails the connection otherwise), so
            // what was queued while the hello waits for the application (errors for hello rooms
            // over the limit, pongs) stays queued until `accept` puts the welcome in front of it.
            // A session that ends before the welcome is `Closed`, so its close still goes out.
            return None;
        }
        if let Some(control) = self.control.pop_front() {
            self.stats.frames_out += 1;
            self.current = Some(control);
            return self.current.as_ref().map(control_frame);
        }
        if self.state != SessionState::Open || self.subs.is_empty() {
            return None;
        }
        let n = self.subs.len();
        for step in 0..n {
            let i = (self.next_sub + step) % n;
            match self.read_sub(now, i) {
                Outcome::Idle => continue,
                Outcome::Gap(missed) => {
                    self.next_sub = (i + 1) % n;
                    self.stats.frames_out += 1;
                    self.stats.gaps += 1;
                    return Some(Frame::Gap(Gap {
                        room: self.subs[i].name.as_str(),
                        missed,
                    }));
                }
                Outcome::Batch { count, json } => {
                    self.next_sub = (i + 1) % n;
                    self.stats.frames_out += 1;
                    self.stats.events_out += count as u64;
                    let sub = &self.subs[i];
                    #[cfg(feature = "json")]
                    let events =
                        Seq::from_log(&self.scratch, count, json.then_some(&self.json_scratch[..]));
                    #[cfg(not(feature = "json"))]
                    let events = {
                        let _ = json;
                        Seq::from_log(&self.scratch, count)
                    };
                    return Some(Frame::Batch(Batch {
                        room: sub.name.as_str(),
                        epoch: sub.at.epoch,
                        events,
                    }));
                }
            }
        }
        None
    }

    /// Whether the transport should be closed, and with which code (after sending what
    /// `poll_transmit` gave).
    #[must_use]
    pub fn poll_action(&mut self) -> Option<CloseCode> {
        self.action.take()
    }

    /// The next instant `handle_timeout` or `poll_transmit` has work.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == SessionState::Closed {
            return None;
        }
        let timers = self.timers.iter().flatten().copied();
        let flushes = self
            .subs
            .iter()
            .filter_map(|s| s.room.read(|log| self.flush_at(log, &s.at)))
            .filter(|_| self.state == SessionState::Open);
        timers.chain(flushes).min()
    }
}

/// Whether batches for a JSON peer can take `log`'s events as written at append.
#[cfg(feature = "json")]
fn log_keeps_json(log: &crate::history::RoomLog) -> bool {
    log.config().json_form
}

#[cfg(not(feature = "json"))]
fn log_keeps_json(_log: &crate::history::RoomLog) -> bool {
    false
}

/// What became of a publish the session appends itself.
enum Appended {
    At(Position),
    /// The room refused it (recorded as refused in the window).
    Refused,
    /// The room does not exist and the client may not create it (recorded as refused).
    NoSuchRoom,
    /// It was not new after all.
    Not(Verdict),
}

enum Outcome {
    Idle,
    Gap(Missed),
    /// A batch of this many events is in the scratch buffers; in both forms when `json`.
    Batch {
        count: usize,
        json: bool,
    },
}

fn control_frame(c: &Control) -> Frame<'_> {
    match c {
        Control::Welcome(w) => Frame::Welcome(*w),
        Control::Subscribed(room, position) => Frame::Subscribed(Subscribed {
            room: room.as_str(),
            position: *position,
        }),
        Control::Error {
            code,
            id,
            room,
            retry_after_ms,
            reason,
        } => Frame::Error(ErrorFrame {
            code: *code,
            id: *id,
            room: room.as_ref().map(|r| r.as_str()),
            retry_after_ms: *retry_after_ms,
            reason,
        }),
        Control::Ack(a) => Frame::PublishAck(*a),
        Control::Ping(nonce) => Frame::Ping(Ping { nonce: *nonce }),
        Control::Pong(nonce) => Frame::Pong(Ping { nonce: *nonce }),
        Control::Close {
            code,
            retry_after_ms,
            reason,
        } => Frame::Close(Close {
            code: *code,
            retry_after_ms: *retry_after_ms,
            reason,
        }),
    }
}

// ---- internals
impl<H: Host> ServerSession<H> {
    fn due(&self, timer: Timer, now: Instant) -> bool {
        self.timers[timer as usize].is_some_and(|t| t <= now)
    }

    fn arm_dead_link(&mut self, now: Instant) {
        if self.state == SessionState::Open || self.state == SessionState::AwaitAuth {
            let silence = self.config.heartbeat.saturating_mul(self.config.dead_after);
            self.timers[Timer::DeadLink as usize] = Some(now + silence);
        }
    }

    fn push(&mut self, control: Control) {
        if self.state == SessionState::Closed {
            // Nothing may follow the close frame. Only a decision that comes in after the end
            // (`publish_done`) pushes now; the publish stays recorded in the hub's
            // deduplication window, so the client's retry on its next connection is answered.
            return;
        }
        if self.control.len() >= CONTROL_CAPACITY {
            self.close_with(CloseCode::POLICY_VIOLATION, None, "control queue full");
            return;
        }
        self.control.push_back(control);
    }

    fn close_with(&mut self, code: CloseCode, retry_after_ms: Option<u32>, reason: &'static str) {
        if self.state == SessionState::Closed {
            return;
        }
        self.state = SessionState::Closed;
        // The close goes out before anything still queued.
        self.control.clear();
        self.control.push_back(Control::Close {
            code,
            retry_after_ms,
            reason,
        });
        self.action = Some(code);
    }

    fn room_error(&mut self, code: ErrorCode, room: Name, reason: &'static str) {
        self.push(Control::Error {
            code,
            id: None,
            room: Some(room),
            retry_after_ms: None,
            reason,
        });
    }

    /// Leaves `room`, if held: the room stops waking this session.
    fn drop_sub(&mut self, room: &str) {
        if let Some(i) = self.subs.iter().position(|s| s.name == room) {
            let sub = self.subs.remove(i);
            sub.room.unwatch(sub.watch);
            if self.next_sub > i {
                self.next_sub -= 1;
            }
        }
    }

    fn take_join(&mut self, room: &str) -> Result<(Name, Option<Position>), DecisionError> {
        if self.state != SessionState::Open {
            return Err(DecisionError::WrongState);
        }
        let i = self
            .joins
            .iter()
            .position(|(r, _)| r == room)
            .ok_or(DecisionError::NotPending)?;
        self.joins.remove(i).ok_or(DecisionError::NotPending)
    }

    fn handle_publish(
        &mut self,
        now: Instant,
        p: &crate::frame::Publish<'_>,
        hub: &Hub<H>,
        sink: &mut impl FnMut(ServerEvent<'_>),
    ) {
        // First: a publish the connection may not make touches neither the deduplication window
        // nor the rate, and a retry of it is refused again.
        if !self.grants.may_publish(p.room) {
            self.stats.refused += 1;
            self.push(Control::Error {
                code: ErrorCode::FORBIDDEN_ROOM,
                id: Some(p.id),
                room: Some(name(p.room)),
                retry_after_ms: None,
                reason: "not allowed to publish into this room",
            });
            sink(ServerEvent::PublishRefused {
                room: p.room,
                id: p.id,
            });
            return;
        }
        match hub.dedup(|d| d.check(self.client_id, p.id)) {
            Verdict::Duplicate(position) => {
                self.stats.duplicates += 1;
                self.push(Control::Ack(PublishAck { id: p.id, position }));
                return;
            }
            Verdict::Stale => {
                // Applied long ago and acknowledged since; a well-behaved client never retries it.
                self.push(Control::Error {
                    code: ErrorCode::PUBLISH_REJECTED,
                    id: Some(p.id),
                    room: None,
                    retry_after_ms: None,
                    reason: "publish id already applied long ago",
                });
                return;
            }
            Verdict::OutOfWindow => {
                self.rate_limited(p.id, 1000);
                return;
            }
            Verdict::New => {}
        }
        if self.publishes.contains(&p.id) {
            // Still with the application; its answer will acknowledge this retry too.
            return;
        }
        if !self.take_token(now) {
            let wait = 1000 / u32::from(self.config.publish_rate.max(1));
            self.rate_limited(p.id, wait.max(1));
            return;
        }
        match self.config.publish_mode {
            PublishMode::AppendToRoom => match self.append(now, p, hub) {
                Appended::Not(Verdict::Duplicate(position)) => {
                    // Appended by another connection of the same client since the check above.
                    self.stats.duplicates += 1;
                    self.push(Control::Ack(PublishAck { id: p.id, position }));
                }
                Appended::Not(_) => {}
                Appended::At(position) => {
                    self.stats.publishes += 1;
                    self.push(Control::Ack(PublishAck { id: p.id, position }));
                    sink(ServerEvent::Published {
                        room: p.room,
                        position,
                        kind: p.kind,
                        payload: p.payload.0,
                    });
                }
                Appended::Refused => {
                    self.push(Control::Error {
                        code: ErrorCode::PUBLISH_REJECTED,
                        id: Some(p.id),
                        room: Some(name(p.room)),
                        retry_after_ms: None,
                        reason: "room refused the event",
                    });
                }
                Appended::NoSuchRoom => {
                    self.stats.refused += 1;
                    self.push(Control::Error {
                        code: ErrorCode::NO_SUCH_ROOM,
                        id: Some(p.id),
                        room: Some(name(p.room)),
                        retry_after_ms: None,
                        reason: "no such room",
                    });
                    sink(ServerEvent::PublishRefused {
                        room: p.room,
                        id: p.id,
                    });
                }
            },
            PublishMode::Application => {
                self.publishes.push(p.id);
                sink(ServerEvent::Publish {
                    room: p.room,
                    id: p.id,
                    kind: p.kind,
                    payload: p.payload.0,
                });
            }
        }
    }

    /// Appends a new publish with the deduplication window held, so that two connections of one
    /// client retrying the same publish cannot both append it.
    fn append(&self, now: Instant, p: &crate::frame::Publish<'_>, hub: &Hub<H>) -> Appended {
        let client = self.client_id;
        hub.dedup(|d| match d.check(client, p.id) {
            Verdict::New => {
                let may_create = self.grants.may_create(p.room);
                let appended = hub.client_room(p.room, may_create, |room| {
                    room.emit(now, p.kind, p.payload.0, None)
                });
                match appended {
                    Ok(Ok(position)) => {
                        d.record(now, client, p.id, position);
                        Appended::At(position)
                    }
                    Err(HubError::NoSuchRoom) => {
                        d.record_refused(now, client, p.id);
                        Appended::NoSuchRoom
                    }
                    Ok(Err(_)) | Err(_) => {
                        d.record_refused(now, client, p.id);
                        Appended::Refused
                    }
                }
            }
            other => Appended::Not(other),
        })
    }

    fn rate_limited(&mut self, id: u64, retry_after_ms: u32) {
        self.strikes += 1;
        if self.strikes > self.config.rate_strikes {
            self.close_with(
                CloseCode::RATE_LIMITED,
                Some(retry_after_ms),
                "publish flood",
            );
            return;
        }
        self.push(Control::Error {
            code: ErrorCode::RATE_LIMITED,
            id: Some(id),
            room: None,
            retry_after_ms: Some(retry_after_ms),
            reason: "publish rate",
        });
    }

    /// Token bucket: `publish_rate` tokens a second, at most one second's worth banked.
    fn take_token(&mut self, now: Instant) -> bool {
        let rate = u64::from(self.config.publish_rate);
        let elapsed = now.saturating_duration_since(self.tokens_at).as_micros() as u64;
        let earned = elapsed.saturating_mul(rate) / 1_000_000;
        if earned > 0 {
            self.tokens = (u64::from(self.tokens) + earned).min(rate) as u32;
            // Keep the remainder of a partly earned token.
            self.tokens_at =
                self.tokens_at + Duration::from_micros(earned * 1_000_000 / rate.max(1));
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }

    fn interval_factor(&self) -> u32 {
        match self.quality.level() {
            Quality::Good => 1,
            Quality::Degraded => 2,
            Quality::Poor => 4,
        }
    }

    /// When the subscription's next batch is due, if it has anything to send.
    fn flush_at(&self, log: &RoomLog, sub: &At) -> Option<Instant> {
        if log.epoch() != sub.epoch
            || sub.cursor + 1 < log.oldest()
            || sub.cursor > log.head().offset
        {
            // A gap is due: at once.
            return Some(Instant::ZERO);
        }
        let waiting = log.head().offset - sub.cursor;
        if waiting == 0 {
            return None;
        }
        let Some(last) = sub.last_flush else {
            return Some(Instant::ZERO);
        };
        if waiting >= u64::from(self.max_batch) {
            return Some(Instant::ZERO);
        }
        // The next event to send decides the interval: metrics wait longer, so that coalescing
        // can drop superseded values before they go out.
        let mut keyed = false;
        let _ = log.read(sub.cursor, 1, usize::MAX, |e| keyed = e.keyed);
        let base = if keyed {
            self.config.metrics_interval
        } else {
            self.config.batch_interval
        };
        // After an idle interval this is already past: the event goes out at once.
        Some(last + base.saturating_mul(self.interval_factor()))
    }

    fn read_sub(&mut self, now: Instant, i: usize) -> Outcome {
        // The subscriptions are set aside while one is read through its own handle (no other
        // lock, no clone of the handle), so that the session's buffers can be written meanwhile;
        // taking a `Vec` out is free.
        let mut subs = core::mem::take(&mut self.subs);
        let outcome = match subs.get_mut(i) {
            Some(Sub { room, at, .. }) => room.read(|log| self.read_log(now, log, at)),
            None => Outcome::Idle,
        };
        self.subs = subs;
        outcome
    }

    fn read_log(&mut self, now: Instant, log: &RoomLog, sub: &mut At) -> Outcome {
        if log.epoch() != sub.epoch || sub.cursor > log.head().offset {
            // The client's position is from another epoch (or beyond the head, which only a lost
            // history explains): its positions are void. Continue from the oldest retained event.
            let position = Position::new(log.epoch(), log.oldest().saturating_sub(1));
            sub.epoch = position.epoch;
            sub.cursor = position.offset;
            return Outcome::Gap(Missed::Reset { position });
        }
        match self.flush_at(log, sub) {
            Some(at) if at <= now => {}
            _ => return Outcome::Idle,
        }
        let json = self.codec.is_text();
        let budget = if json {
            // The JSON envelope, and a comma between events.
            (self.max_frame as usize)
                .saturating_sub(MAX_NAME_LEN + 64)
                .saturating_sub(self.max_batch as usize)
        } else {
            (self.max_frame as usize).saturating_sub(MAX_NAME_LEN + 32)
        };
        self.scratch.clear();
        let scratch = &mut self.scratch;
        let max_batch = self.max_batch as usize;
        let read = match json {
            #[cfg(feature = "json")]
            true => {
                let text = &mut self.json_scratch;
                text.clear();
                log.read_json(sub.cursor, max_batch, budget, |e| {
                    scratch.extend_from_slice(e.encoded);
                    if !text.is_empty() {
                        text.push(b',');
                    }
                    // Without JSON forms in the log, the batch is transcoded from `scratch`.
                    text.extend_from_slice(e.json.unwrap_or_default());
                })
            }
            _ => log.read(sub.cursor, max_batch, budget, |e| {
                scratch.extend_from_slice(e.encoded);
            }),
        };
        match read {
            Read::Gap { first, last } => {
                sub.cursor = last;
                Outcome::Gap(Missed::Range {
                    epoch: sub.epoch,
                    first,
                    last,
                })
            }
            Read::Progress {
                cursor,
                delivered,
                bytes,
            } => {
                let from = sub.cursor;
                sub.cursor = cursor;
                if delivered == 0 {
                    return Outcome::Idle;
                }
                sub.last_flush = Some(now);
                if bytes > budget {
                    // A single event larger than this peer's frame limit: the log always hands
                    // out one event to make progress, but sending it would only get this peer
                    // closed, again and again. It is announced as missed instead.
                    return Outcome::Gap(Missed::Range {
                        epoch: sub.epoch,
                        first: from + 1,
                        last: cursor,
                    });
                }
                Outcome::Batch {
                    count: delivered,
                    json: json && log_keeps_json(log),
                }
            }
            Read::UpToDate | Read::Ahead => Outcome::Idle,
        }
    }
}

mod connection;
mod grants;
pub mod http;
mod peer;
pub mod polling;
pub use crate::error::TransportError;
pub use connection::{Body, BodyError, Connection, Counts, Decision, Framing, MAX_STREAM_FRAME};
pub use grants::{Grants, GrantsError, MAX_RULES};
pub use peer::{AuthRequest, Peer};
