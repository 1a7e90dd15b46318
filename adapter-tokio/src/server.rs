//! The standalone WebSocket server: accepts connections and runs one task per connection.
//!
//! Limits are set deliberately rather than left to tungstenite's and hyper's defaults (64 MiB
//! messages, unlimited write buffer, 128 KiB read buffer, no accept timeout, no write timeout):
//!
//! | limit | default | on breach |
//! |---|---|---|
//! | message size (`session.max_frame`) | 64 KiB | close 1009; nothing is buffered for the message |
//! | TLS handshake time (`upgrade_timeout`) | 10 s | connection dropped |
//! | each HTTP request head (the upgrade's too), and an idle keep-alive connection, (`upgrade_timeout`) | 10 s | connection closed |
//! | HTTP request head size | 8 KiB | 431 |
//! | an HTTP request body's arrival (`upgrade_timeout`) | 10 s | 408 |
//! | a route's request body ([`MAX_ROUTE_BODY`](crate::MAX_ROUTE_BODY)) | 64 KiB | 413 |
//! | an HTTP response the peer does not read (`write_timeout`) | 30 s | connection closed |
//! | hello + authentication time (`session.handshake_timeout`) | 10 s | close 4000 |
//! | connections | 10,000 | close 1013 with a retry-after hint |
//! | read buffer per connection | 4 KiB | (grows only to the message limit) |
//! | write buffer per connection | 64 KiB | the connection waits for the socket (backpressure) |
//! | a write that does not drain | 30 s | connection closed as a slow consumer |
//! | browser origins (`origins`) | the server's own (same-origin) | upgrade (and polling request) refused with 403 |
//! | subscriptions, publish rate | from `session` | error frames, then close 4004 |
//! | bytes a connection sends (`session.max_bytes_in`) | 1 MiB/s, one second's burst | close 4004 with retry-after 1 s |
//! | polling request body (`max_poll_body`) | 256 KiB | 413 before any of it is read |
//! | frames per polling request (`max_poll_frames`) | 64 | 400, and the session ends (1008) |
//! | polling request held (`long_poll`) | 25 s | answered with no frames |
//! | polling session without a request (`poll_idle`) | 30 s | session ended (a disconnect) |
//!
//! HTTP long-polling (PROTOCOL.md 1.4) is served on the same port: `POST` to `poll_path`
//! (default `/eventwire/poll`), with keep-alive (a client's successive requests may share a
//! connection); every polling session counts as a connection, and a connection speaking plain
//! HTTP does not (see `http`).
//!
//! With the `tls` feature, `Server::bind_tls` serves `wss://`: the TLS handshake runs first,
//! within the upgrade timeout, so a peer that stalls it is dropped like one that stalls its
//! request head.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use eventwire_core::handshake::OriginPolicy;
use eventwire_core::hub::Counter;
pub use eventwire_core::server::{AuthRequest, Peer};
use eventwire_core::server::{Grants, ServerConfig as SessionConfig};
use eventwire_core::CloseCode;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use crate::http::{HttpRequest, HttpResponse, Route};
use crate::hub::Hub;
use crate::{conn, http, polling, tcp};

/// The result of the authentication hook: the connection's [`Grants`] (what it may publish;
/// [`Grants::none`] for a read-only client), or `Err` to close with the given code (usually
/// [`CloseCode::UNAUTHORIZED`]).
pub type AuthResult = Result<Grants, CloseCode>;

/// An asynchronous authentication hook.
pub type AuthHook =
    Arc<dyn Fn(AuthRequest) -> Pin<Box<dyn Future<Output = AuthResult> + Send>> + Send + Sync>;

/// A room authorisation hook: whether `peer` may join `room`.
pub type RoomHook = Arc<dyn Fn(&Peer, &str) -> bool + Send + Sync>;

/// Configuration of a [`Server`]; every limit has a safe default (see the module table).
#[derive(Clone)]
pub struct ServerConfig {
    /// Session limits and timings of the core (frame size, subscriptions, publish rate,
    /// heartbeat, batching).
    pub session: SessionConfig,
    /// Most open connections.
    pub max_connections: usize,
    /// Longest TLS handshake, and longest wait for each HTTP request head (a WebSocket
    /// upgrade's, or the next request on a kept-alive connection) and for its body.
    pub upgrade_timeout: Duration,
    /// Which browsers may connect, by the `Origin` header they send: by default only the
    /// server's own pages ([`OriginPolicy::SameOrigin`]). Requests without an `Origin`
    /// (non-browser clients) are allowed whatever the policy.
    pub origins: OriginPolicy,
    /// Longest time one write may wait for the socket before the peer counts as stalled (its
    /// connection is closed; a WebSocket peer counts as a slow consumer).
    pub write_timeout: Duration,
    /// tungstenite's read buffer per connection.
    pub read_buffer: usize,
    /// tungstenite's write buffer per connection before it waits for the socket.
    pub write_buffer: usize,
    /// Authentication hook; `None` accepts every hello.
    pub auth: Option<AuthHook>,
    /// Room authorisation hook; `None` allows every room.
    pub authorize: Option<RoomHook>,
    /// What every connection may publish when there is no authentication hook (with one, its
    /// verdict decides). Default [`Grants::none`]: clients only read.
    pub grants: Grants,
    /// Path of HTTP long-polling requests on the standalone server (the axum mount uses the
    /// path it is routed at).
    pub poll_path: String,
    /// Largest polling request body, in bytes; also the budget of a response's frames.
    pub max_poll_body: usize,
    /// Most frames in one polling request.
    pub max_poll_frames: usize,
    /// Longest time a polling request is held waiting for frames.
    pub long_poll: Duration,
    /// A polling session without a request for this long ends.
    pub poll_idle: Duration,
    /// Whether WebSocket upgrades are accepted; when off they get 403 and clients fall back to
    /// long-polling (for deployments behind proxies that break WebSockets, and for testing the
    /// fallback).
    pub websocket: bool,
    /// Plain HTTP routes on the standalone server's port, by exact path (see [`Route`]).
    pub routes: Vec<(String, Route)>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: SessionConfig::new(),
            max_connections: 10_000,
            upgrade_timeout: Duration::from_secs(10),
            origins: OriginPolicy::SameOrigin,
            write_timeout: Duration::from_secs(30),
            read_buffer: 4 * 1024,
            write_buffer: 64 * 1024,
            auth: None,
            authorize: None,
            grants: Grants::none(),
            poll_path: "/eventwire/poll".to_owned(),
            max_poll_body: 256 * 1024,
            max_poll_frames: 64,
            long_poll: Duration::from_secs(25),
            poll_idle: Duration::from_secs(30),
            websocket: true,
            routes: Vec::new(),
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

    /// Sets the upgrade timeout: the TLS handshake, and each HTTP request head and body.
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.upgrade_timeout = timeout;
        self
    }

    /// Allows browsers from these origins (`scheme://host[:port]`, for example
    /// `https://dash.example`) besides the server's own pages.
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        origins: I,
    ) -> Self {
        self.origins = OriginPolicy::Listed(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Allows browsers from any origin: for development only, since any web page its visitors
    /// open may then connect with their access. The server says so at startup.
    pub fn allow_any_origin(mut self) -> Self {
        self.origins = OriginPolicy::Any;
        self
    }

    /// Sets the stalled-write timeout.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets the authentication hook.
    pub fn auth<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(AuthRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = AuthResult> + Send + 'static,
    {
        self.auth = Some(Arc::new(move |req| Box::pin(hook(req))));
        self
    }

    /// Sets the path of HTTP long-polling requests (standalone server).
    pub fn poll_path(mut self, path: impl Into<String>) -> Self {
        self.poll_path = path.into();
        self
    }

    /// Sets the largest polling request body.
    pub fn max_poll_body(mut self, bytes: usize) -> Self {
        self.max_poll_body = bytes;
        self
    }

    /// Sets the most frames in one polling request.
    pub fn max_poll_frames(mut self, frames: usize) -> Self {
        self.max_poll_frames = frames;
        self
    }

    /// Sets how long a polling request is held waiting for frames.
    pub fn long_poll(mut self, wait: Duration) -> Self {
        self.long_poll = wait;
        self
    }

    /// Sets how long a polling session lives without a request.
    pub fn poll_idle(mut self, idle: Duration) -> Self {
        self.poll_idle = idle;
        self
    }

    /// Accepts WebSocket upgrades (`true`, the default) or refuses them with 403 so that
    /// clients use long-polling.
    pub fn websocket(mut self, accept: bool) -> Self {
        self.websocket = accept;
        self
    }

    /// Serves plain HTTP requests to `path` (exact match, any method, the query ignored) with
    /// `handler`, on the standalone server's port: a status page, a snapshot of application
    /// state, the browser client ([`ServerConfig::serve_client`]). A later route for the same
    /// path replaces an earlier one.
    ///
    /// ```
    /// use eventwire_tokio::{HttpResponse, ServerConfig};
    ///
    /// let config = ServerConfig::default()
    ///     .route("/health", |_req| HttpResponse::new(200, "text/plain", "ok"));
    /// ```
    pub fn route<F>(mut self, path: impl Into<String>, handler: F) -> Self
    where
        F: Fn(&HttpRequest) -> HttpResponse + Send + Sync + 'static,
    {
        let path = path.into();
        self.routes.retain(|(p, _)| *p != path);
        self.routes.push((path, Arc::new(handler)));
        self
    }

    /// Serves a file embedded in the program (`include_str!`) at `path`: `GET` gets it with
    /// `content_type`, `Cache-Control: no-cache` and `Access-Control-Allow-Origin: *` (a public
    /// file, which a page on another origin may import as a module); other methods get 405.
    pub fn serve_static(
        self,
        path: impl Into<String>,
        content_type: &'static str,
        body: &'static str,
    ) -> Self {
        self.route(path, move |req| {
            if req.method != "GET" {
                return HttpResponse::error(405, "method not allowed").header("Allow", "GET");
            }
            HttpResponse::new(200, content_type, body)
                .header("Access-Control-Allow-Origin", "*")
                .header("Cache-Control", "no-cache")
        })
    }

    /// Serves the browser client ([`crate::js::CLIENT_JS`]) at `path` (for example
    /// `/eventwire.js`), and its TypeScript declarations at the same path with `.d.ts` in
    /// place of `.js`, as [`ServerConfig::serve_static`] files.
    pub fn serve_client(self, path: &str) -> Self {
        let declarations = match path.strip_suffix(".js") {
            Some(stem) => format!("{stem}.d.ts"),
            None => format!("{path}.d.ts"),
        };
        self.serve_static(path, crate::js::JS_CONTENT_TYPE, crate::js::CLIENT_JS)
            .serve_static(
                declarations,
                crate::js::DTS_CONTENT_TYPE,
                crate::js::CLIENT_DTS,
            )
    }

    /// Sets what every connection may publish when there is no authentication hook, for
    /// example `Grants::publish_to(["notes"])`. Without this, clients cannot publish at all.
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
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

pub(crate) struct ServerState {
    pub(crate) hub: Hub,
    pub(crate) config: ServerConfig,
    /// `Some(retry_after)` once shutting down.
    pub(crate) shutdown: watch::Receiver<Option<Duration>>,
    pub(crate) idle: Notify,
    /// HTTP long-polling sessions.
    pub(crate) polls: polling::Registry,
    /// Injected faults: every connection task checks each new [`Cut`] against its session.
    pub(crate) cuts: watch::Sender<Cut>,
}

/// One round of injected connection cuts ([`Server::drop_connections`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cut {
    round: u64,
    /// Probability as a fraction of `u64::MAX`.
    threshold: u64,
}

impl Cut {
    /// Whether this round cuts the connection whose session is `id`: a hash of the two, so
    /// that each connection is drawn independently and a run can be replayed.
    pub(crate) fn hits(&self, id: u64) -> bool {
        if self.threshold == 0 {
            return false;
        }
        // SplitMix64's finaliser over the pair.
        let mut z = id ^ self.round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        z < self.threshold
    }
}

/// The state of a server's connections, and the sender that starts its shutdown (send
/// `Some(retry_after)`).
/// Resolves with the retry-after hint once shutdown is asked for. A dropped sender never
/// resolves it: a `Server` handle dropped without `shutdown` leaves the server running.
pub(crate) async fn shutdown_requested(rx: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(retry) = *rx.borrow_and_update() {
            return retry;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

pub(crate) fn new_shared(
    hub: Hub,
    config: ServerConfig,
) -> (Arc<ServerState>, watch::Sender<Option<Duration>>) {
    let (stop, shutdown) = watch::channel(None);
    let shared = Arc::new(ServerState {
        hub,
        polls: polling::Registry::new(&config),
        config,
        shutdown,
        idle: Notify::new(),
        cuts: watch::channel(Cut::default()).0,
    });
    (shared, stop)
}

/// How the connections of a listener are served.
#[derive(Clone)]
pub(crate) enum Transport {
    /// A WebSocket upgrade, then one frame per message (`conn::serve`).
    WebSocket,
    /// A TLS handshake, then as `WebSocket`.
    #[cfg(feature = "tls")]
    Tls(tokio_rustls::TlsAcceptor),
    /// COBS-framed binary frames on the raw TCP stream (`tcp::serve`).
    Cobs,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::WebSocket => "WebSocket",
            #[cfg(feature = "tls")]
            Transport::Tls(_) => "Tls",
            Transport::Cobs => "Cobs",
        })
    }
}

/// A running server; dropping it does not stop it, [`Server::shutdown`] does.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<ServerState>,
    stop: watch::Sender<Option<Duration>>,
}

impl Server {
    /// Binds `addr` and starts serving `hub` in the background.
    pub async fn bind<A: ToSocketAddrs>(
        addr: A,
        hub: Hub,
        config: ServerConfig,
    ) -> std::io::Result<Server> {
        Self::bind_with(addr, hub, config, Transport::WebSocket).await
    }

    /// Binds `addr` and serves `hub` over `wss://`: each connection's TLS handshake with `tls`
    /// (its certificates, ALPN and so on are the caller's) within
    /// [`ServerConfig::upgrade_timeout`], then HTTP/1.1 inside TLS (the WebSocket upgrade,
    /// long-polling, routes) as [`Server::bind`].
    ///
    /// ```no_run
    /// # async fn run(
    /// #     certs: Vec<eventwire_tokio::rustls::pki_types::CertificateDer<'static>>,
    /// #     key: eventwire_tokio::rustls::pki_types::PrivateKeyDer<'static>,
    /// # ) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use eventwire_tokio::{rustls, Hub, Server, ServerConfig};
    ///
    /// let tls = rustls::ServerConfig::builder()
    ///     .with_no_client_auth()
    ///     .with_single_cert(certs, key)?;
    /// let hub = Hub::new(Default::default());
    /// let config = ServerConfig::default();
    /// let server = Server::bind_tls("0.0.0.0:443", hub, config, Arc::new(tls)).await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub async fn bind_tls<A: ToSocketAddrs>(
        addr: A,
        hub: Hub,
        config: ServerConfig,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> std::io::Result<Server> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        Self::bind_with(addr, hub, config, Transport::Tls(acceptor)).await
    }

    /// Binds `addr` and serves `hub` over `transport`.
    pub(crate) async fn bind_with<A: ToSocketAddrs>(
        addr: A,
        hub: Hub,
        config: ServerConfig,
        transport: Transport,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let origins = config.origins.to_string();
        let (shared, stop) = new_shared(hub, config);
        info!(%addr, ?transport, %origins, "eventwire server listening");
        tokio::spawn(accept_loop(listener, shared.clone(), transport));
        Ok(Server { addr, shared, stop })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hub it serves.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// Cuts each open connection with probability `probability` (0 to 1), as a network fault
    /// would: a WebSocket or TCP connection is dropped without a close frame, a polling session
    /// is forgotten (its requests get 404). Clients reconnect and resume; nothing is lost. For
    /// demos and fault-injection tests (the dashboard example's `--chaos`). Returns how many
    /// polling sessions were cut (socket connections decide on their own tasks).
    pub fn drop_connections(&self, probability: f64) -> usize {
        drop_connections(&self.shared, probability)
    }

    /// Stops accepting, tells every client to reconnect after `retry_after` (close 1001 with the
    /// hint, so clients resume elsewhere with nothing lost), and waits for the connections to
    /// end (at most the write timeout).
    pub async fn shutdown(self, retry_after: Duration) {
        let _ = self.stop.send(Some(retry_after));
        let counters = &self.shared.hub.counters();
        wait_for_connections(&self.shared, || counters.connections.get()).await;
    }
}

/// Waits until `open` connections are none (each end notifies `idle`), at most the write
/// timeout: the end of a shutdown, for the standalone server and the axum mount.
pub(crate) async fn wait_for_connections(shared: &ServerState, open: impl Fn() -> u64) {
    let wait = async {
        loop {
            let idle = shared.idle.notified();
            if open() == 0 {
                return;
            }
            idle.await;
        }
    };
    if tokio::time::timeout(shared.config.write_timeout, wait)
        .await
        .is_err()
    {
        warn!("shutdown: connections still open after the write timeout");
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<ServerState>, transport: Transport) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    match &transport {
                        Transport::WebSocket => {
                            let plain = http::Plain::new(shared.clone());
                            let _ = count(&shared);
                            let stream = std::future::ready(Ok(stream));
                            let serve = conn::serve(stream, peer, shared.clone(), plain);
                            tokio::spawn(counted(shared, serve));
                        }
                        #[cfg(feature = "tls")]
                        Transport::Tls(acceptor) => {
                            let plain = http::Plain::new(shared.clone());
                            let _ = count(&shared);
                            let stream = acceptor.accept(stream);
                            let serve = conn::serve(stream, peer, shared.clone(), plain);
                            tokio::spawn(counted(shared, serve));
                        }
                        Transport::Cobs => {
                            let over = count(&shared);
                            let serve = tcp::serve(stream, peer, shared.clone(), over);
                            tokio::spawn(counted(shared, serve));
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown_requested(&mut shutdown) => return,
        }
    }
}

/// Counts an accepted connection in; `true` when it is over `max_connections`, polling requests
/// in flight left out. A WebSocket's own verdict comes when it upgrades (`conn::serve`), since a
/// connection speaking plain HTTP does not count toward the limit; a COBS stream's is this one.
#[must_use = "a COBS stream's admission"]
fn count(shared: &ServerState) -> bool {
    shared
        .hub
        .counters()
        .admit(shared.config.max_connections, shared.polls.requests())
}

/// Runs a connection counted by [`count`], and uncounts it at its end.
async fn counted(shared: Arc<ServerState>, serve: impl Future<Output = ()>) {
    serve.await;
    let counters = &shared.hub.counters();
    if counters.connections.sub(1) == 1 {
        shared.idle.notify_waiters();
    }
}

/// [`Server::drop_connections`], for every front that shares a `ServerState`.
pub(crate) fn drop_connections(shared: &ServerState, probability: f64) -> usize {
    let p = probability.clamp(0.0, 1.0);
    // `as` saturates: p = 1 gives u64::MAX, which every hash but u64::MAX is below.
    let threshold = (p * u64::MAX as f64) as u64;
    let mut cut = Cut::default();
    shared.cuts.send_modify(|c| {
        c.round += 1;
        c.threshold = threshold;
        cut = *c;
    });
    polling::cut(shared, &|id| cut.hits(id))
}
