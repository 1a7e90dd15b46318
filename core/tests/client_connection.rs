//! The byte-level client connection: what both adapters' clients used to decide on their own
//! (message types, decode errors and their close codes, transport errors, the answer to the
//! server's close, publish sizes, encoding and counting) is decided here once.

use eventwire_core::client::{
    Action, ClientConfig, ClientError, ClientEvent, ConnState, Connection, Counts,
};
use eventwire_core::code::CloseCode;
use eventwire_core::codec::{stream, Codec};
use eventwire_core::frame::{Close, Frame, Ping, Welcome};
use eventwire_core::outbox::OutboxError;
use eventwire_core::text::Invalid;
use eventwire_core::time::Instant;
use eventwire_core::TransportError;

const T0: Instant = Instant::from_micros(1_000_000);
const MAX_MESSAGE: usize = 4096;

type Conn = Connection<8, 16, 8192>;

fn welcome(max_frame: u32) -> Frame<'static> {
    Frame::Welcome(Welcome {
        version: 1,
        session_id: 9,
        heartbeat_ms: 15_000,
        max_frame,
        max_subscriptions: 64,
        publish_rate: 100,
    })
}

fn encode(codec: Codec, frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    codec.encode_into(frame, &mut out).unwrap();
    out
}

/// A connection whose transport just opened, its hello already drained.
fn connected(codec: Codec) -> Conn {
    let mut conn = Conn::new(ClientConfig::new(7), codec, MAX_MESSAGE, 1);
    conn.connect(T0, &mut |_| {});
    assert_eq!(conn.poll_action(), Some(Action::Connect));
    assert!(
        !conn.is_reading(),
        "nothing is read before the transport opens"
    );
    conn.handle_connected(T0, &mut |_| {});
    assert!(conn.is_reading());
    let mut out = Vec::new();
    assert!(conn.poll_transmit(T0, &mut out).is_some());
    assert!(matches!(
        codec.decode(&out, MAX_MESSAGE),
        Ok(Frame::Hello(_))
    ));
    conn.take_counts();
    conn
}

/// A connection with an open session (the server's welcome handled).
fn open(codec: Codec, max_frame: u32) -> Conn {
    let mut conn = connected(codec);
    let bytes = encode(codec, &welcome(max_frame));
    conn.handle_message(T0, &bytes, codec.is_text(), &mut |_| {});
    assert_eq!(conn.state(), ConnState::Open);
    conn
}

/// Feeds `bytes`, collecting the events, and returns them as names.
fn feed(conn: &mut Conn, bytes: &[u8], text: bool) -> Vec<&'static str> {
    let mut events = Vec::new();
    conn.handle_message(T0, bytes, text, &mut |e| events.push(name(&e)));
    events
}

fn name(event: &ClientEvent<'_>) -> &'static str {
    match event {
        ClientEvent::Open { .. } => "open",
        ClientEvent::Reconnecting { .. } => "reconnecting",
        ClientEvent::Closed { .. } => "closed",
        _ => "other",
    }
}

/// The connection closed the transport with `code`, the machine knows it is disconnected, and
/// nothing more of that transport is parsed.
fn assert_closed_with(conn: &mut Conn, code: CloseCode, codec: Codec) {
    assert_eq!(conn.poll_action(), Some(Action::Disconnect { code }));
    assert_eq!(conn.poll_action(), None, "one disconnect only");
    assert_eq!(conn.state(), ConnState::Backoff);
    assert!(!conn.is_reading());
    conn.take_counts();
    let bytes = encode(codec, &welcome(1000));
    assert!(feed(conn, &bytes, codec.is_text()).is_empty());
    assert_eq!(
        conn.state(),
        ConnState::Backoff,
        "a dead transport's welcome is ignored"
    );
    assert_eq!(
        conn.take_counts(),
        Counts::default(),
        "nothing of it is even counted"
    );
}

#[test]
fn each_message_is_appended_and_counted() {
    for codec in [Codec::Binary, Codec::Json] {
        let mut conn = Conn::new(ClientConfig::new(7), codec, MAX_MESSAGE, 1);
        conn.connect(T0, &mut |_| {});
        assert_eq!(conn.poll_action(), Some(Action::Connect));
        conn.handle_connected(T0, &mut |_| {});
        // Appended after what the buffer holds, never over it.
        let mut out = b"keep".to_vec();
        let n = conn.poll_transmit(T0, &mut out).expect("the hello");
        assert_eq!(&out[..4], b"keep");
        assert_eq!(n, out.len() - 4);
        assert!(matches!(
            codec.decode(&out[4..], MAX_MESSAGE),
            Ok(Frame::Hello(h)) if h.client_id == 7
        ));
        assert_eq!(conn.is_text(), codec.is_text());
        if codec.is_text() {
            assert!(std::str::from_utf8(&out[4..]).is_ok());
        }
        assert_eq!(conn.poll_transmit(T0, &mut out), None);
        let welcome = encode(codec, &welcome(65_536));
        assert_eq!(feed(&mut conn, &welcome, codec.is_text()), ["open"]);
        let ping = encode(codec, &Frame::Ping(Ping { nonce: 5 }));
        feed(&mut conn, &ping, codec.is_text());
        let mut pong = Vec::new();
        let m = conn.poll_transmit(T0, &mut pong).expect("the pong");
        assert_eq!(
            codec.decode(&pong, MAX_MESSAGE),
            Ok(Frame::Pong(Ping { nonce: 5 }))
        );
        assert_eq!(
            conn.take_counts(),
            Counts {
                bytes_in: (welcome.len() + ping.len()) as u64,
                messages_in: 2,
                bytes_out: (n + m) as u64,
                messages_out: 2,
                unencodable: 0,
                ignored: 0,
            }
        );
        assert_eq!(conn.take_counts(), Counts::default(), "taking resets");
    }
}

#[test]
fn a_message_of_the_other_type_closes_with_unsupported_data() {
    for codec in [Codec::Binary, Codec::Json] {
        let mut conn = connected(codec);
        let bytes = encode(codec, &welcome(1000));
        let events = feed(&mut conn, &bytes, !codec.is_text());
        assert_eq!(events, ["reconnecting"], "the machine learns at once");
        assert_closed_with(&mut conn, CloseCode::UNSUPPORTED_DATA, codec);
    }
}

#[test]
fn decode_errors_close_with_their_codes() {
    // Truncated: a hello's tag and nothing else.
    let cases: [(Codec, &[u8], CloseCode); 5] = [
        (Codec::Binary, &[0], CloseCode::PROTOCOL_ERROR),
        (Codec::Binary, &[], CloseCode::PROTOCOL_ERROR),
        // An event in room "no/slash": a name no server may send.
        (
            Codec::Binary,
            &[
                5, 8, b'n', b'o', b'/', b's', b'l', b'a', b's', b'h', 1, 2, 1, b'k', 0,
            ],
            CloseCode::INVALID_DATA,
        ),
        (Codec::Json, b"{\"ping\":", CloseCode::PROTOCOL_ERROR),
        (
            Codec::Json,
            br#"{"ping":{"nonce":9007199254740992}}"#,
            CloseCode::INVALID_DATA,
        ),
    ];
    for (codec, bytes, code) in cases {
        let mut conn = open(codec, 1000);
        let events = feed(&mut conn, bytes, codec.is_text());
        assert_eq!(events, ["reconnecting"], "{codec:?} {bytes:?}");
        assert_closed_with(&mut conn, code, codec);
    }
}

#[test]
fn a_message_over_the_limit_closes_with_message_too_big() {
    let mut conn = open(Codec::Binary, 1000);
    let big = vec![0u8; MAX_MESSAGE + 1];
    assert_eq!(feed(&mut conn, &big, false), ["reconnecting"]);
    assert_closed_with(&mut conn, CloseCode::MESSAGE_TOO_BIG, Codec::Binary);
}

#[test]
fn unknown_frame_kinds_are_ignored_and_counted() {
    for (codec, bytes) in [
        (Codec::Binary, &[200u8, 1][..]),
        (Codec::Json, br#"{"later":{"x":1}}"#),
    ] {
        let mut conn = connected(codec);
        assert!(feed(&mut conn, bytes, codec.is_text()).is_empty());
        assert_eq!(conn.poll_action(), None);
        assert!(conn.is_reading(), "the connection goes on");
        assert_eq!(conn.take_counts().ignored, 1);
        let welcome = encode(codec, &welcome(1000));
        assert_eq!(feed(&mut conn, &welcome, codec.is_text()), ["open"]);
    }
}

#[test]
fn transport_errors_close_with_1009_and_1002() {
    for (error, code) in [
        (TransportError::TooBig, CloseCode::MESSAGE_TOO_BIG),
        (TransportError::Protocol, CloseCode::PROTOCOL_ERROR),
    ] {
        let mut conn = open(Codec::Binary, 1000);
        let mut events = Vec::new();
        conn.handle_transport_error(T0, error, &mut |e| events.push(name(&e)));
        assert_eq!(events, ["reconnecting"]);
        assert_closed_with(&mut conn, code, Codec::Binary);
        // A second report of the same dead transport changes nothing.
        conn.handle_transport_error(T0, error, &mut |_| panic!("no event"));
        assert_eq!(conn.poll_action(), None);
    }
}

#[test]
fn the_servers_close_is_echoed() {
    let cases = [
        (Some(CloseCode::GOING_AWAY), CloseCode::GOING_AWAY),
        (Some(CloseCode::UNAUTHORIZED), CloseCode::UNAUTHORIZED),
        (Some(CloseCode(3001)), CloseCode(3001)),
        (None, CloseCode::NORMAL),
        // Codes no endpoint may send (RFC 6455 section 7.4.1) get a protocol error back.
        (Some(CloseCode(1005)), CloseCode::PROTOCOL_ERROR),
        (Some(CloseCode(1006)), CloseCode::PROTOCOL_ERROR),
        (Some(CloseCode(999)), CloseCode::PROTOCOL_ERROR),
        (Some(CloseCode(5000)), CloseCode::PROTOCOL_ERROR),
    ];
    for (received, reply) in cases {
        let mut conn = open(Codec::Json, 1000);
        let mut events = Vec::new();
        conn.handle_peer_close(T0, received, &mut |e| events.push(name(&e)));
        assert_eq!(events, ["reconnecting"], "{received:?}");
        assert_closed_with(&mut conn, reply, Codec::Json);
    }
}

#[test]
fn a_close_frame_before_the_websocket_close_is_not_answered_twice() {
    let mut conn = open(Codec::Binary, 1000);
    let close = encode(
        Codec::Binary,
        &Frame::Close(Close {
            code: CloseCode::GOING_AWAY,
            retry_after_ms: None,
            reason: "",
        }),
    );
    assert_eq!(feed(&mut conn, &close, false), ["reconnecting"]);
    assert!(!conn.is_reading());
    conn.handle_peer_close(T0, Some(CloseCode::GOING_AWAY), &mut |_| panic!("no event"));
    assert_eq!(
        conn.poll_action(),
        Some(Action::Disconnect {
            code: CloseCode::GOING_AWAY
        })
    );
    assert_eq!(conn.poll_action(), None);
}

#[test]
fn publishes_too_big_for_the_server_are_refused_at_call_time() {
    for codec in [Codec::Binary, Codec::Json] {
        // Before any welcome the limit is the connection's own largest message.
        let mut conn = connected(codec);
        assert_eq!(conn.frame_limit(), MAX_MESSAGE);
        let err = conn
            .publish("room", "k", &vec![b'1'; MAX_MESSAGE])
            .unwrap_err();
        assert!(matches!(
            err,
            ClientError::Outbox(OutboxError::TooLarge { size, limit: MAX_MESSAGE })
                if size > MAX_MESSAGE
        ));
        assert!(conn.publish("room", "k", b"1").is_ok());

        // The welcome's max_frame is the limit from then on.
        let mut conn = open(codec, 200);
        assert_eq!(conn.frame_limit(), 200);
        let err = conn.publish("room", "k", &[b'1'; 300]).unwrap_err();
        assert!(matches!(
            err,
            ClientError::Outbox(OutboxError::TooLarge { size, limit: 200 }) if size > 300
        ));
        assert_eq!(
            conn.machine().outbox_len(),
            0,
            "a refused publish is not queued"
        );
        assert!(conn.publish("room", "k", &[b'1'; 100]).is_ok());
        assert_eq!(conn.machine().outbox_len(), 1);
        assert!(matches!(
            conn.publish("no/slash", "k", b"1"),
            Err(ClientError::Outbox(OutboxError::Invalid(Invalid::Name {
                field: "room"
            })))
        ));
    }
}

#[test]
fn polling_bodies_in_and_out() {
    // JSON: a body is an array of frames; each element out is one frame.
    let mut conn = connected(Codec::Json);
    let body = format!(
        "[{},{}]",
        String::from_utf8(encode(Codec::Json, &welcome(1000))).unwrap(),
        String::from_utf8(encode(Codec::Json, &Frame::Ping(Ping { nonce: 3 }))).unwrap()
    );
    let mut events = Vec::new();
    conn.handle_body(T0, body.as_bytes(), &mut |e| events.push(name(&e)));
    assert_eq!(events, ["open"]);
    let mut out = Vec::new();
    let n = conn.poll_transmit_body(T0, &mut out).expect("the pong");
    assert_eq!(n, out.len());
    assert_eq!(
        Codec::Json.decode(&out, 1000),
        Ok(Frame::Pong(Ping { nonce: 3 }))
    );
    assert_eq!(conn.take_counts().bytes_in, body.len() as u64);

    // Binary: COBS-framed frames back to back.
    let mut conn = connected(Codec::Binary);
    let mut body = Vec::new();
    stream::encode_into(&welcome(1000), &mut body).unwrap();
    stream::encode_into(&Frame::Ping(Ping { nonce: 4 }), &mut body).unwrap();
    conn.handle_body(T0, &body, &mut |_| {});
    assert_eq!(conn.state(), ConnState::Open);
    let mut out = Vec::new();
    conn.poll_transmit_body(T0, &mut out).expect("the pong");
    assert_eq!(*out.last().unwrap(), 0, "COBS-framed");
    assert_eq!(
        stream::decode_in_place(&mut out),
        Ok(Frame::Pong(Ping { nonce: 4 }))
    );
}

#[test]
fn a_bad_polling_body_ends_the_session_with_a_close_frame() {
    let cases: [(Codec, &[u8], CloseCode); 3] = [
        (
            Codec::Json,
            b"{\"not\":\"an array\"}",
            CloseCode::PROTOCOL_ERROR,
        ),
        (
            Codec::Json,
            br#"[{"ping":{"nonce":9007199254740992}}]"#,
            CloseCode::INVALID_DATA,
        ),
        // Ends inside a frame.
        (Codec::Binary, &[3, 1, 2], CloseCode::PROTOCOL_ERROR),
    ];
    for (codec, body, code) in cases {
        let mut conn = open(codec, 1000);
        let mut events = Vec::new();
        conn.handle_body(T0, body, &mut |e| events.push(name(&e)));
        assert_eq!(events, ["reconnecting"], "{codec:?} {body:?}");
        let mut out = Vec::new();
        conn.poll_transmit_body(T0, &mut out)
            .expect("a close frame");
        let frame = if codec.is_text() {
            codec.decode(&out, 1000)
        } else {
            stream::decode_in_place(&mut out)
        };
        assert!(
            matches!(frame, Ok(Frame::Close(c)) if c.code == code),
            "{codec:?} {body:?}"
        );
        assert_eq!(conn.poll_action(), Some(Action::Disconnect { code }));
        assert!(!conn.is_reading());
    }
}

#[test]
fn the_machines_own_close_stops_reading_too() {
    let mut conn = open(Codec::Binary, 1000);
    conn.close(T0, &mut |_| {});
    let mut out = Vec::new();
    conn.poll_transmit(T0, &mut out).expect("the close frame");
    assert!(matches!(
        Codec::Binary.decode(&out, 1000),
        Ok(Frame::Close(c)) if c.code == CloseCode::NORMAL
    ));
    assert_eq!(
        conn.poll_action(),
        Some(Action::Disconnect {
            code: CloseCode::NORMAL
        })
    );
    assert!(!conn.is_reading());
    let ping = encode(Codec::Binary, &Frame::Ping(Ping { nonce: 1 }));
    conn.handle_message(T0, &ping, false, &mut |_| panic!("no event"));
    assert_eq!(conn.poll_transmit(T0, &mut out), None);
}

#[test]
fn subscribe_at_and_positions_serve_adapters() {
    use eventwire_core::frame::Position;

    let mut conn: Connection = Connection::new(ClientConfig::new(1), Codec::Binary, 1024, 1);
    conn.subscribe_at("a", None).unwrap();
    conn.subscribe_at("b", Some(Position::new(2, 7))).unwrap();
    assert!(conn.subscribe_at("bad room", None).is_err());
    assert_eq!(
        conn.positions(),
        [
            ("a".to_owned(), None),
            ("b".to_owned(), Some(Position::new(2, 7)))
        ]
    );
}

/// The adapters' calls, answered on std channels.
struct Std;

impl eventwire_core::client::Channel for Std {
    type Sender<T> = std::sync::mpsc::Sender<T>;

    fn send<T>(sender: Self::Sender<T>, value: T) {
        let _ = sender.send(value);
    }
}

#[test]
fn calls_are_answered_once_with_the_connections_verdict() {
    use std::sync::mpsc::channel;

    use eventwire_core::client::Call;
    use eventwire_core::frame::Position;

    let mut conn: Connection = Connection::new(ClientConfig::new(1), Codec::Json, 1024, 1);
    let (reply, answer) = channel();
    let call: Call<Std> = Call::Subscribe {
        room: "a".into(),
        from: Some(Position::new(1, 3)),
        reply,
    };
    assert_eq!(call.to_string(), "subscribe a after 1:3");
    assert!(conn.answer(call));
    assert_eq!(answer.recv(), Ok(Ok(())));
    assert!(answer.recv().is_err(), "answered once");

    let (reply, answer) = channel();
    assert!(!conn.answer::<Std>(Call::Subscribe {
        room: "bad room".into(),
        from: None,
        reply,
    }));
    assert!(matches!(answer.recv(), Ok(Err(ClientError::Invalid(_)))));

    let (reply, answer) = channel();
    let call: Call<Std> = Call::Publish {
        room: "a".into(),
        kind: "k".into(),
        payload: b"[1]".to_vec(),
        reply,
    };
    assert_eq!(call.to_string(), "publish k to a (3 bytes)");
    assert!(conn.answer(call));
    assert_eq!(answer.recv(), Ok(Ok(1)));
    // Over the frame limit: refused at call time.
    let (reply, answer) = channel();
    assert!(!conn.answer::<Std>(Call::Publish {
        room: "a".into(),
        kind: "k".into(),
        payload: vec![b'1'; 2000],
        reply,
    }));
    assert!(matches!(
        answer.recv(),
        Ok(Err(ClientError::Outbox(OutboxError::TooLarge { .. })))
    ));

    let (reply, answer) = channel();
    assert!(conn.answer::<Std>(Call::Positions { reply }));
    assert_eq!(
        answer.recv(),
        Ok(vec![("a".to_owned(), Some(Position::new(1, 3)))])
    );
    let (reply, answer) = channel();
    let call: Call<Std> = Call::Unsubscribe {
        room: "a".into(),
        reply,
    };
    assert_eq!(call.to_string(), "unsubscribe a");
    assert!(conn.answer(call));
    assert_eq!(answer.recv(), Ok(true));
    let (reply, answer) = channel();
    assert!(conn.answer::<Std>(Call::Unsubscribe {
        room: "a".into(),
        reply,
    }));
    assert_eq!(answer.recv(), Ok(false));
    let (reply, answer) = channel();
    let call: Call<Std> = Call::Positions { reply };
    assert_eq!(call.to_string(), "positions");
    assert!(conn.answer(call));
    assert_eq!(answer.recv(), Ok(Vec::new()));
}
