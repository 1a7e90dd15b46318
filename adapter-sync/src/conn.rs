//! One server connection, on its own thread: the WebSocket upgrade, then the loop around a core
//! `ServerSession`.
//!
//! The loop (STYLE habit 9): read the clock and fire a passed deadline, write everything the
//! session has (each write blocks on the socket, bounded by the write timeout: a peer that stops
//! reading is closed as a slow consumer and resumes from its position later), act on
//! `poll_action`, read what the reader thread buffered (a bounded number of messages per round,
//! so reads and writes take turns), and otherwise block in the inbox until the first of: bytes
//! from the peer, an emit in the hub, shutdown, the session's deadline.

use std::convert::Infallible;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use eventwire_core::codec::Codec;
use eventwire_core::handshake::{self, Upgrade};
use eventwire_core::hub::Counter;
use eventwire_core::server::{Connection, Decision, Framing, SessionState, TransportError};
use eventwire_core::CloseCode;
use tracing::{debug, info_span, warn};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Error as WsError, Message, WebSocket};

use crate::config::Peer;
use crate::hub::{ConnWaker, Threads};
use crate::message;
use crate::pipe::Duplex;
use crate::signal;
use crate::state::ServerState;

/// Messages handled per round before the loop writes again.
const READS_PER_ROUND: usize = 16;

type Ws = WebSocket<Duplex>;

/// What the upgrade learned about the peer.
struct Upgraded {
    codec: Codec,
    headers: Vec<(String, String)>,
}

fn ws_config(shared: &ServerState) -> WebSocketConfig {
    let max = shared.config.session.max_frame as usize;
    WebSocketConfig::default()
        .read_buffer_size(shared.config.read_buffer)
        .write_buffer_size(0)
        .max_write_buffer_size(shared.config.write_buffer.max(max + 1024))
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Serves one accepted connection to its end; `over_capacity` connections are told to come
/// back later.
pub(crate) fn serve(tcp: TcpStream, peer: SocketAddr, shared: &ServerState, over_capacity: bool) {
    let span = info_span!("connection", %peer);
    let _entered = span.enter();
    let Some((ws, upgraded)) = upgrade(tcp, shared) else {
        return;
    };
    debug!(codec = ?upgraded.codec, "connected");
    drive(ws, peer, upgraded, shared, over_capacity);
    debug!("closed");
}

/// The WebSocket upgrade, within the upgrade timeout; the decision is the core's.
fn upgrade(tcp: TcpStream, shared: &ServerState) -> Option<(Ws, Upgraded)> {
    let deadline = Instant::now() + shared.config.upgrade_timeout;
    let mut upgraded = None;
    #[allow(clippy::result_large_err)] // tungstenite's callback signature
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let host = req.headers().get("host").map(|v| v.as_bytes());
        let decided = handshake::decide(
            shared.config.origins.for_request(host),
            req.headers().get("origin").map(|v| v.as_bytes()),
            req.headers()
                .get_all("sec-websocket-protocol")
                .iter()
                .map(|v| v.as_bytes()),
        );
        let codec = match decided {
            Ok(Upgrade { codec, subprotocol }) => {
                if let Some(name) = subprotocol {
                    resp.headers_mut()
                        .insert("sec-websocket-protocol", HeaderValue::from_static(name));
                }
                codec
            }
            Err(refusal) => {
                let mut response = ErrorResponse::new(Some(refusal.reason().to_owned()));
                *response.status_mut() =
                    StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
                return Err(response);
            }
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
        upgraded = Some(Upgraded { codec, headers });
        Ok(resp)
    };
    let mut attempt = tungstenite::accept_hdr_with_config(
        Duplex::direct(tcp, deadline),
        callback,
        Some(ws_config(shared)),
    );
    let ws = loop {
        match attempt {
            Ok(ws) => break ws,
            // A read timed out: `Duplex` fails the next one once the deadline passed.
            Err(HandshakeError::Interrupted(mid)) => attempt = mid.handshake(),
            Err(HandshakeError::Failure(e)) => {
                debug!(error = %e, "upgrade failed");
                return None;
            }
        }
    };
    upgraded.map(|upgraded| (ws, upgraded))
}

/// How a round of reading ended.
enum Round {
    /// Messages were handled (or a violation closed the session): go round again.
    Progress,
    /// Nothing to read now.
    Idle,
    /// The peer is gone.
    Ended,
}

fn drive(
    mut ws: Ws,
    addr: SocketAddr,
    upgraded: Upgraded,
    shared: &ServerState,
    over_capacity: bool,
) {
    let hub = &shared.hub;
    let clock = hub.runtime().clock;
    let (inbox, waker) = signal::inbox::<Infallible>();
    let _registration = shared.register(waker.clone());
    if let Err(e) = ws
        .get_mut()
        .start_reader(shared.config.read_buffer, waker.clone())
        .and_then(|()| ws.get_ref().set_write_timeout(shared.config.write_timeout))
    {
        debug!(error = %e, "cannot start the connection");
        return;
    }
    let framing = Framing::Message(upgraded.codec);
    let mut conn = Conn::new(
        shared,
        addr,
        upgraded.headers,
        over_capacity,
        framing,
        waker,
    );
    let mut out = Vec::with_capacity(1024);
    let mut cut = BytesMut::new();
    let mut going_away = false;
    loop {
        let now = clock.now();
        if conn.machine.poll_timeout().is_some_and(|t| t <= now) {
            conn.machine.handle_timeout(now);
        }
        if !going_away {
            if let Some(retry) = shared.shutdown_requested() {
                going_away = true;
                conn.machine
                    .close(CloseCode::GOING_AWAY, Some(retry), "server shutting down");
            }
        }
        // Write everything the connection has; each write blocks until the socket takes it.
        let mut wrote = false;
        loop {
            out.clear();
            if conn.machine.poll_transmit(clock.now(), &mut out).is_none() {
                break;
            }
            // Counted before the peer can have it, so statistics never lag behind a client.
            hub.count(conn.machine.take_counts());
            let result = outgoing(&mut cut, &out, framing.is_text()).and_then(|m| ws.write(m));
            if let Err(e) = result {
                write_failed(shared, &e);
                return;
            }
            wrote = true;
        }
        if wrote {
            if let Err(e) = ws.flush() {
                write_failed(shared, &e);
                return;
            }
        }
        hub.count(conn.machine.take_counts());
        if let Some(code) = conn.machine.poll_close() {
            close(&mut ws, code, conn.unparsed);
            return;
        }
        if conn.machine.state() == SessionState::Closed {
            return;
        }
        match read_round(&mut ws, &mut conn, shared) {
            Round::Progress => continue,
            Round::Ended => return,
            Round::Idle => {}
        }
        let deadline = conn.machine.poll_timeout().and_then(|t| clock.to_std(t));
        // Whatever woke the loop, it looks at every source again.
        let _ = inbox.wait(deadline);
    }
}

/// The message carrying bytes the connection wrote (text for the JSON form, which serde_json
/// writes as UTF-8), cut from `buf`: once tungstenite has written a message and dropped it, the
/// next one reuses the same memory (`BytesMut` reclaims a buffer nobody else holds), so sending
/// allocates nothing in the steady state.
fn outgoing(buf: &mut BytesMut, bytes: &[u8], text: bool) -> Result<Message, WsError> {
    buf.reserve(bytes.len());
    buf.extend_from_slice(bytes);
    message::from_payload(text, buf.split().freeze())
}

/// Handles what the reader thread buffered, up to `READS_PER_ROUND` messages.
fn read_round(ws: &mut Ws, conn: &mut Conn, shared: &ServerState) -> Round {
    let hub = &shared.hub;
    let clock = hub.runtime().clock;
    let mut handled = 0;
    while handled < READS_PER_ROUND {
        let received = match ws.read() {
            Ok(Message::Close(_)) => {
                // tungstenite queued the close reply; send it and end.
                let _ = ws.flush();
                return Round::Ended;
            }
            Ok(received) => received,
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            // tungstenite refuses an oversize message from its header, before buffering it.
            Err(WsError::Capacity(_)) => {
                conn.unparsed = true;
                conn.machine.handle_transport_error(TransportError::TooBig);
                return Round::Progress;
            }
            Err(WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_)) => {
                return Round::Ended
            }
            Err(e) => {
                debug!(error = %e, "transport violation");
                conn.unparsed = true;
                conn.machine
                    .handle_transport_error(TransportError::Protocol);
                return Round::Progress;
            }
        };
        handled += 1;
        let (data, text) = match &received {
            Message::Binary(b) => (&b[..], false),
            Message::Text(t) => (t.as_bytes(), true),
            // Control messages: tungstenite answers pings itself.
            _ => continue,
        };
        conn.machine
            .handle_message(clock.now(), hub.hub(), data, text);
        conn.after_input(shared);
    }
    if handled > 0 {
        Round::Progress
    } else {
        Round::Idle
    }
}

fn write_failed(shared: &ServerState, e: &WsError) {
    match e {
        WsError::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            shared.hub.counters().slow_consumers.add(1);
            warn!("peer stopped reading; closing");
        }
        e => debug!(error = %e, "write failed"),
    }
}

/// Sends the WebSocket close frame with `code` (the protocol close frame went out before),
/// then reads what the peer still sends until its close reply, briefly and boundedly: closing a
/// socket with unread bytes makes the kernel reset the connection, which can destroy the close
/// frames just sent. After a message tungstenite could not parse (`unparsed`: an oversize one,
/// whose rest is still arriving), the rest is read as raw bytes and discarded.
fn close(ws: &mut Ws, code: CloseCode, unparsed: bool) {
    let _ = ws.close(Some(message::close_frame(code, code.name())));
    let _ = ws.flush();
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut budget = 256 * 1024usize;
    // tungstenite must not read again after a read error (it asserts on its buffer state).
    let mut raw = unparsed;
    let mut scratch = [0u8; 4096];
    while budget > 0 {
        let read = if raw {
            ws.get_mut().read(&mut scratch)
        } else {
            match ws.read() {
                Ok(message) => Ok(message.len().max(1)),
                Err(WsError::Io(e)) => Err(e),
                // The close handshake is complete: the server closes the socket first.
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => return,
                Err(_) => {
                    raw = true;
                    continue;
                }
            }
        };
        match read {
            Ok(0) => return,
            Ok(n) => budget = budget.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !ws.get_ref().wait_readable(deadline) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// A core connection and what the application's hooks are told about its peer.
struct Conn {
    machine: Connection<Threads>,
    peer: Peer,
    headers: Vec<(String, String)>,
    /// tungstenite failed to read a message: the rest of the stream is not to be parsed.
    unparsed: bool,
}

impl Conn {
    /// A new connection from `addr`; `over_capacity` ones are closed with `TRY_AGAIN_LATER` at
    /// once.
    fn new(
        shared: &ServerState,
        addr: SocketAddr,
        headers: Vec<(String, String)>,
        over_capacity: bool,
        framing: Framing,
        waker: ConnWaker,
    ) -> Conn {
        Conn {
            machine: shared.hub.open_connection(
                shared.config.session,
                framing,
                RandomState::new().hash_one(addr),
                waker,
                over_capacity,
            ),
            peer: Peer::new(addr),
            headers,
            unparsed: false,
        }
    }

    /// Answers the application requests the last input raised (the hooks run here, on the
    /// connection's thread, with the hub unlocked), and counts what the input appended.
    fn after_input(&mut self, shared: &ServerState) {
        let hub = &shared.hub;
        while let Some(decision) = self.machine.poll_decision() {
            match decision {
                Decision::Authenticate { client_id, token } => {
                    let request = self.peer.authenticating(client_id, token, &self.headers);
                    let verdict = match &shared.config.auth {
                        Some(hook) => hook(request),
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
