//! The tokio client against fake servers on 127.0.0.1 that speak the protocol by hand:
//! resuming after a reconnect in both forms, a fatal close, the connect timeout, a server that
//! does not answer the subprotocol, a slow consumer, dropping the client, call-time refusals, URL
//! checks, the options' defaults, the event helpers and the errors' texts.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use eventwire_core::client::ClientError as CoreError;
use eventwire_core::codec::Codec;
use eventwire_core::frame::Position;
use eventwire_core::CloseCode;
use eventwire_tokio::{Client, ClientError, ClientOptions, Event, PollingOptions, Status};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use eventwire_core::backoff::{BackoffPolicy, Jitter};
use eventwire_core::dashboard::{DashboardError, DashboardEvent, SystemHealth, SystemStatus};
use eventwire_core::frame::Seq;
use eventwire_core::frame::{
    Batch, BatchEvent, Close, Frame, Ping, PublishAck, Subscribed, Welcome,
};
use eventwire_core::outbox::OutboxError;
use eventwire_core::payload::Payload;
use eventwire_core::text::MAX_SAFE_INTEGER;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as HandshakeRequest, Response as HandshakeResponse,
};

#[path = "shared/client_urls.rs"]
mod client_urls;

/// No await in these tests may take longer: fail, don't hang.
const LIMIT: Duration = Duration::from_secs(5);

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// Options with a backoff of 10 to 50 ms, so reconnects are quick.
fn options(codec: Codec) -> ClientOptions {
    let base = ClientOptions::new(7).seed(1).codec(codec);
    let core = base.core.clone().backoff(
        BackoffPolicy::new()
            .initial(Duration::from_millis(10))
            .cap(Duration::from_millis(50))
            .jitter(Jitter::None),
    );
    base.core(core)
}

async fn next_event(client: &mut Client) -> Event {
    within("an event", client.next())
        .await
        .expect("the stream ended")
}

fn json_payload(event: &Event) -> Value {
    event.json::<Value>().expect("a room event").expect("JSON")
}

/// What the fake server saw from the client.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Hello(Vec<(String, Option<Position>)>),
    Subscribe(String, Option<Position>),
    Unsubscribe(String),
    Publish {
        id: u64,
        room: String,
        kind: String,
        payload: Vec<u8>,
    },
    Close(CloseCode),
}

/// What the test tells the fake server to do with the current connection.
enum Ctl {
    /// Append an event (room, kind, JSON payload); send it if the connection joined the room.
    Emit(&'static str, &'static str, String),
    /// Drop the connection without any close.
    Drop,
}

/// A room log: (offset, kind, payload), epoch 1.
type Log = HashMap<String, Vec<(u64, String, Vec<u8>)>>;

/// A WebSocket server that speaks the protocol by hand, one connection at a time: it
/// answers a hello with a welcome (or, when `refuse` is set, with that close), each join
/// with `Subscribed` and a batch of the room's log from the position asked (including the
/// event *at* that position, so resuming also exercises duplicate suppression), each publish
/// with an ack, and each ping with a pong.
struct FakeServer {
    url: String,
    seen: mpsc::UnboundedReceiver<Seen>,
    ctl: mpsc::UnboundedSender<Ctl>,
}

impl FakeServer {
    async fn start(log: &[(&str, u64)], refuse: Option<(CloseCode, &'static str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/events", listener.local_addr().unwrap());
        let mut rooms = Log::new();
        for (room, events) in log {
            let entries = (1..=*events)
                .map(|n| {
                    (
                        n,
                        "test.event".to_owned(),
                        format!(r#"{{"n":{n}}}"#).into_bytes(),
                    )
                })
                .collect();
            rooms.insert((*room).to_owned(), entries);
        }
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(listener, rooms, refuse, seen_tx, ctl_rx));
        FakeServer { url, seen, ctl }
    }

    /// Skips what the server saw until `wanted` matches it.
    async fn expect(&mut self, what: &str, wanted: impl Fn(&Seen) -> bool) -> Seen {
        within(what, async {
            loop {
                let seen = self.seen.recv().await.expect("server gone");
                if wanted(&seen) {
                    return seen;
                }
            }
        })
        .await
    }

    fn emit(&self, room: &'static str, n: u64) {
        let payload = format!(r#"{{"n":{n}}}"#);
        self.ctl
            .send(Ctl::Emit(room, "test.event", payload))
            .unwrap();
    }
}

async fn serve(
    listener: TcpListener,
    mut log: Log,
    refuse: Option<(CloseCode, &'static str)>,
    seen: mpsc::UnboundedSender<Seen>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
) {
    let mut session_id = 0;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let mut codec = None;
        // The callback's signature is tungstenite's, large error type included.
        #[allow(clippy::result_large_err)]
        let callback = |request: &HandshakeRequest, mut response: HandshakeResponse| {
            let asked = request
                .headers()
                .get(SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .and_then(Codec::negotiate);
            if let Some(chosen) = asked {
                codec = Some(chosen);
                response.headers_mut().insert(
                    SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(chosen.subprotocol()),
                );
            }
            Ok::<_, ErrorResponse>(response)
        };
        let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
            continue;
        };
        session_id += 1;
        let codec = codec.expect("the client asks for a subprotocol");
        let conn = FakeConn {
            ws,
            codec,
            joined: Vec::new(),
        };
        conn.serve(session_id, &mut log, refuse, &seen, &mut ctl)
            .await;
    }
}

struct FakeConn {
    ws: WebSocketStream<TcpStream>,
    codec: Codec,
    joined: Vec<String>,
}

impl FakeConn {
    async fn send(&mut self, frame: &Frame<'_>) {
        let mut bytes = Vec::new();
        self.codec.encode_into(frame, &mut bytes).unwrap();
        let message = if self.codec.is_text() {
            Message::text(String::from_utf8(bytes).unwrap())
        } else {
            Message::binary(bytes)
        };
        let _ = self.ws.send(message).await;
    }

    async fn join(&mut self, log: &Log, room: &str, from: Option<Position>) {
        let position = from.unwrap_or(Position::new(1, 0));
        self.send(&Frame::Subscribed(Subscribed { room, position }))
            .await;
        let events: Vec<BatchEvent<'_>> = log
            .get(room)
            .into_iter()
            .flatten()
            .filter(|(offset, _, _)| *offset >= position.offset)
            .map(|(offset, kind, payload)| BatchEvent {
                offset: *offset,
                kind,
                payload: Payload(payload),
            })
            .collect();
        if !events.is_empty() {
            let batch = Frame::Batch(Batch {
                room,
                epoch: 1,
                events: Seq::from_slice(&events),
            });
            self.send(&batch).await;
        }
        self.joined.push(room.to_owned());
    }

    async fn serve(
        mut self,
        session_id: u64,
        log: &mut Log,
        refuse: Option<(CloseCode, &'static str)>,
        seen: &mpsc::UnboundedSender<Seen>,
        ctl: &mut mpsc::UnboundedReceiver<Ctl>,
    ) {
        loop {
            tokio::select! {
                message = self.ws.next() => {
                    let Some(Ok(message)) = message else { return };
                    let bytes = match &message {
                        Message::Binary(b) => &b[..],
                        Message::Text(t) => t.as_bytes(),
                        _ => continue,
                    };
                    let frame = self.codec.decode(bytes, 1 << 20).expect("a valid frame");
                    match frame {
                        Frame::Hello(hello) => {
                            let rooms: Vec<(String, Option<Position>)> =
                                hello.rooms.iter().map(|r| (r.room.to_owned(), r.from)).collect();
                            let _ = seen.send(Seen::Hello(rooms.clone()));
                            if let Some((code, reason)) = refuse {
                                let close = Close { code, retry_after_ms: None, reason };
                                self.send(&Frame::Close(close)).await;
                                let frame = CloseFrame { code: code.0.into(), reason: reason.to_owned().into() };
                                let _ = self.ws.close(Some(frame)).await;
                                while self.ws.next().await.is_some() {}
                                return;
                            }
                            self.send(&Frame::Welcome(Welcome {
                                version: 1,
                                session_id,
                                heartbeat_ms: 1000,
                                max_frame: 64 * 1024,
                                max_subscriptions: 64,
                                publish_rate: 1000,
                            }))
                            .await;
                            for (room, from) in rooms {
                                self.join(log, &room, from).await;
                            }
                        }
                        Frame::Subscribe(s) => {
                            let _ = seen.send(Seen::Subscribe(s.room.to_owned(), s.from));
                            self.join(log, s.room, s.from).await;
                        }
                        Frame::Unsubscribe(u) => {
                            let _ = seen.send(Seen::Unsubscribe(u.room.to_owned()));
                            self.joined.retain(|r| r != u.room);
                        }
                        Frame::Publish(p) => {
                            let _ = seen.send(Seen::Publish {
                                id: p.id,
                                room: p.room.to_owned(),
                                kind: p.kind.to_owned(),
                                payload: p.payload.0.to_vec(),
                            });
                            let entries = log.entry(p.room.to_owned()).or_default();
                            let offset = entries.len() as u64 + 1;
                            entries.push((offset, p.kind.to_owned(), p.payload.0.to_vec()));
                            let position = Position::new(1, offset);
                            self.send(&Frame::PublishAck(PublishAck { id: p.id, position }))
                                .await;
                        }
                        Frame::Ping(p) => self.send(&Frame::Pong(Ping { nonce: p.nonce })).await,
                        Frame::Close(c) => {
                            let _ = seen.send(Seen::Close(c.code));
                        }
                        _ => {}
                    }
                }
                command = ctl.recv() => match command {
                    Some(Ctl::Emit(room, kind, payload)) => {
                        let entries = log.entry(room.to_owned()).or_default();
                        let offset = entries.len() as u64 + 1;
                        entries.push((offset, kind.to_owned(), payload.clone().into_bytes()));
                        if self.joined.iter().any(|r| r == room) {
                            let event = Frame::Event(eventwire_core::frame::Event {
                                room,
                                position: Position::new(1, offset),
                                kind,
                                payload: Payload(payload.as_bytes()),
                            });
                            self.send(&event).await;
                        }
                    }
                    Some(Ctl::Drop) | None => return,
                },
            }
        }
    }
}

async fn resume_after_reconnect(codec: Codec) {
    let mut server = FakeServer::start(&[("agents", 3)], None).await;
    let mut client = Client::connect(&server.url, options(codec)).unwrap();
    client.subscribe("agents").await.unwrap();

    // The join rides in the hello or follows it, whichever the timing gives.
    assert_eq!(
        next_event(&mut client).await,
        Event::Subscribed {
            room: "agents".into(),
            position: Position::new(1, 0)
        }
    );
    for n in 1..=3 {
        let event = next_event(&mut client).await;
        assert!(
            matches!(&event, Event::Event { room, position, kind, .. }
                if room == "agents" && *position == Position::new(1, n) && kind == "test.event"),
            "{event:?}"
        );
        assert_eq!(json_payload(&event)["n"], n);
    }
    let mut status = client.status();
    within("open", status.wait_for(|s| *s == Status::Open))
        .await
        .unwrap();

    let id = client
        .publish("inbox", "note.added", &json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(id, 1);
    assert_eq!(
        next_event(&mut client).await,
        Event::PublishAcked {
            id: 1,
            position: Position::new(1, 1)
        }
    );
    let published = server
        .expect("the publish", |s| matches!(s, Seen::Publish { .. }))
        .await;
    assert_eq!(
        published,
        Seen::Publish {
            id: 1,
            room: "inbox".into(),
            kind: "note.added".into(),
            payload: br#"{"text":"hi"}"#.to_vec()
        }
    );

    server.emit("agents", 4);
    let live = next_event(&mut client).await;
    assert_eq!(json_payload(&live)["n"], 4);
    assert_eq!(
        client.positions().await.unwrap(),
        [("agents".to_owned(), Some(Position::new(1, 4)))]
    );

    // The server drops the connection: the client reconnects and resumes from 1:4.
    server.ctl.send(Ctl::Drop).unwrap();
    let resumed = vec![("agents".to_owned(), Some(Position::new(1, 4)))];
    server
        .expect("a hello resuming from the last position", |s| {
            *s == Seen::Hello(resumed.clone())
        })
        .await;
    // The server replays 1:4 again; it is a duplicate and not delivered.
    assert_eq!(
        next_event(&mut client).await,
        Event::Subscribed {
            room: "agents".into(),
            position: Position::new(1, 4)
        }
    );
    server.emit("agents", 5);
    let next = next_event(&mut client).await;
    assert!(
        matches!(&next, Event::Event { position, .. } if *position == Position::new(1, 5)),
        "{next:?}"
    );

    within("close", client.close()).await;
    server
        .expect("the close frame", |s| matches!(s, Seen::Close(_)))
        .await;
    assert_eq!(
        *status.borrow(),
        Status::Closed {
            code: Some(CloseCode::NORMAL),
            reason: String::new()
        }
    );
}

#[tokio::test]
async fn binary_client_resumes_after_reconnect() {
    resume_after_reconnect(Codec::Binary).await;
}

#[tokio::test]
async fn json_client_resumes_after_reconnect() {
    resume_after_reconnect(Codec::Json).await;
}

#[tokio::test]
async fn fatal_close_stops_for_good() {
    let refuse = Some((CloseCode::UNAUTHORIZED, "bad token"));
    let mut server = FakeServer::start(&[], refuse).await;
    let mut client = Client::connect(&server.url, options(Codec::Binary)).unwrap();
    let mut status = client.status();
    let closed = within(
        "closed",
        status.wait_for(|s| matches!(s, Status::Closed { .. })),
    )
    .await
    .unwrap()
    .clone();
    assert_eq!(
        closed,
        Status::Closed {
            code: Some(CloseCode::UNAUTHORIZED),
            reason: "bad token".into()
        }
    );
    assert_eq!(within("the stream's end", client.next()).await, None);
    assert!(matches!(
        client.subscribe("agents").await,
        Err(ClientError::Closed)
    ));
    assert!(matches!(server.seen.recv().await, Some(Seen::Hello(_))));
    // With a 10 ms backoff a retry would come well within this.
    let retry = tokio::time::timeout(Duration::from_millis(150), server.seen.recv()).await;
    assert!(matches!(retry, Err(_) | Ok(None)), "reconnected: {retry:?}");
}

#[tokio::test]
async fn connect_timeout_abandons_a_stalled_attempt() {
    // Accepts TCP connections but never answers the upgrade.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let base = options(Codec::Binary);
    let core = base
        .core
        .clone()
        .connect_timeout(Duration::from_millis(100));
    let client = Client::connect(&url, base.core(core)).unwrap();

    let (mut first, _) = within("the first attempt", listener.accept())
        .await
        .unwrap();
    // The machine's connect timeout drops the attempt: its socket closes...
    let mut request = Vec::new();
    let read = within(
        "the abandoned socket to close",
        first.read_to_end(&mut request),
    )
    .await;
    assert!(read.is_ok(), "{read:?}");
    assert!(
        request.starts_with(b"GET /"),
        "the upgrade request was sent"
    );
    // ... and after the backoff the next attempt comes.
    within("the second attempt", listener.accept())
        .await
        .unwrap();
    assert_ne!(*client.status().borrow(), Status::Open);
}

#[tokio::test]
async fn unanswered_subprotocol_fails_the_attempt() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let client = Client::connect(&url, options(Codec::Binary)).unwrap();
    for attempt in ["the first attempt", "a retry"] {
        let (tcp, _) = within(attempt, listener.accept()).await.unwrap();
        // A plain WebSocket server: it does not echo `eventwire.v1`.
        let ws = within("the upgrade", tokio_tungstenite::accept_async(tcp)).await;
        if let Ok(mut ws) = ws {
            // The client gives up on this socket without saying a word of the protocol.
            let next = within("the socket's end", ws.next()).await;
            assert!(!matches!(next, Some(Ok(Message::Binary(_)))), "{next:?}");
        }
    }
    assert_ne!(*client.status().borrow(), Status::Open);
}

#[tokio::test]
async fn slow_consumer_loses_nothing() {
    let mut server = FakeServer::start(&[("metrics", 200)], None).await;
    let options = options(Codec::Binary).events_capacity(4);
    let mut client = Client::connect(&server.url, options).unwrap();
    client.subscribe("metrics").await.unwrap();
    server
        .expect("the join", |s| match s {
            Seen::Hello(rooms) => !rooms.is_empty(),
            Seen::Subscribe(..) => true,
            _ => false,
        })
        .await;
    for n in 201..=220 {
        server.emit("metrics", n);
    }
    // Nobody reads for a while: the channel fills and the client stops reading the socket.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        next_event(&mut client).await,
        Event::Subscribed { .. }
    ));
    for n in 1..=220 {
        let event = next_event(&mut client).await;
        assert!(
            matches!(&event, Event::Event { position, .. } if *position == Position::new(1, n)),
            "expected offset {n}, got {event:?}"
        );
    }
    assert_eq!(*client.status().borrow(), Status::Open);
    within("close", client.close()).await;
}

#[tokio::test]
async fn dropping_the_client_closes_normally() {
    let mut server = FakeServer::start(&[], None).await;
    let client = Client::connect(&server.url, options(Codec::Binary)).unwrap();
    let mut status = client.status();
    within("open", status.wait_for(|s| *s == Status::Open))
        .await
        .unwrap();
    drop(client);
    let close = server
        .expect("the close frame", |s| matches!(s, Seen::Close(_)))
        .await;
    assert_eq!(close, Seen::Close(CloseCode::NORMAL));
}

/// A port nothing listens on: the client keeps backing off, and its outbox fills.
async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    drop(listener);
    url
}

#[tokio::test]
async fn publishes_are_refused_at_call_time() {
    let url = closed_port().await;
    let client = Client::connect(&url, options(Codec::Binary)).unwrap();
    let big = vec![b'x'; 70 * 1024];
    assert!(matches!(
        client.publish_raw("room", "kind", &big).await,
        Err(ClientError::Core(CoreError::Outbox(
            OutboxError::TooLarge { limit: 65536, .. }
        )))
    ));
    assert!(matches!(
        client.publish_raw("bad room", "kind", b"{}").await,
        Err(ClientError::Core(CoreError::Outbox(OutboxError::Invalid(
            _
        ))))
    ));
    // The client's outbox holds 256 publishes.
    for n in 1..=256 {
        assert_eq!(client.publish("room", "kind", &n).await.unwrap(), n);
    }
    assert!(matches!(
        client.publish("room", "kind", &0).await,
        Err(ClientError::Core(CoreError::Outbox(OutboxError::Full)))
    ));
    assert!(matches!(
        client.subscribe("no spaces").await,
        Err(ClientError::Core(CoreError::Invalid(_)))
    ));

    let json = Client::connect(&url, options(Codec::Json)).unwrap();
    assert!(matches!(
        json.publish_raw("room", "kind", b"not json").await,
        Err(ClientError::Payload(_))
    ));
    assert_eq!(
        json.publish_raw("room", "kind", b"[1, 2]").await.unwrap(),
        1
    );
    within("close", json.close()).await;
    within("close", client.close()).await;
}

#[tokio::test]
async fn urls_are_checked_at_connect() {
    client_urls::urls_are_checked(|url| Client::connect(url, ClientOptions::default()).map(drop));
}

#[test]
fn default_options_draw_fresh_ids() {
    let a = ClientOptions::default();
    let b = ClientOptions::default();
    assert_ne!(a.core.client_id, b.core.client_id);
    assert!(a.core.client_id <= MAX_SAFE_INTEGER);
    // The core's defaults and setters: core/tests/client_handle.rs.
    // The polling fallback is on by default, with the core's defaults.
    assert_eq!(
        ClientOptions::new(1).adapter.polling,
        Some(PollingOptions::default())
    );
    assert_eq!(PollingOptions::default().after_failures, 3);
    assert_eq!(
        ClientOptions::new(1)
            .adapter(|a| a.polling(None))
            .adapter
            .polling,
        None
    );
}

#[test]
fn event_helpers_decode_payloads() {
    let status = SystemStatus {
        status: SystemHealth::Healthy,
        agents_online: 3,
        tasks_pending: 1,
        uptime_s: 60,
    };
    let payload = DashboardEvent::from(status).to_json().unwrap();
    let event = Event::Event {
        room: "system".into(),
        position: Position::new(1, 1),
        kind: SystemStatus::KIND.into(),
        payload: payload.into(),
    };
    assert_eq!(
        event.dashboard(),
        Some(Ok(DashboardEvent::SystemStatus(status)))
    );
    assert_eq!(json_payload(&event)["agents_online"], 3);

    let unknown = Event::Event {
        room: "system".into(),
        position: Position::new(1, 2),
        kind: "system.note".into(),
        payload: Bytes::from_static(b"{}"),
    };
    assert_eq!(unknown.dashboard(), Some(Err(DashboardError::UnknownKind)));

    let ack = Event::PublishAcked {
        id: 1,
        position: Position::new(1, 1),
    };
    assert!(ack.json::<Value>().is_none());
    assert!(ack.dashboard().is_none());
}
