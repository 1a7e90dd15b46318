//! The URLs every client checks at connect, written once: run against the tokio client
//! (`adapter-tokio/tests/client.rs`) and the blocking one (`adapter-sync/tests/client.rs`, which
//! includes this file by path). Both check URLs with the core's `WsUrl`; this shows that each
//! client applies it, and refuses `wss://` without TLS.

use eventwire_core::client::HandleError;

/// Asserts that `connect` (a client's `connect` with default options) refuses each URL a client
/// without TLS cannot open, before any attempt, and takes a `ws://` URL with a path and query.
pub fn urls_are_checked(connect: impl Fn(&str) -> Result<(), HandleError>) {
    for url in [
        "http://127.0.0.1:9001/",
        "wss://127.0.0.1:9001/",
        "ws://",
        "ws:///path",
        "not a url",
        "127.0.0.1:9001",
    ] {
        let result = connect(url);
        assert!(
            matches!(result, Err(HandleError::InvalidUrl(_))),
            "{url}: {result:?}"
        );
    }
    assert!(connect("ws://localhost:1/events?x=1").is_ok());
}
