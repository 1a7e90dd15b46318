//! One server connection: the WebSocket upgrade (after the TLS handshake for `wss://`), then the
//! loop around a core `ServerSession`.
//!
//! The loop (STYLE habit 9): read the clock, feed inputs, then write everything the session has
//! while the socket takes it, then act, then wait for the first of: a message, the session's
//! deadline, new events in the hub, shutdown. Writes wait for the socket (bounded by the write
//! buffer), so a slow peer only slows its own task; if a single write cannot drain within the
//! write timeout, the peer is closed as a slow consumer and resumes from its position later.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use eventwire_core::codec::Codec;
use eventwire_core::frame::Frame;
use eventwire_core::handshake::{self, Refusal, Upgrade};
use eventwire_core::server::{AuthPending, Decisions, ServerSession, SessionState};
use eventwire_core::{CloseCode, DecodeError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info_span, warn, Instrument};

use crate::http::{self, Sniffed};
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

/// A session and the application decisions it waits for; shared by the socket loop below and
/// the polling sessions (`poll`), which keep one per session.
pub(crate) struct Conn {
    pub(crate) session: ServerSession,
    peer: Peer,
    headers: Vec<(String, String)>,
    /// The requests the session raised while the hub was locked, settled after.
    decisions: Decisions,
}

/// Runs a connection's session over `wire` until it ends. `headers` are the upgrade request's
/// (empty for raw byte streams), handed to the authentication hook.
pub(crate) async fn drive<W: Wire>(
    mut wire: W,
    addr: SocketAddr,
    headers: Vec<(String, String)>,
    shared: &Shared,
    over_capacity: bool,
) {
    let hub = &shared.hub;
    let clock = hub.runtime().clock;
    let counters = &hub.counters();
    let mut conn = Conn::new(shared, addr, headers, over_capacity, wire.codec());
    let mut shutdown = shared.shutdown.clone();
    let mut changed = hub.runtime().changed.subscribe();
    let mut cuts = shared.cuts.subscribe();
    let max_frame = shared.config.session.max_frame as usize;
    let write_timeout = shared.config.write_timeout;
    loop {
        // Write everything the session has, while the transport takes it.
        let mut wrote = false;
        loop {
            let out = {
                let guard = hub.lock();
                let Some(frame) = conn.session.poll_transmit(clock.now(), &guard) else {
                    break;
                };
                counters.count_sent(&frame);
                match wire.encode(&frame) {
                    Ok(out) => out,
                    Err(e) => {
                        // A payload the JSON form cannot carry: this peer cannot be served.
                        warn!(error = %e, "cannot encode a frame for this peer");
                        conn.session
                            .close(CloseCode::INTERNAL_ERROR, None, "unencodable event");
                        continue;
                    }
                }
            };
            counters
                .bytes_out
                .fetch_add(W::out_len(&out) as u64, Ordering::Relaxed);
            match tokio::time::timeout(write_timeout, wire.feed(out)).await {
                Ok(Ok(())) => wrote = true,
                Ok(Err(e)) => {
                    debug!(error = %e, "write failed");
                    return;
                }
                Err(_) => {
                    counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    warn!("peer stopped reading; closing");
                    return;
                }
            }
        }
        if wrote {
            match tokio::time::timeout(write_timeout, wire.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
                    warn!("peer stopped reading; closing");
                    return;
                }
            }
        }
        if let Some(code) = conn.session.poll_action() {
            let _ = tokio::time::timeout(write_timeout, wire.close(code)).await;
            return;
        }
        if conn.session.state() == SessionState::Closed {
            return;
        }
        let deadline = conn
            .session
            .poll_timeout(&hub.lock())
            .map(|t| clock.to_tokio(t));
        tokio::select! {
            received = wire.recv() => match received {
                Recv::Data(unit) => {
                    wire.decode(&unit, max_frame, &mut |decoded| conn.handle(shared, decoded));
                    conn.after_input(shared).await;
                }
                Recv::Nothing => {}
                Recv::Violation(code, why) => {
                    debug!(%code, why, "transport violation");
                    conn.session.close(code, None, why);
                }
                Recv::Ended => return,
            },
            _ = sleep_until(deadline) => {
                let now = clock.now();
                conn.session.handle_timeout(now, &mut |_| {});
            }
            _ = changed.changed() => {}
            Ok(()) = cuts.changed() => {
                if cuts.borrow_and_update().hits(conn.session.session_id()) {
                    debug!("cut by fault injection");
                    return;
                }
            }
            retry = shutdown_requested(&mut shutdown) => {
                conn.session.close(CloseCode::GOING_AWAY, Some(retry), "server shutting down");
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Conn {
    /// A new session for a connection from `addr`; `over_capacity` ones are closed with
    /// `TRY_AGAIN_LATER` at once.
    pub(crate) fn new(
        shared: &Shared,
        addr: SocketAddr,
        headers: Vec<(String, String)>,
        over_capacity: bool,
        codec: Codec,
    ) -> Conn {
        Conn {
            session: shared
                .hub
                .open_session(shared.config.session, codec, addr, over_capacity),
            peer: Peer {
                client_id: 0,
                token: None,
                addr,
            },
            headers,
            decisions: Decisions::new(),
        }
    }

    /// Feeds one decoded frame (or its decoding error) to the session.
    pub(crate) fn handle(&mut self, shared: &Shared, decoded: Result<Frame<'_>, DecodeError>) {
        let frame = match decoded {
            Ok(frame) => frame,
            Err(e) => {
                match self.session.handle_decode_error(&e) {
                    Some(_) => debug!(error = %e, "bad frame"),
                    None => debug!(error = %e, "ignored a frame"),
                }
                return;
            }
        };
        let hub = &shared.hub;
        let now = hub.runtime().clock.now();
        let decisions = &mut self.decisions;
        self.session
            .handle_frame(now, &frame, &mut hub.lock(), &mut |event| {
                decisions.record(event)
            });
    }

    /// Takes the application decisions the last input asked for.
    pub(crate) async fn after_input(&mut self, shared: &Shared) {
        let hub = &shared.hub;
        if let Some(AuthPending { client_id, token }) = self.decisions.take_auth() {
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
            let now = hub.runtime().clock.now();
            self.session.settle_auth(now, verdict, &mut self.decisions);
        }
        for room in self.decisions.take_joins() {
            let allowed = match &shared.config.authorize {
                Some(hook) => hook(&self.peer, &room),
                None => true,
            };
            self.session.settle_join(&mut hub.lock(), &room, allowed);
        }
        if self.decisions.take_published() {
            hub.count_published();
        }
    }
}
