//! The URL a client connects to: `ws://host[:port][/path][?query]`, or `wss://` (RFC 6455
//! section 3), checked once for every adapter.
//!
//! [`WsUrl::parse`] splits the URL into what a transport needs (whether it is secure, the host
//! to resolve, the port, the `Host` header value; the path and query are the request target as
//! written) and refuses, with a
//! [`UrlError`], anything that is not a WebSocket URL with a host. Whether an adapter can open a
//! `wss://` URL (TLS) is its own business; the scheme is only reported.
//!
//! Invariants: every part borrows from the URL; a parsed URL has a non-empty host, a port (80 or
//! 443 when none is written), no fragment, no user info
//! in its authority, and no byte that a request line cannot carry (controls, spaces, non-ASCII).

use core::fmt;

/// A WebSocket URL split into its parts; see [`WsUrl::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsUrl<'a> {
    /// `wss://`: the transport runs TLS.
    pub secure: bool,
    /// The host to connect to (an IPv6 address without its brackets); the TLS server name.
    pub host: &'a str,
    /// The port: the written one, else 80 (`ws://`) or 443 (`wss://`).
    pub port: u16,
    /// The authority as written, without user info: the `Host` header value.
    pub authority: &'a str,
}

/// Why a URL is not one a client can connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// It has a byte no request line may carry (a space, a control, non-ASCII), or no `://`.
    NotAUrl,
    /// The scheme is not `ws` or `wss`.
    Scheme,
    /// The authority names no host.
    NoHost,
    /// The port is not a number from 0 to 65535, or an IPv6 address is not closed by `]`.
    Port,
    /// The URL has a fragment, which a WebSocket URL may not have (RFC 6455 section 3).
    Fragment,
}

impl UrlError {
    /// What is wrong, in a few words.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlError::NotAUrl => "not a URL",
            UrlError::Scheme => "the scheme must be ws:// or wss://",
            UrlError::NoHost => "no host",
            UrlError::Port => "not a valid port",
            UrlError::Fragment => "a WebSocket URL has no fragment",
        }
    }
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'a> WsUrl<'a> {
    /// Splits `url`; the scheme is case-insensitive.
    pub fn parse(url: &'a str) -> Result<WsUrl<'a>, UrlError> {
        if url.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(UrlError::NotAUrl);
        }
        let (scheme, rest) = url.split_once("://").ok_or(UrlError::NotAUrl)?;
        let secure = if scheme.eq_ignore_ascii_case("ws") {
            false
        } else if scheme.eq_ignore_ascii_case("wss") {
            true
        } else {
            return Err(UrlError::Scheme);
        };
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let written = &rest[..end];
        let authority = written.rsplit_once('@').map_or(written, |(_, after)| after);
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or(UrlError::Port)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or(UrlError::Port)?)),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let port = match port {
            None => {
                if secure {
                    443
                } else {
                    80
                }
            }
            Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                port.parse().map_err(|_| UrlError::Port)?
            }
            Some(_) => return Err(UrlError::Port),
        };
        Ok(WsUrl {
            secure,
            host,
            port,
            authority,
        })
    }
}
