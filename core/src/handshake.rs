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
//! ```
//! use eventwire_core::codec::Codec;
//! use eventwire_core::handshake::{decide, Refusal};
//!
//! let allowed = ["https://dash.example"];
//! let upgrade = decide(Some(&allowed), Some(b"https://dash.example"), [&b"eventwire.v1.json"[..]])
//!     .unwrap();
//! assert_eq!(upgrade.codec, Codec::Json);
//! assert_eq!(upgrade.subprotocol, Some("eventwire.v1.json"));
//!
//! let refused = decide(Some(&allowed), Some(b"https://evil.example"), []);
//! assert_eq!(refused, Err(Refusal::OriginNotAllowed));
//! assert_eq!(Refusal::OriginNotAllowed.status(), 403);
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
    /// The request's `Origin` is not in the allow-list (cross-site WebSocket hijacking): 403.
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

/// Whether a request with this `Origin` header value may connect. `allowed` of `None` allows any
/// origin; a request without an `Origin` (not a browser) is allowed either way; an origin that is
/// not UTF-8 matches nothing.
pub fn origin_allowed<S: AsRef<str>>(allowed: Option<&[S]>, origin: Option<&[u8]>) -> bool {
    match (allowed, origin) {
        (Some(allowed), Some(origin)) => {
            let origin = core::str::from_utf8(origin).unwrap_or("");
            allowed.iter().any(|a| a.as_ref() == origin)
        }
        _ => true,
    }
}

/// Decides an upgrade request from its `Origin` header value (if any) and its
/// `Sec-WebSocket-Protocol` header values (each a comma-separated list, in the client's order of
/// preference; none if the header is absent). The first offered subprotocol this build supports
/// wins ([`Codec::negotiate`]); a client that offers none gets the binary form.
pub fn decide<'h, S: AsRef<str>>(
    allowed: Option<&[S]>,
    origin: Option<&[u8]>,
    offered: impl IntoIterator<Item = &'h [u8]>,
) -> Result<Upgrade, Refusal> {
    if !origin_allowed(allowed, origin) {
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

    const NONE: Option<&[&str]> = None;

    #[test]
    fn origins() {
        let allowed = ["https://a.example"];
        assert!(origin_allowed(Some(&allowed), Some(b"https://a.example")));
        assert!(!origin_allowed(Some(&allowed), Some(b"https://b.example")));
        assert!(!origin_allowed(Some(&allowed), Some(&[0xff, 0xfe])));
        assert!(origin_allowed(Some(&allowed), None));
        assert!(origin_allowed(NONE, Some(b"https://b.example")));
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
            decide(Some(&["o"]), Some(b"p"), [&b"eventwire.v1"[..]]),
            Err(Refusal::OriginNotAllowed)
        );
    }
}
