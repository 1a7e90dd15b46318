//! The long-polling fallback's decisions (`client::fallback`), on virtual time: when a client
//! polls, when a request goes out and what it carries, which responses end a session, and when
//! a WebSocket is tried again.

use std::time::Duration;

use eventwire_core::client::fallback::{Lost, Reply, MAX_BODY, MAX_FRAMES};
use eventwire_core::client::{Fallback, PollingConfig, Transport};
use eventwire_core::codec::Codec;
use eventwire_core::time::Instant;

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// A fallback after `failures` failed WebSocket attempts, with a 1 s upgrade interval.
fn after(failures: u32) -> Fallback {
    let config = PollingConfig::new()
        .after_failures(2)
        .upgrade_every(Duration::from_secs(1));
    let mut fallback = Fallback::new(Some(config));
    for _ in 0..failures {
        fallback.handle_ws_failed();
    }
    fallback
}

/// A fallback with an open session at `now` (2 failures, then `connect`).
fn polling(now: Instant) -> Fallback {
    let mut fallback = after(2);
    assert_eq!(fallback.connect(now), Transport::Polling);
    fallback.handle_session_opened();
    fallback
}

/// Takes every request due now, with its body.
fn requests(fallback: &mut Fallback, codec: Codec) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut body = Vec::new();
    while let Some(outgoing) = fallback.poll_request(codec, &mut body) {
        out.push((outgoing.frames, body.clone()));
        assert!(out.len() <= 2, "at most two requests under way");
    }
    out
}

#[test]
fn config_defaults_and_builder() {
    let defaults = PollingConfig::new();
    assert_eq!(defaults, PollingConfig::default());
    assert_eq!(defaults.after_failures, 3);
    assert_eq!(defaults.upgrade_every, Duration::from_secs(30));
    assert_eq!(defaults.path, "/eventwire/poll");
    assert_eq!(PollingConfig::new().after_failures(0).after_failures, 1);
    assert_eq!(PollingConfig::new().path("p").path, "/p");
    assert_eq!(PollingConfig::new().path("/q").path, "/q");
    assert_eq!(
        PollingConfig::new()
            .upgrade_every(Duration::from_millis(5))
            .upgrade_every,
        Duration::from_millis(5)
    );
}

#[test]
fn polls_only_after_the_failures_in_a_row() {
    let mut off = Fallback::new(None);
    for _ in 0..10 {
        off.handle_ws_failed();
    }
    assert_eq!(off.connect(at(0)), Transport::WebSocket);
    assert!(!off.is_opening());
    assert_eq!(off.poll_timeout(), None);

    let mut fallback = after(1);
    assert_eq!(fallback.connect(at(0)), Transport::WebSocket);
    assert_eq!(fallback.transport(), Transport::WebSocket);
    // A WebSocket that opens starts the count over.
    fallback.handle_ws_opened();
    fallback.handle_ws_failed();
    assert_eq!(fallback.failures(), 1);
    assert_eq!(fallback.connect(at(0)), Transport::WebSocket);
    fallback.handle_ws_failed();
    assert_eq!(fallback.connect(at(0)), Transport::Polling);
    assert!(fallback.is_opening() && !fallback.in_session());
    // Nothing goes out before the adapter opened the session.
    assert_eq!(fallback.poll_request(Codec::Json, &mut Vec::new()), None);
    fallback.queue(b"{}".to_vec());
    fallback.handle_session_opened();
    assert!(fallback.in_session() && !fallback.is_opening());
    assert_eq!(fallback.transport(), Transport::Polling);
    // The element queued before the session opened was dropped: the first request is empty.
    assert_eq!(requests(&mut fallback, Codec::Json), [(0, b"[]".to_vec())]);
}

#[test]
fn one_request_until_the_token_then_one_held_and_one_with_frames() {
    let mut fallback = polling(at(0));
    // The first request goes alone, even with frames waiting: its response brings the token.
    assert_eq!(requests(&mut fallback, Codec::Json), [(0, b"[]".to_vec())]);
    fallback.queue(b"{\"a\":1}".to_vec());
    assert!(requests(&mut fallback, Codec::Json).is_empty());
    assert_eq!(fallback.in_flight(), 1);
    assert_eq!(fallback.handle_response(200, true), Reply::Deliver);
    // Answered: the waiting frame goes at once, and that request is the held one.
    assert_eq!(
        requests(&mut fallback, Codec::Json),
        [(1, b"[{\"a\":1}]".to_vec())]
    );
    // Frames while one is held: a second request at once, and no third.
    fallback.queue(b"1".to_vec());
    fallback.queue(b"2".to_vec());
    assert_eq!(
        requests(&mut fallback, Codec::Json),
        [(2, b"[1,2]".to_vec())]
    );
    fallback.queue(b"3".to_vec());
    assert!(requests(&mut fallback, Codec::Json).is_empty());
    assert_eq!(fallback.in_flight(), 2);
    // One comes back (without repeating the token): the waiting frame goes.
    assert_eq!(fallback.handle_response(200, false), Reply::Deliver);
    assert_eq!(requests(&mut fallback, Codec::Json), [(1, b"[3]".to_vec())]);
    // Both come back with nothing waiting: one plain long-poll is held again.
    assert_eq!(fallback.handle_response(200, false), Reply::Deliver);
    assert_eq!(fallback.handle_response(200, false), Reply::Deliver);
    assert_eq!(requests(&mut fallback, Codec::Json), [(0, b"[]".to_vec())]);
    assert_eq!(fallback.in_flight(), 1);
}

#[test]
fn bodies_hold_at_most_64_frames_and_the_byte_limit() {
    let mut fallback = polling(at(0));
    assert_eq!(requests(&mut fallback, Codec::Binary), [(0, Vec::new())]);
    assert_eq!(fallback.handle_response(200, true), Reply::Deliver);
    for n in 0..(MAX_FRAMES + 6) {
        fallback.queue(vec![n as u8, 0]);
    }
    let sent = requests(&mut fallback, Codec::Binary);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].0, MAX_FRAMES);
    // Binary elements go back to back, in order.
    let expected: Vec<u8> = (0..MAX_FRAMES).flat_map(|n| [n as u8, 0]).collect();
    assert_eq!(sent[0].1, expected);
    assert_eq!(sent[1], (6, (64u8..70).flat_map(|n| [n, 0]).collect()));

    // Large elements: a body stops before it would pass the byte limit, but always takes one.
    let mut fallback = polling(at(0));
    let _ = requests(&mut fallback, Codec::Json);
    assert_eq!(fallback.handle_response(200, true), Reply::Deliver);
    let big = vec![b'1'; MAX_BODY / 2];
    fallback.queue(big.clone());
    fallback.queue(big.clone());
    fallback.queue(vec![b'2'; MAX_BODY + 10]);
    let sent = requests(&mut fallback, Codec::Json);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].0, 1);
    assert_eq!(sent[0].1.len(), MAX_BODY / 2 + 2);
    assert_eq!(sent[1].0, 1);
    assert_eq!(fallback.handle_response(200, false), Reply::Deliver);
    let last = requests(&mut fallback, Codec::Json);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].0, 1);
    assert_eq!(
        last[0].1.len(),
        MAX_BODY + 12,
        "an element over the limit goes alone"
    );
}

#[test]
fn a_refusal_or_a_missing_token_ends_the_session() {
    let mut fallback = polling(at(0));
    let _ = requests(&mut fallback, Codec::Json);
    assert_eq!(
        fallback.handle_response(200, false),
        Reply::Lost(Lost::NoToken)
    );
    assert!(!fallback.in_session());
    // Nothing more goes out, and a late response is stale.
    assert!(requests(&mut fallback, Codec::Json).is_empty());
    assert_eq!(fallback.handle_response(200, true), Reply::Stale);
    assert!(!fallback.handle_request_failed());
    assert_eq!(
        fallback.transport(),
        Transport::Polling,
        "the last session's"
    );

    let mut fallback = polling(at(0));
    let _ = requests(&mut fallback, Codec::Json);
    assert_eq!(
        fallback.handle_response(404, true),
        Reply::Lost(Lost::Status(404))
    );
    assert!(!fallback.in_session());

    let mut fallback = polling(at(0));
    let _ = requests(&mut fallback, Codec::Json);
    assert!(fallback.handle_request_failed());
    assert!(!fallback.in_session());
    // The next connection polls again: the failures did not start over.
    assert_eq!(fallback.connect(at(10)), Transport::Polling);
}

#[test]
fn a_disconnect_sends_what_waits_once_the_session_has_a_token() {
    let mut fallback = polling(at(0));
    let _ = requests(&mut fallback, Codec::Json);
    fallback.queue(b"\"close\"".to_vec());
    // No token yet: the server could not place the request; nothing is sent.
    assert_eq!(fallback.disconnect(Codec::Json, &mut Vec::new()), None);
    assert!(!fallback.in_session());

    let mut fallback = polling(at(0));
    let _ = requests(&mut fallback, Codec::Json);
    assert_eq!(fallback.handle_response(200, true), Reply::Deliver);
    let _ = requests(&mut fallback, Codec::Json);
    let mut body = Vec::new();
    // Nothing waits: nothing to send.
    assert_eq!(fallback.disconnect(Codec::Json, &mut body), None);

    let mut fallback = polling(at(0));
    let _ = requests(&mut fallback, Codec::Json);
    assert_eq!(fallback.handle_response(200, true), Reply::Deliver);
    fallback.queue(b"1".to_vec());
    let _ = requests(&mut fallback, Codec::Json);
    fallback.queue(b"2".to_vec());
    let _ = requests(&mut fallback, Codec::Json);
    fallback.queue(b"\"close\"".to_vec());
    assert_eq!(fallback.in_flight(), 2);
    // Two under way, and still the close goes out.
    let last = fallback.disconnect(Codec::Json, &mut body).unwrap();
    assert_eq!(
        (last.frames, last.seq),
        (1, 4),
        "the session's fourth request"
    );
    assert_eq!(body, b"[\"close\"]");
    assert!(!fallback.in_session());
    assert_eq!(fallback.disconnect(Codec::Json, &mut body), None);
}

#[test]
fn requests_are_numbered_in_the_order_they_go_out() {
    let mut fallback = polling(at(0));
    let mut body = Vec::new();
    let mut seqs = Vec::new();
    let mut take = |fallback: &mut Fallback, seqs: &mut Vec<u64>| {
        while let Some(outgoing) = fallback.poll_request(Codec::Json, &mut body) {
            seqs.push(outgoing.seq);
        }
    };
    take(&mut fallback, &mut seqs);
    assert_eq!(seqs, [1], "the first request, alone until the token comes");
    assert_eq!(fallback.handle_response(200, true), Reply::Deliver);
    take(&mut fallback, &mut seqs);
    fallback.queue(b"1".to_vec());
    take(&mut fallback, &mut seqs);
    assert_eq!(seqs, [1, 2, 3], "the held one, then one with frames");
    assert_eq!(fallback.handle_response(200, false), Reply::Deliver);
    assert_eq!(fallback.handle_response(200, false), Reply::Deliver);
    take(&mut fallback, &mut seqs);
    assert_eq!(seqs, [1, 2, 3, 4]);
    // A new session numbers from 1 again.
    assert!(fallback.handle_request_failed());
    assert_eq!(fallback.connect(at(1)), Transport::Polling);
    fallback.handle_session_opened();
    seqs.clear();
    take(&mut fallback, &mut seqs);
    assert_eq!(seqs, [1]);
}

#[test]
fn probes_come_every_interval_and_a_success_leaves_polling() {
    let mut fallback = polling(at(100));
    assert_eq!(fallback.poll_timeout(), Some(at(1100)));
    assert!(!fallback.poll_probe(at(1099)), "not before its time");
    assert!(fallback.poll_probe(at(1100)));
    // One probe at a time: none due while it runs.
    assert_eq!(fallback.poll_timeout(), None);
    assert!(!fallback.poll_probe(at(5000)));
    // A failed probe plans the next one from when it ended.
    assert!(!fallback.handle_probe(at(1300), false));
    assert_eq!(fallback.poll_timeout(), Some(at(2300)));
    assert!(fallback.in_session());
    assert!(fallback.poll_probe(at(2400)));
    // An open probe abandons the session; the next connection is a WebSocket.
    assert!(fallback.handle_probe(at(2500), true));
    assert!(!fallback.in_session());
    assert_eq!(fallback.failures(), 0);
    assert_eq!(fallback.poll_timeout(), None);
    assert_eq!(fallback.connect(at(2600)), Transport::WebSocket);
    // A probe result nobody asked for changes nothing.
    assert!(!fallback.handle_probe(at(2700), true));
}

#[test]
fn a_new_session_keeps_the_planned_probe() {
    let mut fallback = polling(at(0));
    assert!(fallback.handle_request_failed());
    // Reconnecting by polling again does not push the probe back.
    assert_eq!(fallback.connect(at(600)), Transport::Polling);
    assert_eq!(fallback.poll_timeout(), Some(at(1000)));
    // A probe that opens while no session is open still starts the count over.
    assert!(fallback.poll_probe(at(1000)));
    assert!(fallback.handle_request_failed());
    assert!(!fallback.handle_probe(at(1100), true));
    assert_eq!(fallback.connect(at(1200)), Transport::WebSocket);

    // A WebSocket that opens cancels the probe; stopping drops everything.
    let mut fallback = polling(at(0));
    fallback.handle_ws_opened();
    assert_eq!(fallback.poll_timeout(), None);
    assert_eq!(fallback.transport(), Transport::WebSocket);
    let mut fallback = polling(at(0));
    fallback.stop();
    assert!(!fallback.in_session());
    assert_eq!(fallback.poll_timeout(), None);
}
