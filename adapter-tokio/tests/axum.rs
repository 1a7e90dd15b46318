//! eventwire mounted in an axum app on 127.0.0.1, beside an ordinary route: both codecs deliver
//! in order, the ordinary route keeps answering, the upgrade is checked like the standalone
//! server's, and shutdown tells clients when to come back.
#![cfg(feature = "axum")]

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use eventwire_core::code::CloseCode;
use eventwire_core::codec::{binary, json, Codec};
use eventwire_core::frame::Seq;
use eventwire_core::frame::{Frame, Hello, Ping, PROTOCOL_VERSION};
use eventwire_core::server::ServerConfig as SessionConfig;
use eventwire_tokio::axum::EventwireService;
use eventwire_tokio::{Client, ClientOptions, Event, Hub, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const LIMIT: Duration = Duration::from_secs(10);

struct App {
    eventwire: EventwireService,
    hub: Hub,
    addr: SocketAddr,
    serving: tokio::task::JoinHandle<()>,
}

impl App {
    /// An axum app serving `/health` and eventwire at `/ws`.
    async fn start(config: ServerConfig) -> App {
        let hub = Hub::with_epoch(7, Default::default());
        // The application's rooms: clients cannot create rooms.
        hub.declare(["room", "feed", "agents"]).unwrap();
        let eventwire = EventwireService::new(hub.clone(), config);
        let app = axum::Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/ws", eventwire.route())
            .route("/eventwire/poll", eventwire.poll_route())
            .route("/eventwire.js", EventwireService::client_route());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.unwrap();
        });
        App {
            eventwire,
            hub,
            addr,
            serving,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// A hand-written HTTP/1.1 GET: the status and the body.
    async fn get(&self, path: &str) -> (u16, String) {
        let (status, _, body) = self.request("GET", path, "").await;
        (status, body)
    }

    /// A hand-written HTTP/1.1 request with `headers` (each ending in CRLF): the status, the
    /// head and the body.
    async fn request(&self, method: &str, path: &str, headers: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{headers}\r\n",
            self.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(LIMIT, stream.read_to_end(&mut response))
            .await
            .expect("answer in time")
            .unwrap();
        let response = String::from_utf8(response).unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let (head, body) = response
            .split_once("\r\n\r\n")
            .map(|(h, b)| (h.to_ascii_lowercase(), b.to_owned()))
            .unwrap_or_default();
        (status, head, body)
    }

    async fn stop(self) {
        self.serving.abort();
    }
}

fn config() -> ServerConfig {
    ServerConfig::default().session(
        SessionConfig::new()
            .max_frame(4096)
            .heartbeat(Duration::from_millis(500))
            .intervals(Duration::from_millis(5), Duration::from_millis(20)),
    )
}

/// Opens a raw WebSocket with these headers; `Err` carries the HTTP status of a refusal.
async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<(Ws, Option<String>), u16> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    match tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect in time")
    {
        Ok((ws, response)) => {
            let protocol = response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((ws, protocol))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

fn encode(codec: Codec, frame: &Frame<'_>) -> Message {
    let mut out = Vec::new();
    match codec {
        Codec::Json => {
            json::encode_into(frame, &mut out).unwrap();
            Message::Text(String::from_utf8(out).unwrap().into())
        }
        _ => {
            binary::encode_into(frame, &mut out).unwrap();
            Message::Binary(out.into())
        }
    }
}

fn hello(codec: Codec) -> Message {
    encode(
        codec,
        &Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            client_id: 9,
            token: None,
            max_frame: 65536,
            max_batch: 50,
            rooms: Seq::empty(),
        }),
    )
}

/// Reads until a frame matches, decoding with `codec` (and checking the message type).
async fn until(ws: &mut Ws, codec: Codec, mut pred: impl FnMut(&Frame<'_>) -> bool) {
    loop {
        let msg = tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("frame in time");
        let frame_matches = match (&msg, codec) {
            (Some(Ok(Message::Binary(b))), Codec::Binary) => {
                pred(&binary::decode(b, 1 << 20).expect("server frames decode"))
            }
            (Some(Ok(Message::Text(t))), Codec::Json) => {
                pred(&json::decode(t.as_bytes(), 1 << 20).expect("server frames decode"))
            }
            (Some(Ok(Message::Ping(_) | Message::Pong(_))), _) => false,
            other => panic!("unexpected: {other:?}"),
        };
        if frame_matches {
            return;
        }
    }
}

/// Reads until the server closes: the eventwire close frame's code and retry hint, and the
/// WebSocket close code.
async fn closed_with(ws: &mut Ws) -> (Option<(u16, Option<u32>)>, Option<u16>) {
    let mut close = None;
    loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("server answers in time")
        {
            Some(Ok(Message::Binary(b))) => {
                if let Ok(Frame::Close(c)) = binary::decode(&b, 1 << 20) {
                    close = Some((c.code.0, c.retry_after_ms));
                }
            }
            Some(Ok(Message::Close(c))) => return (close, c.map(|c| u16::from(c.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (close, None),
        }
    }
}

async fn healthy(url: &str) -> Ws {
    let (mut ws, _) = connect(url, &[]).await.unwrap();
    ws.send(hello(Codec::Binary)).await.unwrap();
    until(&mut ws, Codec::Binary, |f| matches!(f, Frame::Welcome(_))).await;
    ws
}

async fn still_served(ws: &mut Ws) {
    ws.send(encode(Codec::Binary, &Frame::Ping(Ping { nonce: 77 })))
        .await
        .unwrap();
    until(
        ws,
        Codec::Binary,
        |f| matches!(f, Frame::Pong(p) if p.nonce == 77),
    )
    .await;
}

#[tokio::test]
async fn both_codecs_deliver_in_order_beside_an_ordinary_route() {
    let app = App::start(config()).await;
    for (i, codec) in [Codec::Binary, Codec::Json].into_iter().enumerate() {
        let options = ClientOptions::new(100 + i as u64).codec(codec);
        let mut client = Client::connect(&app.url(), options).unwrap();
        client.subscribe("room").await.unwrap();
        loop {
            let event = tokio::time::timeout(LIMIT, client.next()).await.unwrap();
            if matches!(event, Some(Event::Subscribed { .. })) {
                break;
            }
        }
        let first = app.hub.room_stats("room").map_or(0, |s| s.head.offset);
        for n in 0..50u32 {
            app.hub
                .emit("room", "test.n", &serde_json::json!({ "n": n }))
                .unwrap();
        }
        // The ordinary route answers while eventwire streams on the same server.
        let (status, body) = app.get("/health").await;
        assert_eq!((status, body.as_str()), (200, "ok"), "{codec:?}");
        let mut seen = Vec::new();
        while seen.len() < 50 {
            match tokio::time::timeout(LIMIT, client.next()).await.unwrap() {
                Some(event @ Event::Event { .. }) => {
                    let Event::Event { position, kind, .. } = &event else {
                        unreachable!()
                    };
                    assert_eq!(kind, "test.n");
                    assert_eq!(position.offset, first + seen.len() as u64 + 1, "{codec:?}");
                    let payload: serde_json::Value = event.json().unwrap().unwrap();
                    seen.push(payload["n"].as_u64().unwrap());
                }
                Some(_) => {}
                None => panic!("client stream ended"),
            }
        }
        assert_eq!(seen, (0..50).collect::<Vec<_>>(), "{codec:?}");
        assert_eq!(app.hub.stats().connections, 1);
        client.close().await;
    }
    app.eventwire.shutdown(Duration::from_millis(100)).await;
    assert_eq!(app.hub.stats().connections, 0);
    app.stop().await;
}

#[tokio::test]
async fn upgrade_checks_origin_and_negotiates_subprotocols() {
    let app = App::start(config().allowed_origins(["https://dash.example"])).await;
    let url = app.url();

    assert_eq!(
        connect(&url, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        connect(&url, &[("sec-websocket-protocol", "chat, superchat")])
            .await
            .err(),
        Some(400)
    );

    // The client's first supported choice wins; JSON frames go in text messages.
    let (mut ws, protocol) = connect(
        &url,
        &[
            ("origin", "https://dash.example"),
            (
                "sec-websocket-protocol",
                "chat, eventwire.v1.json, eventwire.v1",
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(protocol.as_deref(), Some("eventwire.v1.json"));
    ws.send(hello(Codec::Json)).await.unwrap();
    until(&mut ws, Codec::Json, |f| matches!(f, Frame::Welcome(_))).await;

    let (_, protocol) = connect(&url, &[("sec-websocket-protocol", "eventwire.v1")])
        .await
        .unwrap();
    assert_eq!(protocol.as_deref(), Some("eventwire.v1"));

    // Offering nothing gets binary, without a subprotocol in the answer.
    let (mut ws, protocol) = connect(&url, &[]).await.unwrap();
    assert_eq!(protocol, None);
    ws.send(hello(Codec::Binary)).await.unwrap();
    until(&mut ws, Codec::Binary, |f| matches!(f, Frame::Welcome(_))).await;

    // Not an upgrade at all: axum refuses it, and the app's other routes are unaffected.
    assert_ne!(app.get("/ws").await.0, 101);
    assert_eq!(app.get("/health").await.0, 200);
    app.eventwire.shutdown(Duration::from_millis(100)).await;
    app.stop().await;
}

#[tokio::test]
async fn oversize_and_wrong_type_messages_get_their_close_codes() {
    let app = App::start(config()).await;
    let mut good = healthy(&app.url()).await;

    // Larger than `max_frame`: tungstenite inside axum refuses it, and it is recognised as such
    // (not a mere protocol error). The WebSocket close may be lost: the server closes with the
    // rest of the message unread, so the client's socket can be reset before it reads it.
    let mut ws = healthy(&app.url()).await;
    ws.send(Message::Binary(vec![9u8; 100_000].into()))
        .await
        .ok();
    let (frame, ws_code) = closed_with(&mut ws).await;
    assert_eq!(frame, Some((CloseCode::MESSAGE_TOO_BIG.0, None)));
    assert!(matches!(ws_code, None | Some(1009)), "{ws_code:?}");

    // Text on the binary subprotocol.
    let mut ws = healthy(&app.url()).await;
    ws.send(Message::Text("{\"ping\":{\"nonce\":1}}".into()))
        .await
        .unwrap();
    assert_eq!(
        closed_with(&mut ws).await.1,
        Some(CloseCode::UNSUPPORTED_DATA.0)
    );

    still_served(&mut good).await;
    app.eventwire.shutdown(Duration::from_millis(100)).await;
    app.stop().await;
}

#[tokio::test]
async fn connection_limit_says_try_again_later() {
    let app = App::start(config().max_connections(1)).await;
    let mut first = healthy(&app.url()).await;
    let (mut second, _) = connect(&app.url(), &[]).await.unwrap();
    assert_eq!(
        closed_with(&mut second).await.1,
        Some(CloseCode::TRY_AGAIN_LATER.0)
    );
    still_served(&mut first).await;
    // The refused connection is uncounted, so another fits once the first is gone.
    drop(first);
    tokio::time::timeout(LIMIT, async {
        while app.hub.stats().connections > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("connections uncounted");
    let mut third = healthy(&app.url()).await;
    still_served(&mut third).await;
    app.eventwire.shutdown(Duration::from_millis(100)).await;
    app.stop().await;
}

#[tokio::test]
async fn shutdown_tells_clients_when_to_come_back() {
    let app = App::start(config()).await;
    let mut ws = healthy(&app.url()).await;
    let eventwire = app.eventwire.clone();
    let stop = tokio::spawn(async move { eventwire.shutdown(Duration::from_millis(1500)).await });
    assert_eq!(
        closed_with(&mut ws).await,
        (
            Some((CloseCode::GOING_AWAY.0, Some(1500))),
            Some(CloseCode::GOING_AWAY.0)
        )
    );
    tokio::time::timeout(LIMIT, stop).await.unwrap().unwrap();
    assert_eq!(app.hub.stats().connections, 0);

    // New upgrades are refused with a hint; the rest of the app keeps serving.
    assert_eq!(connect(&app.url(), &[]).await.err(), Some(503));
    assert_eq!(app.get("/health").await, (200, "ok".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn serves_the_browser_client_and_answers_polling_preflights() {
    let config = ServerConfig::default().allowed_origins(["http://page.test"]);
    let app = App::start(config).await;
    let (status, head, body) = app.request("GET", "/eventwire.js", "").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert_eq!(body, eventwire_tokio::js::CLIENT_JS);

    let asks = "Access-Control-Request-Method: POST\r\n\
                Access-Control-Request-Headers: content-type, eventwire-session, eventwire-seq\r\n";
    let allowed = format!("Origin: http://page.test\r\n{asks}");
    let (status, head, _) = app.request("OPTIONS", "/eventwire/poll", &allowed).await;
    assert_eq!(status, 204, "{head}");
    assert!(
        head.contains("access-control-allow-origin: http://page.test"),
        "{head}"
    );
    assert!(head
        .contains("access-control-allow-headers: content-type, eventwire-session, eventwire-seq"));

    let refused = format!("Origin: http://other.test\r\n{asks}");
    let (status, head, _) = app.request("OPTIONS", "/eventwire/poll", &refused).await;
    assert_eq!(status, 403, "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    app.stop().await;
}

/// The polling route answers as the standalone server does (one code path): refusals are plain
/// text and not cached, a refused origin gets no CORS header, a malformed token is an unknown
/// session, and a body that does not arrive within the request time gets 408.
#[tokio::test]
async fn polling_refusals_match_the_standalone_server() {
    let config = ServerConfig::default()
        .allowed_origins(["http://page.test"])
        .upgrade_timeout(Duration::from_millis(300));
    let app = App::start(config).await;
    let json = "Content-Type: application/json\r\n";

    let evil = format!("{json}Content-Length: 2\r\nOrigin: http://other.test\r\n");
    let (status, head, body) = app.request("POST", "/eventwire/poll", &evil).await;
    assert_eq!(
        (status, body.as_str()),
        (403, "origin not allowed"),
        "{head}"
    );
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");

    let bad_token = format!("{json}Content-Length: 2\r\nEventwire-Session: not-a-token\r\n");
    let (status, head, body) = app.request("POST", "/eventwire/poll", &bad_token).await;
    assert_eq!((status, body.as_str()), (404, "unknown session"), "{head}");
    assert!(head.contains("content-type: text/plain"), "{head}");

    let stalled = format!("{json}Content-Length: 10\r\nOrigin: http://page.test\r\n");
    let (status, head, body) = app.request("POST", "/eventwire/poll", &stalled).await;
    assert_eq!((status, body.as_str()), (408, "body too slow"), "{head}");
    assert!(
        head.contains("access-control-allow-origin: http://page.test"),
        "{head}"
    );
    app.stop().await;
}
