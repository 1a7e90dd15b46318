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
//! The standalone [`Server`](crate::Server) answers polling requests on its WebSocket port
//! (`http` reads the request and hands it here). A connection speaking plain HTTP (serving
//! polling requests, kept alive between them) stays in the `connections` counter (so that
//! shutdown waits for it) but is left out of the `max_connections` check
//! (`Registry::requests`): its session counts instead, once.
//!
//! Cross-origin clients (a page served elsewhere): responses to a request whose `Origin` the
//! server allows carry `Access-Control-Allow-Origin` with that origin and expose the session
//! header ([`cors`]); the preflight `OPTIONS` a browser sends first is answered by
//! [`preflight`]. An origin the server does not allow gets 403 and no CORS headers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use eventwire_core::codec::Codec;
use eventwire_core::handshake;
use eventwire_core::hub::Counter;
use eventwire_core::server::{Body, BodyError, Framing, SessionState};
use eventwire_core::CloseCode;
use tokio::sync::Notify;
use tracing::debug;

use crate::conn::Conn;
use crate::server::{shutdown_requested, Shared};

/// The request header carrying the session token.
pub(crate) const SESSION_HEADER: &str = "eventwire-session";
/// Content type of the JSON form.
pub(crate) const JSON: &str = "application/json";
/// Content type of the binary (COBS-framed) form.
pub(crate) const BINARY: &str = "application/octet-stream";

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
    /// CORS headers, for a cross-origin request from an allowed origin ([`cors`]); names in
    /// lower case (HTTP/2 and axum's `HeaderName::from_static` want them so).
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub(crate) fn error(status: u16, why: &str) -> Answer {
        Answer {
            status,
            content_type: "text/plain",
            token: None,
            body: why.as_bytes().to_vec(),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    fn frames(codec: Codec, token: Option<String>, body: Vec<u8>) -> Answer {
        Answer {
            status: 200,
            content_type: content_type(codec),
            token,
            body,
            retry_after: None,
            headers: Vec::new(),
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
    /// Connections of the standalone server speaking plain HTTP now (polling requests among
    /// them; `http::Plain`). They are counted in `connections` (so that shutdown waits for
    /// them) but not toward `max_connections`: polling sessions are.
    pub(crate) requests: AtomicU64,
}

impl Registry {
    /// Connections of the standalone server speaking plain HTTP now.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Entry {
    conn: tokio::sync::Mutex<Conn>,
    /// Set when a fault cut the session ([`cut`]): a held request answers 404 at once.
    cut: AtomicBool,
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
    if counters.connections.sub(1) == 1 {
        shared.idle.notify_waiters();
    }
}

fn new_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let a = RandomState::new().hash_one(0u8);
    let b = RandomState::new().hash_one(1u8);
    format!("{a:016x}{b:016x}")
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
    let parsed = Body::parse(codec, body, shared.config.max_poll_frames);
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
                Ok(b) if b.starts_with_hello(max_frame) => {}
                Err(BodyError::TooManyFrames) => return Answer::error(400, "too many frames"),
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
        conn.machine.set_framing(Framing::Body(codec));
        let hub = &shared.hub;
        let now = hub.runtime().clock.now();
        match &parsed {
            Ok(b) => conn.machine.handle_body(now, hub.hub(), b, body.len()),
            Err(BodyError::TooManyFrames) => {
                conn.machine.handle_body_error(BodyError::TooManyFrames);
                drop(conn);
                end_session(shared, &token);
                return Answer::error(400, "too many frames");
            }
            Err(e) => conn.machine.handle_body_error(*e),
        }
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
    let open = counters.connections.add(1);
    counters.connections_total.add(1);
    let busy = if counted { shared.polls.requests() } else { 0 };
    let over = open.saturating_sub(busy) >= shared.config.max_connections as u64;
    let mut conn = Conn::new(shared, peer, headers, over, Framing::Body(codec));
    if over {
        uncount(shared);
        return Err(refusal(shared, &mut conn));
    }
    let token = new_token();
    let entry = Arc::new(Entry {
        conn: tokio::sync::Mutex::new(conn),
        cut: AtomicBool::new(false),
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
fn refusal(shared: &Shared, conn: &mut Conn) -> Vec<u8> {
    let mut out = Vec::new();
    drain(shared, conn, &mut out);
    conn.machine.framing().finish_body(&mut out);
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
    let waker = entry.conn.lock().await.waker.clone();
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
        if entry.cut.load(Ordering::Acquire) {
            return Answer::error(404, "unknown session");
        }
        let deadline = {
            let mut conn = entry.conn.lock().await;
            // Each response is in its own request's form, whatever a newer request set.
            conn.machine.set_framing(Framing::Body(codec));
            conn.machine.handle_timeout(clock.now());
            drain(shared, &mut conn, &mut out);
            let ended =
                conn.machine.poll_close().is_some() || conn.machine.state() == SessionState::Closed;
            if ended {
                drop(conn);
                end_session(shared, token);
                break;
            }
            if !out.is_empty() {
                break;
            }
            conn.machine.poll_timeout().map(|t| clock.to_tokio(t))
        };
        let wake = deadline.map_or(until, |d| d.min(until));
        tokio::select! {
            _ = &mut released => {}
            _ = waker.notified() => {}
            _ = tokio::time::sleep_until(wake) => {
                if wake >= until {
                    break;
                }
            }
            retry = shutdown_requested(&mut shutdown) => {
                entry.conn.lock().await.machine.close(
                    CloseCode::GOING_AWAY,
                    Some(retry),
                    "server shutting down",
                );
            }
        }
    }
    Framing::Body(codec).finish_body(&mut out);
    Answer::frames(codec, Some(token.to_owned()), out)
}

/// Appends the frames the session has to `out` (the JSON form without the closing `]`), up to
/// the body budget.
fn drain(shared: &Shared, conn: &mut Conn, out: &mut Vec<u8>) {
    let hub = &shared.hub;
    let clock = hub.runtime().clock;
    while out.len() < shared.config.max_poll_body {
        if conn.machine.poll_transmit(clock.now(), out).is_none() {
            break;
        }
    }
    hub.count(conn.machine.take_counts());
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

/// Whether a page at `origin` may read polling responses: the upgrade's Origin rule.
fn origin_allowed(shared: &Shared, origin: &str) -> bool {
    let allowed = shared.config.allowed_origins.as_deref();
    handshake::origin_allowed(allowed, Some(origin.as_bytes()))
}

/// The CORS headers of a polling response to a request from `origin`: none for same-origin and
/// non-browser requests (no `Origin`) and for origins the server does not allow.
pub(crate) fn cors(shared: &Shared, origin: Option<&str>) -> Vec<(&'static str, String)> {
    match origin {
        Some(origin) if origin_allowed(shared, origin) => vec![
            ("access-control-allow-origin", origin.to_owned()),
            (
                "access-control-expose-headers",
                "Eventwire-Session, Retry-After".to_owned(),
            ),
            ("vary", "Origin".to_owned()),
        ],
        _ => Vec::new(),
    }
}

/// The answer to the CORS preflight (`OPTIONS`) of a polling request: 204 with the methods and
/// headers a polling client sends, for allowed origins; 403 for the others.
pub(crate) fn preflight(shared: &Shared, origin: Option<&str>) -> Answer {
    if origin.is_some_and(|o| !origin_allowed(shared, o)) {
        let refusal = handshake::Refusal::OriginNotAllowed;
        return Answer::error(refusal.status(), refusal.reason());
    }
    let mut answer = Answer::error(204, "");
    answer.headers = cors(shared, origin);
    answer.headers.extend([
        ("access-control-allow-methods", "POST".to_owned()),
        (
            "access-control-allow-headers",
            "Content-Type, Eventwire-Session".to_owned(),
        ),
        ("access-control-max-age", "600".to_owned()),
    ]);
    answer
}

/// Cuts the polling sessions that `hit` picks (by session id), as a network fault would: the
/// session is forgotten without a close frame, its held request answers 404, and the client's
/// next request gets 404 too. Returns how many were cut.
pub(crate) fn cut(shared: &Shared, hit: &dyn Fn(u64) -> bool) -> usize {
    let mut cut = Vec::new();
    shared.polls.lock().retain(|_, entry| {
        let id = match entry.conn.try_lock() {
            Ok(conn) => conn.machine.session_id(),
            // Busy with a request right now: cut it the next time.
            Err(_) => return true,
        };
        if hit(id) {
            cut.push(entry.clone());
            false
        } else {
            true
        }
    });
    for entry in &cut {
        entry.cut.store(true, Ordering::Release);
        entry.release.notify_waiters();
        uncount(shared);
    }
    cut.len()
}
