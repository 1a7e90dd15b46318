//! The standalone server's HTTP front on real sockets: routes over kept-alive connections,
//! `HEAD`, the browser client, CORS for long-polling from other origins, refusing upgrades and
//! the RFC 6455 checks, the bounds on heads, bodies and responses (413, 408, the header read and
//! write timeouts), shutdown, injected connection cuts, and the close a browser sends
//! (PROTOCOL.md 1 and 1.4).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventwire_tokio::{HttpResponse, Hub, Server, ServerConfig, MAX_ROUTE_BODY};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

#[path = "shared/raw_http.rs"]
mod raw_http;
use raw_http::{kinds, post, post_request, raw, Conn, JSON};

const HELLO: &str = r#"{"hello":{"version":1,"client_id":7,"token":null,"max_frame":65536,"max_batch":50,"rooms":[{"room":"tasks","from":null}]}}"#;

async fn serve(config: ServerConfig) -> (Server, Hub) {
    let hub = Hub::new(Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare(["tasks", "feed", "agents", "commands"])
        .unwrap();
    let server = Server::bind("127.0.0.1:0", hub.clone(), config)
        .await
        .unwrap();
    (server, hub)
}

/// Waits (bounded) until the hub counts `n` open connections.
async fn connections(hub: &Hub, n: u64) {
    for _ in 0..200 {
        if hub.stats().connections == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("connections stayed at {}, not {n}", hub.stats().connections);
}

fn poll_request(origin: Option<&str>, body: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /eventwire/poll HTTP/1.1\r\nHost: test\r\nContent-Type: {JSON}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request.into_bytes()
}

#[tokio::test]
async fn routes_answer_by_exact_path_and_others_get_404() {
    let config = ServerConfig::default()
        .route("/health", |req| {
            HttpResponse::new(200, "text/plain", format!("{} {}", req.method, req.path))
        })
        .route("/echo", |req| {
            let query = req.query.clone().unwrap_or_default();
            let mut body = query.into_bytes();
            body.extend_from_slice(&req.body);
            HttpResponse::new(201, "application/octet-stream", body).header("X-Seen", "yes")
        });
    let (server, _hub) = serve(config).await;
    let addr = server.local_addr();

    // One kept-alive connection carries several requests, until one asks to close it.
    let mut conn = Conn::open(addr).await;
    let got = conn.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!((got.status, &got.body[..]), (200, &b"GET /health"[..]));
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(got.header("connection"), None);

    let got = conn
        .send(b"POST /echo?a=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .await;
    assert_eq!((got.status, &got.body[..]), (201, &b"a=1hello"[..]));
    assert_eq!(got.header("x-seen"), Some("yes"));

    let got = conn
        .send(b"GET /health?x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!((got.status, &got.body[..]), (200, &b"GET /health"[..]));
    assert_eq!(got.header("connection"), Some("close"));
    assert!(conn.closed().await, "Connection: close was not honoured");

    // A body above the limit is refused from its head, before any of it is read.
    let big = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        MAX_ROUTE_BODY + 1
    );
    assert_eq!(raw(addr, big.as_bytes()).await.status, 413);

    for path in ["/nothing", "/health/", "/healthz"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(raw(addr, request.as_bytes()).await.status, 404, "{path}");
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_browser_client_is_served_where_asked() {
    let (server, _hub) = serve(ServerConfig::default().serve_client("/static/eventwire.js")).await;
    let addr = server.local_addr();
    let js = raw(
        addr,
        b"GET /static/eventwire.js HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .await;
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some(eventwire_tokio::js::JS_CONTENT_TYPE)
    );
    // Cross-origin pages import it as a module, which needs CORS.
    assert_eq!(js.header("access-control-allow-origin"), Some("*"));
    assert_eq!(js.body, eventwire_tokio::js::CLIENT_JS.as_bytes());
    assert!(String::from_utf8_lossy(&js.body).contains("export class Client"));

    // HEAD gets the head GET would (its Content-Length too) and no body: the next reply on
    // the same connection reads right.
    let mut conn = Conn::open(addr).await;
    let head = conn
        .send(b"HEAD /static/eventwire.d.ts HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(head.status, 200);
    let length = eventwire_tokio::js::CLIENT_DTS.len().to_string();
    assert_eq!(head.header("content-length"), Some(length.as_str()));
    assert_eq!(
        head.header("content-type"),
        Some(eventwire_tokio::js::DTS_CONTENT_TYPE)
    );
    let dts = conn
        .send(b"GET /static/eventwire.d.ts HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    assert_eq!(dts.status, 200);
    assert_eq!(dts.body, eventwire_tokio::js::CLIENT_DTS.as_bytes());

    let post = raw(
        addr,
        b"POST /static/eventwire.js HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!((post.status, post.header("allow")), (405, Some("GET")));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn polling_from_an_allowed_origin_passes_cors() {
    let config = ServerConfig::default().allowed_origins(["http://127.0.0.1:8000"]);
    let (server, _hub) = serve(config).await;
    let addr = server.local_addr();

    // The preflight of an allowed origin.
    let preflight = raw(
        addr,
        b"OPTIONS /eventwire/poll HTTP/1.1\r\nHost: t\r\nOrigin: http://127.0.0.1:8000\r\n\
          Access-Control-Request-Method: POST\r\n\
          Access-Control-Request-Headers: content-type, eventwire-session, eventwire-seq\r\n\r\n",
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("http://127.0.0.1:8000")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST")
    );
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for name in ["content-type", "eventwire-session", "eventwire-seq"] {
        assert!(allowed.contains(name), "{allowed}");
    }

    // The request itself: the token is readable by the page.
    let reply = raw(
        addr,
        &poll_request(Some("http://127.0.0.1:8000"), &format!("[{HELLO}]")),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://127.0.0.1:8000")
    );
    let exposed = reply.header("access-control-expose-headers").unwrap();
    assert!(exposed.contains("Eventwire-Session"), "{exposed}");
    assert_eq!(kinds(&reply.frames())[..2], ["welcome", "subscribed"]);

    // Another origin: refused, with no CORS headers, both the preflight and the request.
    let preflight = raw(
        addr,
        b"OPTIONS /eventwire/poll HTTP/1.1\r\nHost: t\r\nOrigin: http://evil.test\r\n\r\n",
    )
    .await;
    assert_eq!(preflight.status, 403);
    assert_eq!(preflight.header("access-control-allow-origin"), None);
    let reply = raw(
        addr,
        &poll_request(Some("http://evil.test"), &format!("[{HELLO}]")),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("access-control-allow-origin"), None);

    // Same-origin and non-browser requests need no CORS headers.
    let reply = post(addr, JSON, None, format!("[{HELLO}]").as_bytes()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("access-control-allow-origin"), None);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn refused_upgrades_leave_polling_working() {
    let (server, _hub) = serve(ServerConfig::default().websocket(false)).await;
    let addr = server.local_addr();
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "eventwire.v1.json".parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("upgrade not refused: {other:?}"),
    }
    let reply = post(addr, JSON, None, format!("[{HELLO}]").as_bytes()).await;
    assert_eq!(kinds(&reply.frames())[0], "welcome");
    server.shutdown(Duration::from_secs(1)).await;
}

/// A browser cannot send close code 1002: it sends the `close` frame with the code, then closes
/// the WebSocket with 1000 (PROTOCOL.md 1). The server takes the frame's code and ends the
/// session cleanly.
#[tokio::test]
async fn a_browser_close_ends_the_session() {
    let (server, hub) = serve(ServerConfig::default()).await;
    let mut request = format!("ws://{}/", server.local_addr())
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "eventwire.v1.json".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(HELLO)).await.unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().starts_with(r#"{"welcome""#));
    connections(&hub, 1).await;
    ws.send(Message::text(
        r#"{"close":{"code":1002,"retry_after_ms":null,"reason":"bad frame from server"}}"#,
    ))
    .await
    .unwrap();
    ws.send(Message::Close(Some(CloseFrame {
        code: WsCode::Normal,
        reason: "".into(),
    })))
    .await
    .unwrap();
    // The server answers the close and the connection ends; nothing else arrives.
    let mut rest = Vec::new();
    while let Some(Ok(message)) = ws.next().await {
        rest.push(message);
    }
    assert!(
        rest.iter()
            .all(|m| matches!(m, Message::Close(_) | Message::Text(_))),
        "{rest:?}"
    );
    connections(&hub, 0).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn injected_cuts_drop_sockets_and_polling_sessions() {
    let (server, hub) = serve(ServerConfig::default()).await;
    let addr = server.local_addr();
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "eventwire.v1.json".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::text(HELLO)).await.unwrap();
    ws.next().await.unwrap().unwrap();
    let opened = post(addr, JSON, None, format!("[{HELLO}]").as_bytes()).await;
    let token = opened.token();
    connections(&hub, 2).await;

    // Probability 0 cuts nothing.
    assert_eq!(server.drop_connections(0.0), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hub.stats().connections, 2);

    // Probability 1 cuts both: the socket ends with no close frame, the session is forgotten.
    assert_eq!(server.drop_connections(1.0), 1);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut closes = 0;
        while let Some(Ok(message)) = ws.next().await {
            closes += usize::from(matches!(message, Message::Close(_)));
        }
        closes
    })
    .await
    .expect("the cut socket ends");
    assert_eq!(ended, 0, "a cut is a fault, not a close handshake");
    let next = post(addr, JSON, Some(&token), b"[]").await;
    assert_eq!(next.status, 404);
    connections(&hub, 0).await;
    server.shutdown(Duration::from_secs(1)).await;
}

fn health(config: ServerConfig) -> ServerConfig {
    config.route("/health", |_| HttpResponse::new(200, "text/plain", "ok"))
}

/// The upgrade follows RFC 6455: requests that are not proper upgrades are refused (426 naming
/// the version for another version, else 400) and the connection stays HTTP; a proper one, even
/// after other requests on a kept-alive connection, gets 101 with the accept key (the example of
/// section 1.3) and the subprotocol, and the connection then carries WebSocket frames.
#[tokio::test]
async fn upgrades_follow_rfc_6455() {
    let (server, _hub) = serve(health(ServerConfig::default())).await;
    let addr = server.local_addr();
    let upgrade = |method: &str, headers: &str| {
        format!(
            "{method} / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n{headers}\r\n"
        )
        .into_bytes()
    };
    const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    let reply = raw(
        addr,
        &upgrade("GET", &format!("Sec-WebSocket-Version: 8\r\n{KEY}")),
    )
    .await;
    assert_eq!(reply.status, 426);
    assert_eq!(reply.header("sec-websocket-version"), Some("13"));

    let mut conn = Conn::open(addr).await;
    for (method, headers) in [
        ("GET", "Sec-WebSocket-Version: 13\r\n".to_owned()),
        (
            "GET",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n".to_owned(),
        ),
        (
            "POST",
            format!("Sec-WebSocket-Version: 13\r\n{KEY}Content-Length: 0\r\n"),
        ),
    ] {
        let reply = conn.send(&upgrade(method, &headers)).await;
        assert_eq!(reply.status, 400, "{method} {headers}");
    }
    assert_eq!(
        conn.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .status,
        200
    );
    let reply = conn
        .send(&upgrade(
            "GET",
            &format!(
                "Sec-WebSocket-Version: 13\r\n{KEY}Sec-WebSocket-Protocol: eventwire.v1.json\r\n"
            ),
        ))
        .await;
    assert_eq!(reply.status, 101);
    assert_eq!(
        reply.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    assert_eq!(
        reply.header("sec-websocket-protocol"),
        Some("eventwire.v1.json")
    );

    // A masked text frame with the hello (RFC 6455 5.2), answered with the welcome.
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | 126];
    frame.extend_from_slice(&(HELLO.len() as u16).to_be_bytes());
    frame.extend_from_slice(&mask);
    frame.extend(HELLO.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    conn.socket.write_all(&frame).await.unwrap();
    let head = conn.take(2).await;
    assert_eq!(head[0], 0x81, "a final text frame");
    let length = match head[1] {
        126 => u16::from_be_bytes(conn.take(2).await.try_into().unwrap()) as usize,
        n => usize::from(n),
    };
    let welcome = String::from_utf8(conn.take(length).await).unwrap();
    assert!(welcome.starts_with(r#"{"welcome""#), "{welcome}");
    server.shutdown(Duration::from_secs(1)).await;
}

/// A body that arrives slowly and goes over the limit is answered 413 as soon as it does, not
/// after the whole of it (the server holds what arrived, never what a header announced); a
/// polling body announced over the limit is refused at once while its bytes still trickle in.
#[tokio::test]
async fn slow_bodies_over_the_limit_get_413_early() {
    let config = ServerConfig::default().route("/echo", |req| {
        HttpResponse::new(200, "application/octet-stream", req.body.clone())
    });
    let (server, _hub) = serve(config).await;
    let addr = server.local_addr();

    let chunk = 4 * 1024;
    let total = 4 * MAX_ROUTE_BODY;
    let mut chunked = Vec::new();
    for _ in 0..total / chunk {
        chunked.push(format!("{chunk:x}\r\n{}\r\n", "x".repeat(chunk)).into_bytes());
    }
    chunked.push(b"0\r\n\r\n".to_vec());
    let (status, sent) = trickle(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunked,
    )
    .await;
    assert_eq!(status, 413);
    assert!(sent < total, "answered only after {sent} of {total} bytes");

    let pieces = vec![b"[".repeat(1024); 200];
    let started = Instant::now();
    let (status, sent) = trickle(
        addr,
        b"POST /eventwire/poll HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n",
        pieces,
    )
    .await;
    assert_eq!(status, 413);
    assert!(sent < 200 * 1024, "answered only after {sent} bytes");
    assert!(started.elapsed() < Duration::from_secs(2));
    server.shutdown(Duration::from_secs(1)).await;
}

/// Sends `head`, then `pieces` one every 10 ms while reading the reply; its status, and how many
/// body bytes had been sent when it arrived.
async fn trickle(addr: std::net::SocketAddr, head: &[u8], pieces: Vec<Vec<u8>>) -> (u16, usize) {
    let (mut read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
    write.write_all(head).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            for piece in pieces {
                // The server may close once it has answered.
                if write.write_all(&piece).await.is_err() {
                    return;
                }
                sent.fetch_add(piece.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut reply = Vec::new();
    let mut chunk = [0u8; 1024];
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut chunk))
            .await
            .expect("a reply")
            .unwrap();
        assert!(n > 0, "closed without a reply");
        reply.extend_from_slice(&chunk[..n]);
    }
    let at = sent.load(Ordering::SeqCst);
    writer.abort();
    let status = String::from_utf8_lossy(&reply[9..12]).parse().unwrap();
    (status, at)
}

/// A body slower than the upgrade timeout is answered 408 and its connection closed.
#[tokio::test]
async fn a_body_slower_than_the_upgrade_timeout_gets_408() {
    let config = ServerConfig::default().upgrade_timeout(Duration::from_millis(300));
    let (server, hub) = serve(config).await;
    let mut conn = Conn::open(server.local_addr()).await;
    let started = Instant::now();
    let mut request = post_request("/eventwire/poll", JSON, None, HELLO.as_bytes(), true);
    request.truncate(request.len() - 10);
    let reply = conn.send(&request).await;
    assert_eq!(reply.status, 408);
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(conn.closed().await);
    connections(&hub, 0).await;
    server.shutdown(Duration::from_secs(1)).await;
}

/// hyper's header read timeout is the upgrade timeout: a connection that never finishes its
/// request head is closed after it, and so is a kept-alive connection idle after a request.
#[tokio::test]
async fn the_upgrade_timeout_closes_unfinished_heads_and_idle_connections() {
    let config = health(ServerConfig::default()).upgrade_timeout(Duration::from_millis(300));
    let (server, hub) = serve(config).await;
    let addr = server.local_addr();

    let mut conn = Conn::open(addr).await;
    let started = Instant::now();
    conn.socket
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    assert_eq!(closed, Ok(true), "an unfinished head was kept");
    assert!(started.elapsed() >= Duration::from_millis(250));

    let mut conn = Conn::open(addr).await;
    assert_eq!(
        conn.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .status,
        200
    );
    let idle = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    assert_eq!(closed, Ok(true), "an idle connection was kept");
    assert!(idle.elapsed() >= Duration::from_millis(250));
    connections(&hub, 0).await;
    server.shutdown(Duration::from_secs(1)).await;
}

/// Shutdown closes kept-alive connections waiting for their next request at once: it does not
/// wait for them until the write timeout (30 s).
#[tokio::test]
async fn shutdown_closes_idle_kept_alive_connections() {
    let (server, hub) = serve(health(ServerConfig::default())).await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut conn = Conn::open(server.local_addr()).await;
        let reply = conn.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!(reply.status, 200);
        conns.push(conn);
    }
    connections(&hub, 3).await;
    let started = Instant::now();
    let stop = tokio::spawn(server.shutdown(Duration::from_secs(1)));
    for conn in &mut conns {
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        assert_eq!(closed, Ok(true), "an idle connection outlived shutdown");
    }
    stop.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(hub.stats().connections, 0);
}

/// A peer that stops reading a response costs its connection for the write timeout only.
#[tokio::test]
async fn a_response_nobody_reads_ends_at_the_write_timeout() {
    let big = bytes::Bytes::from(vec![b'x'; 32 << 20]);
    let config = ServerConfig::default()
        .write_timeout(Duration::from_millis(300))
        .route("/big", move |_| {
            HttpResponse::new(200, "application/octet-stream", big.clone())
        });
    let (server, hub) = serve(config).await;
    let mut socket = TcpStream::connect(server.local_addr()).await.unwrap();
    socket
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    connections(&hub, 1).await;
    // Never read: the server's writes stop draining once the socket buffers are full.
    connections(&hub, 0).await;
    drop(socket);
    server.shutdown(Duration::from_secs(1)).await;
}
