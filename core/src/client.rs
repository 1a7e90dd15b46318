//! The client connection state machine.
//!
//! Adapters that move WebSocket messages or polling bodies drive `Connection` (feature
//! `alloc`) instead: it owns this machine and the codec, takes and gives bytes, and decides every
//! close code. The machine itself is for transports that carry frames some other way, and for
//! targets without a heap.
//!
//! # Driving it
//! The machine never touches a socket or a clock. An adapter runs this loop:
//!
//! 1. Feed what happened, each with `now`: [`Client::handle_connected`] when the transport opened,
//!    [`Client::handle_disconnected`] when it closed or failed to open, [`Client::handle_frame`] for
//!    each decoded frame, [`Client::handle_timeout`] when the deadline from step 4 passed.
//!    Application calls ([`Client::subscribe`], [`Client::publish`], ...) may come at any time.
//! 2. Drain [`Client::poll_transmit`] and send each frame, in order.
//! 3. Act on [`Client::poll_action`]: open a transport, or close it (after step 2, so a close frame
//!    goes out first).
//! 4. Sleep until [`Client::poll_timeout`], new bytes, or an application call; then go to 1.
//!
//! Application events (state changes, room events, gaps, acks) are handed to the `sink` closure of
//! the call that caused them, in order; events borrow from the frame that carried them, so nothing
//! is copied or queued and nothing can overflow. A spurious `handle_timeout` is a no-op.
//!
//! ```
//! use eventwire_core::client::{Action, Client, ClientConfig, ClientEvent};
//! use eventwire_core::frame::{Batch, BatchEvent, Frame, Position, Subscribed, Welcome};
//! use eventwire_core::payload::Payload;
//! use eventwire_core::frame::Seq;
//! use eventwire_core::time::Instant;
//!
//! let mut client: Client = Client::new(ClientConfig::new(42), 7);
//! client.subscribe("agents").unwrap();
//! let now = Instant::from_millis(0);
//! client.connect(now, &mut |_| {});
//! assert_eq!(client.poll_action(), Some(Action::Connect));
//! client.handle_connected(now, &mut |_| {});
//! assert!(matches!(client.poll_transmit(now), Some(Frame::Hello(_))));
//!
//! // What a server would answer: welcome, the join, then a batch.
//! let welcome = Frame::Welcome(Welcome {
//!     version: 1, session_id: 1, heartbeat_ms: 15_000, max_frame: 65_536,
//!     max_subscriptions: 64, publish_rate: 100,
//! });
//! let joined = Frame::Subscribed(Subscribed { room: "agents", position: Position::new(1, 0) });
//! let events = [BatchEvent { offset: 1, kind: "agent.created", payload: Payload(b"{}") }];
//! let batch = Frame::Batch(Batch { room: "agents", epoch: 1, events: Seq::from_slice(&events) });
//! let mut seen = Vec::new();
//! for frame in [&welcome, &joined, &batch] {
//!     client.handle_frame(now, frame, &mut |e| {
//!         if let ClientEvent::Event { kind, position, .. } = e {
//!             seen.push((kind.to_string(), position));
//!         }
//!     });
//! }
//! assert_eq!(seen, [("agent.created".to_string(), Position::new(1, 1))]);
//! assert_eq!(client.position("agents"), Some(Position::new(1, 1)));
//! ```
//!
//! # States
//! ```text
//! Idle --connect--> Connecting --transport open--> Handshaking --welcome--> Open
//!                       ^                               |                     |
//!                       |                 timeout / loss / retryable close    |
//!                       +----- Backoff <--------------------------------------+
//! any --user close / fatal close (bad auth, version) / attempts exhausted--> Closed
//! ```
//!
//! # Guarantee kept here
//! Per room the client tracks the last position delivered. Deliveries at or before it are
//! duplicates of a replay and dropped; on every reconnect each room is resumed from it (in the
//! hello), so the server replays what was missed or announces a gap. An event from an epoch the
//! server did not announce is a protocol error: the client reconnects rather than deliver it.
//! Join answers and range gaps move the position forward within its epoch only; a reset gap is
//! the one thing that moves it back or to another epoch.

use core::fmt;
use core::time::Duration;

use heapless::{Deque, String, Vec};

use crate::backoff::{Backoff, BackoffPolicy};
use crate::code::{CloseCode, ErrorCode};
use crate::frame::{
    Close, Frame, Hello, Missed, Ping, Position, Resume, Subscribe, Unsubscribe, Welcome,
    MAX_HELLO_ROOMS, PROTOCOL_VERSION,
};
use crate::outbox::{Outbox, OutboxError};
use crate::rng::Rng;
use crate::rtt::{LinkQuality, Quality, QualityConfig};
use crate::seq::Seq;
use crate::text::{
    check_name, check_token, Invalid, MAX_NAME_LEN, MAX_SAFE_INTEGER, MAX_TOKEN_LEN,
};
use crate::time::Instant;

/// Bytes reserved for the encoded room list of a hello; rooms that do not fit are subscribed
/// after the welcome.
const HELLO_ROOM_BYTES: usize = 2048;

/// How a client connects and behaves. Build with [`ClientConfig::new`] and the setters.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client's identity, kept across reconnects (at most 2^53 - 1). It must be fresh for
    /// each outbox: a restarted process that reuses an id restarts publish ids at 1, and the
    /// server would take its new publishes for retries of old ones.
    pub client_id: u64,
    /// Token handed to the server's authentication hook.
    pub token: Option<String<MAX_TOKEN_LEN>>,
    /// Reconnect policy.
    pub backoff: BackoffPolicy,
    /// Link quality thresholds.
    pub quality: QualityConfig,
    /// Longest time from starting a connection to receiving the welcome. Default 10 s.
    pub connect_timeout: Duration,
    /// The link is dead after this many heartbeat intervals without hearing anything. Default 3.
    pub dead_after: u32,
    /// Largest frame the client accepts. Default 64 KiB.
    pub max_frame: u32,
    /// Most events per batch the client wants. Default 50.
    pub max_batch: u16,
    /// Most publishes sent and not yet acknowledged. Default 32; servers keep a deduplication
    /// window of at least this.
    pub publish_window: u16,
}

impl ClientConfig {
    /// Defaults for a client with identity `client_id` (masked to 53 bits).
    pub fn new(client_id: u64) -> Self {
        ClientConfig {
            client_id: client_id & MAX_SAFE_INTEGER,
            token: None,
            backoff: BackoffPolicy::new(),
            quality: QualityConfig::new(),
            connect_timeout: Duration::from_secs(10),
            dead_after: 3,
            max_frame: 64 * 1024,
            max_batch: 50,
            publish_window: 32,
        }
    }

    /// Sets the authentication token.
    pub fn token(mut self, token: &str) -> Result<Self, Invalid> {
        check_token(token)?;
        let mut s = String::new();
        s.push_str(token).map_err(|_| Invalid::Token)?;
        self.token = Some(s);
        Ok(self)
    }

    /// Sets the reconnect policy.
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// Sets the link quality thresholds.
    pub fn quality(mut self, quality: QualityConfig) -> Self {
        self.quality = quality;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how many silent heartbeat intervals make the link dead.
    pub fn dead_after(mut self, intervals: u32) -> Self {
        self.dead_after = intervals.max(1);
        self
    }

    /// Sets the largest frame the client accepts.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets the batch size the client asks for.
    pub fn max_batch(mut self, events: u16) -> Self {
        self.max_batch = events.max(1);
        self
    }

    /// Sets how many publishes may be in flight.
    pub fn publish_window(mut self, publishes: u16) -> Self {
        self.publish_window = publishes.max(1);
        self
    }
}

/// The connection state, as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Never asked to connect.
    Idle,
    /// Waiting for the transport to open.
    Connecting,
    /// Hello sent, waiting for the welcome.
    Handshaking,
    /// Session open.
    Open,
    /// Waiting before the next attempt.
    Backoff,
    /// Stopped for good (user close, fatal rejection, or attempts exhausted).
    Closed,
}

/// What the adapter should do with the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open a transport to the server, then call [`Client::handle_connected`] (or
    /// [`Client::handle_disconnected`] if it fails).
    Connect,
    /// Close the transport (after sending what `poll_transmit` gave), with this code.
    Disconnect {
        /// The close code, for transports that carry one (WebSocket).
        code: CloseCode,
    },
}

/// Something the application should know, handed to the sink of the call that caused it.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent<'a> {
    /// A connection attempt starts (`attempt` counts failures since the last stable session).
    Connecting {
        /// Failed attempts so far.
        attempt: u32,
    },
    /// The session is open; every room resumes from its position.
    Open {
        /// The server's session id.
        session_id: u64,
    },
    /// The connection was lost or failed; the next attempt comes after `delay`.
    Reconnecting {
        /// Failed attempts so far.
        attempt: u32,
        /// Wait before the next attempt.
        delay: Duration,
        /// The close code the server or this machine gave, if any.
        code: Option<CloseCode>,
    },
    /// The client stopped for good.
    Closed {
        /// Why: a user close, a fatal code from the server, or `None` when attempts ran out.
        code: Option<CloseCode>,
        /// The server's reason, if it sent one.
        reason: &'a str,
    },
    /// An event of a subscribed room, in order, at most once.
    Event {
        /// The room.
        room: &'a str,
        /// Its position.
        position: Position,
        /// Its kind.
        kind: &'a str,
        /// The application's bytes.
        payload: &'a [u8],
    },
    /// Events of a room were lost, as announced by the server.
    Gap {
        /// The room.
        room: &'a str,
        /// What was missed.
        missed: Missed,
    },
    /// A join was accepted; events after `position` follow.
    Subscribed {
        /// The room.
        room: &'a str,
        /// Where delivery continues after.
        position: Position,
    },
    /// A join was refused; the room is no longer subscribed.
    SubscribeFailed {
        /// The room.
        room: &'a str,
        /// Why.
        code: ErrorCode,
    },
    /// A publish reached its room (exactly once).
    PublishAcked {
        /// The id [`Client::publish`] returned.
        id: u64,
        /// Where it landed.
        position: Position,
    },
    /// A publish was refused for good.
    PublishFailed {
        /// The id [`Client::publish`] returned.
        id: u64,
        /// Why.
        code: ErrorCode,
    },
    /// The link quality level changed.
    Quality(Quality),
    /// The server reported an error that concerns no room or publish of this client.
    ServerError {
        /// The code.
        code: ErrorCode,
        /// The server's reason.
        reason: &'a str,
    },
}

/// Why an application call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientError {
    /// The client holds as many rooms as its capacity.
    TooManyRooms,
    /// A name breaks the name rules.
    Invalid(Invalid),
    /// The outbox refused the publish.
    Outbox(OutboxError),
    /// The client is closed for good.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::TooManyRooms => f.write_str("room capacity reached"),
            ClientError::Invalid(i) => write!(f, "{i}"),
            ClientError::Outbox(e) => write!(f, "{e}"),
            ClientError::Closed => f.write_str("client closed"),
        }
    }
}

impl core::error::Error for ClientError {}

/// Counters for observability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Events delivered to the application.
    pub events: u64,
    /// Replayed events dropped because they were already delivered.
    pub duplicates: u64,
    /// Gap notices received.
    pub gaps: u64,
    /// Sessions opened.
    pub sessions: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    /// Not yet asked of the current session.
    Pending,
    /// Asked (in the hello or a subscribe), no answer yet.
    Requested,
    /// Accepted.
    Active,
}

#[derive(Debug, Clone)]
struct Sub {
    room: String<MAX_NAME_LEN>,
    last: Option<Position>,
    state: SubState,
    /// The application left the room; the unsubscribe goes out once the server answered every
    /// subscribe of it, so no late answer can be taken for a later subscription's. Meanwhile
    /// positions are tracked but nothing is delivered.
    leaving: bool,
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    Connect,
    Reconnect,
    Heartbeat,
    DeadLink,
}
const TIMERS: usize = 4;

/// The client state machine; see the module docs for the driving loop. `ROOMS` bounds the rooms
/// it can hold, `OUTBOX` and `OUTBOX_BYTES` the publishes awaiting acknowledgement.
pub struct Client<
    const ROOMS: usize = 32,
    const OUTBOX: usize = 64,
    const OUTBOX_BYTES: usize = 16384,
> {
    config: ClientConfig,
    rng: Rng,
    backoff: Backoff,
    quality: LinkQuality,
    state: ConnState,
    subs: Vec<Sub, ROOMS>,
    unsub_sent: String<MAX_NAME_LEN>,
    outbox: Outbox<OUTBOX, OUTBOX_BYTES>,
    timers: [Option<Instant>; TIMERS],
    /// Disconnect then connect can both be due from one input (a zero backoff delay).
    actions: Deque<Action, 4>,
    hello_pending: bool,
    hello_rooms: Vec<u8, HELLO_ROOM_BYTES>,
    pongs: Deque<u64, 4>,
    ping_due: bool,
    outstanding_ping: Option<(u64, Instant)>,
    next_nonce: u64,
    close_pending: Option<CloseCode>,
    heartbeat: Duration,
    session: Option<Welcome>,
    opened_at: Instant,
    stats: ClientStats,
}

impl<const ROOMS: usize, const OUTBOX: usize, const OUTBOX_BYTES: usize>
    Client<ROOMS, OUTBOX, OUTBOX_BYTES>
{
    /// A client in state [`ConnState::Idle`]. `seed` drives the backoff jitter and ping nonces;
    /// the same seed and inputs give the same outputs.
    pub fn new(config: ClientConfig, seed: u64) -> Self {
        Client {
            backoff: Backoff::new(config.backoff),
            quality: LinkQuality::new(config.quality),
            config,
            rng: Rng::new(seed),
            state: ConnState::Idle,
            subs: Vec::new(),
            unsub_sent: String::new(),
            outbox: Outbox::new(),
            timers: [None; TIMERS],
            actions: Deque::new(),
            hello_pending: false,
            hello_rooms: Vec::new(),
            pongs: Deque::new(),
            ping_due: false,
            outstanding_ping: None,
            next_nonce: 1,
            close_pending: None,
            heartbeat: Duration::from_secs(15),
            session: None,
            opened_at: Instant::ZERO,
            stats: ClientStats::default(),
        }
    }

    // ---- getters

    /// The connection state.
    pub fn state(&self) -> ConnState {
        self.state
    }

    /// The link quality level.
    pub fn quality(&self) -> Quality {
        self.quality.level()
    }

    /// The smoothed round-trip time, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.quality.rtt().srtt()
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// The last position delivered in `room`, if subscribed and any.
    pub fn position(&self, room: &str) -> Option<Position> {
        self.sub(room).filter(|s| !s.leaving).and_then(|s| s.last)
    }

    /// The rooms held, with their last positions.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, Option<Position>)> {
        self.subs
            .iter()
            .filter(|s| !s.leaving)
            .map(|s| (s.room.as_str(), s.last))
    }

    /// Publishes awaiting acknowledgement.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Bytes held by the outbox.
    pub fn outbox_bytes(&self) -> usize {
        self.outbox.bytes()
    }

    /// The welcome of the open session.
    pub fn session(&self) -> Option<&Welcome> {
        self.session
            .as_ref()
            .filter(|_| self.state == ConnState::Open)
    }

    // ---- application commands

    /// Starts connecting (from `Idle` or `Closed`); a no-op in any other state.
    pub fn connect(&mut self, now: Instant, sink: &mut impl FnMut(ClientEvent<'_>)) {
        if matches!(self.state, ConnState::Idle | ConnState::Closed) {
            self.backoff.reset();
            self.start_connect(now, sink);
        }
    }

    /// Joins `room` at its live head (or keeps the position already held).
    pub fn subscribe(&mut self, room: &str) -> Result<(), ClientError> {
        self.add_sub(room, None)
    }

    /// Joins `room`, resuming after `from`.
    pub fn subscribe_from(&mut self, room: &str, from: Position) -> Result<(), ClientError> {
        self.add_sub(room, Some(from))
    }

    fn add_sub(&mut self, room: &str, from: Option<Position>) -> Result<(), ClientError> {
        check_name(room, "room").map_err(ClientError::Invalid)?;
        if self.state == ConnState::Closed {
            return Err(ClientError::Closed);
        }
        if let Some(sub) = self.subs.iter_mut().find(|s| s.room == room) {
            if sub.leaving {
                // Joined again before the unsubscribe went out: stay. An answered subscription
                // is asked again from where it stands, so the application learns where delivery
                // continues; an unanswered one gets its answer.
                sub.leaving = false;
                if sub.state == SubState::Active {
                    sub.state = SubState::Pending;
                }
            } else if from.is_some() && sub.state == SubState::Pending {
                sub.last = from;
            }
            return Ok(());
        }
        let mut name = String::new();
        name.push_str(room)
            .map_err(|_| ClientError::Invalid(Invalid::Name { field: "room" }))?;
        self.subs
            .push(Sub {
                room: name,
                last: from,
                state: SubState::Pending,
                leaving: false,
            })
            .map_err(|_| ClientError::TooManyRooms)
    }

    /// Leaves `room`: nothing more of it is delivered. Returns whether it was held.
    pub fn unsubscribe(&mut self, room: &str) -> bool {
        let Some(i) = self.subs.iter().position(|s| s.room == room && !s.leaving) else {
            return false;
        };
        if self.subs[i].state == SubState::Pending {
            // The current session never heard of it.
            self.subs.swap_remove(i);
        } else {
            self.subs[i].leaving = true;
        }
        true
    }

    /// Queues an upstream event and returns its id; it is sent now or after reconnecting and
    /// reported as [`ClientEvent::PublishAcked`] or [`ClientEvent::PublishFailed`]. A full
    /// outbox refuses it here.
    pub fn publish(&mut self, room: &str, kind: &str, payload: &[u8]) -> Result<u64, ClientError> {
        if self.state == ConnState::Closed {
            return Err(ClientError::Closed);
        }
        self.outbox
            .push(room, kind, payload)
            .map_err(ClientError::Outbox)
    }

    /// Ends the session for good: sends a normal close and asks the adapter to disconnect.
    pub fn close(&mut self, _now: Instant, sink: &mut impl FnMut(ClientEvent<'_>)) {
        if self.state == ConnState::Closed {
            return;
        }
        let live = matches!(self.state, ConnState::Handshaking | ConnState::Open);
        if live {
            self.close_pending = Some(CloseCode::NORMAL);
        }
        if live || self.state == ConnState::Connecting {
            self.act(Action::Disconnect {
                code: CloseCode::NORMAL,
            });
        }
        self.enter_closed(Some(CloseCode::NORMAL), "", sink);
    }

    // ---- inputs

    /// The transport asked for by [`Action::Connect`] is open.
    pub fn handle_connected(&mut self, _now: Instant, _sink: &mut impl FnMut(ClientEvent<'_>)) {
        // `now` and `sink` are taken like by every input; opening reports nothing by itself
        // (the welcome does), and the connect deadline keeps running through the handshake.
        if self.state != ConnState::Connecting {
            return;
        }
        self.state = ConnState::Handshaking;
        self.hello_pending = true;
        self.build_hello_rooms();
    }

    /// The transport closed, or failed to open.
    pub fn handle_disconnected(&mut self, now: Instant, sink: &mut impl FnMut(ClientEvent<'_>)) {
        self.lost(now, None, None, sink);
    }

    /// A frame arrived. Events it carries are handed to `sink`, borrowing from the frame.
    pub fn handle_frame<'f>(
        &mut self,
        now: Instant,
        frame: &Frame<'f>,
        sink: &mut impl FnMut(ClientEvent<'f>),
    ) {
        if !matches!(self.state, ConnState::Handshaking | ConnState::Open) {
            return;
        }
        self.arm_dead_link(now);
        match (self.state, frame) {
            (_, Frame::Close(c)) => self.handle_close(now, c, sink),
            (_, Frame::Ping(p)) => {
                if self.pongs.is_full() {
                    // Only the newest pings matter for the peer's RTT estimate.
                    self.pongs.pop_front();
                }
                let _ = self.pongs.push_back(p.nonce);
            }
            (ConnState::Handshaking, Frame::Welcome(w)) => self.handle_welcome(now, w, sink),
            (ConnState::Open, Frame::Pong(p)) => {
                if let Some((nonce, sent)) = self.outstanding_ping {
                    if nonce == p.nonce {
                        self.outstanding_ping = None;
                        if let Some(q) = self.quality.on_pong(now.saturating_duration_since(sent)) {
                            sink(ClientEvent::Quality(q));
                        }
                    }
                }
            }
            (ConnState::Open, Frame::Event(e)) => {
                self.deliver(now, e.room, e.position, e.kind, e.payload.0, sink);
            }
            (ConnState::Open, Frame::Batch(b)) => {
                for e in b.events.iter() {
                    let position = Position::new(b.epoch, e.offset);
                    if !self.deliver(now, b.room, position, e.kind, e.payload.0, sink) {
                        return;
                    }
                }
            }
            (ConnState::Open, Frame::Subscribed(s)) => {
                // Each subscribe gets exactly one answer, in order; only an asked one is taken.
                if let Some(sub) = self.sub_mut(s.room) {
                    if sub.state == SubState::Requested {
                        sub.state = SubState::Active;
                        sub.last = resume_point(sub.last, s.position);
                        if !sub.leaving {
                            sink(ClientEvent::Subscribed {
                                room: s.room,
                                position: s.position,
                            });
                        }
                    }
                }
            }
            (ConnState::Open, Frame::Gap(g)) => {
                if let Some(sub) = self.sub_mut(g.room) {
                    if sub.state == SubState::Active {
                        sub.last = match g.missed {
                            Missed::Range { epoch, last, .. } => {
                                resume_point(sub.last, Position::new(epoch, last))
                            }
                            // Positions held are void: the only way to another epoch, or back.
                            Missed::Reset { position } => Some(position),
                        };
                        if !sub.leaving {
                            self.stats.gaps += 1;
                            sink(ClientEvent::Gap {
                                room: g.room,
                                missed: g.missed,
                            });
                        }
                    }
                }
            }
            (ConnState::Open, Frame::PublishAck(a)) => {
                if self.outbox.ack(a.id) {
                    sink(ClientEvent::PublishAcked {
                        id: a.id,
                        position: a.position,
                    });
                }
            }
            (ConnState::Open, Frame::Error(e)) => self.handle_error(now, e, sink),
            _ => self.fail(now, CloseCode::PROTOCOL_ERROR, sink),
        }
    }

    /// Timers that are due fire; calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut impl FnMut(ClientEvent<'_>)) {
        if self.due(Timer::Connect, now) {
            self.timers[Timer::Connect as usize] = None;
            if matches!(self.state, ConnState::Connecting | ConnState::Handshaking) {
                let code = CloseCode::HANDSHAKE_TIMEOUT;
                if self.state == ConnState::Handshaking {
                    self.close_pending = Some(code);
                }
                self.act(Action::Disconnect { code });
                self.lost(now, None, Some(code), sink);
            }
        }
        if self.due(Timer::Reconnect, now) {
            self.timers[Timer::Reconnect as usize] = None;
            if self.state == ConnState::Backoff {
                self.start_connect(now, sink);
            }
        }
        if self.due(Timer::DeadLink, now) {
            self.timers[Timer::DeadLink as usize] = None;
            if self.state == ConnState::Open {
                self.fail(now, CloseCode::HEARTBEAT_TIMEOUT, sink);
            }
        }
        if self.due(Timer::Heartbeat, now) {
            self.timers[Timer::Heartbeat as usize] = Some(now + self.heartbeat);
            if self.state == ConnState::Open {
                if self.outstanding_ping.take().is_some() {
                    if let Some(q) = self.quality.on_missed_pong() {
                        sink(ClientEvent::Quality(q));
                    }
                }
                self.ping_due = true;
            }
        }
    }

    // ---- outputs

    /// The next frame to send, if any. Call until `None` after every input.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Frame<'_>> {
        if let Some(code) = self.close_pending.take() {
            return Some(Frame::Close(Close {
                code,
                retry_after_ms: None,
                reason: "",
            }));
        }
        match self.state {
            ConnState::Handshaking if self.hello_pending => {
                self.hello_pending = false;
                Some(Frame::Hello(Hello {
                    version: PROTOCOL_VERSION,
                    client_id: self.config.client_id,
                    token: self.config.token.as_deref(),
                    max_frame: self.config.max_frame,
                    max_batch: self.config.max_batch,
                    rooms: Seq::from_encoded(&self.hello_rooms),
                }))
            }
            ConnState::Open => self.poll_open(now),
            _ => None,
        }
    }

    fn poll_open(&mut self, now: Instant) -> Option<Frame<'_>> {
        if let Some(nonce) = self.pongs.pop_front() {
            return Some(Frame::Pong(Ping { nonce }));
        }
        if self.ping_due {
            self.ping_due = false;
            let nonce = self.next_nonce;
            self.next_nonce = (self.next_nonce + 1) & MAX_SAFE_INTEGER;
            self.outstanding_ping = Some((nonce, now));
            return Some(Frame::Ping(Ping { nonce }));
        }
        if let Some(i) = self
            .subs
            .iter()
            .position(|s| s.leaving && s.state == SubState::Active)
        {
            // The frame borrows the name, so it moves to a slot that lives until the next call.
            self.unsub_sent = self.subs.swap_remove(i).room;
            return Some(Frame::Unsubscribe(Unsubscribe {
                room: self.unsub_sent.as_str(),
            }));
        }
        if let Some(i) = self.subs.iter().position(|s| s.state == SubState::Pending) {
            self.subs[i].state = SubState::Requested;
            let sub = &self.subs[i];
            return Some(Frame::Subscribe(Subscribe {
                room: sub.room.as_str(),
                from: sub.last,
            }));
        }
        let window = self.config.publish_window as usize;
        self.outbox.next_to_send(now, window).map(Frame::Publish)
    }

    /// What the adapter should do with the transport, if anything.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next instant `handle_timeout` has work, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = self.timers.iter().flatten().copied();
        let outbox = if self.state == ConnState::Open {
            self.outbox.next_deadline()
        } else {
            None
        };
        timers.chain(outbox).min()
    }
}

/// Where a room's delivery continues after a join answer or a range gap at `to`, given the last
/// position `last` held. Neither may move it back within its epoch: what was delivered would be
/// delivered again. Neither may move it to another epoch either: only a reset gap announces one
/// (PROTOCOL 7.1, "Resume"), so an event of that epoch then makes the client reconnect rather
/// than deliver it. An honest server answers a join with the client's own position (or the head
/// when it had none) and names ranges after it, so this only guards against a faulty one.
fn resume_point(last: Option<Position>, to: Position) -> Option<Position> {
    match last {
        Some(last) if last.epoch != to.epoch || last.offset > to.offset => Some(last),
        _ => Some(to),
    }
}

// ---- internals
impl<const ROOMS: usize, const OUTBOX: usize, const OUTBOX_BYTES: usize>
    Client<ROOMS, OUTBOX, OUTBOX_BYTES>
{
    fn act(&mut self, action: Action) {
        if self.actions.is_full() {
            // Only the latest intent matters once this many are unread.
            self.actions.pop_front();
        }
        let _ = self.actions.push_back(action);
    }

    fn sub(&self, room: &str) -> Option<&Sub> {
        self.subs.iter().find(|s| s.room == room)
    }

    fn sub_mut(&mut self, room: &str) -> Option<&mut Sub> {
        self.subs.iter_mut().find(|s| s.room == room)
    }

    fn due(&self, timer: Timer, now: Instant) -> bool {
        self.timers[timer as usize].is_some_and(|t| t <= now)
    }

    fn arm_dead_link(&mut self, now: Instant) {
        if self.state == ConnState::Open {
            let silence = self.heartbeat.saturating_mul(self.config.dead_after);
            self.timers[Timer::DeadLink as usize] = Some(now + silence);
        }
    }

    fn start_connect(&mut self, now: Instant, sink: &mut impl FnMut(ClientEvent<'_>)) {
        self.state = ConnState::Connecting;
        self.act(Action::Connect);
        self.timers = [None; TIMERS];
        self.timers[Timer::Connect as usize] = Some(now + self.config.connect_timeout);
        sink(ClientEvent::Connecting {
            attempt: self.backoff.attempts(),
        });
    }

    /// Encodes the resume list of the hello: as many rooms as fit, each from its last position.
    fn build_hello_rooms(&mut self) {
        self.hello_rooms.clear();
        let mut included = 0;
        for sub in self.subs.iter_mut() {
            sub.state = SubState::Pending;
            if included == MAX_HELLO_ROOMS {
                continue;
            }
            let resume = Resume {
                room: sub.room.as_str(),
                from: sub.last,
            };
            let mut buf = [0u8; MAX_NAME_LEN + 24];
            let Ok(bytes) = postcard::to_slice(&resume, &mut buf) else {
                continue;
            };
            if self.hello_rooms.extend_from_slice(bytes).is_ok() {
                sub.state = SubState::Requested;
                included += 1;
            }
        }
    }

    fn handle_welcome<'f>(
        &mut self,
        now: Instant,
        w: &Welcome,
        sink: &mut impl FnMut(ClientEvent<'f>),
    ) {
        if w.version == 0 || w.version > PROTOCOL_VERSION {
            self.close_pending = Some(CloseCode::UNSUPPORTED_VERSION);
            self.act(Action::Disconnect {
                code: CloseCode::UNSUPPORTED_VERSION,
            });
            self.enter_closed(Some(CloseCode::UNSUPPORTED_VERSION), "", sink);
            return;
        }
        self.state = ConnState::Open;
        self.session = Some(*w);
        self.opened_at = now;
        self.stats.sessions += 1;
        self.heartbeat = Duration::from_millis(u64::from(w.heartbeat_ms.max(10)));
        self.timers[Timer::Connect as usize] = None;
        self.timers[Timer::Heartbeat as usize] = Some(now + self.heartbeat);
        self.arm_dead_link(now);
        sink(ClientEvent::Open {
            session_id: w.session_id,
        });
    }

    /// Delivers one event if it is new; returns false if the connection was failed instead.
    fn deliver<'f>(
        &mut self,
        now: Instant,
        room: &'f str,
        position: Position,
        kind: &'f str,
        payload: &'f [u8],
        sink: &mut impl FnMut(ClientEvent<'f>),
    ) -> bool {
        let Some(sub) = self
            .subs
            .iter_mut()
            .find(|s| s.room == room && s.state == SubState::Active)
        else {
            // Left, or not answered yet: these belong to an earlier subscription, and the
            // current one will be served from its own position.
            return true;
        };
        match sub.last {
            Some(last) if last.epoch == position.epoch && position.offset <= last.offset => {
                self.stats.duplicates += 1;
                return true;
            }
            Some(last) if last.epoch != position.epoch => {
                // A new epoch must be announced by a reset gap first; delivering would hide a
                // loss, so resume instead and let the server announce it.
                self.fail(now, CloseCode::PROTOCOL_ERROR, sink);
                return false;
            }
            _ => {}
        }
        sub.last = Some(position);
        if sub.leaving {
            return true;
        }
        self.stats.events += 1;
        sink(ClientEvent::Event {
            room,
            position,
            kind,
            payload,
        });
        true
    }

    fn handle_error<'f>(
        &mut self,
        now: Instant,
        e: &crate::frame::ErrorFrame<'f>,
        sink: &mut impl FnMut(ClientEvent<'f>),
    ) {
        match (e.id, e.room, e.code) {
            (Some(id), _, ErrorCode::RATE_LIMITED) => {
                let wait = Duration::from_millis(u64::from(e.retry_after_ms.unwrap_or(1000)));
                self.outbox.defer(id, now + wait);
            }
            (Some(id), _, code) => {
                if self.outbox.reject(id) {
                    sink(ClientEvent::PublishFailed { id, code });
                }
            }
            (None, Some(room), code)
                if matches!(
                    code,
                    ErrorCode::FORBIDDEN_ROOM
                        | ErrorCode::TOO_MANY_SUBSCRIPTIONS
                        | ErrorCode::NO_SUCH_ROOM
                ) =>
            {
                if let Some(i) = self
                    .subs
                    .iter()
                    .position(|s| s.room == room && s.state == SubState::Requested)
                {
                    if !self.subs.swap_remove(i).leaving {
                        sink(ClientEvent::SubscribeFailed { room, code });
                    }
                }
            }
            (_, _, code) => sink(ClientEvent::ServerError {
                code,
                reason: e.reason,
            }),
        }
    }

    fn handle_close<'f>(
        &mut self,
        now: Instant,
        c: &Close<'f>,
        sink: &mut impl FnMut(ClientEvent<'f>),
    ) {
        self.act(Action::Disconnect { code: c.code });
        if c.code.should_reconnect() {
            let hint = c
                .retry_after_ms
                .map(|ms| Duration::from_millis(u64::from(ms)));
            self.lost(now, hint, Some(c.code), sink);
        } else {
            self.enter_closed(Some(c.code), c.reason, sink);
        }
    }

    /// This side ends the connection with `code` and reconnects.
    fn fail<'f>(&mut self, now: Instant, code: CloseCode, sink: &mut impl FnMut(ClientEvent<'f>)) {
        self.close_pending = Some(code);
        self.act(Action::Disconnect { code });
        self.lost(now, None, Some(code), sink);
    }

    fn lost<'f>(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
        code: Option<CloseCode>,
        sink: &mut impl FnMut(ClientEvent<'f>),
    ) {
        match self.state {
            ConnState::Connecting | ConnState::Handshaking => {}
            ConnState::Open => self
                .backoff
                .connection_ended(now.saturating_duration_since(self.opened_at)),
            ConnState::Idle | ConnState::Backoff | ConnState::Closed => return,
        }
        self.reset_session();
        match self.backoff.next_delay(&mut self.rng, retry_after) {
            Some(delay) => {
                self.state = ConnState::Backoff;
                self.timers[Timer::Reconnect as usize] = Some(now + delay);
                sink(ClientEvent::Reconnecting {
                    attempt: self.backoff.attempts(),
                    delay,
                    code,
                });
            }
            None => self.enter_closed(None, "", sink),
        }
    }

    fn reset_session(&mut self) {
        self.timers = [None; TIMERS];
        self.outbox.requeue();
        // Rooms being left are simply not resumed.
        self.subs.retain(|s| !s.leaving);
        self.pongs.clear();
        self.ping_due = false;
        self.outstanding_ping = None;
        self.hello_pending = false;
        for sub in self.subs.iter_mut() {
            sub.state = SubState::Pending;
        }
    }

    fn enter_closed<'f>(
        &mut self,
        code: Option<CloseCode>,
        reason: &'f str,
        sink: &mut impl FnMut(ClientEvent<'f>),
    ) {
        self.reset_session();
        self.state = ConnState::Closed;
        sink(ClientEvent::Closed { code, reason });
    }
}

mod report;
pub mod url;
pub use report::Level;
pub use url::{UrlError, WsUrl};

#[cfg(feature = "alloc")]
pub mod call;
#[cfg(feature = "alloc")]
mod connection;
#[cfg(feature = "alloc")]
pub mod fallback;
#[cfg(feature = "alloc")]
pub mod handle;
#[cfg(feature = "alloc")]
mod owned;
#[cfg(feature = "alloc")]
pub use crate::error::TransportError;
#[cfg(feature = "alloc")]
pub use call::{Call, Channel};
#[cfg(feature = "alloc")]
pub use connection::{Connection, Counts};
#[cfg(feature = "alloc")]
pub use fallback::{Fallback, PollingConfig, Transport};
#[cfg(all(feature = "std", feature = "json"))]
pub use handle::HandleError;
#[cfg(feature = "alloc")]
pub use handle::{AdapterOptions, HandleConnection, Options};
#[cfg(feature = "alloc")]
pub use owned::{OwnedEvent, Status};
