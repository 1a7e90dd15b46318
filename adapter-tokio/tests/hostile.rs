//! Hostile input against the tokio server over real WebSocket connections on 127.0.0.1: each case
//! gets its documented close code or error, the server keeps serving everyone else, and nothing
//! panics.

use std::time::Duration;

use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_core::codec::binary;
use eventwire_core::frame::{Frame, Hello, Ping, Subscribe, PROTOCOL_VERSION};
use eventwire_core::seq::Seq;
use eventwire_core::server::ServerConfig as SessionConfig;
use eventwire_tokio::{Hub, Server, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const LIMIT: Duration = Duration::from_secs(10);

async fn start(config: ServerConfig) -> (Server, String) {
    let hub = Hub::with_epoch(7, Default::default());
    let server = Server::bind("127.0.0.1:0", hub, config)
        .await
        .expect("bind");
    let url = format!("ws://{}", server.local_addr());
    (server, url)
}

fn config() -> ServerConfig {
    ServerConfig::default().session(
        SessionConfig::new()
            .max_frame(4096)
            .max_subscriptions(3)
            .handshake_timeout(Duration::from_millis(300)),
    )
}

async fn connect(
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "eventwire.v1".parse().unwrap());
    for (k, v) in headers {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    tokio::time::timeout(LIMIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect in time")
        .map(|(ws, _)| ws)
}

fn bin(frame: &Frame<'_>) -> Message {
    let mut out = Vec::new();
    binary::encode_into(frame, &mut out).unwrap();
    Message::Binary(out.into())
}

fn hello(token: Option<&str>, version: u16) -> Message {
    bin(&Frame::Hello(Hello {
        version,
        client_id: 9,
        token,
        max_frame: 65536,
        max_batch: 50,
        rooms: Seq::empty(),
    }))
}

/// Reads until the server closes; returns the eventwire close code (from its close frame) and the
/// WebSocket close code.
async fn closed_with(ws: &mut Ws) -> (Option<u16>, Option<u16>) {
    let mut frame_code = None;
    loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("server answers in time")
        {
            Some(Ok(Message::Binary(b))) => {
                if let Ok(Frame::Close(c)) = binary::decode(&b, 1 << 20) {
                    frame_code = Some(c.code.0);
                }
            }
            Some(Ok(Message::Close(c))) => return (frame_code, c.map(|c| u16::from(c.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (frame_code, None),
        }
    }
}

/// Reads frames until one matches.
async fn until(ws: &mut Ws, mut pred: impl FnMut(&Frame<'_>) -> bool) {
    loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("frame in time")
        {
            Some(Ok(Message::Binary(b))) => {
                let frame = binary::decode(&b, 1 << 20).expect("server frames decode");
                if pred(&frame) {
                    return;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// A well-behaved client that must keep being served while others misbehave.
async fn healthy(url: &str) -> Ws {
    let mut ws = connect(url, &[]).await.unwrap();
    ws.send(hello(None, PROTOCOL_VERSION)).await.unwrap();
    until(&mut ws, |f| matches!(f, Frame::Welcome(_))).await;
    ws
}

async fn still_served(ws: &mut Ws) {
    ws.send(bin(&Frame::Ping(Ping { nonce: 77 })))
        .await
        .unwrap();
    until(ws, |f| matches!(f, Frame::Pong(p) if p.nonce == 77)).await;
}

#[tokio::test]
async fn malformed_truncated_and_unknown_frames() {
    let (server, url) = start(config()).await;
    let mut good = healthy(&url).await;

    // Garbage.
    let mut ws = connect(&url, &[]).await.unwrap();
    ws.send(Message::Binary(vec![0xff, 0xff, 0xff].into()))
        .await
        .unwrap();
    assert_eq!(closed_with(&mut ws).await, (Some(1002), Some(1002)));

    // A hello cut short.
    let mut ws = connect(&url, &[]).await.unwrap();
    let Message::Binary(full) = hello(None, 1) else {
        unreachable!()
    };
    ws.send(Message::Binary(full.slice(..full.len() - 3)))
        .await
        .unwrap();
    assert_eq!(closed_with(&mut ws).await.1, Some(1002));

    // An unknown frame kind is ignored: the connection goes on.
    let mut ws = healthy(&url).await;
    ws.send(Message::Binary(vec![42, 1, 2, 3].into()))
        .await
        .unwrap();
    still_served(&mut ws).await;

    // Text on the binary subprotocol.
    ws.send(Message::Text("{\"ping\":{\"nonce\":1}}".into()))
        .await
        .unwrap();
    assert_eq!(
        closed_with(&mut ws).await.1,
        Some(CloseCode::UNSUPPORTED_DATA.0)
    );

    still_served(&mut good).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn oversize_message_gets_1009() {
    let (server, url) = start(config()).await;
    let mut good = healthy(&url).await;
    let mut ws = healthy(&url).await;
    ws.send(Message::Binary(vec![9u8; 100_000].into()))
        .await
        .ok();
    assert_eq!(
        closed_with(&mut ws).await.1,
        Some(CloseCode::MESSAGE_TOO_BIG.0)
    );
    still_served(&mut good).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn wrong_version_bad_origin_failed_auth_slow_handshake() {
    let config = config()
        .allowed_origins(["https://dash.example"])
        .auth(|req| async move {
            if req.token.as_deref() == Some("letmein") {
                Ok(())
            } else {
                Err(CloseCode::UNAUTHORIZED)
            }
        });
    let (server, url) = start(config).await;

    let mut ws = connect(&url, &[]).await.unwrap();
    ws.send(hello(Some("letmein"), 0)).await.unwrap();
    assert_eq!(
        closed_with(&mut ws).await.1,
        Some(CloseCode::UNSUPPORTED_VERSION.0)
    );

    // Cross-site WebSocket hijacking: a page from another origin is refused at the upgrade.
    let refused = connect(&url, &[("origin", "https://evil.example")]).await;
    assert!(refused.is_err(), "foreign origin accepted");
    let mut ok = connect(&url, &[("origin", "https://dash.example")])
        .await
        .unwrap();
    ok.send(hello(Some("letmein"), 1)).await.unwrap();
    until(&mut ok, |f| matches!(f, Frame::Welcome(_))).await;

    let mut ws = connect(&url, &[]).await.unwrap();
    ws.send(hello(Some("wrong"), 1)).await.unwrap();
    assert_eq!(closed_with(&mut ws).await, (Some(4001), Some(4001)));

    // Says nothing after the upgrade.
    let mut ws = connect(&url, &[]).await.unwrap();
    assert_eq!(
        closed_with(&mut ws).await.1,
        Some(CloseCode::HANDSHAKE_TIMEOUT.0)
    );

    still_served(&mut ok).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn forbidden_room_and_subscription_flood() {
    let config = config().authorize(|_, room| room != "admin");
    let (server, url) = start(config).await;
    let mut ws = healthy(&url).await;
    ws.send(bin(&Frame::Subscribe(Subscribe {
        room: "admin",
        from: None,
    })))
    .await
    .unwrap();
    until(&mut ws, |f| {
        matches!(f, Frame::Error(e) if e.code == ErrorCode::FORBIDDEN_ROOM && e.room == Some("admin"))
    })
    .await;
    for i in 0..10 {
        let room = format!("room-{i}");
        ws.send(bin(&Frame::Subscribe(Subscribe {
            room: &room,
            from: None,
        })))
        .await
        .unwrap();
    }
    until(
        &mut ws,
        |f| matches!(f, Frame::Error(e) if e.code == ErrorCode::TOO_MANY_SUBSCRIPTIONS),
    )
    .await;
    still_served(&mut ws).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn shutdown_tells_clients_when_to_come_back() {
    let (server, url) = start(config()).await;
    let mut ws = healthy(&url).await;
    let stop = tokio::spawn(server.shutdown(Duration::from_millis(1500)));
    let mut retry = None;
    loop {
        match tokio::time::timeout(LIMIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => {
                if let Ok(Frame::Close(c)) = binary::decode(&b, 1 << 20) {
                    assert_eq!(c.code, CloseCode::GOING_AWAY);
                    retry = c.retry_after_ms;
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    assert_eq!(retry, Some(1500));
    stop.await.unwrap();
}

#[tokio::test]
async fn connection_limit_says_try_again_later() {
    let (server, url) = start(config().max_connections(1)).await;
    let mut first = healthy(&url).await;
    let mut second = connect(&url, &[]).await.unwrap();
    assert_eq!(
        closed_with(&mut second).await.1,
        Some(CloseCode::TRY_AGAIN_LATER.0)
    );
    still_served(&mut first).await;
    server.shutdown(Duration::from_secs(1)).await;
}
