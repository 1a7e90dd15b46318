#[cfg(feature = "json")]
use super::encode::decimal_len;
use super::*;
use crate::frame::BatchEvent;
use crate::payload::Payload;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

fn collect(log: &RoomLog, after: u64) -> (Read, Vec<(u64, String, Vec<u8>)>) {
    let mut got = Vec::new();
    let read = log.read(after, usize::MAX, usize::MAX, |e| {
        got.push((e.offset, String::from(e.kind), e.payload.to_vec()))
    });
    (read, got)
}

#[test]
fn varint_len_matches_postcard() {
    for v in [0u64, 1, 127, 128, 16383, 16384, MAX_SAFE_INTEGER, u64::MAX] {
        let enc = postcard::to_allocvec(&v).unwrap();
        assert_eq!(varint_len(v), enc.len(), "{v}");
        let mut buf = [0u8; 10];
        let mut w = Writer {
            buf: &mut buf,
            pos: 0,
        };
        w.varint(v);
        let n = w.pos;
        assert_eq!(&buf[..n], &enc[..], "{v}");
    }
}

#[test]
fn offsets_start_at_one_and_encodings_are_exact() {
    let mut log = RoomLog::new(3, HistoryConfig::new());
    assert_eq!(log.head(), Position::new(3, 0));
    assert_eq!(log.oldest(), 1);
    assert!(log.is_empty());
    assert_eq!(log.read(0, 10, 100, |_| panic!()), Read::UpToDate);
    for i in 1..=3u64 {
        let p = log.append(Instant::ZERO, "k.v", &[i as u8; 200], None);
        assert_eq!(p, Ok(Position::new(3, i)));
    }
    let mut n = 0;
    log.read(0, 10, usize::MAX, |e| {
        n += 1;
        let expected = BatchEvent {
            offset: e.offset,
            kind: "k.v",
            payload: Payload(&[e.offset as u8; 200]),
        };
        assert_eq!(e.encoded, &postcard::to_allocvec(&expected).unwrap()[..]);
        assert_eq!(e.payload, expected.payload.0);
        assert_eq!(e.kind, "k.v");
    });
    assert_eq!(n, 3);
}

#[test]
fn bad_names_and_oversize_are_refused_without_change() {
    let mut log = RoomLog::new(1, HistoryConfig::new().max_bytes(64));
    assert_eq!(
        log.append(Instant::ZERO, "a b", b"", None),
        Err(AppendError::InvalidKind)
    );
    assert_eq!(
        log.append(Instant::ZERO, "k", b"", Some("")),
        Err(AppendError::InvalidKey)
    );
    // 1 (offset) + 1 + 1 (kind) + 1 (payload length) + 60 = 64 fits; with a key it does not.
    assert!(log.append(Instant::ZERO, "k", &[0; 60], None).is_ok());
    assert_eq!(
        log.append(Instant::ZERO, "k", &[0; 60], Some("x")),
        Err(AppendError::TooLarge {
            size: 65,
            limit: 64
        })
    );
    assert_eq!(log.head().offset, 1);
    assert_eq!(log.bytes(), 64);
    assert_eq!(
        AppendError::TooLarge {
            size: 65,
            limit: 64
        }
        .to_string(),
        "event of 65 bytes exceeds the history of 64"
    );
    let mut empty = RoomLog::new(1, HistoryConfig::new().max_bytes(0));
    assert!(matches!(
        empty.append(Instant::ZERO, "k", b"", None),
        Err(AppendError::TooLarge { size: 4, limit: 0 })
    ));
}

#[test]
fn offsets_end_at_max_safe_integer() {
    let mut log = RoomLog::new(1, HistoryConfig::new());
    log.head = MAX_SAFE_INTEGER - 1;
    let p = log.append(Instant::ZERO, "k", b"x", Some("key")).unwrap();
    assert_eq!(p.offset, MAX_SAFE_INTEGER);
    assert_eq!(
        log.append(Instant::ZERO, "k", b"x", None),
        Err(AppendError::Exhausted)
    );
    let (read, got) = collect(&log, MAX_SAFE_INTEGER - 1);
    assert_eq!(
        read,
        Read::Progress {
            cursor: MAX_SAFE_INTEGER,
            delivered: 1,
            bytes: 12
        }
    );
    assert_eq!(got.len(), 1);
    assert_eq!(log.read(u64::MAX, 1, 1, |_| {}), Read::Ahead);
    assert_eq!(
        log.read(0, 1, 1, |_| {}),
        Read::Gap {
            first: 1,
            last: MAX_SAFE_INTEGER - 1
        }
    );
}

#[test]
fn coalescing_skips_superseded_but_advances_cursor() {
    let mut log = RoomLog::new(1, HistoryConfig::new());
    let t = Instant::ZERO;
    log.append(t, "s", b"1", Some("a")).unwrap(); // 1, superseded by 4
    log.append(t, "s", b"2", Some("b")).unwrap(); // 2, superseded by 5
    log.append(t, "l", b"3", None).unwrap(); // 3
    log.append(t, "s", b"4", Some("a")).unwrap(); // 4
    log.append(t, "s", b"5", Some("b")).unwrap(); // 5
    log.append(t, "l", b"6", None).unwrap(); // 6
    let (_, got) = collect(&log, 0);
    let offsets: Vec<u64> = got.iter().map(|g| g.0).collect();
    assert_eq!(offsets, [3, 4, 5, 6]);
    // One event at a time: the cursor steps over 1 and 2 with the first delivery.
    assert_eq!(
        log.read(0, 1, usize::MAX, |_| {}),
        Read::Progress {
            cursor: 3,
            delivered: 1,
            bytes: 5
        }
    );
    // A reader that already has 1 still gets 4 (the newer value of "a").
    let (_, got) = collect(&log, 1);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [3, 4, 5, 6]);
}

#[test]
fn eviction_reports_gaps_and_cleans_the_key_index() {
    let mut log = RoomLog::new(1, HistoryConfig::new().max_events(3));
    let t = Instant::ZERO;
    for i in 0..5u8 {
        log.append(t, "s", &[i], Some("a")).unwrap();
    }
    assert_eq!(log.len(), 3);
    assert_eq!(log.oldest(), 3);
    assert_eq!(log.read(1, 9, 999, |_| {}), Read::Gap { first: 2, last: 2 });
    assert_eq!(log.read(0, 9, 999, |_| {}), Read::Gap { first: 1, last: 2 });
    let (_, got) = collect(&log, 2);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [5]);
    // Evicting the latest "a" (after more events) removes it from the index: a later "a" must
    // not mark anything superseded.
    for i in 0..3u8 {
        log.append(t, "l", &[i], None).unwrap();
    }
    assert!(log.keys.slots.iter().all(|s| s.offset == 0));
    log.append(t, "s", b"z", Some("a")).unwrap();
    let (_, got) = collect(&log, 6);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [7, 8, 9]);
}

#[test]
fn byte_ring_wraps_and_keeps_events_contiguous() {
    // Each event: 1 + 1 + 1 + 1 + 26 = 30 bytes; 100 bytes hold 3, with 10 left over.
    let mut log = RoomLog::new(1, HistoryConfig::new().max_bytes(100));
    for i in 1..=10u8 {
        log.append(Instant::ZERO, "k", &[i; 26], None).unwrap();
        assert!(log.bytes() <= 100);
        assert_eq!(log.bytes(), log.len() * 30);
        let (_, got) = collect(&log, log.oldest() - 1);
        for (offset, _, payload) in got {
            assert_eq!(payload, [offset as u8; 26]);
        }
    }
    assert_eq!(log.len(), 3);
}

#[test]
fn read_limits_and_progress() {
    let mut log = RoomLog::new(1, HistoryConfig::new());
    for _ in 0..5 {
        log.append(Instant::ZERO, "k", &[0; 10], None).unwrap(); // 14 bytes each
    }
    assert_eq!(
        log.read(0, 2, usize::MAX, |_| {}),
        Read::Progress {
            cursor: 2,
            delivered: 2,
            bytes: 28
        }
    );
    assert_eq!(
        log.read(0, 10, 41, |_| {}),
        Read::Progress {
            cursor: 2,
            delivered: 2,
            bytes: 28
        }
    );
    assert_eq!(
        log.read(0, 10, 42, |_| {}),
        Read::Progress {
            cursor: 3,
            delivered: 3,
            bytes: 42
        }
    );
    // The first event goes even when alone it is over the limit, and 0 events means 1.
    assert_eq!(
        log.read(3, 0, 0, |_| {}),
        Read::Progress {
            cursor: 4,
            delivered: 1,
            bytes: 14
        }
    );
    assert_eq!(log.read(6, 1, 1, |_| {}), Read::Ahead);
}

#[test]
fn expiry_by_age() {
    let config = HistoryConfig::new().max_age(Some(Duration::from_secs(10)));
    let mut log = RoomLog::new(1, config);
    assert_eq!(log.next_expiry(), None);
    log.append(Instant::from_millis(0), "k", b"a", Some("x"))
        .unwrap();
    log.append(Instant::from_millis(5000), "k", b"b", None)
        .unwrap();
    // A clock going backwards does not make times decrease along the log.
    log.append(Instant::from_millis(4000), "k", b"c", None)
        .unwrap();
    assert_eq!(log.next_expiry(), Some(Instant::from_millis(10_000)));
    log.expire(Instant::from_millis(9_999));
    assert_eq!(log.len(), 3);
    log.expire(Instant::from_millis(10_000));
    assert_eq!(log.len(), 2);
    assert_eq!(log.read(0, 9, 99, |_| {}), Read::Gap { first: 1, last: 1 });
    log.expire(Instant::from_millis(15_000));
    assert!(log.is_empty());
    assert_eq!(log.bytes(), 0);
    assert_eq!(log.oldest(), 4);
    assert_eq!(log.read(3, 9, 99, |_| {}), Read::UpToDate);
    assert_eq!(log.read(1, 9, 99, |_| {}), Read::Gap { first: 2, last: 3 });
    // Appending expires too; the index forgot "x".
    let p = log.append(Instant::from_millis(20_000), "k", b"d", Some("x"));
    assert_eq!(p, Ok(Position::new(1, 4)));
    let (_, got) = collect(&log, 3);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2, b"d");
}

#[test]
fn colliding_hashes_never_supersede_each_other() {
    // Two valid keys with the same 32-bit hash, found by a birthday search over `key-{i}`
    // (1.5 million candidates; too slow to repeat in every test run).
    let (a, b) = ("key-901258", "key-1540052");
    assert_eq!(fnv1a(a.as_bytes()), fnv1a(b.as_bytes()));

    let mut log = RoomLog::new(1, HistoryConfig::new().max_events(4));
    let t = Instant::ZERO;
    log.append(t, "k", b"a1", Some(a)).unwrap(); // 1
    log.append(t, "k", b"b1", Some(b)).unwrap(); // 2
    log.append(t, "k", b"b2", Some(b)).unwrap(); // 3 supersedes 2 only
    let (_, got) = collect(&log, 0);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 3]);
    log.append(t, "k", b"a2", Some(a)).unwrap(); // 4 supersedes 1 only
    let (_, got) = collect(&log, 0);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [3, 4]);
    // Evict 1 and 2 (both superseded), then 3 (latest of b) and 4 (latest of a).
    for _ in 0..4 {
        log.append(t, "k", b"-", None).unwrap();
    }
    assert!(log.keys.slots.iter().all(|s| s.offset == 0));
    log.append(t, "k", b"b3", Some(b)).unwrap();
    log.append(t, "k", b"a3", Some(a)).unwrap();
    let (_, got) = collect(&log, 8);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [9, 10]);
}

#[cfg(feature = "json")]
#[test]
fn json_forms_are_what_serde_json_writes() {
    let payloads: [&[u8]; 7] = [
        br#"{"cpu":0.42,"mem_mb":512}"#,
        b" [1, 2 ,3]\n",
        br#""line\nwith \"escapes\" and \u00e9""#,
        b"-3.5e10",
        b"null",
        br#"{"nested":{"x":[true,false,{}]},"s":"\u2028"}"#,
        "\t{\"unicode\":\"h\u{e9}llo \u{1F600}\"} ".as_bytes(),
    ];
    let mut log = RoomLog::new(9, HistoryConfig::new());
    for (i, payload) in payloads.iter().enumerate() {
        let kind = if i % 2 == 0 { "agent.metrics" } else { "a" };
        log.append(Instant::ZERO, kind, payload, None).unwrap();
    }
    let mut seen = 0;
    log.read(0, usize::MAX, usize::MAX, |e| {
        let expected = serde_json::to_vec(&BatchEvent {
            offset: e.offset,
            kind: e.kind,
            payload: Payload(e.payload),
        })
        .unwrap();
        assert_eq!(e.json, Some(&expected[..]), "offset {}", e.offset);
        seen += 1;
    });
    assert_eq!(seen, payloads.len());
}

#[cfg(feature = "json")]
#[test]
fn decimal_matches_serde_json() {
    let mut buf = [0u8; 20];
    for v in [0u64, 7, 9, 10, 99, 100, 12345, MAX_SAFE_INTEGER, u64::MAX] {
        let expected = serde_json::to_string(&v).unwrap();
        assert_eq!(
            crate::text::decimal(v, &mut buf),
            expected.as_bytes(),
            "{v}"
        );
        assert_eq!(decimal_len(v), expected.len(), "{v}");
    }
}

#[cfg(feature = "json")]
#[test]
fn json_forms_cost_bytes_and_can_be_turned_off() {
    let payload = br#"{"status":"busy"}"#;
    let mut with = RoomLog::new(1, HistoryConfig::new());
    let mut without = RoomLog::new(1, HistoryConfig::new().json_form(false));
    with.append(Instant::ZERO, "k", payload, None).unwrap();
    without.append(Instant::ZERO, "k", payload, None).unwrap();
    let json_len = br#"{"offset":1,"kind":"k","payload":{"status":"busy"}}"#.len();
    assert_eq!(with.bytes(), without.bytes() + json_len);
    without.read(0, 1, usize::MAX, |e| assert_eq!(e.json, None));
    // Without JSON forms a JSON reader gets the events to transcode, measured by a bound.
    assert_eq!(
        without.read_json(0, 10, usize::MAX, |e| assert_eq!(e.json, None)),
        Read::Progress {
            cursor: 1,
            delivered: 1,
            bytes: without.bytes() + JSON_OVERHEAD
        }
    );
    assert!(without.bytes() + JSON_OVERHEAD >= json_len);
    // Both forms count against `max_bytes`.
    let tight = HistoryConfig::new().max_bytes(without.bytes() + json_len - 1);
    assert!(matches!(
        RoomLog::new(1, tight).append(Instant::ZERO, "k", payload, None),
        Err(AppendError::TooLarge { .. })
    ));
    assert!(RoomLog::new(1, tight.json_form(false))
        .append(Instant::ZERO, "k", payload, None)
        .is_ok());
}

#[cfg(feature = "json")]
#[test]
fn json_reads_count_json_bytes_and_stop_at_events_without_a_json_form() {
    let mut log = RoomLog::new(1, HistoryConfig::new());
    log.append(Instant::ZERO, "k", b"1", None).unwrap(); // {"offset":1,"kind":"k","payload":1}: 35
    log.append(Instant::ZERO, "k", b"2", None).unwrap();
    log.append(Instant::ZERO, "k", b"\xff not json", None)
        .unwrap();
    log.append(Instant::ZERO, "k", b"4", None).unwrap();
    let mut got = Vec::new();
    assert_eq!(
        log.read_json(0, 10, 69, |e| got.push(e.json.unwrap().to_vec())),
        Read::Progress {
            cursor: 1,
            delivered: 1,
            bytes: 35
        }
    );
    assert_eq!(got, [br#"{"offset":1,"kind":"k","payload":1}"#.to_vec()]);
    // The read ends before the event with no JSON form...
    assert_eq!(
        log.read_json(0, 10, usize::MAX, |_| {}),
        Read::Progress {
            cursor: 2,
            delivered: 2,
            bytes: 70
        }
    );
    // ...which, met first, is a gap of exactly itself; the binary form still has it.
    assert_eq!(
        log.read_json(2, 10, usize::MAX, |_| panic!("visited")),
        Read::Gap { first: 3, last: 3 }
    );
    assert_eq!(
        log.read(2, 1, usize::MAX, |e| assert_eq!(e.json, None)),
        Read::Progress {
            cursor: 3,
            delivered: 1,
            bytes: 14
        }
    );
    assert_eq!(
        log.read_json(3, 10, usize::MAX, |e| assert_eq!(e.offset, 4)),
        Read::Progress {
            cursor: 4,
            delivered: 1,
            bytes: 35
        }
    );
}

#[cfg(feature = "json")]
#[test]
fn json_reads_step_over_superseded_events_into_the_gap() {
    let mut log = RoomLog::new(1, HistoryConfig::new());
    log.append(Instant::ZERO, "m", b"1", Some("a")).unwrap();
    log.append(Instant::ZERO, "m", b"2", Some("a")).unwrap();
    log.append(Instant::ZERO, "m", b"raw", None).unwrap();
    // Offset 1 is superseded: the gap covers it with the event that has no JSON form.
    assert_eq!(
        log.read_json(0, 10, usize::MAX, |e| assert_eq!(e.offset, 2)),
        Read::Progress {
            cursor: 2,
            delivered: 1,
            bytes: 35
        }
    );
    let mut log = RoomLog::new(1, HistoryConfig::new());
    log.append(Instant::ZERO, "m", b"1", Some("a")).unwrap();
    log.append(Instant::ZERO, "m", b"raw", None).unwrap();
    log.append(Instant::ZERO, "m", b"3", Some("a")).unwrap();
    assert_eq!(
        log.read_json(0, 10, usize::MAX, |_| panic!("visited")),
        Read::Gap { first: 1, last: 2 }
    );
}

#[cfg(feature = "json")]
#[test]
fn json_text_payloads_make_the_same_entries_unchecked() {
    let value = serde_json::json!({"agent_id": "agent-7", "cpu": 0.5, "tags": ["a", "\u{e9}"]});
    let mut buf = Vec::new();
    let text = JsonText::write(&value, &mut buf).unwrap();
    assert_eq!(JsonText::new(text.as_str().as_bytes()), Some(text));
    assert_eq!(JsonText::new(b" [1] ").map(|t| t.as_str()), Some("[1]"));
    assert_eq!(JsonText::new(b"[1"), None);
    let mut checked = RoomLog::new(1, HistoryConfig::new());
    let mut known = RoomLog::new(1, HistoryConfig::new());
    checked
        .append(Instant::ZERO, "k", text.as_str().as_bytes(), Some("a"))
        .unwrap();
    known
        .append_json(Instant::ZERO, "k", text, Some("a"))
        .unwrap();
    let entries = |log: &RoomLog| {
        let mut all = Vec::new();
        log.read(0, 10, usize::MAX, |e| {
            all.push((e.encoded.to_vec(), e.json.map(<[u8]>::to_vec)))
        });
        all
    };
    assert_eq!(entries(&checked), entries(&known));
    assert!(entries(&known)[0].1.is_some());
}
