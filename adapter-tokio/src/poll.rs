//! HTTP long-polling (PROTOCOL.md 1.4): the same frames as a WebSocket, for clients behind
//! proxies that refuse the upgrade.
//!
//! A polling **session** plays the part of a connection: it is a `conn::Conn` (the same
//! `ServerSession`, authentication hook, room hook and publish notification as a socket
//! connection) kept in the server's [`Registry`] under a random 128-bit token, and it counts
//! toward `max_connections` while it exists. Each request:
//!
//! 1. is checked from its head alone (`check_head`): 411 without `Content-Length`, 413 over
//!    `max_poll_body` (before any of the body is read), 415 for a content type other than
//!    `application/json` and `application/octet-stream`;
//! 2. has its body read by the caller (the standalone server here, or the axum route) and handed
//!    to [`exchange`], which finds the session (404 for an unknown token; a first request must
//!    begin with a `hello`, else 400), releases a request of the same session still held, feeds
//!    the frames (more than `max_poll_frames`: 400 and the session ends with `POLICY_VIOLATION`),
//!    and then
//! 3. holds the request until the session has frames for the client (drained into the body up to
//!    a budget of `max_poll_body` bytes), the long-poll time passes (empty body), a newer request
//!    of the session arrives (empty body), or the server shuts down (the `GOING_AWAY` close
//!    frame). While held, the session's timers are driven as on a socket.
//!
//! Timers only run while a request is held or arriving, which is how a polling session is alive;
//! a session without a request for `poll_idle` is ended by a sweeper task (one per registry,
//! running while it holds sessions) and counts as a disconnect. A session ends too when either
//! side sends `close`; the response carrying the server's close frame is its last.
//!
//! The standalone [`Server`](crate::Server) answers polling requests on its WebSocket port:
//! `conn::serve` reads the request head first ([`sniff`], at most 8 KiB, within the upgrade
//! timeout, which also bounds reading the body) and hands anything that is not
//! `POST <poll_path>` to the WebSocket upgrade, with the bytes already read replayed through
//! [`Rewind`]. Every polling response carries `Connection: close` (no keep-alive, no
//! pipelining). A connection serving a polling request stays in the `connections` counter (so
//! that shutdown waits for its response) but is left out of the `max_connections` check
//! (`Registry::requests`): its session counts instead, once.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use eventwire_core::codec::stream::{self, StreamDecoder};
use eventwire_core::codec::Codec;
use eventwire_core::frame::Frame;
use eventwire_core::handshake;
use eventwire_core::server::SessionState;
use eventwire_core::{CloseCode, DecodeError, EncodeError};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::conn::Conn;
use crate::server::{shutdown_requested, Shared};

/// The request header carrying the session token.
pub(crate) const SESSION_HEADER: &str = "eventwire-session";
/// Content type of the JSON form.
pub(crate) const JSON: &str = "application/json";
/// Content type of the binary (COBS-framed) form.
pub(crate) const BINARY: &str = "application/octet-stream";
/// Largest request head the standalone server reads before deciding between polling and the
/// WebSocket upgrade.
const MAX_HEAD: usize = 8 * 1024;
/// Most headers parsed in a request head.
const MAX_HEADERS: usize = 64;
/// The stream decoder's buffer: the COBS encoding of a 64 KiB frame and its zero.
const DECODE_BUF: usize = crate::tcp::MAX_FRAME + crate::tcp::MAX_FRAME / 254 + 2;

/// An HTTP answer to a polling request.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    /// The session token, on 200.
    pub(crate) token: Option<String>,
    pub(crate) body: Vec<u8>,
    /// `Retry-After` seconds (503 during shutdown).
    pub(crate) retry_after: Option<u64>,
}

impl Answer {
    fn error(status: u16, why: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain",
            token: None,
            body: why.as_bytes().to_vec(),
            retry_after: None,
        }
    }

    fn frames(codec: Codec, token: Option<String>, body: Vec<u8>) -> Answer {
        Answer {
            status: 200,
            content_type: content_type(codec),
            token,
            body,
            retry_after: None,
        }
    }
}

fn content_type(codec: Codec) -> &'static str {
    if codec.is_text() {
        JSON
    } else {
        BINARY
    }
}

/// The codec a `Content-Type` selects (parameters such as `charset` are ignored).
fn codec_of(content_type: Option<&str>) -> Option<Codec> {
    let essence = content_type?.split(';').next()?.trim();
    if essence.eq_ignore_ascii_case(JSON) {
        Some(Codec::Json)
    } else if essence.eq_ignore_ascii_case(BINARY) {
        Some(Codec::Binary)
    } else {
        None
    }
}

/// Checks a request from its head, before any of the body is read: the codec, or the answer.
pub(crate) fn check_head(
    shared: &Shared,
    content_length: Option<u64>,
    content_type: Option<&str>,
    origin: Option<&str>,
) -> Result<(Codec, usize), Answer> {
    let origin = origin.map(str::as_bytes);
    if !handshake::origin_allowed(shared.config.allowed_origins.as_deref(), origin) {
        let refusal = handshake::Refusal::OriginNotAllowed;
        return Err(Answer::error(refusal.status(), refusal.reason()));
    }
    let Some(length) = content_length else {
        return Err(Answer::error(411, "Content-Length required"));
    };
    if length > shared.config.max_poll_body as u64 {
        return Err(Answer::error(413, "body too large"));
    }
    let Some(codec) = codec_of(content_type) else {
        return Err(Answer::error(415, "unsupported content type"));
    };
    Ok((codec, length as usize))
}

/// The polling sessions of one server (or axum mount).
#[derive(Default)]
pub(crate) struct Registry {
    sessions: Mutex<HashMap<String, Arc<Entry>>>,
    /// Whether the sweeper task runs (it does while there are sessions).
    sweeping: AtomicBool,
    /// Connections of the standalone server serving a polling request now. They are counted
    /// in `connections` (so that shutdown waits for their responses) but not toward
    /// `max_connections`: their sessions are.
    requests: AtomicU64,
}

impl Registry {
    /// Connections of the standalone server serving a polling request now.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Entry {
    conn: tokio::sync::Mutex<Conn>,
    /// Number of the session's latest request; a held request that is not the latest returns.
    latest: AtomicU64,
    /// Wakes held requests when a newer one arrives.
    release: Notify,
    activity: Mutex<Activity>,
}

struct Activity {
    /// Requests of the session in progress.
    in_flight: usize,
    /// When the last request ended (or the session began).
    last: tokio::time::Instant,
}

impl Entry {
    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks a request in progress; ends it (for the idle timer) when dropped, also when the
/// request's future is dropped (the HTTP connection went away).
struct InFlight(Arc<Entry>);

impl InFlight {
    fn new(entry: Arc<Entry>) -> Self {
        entry.activity().in_flight += 1;
        InFlight(entry)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = self.0.activity();
        a.in_flight -= 1;
        a.last = tokio::time::Instant::now();
    }
}

/// Removes a session from the registry; the one who removes it uncounts it.
fn end_session(shared: &Shared, token: &str) {
    if shared.polls.lock().remove(token).is_some() {
        uncount(shared);
    }
}

fn uncount(shared: &Shared) {
    let counters = &shared.hub.counters();
    if counters.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
        shared.idle.notify_waiters();
    }
}

fn new_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(0u8);
    let b = RandomState::new().hash_one(1u8);
    format!("{a:016x}{b:016x}")
}

/// Frames of a request body, decoded lazily into `Conn::handle`.
enum Body<'b> {
    Json(Vec<&'b RawValue>),
    Binary(&'b [u8]),
}

impl<'b> Body<'b> {
    fn parse(codec: Codec, body: &'b [u8]) -> Result<Body<'b>, DecodeError> {
        if codec.is_text() {
            serde_json::from_slice(body)
                .map(Body::Json)
                .map_err(|_| DecodeError::Malformed("JSON array of frames"))
        } else {
            Ok(Body::Binary(body))
        }
    }

    /// Frames in the body (a trailing unterminated binary frame counts).
    fn count(&self) -> usize {
        match self {
            Body::Json(items) => items.len(),
            Body::Binary(b) => {
                let zeros = b.iter().filter(|&&x| x == 0).count();
                zeros + usize::from(b.last().is_some_and(|&x| x != 0))
            }
        }
    }

    /// Hands each frame to `on`, in order.
    fn each(&self, max_frame: usize, on: &mut dyn FnMut(Result<Frame<'_>, DecodeError>)) {
        match self {
            Body::Json(items) => {
                for item in items {
                    on(Codec::Json.decode(item.get().as_bytes(), max_frame));
                }
            }
            Body::Binary(bytes) => {
                let mut decoder = Box::new(StreamDecoder::<DECODE_BUF>::new());
                let limit = max_frame.min(crate::tcp::MAX_FRAME);
                for chunk in bytes.split_inclusive(|&b| b == 0) {
                    if chunk.last() != Some(&0) {
                        on(Err(DecodeError::Truncated));
                        return;
                    }
                    if chunk.len() > limit + limit / 254 + 2 {
                        on(Err(DecodeError::TooLarge {
                            size: chunk.len(),
                            limit,
                        }));
                        return;
                    }
                    let mut part = chunk;
                    while !part.is_empty() {
                        let (decoded, rest) = decoder.feed(part);
                        part = rest;
                        if let Some(decoded) = decoded {
                            on(decoded);
                        }
                    }
                }
            }
        }
    }

    /// Whether the first frame is a hello.
    fn starts_with_hello(&self, max_frame: usize) -> bool {
        let mut first = None;
        let mut seen = false;
        self.each(max_frame, &mut |decoded| {
            if !seen {
                seen = true;
                first = Some(matches!(decoded, Ok(Frame::Hello(_))));
            }
        });
        first == Some(true)
    }
}

/// Serves one polling request whose head passed [`check_head`] and whose body was read in full.
/// `counted`: the HTTP connections serving polling requests are in the `connections` counter
/// and in `Registry::requests` (the standalone server), so the limit check leaves them out.
pub(crate) async fn exchange(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    headers: Vec<(String, String)>,
    codec: Codec,
    body: &[u8],
    counted: bool,
) -> Answer {
    let max_frame = shared.config.session.max_frame as usize;
    let token = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(SESSION_HEADER))
        .map(|(_, v)| v.trim().to_owned());
    let parsed = Body::parse(codec, body);
    let (token, entry) = match token {
        Some(token) => {
            let Some(entry) = shared.polls.lock().get(&token).cloned() else {
                return Answer::error(404, "unknown session");
            };
            (token, entry)
        }
        None => {
            if let Some(retry) = *shared.shutdown.borrow() {
                let mut answer = Answer::error(503, "server shutting down");
                answer.retry_after = Some(retry.as_secs() + u64::from(retry.subsec_nanos() > 0));
                return answer;
            }
            match &parsed {
                Ok(b)
                    if b.count() <= shared.config.max_poll_frames
                        && b.starts_with_hello(max_frame) => {}
                Ok(b) if b.count() > shared.config.max_poll_frames => {
                    return Answer::error(400, "too many frames");
                }
                _ => return Answer::error(400, "a session begins with a hello"),
            }
            match open_session(shared, peer, headers, counted, codec) {
                Ok(opened) => opened,
                Err(refusal) => return Answer::frames(codec, None, refusal),
            }
        }
    };
    let _in_flight = InFlight::new(entry.clone());
    let generation = entry.latest.fetch_add(1, Ordering::AcqRel) + 1;
    entry.release.notify_waiters();

    // Feed the frames.
    {
        let mut conn = entry.conn.lock().await;
        match &parsed {
            Ok(b) if b.count() > shared.config.max_poll_frames => {
                conn.session
                    .close(CloseCode::POLICY_VIOLATION, None, "too many frames");
                drop(conn);
                end_session(shared, &token);
                return Answer::error(400, "too many frames");
            }
            Ok(b) => b.each(max_frame, &mut |decoded| conn.handle(shared, decoded)),
            Err(e) => conn.handle(shared, Err(*e)),
        }
        let counters = &shared.hub.counters();
        counters
            .bytes_in
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        conn.after_input(shared).await;
    }
    hold(shared, &entry, &token, generation, codec).await
}

/// Makes a session for a first request; over the connection limit, the body of the refusal
/// (the session's `TRY_AGAIN_LATER` close frame) instead.
fn open_session(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    headers: Vec<(String, String)>,
    counted: bool,
    codec: Codec,
) -> Result<(String, Arc<Entry>), Vec<u8>> {
    let counters = &shared.hub.counters();
    let open = counters.connections.fetch_add(1, Ordering::AcqRel);
    counters.connections_total.fetch_add(1, Ordering::Relaxed);
    let busy = if counted { shared.polls.requests() } else { 0 };
    let over = open.saturating_sub(busy) >= shared.config.max_connections as u64;
    let mut conn = Conn::new(shared, peer, headers, over, codec);
    if over {
        uncount(shared);
        return Err(refusal(shared, &mut conn, codec));
    }
    let token = new_token();
    let entry = Arc::new(Entry {
        conn: tokio::sync::Mutex::new(conn),
        latest: AtomicU64::new(0),
        release: Notify::new(),
        activity: Mutex::new(Activity {
            in_flight: 0,
            last: tokio::time::Instant::now(),
        }),
    });
    shared.polls.lock().insert(token.clone(), entry.clone());
    if !shared.polls.sweeping.swap(true, Ordering::AcqRel) {
        tokio::spawn(sweep(shared.clone()));
    }
    debug!(%peer, "polling session opened");
    Ok((token, entry))
}

/// The body answering a session refused for capacity: its `TRY_AGAIN_LATER` close frame.
fn refusal(shared: &Shared, conn: &mut Conn, codec: Codec) -> Vec<u8> {
    let mut out = Vec::new();
    drain(shared, conn, codec, &mut out);
    finish(codec, &mut out);
    out
}

/// Holds a request until the session has frames for it (see the module docs).
async fn hold(
    shared: &Shared,
    entry: &Entry,
    token: &str,
    generation: u64,
    codec: Codec,
) -> Answer {
    let hub = &shared.hub;
    let clock = hub.runtime().clock;
    let mut changed = hub.runtime().changed.subscribe();
    let mut shutdown = shared.shutdown.clone();
    let until = tokio::time::Instant::now() + shared.config.long_poll;
    let mut out = Vec::new();
    loop {
        let released = entry.release.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        if entry.latest.load(Ordering::Acquire) != generation {
            break;
        }
        let deadline = {
            let mut conn = entry.conn.lock().await;
            conn.session.handle_timeout(clock.now(), &mut |_| {});
            drain(shared, &mut conn, codec, &mut out);
            let ended = conn.session.poll_action().is_some()
                || conn.session.state() == SessionState::Closed;
            if ended {
                drop(conn);
                end_session(shared, token);
                break;
            }
            if !out.is_empty() {
                break;
            }
            conn.session
                .poll_timeout(&hub.lock())
                .map(|t| clock.to_tokio(t))
        };
        let wake = deadline.map_or(until, |d| d.min(until));
        tokio::select! {
            _ = &mut released => {}
            _ = changed.changed() => {}
            _ = tokio::time::sleep_until(wake) => {
                if wake >= until {
                    break;
                }
            }
            retry = shutdown_requested(&mut shutdown) => {
                entry.conn.lock().await.session.close(
                    CloseCode::GOING_AWAY,
                    Some(retry),
                    "server shutting down",
                );
            }
        }
    }
    finish(codec, &mut out);
    Answer::frames(codec, Some(token.to_owned()), out)
}

/// Appends the frames the session has to `out` (the JSON form without the closing `]`), up to
/// the body budget.
fn drain(shared: &Shared, conn: &mut Conn, codec: Codec, out: &mut Vec<u8>) {
    let hub = &shared.hub;
    let counters = &hub.counters();
    let clock = hub.runtime().clock;
    let budget = shared.config.max_poll_body;
    let mut scratch = Vec::new();
    while out.len() < budget {
        let start = out.len();
        let encoded = {
            let guard = hub.lock();
            let Some(frame) = conn.session.poll_transmit(clock.now(), &guard) else {
                break;
            };
            counters.count_sent(&frame);
            encode(codec, &frame, out, &mut scratch)
        };
        match encoded {
            Ok(()) => {
                counters
                    .bytes_out
                    .fetch_add((out.len() - start) as u64, Ordering::Relaxed);
            }
            Err(e) => {
                out.truncate(start);
                warn!(error = %e, "cannot encode a frame for this peer");
                conn.session
                    .close(CloseCode::INTERNAL_ERROR, None, "unencodable event");
            }
        }
    }
}

fn encode(
    codec: Codec,
    frame: &Frame<'_>,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    if codec.is_text() {
        let start = out.len();
        out.push(if start == 0 { b'[' } else { b',' });
        codec.encode_into(frame, out).inspect_err(|_| {
            out.truncate(start);
        })
    } else {
        if scratch.is_empty() {
            scratch.resize(1024, 0);
        }
        let n = match stream::encode(frame, scratch) {
            Ok(bytes) => bytes.len(),
            Err(EncodeError::BufferTooSmall { needed }) => {
                scratch.resize(needed, 0);
                stream::encode(frame, scratch)?.len()
            }
            Err(e) => return Err(e),
        };
        out.extend_from_slice(&scratch[..n]);
        Ok(())
    }
}

/// Closes the JSON array (`[]` when there are no frames).
fn finish(codec: Codec, out: &mut Vec<u8>) {
    if codec.is_text() {
        if out.is_empty() {
            out.push(b'[');
        }
        out.push(b']');
    }
}

/// Ends sessions without a request for `poll_idle`, and every session on shutdown; runs while
/// the registry holds sessions.
async fn sweep(shared: Arc<Shared>) {
    let idle = shared.config.poll_idle;
    let tick = (idle / 4).max(std::time::Duration::from_millis(10));
    let mut shutdown = shared.shutdown.clone();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(tick) => false,
            _ = shutdown_requested(&mut shutdown) => true,
        };
        let now = tokio::time::Instant::now();
        let mut ended = 0;
        {
            let mut sessions = shared.polls.lock();
            sessions.retain(|_, entry| {
                let a = entry.activity();
                let keep = !stopping && (a.in_flight > 0 || now.duration_since(a.last) < idle);
                ended += usize::from(!keep);
                keep
            });
            if sessions.is_empty() {
                shared.polls.sweeping.store(false, Ordering::Release);
                for _ in 0..ended {
                    uncount(&shared);
                }
                return;
            }
        }
        for _ in 0..ended {
            debug!("polling session expired");
            uncount(&shared);
        }
    }
}

// ---- the standalone server's HTTP side

/// A stream that replays bytes already read from it before reading on.
pub(crate) struct Rewind<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A parsed polling request head.
struct Head {
    /// Bytes of the head; what follows in the buffer is the start of the body.
    len: usize,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the start of a connection on the standalone server turned out to be.
pub(crate) enum Sniffed<S> {
    /// Anything but a polling request: on to the WebSocket upgrade, the bytes read so far
    /// replayed.
    Upgrade(Rewind<S>),
    /// A polling request, read in full (or answered from its head).
    Poll(Request<S>),
}

/// A polling request read from the standalone server's socket.
pub(crate) struct Request<S> {
    stream: S,
    headers: Vec<(String, String)>,
    /// The codec and body, or the answer the head already decided.
    read: Result<(Codec, Vec<u8>), Answer>,
}

/// Reads the request head of a new connection (at most 8 KiB) and, for `POST <poll_path>`, its
/// body. The caller bounds this with the upgrade timeout.
pub(crate) async fn sniff<S>(mut stream: S, shared: &Shared) -> io::Result<Sniffed<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let head = loop {
        match parse_head(&buf, &shared.config.poll_path) {
            Parsed::Partial if buf.len() < MAX_HEAD => {}
            Parsed::Partial | Parsed::Other => {
                return Ok(Sniffed::Upgrade(Rewind {
                    prefix: buf,
                    at: 0,
                    inner: stream,
                }))
            }
            Parsed::Poll(head) => break head,
        }
        let mut chunk = [0u8; 1024];
        let room = (MAX_HEAD - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let read = read_body(&mut stream, &buf, &head, shared).await?;
    Ok(Sniffed::Poll(Request {
        stream,
        headers: head.headers,
        read,
    }))
}

/// Checks the head and reads exactly `Content-Length` bytes of body (what followed the head
/// in `buf` first).
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &[u8],
    head: &Head,
    shared: &Shared,
) -> io::Result<Result<(Codec, Vec<u8>), Answer>> {
    let content_length = match head.get("content-length").map(|v| v.trim().parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return Ok(Err(Answer::error(400, "bad Content-Length"))),
    };
    let checked = check_head(
        shared,
        content_length,
        head.get("content-type"),
        head.get("origin"),
    );
    let (codec, length) = match checked {
        Ok(ok) => ok,
        Err(answer) => return Ok(Err(answer)),
    };
    let mut body = buf[head.len..].to_vec();
    // Pipelined requests are not served: every response closes the connection.
    body.truncate(length);
    let start = body.len();
    body.resize(length, 0);
    stream.read_exact(&mut body[start..]).await?;
    Ok(Ok((codec, body)))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Request<S> {
    /// Serves the request (holding it as long as the long-poll rules say) and closes the
    /// connection. The connection limit is checked when the request opens a session.
    pub(crate) async fn serve(mut self, peer: SocketAddr, shared: &Arc<Shared>) {
        let _busy = Busy::new(&shared.polls);
        let answer = match self.read {
            Err(answer) => answer,
            Ok((codec, body)) => exchange(shared, peer, self.headers, codec, &body, true).await,
        };
        respond(&mut self.stream, &answer).await;
    }
}

/// A connection serving a polling request, in `Registry::requests` while it lives.
struct Busy<'r>(&'r Registry);

impl<'r> Busy<'r> {
    fn new(registry: &'r Registry) -> Self {
        registry.requests.fetch_add(1, Ordering::AcqRel);
        Busy(registry)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Parsed {
    Partial,
    Other,
    Poll(Head),
}

fn parse_head(buf: &[u8], poll_path: &str) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(len)) => {
            let path = req.path.unwrap_or("");
            let path = path.split('?').next().unwrap_or(path);
            if req.method != Some("POST") || path != poll_path {
                return Parsed::Other;
            }
            let headers = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            Parsed::Poll(Head { len, headers })
        }
        Err(_) => Parsed::Other,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes `answer` and closes the connection. After an error the body may still be on its way
/// (413 is answered before reading it): what arrives is read and dropped for a short while, so
/// the response is not lost to a connection reset.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, answer: &Answer) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        answer.status,
        reason(answer.status),
        answer.content_type,
        answer.body.len(),
    );
    if let Some(token) = &answer.token {
        head.push_str(&format!("Eventwire-Session: {token}\r\n"));
    }
    if let Some(secs) = answer.retry_after {
        head.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    head.push_str("\r\n");
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&answer.body).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(std::time::Duration::from_secs(30), write)
        .await
        .is_err()
    {
        return;
    }
    if answer.status != 200 {
        let drain = async {
            let mut sink = [0u8; 4096];
            let mut left = 256 * 1024usize;
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    }
}
