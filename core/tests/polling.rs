//! HTTP long-polling as the core decides it (PROTOCOL.md 1.4), once for every server adapter:
//! the request-head checks and each refusal's status, the session table (tokens, capacity,
//! requests in flight, supersession, expiry), the hold, feeding bodies, and CORS. Virtual time
//! and fixed seeds: every run is the same.

use eventwire_core::server::Grants;
use std::time::Duration;

use eventwire_core::code::CloseCode;
use eventwire_core::codec::{stream, Codec};
use eventwire_core::frame::Seq;
use eventwire_core::frame::{Frame, Hello, Ping};
use eventwire_core::handshake::Origins;
use eventwire_core::hub::{Hub, HubConfig};
use eventwire_core::server::http::{cors, preflight, Answer, Cors, Header, Refusal};
use eventwire_core::server::polling::{
    begins_session, capacity_refusal, check_head, content_type, feed, Checked, Head, Hold, Kind,
    Limits, Sessions, Step, Token, BINARY_TYPE, JSON_TYPE,
};
use eventwire_core::server::{Body, BodyError, Connection, Framing, ServerConfig};
use eventwire_core::time::Instant;

const T0: Instant = Instant::from_micros(1_000_000);
const NONE: Origins<'static> = Origins::Any;
const LIMITS: Limits = Limits {
    max_body: 4096,
    max_frames: 4,
    long_poll: Duration::from_secs(25),
    idle: Duration::from_secs(30),
};

fn head<'h>(length: &'h [u8], content_type: &'h [u8]) -> Head<'h> {
    Head {
        content_length: Some(length),
        content_type: Some(content_type),
        ..Head::default()
    }
}

fn refused(allowed: Origins<'_>, head: &Head<'_>) -> u16 {
    check_head(allowed, 100, head).unwrap_err().status()
}

#[test]
fn the_method_says_what_a_request_is() {
    assert_eq!(Kind::of("POST"), Some(Kind::Exchange));
    assert_eq!(Kind::of("OPTIONS"), Some(Kind::Preflight));
    assert_eq!(Kind::of("GET"), None);
    assert_eq!(Kind::of("post"), None, "methods are case-sensitive");
}

#[test]
fn the_head_decides_form_length_and_session() {
    let ok = check_head(
        NONE,
        100,
        &head(b" 100 ", b"Application/JSON; charset=utf-8"),
    )
    .unwrap();
    assert_eq!(
        ok,
        Checked {
            codec: Codec::Json,
            length: 100,
            session: None,
            seq: 1,
        }
    );
    let token = Token::parse(b"0123456789abcdef0123456789abcdef").unwrap();
    let with_session = Head {
        session: Some(b" 0123456789abcdef0123456789abcdef\t"),
        seq: Some(b" 17 "),
        ..head(b"0", BINARY_TYPE.as_bytes())
    };
    let ok = check_head(NONE, 100, &with_session).unwrap();
    assert_eq!(
        (ok.codec, ok.session, ok.seq),
        (Codec::Binary, Some(token), 17)
    );
    assert_eq!(content_type(Codec::Json), JSON_TYPE);
    assert_eq!(content_type(Codec::Binary), BINARY_TYPE);
}

#[test]
fn each_bad_head_gets_its_status() {
    let json = JSON_TYPE.as_bytes();
    let allowed = Origins::Listed {
        host: None,
        allowed: &["https://page.example"],
    };
    // A length that is not a number: 400, before anything else (even a refused origin).
    let bad_length = Head {
        origin: Some(b"https://evil.example"),
        ..head(b"12x", json)
    };
    assert_eq!(refused(allowed, &bad_length), 400);
    assert_eq!(refused(NONE, &head(b"-1", json)), 400);
    assert_eq!(refused(NONE, &head(b"", json)), 400);
    // An origin the list does not admit: 403; a non-UTF-8 one matches nothing.
    let evil = Head {
        origin: Some(b"https://evil.example"),
        ..head(b"1", json)
    };
    assert_eq!(refused(allowed, &evil), 403);
    let binary_origin = Head {
        origin: Some(&[0xff, 0xfe]),
        ..head(b"1", json)
    };
    assert_eq!(refused(allowed, &binary_origin), 403);
    let page = Head {
        origin: Some(b"https://page.example"),
        ..head(b"1", json)
    };
    assert!(check_head(allowed, 100, &page).is_ok());
    // The default admits the server's own pages only: another site's polling gets 403.
    let own = Origins::SameOrigin {
        host: Some(b"page.example:443"),
    };
    assert!(check_head(own, 100, &page).is_ok());
    assert_eq!(refused(own, &evil), 403);
    // No length: 411 (a chunked body); over the limit: 413, also beyond usize.
    let no_length = Head {
        content_type: Some(json),
        ..Head::default()
    };
    assert_eq!(refused(NONE, &no_length), 411);
    assert_eq!(refused(NONE, &head(b"101", json)), 413);
    assert_eq!(refused(NONE, &head(b"99999999999999999999999", json)), 400);
    assert_eq!(refused(NONE, &head(b"18446744073709551615", json)), 413);
    // Neither form: 415, also with no content type.
    assert_eq!(refused(NONE, &head(b"1", b"text/plain")), 415);
    let untyped = Head {
        content_length: Some(b"1"),
        ..Head::default()
    };
    assert_eq!(refused(NONE, &untyped), 415);
    // A token none of ours can be: 404, like an unknown one.
    for bad in [
        &b"0123456789ABCDEF0123456789ABCDEF"[..],
        b"0123456789abcdef",
        b"0123456789abcdef0123456789abcdef0",
        b"0123456789abcdeg0123456789abcdef",
        b"",
    ] {
        let head = Head {
            session: Some(bad),
            seq: Some(b"2"),
            ..head(b"1", json)
        };
        assert_eq!(refused(NONE, &head), 404, "{bad:?}");
    }
}

#[test]
fn a_request_of_a_session_carries_its_number() {
    let json = JSON_TYPE.as_bytes();
    let token = b"0123456789abcdef0123456789abcdef";
    let numbered = |session: Option<&'static [u8]>, seq: Option<&'static [u8]>| Head {
        session,
        seq,
        ..head(b"1", JSON_TYPE.as_bytes())
    };
    // A first request: 1, or nothing (taken as 1).
    assert_eq!(check_head(NONE, 100, &head(b"1", json)).unwrap().seq, 1);
    assert_eq!(
        check_head(NONE, 100, &numbered(None, Some(b"1")))
            .unwrap()
            .seq,
        1
    );
    // A session's request: a number from 1; strict, every client sends it.
    let ok = check_head(NONE, 100, &numbered(Some(token), Some(b"9007199254740991"))).unwrap();
    assert_eq!(ok.seq, 9_007_199_254_740_991);
    for (session, seq) in [
        (Some(&token[..]), None),
        (Some(&token[..]), Some(&b"0"[..])),
        (Some(&token[..]), Some(&b"-2"[..])),
        (Some(&token[..]), Some(&b"2x"[..])),
        (Some(&token[..]), Some(&b""[..])),
        (Some(&token[..]), Some(&b"18446744073709551616"[..])),
        (None, Some(&b"2"[..])),
        (None, Some(&b"0"[..])),
    ] {
        assert_eq!(
            check_head(NONE, 100, &numbered(session, seq)),
            Err(Refusal::BadSeq),
            "{session:?} {seq:?}"
        );
    }
}

#[test]
fn refusals_answer_with_status_reason_and_hint() {
    let table = [
        (Refusal::OriginNotAllowed, 403, "origin not allowed"),
        (Refusal::BadLength, 400, "bad Content-Length"),
        (Refusal::LengthRequired, 411, "Content-Length required"),
        (Refusal::TooLarge, 413, "body too large"),
        (Refusal::UnsupportedType, 415, "unsupported content type"),
        (Refusal::UnknownSession, 404, "unknown session"),
        (Refusal::BadSeq, 400, "bad Eventwire-Seq"),
        (Refusal::BodyTooSlow, 408, "body too slow"),
        (Refusal::BodyNotReceived, 400, "body not received"),
        (Refusal::NoHello, 400, "a session begins with a hello"),
        (Refusal::TooManyFrames, 400, "too many frames"),
    ];
    for (refusal, status, reason) in table {
        let answer = refusal.answer();
        assert_eq!(answer.status, status, "{refusal}");
        assert_eq!(answer.body, reason.as_bytes());
        assert_eq!(
            answer.headers,
            vec![Header::ContentType("text/plain"), Header::NoStore]
        );
        assert_eq!(refusal.to_string(), format!("{status} {reason}"));
    }
    let shutting = Refusal::ShuttingDown {
        retry_after: Duration::from_millis(1200),
    };
    let answer = shutting.answer();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after").as_deref(), Some("2"));
    let whole = Refusal::ShuttingDown {
        retry_after: Duration::from_secs(3),
    };
    assert_eq!(whole.answer().header("retry-after").as_deref(), Some("3"));
}

fn hello_frame() -> Frame<'static> {
    Frame::Hello(Hello {
        version: eventwire_core::PROTOCOL_VERSION,
        client_id: 7,
        token: None,
        max_frame: 64 * 1024,
        max_batch: 50,
        rooms: Seq::empty(),
    })
}

fn json_body(frames: &[Frame<'_>]) -> Vec<u8> {
    let items: Vec<String> = frames
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            Codec::Json.encode_into(f, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        })
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

fn ping() -> Frame<'static> {
    Frame::Ping(Ping { nonce: 1 })
}

#[test]
fn a_session_begins_with_a_hello_and_not_during_shutdown() {
    let hello = json_body(&[hello_frame()]);
    let parsed = Body::parse(Codec::Json, &hello, 4);
    assert_eq!(begins_session(&parsed, 65536, None), Ok(()));
    let retry_after = Duration::from_secs(1);
    assert_eq!(
        begins_session(&parsed, 65536, Some(retry_after)),
        Err(Refusal::ShuttingDown { retry_after })
    );
    let pings = json_body(&[ping()]);
    let parsed = Body::parse(Codec::Json, &pings, 4);
    assert_eq!(begins_session(&parsed, 65536, None), Err(Refusal::NoHello));
    let parsed = Body::parse(Codec::Json, b"[]", 4);
    assert_eq!(begins_session(&parsed, 65536, None), Err(Refusal::NoHello));
    let parsed = Body::parse(Codec::Json, b"{", 4);
    assert_eq!(begins_session(&parsed, 65536, None), Err(Refusal::NoHello));
    let many = json_body(&[hello_frame(), ping(), ping(), ping(), ping()]);
    let parsed = Body::parse(Codec::Json, &many, 4);
    assert_eq!(
        begins_session(&parsed, 65536, None),
        Err(Refusal::TooManyFrames)
    );
}

/// A session's connection with its hello fed, and the hub.
fn session(codec: Codec) -> (Connection, Hub) {
    let hub = Hub::new(3, HubConfig::new());
    let mut conn = Connection::new(T0, ServerConfig::new(), Framing::Body(codec), 1, 42);
    let body = if codec.is_text() {
        json_body(&[hello_frame()])
    } else {
        let mut out = Vec::new();
        stream::encode_into(&hello_frame(), &mut out).unwrap();
        out
    };
    let parsed = Body::parse(codec, &body, 4);
    assert_eq!(
        feed(&mut conn, T0, &hub, codec, &parsed, body.len()),
        Ok(())
    );
    settle(&mut conn);
    (conn, hub)
}

fn settle(conn: &mut Connection) {
    while let Some(decision) = conn.poll_decision() {
        if let eventwire_core::server::Decision::Authenticate { .. } = decision {
            conn.settle_auth(T0, Ok(Grants::publish_any().create_any()));
        }
    }
}

fn frames_of(answer: &Answer) -> Vec<String> {
    let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_object().unwrap().keys().next().unwrap().clone())
        .collect()
}

#[test]
fn a_held_request_answers_with_the_frames_the_session_has() {
    let (mut conn, _hub) = session(Codec::Json);
    let token = Token::parse(b"000000000000000000000000000000ff").unwrap();
    let hold = Hold::new(T0, Codec::Json, &LIMITS);
    let mut body = Vec::new();
    assert_eq!(
        hold.poll(&mut conn, T0, false, &mut body),
        Step::Answer { ended: false }
    );
    let answer = hold.finish(token, body);
    assert_eq!(answer.status, 200);
    assert_eq!(frames_of(&answer), ["welcome"]);
    assert_eq!(answer.header("content-type").as_deref(), Some(JSON_TYPE));
    assert_eq!(answer.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        answer.header("eventwire-session").as_deref(),
        Some("000000000000000000000000000000ff")
    );
}

#[test]
fn a_hold_waits_for_timers_and_ends_with_the_long_poll_time() {
    let (mut conn, _hub) = session(Codec::Json);
    let mut body = Vec::new();
    let welcome = Hold::new(T0, Codec::Json, &LIMITS);
    assert!(matches!(
        welcome.poll(&mut conn, T0, false, &mut body),
        Step::Answer { .. }
    ));
    body.clear();
    let hold = Hold::new(T0, Codec::Json, &LIMITS);
    let until = T0 + LIMITS.long_poll;
    // Nothing to send: wait, at most until the hold ends, at the latest the session's timer.
    let Step::Wait { until: first } = hold.poll(&mut conn, T0, false, &mut body) else {
        panic!("nothing to send yet");
    };
    assert!(first <= until && first > T0, "{first}");
    let next = conn.poll_timeout().map_or(until, |t| t.min(until));
    assert_eq!(first, next);
    assert!(body.is_empty());
    // The hold time passes: answered with an empty array, nothing more drained.
    assert_eq!(
        hold.poll(&mut conn, until, false, &mut body),
        Step::Answer { ended: false }
    );
    let token = Token::parse(b"0000000000000000000000000000000a").unwrap();
    assert_eq!(hold.finish(token, body).body, b"[]");
}

#[test]
fn a_newer_request_releases_the_held_one_at_once() {
    let (mut conn, _hub) = session(Codec::Binary);
    let hold = Hold::new(T0, Codec::Binary, &LIMITS);
    let mut body = Vec::new();
    assert_eq!(
        hold.poll(&mut conn, T0, true, &mut body),
        Step::Answer { ended: false }
    );
    let token = Token::parse(b"0000000000000000000000000000000b").unwrap();
    let answer = hold.finish(token, body);
    assert!(answer.body.is_empty(), "binary bodies have no brackets");
    assert_eq!(answer.header("content-type").as_deref(), Some(BINARY_TYPE));
    // The welcome was not taken: the next request gets it.
    let mut body = Vec::new();
    assert_eq!(
        Hold::new(T0, Codec::Binary, &LIMITS).poll(&mut conn, T0, false, &mut body),
        Step::Answer { ended: false }
    );
    assert!(!body.is_empty());
}

#[test]
fn a_close_ends_the_session_with_its_frame() {
    let (mut conn, hub) = session(Codec::Json);
    let malformed = b"{\"not\":\"an array\"}";
    let parsed = Body::parse(Codec::Json, malformed, 4);
    assert_eq!(parsed.as_ref().err(), Some(&BodyError::Malformed));
    assert_eq!(
        feed(&mut conn, T0, &hub, Codec::Json, &parsed, malformed.len()),
        Ok(())
    );
    let hold = Hold::new(T0, Codec::Json, &LIMITS);
    let mut body = Vec::new();
    assert_eq!(
        hold.poll(&mut conn, T0, false, &mut body),
        Step::Answer { ended: true }
    );
    let token = Token::parse(b"0000000000000000000000000000000c").unwrap();
    let answer = hold.finish(token, body);
    let value: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let last = value.as_array().unwrap().last().unwrap();
    assert_eq!(
        last["close"]["code"],
        u64::from(CloseCode::PROTOCOL_ERROR.0)
    );
}

#[test]
fn too_many_frames_end_the_session_with_400() {
    let (mut conn, hub) = session(Codec::Json);
    let many = json_body(&[ping(), ping(), ping(), ping(), ping()]);
    let parsed = Body::parse(Codec::Json, &many, 4);
    assert_eq!(
        feed(&mut conn, T0, &hub, Codec::Json, &parsed, many.len()),
        Err(Refusal::TooManyFrames)
    );
    // The connection closed with POLICY_VIOLATION (the adapter answers 400 and drops it).
    let mut body = Vec::new();
    let hold = Hold::new(T0, Codec::Json, &LIMITS);
    assert_eq!(
        hold.poll(&mut conn, T0, false, &mut body),
        Step::Answer { ended: true }
    );
    let token = Token::parse(b"0000000000000000000000000000000e").unwrap();
    let value: serde_json::Value = serde_json::from_slice(&hold.finish(token, body).body).unwrap();
    let last = value.as_array().unwrap().last().unwrap();
    assert_eq!(
        last["close"]["code"],
        u64::from(CloseCode::POLICY_VIOLATION.0)
    );
}

#[test]
fn a_response_stays_within_the_body_budget() {
    let (mut conn, hub) = session(Codec::Json);
    let pings = json_body(&[ping(), ping(), ping(), ping()]);
    let parsed = Body::parse(Codec::Json, &pings, 4);
    assert_eq!(
        feed(&mut conn, T0, &hub, Codec::Json, &parsed, pings.len()),
        Ok(())
    );
    // A budget of one byte: the welcome alone goes out, the pongs wait for the next request.
    let tight = Limits {
        max_body: 1,
        ..LIMITS
    };
    let mut body = Vec::new();
    let hold = Hold::new(T0, Codec::Json, &tight);
    assert!(matches!(
        hold.poll(&mut conn, T0, false, &mut body),
        Step::Answer { ended: false }
    ));
    let token = Token::parse(b"0000000000000000000000000000000d").unwrap();
    assert_eq!(frames_of(&hold.finish(token, body)), ["welcome"]);
    let mut body = Vec::new();
    let hold = Hold::new(T0, Codec::Json, &LIMITS);
    assert!(matches!(
        hold.poll(&mut conn, T0, false, &mut body),
        Step::Answer { ended: false }
    ));
    assert_eq!(frames_of(&hold.finish(token, body)), ["pong"; 4]);
}

#[test]
fn a_first_request_over_capacity_gets_the_close_frame_and_no_token() {
    let hub = Hub::new(3, HubConfig::new());
    let _ = &hub;
    let mut conn = Connection::new(T0, ServerConfig::new(), Framing::Body(Codec::Json), 1, 42);
    conn.close(
        CloseCode::TRY_AGAIN_LATER,
        Some(Duration::from_secs(1)),
        "at capacity",
    );
    let answer = capacity_refusal(&mut conn, T0, Codec::Json, &LIMITS);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("eventwire-session"), None);
    assert_eq!(frames_of(&answer), ["close"]);
}

#[test]
fn tokens_come_from_the_seeds_and_read_back() {
    let mut table: Sessions<u32> = Sessions::new(8, LIMITS.idle);
    let a = table.vacant(T0, [1, 2]).unwrap().insert(1).0;
    let b = table.vacant(T0, [3, 4]).unwrap().insert(2).0;
    assert_ne!(a, b);
    let mut again: Sessions<u32> = Sessions::new(8, LIMITS.idle);
    assert_eq!(
        again.vacant(T0, [1, 2]).unwrap().token(),
        a,
        "same seeds, same token"
    );
    let text = a.to_string();
    assert_eq!(text.len(), 32);
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(Token::parse(text.as_bytes()), Some(a));
    // The same seeds again (an adapter with a poor source): another token, not a clash.
    let c = table.vacant(T0, [1, 2]).unwrap().insert(3).0;
    assert!(c != a && c != b);
    assert_eq!(table.len(), 3);
}

#[test]
fn the_table_refuses_beyond_its_capacity() {
    let mut table: Sessions<u32> = Sessions::new(2, LIMITS.idle);
    let (a, _) = table.vacant(T0, [1, 1]).unwrap().insert(1);
    table.vacant(T0, [2, 2]).unwrap().insert(2);
    assert!(table.vacant(T0, [3, 3]).is_none(), "full");
    assert_eq!(table.remove(a), Some(1));
    assert_eq!(table.remove(a), None, "removed once");
    assert!(table.vacant(T0, [3, 3]).is_some());
    let mut none: Sessions<u32> = Sessions::new(0, LIMITS.idle);
    assert!(none.vacant(T0, [1, 1]).is_none());
}

#[test]
fn requests_in_flight_keep_a_session_and_the_latest_is_held() {
    let idle = LIMITS.idle;
    let mut table: Sessions<&str> = Sessions::new(4, idle);
    // A new session's first request is in flight from the start, and is its latest.
    let (a, first) = table.vacant(T0, [1, 1]).unwrap().insert("a");
    let (b, _) = table.vacant(T0, [2, 2]).unwrap().insert("b");
    assert!(!table.superseded(a, first));
    let unknown = Token::parse(b"ffffffffffffffffffffffffffffffff").unwrap();
    assert!(table.begin(unknown, 2).is_none());
    let (value, second) = table.begin(a, 2).unwrap();
    assert_eq!(*value, "a");
    assert!(
        table.superseded(a, first),
        "a newer request releases the held one"
    );
    assert!(!table.superseded(a, second));
    // `b`'s request ends; idle time passes: `b` expires, `a` has requests in flight and stays.
    table.end(b, T0);
    let later = T0 + idle;
    assert!(table.expire(later - Duration::from_micros(1)).is_empty());
    assert_eq!(table.expire(later), vec!["b"]);
    assert!(table.begin(b, 2).is_none(), "an expired session is unknown");
    table.end(a, later);
    assert!(
        table.expire(later + idle).is_empty(),
        "one request still in flight"
    );
    table.end(a, later);
    assert_eq!(table.expire(later + idle), vec!["a"]);
    assert!(table.is_empty());
    // A removed session supersedes nothing: its held request ends with its close.
    let (c, ticket) = table.vacant(T0, [3, 3]).unwrap().insert("c");
    table.remove(c);
    assert!(!table.superseded(c, ticket));
    table.end(c, T0);
    assert!(
        table.is_empty(),
        "ending a request of a removed session is harmless"
    );
}

#[test]
fn a_session_idles_from_its_last_request() {
    let idle = LIMITS.idle;
    let mut table: Sessions<u8> = Sessions::new(4, idle);
    let (a, _) = table.vacant(T0, [1, 1]).unwrap().insert(1);
    assert!(
        table.expire(T0 + idle * 2).is_empty(),
        "its first request is in flight"
    );
    let t1 = T0 + Duration::from_secs(20);
    table.end(a, t1);
    assert!(
        table.expire(T0 + idle).is_empty(),
        "idle from the request's end"
    );
    assert_eq!(table.expire(t1 + idle), vec![1]);
}

#[test]
fn shutdown_and_faults_remove_sessions() {
    let mut table: Sessions<u8> = Sessions::new(4, LIMITS.idle);
    for n in 0..4 {
        table.vacant(T0, [n.into(), 9]).unwrap().insert(n);
    }
    let mut cut = table.remove_where(|&n| n % 2 == 0);
    cut.sort();
    assert_eq!(cut, vec![0, 2]);
    let mut rest = table.end_all();
    rest.sort();
    assert_eq!(rest, vec![1, 3]);
    assert!(table.is_empty());
}

#[test]
fn cors_admits_allowed_origins_only() {
    let allowed = Origins::Listed {
        host: None,
        allowed: &["https://page.example"],
    };
    assert_eq!(cors(allowed, None), Cors::None);
    assert_eq!(
        cors(allowed, Some(b"https://page.example")),
        Cors::Allowed("https://page.example")
    );
    assert_eq!(cors(allowed, Some(b"https://evil.example")), Cors::Refused);
    assert_eq!(cors(allowed, Some(&[0xff])), Cors::Refused);
    assert_eq!(
        cors(NONE, Some(b"https://any.example")),
        Cors::Allowed("https://any.example")
    );
    assert_eq!(cors(NONE, Some(&[0xff])), Cors::None, "cannot be echoed");

    let answer = Answer::text(404, "x").with_cors(&Cors::Allowed("https://page.example"));
    assert_eq!(
        answer.header("access-control-allow-origin").as_deref(),
        Some("https://page.example")
    );
    assert_eq!(
        answer.header("access-control-expose-headers").as_deref(),
        Some("Eventwire-Session, Retry-After")
    );
    assert_eq!(answer.header("vary").as_deref(), Some("Origin"));
    for quiet in [Cors::None, Cors::Refused] {
        let answer = Answer::text(404, "x").with_cors(&quiet);
        assert_eq!(answer.header("access-control-allow-origin"), None);
    }
}

#[test]
fn the_preflight_names_what_a_polling_client_sends() {
    let allowed = Origins::Listed {
        host: None,
        allowed: &["https://page.example"],
    };
    let ok = preflight(allowed, Some(b"https://page.example"));
    assert_eq!(ok.status, 204);
    assert!(ok.body.is_empty());
    assert_eq!(
        ok.header("access-control-allow-origin").as_deref(),
        Some("https://page.example")
    );
    assert_eq!(
        ok.header("access-control-allow-methods").as_deref(),
        Some("POST")
    );
    assert_eq!(
        ok.header("access-control-allow-headers").as_deref(),
        Some("Content-Type, Eventwire-Session, Eventwire-Seq")
    );
    assert_eq!(ok.header("access-control-max-age").as_deref(), Some("600"));
    let refused = preflight(allowed, Some(b"https://evil.example"));
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let same_origin = preflight(allowed, None);
    assert_eq!(same_origin.status, 204);
    assert_eq!(same_origin.header("access-control-allow-origin"), None);
    // Every header name is lower case (HTTP/2).
    for header in ok.headers.iter().chain(&refused.headers) {
        assert_eq!(header.name(), header.name().to_ascii_lowercase());
    }
}

/// The frames of a JSON answer, as values.
fn values_of(answer: &Answer) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(&answer.body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// A session's request numbered `seq` arrives carrying `frames`: it begins in the table, its
/// body is fed, and it is polled once at `T0`; returns its answer, or `None` if it is held.
fn arrives(
    table: &mut Sessions<()>,
    token: Token,
    seq: u64,
    (conn, hub): (&mut Connection, &Hub),
    frames: &[Frame<'_>],
) -> Option<Answer> {
    let (_, ticket) = table.begin(token, seq).unwrap();
    let body = json_body(frames);
    let parsed = Body::parse(Codec::Json, &body, 4);
    assert_eq!(
        feed(conn, T0, hub, Codec::Json, &parsed, body.len()),
        Ok(())
    );
    let hold = Hold::new(T0, Codec::Json, &LIMITS);
    let mut out = Vec::new();
    let superseded = table.superseded(token, ticket);
    let step = hold.poll(conn, T0, superseded, &mut out);
    table.end(token, T0);
    match step {
        Step::Answer { ended } => {
            assert!(!ended);
            Some(hold.finish(token, out))
        }
        Step::Wait { .. } => None,
    }
}

fn nonce_ping(nonce: u64) -> Frame<'static> {
    Frame::Ping(Ping { nonce })
}

/// A session's requests 2 and 3 are under way at once (the long-poll and one carrying the
/// client's frames) and 3 reaches the server first (two connections, each with its own delay).
/// The server decides "newer" by the client's numbers, not by arrival: 3 takes the frames the
/// session has; 2, arriving after it, is answered at once with none, though its own frames are
/// applied (their answers go to a later request). So the client, which reads its responses in
/// the order it sent the requests (2, 3, 4), reads the frames in the order the session made
/// them. By arrival order, 2 would be the latest and take the later frames, which the client
/// would read first: the silent loss of `polling_under_jitter_keeps_order` (chaos.rs).
#[test]
fn an_overtaken_request_gets_no_frames_and_its_body_still_counts() {
    let (mut conn, hub) = session(Codec::Json);
    let mut table: Sessions<()> = Sessions::new(4, LIMITS.idle);
    let (token, first) = table.vacant(T0, [5, 5]).unwrap().insert(());
    let hold = Hold::new(T0, Codec::Json, &LIMITS);
    let mut out = Vec::new();
    assert!(!table.superseded(token, first));
    assert_eq!(
        hold.poll(&mut conn, T0, false, &mut out),
        Step::Answer { ended: false }
    );
    assert_eq!(frames_of(&hold.finish(token, out)), ["welcome"]);
    table.end(token, T0);

    let mut responses = std::collections::BTreeMap::new();
    // 3 arrives first, with a ping: it takes the pong at once.
    let third = arrives(&mut table, token, 3, (&mut conn, &hub), &[nonce_ping(3)]);
    responses.insert(3, third.expect("the pong"));
    // 2 arrives after it, with a ping too: answered at once, empty; its ping is not lost.
    let second = arrives(&mut table, token, 2, (&mut conn, &hub), &[nonce_ping(2)]);
    responses.insert(2, second.expect("answered at once, not held"));
    // The same number twice is no newer either.
    let again = arrives(&mut table, token, 3, (&mut conn, &hub), &[]);
    assert_eq!(again.expect("answered at once").body, b"[]");
    // 4, the next long-poll, takes what the session made since: the pong of 2's ping.
    let fourth = arrives(&mut table, token, 4, (&mut conn, &hub), &[]);
    responses.insert(4, fourth.expect("the pong of 2's ping"));

    // The client reads them in the order it sent them.
    let read: Vec<serde_json::Value> = responses.values().flat_map(values_of).collect();
    let nonces: Vec<u64> = read
        .iter()
        .map(|f| f["pong"]["nonce"].as_u64().expect("a pong"))
        .collect();
    assert_eq!(nonces, [3, 2], "the order the session made them: {read:?}");
    assert_eq!(
        responses[&2].body, b"[]",
        "the overtaken request gets no frames"
    );
    // 5 arrives while 4's successor is held, as usual: a newer request releases a held one.
    let (_, five) = table.begin(token, 5).unwrap();
    assert!(!table.superseded(token, five));
    let (_, six) = table.begin(token, 6).unwrap();
    assert!(table.superseded(token, five) && !table.superseded(token, six));
}
