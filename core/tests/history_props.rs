//! Property tests of `RoomLog` against a model that keeps every event ever appended.

use std::time::Duration;

use eventwire_core::frame::BatchEvent;
use eventwire_core::history::{AppendError, Entry, HistoryConfig, Read, RoomLog};
use eventwire_core::time::Instant;
use proptest::prelude::*;

/// Keys the appends draw from; the last two have the same 32-bit hash in the log's index.
const KEYS: [&str; 7] = ["a", "b", "c", "d", "e", "key-901258", "key-1540052"];
const KINDS: [&str; 3] = ["k", "agent.status", "x:y-z_0"];

#[derive(Debug, Clone)]
enum Op {
    Append {
        kind: usize,
        len: usize,
        key: Option<usize>,
    },
    /// Let time pass, then expire.
    Wait { millis: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KINDS.len(), 0usize..120, proptest::option::of(0..KEYS.len()))
            .prop_map(|(kind, len, key)| Op::Append { kind, len, key }),
        1 => (0u64..400).prop_map(|millis| Op::Wait { millis }),
    ]
}

#[derive(Debug, Clone)]
struct Appended {
    offset: u64,
    at: Instant,
    kind: &'static str,
    payload: Vec<u8>,
    key: Option<&'static str>,
}

impl Appended {
    fn encoded(&self) -> Vec<u8> {
        postcard::to_allocvec(&BatchEvent {
            offset: self.offset,
            kind: self.kind,
            payload: eventwire_core::payload::Payload(&self.payload),
        })
        .unwrap()
    }

    /// Bytes the event takes in the log: its encoding and its key.
    fn size(&self) -> usize {
        self.encoded().len() + self.key.map_or(0, str::len)
    }
}

struct Model {
    /// Every event appended, in order: `events[i]` has offset `i + 1`.
    events: Vec<Appended>,
}

impl Model {
    fn event(&self, offset: u64) -> &Appended {
        &self.events[offset as usize - 1]
    }

    /// A newer event with the same key exists.
    fn superseded(&self, offset: u64) -> bool {
        let Some(key) = self.event(offset).key else {
            return false;
        };
        self.events[offset as usize..]
            .iter()
            .any(|e| e.key == Some(key))
    }
}

fn check_entry(model: &Model, e: &Entry<'_>) {
    let m = model.event(e.offset);
    assert_eq!(e.kind, m.kind);
    assert_eq!(e.payload, &m.payload[..]);
    assert_eq!(e.at, m.at);
    assert_eq!(e.keyed, m.key.is_some());
    assert_eq!(e.encoded, &m.encoded()[..]);
    let decoded: BatchEvent<'_> = postcard::from_bytes(e.encoded).unwrap();
    assert_eq!(decoded.offset, e.offset);
    assert_eq!(decoded.kind, e.kind);
    assert_eq!(decoded.payload.0, e.payload);
}

/// Reads everything from `after` with the given limits, checking each step, and returns the
/// offsets delivered.
fn drain(log: &RoomLog, model: &Model, after: u64, max_events: usize, max_bytes: usize) {
    let head = log.head().offset;
    let oldest = log.oldest();
    let first = log.read(after, max_events, max_bytes, |_| {});
    if after > head {
        assert_eq!(first, Read::Ahead);
        return;
    }
    if after == head {
        assert_eq!(first, Read::UpToDate);
        return;
    }
    let mut cursor = after;
    if after + 1 < oldest {
        // Exactly the offsets that fell out.
        assert_eq!(
            first,
            Read::Gap {
                first: after + 1,
                last: oldest - 1
            }
        );
        cursor = oldest - 1;
    }
    let expected: Vec<u64> = (cursor + 1..=head)
        .filter(|&o| !model.superseded(o))
        .collect();
    let mut got = Vec::new();
    loop {
        let mut batch = Vec::new();
        match log.read(cursor, max_events, max_bytes, |e| batch.push(e)) {
            Read::UpToDate => break,
            Read::Progress {
                cursor: next,
                delivered,
                bytes,
            } => {
                assert!(next > cursor && next <= head);
                // Progress is guaranteed, within the limits.
                assert!(delivered >= 1);
                assert_eq!(delivered, batch.len());
                assert!(delivered <= max_events.max(1));
                assert_eq!(bytes, batch.iter().map(|e| e.encoded.len()).sum::<usize>());
                assert!(bytes <= max_bytes || delivered == 1);
                for e in &batch {
                    check_entry(model, e);
                }
                // Every offset stepped over was superseded, and the cursor ends on the last
                // entry examined.
                let delivered_offsets: Vec<u64> = batch.iter().map(|e| e.offset).collect();
                for o in cursor + 1..=next {
                    assert!(delivered_offsets.contains(&o) || model.superseded(o), "{o}");
                }
                // The batch is as full as the limits allow: the next event would break one.
                if let Some(n) = (next + 1..=head).find(|&o| !model.superseded(o)) {
                    let size = model.event(n).encoded().len();
                    assert!(delivered == max_events.max(1) || bytes + size > max_bytes);
                }
                got.extend(delivered_offsets);
                cursor = next;
            }
            other => panic!("unexpected {other:?} at cursor {cursor}"),
        }
    }
    assert_eq!(got, expected);
    assert_eq!(cursor, head);
}

fn check_invariants(log: &RoomLog, model: &Model, config: &HistoryConfig) {
    let head = log.head().offset;
    assert_eq!(head, model.events.len() as u64);
    assert!(log.len() <= config.max_events.max(1));
    assert!(log.bytes() <= config.max_bytes);
    assert_eq!(log.len() as u64, head + 1 - log.oldest());
    assert_eq!(log.is_empty(), log.oldest() > log.head().offset);
    let retained: usize = (log.oldest()..=head).map(|o| model.event(o).size()).sum();
    assert_eq!(log.bytes(), retained);
}

fn run(config: HistoryConfig, ops: Vec<Op>, read_events: usize, read_bytes: usize) {
    let mut log = RoomLog::new(9, config);
    let mut model = Model { events: Vec::new() };
    let mut now = Instant::ZERO;
    let mut largest = 0usize;
    for op in ops {
        let op_kind = op.clone();
        let (len_before, oldest_before, bytes_before) = (log.len(), log.oldest(), log.bytes());
        match op {
            Op::Append { kind, len, key } => {
                let payload: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
                let event = Appended {
                    offset: model.events.len() as u64 + 1,
                    at: now,
                    kind: KINDS[kind],
                    payload,
                    key: key.map(|k| KEYS[k]),
                };
                let size = event.size();
                match log.append(now, event.kind, &event.payload, event.key) {
                    Ok(position) => {
                        assert_eq!(position.epoch, 9);
                        assert_eq!(position.offset, event.offset);
                        model.events.push(event);
                        largest = largest.max(size);
                        // Evicted only what was needed: before the last eviction made for
                        // bytes, the free space was less than the new event plus the most a
                        // wrap-around can leave unused.
                        let evicted = log.oldest() - oldest_before;
                        let for_count = usize::from(len_before == config.max_events.max(1));
                        if evicted as usize > for_count && config.max_age.is_none() {
                            let last = model.event(log.oldest() - 1).size();
                            let before_last = log.bytes() - size + last;
                            assert!(config.max_bytes - before_last < size + largest);
                        }
                    }
                    Err(AppendError::TooLarge { size: s, limit }) => {
                        assert_eq!(s, size);
                        assert_eq!(limit, config.max_bytes);
                        assert!(size > config.max_bytes);
                        assert_eq!(
                            (log.len(), log.oldest(), log.bytes()),
                            (len_before, oldest_before, bytes_before)
                        );
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Op::Wait { millis } => {
                now = now + Duration::from_millis(millis);
                log.expire(now);
            }
        }
        if let Some(max_age) = config.max_age {
            if matches!(op_kind, Op::Wait { .. }) {
                // Expiry dropped only events old enough.
                for o in oldest_before..log.oldest() {
                    assert!(model.event(o).at + max_age <= now);
                }
            }
            // What is retained is young enough.
            if !log.is_empty() {
                let at = model.event(log.oldest()).at;
                assert!(at + max_age > now);
                assert_eq!(log.next_expiry(), Some(at + max_age));
            }
        }
        check_invariants(&log, &model, &config);
        let head = log.head().offset;
        let from = log.oldest().saturating_sub(2);
        for after in [0].into_iter().chain(from..=head + 1) {
            drain(&log, &model, after, read_events, read_bytes);
        }
    }
}

fn keyed_append() -> impl Strategy<Value = Op> {
    (0..KEYS.len(), 0usize..20).prop_map(|(k, len)| Op::Append {
        kind: 0,
        len,
        key: Some(k),
    })
}

fn config() -> impl Strategy<Value = HistoryConfig> {
    (
        0usize..10,
        prop_oneof![Just(0usize), 20usize..400],
        proptest::option::of(100u64..1000),
    )
        .prop_map(|(events, bytes, age)| {
            HistoryConfig::new()
                .max_events(events)
                .max_bytes(bytes)
                .max_age(age.map(Duration::from_millis))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Reads from any cursor give exactly the retained, non-superseded events after it, in
    /// order and within the limits, with gaps exactly where events fell out; the log stays
    /// within its bounds.
    #[test]
    fn reads_match_the_model(
        config in config(),
        ops in proptest::collection::vec(op(), 1..80),
        read_events in 0usize..5,
        read_bytes in 0usize..150,
    ) {
        run(config, ops, read_events, read_bytes);
    }

    /// Same, with only keyed appends to a tiny index, so that probe runs, full-hash collisions
    /// and backward-shift deletions are frequent.
    #[test]
    fn keyed_appends_to_a_tiny_index(
        max_events in 1usize..4,
        ops in proptest::collection::vec(keyed_append(), 1..120),
    ) {
        let config = HistoryConfig::new().max_events(max_events).max_bytes(1 << 12);
        run(config, ops, usize::MAX, usize::MAX);
    }
}

#[test]
fn colliding_keys_are_distinct_keys() {
    // A reader only ever sees the latest value per key, and the two colliding keys are two keys.
    let mut log = RoomLog::new(1, HistoryConfig::new().max_events(2));
    let t = Instant::ZERO;
    log.append(t, "k", b"1", Some("key-901258")).unwrap();
    log.append(t, "k", b"2", Some("key-1540052")).unwrap();
    let mut seen = Vec::new();
    log.read(0, 10, 1000, |e| seen.push(e.payload.to_vec()));
    assert_eq!(seen, [b"1".to_vec(), b"2".to_vec()]);
}
