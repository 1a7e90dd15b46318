//! Behaviour of one server session reading rooms from a hub, driven with hand-made client frames.
//!
//! Every frame crosses the "wire": it is encoded with the binary codec and decoded again, in both
//! directions, so sizes are measured as a client would receive them.

use eventwire_core::server::Grants;
use std::time::Duration;

use eventwire_core::client::{Action, Client, ClientConfig, ClientEvent, ConnState};
use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_core::codec::{binary, json, Codec};
use eventwire_core::frame::Seq;
use eventwire_core::frame::{
    Close, Frame, Hello, Missed, Ping, Position, Publish, Resume, Subscribe, Unsubscribe, Welcome,
    PROTOCOL_VERSION,
};
use eventwire_core::history::HistoryConfig;
use eventwire_core::hub::{Hub, HubConfig};
use eventwire_core::payload::Payload;
use eventwire_core::rtt::Quality;
use eventwire_core::server::{
    DecisionError, PublishMode, ServerConfig, ServerEvent, ServerSession, SessionState,
    CONTROL_CAPACITY,
};
use eventwire_core::time::Instant;

const EPOCH: u32 = 7;
const SESSION_ID: u64 = 99;
const DECODE_LIMIT: usize = 1 << 20;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn history() -> HistoryConfig {
    HistoryConfig::new().max_events(16).max_bytes(4096)
}

/// What the application is told, owned.
#[derive(Debug, Clone, PartialEq)]
enum SEv {
    Authenticate {
        client_id: u64,
        token: Option<String>,
    },
    Authorize(String),
    Publish {
        room: String,
        id: u64,
        payload: Vec<u8>,
    },
    Published {
        room: String,
        position: Position,
        payload: Vec<u8>,
    },
    Refused(String, u64),
    Quality(Quality),
    Closed(CloseCode),
    Other(String),
}

impl From<ServerEvent<'_>> for SEv {
    fn from(e: ServerEvent<'_>) -> SEv {
        match e {
            ServerEvent::Authenticate { client_id, token } => SEv::Authenticate {
                client_id,
                token: token.map(str::to_string),
            },
            ServerEvent::Authorize { room } => SEv::Authorize(room.to_string()),
            ServerEvent::Publish {
                room, id, payload, ..
            } => SEv::Publish {
                room: room.to_string(),
                id,
                payload: payload.to_vec(),
            },
            ServerEvent::Published {
                room,
                position,
                payload,
                ..
            } => SEv::Published {
                room: room.to_string(),
                position,
                payload: payload.to_vec(),
            },
            ServerEvent::PublishRefused { room, id } => SEv::Refused(room.to_string(), id),
            ServerEvent::Quality(q) => SEv::Quality(q),
            ServerEvent::Closed { code } => SEv::Closed(code),
            other => SEv::Other(format!("{other:?}")),
        }
    }
}

/// A frame the session sent, owned, as the client decoded it.
#[derive(Debug, Clone, PartialEq)]
enum Down {
    Welcome(Welcome),
    Subscribed(String, Position),
    Batch {
        room: String,
        epoch: u32,
        offsets: Vec<u64>,
        payloads: Vec<Vec<u8>>,
        /// Encoded size of the whole frame.
        size: usize,
    },
    Gap(String, Missed),
    Ack(u64, Position),
    Ping(u64),
    Pong(u64),
    Error {
        code: ErrorCode,
        id: Option<u64>,
        room: Option<String>,
        retry_after_ms: Option<u32>,
    },
    Close {
        code: CloseCode,
        retry_after_ms: Option<u32>,
        reason: String,
    },
    Other(String),
}

impl Down {
    fn from_bytes(bytes: &[u8]) -> Down {
        let frame = binary::decode(bytes, DECODE_LIMIT).expect("a client decodes it");
        match frame {
            Frame::Welcome(w) => Down::Welcome(w),
            Frame::Subscribed(s) => Down::Subscribed(s.room.to_string(), s.position),
            Frame::Batch(b) => Down::Batch {
                room: b.room.to_string(),
                epoch: b.epoch,
                offsets: b.events.iter().map(|e| e.offset).collect(),
                payloads: b.events.iter().map(|e| e.payload.0.to_vec()).collect(),
                size: bytes.len(),
            },
            Frame::Gap(g) => Down::Gap(g.room.to_string(), g.missed),
            Frame::PublishAck(a) => Down::Ack(a.id, a.position),
            Frame::Ping(p) => Down::Ping(p.nonce),
            Frame::Pong(p) => Down::Pong(p.nonce),
            Frame::Error(e) => Down::Error {
                code: e.code,
                id: e.id,
                room: e.room.map(str::to_string),
                retry_after_ms: e.retry_after_ms,
            },
            Frame::Close(c) => Down::Close {
                code: c.code,
                retry_after_ms: c.retry_after_ms,
                reason: c.reason.to_string(),
            },
            other => Down::Other(format!("{other:?}")),
        }
    }
}

/// One session, the hub it reads, its clock and what it told the application.
struct Harness {
    hub: Hub,
    session: ServerSession,
    now: Instant,
    events: Vec<SEv>,
}

impl Harness {
    fn new(config: ServerConfig, history: HistoryConfig) -> Self {
        let now = Instant::from_millis(1_000);
        let mut session = ServerSession::new(now, config, SESSION_ID, 5);
        // These tests publish, and join rooms before anything is emitted to them;
        // `publishes_outside_the_grants_are_refused_and_never_appended` and
        // `rooms_nobody_created_are_refused_unless_granted` narrow the grants.
        session.grant(Grants::publish_any().create_any());
        Harness {
            hub: Hub::new(EPOCH, HubConfig::new().history(history)),
            session,
            now,
            events: Vec::new(),
        }
    }

    /// A client frame arrives (through the binary codec).
    fn feed(&mut self, frame: &Frame<'_>) {
        let mut bytes = Vec::new();
        binary::encode_into(frame, &mut bytes).expect("test frames are valid");
        self.feed_bytes(&bytes);
    }

    fn feed_bytes(&mut self, bytes: &[u8]) {
        let frame = binary::decode(bytes, DECODE_LIMIT).expect("and decode");
        let events = &mut self.events;
        self.session
            .handle_frame(self.now, &frame, &self.hub, &mut |e| events.push(e.into()));
    }

    fn hello_with(
        &mut self,
        version: u16,
        max_frame: u32,
        max_batch: u16,
        rooms: &[(&str, Option<Position>)],
    ) {
        let rooms: Vec<Resume<'_>> = rooms
            .iter()
            .map(|(room, from)| Resume { room, from: *from })
            .collect();
        self.feed(&Frame::Hello(Hello {
            version,
            client_id: 4242,
            token: Some("tok.en"),
            max_frame,
            max_batch,
            rooms: Seq::from_slice(&rooms),
        }));
    }

    fn hello(&mut self, rooms: &[(&str, Option<Position>)]) {
        self.hello_with(PROTOCOL_VERSION, 64 * 1024, 50, rooms);
    }

    fn accept(&mut self) {
        let events = &mut self.events;
        self.session
            .accept(self.now, &mut |e| events.push(e.into()))
            .expect("the hello awaits a decision");
    }

    /// Allows every join the application was asked about.
    fn allow_all(&mut self) {
        for e in self.take_events() {
            if let SEv::Authorize(room) = e {
                self.session.allow(&self.hub, &room).unwrap();
            }
        }
    }

    /// Hello (with the given client limits), accept, allow every room; returns what was sent.
    fn open_with(
        &mut self,
        max_frame: u32,
        max_batch: u16,
        rooms: &[(&str, Option<Position>)],
    ) -> Vec<Down> {
        self.hello_with(PROTOCOL_VERSION, max_frame, max_batch, rooms);
        self.take_events();
        self.accept();
        self.allow_all();
        self.drain()
    }

    /// Hello, accept and allow every room, leaving what the session has to send unsent.
    fn open_unsent(&mut self, max_frame: u32, rooms: &[(&str, Option<Position>)]) {
        self.hello_with(PROTOCOL_VERSION, max_frame, 50, rooms);
        self.take_events();
        self.accept();
        self.allow_all();
    }

    fn open(&mut self, rooms: &[(&str, Option<Position>)]) -> Vec<Down> {
        self.open_with(64 * 1024, 50, rooms)
    }

    /// Everything the session sends now, as bytes.
    fn drain_bytes(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(frame) = self.session.poll_transmit(self.now) {
            let mut bytes = Vec::new();
            binary::encode_into(&frame, &mut bytes).expect("the session sends valid frames");
            out.push(bytes);
            assert!(out.len() < 10_000, "poll_transmit never ends");
        }
        out
    }

    fn drain(&mut self) -> Vec<Down> {
        self.drain_bytes()
            .iter()
            .map(|b| Down::from_bytes(b))
            .collect()
    }

    /// Moves the clock to `t` and lets due timers fire.
    fn at(&mut self, t: Instant) {
        self.now = t;
        let events = &mut self.events;
        self.session
            .handle_timeout(self.now, &mut |e| events.push(e.into()));
    }

    fn advance(&mut self, d: Duration) {
        self.at(self.now + d);
    }

    fn emit(&mut self, room: &str) -> u64 {
        let next = self.head(room).map_or(1, |p| p.offset + 1);
        let position = self
            .hub
            .emit(self.now, room, "agent.status", &payload(next), None)
            .unwrap();
        assert_eq!(position, Position::new(EPOCH, next));
        next
    }

    fn emit_keyed(&mut self, room: &str, key: &str, payload: &[u8]) -> u64 {
        self.hub
            .emit(self.now, room, "agent.metrics", payload, Some(key))
            .unwrap()
            .offset
    }

    fn head(&self, room: &str) -> Option<Position> {
        Some(self.hub.room(room)?.head())
    }

    /// Some subscription has not been sent its room's head yet.
    fn behind(&self) -> bool {
        self.session
            .subscriptions()
            .any(|(room, sent)| self.head(room).is_some_and(|head| head != sent))
    }

    /// Sends everything in the JSON form (each message's text), letting time pass to each flush
    /// the session reports.
    fn flush_all_json(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            while let Some(frame) = self.session.poll_transmit(self.now) {
                let mut text = Vec::new();
                json::encode_into(&frame, &mut text).expect("the session sends valid frames");
                out.push(text);
                assert!(out.len() < 10_000, "poll_transmit never ends");
            }
            if !self.behind() {
                return out;
            }
            let t = self.session.poll_timeout().expect("a flush is due");
            self.at(t);
        }
        panic!("never caught up");
    }

    /// Sends everything, letting time pass to each flush the session reports.
    fn flush_all(&mut self) -> Vec<Down> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            out.extend(self.drain());
            if !self.behind() {
                return out;
            }
            let t = self.session.poll_timeout().expect("a flush is due");
            assert!(
                t > self.now,
                "due at {t} but nothing was sent at {}",
                self.now
            );
            self.at(t);
        }
        panic!("never caught up");
    }

    fn take_events(&mut self) -> Vec<SEv> {
        std::mem::take(&mut self.events)
    }
}

fn payload(offset: u64) -> Vec<u8> {
    format!("e{offset}").into_bytes()
}

fn subscribe(room: &str, from: Option<Position>) -> Frame<'_> {
    Frame::Subscribe(Subscribe { room, from })
}

fn publish(id: u64) -> Frame<'static> {
    Frame::Publish(Publish {
        room: "cmd",
        id,
        kind: "task.create",
        payload: Payload(b"{\"go\":1}"),
    })
}

fn ping(nonce: u64) -> Frame<'static> {
    Frame::Ping(Ping { nonce })
}

/// The offsets of each batch, in order.
fn batches(out: &[Down]) -> Vec<Vec<u64>> {
    out.iter()
        .filter_map(|d| match d {
            Down::Batch { offsets, .. } => Some(offsets.clone()),
            _ => None,
        })
        .collect()
}

fn batch_of(room: &str, offsets: impl IntoIterator<Item = u64>) -> (String, Vec<u64>) {
    (room.to_string(), offsets.into_iter().collect())
}

/// A batch's room and offsets, checking that every payload is the one emitted at its offset.
fn batch_parts(d: &Down) -> Option<(String, Vec<u64>)> {
    match d {
        Down::Batch {
            room,
            epoch,
            offsets,
            payloads,
            ..
        } => {
            assert_eq!(*epoch, EPOCH);
            for (o, p) in offsets.iter().zip(payloads) {
                assert_eq!(*p, payload(*o), "payload at {o}");
            }
            Some((room.clone(), offsets.clone()))
        }
        _ => None,
    }
}

fn close_code(out: &[Down]) -> Option<CloseCode> {
    match out {
        [Down::Close { code, .. }] => Some(*code),
        _ => None,
    }
}

// ---- handshake

#[test]
fn hello_with_version_zero_is_closed_unsupported() {
    let mut h = Harness::new(ServerConfig::new(), history());
    h.hello_with(0, 64 * 1024, 50, &[("agents", None)]);
    assert_eq!(h.take_events(), [], "the application is not asked");
    assert_eq!(close_code(&h.drain()), Some(CloseCode::UNSUPPORTED_VERSION));
    assert_eq!(
        h.session.poll_action(),
        Some(CloseCode::UNSUPPORTED_VERSION)
    );
    assert_eq!(h.session.state(), SessionState::Closed);
}

#[test]
fn a_first_frame_other_than_hello_is_a_protocol_error() {
    let welcome = Frame::Welcome(Welcome {
        version: 1,
        session_id: 1,
        heartbeat_ms: 1000,
        max_frame: 1024,
        max_subscriptions: 1,
        publish_rate: 1,
    });
    let firsts = [
        subscribe("agents", None),
        Frame::Unsubscribe(Unsubscribe { room: "agents" }),
        publish(1),
        Frame::Pong(Ping { nonce: 1 }),
        welcome,
    ];
    for first in firsts {
        let mut h = Harness::new(ServerConfig::new(), history());
        h.feed(&first);
        assert_eq!(
            close_code(&h.drain()),
            Some(CloseCode::PROTOCOL_ERROR),
            "{first:?}"
        );
        assert_eq!(h.session.poll_action(), Some(CloseCode::PROTOCOL_ERROR));
        assert_eq!(h.session.state(), SessionState::Closed);
        // A hello after that changes nothing.
        h.hello(&[]);
        assert_eq!(h.take_events(), []);
        assert_eq!(h.drain(), []);
    }
}

#[test]
fn no_hello_before_the_handshake_timeout_closes() {
    let config = ServerConfig::new().handshake_timeout(ms(2_000));
    let mut h = Harness::new(config, history());
    let start = h.now;
    h.at(start + ms(2_000) - Duration::from_micros(1));
    assert_eq!(h.drain(), []);
    assert_eq!(h.session.state(), SessionState::AwaitHello);
    h.at(start + ms(2_000));
    assert_eq!(close_code(&h.drain()), Some(CloseCode::HANDSHAKE_TIMEOUT));
    assert_eq!(h.session.poll_action(), Some(CloseCode::HANDSHAKE_TIMEOUT));
    assert_eq!(h.take_events(), [SEv::Closed(CloseCode::HANDSHAKE_TIMEOUT)]);

    // The timeout covers the application's decision too.
    let mut h = Harness::new(config, history());
    let start = h.now;
    h.advance(ms(500));
    h.hello(&[]);
    h.at(start + ms(2_000));
    assert_eq!(close_code(&h.drain()), Some(CloseCode::HANDSHAKE_TIMEOUT));
    assert_eq!(
        h.session.accept(h.now, &mut |_| {}),
        Err(DecisionError::WrongState)
    );
}

#[test]
fn authenticate_carries_identity_and_reject_closes_with_the_code() {
    let mut h = Harness::new(ServerConfig::new(), history());
    h.hello(&[("agents", None)]);
    assert_eq!(
        h.take_events(),
        [SEv::Authenticate {
            client_id: 4242,
            token: Some("tok.en".into())
        }]
    );
    assert_eq!(h.session.state(), SessionState::AwaitAuth);
    h.session
        .reject(CloseCode::UNAUTHORIZED, "bad token")
        .unwrap();
    assert_eq!(
        h.drain(),
        [Down::Close {
            code: CloseCode::UNAUTHORIZED,
            retry_after_ms: None,
            reason: "bad token".into()
        }]
    );
    assert_eq!(h.session.poll_action(), Some(CloseCode::UNAUTHORIZED));
    assert_eq!(h.session.state(), SessionState::Closed);
    assert_eq!(h.take_events(), [], "no room is authorised");
}

#[test]
fn accept_sends_the_configured_limits_and_asks_about_each_hello_room() {
    let config = ServerConfig::new()
        .heartbeat(ms(2_000))
        .max_frame(8_192)
        .max_subscriptions(5)
        .publish_rate(20);
    let mut h = Harness::new(config, history());
    h.hello(&[("agents", None), ("tasks", Some(Position::new(EPOCH, 3)))]);
    h.take_events();
    h.accept();
    assert_eq!(
        h.take_events(),
        [
            SEv::Authorize("agents".into()),
            SEv::Authorize("tasks".into())
        ]
    );
    assert_eq!(
        h.drain(),
        [Down::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            session_id: SESSION_ID,
            heartbeat_ms: 2_000,
            max_frame: 8_192,
            max_subscriptions: 5,
            publish_rate: 20,
        })]
    );
    assert_eq!(h.session.state(), SessionState::Open);
}

// ---- joins

#[test]
fn denied_rooms_get_forbidden_room_errors() {
    let mut h = Harness::new(ServerConfig::new(), history());
    h.hello(&[("agents", None), ("secret", None)]);
    h.take_events();
    h.accept();
    h.take_events();
    h.session.allow(&h.hub, "agents").unwrap();
    h.session.deny("secret").unwrap();
    let out = h.drain();
    assert_eq!(
        out[1..],
        [
            Down::Subscribed("agents".into(), Position::new(EPOCH, 0)),
            Down::Error {
                code: ErrorCode::FORBIDDEN_ROOM,
                id: None,
                room: Some("secret".into()),
                retry_after_ms: None
            }
        ]
    );
    // The same for a subscribe after the welcome.
    h.feed(&subscribe("vault", None));
    assert_eq!(h.take_events(), [SEv::Authorize("vault".into())]);
    h.session.deny("vault").unwrap();
    assert_eq!(
        h.drain(),
        [Down::Error {
            code: ErrorCode::FORBIDDEN_ROOM,
            id: None,
            room: Some("vault".into()),
            retry_after_ms: None
        }]
    );
    let held: Vec<&str> = h.session.subscriptions().map(|(r, _)| r).collect();
    assert_eq!(held, ["agents"]);
    assert_eq!(h.session.deny("vault"), Err(DecisionError::NotPending));
}

#[test]
fn subscriptions_beyond_the_limit_are_refused() {
    let mut h = Harness::new(ServerConfig::new().max_subscriptions(2), history());
    h.open(&[("a", None), ("b", None)]);
    h.feed(&subscribe("c", None));
    assert_eq!(h.take_events(), [], "not even asked");
    assert_eq!(
        h.drain(),
        [Down::Error {
            code: ErrorCode::TOO_MANY_SUBSCRIPTIONS,
            id: None,
            room: Some("c".into()),
            retry_after_ms: None
        }]
    );
    assert_eq!(h.session.subscriptions().count(), 2);
}

#[test]
fn hello_rooms_beyond_the_limit_are_refused_after_the_welcome() {
    let mut h = Harness::new(ServerConfig::new().max_subscriptions(2), history());
    h.hello(&[("a", None), ("b", None), ("c", None)]);
    h.take_events();
    h.accept();
    assert_eq!(
        h.take_events(),
        [SEv::Authorize("a".into()), SEv::Authorize("b".into())]
    );
    let out = h.drain();
    // The welcome answers the hello: a client takes nothing else before it.
    assert!(matches!(out[0], Down::Welcome(_)), "{out:?}");
    assert_eq!(
        out[1..],
        [Down::Error {
            code: ErrorCode::TOO_MANY_SUBSCRIPTIONS,
            id: None,
            room: Some("c".into()),
            retry_after_ms: None
        }]
    );
}

#[test]
fn resubscribing_a_held_room_at_the_limit_replaces_it() {
    let mut h = Harness::new(ServerConfig::new().max_subscriptions(2), history());
    h.open(&[("a", None), ("b", None)]);
    h.emit("a");
    h.emit("a");
    assert_eq!(batches(&h.drain()), [vec![1, 2]]);

    // The client asks again for a room it holds (it left and rejoined before the unsubscribe
    // went out): the subscription is replaced, not refused for the limit.
    h.feed(&subscribe("a", Some(Position::new(EPOCH, 1))));
    assert_eq!(h.take_events(), [SEv::Authorize("a".into())]);
    h.session.allow(&h.hub, "a").unwrap();
    let out = h.drain();
    assert_eq!(
        out.first(),
        Some(&Down::Subscribed("a".into(), Position::new(EPOCH, 1))),
        "{out:?}"
    );
    assert_eq!(batches(&out), [vec![2]]);
    assert_eq!(h.session.subscriptions().count(), 2);
}

// ---- resume

#[test]
fn resume_from_a_retained_position_replays_exactly_what_follows() {
    let mut h = Harness::new(ServerConfig::new(), history());
    for _ in 0..10 {
        h.emit("agents");
    }
    let out = h.open(&[("agents", Some(Position::new(EPOCH, 4)))]);
    assert!(matches!(out[0], Down::Welcome(_)));
    assert_eq!(
        out[1],
        Down::Subscribed("agents".into(), Position::new(EPOCH, 4))
    );
    let rest: Vec<_> = out[2..].iter().map(|d| batch_parts(d).unwrap()).collect();
    assert_eq!(rest, [batch_of("agents", 5..=10)]);
}

#[test]
fn resume_from_an_evicted_position_gets_a_range_gap_then_the_history() {
    let mut h = Harness::new(ServerConfig::new(), history());
    for _ in 0..40 {
        h.emit("agents");
    }
    let out = h.open(&[("agents", Some(Position::new(EPOCH, 10)))]);
    assert_eq!(
        out[1..3],
        [
            Down::Subscribed("agents".into(), Position::new(EPOCH, 10)),
            Down::Gap(
                "agents".into(),
                Missed::Range {
                    epoch: EPOCH,
                    first: 11,
                    last: 24
                }
            )
        ]
    );
    let rest: Vec<_> = out[3..].iter().map(|d| batch_parts(d).unwrap()).collect();
    assert_eq!(rest, [batch_of("agents", 25..=40)]);
}

#[test]
fn resume_from_another_epoch_gets_a_reset() {
    let mut h = Harness::new(ServerConfig::new(), history());
    for _ in 0..20 {
        h.emit("agents");
    }
    let stale = Position::new(EPOCH - 4, 99);
    let out = h.open(&[("agents", Some(stale))]);
    assert_eq!(
        out[1..3],
        [
            Down::Subscribed("agents".into(), stale),
            // Delivery continues from the oldest event still held.
            Down::Gap(
                "agents".into(),
                Missed::Reset {
                    position: Position::new(EPOCH, 4)
                }
            )
        ]
    );
    let rest: Vec<_> = out[3..].iter().map(|d| batch_parts(d).unwrap()).collect();
    assert_eq!(rest, [batch_of("agents", 5..=20)]);
}

#[test]
fn a_fresh_subscription_starts_at_the_head() {
    let mut h = Harness::new(ServerConfig::new(), history());
    for _ in 0..5 {
        h.emit("agents");
    }
    let out = h.open(&[]);
    assert!(matches!(out[..], [Down::Welcome(_)]));
    h.feed(&subscribe("agents", None));
    h.allow_all();
    assert_eq!(
        h.drain(),
        [Down::Subscribed("agents".into(), Position::new(EPOCH, 5))]
    );
    h.emit("agents");
    let out = h.drain();
    let got: Vec<_> = out.iter().map(|d| batch_parts(d).unwrap()).collect();
    assert_eq!(got, [batch_of("agents", [6])]);
}

// ---- batching

#[test]
fn on_an_idle_link_an_event_goes_out_at_once() {
    let mut h = Harness::new(ServerConfig::new(), history());
    h.open(&[("agents", None)]);
    h.emit("agents");
    assert_eq!(batches(&h.drain()), [vec![1]]);
    // After a quiet batch interval, the next one goes at once too.
    h.advance(ms(100));
    h.emit("agents");
    assert_eq!(batches(&h.drain()), [vec![2]]);
}

#[test]
fn under_load_the_next_batch_waits_for_the_batch_interval() {
    let config = ServerConfig::new().intervals(ms(100), ms(500));
    let mut h = Harness::new(config, history());
    h.open(&[("agents", None)]);
    let first = h.now;
    h.emit("agents");
    assert_eq!(batches(&h.drain()), [vec![1]]);

    h.advance(ms(10));
    h.emit("agents");
    h.advance(ms(10));
    h.emit("agents");
    assert_eq!(h.drain(), []);
    assert_eq!(h.session.poll_timeout(), Some(first + ms(100)));
    h.at(first + ms(100) - Duration::from_micros(1));
    assert_eq!(h.drain(), []);
    h.at(first + ms(100));
    assert_eq!(batches(&h.drain()), [vec![2, 3]]);
}

#[test]
fn max_batch_waiting_events_go_out_before_the_interval() {
    let mut h = Harness::new(ServerConfig::new(), history());
    // The client asks for at most 4 events a batch.
    h.open_with(64 * 1024, 4, &[("agents", None)]);
    h.emit("agents");
    assert_eq!(batches(&h.drain()), [vec![1]]);
    h.advance(ms(10));
    for _ in 0..3 {
        h.emit("agents");
    }
    assert_eq!(h.drain(), []);
    h.emit("agents");
    assert!(h.session.poll_timeout().is_some_and(|t| t <= h.now));
    assert_eq!(batches(&h.drain()), [vec![2, 3, 4, 5]]);
}

#[test]
fn keyed_events_wait_for_the_metrics_interval() {
    let config = ServerConfig::new().intervals(ms(100), ms(500));
    let mut h = Harness::new(config, history());
    h.open(&[("agents", None)]);
    let first = h.now;
    h.emit_keyed("agents", "metrics:a1", b"1");
    assert_eq!(batches(&h.drain()), [vec![1]]);

    h.advance(ms(10));
    h.emit_keyed("agents", "metrics:a2", b"2");
    assert_eq!(h.session.poll_timeout(), Some(first + ms(500)));
    h.at(first + ms(500) - Duration::from_micros(1));
    assert_eq!(h.drain(), []);
    h.at(first + ms(500));
    assert_eq!(batches(&h.drain()), [vec![2]]);
}

#[test]
fn batches_respect_the_clients_max_batch_and_the_negotiated_frame_limit() {
    // (server max_frame, client max_frame, client max_batch, payload size)
    for (server_frame, client_frame, client_batch, size) in [
        (64 * 1024, 300u32, 5u16, 4usize),
        (64 * 1024, 300, 5, 80),
        (512, 64 * 1024, 50, 100),
    ] {
        let config = ServerConfig::new().max_frame(server_frame);
        let history = HistoryConfig::new().max_events(64).max_bytes(64 * 1024);
        let mut h = Harness::new(config, history);
        h.open_with(client_frame, client_batch, &[("agents", None)]);
        let body = vec![b'x'; size];
        for _ in 0..23 {
            h.hub
                .emit(h.now, "agents", "agent.status", &body, None)
                .unwrap();
        }
        let out = h.flush_all();
        let limit = server_frame.min(client_frame) as usize;
        let mut offsets: Vec<u64> = Vec::new();
        let mut largest = 0;
        for d in &out {
            if let Down::Batch {
                offsets: o, size, ..
            } = d
            {
                assert!(o.len() <= client_batch as usize, "{} events", o.len());
                assert!(*size <= limit, "a frame of {size} bytes over {limit}");
                largest = largest.max(o.len());
                offsets.extend(o);
            }
        }
        assert_eq!(offsets, (1..=23).collect::<Vec<u64>>());
        assert!(largest > 1, "the limits should still allow batching");
    }
}

#[test]
fn coalescing_sends_only_the_latest_of_a_key() {
    let config = ServerConfig::new().intervals(ms(100), ms(500));
    let mut h = Harness::new(config, history());
    h.open(&[("agents", None)]);
    let first = h.now;
    h.emit_keyed("agents", "metrics:a1", b"v0");
    assert_eq!(batches(&h.drain()), [vec![1]]);

    for i in 1..=10 {
        h.advance(ms(10));
        h.emit_keyed("agents", "metrics:a1", format!("v{i}").as_bytes());
        assert_eq!(h.drain(), [], "sent while the subscriber waits");
    }
    h.at(first + ms(500));
    let out = h.drain();
    let [Down::Batch {
        offsets, payloads, ..
    }] = &out[..]
    else {
        panic!("{out:?}");
    };
    assert_eq!(offsets, &[11]);
    assert_eq!(payloads, &[b"v10".to_vec()]);
    assert!(!h.behind());
}

// ---- link quality

#[test]
fn unanswered_pings_make_the_link_poor_and_batches_sparser() {
    let config = ServerConfig::new()
        .heartbeat(ms(1_000))
        .intervals(ms(100), ms(500));
    let mut h = Harness::new(config, history());
    h.open(&[("agents", None)]);
    let opened = h.now;

    // The session pings every heartbeat; the client never answers.
    h.at(opened + ms(1_000));
    assert!(matches!(h.drain()[..], [Down::Ping(_)]));
    assert_eq!(h.session.quality(), Quality::Good);
    h.at(opened + ms(2_000));
    assert!(matches!(h.drain()[..], [Down::Ping(_)]));
    assert_eq!(h.session.quality(), Quality::Degraded);

    // Degraded: the interval doubles.
    h.at(opened + ms(2_100));
    h.emit("agents");
    assert_eq!(batches(&h.drain()), [vec![1]]);
    h.advance(ms(50));
    h.emit("agents");
    assert_eq!(h.session.poll_timeout(), Some(opened + ms(2_100) + ms(200)));
    h.at(opened + ms(2_300));
    assert_eq!(batches(&h.drain()), [vec![2]]);

    // The client is alive (it pings), just not answering: the link is not dead.
    h.at(opened + ms(2_500));
    h.feed(&ping(1));
    assert_eq!(h.drain(), [Down::Pong(1)]);
    h.at(opened + ms(3_000));
    assert_eq!(h.session.state(), SessionState::Open);
    assert!(matches!(h.drain()[..], [Down::Ping(_)]));
    assert_eq!(h.session.quality(), Quality::Poor);
    let events = h.take_events();
    assert_eq!(
        events,
        [SEv::Quality(Quality::Degraded), SEv::Quality(Quality::Poor)]
    );

    // Poor: a quiet link still sends at once, but a busy one waits 4 intervals.
    h.at(opened + ms(3_100));
    h.emit("agents");
    assert_eq!(batches(&h.drain()), [vec![3]]);
    h.advance(ms(50));
    h.emit("agents");
    let due = opened + ms(3_100) + ms(400);
    assert_eq!(h.session.poll_timeout(), Some(due));
    h.at(due - Duration::from_micros(1));
    assert_eq!(h.drain(), []);
    h.at(due);
    assert_eq!(batches(&h.drain()), [vec![4]]);
}

// ---- slow consumers

#[test]
fn a_slow_consumer_gets_a_gap_for_exactly_what_was_evicted() {
    for (max_events, max_bytes, size) in [(16usize, 4096usize, 8usize), (64, 1024, 100)] {
        let history = HistoryConfig::new()
            .max_events(max_events)
            .max_bytes(max_bytes);
        let mut h = Harness::new(ServerConfig::new(), history);
        h.open(&[("agents", None)]);
        let body = vec![b'y'; size];
        let room = h.hub.ensure_room("agents").unwrap();
        // The subscriber does not read while three histories' worth is emitted.
        for _ in 0..3 * max_events.min(max_bytes / size) {
            room.emit(h.now, "agent.status", &body, None).unwrap();
            room.read(|log| assert!(log.len() <= max_events && log.bytes() <= max_bytes));
        }
        let (oldest, head) = room.read(|log| (log.oldest(), log.head().offset));
        assert!(oldest > 1);
        if max_events == 16 {
            assert_eq!((oldest, head), (33, 48));
        }

        let out = h.drain();
        assert_eq!(
            out[0],
            Down::Gap(
                "agents".into(),
                Missed::Range {
                    epoch: EPOCH,
                    first: 1,
                    last: oldest - 1
                }
            )
        );
        let sent: Vec<u64> = batches(&out[1..]).concat();
        assert_eq!(sent, (oldest..=head).collect::<Vec<_>>());
        assert_eq!(batches(&out[1..]).len(), out.len() - 1);
    }
}

// ---- publishes

#[test]
fn publish_is_appended_once_and_a_retry_gets_the_same_ack() {
    let mut h = Harness::new(ServerConfig::new(), history());
    h.open(&[]);
    h.feed(&publish(1));
    let at = Position::new(EPOCH, 1);
    assert_eq!(
        h.take_events(),
        [SEv::Published {
            room: "cmd".into(),
            position: at,
            payload: b"{\"go\":1}".to_vec()
        }]
    );
    assert_eq!(h.drain(), [Down::Ack(1, at)]);
    assert_eq!(h.head("cmd"), Some(at));

    h.emit("cmd");
    h.feed(&publish(1));
    assert_eq!(h.take_events(), [], "not applied again");
    assert_eq!(h.drain(), [Down::Ack(1, at)]);
    assert_eq!(h.head("cmd"), Some(Position::new(EPOCH, 2)));
    assert_eq!(h.session.stats().duplicates, 1);
    assert_eq!(h.session.stats().publishes, 1);
}

/// A session writes only where it was granted: a publish elsewhere gets `FORBIDDEN_ROOM` with its
/// id, is counted, and never reaches the room or the deduplication window; a retry is refused
/// again. Before grants existed every publish was appended.
#[test]
fn publishes_outside_the_grants_are_refused_and_never_appended() {
    let mut h = Harness::new(ServerConfig::new(), history());
    let grants = Grants::publish_to(["tasks", "agent:*"]).unwrap();
    h.session.grant(grants.create_rooms(["agent:*"]).unwrap());
    h.hub.ensure_room("tasks").unwrap();
    h.open(&[]);
    let into = |room: &'static str, id: u64| {
        Frame::Publish(Publish {
            room,
            id,
            kind: "task.create",
            payload: Payload(b"{\"go\":1}"),
        })
    };
    for (id, room) in [(1, "cmd"), (2, "agent"), (1, "cmd")] {
        h.feed(&into(room, id));
        assert_eq!(
            h.drain(),
            [Down::Error {
                code: ErrorCode::FORBIDDEN_ROOM,
                id: Some(id),
                room: Some(room.into()),
                retry_after_ms: None,
            }],
            "publish {id} into {room}"
        );
        assert_eq!(h.head(room), None, "{room} was written");
    }
    assert_eq!(
        h.take_events(),
        [
            SEv::Refused("cmd".into(), 1),
            SEv::Refused("agent".into(), 2),
            SEv::Refused("cmd".into(), 1)
        ],
        "refusals are reported, nothing else"
    );
    assert_eq!(h.session.stats().refused, 3);
    h.feed(&into("tasks", 3));
    h.feed(&into("agent:7", 4));
    let acks: Vec<_> = h.drain();
    assert!(
        matches!(acks[..], [Down::Ack(3, _), Down::Ack(4, _)]),
        "{acks:?}"
    );
    assert_eq!(h.session.stats().publishes, 2);

    let mut none = Harness::new(ServerConfig::new(), history());
    none.session.grant(Grants::none());
    none.open(&[]);
    none.feed(&publish(1));
    assert!(matches!(
        none.drain()[..],
        [Down::Error {
            code: ErrorCode::FORBIDDEN_ROOM,
            id: Some(1),
            ..
        }]
    ));
}

/// Clients do not create rooms unless granted: a join or a publish naming a room the application
/// neither emitted to nor declared gets `NO_SUCH_ROOM` (the publish with its id, counted and
/// reported), and no room comes into being; once declared, the same join succeeds. A grant to
/// create covers only its rooms. Before this, any subscribe created a room.
#[test]
fn rooms_nobody_created_are_refused_unless_granted() {
    let mut h = Harness::new(ServerConfig::new(), history());
    h.session.grant(Grants::publish_any());
    h.open(&[]);
    let no_such = |id, room: &str| Down::Error {
        code: ErrorCode::NO_SUCH_ROOM,
        id,
        room: Some(room.into()),
        retry_after_ms: None,
    };
    h.feed(&subscribe("ghost", None));
    h.allow_all();
    assert_eq!(h.drain(), [no_such(None, "ghost")]);
    h.feed(&Frame::Publish(Publish {
        room: "ghost",
        id: 1,
        kind: "note",
        payload: Payload(b"{}"),
    }));
    assert_eq!(h.drain(), [no_such(Some(1), "ghost")]);
    assert_eq!(h.take_events(), [SEv::Refused("ghost".into(), 1)]);
    assert_eq!(h.session.stats().refused, 1);
    assert!(
        h.hub.room("ghost").is_none(),
        "a refused client created a room"
    );

    h.hub.ensure_room("ghost").unwrap();
    h.feed(&subscribe("ghost", None));
    h.allow_all();
    assert_eq!(
        h.drain(),
        [Down::Subscribed("ghost".into(), Position::new(EPOCH, 0))]
    );

    let mut c = Harness::new(ServerConfig::new(), history());
    c.session
        .grant(Grants::none().create_rooms(["scratch:*"]).unwrap());
    c.open(&[]);
    c.feed(&subscribe("scratch:1", None));
    c.feed(&subscribe("other", None));
    c.allow_all();
    assert_eq!(
        c.drain(),
        [
            Down::Subscribed("scratch:1".into(), Position::new(EPOCH, 0)),
            no_such(None, "other")
        ]
    );
    assert!(c.hub.room("scratch:1").is_some() && c.hub.room("other").is_none());
}

#[test]
fn grants_name_rooms_or_prefixes_and_nothing_else() {
    assert!(Grants::publish_to(["ok", "bad/room"]).is_err());
    assert!(
        Grants::publish_to(["*"]).is_err(),
        "an empty prefix is not a room name"
    );
    assert!(Grants::publish_to((0..33).map(|i| format!("r{i}"))).is_err());
    let g = Grants::publish_to(["tasks", "agent:*"]).unwrap();
    assert!(g.may_publish("tasks") && g.may_publish("agent:7") && g.may_publish("agent:"));
    assert!(!g.may_publish("task") && !g.may_publish("tasks2") && !g.may_publish("agents"));
    assert!(Grants::publish_any().may_publish("anything"));
    assert!(
        !Grants::default().may_publish("tasks") && !Grants::publish_any().may_create("tasks"),
        "nothing unless granted"
    );
    let c = Grants::none().create_rooms(["scratch:*"]).unwrap();
    assert!(c.may_create("scratch:1") && !c.may_create("scratch") && !c.may_publish("scratch:1"));
    assert!(Grants::none().create_any().may_create("anything"));
    assert!(Grants::none().create_rooms(["bad/room"]).is_err());
}

#[test]
fn publishes_over_the_rate_are_refused_with_a_retry_time() {
    let mut h = Harness::new(ServerConfig::new().publish_rate(5), history());
    h.open(&[]);
    for id in 1..=5 {
        h.feed(&publish(id));
    }
    h.feed(&publish(6));
    let out = h.drain();
    assert_eq!(out.len(), 6);
    assert!(out[..5].iter().all(|d| matches!(d, Down::Ack(..))));
    assert_eq!(
        out[5],
        Down::Error {
            code: ErrorCode::RATE_LIMITED,
            id: Some(6),
            room: None,
            retry_after_ms: Some(200)
        }
    );
    assert_eq!(h.head("cmd"), Some(Position::new(EPOCH, 5)));

    // Retried after the hint, it is applied.
    h.advance(ms(200));
    h.feed(&publish(6));
    assert_eq!(h.drain(), [Down::Ack(6, Position::new(EPOCH, 6))]);
}

#[test]
fn repeated_rate_violations_close_the_connection() {
    let mut config = ServerConfig::new().publish_rate(1);
    config.rate_strikes = 3;
    let mut h = Harness::new(config, history());
    h.open(&[]);
    h.feed(&publish(1));
    assert!(matches!(h.drain()[..], [Down::Ack(1, _)]));
    for id in 2..=4 {
        h.feed(&publish(id));
        let out = h.drain();
        assert!(
            matches!(
                out[..],
                [Down::Error {
                    code: ErrorCode::RATE_LIMITED,
                    ..
                }]
            ),
            "strike {id}: {out:?}"
        );
        assert_eq!(h.session.state(), SessionState::Open);
    }
    h.feed(&publish(5));
    let out = h.drain();
    assert!(
        matches!(
            out[..],
            [Down::Close {
                code: CloseCode::RATE_LIMITED,
                retry_after_ms: Some(_),
                ..
            }]
        ),
        "{out:?}"
    );
    assert_eq!(h.session.poll_action(), Some(CloseCode::RATE_LIMITED));
    assert_eq!(h.session.state(), SessionState::Closed);
}

#[test]
fn application_mode_hands_publishes_over_and_forwards_its_answer() {
    let config = ServerConfig::new().publish_mode(PublishMode::Application);
    let mut h = Harness::new(config, history());
    h.open(&[]);
    h.feed(&publish(1));
    assert_eq!(
        h.take_events(),
        [SEv::Publish {
            room: "cmd".into(),
            id: 1,
            payload: b"{\"go\":1}".to_vec()
        }]
    );
    assert_eq!(h.drain(), [], "nothing until the application answers");
    assert_eq!(h.head("cmd"), None, "the session appends nothing itself");

    h.session
        .publish_done(&h.hub, h.now, 1, Err(ErrorCode::PUBLISH_REJECTED))
        .unwrap();
    assert_eq!(
        h.drain(),
        [Down::Error {
            code: ErrorCode::PUBLISH_REJECTED,
            id: Some(1),
            room: None,
            retry_after_ms: None
        }]
    );
    assert_eq!(
        h.session
            .publish_done(&h.hub, h.now, 1, Err(ErrorCode::PUBLISH_REJECTED)),
        Err(DecisionError::NotPending)
    );

    // An accepted one is acknowledged where the application put it, and only once applied.
    h.feed(&publish(2));
    h.feed(&publish(2));
    assert_eq!(
        h.take_events().len(),
        1,
        "a retry while pending is not raised"
    );
    let at = Position::new(EPOCH, 3);
    h.session.publish_done(&h.hub, h.now, 2, Ok(at)).unwrap();
    assert_eq!(h.drain(), [Down::Ack(2, at)]);
    h.feed(&publish(2));
    assert_eq!(h.take_events(), []);
    assert_eq!(h.drain(), [Down::Ack(2, at)]);
}

// ---- control frames

#[test]
fn a_ping_gets_a_pong_with_its_nonce() {
    let mut h = Harness::new(ServerConfig::new(), history());
    h.open(&[]);
    h.feed(&ping(1 << 40));
    assert_eq!(h.drain(), [Down::Pong(1 << 40)]);
}

#[test]
fn a_client_close_ends_the_session() {
    let mut h = Harness::new(ServerConfig::new(), history());
    h.open(&[("agents", None)]);
    h.feed(&Frame::Close(Close {
        code: CloseCode::NORMAL,
        retry_after_ms: None,
        reason: "bye",
    }));
    assert_eq!(h.take_events(), [SEv::Closed(CloseCode::NORMAL)]);
    assert_eq!(h.session.poll_action(), Some(CloseCode::NORMAL));
    assert_eq!(h.session.state(), SessionState::Closed);
    // Nothing more is read or sent.
    h.emit("agents");
    h.feed(&ping(3));
    assert_eq!(h.drain(), []);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.drain(), []);
    assert_eq!(h.take_events(), []);
    assert_eq!(h.session.poll_action(), None);
}

#[test]
fn the_control_queue_is_bounded() {
    let mut h = Harness::new(ServerConfig::new(), history());
    h.open(&[]);
    for nonce in 1..=CONTROL_CAPACITY as u64 {
        h.feed(&ping(nonce));
        assert!(h.session.queued() <= CONTROL_CAPACITY);
        assert_eq!(h.session.state(), SessionState::Open, "ping {nonce}");
    }
    assert_eq!(h.session.queued(), CONTROL_CAPACITY);
    h.feed(&ping(0));
    assert_eq!(h.session.state(), SessionState::Closed);
    assert!(h.session.queued() <= CONTROL_CAPACITY);
    assert_eq!(close_code(&h.drain()), Some(CloseCode::POLICY_VIOLATION));
    assert_eq!(h.session.poll_action(), Some(CloseCode::POLICY_VIOLATION));
}

// ---- with a real client on the other end

/// A client machine connected to the harness's session; frames cross both ways until quiet.
struct Pair {
    client: Client,
    server: Harness,
    seen: Vec<String>,
    actions: Vec<Action>,
    sent: Vec<String>,
}

impl Pair {
    fn new(server: Harness, rooms: &[&str]) -> Pair {
        let mut client: Client = Client::new(ClientConfig::new(5), 3);
        for room in rooms {
            client.subscribe(room).unwrap();
        }
        let mut pair = Pair {
            client,
            server,
            seen: Vec::new(),
            actions: Vec::new(),
            sent: Vec::new(),
        };
        let now = pair.server.now;
        let seen = &mut pair.seen;
        pair.client
            .connect(now, &mut |e| seen.push(format!("{e:?}")));
        pair.client
            .handle_connected(now, &mut |e| seen.push(format!("{e:?}")));
        pair.shuttle();
        pair
    }

    /// Moves frames until neither side has anything to send; the application accepts the
    /// hello and every join.
    fn shuttle(&mut self) {
        let now = self.server.now;
        for _ in 0..100 {
            let mut moved = false;
            while let Some(frame) = self.client.poll_transmit(now) {
                let mut bytes = Vec::new();
                binary::encode_into(&frame, &mut bytes).unwrap();
                self.sent.push(format!("{frame:?}"));
                self.server.feed_bytes(&bytes);
                moved = true;
            }
            self.actions
                .extend(std::iter::from_fn(|| self.client.poll_action()));
            for e in self.server.take_events() {
                match e {
                    SEv::Authenticate { .. } => self.server.accept(),
                    SEv::Authorize(room) => {
                        // Refused only if the session ended meanwhile; the test checks that.
                        let _ = self.server.session.allow(&self.server.hub, &room);
                    }
                    _ => {}
                }
                moved = true;
            }
            for bytes in self.server.drain_bytes() {
                let frame = binary::decode(&bytes, DECODE_LIMIT).unwrap();
                let seen = &mut self.seen;
                self.client
                    .handle_frame(now, &frame, &mut |e: ClientEvent<'_>| {
                        seen.push(format!("{e:?}"))
                    });
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the pair never went quiet");
    }
}

#[test]
fn a_client_holding_more_rooms_than_allowed_opens_and_learns_which_were_refused() {
    let server = Harness::new(ServerConfig::new().max_subscriptions(2), history());
    let pair = Pair::new(server, &["a", "b", "c"]);
    assert_eq!(pair.client.state(), ConnState::Open, "{:?}", pair.seen);
    assert_eq!(pair.actions, [Action::Connect], "{:?}", pair.sent);
    assert!(
        pair.seen
            .iter()
            .any(|e| e.contains("SubscribeFailed") && e.contains("\"c\"")),
        "{:?}",
        pair.seen
    );
    let rooms: Vec<&str> = pair.client.rooms().map(|(r, _)| r).collect();
    assert_eq!(rooms, ["a", "b"]);
}

#[test]
fn a_client_rejoining_a_room_at_the_limit_keeps_receiving_it() {
    let server = Harness::new(ServerConfig::new().max_subscriptions(2), history());
    let mut pair = Pair::new(server, &["a", "b"]);
    assert_eq!(pair.client.state(), ConnState::Open);
    pair.server.emit("a");
    pair.shuttle();
    // Leave and rejoin before the unsubscribe goes out: the client asks for the room again.
    assert!(pair.client.unsubscribe("a"));
    pair.client.subscribe("a").unwrap();
    pair.shuttle();
    assert!(
        !pair.seen.iter().any(|e| e.contains("SubscribeFailed")),
        "{:?}",
        pair.seen
    );
    pair.server.emit("a");
    pair.seen.clear();
    pair.shuttle();
    assert_eq!(pair.client.position("a"), Some(Position::new(EPOCH, 2)));
    assert!(
        pair.seen.iter().any(|e| e.contains("Event")),
        "{:?}",
        pair.seen
    );
}

#[test]
fn an_event_larger_than_the_peers_frame_limit_is_announced_as_missed() {
    let history = HistoryConfig::new().max_events(64).max_bytes(64 * 1024);
    let mut h = Harness::new(ServerConfig::new(), history);
    h.open_with(1024, 50, &[("agents", None)]);
    h.hub
        .emit(h.now, "agents", "agent.status", &[b'x'; 4000], None)
        .unwrap();
    h.hub
        .emit(h.now, "agents", "agent.status", b"1", None)
        .unwrap();
    let out = h.flush_all();
    let gaps: Vec<&Down> = out.iter().filter(|d| matches!(d, Down::Gap(..))).collect();
    assert!(
        matches!(gaps.as_slice(), [Down::Gap(room, Missed::Range { first: 1, last: 1, .. })] if room == "agents"),
        "{out:?}"
    );
    assert_eq!(batches(&out), vec![vec![2]]);
    for d in &out {
        if let Down::Batch { size, .. } = d {
            assert!(*size <= 1024);
        }
    }
}

// ---- JSON peers

/// Emits the same events into `h`'s hub: JSON payloads of `size` bytes, some coalesced, and
/// `raw` (not JSON text) at the offsets listed.
fn emit_mixed(h: &mut Harness, n: u64, size: usize, raw: &[u64]) {
    for i in 1..=n {
        let payload = if raw.contains(&i) {
            format!("raw {i}").into_bytes()
        } else {
            format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(size)).into_bytes()
        };
        let key = (i % 3 == 0).then(|| format!("m{}", i % 2));
        h.hub
            .emit(h.now, "agents", "agent.metrics", &payload, key.as_deref())
            .unwrap();
    }
}

/// Events (offset, payload) and gaps (first, last) in the JSON messages.
/// Events as (offset, payload) and range gaps as (first, last), in order.
type Received = (Vec<(u64, Vec<u8>)>, Vec<(u64, u64)>);

fn json_contents(messages: &[Vec<u8>], limit: usize) -> Received {
    let (mut events, mut gaps) = (Vec::new(), Vec::new());
    for m in messages {
        assert!(
            m.len() <= limit,
            "a message of {} bytes over {limit}",
            m.len()
        );
        match json::decode(m, DECODE_LIMIT).expect("valid JSON frames") {
            Frame::Batch(b) => {
                for e in b.events.iter() {
                    events.push((e.offset, e.payload.0.to_vec()));
                }
            }
            Frame::Gap(g) => match g.missed {
                Missed::Range { first, last, .. } => gaps.push((first, last)),
                other => panic!("unexpected {other:?}"),
            },
            _ => {}
        }
    }
    (events, gaps)
}

#[test]
fn json_batches_copied_from_the_log_are_the_bytes_transcoding_gives() {
    // (client frame limit, payload padding): the limit binds in the second case only.
    for (client_frame, size) in [(64 * 1024, 20usize), (400, 60), (64 * 1024, 900)] {
        let history = HistoryConfig::new().max_events(64).max_bytes(256 * 1024);
        let mut copied = Harness::new(ServerConfig::new(), history);
        let mut transcoded = Harness::new(ServerConfig::new(), history.json_form(false));
        for h in [&mut copied, &mut transcoded] {
            h.session.set_codec(Codec::Json);
            emit_mixed(h, 40, size, &[]);
            h.open_unsent(client_frame, &[("agents", Some(Position::new(EPOCH, 0)))]);
        }
        let copied = copied.flush_all_json();
        let transcoded = transcoded.flush_all_json();
        // Coalescing leaves the latest of each key and every unkeyed event; every message
        // keeps to the limit (json_contents checks).
        let expected: Vec<u64> = (1..=40)
            .filter(|i| i % 3 != 0 || *i == 36 || *i == 39)
            .collect();
        for messages in [&copied, &transcoded] {
            let (events, gaps) = json_contents(messages, client_frame as usize);
            assert!(gaps.is_empty());
            let offsets: Vec<u64> = events.iter().map(|e| e.0).collect();
            assert_eq!(offsets, expected, "frame {client_frame}, payload {size}");
        }
        if client_frame > 1000 {
            assert_eq!(copied, transcoded, "payload {size}");
        } else {
            // Transcoding can only budget with an upper bound of the JSON sizes.
            assert!(copied.len() <= transcoded.len());
        }
    }
}

#[test]
fn json_peers_hear_of_events_without_a_json_form_as_gaps() {
    // With JSON forms kept, and without (the batches are then transcoded).
    for json_form in [true, false] {
        json_peer_gaps(json_form);
    }
}

fn json_peer_gaps(json_form: bool) {
    let history = HistoryConfig::new()
        .max_events(64)
        .max_bytes(64 * 1024)
        .json_form(json_form);
    let mut json_peer = Harness::new(ServerConfig::new(), history);
    json_peer.session.set_codec(Codec::Json);
    let mut binary_peer = Harness::new(ServerConfig::new(), history);
    for h in [&mut json_peer, &mut binary_peer] {
        emit_mixed(h, 10, 8, &[2, 5, 7]);
        h.open_unsent(64 * 1024, &[("agents", Some(Position::new(EPOCH, 0)))]);
    }
    let (events, gaps) = json_contents(&json_peer.flush_all_json(), 64 * 1024);
    let offsets: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(offsets, [1, 4, 6, 8, 9, 10]);
    // Offset 3 was superseded; 2, 5 and 7 cannot be given in JSON and are announced.
    assert_eq!(gaps, [(2, 2), (5, 5), (7, 7)]);
    // A binary peer gets the raw events.
    let offsets: Vec<u64> = binary_peer
        .flush_all()
        .iter()
        .flat_map(|d| match d {
            Down::Batch { offsets, .. } => offsets.clone(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(offsets, [1, 2, 4, 5, 6, 7, 8, 9, 10]);
}

/// PROTOCOL.md section 3: a second hello on an open session is the one frame in the wrong state
/// answered with an error (`UNEXPECTED_FRAME`) rather than a close; the connection stays open.
#[test]
fn a_second_hello_is_an_error_not_a_close() {
    let mut h = Harness::new(ServerConfig::new(), history());
    h.open(&[]);
    h.hello(&[]);
    assert_eq!(
        h.drain(),
        [Down::Error {
            code: ErrorCode::UNEXPECTED_FRAME,
            id: None,
            room: None,
            retry_after_ms: None,
        }]
    );
    assert_eq!(h.session.poll_action(), None);
    assert_eq!(h.session.state(), SessionState::Open);
}
