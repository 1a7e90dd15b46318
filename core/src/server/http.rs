//! A server's HTTP answers as values: what every server adapter says over HTTP besides the
//! WebSocket frames (long-polling responses and refusals, the CORS headers and preflight of
//! PROTOCOL.md 1.4, the 503 of a server shutting down), decided here once.
//!
//! An adapter converts an [`Answer`] into its HTTP library's response and adds nothing of its
//! own: the status, every header (by [`Header::name`] and [`Header::value`], names in lower case
//! as HTTP/2 wants them) and the body bytes. Refusals are [`Refusal`]s, each with its status and
//! reason, so that the same condition is answered alike by every front.
//!
//! Invariants: an answer to a cross-origin request carries CORS headers only for an origin the
//! allow-list admits ([`cors`]); a refused origin gets 403 and no CORS header; refusals are never
//! cached (`Cache-Control: no-store`).

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::handshake::{self, Origins};

/// Content type of the plain-text refusals.
const TEXT: &str = "text/plain";

/// The header carrying a polling session's token, in lower case.
pub const SESSION_HEADER: &str = "eventwire-session";
/// The header carrying a polling request's number within its session, in lower case
/// (PROTOCOL.md 1.4: the order in which the client sent its requests).
pub const SEQ_HEADER: &str = "eventwire-seq";

/// A session token: 128 bits, 32 lower-case hexadecimal digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub(super) u128);

impl Token {
    /// Reads a token as sent (surrounding whitespace ignored); `None` for anything that is not
    /// 32 lower-case hexadecimal digits, which no session of ours has.
    pub fn parse(text: &[u8]) -> Option<Token> {
        let text = text.trim_ascii();
        if text.len() != 32 {
            return None;
        }
        let mut value = 0u128;
        for &b in text {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => return None,
            };
            value = (value << 4) | u128::from(digit);
        }
        Some(Token(value))
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({self})")
    }
}

/// An HTTP response as the core decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    /// A plain-text answer (a refusal, a 404), not cached.
    pub fn text(status: u16, reason: &str) -> Answer {
        Answer {
            status,
            headers: alloc::vec![Header::ContentType(TEXT), Header::NoStore],
            body: reason.as_bytes().to_vec(),
        }
    }

    /// Adds the CORS headers `cors` calls for (none for [`Cors::None`] and [`Cors::Refused`]).
    pub fn with_cors(mut self, cors: &Cors<'_>) -> Answer {
        if let Cors::Allowed(origin) = cors {
            self.headers.extend([
                Header::AllowOrigin(String::from(*origin)),
                Header::ExposeHeaders,
                Header::VaryOrigin,
            ]);
        }
        self
    }

    /// The value of the first header named `name` (lower case), for tests and logs.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers
            .iter()
            .find(|h| h.name() == name)
            .map(Header::value)
    }
}

/// A header of an [`Answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Header {
    /// `Content-Type`.
    ContentType(&'static str),
    /// `Cache-Control: no-store`: polling answers and refusals are never reused.
    NoStore,
    /// `Eventwire-Session: <token>` on every 200 of a polling session.
    Session(Token),
    /// `Retry-After` in whole seconds (503 while shutting down).
    RetryAfter(u64),
    /// `Access-Control-Allow-Origin` with the request's (allowed) origin.
    AllowOrigin(String),
    /// `Access-Control-Expose-Headers: Eventwire-Session, Retry-After`, so that a page on
    /// another origin can read the token and the hint.
    ExposeHeaders,
    /// `Vary: Origin`: the CORS headers depend on the request's origin.
    VaryOrigin,
    /// `Access-Control-Allow-Methods: POST` (preflight).
    AllowMethods,
    /// `Access-Control-Allow-Headers: Content-Type, Eventwire-Session, Eventwire-Seq`
    /// (preflight).
    AllowHeaders,
    /// `Access-Control-Max-Age: 600` (preflight): browsers cache the preflight for ten minutes.
    MaxAge,
}

impl Header {
    /// Its name, in lower case.
    pub fn name(&self) -> &'static str {
        match self {
            Header::ContentType(_) => "content-type",
            Header::NoStore => "cache-control",
            Header::Session(_) => SESSION_HEADER,
            Header::RetryAfter(_) => "retry-after",
            Header::AllowOrigin(_) => "access-control-allow-origin",
            Header::ExposeHeaders => "access-control-expose-headers",
            Header::VaryOrigin => "vary",
            Header::AllowMethods => "access-control-allow-methods",
            Header::AllowHeaders => "access-control-allow-headers",
            Header::MaxAge => "access-control-max-age",
        }
    }

    /// Its value: visible ASCII, except an origin the allow-list admitted, which is the text
    /// the request sent.
    pub fn value(&self) -> Cow<'_, str> {
        match self {
            Header::ContentType(t) => Cow::Borrowed(t),
            Header::NoStore => Cow::Borrowed("no-store"),
            Header::Session(token) => Cow::Owned(format!("{token}")),
            Header::RetryAfter(secs) => Cow::Owned(format!("{secs}")),
            Header::AllowOrigin(origin) => Cow::Borrowed(origin),
            Header::ExposeHeaders => Cow::Borrowed("Eventwire-Session, Retry-After"),
            Header::VaryOrigin => Cow::Borrowed("Origin"),
            Header::AllowMethods => Cow::Borrowed("POST"),
            Header::AllowHeaders => Cow::Borrowed("Content-Type, Eventwire-Session, Eventwire-Seq"),
            Header::MaxAge => Cow::Borrowed("600"),
        }
    }
}

/// Why a server refuses an HTTP request, with the status it answers (PROTOCOL.md 1.4, "Errors
/// over HTTP"). Every refusal of a polling request ends the session for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// An `Origin` the allow-list does not admit: 403.
    OriginNotAllowed,
    /// A `Content-Length` that is not a number: 400.
    BadLength,
    /// No `Content-Length` (a chunked body, or none): 411.
    LengthRequired,
    /// A body over the limit, announced or arriving: 413.
    TooLarge,
    /// A content type other than the two forms': 415.
    UnsupportedType,
    /// An unknown, expired or malformed session token: 404.
    UnknownSession,
    /// A request of a session without a valid `Eventwire-Seq` (a number from 1, and 1 on a
    /// session's first request): 400.
    BadSeq,
    /// The body did not arrive within the server's request time: 408.
    BodyTooSlow,
    /// The connection failed before the whole body arrived: 400.
    BodyNotReceived,
    /// A session's first request whose body does not begin with a hello: 400, no session.
    NoHello,
    /// More frames in a body than the limit: 400, and the session ends (`POLICY_VIOLATION`).
    TooManyFrames,
    /// The server is shutting down: 503 with `Retry-After` (the hint rounded up to seconds).
    ShuttingDown {
        /// When the client should come back.
        retry_after: Duration,
    },
}

impl Refusal {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Refusal::OriginNotAllowed => 403,
            Refusal::BadLength
            | Refusal::BadSeq
            | Refusal::BodyNotReceived
            | Refusal::NoHello
            | Refusal::TooManyFrames => 400,
            Refusal::LengthRequired => 411,
            Refusal::TooLarge => 413,
            Refusal::UnsupportedType => 415,
            Refusal::UnknownSession => 404,
            Refusal::BodyTooSlow => 408,
            Refusal::ShuttingDown { .. } => 503,
        }
    }

    /// The body: a short reason.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::OriginNotAllowed => handshake::Refusal::OriginNotAllowed.reason(),
            Refusal::BadLength => "bad Content-Length",
            Refusal::LengthRequired => "Content-Length required",
            Refusal::TooLarge => "body too large",
            Refusal::UnsupportedType => "unsupported content type",
            Refusal::UnknownSession => "unknown session",
            Refusal::BadSeq => "bad Eventwire-Seq",
            Refusal::BodyTooSlow => "body too slow",
            Refusal::BodyNotReceived => "body not received",
            Refusal::NoHello => "a session begins with a hello",
            Refusal::TooManyFrames => "too many frames",
            Refusal::ShuttingDown { .. } => "server shutting down",
        }
    }

    /// The answer: the reason as plain text, and `Retry-After` when shutting down.
    pub fn answer(self) -> Answer {
        let mut answer = Answer::text(self.status(), self.reason());
        if let Refusal::ShuttingDown { retry_after } = self {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            answer.headers.push(Header::RetryAfter(secs));
        }
        answer
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl core::error::Error for Refusal {}

/// What CORS says about a request, from its `Origin` ([`cors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cors<'o> {
    /// No `Origin` (same-origin or not a browser), or one that cannot be echoed (not UTF-8
    /// while any origin is allowed): no CORS header.
    None,
    /// An origin the allow-list admits: its responses carry the CORS headers naming it.
    Allowed(&'o str),
    /// An origin the allow-list does not admit: 403, no CORS header.
    Refused,
}

/// The CORS decision for a request with this `Origin` header value, by the upgrade's rule
/// ([`handshake::origin_allowed`]).
pub fn cors<'o, S: AsRef<str>>(origins: Origins<'_, S>, origin: Option<&'o [u8]>) -> Cors<'o> {
    let Some(origin) = origin else {
        return Cors::None;
    };
    if !handshake::origin_allowed(origins, Some(origin)) {
        return Cors::Refused;
    }
    match core::str::from_utf8(origin) {
        Ok(origin) => Cors::Allowed(origin),
        Err(_) => Cors::None,
    }
}

/// The answer to the CORS preflight (`OPTIONS`) of a polling request: 204 with the method and
/// headers a polling client sends (and the CORS headers for the origin, if any); 403 for an
/// origin the allow-list does not admit.
pub fn preflight<S: AsRef<str>>(origins: Origins<'_, S>, origin: Option<&[u8]>) -> Answer {
    let cors = cors(origins, origin);
    if cors == Cors::Refused {
        return Refusal::OriginNotAllowed.answer();
    }
    let mut answer = Answer {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
    }
    .with_cors(&cors);
    answer
        .headers
        .extend([Header::AllowMethods, Header::AllowHeaders, Header::MaxAge]);
    answer
}
