//! The standalone server's HTTP/1.1 front, on hyper: every connection starts here, and each
//! request decides what it is.
//!
//! | request | served by |
//! |---|---|
//! | `POST <poll_path>` | long-polling (`polling::serve`), with CORS headers for allowed origins |
//! | `OPTIONS <poll_path>` | the CORS preflight of a cross-origin polling request (`polling::serve`) |
//! | `Upgrade: websocket` | the WebSocket upgrade (`conn::upgrade`), after which the connection leaves hyper; 403 when [`ServerConfig::websocket`](crate::ServerConfig::websocket) is off |
//! | a path with a [`Route`] | the route's handler, with the body read (at most [`MAX_ROUTE_BODY`]); `HEAD` as `GET` without the body |
//! | anything else | 404 |
//!
//! A connection is kept alive for further requests (a polling client's next request, a page's
//! next file) until the client closes it, asks `Connection: close`, or sends no complete request
//! head within the upgrade timeout (hyper's header read timeout, which also bounds an idle
//! connection between requests). Bounds: a request head is at most [`MAX_HEAD`] bytes
//! (hyper answers 431 above); a body is read only after its head passed every check, with a
//! limit (a body that goes over it is answered 413 as soon as it does; one announced over it,
//! at once), as its bytes arrive (a stalled request with a large `Content-Length` costs what it
//! sent, not what it announced), and within the upgrade timeout (else 408); a response that the
//! peer does not read within the write timeout ends the connection ([`HttpIo`]). On shutdown,
//! idle connections are closed at once and busy ones after their response (a held polling
//! request returns the close frame first).
//!
//! Every answer the core decides (polling, refusals, CORS: `server::http::Answer`) becomes a
//! response in one place, [`response`], for this front and the axum mount alike.

use std::convert::Infallible;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use eventwire_core::server::http::{Answer, Refusal};
use eventwire_core::server::polling::Kind;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use crate::conn::{self, Upgraded, Upgrading};
use crate::polling;
use crate::server::{shutdown_requested, ServerState};

/// Largest request head (request line and headers); hyper answers 431 above.
const MAX_HEAD: usize = 8 * 1024;
/// Most headers in a request head.
const MAX_HEADERS: usize = 64;
/// Largest request body a [`Route`] is handed; a larger one is answered 413 (at once when its
/// `Content-Length` says so, else as soon as it goes over).
pub const MAX_ROUTE_BODY: usize = 64 * 1024;
/// After the last response, what the peer still sends is read and dropped, up to this many
/// bytes and for at most [`LINGER_TIME`] ([`HttpIo`]).
const LINGER_BYTES: usize = 256 * 1024;
/// See [`LINGER_BYTES`].
const LINGER_TIME: Duration = Duration::from_secs(1);

/// A plain HTTP request to a [`Route`] of the standalone server.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The method, as sent (`GET`, `POST`, ...); a `HEAD` request reaches the route as `GET`
    /// (the server then sends the head of its answer without the body).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query after `?`, if any (not decoded).
    pub query: Option<String>,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (at most [`MAX_ROUTE_BODY`] bytes).
    pub body: Vec<u8>,
    /// The peer's address.
    pub peer: SocketAddr,
}

impl HttpRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The answer of a [`Route`].
#[derive(Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code (a final one: 200 to 999; others are answered 500).
    pub status: u16,
    /// Headers besides `Content-Length`, `Transfer-Encoding` and `Connection`, which the server
    /// writes; a header whose name or value HTTP does not allow is left out.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl HttpResponse {
    /// A response with a status, a content type and a body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Bytes>) -> Self {
        HttpResponse {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// `200` with a JSON body, not cached.
    pub fn json(body: impl Into<Bytes>) -> Self {
        HttpResponse::new(200, "application/json", body).header("Cache-Control", "no-store")
    }

    /// A plain-text error such as `404 not found` or `405 method not allowed`.
    pub fn error(status: u16, why: &str) -> Self {
        HttpResponse::new(status, "text/plain; charset=utf-8", why.to_owned())
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A handler of plain HTTP requests on the standalone server's port, set with
/// [`ServerConfig::route`](crate::ServerConfig::route). It runs on the connection's task and
/// should not block; the server bounds the request (head, body, time) before calling it.
pub type Route = Arc<dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync>;

/// A response of the standalone server.
pub(crate) type Response = hyper::Response<Full<Bytes>>;

/// A connection of the standalone server while it speaks plain HTTP: it is in
/// `Registry::requests` (so the connection limit leaves it out: a polling session counts
/// instead, and a WebSocket once upgraded) until dropped.
pub(crate) struct Plain(Arc<ServerState>);

impl Plain {
    pub(crate) fn new(shared: Arc<ServerState>) -> Plain {
        shared.polls.requests.fetch_add(1, Ordering::AcqRel);
        Plain(shared)
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        self.0.polls.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves the HTTP requests of one connection until it closes, or until a WebSocket upgrade
/// takes it over: then the upgraded connection, its codec and the request's headers.
pub(crate) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    shared: &Arc<ServerState>,
) -> Option<Upgraded>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgraded = Arc::new(AtomicBool::new(false));
    let io = HttpIo::new(stream, upgraded.clone(), shared.config.write_timeout);
    // At most one upgrade per connection: after the 101 hyper hands the socket over.
    let pending: Arc<Mutex<Option<Upgrading>>> = Arc::default();
    let service = {
        let shared = shared.clone();
        let pending = pending.clone();
        service_fn(move |req| {
            let shared = shared.clone();
            let pending = pending.clone();
            async move { Ok::<_, Infallible>(handle(req, peer, &shared, &pending).await) }
        })
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.upgrade_timeout)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEAD);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut shutdown = shared.shutdown.clone();
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        _ = shutdown_requested(&mut shutdown) => {
            // Idle: closed now. Busy: closed after the response (a held polling request returns
            // at shutdown on its own).
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        debug!(error = %e, "HTTP connection ended");
    }
    let upgrading = pending.lock().unwrap_or_else(|p| p.into_inner()).take()?;
    match upgrading.on.await {
        Ok(io) => {
            upgraded.store(true, Ordering::Release);
            Some(Upgraded {
                io,
                codec: upgrading.codec,
                headers: upgrading.headers,
            })
        }
        Err(e) => {
            debug!(error = %e, "upgrade failed");
            None
        }
    }
}

/// Routes one request (see the module table).
async fn handle(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    shared: &Arc<ServerState>,
    pending: &Mutex<Option<Upgrading>>,
) -> Response {
    let config = &shared.config;
    let path = req.uri().path();
    if path == config.poll_path {
        if let Some(kind) = Kind::of(req.method().as_str()) {
            return polling::serve(kind, req, peer, shared, true).await;
        }
    }
    if is_websocket(req.headers()) {
        let (response, upgrading) = conn::upgrade(&mut req, shared);
        if upgrading.is_some() {
            *pending.lock().unwrap_or_else(|p| p.into_inner()) = upgrading;
        }
        return response;
    }
    if let Some((_, route)) = config.routes.iter().find(|(p, _)| p.as_str() == path) {
        let route = route.clone();
        return serve_route(req, peer, shared, &route).await;
    }
    error(404, "not found")
}

/// Whether the request asks for a WebSocket (`Upgrade: websocket`, among other protocols).
fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get_all(UPGRADE)
        .iter()
        .any(|v| has_token(v, "websocket"))
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub(crate) fn has_token(value: &HeaderValue, token: &str) -> bool {
    String::from_utf8_lossy(value.as_bytes())
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A request to a [`Route`]: its body read (at most [`MAX_ROUTE_BODY`]), then the handler.
async fn serve_route(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: &ServerState,
    route: &Route,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, MAX_ROUTE_BODY, shared.config.upgrade_timeout).await {
        Ok(body) => body,
        Err(refused) => return response(refused.answer()),
    };
    let head = parts.method == Method::HEAD;
    let method = if head { "GET" } else { parts.method.as_str() };
    let request = HttpRequest {
        method: method.to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: header_pairs(&parts.headers),
        body: body.to_vec(),
        peer,
    };
    // hyper sends no body in answer to HEAD, and the GET body's length as Content-Length.
    route_response(route(&request))
}

/// Reads a body (hyper's, or axum's) of at most `limit` bytes as it arrives, within `time`: too
/// large when it is announced or goes over the limit (413), too slow (408), or not received
/// when the connection fails mid-body (400).
pub(crate) async fn read_body<B>(body: B, limit: usize, time: Duration) -> Result<Bytes, Refusal>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    if body.size_hint().lower() > limit as u64 {
        return Err(Refusal::TooLarge);
    }
    match tokio::time::timeout(time, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(Refusal::TooLarge),
        Ok(Err(e)) => {
            debug!(error = %e, "request body not received");
            Err(Refusal::BodyNotReceived)
        }
        Err(_) => Err(Refusal::BodyTooSlow),
    }
}

/// The headers as pairs, names in lower case, for the auth hook and routes.
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// An answer of the core (a polling answer, a refusal, a preflight) as a response: its status,
/// its headers and its body, nothing added. The axum mount uses it too.
pub(crate) fn response(answer: Answer) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = status(answer.status);
    let headers = response.headers_mut();
    for header in &answer.headers {
        if let Some((name, value)) = header_parts(header.name(), &header.value()) {
            headers.insert(name, value);
        }
    }
    response
}

/// A header as hyper's types; `None` for a name or value HTTP does not allow (a route's).
fn header_parts(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    Some((name, HeaderValue::from_str(value).ok()?))
}

/// A plain-text refusal, not cached.
pub(crate) fn error(status: u16, why: &str) -> Response {
    response(Answer::text(status, why))
}

/// A route's answer as a response; the framing headers are the server's.
fn route_response(r: HttpResponse) -> Response {
    let final_status = (200..=999).contains(&r.status);
    if !final_status {
        warn!(
            status = r.status,
            "a route answered with a status that is not final"
        );
        return error(500, "bad route answer");
    }
    let mut response = hyper::Response::new(Full::new(r.body));
    *response.status_mut() = status(r.status);
    let headers = response.headers_mut();
    for (name, value) in r.headers {
        let Some((name, value)) = header_parts(&name, &value) else {
            continue;
        };
        if name != CONTENT_LENGTH && name != TRANSFER_ENCODING && name != CONNECTION {
            headers.append(name, value);
        }
    }
    response
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The socket under hyper while the connection speaks plain HTTP. hyper has no write timeout:
/// here a write or flush that cannot make progress for the write timeout fails, so a peer that
/// stops reading a response costs a connection for that long only. And when hyper closes the
/// connection, what the peer still sends is read and dropped for a moment (a lingering close),
/// so that an answer given before the body was read (413) is not lost to the reset a close with
/// unread data causes. Both are off once the connection is upgraded: the WebSocket loop has its
/// own write timeout and close handshake.
pub(crate) struct HttpIo<S> {
    inner: S,
    upgraded: Arc<AtomicBool>,
    write_timeout: Duration,
    /// The deadline of a stalled write, or of the lingering close.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` runs for the current stall.
    stalled: bool,
    /// Bytes still read and dropped once closing; `None` until then.
    linger: Option<usize>,
}

impl<S> HttpIo<S> {
    fn new(inner: S, upgraded: Arc<AtomicBool>, write_timeout: Duration) -> Self {
        HttpIo {
            inner,
            upgraded,
            write_timeout,
            timer: None,
            stalled: false,
            linger: None,
        }
    }

    fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Acquire)
    }

    /// Sets the timer to `deadline` and polls it: `Ready` once it has passed.
    fn wait_until(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::ZERO)));
        if let Some(deadline) = deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    }

    /// A write that could not make progress: pending, or the timeout error once it has waited
    /// for the write timeout.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.is_upgraded() {
            return Poll::Pending;
        }
        let start = !self.stalled;
        self.stalled = true;
        let deadline = start.then(|| Instant::now() + self.write_timeout);
        ready!(self.wait_until(cx, deadline));
        debug!("peer stopped reading a response");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "peer stopped reading",
        )))
    }

    /// A write that made progress, or failed.
    fn progress<T>(&mut self, done: io::Result<T>) -> Poll<io::Result<T>> {
        self.stalled = false;
        Poll::Ready(done)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HttpIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for HttpIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.stall(cx),
            Poll::Ready(done) => this.progress(done),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.stall(cx),
            Poll::Ready(done) => this.progress(done),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.stall(cx),
            Poll::Ready(done) => this.progress(done),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            match Pin::new(&mut this.inner).poll_shutdown(cx) {
                Poll::Pending => return this.stall(cx),
                Poll::Ready(Err(e)) => return this.progress(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            if this.is_upgraded() {
                return Poll::Ready(Ok(()));
            }
            this.linger = Some(LINGER_BYTES);
            this.stalled = false;
            if this
                .wait_until(cx, Some(Instant::now() + LINGER_TIME))
                .is_ready()
            {
                return Poll::Ready(Ok(()));
            }
        }
        let mut sink = [0u8; 4096];
        loop {
            let left = this.linger.unwrap_or(0);
            if left == 0 {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut sink[..left.min(4096)]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => this.linger = Some(left - buf.filled().len()),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    ready!(this.wait_until(cx, None));
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
