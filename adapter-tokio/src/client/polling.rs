//! The HTTP of the long-polling fallback (PROTOCOL.md section 1.4).
//!
//! Every decision is the core's [`Fallback`] (when to poll, when a request goes out and which
//! frames it carries, which responses end a session, when to try a WebSocket again); this module
//! moves its bodies over HTTP and reports what came back. A session's requests each run in a
//! task; their responses are handed over in the order of the requests. A successful probe (a
//! WebSocket attempt in the background) is closed again at once: the server sees a connection
//! that ends before its hello.
//!
//! HTTP/1.1 is hyper's client connection (`hyper::client::conn::http1`) over the byte stream a
//! WebSocket attempt would use: plain TCP for `ws://`; for `wss://`, HTTPS: TLS through the same
//! `TokioOptions::tls` config and server name, so HTTPS needs no connector of its own. A response
//! head is at most 8 KiB and a body at most `max_message * 64` bytes, framed by `Content-Length`,
//! by chunked transfer coding, or by the end of the connection. A body over the limit fails the
//! request (and so the session) as soon as its `Content-Length` declares it, or else as soon as
//! the bytes read pass the limit: the body is read as it arrives and never kept beyond the limit.
//!
//! A session reuses its connections (HTTP/1.1 keep-alive): a connection whose response left it
//! open carries a later request of the same session, and up to two wait between requests (two
//! can be under way at once: the held one and one with frames). A server that answers
//! `Connection: close`, or closes a waiting connection, costs a new connection, nothing else. A
//! request goes out again on a new connection only when the old one closed before any of it was
//! sent: it is a `POST` that may carry frames, which the server must not get twice. A connection
//! lost after that fails the request like any other failure (a reconnect with resume).

use std::collections::VecDeque;
use std::fmt;
use std::future::pending;
use std::time::Duration;

use bytes::Bytes;
use eventwire_core::client::fallback::{Outgoing, Reply as Verdict};
use eventwire_core::client::{Fallback, Transport};
use eventwire_core::codec::Codec;
use eventwire_core::time::Instant;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument;

use super::{Attempt, Target, Task, CLOSE_TIMEOUT};

/// Largest response head.
const MAX_HEAD: usize = 8 * 1024;
/// Largest read buffer of a connection: a body arrives through it in pieces of at most this.
const READ_BUF: usize = 64 * 1024;
/// Connections a session keeps open between its requests: as many as can be under way at once.
const IDLE_LINKS: usize = 2;
/// How long one request may take at most: well beyond the server's long-poll time (25 s by
/// default). The machine's dead-link timer usually ends a stuck session first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The header that carries the session token.
const SESSION_HEADER: &str = "Eventwire-Session";
/// The header that carries a request's number in its session (the core's `Outgoing::seq`).
const SEQ_HEADER: &str = "Eventwire-Seq";

/// An HTTP response, as far as polling cares.
pub(super) struct Reply {
    status: u16,
    token: Option<HeaderValue>,
    body: Bytes,
    /// The connection, if the server kept it open for another request.
    link: Option<Link>,
}

/// Why a poll request failed; any of these abandons the session.
#[derive(Debug)]
pub(super) enum PollError {
    /// The TCP connection or the TLS handshake failed.
    Connect(std::io::Error),
    /// The options make no valid request (a path that is not a URI path).
    Request(hyper::http::Error),
    /// HTTP failed: a malformed response, a head over [`MAX_HEAD`], a lost connection.
    Http(hyper::Error),
    /// The response body is over the limit, in bytes.
    TooLarge(usize),
    /// The response body failed otherwise.
    Body(Box<dyn std::error::Error + Send + Sync>),
    /// No whole response within [`REQUEST_TIMEOUT`].
    Timeout,
    /// The request's task ended without a result (it panicked).
    Task(JoinError),
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollError::Connect(e) => write!(f, "connect: {e}"),
            PollError::Request(e) => write!(f, "a bad request: {e}"),
            PollError::Http(e) => write!(f, "http: {e}"),
            PollError::TooLarge(limit) => write!(f, "a response body over {limit} bytes"),
            PollError::Body(e) => write!(f, "the response body: {e}"),
            PollError::Timeout => f.write_str("the request timed out"),
            PollError::Task(e) => write!(f, "the request task: {e}"),
        }
    }
}

impl std::error::Error for PollError {}

/// A request under way: its task.
type Exchange = JoinHandle<Result<Reply, PollError>>;

/// One HTTP/1.1 connection of a session: where requests go, and the task that drives the
/// connection. Dropping it ends that task, which closes the socket.
pub(super) struct Link {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The HTTP side of one polling session (the core's `Fallback` keeps its decisions).
#[derive(Default)]
struct Session {
    token: Option<HeaderValue>,
    /// Requests under way, oldest first; their responses are handled in this order.
    requests: VecDeque<Exchange>,
    /// Connections the server kept open, for the next requests (at most [`IDLE_LINKS`]).
    idle: Vec<Link>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for request in &self.requests {
            request.abort();
        }
    }
}

/// What ended the polling part of the task's wait.
pub(super) enum PollWake {
    /// A new session is ready to be reported open.
    Opened,
    /// The oldest request finished.
    Reply(Result<Reply, PollError>),
    /// The background WebSocket attempt finished: whether it opened.
    Probed(bool),
}

/// The fallback, kept by the task: the core's decisions and the HTTP they ask for.
pub(super) struct Polling {
    pub(super) core: Fallback,
    session: Option<Session>,
    probe: Option<Attempt>,
    transport: watch::Sender<Transport>,
    /// The next request's body.
    body: Vec<u8>,
}

impl Polling {
    pub(super) fn new(core: Fallback, transport: watch::Sender<Transport>) -> Self {
        Polling {
            core,
            session: None,
            probe: None,
            transport,
            body: Vec::new(),
        }
    }

    /// A WebSocket connection opened.
    pub(super) fn ws_opened(&mut self) {
        self.core.handle_ws_opened();
        self.probe = None;
        self.transport.send_replace(Transport::WebSocket);
    }

    /// Waits for whatever of the fallback comes first. Cancel-safe: the requests and the probe
    /// are kept in `self`.
    pub(super) async fn wake(&mut self) -> PollWake {
        if self.core.is_opening() {
            return PollWake::Opened;
        }
        let request = self.session.as_mut().and_then(|s| s.requests.front_mut());
        let probe = self.probe.as_mut();
        tokio::select! {
            reply = async {
                match request {
                    Some(request) => request.await.unwrap_or_else(|e| Err(PollError::Task(e))),
                    None => pending().await,
                }
            } => PollWake::Reply(reply),
            opened = async {
                match probe {
                    Some(probe) => probe.await.is_ok(),
                    None => pending().await,
                }
            } => PollWake::Probed(opened),
        }
    }
}

impl Task {
    /// Opens a polling session instead of a WebSocket attempt if the core says so; returns
    /// whether it did.
    pub(super) fn start_polling(&mut self, now: Instant) -> bool {
        if self.poll.core.connect(now) != Transport::Polling {
            return false;
        }
        tracing::info!(
            failures = self.poll.core.failures(),
            "falling back to long-polling"
        );
        self.poll.session = Some(Session::default());
        true
    }

    /// Starts the WebSocket probe if the core says one is due.
    pub(super) fn probe_if_due(&mut self, now: Instant) {
        if !self.poll.core.poll_probe(now) {
            return;
        }
        // The same attempt a `Connect` would start, taken out of the task's slot.
        let current = self.attempt.take();
        self.start_attempt();
        self.poll.probe = self.attempt.take();
        self.attempt = current;
        tracing::debug!("trying a WebSocket again");
    }

    /// Sends every request the core asks for.
    pub(super) fn send_polls(&mut self) {
        let codec = self.machine.codec();
        while let Some(outgoing) = self.poll.core.poll_request(codec, &mut self.poll.body) {
            self.send_poll(outgoing);
        }
    }

    /// Spawns one request carrying the body the core filled, with its number.
    fn send_poll(&mut self, outgoing: Outgoing) {
        let Some(session) = self.poll.session.as_mut() else {
            return;
        };
        let body = std::mem::take(&mut self.poll.body);
        let target = self.target.clone();
        tracing::trace!(
            frames = outgoing.frames,
            seq = outgoing.seq,
            bytes = body.len(),
            "poll request"
        );
        let request = request(
            self.poll.core.config().map_or("/", |o| &o.path),
            &self.target.authority,
            self.machine.codec(),
            body,
            session.token.as_ref(),
            outgoing.seq,
        );
        let link = session.idle.pop();
        let limit = self.max_message.saturating_mul(64);
        let span = tracing::debug_span!("poll");
        session.requests.push_back(tokio::spawn(
            async move {
                let request = request.map_err(PollError::Request)?;
                tokio::time::timeout(REQUEST_TIMEOUT, exchange(target, link, request, limit))
                    .await
                    .unwrap_or(Err(PollError::Timeout))
            }
            .instrument(span),
        ));
    }

    /// The machine asked to disconnect: the last requests (one may carry a close frame) get a
    /// moment to finish, then the session is gone.
    pub(super) fn end_polling(&mut self) {
        let codec = self.machine.codec();
        if let Some(outgoing) = self.poll.core.disconnect(codec, &mut self.poll.body) {
            self.send_poll(outgoing);
        }
        let Some(mut session) = self.poll.session.take() else {
            return;
        };
        let requests: Vec<Exchange> = session.requests.drain(..).collect();
        if requests.is_empty() {
            return;
        }
        tracing::info!("polling session ended");
        self.closing = Some(tokio::spawn(
            async move {
                let aborts: Vec<_> = requests.iter().map(JoinHandle::abort_handle).collect();
                let all = async {
                    for request in requests {
                        let _ = request.await;
                    }
                };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, all).await;
                for abort in aborts {
                    abort.abort();
                }
            }
            .in_current_span(),
        ));
    }

    /// Something of the fallback happened.
    pub(super) fn on_poll(&mut self, now: Instant, wake: PollWake) {
        match wake {
            PollWake::Opened => {
                self.poll.core.handle_session_opened();
                tracing::info!("polling session open");
                self.poll.transport.send_replace(Transport::Polling);
                self.machine
                    .handle_connected(now, &mut |e| self.out.on_event(e));
            }
            PollWake::Reply(reply) => {
                if let Some(session) = self.poll.session.as_mut() {
                    session.requests.pop_front();
                }
                match reply {
                    Ok(reply) => self.on_poll_reply(now, reply),
                    Err(e) => {
                        tracing::warn!(error = %e, "poll request failed");
                        if self.poll.core.handle_request_failed() {
                            self.lose_polling(now);
                        }
                    }
                }
            }
            PollWake::Probed(opened) => {
                // Dropping the probe closes its socket; the server sees a connection that ends
                // before its hello.
                self.poll.probe = None;
                if opened {
                    tracing::info!("a WebSocket opens again; leaving long-polling");
                }
                if self.poll.core.handle_probe(now, opened) {
                    self.lose_polling(now);
                }
            }
        }
    }

    /// The core abandoned the session: its requests are dropped and the machine learns it is
    /// disconnected.
    fn lose_polling(&mut self, now: Instant) {
        self.poll.session = None;
        self.machine
            .handle_disconnected(now, &mut |e| self.out.on_event(e));
    }

    fn on_poll_reply(&mut self, now: Instant, reply: Reply) {
        match self
            .poll
            .core
            .handle_response(reply.status, reply.token.is_some())
        {
            Verdict::Deliver => {
                if let Some(session) = self.poll.session.as_mut() {
                    if let Some(link) = reply.link {
                        if session.idle.len() < IDLE_LINKS {
                            session.idle.push(link);
                        }
                    }
                    if reply.token.is_some() {
                        session.token = reply.token;
                    }
                }
                tracing::trace!(bytes = reply.body.len(), "poll response");
                // A body that does not decode ends the session through the connection's close.
                self.machine
                    .handle_body(now, &reply.body, &mut |e| self.out.on_event(e));
            }
            Verdict::Lost(why) => {
                tracing::warn!(?why, "poll response refused");
                self.lose_polling(now);
            }
            // The session ended before its response came: nothing of it is wanted.
            _ => {}
        }
    }

    /// Drops everything of the fallback (the task ends).
    pub(super) fn stop_polling(&mut self) {
        self.end_polling();
        self.poll.core.stop();
        self.poll.probe = None;
    }
}

/// A poll request: `body` for the session of `token` (none for a session's first request), the
/// session's request number `seq`.
fn request(
    path: &str,
    authority: &str,
    codec: Codec,
    body: Vec<u8>,
    token: Option<&HeaderValue>,
    seq: u64,
) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    let content_type = content_type(codec);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        // hyper's connection-level client sends only the headers it is given.
        .header(HOST, authority)
        .header(CONTENT_TYPE, content_type)
        .header(ACCEPT, content_type)
        // Also for an empty body: the server answers a POST without it with 411.
        .header(CONTENT_LENGTH, body.len())
        .header(SEQ_HEADER, seq);
    if let Some(token) = token {
        request = request.header(SESSION_HEADER, token);
    }
    request.body(Full::new(Bytes::from(body)))
}

fn content_type(codec: Codec) -> &'static str {
    if codec.is_text() {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// One request, on `link` if the server kept it open, else on a new connection; reads the
/// response, its body bounded by `limit`.
async fn exchange(
    target: Target,
    link: Option<Link>,
    request: Request<Full<Bytes>>,
    limit: usize,
) -> Result<Reply, PollError> {
    let (link, response) = send(target, link, request).await?;
    let status = response.status().as_u16();
    let token = response.headers().get(SESSION_HEADER).cloned();
    let body = response.into_body();
    // Refused on the declared length alone, before any of the body is read.
    if body.size_hint().lower() > limit as u64 {
        return Err(PollError::TooLarge(limit));
    }
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                PollError::TooLarge(limit)
            } else {
                match e.downcast::<hyper::Error>() {
                    Ok(e) => PollError::Http(*e),
                    Err(e) => PollError::Body(e),
                }
            }
        })?
        .to_bytes();
    Ok(Reply {
        status,
        token,
        body,
        link: (!link.sender.is_closed()).then_some(link),
    })
}

/// Sends `request` on `link` if it is still open, else (or if it closed before the request went
/// out) on a new connection.
async fn send(
    target: Target,
    link: Option<Link>,
    mut request: Request<Full<Bytes>>,
) -> Result<(Link, Response<Incoming>), PollError> {
    if let Some(mut link) = link {
        // An error here means the connection closed while it waited.
        if link.sender.ready().await.is_ok() {
            match link.sender.try_send_request(request).await {
                Ok(response) => return Ok((link, response)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        tracing::debug!(error = %e.error(), "kept connection closed; reconnecting");
                        request = unsent;
                    }
                    None => return Err(PollError::Http(e.into_error())),
                },
            }
        }
    }
    let mut link = connect(target).await?;
    let response = link
        .sender
        .send_request(request)
        .await
        .map_err(PollError::Http)?;
    Ok((link, response))
}

/// Opens an HTTP/1.1 connection the way a WebSocket attempt opens its stream (TCP, then TLS for
/// `wss://`).
async fn connect(target: Target) -> Result<Link, PollError> {
    let stream = target.open().await.map_err(PollError::Connect)?;
    let (sender, connection) = http1::Builder::new()
        .max_header_size(MAX_HEAD)
        .max_buf_size(READ_BUF)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(PollError::Http)?;
    let driver = tokio::spawn(
        async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "poll connection failed");
            }
        }
        .in_current_span(),
    );
    Ok(Link { sender, driver })
}
