//! The seed corpus of the operation-sequence targets, built from the golden vectors.
//!
//! Each seed is a scripted scenario (setup and operations) written in the raw input layout of its
//! target with [`ops::encode_ops`], which checks that it reads back as scripted. The golden
//! vectors come in as raw messages (`Raw` operations) in both forms, inside scenarios that make
//! them matter: a client that joined the vectors' rooms at positions just before their events,
//! a session whose hub has the vectors' epoch, a log filled with the vectors' events.
//! `core/tests/fuzz_corpus.rs` writes them (`generate_seeds`, ignored) and checks that the
//! committed files are what this module builds (`seed_corpus_is_generated`).

use std::collections::BTreeMap;

use super::client_machine as cm;
use super::history as hi;
use super::ops::{self, Advance, Bytes, Via};
use super::server_session as ss;

/// The golden vectors by name: (binary message, JSON message).
pub type Vectors = BTreeMap<String, (Vec<u8>, Vec<u8>)>;

/// One seed file: target, file name, raw input.
pub type Seed = (&'static str, String, Vec<u8>);

/// Vectors a server sends, which the client machine takes.
const TO_CLIENT: [&str; 12] = [
    "welcome",
    "subscribed",
    "batch",
    "event",
    "gap_range",
    "gap_reset",
    "publish_ack",
    "error",
    "error_rate_limited",
    "ping",
    "pong",
    "close",
];

/// Vectors a client sends, which the server session takes.
const TO_SERVER: [&str; 9] = [
    "hello",
    "hello_anonymous",
    "subscribe",
    "subscribe_live",
    "unsubscribe",
    "publish",
    "ping",
    "pong",
    "close",
];

/// Every seed of the three operation targets.
pub fn all(vectors: &Vectors) -> Vec<Seed> {
    let mut seeds = Vec::new();
    client_seeds(vectors, &mut seeds);
    server_seeds(vectors, &mut seeds);
    history_seeds(vectors, &mut seeds);
    history_vector_seeds(vectors, &mut seeds);
    connection_seeds(vectors, &mut seeds);
    seeds
}

/// The `connection` target: each framing carries the hello and a subscribe of the golden
/// vectors, the verdicts allow them, events are emitted and sent; on message framings, one seed
/// sends the hello in the other form (the type check) and one a transport error.
fn connection_seeds(vectors: &Vectors, seeds: &mut Vec<Seed>) {
    use super::connection::{number, record, tag};
    use eventwire_core::codec::stream;

    let framings = [
        ("binary", false),
        ("json", true),
        ("stream", false),
        ("body_binary", false),
        ("body_json", true),
    ];
    for (selector, (name, json)) in framings.iter().enumerate() {
        let carry = |out: &mut Vec<u8>, vector_name: &str| {
            let message = vector(vectors, vector_name, *json);
            match selector {
                0 => record(out, tag::BINARY, message),
                1 => record(out, tag::TEXT, message),
                2 | 3 => {
                    let frame = match eventwire_core::codec::binary::decode(message, usize::MAX) {
                        Ok(frame) => frame,
                        Err(e) => panic!("vector {vector_name} does not decode: {e:?}"),
                    };
                    let mut cobs = Vec::new();
                    if let Err(e) = stream::encode_into(&frame, &mut cobs) {
                        panic!("vector {vector_name} has no stream form: {e:?}");
                    }
                    record(out, tag::BYTES, &cobs);
                }
                _ => {
                    let mut body = b"[".to_vec();
                    body.extend_from_slice(message);
                    body.push(b']');
                    record(out, tag::BYTES, &body);
                }
            }
        };
        let mut out = vec![selector as u8];
        carry(&mut out, "hello");
        number(&mut out, tag::DECIDE, 1);
        number(&mut out, tag::DRAIN, 255);
        carry(&mut out, "subscribe");
        number(&mut out, tag::DECIDE, 1);
        for emit in [0, 6, 12, 1, 7] {
            number(&mut out, tag::EMIT, emit);
        }
        number(&mut out, tag::ADVANCE, 600);
        number(&mut out, tag::DRAIN, 255);
        carry(&mut out, "ping");
        number(&mut out, tag::EMIT, 0);
        number(&mut out, tag::ADVANCE, 600);
        number(&mut out, tag::DRAIN, 1);
        number(&mut out, tag::DRAIN, 255);
        seeds.push(("connection", format!("{name}.rec"), out));
    }
    for (selector, name) in [(0u8, "binary"), (1, "json")] {
        let mut out = vec![selector];
        let other = vector(vectors, "hello", selector == 0);
        record(
            &mut out,
            if selector == 0 {
                tag::TEXT
            } else {
                tag::BINARY
            },
            other,
        );
        number(&mut out, tag::DRAIN, 255);
        seeds.push(("connection", format!("{name}_wrong_type.rec"), out));

        let mut out = vec![selector];
        let hello = vector(vectors, "hello", selector == 1);
        record(
            &mut out,
            if selector == 0 {
                tag::BINARY
            } else {
                tag::TEXT
            },
            hello,
        );
        number(&mut out, tag::DECIDE, 1);
        number(&mut out, tag::EMIT, 0);
        number(&mut out, tag::TRANSPORT, 1);
        number(&mut out, tag::DRAIN, 255);
        seeds.push(("connection", format!("{name}_too_big.rec"), out));
    }
}

fn vector<'v>(vectors: &'v Vectors, name: &str, json: bool) -> &'v [u8] {
    let Some((bin, text)) = vectors.get(name) else {
        panic!("golden vector {name} is missing");
    };
    if json {
        text
    } else {
        bin
    }
}

fn raw_client(vectors: &Vectors, name: &str, json: bool) -> cm::Op {
    cm::Op::Raw {
        json,
        bytes: Bytes(vector(vectors, name, json).to_vec()),
    }
}

fn index_of(room: &str) -> u8 {
    match ops::ROOMS.iter().position(|r| *r == room) {
        Some(i) => i as u8,
        None => panic!("room {room} is not in the operations' table"),
    }
}

fn client_seeds(vectors: &Vectors, seeds: &mut Vec<Seed>) {
    let setup = |json: bool| cm::Setup {
        seed: 7,
        window: 3,
        max_batch: 50,
        dead_after: 2,
        connect_timeout_ms: 10_000,
        max_attempts: None,
        token: true,
        json,
    };
    let at = |epoch: u32, offset: u64| cm::PosSel {
        epoch: cm::EpochSel::Other(epoch),
        offset: cm::OffsetSel::Abs(offset),
    };
    let joined = |room: &str, epoch: u32, offset: u64| cm::Op::Server {
        frame: cm::ServerFrame::Subscribed {
            room: index_of(room),
            position: at(epoch, offset),
        },
        via: Via::Direct,
    };
    // The vectors' rooms, joined just before their events (epoch 3): agents before offset 300
    // (event) and the 121..=180 range (gap_range), agent:agent-7 before 41 (batch).
    let open = |json: bool| {
        vec![
            cm::Op::Subscribe {
                room: index_of("agents"),
                from: Some((3, 120)),
            },
            cm::Op::Subscribe {
                room: index_of("agent:agent-7"),
                from: None,
            },
            cm::Op::Subscribe {
                room: index_of("tasks"),
                from: None,
            },
            cm::Op::Publish {
                room: index_of("agents"),
                kind: 0,
                len: 2,
            },
            cm::Op::Connect,
            cm::Op::Connected,
            raw_client(vectors, "welcome", json),
            joined("agents", 3, 120),
            joined("agent:agent-7", 3, 40),
            joined("tasks", 3, 100),
        ]
    };
    for name in TO_CLIENT {
        for json in [false, true] {
            let mut script = open(json);
            script.push(raw_client(vectors, name, json));
            // The same message again: a replay the client must drop.
            script.push(raw_client(vectors, name, json));
            script.push(cm::Op::Advance(Advance::Millis(100)));
            let form = if json { "json" } else { "bin" };
            push(
                seeds,
                "client_machine",
                format!("{name}.{form}"),
                &setup(json),
                &script,
            );
        }
    }

    let next = |room: &str, after: u8, count: u8| cm::Op::Server {
        frame: cm::ServerFrame::Batch {
            room: index_of(room),
            epoch: cm::EpochSel::Current,
            start: cm::OffsetSel::After(after),
            count,
            skips: 0b0101,
            payload: 0,
        },
        via: Via::Binary,
    };
    // Delivery, loss of the link, resume after the backoff, replay overlap, then a reset.
    let mut script = open(false);
    script.extend([
        next("agents", 1, 3),
        next("agents", 0, 2),
        cm::Op::Disconnected,
        cm::Op::Advance(Advance::ToDeadline),
        cm::Op::Connected,
        raw_client(vectors, "welcome", false),
        joined("agents", 3, 120),
        next("agents", 0, 7),
        cm::Op::Server {
            frame: cm::ServerFrame::GapReset {
                room: index_of("agents"),
                position: cm::PosSel {
                    epoch: cm::EpochSel::Next,
                    offset: cm::OffsetSel::Abs(0),
                },
            },
            via: Via::Direct,
        },
        next("agents", 1, 1),
    ]);
    push(
        seeds,
        "client_machine",
        "resume.ops".into(),
        &setup(false),
        &script,
    );

    // Heartbeats answered and missed, an acknowledged publish, then the dead link.
    let mut script = open(false);
    script.extend([
        cm::Op::Server {
            frame: cm::ServerFrame::PublishAck {
                id: cm::IdSel::Outstanding(0),
                position: at(3, 301),
            },
            via: Via::Direct,
        },
        cm::Op::Advance(Advance::ToDeadline),
        cm::Op::Server {
            frame: cm::ServerFrame::Pong {
                echo: true,
                nonce: 0,
            },
            via: Via::Direct,
        },
        cm::Op::Advance(Advance::ToDeadline),
        cm::Op::Advance(Advance::ToDeadline),
        cm::Op::Advance(Advance::ToDeadline),
        cm::Op::Advance(Advance::ToDeadline),
    ]);
    push(
        seeds,
        "client_machine",
        "heartbeat.ops".into(),
        &setup(false),
        &script,
    );

    // Leaving rooms with answers outstanding, joining again, a full outbox, closing.
    let mut script = vec![
        cm::Op::Connect,
        cm::Op::Connected,
        raw_client(vectors, "welcome", false),
    ];
    for room in 0..5 {
        script.push(cm::Op::Subscribe { room, from: None });
    }
    script.extend([
        cm::Op::Unsubscribe { room: 0 },
        cm::Op::Subscribe {
            room: 0,
            from: Some((3, 5)),
        },
        joined("agents", 3, 5),
        cm::Op::Unsubscribe { room: 1 },
        joined("tasks", 3, 9),
        raw_client(vectors, "error", false),
    ]);
    for len in [200, 40, 40, 0, 255] {
        script.push(cm::Op::Publish {
            room: 1,
            kind: 1,
            len,
        });
    }
    script.extend([
        raw_client(vectors, "error_rate_limited", false),
        cm::Op::Advance(Advance::Secs(2)),
        cm::Op::Close,
        cm::Op::Connect,
    ]);
    push(
        seeds,
        "client_machine",
        "rooms_and_outbox.ops".into(),
        &setup(false),
        &script,
    );

    // The transport's own endings, each followed by a resume: a message of the other type, the
    // server's close (sendable, absent, not sendable), the transport's refusals.
    let mut script = open(true);
    let resume = [
        cm::Op::Advance(Advance::ToDeadline),
        cm::Op::Connected,
        raw_client(vectors, "welcome", true),
    ];
    for ending in [
        raw_client(vectors, "event", false),
        cm::Op::PeerClose { code: Some(7) },
        cm::Op::PeerClose { code: None },
        cm::Op::PeerClose { code: Some(3) },
        cm::Op::TransportError { too_big: true },
        cm::Op::TransportError { too_big: false },
    ] {
        script.push(ending);
        script.extend(resume.iter().cloned());
    }
    script.push(raw_client(vectors, "event", true));
    push(
        seeds,
        "client_machine",
        "transport_endings.ops".into(),
        &setup(true),
        &script,
    );
}

fn server_seeds(vectors: &Vectors, seeds: &mut Vec<Seed>) {
    let setup = |json: bool| ss::Setup {
        // The vectors' epoch, so their positions are this hub's.
        epoch: 3,
        seed: 11,
        max_subscriptions: 3,
        max_batch: 4,
        max_frame: 1024,
        publish_rate: 5,
        rate_strikes: 3,
        app_publishes: false,
        batch_ms: 100,
        metrics_ms: 500,
        history_events: 7,
        history_bytes: 1500,
        history_age_ms: None,
        json_form: true,
        max_rooms: 3,
        json,
        // The JSON scripts run with the narrow grants (the first room and `agent:*`), so the
        // seeds reach both appended and refused publishes.
        grants: u8::from(json),
    };
    let raw = |name: &str, json: bool| ss::Op::Raw {
        json,
        bytes: Bytes(vector(vectors, name, json).to_vec()),
    };
    let emit = |room: &str, kind: u8, payload: u8, key: Option<u8>| ss::Op::Emit {
        room: index_of(room),
        kind,
        payload,
        key,
    };
    let events = || {
        vec![
            emit("agents", 0, 0, None),
            emit("agents", 1, 0, Some(0)),
            emit("agents", 1, 2, Some(0)),
            emit("system", 2, 1, None),
            emit("tasks", 2, 4, None),
        ]
    };
    for name in TO_SERVER {
        for json in [false, true] {
            let mut script = events();
            if !name.starts_with("hello") {
                script.push(raw("hello", json));
            }
            script.push(raw(name, json));
            script.extend([
                ss::Op::Accept,
                ss::Op::Allow(0),
                ss::Op::Allow(1),
                ss::Op::Drain(255),
                emit("agents", 1, 5, Some(1)),
                emit("tasks", 0, 3, None),
                raw(name, !json),
                ss::Op::Allow(2),
                ss::Op::Advance {
                    by: Advance::Millis(100),
                    drain: true,
                },
            ]);
            let form = if json { "json" } else { "bin" };
            push(
                seeds,
                "server_session",
                format!("{name}.{form}"),
                &setup(json),
                &script,
            );
        }
    }

    let sub = |room: &str, from: Option<ss::PosSel>| ss::Op::Client {
        frame: ss::ClientFrame::Subscribe {
            room: index_of(room),
            from,
        },
        via: Via::Binary,
    };
    let hello = ss::Op::Client {
        frame: ss::ClientFrame::Hello {
            client: 1,
            version: 1,
            token: false,
            max_frame: 300,
            max_batch: 3,
            rooms: vec![(0, None), (1, None)],
        },
        via: Via::Json,
    };
    // A slow reader: the history moves past its cursor (range gap), coalesced metrics, a
    // resume from before the history and from past the head (reset).
    let mut script = vec![
        hello.clone(),
        ss::Op::Accept,
        ss::Op::Allow(0),
        ss::Op::Allow(1),
    ];
    script.push(ss::Op::Drain(3));
    for i in 0..12 {
        script.push(emit("agents", 1, i % 3, Some(i % 2)));
        script.push(ss::Op::Drain(1));
    }
    script.extend([
        ss::Op::Advance {
            by: Advance::Millis(500),
            drain: false,
        },
        ss::Op::Drain(2),
        sub(
            "agents",
            Some(ss::PosSel {
                epoch: ss::EpochSel::Hub,
                offset: ss::OffsetSel::Oldest(2),
            }),
        ),
        ss::Op::Allow(0),
        sub(
            "tasks",
            Some(ss::PosSel {
                epoch: ss::EpochSel::Hub,
                offset: ss::OffsetSel::Ahead(4),
            }),
        ),
        ss::Op::Allow(1),
        ss::Op::Advance {
            by: Advance::ToDeadline,
            drain: true,
        },
    ]);
    push(
        seeds,
        "server_session",
        "slow_reader.ops".into(),
        &setup(false),
        &script,
    );

    // Publishes applied by the application, a retry after a reconnect, pings and a pong.
    let mut app = setup(true);
    app.app_publishes = true;
    let publish = |id: ss::IdSel| ss::Op::Client {
        frame: ss::ClientFrame::Publish {
            room: 0,
            id,
            kind: 0,
            payload: 1,
        },
        via: Via::Json,
    };
    let script = vec![
        hello.clone(),
        ss::Op::Accept,
        publish(ss::IdSel::Next),
        publish(ss::IdSel::Next),
        ss::Op::PublishDone { index: 0, ok: true },
        ss::Op::PublishDone {
            index: 0,
            ok: false,
        },
        ss::Op::Drain(10),
        ss::Op::Reconnect,
        hello,
        ss::Op::Accept,
        publish(ss::IdSel::Retry(0)),
        publish(ss::IdSel::Retry(1)),
        ss::Op::Advance {
            by: Advance::ToDeadline,
            drain: true,
        },
        ss::Op::Client {
            frame: ss::ClientFrame::Pong {
                echo: true,
                nonce: 0,
            },
            via: Via::Binary,
        },
        ss::Op::Advance {
            by: Advance::Huge,
            drain: true,
        },
    ];
    push(
        seeds,
        "server_session",
        "publishes.ops".into(),
        &app,
        &script,
    );
}

fn history_seeds(vectors: &Vectors, seeds: &mut Vec<Seed>) {
    // The payloads of the vectors' events, as they come in the JSON form (white space and all).
    let mut payloads = Vec::new();
    for name in ["event", "batch", "publish"] {
        let text = vector(vectors, name, true);
        let frame = match eventwire_core::codec::json::decode(text, usize::MAX) {
            Ok(frame) => frame,
            Err(e) => panic!("golden vector {name} does not decode: {e:?}"),
        };
        match frame {
            eventwire_core::Frame::Event(e) => payloads.push(e.payload.0.to_vec()),
            eventwire_core::Frame::Batch(b) => {
                payloads.extend(b.events.iter().map(|e| e.payload.0.to_vec()))
            }
            eventwire_core::Frame::Publish(p) => payloads.push(p.payload.0.to_vec()),
            other => panic!("golden vector {name} holds no payload: {other:?}"),
        }
    }
    // And the binary message of every vector as a payload that is not JSON text.
    for (bin, _) in vectors.values() {
        payloads.push(bin.clone());
    }
    let read = |after: hi::CursorSel, max_events: u8, max_bytes: u16, json: bool| hi::Op::Read {
        after,
        max_events,
        max_bytes,
        json,
    };
    let configs = [
        ("roomy", 32, 4000, None, true),
        ("few_events", 4, 4000, None, true),
        ("few_bytes", 32, 300, None, true),
        ("aging", 16, 2000, Some(250), true),
        ("binary_only", 8, 1000, None, false),
    ];
    for (name, max_events, max_bytes, max_age_ms, json_form) in configs {
        let setup = hi::Setup {
            epoch: 3,
            max_events,
            max_bytes,
            max_age_ms,
            json_form,
        };
        let mut script = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let i = i as u8;
            script.push(hi::Op::Append {
                kind: i % 3,
                payload: hi::PayloadSel::Raw(Bytes(p.clone())),
                // Metrics-like events coalesce per agent; every fourth is plain.
                key: (i % 4 != 3).then_some(i % 3),
            });
            script.push(hi::Op::Advance(Advance::Millis(60)));
            if i % 5 == 4 {
                script.push(read(hi::CursorSel::Oldest(1), 3, 400, i.is_multiple_of(2)));
            }
        }
        script.extend([
            read(hi::CursorSel::Abs(0), 50, 4000, false),
            read(hi::CursorSel::Abs(0), 50, 4000, true),
            read(hi::CursorSel::Head(3), 2, 10, true),
            read(hi::CursorSel::Ahead(0), 1, 1, false),
            hi::Op::Advance(Advance::ToDeadline),
            hi::Op::Expire,
            hi::Op::Append {
                kind: 3,
                payload: hi::PayloadSel::Table(0),
                key: None,
            },
            hi::Op::Append {
                kind: 0,
                payload: hi::PayloadSel::Table(0),
                key: Some(3),
            },
            read(hi::CursorSel::Oldest(0), 0, 0, false),
        ]);
        push(seeds, "history", format!("{name}.ops"), &setup, &script);
    }
}

/// One seed per golden vector: its two messages as payloads (the JSON one is JSON text, the
/// binary one is not), appended under alternating keys until the history overflows, in a log
/// whose size cycles through small configurations, with reads of both forms in between.
fn history_vector_seeds(vectors: &Vectors, seeds: &mut Vec<Seed>) {
    for (i, (name, (bin, text))) in vectors.iter().enumerate() {
        let i = i as u8;
        let setup = hi::Setup {
            epoch: u32::from(i),
            max_events: 3 + i % 5,
            max_bytes: 200 + 150 * u16::from(i % 4),
            max_age_ms: i.is_multiple_of(3).then_some(100),
            json_form: i % 4 != 1,
        };
        let mut script = Vec::new();
        for round in 0..4u8 {
            for (payload, key) in [
                (bin, Some(round % 2)),
                (text, Some(round % 2)),
                (text, None),
            ] {
                script.push(hi::Op::Append {
                    kind: round % 3,
                    payload: hi::PayloadSel::Raw(Bytes(payload.clone())),
                    key,
                });
            }
            script.push(hi::Op::Advance(Advance::Millis(40)));
            script.push(hi::Op::Read {
                after: hi::CursorSel::Oldest(round % 2),
                max_events: 2,
                max_bytes: 150,
                json: round % 2 == 1,
            });
        }
        script.extend([
            hi::Op::Expire,
            hi::Op::Read {
                after: hi::CursorSel::Abs(0),
                max_events: 50,
                max_bytes: 4000,
                json: true,
            },
        ]);
        push(seeds, "history", format!("{name}.ops"), &setup, &script);
    }
}

fn push<S, O>(seeds: &mut Vec<Seed>, target: &'static str, name: String, setup: &S, script: &[O])
where
    S: ops::Encode + for<'b> arbitrary::Arbitrary<'b> + PartialEq + std::fmt::Debug,
    O: ops::Encode + for<'b> arbitrary::Arbitrary<'b> + PartialEq + std::fmt::Debug,
{
    let mut buf = Vec::new();
    let bytes = ops::encode_ops(setup, script, &mut buf).to_vec();
    seeds.push((target, name, bytes));
}
