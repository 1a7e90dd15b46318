//! The WebSocket upgrade decision: whether a request's `Origin` may connect, and which message
//! form (and so which subprotocol) the connection speaks; then which message type carries it
//! ([`check_message_type`]).
//!
//! Every server adapter answers an upgrade request the same way by asking [`decide`] with the
//! request's headers: the tokio adapter's tungstenite callback and its axum extractor, and the
//! blocking adapter's server. An adapter only copies the outcome into its HTTP response: on
//! [`Upgrade`], it echoes [`Upgrade::subprotocol`] in `Sec-WebSocket-Protocol` when there is one;
//! on [`Refusal`], it answers with [`Refusal::status`] and [`Refusal::reason`].
//!
//! # Origins
//! Browsers send the page's origin with every WebSocket upgrade and cross-origin request, and a
//! page on any site may open a socket to any server: without a check, a hostile page read and
//! wrote with its visitor's access (cross-site WebSocket hijacking). [`Origins`] says which
//! origins may connect. **By default only the server's own pages may** ([`Origins::SameOrigin`]:
//! the origin's host and port are the request's `Host`); more origins or, for development, any
//! origin are explicit choices. Requests without an `Origin` (not from a browser) are allowed
//! whatever the policy: they cannot be told apart from a forged header anyway, which is what
//! authentication is for.
//!
//! ```
//! use eventwire_core::codec::Codec;
//! use eventwire_core::handshake::{decide, Origins, Refusal};
//!
//! let allowed = ["https://dash.example"];
//! let only = Origins::Listed { host: None, allowed: &allowed };
//! let upgrade = decide(only, Some(b"https://dash.example"), [&b"eventwire.v1.json"[..]])
//!     .unwrap();
//! assert_eq!(upgrade.codec, Codec::Json);
//! assert_eq!(upgrade.subprotocol, Some("eventwire.v1.json"));
//!
//! let refused = decide(only, Some(b"https://evil.example"), []);
//! assert_eq!(refused, Err(Refusal::OriginNotAllowed));
//! assert_eq!(Refusal::OriginNotAllowed.status(), 403);
//!
//! // The default: a page of the server itself, not one of another site.
//! let own: Origins = Origins::SameOrigin { host: Some(b"127.0.0.1:9001") };
//! assert!(decide(own, Some(b"http://127.0.0.1:9001"), []).is_ok());
//! assert!(decide(own, Some(b"https://evil.example"), []).is_err());
//! ```

use core::fmt;

use crate::code::CloseCode;
use crate::codec::Codec;

/// An accepted upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgrade {
    /// The message form of the connection.
    pub codec: Codec,
    /// The subprotocol to echo in the response's `Sec-WebSocket-Protocol`; `None` when the
    /// client offered none (it then gets the binary form, and no header is echoed).
    pub subprotocol: Option<&'static str>,
}

/// Why an upgrade is refused, with the HTTP answer it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The request's `Origin` may not connect (cross-site WebSocket hijacking): 403.
    OriginNotAllowed,
    /// The client offered subprotocols, none of them eventwire's: 400.
    NoSubprotocol,
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            Refusal::OriginNotAllowed => 403,
            Refusal::NoSubprotocol => 400,
        }
    }

    /// The response body: a short reason.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::OriginNotAllowed => "origin not allowed",
            Refusal::NoSubprotocol => "no supported subprotocol",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl core::error::Error for Refusal {}

/// Which browser origins may connect, as applied to one request (see the [module docs](self)).
/// An adapter keeps an [`OriginPolicy`] and applies it with [`OriginPolicy::for_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origins<'a, S = &'a str> {
    /// Only pages of this server: the origin's `host[:port]` is the request's `Host` header
    /// (`None` when the request has none, which no browser sends: then no origin matches).
    SameOrigin {
        /// The request's `Host` header value.
        host: Option<&'a [u8]>,
    },
    /// Any origin: for development, or a server behind another origin check.
    Any,
    /// The server's own pages (as [`Origins::SameOrigin`]) and these origins
    /// (`scheme://host[:port]`, byte for byte).
    Listed {
        /// The request's `Host` header value.
        host: Option<&'a [u8]>,
        /// The other origins allowed.
        allowed: &'a [S],
    },
}

/// Whether a request with this `Origin` header value may connect under `origins`. A request
/// without an `Origin` (not a browser) is allowed whatever the policy; an origin that is not
/// UTF-8 matches nothing.
pub fn origin_allowed<S: AsRef<str>>(origins: Origins<'_, S>, origin: Option<&[u8]>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    match origins {
        Origins::Any => true,
        Origins::Listed { host, allowed } => {
            let listed = core::str::from_utf8(origin)
                .is_ok_and(|o| !o.is_empty() && allowed.iter().any(|a| a.as_ref() == o));
            listed || host.is_some_and(|host| same_origin(origin, host))
        }
        Origins::SameOrigin { host } => host.is_some_and(|host| same_origin(origin, host)),
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the server a request with this `Host` came
/// to: hosts compared without case, a port the origin leaves out being its scheme's default.
fn same_origin(origin: &[u8], host: &[u8]) -> bool {
    let (authority, default_port): (&[u8], &[u8]) = if let Some(a) = origin.strip_prefix(b"http://")
    {
        (a, b"80")
    } else if let Some(a) = origin.strip_prefix(b"https://") {
        (a, b"443")
    } else {
        return false;
    };
    let (origin_host, origin_port) = host_and_port(authority);
    let (host, host_port) = host_and_port(host);
    !origin_host.is_empty()
        && origin_host.eq_ignore_ascii_case(host)
        && origin_port.unwrap_or(default_port) == host_port.unwrap_or(default_port)
}

/// Splits `host[:port]`; an IPv6 literal's colons are inside its brackets, so the port is what
/// follows the last `:` after the last `]`.
fn host_and_port(authority: &[u8]) -> (&[u8], Option<&[u8]>) {
    let from = authority.iter().rposition(|&b| b == b']').unwrap_or(0);
    match authority[from..].iter().rposition(|&b| b == b':') {
        Some(i) => (&authority[..from + i], Some(&authority[from + i + 1..])),
        None => (authority, None),
    }
}

/// A server's rule for browser origins, owned by its configuration: see the [module
/// docs](self). The default is [`OriginPolicy::SameOrigin`].
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Only the server's own pages (and non-browser clients). The default.
    #[default]
    SameOrigin,
    /// Any origin: for development, or behind another origin check.
    Any,
    /// The server's own pages and these origins (`scheme://host[:port]`, byte for byte), and
    /// non-browser clients.
    Listed(alloc::vec::Vec<alloc::string::String>),
}

#[cfg(feature = "alloc")]
impl OriginPolicy {
    /// The policy applied to a request with this `Host` header value.
    pub fn for_request<'a>(&'a self, host: Option<&'a [u8]>) -> Origins<'a, alloc::string::String> {
        match self {
            OriginPolicy::SameOrigin => Origins::SameOrigin { host },
            OriginPolicy::Any => Origins::Any,
            OriginPolicy::Listed(list) => Origins::Listed {
                host,
                allowed: list,
            },
        }
    }
}

#[cfg(feature = "alloc")]
impl fmt::Display for OriginPolicy {
    /// What a server says at startup about the browsers it accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OriginPolicy::SameOrigin => f.write_str(
                "browsers only from this server's own origin, and non-browser clients \
                 (set allowed origins, or allow any origin for development)",
            ),
            OriginPolicy::Any => f.write_str("browsers from any origin (development setting)"),
            OriginPolicy::Listed(list) => {
                f.write_str("browsers from this server's own origin and ")?;
                for (i, origin) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(origin)?;
                }
                f.write_str(", and non-browser clients")
            }
        }
    }
}

/// Decides an upgrade request from its `Origin` header value (if any), under `origins`, and its
/// `Sec-WebSocket-Protocol` header values (each a comma-separated list, in the client's order of
/// preference; none if the header is absent). The first offered subprotocol this build supports
/// wins ([`Codec::negotiate`]); a client that offers none gets the binary form.
pub fn decide<'h, S: AsRef<str>>(
    origins: Origins<'_, S>,
    origin: Option<&[u8]>,
    offered: impl IntoIterator<Item = &'h [u8]>,
) -> Result<Upgrade, Refusal> {
    if !origin_allowed(origins, origin) {
        return Err(Refusal::OriginNotAllowed);
    }
    let mut any = false;
    for value in offered {
        any = true;
        if let Some(codec) = core::str::from_utf8(value).ok().and_then(Codec::negotiate) {
            return Ok(Upgrade {
                codec,
                subprotocol: Some(codec.subprotocol()),
            });
        }
    }
    if any {
        Err(Refusal::NoSubprotocol)
    } else {
        Ok(Upgrade {
            codec: Codec::Binary,
            subprotocol: None,
        })
    }
}

/// After the upgrade: whether a data message of this type (`text`, or binary) carries the
/// negotiated form. A message of the wrong type (text on `eventwire.v1`, binary on
/// `eventwire.v1.json`) closes the connection with the code returned, `UNSUPPORTED_DATA`
/// (PROTOCOL.md section 1), on either side.
pub fn check_message_type(codec: Codec, text: bool) -> Result<(), CloseCode> {
    if codec.is_text() == text {
        Ok(())
    } else {
        Err(CloseCode::UNSUPPORTED_DATA)
    }
}

/// On the client, after the upgrade: whether the server selected the subprotocol of `codec`
/// (`selected`: its `Sec-WebSocket-Protocol` header, if any; surrounding spaces do not count).
/// Anything else means the server would not read this client's messages: the attempt fails, and
/// a socket already open closes with the code returned, `PROTOCOL_ERROR`.
pub fn check_selected(codec: Codec, selected: Option<&[u8]>) -> Result<(), CloseCode> {
    match selected.map(<[u8]>::trim_ascii) {
        Some(selected) if selected == codec.subprotocol().as_bytes() => Ok(()),
        _ => Err(CloseCode::PROTOCOL_ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn the_client_needs_its_subprotocol_selected() {
        assert_eq!(check_selected(Codec::Binary, Some(b"eventwire.v1")), Ok(()));
        assert_eq!(
            check_selected(Codec::Json, Some(b" eventwire.v1.json ")),
            Ok(())
        );
        for wrong in [
            None,
            Some(&b""[..]),
            Some(b"eventwire.v1.json"),
            Some(b"eventwire.v1, x"),
        ] {
            assert_eq!(
                check_selected(Codec::Binary, wrong),
                Err(CloseCode::PROTOCOL_ERROR),
                "{wrong:?}"
            );
        }
        assert_eq!(
            check_selected(Codec::Json, Some(b"eventwire.v1")),
            Err(CloseCode::PROTOCOL_ERROR)
        );
    }

    const NONE: Origins<'static> = Origins::Any;

    #[test]
    fn origins() {
        let allowed = ["https://a.example"];
        let only = Origins::Listed {
            host: Some(b"127.0.0.1:9001"),
            allowed: &allowed,
        };
        assert!(origin_allowed(only, Some(b"https://a.example")));
        assert!(!origin_allowed(only, Some(b"https://b.example")));
        assert!(!origin_allowed(only, Some(&[0xff, 0xfe])));
        assert!(origin_allowed(only, None));
        assert!(
            origin_allowed(only, Some(b"http://127.0.0.1:9001")),
            "the server's own pages stay allowed"
        );
        assert!(origin_allowed(NONE, Some(b"https://b.example")));
    }

    /// The default admits the server's own pages and non-browser clients, nothing else; before
    /// it, a server without an allow-list admitted every site.
    #[test]
    fn same_origin_is_the_servers_own_host_and_port() {
        let at =
            |host: &'static [u8]| -> Origins<'static> { Origins::SameOrigin { host: Some(host) } };
        for (origin, host, ok) in [
            (&b"http://127.0.0.1:9001"[..], &b"127.0.0.1:9001"[..], true),
            (b"http://Dash.Example", b"dash.example", true),
            (b"http://dash.example", b"dash.example:80", true),
            (b"https://dash.example", b"dash.example:443", true),
            (b"https://dash.example:8443", b"dash.example:8443", true),
            (b"http://[::1]:9001", b"[::1]:9001", true),
            (b"http://127.0.0.1:9002", b"127.0.0.1:9001", false),
            (b"https://evil.example", b"127.0.0.1:9001", false),
            (b"http://dash.example.evil", b"dash.example", false),
            (b"https://dash.example", b"dash.example:80", false),
            (b"null", b"dash.example", false),
            (b"http://", b"", false),
            (b"http://[::1]", b"[::1]:9001", false),
        ] {
            assert_eq!(
                origin_allowed(at(host), Some(origin)),
                ok,
                "{} at {}",
                std::string::String::from_utf8_lossy(origin),
                std::string::String::from_utf8_lossy(host)
            );
        }
        let nohost: Origins = Origins::SameOrigin { host: None };
        assert!(!origin_allowed(nohost, Some(b"http://dash.example")));
        assert!(origin_allowed(nohost, None), "not a browser");
    }

    #[test]
    fn a_policy_says_what_it_admits() {
        let policy = OriginPolicy::default();
        assert_eq!(policy, OriginPolicy::SameOrigin);
        assert!(policy
            .to_string()
            .starts_with("browsers only from this server's own origin"));
        let only = OriginPolicy::Listed(std::vec!["https://a.example".into()]);
        assert!(origin_allowed(
            only.for_request(None),
            Some(b"https://a.example")
        ));
        assert_eq!(
            only.to_string(),
            "browsers from this server's own origin and https://a.example, and non-browser clients"
        );
    }

    #[test]
    fn subprotocols() {
        let binary = decide(NONE, None, []).unwrap();
        assert_eq!((binary.codec, binary.subprotocol), (Codec::Binary, None));
        let offered: [&[u8]; 2] = [b"chat", b"x, eventwire.v1"];
        let chosen = decide(NONE, None, offered).unwrap();
        assert_eq!(chosen.subprotocol, Some("eventwire.v1"));
        assert_eq!(
            decide(NONE, None, [&b"chat"[..]]),
            Err(Refusal::NoSubprotocol)
        );
        assert_eq!(Refusal::NoSubprotocol.status(), 400);
        assert_eq!(check_message_type(Codec::Binary, false), Ok(()));
        assert_eq!(
            check_message_type(Codec::Binary, true),
            Err(CloseCode::UNSUPPORTED_DATA)
        );
        assert_eq!(
            decide(
                Origins::Listed {
                    host: None,
                    allowed: &["o"]
                },
                Some(b"p"),
                [&b"eventwire.v1"[..]]
            ),
            Err(Refusal::OriginNotAllowed)
        );
    }
}
