//! The harness of the interop tests: either adapter's server, either adapter's client behind one
//! small trait, a blocking TCP proxy that cuts connections, and a log of what a client saw.
//! Every wait is bounded by [`LIMIT`]; nothing sleeps to synchronise.

#![allow(dead_code)] // each test file uses part of the harness

use std::collections::BTreeMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use eventwire_core::backoff::BackoffPolicy;
use eventwire_core::client::ClientConfig;
use eventwire_core::codec::Codec;
use eventwire_core::frame::{Missed, Position};
use eventwire_core::history::HistoryConfig;
use eventwire_core::hub::HubConfig;
use eventwire_core::server::ServerConfig as SessionConfig;
use futures_util::StreamExt;

/// No wait of a test may take longer: fail, don't hang.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The runtime of the tokio servers and clients (the tests themselves are plain threads).
pub static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

/// Which adapter plays a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `eventwire-sync`.
    Sync,
    /// `eventwire-tokio`.
    Tokio,
}

fn session() -> SessionConfig {
    SessionConfig::new()
        .heartbeat(Duration::from_millis(500))
        .intervals(Duration::from_millis(5), Duration::from_millis(20))
}

/// Either adapter's hub.
#[derive(Clone)]
pub enum TestHub {
    Sync(eventwire_sync::Hub),
    Tokio(eventwire_tokio::Hub),
}

impl TestHub {
    /// Emits a `test.event` with a JSON payload.
    pub fn emit(&self, room: &str, payload: &str) -> Position {
        let result = match self {
            TestHub::Sync(hub) => hub
                .emit_raw(room, "test.event", payload.as_bytes(), None)
                .map_err(|e| e.to_string()),
            TestHub::Tokio(hub) => hub
                .emit_raw(room, "test.event", payload.as_bytes(), None)
                .map_err(|e| e.to_string()),
        };
        result.expect("emit")
    }
}

enum ServerKind {
    Sync(eventwire_sync::Server),
    Tokio(eventwire_tokio::Server),
}

/// Either adapter's server on 127.0.0.1:0.
pub struct TestServer {
    server: ServerKind,
    hub: TestHub,
}

/// The rooms the tests' application declares at start: clients cannot create rooms.
pub const ROOMS: [&str; 5] = ["r0", "r1", "feed", "metrics", "system"];

impl TestServer {
    /// A server whose rooms start in `epoch` and keep `history` events (of up to 4 MiB).
    pub fn start(side: Side, epoch: u32, history: usize) -> TestServer {
        let history = HistoryConfig::new()
            .max_events(history)
            .max_bytes(4 * 1024 * 1024);
        let config = HubConfig::new().history(history);
        match side {
            Side::Sync => {
                let hub = eventwire_sync::Hub::with_epoch(epoch, config);
                hub.declare(ROOMS).expect("valid rooms");
                let server_config = eventwire_sync::ServerConfig::default()
                    .session(session())
                    .grants(eventwire_sync::Grants::publish_any());
                let server =
                    eventwire_sync::Server::bind("127.0.0.1:0", hub.clone(), server_config)
                        .expect("bind");
                TestServer {
                    server: ServerKind::Sync(server),
                    hub: TestHub::Sync(hub),
                }
            }
            Side::Tokio => {
                let hub = eventwire_tokio::Hub::with_epoch(epoch, config);
                hub.declare(ROOMS).expect("valid rooms");
                let server_config = eventwire_tokio::ServerConfig::default()
                    .session(session())
                    .grants(eventwire_tokio::Grants::publish_any());
                let server = RT
                    .block_on(eventwire_tokio::Server::bind(
                        "127.0.0.1:0",
                        hub.clone(),
                        server_config,
                    ))
                    .expect("bind");
                TestServer {
                    server: ServerKind::Tokio(server),
                    hub: TestHub::Tokio(hub),
                }
            }
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match &self.server {
            ServerKind::Sync(s) => s.local_addr(),
            ServerKind::Tokio(s) => s.local_addr(),
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr())
    }

    pub fn hub(&self) -> TestHub {
        self.hub.clone()
    }

    /// Graceful shutdown (close 1001, come back after 50 ms).
    pub fn shutdown(self) {
        let retry = Duration::from_millis(50);
        match self.server {
            ServerKind::Sync(s) => s.shutdown(retry),
            ServerKind::Tokio(s) => RT.block_on(s.shutdown(retry)),
        }
    }
}

/// What a client saw, the same for both adapters.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Event {
        room: String,
        position: Position,
        payload: String,
    },
    Gap {
        room: String,
        missed: Missed,
    },
    Subscribed {
        room: String,
    },
    Acked {
        id: u64,
        position: Position,
    },
    Other,
}

impl From<eventwire_sync::Event> for Seen {
    fn from(event: eventwire_sync::Event) -> Seen {
        use eventwire_sync::Event;
        match event {
            Event::Event {
                room,
                position,
                payload,
                ..
            } => Seen::Event {
                room,
                position,
                payload: String::from_utf8(payload).expect("UTF-8 payload"),
            },
            Event::Gap { room, missed } => Seen::Gap { room, missed },
            Event::Subscribed { room, .. } => Seen::Subscribed { room },
            Event::PublishAcked { id, position } => Seen::Acked { id, position },
            _ => Seen::Other,
        }
    }
}

impl From<eventwire_tokio::Event> for Seen {
    fn from(event: eventwire_tokio::Event) -> Seen {
        use eventwire_tokio::Event;
        match event {
            Event::Event {
                room,
                position,
                payload,
                ..
            } => Seen::Event {
                room,
                position,
                payload: String::from_utf8(payload.to_vec()).expect("UTF-8 payload"),
            },
            Event::Gap { room, missed } => Seen::Gap { room, missed },
            Event::Subscribed { room, .. } => Seen::Subscribed { room },
            Event::PublishAcked { id, position } => Seen::Acked { id, position },
            _ => Seen::Other,
        }
    }
}

/// Either adapter's client, driven from a plain thread.
pub trait TestClient {
    fn subscribe(&self, room: &str);
    fn publish(&self, room: &str, kind: &str, payload: &[u8]) -> u64;
    /// The next thing seen, or `None` at `deadline` (or when the client ended).
    fn recv(&mut self, deadline: Instant) -> Option<Seen>;
    fn close(self: Box<Self>);
}

impl TestClient for eventwire_sync::Client {
    fn subscribe(&self, room: &str) {
        eventwire_sync::Client::subscribe(self, room).expect("subscribe");
    }

    fn publish(&self, room: &str, kind: &str, payload: &[u8]) -> u64 {
        self.publish_raw(room, kind, payload).expect("publish")
    }

    fn recv(&mut self, deadline: Instant) -> Option<Seen> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.recv_timeout(left).ok().map(Seen::from)
    }

    fn close(self: Box<Self>) {
        eventwire_sync::Client::close(*self);
    }
}

impl TestClient for eventwire_tokio::Client {
    fn subscribe(&self, room: &str) {
        RT.block_on(eventwire_tokio::Client::subscribe(self, room))
            .expect("subscribe");
    }

    fn publish(&self, room: &str, kind: &str, payload: &[u8]) -> u64 {
        RT.block_on(self.publish_raw(room, kind, payload))
            .expect("publish")
    }

    fn recv(&mut self, deadline: Instant) -> Option<Seen> {
        let deadline = tokio::time::Instant::from_std(deadline);
        RT.block_on(async { tokio::time::timeout_at(deadline, self.next()).await })
            .ok()
            .flatten()
            .map(Seen::from)
    }

    fn close(self: Box<Self>) {
        RT.block_on(eventwire_tokio::Client::close(*self));
    }
}

/// A client of `side` for `url`, reconnecting within 10 to 200 ms, whose queue holds `capacity`
/// events. The tokio client's polling fallback is off: the blocking server serves WebSocket only.
pub fn client(
    side: Side,
    url: &str,
    id: u64,
    codec: Codec,
    capacity: usize,
) -> Box<dyn TestClient> {
    let core = ClientConfig::new(id)
        .backoff(
            BackoffPolicy::new()
                .initial(Duration::from_millis(10))
                .cap(Duration::from_millis(200)),
        )
        .connect_timeout(Duration::from_secs(5));
    match side {
        Side::Sync => {
            let options = eventwire_sync::ClientOptions::new(id)
                .core(core)
                .codec(codec)
                .events_capacity(capacity);
            Box::new(eventwire_sync::Client::connect(url, options).expect("connect"))
        }
        Side::Tokio => {
            let options = eventwire_tokio::ClientOptions::new(id)
                .core(core)
                .codec(codec)
                .events_capacity(capacity)
                .adapter(|a| a.polling(None));
            let _runtime = RT.enter();
            Box::new(eventwire_tokio::Client::connect(url, options).expect("connect"))
        }
    }
}

/// What a client saw, per room.
#[derive(Debug, Default)]
pub struct Log {
    pub events: BTreeMap<String, Vec<(Position, String)>>,
    pub gaps: BTreeMap<String, Vec<Missed>>,
    pub subscribed: Vec<String>,
    pub acked: Vec<(u64, Position)>,
}

impl Log {
    pub fn add(&mut self, seen: Seen) {
        match seen {
            Seen::Event {
                room,
                position,
                payload,
            } => self
                .events
                .entry(room)
                .or_default()
                .push((position, payload)),
            Seen::Gap { room, missed } => self.gaps.entry(room).or_default().push(missed),
            Seen::Subscribed { room } => self.subscribed.push(room),
            Seen::Acked { id, position } => self.acked.push((id, position)),
            Seen::Other => {}
        }
    }

    pub fn count(&self, room: &str) -> usize {
        self.events.get(room).map_or(0, Vec::len)
    }

    /// Receives into the log until `done` holds; fails after [`LIMIT`].
    pub fn until(&mut self, client: &mut dyn TestClient, what: &str, done: impl Fn(&Log) -> bool) {
        let deadline = Instant::now() + LIMIT;
        while !done(self) {
            match client.recv(deadline) {
                Some(seen) => self.add(seen),
                None => panic!(
                    "timed out waiting for {what}; counts {:?}, gaps {:?}",
                    self.events
                        .iter()
                        .map(|(r, e)| (r, e.len()))
                        .collect::<Vec<_>>(),
                    self.gaps
                ),
            }
        }
    }

    /// Every event of `room` exactly once, in order, from offset 1, in `epoch`, with these
    /// payloads.
    pub fn assert_exactly(&self, room: &str, epoch: u32, expected: &[String]) {
        let got = self.events.get(room).cloned().unwrap_or_default();
        let offsets: Vec<u64> = got.iter().map(|(p, _)| p.offset).collect();
        let want: Vec<u64> = (1..=expected.len() as u64).collect();
        assert_eq!(offsets, want, "{room}: every event once, in order");
        assert!(got.iter().all(|(p, _)| p.epoch == epoch), "{room}: epoch");
        let payloads: Vec<&String> = got.iter().map(|(_, s)| s).collect();
        assert_eq!(payloads, expected.iter().collect::<Vec<_>>());
    }
}

/// A TCP proxy on 127.0.0.1 that can cut every connection through it and change its target.
#[derive(Clone)]
pub struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let proxy = Proxy {
            addr: listener.local_addr().expect("the proxy's address"),
            target: Arc::new(Mutex::new(target)),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let shared = proxy.clone();
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                let to = *shared.target.lock().unwrap();
                let Ok(outbound) = TcpStream::connect(to) else {
                    continue;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                if let (Ok(a), Ok(b)) = (inbound.try_clone(), outbound.try_clone()) {
                    shared.open.lock().unwrap().extend([a, b]);
                }
                pump(&inbound, &outbound);
                pump(&outbound, &inbound);
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Cuts every connection through the proxy (both directions, at once).
    pub fn cut_all(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// New connections go to `target`.
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }
}

/// Copies `from` to `to` on a thread until either ends, then ends both.
fn pump(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}
