//! One server connection: the WebSocket upgrade (after the TLS handshake for `wss://`), then the
//! loop around a core `ServerSession`.
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
use eventwire_core::handshake::{self, Refusal, Upgrade};
use eventwire_core::hub::Counter;
use eventwire_core::server::{Connection, Decision, Framing, SessionState};
use eventwire_core::{CloseCode, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info_span, warn, Instrument};

use crate::http::{self, Sniffed};
use crate::hub::Tokio;
use crate::server::{shutdown_requested, AuthRequest, Peer, Shared};
use crate::wire::{Recv, Wire, WsWire};

/// What the upgrade learned about the peer.
struct Upgraded {
    codec: Codec,
    headers: Vec<(String, String)>,
}

/// The HTTP answer to a refused upgrade; the decision is the core's (`handshake::decide`).
fn refuse(refusal: Refusal) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(refusal.reason().to_owned()));
    *response.status_mut() =
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    response
}

fn ws_config(shared: &Shared) -> WebSocketConfig {
    let max = shared.config.session.max_frame as usize;
    WebSocketConfig::default()
        .read_buffer_size(shared.config.read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(shared.config.write_buffer.max(max + 1024))
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Serves one accepted connection to its end. `stream` yields its byte stream: at once for plain
/// TCP, after the TLS handshake for `wss://`; it runs inside the upgrade timeout, with the
/// WebSocket upgrade. `over_capacity` connections are told to come back later.
pub(crate) async fn serve<S, F>(
    stream: F,
    peer: SocketAddr,
    shared: Arc<Shared>,
    over_capacity: bool,
) where
    F: Future<Output = io::Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let span = info_span!("connection", %peer);
    async move {
        let mut upgrade = None;
        let allowed = shared.config.allowed_origins.clone();
        #[allow(clippy::result_large_err)] // tungstenite's callback signature
        let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
            let offered = req.headers().get_all("sec-websocket-protocol");
            let origin = req.headers().get("origin").map(|v| v.as_bytes());
            let decided = handshake::decide(
                allowed.as_deref(),
                origin,
                offered.iter().map(|v| v.as_bytes()),
            );
            let codec = match decided {
                Ok(Upgrade { codec, subprotocol }) => {
                    if let Some(name) = subprotocol {
                        resp.headers_mut()
                            .insert("sec-websocket-protocol", HeaderValue::from_static(name));
                    }
                    codec
                }
                Err(refusal) => return Err(refuse(refusal)),
            };
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            upgrade = Some(Upgraded { codec, headers });
            Ok(resp)
        };
        let config = ws_config(&shared);
        // A plain HTTP request (long-polling, a route: `http`) is read in full within the same
        // budget, then served (and a polling one held) outside it; an upgrade goes on.
        let accept = async {
            let stream = stream.await?;
            match http::sniff(stream, peer, &shared).await? {
                Sniffed::Upgrade(stream) => {
                    tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config))
                        .await
                        .map(Ok)
                }
                Sniffed::Http(request) => Ok(Err(request)),
            }
        };
        let ws = match tokio::time::timeout(shared.config.upgrade_timeout, accept).await {
            Ok(Ok(Ok(ws))) => ws,
            Ok(Ok(Err(request))) => {
                request.serve(peer, &shared).await;
                return;
            }
            Ok(Err(e)) => {
                debug!(error = %e, "upgrade failed");
                return;
            }
            Err(_) => {
                debug!("upgrade timed out");
                return;
            }
        };
        let Some(upgrade) = upgrade else { return };
        debug!(codec = ?upgrade.codec, "connected");
        let wire = WsWire::new(ws, upgrade.codec);
        drive(wire, peer, upgrade.headers, &shared, over_capacity).await;
        debug!("closed");
    }
    .instrument(span)
    .await
}

/// A core connection and what the application's hooks are told about its peer; shared by the
/// socket loop below and the polling sessions (`poll`), which keep one per session.
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
    shared: &Shared,
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

fn slow_consumer(shared: &Shared) {
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
        shared: &Shared,
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
            peer: Peer {
                client_id: 0,
                token: None,
                addr,
            },
            headers,
        }
    }

    /// Answers the application requests the last input raised (the hooks run with the hub
    /// unlocked), and counts what the input appended.
    pub(crate) async fn after_input(&mut self, shared: &Shared) {
        let hub = &shared.hub;
        while let Some(request) = self.machine.poll_decision() {
            match request {
                Decision::Authenticate { client_id, token } => {
                    self.peer.client_id = client_id;
                    self.peer.token.clone_from(&token);
                    let request = AuthRequest {
                        client_id,
                        token,
                        headers: self.headers.clone(),
                        peer: self.peer.addr,
                    };
                    let verdict = match &shared.config.auth {
                        Some(hook) => hook(request).await,
                        None => Ok(()),
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
                Decision::Publish { id, .. } => {
                    // This server appends publishes itself; a session configured to hand them
                    // over has no one to apply them.
                    let now = hub.runtime().clock.now();
                    let _ = self.machine.publish_done(
                        hub.hub(),
                        now,
                        id,
                        Err(ErrorCode::PUBLISH_REJECTED),
                    );
                }
                _ => {}
            }
        }
        hub.count(self.machine.take_counts());
    }
}
