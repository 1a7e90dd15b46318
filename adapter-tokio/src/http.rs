//! The standalone server's HTTP/1.1 front: every connection starts here, and its request head
//! decides what it is.
//!
//! | request | served by |
//! |---|---|
//! | `POST <poll_path>` | long-polling (`poll::exchange`), with CORS headers for allowed origins |
//! | `OPTIONS <poll_path>` | the CORS preflight of a cross-origin polling request |
//! | `Upgrade: websocket` | the WebSocket upgrade (`conn`), the bytes read so far replayed; 403 when [`ServerConfig::websocket`](crate::ServerConfig::websocket) is off |
//! | a path with a [`Route`] | the route's handler, with the body read (at most [`MAX_ROUTE_BODY`]) |
//! | anything else | 404 |
//!
//! Invariants: at most [`MAX_HEAD`] bytes are read before deciding; a body is read only after
//! its head passed every check, and grows with the bytes that actually arrive (a stalled
//! request with a large `Content-Length` costs what it sent, not what it announced); all of it
//! runs inside the caller's upgrade timeout. Every response closes the connection (no
//! keep-alive, no pipelining).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use eventwire_core::codec::Codec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::poll::{self, Answer, Registry};
use crate::server::Shared;

/// Largest request head read before deciding what a connection is.
const MAX_HEAD: usize = 8 * 1024;
/// Most headers parsed in a request head.
const MAX_HEADERS: usize = 64;
/// Largest request body a [`Route`] is handed; a larger one is answered 413 before it is read.
pub const MAX_ROUTE_BODY: usize = 64 * 1024;
/// Bytes read from the socket at a time while reading a body.
const READ_CHUNK: usize = 8 * 1024;

/// A plain HTTP request to a [`Route`] of the standalone server.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The method, as sent (`GET`, `POST`, ...).
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
    /// The status code.
    pub status: u16,
    /// Headers besides `Content-Length` and `Connection`, which the server writes.
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

/// A parsed request head.
struct Head {
    /// Bytes of the head; what follows in the buffer is the start of the body.
    len: usize,
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_upgrade(&self) -> bool {
        self.get("upgrade")
            .is_some_and(|v| v.to_ascii_lowercase().contains("websocket"))
    }

    fn content_length(&self) -> Result<Option<u64>, Answer> {
        match self.get("content-length").map(|v| v.trim().parse::<u64>()) {
            None => Ok(None),
            Some(Ok(n)) => Ok(Some(n)),
            Some(Err(_)) => Err(Answer::error(400, "bad Content-Length")),
        }
    }
}

/// What the start of a connection on the standalone server turned out to be.
pub(crate) enum Sniffed<S> {
    /// A WebSocket upgrade (or bytes that are not HTTP, which the upgrade refuses): the bytes
    /// read so far replayed.
    Upgrade(Rewind<S>),
    /// A request answered over HTTP: polling, a preflight, a route, or a refusal.
    Http(Exchange<S>),
}

/// A plain HTTP request read from the standalone server's socket, served outside the upgrade
/// timeout (a polling request may be held).
pub(crate) struct Exchange<S> {
    stream: S,
    kind: Kind,
}

enum Kind {
    /// A polling request: its headers and either its codec and body or the head's answer.
    Poll {
        headers: Vec<(String, String)>,
        read: Result<(Codec, Vec<u8>), Answer>,
    },
    /// Answered already (a route, a preflight, a refusal).
    Done(Reply),
}

/// A response on the wire.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl From<Answer> for Reply {
    fn from(answer: Answer) -> Self {
        let mut headers = vec![
            ("Content-Type".to_owned(), answer.content_type.to_owned()),
            ("Cache-Control".to_owned(), "no-store".to_owned()),
        ];
        if let Some(token) = answer.token {
            headers.push(("Eventwire-Session".to_owned(), token));
        }
        if let Some(secs) = answer.retry_after {
            headers.push(("Retry-After".to_owned(), secs.to_string()));
        }
        headers.extend(answer.headers.into_iter().map(|(k, v)| (k.to_owned(), v)));
        Reply {
            status: answer.status,
            headers,
            body: answer.body.into(),
        }
    }
}

impl From<HttpResponse> for Reply {
    fn from(r: HttpResponse) -> Self {
        Reply {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

/// Reads the request head of a new connection (at most 8 KiB) and decides what it is (see the
/// module table); bodies of polling requests and routes are read here too. The caller bounds
/// this with the upgrade timeout.
pub(crate) async fn sniff<S>(
    mut stream: S,
    peer: SocketAddr,
    shared: &Shared,
) -> io::Result<Sniffed<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let head = loop {
        match parse_head(&buf) {
            Parsed::Partial if buf.len() < MAX_HEAD => {}
            Parsed::Partial | Parsed::NotHttp => {
                return Ok(Sniffed::Upgrade(Rewind {
                    prefix: buf,
                    at: 0,
                    inner: stream,
                }))
            }
            Parsed::Head(head) => break head,
        }
        let mut chunk = [0u8; 1024];
        let room = (MAX_HEAD - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let config = &shared.config;
    let origin = head.get("origin");
    let kind = if head.path == config.poll_path && head.method == "POST" {
        let read = match head.content_length() {
            Err(answer) => Err(answer),
            Ok(length) => {
                match poll::check_head(shared, length, head.get("content-type"), origin) {
                    Err(answer) => Err(answer),
                    Ok((codec, length)) => {
                        let body = read_body(&mut stream, &buf[head.len..], length).await?;
                        Ok((codec, body))
                    }
                }
            }
        };
        Kind::Poll {
            headers: head.headers,
            read,
        }
    } else if head.path == config.poll_path && head.method == "OPTIONS" {
        Kind::Done(poll::preflight(shared, origin).into())
    } else if head.is_upgrade() {
        if !config.websocket {
            Kind::Done(Answer::error(403, "WebSocket disabled: use long-polling").into())
        } else {
            return Ok(Sniffed::Upgrade(Rewind {
                prefix: buf,
                at: 0,
                inner: stream,
            }));
        }
    } else if let Some((_, route)) = config.routes.iter().find(|(path, _)| *path == head.path) {
        match head.content_length() {
            Err(answer) => Kind::Done(answer.into()),
            Ok(Some(n)) if n > MAX_ROUTE_BODY as u64 => {
                Kind::Done(Answer::error(413, "body too large").into())
            }
            Ok(length) => {
                let length = length.unwrap_or(0) as usize;
                let body = read_body(&mut stream, &buf[head.len..], length).await?;
                let request = HttpRequest {
                    method: head.method,
                    path: head.path,
                    query: head.query,
                    headers: head.headers,
                    body,
                    peer,
                };
                Kind::Done(route(&request).into())
            }
        }
    } else {
        Kind::Done(Answer::error(404, "not found").into())
    };
    Ok(Sniffed::Http(Exchange { stream, kind }))
}

/// Reads exactly `length` bytes of body, `first` (what followed the head) first. The buffer
/// grows with the bytes that arrive, never ahead of them.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    first: &[u8],
    length: usize,
) -> io::Result<Vec<u8>> {
    // Pipelined requests are not served: every response closes the connection.
    let mut body = first[..first.len().min(length)].to_vec();
    let mut chunk = [0u8; READ_CHUNK];
    while body.len() < length {
        let want = (length - body.len()).min(READ_CHUNK);
        let n = stream.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(body)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Exchange<S> {
    /// Serves the request (a polling one held as long as the long-poll rules say) and closes
    /// the connection. The connection limit is checked when a polling request opens a session.
    pub(crate) async fn serve(mut self, peer: SocketAddr, shared: &Arc<Shared>) {
        let reply = match self.kind {
            Kind::Done(reply) => reply,
            Kind::Poll { headers, read } => {
                let _busy = Busy::new(&shared.polls);
                let origin = headers
                    .iter()
                    .find(|(k, _)| k == "origin")
                    .map(|(_, v)| v.clone());
                let mut answer = match read {
                    Err(answer) => answer,
                    Ok((codec, body)) => {
                        poll::exchange(shared, peer, headers, codec, &body, true).await
                    }
                };
                answer.headers = poll::cors(shared, origin.as_deref());
                answer.into()
            }
        };
        respond(&mut self.stream, &reply).await;
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
    NotHttp,
    Head(Head),
}

fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(len)) => {
            let target = req.path.unwrap_or("");
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, Some(query.to_owned())),
                None => (target, None),
            };
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
            Parsed::Head(Head {
                len,
                method: req.method.unwrap_or("").to_owned(),
                path: path.to_owned(),
                query,
                headers,
            })
        }
        Err(_) => Parsed::NotHttp,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes `reply` and closes the connection. After an error the body may still be on its way
/// (413 is answered before reading it): what arrives is read and dropped for a short while, so
/// the response is not lost to a connection reset.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, reply: &Reply) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len(),
    );
    for (name, value) in &reply.headers {
        // A value with a line break would split the head: such a header is left out.
        if !name.contains(['\r', '\n', ':']) && !value.contains(['\r', '\n']) {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
    }
    head.push_str("\r\n");
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&reply.body).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(Duration::from_secs(30), write)
        .await
        .is_err()
    {
        return;
    }
    if reply.status >= 400 {
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
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
}
