//! HTTP long-polling (PROTOCOL.md 1.4) on tokio: the core's `server::polling` decides every
//! request (head checks, the session table, feeding bodies, how long a request is held) and
//! `server::http` its answer and CORS; this module keeps the table behind a lock, reads bodies,
//! waits, and moves bytes. The standalone server's HTTP front (`http`) and the axum mount both
//! hand their polling requests to [`serve`].
//!
//! A polling **session** is a `conn::Conn` (the same session, authentication hook, room hook and
//! publish notification as a socket connection) kept in the server's [`Registry`], and it counts
//! toward `max_connections` while it exists. A held request waits for the first of: an append to
//! a room the session holds (its waker), the deadline `Hold::poll` returned, a newer request of
//! the session (`Entry::release`; newer by the client's `Eventwire-Seq`, which the core's
//! `Sessions::begin` compares: an overtaken request is answered at once, empty), shutdown (the
//! `GOING_AWAY` close, then the answer carries it).
//!
//! Timers only run while a request is held or arriving, which is how a polling session is alive;
//! a session without a request for `poll_idle` is ended by a sweeper task (one per registry,
//! running while it holds sessions, every quarter of `poll_idle`) and counts as a disconnect.
//!
//! A connection of the standalone server speaking plain HTTP (serving polling requests, kept
//! alive between them) stays in the `connections` counter (so that shutdown waits for it) but is
//! left out of the `max_connections` check (`Registry::requests`): its session counts instead,
//! once.

use std::error::Error;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use eventwire_core::codec::Codec;
use eventwire_core::hub::Counter;
use eventwire_core::server::http::{cors, preflight, Answer, Refusal};
use eventwire_core::server::polling::{
    self, begins_session, capacity_refusal, check_head, Head, Hold, Kind, Limits, Sessions, Step,
    Ticket, Token, SEQ_HEADER, SESSION_HEADER,
};
use eventwire_core::server::{Body, Framing};
use eventwire_core::CloseCode;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use hyper::Request;
use tokio::sync::Notify;
use tracing::debug;

use crate::conn::Conn;
use crate::http::{self, Response};
use crate::server::{shutdown_requested, ServerConfig, ServerState};

/// The polling sessions of one server (or axum mount).
pub(crate) struct Registry {
    sessions: Mutex<Sessions<Arc<Entry>>>,
    limits: Limits,
    /// Whether the sweeper task runs (it does while there are sessions).
    sweeping: AtomicBool,
    /// Connections of the standalone server speaking plain HTTP now (polling requests among
    /// them; `http::Plain`). They are counted in `connections` (so that shutdown waits for
    /// them) but not toward `max_connections`: polling sessions are.
    pub(crate) requests: AtomicU64,
}

impl Registry {
    /// The registry of a server with `config`'s limits; at most `max_connections` sessions.
    pub(crate) fn new(config: &ServerConfig) -> Registry {
        Registry {
            sessions: Mutex::new(Sessions::new(config.max_connections, config.poll_idle)),
            limits: Limits {
                max_body: config.max_poll_body,
                max_frames: config.max_poll_frames,
                long_poll: config.long_poll,
                idle: config.poll_idle,
            },
            sweeping: AtomicBool::new(false),
            requests: AtomicU64::new(0),
        }
    }

    /// Connections of the standalone server speaking plain HTTP now.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Sessions<Arc<Entry>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A session's value in the table.
struct Entry {
    conn: tokio::sync::Mutex<Conn>,
    /// Set when a fault cut the session ([`cut`]): a held request answers 404 at once.
    cut: AtomicBool,
    /// Wakes held requests when a newer one arrives.
    release: Notify,
}

/// A request of a session in progress; ends it in the table (the idle time starts) when
/// dropped, also when the request's future is dropped (the HTTP connection went away).
struct InFlight<'s> {
    shared: &'s ServerState,
    token: Token,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let now = self.shared.hub.runtime().clock.now();
        self.shared.polls.lock().end(self.token, now);
    }
}

/// Serves a request to the polling path that the core calls `kind`: the preflight's answer, or
/// an exchange (with the CORS headers of its origin). `counted`: the HTTP connections serving
/// polling requests are in the `connections` counter and in `Registry::requests` (the
/// standalone server), so the limit check leaves them out.
pub(crate) async fn serve<B>(
    kind: Kind,
    req: Request<B>,
    peer: SocketAddr,
    shared: &Arc<ServerState>,
    counted: bool,
) -> Response
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let header = |name: &str| parts.headers.get(name).map(|v| v.as_bytes());
    let origin = header(ORIGIN.as_str());
    let allowed = shared.config.origins.for_request(header(HOST.as_str()));
    let answer = match kind {
        Kind::Preflight => preflight(allowed, origin),
        Kind::Exchange => {
            let head = Head {
                origin,
                content_length: header(CONTENT_LENGTH.as_str()),
                content_type: header(CONTENT_TYPE.as_str()),
                session: header(SESSION_HEADER),
                seq: header(SEQ_HEADER),
            };
            exchange(shared, peer, &parts.headers, &head, body, counted)
                .await
                .unwrap_or_else(Refusal::answer)
                .with_cors(&cors(allowed, origin))
        }
    };
    http::response(answer)
}

/// One exchange: the head checked, the body read and handed to its session (a new one for a
/// first request), then the request held until the session has frames for it.
async fn exchange<B>(
    shared: &Arc<ServerState>,
    peer: SocketAddr,
    headers: &hyper::HeaderMap,
    head: &Head<'_>,
    body: B,
    counted: bool,
) -> Result<Answer, Refusal>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let (config, limits) = (&shared.config, &shared.polls.limits);
    let allowed = config
        .origins
        .for_request(headers.get(HOST).map(|v| v.as_bytes()));
    let checked = check_head(allowed, limits.max_body, head)?;
    let codec = checked.codec;
    let bytes = http::read_body(body, limits.max_body, config.upgrade_timeout).await?;
    let parsed = Body::parse(codec, &bytes, limits.max_frames);
    let (token, entry, ticket) = match checked.session {
        Some(token) => {
            let begun = shared
                .polls
                .lock()
                .begin(token, checked.seq)
                .map(|(e, t)| (e.clone(), t));
            let (entry, ticket) = begun.ok_or(Refusal::UnknownSession)?;
            (token, entry, ticket)
        }
        None => {
            let max_frame = config.session.max_frame as usize;
            begins_session(&parsed, max_frame, *shared.shutdown.borrow())?;
            match open_session(shared, peer, headers, counted, codec) {
                Ok(opened) => opened,
                Err(refusal) => return Ok(refusal),
            }
        }
    };
    let _in_flight = InFlight { shared, token };
    entry.release.notify_waiters();
    {
        let mut conn = entry.conn.lock().await;
        let hub = &shared.hub;
        let now = hub.runtime().clock.now();
        let fed = polling::feed(
            &mut conn.machine,
            now,
            hub.hub(),
            codec,
            &parsed,
            bytes.len(),
        );
        if let Err(refusal) = fed {
            drop(conn);
            end_session(shared, token);
            return Err(refusal);
        }
        conn.after_input(shared).await;
    }
    Ok(hold(shared, &entry, token, ticket, codec).await)
}

/// Makes a session for a first request, its request begun; over the connection limit (or the
/// table's capacity), the answer refusing it instead.
fn open_session(
    shared: &Arc<ServerState>,
    peer: SocketAddr,
    headers: &hyper::HeaderMap,
    counted: bool,
    codec: Codec,
) -> Result<(Token, Arc<Entry>, Ticket), Answer> {
    let busy = if counted { shared.polls.requests() } else { 0 };
    let over = shared
        .hub
        .counters()
        .admit(shared.config.max_connections, busy);
    let now = shared.hub.runtime().clock.now();
    let headers = http::header_pairs(headers);
    let mut table = shared.polls.lock();
    let seeds = [
        RandomState::new().hash_one(peer),
        RandomState::new().hash_one(now),
    ];
    let vacant = if over { None } else { table.vacant(now, seeds) };
    let mut conn = Conn::new(
        shared,
        peer,
        headers,
        vacant.is_none(),
        Framing::Body(codec),
    );
    let Some(vacant) = vacant else {
        drop(table);
        uncount(shared);
        let refusal = capacity_refusal(&mut conn.machine, now, codec, &shared.polls.limits);
        shared.hub.count(conn.machine.take_counts());
        return Err(refusal);
    };
    let entry = Arc::new(Entry {
        conn: tokio::sync::Mutex::new(conn),
        cut: AtomicBool::new(false),
        release: Notify::new(),
    });
    let (token, ticket) = vacant.insert(entry.clone());
    drop(table);
    if !shared.polls.sweeping.swap(true, Ordering::AcqRel) {
        tokio::spawn(sweep(shared.clone()));
    }
    debug!(%peer, "polling session opened");
    Ok((token, entry, ticket))
}

/// Holds a request until `Hold::poll` says to answer (see the module docs).
async fn hold(
    shared: &ServerState,
    entry: &Entry,
    token: Token,
    ticket: Ticket,
    codec: Codec,
) -> Answer {
    let clock = shared.hub.runtime().clock;
    let waker = entry.conn.lock().await.waker.clone();
    let mut shutdown = shared.shutdown.clone();
    let hold = Hold::new(clock.now(), codec, &shared.polls.limits);
    let mut body = Vec::new();
    loop {
        let released = entry.release.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        if entry.cut.load(Ordering::Acquire) {
            return Refusal::UnknownSession.answer();
        }
        let superseded = shared.polls.lock().superseded(token, ticket);
        let step = {
            let mut conn = entry.conn.lock().await;
            let step = hold.poll(&mut conn.machine, clock.now(), superseded, &mut body);
            shared.hub.count(conn.machine.take_counts());
            step
        };
        let until = match step {
            Step::Answer { ended } => {
                if ended {
                    end_session(shared, token);
                }
                break;
            }
            Step::Wait { until } => clock.to_tokio(until),
        };
        tokio::select! {
            _ = &mut released => {}
            _ = waker.notified() => {}
            _ = tokio::time::sleep_until(until) => {}
            retry = shutdown_requested(&mut shutdown) => {
                entry.conn.lock().await.machine.close(
                    CloseCode::GOING_AWAY,
                    Some(retry),
                    "server shutting down",
                );
            }
        }
    }
    hold.finish(token, body)
}

/// Removes a session from the registry; the one who removes it uncounts it.
fn end_session(shared: &ServerState, token: Token) {
    let removed = shared.polls.lock().remove(token);
    if removed.is_some() {
        uncount(shared);
    }
}

fn uncount(shared: &ServerState) {
    let counters = &shared.hub.counters();
    if counters.connections.sub(1) == 1 {
        shared.idle.notify_waiters();
    }
}

/// Ends the sessions the table expires, and every session on shutdown; runs while the registry
/// holds sessions.
async fn sweep(shared: Arc<ServerState>) {
    let tick = (shared.config.poll_idle / 4).max(std::time::Duration::from_millis(10));
    let clock = shared.hub.runtime().clock;
    let mut shutdown = shared.shutdown.clone();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(tick) => false,
            _ = shutdown_requested(&mut shutdown) => true,
        };
        let (ended, empty) = {
            let mut sessions = shared.polls.lock();
            let ended = if stopping {
                sessions.end_all()
            } else {
                sessions.expire(clock.now())
            };
            let empty = sessions.is_empty();
            if empty {
                shared.polls.sweeping.store(false, Ordering::Release);
            }
            (ended, empty)
        };
        for _ in &ended {
            debug!("polling session expired");
            uncount(&shared);
        }
        if empty {
            return;
        }
    }
}

/// Cuts the polling sessions that `hit` picks (by session id), as a network fault would: the
/// session is forgotten without a close frame, its held request answers 404, and the client's
/// next request gets 404 too. Returns how many were cut.
pub(crate) fn cut(shared: &ServerState, hit: &dyn Fn(u64) -> bool) -> usize {
    let cut = shared.polls.lock().remove_where(|entry| {
        // A session busy with a request right now is cut the next time.
        entry
            .conn
            .try_lock()
            .is_ok_and(|conn| hit(conn.machine.session_id()))
    });
    for entry in &cut {
        entry.cut.store(true, Ordering::Release);
        entry.release.notify_waiters();
        uncount(shared);
    }
    cut.len()
}
