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
//! `ClientOptions::tls` config and server name, so HTTPS needs no connector of its own. A response
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
use eventwire_core::client::fallback::Reply as Verdict;
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
        while let Some(frames) = self.poll.core.poll_request(codec, &mut self.poll.body) {
            self.send_poll(frames);
        }
    }

    /// Spawns one request carrying the body the core filled.
    fn send_poll(&mut self, frames: usize) {
        let Some(session) = self.poll.session.as_mut() else {
            return;
        };
        let body = std::mem::take(&mut self.poll.body);
        let target = self.target.clone();
        tracing::trace!(frames, bytes = body.len(), "poll request");
        let request = request(
            self.poll.core.config().map_or("/", |o| &o.path),
            &self.target.authority,
            self.machine.codec(),
            body,
            session.token.as_ref(),
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
        if let Some(frames) = self.poll.core.disconnect(codec, &mut self.poll.body) {
            self.send_poll(frames);
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

/// A poll request: `body` for the session of `token` (none for a session's first request).
fn request(
    path: &str,
    authority: &str,
    codec: Codec,
    body: Vec<u8>,
    token: Option<&HeaderValue>,
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
        .header(CONTENT_LENGTH, body.len());
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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, Notify};

    use super::*;

    const LIMIT: usize = 1024;

    /// A server on 127.0.0.1 that runs `handler` on each connection; also returns the count of
    /// connections accepted.
    async fn server<F, Fut>(handler: F) -> (SocketAddr, Arc<AtomicUsize>)
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handler(tcp));
            }
        });
        (addr, connections)
    }

    /// Reads one request (head and `Content-Length` body) from `tcp`, keeping what follows it
    /// in `buf`; `None` at the end of the connection.
    async fn read_request(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(start) = parsed.parse(buf).unwrap() {
                let length = parsed
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |h| {
                        std::str::from_utf8(h.value).unwrap().parse().unwrap()
                    });
                while buf.len() < start + length {
                    let mut chunk = [0u8; 4096];
                    let n = tcp.read(&mut chunk).await.unwrap();
                    assert_ne!(n, 0, "the request body was cut");
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8(buf[..start].to_vec()).unwrap();
                let body = buf[start..start + length].to_vec();
                buf.drain(..start + length);
                return Some((head, body));
            }
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A server that answers every request with `response` and then closes the connection.
    async fn answering(response: &[u8]) -> SocketAddr {
        let response = Bytes::copy_from_slice(response);
        let (addr, _) = server(move |mut tcp| {
            let response = response.clone();
            async move {
                if read_request(&mut tcp, &mut Vec::new()).await.is_some() {
                    let _ = tcp.write_all(&response).await;
                }
            }
        })
        .await;
        addr
    }

    fn target(addr: SocketAddr) -> Target {
        Target::new(
            &format!("ws://{addr}/"),
            #[cfg(feature = "tls")]
            None,
        )
        .unwrap()
    }

    fn poll(addr: SocketAddr, body: &[u8]) -> Request<Full<Bytes>> {
        request(
            "/eventwire/poll",
            &addr.to_string(),
            Codec::Json,
            body.to_vec(),
            None,
        )
        .unwrap()
    }

    /// One exchange with the server at `addr` on a new connection, bounded by [`LIMIT`]; fails
    /// the test if it takes longer than a few seconds (a refusal must not wait for the body).
    async fn fetch(addr: SocketAddr) -> Result<Reply, PollError> {
        let exchange = exchange(target(addr), None, poll(addr, b"[]"), LIMIT);
        tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .expect("the exchange ends without waiting for the rest of the body")
    }

    #[tokio::test]
    async fn requests_follow_the_protocol_and_responses_are_read() {
        let (seen, mut requests) = mpsc::unbounded_channel();
        let (addr, _) = server(move |mut tcp| {
            let seen = seen.clone();
            async move {
                let mut buf = Vec::new();
                while let Some(request) = read_request(&mut tcp, &mut buf).await {
                    seen.send(request).unwrap();
                    let _ = tcp
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nEventwire-Session: abc\r\n\
                              Content-Length: 2\r\nConnection: close\r\n\r\n[]",
                        )
                        .await;
                }
            }
        })
        .await;
        let token = HeaderValue::from_static("t1");
        let json = request(
            "/eventwire/poll",
            &addr.to_string(),
            Codec::Json,
            b"[{}]".to_vec(),
            Some(&token),
        )
        .unwrap();
        let reply = exchange(target(addr), None, json, LIMIT).await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.token, Some(HeaderValue::from_static("abc")));
        assert_eq!(&reply.body[..], b"[]");
        let (head, body) = requests.recv().await.unwrap();
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with("post /eventwire/poll http/1.1\r\n"),
            "{head}"
        );
        for header in [
            format!("host: {addr}"),
            "content-type: application/json".to_owned(),
            "accept: application/json".to_owned(),
            "content-length: 4".to_owned(),
            "eventwire-session: t1".to_owned(),
        ] {
            assert!(
                head.contains(&format!("\r\n{header}\r\n")),
                "{header} in {head}"
            );
        }
        assert_eq!(body, b"[{}]");

        // A session's first request has no token; an empty body still says its length.
        let binary = request(
            "/eventwire/poll",
            &addr.to_string(),
            Codec::Binary,
            Vec::new(),
            None,
        )
        .unwrap();
        exchange(target(addr), None, binary, LIMIT).await.unwrap();
        let (head, body) = requests.recv().await.unwrap();
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("\r\ncontent-type: application/octet-stream\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\ncontent-length: 0\r\n"), "{head}");
        assert!(!head.contains("eventwire-session"), "{head}");
        assert!(body.is_empty());

        // The options may make a path that is no request target.
        assert!(request("/a b", "h", Codec::Json, Vec::new(), None).is_err());
    }

    #[tokio::test]
    async fn bodies_are_framed_by_length_by_chunks_or_by_the_end() {
        let eof = answering(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nnope").await;
        let reply = fetch(eof).await.unwrap();
        assert_eq!(
            (reply.status, reply.token, &reply.body[..]),
            (404, None, &b"nope"[..])
        );

        let chunked = answering(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nEventwire-Session: s\r\n\r\n\
              5\r\n[1,2,\r\n2\r\n3]\r\n0\r\n\r\n",
        )
        .await;
        let reply = fetch(chunked).await.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(&reply.body[..], b"[1,2,3]");

        // Exactly the limit is allowed, however it comes.
        let (at_limit, _) = server(|mut tcp| async move {
            read_request(&mut tcp, &mut Vec::new()).await.unwrap();
            let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..4 {
                response.extend_from_slice(b"100\r\n");
                response.extend_from_slice(&[b' '; 256]);
                response.extend_from_slice(b"\r\n");
            }
            response.extend_from_slice(b"0\r\n\r\n");
            tcp.write_all(&response).await.unwrap();
        })
        .await;
        assert_eq!(fetch(at_limit).await.unwrap().body.len(), LIMIT);
    }

    /// A server that sends `head` and then `body` and keeps the connection open without
    /// ending the body, until the client goes.
    async fn stalling(head: &'static [u8], body: Vec<u8>) -> SocketAddr {
        let (addr, _) = server(move |mut tcp| {
            let body = body.clone();
            async move {
                read_request(&mut tcp, &mut Vec::new()).await.unwrap();
                tcp.write_all(head).await.unwrap();
                let _ = tcp.write_all(&body).await;
                let _ = tcp.read(&mut [0u8; 16]).await;
            }
        })
        .await;
        addr
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused_as_they_arrive() {
        // Declared too large: refused before any of it comes.
        let declared = stalling(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
            Vec::new(),
        )
        .await;
        assert!(matches!(
            fetch(declared).await,
            Err(PollError::TooLarge(LIMIT))
        ));

        // Chunks that pass the limit: refused once they do, the rest never awaited.
        let mut chunks = Vec::new();
        for _ in 0..3 {
            chunks.extend_from_slice(b"200\r\n");
            chunks.extend_from_slice(&[b' '; 512]);
            chunks.extend_from_slice(b"\r\n");
        }
        let chunked = stalling(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunks,
        )
        .await;
        assert!(matches!(
            fetch(chunked).await,
            Err(PollError::TooLarge(LIMIT))
        ));

        // Framed by the end of the connection, which never comes.
        let open = stalling(b"HTTP/1.1 200 OK\r\n\r\n", vec![b' '; LIMIT + 1]).await;
        assert!(matches!(fetch(open).await, Err(PollError::TooLarge(LIMIT))));
    }

    #[tokio::test]
    async fn malformed_responses_fail() {
        let cut = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n[]").await;
        assert!(
            matches!(fetch(cut).await, Err(PollError::Http(_))),
            "a cut body"
        );
        let garbage = answering(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        assert!(
            matches!(fetch(garbage).await, Err(PollError::Http(_))),
            "not HTTP"
        );
        let empty = answering(b"").await;
        assert!(
            matches!(fetch(empty).await, Err(PollError::Http(_))),
            "no response"
        );
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend(std::iter::repeat_n(b"X-Pad: 0123456789\r\n", 600).flatten());
        big.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let head = answering(&big).await;
        match fetch(head).await {
            Err(PollError::Http(e)) => assert!(e.is_parse_too_large(), "{e}"),
            other => panic!("a head over 8 KiB: {:?}", other.map(|r| r.status)),
        }
        let refused = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = refused.local_addr().unwrap();
        drop(refused);
        assert!(matches!(fetch(closed).await, Err(PollError::Connect(_))));
    }

    #[tokio::test]
    async fn a_kept_connection_carries_the_next_request() {
        // Keeps each connection for two requests, then closes it when `close` is notified.
        let close = Arc::new(Notify::new());
        let requests = Arc::new(AtomicUsize::new(0));
        let (addr, connections) = server({
            let (close, requests) = (close.clone(), requests.clone());
            move |mut tcp| {
                let (close, requests) = (close.clone(), requests.clone());
                async move {
                    let mut buf = Vec::new();
                    for _ in 0..2 {
                        let Some((_, body)) = read_request(&mut tcp, &mut buf).await else {
                            return;
                        };
                        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                        let reply = format!("[{n}]");
                        let response = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
                            reply.len()
                        );
                        assert_eq!(body, b"[]");
                        tcp.write_all(response.as_bytes()).await.unwrap();
                    }
                    close.notified().await;
                }
            }
        })
        .await;
        let first = exchange(target(addr), None, poll(addr, b"[]"), LIMIT)
            .await
            .unwrap();
        assert_eq!(&first.body[..], b"[1]");
        let link = first.link.expect("the server kept the connection");
        let second = exchange(target(addr), Some(link), poll(addr, b"[]"), LIMIT)
            .await
            .unwrap();
        assert_eq!(&second.body[..], b"[2]");
        assert_eq!(
            connections.load(Ordering::SeqCst),
            1,
            "one connection, two requests"
        );

        // The server closes the waiting connection: the next request takes a new one.
        let link = second.link.expect("the server kept the connection");
        close.notify_one();
        tokio::time::timeout(Duration::from_secs(5), async {
            while !link.sender.is_closed() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the client sees the close");
        let third = exchange(target(addr), Some(link), poll(addr, b"[]"), LIMIT)
            .await
            .unwrap();
        assert_eq!(&third.body[..], b"[3]");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        assert_eq!(requests.load(Ordering::SeqCst), 3);
    }
}
