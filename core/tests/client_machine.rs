//! Behaviour of the client state machine, driven with hand-made server frames.
//!
//! Every frame crosses the "wire": it is encoded with the binary codec and decoded again, in both
//! directions, so what the client sends is checked as a server would read it.

use std::time::Duration;

use eventwire_core::backoff::{BackoffPolicy, Jitter};
use eventwire_core::client::{Action, Client, ClientConfig, ClientError, ClientEvent, ConnState};
use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_core::codec::binary;
use eventwire_core::frame::Seq;
use eventwire_core::frame::{
    Batch, BatchEvent, Close, ErrorFrame, Event, Frame, Gap, Missed, Ping, Position, PublishAck,
    Subscribed, Welcome, PROTOCOL_VERSION,
};
use eventwire_core::outbox::OutboxError;
use eventwire_core::payload::Payload;
use eventwire_core::rtt::Quality;
use eventwire_core::time::Instant;

/// Eight rooms, an outbox of four publishes (1 KiB), so that "full" is easy to reach.
type TestClient = Client<8, 4, 1024>;

const MAX_FRAME: usize = 64 * 1024;
/// Long enough that no heartbeat fires in tests that are not about heartbeats.
const QUIET_HEARTBEAT_MS: u32 = 60_000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A predictable client: no jitter, 100 ms initial backoff doubling up to 10 s, stable after 1 s.
fn config() -> ClientConfig {
    ClientConfig::new(42)
        .backoff(
            BackoffPolicy::new()
                .initial(ms(100))
                .factor(2)
                .cap(Duration::from_secs(10))
                .jitter(Jitter::None)
                .stable_after(Duration::from_secs(1)),
        )
        .connect_timeout(Duration::from_secs(2))
        .dead_after(3)
}

/// An application event, owned.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Connecting {
        attempt: u32,
    },
    Open {
        session_id: u64,
    },
    Reconnecting {
        attempt: u32,
        delay: Duration,
        code: Option<CloseCode>,
    },
    Closed {
        code: Option<CloseCode>,
        reason: String,
    },
    Event {
        room: String,
        position: Position,
        payload: Vec<u8>,
    },
    Gap {
        room: String,
        missed: Missed,
    },
    Subscribed {
        room: String,
        position: Position,
    },
    SubscribeFailed {
        room: String,
        code: ErrorCode,
    },
    PublishAcked {
        id: u64,
        position: Position,
    },
    PublishFailed {
        id: u64,
        code: ErrorCode,
    },
    Quality(Quality),
    Other(String),
}

impl From<ClientEvent<'_>> for Ev {
    fn from(e: ClientEvent<'_>) -> Ev {
        match e {
            ClientEvent::Connecting { attempt } => Ev::Connecting { attempt },
            ClientEvent::Open { session_id } => Ev::Open { session_id },
            ClientEvent::Reconnecting {
                attempt,
                delay,
                code,
            } => Ev::Reconnecting {
                attempt,
                delay,
                code,
            },
            ClientEvent::Closed { code, reason } => Ev::Closed {
                code,
                reason: reason.to_string(),
            },
            ClientEvent::Event {
                room,
                position,
                payload,
                ..
            } => Ev::Event {
                room: room.to_string(),
                position,
                payload: payload.to_vec(),
            },
            ClientEvent::Gap { room, missed } => Ev::Gap {
                room: room.to_string(),
                missed,
            },
            ClientEvent::Subscribed { room, position } => Ev::Subscribed {
                room: room.to_string(),
                position,
            },
            ClientEvent::SubscribeFailed { room, code } => Ev::SubscribeFailed {
                room: room.to_string(),
                code,
            },
            ClientEvent::PublishAcked { id, position } => Ev::PublishAcked { id, position },
            ClientEvent::PublishFailed { id, code } => Ev::PublishFailed { id, code },
            ClientEvent::Quality(q) => Ev::Quality(q),
            other => Ev::Other(format!("{other:?}")),
        }
    }
}

/// A frame the client sent, owned, as the server decoded it.
#[derive(Debug, Clone, PartialEq)]
enum Up {
    Hello {
        version: u16,
        rooms: Vec<(String, Option<Position>)>,
    },
    Subscribe {
        room: String,
        from: Option<Position>,
    },
    Unsubscribe {
        room: String,
    },
    Publish {
        room: String,
        id: u64,
        payload: Vec<u8>,
    },
    Ping(u64),
    Pong(u64),
    Close(CloseCode),
    Other(String),
}

impl From<&Frame<'_>> for Up {
    fn from(f: &Frame<'_>) -> Up {
        match f {
            Frame::Hello(h) => Up::Hello {
                version: h.version,
                rooms: h
                    .rooms
                    .iter()
                    .map(|r| (r.room.to_string(), r.from))
                    .collect(),
            },
            Frame::Subscribe(s) => Up::Subscribe {
                room: s.room.to_string(),
                from: s.from,
            },
            Frame::Unsubscribe(u) => Up::Unsubscribe {
                room: u.room.to_string(),
            },
            Frame::Publish(p) => Up::Publish {
                room: p.room.to_string(),
                id: p.id,
                payload: p.payload.0.to_vec(),
            },
            Frame::Ping(p) => Up::Ping(p.nonce),
            Frame::Pong(p) => Up::Pong(p.nonce),
            Frame::Close(c) => Up::Close(c.code),
            other => Up::Other(format!("{other:?}")),
        }
    }
}

/// One client, its clock, and everything it produced since the last `take_*`.
struct Harness {
    client: TestClient,
    now: Instant,
    events: Vec<Ev>,
    out: Vec<Up>,
    actions: Vec<Action>,
    /// Every frame sent, as bytes, with the time it was sent (for replay comparisons).
    wire: Vec<(Instant, Vec<u8>)>,
}

impl Harness {
    fn new(config: ClientConfig) -> Self {
        Self::with_seed(config, 7)
    }

    fn with_seed(config: ClientConfig, seed: u64) -> Self {
        Harness {
            client: TestClient::new(config, seed),
            now: Instant::from_millis(1_000),
            events: Vec::new(),
            out: Vec::new(),
            actions: Vec::new(),
            wire: Vec::new(),
        }
    }

    /// What an adapter does after every input: send every frame, then act.
    fn pump(&mut self) {
        while let Some(frame) = self.client.poll_transmit(self.now) {
            let mut bytes = Vec::new();
            binary::encode_into(&frame, &mut bytes).expect("the client sends valid frames");
            let decoded = binary::decode(&bytes, MAX_FRAME).expect("a server decodes it");
            self.out.push(Up::from(&decoded));
            self.wire.push((self.now, bytes));
        }
        while let Some(action) = self.client.poll_action() {
            self.actions.push(action);
        }
    }

    fn connect(&mut self) {
        let events = &mut self.events;
        self.client
            .connect(self.now, &mut |e| events.push(e.into()));
        self.pump();
    }

    fn connected(&mut self) {
        let events = &mut self.events;
        self.client
            .handle_connected(self.now, &mut |e| events.push(e.into()));
        self.pump();
    }

    fn disconnected(&mut self) {
        let events = &mut self.events;
        self.client
            .handle_disconnected(self.now, &mut |e| events.push(e.into()));
        self.pump();
    }

    /// A server frame arrives (through the binary codec).
    fn feed(&mut self, frame: &Frame<'_>) {
        let mut bytes = Vec::new();
        binary::encode_into(frame, &mut bytes).expect("test frames are valid");
        let decoded = binary::decode(&bytes, MAX_FRAME).expect("and decode");
        let events = &mut self.events;
        self.client
            .handle_frame(self.now, &decoded, &mut |e| events.push(e.into()));
        self.pump();
    }

    /// A batch of `room` in `epoch` with the given offsets; payload `e<offset>`.
    fn feed_batch(&mut self, room: &str, epoch: u32, offsets: impl IntoIterator<Item = u64>) {
        let offsets: Vec<u64> = offsets.into_iter().collect();
        let payloads: Vec<Vec<u8>> = offsets.iter().map(|o| payload(*o)).collect();
        let events: Vec<BatchEvent<'_>> = offsets
            .iter()
            .zip(&payloads)
            .map(|(offset, p)| BatchEvent {
                offset: *offset,
                kind: "agent.status",
                payload: Payload(p),
            })
            .collect();
        self.feed(&Frame::Batch(Batch {
            room,
            epoch,
            events: Seq::from_slice(&events),
        }));
    }

    /// Moves the clock to `until`, firing every timer that falls due on the way, at its time.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..10_000 {
            match self.client.poll_timeout() {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let events = &mut self.events;
                    self.client
                        .handle_timeout(self.now, &mut |e| events.push(e.into()));
                    self.pump();
                }
                _ => {
                    self.now = self.now.max(until);
                    return;
                }
            }
        }
        panic!("timers keep firing at {}", self.now);
    }

    fn advance(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Calls `handle_timeout` whether or not anything is due (adapters may wake spuriously).
    fn poke(&mut self, d: Duration) {
        self.now = self.now + d;
        let events = &mut self.events;
        self.client
            .handle_timeout(self.now, &mut |e| events.push(e.into()));
        self.pump();
    }

    /// From `Action::Connect`: the transport opens, the hello goes out, the welcome comes back.
    /// Returns the hello.
    fn handshake(&mut self, heartbeat_ms: u32) -> Up {
        assert_eq!(self.take_actions(), [Action::Connect]);
        self.connected();
        let hello = self.take_out();
        assert!(
            matches!(hello.as_slice(), [Up::Hello { .. }]),
            "expected only a hello: {hello:?}"
        );
        self.feed(&welcome(PROTOCOL_VERSION, heartbeat_ms));
        assert_eq!(self.client.state(), ConnState::Open);
        hello.into_iter().next().unwrap()
    }

    /// Connects from `Idle` and opens a session; returns the hello.
    fn open(&mut self) -> Up {
        self.connect();
        self.handshake(QUIET_HEARTBEAT_MS)
    }

    /// Waits in `Backoff` until the client asks to connect again.
    fn until_reconnect(&mut self) {
        assert_eq!(self.client.state(), ConnState::Backoff);
        let at = self
            .client
            .poll_timeout()
            .expect("a reconnect is scheduled");
        self.run_until(at);
        assert_eq!(self.client.state(), ConnState::Connecting);
    }

    fn take_events(&mut self) -> Vec<Ev> {
        std::mem::take(&mut self.events)
    }

    fn take_out(&mut self) -> Vec<Up> {
        std::mem::take(&mut self.out)
    }

    fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    fn clear(&mut self) {
        self.take_events();
        self.take_out();
        self.take_actions();
    }
}

fn payload(offset: u64) -> Vec<u8> {
    format!("e{offset}").into_bytes()
}

fn welcome(version: u16, heartbeat_ms: u32) -> Frame<'static> {
    Frame::Welcome(Welcome {
        version,
        session_id: 77,
        heartbeat_ms,
        max_frame: 64 * 1024,
        max_subscriptions: 16,
        publish_rate: 100,
    })
}

fn subscribed(room: &str, epoch: u32, offset: u64) -> Frame<'_> {
    Frame::Subscribed(Subscribed {
        room,
        position: Position::new(epoch, offset),
    })
}

fn close(code: CloseCode, retry_after_ms: Option<u32>, reason: &str) -> Frame<'_> {
    Frame::Close(Close {
        code,
        retry_after_ms,
        reason,
    })
}

fn error<'a>(
    code: ErrorCode,
    id: Option<u64>,
    room: Option<&'a str>,
    retry_after_ms: Option<u32>,
) -> Frame<'a> {
    Frame::Error(ErrorFrame {
        code,
        id,
        room,
        retry_after_ms,
        reason: "test",
    })
}

fn ack(id: u64, position: Position) -> Frame<'static> {
    Frame::PublishAck(PublishAck { id, position })
}

/// The positions of the events delivered in `room`.
fn delivered(events: &[Ev], room: &str) -> Vec<Position> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Event {
                room: r,
                position,
                payload: p,
            } if r == room => {
                assert_eq!(*p, payload(position.offset), "payload of {position}");
                Some(*position)
            }
            _ => None,
        })
        .collect()
}

fn positions(epoch: u32, offsets: impl IntoIterator<Item = u64>) -> Vec<Position> {
    offsets
        .into_iter()
        .map(|o| Position::new(epoch, o))
        .collect()
}

fn reconnecting(events: &[Ev]) -> Vec<(u32, Duration, Option<CloseCode>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Reconnecting {
                attempt,
                delay,
                code,
            } => Some((*attempt, *delay, *code)),
            _ => None,
        })
        .collect()
}

/// Nothing happens any more, whatever the time: no connect, no frame, no timer.
fn assert_stays_closed(h: &mut Harness) {
    for step in [
        ms(1),
        ms(250),
        Duration::from_secs(30),
        Duration::from_secs(3600),
    ] {
        h.poke(step);
        h.disconnected();
    }
    h.advance(Duration::from_secs(24 * 3600));
    assert_eq!(h.client.state(), ConnState::Closed);
    assert_eq!(h.client.poll_timeout(), None);
    assert_eq!(h.take_actions(), []);
    assert_eq!(h.take_out(), []);
    assert_eq!(h.take_events(), []);
}

// ---- closes

#[test]
fn fatal_close_codes_end_in_closed_and_never_reconnect() {
    for code in [
        CloseCode::UNAUTHORIZED,
        CloseCode::UNSUPPORTED_VERSION,
        CloseCode::POLICY_VIOLATION,
        CloseCode::NORMAL,
    ] {
        // Refused during the handshake (where a bad token is refused) and closed while open.
        for while_open in [false, true] {
            let mut h = Harness::new(config());
            h.client.subscribe("agents").unwrap();
            h.connect();
            if while_open {
                h.handshake(QUIET_HEARTBEAT_MS);
            } else {
                h.take_actions();
                h.connected();
            }
            h.clear();

            h.feed(&close(code, None, "go away"));
            assert_eq!(h.client.state(), ConnState::Closed, "{code}");
            assert_eq!(
                h.take_events(),
                [Ev::Closed {
                    code: Some(code),
                    reason: "go away".into()
                }],
                "{code}"
            );
            assert_eq!(h.take_actions(), [Action::Disconnect { code }], "{code}");
            assert_stays_closed(&mut h);
            // The application cannot queue work on a closed client either.
            assert_eq!(h.client.publish("cmd", "k", b"1"), Err(ClientError::Closed));
        }
    }
}

#[test]
fn retryable_close_backs_off_at_least_retry_after_then_connects() {
    for (code, retry_after_ms) in [
        (CloseCode::GOING_AWAY, Some(5_000)),
        (CloseCode::TRY_AGAIN_LATER, Some(5_000)),
        // A code this version does not know is transient.
        (CloseCode(4999), None),
    ] {
        let mut h = Harness::new(config());
        h.open();
        h.clear();
        let closed_at = h.now;

        h.feed(&close(code, retry_after_ms, "restarting"));
        assert_eq!(h.client.state(), ConnState::Backoff, "{code}");
        assert_eq!(h.take_actions(), [Action::Disconnect { code }]);
        let events = h.take_events();
        let [(attempt, delay, got)] = reconnecting(&events)[..] else {
            panic!("{code}: {events:?}");
        };
        assert_eq!((attempt, got), (1, Some(code)));
        let floor = retry_after_ms.map_or(Duration::ZERO, |ms| Duration::from_millis(ms.into()));
        assert!(delay >= floor, "{code}: delay {delay:?} below the hint");
        assert_eq!(h.client.poll_timeout(), Some(closed_at + delay));

        h.run_until(closed_at + delay - Duration::from_micros(1));
        assert_eq!(h.take_actions(), [], "{code}: connected early");
        assert_eq!(h.client.state(), ConnState::Backoff);

        h.run_until(closed_at + delay);
        assert_eq!(h.take_actions(), [Action::Connect], "{code}");
        assert_eq!(h.take_events(), [Ev::Connecting { attempt: 1 }]);
        assert_eq!(h.client.state(), ConnState::Connecting);
    }
}

#[test]
fn welcome_with_a_newer_version_closes_unsupported_and_does_not_reconnect() {
    let mut h = Harness::new(config());
    h.connect();
    h.take_actions();
    h.connected();
    h.clear();

    h.feed(&welcome(PROTOCOL_VERSION + 1, QUIET_HEARTBEAT_MS));
    assert_eq!(h.client.state(), ConnState::Closed);
    assert_eq!(h.take_out(), [Up::Close(CloseCode::UNSUPPORTED_VERSION)]);
    assert_eq!(
        h.take_actions(),
        [Action::Disconnect {
            code: CloseCode::UNSUPPORTED_VERSION
        }]
    );
    assert_eq!(
        h.take_events(),
        [Ev::Closed {
            code: Some(CloseCode::UNSUPPORTED_VERSION),
            reason: String::new()
        }]
    );
    assert_stays_closed(&mut h);
}

// ---- liveness

#[test]
fn dead_link_closes_with_heartbeat_timeout_and_reconnects() {
    let mut h = Harness::new(config());
    h.connect();
    h.handshake(1_000);
    h.clear();
    let opened = h.now;

    // Two heartbeats pass without an answer: pings go out, the connection stays.
    h.run_until(opened + ms(3_000) - Duration::from_micros(1));
    assert_eq!(h.client.state(), ConnState::Open);
    let out = h.take_out();
    assert!(
        out.len() == 2 && out.iter().all(|f| matches!(f, Up::Ping(_))),
        "{out:?}"
    );
    assert_eq!(h.take_actions(), []);

    // dead_after (3) heartbeats of silence.
    h.run_until(opened + ms(3_000));
    assert_eq!(h.take_out(), [Up::Close(CloseCode::HEARTBEAT_TIMEOUT)]);
    assert_eq!(
        h.take_actions(),
        [Action::Disconnect {
            code: CloseCode::HEARTBEAT_TIMEOUT
        }]
    );
    assert_eq!(h.client.state(), ConnState::Backoff);
    let events = h.take_events();
    let [(1, delay, Some(CloseCode::HEARTBEAT_TIMEOUT))] = reconnecting(&events)[..] else {
        panic!("{events:?}");
    };
    assert_eq!(delay, ms(100));

    h.until_reconnect();
    assert_eq!(h.take_actions(), [Action::Connect]);
}

#[test]
fn any_frame_received_keeps_the_link_alive() {
    let mut h = Harness::new(config());
    h.connect();
    h.handshake(1_000);
    h.clear();
    let opened = h.now;

    // The server pings at 2.5 s: the client answers, and the silence starts again from there.
    h.run_until(opened + ms(2_500));
    h.take_out();
    h.feed(&Frame::Ping(Ping { nonce: 99 }));
    assert_eq!(h.take_out(), [Up::Pong(99)]);

    h.run_until(opened + ms(5_500) - Duration::from_micros(1));
    assert_eq!(h.client.state(), ConnState::Open);
    assert_eq!(h.take_actions(), []);
    h.run_until(opened + ms(5_500));
    assert_eq!(
        h.take_actions(),
        [Action::Disconnect {
            code: CloseCode::HEARTBEAT_TIMEOUT
        }]
    );
}

#[test]
fn pings_go_out_every_heartbeat_and_pongs_feed_srtt() {
    let mut h = Harness::new(config());
    h.connect();
    h.handshake(1_000);
    h.clear();
    let opened = h.now;
    assert_eq!(h.client.srtt(), None);

    h.run_until(opened + ms(1_000) - Duration::from_micros(1));
    assert_eq!(h.take_out(), []);
    h.run_until(opened + ms(1_000));
    let [Up::Ping(first)] = h.take_out()[..] else {
        panic!("no ping after one heartbeat");
    };

    // A pong with another nonce is not a measurement.
    h.run_until(opened + ms(1_010));
    h.feed(&Frame::Pong(Ping {
        nonce: first + 1000,
    }));
    assert_eq!(h.client.srtt(), None);

    h.run_until(opened + ms(1_040));
    h.feed(&Frame::Pong(Ping { nonce: first }));
    assert_eq!(h.client.srtt(), Some(ms(40)));

    h.run_until(opened + ms(2_000) - Duration::from_micros(1));
    assert_eq!(h.take_out(), []);
    h.run_until(opened + ms(2_000));
    let [Up::Ping(second)] = h.take_out()[..] else {
        panic!("no ping after the second heartbeat");
    };
    assert_ne!(second, first);
    h.run_until(opened + ms(2_100));
    h.feed(&Frame::Pong(Ping { nonce: second }));
    // RFC 6298: (7 * 40 + 100) / 8 ms.
    assert_eq!(h.client.srtt(), Some(Duration::from_micros(47_500)));
    assert_eq!(h.client.quality(), Quality::Good);
}

#[test]
fn handshake_timeout_disconnects_and_backs_off() {
    let mut h = Harness::new(config());
    h.connect();
    let started = h.now;
    assert_eq!(h.take_actions(), [Action::Connect]);
    h.connected();
    assert!(matches!(h.take_out()[..], [Up::Hello { .. }]));

    // connect_timeout is 2 s from the start of the attempt: no welcome by then.
    h.run_until(started + ms(2_000) - Duration::from_micros(1));
    assert_eq!(h.client.state(), ConnState::Handshaking);
    assert_eq!(h.take_actions(), []);
    h.run_until(started + ms(2_000));
    assert_eq!(h.take_out(), [Up::Close(CloseCode::HANDSHAKE_TIMEOUT)]);
    assert_eq!(
        h.take_actions(),
        [Action::Disconnect {
            code: CloseCode::HANDSHAKE_TIMEOUT
        }]
    );
    assert_eq!(h.client.state(), ConnState::Backoff);
    let events = h.take_events();
    assert_eq!(
        reconnecting(&events),
        [(1, ms(100), Some(CloseCode::HANDSHAKE_TIMEOUT))]
    );
    h.until_reconnect();
    assert_eq!(h.take_actions(), [Action::Connect]);

    // A transport that never opens times out the same way (nothing to send a close on).
    let started = h.now;
    h.run_until(started + ms(2_000));
    assert_eq!(h.take_out(), []);
    assert_eq!(
        h.take_actions(),
        [Action::Disconnect {
            code: CloseCode::HANDSHAKE_TIMEOUT
        }]
    );
    assert_eq!(h.client.state(), ConnState::Backoff);
}

// ---- resume and delivery

#[test]
fn resume_lists_each_room_from_its_last_position_and_drops_replays() {
    let mut h = Harness::new(config());
    h.client.subscribe("agents").unwrap();
    h.client.subscribe("tasks").unwrap();
    let hello = h.open();
    assert_eq!(
        hello,
        Up::Hello {
            version: PROTOCOL_VERSION,
            rooms: vec![("agents".into(), None), ("tasks".into(), None)]
        }
    );
    h.feed(&subscribed("agents", 3, 0));
    h.feed(&subscribed("tasks", 3, 10));
    h.feed_batch("agents", 3, 1..=5);
    let events = h.take_events();
    assert_eq!(delivered(&events, "agents"), positions(3, 1..=5));
    assert_eq!(h.client.position("agents"), Some(Position::new(3, 5)));

    // The transport drops; the next hello resumes every room where it stands.
    h.disconnected();
    h.until_reconnect();
    let hello = h.handshake(QUIET_HEARTBEAT_MS);
    assert_eq!(
        hello,
        Up::Hello {
            version: PROTOCOL_VERSION,
            rooms: vec![
                ("agents".into(), Some(Position::new(3, 5))),
                ("tasks".into(), Some(Position::new(3, 10)))
            ]
        }
    );
    h.take_events();

    // The server replays from further back than asked: the overlap is dropped.
    let before = h.client.stats();
    h.feed(&subscribed("agents", 3, 5));
    h.feed_batch("agents", 3, 3..=8);
    h.feed(&Frame::Event(Event {
        room: "agents",
        position: Position::new(3, 8),
        kind: "agent.status",
        payload: Payload(b"e8"),
    }));
    let events = h.take_events();
    assert_eq!(delivered(&events, "agents"), positions(3, 6..=8));
    let after = h.client.stats();
    assert_eq!(after.duplicates - before.duplicates, 4);
    assert_eq!(after.events, 8);
    assert_eq!(h.client.position("agents"), Some(Position::new(3, 8)));
}

#[test]
fn unannounced_epoch_fails_the_connection_instead_of_delivering() {
    let mut h = Harness::new(config());
    h.client.subscribe("agents").unwrap();
    h.open();
    h.feed(&subscribed("agents", 1, 0));
    h.feed_batch("agents", 1, 1..=2);
    h.clear();

    h.feed_batch("agents", 2, 1..=2);
    let events = h.take_events();
    assert_eq!(delivered(&events, "agents"), []);
    assert_eq!(
        reconnecting(&events),
        [(1, ms(100), Some(CloseCode::PROTOCOL_ERROR))]
    );
    assert_eq!(h.take_out(), [Up::Close(CloseCode::PROTOCOL_ERROR)]);
    assert_eq!(
        h.take_actions(),
        [Action::Disconnect {
            code: CloseCode::PROTOCOL_ERROR
        }]
    );
    assert_eq!(h.client.position("agents"), Some(Position::new(1, 2)));

    // Reconnected, the server announces the new epoch with a reset: its events are delivered.
    h.until_reconnect();
    let hello = h.handshake(QUIET_HEARTBEAT_MS);
    assert_eq!(
        hello,
        Up::Hello {
            version: PROTOCOL_VERSION,
            rooms: vec![("agents".into(), Some(Position::new(1, 2)))]
        }
    );
    h.take_events();
    h.feed(&subscribed("agents", 1, 2));
    let reset = Missed::Reset {
        position: Position::new(2, 0),
    };
    h.feed(&Frame::Gap(Gap {
        room: "agents",
        missed: reset,
    }));
    h.feed_batch("agents", 2, 1..=3);
    let events = h.take_events();
    assert!(events.contains(&Ev::Gap {
        room: "agents".into(),
        missed: reset
    }));
    assert_eq!(delivered(&events, "agents"), positions(2, 1..=3));
    assert_eq!(h.client.state(), ConnState::Open);
    assert_eq!(h.client.position("agents"), Some(Position::new(2, 3)));
}

// ---- outbox

#[test]
fn publish_made_offline_is_sent_after_the_welcome_and_again_after_a_drop() {
    let mut h = Harness::new(config());
    let id = h.client.publish("cmd", "task.create", b"x").unwrap();
    assert_eq!(id, 1);
    h.connect();
    h.take_actions();
    h.connected();
    // Only the hello goes out before the session is open.
    assert!(matches!(h.take_out()[..], [Up::Hello { .. }]));
    h.feed(&welcome(PROTOCOL_VERSION, QUIET_HEARTBEAT_MS));
    let publish = Up::Publish {
        room: "cmd".into(),
        id: 1,
        payload: b"x".to_vec(),
    };
    assert_eq!(h.take_out(), std::slice::from_ref(&publish));

    // Not acknowledged before the drop: sent again on the next session, same id.
    h.disconnected();
    h.until_reconnect();
    h.handshake(QUIET_HEARTBEAT_MS);
    assert_eq!(h.take_out(), [publish]);
}

#[test]
fn publish_ack_is_reported_exactly_once() {
    let mut h = Harness::new(config());
    h.open();
    let id = h.client.publish("cmd", "task.create", b"x").unwrap();
    h.pump();
    h.clear();

    let at = Position::new(5, 9);
    h.feed(&ack(id, at));
    assert_eq!(h.take_events(), [Ev::PublishAcked { id, position: at }]);
    assert_eq!(h.client.outbox_len(), 0);
    h.feed(&ack(id, at));
    assert_eq!(h.take_events(), []);

    // Nothing is resent after a reconnect.
    h.disconnected();
    h.until_reconnect();
    h.handshake(QUIET_HEARTBEAT_MS);
    assert_eq!(h.take_out(), []);
}

#[test]
fn rate_limited_publish_is_resent_after_retry_after() {
    let mut h = Harness::new(config());
    h.open();
    let id = h.client.publish("cmd", "task.create", b"x").unwrap();
    h.pump();
    assert_eq!(h.take_out().len(), 1);
    h.take_events();
    let refused_at = h.now;

    h.feed(&error(ErrorCode::RATE_LIMITED, Some(id), None, Some(300)));
    assert_eq!(h.take_events(), [], "a rate limit is not a failure");
    assert_eq!(h.client.outbox_len(), 1);
    assert_eq!(h.client.poll_timeout(), Some(refused_at + ms(300)));

    h.run_until(refused_at + ms(300) - Duration::from_micros(1));
    assert_eq!(h.take_out(), []);
    h.run_until(refused_at + ms(300));
    assert_eq!(
        h.take_out(),
        [Up::Publish {
            room: "cmd".into(),
            id,
            payload: b"x".to_vec()
        }]
    );
    h.feed(&ack(id, Position::new(1, 1)));
    assert_eq!(
        h.take_events(),
        [Ev::PublishAcked {
            id,
            position: Position::new(1, 1)
        }]
    );
}

#[test]
fn rejected_publish_is_reported_and_dropped() {
    let mut h = Harness::new(config());
    h.open();
    let id = h.client.publish("cmd", "task.create", b"x").unwrap();
    h.pump();
    h.clear();

    h.feed(&error(ErrorCode::PUBLISH_REJECTED, Some(id), None, None));
    assert_eq!(
        h.take_events(),
        [Ev::PublishFailed {
            id,
            code: ErrorCode::PUBLISH_REJECTED
        }]
    );
    assert_eq!(h.client.outbox_len(), 0);
    h.disconnected();
    h.until_reconnect();
    h.handshake(QUIET_HEARTBEAT_MS);
    assert_eq!(h.take_out(), [], "a rejected publish is not retried");
}

#[test]
fn full_outbox_refuses_the_publish_when_it_is_made() {
    let mut h = Harness::new(config());
    for expected in 1..=4 {
        assert_eq!(h.client.publish("cmd", "k", b"p"), Ok(expected));
    }
    assert_eq!(
        h.client.publish("cmd", "k", b"p"),
        Err(ClientError::Outbox(OutboxError::Full))
    );
    assert_eq!(h.client.outbox_len(), 4);

    // An acknowledgement makes room again.
    h.open();
    assert_eq!(h.take_out().len(), 4);
    h.feed(&ack(1, Position::new(1, 1)));
    assert_eq!(h.client.publish("cmd", "k", b"p"), Ok(5));
}

// ---- subscriptions

#[test]
fn refused_subscribe_is_reported_and_the_room_is_no_longer_held() {
    let mut h = Harness::new(config());
    h.client.subscribe("agents").unwrap();
    h.open();
    h.feed(&subscribed("agents", 1, 0));
    h.client.subscribe("secret").unwrap();
    h.pump();
    assert_eq!(
        h.take_out(),
        [Up::Subscribe {
            room: "secret".into(),
            from: None
        }]
    );
    h.take_events();

    h.feed(&error(
        ErrorCode::FORBIDDEN_ROOM,
        None,
        Some("secret"),
        None,
    ));
    assert_eq!(
        h.take_events(),
        [Ev::SubscribeFailed {
            room: "secret".into(),
            code: ErrorCode::FORBIDDEN_ROOM
        }]
    );
    let rooms: Vec<String> = h.client.rooms().map(|(r, _)| r.to_string()).collect();
    assert_eq!(rooms, ["agents"]);
    // Nothing of it is delivered, and it is not asked for again on the next session.
    h.feed_batch("secret", 1, 1..=2);
    assert_eq!(delivered(&h.take_events(), "secret"), []);
    h.disconnected();
    h.until_reconnect();
    let hello = h.handshake(QUIET_HEARTBEAT_MS);
    assert_eq!(
        hello,
        Up::Hello {
            version: PROTOCOL_VERSION,
            rooms: vec![("agents".into(), Some(Position::new(1, 0)))]
        }
    );
}

// ---- determinism and backoff

/// Everything observable of a run: the events, the frames on the wire with their times, and the
/// actions.
type Run = (Vec<Ev>, Vec<(Instant, Vec<u8>)>, Vec<Action>);

/// A scripted run with jittered backoff: drops, reconnects, events, pings, publishes.
fn scripted(seed: u64) -> Run {
    let config = ClientConfig::new(42).backoff(
        BackoffPolicy::new()
            .initial(ms(100))
            .jitter(Jitter::Full)
            .stable_after(Duration::from_secs(10)),
    );
    let mut h = Harness::with_seed(config, seed);
    let mut actions = Vec::new();
    h.client.subscribe("agents").unwrap();
    h.client.publish("cmd", "task.create", b"1").unwrap();
    h.connect();
    for round in 0..4u64 {
        h.handshake(1_000);
        h.feed(&subscribed("agents", 1, round * 4));
        h.feed_batch("agents", 1, round * 4 + 1..=round * 4 + 4);
        h.advance(ms(1_000));
        h.feed(&Frame::Ping(Ping { nonce: round }));
        // The outbox may be full; a refusal at call time is part of the script too.
        let _ = h.client.publish("cmd", "task.create", b"2");
        h.pump();
        let out = h.take_out();
        if let Some(Up::Ping(nonce)) = out.iter().rev().find(|f| matches!(f, Up::Ping(_))) {
            let nonce = *nonce;
            h.advance(ms(30));
            h.feed(&Frame::Pong(Ping { nonce }));
        }
        h.feed(&ack(round + 1, Position::new(1, 100 + round)));
        h.disconnected();
        actions.extend(h.take_actions());
        h.until_reconnect();
    }
    actions.extend(h.take_actions());
    (h.take_events(), h.wire, actions)
}

#[test]
fn same_seed_and_inputs_give_the_same_outputs() {
    let a = scripted(9);
    let b = scripted(9);
    assert_eq!(a, b);
    assert!(a.0.len() > 20 && a.1.len() > 10, "the script did little");
    // The seed matters: another one draws other backoff delays.
    let delays = |run: &Run| {
        reconnecting(&run.0)
            .into_iter()
            .map(|(_, d, _)| d)
            .collect::<Vec<_>>()
    };
    assert_ne!(delays(&a), delays(&scripted(10)));
}

#[test]
fn backoff_grows_and_resets_only_after_a_stable_session() {
    let mut h = Harness::new(config());
    h.connect();
    assert_eq!(h.take_events(), [Ev::Connecting { attempt: 0 }]);

    // Two attempts whose transport never opens.
    h.take_actions();
    h.disconnected();
    assert_eq!(reconnecting(&h.take_events()), [(1, ms(100), None)]);
    h.until_reconnect();
    assert_eq!(h.take_events(), [Ev::Connecting { attempt: 1 }]);
    h.take_actions();
    h.disconnected();
    assert_eq!(reconnecting(&h.take_events()), [(2, ms(200), None)]);

    // A session that opens and drops before stable_after (1 s) keeps backing off.
    h.until_reconnect();
    h.handshake(QUIET_HEARTBEAT_MS);
    h.advance(ms(999));
    h.take_events();
    h.disconnected();
    assert_eq!(reconnecting(&h.take_events()), [(3, ms(400), None)]);

    // A stable one starts over from the initial delay.
    h.until_reconnect();
    h.handshake(QUIET_HEARTBEAT_MS);
    h.advance(ms(1_000));
    h.take_events();
    h.disconnected();
    assert_eq!(reconnecting(&h.take_events()), [(1, ms(100), None)]);
}
