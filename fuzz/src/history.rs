//! The `history` target: one `eventwire_core::history::RoomLog` (the batcher's source: every
//! batch is a copy of what `read` visits) under arbitrary appends, with and without coalescing
//! keys, time passing, expiry, and reads from arbitrary cursors with arbitrary budgets, in both
//! forms, compared after every step with a plain model: the list of every event appended.
//!
//! # Invariants checked
//! - An append gets the next offset (the head plus one), or an error that is justified (an
//!   invalid kind or key; `TooLarge` only over `max_bytes`) and changes nothing.
//! - At most `max_events` (0 taken as 1) events and `max_bytes` bytes retained; the retained
//!   events are exactly `oldest()..=head()`; the oldest never moves back.
//! - Expiry drops only events `max_age` old and leaves none; `next_expiry` is the oldest retained
//!   event's time plus `max_age`.
//! - A read says `Ahead` exactly past the head, `UpToDate` exactly at it, `Gap` exactly when the
//!   cursor fell behind the oldest (naming `cursor + 1..=oldest - 1`); otherwise it visits, in
//!   order, a prefix of the retained events after the cursor that no later event superseded (a
//!   keyed event is superseded by any later one with the same key: only the latest is read),
//!   between 1 and `max_events`, within `max_bytes` unless one alone is larger, and stops only
//!   for a reason (the event limit, the next event not fitting, or, for JSON, the next having no
//!   JSON form). Its cursor covers only superseded events after the last one visited.
//! - A JSON read of a log that keeps JSON forms counts them against the budget, and an event
//!   without one at the cursor is a `Gap` ending at it; of a log that keeps none, it counts the
//!   binary form plus `JSON_OVERHEAD` and never reports such a gap. Events have a JSON form
//!   exactly when the log keeps them and the payload is JSON text.
//! - Each visited entry has the appended kind, payload, key flag and time; its encoding is the
//!   postcard `BatchEvent` (it decodes inside a batch to exactly that event), and its JSON form
//!   the JSON one.

use arbitrary::Arbitrary;
use eventwire_core::codec::{binary, json};
use eventwire_core::frame::Seq;
use eventwire_core::frame::{Batch, Frame};
use eventwire_core::history::{AppendError, Entry, HistoryConfig, Read, RoomLog, JSON_OVERHEAD};
use eventwire_core::time::Instant;

use super::ops::{self, variant, Advance, Bytes, Encode};

/// The log's configuration, read first.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Setup {
    /// The epoch.
    pub epoch: u32,
    /// `max_events`, 0 to 32.
    pub max_events: u8,
    /// `max_bytes`, 0 to 4095.
    pub max_bytes: u16,
    /// `max_age` in milliseconds, if any.
    pub max_age_ms: Option<u16>,
    /// `json_form`.
    pub json_form: bool,
}

impl Encode for Setup {
    fn encode(&self, out: &mut Vec<u8>) {
        self.epoch.encode(out);
        self.max_events.encode(out);
        self.max_bytes.encode(out);
        self.max_age_ms.encode(out);
        self.json_form.encode(out);
    }
}

/// A payload: from the shared table, or any bytes.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum PayloadSel {
    /// [`ops::payload`].
    Table(u8),
    /// These bytes.
    Raw(Bytes),
}

/// A cursor relative to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum CursorSel {
    /// The head minus this.
    Head(u8),
    /// Before the oldest retained event, minus this.
    Oldest(u8),
    /// Past the head by one plus this.
    Ahead(u8),
    /// Any.
    Abs(u64),
}

/// One step of the scenario.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum Op {
    /// `append` of kind `kind` (an index into [`ops::KINDS`]) with an optional key (an index into
    /// [`ops::KEYS`]).
    Append {
        kind: u8,
        payload: PayloadSel,
        key: Option<u8>,
    },
    /// Time passes (`ToDeadline`: to `next_expiry`).
    Advance(Advance),
    /// `expire` now.
    Expire,
    /// `read` (or `read_json`) from a cursor with budgets.
    Read {
        after: CursorSel,
        max_events: u8,
        max_bytes: u16,
        json: bool,
    },
}

/// The input of the `history` target.
pub type Input = ops::Scenario<Setup, Op>;

/// Runs one raw input of the `history` target; returns the number of entries visited by reads (so the
/// stable replay can check that the seeds reach that far).
pub fn run(data: &[u8]) -> u64 {
    let (setup, ops) = ops::ops::<Setup, Op>(data);
    run_scenario(&ops::Scenario { setup, ops })
}

/// Runs one scenario of the `history` target; returns the number of entries visited by reads.
pub fn run_scenario(input: &Input) -> u64 {
    let setup = &input.setup;
    let config = HistoryConfig::new()
        .max_events(usize::from(setup.max_events % 33))
        .max_bytes(usize::from(setup.max_bytes % 4096))
        .max_age(
            setup
                .max_age_ms
                .map(|ms| std::time::Duration::from_millis(u64::from(ms))),
        )
        .json_form(setup.json_form);
    let mut h = Harness {
        log: RoomLog::new(setup.epoch, config),
        config,
        now: Instant::ZERO,
        events: Vec::new(),
        visited: std::cell::Cell::new(0),
    };
    for op in &input.ops {
        h.step(op);
        h.check();
    }
    h.visited.get()
}

/// An appended event, as the model keeps it.
struct Appended {
    kind: &'static str,
    payload: Vec<u8>,
    key: Option<&'static str>,
    at: Instant,
}

struct Harness {
    log: RoomLog,
    config: HistoryConfig,
    now: Instant,
    /// Every event appended; offset `i + 1` at index `i`.
    events: Vec<Appended>,
    /// Entries visited by reads (reads take `&self`).
    visited: std::cell::Cell<u64>,
}

impl Harness {
    fn event(&self, offset: u64) -> &Appended {
        &self.events[(offset - 1) as usize]
    }

    /// Whether a later appended event has the same key.
    fn superseded(&self, offset: u64) -> bool {
        let Some(key) = self.event(offset).key else {
            return false;
        };
        self.events[offset as usize..]
            .iter()
            .any(|e| e.key == Some(key))
    }

    /// Whether the log keeps a JSON form of the event.
    fn has_json(&self, offset: u64) -> bool {
        self.config.json_form && ops::is_json_text(&self.event(offset).payload)
    }

    /// What a read counts of an entry against its byte budget: the binary form; for a JSON read,
    /// the JSON form the log keeps or, in a log that keeps none, the bound of it
    /// ([`JSON_OVERHEAD`] over the binary form) for a reader that transcodes.
    fn size(&self, e: &Entry<'_>, json: bool) -> usize {
        match (json, self.config.json_form) {
            (false, _) => e.encoded.len(),
            (true, true) => e.json.map_or(0, <[u8]>::len),
            (true, false) => e.encoded.len() + JSON_OVERHEAD,
        }
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Append { kind, payload, key } => {
                let kind = ops::kind(*kind);
                let key = key.map(ops::key);
                let payload = match payload {
                    PayloadSel::Table(i) => ops::payload(*i).to_vec(),
                    PayloadSel::Raw(b) => b.0.clone(),
                };
                let before = (self.log.head(), self.log.len(), self.log.bytes());
                match self.log.append(self.now, kind, &payload, key) {
                    Ok(position) => {
                        assert_eq!(
                            (position.epoch, position.offset),
                            (before.0.epoch, before.0.offset + 1),
                            "append did not take the next offset"
                        );
                        self.events.push(Appended {
                            kind,
                            payload,
                            key,
                            at: self.now,
                        });
                    }
                    Err(e) => {
                        assert_eq!(
                            (self.log.head(), self.log.len(), self.log.bytes()),
                            before,
                            "a refused append changed the log"
                        );
                        match e {
                            AppendError::InvalidKind => assert_eq!(kind, "no kind"),
                            AppendError::InvalidKey => {
                                assert_ne!(kind, "no kind", "kind checked first");
                                assert_eq!(key, Some("bad key"));
                            }
                            AppendError::TooLarge { size, limit } => {
                                assert_eq!(limit, self.config.max_bytes, "TooLarge limit");
                                assert!(size > limit, "{size} bytes refused under {limit}");
                            }
                            other => panic!("append refused with {other:?}"),
                        }
                    }
                }
            }
            Op::Advance(by) => self.now = by.apply(self.now, self.log.next_expiry()),
            Op::Expire => {
                let oldest = self.log.oldest();
                self.log.expire(self.now);
                if let Some(max_age) = self.config.max_age {
                    for o in oldest..self.log.oldest() {
                        assert!(
                            self.event(o).at + max_age <= self.now,
                            "expiry dropped offset {o}, not yet {max_age:?} old"
                        );
                    }
                    if let Some(at) = self.log.next_expiry() {
                        assert!(at > self.now, "an expired event is still retained");
                    }
                } else {
                    assert_eq!(self.log.oldest(), oldest, "expiry without an age limit");
                }
            }
            Op::Read {
                after,
                max_events,
                max_bytes,
                json,
            } => {
                let head = self.log.head().offset;
                let after = match *after {
                    CursorSel::Head(n) => head.saturating_sub(u64::from(n)),
                    CursorSel::Oldest(n) => (self.log.oldest() - 1).saturating_sub(u64::from(n)),
                    CursorSel::Ahead(n) => head + 1 + u64::from(n),
                    CursorSel::Abs(a) => a,
                };
                self.read(
                    after,
                    usize::from(*max_events),
                    usize::from(*max_bytes),
                    *json,
                );
            }
        }
    }

    fn read(&self, after: u64, max_events: usize, max_bytes: usize, json: bool) {
        let mut visited: Vec<Entry<'_>> = Vec::new();
        let read = if json {
            self.log
                .read_json(after, max_events, max_bytes, |e| visited.push(e))
        } else {
            self.log
                .read(after, max_events, max_bytes, |e| visited.push(e))
        };
        let head = self.log.head().offset;
        let oldest = self.log.oldest();
        let story = format!("read after {after} (oldest {oldest}, head {head}, json {json})");
        if after > head {
            assert_eq!(read, Read::Ahead, "{story}");
        } else if after == head {
            assert_eq!(read, Read::UpToDate, "{story}");
        } else if after + 1 < oldest {
            assert_eq!(
                read,
                Read::Gap {
                    first: after + 1,
                    last: oldest - 1
                },
                "{story}"
            );
        }
        let Read::Progress {
            cursor,
            delivered,
            bytes,
        } = read
        else {
            if let Read::Gap { first, last } = read {
                if after + 1 >= oldest {
                    // Only a JSON read reports a gap inside the history: the first event it
                    // would visit cannot take the JSON form.
                    assert!(json, "{story}: a gap inside the history");
                    assert_eq!(first, after + 1, "{story}");
                    let next = (first..=head).find(|&o| !self.superseded(o));
                    assert_eq!(next, Some(last), "{story}: the gap ends elsewhere");
                    assert!(
                        !ops::is_json_text(&self.event(last).payload),
                        "{story}: {last} can take the JSON form"
                    );
                }
            }
            assert!(
                visited.is_empty(),
                "{story}: visited entries without progress"
            );
            return;
        };
        assert!(after < head && after + 1 >= oldest, "{story}: progress");
        let expected: Vec<u64> = (after + 1..=head)
            .filter(|&o| !self.superseded(o))
            .collect();
        let offsets: Vec<u64> = visited.iter().map(|e| e.offset).collect();
        assert_eq!(delivered, offsets.len(), "{story}: delivered count");
        assert!(
            delivered >= 1 && delivered <= max_events.max(1),
            "{story}: {delivered} events, limit {max_events}"
        );
        assert_eq!(
            &expected[..delivered],
            &offsets[..],
            "{story}: not the latest events in order"
        );
        let last = offsets[delivered - 1];
        assert!(cursor >= last && cursor <= head, "{story}: cursor {cursor}");
        for o in last + 1..=cursor {
            assert!(
                self.superseded(o),
                "{story}: cursor {cursor} passes unsent {o}"
            );
        }
        let sum: usize = visited.iter().map(|e| self.size(e, json)).sum();
        assert_eq!(bytes, sum, "{story}: bytes");
        assert!(
            bytes <= max_bytes || delivered == 1,
            "{story}: {bytes} bytes over {max_bytes}"
        );
        if let Some(&next) = expected.get(delivered) {
            // Stopping before `next` needs a reason.
            let mut next_size = None;
            let mut visit = |e: Entry<'_>| next_size = Some(self.size(&e, json));
            let again = if json {
                self.log.read_json(cursor, 1, usize::MAX, &mut visit)
            } else {
                self.log.read(cursor, 1, usize::MAX, &mut visit)
            };
            let reason = delivered == max_events.max(1)
                || match next_size {
                    Some(n) => bytes + n > max_bytes,
                    None => json && matches!(again, Read::Gap { last, .. } if last == next),
                };
            assert!(
                reason,
                "{story}: stopped before {next} for no reason ({again:?})"
            );
        }
        self.visited.set(self.visited.get() + visited.len() as u64);
        for e in &visited {
            self.check_entry(e, json);
        }
    }

    fn check_entry(&self, e: &Entry<'_>, json_read: bool) {
        let model = self.event(e.offset);
        assert_eq!(
            (e.kind, e.payload, e.keyed, e.at),
            (
                model.kind,
                &model.payload[..],
                model.key.is_some(),
                model.at
            ),
            "entry {} differs from what was appended",
            e.offset
        );
        // The encoding is exactly one batch event: inside a batch it decodes to this event.
        let frame = Frame::Batch(Batch {
            room: "r",
            epoch: self.log.epoch(),
            events: Seq::from_encoded(e.encoded),
        });
        let mut bytes = Vec::new();
        if let Err(err) = binary::encode_into(&frame, &mut bytes) {
            panic!("entry {} does not make a batch: {err:?}", e.offset);
        }
        let Ok(Frame::Batch(b)) = binary::decode(&bytes, usize::MAX) else {
            panic!("a batch of entry {} does not decode", e.offset);
        };
        let got: Vec<_> = b
            .events
            .iter()
            .map(|x| (x.offset, x.kind, x.payload.0))
            .collect();
        assert_eq!(
            got,
            [(e.offset, model.kind, &model.payload[..])],
            "the encoding of entry {} is not its event",
            e.offset
        );
        assert_eq!(
            e.json.is_some(),
            self.has_json(e.offset),
            "entry {}: a JSON form exactly when kept and the payload is JSON text",
            e.offset
        );
        if json_read {
            // With JSON forms kept or not, a JSON read visits only events that can take it.
            assert!(
                ops::is_json_text(&model.payload),
                "a JSON read visited {}, whose payload is not JSON text",
                e.offset
            );
        }
        if let Some(text) = e.json {
            let mut doc = format!(
                r#"{{"batch":{{"room":"r","epoch":{},"events":["#,
                self.log.epoch()
            )
            .into_bytes();
            doc.extend_from_slice(text);
            doc.extend_from_slice(b"]}}");
            let Ok(Frame::Batch(b)) = json::decode(&doc, usize::MAX) else {
                panic!(
                    "the JSON form {:?} of entry {} does not decode",
                    String::from_utf8_lossy(text),
                    e.offset
                );
            };
            let got: Vec<_> = b
                .events
                .iter()
                .map(|x| (x.offset, x.kind, x.payload.0))
                .collect();
            assert_eq!(
                got,
                [(e.offset, model.kind, model.payload.trim_ascii())],
                "the JSON form of entry {} is not its event",
                e.offset
            );
        }
    }

    fn check(&self) {
        let log = &self.log;
        let max_events = self.config.max_events.max(1);
        assert!(
            log.len() <= max_events,
            "{} events over {max_events}",
            log.len()
        );
        assert!(
            log.bytes() <= self.config.max_bytes,
            "{} bytes over {}",
            log.bytes(),
            self.config.max_bytes
        );
        let head = log.head().offset;
        assert_eq!(
            head,
            self.events.len() as u64,
            "head is not the last offset appended"
        );
        assert_eq!(log.oldest(), head + 1 - log.len() as u64, "oldest");
        assert_eq!(log.is_empty(), head + 1 == log.oldest(), "is_empty");
        let expiry = self
            .config
            .max_age
            .and_then(|age| (!log.is_empty()).then(|| self.event(log.oldest()).at + age));
        assert_eq!(log.next_expiry(), expiry, "next_expiry");
    }
}

impl Encode for PayloadSel {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            PayloadSel::Table(i) => {
                variant(out, 0, 2);
                i.encode(out);
            }
            PayloadSel::Raw(b) => {
                variant(out, 1, 2);
                b.encode(out);
            }
        }
    }
}

impl Encode for CursorSel {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            CursorSel::Head(n) => {
                variant(out, 0, 4);
                n.encode(out);
            }
            CursorSel::Oldest(n) => {
                variant(out, 1, 4);
                n.encode(out);
            }
            CursorSel::Ahead(n) => {
                variant(out, 2, 4);
                n.encode(out);
            }
            CursorSel::Abs(a) => {
                variant(out, 3, 4);
                a.encode(out);
            }
        }
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Append { kind, payload, key } => {
                variant(out, 0, 4);
                kind.encode(out);
                payload.encode(out);
                key.encode(out);
            }
            Op::Advance(by) => {
                variant(out, 1, 4);
                by.encode(out);
            }
            Op::Expire => variant(out, 2, 4),
            Op::Read {
                after,
                max_events,
                max_bytes,
                json,
            } => {
                variant(out, 3, 4);
                after.encode(out);
                max_events.encode(out);
                max_bytes.encode(out);
                json.encode(out);
            }
        }
    }
}
