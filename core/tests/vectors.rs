//! Golden vectors: for every frame kind, its JSON form and its exact binary bytes.
//!
//! `core/tests/vectors/` is the contract for other implementations. Each case `NAME` has
//! `NAME.json`, the exact JSON text message (one line), and `NAME.hex`, the exact binary message
//! in hex (one line). This test checks both directions for every case: JSON -> frame -> bytes
//! equals the hex, and bytes -> frame -> JSON equals the text. It also checks that the frames built here encode to the stored vectors,
//! and that every kind has one. Run with `EVENTWIRE_BLESS=1` to write the files after a
//! deliberate format change (a new protocol version).

use std::collections::BTreeSet;
use std::path::PathBuf;

use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_core::codec::{binary, json};
use eventwire_core::frame::Seq;
use eventwire_core::frame::*;
use eventwire_core::payload::Payload;

const STATUS: &[u8] = br#"{"agent_id":"agent-7","old_status":"idle","new_status":"busy","details":{"task":"task-42"}}"#;

fn cases(
    rooms: &'static [Resume<'static>],
    events: &'static [BatchEvent<'static>],
) -> Vec<(&'static str, Frame<'static>)> {
    vec![
        (
            "hello",
            Frame::Hello(Hello {
                version: 1,
                client_id: 0x1234_5678_9abc,
                token: Some("eyJhbGciOiJIUzI1NiJ9.e30.sig-_"),
                max_frame: 65536,
                max_batch: 50,
                rooms: Seq::from_slice(rooms),
            }),
        ),
        (
            "hello_anonymous",
            Frame::Hello(Hello {
                version: 1,
                client_id: 7,
                token: None,
                max_frame: 1024,
                max_batch: 10,
                rooms: Seq::empty(),
            }),
        ),
        (
            "welcome",
            Frame::Welcome(Welcome {
                version: 1,
                session_id: 99,
                heartbeat_ms: 15000,
                max_frame: 65536,
                max_subscriptions: 64,
                publish_rate: 100,
            }),
        ),
        (
            "subscribe",
            Frame::Subscribe(Subscribe {
                room: "tasks",
                from: Some(Position::new(3, 120)),
            }),
        ),
        (
            "subscribe_live",
            Frame::Subscribe(Subscribe {
                room: "system",
                from: None,
            }),
        ),
        (
            "subscribed",
            Frame::Subscribed(Subscribed {
                room: "tasks",
                position: Position::new(3, 120),
            }),
        ),
        (
            "unsubscribe",
            Frame::Unsubscribe(Unsubscribe { room: "tasks" }),
        ),
        (
            "event",
            Frame::Event(Event {
                room: "agents",
                position: Position::new(3, 300),
                kind: "agent.status_changed",
                payload: Payload(STATUS),
            }),
        ),
        (
            "batch",
            Frame::Batch(Batch {
                room: "agent:agent-7",
                epoch: 3,
                events: Seq::from_slice(events),
            }),
        ),
        (
            "publish",
            Frame::Publish(Publish {
                room: "commands",
                id: 5,
                kind: "agent.pause",
                payload: Payload(br#"{"agent_id":"agent-7"}"#),
            }),
        ),
        (
            "publish_ack",
            Frame::PublishAck(PublishAck {
                id: 5,
                position: Position::new(3, 301),
            }),
        ),
        ("ping", Frame::Ping(Ping { nonce: 1 << 40 })),
        ("pong", Frame::Pong(Ping { nonce: 1 << 40 })),
        (
            "gap_range",
            Frame::Gap(Gap {
                room: "agents",
                missed: Missed::Range {
                    epoch: 3,
                    first: 121,
                    last: 180,
                },
            }),
        ),
        (
            "gap_reset",
            Frame::Gap(Gap {
                room: "agents",
                missed: Missed::Reset {
                    position: Position::new(4, 0),
                },
            }),
        ),
        (
            "error",
            Frame::Error(ErrorFrame {
                code: ErrorCode::FORBIDDEN_ROOM,
                id: None,
                room: Some("admin"),
                retry_after_ms: None,
                reason: "room 'admin' is not allowed",
            }),
        ),
        (
            "error_rate_limited",
            Frame::Error(ErrorFrame {
                code: ErrorCode::RATE_LIMITED,
                id: Some(6),
                room: Some("commands"),
                retry_after_ms: Some(250),
                reason: "publish rate 100 per second",
            }),
        ),
        (
            "close",
            Frame::Close(Close {
                code: CloseCode::GOING_AWAY,
                retry_after_ms: Some(2000),
                reason: "server restarting",
            }),
        ),
    ]
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn read(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim_end().to_string()
}

#[test]
fn golden_vectors() {
    static ROOMS: [Resume<'static>; 2] = [
        Resume {
            room: "agents",
            from: Some(Position::new(3, 299)),
        },
        Resume {
            room: "system",
            from: None,
        },
    ];
    static EVENTS: [BatchEvent<'static>; 2] = [
        BatchEvent {
            offset: 41,
            kind: "agent.metrics",
            payload: Payload(br#"{"cpu":0.42,"mem_mb":512}"#),
        },
        BatchEvent {
            offset: 43,
            kind: "agent.metrics",
            payload: Payload(br#"{"cpu":0.47,"mem_mb":520}"#),
        },
    ];
    let bless = std::env::var_os("EVENTWIRE_BLESS").is_some();
    let mut kinds = BTreeSet::new();
    for (name, frame) in cases(&ROOMS, &EVENTS) {
        kinds.insert(frame.tag());
        let mut bytes = Vec::new();
        binary::encode_into(&frame, &mut bytes).unwrap();
        let text = String::from_utf8(json::encode(&frame).unwrap()).unwrap();
        let (json_path, hex_path) = (
            dir().join(format!("{name}.json")),
            dir().join(format!("{name}.hex")),
        );
        if bless {
            std::fs::write(&json_path, format!("{text}\n")).unwrap();
            std::fs::write(&hex_path, format!("{}\n", hex::encode(&bytes))).unwrap();
        }
        assert_eq!(read(&json_path), text, "{name}: JSON form changed");
        assert_eq!(
            read(&hex_path),
            hex::encode(&bytes),
            "{name}: binary form changed"
        );
    }
    assert_eq!(kinds.len(), 14, "every frame kind needs a vector");
}

/// Reads each stored vector without the Rust-side constructors: the path another
/// implementation takes.
#[test]
fn vectors_decode_both_ways() {
    let mut n = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let json_path = entry.unwrap().path();
        if json_path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = json_path.display().to_string();
        let text = read(&json_path);
        let bytes = hex::decode(read(&json_path.with_extension("hex"))).unwrap();

        let from_json = json::decode(text.as_bytes(), 1 << 16).unwrap();
        let from_bytes = binary::decode(&bytes, 1 << 16).unwrap();
        assert_eq!(from_json, from_bytes, "{name}");

        let mut reencoded = Vec::new();
        binary::encode_into(&from_json, &mut reencoded).unwrap();
        assert_eq!(reencoded, bytes, "{name}: JSON -> binary");
        assert_eq!(
            json::encode(&from_bytes).unwrap(),
            text.as_bytes(),
            "{name}: binary -> JSON"
        );
        n += 1;
    }
    assert!(n >= 14, "only {n} vectors found");
}

/// PROTOCOL.md section 1.1: lists are prefixed by their byte length, not by the element count
/// stock postcard writes for a sequence. A peer that serialises the hello's rooms as a plain
/// `Vec` with an unmodified postcard serializer does not interoperate: its bytes differ from the
/// vector, and the vector's bytes do not read back as the same rooms.
#[test]
fn stock_postcard_sequences_do_not_interoperate() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct StockResume<'a> {
        room: &'a str,
        from: Option<(u32, u64)>,
    }
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct StockHello<'a> {
        tag: u8,
        version: u16,
        client_id: u64,
        token: Option<&'a str>,
        max_frame: u32,
        max_batch: u16,
        #[serde(borrow)]
        rooms: Vec<StockResume<'a>>,
    }
    let stock = StockHello {
        tag: 0,
        version: 1,
        client_id: 0x1234_5678_9abc,
        token: Some("eyJhbGciOiJIUzI1NiJ9.e30.sig-_"),
        max_frame: 65536,
        max_batch: 50,
        rooms: vec![
            StockResume {
                room: "agents",
                from: Some((3, 299)),
            },
            StockResume {
                room: "system",
                from: None,
            },
        ],
    };
    let vector = hex::decode(read(&dir().join("hello.hex"))).unwrap();
    let mut buf = [0u8; 256];
    let stock_bytes = postcard::to_slice(&stock, &mut buf).unwrap();
    // Identical up to the list's prefix: 2 (elements) in stock postcard, the byte length of the
    // rest in eventwire; the elements themselves are the same bytes.
    let at = (0..vector.len())
        .find(|&i| stock_bytes[i] != vector[i])
        .expect("the encodings differ");
    assert_eq!(stock_bytes[at], 2);
    assert_eq!(usize::from(vector[at]), vector.len() - at - 1);
    assert_eq!(stock_bytes[at + 1..], vector[at + 1..]);
    let read_back = postcard::from_bytes::<StockHello<'_>>(&vector);
    assert!(
        read_back.as_ref().map_or(true, |h| h.rooms != stock.rooms),
        "{read_back:?}"
    );
}
