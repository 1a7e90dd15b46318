//! The standalone server's HTTP front on real sockets: routes, the browser client, CORS for
//! long-polling from other origins, refusing upgrades, injected connection cuts, and the close
//! a browser sends (PROTOCOL.md 1 and 1.4).

use std::time::Duration;

use eventwire_tokio::{HttpResponse, Hub, Server, ServerConfig, MAX_ROUTE_BODY};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

#[path = "shared/raw_http.rs"]
mod raw_http;
use raw_http::{kinds, post, raw, JSON};

const HELLO: &str = r#"{"hello":{"version":1,"client_id":7,"token":null,"max_frame":65536,"max_batch":50,"rooms":[{"room":"tasks","from":null}]}}"#;

async fn serve(config: ServerConfig) -> (Server, Hub) {
    let hub = Hub::new(Default::default());
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

    let got = raw(addr, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!((got.status, &got.body[..]), (200, &b"GET /health"[..]));
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(got.header("connection"), Some("close"));

    let got = raw(
        addr,
        b"POST /echo?a=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!((got.status, &got.body[..]), (201, &b"a=1hello"[..]));
    assert_eq!(got.header("x-seen"), Some("yes"));

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

    let dts = raw(
        addr,
        b"GET /static/eventwire.d.ts HTTP/1.1\r\nHost: t\r\n\r\n",
    )
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
          Access-Control-Request-Headers: content-type, eventwire-session\r\n\r\n",
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
    assert!(allowed.contains("content-type") && allowed.contains("eventwire-session"));

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
