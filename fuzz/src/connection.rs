//! The `connection` target: `eventwire_core::server::Connection`, the byte-level server
//! connection every adapter drives, fed raw transport input in each of its framings (WebSocket
//! messages of either type, a COBS byte stream in arbitrary chunks, polling bodies) between
//! emits, time passing, the application's verdicts, partial drains and transport errors.
//!
//! # Input layout
//! The first byte picks the framing (its value modulo 5: binary messages, JSON messages, a
//! stream, binary bodies, JSON bodies) and the rest are records `[tag][len: u16 LE][len bytes]`
//! (a record cut short by the end of the input takes what is left; only the data records, tags
//! 0 to 2, carry bytes: the others' length is a number). Tags modulo 8: a message
//! (0 binary, 1 text), 2 stream or body bytes, 3 a transport error (TooBig when `len` is odd),
//! 4 an emit (room `len % 3`, keyed when `len` is even), 5 time passing (`len` ms), 6 every
//! pending decision answered (allowed when `len` is odd), 7 a drain of at most `len` frames.
//! Seeds are built from the golden vectors (`seeds.rs`).
//!
//! # Invariants checked
//! - Whatever arrives, nothing panics; everything appended to the output buffer is one frame per
//!   call in the connection's framing (a message of the codec's form, a COBS frame, a JSON body
//!   element after `[` or `,`), which decodes, validates and goes server to client.
//! - The counts add up: bytes in are the bytes fed, bytes out the bytes appended.
//! - A close frame is the last frame; `poll_close` gives its code exactly once it went out (or
//!   the session ended before anything could be sent); nothing is sent after it.
//! - A message of the other type than the codec's, before the session closed, ends it with
//!   `UNSUPPORTED_DATA`; a transport error with `MESSAGE_TOO_BIG` or `PROTOCOL_ERROR`.
//! - At most one authentication is pending at a time.

use eventwire_core::code::CloseCode;
use eventwire_core::codec::{stream, Codec};
use eventwire_core::frame::{Direction, Frame};
use eventwire_core::history::HistoryConfig;
use eventwire_core::hub::{Hub, HubConfig};
use eventwire_core::server::{
    Body, Connection, Decision, Framing, Grants, ServerConfig, SessionState, TransportError,
};
use eventwire_core::time::Instant;

const ROOMS: [&str; 3] = ["agents", "tasks", "system"];
const PAYLOADS: [&[u8]; 2] = [br#"{"cpu":0.5}"#, b"\x00\xff raw"];
/// Frames a polling body may hold here.
const MAX_BODY_FRAMES: usize = 8;

/// The tags of the records, for the seed writer.
pub mod tag {
    /// A binary message.
    pub const BINARY: u8 = 0;
    /// A text message.
    pub const TEXT: u8 = 1;
    /// Stream or body bytes.
    pub const BYTES: u8 = 2;
    /// A transport error.
    pub const TRANSPORT: u8 = 3;
    /// An emit.
    pub const EMIT: u8 = 4;
    /// Time passing.
    pub const ADVANCE: u8 = 5;
    /// The pending decisions answered.
    pub const DECIDE: u8 = 6;
    /// A drain.
    pub const DRAIN: u8 = 7;
}

/// Appends one record to a seed.
pub fn record(out: &mut Vec<u8>, tag: u8, bytes: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Appends a record whose length field is a number, not a size.
pub fn number(out: &mut Vec<u8>, tag: u8, n: u16) {
    out.push(tag);
    out.extend_from_slice(&n.to_le_bytes());
}

struct Harness {
    hub: Hub,
    conn: Connection,
    framing: Framing,
    now: Instant,
    fed: u64,
    appended: u64,
    closed_sent: Option<CloseCode>,
    close_taken: bool,
    /// What the connection counted.
    counted_in: u64,
    counted_out: u64,
}

/// Runs one raw input; returns the number of batch events sent (for the replay's "gets
/// somewhere" check).
pub fn run(data: &[u8]) -> u64 {
    let Some((&first, mut rest)) = data.split_first() else {
        return 0;
    };
    let framing = match first % 5 {
        0 => Framing::Message(Codec::Binary),
        1 => Framing::Message(Codec::Json),
        2 => Framing::Stream,
        3 => Framing::Body(Codec::Binary),
        _ => Framing::Body(Codec::Json),
    };
    let history = HistoryConfig::new().max_events(8).max_bytes(2048);
    let hub = Hub::new(5, HubConfig::new().history(history).max_rooms(3));
    let config = ServerConfig::new().max_frame(1024).max_subscriptions(2);
    let mut h = Harness {
        conn: Connection::new(Instant::ZERO, config, framing, 1, u64::from(first)),
        hub,
        framing,
        now: Instant::ZERO,
        fed: 0,
        appended: 0,
        closed_sent: None,
        close_taken: false,
        counted_in: 0,
        counted_out: 0,
    };
    let mut events = 0;
    while let Some((&tag, tail)) = rest.split_first() {
        let len_bytes = [
            tail.first().copied().unwrap_or(0),
            tail.get(1).copied().unwrap_or(0),
        ];
        let len = u16::from_le_bytes(len_bytes);
        let tail = tail.get(2..).unwrap_or(&[]);
        // Only data records carry bytes; the others' length field is their number.
        let n = if tag % 8 <= tag::BYTES {
            usize::from(len).min(tail.len())
        } else {
            0
        };
        let (bytes, next) = tail.split_at(n);
        rest = next;
        events += h.step(tag % 8, len, bytes);
    }
    events += h.drain(usize::MAX);
    assert_eq!(
        h.counted_in, h.fed,
        "bytes in counted differ from bytes fed"
    );
    assert_eq!(
        h.counted_out, h.appended,
        "bytes out counted differ from bytes appended"
    );
    events
}

impl Harness {
    fn step(&mut self, tag: u8, len: u16, bytes: &[u8]) -> u64 {
        let open_before = self.conn.state() != SessionState::Closed;
        match tag {
            tag::BINARY | tag::TEXT => {
                let text = tag == tag::TEXT;
                self.fed += bytes.len() as u64;
                self.conn.handle_message(self.now, &self.hub, bytes, text);
                // On other framings a message is still checked against the codec's form: a
                // misuse by the adapter, which must end the same way.
                if self.framing.is_text() != text && open_before {
                    self.expect_close(CloseCode::UNSUPPORTED_DATA);
                }
            }
            tag::BYTES => {
                self.fed += bytes.len() as u64;
                match self.framing {
                    Framing::Stream => self.conn.handle_stream(self.now, &self.hub, bytes),
                    Framing::Body(codec) => match Body::parse(codec, bytes, MAX_BODY_FRAMES) {
                        Ok(body) => self
                            .conn
                            .handle_body(self.now, &self.hub, &body, bytes.len()),
                        Err(e) => {
                            // Refused before any frame: bytes are not counted as read.
                            self.fed -= bytes.len() as u64;
                            self.conn.handle_body_error(e);
                        }
                    },
                    // A stream input on a message connection is ignored (no decoder), counted.
                    _ => self.conn.handle_stream(self.now, &self.hub, bytes),
                }
            }
            tag::TRANSPORT => {
                let (error, code) = if len % 2 == 1 {
                    (TransportError::TooBig, CloseCode::MESSAGE_TOO_BIG)
                } else {
                    (TransportError::Protocol, CloseCode::PROTOCOL_ERROR)
                };
                self.conn.handle_transport_error(error);
                if open_before {
                    self.expect_close(code);
                }
            }
            tag::EMIT => {
                let room = ROOMS[usize::from(len % 3)];
                let key = len.is_multiple_of(2).then_some("k");
                let payload = PAYLOADS[usize::from(len / 3 % 2)];
                let _ = self.hub.emit(self.now, room, "tick", payload, key);
            }
            tag::ADVANCE => {
                self.now = self.now + std::time::Duration::from_millis(u64::from(len));
                self.hub.expire(self.now);
                self.conn.handle_timeout(self.now);
            }
            tag::DECIDE => {
                let mut auths = 0;
                while let Some(decision) = self.conn.poll_decision() {
                    match decision {
                        Decision::Authenticate { .. } => {
                            auths += 1;
                            assert!(auths <= 1, "two authentications pending at once");
                            // Odd: accepted, publishing into and creating "agents" only
                            // (so granted and refused publishes happen, and joins of rooms
                            // nobody created are refused).
                            let verdict = if len % 2 == 1 {
                                Grants::publish_to(["agents"])
                                    .and_then(|g| g.create_rooms(["agents"]))
                                    .map_err(|_| CloseCode::INTERNAL_ERROR)
                            } else {
                                Err(CloseCode::UNAUTHORIZED)
                            };
                            self.conn.settle_auth(self.now, verdict);
                        }
                        Decision::Authorize { room } => {
                            self.conn.settle_join(&self.hub, &room, len % 2 == 1)
                        }
                        Decision::Publish { .. } => {
                            panic!("a publish handed over while the session appends them")
                        }
                        _ => {}
                    }
                }
            }
            _ => return self.drain(usize::from(len)),
        }
        0
    }

    /// The session must be closing with `code`, unless it already was: its close frame is
    /// the next frame, or it already went out.
    fn expect_close(&mut self, code: CloseCode) {
        assert_eq!(
            self.conn.state(),
            SessionState::Closed,
            "still open after an input that must close it with {code:?}"
        );
        self.drain(usize::MAX);
        assert_eq!(
            self.closed_sent,
            Some(code),
            "closed with another code than {code:?}"
        );
    }

    /// Drains at most `max` frames, checking each; returns the batch events among them.
    fn drain(&mut self, max: usize) -> u64 {
        let mut out = Vec::new();
        let mut events = 0;
        let mut n = 0;
        while n < max {
            let start = out.len();
            let Some(len) = self.conn.poll_transmit(self.now, &mut out) else {
                break;
            };
            n += 1;
            assert!(n < 100_000, "poll_transmit never returns None");
            assert_eq!(
                len,
                out.len() - start,
                "the length returned is what was appended"
            );
            self.appended += len as u64;
            assert!(self.closed_sent.is_none(), "a frame after the close frame");
            let first = start == 0;
            let piece = out[start..].to_vec();
            events += self.check_frame(&piece, first);
            if matches!(self.framing, Framing::Message(_)) {
                out.clear();
            }
        }
        if let Some(code) = self.conn.poll_close() {
            assert!(!self.close_taken, "poll_close gave a code twice");
            self.close_taken = true;
            if let Some(sent) = self.closed_sent {
                assert_eq!(code, sent, "poll_close disagrees with the close frame");
            }
        }
        let counts = self.conn.take_counts();
        self.counted_in += counts.bytes_in;
        self.counted_out += counts.bytes_out;
        events
    }

    /// One appended frame decodes in the framing, validates, goes to the client.
    fn check_frame(&mut self, piece: &[u8], first: bool) -> u64 {
        let mut owned = piece.to_vec();
        let decoded = match self.framing {
            Framing::Message(codec) => codec.decode(piece, usize::MAX),
            Framing::Body(codec) if codec.is_text() => {
                let sep = if first { b'[' } else { b',' };
                assert_eq!(
                    piece.first(),
                    Some(&sep),
                    "a JSON body element without its separator"
                );
                codec.decode(&piece[1..], usize::MAX)
            }
            _ => {
                assert_eq!(piece.last(), Some(&0), "a COBS frame without its zero");
                assert_eq!(
                    piece.iter().filter(|&&b| b == 0).count(),
                    1,
                    "a COBS frame holds a zero before its end"
                );
                stream::decode_in_place(&mut owned)
            }
        };
        let frame = match decoded {
            Ok(frame) => frame,
            Err(e) => panic!("a frame the connection wrote does not decode: {e:?}"),
        };
        assert_eq!(frame.validate(), Ok(()), "a frame sent does not validate");
        assert!(
            frame.direction() != Direction::ToServer,
            "a client frame sent: {frame:?}"
        );
        match frame {
            Frame::Close(c) => {
                self.closed_sent = Some(c.code);
                0
            }
            Frame::Batch(b) => b.events.len() as u64,
            _ => 0,
        }
    }
}
