//! HTTP long-polling on the standalone server (PROTOCOL.md 1.4), with hand-written HTTP/1.1
//! requests.

use eventwire_tokio::Grants;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eventwire_tokio::core::codec::stream;
use eventwire_tokio::core::codec::Codec;
use eventwire_tokio::{Client, ClientOptions, Event, Hub, Server, ServerConfig};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

#[path = "shared/raw_http.rs"]
mod raw_http;
use raw_http::{kinds, numbered_request, post, post_request, post_to, raw, Conn, BINARY, JSON};

/// JSON frames as a JSON-form body.
fn json_body(frames: &[&str]) -> Vec<u8> {
    format!("[{}]", frames.join(",")).into_bytes()
}

/// JSON frames converted to a binary-form (COBS-framed) body.
fn binary_body(frames: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        let frame = Codec::Json.decode(f.as_bytes(), 64 * 1024).unwrap();
        let mut buf = vec![0u8; 4096];
        out.extend_from_slice(stream::encode(&frame, &mut buf).unwrap());
    }
    out
}

fn hello(room: &str) -> String {
    format!(
        r#"{{"hello":{{"version":1,"client_id":7,"token":null,"max_frame":65536,"max_batch":50,"rooms":[{{"room":"{room}","from":null}}]}}}}"#
    )
}

async fn server(config: ServerConfig) -> Server {
    // These tests publish over polling: clients are granted every room.
    let config = config.grants(Grants::publish_any());
    let hub = Hub::new(Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare(["feed", "tasks", "commands", "agents"])
        .unwrap();
    Server::bind("127.0.0.1:0", hub, config).await.unwrap()
}

/// Opens a session on `room` in `form`; the token.
async fn open(addr: SocketAddr, form: &str, room: &str) -> String {
    let body = if form == JSON {
        json_body(&[&hello(room)])
    } else {
        binary_body(&[&hello(room)])
    };
    let reply = post(addr, form, None, &body).await;
    assert_eq!(kinds(&reply.frames()), ["welcome", "subscribed"]);
    assert_eq!(reply.header("content-type"), Some(form));
    reply.token()
}

async fn events_while_held(form: &'static str) {
    let server = server(ServerConfig::default()).await;
    let addr = server.local_addr();
    let token = open(addr, form, "feed").await;
    let empty = if form == JSON {
        b"[]".to_vec()
    } else {
        Vec::new()
    };
    let held = tokio::spawn(async move {
        let started = Instant::now();
        let reply = post(addr, form, Some(&token), &empty).await;
        (reply, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .hub()
        .emit("feed", "tick", &serde_json::json!({"n": 1}))
        .unwrap();
    let (reply, took) = held.await.unwrap();
    let frames = reply.frames();
    assert_eq!(kinds(&frames), ["batch"]);
    assert_eq!(frames[0]["batch"]["events"][0]["kind"], "tick");
    assert_eq!(frames[0]["batch"]["events"][0]["payload"]["n"], 1);
    assert!(took < Duration::from_secs(3), "held {took:?}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn json_session_gets_events_while_held() {
    events_while_held(JSON).await;
}

#[tokio::test]
async fn binary_session_gets_events_while_held() {
    events_while_held(BINARY).await;
}

#[tokio::test]
async fn held_request_ends_after_long_poll_and_on_a_newer_request() {
    let config = ServerConfig::default().long_poll(Duration::from_millis(400));
    let server = server(config).await;
    let addr = server.local_addr();
    let token = open(addr, JSON, "feed").await;

    let started = Instant::now();
    let reply = post(addr, JSON, Some(&token), b"[]").await;
    assert_eq!(reply.frames(), Vec::<Value>::new());
    assert_eq!(reply.body, b"[]");
    assert!(started.elapsed() >= Duration::from_millis(350));

    // A newer request releases the held one at once.
    let config = ServerConfig::default();
    let server2 = self::server(config).await;
    let addr2 = server2.local_addr();
    let token2 = open(addr2, JSON, "feed").await;
    let first = {
        let token2 = token2.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = post(addr2, JSON, Some(&token2), b"[]").await;
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn(async move { post(addr2, JSON, Some(&token2), b"[]").await });
    let (reply, took) = first.await.unwrap();
    assert_eq!(reply.frames(), Vec::<Value>::new());
    assert!(took < Duration::from_secs(3), "held {took:?}");
    second.abort();
    server.shutdown(Duration::from_secs(1)).await;
    server2.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn publish_is_acknowledged() {
    let server = server(ServerConfig::default()).await;
    let addr = server.local_addr();
    let token = open(addr, JSON, "feed").await;
    let publish =
        r#"{"publish":{"room":"commands","id":1,"kind":"agent.pause","payload":{"a":1}}}"#;
    let reply = post(addr, JSON, Some(&token), &json_body(&[publish])).await;
    let frames = reply.frames();
    assert_eq!(kinds(&frames), ["publish_ack"], "{frames:?}");
    assert_eq!(frames[0]["publish_ack"]["id"], 1);
    assert_eq!(server.hub().room_stats("commands").unwrap().head.offset, 1);
    server.shutdown(Duration::from_secs(1)).await;
}

/// A session's request `seq` (`None`: without the header) with `body`.
async fn numbered(addr: SocketAddr, token: &str, seq: Option<u64>, body: &str) -> raw_http::Reply {
    let request = numbered_request(
        "/eventwire/poll",
        JSON,
        Some(token),
        seq,
        body.as_bytes(),
        false,
    );
    raw(addr, &request).await
}

/// The client's numbers decide which request is newer, not their arrival: request 3 arrives
/// first and takes the event; request 2, arriving after it, is answered at once and empty,
/// though its publish is applied (acknowledged in request 4). A session's request without a
/// number is refused (400) and the session goes on.
#[tokio::test]
async fn requests_are_ordered_by_their_number_not_their_arrival() {
    let server = server(ServerConfig::default()).await;
    let addr = server.local_addr();
    let token = open(addr, JSON, "feed").await;

    let third = {
        let token = token.clone();
        tokio::spawn(async move { numbered(addr, &token, Some(3), "[]").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server
        .hub()
        .emit("feed", "tick", &serde_json::json!({"n": 1}))
        .unwrap();
    let third = third.await.unwrap();
    assert_eq!(kinds(&third.frames()), ["batch"]);

    let publish = r#"[{"publish":{"room":"commands","id":1,"kind":"k","payload":{}}}]"#;
    let started = Instant::now();
    let second = numbered(addr, &token, Some(2), publish).await;
    assert_eq!(second.body, b"[]", "overtaken: no frames");
    assert!(started.elapsed() < Duration::from_secs(3), "not held");
    assert_eq!(server.hub().room_stats("commands").unwrap().head.offset, 1);

    let missing = numbered(addr, &token, None, "[]").await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body, b"bad Eventwire-Seq");
    let zero = numbered(addr, &token, Some(0), "[]").await;
    assert_eq!(zero.status, 400);

    let fourth = numbered(addr, &token, Some(4), "[]").await;
    let frames = fourth.frames();
    assert_eq!(kinds(&frames), ["publish_ack"], "{frames:?}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn head_checks() {
    let server = server(ServerConfig::default()).await;
    let addr = server.local_addr();

    // No Content-Length: 411.
    let reply = raw(
        addr,
        b"POST /eventwire/poll HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 411);

    // Too large: 413 at once, without the body ever being sent.
    let started = Instant::now();
    let reply = raw(
        addr,
        b"POST /eventwire/poll HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 413);
    assert!(started.elapsed() < Duration::from_secs(2));

    // Unknown token: 404.
    let reply = post(addr, JSON, Some("00112233445566778899aabbccddeeff"), b"[]").await;
    assert_eq!(reply.status, 404);

    // A first request that does not begin with a hello: 400.
    let reply = post(addr, JSON, None, br#"[{"ping":{"nonce":1}}]"#).await;
    assert_eq!(reply.status, 400);

    // An unsupported content type: 415.
    let reply = post(addr, "text/plain", None, b"hi").await;
    assert_eq!(reply.status, 415);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn too_many_frames_end_the_session() {
    let server = server(ServerConfig::default()).await;
    let addr = server.local_addr();
    let token = open(addr, JSON, "feed").await;
    let ping = r#"{"ping":{"nonce":1}}"#;
    let reply = post(addr, JSON, Some(&token), &json_body(&[ping; 65])).await;
    assert_eq!(reply.status, 400);
    let reply = post(addr, JSON, Some(&token), b"[]").await;
    assert_eq!(reply.status, 404);

    // 64 are fine.
    let token = open(addr, BINARY, "feed").await;
    let reply = post(addr, BINARY, Some(&token), &binary_body(&[ping; 64])).await;
    assert_eq!(kinds(&reply.frames()), vec!["pong"; 64]);
    let reply = post(addr, BINARY, Some(&token), &binary_body(&[ping; 65])).await;
    assert_eq!(reply.status, 400);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn idle_sessions_expire() {
    let config = ServerConfig::default().poll_idle(Duration::from_millis(300));
    let server = server(config).await;
    let addr = server.local_addr();
    let token = open(addr, JSON, "feed").await;
    // The session (the request's own connection may still be counted for a moment).
    assert!(server.hub().stats().connections >= 1);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(server.hub().stats().connections, 0);
    let reply = post(addr, JSON, Some(&token), b"[]").await;
    assert_eq!(reply.status, 404);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn client_close_ends_the_session() {
    let server = server(ServerConfig::default()).await;
    let addr = server.local_addr();
    let token = open(addr, JSON, "feed").await;
    let close = r#"{"close":{"code":1000,"retry_after_ms":null,"reason":"bye"}}"#;
    let reply = post(addr, JSON, Some(&token), &json_body(&[close])).await;
    assert_eq!(reply.status, 200);
    let reply = post(addr, JSON, Some(&token), b"[]").await;
    assert_eq!(reply.status, 404);
    // The HTTP connections uncount as their tasks end, the session at once.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.hub().stats().connections != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.hub().stats().connections, 0);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn over_capacity_gets_try_again_later() {
    let server = server(ServerConfig::default().max_connections(1)).await;
    let addr = server.local_addr();
    let _token = open(addr, JSON, "feed").await;
    let reply = post(addr, JSON, None, &json_body(&[&hello("feed")])).await;
    let frames = reply.frames();
    assert_eq!(kinds(&frames), ["close"]);
    assert_eq!(frames[0]["close"]["code"], 1013);
    assert!(reply.header("eventwire-session").is_none());
    server.shutdown(Duration::from_secs(1)).await;

    // A held request does not count beside its session.
    let server = self::server(ServerConfig::default().max_connections(2)).await;
    let addr = server.local_addr();
    let token = open(addr, JSON, "feed").await;
    let held = tokio::spawn(async move { post(addr, JSON, Some(&token), b"[]").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _second = open(addr, JSON, "feed").await;
    let reply = post(addr, JSON, None, &json_body(&[&hello("feed")])).await;
    assert_eq!(kinds(&reply.frames()), ["close"]);
    server.shutdown(Duration::from_secs(1)).await;
    assert_eq!(kinds(&held.await.unwrap().frames()), ["close"]);
}

#[tokio::test]
async fn shutdown_releases_held_requests_with_going_away() {
    let server = server(ServerConfig::default()).await;
    let addr = server.local_addr();
    let token = open(addr, JSON, "feed").await;
    let held = tokio::spawn(async move { post(addr, JSON, Some(&token), b"[]").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.shutdown(Duration::from_secs(2)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let frames = held.await.unwrap().frames();
    assert_eq!(kinds(&frames), ["close"]);
    assert_eq!(frames[0]["close"]["code"], 1001);
    assert_eq!(frames[0]["close"]["retry_after_ms"], 2000);
}

/// A polling client's successive requests share one kept-alive connection, which does not
/// count toward the connection limit beside its session; at shutdown the held request returns
/// the close frame and the connection closes.
#[tokio::test]
async fn successive_requests_share_a_kept_alive_connection() {
    let server = server(ServerConfig::default().max_connections(1)).await;
    let addr = server.local_addr();
    let request =
        |token: Option<&str>, body: &[u8]| post_request("/eventwire/poll", JSON, token, body, true);
    let mut conn = Conn::open(addr).await;
    let reply = conn
        .send(&request(None, &json_body(&[&hello("feed")])))
        .await;
    assert_eq!(kinds(&reply.frames()), ["welcome", "subscribed"]);
    assert_eq!(reply.header("connection"), None);
    let token = reply.token();
    let publish =
        r#"{"publish":{"room":"commands","id":1,"kind":"agent.pause","payload":{"a":1}}}"#;
    let reply = conn
        .send(&request(Some(&token), &json_body(&[publish])))
        .await;
    assert_eq!(kinds(&reply.frames()), ["publish_ack"]);

    // The session is the one connection the limit allows: another is told to come back later.
    let refused = post(addr, JSON, None, &json_body(&[&hello("feed")])).await;
    let frames = refused.frames();
    assert_eq!(kinds(&frames), ["close"]);
    assert_eq!(frames[0]["close"]["code"], 1013);

    // A held request on the same connection gets the event.
    let held = request(Some(&token), b"[]");
    conn.socket.write_all(&held).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.hub().emit("feed", "tick", &1).unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), conn.reply(false))
        .await
        .expect("the held request returns with the event");
    assert_eq!(kinds(&reply.frames()), ["batch"]);

    // The next request: the session's next number (the same bytes again would be a request
    // the server has already seen, answered at once).
    let held = request(Some(&token), b"[]");
    conn.socket.write_all(&held).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stop = tokio::spawn(server.shutdown(Duration::from_secs(2)));
    let reply = tokio::time::timeout(Duration::from_secs(5), conn.reply(false))
        .await
        .expect("the held request returns at shutdown");
    let frames = reply.frames();
    assert_eq!(kinds(&frames), ["close"]);
    assert_eq!(frames[0]["close"]["code"], 1001);
    assert_eq!(frames[0]["close"]["retry_after_ms"], 2000);
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    assert_eq!(closed, Ok(true), "the connection outlived shutdown");
    stop.await.unwrap();
}

#[tokio::test]
async fn websocket_and_polling_share_the_port() {
    let server = server(ServerConfig::default()).await;
    let addr = server.local_addr();
    let token = open(addr, JSON, "feed").await;

    let mut client = Client::connect(&format!("ws://{addr}"), ClientOptions::default()).unwrap();
    client.subscribe("feed").await.unwrap();
    let subscribed = tokio::time::timeout(Duration::from_secs(5), async {
        while !matches!(client.next().await, Some(Event::Subscribed { .. })) {}
    });
    subscribed.await.expect("the WebSocket client subscribed");

    let held = tokio::spawn(async move { post(addr, JSON, Some(&token), b"[]").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.hub().emit("feed", "tick", &1).unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .unwrap();
    assert!(matches!(event, Some(Event::Event { ref kind, .. }) if kind == "tick"));
    assert_eq!(kinds(&held.await.unwrap().frames()), ["batch"]);
    client.close().await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_poll_route() {
    use eventwire_tokio::axum::EventwireService;

    let hub = Hub::new(Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare(["feed", "tasks", "commands", "agents"])
        .unwrap();
    let eventwire = EventwireService::new(hub.clone(), ServerConfig::default());
    let app = axum::Router::new().route("/poll", eventwire.poll_route());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(async move {
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).await.unwrap();
    });

    let reply = post_to(addr, "/poll", JSON, None, &json_body(&[&hello("feed")])).await;
    assert_eq!(kinds(&reply.frames()), ["welcome", "subscribed"]);
    let token = reply.token();
    let held = tokio::spawn(async move { post_to(addr, "/poll", BINARY, Some(&token), b"").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    hub.emit("feed", "tick", &1).unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("the held request returns with the event")
        .unwrap();
    assert_eq!(reply.header("content-type"), Some(BINARY));
    assert_eq!(kinds(&reply.frames()), ["batch"]);

    let started = Instant::now();
    let reply = raw(
        addr,
        b"POST /poll HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 413);
    assert!(started.elapsed() < Duration::from_secs(2));
    let reply = post_to(addr, "/poll", JSON, Some("nope"), b"[]").await;
    assert_eq!(reply.status, 404);

    eventwire.shutdown(Duration::from_secs(1)).await;
    serving.abort();
}
