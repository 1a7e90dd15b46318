//! Clock jumps in the core (issue #11, item 7, scenario 8): a client machine and a server
//! session over a hub, joined in memory through the binary codec and driven with a manual `now`
//! that stands still for thousands of calls or jumps far ahead (a suspended laptop, a VM
//! resumed a day later, an absurd clock). Nothing may panic, a frozen clock must not make the
//! client reconnect over and over (a storm at one instant), a jump costs at most one reconnect,
//! and delivery resumes without loss afterwards.

use std::time::Duration;

use eventwire_core::backoff::BackoffPolicy;
use eventwire_core::client::{Action, Client, ClientConfig, ClientEvent, ConnState};
use eventwire_core::codec::binary;
use eventwire_core::frame::{Missed, Position};
use eventwire_core::hub::{Hub, HubConfig};
use eventwire_core::server::{ServerConfig, ServerEvent, ServerSession};
use eventwire_core::time::Instant;

type C = Client<8, 16, 4096>;

const EPOCH: u32 = 4;
const ROOM: &str = "feed";

/// What a server session asked of the application, owned.
enum Ask {
    Authenticate,
    Authorize(String),
    Closed,
}

/// One client and, while it is connected, its server session.
struct Pair {
    now: Instant,
    hub: Hub,
    client: C,
    server: Option<ServerSession>,
    /// Whether the server accepts connections (a failed attempt otherwise).
    up: bool,
    attempts: Vec<Instant>,
    opens: u64,
    /// Offsets delivered and gaps announced, in order.
    delivered: Vec<u64>,
    gaps: Vec<Missed>,
    next_session: u64,
}

fn server_config() -> ServerConfig {
    ServerConfig::new()
        .heartbeat(Duration::from_millis(500))
        .handshake_timeout(Duration::from_secs(2))
        .intervals(Duration::from_millis(5), Duration::from_millis(20))
}

impl Pair {
    fn new() -> Pair {
        let hub = Hub::new(EPOCH, HubConfig::new());
        let now = Instant::from_millis(1);
        // The room exists before anyone joins it.
        hub.emit(now, ROOM, "tick", b"0", None).unwrap();
        let config = ClientConfig::new(77)
            .backoff(
                BackoffPolicy::new()
                    .initial(Duration::from_millis(100))
                    .cap(Duration::from_secs(30)),
            )
            .connect_timeout(Duration::from_secs(2));
        let mut client = C::new(config, 9);
        client
            .subscribe_from(ROOM, Position::new(EPOCH, 0))
            .unwrap();
        let mut pair = Pair {
            now,
            hub,
            client,
            server: None,
            up: true,
            attempts: Vec::new(),
            opens: 0,
            delivered: Vec::new(),
            gaps: Vec::new(),
            next_session: 1,
        };
        let Pair {
            client,
            delivered,
            gaps,
            opens,
            ..
        } = &mut pair;
        client.connect(now, &mut |e| note(e, delivered, gaps, opens));
        pair.pump();
        pair
    }

    fn emit(&mut self, n: u64) {
        self.hub
            .emit(self.now, ROOM, "tick", n.to_string().as_bytes(), None)
            .unwrap();
    }

    /// Runs both machines at `now` until neither has anything more to do.
    fn pump(&mut self) {
        for round in 0.. {
            assert!(round < 1000, "the machines never settle at {}", self.now);
            let now = self.now;
            let Pair {
                client,
                server,
                hub,
                delivered,
                gaps,
                opens,
                ..
            } = self;
            let mut sink = |e: ClientEvent<'_>| note(e, delivered, gaps, opens);
            client.handle_timeout(now, &mut sink);
            let mut asks = Vec::new();
            let mut progressed = false;
            if let Some(s) = server.as_mut() {
                s.handle_timeout(now, &mut |e| ask(e, &mut asks));
            }
            let mut bytes = Vec::new();
            while let Some(frame) = client.poll_transmit(now) {
                progressed = true;
                bytes.clear();
                binary::encode_into(&frame, &mut bytes).unwrap();
                if let Some(s) = server.as_mut() {
                    let frame = binary::decode(&bytes, usize::MAX).unwrap();
                    s.handle_frame(now, &frame, hub, &mut |e| ask(e, &mut asks));
                }
            }
            let mut closed = false;
            if let Some(s) = server.as_mut() {
                while let Some(a) = asks.pop() {
                    progressed = true;
                    match a {
                        Ask::Authenticate => s.accept(now, &mut |e| ask(e, &mut asks)).unwrap(),
                        Ask::Authorize(room) => s.allow(hub, &room).unwrap(),
                        Ask::Closed => closed = true,
                    }
                }
                while let Some(frame) = s.poll_transmit(now) {
                    progressed = true;
                    bytes.clear();
                    binary::encode_into(&frame, &mut bytes).unwrap();
                    let frame = binary::decode(&bytes, usize::MAX).unwrap();
                    client.handle_frame(now, &frame, &mut sink);
                }
                closed |= s.poll_action().is_some();
            }
            if closed {
                progressed = true;
                *server = None;
                client.handle_disconnected(now, &mut sink);
            }
            match client.poll_action() {
                Some(Action::Connect) => {
                    progressed = true;
                    self.attempts.push(now);
                    if self.up {
                        self.next_session += 1;
                        self.server = Some(ServerSession::new(
                            now,
                            server_config(),
                            self.next_session,
                            self.next_session,
                        ));
                        let Pair {
                            client,
                            delivered,
                            gaps,
                            opens,
                            ..
                        } = self;
                        client.handle_connected(now, &mut |e| note(e, delivered, gaps, opens));
                    } else {
                        let Pair {
                            client,
                            delivered,
                            gaps,
                            opens,
                            ..
                        } = self;
                        client.handle_disconnected(now, &mut |e| note(e, delivered, gaps, opens));
                    }
                }
                Some(Action::Disconnect { .. }) => {
                    progressed = true;
                    self.server = None;
                }
                None => {}
            }
            if !progressed {
                return;
            }
        }
    }

    /// Advances the clock in steps of `step` for `total`, pumping at each.
    fn run(&mut self, step: Duration, total: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.now = self.now + step;
            self.pump();
        }
    }

    fn open(&self) -> bool {
        self.client.state() == ConnState::Open && self.server.is_some()
    }
}

fn ask(e: ServerEvent<'_>, asks: &mut Vec<Ask>) {
    match e {
        ServerEvent::Authenticate { .. } => asks.push(Ask::Authenticate),
        ServerEvent::Authorize { room } => asks.push(Ask::Authorize(room.to_owned())),
        ServerEvent::Closed { .. } => asks.push(Ask::Closed),
        _ => {}
    }
}

fn note(e: ClientEvent<'_>, delivered: &mut Vec<u64>, gaps: &mut Vec<Missed>, opens: &mut u64) {
    match e {
        ClientEvent::Event { position, .. } => delivered.push(position.offset),
        ClientEvent::Gap { missed, .. } => gaps.push(missed),
        ClientEvent::Open { .. } => *opens += 1,
        _ => {}
    }
}

/// Every offset of the room so far, once, in order.
fn assert_all_delivered(pair: &Pair) {
    let head = pair.hub.room(ROOM).unwrap().head().offset;
    let want: Vec<u64> = (1..=head).collect();
    assert_eq!(pair.delivered, want, "every event once, in order");
    assert!(pair.gaps.is_empty(), "{:?}", pair.gaps);
}

#[test]
fn a_clock_standing_still_changes_nothing() {
    let mut pair = Pair::new();
    assert!(pair.open());
    for n in 1..=5 {
        pair.emit(n);
    }
    pair.run(Duration::from_millis(10), Duration::from_millis(200));
    assert_all_delivered(&pair);
    // Ten thousand calls at the same instant, with events arriving meanwhile.
    let attempts = pair.attempts.len();
    for i in 0..10_000u64 {
        if i % 1000 == 0 {
            pair.emit(100 + i);
        }
        pair.pump();
    }
    assert!(pair.open(), "still connected");
    assert_eq!(
        pair.attempts.len(),
        attempts,
        "no reconnect while time stood still"
    );
    // The events emitted meanwhile went out (the first at once; the rest once time moves on).
    pair.run(Duration::from_millis(10), Duration::from_millis(200));
    assert_all_delivered(&pair);
    assert_eq!(pair.attempts.len(), attempts);
}

#[test]
fn a_frozen_clock_with_the_server_down_makes_no_storm() {
    let mut pair = Pair::new();
    pair.up = false;
    pair.server = None;
    let now = pair.now;
    {
        let Pair {
            client,
            delivered,
            gaps,
            opens,
            ..
        } = &mut pair;
        client.handle_disconnected(now, &mut |e| note(e, delivered, gaps, opens));
    }
    let before = pair.attempts.len();
    for _ in 0..10_000 {
        pair.pump();
    }
    // Each failed attempt waits for its backoff delay, which a frozen clock never reaches (one
    // attempt may be due at once, a jitter of zero).
    let storm = pair.attempts.len() - before;
    assert!(storm <= 2, "{storm} attempts at one instant");
    // Time moves on: attempts follow the backoff (100 ms doubling to 30 s, jittered): at most
    // about log2(60 s / 100 ms) + a few in a minute, not one per call.
    pair.run(Duration::from_millis(10), Duration::from_secs(60));
    let in_a_minute = pair.attempts.len() - before;
    assert!(in_a_minute <= 20, "{in_a_minute} attempts in a minute");
    // The server comes back: one more attempt after at most the cap, and nothing is lost.
    pair.up = true;
    pair.emit(1);
    pair.run(Duration::from_millis(10), Duration::from_secs(31));
    assert!(pair.open());
    assert_all_delivered(&pair);
}

#[test]
fn far_jumps_ahead_cost_at_most_one_reconnect() {
    let mut pair = Pair::new();
    let mut jumps = 0;
    for jump in [
        Duration::from_secs(5),
        Duration::from_secs(24 * 3600),
        Duration::from_secs(10 * 365 * 24 * 3600),
        // Far beyond any clock (292,000 years): the core's instants saturate rather than
        // overflow. (At the very end, u64::MAX µs, every deadline saturates to "now" and the
        // handshake timeout closes each new session at once; adapters' clocks count from the
        // process's start and cannot get there.)
        Duration::from_micros(u64::MAX / 2),
    ] {
        pair.emit(1000 + jumps);
        pair.run(Duration::from_millis(10), Duration::from_millis(300));
        assert!(pair.open());
        assert_all_delivered(&pair);
        let attempts = pair.attempts.len();
        // The jump: both machines find every timer long past.
        pair.now = pair.now + jump;
        pair.pump();
        for _ in 0..100 {
            pair.pump();
        }
        let at_the_jump = pair.attempts.len() - attempts;
        assert!(
            at_the_jump <= 1,
            "{at_the_jump} attempts at a jump of {jump:?}"
        );
        jumps += 1;
        // Afterwards the client is back within the backoff's first delays, and resumes.
        pair.emit(2000 + jumps);
        pair.run(Duration::from_millis(10), Duration::from_secs(3));
        assert!(pair.open(), "back after a jump of {jump:?}");
        assert!(pair.attempts.len() - attempts <= 2);
        assert_all_delivered(&pair);
    }
    assert_eq!(jumps, 4);
}
