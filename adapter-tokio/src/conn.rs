//! One server connection: the TLS handshake for `wss://`, its HTTP requests (`http`), and on a
//! WebSocket upgrade (the core's `handshake::decide` in hyper's 101) the loop around a core
//! `ServerSession`.
//!
//! The loop (STYLE habit 9): read the clock, feed inputs, then write everything the session has
//! while the socket takes it, then act, then wait for the first of: a message, the session's
//! deadline, new events in the hub, shutdown. Writes wait for the socket (bounded by the write
//! buffer), so a slow peer only slows its own task; if a single write cannot drain within the
//! write timeout, the peer is closed as a slow consumer and resumes from its position later.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use eventwire_core::codec::Codec;
use eventwire_core::handshake::{self, Upgrade};
use eventwire_core::hub::Counter;
use eventwire_core::server::http::{Answer, Refusal};
use eventwire_core::server::{Connection, Decision, Framing, SessionState};
use eventwire_core::CloseCode;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, CONNECTION, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info_span, warn, Instrument};

use crate::http::{self, Plain, Response};
use crate::hub::Tokio;
use crate::server::{shutdown_requested, Peer, ServerConfig, ServerState};
use crate::wire::{Recv, Wire, WsWire};

/// An upgrade answered 101, until hyper hands the connection over.
pub(crate) struct Upgrading {
    pub(crate) on: OnUpgrade,
    pub(crate) codec: Codec,
    /// The request's headers, for the authentication hook.
    pub(crate) headers: Vec<(String, String)>,
}

/// A connection hyper handed over after the 101.
pub(crate) struct Upgraded {
    pub(crate) io: hyper::upgrade::Upgraded,
    pub(crate) codec: Codec,
    pub(crate) headers: Vec<(String, String)>,
}

/// The WebSocket's buffers and limits from the configuration, for tungstenite here and inside
/// axum: frames and messages within `session.max_frame`; writes go straight to the write buffer,
/// which holds at least one largest frame.
pub(crate) struct Buffers {
    pub(crate) read: usize,
    pub(crate) max_write: usize,
    pub(crate) max_message: usize,
}

impl Buffers {
    pub(crate) fn of(config: &ServerConfig) -> Buffers {
        let max_message = config.session.max_frame as usize;
        Buffers {
            read: config.read_buffer,
            max_write: config.write_buffer.max(max_message + 1024),
            max_message,
        }
    }
}

fn ws_config(shared: &ServerState) -> WebSocketConfig {
    let b = Buffers::of(&shared.config);
    WebSocketConfig::default()
        .read_buffer_size(b.read)
        .write_buffer_size(0)
        .max_write_buffer_size(b.max_write)
        .max_message_size(Some(b.max_message))
        .max_frame_size(Some(b.max_message))
}

/// During shutdown, the answer to an upgrade request: 503 with `Retry-After`.
pub(crate) fn shutting_down(shared: &ServerState) -> Option<Response> {
    let retry_after = (*shared.shutdown.borrow())?;
    Some(http::response(
        Refusal::ShuttingDown { retry_after }.answer(),
    ))
}

/// The core's decision on an upgrade request's `Origin` and `Sec-WebSocket-Protocol`
/// (`handshake::decide`), its refusal as the answer (403 or 400).
pub(crate) fn decide(shared: &ServerState, headers: &HeaderMap) -> Result<Upgrade, Answer> {
    handshake::decide(
        shared
            .config
            .origins
            .for_request(headers.get(HOST).map(|v| v.as_bytes())),
        headers.get(ORIGIN).map(|v| v.as_bytes()),
        headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .map(|v| v.as_bytes()),
    )
    .map_err(|refusal| Answer::text(refusal.status(), refusal.reason()))
}

/// Answers a WebSocket upgrade request: 101 with the subprotocol the core picked
/// (`handshake::decide`) and the upgrade to await; or the refusal alone: 403 when WebSockets are
/// off, 503 with `Retry-After` during shutdown, 400 (426 for another WebSocket version) for a
/// request that is not an upgrade by RFC 6455 section 4.2.1, then the core's 403 or 400.
pub(crate) fn upgrade(
    req: &mut Request<Incoming>,
    shared: &ServerState,
) -> (Response, Option<Upgrading>) {
    let config = &shared.config;
    if !config.websocket {
        return (
            http::error(403, "WebSocket disabled: use long-polling"),
            None,
        );
    }
    if let Some(refusal) = shutting_down(shared) {
        return (refusal, None);
    }
    let key = match check_rfc6455(req) {
        Ok(key) => key,
        Err(not) => return (not.response(), None),
    };
    let Upgrade { codec, subprotocol } = match decide(shared, req.headers()) {
        Ok(upgrade) => upgrade,
        Err(refusal) => return (http::response(refusal), None),
    };
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    out.insert(SEC_WEBSOCKET_ACCEPT, key);
    if let Some(name) = subprotocol {
        out.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(name));
    }
    let upgrading = Upgrading {
        codec,
        headers: http::header_pairs(req.headers()),
        on: hyper::upgrade::on(req),
    };
    (response, Some(upgrading))
}

/// Why a request asking for a WebSocket is not an opening handshake.
enum NotAnUpgrade {
    /// A rule of RFC 6455 section 4.2.1 broken: 400.
    Bad(&'static str),
    /// Another WebSocket version: 426, naming the one this server speaks (section 4.4).
    Version,
}

impl NotAnUpgrade {
    fn response(self) -> Response {
        match self {
            NotAnUpgrade::Bad(why) => {
                http::error(400, &format!("not a WebSocket opening handshake: {why}"))
            }
            NotAnUpgrade::Version => {
                let mut refusal = http::error(426, "WebSocket version 13 required");
                refusal
                    .headers_mut()
                    .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                refusal
            }
        }
    }
}

/// The checks of RFC 6455 section 4.2.1 on an opening handshake; the `Sec-WebSocket-Accept`
/// value that answers it.
fn check_rfc6455(req: &Request<Incoming>) -> Result<HeaderValue, NotAnUpgrade> {
    if req.method() != Method::GET {
        return Err(NotAnUpgrade::Bad("the method must be GET"));
    }
    if req.version() < Version::HTTP_11 {
        return Err(NotAnUpgrade::Bad("HTTP/1.1 or later required"));
    }
    let headers = req.headers();
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| http::has_token(v, "upgrade"));
    if !connection_upgrade {
        return Err(NotAnUpgrade::Bad("Connection must list Upgrade"));
    }
    if headers.get(SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(NotAnUpgrade::Version);
    }
    let bad_key = NotAnUpgrade::Bad("Sec-WebSocket-Key must be 16 bytes in base64");
    match headers.get(SEC_WEBSOCKET_KEY) {
        Some(key) if is_nonce(key.as_bytes()) => {
            HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| bad_key)
        }
        _ => Err(bad_key),
    }
}

/// Whether a `Sec-WebSocket-Key` is the base64 form of 16 bytes: 22 characters of the alphabet,
/// then the padding `==`.
fn is_nonce(key: &[u8]) -> bool {
    let base64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    key.len() == 24 && key[..22].iter().all(base64) && &key[22..] == b"=="
}

/// Serves one accepted connection to its end. `stream` yields its byte stream: at once for plain
/// TCP, after the TLS handshake for `wss://`, which must end within the upgrade timeout. Its
/// HTTP requests are served by `http` (each head within the upgrade timeout too); a WebSocket
/// upgrade continues here, and is checked against the connection limit then (over it, the
/// client is told to come back later). `plain` keeps the connection out of the limit until then.
pub(crate) async fn serve<S, F>(stream: F, peer: SocketAddr, shared: Arc<ServerState>, plain: Plain)
where
    F: Future<Output = io::Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let span = info_span!("connection", %peer);
    async move {
        let mut shutdown = shared.shutdown.clone();
        let handshake = tokio::time::timeout(shared.config.upgrade_timeout, stream);
        let stream = tokio::select! {
            done = handshake => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!("TLS handshake timed out");
                    return;
                }
            },
            // A connection that has not said anything yet is not worth waiting for.
            _ = shutdown_requested(&mut shutdown) => return,
        };
        // Each stage is boxed: the task holds only the stage it is in, so an idle connection
        // does not carry the HTTP stage's state (hyper's connection) for its whole life.
        let Some(upgraded) = Box::pin(http::serve(stream, peer, &shared)).await else {
            return;
        };
        drop(plain);
        let over_capacity = over_capacity(&shared);
        let ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded.io),
            Role::Server,
            Some(ws_config(&shared)),
        )
        .await;
        debug!(codec = ?upgraded.codec, "connected");
        let wire = WsWire::new(ws, upgraded.codec);
        Box::pin(drive(wire, peer, upgraded.headers, &shared, over_capacity)).await;
        debug!("closed");
    }
    .instrument(span)
    .await
}

/// Whether a connection that just became a WebSocket is over `max_connections`: the others
/// open, less those speaking plain HTTP (polling sessions count for their requests).
fn over_capacity(shared: &ServerState) -> bool {
    shared
        .hub
        .counters()
        .over_limit(shared.config.max_connections, shared.polls.requests())
}

/// A core connection and what the application's hooks are told about its peer; shared by the
/// socket loop below and the polling sessions (`polling`), which keep one per session.
pub(crate) struct Conn {
    pub(crate) machine: Connection<Tokio>,
    /// Woken by appends to the rooms the connection holds.
    pub(crate) waker: Arc<Notify>,
    peer: Peer,
    headers: Vec<(String, String)>,
}

/// Runs a connection over `wire` until it ends. `headers` are the upgrade request's (empty for
/// raw byte streams), handed to the authentication hook.
pub(crate) async fn drive<W: Wire>(
    mut wire: W,
    addr: SocketAddr,
    headers: Vec<(String, String)>,
    shared: &ServerState,
    over_capacity: bool,
) {
    let hub = &shared.hub;
    let clock = hub.runtime().clock;
    let mut conn = Conn::new(shared, addr, headers, over_capacity, wire.framing());
    let mut shutdown = shared.shutdown.clone();
    let mut cuts = shared.cuts.subscribe();
    let write_timeout = shared.config.write_timeout;
    let mut out = Vec::with_capacity(1024);
    loop {
        // Write everything the connection has, while the transport takes it.
        let mut wrote = false;
        loop {
            out.clear();
            if conn.machine.poll_transmit(clock.now(), &mut out).is_none() {
                break;
            }
            // Counted before the peer can have it, so statistics never lag behind a client.
            hub.count(conn.machine.take_counts());
            match tokio::time::timeout(write_timeout, wire.feed(&out)).await {
                Ok(Ok(())) => wrote = true,
                Ok(Err(e)) => {
                    debug!(error = %e, "write failed");
                    return;
                }
                Err(_) => return slow_consumer(shared),
            }
        }
        if wrote {
            match tokio::time::timeout(write_timeout, wire.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => return slow_consumer(shared),
            }
        }
        hub.count(conn.machine.take_counts());
        if let Some(code) = conn.machine.poll_close() {
            debug!(%code, "closing");
            let _ = tokio::time::timeout(write_timeout, wire.close(code)).await;
            return;
        }
        if conn.machine.state() == SessionState::Closed {
            return;
        }
        let deadline = conn.machine.poll_timeout().map(|t| clock.to_tokio(t));
        tokio::select! {
            received = wire.recv() => match received {
                Recv::Data(unit) => {
                    W::input(&mut conn.machine, clock.now(), hub.hub(), &unit);
                    conn.after_input(shared).await;
                }
                Recv::Nothing => {}
                Recv::Violation(error) => conn.machine.handle_transport_error(error),
                Recv::Ended => return,
            },
            _ = sleep_until(deadline) => conn.machine.handle_timeout(clock.now()),
            _ = conn.waker.notified() => {}
            Ok(()) = cuts.changed() => {
                if cuts.borrow_and_update().hits(conn.machine.session_id()) {
                    debug!("cut by fault injection");
                    return;
                }
            }
            retry = shutdown_requested(&mut shutdown) => {
                conn.machine.close(CloseCode::GOING_AWAY, Some(retry), "server shutting down");
            }
        }
    }
}

fn slow_consumer(shared: &ServerState) {
    shared.hub.counters().slow_consumers.add(1);
    warn!("peer stopped reading; closing");
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Conn {
    /// A new connection from `addr`; `over_capacity` ones are closed with `TRY_AGAIN_LATER` at
    /// once.
    pub(crate) fn new(
        shared: &ServerState,
        addr: SocketAddr,
        headers: Vec<(String, String)>,
        over_capacity: bool,
        framing: Framing,
    ) -> Conn {
        let waker = Arc::new(Notify::new());
        let seed = RandomState::new().hash_one(addr);
        Conn {
            machine: shared.hub.open_connection(
                shared.config.session,
                framing,
                seed,
                waker.clone(),
                over_capacity,
            ),
            waker,
            peer: Peer::new(addr),
            headers,
        }
    }

    /// Answers the application requests the last input raised (the hooks run with the hub
    /// unlocked), and counts what the input appended.
    pub(crate) async fn after_input(&mut self, shared: &ServerState) {
        let hub = &shared.hub;
        while let Some(request) = self.machine.poll_decision() {
            match request {
                Decision::Authenticate { client_id, token } => {
                    let request = self.peer.authenticating(client_id, token, &self.headers);
                    let verdict = match &shared.config.auth {
                        Some(hook) => hook(request).await,
                        None => Ok(shared.config.grants.clone()),
                    };
                    self.machine.settle_auth(hub.runtime().clock.now(), verdict);
                }
                Decision::Authorize { room } => {
                    let allowed = match &shared.config.authorize {
                        Some(hook) => hook(&self.peer, &room),
                        None => true,
                    };
                    self.machine.settle_join(hub.hub(), &room, allowed);
                }
                // Publishes are appended by the session itself (`SharedHub::open_connection`).
                _ => {}
            }
        }
        hub.count(self.machine.take_counts());
    }
}
