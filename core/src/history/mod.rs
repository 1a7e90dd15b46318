//! One room's history: a bounded, append-only log of encoded events.
//!
//! A [`RoomLog`] keeps the most recent events of one room, each already encoded the way a
//! [`Batch`](crate::frame::Batch) carries it (a postcard [`BatchEvent`](crate::frame::BatchEvent)),
//! so serving a subscriber is a copy of bytes written once at append, whatever the number of
//! subscribers. Subscribers are not tracked here: each one holds its own cursor (the last offset
//! it has) and calls [`RoomLog::read`] from it, after a reconnect as well as in steady state.
//!
//! # Driving it
//! Nothing here reads a clock; `now` comes from the caller.
//! - Input: [`RoomLog::append`] for each event the application publishes to the room (it also
//!   drops expired events first).
//! - Timer: [`RoomLog::next_expiry`] says when the oldest event ages out; call
//!   [`RoomLog::expire`] then (calling it early or twice is a no-op).
//! - Output: for each subscriber, [`RoomLog::read`] from its cursor, copy the visited entries'
//!   [`Entry::encoded`] bytes back to back into a batch
//!   ([`Seq::from_encoded`](crate::frame::Seq::from_encoded)) and store the returned cursor;
//!   repeat until [`Read::UpToDate`]. On [`Read::Gap`] send a gap notice and continue from `last`;
//!   on [`Read::Ahead`] (a cursor past the head) send a reset.
//!
//! # Invariants
//! - Offsets of one epoch are contiguous: the first event appended gets offset 1 and every append
//!   takes the next one, so the retained events are exactly offsets
//!   [`oldest`](RoomLog::oldest)`..=`[`head`](RoomLog::head)`.offset`. Offsets stop at
//!   [`MAX_SAFE_INTEGER`] ([`AppendError::Exhausted`]), the largest a frame may carry.
//! - At most [`HistoryConfig::max_events`] events and [`HistoryConfig::max_bytes`] bytes (encoded
//!   events plus their coalescing keys) are retained.
//! - An event with a coalescing key supersedes the previous retained event with the same key
//!   (keys are compared byte for byte; a hash only finds candidates). Superseded events are never
//!   visited by [`RoomLog::read`], which steps over them; an event without a key is never
//!   superseded, and the newest event is never superseded either.
//! - With the `json` feature and [`HistoryConfig::json_form`] (the default), an event whose payload
//!   is JSON text is also kept as the JSON object a JSON subscriber receives
//!   ([`Entry::json`]), byte for byte what `serde_json` writes for it, in the same contiguous
//!   slot; [`RoomLog::read_json`] serves JSON subscribers from those, and reports an event
//!   without one as a gap, so that a JSON subscriber hears of every event it cannot be given.
//! - Storage is allocated as the log fills, never beyond the config's bounds, and kept: a new log
//!   holds nothing, so a room nobody emits to costs a few words, not `max_bytes`. Once the log
//!   has reached its working size (at most the bounds), appending (the JSON check included),
//!   expiring and reading allocate nothing.
//!
//! # Overflow
//! When an event does not fit (too many events, or no contiguous room in the byte ring), the
//! oldest events are evicted, superseded or not, until it does; one event larger than
//! `max_bytes` alone is refused ([`AppendError::TooLarge`]). A subscriber whose cursor fell behind
//! the oldest retained event gets [`Read::Gap`] naming exactly the offsets it lost, and carries on
//! from the oldest retained event. Because events are stored contiguously in the ring, up to one
//! event's size at the end of the ring can be left unused when an event wraps around to the start.
//!
//! # Example
//! ```
//! use eventwire_core::codec::binary;
//! use eventwire_core::frame::{Batch, Frame};
//! use eventwire_core::history::{HistoryConfig, Read, RoomLog};
//! use eventwire_core::frame::Seq;
//! use eventwire_core::time::Instant;
//!
//! let mut log = RoomLog::new(7, HistoryConfig::new().max_events(100));
//! let now = Instant::ZERO;
//! log.append(now, "agent.status", b"{\"status\":\"idle\"}", Some("agent-7")).unwrap();
//! log.append(now, "agent.log", b"{\"line\":\"hello\"}", None).unwrap();
//! log.append(now, "agent.status", b"{\"status\":\"busy\"}", Some("agent-7")).unwrap();
//!
//! // A subscriber that has nothing yet (cursor 0) gets the log line and only the latest status.
//! let mut events = Vec::new();
//! let read = log.read(0, 50, 64 * 1024, |e| events.extend_from_slice(e.encoded));
//! assert_eq!(read, Read::Progress { cursor: 3, delivered: 2, bytes: events.len() });
//! assert_eq!(log.read(3, 50, 64 * 1024, |_| {}), Read::UpToDate);
//!
//! let events = Seq::from_encoded(&events);
//! let batch = Frame::Batch(Batch { room: "agents", epoch: log.epoch(), events });
//! let mut buf = [0u8; 256];
//! let bytes = binary::encode(&batch, &mut buf).unwrap();
//! let Frame::Batch(decoded) = binary::decode(bytes, 1024).unwrap() else { unreachable!() };
//! let offsets: Vec<u64> = decoded.events.iter().map(|e| e.offset).collect();
//! assert_eq!(offsets, [2, 3]);
//! ```

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::frame::Position;
#[cfg(feature = "json")]
use crate::payload::JsonText;
use crate::text::{check_name, MAX_SAFE_INTEGER};
use crate::time::Instant;

mod encode;
mod keys;
#[cfg(test)]
mod tests;

#[cfg(feature = "json")]
use encode::json_event_len;
use encode::{varint_len, Writer};
use keys::{fnv1a, KeyIndex};

/// How much history a [`RoomLog`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Most events retained (superseded ones included); default 1024. A value of 0 is taken as 1.
    pub max_events: usize,
    /// Most bytes retained: the events' encodings plus their coalescing keys; default 256 KiB.
    /// The byte ring grows to this size as events arrive (a new room holds none of it); an
    /// event larger than it is refused.
    pub max_bytes: usize,
    /// Events this old are dropped ([`RoomLog::expire`]); default `None`, no age limit.
    pub max_age: Option<Duration>,
    /// Also keep each event's JSON form ([`Entry::json`]), written once at append, so that JSON
    /// subscribers are served by copying bytes like binary ones ([`RoomLog::read_json`]); default
    /// on. It costs a check that the payload is JSON text at each append and roughly doubles
    /// the bytes an event takes (both forms count against `max_bytes`). Turn it off for rooms
    /// only binary subscribers read: JSON subscribers are then transcoded batch by batch.
    #[cfg(feature = "json")]
    pub json_form: bool,
    /// Allocate the whole bound when the log is created instead of as events arrive; default
    /// off. For large histories whose growth (a copy at each doubling, the old and new storage
    /// both held meanwhile) should not happen while serving; untouched pages of the ring still
    /// cost no memory until written. Every room of a hub has it, those clients create included.
    pub preallocate: bool,
}

impl HistoryConfig {
    /// The defaults: 1024 events, 256 KiB, no age limit (and JSON forms kept, with `json`).
    pub const fn new() -> Self {
        HistoryConfig {
            max_events: 1024,
            max_bytes: 256 * 1024,
            max_age: None,
            #[cfg(feature = "json")]
            json_form: true,
            preallocate: false,
        }
    }

    /// Sets [`HistoryConfig::preallocate`].
    pub const fn preallocate(mut self, preallocate: bool) -> Self {
        self.preallocate = preallocate;
        self
    }

    /// Sets [`HistoryConfig::max_events`].
    pub const fn max_events(mut self, max_events: usize) -> Self {
        self.max_events = max_events;
        self
    }

    /// Sets [`HistoryConfig::max_bytes`].
    pub const fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Sets [`HistoryConfig::max_age`].
    pub const fn max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age = max_age;
        self
    }

    /// Sets [`HistoryConfig::json_form`].
    #[cfg(feature = "json")]
    pub const fn json_form(mut self, json_form: bool) -> Self {
        self.json_form = json_form;
        self
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig::new()
    }
}

/// One retained event, borrowed from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The event's offset in the log's epoch.
    pub offset: u64,
    /// When it was appended (never earlier than the event before it).
    pub at: Instant,
    /// What the event is.
    pub kind: &'a str,
    /// The application's bytes.
    pub payload: &'a [u8],
    /// Whether the event was appended with a coalescing key (so a newer event may supersede it).
    pub keyed: bool,
    /// The exact postcard encoding of `BatchEvent { offset, kind, payload }`, written once at
    /// append: batches are built by copying these back to back.
    pub encoded: &'a [u8],
    /// The same `BatchEvent` as JSON text, exactly as `serde_json` writes it, written once at
    /// append; `None` when the log does not keep JSON forms ([`HistoryConfig::json_form`]) or
    /// the payload is not JSON text.
    #[cfg(feature = "json")]
    pub json: Option<&'a [u8]>,
}

/// What a [`RoomLog::read`] found after a subscriber's cursor.
///
/// Not `#[non_exhaustive]`: the caller must decide what to send for every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Offsets `first..=last` fell out of the history before the subscriber read them (or, from
    /// [`RoomLog::read_json`], `last` is an event with no JSON form); nothing was visited. Send a
    /// gap notice and continue from cursor `last`.
    Gap {
        /// First lost offset (the cursor plus one).
        first: u64,
        /// Last lost offset (the oldest retained offset minus one).
        last: u64,
    },
    /// `delivered` events were visited, in offset order; at least one, at most the `max_events`
    /// asked for, and their encodings total `bytes`, at most the `max_bytes` asked for unless a
    /// single event alone is larger (the first event is always delivered, so reading always
    /// progresses). `cursor` is the offset of the last entry examined, superseded entries that
    /// were stepped over included: store it as the subscriber's new cursor.
    Progress {
        /// The subscriber's new cursor.
        cursor: u64,
        /// Events visited.
        delivered: usize,
        /// Sum of the visited events' encoded sizes.
        bytes: usize,
    },
    /// Nothing after the cursor: the subscriber has everything.
    UpToDate,
    /// The cursor is past [`RoomLog::head`], so it cannot come from this log's epoch as it is (a
    /// stale position, for example from before a restart that reused the epoch). Nothing was
    /// visited; send a reset (to the head, or to before the oldest retained event).
    Ahead,
}

/// Why [`RoomLog::append`] refused an event. Nothing changed in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppendError {
    /// The kind breaks the name rules of [`crate::text`].
    InvalidKind,
    /// The coalescing key breaks the name rules of [`crate::text`].
    InvalidKey,
    /// The event's encoding plus its key take more bytes than the whole history holds.
    TooLarge {
        /// Bytes the event needs.
        size: usize,
        /// [`HistoryConfig::max_bytes`].
        limit: usize,
    },
    /// The epoch used up its offsets ([`MAX_SAFE_INTEGER`]); start a new epoch.
    Exhausted,
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::InvalidKind => f.write_str("event kind breaks the name rules"),
            AppendError::InvalidKey => f.write_str("coalescing key breaks the name rules"),
            AppendError::TooLarge { size, limit } => {
                write!(f, "event of {size} bytes exceeds the history of {limit}")
            }
            AppendError::Exhausted => f.write_str("the epoch has no offsets left"),
        }
    }
}

impl core::error::Error for AppendError {}

/// How much longer an event's JSON form can be than its binary one: the JSON adds
/// `{"offset":,"kind":"","payload":}` (31 bytes) and up to 16 digits of offset, the binary form
/// has at least 3 bytes of varints that the JSON does not.
#[cfg(feature = "json")]
pub const JSON_OVERHEAD: usize = 31 + 16 - 3;

/// What a read counts against its byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// The binary forms.
    Binary,
    /// The JSON forms kept in the ring.
    #[cfg(feature = "json")]
    Json,
    /// An upper bound of the JSON forms, for events the reader transcodes.
    #[cfg(feature = "json")]
    JsonBound,
}

/// Where one retained event lives in the byte ring.
#[derive(Debug, Clone, Copy)]
struct Slot {
    at: Instant,
    /// Start of the encoding in the ring; the key bytes follow it, then the JSON form.
    start: usize,
    /// Length of the encoding.
    len: usize,
    /// Where the kind starts inside the encoding (after the offset varint).
    kind_start: u8,
    /// Length of the kind (at most 64).
    kind_len: u8,
    /// Where the payload starts inside the encoding; it runs to the end.
    payload_start: u8,
    /// Length of the coalescing key, 0 without one (keys are never empty).
    key_len: u8,
    /// Length of the JSON form, 0 without one (a JSON form is never empty).
    json_len: u32,
    /// Hash of the key, for the key index.
    hash: u32,
    /// A newer retained event has the same key.
    superseded: bool,
}

impl Slot {
    /// Bytes the event occupies in the ring.
    fn size(&self) -> usize {
        self.len + usize::from(self.key_len) + self.json_len as usize
    }

    fn end(&self) -> usize {
        self.start + self.size()
    }
}

/// A bounded append-only log of one room; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct RoomLog {
    epoch: u32,
    config: HistoryConfig,
    /// Offset of the newest event appended (0 before the first).
    head: u64,
    /// The retained events, oldest first; `entries[i]` has offset `oldest() + i`. It grows as
    /// events arrive, to at most `max_events`.
    entries: VecDeque<Slot>,
    /// Encodings and keys, each event contiguous, in append order around the ring. It grows at
    /// its end while the events have not wrapped around, to at most `max_bytes`; growing never
    /// moves an event's offset in it.
    ring: Vec<u8>,
    /// Bytes retained (sum of `Slot::size`).
    bytes: usize,
    keys: KeyIndex,
}

impl RoomLog {
    /// An empty log for `epoch`. It allocates nothing yet (unless
    /// [`HistoryConfig::preallocate`]): storage grows with the events, up to the bounds of
    /// `config`.
    ///
    /// # Panics
    /// Only if storage cannot be allocated when the log grows (as `Vec::push` does): a config
    /// asking for more memory than the machine has.
    pub fn new(epoch: u32, config: HistoryConfig) -> Self {
        let config = config.max_events(config.max_events.max(1));
        let mut log = RoomLog {
            epoch,
            config,
            head: 0,
            entries: VecDeque::new(),
            ring: Vec::new(),
            bytes: 0,
            keys: KeyIndex::new(config.max_events),
        };
        if config.preallocate {
            log.entries.reserve_exact(config.max_events);
            log.ring = vec![0; config.max_bytes];
            log.keys.allocate();
        }
        log
    }

    /// The log's epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The position of the last event appended; offset 0 before the first.
    pub fn head(&self) -> Position {
        Position::new(self.epoch, self.head)
    }

    /// The offset of the oldest retained event; `head().offset + 1` when none is retained.
    pub fn oldest(&self) -> u64 {
        (self.head + 1).saturating_sub(self.entries.len() as u64)
    }

    /// Events retained, superseded ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no event is retained.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes retained: encodings, coalescing keys and JSON forms. At most
    /// [`HistoryConfig::max_bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The config in force (`max_events` at least 1).
    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// When the oldest retained event expires, if there is an age limit and an event: the time to
    /// call [`RoomLog::expire`].
    pub fn next_expiry(&self) -> Option<Instant> {
        let max_age = self.config.max_age?;
        self.entries.front().map(|s| s.at + max_age)
    }

    /// Appends an event and returns its position; offsets start at 1 and grow by one.
    ///
    /// Expired events are dropped first ([`RoomLog::expire`]), then the oldest events are evicted
    /// until the new one fits. With a `key`, the previous retained event with the same key
    /// becomes superseded. The event's time is `now`, or the previous event's time if `now` is
    /// earlier, so times never decrease along the log. On error nothing changes.
    pub fn append(
        &mut self,
        now: Instant,
        kind: &str,
        payload: &[u8],
        key: Option<&str>,
    ) -> Result<Position, AppendError> {
        self.append_known(now, kind, payload, None, key)
    }

    /// [`RoomLog::append`] for a payload known to be JSON text, such as one `serde_json` just
    /// wrote ([`JsonText::write`]): its JSON form needs no check, which is most of what keeping
    /// JSON forms costs at append.
    #[cfg(feature = "json")]
    pub fn append_json(
        &mut self,
        now: Instant,
        kind: &str,
        payload: JsonText<'_>,
        key: Option<&str>,
    ) -> Result<Position, AppendError> {
        let text = payload.as_str();
        self.append_known(now, kind, text.as_bytes(), Some(text), key)
    }

    /// Appends `payload`; `known_json` is `Some` (the payload itself) when it is known to be
    /// JSON text.
    fn append_known(
        &mut self,
        now: Instant,
        kind: &str,
        payload: &[u8],
        known_json: Option<&str>,
        key: Option<&str>,
    ) -> Result<Position, AppendError> {
        check_name(kind, "kind").map_err(|_| AppendError::InvalidKind)?;
        if let Some(key) = key {
            check_name(key, "key").map_err(|_| AppendError::InvalidKey)?;
        }
        if self.head >= MAX_SAFE_INTEGER {
            return Err(AppendError::Exhausted);
        }
        let offset = self.head + 1;
        let key = key.map_or(&[][..], str::as_bytes);
        // The encoding: varint(offset) varint(kind.len()) kind varint(payload.len()) payload.
        // Names are at most 64 bytes and offsets at most 2^53 - 1, so both starts below fit a
        // `u8` (at most 83); only the payload can be large.
        let kind_start = varint_len(offset) + varint_len(kind.len() as u64);
        let payload_start = kind_start + kind.len() + varint_len(payload.len() as u64);
        let len = payload_start.saturating_add(payload.len());
        let json = self.json_form(offset, kind, payload, known_json);
        let json_len = json.map_or(0, |(_, n)| n);
        let size = len
            .saturating_add(key.len())
            .saturating_add(json_len as usize);
        if size > self.config.max_bytes {
            return Err(AppendError::TooLarge {
                size,
                limit: self.config.max_bytes,
            });
        }

        self.expire(now);
        let at = self.entries.back().map_or(now, |s| s.at.max(now));
        while self.entries.len() >= self.config.max_events {
            self.evict_oldest();
        }
        let start = self.place(size);
        if let Some(dst) = self.ring.get_mut(start..start + size) {
            let mut w = Writer { buf: dst, pos: 0 };
            w.varint(offset);
            w.varint(kind.len() as u64);
            w.put(kind.as_bytes());
            w.varint(payload.len() as u64);
            w.put(payload);
            w.put(key);
            #[cfg(feature = "json")]
            if let Some((raw, _)) = json {
                // `{"offset":N,"kind":"K","payload":P}`: what serde_json writes for a
                // `BatchEvent`, with the payload's JSON text as is (kinds need no escaping).
                w.put(br#"{"offset":"#);
                w.decimal(offset);
                w.put(br#","kind":""#);
                w.put(kind.as_bytes());
                w.put(br#"","payload":"#);
                w.put(raw.as_bytes());
                w.put(b"}");
            }
        }
        let hash = if key.is_empty() { 0 } else { fnv1a(key) };
        self.entries.push_back(Slot {
            at,
            start,
            len,
            kind_start: kind_start as u8,
            kind_len: kind.len() as u8,
            payload_start: payload_start as u8,
            key_len: key.len() as u8,
            json_len,
            hash,
            superseded: false,
        });
        self.head = offset;
        self.bytes += size;

        if !key.is_empty() {
            let oldest = self.oldest();
            let (entries, ring) = (&self.entries, &self.ring[..]);
            let same_key = |o: u64| key_of(entries, ring, oldest, o) == Some(key);
            if let Some(previous) = self.keys.upsert(hash, offset, same_key) {
                if let Some(slot) = index_of(oldest, previous).and_then(|i| self.entries.get_mut(i))
                {
                    slot.superseded = true;
                }
            }
        }
        Ok(Position::new(self.epoch, offset))
    }

    /// Drops the events that are [`HistoryConfig::max_age`] old or older at `now`, oldest first.
    /// Without an age limit, or when nothing is old enough, this does nothing.
    pub fn expire(&mut self, now: Instant) {
        let Some(max_age) = self.config.max_age else {
            return;
        };
        while self.entries.front().is_some_and(|s| s.at + max_age <= now) {
            self.evict_oldest();
        }
    }

    /// Reads for a subscriber whose cursor is `after` (the last offset it has; 0 for nothing):
    /// visits the retained, non-superseded events after it, oldest first, up to `max_events`
    /// events (0 is taken as 1) and `max_bytes` encoded bytes (the first event is visited even
    /// if it alone is larger). See [`Read`] for the outcomes. Allocates nothing; the visited
    /// entries borrow the log, so they may be kept until the log is next changed.
    pub fn read<'a>(
        &'a self,
        after: u64,
        max_events: usize,
        max_bytes: usize,
        visit: impl FnMut(Entry<'a>),
    ) -> Read {
        self.read_form(after, max_events, max_bytes, Measure::Binary, visit)
    }

    /// [`RoomLog::read`] for a JSON subscriber: `max_bytes` and [`Read::Progress`]'s `bytes`
    /// count the events' JSON forms.
    ///
    /// With [`HistoryConfig::json_form`], every visited entry has its [`Entry::json`], and an
    /// event with no JSON form (its payload is not JSON text) ends the read before it, or, when
    /// it comes first, is reported as a [`Read::Gap`] ending at its offset: it cannot be sent to
    /// this subscriber, which must hear that it missed it.
    ///
    /// Without it, entries have no JSON form; they are measured by an upper bound of their JSON
    /// size ([`JSON_OVERHEAD`] more than the binary form) for the caller to transcode them, and
    /// an event whose payload is not JSON text is treated as above (its payload is checked at
    /// each read, the price of keeping no JSON forms).
    #[cfg(feature = "json")]
    pub fn read_json<'a>(
        &'a self,
        after: u64,
        max_events: usize,
        max_bytes: usize,
        visit: impl FnMut(Entry<'a>),
    ) -> Read {
        let measure = if self.config.json_form {
            Measure::Json
        } else {
            Measure::JsonBound
        };
        self.read_form(after, max_events, max_bytes, measure, visit)
    }

    fn read_form<'a>(
        &'a self,
        after: u64,
        max_events: usize,
        max_bytes: usize,
        measure: Measure,
        mut visit: impl FnMut(Entry<'a>),
    ) -> Read {
        if after > self.head {
            return Read::Ahead;
        }
        if after == self.head {
            return Read::UpToDate;
        }
        let oldest = self.oldest();
        if after + 1 < oldest {
            return Read::Gap {
                first: after + 1,
                last: oldest - 1,
            };
        }
        let max_events = max_events.max(1);
        let skip = index_of(oldest, after + 1).unwrap_or(usize::MAX);
        let (mut cursor, mut delivered, mut bytes) = (after, 0usize, 0usize);
        for (offset, slot) in (after + 1..).zip(self.entries.iter().skip(skip)) {
            if slot.superseded {
                cursor = offset;
                continue;
            }
            let size = match measure {
                Measure::Binary => slot.len,
                #[cfg(feature = "json")]
                Measure::Json => slot.json_len as usize,
                // Checked on every read: the price of a log that keeps no JSON forms.
                #[cfg(feature = "json")]
                Measure::JsonBound => {
                    match crate::json_text::json_text(self.entry(offset, slot).payload) {
                        Some(_) => slot.len + JSON_OVERHEAD,
                        None => 0,
                    }
                }
            };
            if size == 0 {
                // Only an event with no JSON form measures 0: every encoding has at least 3 bytes.
                if delivered == 0 {
                    return Read::Gap {
                        first: after + 1,
                        last: offset,
                    };
                }
                break;
            }
            if delivered == max_events || (delivered > 0 && bytes.saturating_add(size) > max_bytes)
            {
                break;
            }
            visit(self.entry(offset, slot));
            delivered += 1;
            bytes += size;
            cursor = offset;
        }
        Read::Progress {
            cursor,
            delivered,
            bytes,
        }
    }

    /// The payload's JSON text (without surrounding white space, as `serde_json`'s `RawValue`
    /// holds it) and the length of the event's JSON form, if the log keeps JSON forms, the payload
    /// is JSON text and the form's length fits a `u32`.
    #[cfg(feature = "json")]
    fn json_form<'p>(
        &self,
        offset: u64,
        kind: &str,
        payload: &'p [u8],
        known_json: Option<&'p str>,
    ) -> Option<(&'p str, u32)> {
        if !self.config.json_form {
            return None;
        }
        let text = match known_json {
            Some(text) => text,
            None => crate::json_text::json_text(payload)?,
        };
        Some((text, json_event_len(offset, kind, text)?))
    }

    #[cfg(not(feature = "json"))]
    fn json_form(
        &self,
        _offset: u64,
        _kind: &str,
        _payload: &[u8],
        _known_json: Option<&str>,
    ) -> Option<((), u32)> {
        None
    }

    fn entry<'a>(&'a self, offset: u64, slot: &Slot) -> Entry<'a> {
        let encoded = self
            .ring
            .get(slot.start..slot.start + slot.len)
            .unwrap_or(&[]);
        let kind_start = usize::from(slot.kind_start);
        let kind = encoded
            .get(kind_start..kind_start + usize::from(slot.kind_len))
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("");
        let payload = encoded
            .get(usize::from(slot.payload_start)..)
            .unwrap_or(&[]);
        #[cfg(feature = "json")]
        let json = (slot.json_len > 0)
            .then(|| {
                let start = slot.start + slot.len + usize::from(slot.key_len);
                self.ring.get(start..start + slot.json_len as usize)
            })
            .flatten();
        Entry {
            offset,
            at: slot.at,
            kind,
            payload,
            keyed: slot.key_len > 0,
            encoded,
            #[cfg(feature = "json")]
            json,
        }
    }

    /// Removes the oldest retained event, keeping the key index consistent.
    fn evict_oldest(&mut self) {
        let oldest = self.oldest();
        if let Some(slot) = self.entries.pop_front() {
            self.bytes = self.bytes.saturating_sub(slot.size());
            if slot.key_len > 0 && !slot.superseded {
                self.keys.remove(slot.hash, oldest);
            }
        }
    }

    /// Finds where `size` contiguous bytes go in the ring, evicting the oldest events until they
    /// are free, and growing the ring at its end while the events have not wrapped. `size` is at
    /// most `max_bytes`, so this ends (at worst with an empty ring).
    ///
    /// The retained events occupy, in append order, either one run `[t, w)` (t the oldest's
    /// start, w the newest's end, t < w) or two runs `[t, ..)` and `[0, w)` with w <= t after
    /// wrapping around.
    fn place(&mut self, size: usize) -> usize {
        let max = self.config.max_bytes;
        loop {
            let (Some(front), Some(back)) = (self.entries.front(), self.entries.back()) else {
                self.grow_to(size);
                return 0;
            };
            let (t, w) = (front.start, back.end());
            if t < w {
                // One run: the end of the ring is free up to `max`, growing if need be; wrap
                // around only when the ring is as large as it may be.
                if max.saturating_sub(w) >= size {
                    self.grow_to(w + size);
                    return w;
                }
                if t >= size {
                    return 0;
                }
            } else if t - w >= size {
                return w;
            }
            self.evict_oldest();
        }
    }

    /// Makes the ring at least `len` bytes long (`len` <= `max_bytes`), doubling so that a
    /// growing log reallocates a logarithmic number of times.
    fn grow_to(&mut self, len: usize) {
        if self.ring.len() < len {
            let doubled = self.ring.len().saturating_mul(2).max(1024);
            self.ring
                .resize(len.max(doubled).min(self.config.max_bytes), 0);
        }
    }
}

/// Index into `entries` of `offset`, given the oldest retained offset.
fn index_of(oldest: u64, offset: u64) -> Option<usize> {
    usize::try_from(offset.checked_sub(oldest)?).ok()
}

/// The key bytes of the retained event at `offset`.
fn key_of<'a>(
    entries: &VecDeque<Slot>,
    ring: &'a [u8],
    oldest: u64,
    offset: u64,
) -> Option<&'a [u8]> {
    let slot = entries.get(index_of(oldest, offset)?)?;
    let start = slot.start + slot.len;
    ring.get(start..start + usize::from(slot.key_len))
}
