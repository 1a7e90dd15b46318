//! Building blocks of the operation-sequence targets (`client_machine`, `server_session`,
//! `history`): how their raw inputs are read, how seeds are written, and the checks every frame a
//! machine sends must pass.
//!
//! # Input layout
//! A raw input is read with `arbitrary` 1.x: a setup value, then operations one after another
//! until the input runs out ([`ops`]). Every type in an operation is made of integers
//! (little-endian), `bool`s (one byte, odd is true), `Option`s (a `bool`, then the value),
//! derived enums (a `u32` `x` selecting variant `(x * variants) >> 32`) and [`Bytes`] (a `u16`
//! length, then that many bytes, or what is left). libFuzzer mutates these bytes; a truncated
//! value reads as zero-filled, so every input means some sequence of operations.
//!
//! # Seeds
//! [`Encode`] writes a value in exactly that layout, so the seed generator
//! (`core/tests/fuzz_corpus.rs`, `generate_seeds`) can turn a scripted scenario into a corpus
//! file. Each seed is read back with `Arbitrary` and compared with the script before it is
//! written ([`encode_ops`]), so a change in `arbitrary`'s layout breaks the generator and the
//! stable replay test loudly instead of silently producing seeds that mean something else.

use arbitrary::{Arbitrary, Unstructured};
use eventwire_core::codec::{binary, json};
use eventwire_core::frame::{Direction, Frame};
use eventwire_core::EncodeError;

/// Most operations one input runs: keeps each run short (libFuzzer's `-timeout` is per input)
/// while leaving room for long scenarios.
pub const MAX_OPS: usize = 4096;

/// The setup and the operations of one raw input of an operation-sequence target. The fuzz
/// targets take their input as this type, so `cargo fuzz fmt TARGET FILE` prints the scenario a
/// file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario<S, O> {
    /// What the machine is built with.
    pub setup: S,
    /// What happens to it, in order.
    pub ops: Vec<O>,
}

impl<'a, S: Arbitrary<'a>, O: Arbitrary<'a>> Arbitrary<'a> for Scenario<S, O> {
    /// Reads the setup, then operations until the input is empty (each reads at least one byte,
    /// so this ends) or [`MAX_OPS`] were read.
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let setup = S::arbitrary(u)?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            ops.push(O::arbitrary(u)?);
        }
        Ok(Scenario { setup, ops })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

/// Reads the scenario of one raw input, as the fuzz target does.
pub fn ops<'a, S: Arbitrary<'a>, O: Arbitrary<'a>>(data: &'a [u8]) -> (S, Vec<O>) {
    // Integers and enums read missing bytes as zero and `Bytes` takes what is left, so reading
    // never fails.
    match Scenario::<S, O>::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(s) => (s.setup, s.ops),
        Err(e) => panic!("a scenario must always read: {e}"),
    }
}

/// Writes a value in the layout `Arbitrary` reads it from (see the module docs).
pub trait Encode {
    /// Appends the value's raw bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
}

macro_rules! encode_int {
    ($($t:ty),*) => {$(
        impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
encode_int!(u8, u16, u32, u64);

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.is_some().encode(out);
        if let Some(v) = self {
            v.encode(out);
        }
    }
}

/// Writes the selector of variant `index` of a derived enum with `count` variants: the smallest
/// `u32` `x` with `(x * count) >> 32 == index`.
pub fn variant(out: &mut Vec<u8>, index: u32, count: u32) {
    assert!(index < count, "variant {index} of {count}");
    let x = (u64::from(index) << 32).div_ceil(u64::from(count));
    (x as u32).encode(out);
}

/// Encodes a scenario (setup, then operations) and checks that it reads back as the very same
/// values; panics otherwise, so no seed can mean something else than its script.
pub fn encode_ops<'a, S, O>(setup: &S, script: &[O], buf: &'a mut Vec<u8>) -> &'a [u8]
where
    S: Encode + for<'b> Arbitrary<'b> + PartialEq + std::fmt::Debug,
    O: Encode + for<'b> Arbitrary<'b> + PartialEq + std::fmt::Debug,
{
    buf.clear();
    setup.encode(buf);
    for op in script {
        op.encode(buf);
    }
    let (s, o) = ops::<S, O>(buf);
    assert_eq!(&s, setup, "the seed's setup does not read back");
    assert_eq!(o, script, "the seed's operations do not read back");
    buf
}

/// Bytes read as a `u16` length, then that many bytes (or all that is left): raw messages inside
/// operations, without `Vec<u8>`'s byte of overhead per element.
#[derive(Clone, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "Bytes({s:?})"),
            Err(_) => write!(f, "Bytes({:02x?})", self.0),
        }
    }
}

impl<'a> Arbitrary<'a> for Bytes {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(u16::arbitrary(u)?).min(u.len());
        Ok(Bytes(u.bytes(len)?.to_vec()))
    }
}

impl Encode for Bytes {
    fn encode(&self, out: &mut Vec<u8>) {
        let len = u16::try_from(self.0.len()).expect("a seed message of at most 64 KiB");
        len.encode(out);
        out.extend_from_slice(&self.0);
    }
}

/// How far the clock moves in one operation. The machines take any `now`; adapters hand in a
/// monotonic clock, so time never goes back here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Advance {
    /// Not at all (a spurious wake-up).
    Zero,
    /// Up to 65 ms in microseconds.
    Micros(u16),
    /// Up to 65 s in milliseconds.
    Millis(u16),
    /// Up to 18 hours in seconds.
    Secs(u16),
    /// Exactly to the machine's next deadline (if any and in the future).
    ToDeadline,
    /// A jump of 2^40 µs (12.7 days): every timer is long overdue.
    Huge,
}

impl Encode for Advance {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Advance::Zero => variant(out, 0, 6),
            Advance::Micros(v) => {
                variant(out, 1, 6);
                v.encode(out);
            }
            Advance::Millis(v) => {
                variant(out, 2, 6);
                v.encode(out);
            }
            Advance::Secs(v) => {
                variant(out, 3, 6);
                v.encode(out);
            }
            Advance::ToDeadline => variant(out, 4, 6),
            Advance::Huge => variant(out, 5, 6),
        }
    }
}

impl Advance {
    /// The new time, from `now` and the machine's deadline.
    pub fn apply(
        self,
        now: eventwire_core::time::Instant,
        deadline: Option<eventwire_core::time::Instant>,
    ) -> eventwire_core::time::Instant {
        use eventwire_core::time::Instant;
        let micros = match self {
            Advance::Zero => 0,
            Advance::Micros(v) => u64::from(v),
            Advance::Millis(v) => u64::from(v) * 1000,
            Advance::Secs(v) => u64::from(v) * 1_000_000,
            Advance::ToDeadline => {
                return deadline.map_or(now, |d| d.max(now));
            }
            Advance::Huge => 1 << 40,
        };
        Instant::from_micros(now.as_micros().saturating_add(micros))
    }
}

/// How a frame built from fields reaches the machine under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Via {
    /// As is.
    Direct,
    /// Encoded and decoded in the binary form.
    Binary,
    /// Encoded and decoded in the JSON form (as is when a payload is not JSON text).
    Json,
}

impl Encode for Via {
    fn encode(&self, out: &mut Vec<u8>) {
        variant(out, *self as u32, 3);
    }
}

/// Room names the operations pick from by index (modulo the table): few, so that subscriptions,
/// emits and frames of different operations meet in the same rooms. They are the golden vectors'
/// rooms, so seeds built from the vectors land in rooms the operations use; the last one breaks
/// the name rules.
pub const ROOMS: [&str; 6] = [
    "agents",
    "tasks",
    "system",
    "agent:agent-7",
    "admin",
    "bad/room",
];

/// The room at `index` (modulo [`ROOMS`]).
pub fn room(index: u8) -> &'static str {
    ROOMS[usize::from(index) % ROOMS.len()]
}

/// The valid room at `index` (modulo the valid part of [`ROOMS`]), for frames, which must
/// validate.
pub fn valid_room(index: u8) -> &'static str {
    ROOMS[usize::from(index) % (ROOMS.len() - 1)]
}

/// Event kinds, picked like rooms; the last one breaks the name rules.
pub const KINDS: [&str; 4] = ["agent.status", "agent.metrics", "task.created", "no kind"];

/// The kind at `index` (modulo [`KINDS`]).
pub fn kind(index: u8) -> &'static str {
    KINDS[usize::from(index) % KINDS.len()]
}

/// Payloads, picked like rooms: JSON texts (one with white space around it) and bytes that are
/// not JSON text (which have no JSON form).
pub const PAYLOADS: [&[u8]; 6] = [
    br#"{"cpu":0.42,"mem_mb":512}"#,
    b"{}",
    b" [1, 2, 3] ",
    b"",
    b"\x00\xff not json",
    br#"{"agent_id":"agent-7","status":"busy","details":{"task":"task-42","note":"a longer payload, so that a few of them fill a small frame or history"}}"#,
];

/// The payload at `index` (modulo [`PAYLOADS`]).
pub fn payload(index: u8) -> &'static [u8] {
    PAYLOADS[usize::from(index) % PAYLOADS.len()]
}

/// Coalescing keys, picked like rooms; the last one breaks the name rules.
pub const KEYS: [&str; 4] = ["agent-1", "agent-2", "agent-3", "bad key"];

/// The key at `index` (modulo [`KEYS`]).
pub fn key(index: u8) -> &'static str {
    KEYS[usize::from(index) % KEYS.len()]
}

/// Checks a frame a machine handed out to send, in direction `dir` (the frames a client may send,
/// or those a server may send), and returns its binary form. The frame validates (a peer would
/// accept it); its binary form decodes to an equal frame; its JSON form, when `json_required`,
/// exists (otherwise the only JSON encode error allowed is a payload that is not JSON text) and
/// decodes to a frame with the same JSON form. Returns `(binary, json)` encodings.
pub fn check_sent(
    frame: &Frame<'_>,
    to_server: bool,
    json_required: bool,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let allowed = match frame.direction() {
        Direction::Both => true,
        Direction::ToServer => to_server,
        Direction::ToClient => !to_server,
    };
    assert!(allowed, "sent a frame of the wrong direction: {frame:?}");
    assert_eq!(frame.validate(), Ok(()), "sent frame does not validate");
    let mut bin = Vec::new();
    if let Err(e) = binary::encode_into(frame, &mut bin) {
        panic!("sent frame {frame:?} has no binary form: {e:?}");
    }
    match binary::decode(&bin, usize::MAX) {
        Ok(back) => assert_eq!(&back, frame, "sent frame changes in its binary form"),
        Err(e) => panic!("binary form of sent frame {frame:?} does not decode: {e:?}"),
    }
    let text = match json::encode(frame) {
        Ok(text) => text,
        Err(EncodeError::PayloadNotJson) if !json_required => return (bin, None),
        Err(e) => panic!("sent frame {frame:?} has no JSON form: {e:?}"),
    };
    match json::decode(&text, usize::MAX) {
        Ok(back) => assert_eq!(
            json::encode(&back).as_deref().ok(),
            Some(&text[..]),
            "sent frame changes in its JSON form"
        ),
        Err(e) => panic!(
            "JSON form {:?} of sent frame does not decode: {e:?}",
            String::from_utf8_lossy(&text)
        ),
    }
    (bin, Some(text))
}

/// Whether `payload` is JSON text (what the JSON form can carry inline): embedded as a publish's
/// payload it decodes, and the decoder's payload is the whole text (white space around it aside).
pub fn is_json_text(payload: &[u8]) -> bool {
    let mut text = br#"{"publish":{"room":"r","id":1,"kind":"k","payload":"#.to_vec();
    text.extend_from_slice(payload);
    text.extend_from_slice(b"}}");
    match json::decode(&text, usize::MAX) {
        Ok(Frame::Publish(p)) => p.payload.0 == payload.trim_ascii(),
        _ => false,
    }
}

/// Hands `frame` to `feed` the way `via` says: as is, or after a round trip through a form.
pub fn feed_via<R>(frame: &Frame<'_>, via: Via, feed: impl FnOnce(&Frame<'_>) -> R) -> R {
    match via {
        Via::Direct => feed(frame),
        Via::Binary => {
            let mut bytes = Vec::new();
            if let Err(e) = binary::encode_into(frame, &mut bytes) {
                panic!("a built frame {frame:?} does not encode: {e:?}");
            }
            match binary::decode(&bytes, usize::MAX) {
                Ok(back) => feed(&back),
                Err(e) => panic!("a built frame {frame:?} does not decode: {e:?}"),
            }
        }
        Via::Json => match json::encode(frame) {
            Ok(text) => match json::decode(&text, usize::MAX) {
                Ok(back) => feed(&back),
                Err(e) => panic!("a built frame {frame:?} does not decode from JSON: {e:?}"),
            },
            Err(_) => feed(frame),
        },
    }
}
