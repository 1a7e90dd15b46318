//! The blocking client's own behaviour over real sockets on 127.0.0.1: URL and publish checks at
//! call time, a fatal close, prompt wakes for commands, and closing.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use eventwire_core::client::ClientError as CoreError;
use eventwire_core::code::CloseCode;
use eventwire_core::codec::Codec;
use eventwire_core::outbox::OutboxError;
use eventwire_core::server::ServerConfig as SessionConfig;
use eventwire_sync::{
    Client, ClientError, ClientOptions, Event, Hub, RecvTimeoutError, Server, ServerConfig, Status,
};

#[path = "../../adapter-tokio/tests/shared/client_urls.rs"]
mod client_urls;

const LIMIT: Duration = Duration::from_secs(10);

/// Receives until `pred` matches; fails after [`LIMIT`].
fn until(client: &Client, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.recv_timeout(left) {
            Ok(event) if pred(&event) => return event,
            Ok(_) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

/// A port nothing listens on.
fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// The next connection to `listener`, within [`LIMIT`] (blocking, like the socket the test
/// then reads).
fn accept(listener: &TcpListener) -> std::net::TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        match listener.accept() {
            Ok((tcp, _)) => {
                tcp.set_nonblocking(false).unwrap();
                return tcp;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "no connection attempt");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Waits until the hub counts `n` open connections.
fn connections(hub: &Hub, n: u64) {
    let deadline = Instant::now() + LIMIT;
    while hub.stats().connections != n {
        assert!(Instant::now() < deadline, "{:?}", hub.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn urls_are_checked_at_connect() {
    client_urls::urls_are_checked(|url| Client::connect(url, ClientOptions::default()).map(drop));
}

#[test]
fn publishes_are_refused_at_call_time() {
    let url = closed_port();
    let client = Client::connect(&url, ClientOptions::new(1)).unwrap();
    let big = vec![b'x'; 70 * 1024];
    assert!(matches!(
        client.publish_raw("room", "kind", &big),
        Err(ClientError::Core(CoreError::Outbox(
            OutboxError::TooLarge { limit: 65536, .. }
        )))
    ));
    assert!(matches!(
        client.publish_raw("bad room", "kind", b"{}"),
        Err(ClientError::Core(CoreError::Outbox(OutboxError::Invalid(
            _
        ))))
    ));
    for n in 1..=256u64 {
        assert_eq!(client.publish("room", "kind", &n).unwrap(), n);
    }
    assert!(matches!(
        client.publish("room", "kind", &0),
        Err(ClientError::Core(CoreError::Outbox(OutboxError::Full)))
    ));
    assert!(matches!(
        client.subscribe("no spaces"),
        Err(ClientError::Core(CoreError::Invalid(_)))
    ));
    let json = Client::connect(&url, ClientOptions::new(2).codec(Codec::Json)).unwrap();
    assert!(matches!(
        json.publish_raw("room", "kind", b"not json"),
        Err(ClientError::Payload(_))
    ));
    assert_eq!(json.publish_raw("room", "kind", b"[1, 2]").unwrap(), 1);
    json.close();
    client.close();
}

#[test]
fn fatal_close_stops_for_good() {
    let config = ServerConfig::default().auth(|_| Err(CloseCode::UNAUTHORIZED));
    let server = Server::bind("127.0.0.1:0", Hub::new(Default::default()), config).unwrap();
    let client = Client::connect(
        &format!("ws://{}", server.local_addr()),
        ClientOptions::new(3),
    )
    .unwrap();
    let closed = until(&client, "the close", |e| {
        matches!(e, Event::Status(Status::Closed { .. }))
    });
    assert!(
        matches!(&closed, Event::Status(Status::Closed { code: Some(code), .. }) if *code == CloseCode::UNAUTHORIZED),
        "{closed:?}"
    );
    // The events end, and calls say the client is closed.
    assert_eq!(
        client.recv_timeout(LIMIT).unwrap_err(),
        RecvTimeoutError::Closed
    );
    assert!(client.events().next().is_none());
    assert!(matches!(
        client.subscribe("agents"),
        Err(ClientError::Closed)
    ));
    assert_eq!(server.hub().stats().connections_total, 1, "no retry");
    server.shutdown(Duration::from_secs(1));
}

/// Commands reach the driver at once, although its only deadline is a heartbeat away: the
/// driver blocks in its inbox, not in a socket read with a timeout.
#[test]
fn commands_and_emits_wake_the_driver_at_once() {
    let session = SessionConfig::new().heartbeat(Duration::from_secs(30));
    let hub = Hub::with_epoch(1, Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare((0..5).map(|round| format!("room-{round}")))
        .unwrap();
    let config = ServerConfig::default().session(session);
    let server = Server::bind("127.0.0.1:0", hub.clone(), config).unwrap();
    let client = Client::connect(
        &format!("ws://{}", server.local_addr()),
        ClientOptions::new(4),
    )
    .unwrap();
    until(&client, "open", |e| {
        matches!(e, Event::Status(Status::Open))
    });
    for round in 0..5 {
        let room = format!("room-{round}");
        let started = Instant::now();
        client.subscribe(&room).unwrap();
        until(&client, "the join", |e| {
            matches!(e, Event::Subscribed { .. })
        });
        hub.emit(&room, "test.event", &round).unwrap();
        until(&client, "the event", |e| matches!(e, Event::Event { .. }));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "round {round} took {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    client.close();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    connections(&hub, 0);
    server.shutdown(Duration::from_secs(1));
}

#[test]
fn dropping_the_client_closes_it() {
    let hub = Hub::with_epoch(1, Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare(["agents"]).unwrap();
    let server = Server::bind("127.0.0.1:0", hub.clone(), ServerConfig::default()).unwrap();
    let client = Client::connect(
        &format!("ws://{}", server.local_addr()),
        ClientOptions::new(5),
    )
    .unwrap();
    until(&client, "open", |e| {
        matches!(e, Event::Status(Status::Open))
    });
    connections(&hub, 1);
    drop(client);
    connections(&hub, 0);
    let started = Instant::now();
    server.shutdown(Duration::from_secs(5));
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// The machine's connect timeout abandons an upgrade the server never answers; the next
/// attempt follows after the backoff.
#[test]
fn connect_timeout_abandons_a_stalled_attempt() {
    use std::io::Read;

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let core = eventwire_core::client::ClientConfig::new(6)
        .connect_timeout(Duration::from_millis(100))
        .backoff(
            eventwire_core::backoff::BackoffPolicy::new()
                .initial(Duration::from_millis(10))
                .cap(Duration::from_millis(50)),
        );
    let client = Client::connect(&url, ClientOptions::new(6).core(core)).unwrap();
    let mut first = accept(&listener);
    first.set_read_timeout(Some(LIMIT)).unwrap();
    let mut request = Vec::new();
    // The abandoned socket closes: reading it ends (instead of timing out).
    first.read_to_end(&mut request).unwrap();
    assert!(
        request.starts_with(b"GET /"),
        "the upgrade request was sent"
    );
    let _second = accept(&listener);
    assert_ne!(client.status(), Status::Open);
    client.close();
}

/// A plain WebSocket server that does not select `eventwire.v1` fails the attempt, and the
/// client never speaks the protocol on that socket.
#[test]
fn unanswered_subprotocol_fails_the_attempt() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let client = Client::connect(&url, ClientOptions::new(7)).unwrap();
    for _ in ["the first attempt", "a retry"] {
        let tcp = accept(&listener);
        tcp.set_read_timeout(Some(LIMIT)).unwrap();
        if let Ok(mut ws) = tungstenite::accept(tcp) {
            let next = ws.read();
            assert!(
                !matches!(next, Ok(tungstenite::Message::Binary(_))),
                "{next:?}"
            );
        }
    }
    until(&client, "a reconnect", |e| {
        matches!(e, Event::Status(Status::Reconnecting { .. }))
    });
    assert_ne!(client.status(), Status::Open);
    client.close();
}

/// The handle can be shared: one thread iterating events while others subscribe and publish.
#[test]
fn handles_are_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Client>();
    shareable::<Hub>();
    shareable::<Server>();
}

#[test]
fn errors_display() {
    // `ClientError` is the core's `HandleError`, tested in core/tests/client_handle.rs.
    assert_eq!(
        RecvTimeoutError::Timeout.to_string(),
        "no event within the timeout"
    );
}
