//! The client's URL check (`client::WsUrl`), shared by every adapter's client.

use eventwire_core::client::{UrlError, WsUrl};

fn url(secure: bool, host: &'static str, port: u16, authority: &'static str) -> WsUrl<'static> {
    WsUrl {
        secure,
        host,
        port,
        authority,
    }
}

#[test]
fn websocket_urls_split_into_their_parts() {
    assert_eq!(
        WsUrl::parse("ws://127.0.0.1:9001/events?x=1"),
        Ok(url(false, "127.0.0.1", 9001, "127.0.0.1:9001"))
    );
    assert_eq!(
        WsUrl::parse("wss://example.com"),
        Ok(url(true, "example.com", 443, "example.com"))
    );
    assert_eq!(
        WsUrl::parse("WS://localhost?x=1"),
        Ok(url(false, "localhost", 80, "localhost"))
    );
    // An IPv6 address loses its brackets as a host, not in the Host header.
    assert_eq!(
        WsUrl::parse("ws://[::1]:9/x"),
        Ok(url(false, "::1", 9, "[::1]:9"))
    );
    assert_eq!(
        WsUrl::parse("wss://[::1]/"),
        Ok(url(true, "::1", 443, "[::1]"))
    );
    // No user info in the Host header.
    assert_eq!(
        WsUrl::parse("wss://user:pw@example.com/x"),
        Ok(url(true, "example.com", 443, "example.com"))
    );
}

#[test]
fn anything_else_is_a_typed_error() {
    for (bad, error) in [
        ("not a url", UrlError::NotAUrl),
        ("127.0.0.1:9001", UrlError::NotAUrl),
        ("ws://héllo/", UrlError::NotAUrl),
        ("http://127.0.0.1:9001/", UrlError::Scheme),
        ("://h/", UrlError::Scheme),
        ("ws://", UrlError::NoHost),
        ("ws:///path", UrlError::NoHost),
        ("ws://user@/path", UrlError::NoHost),
        ("ws://:80/", UrlError::NoHost),
        ("ws://h:/", UrlError::Port),
        ("ws://h:65536/", UrlError::Port),
        ("ws://h:+1/", UrlError::Port),
        ("ws://[::1/", UrlError::Port),
        ("ws://[::1]x/", UrlError::Port),
        ("ws://h/#top", UrlError::Fragment),
    ] {
        assert_eq!(WsUrl::parse(bad), Err(error), "{bad}");
    }
    assert_eq!(UrlError::NoHost.to_string(), "no host");
    assert_eq!(UrlError::NoHost.as_str(), "no host");
    assert_eq!(
        UrlError::Scheme.to_string(),
        "the scheme must be ws:// or wss://"
    );
}
