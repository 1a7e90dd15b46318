//! The HTTP long-polling fallback of the client (PROTOCOL.md section 1.4).
//!
//! A polling **session** plays the part of a WebSocket connection for the core machine: when the
//! machine asks for a connection ([`Action::Connect`](eventwire_core::client::Action)) and the
//! last [`PollingOptions::after_failures`] WebSocket attempts failed in a row, the task opens a
//! polling session instead, tells the machine it is connected, and from then on:
//!
//! - every request carries the frames `poll_transmit` gave since the last one (at most 64, and
//!   none when there are none: a plain long-poll), and every response's frames go to
//!   `handle_frame`, in order;
//! - the next request goes out as soon as a response came back, so one request is always held by
//!   the server. Frames to send while one is held go out in a second request at once (the
//!   server then returns the held one); responses are handled in the order of their requests;
//! - any failure (connection error, non-200 status, a body that does not decode) abandons the
//!   session and tells the machine it is disconnected: it backs off and reconnects with resume,
//!   so nothing is lost.
//!
//! While the fallback is in use, a WebSocket attempt runs in the background every
//! [`PollingOptions::upgrade_every`]. Once one succeeds it is closed again, the polling session
//! is abandoned like a lost connection, and the failure count starts over, so the machine's next
//! connection is a WebSocket. The switch is a reconnect with resume: lossless by positions.
//!
//! The HTTP client is minimal and written here: HTTP/1.1 over the byte stream a WebSocket attempt
//! would use (plain TCP for `ws://`; for `wss://`, HTTPS: TLS through the same
//! `ClientOptions::tls` config and server name), one connection per
//! request (`Connection: close`), a response head of at most 8 KiB and a body of at most
//! `max_message * 64` bytes, framed by `Content-Length` or by the end of the connection (chunked
//! bodies are refused).

use std::collections::VecDeque;
use std::future::pending;
use std::time::Duration;

use eventwire_core::codec::stream::{self, StreamDecoder};
use eventwire_core::codec::Codec;
use eventwire_core::frame::Frame;
use eventwire_core::time::Instant;
use eventwire_core::CloseCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::http::Uri;
use tracing::Instrument;

use super::{Attempt, Target, Task, CLOSE_TIMEOUT};
use crate::message::{self, Inbound};

/// Frames one request may carry (the server answers more with 400, PROTOCOL 1.4).
const MAX_FRAMES: usize = 64;
/// Bytes of frames one request carries when it has more than one (the server's default limit).
const MAX_BODY: usize = 256 * 1024;
/// Largest response head.
const MAX_HEAD: usize = 8 * 1024;
/// Largest binary frame a response may hold: the machine's default `max_frame`.
const MAX_FRAME: usize = 64 * 1024;
/// The COBS buffer for one such frame (section 1.3).
const DECODE_BUF: usize = MAX_FRAME + MAX_FRAME / 254 + 2;
/// How long one request may take at most: well beyond the server's long-poll time (25 s by
/// default). The machine's dead-link timer usually ends a stuck session first.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The header that carries the session token.
const SESSION_HEADER: &str = "Eventwire-Session";

/// When and how the client falls back to HTTP long-polling (PROTOCOL.md section 1.4). Set with
/// [`ClientOptions::polling`](super::ClientOptions::polling); the fallback is on by default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollingOptions {
    /// Failed WebSocket attempts in a row after which the client polls instead. Default 3.
    pub after_failures: u32,
    /// How often a polling client tries a WebSocket again. Default 30 s.
    pub upgrade_every: Duration,
    /// The polling endpoint's path on the server of the URL. Default `/eventwire/poll`.
    pub path: String,
}

impl Default for PollingOptions {
    fn default() -> Self {
        PollingOptions {
            after_failures: 3,
            upgrade_every: Duration::from_secs(30),
            path: "/eventwire/poll".to_owned(),
        }
    }
}

impl PollingOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the failed WebSocket attempts in a row before polling (at least 1).
    pub fn after_failures(mut self, attempts: u32) -> Self {
        self.after_failures = attempts.max(1);
        self
    }

    /// Sets how often a polling client tries a WebSocket again.
    pub fn upgrade_every(mut self, interval: Duration) -> Self {
        self.upgrade_every = interval;
        self
    }

    /// Sets the polling endpoint's path (`/` is prepended if missing).
    pub fn path(mut self, path: &str) -> Self {
        self.path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self
    }
}

/// The transport of the client's current (or last) session; see [`Client::transport`].
///
/// [`Client::transport`]: super::Client::transport
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// A WebSocket.
    WebSocket,
    /// HTTP long-polling.
    Polling,
}

/// An HTTP response, as far as polling cares.
pub(super) struct Reply {
    status: u16,
    token: Option<String>,
    body: Vec<u8>,
}

type Request = JoinHandle<Result<Reply, String>>;

/// One polling session: what plays the part of a connection.
struct Session {
    /// The machine was told the session is open.
    opened: bool,
    token: Option<String>,
    /// Encoded frames waiting for a request, oldest first.
    queue: VecDeque<Vec<u8>>,
    /// Requests under way, oldest first; their responses are handled in this order.
    requests: VecDeque<Request>,
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
    Reply(Result<Reply, String>),
    /// It is time for a WebSocket attempt in the background.
    ProbeDue,
    /// The background WebSocket attempt finished: whether it opened.
    Probed(bool),
}

/// The fallback's state, kept by the task.
pub(super) struct Fallback {
    options: Option<PollingOptions>,
    /// Failed WebSocket attempts in a row.
    failures: u32,
    session: Option<Session>,
    probe: Option<Attempt>,
    next_probe: Option<tokio::time::Instant>,
    transport: watch::Sender<Transport>,
}

impl Fallback {
    pub(super) fn new(
        options: Option<PollingOptions>,
        transport: watch::Sender<Transport>,
    ) -> Self {
        Fallback {
            options,
            failures: 0,
            session: None,
            probe: None,
            next_probe: None,
            transport,
        }
    }

    /// A WebSocket attempt failed (or was abandoned by the connect timeout).
    pub(super) fn ws_failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// A WebSocket connection opened.
    pub(super) fn ws_opened(&mut self) {
        self.failures = 0;
        self.next_probe = None;
        self.probe = None;
        self.transport.send_replace(Transport::WebSocket);
    }

    /// Whether a polling session is open (frames go to it).
    pub(super) fn in_session(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.opened)
    }

    /// Encodes a frame for the next request of the session (COBS-framed for the binary
    /// codec), reusing `buf`.
    pub(super) fn queue_frame(&mut self, codec: Codec, frame: &Frame<'_>, buf: &mut Vec<u8>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        tracing::trace!(?frame, "send");
        let encoded = match codec {
            Codec::Binary => {
                let raw = message::encode_payload(Codec::Binary, frame, buf).map(|b| b.len());
                raw.and_then(|raw| {
                    let mut out = vec![0; raw + raw / 254 + 2];
                    let n = stream::encode(frame, &mut out)?.len();
                    out.truncate(n);
                    Ok(out)
                })
            }
            codec => message::encode_payload(codec, frame, buf).map(Vec::from),
        };
        match encoded {
            Ok(bytes) => session.queue.push_back(bytes),
            Err(e) => tracing::error!(error = %e, ?frame, "cannot encode a frame; dropped"),
        }
    }

    /// Waits for whatever of the fallback comes first. Cancel-safe: the requests and the probe
    /// are kept in `self`.
    pub(super) async fn wake(&mut self) -> PollWake {
        let Fallback {
            session,
            probe,
            next_probe,
            ..
        } = self;
        let request = match session {
            Some(s) if !s.opened => return PollWake::Opened,
            Some(s) => s.requests.front_mut(),
            None => None,
        };
        let probe_at = next_probe.filter(|_| probe.is_none());
        tokio::select! {
            reply = async {
                match request {
                    Some(request) => request.await.unwrap_or_else(|e| Err(e.to_string())),
                    None => pending().await,
                }
            } => PollWake::Reply(reply),
            opened = async {
                match probe.as_mut() {
                    Some(probe) => probe.await.is_ok(),
                    None => pending().await,
                }
            } => PollWake::Probed(opened),
            () = async {
                match probe_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => pending().await,
                }
            } => PollWake::ProbeDue,
        }
    }
}

impl Task {
    /// Opens a polling session instead of a WebSocket attempt if the fallback is due; returns
    /// whether it did.
    pub(super) fn start_polling(&mut self) -> bool {
        let Some(options) = &self.poll.options else {
            return false;
        };
        // `ws://`, or `wss://` (which `parse_url` only lets through with a TLS config).
        if self.poll.failures < options.after_failures
            || !matches!(self.target.uri.scheme_str(), Some("ws" | "wss"))
        {
            return false;
        }
        tracing::info!(
            failures = self.poll.failures,
            "falling back to long-polling"
        );
        self.poll.session = Some(Session {
            opened: false,
            token: None,
            queue: VecDeque::new(),
            requests: VecDeque::new(),
        });
        if self.poll.next_probe.is_none() && self.poll.probe.is_none() {
            self.poll.next_probe = Some(tokio::time::Instant::now() + options.upgrade_every);
        }
        true
    }

    /// Sends the queued frames of the polling session, and keeps one request held: a request
    /// goes out when none is under way, or when frames wait and at most one is (a session's
    /// first request is answered before any other goes out: it brings the token).
    pub(super) fn send_polls(&mut self) {
        loop {
            let Some(session) = self.poll.session.as_ref().filter(|s| s.opened) else {
                return;
            };
            let limit = if session.token.is_some() { 2 } else { 1 };
            let idle = session.requests.is_empty();
            if session.requests.len() >= limit || (session.queue.is_empty() && !idle) {
                return;
            }
            if !self.send_one_poll() {
                return;
            }
        }
    }

    /// Spawns one request with as many queued frames as fit; false if there is no session.
    fn send_one_poll(&mut self) -> bool {
        let Some(session) = self.poll.session.as_mut() else {
            return false;
        };
        let json = self.codec.is_text();
        let mut body = Vec::new();
        let mut frames = 0;
        if json {
            body.push(b'[');
        }
        while let Some(frame) = session.queue.front() {
            if frames == MAX_FRAMES || (frames > 0 && body.len() + frame.len() + 2 > MAX_BODY) {
                break;
            }
            if json && frames > 0 {
                body.push(b',');
            }
            body.extend_from_slice(frame);
            session.queue.pop_front();
            frames += 1;
        }
        if json {
            body.push(b']');
        }
        let Some(authority) = authority(&self.target.uri) else {
            // Cannot happen: the URL was checked at connect.
            return false;
        };
        let target = self.target.clone();
        let head = request_head(
            self.poll.options.as_ref().map_or("/", |o| &o.path),
            &authority,
            self.codec,
            body.len(),
            session.token.as_deref(),
        );
        let limit = self.max_message.saturating_mul(64);
        tracing::trace!(frames, bytes = body.len(), "poll request");
        let span = tracing::debug_span!("poll");
        session.requests.push_back(tokio::spawn(
            async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, exchange(target, head, body, limit))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => Err("the request timed out".to_owned()),
                }
            }
            .instrument(span),
        ));
        true
    }

    /// The machine asked to disconnect: the last requests (one may carry a close frame) get a
    /// moment to finish, then the session is gone.
    pub(super) fn end_polling(&mut self) {
        let Some(mut session) = self.poll.session.take() else {
            return;
        };
        if session.opened && !session.queue.is_empty() && session.token.is_some() {
            self.poll.session = Some(session);
            self.send_one_poll();
            session = self.poll.session.take().expect("put back above");
        }
        let requests: Vec<Request> = session.requests.drain(..).collect();
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
                if let Some(session) = self.poll.session.as_mut() {
                    session.opened = true;
                }
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
                    Ok(reply) if reply.status == 200 => self.on_poll_reply(now, reply),
                    Ok(reply) => {
                        tracing::warn!(status = reply.status, "poll request refused");
                        self.lose_polling(now);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "poll request failed");
                        self.lose_polling(now);
                    }
                }
            }
            PollWake::ProbeDue => {
                self.poll.next_probe = None;
                // The same attempt a `Connect` would start, taken out of the task's slot.
                let current = self.attempt.take();
                self.start_attempt();
                self.poll.probe = self.attempt.take();
                self.attempt = current;
                tracing::debug!("trying a WebSocket again");
            }
            PollWake::Probed(opened) => {
                // Dropping the probe closes its socket; the server sees a connection that ends
                // before its hello.
                self.poll.probe = None;
                if opened {
                    tracing::info!("a WebSocket opens again; leaving long-polling");
                    self.poll.failures = 0;
                    if self.poll.session.take().is_some() {
                        self.machine
                            .handle_disconnected(now, &mut |e| self.out.on_event(e));
                    }
                } else if let Some(options) = &self.poll.options {
                    self.poll.next_probe =
                        Some(tokio::time::Instant::now() + options.upgrade_every);
                }
            }
        }
    }

    /// The session failed: its requests are dropped and the machine learns it is disconnected.
    fn lose_polling(&mut self, now: Instant) {
        if self.poll.session.take().is_some() {
            self.machine
                .handle_disconnected(now, &mut |e| self.out.on_event(e));
        }
    }

    fn on_poll_reply(&mut self, now: Instant, reply: Reply) {
        if let Some(session) = self.poll.session.as_mut() {
            if reply.token.is_some() {
                session.token = reply.token;
            }
            if session.token.is_none() {
                tracing::warn!("poll response without a session token");
                self.lose_polling(now);
                return;
            }
        }
        let body = reply.body;
        match self.codec {
            Codec::Binary => {
                let mut decoder = Box::new(StreamDecoder::<DECODE_BUF>::new());
                let mut rest = &body[..];
                while !rest.is_empty() {
                    let (frame, left) = decoder.feed(rest);
                    rest = left;
                    let Some(frame) = frame else { continue };
                    let frame = frame.map_err(|e| match e.close_code() {
                        Some(code) => (Inbound::Close(code), e),
                        None => (Inbound::Ignore, e),
                    });
                    if !self.poll_frame(now, frame) {
                        return;
                    }
                }
            }
            codec => {
                let frames: Vec<&serde_json::value::RawValue> = match serde_json::from_slice(&body)
                {
                    Ok(frames) => frames,
                    Err(e) => {
                        tracing::warn!(error = %e, "poll response is not a JSON array");
                        self.lose_polling(now);
                        return;
                    }
                };
                for raw in frames {
                    let frame = message::decode(codec, raw.get().as_bytes(), self.max_message);
                    if !self.poll_frame(now, frame) {
                        return;
                    }
                }
            }
        }
    }

    /// Hands one decoded frame to the machine; false once the session is gone.
    fn poll_frame(
        &mut self,
        now: Instant,
        frame: Result<Frame<'_>, (Inbound, eventwire_core::DecodeError)>,
    ) -> bool {
        match frame {
            Ok(frame) => {
                tracing::trace!(?frame, "received");
                if let Frame::Welcome(welcome) = &frame {
                    self.frame_limit = welcome.max_frame as usize;
                }
                self.machine
                    .handle_frame(now, &frame, &mut |e| self.out.on_event(e));
            }
            Err((Inbound::Ignore, e)) => tracing::debug!(error = %e, "frame ignored"),
            Err((Inbound::Close(code), e)) => {
                tracing::warn!(error = %e, %code, "undecodable frame");
                self.queue_close(code);
                self.lose_polling(now);
                return false;
            }
        }
        self.poll.session.is_some()
    }

    /// Tells the server, best effort, that the session ends with `code`.
    fn queue_close(&mut self, code: CloseCode) {
        let frame = Frame::Close(eventwire_core::frame::Close {
            code,
            retry_after_ms: None,
            reason: "",
        });
        self.poll
            .queue_frame(self.codec, &frame, &mut self.encode_buf);
        self.end_polling();
    }

    /// Drops everything of the fallback (the task ends).
    pub(super) fn stop_polling(&mut self) {
        self.end_polling();
        self.poll.probe = None;
        self.poll.next_probe = None;
    }
}

/// The `Host` header value of `uri`.
fn authority(uri: &Uri) -> Option<String> {
    let authority = uri.authority()?.as_str();
    // No user info in a Host header.
    Some(authority.rsplit('@').next().unwrap_or(authority).to_owned())
}

/// The head of a poll request.
fn request_head(
    path: &str,
    authority: &str,
    codec: Codec,
    len: usize,
    token: Option<&str>,
) -> Vec<u8> {
    let content_type = content_type(codec);
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: {content_type}\r\n\
         Accept: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n"
    );
    if let Some(token) = token {
        head.push_str(&format!("{SESSION_HEADER}: {token}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn content_type(codec: Codec) -> &'static str {
    if codec.is_text() {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// One request on a connection of its own (opened like a WebSocket attempt's: TCP, then TLS for
/// `wss://`): sends `head` and `body`, reads the response.
async fn exchange(
    target: Target,
    mut head: Vec<u8>,
    body: Vec<u8>,
    limit: usize,
) -> Result<Reply, String> {
    let mut stream = target.open().await.map_err(|e| format!("connect: {e}"))?;
    head.extend_from_slice(&body);
    stream
        .write_all(&head)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("write: {e}"))?;
    read_response(&mut stream, limit).await
}

/// Reads a response head (at most [`MAX_HEAD`] bytes) and a body of at most `limit` bytes.
async fn read_response<R: AsyncReadExt + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Reply, String> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let (status, token, length, start) = loop {
        let n = reader
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the connection ended before the response head".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(start)) => {
                let status = response.code.unwrap_or(0);
                let mut token = None;
                let mut length = None;
                for header in response.headers.iter() {
                    let value = std::str::from_utf8(header.value)
                        .map_err(|_| "a header is not text".to_owned())?
                        .trim();
                    if header.name.eq_ignore_ascii_case(SESSION_HEADER) {
                        token = Some(value.to_owned());
                    } else if header.name.eq_ignore_ascii_case("content-length") {
                        length = Some(
                            value
                                .parse::<usize>()
                                .map_err(|_| "a bad Content-Length".to_owned())?,
                        );
                    } else if header.name.eq_ignore_ascii_case("transfer-encoding")
                        && !value.eq_ignore_ascii_case("identity")
                    {
                        return Err(format!("unsupported Transfer-Encoding: {value}"));
                    }
                }
                break (status, token, length, start);
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err("the response head is too large".into()),
            Err(e) => return Err(format!("a malformed response: {e}")),
        }
    };
    if start > MAX_HEAD {
        return Err("the response head is too large".into());
    }
    let mut body = buf.split_off(start);
    if length.is_some_and(|n| n > limit) {
        return Err(format!("a response body over {limit} bytes"));
    }
    loop {
        if length.is_some_and(|n| body.len() >= n) {
            break;
        }
        if body.len() > limit {
            return Err(format!("a response body over {limit} bytes"));
        }
        let n = reader
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            if length.is_some() {
                return Err("the connection ended within the body".into());
            }
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    if let Some(n) = length {
        body.truncate(n);
    }
    Ok(Reply {
        status,
        token,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Reply, String> {
        read_response(&mut &bytes[..], 1024).await
    }

    #[tokio::test]
    async fn responses_are_read_and_bounded() {
        let ok = parse(b"HTTP/1.1 200 OK\r\nEventwire-Session: abc\r\nContent-Length: 2\r\n\r\n[]")
            .await
            .unwrap();
        assert_eq!((ok.status, ok.token.as_deref()), (200, Some("abc")));
        assert_eq!(ok.body, b"[]");
        let eof = parse(b"HTTP/1.1 404 Not Found\r\n\r\nnope").await.unwrap();
        assert_eq!(
            (eof.status, eof.token, &eof.body[..]),
            (404, None, &b"nope"[..])
        );
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
            .await
            .is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n[]")
            .await
            .is_err());
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
                .await
                .is_err()
        );
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend(std::iter::repeat_n(b"X-Pad: 0123456789\r\n", 600).flatten());
        assert!(parse(&big).await.is_err());
    }

    #[test]
    fn request_heads_follow_the_protocol() {
        let head = request_head(
            "/eventwire/poll",
            "example.com:8080",
            Codec::Json,
            2,
            Some("t1"),
        );
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /eventwire/poll HTTP/1.1\r\nHost: example.com:8080\r\n\
             Content-Type: application/json\r\nAccept: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\nEventwire-Session: t1\r\n\r\n"
        );
        let uri: Uri = "ws://[::1]:9/x".parse().unwrap();
        assert_eq!(authority(&uri), Some("[::1]:9".to_owned()));
        let uri: Uri = "wss://example.com/x".parse().unwrap();
        assert_eq!(authority(&uri), Some("example.com".to_owned()));
        let defaults = PollingOptions::new();
        assert_eq!(defaults.after_failures, 3);
        assert_eq!(defaults.upgrade_every, Duration::from_secs(30));
        assert_eq!(defaults.path, "/eventwire/poll");
        assert_eq!(defaults.path("p").after_failures(0).after_failures, 1);
        assert_eq!(PollingOptions::new().path("p").path, "/p");
        assert_eq!(
            super::super::ClientOptions::new(1).polling,
            Some(PollingOptions::default())
        );
        assert_eq!(
            super::super::ClientOptions::new(1).polling(None).polling,
            None
        );
    }
}
