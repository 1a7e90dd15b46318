//! One server connection in bytes: the session, its framing, the decisions the application
//! owes it, and the connection's counts.
//!
//! An adapter hands a [`Connection`] what its transport received (a WebSocket message, a chunk of
//! a byte stream, a long-polling request body) and writes what [`Connection::poll_transmit`]
//! appends to its buffer. Everything between the socket and the session is decided here, once
//! for every adapter: the message type a connection takes, how a decode error or a transport
//! violation closes it, how frames are framed on each transport, what an unencodable event does,
//! and what is counted.
//!
//! # Driving it
//! Inputs, each with the adapter's `now`:
//! - [`Connection::handle_message`] (one WebSocket data message), [`Connection::handle_stream`]
//!   (bytes of a COBS byte stream), [`Connection::handle_body`] (a polling request's body);
//! - [`Connection::handle_transport_error`] when the transport refused what the peer sent;
//! - [`Connection::handle_timeout`] when [`Connection::poll_timeout`] passed (early is harmless);
//! - the application's verdicts: [`Connection::settle_auth`], [`Connection::settle_join`],
//!   [`Connection::publish_done`]; and [`Connection::close`] (shutdown, say).
//!
//! Outputs, drained after every input:
//! 1. [`Connection::poll_decision`] until `None`: what the application must decide (authenticate a
//!    hello, authorise a join, apply a publish). Ask the application with the hub unlocked
//!    (hooks may block or await), then settle. Publishes the session appended itself are counted
//!    in [`Counts::events_in`]: the adapter announces them to the room's subscribers as it does
//!    emits.
//! 2. [`Connection::poll_transmit`] while the transport takes more: it appends one frame in the
//!    connection's framing to the adapter's buffer. Not calling it is the backpressure: room logs
//!    are read only here.
//! 3. [`Connection::poll_close`]: close the transport with that code, after writing what step 2
//!    gave.
//! 4. Sleep until [`Connection::poll_timeout`], received bytes, or an append to a room.
//!
//! Invariants: nothing here reads a clock or draws entropy; after a fatal input (a decode error
//! with a close code, a transport violation, a wrong message type) no further input of the
//! transport is parsed; every frame appended to the buffer is counted once in [`Counts`]; the
//! queue of decisions holds at most one authentication, the joins the session bounds
//! (`max_subscriptions`) and the publishes its window bounds.

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use super::{Grants, ServerConfig, ServerEvent, ServerSession, SessionState};
use crate::code::{CloseCode, ErrorCode};
use crate::codec::stream::{self, StreamDecoder};
use crate::codec::Codec;
use crate::error::{DecodeError, EncodeError, TransportError};
use crate::frame::{Frame, Position};
use crate::handshake;
use crate::hub::{Host, Hub, Local};
use crate::rtt::Quality;
use crate::time::Instant;

/// Largest binary frame on a byte stream or in a binary polling body (PROTOCOL.md section 1.3):
/// the stream decoder's buffer is sized for it once per connection.
pub const MAX_STREAM_FRAME: usize = 64 * 1024;
/// The COBS buffer for one such frame.
const STREAM_BUF: usize = MAX_STREAM_FRAME + MAX_STREAM_FRAME / 254 + 2;

/// How frames travel on a connection's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Framing {
    /// One frame per WebSocket message: binary messages for [`Codec::Binary`], text for JSON.
    Message(Codec),
    /// COBS-framed binary frames on a byte stream (plain TCP, PROTOCOL.md section 1.3).
    Stream,
    /// Frames gathered into HTTP long-polling bodies (PROTOCOL.md section 1.4): a JSON array for
    /// JSON, COBS-framed frames back to back for binary.
    Body(Codec),
}

impl Framing {
    /// The form frames take.
    pub fn codec(self) -> Codec {
        match self {
            Framing::Message(codec) | Framing::Body(codec) => codec,
            Framing::Stream => Codec::Binary,
        }
    }

    /// Whether the transport's messages are text (a WebSocket text message, a JSON body).
    pub fn is_text(self) -> bool {
        self.codec().is_text()
    }

    /// Closes a polling body that [`Connection::poll_transmit`] filled: the JSON array's `]`
    /// (`[]` when empty); nothing for binary or other framings.
    pub fn finish_body(self, out: &mut Vec<u8>) {
        if matches!(self, Framing::Body(codec) if codec.is_text()) {
            if out.is_empty() {
                out.push(b'[');
            }
            out.push(b']');
        }
    }
}

/// What the application must decide for a connection; answer each with the method it names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// A hello arrived: answer with [`Connection::settle_auth`].
    Authenticate {
        /// The client's identity.
        client_id: u64,
        /// Its token, if any.
        token: Option<String>,
    },
    /// The client asks to join `room`: answer with [`Connection::settle_join`].
    Authorize {
        /// The room.
        room: String,
    },
    /// A new publish, when the session hands publishes to the application
    /// ([`PublishMode::Application`](super::PublishMode)): answer with
    /// [`Connection::publish_done`].
    Publish {
        /// Its room.
        room: String,
        /// Its id.
        id: u64,
        /// Its kind.
        kind: String,
        /// Its bytes.
        payload: Vec<u8>,
    },
}

/// What a connection counted since the last [`Connection::take_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bytes received (message payloads, stream chunks, request bodies).
    pub bytes_in: u64,
    /// Bytes appended by [`Connection::poll_transmit`].
    pub bytes_out: u64,
    /// Events sent in batches.
    pub events_out: u64,
    /// Gap notices sent.
    pub gaps_sent: u64,
    /// Publishes the session appended to rooms.
    pub events_in: u64,
    /// Publishes refused as outside the connection's [`Grants`].
    pub publishes_refused: u64,
}

/// Why a polling request's body was refused before any of its frames reached the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is not a JSON array of frames (JSON) or ends inside a frame (binary).
    Malformed,
    /// More frames than the limit.
    TooManyFrames,
}

impl core::fmt::Display for BodyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BodyError::Malformed => f.write_str("a body of frames was expected"),
            BodyError::TooManyFrames => f.write_str("too many frames"),
        }
    }
}

impl core::error::Error for BodyError {}

/// The frames of a polling request body, split but not yet decoded.
#[derive(Debug)]
pub struct Body<'b> {
    codec: Codec,
    #[cfg(feature = "json")]
    items: Vec<&'b serde_json::value::RawValue>,
    bytes: &'b [u8],
}

impl<'b> Body<'b> {
    /// Splits `bytes` into frames of `codec`'s form, refusing more than `max_frames`.
    pub fn parse(codec: Codec, bytes: &'b [u8], max_frames: usize) -> Result<Body<'b>, BodyError> {
        let body = Body {
            codec,
            #[cfg(feature = "json")]
            items: if codec.is_text() {
                serde_json::from_slice(bytes).map_err(|_| BodyError::Malformed)?
            } else {
                Vec::new()
            },
            bytes,
        };
        if !codec.is_text() && bytes.last().is_some_and(|&b| b != 0) {
            return Err(BodyError::Malformed);
        }
        if body.len() > max_frames {
            return Err(BodyError::TooManyFrames);
        }
        Ok(body)
    }

    /// How many frames it holds.
    pub fn len(&self) -> usize {
        if self.codec.is_text() {
            #[cfg(feature = "json")]
            return self.items.len();
        }
        self.bytes.iter().filter(|&&b| b == 0).count()
    }

    /// Whether it holds no frame (a plain long-poll).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether its first frame is a hello: a polling session begins with one.
    pub fn starts_with_hello(&self, max_frame: usize) -> bool {
        let mut first = None;
        self.each(max_frame, &mut Vec::new(), &mut |decoded| {
            first.get_or_insert(matches!(decoded, Ok(Frame::Hello(_))));
            false
        });
        first == Some(true)
    }

    /// Hands each frame to `on`, in order, while `on` returns `true`. Binary frames are
    /// unstuffed into `scratch` one at a time.
    pub(crate) fn each(
        &self,
        max_frame: usize,
        scratch: &mut Vec<u8>,
        on: &mut dyn FnMut(Result<Frame<'_>, DecodeError>) -> bool,
    ) {
        #[cfg(feature = "json")]
        if self.codec.is_text() {
            for item in &self.items {
                if !on(self.codec.decode(item.get().as_bytes(), max_frame)) {
                    return;
                }
            }
            return;
        }
        let limit = max_frame.min(MAX_STREAM_FRAME);
        for chunk in self.bytes.split_inclusive(|&b| b == 0) {
            // Each chunk ends with its zero (`parse` checked the last one).
            let encoded = &chunk[..chunk.len() - 1];
            if encoded.len() > limit + limit / 254 + 1 {
                on(Err(DecodeError::TooLarge {
                    size: encoded.len(),
                    limit,
                }));
                return;
            }
            scratch.clear();
            scratch.extend_from_slice(chunk);
            if !on(stream::decode_in_place(scratch)) {
                return;
            }
        }
    }
}

/// One server connection; see the module docs for the driving loop.
pub struct Connection<H: Host = Local> {
    session: ServerSession<H>,
    framing: Framing,
    /// The COBS decoder of a byte stream (allocated for [`Framing::Stream`] only).
    stream: Option<alloc::boxed::Box<StreamDecoder<STREAM_BUF>>>,
    /// Encoded bytes of the frame being read from a stream, across chunks.
    partial: usize,
    /// A fatal input arrived: nothing more is parsed.
    failed: bool,
    decisions: VecDeque<Decision>,
    counts: Counts,
    /// Where a binary polling body's frames are unstuffed.
    scratch: Vec<u8>,
    /// The bytes the peer may still send (`ServerConfig::max_bytes_in`).
    bytes_in: ByteBucket,
}

/// A token bucket of bytes: `rate` a second, holding at most `burst`.
#[derive(Debug, Clone, Copy)]
struct ByteBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    at: Instant,
}

impl ByteBucket {
    fn new(now: Instant, config: &ServerConfig) -> Self {
        let rate = u64::from(config.max_bytes_in);
        let burst = rate.max(2 * u64::from(config.max_frame));
        ByteBucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes `n` bytes; `false` when the peer sent more than the rate allows.
    fn take(&mut self, now: Instant, n: usize) -> bool {
        if self.rate == 0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.at).as_micros();
        let earned = u64::try_from(elapsed.saturating_mul(u128::from(self.rate)) / 1_000_000)
            .unwrap_or(u64::MAX);
        if earned > 0 {
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            self.at = now;
        }
        match self.tokens.checked_sub(n as u64) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }
}

impl Connection<Local> {
    /// A single-threaded connection that opened at `now`, framed as `framing`. `session_id` is
    /// announced in the welcome; `seed` drives the session's ping nonces.
    pub fn new(
        now: Instant,
        config: ServerConfig,
        framing: Framing,
        session_id: u64,
        seed: u64,
    ) -> Self {
        Self::with_waker(now, config, framing, session_id, seed, ())
    }
}

impl<H: Host> Connection<H> {
    /// A connection on host `H`: appends to the rooms it holds wake `waker` (see
    /// [`Connection::new`] for the rest).
    pub fn with_waker(
        now: Instant,
        config: ServerConfig,
        framing: Framing,
        session_id: u64,
        seed: u64,
        waker: H::Waker,
    ) -> Self {
        let bytes_in = ByteBucket::new(now, &config);
        let mut session = ServerSession::with_waker(now, config, session_id, seed, waker);
        session.set_codec(framing.codec());
        Connection {
            session,
            framing,
            stream: matches!(framing, Framing::Stream).then(alloc::boxed::Box::default),
            partial: 0,
            failed: false,
            decisions: VecDeque::new(),
            counts: Counts::default(),
            scratch: Vec::new(),
            bytes_in,
        }
    }

    // ---- getters

    /// How frames travel on this connection.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The session's state.
    pub fn state(&self) -> SessionState {
        self.session.state()
    }

    /// The session's id.
    pub fn session_id(&self) -> u64 {
        self.session.session_id()
    }

    /// The client's identity (0 before the hello).
    pub fn client_id(&self) -> u64 {
        self.session.client_id()
    }

    /// The link quality the session measured.
    pub fn quality(&self) -> Quality {
        self.session.quality()
    }

    /// The session under this connection (its statistics and subscriptions).
    pub fn session(&self) -> &ServerSession<H> {
        &self.session
    }

    /// Takes what was counted since the last call.
    pub fn take_counts(&mut self) -> Counts {
        core::mem::take(&mut self.counts)
    }

    /// Changes the framing between transmissions: a polling session answers each request in
    /// that request's form (PROTOCOL.md section 1.4).
    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
        self.session.set_codec(framing.codec());
    }

    // ---- inputs

    /// One WebSocket data message (`text` or binary) arrived. A message of the other type than
    /// the codec's closes with `UNSUPPORTED_DATA`.
    pub fn handle_message(&mut self, now: Instant, hub: &Hub<H>, data: &[u8], text: bool) {
        if !self.received(now, hub, data.len()) {
            return;
        }
        if let Err(code) = handshake::check_message_type(self.framing.codec(), text) {
            self.fail(code, "wrong message type");
            return;
        }
        let max_frame = self.session.max_frame() as usize;
        let decoded = self.framing.codec().decode(data, max_frame);
        self.input(now, hub, decoded);
    }

    /// Bytes of a COBS byte stream arrived ([`Framing::Stream`]). A frame over the limit closes
    /// with `MESSAGE_TOO_BIG` as soon as its size is known.
    pub fn handle_stream(&mut self, now: Instant, hub: &Hub<H>, bytes: &[u8]) {
        if !self.received(now, hub, bytes.len()) {
            return;
        }
        // The decoder is set aside while its frames, which borrow it, go to the session.
        let Some(mut decoder) = self.stream.take() else {
            return;
        };
        let limit = (self.session.max_frame() as usize).min(MAX_STREAM_FRAME);
        // The COBS encoding of a frame within the limit, without its zero.
        let encoded_limit = limit + limit / 254 + 1;
        let mut input = bytes;
        while !input.is_empty() && !self.failed {
            let zero = input.iter().position(|&b| b == 0);
            let body = zero.unwrap_or(input.len());
            if self.partial + body > encoded_limit {
                let size = self.partial + body;
                self.input(now, hub, Err(DecodeError::TooLarge { size, limit }));
                self.failed = true;
                break;
            }
            self.partial = if zero.is_some() {
                0
            } else {
                self.partial + body
            };
            let (mut part, rest) = input.split_at(zero.map_or(input.len(), |z| z + 1));
            input = rest;
            while !part.is_empty() && !self.failed {
                let (decoded, left) = decoder.feed(part);
                part = left;
                if let Some(decoded) = decoded {
                    self.input(now, hub, decoded);
                }
            }
        }
        self.stream = Some(decoder);
    }

    /// A polling request's body arrived ([`Framing::Body`]); `size` is its length in bytes.
    pub fn handle_body(&mut self, now: Instant, hub: &Hub<H>, body: &Body<'_>, size: usize) {
        if !self.received(now, hub, size) {
            return;
        }
        let max_frame = self.session.max_frame() as usize;
        // The scratch buffer is set aside while the frames unstuffed into it go to the session.
        let mut scratch = core::mem::take(&mut self.scratch);
        body.each(max_frame, &mut scratch, &mut |decoded| {
            self.input(now, hub, decoded);
            !self.failed
        });
        self.scratch = scratch;
    }

    /// A polling request's body was refused ([`Body::parse`]): the session ends, with
    /// `PROTOCOL_ERROR` for a malformed body and `POLICY_VIOLATION` for too many frames.
    pub fn handle_body_error(&mut self, error: BodyError) {
        match error {
            BodyError::Malformed => self.fail(CloseCode::PROTOCOL_ERROR, "malformed body"),
            BodyError::TooManyFrames => self.fail(CloseCode::POLICY_VIOLATION, "too many frames"),
        }
    }

    /// The transport refused what the peer sent: the connection closes with the matching code,
    /// and nothing more is parsed.
    pub fn handle_transport_error(&mut self, error: TransportError) {
        let reason = match error {
            TransportError::TooBig => "message too big",
            TransportError::Protocol => "transport error",
        };
        self.fail(error.close_code(), reason);
    }

    /// Timers that are due fire; calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.session.handle_timeout(now, &mut |_| {});
    }

    /// Ends the connection from the server side (shutdown: `GOING_AWAY` with a retry-after
    /// hint; capacity: `TRY_AGAIN_LATER`).
    pub fn close(&mut self, code: CloseCode, retry_after: Option<Duration>, reason: &'static str) {
        self.session.close(code, retry_after, reason);
    }

    /// Settles [`Decision::Authenticate`] with the application's verdict: the welcome with what
    /// the connection may publish ([`Grants`]), or a close with the verdict's code. Accepting asks
    /// for the joins the hello listed.
    pub fn settle_auth(&mut self, now: Instant, verdict: Result<Grants, CloseCode>) {
        let decisions = &mut self.decisions;
        let _ = match verdict {
            Ok(grants) => {
                self.session.grant(grants);
                self.session
                    .accept(now, &mut |event| record(decisions, event))
            }
            Err(code) => self.session.reject(code, "authentication failed"),
        };
    }

    /// Settles [`Decision::Authorize`] for `room`.
    pub fn settle_join(&mut self, hub: &Hub<H>, room: &str, allowed: bool) {
        let _ = if allowed {
            self.session.allow(hub, room)
        } else {
            self.session.deny(room)
        };
    }

    /// Settles [`Decision::Publish`]: `Ok(position)` once the application applied it, `Err(code)`
    /// if it refused it.
    pub fn publish_done(
        &mut self,
        hub: &Hub<H>,
        now: Instant,
        id: u64,
        result: Result<Position, ErrorCode>,
    ) -> Result<(), super::DecisionError> {
        self.session.publish_done(hub, now, id, result)
    }

    // ---- outputs

    /// The next decision the application owes the connection.
    #[must_use]
    pub fn poll_decision(&mut self) -> Option<Decision> {
        self.decisions.pop_front()
    }

    /// Appends the next frame to `out` in the connection's framing and returns how many bytes
    /// it took, or `None` when there is nothing to send now. For [`Framing::Message`] each call
    /// is one message (clear `out` between messages); for a stream or a polling body the frames
    /// follow each other (close a JSON body with [`Framing::finish_body`]).
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<usize> {
        loop {
            let framing = self.framing;
            let frame = self.session.poll_transmit(now)?;
            let start = out.len();
            match append(framing, &frame, out) {
                Ok(()) => {
                    match &frame {
                        Frame::Batch(b) => self.counts.events_out += b.events.len() as u64,
                        Frame::Gap(_) => self.counts.gaps_sent += 1,
                        _ => {}
                    }
                    let n = out.len() - start;
                    self.counts.bytes_out += n as u64;
                    return Some(n);
                }
                Err(_) => {
                    // A payload the JSON form cannot carry: this peer cannot be served. The
                    // close frame is next.
                    out.truncate(start);
                    self.session
                        .close(CloseCode::INTERNAL_ERROR, None, "unencodable event");
                }
            }
        }
    }

    /// Whether the transport should be closed, and with which code (after writing what
    /// [`Connection::poll_transmit`] gave).
    #[must_use]
    pub fn poll_close(&mut self) -> Option<CloseCode> {
        self.session.poll_action()
    }

    /// The next instant [`Connection::handle_timeout`] or [`Connection::poll_transmit`] has work,
    /// given the rooms it holds.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }

    // ---- internals

    /// Counts `n` bytes in (received is received, whatever becomes of them), lets the hub sweep
    /// idle rooms, and charges the byte rate: a peer over it is closed with `RATE_LIMITED`.
    /// Whether the bytes are to be parsed.
    fn received(&mut self, now: Instant, hub: &Hub<H>, n: usize) -> bool {
        self.counts.bytes_in += n as u64;
        hub.sweep_due(now);
        if self.failed {
            return false;
        }
        if !self.bytes_in.take(now, n) {
            self.failed = true;
            self.session.close(
                CloseCode::RATE_LIMITED,
                Some(Duration::from_secs(1)),
                "byte rate",
            );
            return false;
        }
        true
    }

    fn fail(&mut self, code: CloseCode, reason: &'static str) {
        self.failed = true;
        self.session.close(code, None, reason);
    }

    /// Feeds one decoded frame (or its error) to the session.
    fn input(&mut self, now: Instant, hub: &Hub<H>, decoded: Result<Frame<'_>, DecodeError>) {
        match decoded {
            Ok(frame) => {
                let (decisions, counts) = (&mut self.decisions, &mut self.counts);
                self.session.handle_frame(now, &frame, hub, &mut |event| {
                    match event {
                        ServerEvent::Published { .. } => counts.events_in += 1,
                        ServerEvent::PublishRefused { .. } => counts.publishes_refused += 1,
                        _ => {}
                    }
                    record(decisions, event)
                });
            }
            Err(e) => {
                if let Some(code) = e.close_code() {
                    self.fail(code, "bad frame");
                }
            }
        }
    }
}

/// Queues what a session event asks of the application.
fn record(decisions: &mut VecDeque<Decision>, event: ServerEvent<'_>) {
    let decision = match event {
        ServerEvent::Authenticate { client_id, token } => Decision::Authenticate {
            client_id,
            token: token.map(ToString::to_string),
        },
        ServerEvent::Authorize { room } => Decision::Authorize {
            room: room.to_string(),
        },
        ServerEvent::Publish {
            room,
            id,
            kind,
            payload,
        } => Decision::Publish {
            room: room.to_string(),
            id,
            kind: kind.to_string(),
            payload: payload.to_vec(),
        },
        _ => return,
    };
    decisions.push_back(decision);
}

/// Appends `frame` in `framing`'s form.
fn append(framing: Framing, frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    match framing {
        Framing::Message(codec) => codec.encode_into(frame, out),
        Framing::Body(codec) if codec.is_text() => {
            let start = out.len();
            out.push(if start == 0 { b'[' } else { b',' });
            codec
                .encode_into(frame, out)
                .inspect_err(|_| out.truncate(start))
        }
        Framing::Stream | Framing::Body(_) => stream::encode_into(frame, out),
    }
}
