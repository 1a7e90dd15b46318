//! HTTP long-polling (PROTOCOL.md 1.4) decided once for every server adapter: what a request
//! is from its head, the session table, how a body reaches a session, and how long a request is
//! held.
//!
//! A polling **session** plays the part of a connection: a [`Connection`] with
//! [`Framing::Body`], kept by the adapter in a [`Sessions`] table under a random [`Token`].
//!
//! # Driving it
//! For each request on the polling path, the adapter:
//!
//! 1. Asks [`Kind::of`] with the method: an exchange (`POST`), a CORS preflight (`OPTIONS`,
//!    answered by [`preflight`](super::http::preflight)), or not a polling request.
//! 2. Checks the head with [`check_head`] before reading any of the body: the form, the body's
//!    length, the session token and the request's number ([`SEQ_HEADER`]), or the [`Refusal`]
//!    to answer. It then reads the body (at
//!    most the checked length; [`Refusal::TooLarge`], [`Refusal::BodyTooSlow`] and
//!    [`Refusal::BodyNotReceived`] when that fails) and parses it with [`Body::parse`].
//! 3. Without a token: asks [`begins_session`], then opens a session ([`Sessions::vacant`];
//!    `None` is the capacity refusal: [`capacity_refusal`], the connection's `TRY_AGAIN_LATER`
//!    close frame, answers the request; [`Vacant::insert`] begins its first request). With one:
//!    finds it ([`Sessions::begin`] with the request's number, `None` is
//!    [`Refusal::UnknownSession`]), which marks a request in flight and, if its number is the
//!    highest yet, supersedes the session's held request, which the adapter wakes; a request
//!    overtaken by a higher-numbered one is answered at once without frames (its body is still
//!    fed, step 4).
//! 4. Hands the body to the connection with [`feed`] (an `Err` ends the session: remove it
//!    and answer the refusal) and answers the connection's decisions as on a socket.
//! 5. Holds the request: [`Hold::poll`] with `now` after every wake (an append to a room the
//!    session holds, the wait it returned passing, a newer request, shutdown) until it says
//!    [`Step::Answer`]; then [`Hold::finish`] gives the 200. When the request ends (answered, or
//!    its connection gone), [`Sessions::end`] starts the idle time.
//! 6. Periodically, [`Sessions::expire`] with `now` removes the sessions idle too long.
//!
//! Nothing here reads a clock, draws entropy or takes a lock: the adapter brings `now`, the
//! tokens' seeds and the lock around the table.
//!
//! Invariants: a token names at most one session and is never reused while it exists; the table
//! holds at most its capacity (a first request over it is refused); a session with a request in
//! flight never expires; only a session's latest request is held (a newer one makes older ones
//! answer at once); "newer" is the client's numbering (`Eventwire-Seq`), never the order of
//! arrival, and frames go only to requests of increasing numbers (a request numbered at or
//! below one already begun gets none), so a client reading its responses in the order it sent
//! the requests reads the frames in order; a held request is answered at the latest when the
//! long-poll time passes.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use super::connection::{Body, BodyError, Connection, Framing};
use super::http::{Answer, Header, Refusal};
use super::SessionState;
use crate::codec::Codec;
use crate::handshake::{self, Origins};
use crate::hub::{Host, Hub};
use crate::rng::Rng;
use crate::time::Instant;

// The session header and token belong to the HTTP answers (`http`), which name them; this
// module draws and checks tokens.
pub use super::http::{Token, SEQ_HEADER, SESSION_HEADER};
/// Content type of the JSON form.
pub const JSON_TYPE: &str = "application/json";
/// Content type of the binary (COBS-framed) form.
pub const BINARY_TYPE: &str = "application/octet-stream";

/// The limits of a server's polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes (413 above, before any of it is read); also the budget
    /// of a response's frames (no frame is appended once a body has reached it).
    pub max_body: usize,
    /// Most frames in one request body (400 above, and the session ends).
    pub max_frames: usize,
    /// Longest time a request is held waiting for frames.
    pub long_poll: Duration,
    /// A session without a request in flight for this long expires.
    pub idle: Duration,
}

/// What a request to the polling path is, from its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST`: frames in, frames out.
    Exchange,
    /// `OPTIONS`: a browser's CORS preflight.
    Preflight,
}

impl Kind {
    /// The kind of a request with this method; `None` for any other method (not a polling
    /// request: the standalone server routes it on, a router answers 405).
    pub fn of(method: &str) -> Option<Kind> {
        match method {
            "POST" => Some(Kind::Exchange),
            "OPTIONS" => Some(Kind::Preflight),
            _ => None,
        }
    }
}

/// The content type of `codec`'s form.
pub fn content_type(codec: Codec) -> &'static str {
    if codec.is_text() {
        JSON_TYPE
    } else {
        BINARY_TYPE
    }
}

/// The codec a `Content-Type` selects (parameters such as `charset` are ignored).
fn codec_of(content_type: &[u8]) -> Option<Codec> {
    let essence = content_type.split(|&b| b == b';').next()?.trim_ascii();
    #[cfg(feature = "json")]
    if essence.eq_ignore_ascii_case(JSON_TYPE.as_bytes()) {
        return Some(Codec::Json);
    }
    if essence.eq_ignore_ascii_case(BINARY_TYPE.as_bytes()) {
        Some(Codec::Binary)
    } else {
        None
    }
}

/// The header values of a polling request that decide it, as sent (the first of each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head<'h> {
    /// `Origin`.
    pub origin: Option<&'h [u8]>,
    /// `Content-Length`.
    pub content_length: Option<&'h [u8]>,
    /// `Content-Type`.
    pub content_type: Option<&'h [u8]>,
    /// `Eventwire-Session`.
    pub session: Option<&'h [u8]>,
    /// `Eventwire-Seq`.
    pub seq: Option<&'h [u8]>,
}

/// A polling request whose head passed [`check_head`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The form of its body and of the answer.
    pub codec: Codec,
    /// Its body's length: read exactly this much.
    pub length: usize,
    /// Its session; `None` for a session's first request.
    pub session: Option<Token>,
    /// Its number within the session, as the client sent it (1 for a first request):
    /// [`Sessions::begin`] orders the session's requests by it.
    pub seq: u64,
}

/// Checks a polling request from its head, before any of the body is read, in this order: a
/// `Content-Length` that is not a number (400), an origin the allow-list does not admit (403),
/// no `Content-Length` (411), a body over `max_body` (413), a content type of neither form
/// (415), a session token that cannot be one of ours (404, as an unknown one), a request
/// number that is missing on a session's request, not a decimal number from 1, or other than 1
/// on a first request (400, [`Refusal::BadSeq`]; a first request may leave it out).
pub fn check_head<S: AsRef<str>>(
    origins: Origins<'_, S>,
    max_body: usize,
    head: &Head<'_>,
) -> Result<Checked, Refusal> {
    let length = match head.content_length {
        None => None,
        Some(text) => Some(parse_length(text).ok_or(Refusal::BadLength)?),
    };
    if !handshake::origin_allowed(origins, head.origin) {
        return Err(Refusal::OriginNotAllowed);
    }
    let length = length.ok_or(Refusal::LengthRequired)?;
    let length = usize::try_from(length)
        .ok()
        .filter(|&n| n <= max_body)
        .ok_or(Refusal::TooLarge)?;
    let codec = head
        .content_type
        .and_then(codec_of)
        .ok_or(Refusal::UnsupportedType)?;
    let session = match head.session {
        None => None,
        Some(text) => Some(Token::parse(text).ok_or(Refusal::UnknownSession)?),
    };
    let seq = match head.seq {
        None if session.is_none() => 1,
        None => return Err(Refusal::BadSeq),
        Some(text) => parse_length(text)
            .filter(|&n| n >= 1 && (session.is_some() || n == 1))
            .ok_or(Refusal::BadSeq)?,
    };
    Ok(Checked {
        codec,
        length,
        session,
        seq,
    })
}

fn parse_length(text: &[u8]) -> Option<u64> {
    let digits = text.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether a session's first request may open a session: not while the server shuts down
/// (`shutting_down` is the retry-after hint then), and only with a body that begins with a
/// hello.
pub fn begins_session(
    body: &Result<Body<'_>, BodyError>,
    max_frame: usize,
    shutting_down: Option<Duration>,
) -> Result<(), Refusal> {
    if let Some(retry_after) = shutting_down {
        return Err(Refusal::ShuttingDown { retry_after });
    }
    match body {
        Ok(body) if body.starts_with_hello(max_frame) => Ok(()),
        Err(BodyError::TooManyFrames) => Err(Refusal::TooManyFrames),
        _ => Err(Refusal::NoHello),
    }
}

/// Hands a request's parsed body (`size` bytes) to its session's connection, in the request's
/// form. A malformed body closes the connection (`PROTOCOL_ERROR`, its close frame in the
/// answer); too many frames close it with `POLICY_VIOLATION` and are answered with the
/// [`Refusal`] (the session ends: the adapter removes it).
pub fn feed<H: Host>(
    conn: &mut Connection<H>,
    now: Instant,
    hub: &Hub<H>,
    codec: Codec,
    body: &Result<Body<'_>, BodyError>,
    size: usize,
) -> Result<(), Refusal> {
    conn.set_framing(Framing::Body(codec));
    match body {
        Ok(body) => conn.handle_body(now, hub, body, size),
        Err(BodyError::TooManyFrames) => {
            conn.handle_body_error(BodyError::TooManyFrames);
            return Err(Refusal::TooManyFrames);
        }
        Err(error) => conn.handle_body_error(*error),
    }
    Ok(())
}

/// Which request of a session a held request is ([`Sessions::begin`]): its number, or 0 for
/// a request overtaken before it began (superseded from the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// One session in the table.
#[derive(Debug)]
struct Slot<T> {
    value: T,
    /// Requests of the session in progress.
    in_flight: u32,
    /// When the last request ended (or the session began).
    last: Instant,
    /// The highest request number the session has begun (its latest request's ticket).
    latest: u64,
}

/// The polling sessions of one server: each session's value (the adapter's: its connection and
/// wakers), requests in flight, last activity and latest request, by token. A plain value: the
/// adapter keeps it behind its own lock, and holds that lock only for these calls.
///
/// Bounded by `capacity` sessions: [`Sessions::vacant`] refuses beyond it, so a first request
/// over it gets the capacity refusal. A session leaves by [`Sessions::remove`] (its close, too
/// many frames), [`Sessions::expire`] (idle), [`Sessions::end_all`] (shutdown) or
/// [`Sessions::remove_where`] (injected faults).
#[derive(Debug)]
pub struct Sessions<T> {
    slots: BTreeMap<Token, Slot<T>>,
    capacity: usize,
    idle: Duration,
}

impl<T> Sessions<T> {
    /// An empty table of at most `capacity` sessions, each expiring after `idle` without a
    /// request.
    pub fn new(capacity: usize, idle: Duration) -> Self {
        Sessions {
            slots: BTreeMap::new(),
            capacity,
            idle,
        }
    }

    /// How many sessions it holds.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Room for a new session, under a fresh token drawn from the core's [`Rng`] seeded with
    /// `seeds` (one generator per 64-bit half: the adapter brings fresh unpredictable seeds for
    /// each session, so that one client's token tells nothing of another's); `None` when the
    /// table is full. A token already in use is drawn again (at most once per session held).
    pub fn vacant(&mut self, now: Instant, seeds: [u64; 2]) -> Option<Vacant<'_, T>> {
        if self.slots.len() >= self.capacity {
            return None;
        }
        let (mut high, mut low) = (Rng::new(seeds[0]), Rng::new(seeds[1]));
        // Each generator's outputs are distinct, so this ends within `len + 1` draws.
        let token = loop {
            let token = Token(u128::from(high.next_u64()) << 64 | u128::from(low.next_u64()));
            if !self.slots.contains_key(&token) {
                break token;
            }
        };
        Some(Vacant {
            table: self,
            token,
            now,
        })
    }

    /// Request number `seq` ([`Checked::seq`]) of session `token` begins: it is in flight (the
    /// session cannot expire). With the highest number yet it is the session's latest (an older
    /// held request is superseded: wake it). With a number at or below one already begun it was
    /// overtaken on the way (the client sent it earlier, or twice): its ticket is superseded
    /// from the start, so it is answered at once with no frames, and the frames it would have
    /// taken go to the latest request, which the client reads after it. `None` for an unknown
    /// token.
    pub fn begin(&mut self, token: Token, seq: u64) -> Option<(&T, Ticket)> {
        let slot = self.slots.get_mut(&token)?;
        slot.in_flight = slot.in_flight.saturating_add(1);
        let ticket = if seq > slot.latest {
            slot.latest = seq;
            Ticket(seq)
        } else {
            Ticket(0)
        };
        Some((&slot.value, ticket))
    }

    /// A request of session `token` ended (answered, or its connection gone) at `now`: the idle
    /// time starts when its last request ends. Harmless for a session no longer held.
    pub fn end(&mut self, token: Token, now: Instant) {
        if let Some(slot) = self.slots.get_mut(&token) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            slot.last = now;
        }
    }

    /// Whether a newer request of the session (a higher number) began after the one holding
    /// `ticket`, or that one was overtaken before it began: the held one answers at once. A session no longer in the table supersedes nothing (its held
    /// request ends with its close).
    pub fn superseded(&self, token: Token, ticket: Ticket) -> bool {
        self.slots
            .get(&token)
            .is_some_and(|slot| slot.latest != ticket.0)
    }

    /// Removes a session; `None` if it was already gone (whoever removes it uncounts it).
    pub fn remove(&mut self, token: Token) -> Option<T> {
        self.slots.remove(&token).map(|slot| slot.value)
    }

    /// Removes and returns the sessions without a request in flight whose last request ended
    /// at least the idle time before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let idle = self.idle;
        self.extract(|slot| slot.in_flight == 0 && now.saturating_duration_since(slot.last) >= idle)
    }

    /// Removes and returns every session (shutdown).
    pub fn end_all(&mut self) -> Vec<T> {
        self.extract(|_| true)
    }

    /// Removes and returns the sessions whose value `hit` picks.
    pub fn remove_where(&mut self, mut hit: impl FnMut(&T) -> bool) -> Vec<T> {
        self.extract(|slot| hit(&slot.value))
    }

    fn extract(&mut self, mut pick: impl FnMut(&Slot<T>) -> bool) -> Vec<T> {
        let picked: Vec<Token> = self
            .slots
            .iter()
            .filter(|(_, slot)| pick(slot))
            .map(|(token, _)| *token)
            .collect();
        picked
            .into_iter()
            .filter_map(|token| self.remove(token))
            .collect()
    }
}

/// Room for one new session in a [`Sessions`] table, under its token.
#[derive(Debug)]
pub struct Vacant<'t, T> {
    table: &'t mut Sessions<T>,
    token: Token,
    now: Instant,
}

impl<T> Vacant<'_, T> {
    /// The token the session will have.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Puts the session in the table with its first request (number 1) in flight (as if
    /// [`Sessions::begin`]): its token, and the request's ticket.
    pub fn insert(self, value: T) -> (Token, Ticket) {
        self.table.slots.insert(
            self.token,
            Slot {
                value,
                in_flight: 1,
                last: self.now,
                latest: 1,
            },
        );
        (self.token, Ticket(1))
    }
}

/// What a held request does next ([`Hold::poll`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Step {
    /// Answer now with the body gathered ([`Hold::finish`]). `ended`: the connection closed
    /// (its close frame is in the body): remove the session.
    Answer {
        /// Whether the session ended.
        ended: bool,
    },
    /// Wait until `until`, an append to a room the session holds, a newer request or shutdown,
    /// then poll again.
    Wait {
        /// The next deadline: the session's next timer or the end of the hold.
        until: Instant,
    },
}

/// One held polling request: its form, its deadline and its body's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    codec: Codec,
    until: Instant,
    budget: usize,
}

impl Hold {
    /// A request in `codec`'s form held from `now`, at most `limits.long_poll`; frames are
    /// appended to its answer while it is under `limits.max_body` bytes (so the last one may go
    /// past it by at most one frame, itself bounded by the session's `max_frame`).
    pub fn new(now: Instant, codec: Codec, limits: &Limits) -> Hold {
        Hold {
            codec,
            until: now + limits.long_poll,
            budget: limits.max_body,
        }
    }

    /// Decides at `now` whether to answer, gathering what the connection has into `body` (the
    /// JSON form without its closing `]`): at once when `superseded` ([`Sessions::superseded`]:
    /// a newer request, or this one overtaken) or the hold time has passed (with what `body`
    /// has, without taking anything more from the connection), else after running the
    /// connection's timers and appending its frames up to the budget: when there is at least
    /// one, or the connection closed. Otherwise wait until the session's next timer or the end
    /// of the hold, whichever is first. Count the connection's [`Counts`](super::Counts)
    /// after each call.
    pub fn poll<H: Host>(
        &self,
        conn: &mut Connection<H>,
        now: Instant,
        superseded: bool,
        body: &mut Vec<u8>,
    ) -> Step {
        if superseded || now >= self.until {
            return Step::Answer { ended: false };
        }
        // Each answer is in its own request's form, whatever a newer request set.
        conn.set_framing(Framing::Body(self.codec));
        conn.handle_timeout(now);
        fill(conn, now, body, self.budget);
        if conn.poll_close().is_some() || conn.state() == SessionState::Closed {
            return Step::Answer { ended: true };
        }
        if !body.is_empty() {
            return Step::Answer { ended: false };
        }
        let until = conn
            .poll_timeout()
            .map_or(self.until, |t| t.min(self.until));
        Step::Wait { until }
    }

    /// The 200 answering the request: the session's token and the body, closed.
    pub fn finish(self, token: Token, body: Vec<u8>) -> Answer {
        frames(self.codec, Some(token), body)
    }
}

/// Appends the frames `conn` has to `body`, while it is under `budget` bytes.
fn fill<H: Host>(conn: &mut Connection<H>, now: Instant, body: &mut Vec<u8>, budget: usize) {
    while body.len() < budget {
        if conn.poll_transmit(now, body).is_none() {
            break;
        }
    }
}

/// The answer to a first request refused for capacity: a connection opened over capacity has
/// only its `TRY_AGAIN_LATER` close frame, which is the body; no session, so no token.
pub fn capacity_refusal<H: Host>(
    conn: &mut Connection<H>,
    now: Instant,
    codec: Codec,
    limits: &Limits,
) -> Answer {
    let mut body = Vec::new();
    conn.set_framing(Framing::Body(codec));
    fill(conn, now, &mut body, limits.max_body);
    frames(codec, None, body)
}

/// A 200 with `body` in `codec`'s form (closed), not cached, with the session's token if any.
fn frames(codec: Codec, token: Option<Token>, mut body: Vec<u8>) -> Answer {
    Framing::Body(codec).finish_body(&mut body);
    let mut headers = alloc::vec![Header::ContentType(content_type(codec)), Header::NoStore];
    headers.extend(token.map(Header::Session));
    Answer {
        status: 200,
        headers,
        body,
    }
}
