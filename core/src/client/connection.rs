//! One client connection in bytes: the [`Client`] machine, the negotiated codec, the close codes
//! and the connection's counts.
//!
//! An adapter hands a [`Connection`] each WebSocket data message its transport received, tells it
//! when the transport opened, ended or refused what the server sent, and writes each message
//! [`Connection::poll_transmit`] appends to its buffer. Everything between the socket and the
//! machine is decided here, once for every adapter: the message type each codec takes, which
//! close code a wrong message type, an undecodable frame or a transport violation gets, which
//! code answers the server's own close, which publishes are too big for the server, and what is
//! counted. The adapter only moves bytes, reads its clock and sleeps.
//!
//! # Driving it
//! Inputs, each with the adapter's `now`; application events go to the `sink` of the input that
//! caused them, borrowing from the received bytes:
//! - [`Connection::connect`] once, then the application's calls at any time
//!   ([`Connection::subscribe`], [`Connection::publish`], [`Connection::close`], ...);
//! - [`Connection::handle_connected`] when the transport asked for by [`Action::Connect`] opened;
//! - [`Connection::handle_message`] for each data message (binary or text) it received, or
//!   [`Connection::handle_body`] for each long-polling response body;
//! - [`Connection::handle_peer_close`] when the server closed the WebSocket;
//! - [`Connection::handle_transport_error`] when the transport refused what the server sent (a
//!   message over the size limit, a broken WebSocket rule);
//! - [`Connection::handle_disconnected`] when the transport ended otherwise, or failed to open;
//! - [`Connection::handle_timeout`] when [`Connection::poll_timeout`] passed (early is harmless).
//!
//! Outputs, drained after every input:
//! 1. [`Connection::poll_transmit`] until `None`: each call appends one message to the buffer
//!    (text when [`Connection::is_text`], binary otherwise); send it, in order. With no transport
//!    open, discard it. A polling transport drains [`Connection::poll_transmit_body`] instead
//!    and puts the elements into its next requests.
//! 2. [`Connection::poll_action`] until `None`: open a transport, or close the open one with the
//!    code given (after step 1, so the close frame goes out first). After a close the machine
//!    already knows the transport is gone: do not report it again.
//! 3. Sleep until [`Connection::poll_timeout`], received bytes, or an application call. Stop
//!    reading a transport once [`Connection::is_reading`] is `false`.
//!
//! Invariants: nothing here reads a clock or draws entropy; once this connection decided to
//! close a transport (a wrong message type, a decode error with a close code, a transport error,
//! the server's close) nothing more of that transport is parsed, the machine is told it is
//! disconnected exactly once, and one [`Action::Disconnect`] carries the code; every message
//! appended is counted once in [`Counts`]; a publish the server would refuse as too big is
//! refused at call time, never queued.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use super::{Action, Client, ClientConfig, ClientError, ClientEvent, ClientStats, ConnState};
use crate::code::CloseCode;
use crate::codec::{stream, Codec};
use crate::error::{EncodeError, TransportError};
use crate::frame::{Close, Frame, Position, Publish, Welcome};
use crate::handshake;
use crate::outbox::OutboxError;
use crate::payload::Payload;
use crate::rtt::Quality;
use crate::server::Body;
use crate::text::MAX_SAFE_INTEGER;
use crate::time::Instant;

/// What a connection counted since the last [`Connection::take_counts`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bytes of data messages received.
    pub bytes_in: u64,
    /// Data messages received.
    pub messages_in: u64,
    /// Bytes appended by [`Connection::poll_transmit`].
    pub bytes_out: u64,
    /// Messages appended by [`Connection::poll_transmit`].
    pub messages_out: u64,
    /// Frames the codec could not encode, dropped (a payload the JSON form cannot carry).
    pub unencodable: u64,
    /// Received frames of a kind this version does not know, ignored.
    pub ignored: u64,
}

/// One client connection in bytes; see the module docs for the driving loop. The const
/// parameters are the [`Client`] machine's.
pub struct Connection<
    const ROOMS: usize = 32,
    const OUTBOX: usize = 64,
    const OUTBOX_BYTES: usize = 16384,
> {
    machine: Client<ROOMS, OUTBOX, OUTBOX_BYTES>,
    codec: Codec,
    /// Largest message accepted, in bytes.
    max_message: usize,
    /// Largest frame the server accepts: its last welcome's, `max_message` before any.
    frame_limit: usize,
    /// The close this connection decided on, reported before the machine's actions.
    close: Option<CloseCode>,
    /// The close frame a failed polling body owes the server, sent before anything else.
    close_frame: Option<CloseCode>,
    /// The current transport had a fatal input (or none is open): nothing more is parsed.
    failed: bool,
    counts: Counts,
    /// Scratch space for the publish size check.
    scratch: Vec<u8>,
}

impl<const ROOMS: usize, const OUTBOX: usize, const OUTBOX_BYTES: usize>
    Connection<ROOMS, OUTBOX, OUTBOX_BYTES>
{
    /// A connection in state [`ConnState::Idle`] speaking `codec`, accepting messages of at most
    /// `max_message` bytes. `seed` drives the machine's jitter and ping nonces.
    pub fn new(config: ClientConfig, codec: Codec, max_message: usize, seed: u64) -> Self {
        Connection {
            machine: Client::new(config, seed),
            codec,
            max_message,
            frame_limit: max_message,
            close: None,
            close_frame: None,
            failed: true,
            counts: Counts::default(),
            scratch: Vec::new(),
        }
    }

    // ---- getters

    /// The machine under this connection (its state, rooms, statistics).
    pub fn machine(&self) -> &Client<ROOMS, OUTBOX, OUTBOX_BYTES> {
        &self.machine
    }

    /// The codec this connection speaks.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Whether its messages are text (JSON) rather than binary.
    pub fn is_text(&self) -> bool {
        self.codec.is_text()
    }

    /// Whether the open transport's input is still wanted: `false` before it opened and once
    /// this connection or the machine decided to close it (the adapter stops reading it and
    /// acts on [`Connection::poll_action`]).
    pub fn is_reading(&self) -> bool {
        !self.failed
            && matches!(
                self.machine.state(),
                ConnState::Handshaking | ConnState::Open
            )
    }

    /// The connection state.
    pub fn state(&self) -> ConnState {
        self.machine.state()
    }

    /// The current link quality.
    pub fn quality(&self) -> Quality {
        self.machine.quality()
    }

    /// The machine's counters.
    pub fn stats(&self) -> ClientStats {
        self.machine.stats()
    }

    /// The last position delivered in `room`.
    pub fn position(&self, room: &str) -> Option<Position> {
        self.machine.position(room)
    }

    /// The rooms held, with their last delivered positions.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, Option<Position>)> {
        self.machine.rooms()
    }

    /// The current session's welcome, while one is open.
    pub fn session(&self) -> Option<&Welcome> {
        self.machine.session()
    }

    /// The largest publish frame the server accepts: its last welcome's `max_frame`, or the
    /// largest message this connection accepts before any welcome.
    pub fn frame_limit(&self) -> usize {
        self.frame_limit
    }

    /// Takes what was counted since the last call.
    pub fn take_counts(&mut self) -> Counts {
        core::mem::take(&mut self.counts)
    }

    // ---- application calls

    /// Starts connecting.
    pub fn connect(&mut self, now: Instant, sink: &mut impl FnMut(ClientEvent<'_>)) {
        self.machine.connect(now, sink);
    }

    /// Holds `room`, from its head.
    pub fn subscribe(&mut self, room: &str) -> Result<(), ClientError> {
        self.machine.subscribe(room)
    }

    /// Holds `room`, resuming after `from`.
    pub fn subscribe_from(&mut self, room: &str, from: Position) -> Result<(), ClientError> {
        self.machine.subscribe_from(room, from)
    }

    /// Holds `room`: resuming after `from`, or from its head when `None` (the two calls above
    /// as one, for adapters that forward an application's choice).
    pub fn subscribe_at(&mut self, room: &str, from: Option<Position>) -> Result<(), ClientError> {
        match from {
            Some(from) => self.machine.subscribe_from(room, from),
            None => self.machine.subscribe(room),
        }
    }

    /// The rooms held with their last delivered positions, owned (what an adapter hands its
    /// application).
    pub fn positions(&self) -> Vec<(String, Option<Position>)> {
        self.machine
            .rooms()
            .map(|(room, position)| (room.to_owned(), position))
            .collect()
    }

    /// Leaves `room`; `false` if it was not held.
    pub fn unsubscribe(&mut self, room: &str) -> bool {
        self.machine.unsubscribe(room)
    }

    /// Queues a publish and returns its id. A publish whose frame is over [`frame_limit`]
    /// (encoded in this connection's form with the longest id) is refused with
    /// [`OutboxError::TooLarge`]: the server would refuse it after every reconnect, so it must
    /// never enter the outbox. An invalid room or kind is refused here too.
    ///
    /// [`frame_limit`]: Connection::frame_limit
    pub fn publish(&mut self, room: &str, kind: &str, payload: &[u8]) -> Result<u64, ClientError> {
        let frame = Frame::Publish(Publish {
            room,
            // The largest id, whose varint is the longest.
            id: MAX_SAFE_INTEGER,
            kind,
            payload: Payload(payload),
        });
        self.scratch.clear();
        match self.codec.encode_into(&frame, &mut self.scratch) {
            Ok(()) if self.scratch.len() > self.frame_limit => {
                return Err(ClientError::Outbox(OutboxError::TooLarge {
                    size: self.scratch.len(),
                    limit: self.frame_limit,
                }));
            }
            Err(EncodeError::Invalid(invalid)) => {
                return Err(ClientError::Outbox(OutboxError::Invalid(invalid)));
            }
            // Anything else (a payload the JSON form cannot carry, say) is the outbox's to judge.
            Ok(()) | Err(_) => {}
        }
        self.machine.publish(room, kind, payload)
    }

    /// Ends the session for good: a normal close, then [`Action::Disconnect`].
    pub fn close(&mut self, now: Instant, sink: &mut impl FnMut(ClientEvent<'_>)) {
        self.machine.close(now, sink);
    }

    // ---- transport inputs

    /// The transport asked for by [`Action::Connect`] is open.
    pub fn handle_connected(&mut self, now: Instant, sink: &mut impl FnMut(ClientEvent<'_>)) {
        if self.machine.state() == ConnState::Connecting {
            self.failed = false;
            self.close_frame = None;
        }
        self.machine.handle_connected(now, sink);
    }

    /// The transport ended (or failed to open) without this connection closing it.
    pub fn handle_disconnected(&mut self, now: Instant, sink: &mut impl FnMut(ClientEvent<'_>)) {
        self.failed = true;
        self.machine.handle_disconnected(now, sink);
    }

    /// One data message (`text`, or binary) arrived. A message of the other type than the
    /// codec's closes with `UNSUPPORTED_DATA`; an undecodable frame closes with its
    /// [`DecodeError::close_code`](crate::error::DecodeError::close_code), or is ignored when it
    /// has none (a frame kind of a later version).
    pub fn handle_message<'m>(
        &mut self,
        now: Instant,
        data: &'m [u8],
        text: bool,
        sink: &mut impl FnMut(ClientEvent<'m>),
    ) {
        if !self.is_reading() {
            return;
        }
        self.counts.bytes_in += data.len() as u64;
        self.counts.messages_in += 1;
        if let Err(code) = handshake::check_message_type(self.codec, text) {
            self.fail(now, code, sink);
            return;
        }
        match self.codec.decode(data, self.max_message) {
            Ok(frame) => {
                if let Frame::Welcome(welcome) = &frame {
                    self.frame_limit = welcome.max_frame as usize;
                }
                self.machine.handle_frame(now, &frame, sink);
            }
            Err(e) => match e.close_code() {
                Some(code) => self.fail(now, code, sink),
                None => self.counts.ignored += 1,
            },
        }
    }

    /// The body of a long-polling response arrived (PROTOCOL.md section 1.4): a JSON array of
    /// frames for the JSON form, COBS-framed frames back to back for binary. Its frames go to
    /// the machine in order. A body that is not of that form closes with `PROTOCOL_ERROR`, an
    /// undecodable frame with its close code (or is ignored when it has none), and either way
    /// the next [`Connection::poll_transmit_body`] gives a close frame with that code, so the
    /// server learns why the session ends. Events borrow from scratch space, not from `body`.
    pub fn handle_body(
        &mut self,
        now: Instant,
        body: &[u8],
        sink: &mut impl FnMut(ClientEvent<'_>),
    ) {
        if !self.is_reading() {
            return;
        }
        self.counts.bytes_in += body.len() as u64;
        // A response holds as many frames as the server put in it; its size bounds them.
        let Ok(parsed) = Body::parse(self.codec, body, usize::MAX) else {
            self.fail_body(now, CloseCode::PROTOCOL_ERROR, sink);
            return;
        };
        let Connection {
            machine,
            frame_limit,
            counts,
            scratch,
            max_message,
            ..
        } = self;
        let mut failure = None;
        parsed.each(*max_message, scratch, &mut |decoded| {
            counts.messages_in += 1;
            match decoded {
                Ok(frame) => {
                    if let Frame::Welcome(welcome) = &frame {
                        *frame_limit = welcome.max_frame as usize;
                    }
                    machine.handle_frame(now, &frame, sink);
                }
                Err(e) => match e.close_code() {
                    Some(code) => failure = Some(code),
                    None => counts.ignored += 1,
                },
            }
            // A close, a failure or the machine's own verdict ends the session's input.
            failure.is_none() && matches!(machine.state(), ConnState::Handshaking | ConnState::Open)
        });
        if let Some(code) = failure {
            self.fail_body(now, code, sink);
        }
    }

    /// The server closed the WebSocket with `code` (`None`: a close without a code). The reply
    /// echoes a code that may be sent on the wire (RFC 6455 section 5.5.1), `NORMAL` when there
    /// was none, and `PROTOCOL_ERROR` for a code no endpoint may send.
    pub fn handle_peer_close<'f>(
        &mut self,
        now: Instant,
        code: Option<CloseCode>,
        sink: &mut impl FnMut(ClientEvent<'f>),
    ) {
        if !self.is_reading() {
            return;
        }
        let reply = match code {
            None => CloseCode::NORMAL,
            Some(code) if sendable(code) => code,
            Some(_) => CloseCode::PROTOCOL_ERROR,
        };
        self.fail(now, reply, sink);
    }

    /// The transport refused what the server sent: the transport closes with the matching code,
    /// and nothing more of it is parsed.
    pub fn handle_transport_error<'f>(
        &mut self,
        now: Instant,
        error: TransportError,
        sink: &mut impl FnMut(ClientEvent<'f>),
    ) {
        if !self.is_reading() {
            return;
        }
        self.fail(now, error.close_code(), sink);
    }

    /// Timers that are due fire; calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut impl FnMut(ClientEvent<'_>)) {
        self.machine.handle_timeout(now, sink);
    }

    // ---- outputs

    /// Appends the next message to `out` and returns how many bytes it took, or `None` when
    /// there is nothing to send now. Each call is one message: clear `out` between messages.
    /// A frame the codec cannot encode is dropped and counted in [`Counts::unencodable`].
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<usize> {
        loop {
            let frame = self.machine.poll_transmit(now)?;
            let start = out.len();
            match self.codec.encode_into(&frame, out) {
                Ok(()) => return Some(self.sent(out.len() - start)),
                Err(_) => {
                    out.truncate(start);
                    self.counts.unencodable += 1;
                }
            }
        }
    }

    /// Appends the next frame to `out` as one element of a long-polling request body and returns
    /// how many bytes it took: a JSON value for the JSON form (the adapter joins the elements of
    /// one request into a JSON array), a COBS-framed frame for binary (the adapter puts them back
    /// to back). `None` when there is nothing to send now. A close frame owed after a failed
    /// body comes first.
    #[must_use]
    pub fn poll_transmit_body(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<usize> {
        let start = out.len();
        if let Some(code) = self.close_frame.take() {
            let close = Frame::Close(Close {
                code,
                retry_after_ms: None,
                reason: "",
            });
            if append_body(self.codec, &close, out).is_ok() {
                return Some(self.sent(out.len() - start));
            }
            out.truncate(start);
        }
        loop {
            let frame = self.machine.poll_transmit(now)?;
            match append_body(self.codec, &frame, out) {
                Ok(()) => return Some(self.sent(out.len() - start)),
                Err(_) => {
                    out.truncate(start);
                    self.counts.unencodable += 1;
                }
            }
        }
    }

    /// What the adapter should do with the transport: this connection's own close first, then
    /// the machine's actions.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        if let Some(code) = self.close.take() {
            return Some(Action::Disconnect { code });
        }
        let action = self.machine.poll_action();
        if let Some(Action::Disconnect { .. }) = action {
            // The adapter drops the transport: whatever it still delivers is not parsed.
            self.failed = true;
        }
        action
    }

    /// The next instant [`Connection::handle_timeout`] has work, if any.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.machine.poll_timeout()
    }

    // ---- internals

    /// Counts one message (or body element) of `n` bytes appended; returns `n`.
    fn sent(&mut self, n: usize) -> usize {
        self.counts.bytes_out += n as u64;
        self.counts.messages_out += 1;
        n
    }

    /// As [`Connection::fail`] for a polling body: the server is told why in a close frame.
    fn fail_body<'f>(
        &mut self,
        now: Instant,
        code: CloseCode,
        sink: &mut impl FnMut(ClientEvent<'f>),
    ) {
        self.close_frame = Some(code);
        self.fail(now, code, sink);
    }

    /// Closes the current transport with `code`: the machine learns it is disconnected now, the
    /// adapter through [`Connection::poll_action`].
    fn fail<'f>(&mut self, now: Instant, code: CloseCode, sink: &mut impl FnMut(ClientEvent<'f>)) {
        self.failed = true;
        self.close = Some(code);
        // As `Client::handle_disconnected`, with a sink that may borrow from the message.
        self.machine.lost(now, None, None, sink);
    }
}

/// Whether an endpoint may send `code` in a close frame (RFC 6455 section 7.4): 1000-1003,
/// 1007-1014, and the registered and private ranges 3000-4999.
fn sendable(code: CloseCode) -> bool {
    matches!(code.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Appends `frame` as one element of a polling body in `codec`'s form.
fn append_body(codec: Codec, frame: &Frame<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if codec.is_text() {
        codec.encode_into(frame, out)
    } else {
        stream::encode_into(frame, out)
    }
}
