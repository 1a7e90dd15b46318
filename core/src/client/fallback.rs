//! The client's HTTP long-polling fallback, as decisions (PROTOCOL.md section 1.4; feature
//! `alloc`).
//!
//! A polling **session** plays the part of a WebSocket connection for the [`Connection`]: when
//! the connection asks for a transport ([`Action::Connect`]) and the last
//! [`PollingConfig::after_failures`] WebSocket attempts failed in a row, [`Fallback::connect`]
//! answers [`Transport::Polling`] and the adapter opens a session instead. [`Fallback`] decides
//! everything about it; the adapter only does the HTTP:
//!
//! - every request carries the elements [`Connection::poll_transmit_body`] gave since the last
//!   one (at most [`MAX_FRAMES`], and none when there are none: a plain long-poll);
//! - one request is always held by the server: the next goes out as soon as a response came
//!   back. Frames to send while one is held go out in a second request at once (the server then
//!   returns the held one). A session's first request is answered before any other goes out: it
//!   brings the session token. Responses are handled in the order of their requests;
//! - every request carries its number in the session ([`Outgoing::seq`], the header
//!   `Eventwire-Seq`: 1, 2, 3 ... in the order they are sent), by which the server tells which
//!   request is newer when two overtake each other on the way: it gives frames only to requests
//!   of increasing numbers, so responses read in the order of the requests bring the frames in
//!   order;
//! - any failure (an error, a status other than 200, a session without a token, a body that
//!   does not decode) abandons the session, and the connection learns it is disconnected: it
//!   backs off and reconnects with resume, so nothing is lost;
//! - while a session is in use, a WebSocket **probe** is due every
//!   [`PollingConfig::upgrade_every`] ([`Fallback::poll_timeout`]). Once one opens, the session
//!   is abandoned like a lost connection and the failure count starts over, so the next
//!   connection is a WebSocket. The switch is a reconnect with resume: lossless by positions.
//!
//! # Driving it
//! Beside the [`Connection`], with the same `now`:
//! - on [`Action::Connect`], [`Fallback::connect`] says which transport to open; report a
//!   WebSocket's end with [`Fallback::handle_ws_opened`] or [`Fallback::handle_ws_failed`] (a
//!   failure includes an attempt abandoned by a disconnect), a polling session's opening with
//!   [`Fallback::handle_session_opened`] (then tell the connection it is connected);
//! - while [`Fallback::in_session`], drain [`Connection::poll_transmit_body`] into
//!   [`Fallback::queue`], then send a request for every body [`Fallback::poll_request`] fills,
//!   with its number;
//! - each response goes to [`Fallback::handle_response`] (its body to
//!   [`Connection::handle_body`] when the verdict is [`Reply::Deliver`]), each failed request to
//!   [`Fallback::handle_request_failed`];
//! - on [`Action::Disconnect`], [`Fallback::disconnect`], and send the last body it fills;
//! - when [`Fallback::poll_timeout`] passed, [`Fallback::poll_probe`] says whether to start a
//!   probe; its end goes to [`Fallback::handle_probe`].
//!
//! Invariants: nothing here reads a clock; at most two requests of a session are under way, and
//! one until the session has a token; a session's requests are numbered from 1, each once, in
//! the order they go out; a request body holds at most [`MAX_FRAMES`] elements and,
//! beyond its first element, at most [`MAX_BODY`] bytes; elements leave in the order they were
//! queued, each once; the queue holds only what the connection gave while its session is open
//! (bounded by what the machine transmits: its outbox, its rooms, a ping) and is dropped with
//! the session; at most one probe runs, and none while no session was opened since the last
//! WebSocket.
//!
//! [`Connection`]: super::Connection
//! [`Connection::poll_transmit_body`]: super::Connection::poll_transmit_body
//! [`Connection::handle_body`]: super::Connection::handle_body
//! [`Action::Connect`]: super::Action::Connect
//! [`Action::Disconnect`]: super::Action::Disconnect

use alloc::borrow::ToOwned;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::codec::Codec;
use crate::time::Instant;

/// Frames one request may carry (the server answers more with 400, PROTOCOL.md section 1.4).
pub const MAX_FRAMES: usize = 64;
/// Bytes of frames one request carries when it has more than one (the server's default limit).
pub const MAX_BODY: usize = 256 * 1024;

/// When and how a client falls back to HTTP long-polling (PROTOCOL.md section 1.4). Build it
/// with [`PollingConfig::new`] (or `default()`) and the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollingConfig {
    /// Failed WebSocket attempts in a row after which the client polls instead. Default 3.
    pub after_failures: u32,
    /// How often a polling client tries a WebSocket again. Default 30 s.
    pub upgrade_every: Duration,
    /// The polling endpoint's path on the server of the URL. Default `/eventwire/poll`.
    pub path: String,
}

impl Default for PollingConfig {
    fn default() -> Self {
        PollingConfig {
            after_failures: 3,
            upgrade_every: Duration::from_secs(30),
            path: "/eventwire/poll".to_owned(),
        }
    }
}

impl PollingConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the failed WebSocket attempts in a row before polling (at least 1).
    pub fn after_failures(mut self, attempts: u32) -> Self {
        self.after_failures = attempts.max(1);
        self
    }

    /// Sets how often a polling client tries a WebSocket again.
    pub fn upgrade_every(mut self, interval: Duration) -> Self {
        self.upgrade_every = interval;
        self
    }

    /// Sets the polling endpoint's path (`/` is prepended if missing).
    pub fn path(mut self, path: &str) -> Self {
        self.path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self
    }
}

/// The transport of a client's current (or last) session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// A WebSocket.
    WebSocket,
    /// HTTP long-polling.
    Polling,
}

/// What to do with a polling response; see [`Fallback::handle_response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Hand the body to `Connection::handle_body`.
    Deliver,
    /// The session is abandoned: tell the connection it is disconnected.
    Lost(Lost),
    /// No session is open (it ended before the response came): drop it.
    Stale,
}

/// One request to send, filled by [`Fallback::poll_request`] or [`Fallback::disconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outgoing {
    /// The number of elements in its body.
    pub frames: usize,
    /// Its number in the session, sent as `Eventwire-Seq` (PROTOCOL.md 1.4): 1 for the first.
    pub seq: u64,
}

/// Why a response abandoned its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lost {
    /// The server answered with this status instead of 200.
    Status(u16),
    /// Neither this response nor an earlier one of the session carried a session token.
    NoToken,
}

/// The polling session, as far as decisions go (the adapter keeps its HTTP connections).
#[derive(Debug)]
struct Session {
    /// The adapter reported it open (and told the connection so).
    opened: bool,
    /// A response of this session carried its token.
    token: bool,
    /// Requests under way.
    in_flight: usize,
    /// Requests sent so far (the last one's number).
    sent: u64,
    /// Request body elements waiting, oldest first.
    queue: VecDeque<Vec<u8>>,
}

/// The next WebSocket probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Idle,
    Due(Instant),
    Running,
}

/// The fallback's state: the failures counted, the session, the probe. See the module docs for
/// the driving contract.
#[derive(Debug)]
pub struct Fallback {
    config: Option<PollingConfig>,
    /// Failed WebSocket attempts in a row.
    failures: u32,
    transport: Transport,
    session: Option<Session>,
    probe: Probe,
}

impl Fallback {
    /// The fallback of `config`; `None` keeps the client on WebSockets.
    pub fn new(config: Option<PollingConfig>) -> Self {
        Fallback {
            config,
            failures: 0,
            transport: Transport::WebSocket,
            session: None,
            probe: Probe::Idle,
        }
    }

    // ---- getters

    /// The configuration, `None` when the fallback is off.
    pub fn config(&self) -> Option<&PollingConfig> {
        self.config.as_ref()
    }

    /// The transport of the current (or last) session; a WebSocket before any.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Failed WebSocket attempts in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether a session was started and is waiting for the adapter to report it open.
    pub fn is_opening(&self) -> bool {
        self.session.as_ref().is_some_and(|s| !s.opened)
    }

    /// Whether a polling session is open: the connection's output goes to its requests.
    pub fn in_session(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.opened)
    }

    /// Requests of the session under way.
    pub fn in_flight(&self) -> usize {
        self.session.as_ref().map_or(0, |s| s.in_flight)
    }

    // ---- inputs

    /// The connection asked for a transport: [`Transport::Polling`] once the last
    /// [`PollingConfig::after_failures`] WebSocket attempts failed in a row (a session starts,
    /// see [`Fallback::is_opening`], and the first probe is due `upgrade_every` from `now`
    /// unless one is already planned), else [`Transport::WebSocket`].
    pub fn connect(&mut self, now: Instant) -> Transport {
        let Some(config) = &self.config else {
            return Transport::WebSocket;
        };
        if self.failures < config.after_failures {
            return Transport::WebSocket;
        }
        self.session = Some(Session {
            opened: false,
            token: false,
            in_flight: 0,
            sent: 0,
            queue: VecDeque::new(),
        });
        if self.probe == Probe::Idle {
            self.probe = Probe::Due(now + config.upgrade_every);
        }
        Transport::Polling
    }

    /// A WebSocket attempt failed, or was abandoned.
    pub fn handle_ws_failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// A WebSocket opened: failures start over and no probe is due.
    pub fn handle_ws_opened(&mut self) {
        self.failures = 0;
        self.probe = Probe::Idle;
        self.transport = Transport::WebSocket;
    }

    /// The adapter opened the session [`Fallback::connect`] started; it now tells the connection
    /// it is connected. Without a session starting, nothing happens.
    pub fn handle_session_opened(&mut self) {
        if let Some(session) = self.session.as_mut() {
            session.opened = true;
            self.transport = Transport::Polling;
        }
    }

    /// Queues one request body element (from `Connection::poll_transmit_body`) for the session's
    /// next request; without an open session it is dropped, as a WebSocket message without a
    /// connection is.
    pub fn queue(&mut self, element: Vec<u8>) {
        if let Some(session) = self.session.as_mut().filter(|s| s.opened) {
            session.queue.push_back(element);
        }
    }

    /// Whether a request should go out now, and its body: `None`, or the number of elements put
    /// into `body` (cleared first; a JSON array for a text `codec`, the elements back to back
    /// for binary) and the request's number, counted as under way. A request goes out when none is, or when elements wait
    /// and at most one is (only one until the session has a token). Call it until `None`.
    #[must_use]
    pub fn poll_request(&mut self, codec: Codec, body: &mut Vec<u8>) -> Option<Outgoing> {
        let session = self.session.as_mut().filter(|s| s.opened)?;
        let limit = if session.token { 2 } else { 1 };
        if session.in_flight >= limit || (session.queue.is_empty() && session.in_flight > 0) {
            return None;
        }
        Some(session.fill(codec, body))
    }

    /// A response of the session came back (`status`, and whether it carried a session token);
    /// responses are handled in the order of their requests.
    pub fn handle_response(&mut self, status: u16, token: bool) -> Reply {
        let Some(session) = self.session.as_mut() else {
            return Reply::Stale;
        };
        session.in_flight = session.in_flight.saturating_sub(1);
        let lost = if status != 200 {
            Lost::Status(status)
        } else {
            session.token |= token;
            if session.token {
                return Reply::Deliver;
            }
            Lost::NoToken
        };
        self.session = None;
        Reply::Lost(lost)
    }

    /// A request failed (connection, HTTP, a body over the limit, a timeout): the session is
    /// abandoned. Returns whether there was one, in which case the connection must learn it is
    /// disconnected.
    pub fn handle_request_failed(&mut self) -> bool {
        self.session.take().is_some()
    }

    /// The connection closed the transport: the session ends. Returns the number of elements of
    /// a last request put into `body` (cleared first), and its number, when the session has
    /// elements waiting and a token, whatever is under way: the close frame must reach the
    /// server.
    #[must_use]
    pub fn disconnect(&mut self, codec: Codec, body: &mut Vec<u8>) -> Option<Outgoing> {
        let mut session = self.session.take()?;
        if session.opened && session.token && !session.queue.is_empty() {
            return Some(session.fill(codec, body));
        }
        None
    }

    /// The next instant a probe is due, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.probe {
            Probe::Due(at) => Some(at),
            Probe::Idle | Probe::Running => None,
        }
    }

    /// Whether to start a WebSocket probe now (its deadline passed); once `true`, the probe runs
    /// until [`Fallback::handle_probe`].
    #[must_use]
    pub fn poll_probe(&mut self, now: Instant) -> bool {
        match self.probe {
            Probe::Due(at) if at <= now => {
                self.probe = Probe::Running;
                true
            }
            _ => false,
        }
    }

    /// The probe ended; `opened` if its WebSocket opened (the adapter closes it again). Then the
    /// failures start over and the session, if any, is abandoned: returns whether there was
    /// one, in which case the connection must learn it is disconnected. A failed probe plans the
    /// next one `upgrade_every` from `now`.
    pub fn handle_probe(&mut self, now: Instant, opened: bool) -> bool {
        if self.probe != Probe::Running {
            return false;
        }
        self.probe = Probe::Idle;
        if opened {
            self.failures = 0;
            return self.session.take().is_some();
        }
        if let Some(config) = &self.config {
            self.probe = Probe::Due(now + config.upgrade_every);
        }
        false
    }

    /// The client stopped for good: no session, no probe.
    pub fn stop(&mut self) {
        self.session = None;
        self.probe = Probe::Idle;
    }
}

impl Session {
    /// Moves as many waiting elements into `body` as one request may carry; counts and numbers
    /// the request.
    fn fill(&mut self, codec: Codec, body: &mut Vec<u8>) -> Outgoing {
        let json = codec.is_text();
        body.clear();
        if json {
            body.push(b'[');
        }
        let mut frames = 0;
        while let Some(element) = self.queue.front() {
            // The first element always goes: it was accepted by the connection's frame limit.
            if frames == MAX_FRAMES || (frames > 0 && body.len() + element.len() + 2 > MAX_BODY) {
                break;
            }
            if json && frames > 0 {
                body.push(b',');
            }
            body.extend_from_slice(element);
            self.queue.pop_front();
            frames += 1;
        }
        if json {
            body.push(b']');
        }
        self.in_flight += 1;
        self.sent += 1;
        Outgoing {
            frames,
            seq: self.sent,
        }
    }
}
