//! The client's HTTP long-polling fallback (PROTOCOL.md section 1.4), against a small fake
//! server that speaks both transports, behind a proxy that can refuse WebSocket upgrades.
//!
//! The fake keeps one room, `agents`, whose event n sits at position 1:n with payload
//! `{"n":n}`. Its sessions follow the protocol as far as this client needs: the hello's resume
//! positions, subscribes, pings, and for polling the session token, held requests and "a new
//! request makes the held one return at once".

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventwire_core::codec::stream::{self, StreamDecoder};
use eventwire_core::codec::Codec;
use eventwire_core::frame::{Frame, Ping, Position, Subscribed, Welcome};
use eventwire_core::payload::Payload;
use eventwire_tokio::{
    Client, ClientOptions, Event, Hub, PollingOptions, Server, ServerConfig, Status, Transport,
};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// The room's log (its length: event n is at offset n) and the sessions of polling clients.
struct Fake {
    len: watch::Sender<u64>,
    sessions: Mutex<HashMap<String, Arc<PollSession>>>,
    next_token: AtomicU64,
    ws_hellos: AtomicU64,
    /// How its polling responses are sent.
    http: Http,
    /// Connections and requests its polling side served.
    poll_connections: AtomicU64,
    poll_requests: AtomicU64,
}

/// How the fake answers polling requests.
#[derive(Clone, Copy, Default)]
struct Http {
    /// Keeps the connection open for the next request (else `Connection: close`).
    keep_alive: bool,
    /// Sends bodies in chunks (else with `Content-Length`).
    chunked: bool,
}

/// What a session (a WebSocket or a polling session) knows: the next offset to send.
#[derive(Default)]
struct Room {
    next: Option<u64>,
}

struct PollSession {
    room: Mutex<(Room, u64)>,
    /// Wakes a held request when a newer one arrives.
    kick: Notify,
}

impl Fake {
    fn emit(&self) -> u64 {
        self.len.send_modify(|n| *n += 1);
        *self.len.borrow()
    }

    /// Answers one client frame; the answers are encoded with `codec` into `out`.
    fn handle(
        &self,
        room: &mut Room,
        frame: &Frame<'_>,
        codec: Codec,
        cobs: bool,
        out: &mut Vec<Vec<u8>>,
    ) {
        let len = *self.len.borrow();
        let mut join = |from: Option<Position>, out: &mut Vec<Vec<u8>>| {
            let position = from.unwrap_or(Position::new(1, len));
            room.next = Some(position.offset + 1);
            let subscribed = Frame::Subscribed(Subscribed {
                room: "agents",
                position,
            });
            out.push(encode(codec, cobs, &subscribed));
        };
        match frame {
            Frame::Hello(hello) => {
                let welcome = Frame::Welcome(Welcome {
                    version: 1,
                    session_id: 1,
                    heartbeat_ms: 15_000,
                    max_frame: 65_536,
                    max_subscriptions: 64,
                    publish_rate: 100,
                });
                out.push(encode(codec, cobs, &welcome));
                for resume in hello.rooms.iter() {
                    join(resume.from, out);
                }
            }
            Frame::Subscribe(s) => join(s.from, out),
            Frame::Ping(p) => out.push(encode(codec, cobs, &Frame::Pong(Ping { nonce: p.nonce }))),
            _ => {}
        }
    }

    /// The events after what `room` was sent, encoded into `out`.
    fn events(&self, room: &mut Room, codec: Codec, cobs: bool, out: &mut Vec<Vec<u8>>) {
        let len = *self.len.borrow();
        let Some(next) = room.next.as_mut() else {
            return;
        };
        while *next <= len {
            let payload = format!(r#"{{"n":{next}}}"#);
            let event = Frame::Event(eventwire_core::frame::Event {
                room: "agents",
                position: Position::new(1, *next),
                kind: "test.event",
                payload: Payload(payload.as_bytes()),
            });
            out.push(encode(codec, cobs, &event));
            *next += 1;
        }
    }
}

/// A frame as one polling body holds it (`cobs`, binary) or as a WebSocket message.
fn encode(codec: Codec, cobs: bool, frame: &Frame<'_>) -> Vec<u8> {
    if codec.is_text() || !cobs {
        let mut out = Vec::new();
        codec.encode_into(frame, &mut out).unwrap();
        out
    } else {
        let mut buf = vec![0; 70_000];
        stream::encode(frame, &mut buf).unwrap().to_vec()
    }
}

/// A WebSocket session.
async fn serve_ws(fake: Arc<Fake>, tcp: TcpStream) {
    let mut codec = Codec::Binary;
    // The error type is tungstenite's (an HTTP response), whatever its size.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, mut response: Response| {
        let offered = request
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        codec = Codec::negotiate(offered).unwrap_or(Codec::Binary);
        response.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(codec.subprotocol()),
        );
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let mut room = Room::default();
    let mut len = fake.len.subscribe();
    loop {
        let mut out = Vec::new();
        tokio::select! {
            message = ws.next() => {
                let Some(Ok(message)) = message else { return };
                let bytes = message.into_data();
                let Ok(frame) = codec.decode(&bytes, 65_536) else { continue };
                if matches!(frame, Frame::Hello(_)) {
                    fake.ws_hellos.fetch_add(1, Ordering::SeqCst);
                }
                if matches!(frame, Frame::Close(_)) {
                    return;
                }
                fake.handle(&mut room, &frame, codec, false, &mut out);
            }
            changed = len.changed() => if changed.is_err() { return },
        }
        fake.events(&mut room, codec, false, &mut out);
        for frame in out {
            let message = if codec.is_text() {
                Message::Text(String::from_utf8(frame).unwrap().into())
            } else {
                Message::Binary(frame.into())
            };
            if ws.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// The polling requests of one connection: one, or with keep-alive as many as come.
async fn serve_poll(fake: Arc<Fake>, mut tcp: TcpStream) {
    fake.poll_connections.fetch_add(1, Ordering::SeqCst);
    let mut buf = Vec::new();
    while serve_request(&fake, &mut tcp, &mut buf).await && fake.http.keep_alive {}
    let _ = tcp.shutdown().await;
}

/// One polling request, read from `tcp` after what `buf` holds (what follows it stays there);
/// false once the connection is done.
async fn serve_request(fake: &Fake, tcp: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    let (start, length, codec, token) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(start)) = request.parse(buf) {
            assert_eq!(request.method, Some("POST"));
            assert_eq!(request.path, Some("/eventwire/poll"));
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8(h.value.to_vec()).unwrap())
            };
            let length: usize = header("content-length").unwrap().parse().unwrap();
            let codec = match header("content-type").as_deref() {
                Some("application/json") => Codec::Json,
                Some("application/octet-stream") => Codec::Binary,
                other => panic!("content type {other:?}"),
            };
            break (start, length, codec, header("eventwire-session"));
        }
        let n = tcp.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return false;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    while buf.len() < start + length {
        let n = tcp.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return false;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    fake.poll_requests.fetch_add(1, Ordering::SeqCst);
    let body: Vec<u8> = buf.drain(..start + length).skip(start).collect();
    let body = &body[..];

    let found = token
        .as_ref()
        .and_then(|t| fake.sessions.lock().unwrap().get(t).cloned());
    let (token, session) = match token {
        Some(token) => match found {
            Some(session) => (token, session),
            None => return respond(fake.http, tcp, "404 Not Found", codec, None, Vec::new()).await,
        },
        None => {
            let token = format!("t{}", fake.next_token.fetch_add(1, Ordering::SeqCst));
            let session = Arc::new(PollSession {
                room: Mutex::new((Room::default(), 0)),
                kick: Notify::new(),
            });
            fake.sessions
                .lock()
                .unwrap()
                .insert(token.clone(), session.clone());
            (token, session)
        }
    };
    // A newer request returns the held one at once; this one is now the latest.
    session.kick.notify_waiters();
    let generation = {
        let mut state = session.room.lock().unwrap();
        state.1 += 1;
        state.1
    };
    let mut out = Vec::new();
    {
        let mut state = session.room.lock().unwrap();
        let mut handle = |frame: Result<Frame<'_>, _>| {
            if let Ok(frame) = frame {
                fake.handle(&mut state.0, &frame, codec, true, &mut out);
            }
        };
        if codec.is_text() {
            let frames: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body).unwrap();
            for raw in frames {
                handle(codec.decode(raw.get().as_bytes(), 65_536));
            }
        } else {
            let mut decoder = Box::new(StreamDecoder::<70_000>::new());
            let mut rest = body;
            while !rest.is_empty() {
                let (frame, left) = decoder.feed(rest);
                rest = left;
                if let Some(frame) = frame {
                    handle(frame);
                }
            }
        }
    }
    let mut len = fake.len.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        {
            let mut state = session.room.lock().unwrap();
            // A held request that a newer one overtook takes nothing more: the responses
            // must carry the events in the order of their requests.
            if state.1 != generation {
                break;
            }
            fake.events(&mut state.0, codec, true, &mut out);
        }
        if !out.is_empty() {
            break;
        }
        tokio::select! {
            _ = len.changed() => {}
            () = session.kick.notified() => {}
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    let body = if codec.is_text() {
        format!(
            "[{}]",
            out.iter()
                .map(|f| std::str::from_utf8(f).unwrap())
                .collect::<Vec<_>>()
                .join(",")
        )
        .into_bytes()
    } else {
        out.concat()
    };
    respond(fake.http, tcp, "200 OK", codec, Some(&token), body).await
}

/// Sends a response; false if the connection is done.
async fn respond(
    http: Http,
    tcp: &mut TcpStream,
    status: &str,
    codec: Codec,
    token: Option<&str>,
    body: Vec<u8>,
) -> bool {
    let content_type = if codec.is_text() {
        "application/json"
    } else {
        "application/octet-stream"
    };
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Eventwire-Session: {token}\r\n"));
    }
    if !http.keep_alive {
        head.push_str("Connection: close\r\n");
    }
    let bytes = if http.chunked {
        head.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let mut bytes = head.into_bytes();
        // Small chunks, so a body of a few frames comes in several.
        for piece in body.chunks(7) {
            bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            bytes.extend_from_slice(piece);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        bytes
    } else {
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        bytes
    };
    tcp.write_all(&bytes).await.is_ok()
}

/// Where the proxy sends what it lets through.
#[derive(Clone)]
enum Backend {
    /// Upgrades to the WebSocket side of the fake, everything else to its polling side.
    Fake(Arc<Fake>),
    /// Everything to a real server.
    Server(SocketAddr),
}

/// A proxy on 127.0.0.1: WebSocket upgrades are refused with 403 while `refuse` is set; the
/// rest goes to `backend`.
async fn start(backend: Backend, refuse: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            let backend = backend.clone();
            let refuse = refuse.clone();
            tokio::spawn(async move {
                // Peek at the head without taking it, so the backend reads it whole.
                let mut head = [0u8; 2048];
                let mut seen = 0;
                while !head[..seen].windows(4).any(|w| w == b"\r\n\r\n") && seen < head.len() {
                    let Ok(n) = tcp.peek(&mut head).await else {
                        return;
                    };
                    if n == seen {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    seen = n;
                }
                let text = String::from_utf8_lossy(&head[..seen]).to_ascii_lowercase();
                let upgrade = text.contains("upgrade: websocket");
                if upgrade && refuse.load(Ordering::SeqCst) {
                    let _ = tcp
                        .write_all(
                            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\
                              Connection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
                match backend {
                    Backend::Fake(fake) if upgrade => serve_ws(fake, tcp).await,
                    Backend::Fake(fake) => serve_poll(fake, tcp).await,
                    Backend::Server(addr) => {
                        // The peeked head is still in the socket: forward it all.
                        let Ok(mut server) = TcpStream::connect(addr).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut server).await;
                    }
                }
            });
        }
    });
    addr
}

/// Takes events up to offset `last`: each the next in order, no gap; `Subscribed` comes again
/// after each switch.
async fn receive_until(client: &mut Client, expect: &mut u64, last: u64) {
    while *expect <= last {
        match within("an event", client.next())
            .await
            .expect("stream open")
        {
            Event::Event {
                position, payload, ..
            } => {
                assert_eq!(position, Position::new(1, *expect), "no gap, no reorder");
                assert_eq!(payload, format!(r#"{{"n":{expect}}}"#).as_bytes());
                *expect += 1;
            }
            Event::Subscribed { room, .. } => assert_eq!(room, "agents"),
            other => panic!("{other:?}"),
        }
    }
}

fn fake() -> Arc<Fake> {
    fake_with(Http::default())
}

fn fake_with(http: Http) -> Arc<Fake> {
    Arc::new(Fake {
        len: watch::channel(0).0,
        sessions: Mutex::new(HashMap::new()),
        next_token: AtomicU64::new(1),
        ws_hellos: AtomicU64::new(0),
        http,
        poll_connections: AtomicU64::new(0),
        poll_requests: AtomicU64::new(0),
    })
}

/// The acceptance scenario: WebSocket upgrades refused, the client polls and gets every event
/// in order; upgrades allowed again, it moves back to a WebSocket and loses nothing. `emit`
/// appends the next event (n = 1, 2, ...) to the room `agents` of epoch 1.
async fn falls_back_and_upgrades(
    codec: Codec,
    backend: Backend,
    emit: Arc<dyn Fn() + Send + Sync>,
) {
    let refuse = Arc::new(AtomicBool::new(true));
    let addr = start(backend.clone(), refuse.clone()).await;
    let ws_hellos = || match &backend {
        Backend::Fake(fake) => Some(fake.ws_hellos.load(Ordering::SeqCst)),
        Backend::Server(_) => None,
    };

    let base = ClientOptions::new(11).seed(3).codec(codec);
    let core = base.core.clone().backoff(
        eventwire_core::backoff::BackoffPolicy::new()
            .initial(Duration::from_millis(10))
            .cap(Duration::from_millis(50))
            .jitter(eventwire_core::backoff::Jitter::None),
    );
    let polling = PollingOptions::new()
        .after_failures(2)
        .upgrade_every(Duration::from_millis(300));
    let options = base.core(core).adapter(|a| a.polling(polling));
    let mut client = Client::connect(&format!("ws://{addr}/"), options).unwrap();
    client.subscribe("agents").await.unwrap();
    let mut transport = client.transport();
    assert_eq!(*transport.borrow(), Transport::WebSocket);
    within("polling", transport.wait_for(|t| *t == Transport::Polling))
        .await
        .unwrap();
    let mut status = client.status();
    within("open", status.wait_for(|s| *s == Status::Open))
        .await
        .unwrap();

    // Every event arrives, in order, through polling. Emitted from another task, in bursts.
    let emitter = {
        let emit = emit.clone();
        tokio::spawn(async move {
            for n in 1..=40u64 {
                emit();
                if n % 4 == 0 {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }
        })
    };
    let mut expect = 1;
    receive_until(&mut client, &mut expect, 40).await;
    emitter.await.unwrap();
    assert_eq!(*transport.borrow(), Transport::Polling);
    assert!(matches!(ws_hellos(), None | Some(0)));

    // WebSockets get through again: the client moves back and loses nothing on the way.
    refuse.store(false, Ordering::SeqCst);
    let emitter = {
        let emit = emit.clone();
        tokio::spawn(async move {
            for _ in 41..=100u64 {
                emit();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    within(
        "the WebSocket again",
        transport.wait_for(|t| *t == Transport::WebSocket),
    )
    .await
    .unwrap();
    receive_until(&mut client, &mut expect, 100).await;
    emitter.await.unwrap();
    assert_eq!(*client.transport().borrow(), Transport::WebSocket);
    assert!(ws_hellos().is_none_or(|n| n >= 1));
    within("close", client.close()).await;
}

/// The scenario against the fake answering as `http` says; returns the polling connections
/// and requests it served.
async fn against_fake(codec: Codec, http: Http) -> (u64, u64) {
    let fake = fake_with(http);
    let emitter = fake.clone();
    let emit = Arc::new(move || {
        emitter.emit();
    });
    falls_back_and_upgrades(codec, Backend::Fake(fake.clone()), emit).await;
    (
        fake.poll_connections.load(Ordering::SeqCst),
        fake.poll_requests.load(Ordering::SeqCst),
    )
}

async fn against_server(codec: Codec) {
    let hub = Hub::with_epoch(1, Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare(["agents"]).unwrap();
    let server = Server::bind("127.0.0.1:0", hub.clone(), ServerConfig::default())
        .await
        .unwrap();
    let next = AtomicU64::new(1);
    let emit = Arc::new(move || {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let position = hub.emit("agents", "test.event", &serde_json::json!({ "n": n }));
        assert_eq!(position.unwrap(), Position::new(1, n));
    });
    falls_back_and_upgrades(codec, Backend::Server(server.local_addr()), emit).await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn binary_client_falls_back_to_polling_and_upgrades_again() {
    against_fake(Codec::Binary, Http::default()).await;
}

#[tokio::test]
async fn json_client_falls_back_to_polling_and_upgrades_again() {
    against_fake(Codec::Json, Http::default()).await;
}

#[tokio::test]
async fn binary_client_reads_chunked_responses() {
    let http = Http {
        keep_alive: false,
        chunked: true,
    };
    let (connections, requests) = against_fake(Codec::Binary, http).await;
    assert!(requests >= 2, "{requests} requests");
    assert_eq!(connections, requests);
}

#[tokio::test]
async fn json_client_reuses_connections_the_server_keeps_open() {
    for chunked in [false, true] {
        let http = Http {
            keep_alive: true,
            chunked,
        };
        let (connections, requests) = against_fake(Codec::Json, http).await;
        eprintln!("chunked {chunked}: {connections} connections, {requests} requests");
        assert!(
            connections * 2 <= requests,
            "{connections} connections for {requests} requests"
        );
    }
}

#[tokio::test]
async fn binary_client_polls_the_real_server() {
    against_server(Codec::Binary).await;
}

#[tokio::test]
async fn json_client_polls_the_real_server() {
    against_server(Codec::Json).await;
}

#[tokio::test]
async fn no_fallback_without_polling_options() {
    let fake = fake();
    let addr = start(Backend::Fake(fake.clone()), Arc::new(AtomicBool::new(true))).await;
    let base = ClientOptions::new(12).seed(3).adapter(|a| a.polling(None));
    let core = base.core.clone().backoff(
        eventwire_core::backoff::BackoffPolicy::new()
            .initial(Duration::from_millis(5))
            .cap(Duration::from_millis(10)),
    );
    let client = Client::connect(&format!("ws://{addr}/"), base.core(core)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*client.transport().borrow(), Transport::WebSocket);
    assert_ne!(*client.status().borrow(), Status::Open);
    assert!(fake.sessions.lock().unwrap().is_empty(), "it polled");
    within("close", client.close()).await;
}
