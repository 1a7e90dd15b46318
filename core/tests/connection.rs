//! The byte-level server connection: what every adapter used to decide on its own (message types,
//! decode errors, transport violations, framing on each transport, unencodable events, counting)
//! is decided here once, so these tests hold for every transport of every adapter.

use eventwire_core::server::Grants;
use std::time::Duration;

use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_core::codec::{json, stream, Codec};
use eventwire_core::frame::Seq;
use eventwire_core::frame::{Frame, Hello, Ping, Position, Publish, Resume, Subscribe};
use eventwire_core::history::HistoryConfig;
use eventwire_core::hub::{Hub, HubConfig};
use eventwire_core::payload::Payload;
use eventwire_core::server::{
    Body, BodyError, Connection, Decision, Framing, PublishMode, ServerConfig, SessionState,
    TransportError, MAX_STREAM_FRAME,
};
use eventwire_core::time::Instant;

const T0: Instant = Instant::from_micros(1_000_000);

fn hello<'a>(client_id: u64, token: Option<&'a str>) -> Frame<'a> {
    Frame::Hello(Hello {
        version: eventwire_core::PROTOCOL_VERSION,
        client_id,
        token,
        max_frame: 64 * 1024,
        max_batch: 50,
        rooms: Seq::empty(),
    })
}

fn subscribe(room: &str) -> Frame<'_> {
    Frame::Subscribe(Subscribe { room, from: None })
}

fn binary(frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    Codec::Binary.encode_into(frame, &mut out).unwrap();
    out
}

fn cobs(frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    stream::encode_into(frame, &mut out).unwrap();
    out
}

fn open(framing: Framing, config: ServerConfig) -> (Connection, Hub) {
    let hub = Hub::new(3, HubConfig::new());
    (Connection::new(T0, config, framing, 1, 42), hub)
}

/// Everything the connection transmits now, one frame per entry, decoded back.
fn drain(conn: &mut Connection) -> Vec<String> {
    let mut kinds = Vec::new();
    let mut out = Vec::new();
    while let Some(n) = conn.poll_transmit(T0, &mut out) {
        assert_eq!(n, out.len(), "a message is exactly the bytes appended");
        let frame = match conn.framing() {
            Framing::Message(codec) => codec.decode(&out, 1 << 20).unwrap().to_owned_kind(),
            _ => unreachable!("message framing only"),
        };
        kinds.push(frame);
        out.clear();
    }
    kinds
}

trait Kind {
    fn to_owned_kind(&self) -> String;
}

impl Kind for Frame<'_> {
    fn to_owned_kind(&self) -> String {
        match self {
            Frame::Close(c) => format!("close {}", c.code.0),
            Frame::Error(e) => format!("error {}", e.code.0),
            Frame::Welcome(_) => "welcome".to_string(),
            other => other.kind_name().to_string(),
        }
    }
}

/// Authenticates a hello and returns the decisions that followed.
fn welcome(conn: &mut Connection, hub: &Hub, framing_text: bool) {
    let bytes = if framing_text {
        json::encode(&hello(5, Some("t"))).unwrap()
    } else {
        binary(&hello(5, Some("t")))
    };
    conn.handle_message(T0, hub, &bytes, framing_text);
    assert_eq!(
        conn.poll_decision(),
        Some(Decision::Authenticate {
            client_id: 5,
            token: Some("t".into())
        })
    );
    conn.settle_auth(T0, Ok(Grants::publish_any().create_any()));
    assert_eq!(conn.state(), SessionState::Open);
}

#[test]
fn a_message_of_the_other_type_closes_with_unsupported_data_and_nothing_after_is_parsed() {
    let (mut conn, hub) = open(Framing::Message(Codec::Binary), ServerConfig::new());
    let text = json::encode(&hello(5, None)).unwrap();
    conn.handle_message(T0, &hub, &text, true);
    assert_eq!(conn.poll_decision(), None, "the hello inside was not read");
    // A valid hello after the violation is not parsed either, but its bytes were received.
    let second = binary(&hello(5, None));
    conn.handle_message(T0, &hub, &second, false);
    assert_eq!(conn.poll_decision(), None);
    assert_eq!(
        conn.take_counts().bytes_in,
        (text.len() + second.len()) as u64
    );
    assert_eq!(drain(&mut conn), ["close 1003"]);
    assert_eq!(conn.poll_close(), Some(CloseCode::UNSUPPORTED_DATA));
}

#[test]
fn decode_errors_close_with_their_code_and_unknown_kinds_are_ignored() {
    let (mut conn, hub) = open(Framing::Message(Codec::Binary), ServerConfig::new());
    // An unknown frame kind (tag 200) is skipped: forward compatibility.
    conn.handle_message(T0, &hub, &[200, 1, 2], false);
    assert_eq!(conn.state(), SessionState::AwaitHello);
    welcome(&mut conn, &hub, false);
    assert_eq!(drain(&mut conn), ["welcome"]);
    // A truncated frame is a protocol error.
    let mut cut = binary(&subscribe("room"));
    cut.truncate(3);
    conn.handle_message(T0, &hub, &cut, false);
    assert_eq!(drain(&mut conn), ["close 1002"]);
    assert_eq!(conn.poll_close(), Some(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn transport_violations_close_with_their_code() {
    for (error, code) in [
        (TransportError::TooBig, CloseCode::MESSAGE_TOO_BIG),
        (TransportError::Protocol, CloseCode::PROTOCOL_ERROR),
    ] {
        let (mut conn, hub) = open(Framing::Message(Codec::Binary), ServerConfig::new());
        welcome(&mut conn, &hub, false);
        conn.handle_transport_error(error);
        assert_eq!(
            drain(&mut conn).last().map(String::as_str),
            Some(format!("close {}", code.0).as_str())
        );
        assert_eq!(conn.poll_close(), Some(code));
        conn.handle_message(T0, &hub, &binary(&subscribe("room")), false);
        assert_eq!(
            conn.poll_decision(),
            None,
            "nothing is parsed after a violation"
        );
    }
}

#[test]
fn json_connections_send_text_and_count_every_byte_and_event() {
    let (mut conn, hub) = open(Framing::Message(Codec::Json), ServerConfig::new());
    welcome(&mut conn, &hub, true);
    let sub = json::encode(&subscribe("feed")).unwrap();
    conn.handle_message(T0, &hub, &sub, true);
    assert_eq!(
        conn.poll_decision(),
        Some(Decision::Authorize {
            room: "feed".into()
        })
    );
    conn.settle_join(&hub, "feed", true);
    for i in 0..3 {
        hub.emit(T0, "feed", "tick", format!("{i}").as_bytes(), None)
            .unwrap();
    }
    let mut out = Vec::new();
    let mut sent = 0;
    let mut texts = Vec::new();
    while let Some(n) = conn.poll_transmit(T0 + Duration::from_secs(1), &mut out) {
        sent += n;
        texts.push(String::from_utf8(out.clone()).expect("JSON frames are UTF-8 text"));
        out.clear();
    }
    assert!(texts[0].starts_with("{\"welcome\""), "{texts:?}");
    assert!(texts.last().unwrap().starts_with("{\"batch\""), "{texts:?}");
    let counts = conn.take_counts();
    assert_eq!(
        counts.bytes_in,
        (json::encode(&hello(5, Some("t"))).unwrap().len() + sub.len()) as u64
    );
    assert_eq!(counts.bytes_out, sent as u64);
    assert_eq!(counts.events_out, 3);
    assert_eq!(conn.take_counts(), Default::default(), "taking resets");
}

#[test]
fn an_event_the_json_form_cannot_carry_reaches_a_json_peer_as_a_gap() {
    let config = ServerConfig::new();
    let (mut conn, hub) = open(Framing::Message(Codec::Json), config);
    welcome(&mut conn, &hub, true);
    conn.handle_message(T0, &hub, &json::encode(&subscribe("feed")).unwrap(), true);
    let _ = conn.poll_decision();
    conn.settle_join(&hub, "feed", true);
    // Not JSON text: a JSON peer cannot be given it.
    hub.emit(T0, "feed", "raw", &[0xff, 0x00], None).unwrap();
    let mut out = Vec::new();
    let mut last = String::new();
    while conn
        .poll_transmit(T0 + Duration::from_secs(1), &mut out)
        .is_some()
    {
        last = String::from_utf8(out.clone()).unwrap();
        out.clear();
    }
    // The room log keeps no JSON form for it, so the peer hears of a gap rather than a close.
    assert!(last.starts_with("{\"gap\""), "{last}");
    assert_eq!(conn.poll_close(), None);

    // A room that keeps no JSON forms is transcoded batch by batch: the same gap, never a
    // broken message.
    let history = HistoryConfig::new().json_form(false);
    let hub = Hub::new(3, HubConfig::new().history(history));
    let mut conn = Connection::new(
        T0,
        ServerConfig::new(),
        Framing::Message(Codec::Json),
        1,
        42,
    );
    welcome(&mut conn, &hub, true);
    conn.handle_message(T0, &hub, &json::encode(&subscribe("feed")).unwrap(), true);
    let _ = conn.poll_decision();
    conn.settle_join(&hub, "feed", true);
    hub.emit(T0, "feed", "raw", &[0xff, 0x00], None).unwrap();
    let mut out = Vec::new();
    let mut last = String::new();
    while conn
        .poll_transmit(T0 + Duration::from_secs(1), &mut out)
        .is_some()
    {
        last = String::from_utf8(out.clone()).unwrap();
        out.clear();
    }
    assert!(last.starts_with("{\"gap\""), "{last}");
    assert_eq!(conn.poll_close(), None);
}

#[test]
fn a_byte_stream_is_decoded_across_chunks_and_an_oversize_frame_closes_early() {
    let (mut conn, hub) = open(Framing::Stream, ServerConfig::new());
    let bytes = cobs(&hello(5, None));
    // One byte at a time: frames span chunks.
    for b in &bytes {
        conn.handle_stream(T0, &hub, std::slice::from_ref(b));
    }
    assert!(matches!(
        conn.poll_decision(),
        Some(Decision::Authenticate { client_id: 5, .. })
    ));
    conn.settle_auth(T0, Ok(Grants::publish_any().create_any()));
    let mut out = Vec::new();
    assert!(conn.poll_transmit(T0, &mut out).is_some());
    assert_eq!(out.last(), Some(&0), "stream frames end with their zero");
    assert!(matches!(
        stream::decode_in_place(&mut out.clone()),
        Ok(Frame::Welcome(_))
    ));
    // An endless frame is refused once it passes the limit, without waiting for its end.
    let chunk = vec![1u8; 4096];
    let mut fed = 0;
    while conn.poll_close().is_none() && fed <= MAX_STREAM_FRAME * 2 {
        conn.handle_stream(T0, &hub, &chunk);
        fed += chunk.len();
        out.clear();
        while conn.poll_transmit(T0, &mut out).is_some() {}
    }
    assert!(fed <= MAX_STREAM_FRAME + 8192, "closed after {fed} bytes");
    assert_eq!(conn.state(), SessionState::Closed);
}

#[test]
fn polling_bodies_carry_several_frames_and_answers_follow_each_request_form() {
    let (mut conn, hub) = open(Framing::Body(Codec::Json), ServerConfig::new());
    // A ping rides along with the hello: a body carries several frames.
    let rooms = [Resume {
        room: "feed",
        from: None,
    }];
    let mut with_room = hello(5, None);
    if let Frame::Hello(h) = &mut with_room {
        h.rooms = Seq::from_slice(&rooms);
    }
    let frames = [with_room, Frame::Ping(Ping { nonce: 4 })];
    let text: Vec<String> = frames
        .iter()
        .map(|f| String::from_utf8(json::encode(f).unwrap()).unwrap())
        .collect();
    let body = format!("[{}]", text.join(","));
    let parsed = Body::parse(Codec::Json, body.as_bytes(), 64).unwrap();
    assert_eq!(parsed.len(), 2);
    assert!(parsed.starts_with_hello(1 << 20));
    conn.handle_body(T0, &hub, &parsed, body.len());
    assert!(matches!(
        conn.poll_decision(),
        Some(Decision::Authenticate { .. })
    ));
    conn.settle_auth(T0, Ok(Grants::publish_any().create_any()));
    assert_eq!(
        conn.poll_decision(),
        Some(Decision::Authorize {
            room: "feed".into()
        })
    );
    conn.settle_join(&hub, "feed", true);
    let mut out = Vec::new();
    while conn.poll_transmit(T0, &mut out).is_some() {}
    conn.framing().finish_body(&mut out);
    let answer: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
    let kinds: Vec<&str> = answer
        .iter()
        .map(|f| f.as_object().unwrap().keys().next().unwrap().as_str())
        .collect();
    assert_eq!(kinds, ["welcome", "pong", "subscribed"]);

    // The next request is binary: its answer is COBS frames back to back.
    hub.emit(T0, "feed", "tick", b"1", None).unwrap();
    conn.set_framing(Framing::Body(Codec::Binary));
    let mut out = Vec::new();
    while conn
        .poll_transmit(T0 + Duration::from_secs(1), &mut out)
        .is_some()
    {}
    conn.framing().finish_body(&mut out);
    let parsed = Body::parse(Codec::Binary, &out, 64).unwrap();
    assert_eq!(parsed.len(), 1);
    assert!(matches!(
        stream::decode_in_place(&mut out.clone()),
        Ok(Frame::Batch(_))
    ));
}

#[test]
fn malformed_and_crowded_bodies_are_refused_before_any_frame_is_read() {
    assert_eq!(
        Body::parse(Codec::Json, b"{\"type\":\"hello\"}", 64).unwrap_err(),
        BodyError::Malformed
    );
    let mut unterminated = cobs(&hello(5, None));
    unterminated.pop();
    assert_eq!(
        Body::parse(Codec::Binary, &unterminated, 64).unwrap_err(),
        BodyError::Malformed
    );
    let many: Vec<u8> = (0..3).flat_map(|_| cobs(&subscribe("a"))).collect();
    assert_eq!(
        Body::parse(Codec::Binary, &many, 2).unwrap_err(),
        BodyError::TooManyFrames
    );
    let empty = Body::parse(Codec::Json, b"[]", 64).unwrap();
    assert!(empty.is_empty() && !empty.starts_with_hello(1 << 20));

    for (error, code) in [
        (BodyError::Malformed, CloseCode::PROTOCOL_ERROR),
        (BodyError::TooManyFrames, CloseCode::POLICY_VIOLATION),
    ] {
        let (mut conn, _hub) = open(Framing::Body(Codec::Json), ServerConfig::new());
        conn.handle_body_error(error);
        assert_eq!(conn.poll_close(), Some(code));
    }
}

#[test]
fn publishes_appended_by_the_session_are_counted_as_events_in() {
    let (mut conn, hub) = open(Framing::Message(Codec::Binary), ServerConfig::new());
    welcome(&mut conn, &hub, false);
    let publish = Frame::Publish(Publish {
        id: 1,
        room: "feed",
        kind: "note",
        payload: Payload(b"\"hi\""),
    });
    conn.handle_message(T0, &hub, &binary(&publish), false);
    assert_eq!(conn.take_counts().events_in, 1);
    assert_eq!(hub.room("feed").unwrap().head(), Position::new(3, 1));
}

#[test]
fn publishes_for_the_application_are_handed_over_owned_and_settled() {
    let config = ServerConfig::new().publish_mode(PublishMode::Application);
    let (mut conn, hub) = open(Framing::Message(Codec::Binary), config);
    welcome(&mut conn, &hub, false);
    let publish = Frame::Publish(Publish {
        id: 9,
        room: "feed",
        kind: "note",
        payload: Payload(b"\"hi\""),
    });
    conn.handle_message(T0, &hub, &binary(&publish), false);
    assert_eq!(
        conn.poll_decision(),
        Some(Decision::Publish {
            room: "feed".into(),
            id: 9,
            kind: "note".into(),
            payload: b"\"hi\"".to_vec()
        })
    );
    conn.publish_done(&hub, T0, 9, Err(ErrorCode::PUBLISH_REJECTED))
        .unwrap();
    assert_eq!(drain(&mut conn), ["welcome", "error 4"]);
}

#[test]
fn a_shared_hub_connection_appends_publishes_whatever_its_config_says() {
    use eventwire_core::hub::Local;
    use eventwire_core::runtime::{Runtime, SharedHub};

    #[derive(Default)]
    struct Manual;
    impl Runtime for Manual {
        type Host = Local;
        fn now(&self) -> Instant {
            T0
        }
        fn epoch(&self) -> u32 {
            3
        }
    }

    let shared = SharedHub::<Manual>::new(HubConfig::new());
    // No adapter has a hook that applies publishes: handing them over would leave them unanswered.
    let config = ServerConfig::new().publish_mode(PublishMode::Application);
    let mut conn = shared.open_connection(config, Framing::Message(Codec::Binary), 1, (), false);
    welcome(&mut conn, shared.hub(), false);
    let publish = Frame::Publish(Publish {
        id: 1,
        room: "feed",
        kind: "note",
        payload: Payload(b"\"hi\""),
    });
    conn.handle_message(T0, shared.hub(), &binary(&publish), false);
    assert_eq!(conn.poll_decision(), None);
    assert_eq!(shared.room_stats("feed").unwrap().head, Position::new(3, 1));
}

/// A peer may send at most `max_bytes_in` bytes a second, whatever they carry: one that keeps
/// within it is never closed, one that floods (here with pings, which no other limit counts) is
/// closed with `RATE_LIMITED` and a retry-after, and nothing it sent after is parsed. Before this
/// limit a connection could make the server decode pings as fast as it could send them.
#[test]
fn a_peer_over_the_byte_rate_is_closed_with_rate_limited() {
    let config = ServerConfig::new().max_frame(4096).max_bytes_in(10_000);
    let ping = binary(&Frame::Ping(Ping { nonce: 1 << 52 }));

    // Within the rate: 8,000 bytes a second for ten seconds.
    let (mut calm, hub) = open(Framing::Message(Codec::Binary), config);
    welcome(&mut calm, &hub, false);
    assert_eq!(drain(&mut calm), ["welcome"]);
    let mut now = T0;
    for _ in 0..10 {
        now = now + Duration::from_secs(1);
        let mut bytes = 0;
        while bytes + ping.len() <= 8_000 {
            calm.handle_message(now, &hub, &ping, false);
            bytes += ping.len();
            // Read as it goes: a peer that pings without reading fills the control queue.
            let sent = drain(&mut calm);
            assert_eq!(sent, ["pong"]);
        }
        assert_eq!(calm.state(), SessionState::Open, "closed within the rate");
    }

    // A flood at one instant: the bucket (one second's worth) runs dry, then the close.
    let (mut flood, hub) = open(Framing::Message(Codec::Binary), config);
    welcome(&mut flood, &hub, false);
    assert_eq!(drain(&mut flood), ["welcome"]);
    let mut pings = 0;
    let mut pongs = 0;
    let mut last = Vec::new();
    while flood.state() == SessionState::Open {
        flood.handle_message(T0, &hub, &ping, false);
        pings += 1;
        assert!(pings * ping.len() <= 10_000 + ping.len(), "never closed");
        last = drain(&mut flood);
        pongs += last.iter().filter(|k| *k == "pong").count();
    }
    assert_eq!(last, ["close 4004"]);
    assert_eq!(
        pongs,
        pings - 1,
        "every ping within the budget was answered, none after"
    );
    // The hello counted too: the close came with the first ping past the budget.
    let before = binary(&hello(5, Some("t"))).len() + (pings - 1) * ping.len();
    assert!(
        before <= 10_000 && before + ping.len() > 10_000,
        "closed at {before} bytes"
    );
    flood.handle_message(T0, &hub, &ping, false);
    assert!(drain(&mut flood).is_empty(), "parsed after the close");
}
