//! The blocking WebSocket server: an accept thread, and a thread per connection.
//!
//! # Threads
//! One thread accepts connections; each accepted connection gets its own thread, which runs the
//! upgrade and then the connection's loop (`conn`), plus a small reader thread that moves bytes
//! from the socket into a bounded buffer and wakes the loop (`pipe`). A thread per connection
//! keeps each loop a plain sequence of blocking calls, isolates a slow peer in its own thread,
//! and is bounded by [`ServerConfig::max_connections`]: it suits the hundreds of connections of
//! a command-line tool, a daemon or a test rig. For tens of thousands, use `eventwire-tokio`.
//!
//! Graceful shutdown ([`Server::shutdown`]) closes every connection with 1001 and a retry-after
//! hint. Not served here, unlike the tokio adapter: HTTP long-polling, plain-TCP COBS streams and
//! TLS (`wss://`); put a TLS-terminating proxy in front for `wss://`.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use eventwire_core::server::ServerConfig as SessionConfig;
use eventwire_core::CloseCode;
use tracing::{debug, info, warn};

use crate::conn;
use crate::hub::{ConnWaker, Hub};

/// What the authentication hook gets.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    /// The client's identity from its hello.
    pub client_id: u64,
    /// The token from its hello.
    pub token: Option<String>,
    /// The HTTP headers of the WebSocket upgrade request (cookies, authorization).
    pub headers: Vec<(String, String)>,
    /// The peer's address.
    pub peer: SocketAddr,
}

/// Who a connection is, for the room authorisation hook.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's identity.
    pub client_id: u64,
    /// Its token.
    pub token: Option<String>,
    /// Its address.
    pub addr: SocketAddr,
}

/// The result of the authentication hook: `Err` closes with the given code (usually
/// [`CloseCode::UNAUTHORIZED`]).
pub type AuthResult = Result<(), CloseCode>;

/// An authentication hook. It runs on the connection's own thread, so it may block (a database
/// lookup, say) without holding up other connections.
pub type AuthHook = Arc<dyn Fn(AuthRequest) -> AuthResult + Send + Sync>;

/// A room authorisation hook: whether `peer` may join `room`.
pub type RoomHook = Arc<dyn Fn(&Peer, &str) -> bool + Send + Sync>;

/// Configuration of a [`Server`]; every limit has a safe default.
///
/// # Limits
/// Every limit is set deliberately, as in the tokio adapter's server:
///
/// | limit | default | on breach |
/// |---|---|---|
/// | message size (`session.max_frame`) | 64 KiB | close 1009; refused from the frame header, nothing is buffered for the message |
/// | WebSocket upgrade time (`upgrade_timeout`) | 10 s | connection dropped (every read and write of the upgrade is bounded by what is left) |
/// | hello + authentication time (`session.handshake_timeout`) | 10 s | close 4000 |
/// | connections | 10,000 | close 1013 with a retry-after hint |
/// | bytes read ahead per connection (`read_buffer`) | 4 KiB | the reader stops reading; TCP pushes back |
/// | write buffer per connection (`write_buffer`) | 64 KiB | writes block on the socket (backpressure) |
/// | a write that does not drain (`write_timeout`) | 30 s | connection closed as a slow consumer |
/// | allowed Origins | any | upgrade refused with 403 |
/// | subscriptions, publish rate | from `session` | error frames, then close 4004 |
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Session limits and timings of the core (frame size, subscriptions, publish rate,
    /// heartbeat, batching).
    pub session: SessionConfig,
    /// Most open connections.
    pub max_connections: usize,
    /// Longest WebSocket upgrade.
    pub upgrade_timeout: Duration,
    /// Origins allowed to connect (the `Origin` header browsers send); `None` allows any.
    /// Requests without an `Origin` (non-browser clients) are allowed either way.
    pub allowed_origins: Option<Vec<String>>,
    /// Longest time one write may block on the socket before the peer counts as stalled.
    pub write_timeout: Duration,
    /// Bytes read ahead of the connection's loop.
    pub read_buffer: usize,
    /// tungstenite's write buffer per connection.
    pub write_buffer: usize,
    /// Authentication hook; `None` accepts every hello.
    pub auth: Option<AuthHook>,
    /// Room authorisation hook; `None` allows every room.
    pub authorize: Option<RoomHook>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("session", &self.session)
            .field("max_connections", &self.max_connections)
            .field("upgrade_timeout", &self.upgrade_timeout)
            .field("allowed_origins", &self.allowed_origins)
            .field("write_timeout", &self.write_timeout)
            .field("read_buffer", &self.read_buffer)
            .field("write_buffer", &self.write_buffer)
            .field("auth", &self.auth.is_some())
            .field("authorize", &self.authorize.is_some())
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: SessionConfig::new(),
            max_connections: 10_000,
            upgrade_timeout: Duration::from_secs(10),
            allowed_origins: None,
            write_timeout: Duration::from_secs(30),
            read_buffer: 4 * 1024,
            write_buffer: 64 * 1024,
            auth: None,
            authorize: None,
        }
    }
}

impl ServerConfig {
    /// Sets the core session configuration.
    pub fn session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }

    /// Sets the connection limit.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets the WebSocket upgrade timeout.
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.upgrade_timeout = timeout;
        self
    }

    /// Allows only these Origins.
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        origins: I,
    ) -> Self {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the stalled-write timeout.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets the authentication hook.
    pub fn auth<F>(mut self, hook: F) -> Self
    where
        F: Fn(AuthRequest) -> AuthResult + Send + Sync + 'static,
    {
        self.auth = Some(Arc::new(hook));
        self
    }

    /// Sets the room authorisation hook.
    pub fn authorize<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Peer, &str) -> bool + Send + Sync + 'static,
    {
        self.authorize = Some(Arc::new(hook));
        self
    }
}

/// What a server's threads share.
pub(crate) struct Shared {
    pub(crate) hub: Hub,
    pub(crate) config: ServerConfig,
    /// `Some(retry_after)` once shutting down.
    shutdown: Mutex<Option<Duration>>,
    stopping: AtomicBool,
    /// Connections of this server still running, and the signal of their count reaching zero.
    open: Mutex<usize>,
    idle: Condvar,
    /// The loops of the open connections, by registration: shutdown wakes them all (an append
    /// wakes only those holding its room, through the hub).
    loops: Mutex<BTreeMap<u64, ConnWaker>>,
    next_loop: AtomicU64,
}

/// Keeps a connection loop registered for shutdown's wake-up; unregisters it when dropped.
pub(crate) struct Registration<'s> {
    shared: &'s Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.loops().remove(&self.id);
    }
}

impl Shared {
    /// The retry-after hint, once shutdown was asked for.
    pub(crate) fn shutdown_requested(&self) -> Option<Duration> {
        *self.shutdown.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self) -> MutexGuard<'_, usize> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn loops(&self) -> MutexGuard<'_, BTreeMap<u64, ConnWaker>> {
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes `waker` at shutdown, until the registration is dropped.
    pub(crate) fn register(&self, waker: ConnWaker) -> Registration<'_> {
        let id = self.next_loop.fetch_add(1, Ordering::Relaxed);
        self.loops().insert(id, waker);
        Registration { shared: self, id }
    }
}

/// A running WebSocket server (an accept thread and a thread per connection); dropping it does
/// not stop it, [`Server::shutdown`] does.
///
/// It serves the binary (`eventwire.v1`) and JSON (`eventwire.v1.json`) subprotocols with the
/// limits of [`ServerConfig`]. Unlike the tokio adapter's server it does not serve HTTP
/// long-polling, COBS byte streams or TLS: put a TLS-terminating proxy in front for `wss://`.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` and starts serving `hub` on background threads.
    pub fn bind<A: ToSocketAddrs>(addr: A, hub: Hub, config: ServerConfig) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            hub,
            config,
            shutdown: Mutex::new(None),
            stopping: AtomicBool::new(false),
            open: Mutex::new(0),
            idle: Condvar::new(),
            loops: Mutex::new(BTreeMap::new()),
            next_loop: AtomicU64::new(0),
        });
        info!(%addr, "eventwire server listening");
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("eventwire-accept".into())
                .spawn(move || accept_loop(&listener, &shared))?
        };
        Ok(Server {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hub it serves.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// Stops accepting, tells every client to reconnect after `retry_after` (close 1001 with the
    /// hint, so clients resume elsewhere with nothing lost), and waits for the connections to
    /// end (at most the write timeout).
    pub fn shutdown(mut self, retry_after: Duration) {
        *self
            .shared
            .shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(retry_after);
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The accept thread blocks in `accept`: a connection of our own wakes it to see the flag
        // (and it closes the listener as it ends).
        match TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1)) {
            Ok(_) => {
                if let Some(accept) = self.accept.take() {
                    let _ = accept.join();
                }
            }
            Err(e) => {
                warn!(error = %e, "shutdown: cannot wake the accept thread; it stops at its next connection")
            }
        }
        for waker in self.shared.loops().values() {
            waker.wake();
        }
        let deadline = Instant::now() + self.shared.config.write_timeout;
        let mut open = self.shared.open();
        while *open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(
                    open = *open,
                    "shutdown: connections still open after the write timeout"
                );
                return;
            }
            open = match self.shared.idle.wait_timeout(open, left) {
                Ok((open, _)) => open,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Where to connect to reach a listener bound to `addr` (a wildcard address means loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut to = addr;
    if to.ip().is_unspecified() {
        to.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    to
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                debug!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let counters = &shared.hub.counters();
        let over = counters.opened() >= shared.config.max_connections as u64;
        *shared.open() += 1;
        let conn_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("eventwire-conn".into())
            .spawn(move || {
                // Counted out however the connection ends, a panic included.
                let _open = Open(&conn_shared);
                conn::serve(tcp, peer, &conn_shared, over);
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot spawn a connection thread; connection dropped");
            drop(Open(shared));
        }
    }
}

/// A connection of this server; dropping it counts the connection out.
struct Open<'a>(&'a Shared);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        let shared = self.0;
        shared.hub.counters().closed();
        let mut open = shared.open();
        *open = open.saturating_sub(1);
        if *open == 0 {
            shared.idle.notify_all();
        }
    }
}
