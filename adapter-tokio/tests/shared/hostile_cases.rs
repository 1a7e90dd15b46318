//! The hostile-input cases every server adapter must pass, with their close codes: written
//! once, run against the tokio server (`adapter-tokio/tests/hostile.rs`) and the blocking one
//! (`adapter-sync/tests/hostile.rs`, which includes this file by path). The hostile peers are
//! tokio-tungstenite clients on 127.0.0.1; each adapter's test implements [`Target`] to start
//! its server with the limits a case asks for.

use std::future::Future;
use std::time::Duration;

use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_core::codec::binary;
use eventwire_core::frame::Seq;
use eventwire_core::frame::{Frame, Hello, Ping, Subscribe, PROTOCOL_VERSION};
use eventwire_core::server::ServerConfig as SessionConfig;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The only Origin allowed when a case restricts Origins.
pub const ALLOWED_ORIGIN: &str = "https://dash.example";
/// The only token accepted when a case authenticates.
pub const TOKEN: &str = "letmein";
/// The room refused when a case authorises rooms.
pub const FORBIDDEN_ROOM: &str = "admin";
/// The rooms each target's application declares at start (clients cannot create rooms), the
/// forbidden one among them, so that refusing it is the room hook's doing.
pub const DECLARED: [&str; 11] = [
    FORBIDDEN_ROOM,
    "room-0",
    "room-1",
    "room-2",
    "room-3",
    "room-4",
    "room-5",
    "room-6",
    "room-7",
    "room-8",
    "room-9",
];

/// The limits and hooks a case needs, on top of [`session`]'s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Allow only [`ALLOWED_ORIGIN`].
    pub origins: bool,
    /// Accept only hellos carrying [`TOKEN`]; refuse the rest with `UNAUTHORIZED`.
    pub auth: bool,
    /// Refuse joins of [`FORBIDDEN_ROOM`].
    pub forbid_room: bool,
    /// The connection limit, if any.
    pub max_connections: Option<usize>,
}

/// The session limits of every case: 4 KiB frames, 3 subscriptions, a 300 ms hello timeout.
pub fn session() -> SessionConfig {
    SessionConfig::new()
        .max_frame(4096)
        .max_subscriptions(3)
        .handshake_timeout(Duration::from_millis(300))
}

/// A server adapter under test.
pub trait Target: Sized + Send + 'static {
    /// Starts a server on 127.0.0.1:0 with [`session`] and `limits`; returns it and its URL.
    fn start(limits: Limits) -> impl Future<Output = (Self, String)> + Send;
    /// Shuts it down gracefully (close 1001 with `retry_after`), returning once it is down.
    fn shutdown(self, retry_after: Duration) -> impl Future<Output = ()> + Send + 'static;
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const LIMIT: Duration = Duration::from_secs(10);

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

/// Garbage, a truncated hello, an unknown frame kind (ignored), text on the binary subprotocol.
pub async fn malformed_truncated_and_unknown_frames<T: Target>() {
    let (server, url) = T::start(Limits::default()).await;
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

/// A message over the frame limit: close 1009.
pub async fn oversize_message_gets_1009<T: Target>() {
    let (server, url) = T::start(Limits::default()).await;
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

/// A version of 0, a foreign Origin (403), a wrong token (4001), silence after the upgrade (4000).
pub async fn wrong_version_bad_origin_failed_auth_slow_handshake<T: Target>() {
    let limits = Limits {
        origins: true,
        auth: true,
        ..Limits::default()
    };
    let (server, url) = T::start(limits).await;

    let mut ws = connect(&url, &[]).await.unwrap();
    ws.send(hello(Some(TOKEN), 0)).await.unwrap();
    assert_eq!(
        closed_with(&mut ws).await.1,
        Some(CloseCode::UNSUPPORTED_VERSION.0)
    );

    // Cross-site WebSocket hijacking: a page from another origin is refused at the upgrade.
    let refused = connect(&url, &[("origin", "https://evil.example")]).await;
    assert!(refused.is_err(), "foreign origin accepted");
    let mut ok = connect(&url, &[("origin", ALLOWED_ORIGIN)]).await.unwrap();
    ok.send(hello(Some(TOKEN), 1)).await.unwrap();
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

/// With no origin configured, only the server's own pages connect: another site's page is
/// refused with 403 (before this default, any site could open a socket and read every room); a
/// page of the server's own origin and a client that sends no `Origin` are served.
pub async fn only_the_servers_own_pages_by_default<T: Target>() {
    let (server, url) = T::start(Limits::default()).await;
    let refused = connect(&url, &[("origin", "https://evil.example")]).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 403),
        "{refused:?}"
    );
    let own = format!("http://{}", url.trim_start_matches("ws://"));
    let mut page = connect(&url, &[("origin", own.as_str())]).await.unwrap();
    page.send(hello(None, PROTOCOL_VERSION)).await.unwrap();
    until(&mut page, |f| matches!(f, Frame::Welcome(_))).await;
    let mut tool = healthy(&url).await;
    still_served(&mut tool).await;
    server.shutdown(Duration::from_secs(1)).await;
}

/// A refused room (an error frame), then more joins than the subscription limit.
pub async fn forbidden_room_and_subscription_flood<T: Target>() {
    let limits = Limits {
        forbid_room: true,
        ..Limits::default()
    };
    let (server, url) = T::start(limits).await;
    let mut ws = healthy(&url).await;
    ws.send(bin(&Frame::Subscribe(Subscribe {
        room: FORBIDDEN_ROOM,
        from: None,
    })))
    .await
    .unwrap();
    until(&mut ws, |f| {
        matches!(f, Frame::Error(e) if e.code == ErrorCode::FORBIDDEN_ROOM && e.room == Some(FORBIDDEN_ROOM))
    })
    .await;
    // Rooms nobody created cannot be conjured by subscribing: each is refused, and none counts
    // against the subscriptions.
    for i in 0..20 {
        let room = format!("junk-{i}");
        ws.send(bin(&Frame::Subscribe(Subscribe {
            room: &room,
            from: None,
        })))
        .await
        .unwrap();
        until(&mut ws, |f| {
            matches!(f, Frame::Error(e) if e.code == ErrorCode::NO_SUCH_ROOM && e.room == Some(room.as_str()))
        })
        .await;
    }
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

/// Graceful shutdown: close 1001 with the retry-after hint.
pub async fn shutdown_tells_clients_when_to_come_back<T: Target>() {
    let (server, url) = T::start(Limits::default()).await;
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

/// Over the connection limit: close 1013.
pub async fn connection_limit_says_try_again_later<T: Target>() {
    let limits = Limits {
        max_connections: Some(1),
        ..Limits::default()
    };
    let (server, url) = T::start(limits).await;
    let mut first = healthy(&url).await;
    let mut second = connect(&url, &[]).await.unwrap();
    assert_eq!(
        closed_with(&mut second).await.1,
        Some(CloseCode::TRY_AGAIN_LATER.0)
    );
    still_served(&mut first).await;
    server.shutdown(Duration::from_secs(1)).await;
}
