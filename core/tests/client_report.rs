//! How adapters log the client's events (`client::Level`, `ClientEvent`'s text).

use std::time::Duration;

use eventwire_core::client::{ClientEvent, Level};
use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_core::frame::{Missed, Position};
use eventwire_core::rtt::Quality;

#[test]
fn levels_and_texts() {
    let cases: [(ClientEvent<'_>, Option<Level>, &str); 14] = [
        (
            ClientEvent::Connecting { attempt: 2 },
            Some(Level::Info),
            "connecting (attempt 2)",
        ),
        (
            ClientEvent::Open { session_id: 9 },
            Some(Level::Info),
            "session 9 open",
        ),
        (
            ClientEvent::Reconnecting {
                attempt: 1,
                delay: Duration::from_millis(150),
                code: Some(CloseCode::NORMAL),
            },
            Some(Level::Info),
            "reconnecting in 150ms (attempt 1, code 1000 (normal))",
        ),
        (
            ClientEvent::Reconnecting {
                attempt: 3,
                delay: Duration::from_secs(1),
                code: None,
            },
            Some(Level::Info),
            "reconnecting in 1s (attempt 3)",
        ),
        (
            ClientEvent::Closed {
                code: Some(CloseCode::NORMAL),
                reason: "",
            },
            Some(Level::Info),
            "closed: \"\"",
        ),
        (
            ClientEvent::Closed {
                code: Some(CloseCode::UNAUTHORIZED),
                reason: "bad token",
            },
            Some(Level::Warn),
            "closed for good: ",
        ),
        (
            ClientEvent::Closed {
                code: None,
                reason: "",
            },
            Some(Level::Warn),
            "closed for good: reconnect attempts exhausted",
        ),
        (
            ClientEvent::Gap {
                room: "r",
                missed: Missed::Reset {
                    position: Position::new(2, 0),
                },
            },
            Some(Level::Warn),
            "gap in r: ",
        ),
        (
            ClientEvent::SubscribeFailed {
                room: "r",
                code: ErrorCode::FORBIDDEN_ROOM,
            },
            Some(Level::Warn),
            "subscription to r refused: ",
        ),
        (
            ClientEvent::PublishFailed {
                id: 4,
                code: ErrorCode::FORBIDDEN_ROOM,
            },
            Some(Level::Warn),
            "publish 4 refused: ",
        ),
        (
            ClientEvent::ServerError {
                code: ErrorCode::FORBIDDEN_ROOM,
                reason: "no",
            },
            Some(Level::Warn),
            "server error ",
        ),
        (
            ClientEvent::Quality(Quality::Poor),
            Some(Level::Debug),
            "link quality ",
        ),
        (
            ClientEvent::Subscribed {
                room: "r",
                position: Position::new(1, 2),
            },
            None,
            "subscribed to r after ",
        ),
        (
            ClientEvent::Event {
                room: "r",
                position: Position::new(1, 2),
                kind: "k",
                payload: b"{}",
            },
            None,
            "event k at r ",
        ),
    ];
    for (event, level, text) in cases {
        assert_eq!(event.log_level(), level, "{event:?}");
        let shown = event.to_string();
        assert!(shown.starts_with(text), "{shown:?} starts with {text:?}");
    }
    let ack = ClientEvent::PublishAcked {
        id: 1,
        position: Position::new(1, 1),
    };
    assert_eq!(ack.log_level(), None);
    assert!(ack.to_string().starts_with("publish 1 acknowledged at "));
}
