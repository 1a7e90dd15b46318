//! Malformed, truncated, oversize and unknown input: each gets its typed error.

use eventwire_core::code::CloseCode;
use eventwire_core::codec::stream::{self, StreamDecoder};
use eventwire_core::codec::{binary, json};
use eventwire_core::frame::*;
use eventwire_core::payload::Payload;
use eventwire_core::text::Invalid;
use eventwire_core::{DecodeError, EncodeError};

fn event(room: &str) -> Frame<'_> {
    Frame::Event(Event {
        room,
        position: Position::new(1, 2),
        kind: "k",
        payload: Payload(b"{}"),
    })
}

fn bytes_of(frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    binary::encode_into(frame, &mut out).unwrap();
    out
}

#[test]
fn oversize_is_refused_before_parsing() {
    let big = vec![0xffu8; 5000];
    assert_eq!(
        binary::decode(&big, 4096),
        Err(DecodeError::TooLarge {
            size: 5000,
            limit: 4096
        })
    );
    assert_eq!(
        json::decode(&big, 4096),
        Err(DecodeError::TooLarge {
            size: 5000,
            limit: 4096
        })
    );
    assert_eq!(
        DecodeError::TooLarge { size: 1, limit: 0 }.close_code(),
        Some(CloseCode::MESSAGE_TOO_BIG)
    );
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = bytes_of(&event("agents"));
    assert_eq!(binary::decode(&[], 100), Err(DecodeError::Empty));
    for cut in 1..bytes.len() {
        let err = binary::decode(&bytes[..cut], 100).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated | DecodeError::Malformed(_)),
            "cut {cut}: {err:?}"
        );
        assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL_ERROR));
    }
    let text = json::encode(&event("agents")).unwrap();
    for cut in 1..text.len() {
        assert!(json::decode(&text[..cut], 1000).is_err(), "cut {cut}");
    }
}

#[test]
fn unknown_kinds_are_reported_not_fatal() {
    // Tag 14 and a large tag, each followed by bytes of a body this version cannot know.
    for bytes in [&[14u8, 1, 2, 3][..], &[0xc8, 0x01, 9]] {
        let err = binary::decode(bytes, 100).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnknownKind { tag: Some(_) }),
            "{err:?}"
        );
        assert_eq!(err.close_code(), None);
    }
    let err = json::decode(br#"{"presence":{"room":"agents","who":[1,2]}}"#, 100).unwrap_err();
    assert_eq!(err, DecodeError::UnknownKind { tag: None });
}

#[test]
fn extension_bytes_after_a_frame_are_ignored() {
    let frame = event("agents");
    let mut bytes = bytes_of(&frame);
    bytes.extend_from_slice(&[7, 7, 7]);
    assert_eq!(binary::decode(&bytes, 100), Ok(frame.clone()));
    // JSON: unknown fields are ignored; trailing garbage is not.
    let with_field = br#"{"ping":{"nonce":5,"sent_at":123}}"#;
    assert_eq!(
        json::decode(with_field, 100),
        Ok(Frame::Ping(Ping { nonce: 5 }))
    );
    assert!(matches!(
        json::decode(br#"{"ping":{"nonce":5}} x"#, 100),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn field_rules_are_enforced_both_ways() {
    let bad = event("no/slash");
    assert_eq!(
        binary::encode(&bad, &mut [0u8; 64]),
        Err(EncodeError::Invalid(Invalid::Name { field: "room" }))
    );
    // A peer that ignores the rules still gets a typed error.
    let forged = [
        5u8, 8, b'n', b'o', b'/', b's', b'l', b'a', b's', b'h', 1, 2, 1, b'k', 0,
    ];
    let err = binary::decode(&forged, 100).unwrap_err();
    assert_eq!(err, DecodeError::Invalid(Invalid::Name { field: "room" }));
    assert_eq!(err.close_code(), Some(CloseCode::INVALID_DATA));
    // Escaped strings cannot be borrowed, so they are refused rather than copied.
    assert!(json::decode(br#"{"unsubscribe":{"room":"a\u0062"}}"#, 100).is_err());
    // Integers beyond what JavaScript keeps exact.
    assert_eq!(
        json::decode(br#"{"ping":{"nonce":9007199254740992}}"#, 100),
        Err(DecodeError::Invalid(Invalid::Integer { field: "nonce" }))
    );
}

#[test]
fn batches_must_be_ordered() {
    let events = [
        BatchEvent {
            offset: 5,
            kind: "k",
            payload: Payload(b"1"),
        },
        BatchEvent {
            offset: 5,
            kind: "k",
            payload: Payload(b"2"),
        },
    ];
    let frame = Frame::Batch(Batch {
        room: "r",
        epoch: 1,
        events: eventwire_core::frame::Seq::from_slice(&events),
    });
    assert!(binary::encode(&frame, &mut [0u8; 64]).is_err());
    let text = br#"{"batch":{"room":"r","epoch":1,"events":[{"offset":5,"kind":"k","payload":1},{"offset":4,"kind":"k","payload":2}]}}"#;
    assert_eq!(
        json::decode(text, 1000),
        Err(DecodeError::Malformed("batch offsets not increasing"))
    );
}

#[test]
fn encode_errors_are_typed() {
    let frame = event("agents");
    let needed = binary::encoded_len(&frame).unwrap();
    assert_eq!(
        binary::encode(&frame, &mut [0u8; 4]),
        Err(EncodeError::BufferTooSmall { needed })
    );
    let binary_payload = Frame::Event(Event {
        room: "r",
        position: Position::new(1, 1),
        kind: "k",
        payload: Payload(&[0xff, 0x00]),
    });
    assert_eq!(
        json::encode(&binary_payload),
        Err(EncodeError::PayloadNotJson)
    );
}

#[test]
fn stream_recovers_after_oversize_and_garbage() {
    let small = Frame::Ping(Ping { nonce: 3 });
    let mut wire = Vec::new();
    let mut buf = [0u8; 4096];
    // An oversize frame whose tail, read on its own, would be a valid frame: it must not be.
    let smuggled = stream::encode(&small, &mut buf).unwrap().to_vec();
    let mut oversize = vec![1u8; 100];
    oversize.extend_from_slice(&smuggled[..smuggled.len() - 1]);
    oversize.push(0);
    wire.extend_from_slice(&oversize);
    wire.extend_from_slice(&[9, 9, 9, 0]); // garbage
    wire.extend_from_slice(&smuggled);

    let mut decoder = StreamDecoder::<32>::new();
    let mut results = Vec::new();
    for chunk in wire.chunks(7) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (item, tail) = decoder.feed(rest);
            if let Some(r) = item {
                results.push(r.map(|f| format!("{f:?}")));
            }
            rest = tail;
        }
    }
    assert!(matches!(
        results[0],
        Err(DecodeError::TooLarge { limit: 32, .. })
    ));
    assert!(results[1].is_err(), "garbage decoded: {:?}", results[1]);
    assert_eq!(results[2], Ok(format!("{small:?}")));
    assert_eq!(results.len(), 3, "{results:?}");
}

/// PROTOCOL.md section 3.1: which close code answers which broken JSON frame. A frame whose
/// JSON does not have the frame's shape (a field of the wrong type, a required field missing,
/// a string with an escape sequence) is malformed: 1002. A frame of the right shape whose value
/// breaks a field rule (section 4) is invalid: 1007.
#[test]
fn json_shape_errors_close_1002_and_rule_errors_1007() {
    let malformed: [&[u8]; 5] = [
        br#"{"subscribe":{"room":7,"from":null}}"#,
        br#"{"subscribe":{"from":null}}"#,
        br#"{"ping":{"nonce":"5"}}"#,
        br#"{"unsubscribe":{"room":"a\u0062"}}"#,
        br#"{"unsubscribe":{"room":"tab\tbed"}}"#,
    ];
    for text in malformed {
        let err = json::decode(text, 1024).unwrap_err();
        assert!(
            matches!(err, DecodeError::Malformed(_)),
            "{}: {err:?}",
            String::from_utf8_lossy(text)
        );
        assert_eq!(err.close_code(), Some(CloseCode::PROTOCOL_ERROR));
    }
    let invalid: [&[u8]; 3] = [
        br#"{"unsubscribe":{"room":"has space"}}"#,
        br#"{"unsubscribe":{"room":""}}"#,
        br#"{"ping":{"nonce":9007199254740992}}"#,
    ];
    for text in invalid {
        let err = json::decode(text, 1024).unwrap_err();
        assert!(
            matches!(err, DecodeError::Invalid(_)),
            "{}: {err:?}",
            String::from_utf8_lossy(text)
        );
        assert_eq!(err.close_code(), Some(CloseCode::INVALID_DATA));
    }
}
