//! Deterministic simulation of one server hub and many clients over a simulated network.
//!
//! Everything is a core state machine; the network, the clock and every fault are driven by one
//! seeded RNG, so a run is a pure function of its seed and a failing seed replays exactly.
//! Faults: latency, limited bandwidth, stalled readers, connection resets at any point (mid-frame
//! on byte streams), server restarts (new epoch), clients offline for longer than the history,
//! subscribe/unsubscribe churn, forward clock jumps. After the faults stop, an oracle checks the
//! delivery guarantee for every client and room, the publish guarantee, memory bounds and
//! convergence.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use eventwire_core::backoff::BackoffPolicy;
use eventwire_core::backoff::Rng;
use eventwire_core::client::{Action, Client, ClientConfig, ClientEvent, ConnState};
use eventwire_core::code::CloseCode;
use eventwire_core::codec::stream::{self, StreamDecoder};
use eventwire_core::codec::{binary, json, Codec};
use eventwire_core::frame::{Frame, Missed, Position};
use eventwire_core::history::HistoryConfig;
use eventwire_core::hub::{Hub, HubConfig};
use eventwire_core::server::{ServerConfig, ServerEvent, ServerSession, CONTROL_CAPACITY};
use eventwire_core::time::Instant;

pub const ROOMS: [&str; 4] = ["agents", "tasks", "system", "cmd"];
const FORBIDDEN: &str = "secret";
const MAX_FRAME: u32 = 16 * 1024;
pub const OUTBOX: usize = 16;

pub type SimClient = Client<8, OUTBOX, 4096>;

/// Knobs of one run.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub clients: usize,
    /// Simulated steps with traffic and faults.
    pub steps: usize,
    /// Deliberate bug: the network silently drops one in this many server-to-client batches.
    pub drop_batches: Option<u32>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            clients: 5,
            steps: 1500,
            drop_batches: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Binary,
    Json,
    Stream,
}

#[derive(Debug, Clone)]
enum Obs {
    Subscribed(Position),
    Event {
        position: Position,
        payload: Vec<u8>,
        head: u64,
    },
    Gap(Missed),
    Unsubscribed,
}

struct Conn {
    client: usize,
    transport: Transport,
    session: ServerSession,
    up: VecDeque<(Instant, Vec<u8>)>,
    down: VecDeque<(Instant, Vec<u8>)>,
    // Boxed: connections move in and out of their slot on every pump.
    up_stream: Box<StreamDecoder<{ 32 * 1024 }>>,
    down_stream: Box<StreamDecoder<{ 32 * 1024 }>>,
    /// Closed by one side: queued bytes still arrive, then the other side learns of it.
    closing: bool,
    server_gone: bool,
}

struct Peer {
    machine: SimClient,
    transport: Transport,
    conn: Option<usize>,
    connect_at: Option<Instant>,
    offline_until: Instant,
    stalled_until: Instant,
    obs: BTreeMap<String, Vec<Obs>>,
    published: BTreeMap<u64, String>,
    acks: BTreeMap<u64, Vec<Position>>,
    failed: BTreeMap<u64, u16>,
    rejected_at_call: u64,
    fatal: Option<CloseCode>,
}

#[derive(Clone, Debug)]
struct Emitted {
    payload: Vec<u8>,
    key: Option<String>,
}

pub struct World {
    rng: Rng,
    params: Params,
    now: Instant,
    hub: Hub,
    hub_config: HubConfig,
    server_config: ServerConfig,
    conns: Vec<Option<Conn>>,
    peers: Vec<Peer>,
    /// Every event ever appended: (room, epoch) -> offset -> event.
    emitted: BTreeMap<(String, u32), BTreeMap<u64, Emitted>>,
    next_session: u64,
    counter: u64,
    dropped_batches: u64,
    log: String,
}

pub fn hub_config() -> HubConfig {
    HubConfig::new().history(
        HistoryConfig::new()
            .max_events(64)
            .max_bytes(8 * 1024)
            .max_age(None),
    )
}

fn json_payload(tag: &str, n: u64) -> Vec<u8> {
    format!("{{\"{tag}\":{n}}}").into_bytes()
}

impl World {
    pub fn new(seed: u64, params: Params) -> World {
        let mut rng = Rng::new(seed);
        let hub_config = hub_config();
        let server_config = ServerConfig::new()
            .heartbeat(Duration::from_millis(500))
            .handshake_timeout(Duration::from_secs(2))
            .max_frame(MAX_FRAME)
            .max_subscriptions(6)
            .publish_rate(50);
        let peers = (0..params.clients)
            .map(|i| {
                let transport = match rng.up_to(2) {
                    0 => Transport::Binary,
                    1 => Transport::Json,
                    _ => Transport::Stream,
                };
                let config = ClientConfig::new(1000 + i as u64 + (seed << 8))
                    .token(if i == 0 && rng.up_to(9) == 0 {
                        "bad"
                    } else {
                        "good"
                    })
                    .unwrap()
                    .backoff(
                        BackoffPolicy::new()
                            .initial(Duration::from_millis(50))
                            .cap(Duration::from_secs(2))
                            .stable_after(Duration::from_secs(1)),
                    )
                    .connect_timeout(Duration::from_secs(2))
                    .max_frame(MAX_FRAME)
                    .max_batch(1 + rng.up_to(20) as u16)
                    .publish_window(8);
                let mut machine = SimClient::new(config, rng.next_u64());
                for room in ROOMS {
                    if rng.up_to(3) > 0 {
                        machine.subscribe(room).unwrap();
                    }
                }
                Peer {
                    machine,
                    transport,
                    conn: None,
                    connect_at: None,
                    offline_until: Instant::ZERO,
                    stalled_until: Instant::ZERO,
                    obs: BTreeMap::new(),
                    published: BTreeMap::new(),
                    acks: BTreeMap::new(),
                    failed: BTreeMap::new(),
                    rejected_at_call: 0,
                    fatal: None,
                }
            })
            .collect();
        let epoch = 1 + rng.up_to(1000) as u32;
        World {
            rng,
            params,
            now: Instant::from_millis(1),
            hub: declared(Hub::new(epoch, hub_config)),
            hub_config,
            server_config,
            conns: Vec::new(),
            peers,
            emitted: BTreeMap::new(),
            next_session: 1,
            counter: 0,
            dropped_batches: 0,
            log: String::new(),
        }
    }

    fn note(&mut self, what: &str) {
        let _ = writeln!(self.log, "{} {what}", self.now);
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.rng.up_to(one_in - 1) == 0
    }

    fn latency(&mut self) -> Duration {
        Duration::from_micros(200 + self.rng.up_to(30_000))
    }

    /// Runs the faulty phase, then the quiet phase, then the oracle. Err describes a violation.
    pub fn run(&mut self) -> Result<Stats, String> {
        for i in 0..self.peers.len() {
            let now = self.now;
            let peer = &mut self.peers[i];
            let (machine, mut sink) = peer.split(0);
            machine.connect(now, &mut |e| sink.record(e));
        }
        for _ in 0..self.params.steps {
            self.advance(true);
            self.traffic();
            self.faults();
            self.pump()?;
        }
        // Quiet phase: no faults, no new work; everything must converge.
        for i in 0..self.peers.len() {
            self.peers[i].offline_until = Instant::ZERO;
            self.peers[i].stalled_until = Instant::ZERO;
        }
        for quiet in 0..4000 {
            self.advance(false);
            self.pump()?;
            if self.converged() {
                if std::env::var_os("EVENTWIRE_SIM_TRACE_QUIET").is_some() {
                    eprintln!("converged after {quiet} quiet steps");
                }
                break;
            }
        }
        if std::env::var_os("EVENTWIRE_SIM_TRACE_QUIET").is_some() && !self.converged() {
            for (i, p) in self.peers.iter().enumerate() {
                let rooms: Vec<_> = p
                    .machine
                    .rooms()
                    .map(|(r, l)| (r.to_string(), l, self.hub.room(r).map(|r| r.head())))
                    .collect();
                eprintln!(
                    "peer {i}: {:?} fatal {:?} outbox {} rooms {rooms:?}",
                    p.machine.state(),
                    p.fatal,
                    p.machine.outbox_len()
                );
            }
        }
        self.check()
    }

    fn advance(&mut self, faulty: bool) {
        let step = if faulty && self.chance(400) {
            // A clock jump, as after a suspended laptop.
            Duration::from_secs(2 + self.rng.up_to(20))
        } else {
            Duration::from_micros(500 + self.rng.up_to(15_000))
        };
        self.now = self.now + step;
    }

    fn traffic(&mut self) {
        for _ in 0..self.rng.up_to(3) {
            let room = ROOMS[self.rng.up_to(2) as usize];
            self.counter += 1;
            let keyed = self.chance(3);
            let key = keyed.then(|| format!("metrics:a{}", self.rng.up_to(3)));
            // Now and then a payload that is not JSON text: binary peers get it, JSON peers must
            // hear that they missed it.
            let payload = if self.chance(40) {
                format!("raw\u{1}{}", self.counter).into_bytes()
            } else {
                json_payload("e", self.counter)
            };
            let kind = if keyed {
                "agent.metrics"
            } else {
                "agent.status"
            };
            let position = self
                .hub
                .emit(self.now, room, kind, &payload, key.as_deref())
                .expect("emit into the hub");
            self.emitted
                .entry((room.to_string(), position.epoch))
                .or_default()
                .insert(position.offset, Emitted { payload, key });
        }
        if self.chance(5) {
            let i = self.rng.up_to(self.peers.len() as u64 - 1) as usize;
            self.counter += 1;
            let payload = json_payload("p", self.counter);
            match self.peers[i]
                .machine
                .publish("cmd", "agent.command", &payload)
            {
                Ok(id) => {
                    self.peers[i]
                        .published
                        .insert(id, String::from_utf8(payload).unwrap());
                }
                Err(_) => self.peers[i].rejected_at_call += 1,
            }
        }
    }

    fn faults(&mut self) {
        let n = self.peers.len() as u64;
        if self.chance(150) {
            // Reset one connection; on byte streams part of a frame may already be through.
            let live: Vec<usize> = (0..self.conns.len())
                .filter(|c| self.conns[*c].is_some())
                .collect();
            if !live.is_empty() {
                let c = live[self.rng.up_to(live.len() as u64 - 1) as usize];
                self.note(&format!("reset conn {c}"));
                self.reset(c, true);
            }
        }
        if self.chance(900) {
            self.restart_server();
        }
        if self.chance(300) {
            let i = self.rng.up_to(n - 1) as usize;
            let away = Duration::from_secs(1 + self.rng.up_to(10));
            self.note(&format!("client {i} offline for {away:?}"));
            self.peers[i].offline_until = self.now + away;
            if let Some(c) = self.peers[i].conn {
                self.reset(c, false);
            }
        }
        if self.chance(200) {
            let i = self.rng.up_to(n - 1) as usize;
            self.peers[i].stalled_until =
                self.now + Duration::from_millis(200 + self.rng.up_to(3000));
        }
        if self.chance(120) {
            let i = self.rng.up_to(n - 1) as usize;
            let room = if self.chance(10) {
                FORBIDDEN
            } else {
                ROOMS[self.rng.up_to(ROOMS.len() as u64 - 1) as usize]
            };
            let peer = &mut self.peers[i];
            if peer.machine.position(room).is_some() || peer.machine.rooms().any(|(r, _)| r == room)
            {
                if peer.machine.unsubscribe(room) {
                    peer.obs
                        .entry(room.to_string())
                        .or_default()
                        .push(Obs::Unsubscribed);
                }
            } else {
                let _ = peer.machine.subscribe(room);
            }
        }
    }

    fn restart_server(&mut self) {
        self.note("server restart");
        for c in 0..self.conns.len() {
            if self.conns[c].is_some() {
                self.reset(c, false);
            }
        }
        let epoch = self.hub.epoch() + 1 + self.rng.up_to(5) as u32;
        self.hub = declared(Hub::new(epoch, self.hub_config));
    }

    /// Drops a connection: what is in flight is lost (a prefix of one message may arrive on a
    /// byte stream), and both ends learn of it.
    fn reset(&mut self, c: usize, partial: bool) {
        let Some(mut conn) = self.conns[c].take() else {
            return;
        };
        if self.peers[conn.client].conn != Some(c) {
            // A connection the client already left: nobody is told.
            return;
        }
        if partial && conn.transport == Transport::Stream {
            if let Some((_, bytes)) = conn.down.pop_front() {
                let cut = self.rng.up_to(bytes.len() as u64) as usize;
                let mut rest = &bytes[..cut];
                while !rest.is_empty() {
                    let (item, tail) = conn.down_stream.feed(rest);
                    if let Some(Ok(frame)) = item {
                        let now = self.now;
                        let peer = &mut self.peers[conn.client];
                        let head = head_of(&self.hub, &frame);
                        let (machine, mut sink) = peer.split(head);
                        machine.handle_frame(now, &frame, &mut |e| sink.record(e));
                    }
                    rest = tail;
                }
            }
        }
        let now = self.now;
        let peer = &mut self.peers[conn.client];
        peer.conn = None;
        let (machine, mut sink) = peer.split(0);
        machine.handle_disconnected(now, &mut |e| sink.record(e));
    }

    /// Moves everything that is due, repeatedly, until nothing moves.
    fn pump(&mut self) -> Result<(), String> {
        for _ in 0..64 {
            let mut moved = false;
            moved |= self.pump_clients()?;
            moved |= self.pump_conns()?;
            if !moved {
                return Ok(());
            }
        }
        Ok(())
    }

    fn pump_clients(&mut self) -> Result<bool, String> {
        let now = self.now;
        let mut moved = false;
        for i in 0..self.peers.len() {
            // Transport opens that are due.
            if self.peers[i].connect_at.is_some_and(|t| t <= now) {
                self.peers[i].connect_at = None;
                moved = true;
                let reachable = self.peers[i].offline_until <= now;
                let peer = &mut self.peers[i];
                if reachable {
                    let c = self.conns.len();
                    let mut session = ServerSession::new(
                        now,
                        self.server_config,
                        self.next_session,
                        self.next_session * 7919,
                    );
                    if peer.transport == Transport::Json {
                        session.set_codec(Codec::Json);
                    }
                    self.next_session += 1;
                    self.conns.push(Some(Conn {
                        client: i,
                        transport: peer.transport,
                        session,
                        up: VecDeque::new(),
                        down: VecDeque::new(),
                        up_stream: Box::new(StreamDecoder::new()),
                        down_stream: Box::new(StreamDecoder::new()),
                        closing: false,
                        server_gone: false,
                    }));
                    peer.conn = Some(c);
                    let (machine, mut sink) = peer.split(0);
                    machine.handle_connected(now, &mut |e| sink.record(e));
                } else {
                    let (machine, mut sink) = peer.split(0);
                    machine.handle_disconnected(now, &mut |e| sink.record(e));
                }
            }
            {
                let peer = &mut self.peers[i];
                if peer.machine.poll_timeout().is_some_and(|t| t <= now) {
                    let (machine, mut sink) = peer.split(0);
                    machine.handle_timeout(now, &mut |e| sink.record(e));
                }
            }
            // Outputs: frames first, then the action.
            let transport = self.peers[i].transport;
            while let Some(frame) = self.peers[i].machine.poll_transmit(now) {
                moved = true;
                let bytes = encode(transport, &frame)?;
                if let Some(c) = self.peers[i].conn {
                    let at = now + Duration::from_micros(200 + self.rng.up_to(30_000));
                    if let Some(conn) = self.conns[c].as_mut() {
                        if !conn.closing {
                            let at = conn.up.back().map_or(at, |(t, _)| at.max(*t));
                            conn.up.push_back((at, bytes));
                        }
                    }
                }
            }
            while let Some(action) = self.peers[i].machine.poll_action() {
                match Some(action) {
                    Some(Action::Connect) => {
                        moved = true;
                        let at = now + self.latency();
                        self.peers[i].connect_at = Some(at);
                        if let Some(c) = self.peers[i].conn.take() {
                            if let Some(conn) = self.conns[c].as_mut() {
                                conn.closing = true;
                            }
                        }
                    }
                    Some(Action::Disconnect { .. }) => {
                        moved = true;
                        // Closing also abandons a connection attempt still under way.
                        self.peers[i].connect_at = None;
                        if let Some(c) = self.peers[i].conn.take() {
                            if let Some(conn) = self.conns[c].as_mut() {
                                conn.closing = true;
                            }
                        }
                    }
                    None => {}
                }
            }
        }
        Ok(moved)
    }

    fn pump_conns(&mut self) -> Result<bool, String> {
        let now = self.now;
        let mut moved = false;
        for c in 0..self.conns.len() {
            let Some(mut conn) = self.conns[c].take() else {
                continue;
            };
            // Client to server.
            let mut events = Vec::new();
            while conn.up.front().is_some_and(|(t, _)| *t <= now) {
                moved = true;
                let (_, bytes) = conn.up.pop_front().unwrap();
                feed_server(&mut conn, &bytes, now, &self.hub, &mut events);
            }
            if conn.closing && conn.up.is_empty() && !conn.server_gone {
                // The client closed: the server sees the end of the stream.
                conn.server_gone = true;
            }
            // Application decisions (accept everything but bad tokens and the forbidden room).
            for ev in events {
                moved = true;
                match ev {
                    Decision::Auth(good) => {
                        if good {
                            let mut joins = Vec::new();
                            let _ = conn.session.accept(now, &mut |e| {
                                if let ServerEvent::Authorize { room } = e {
                                    joins.push(room.to_string());
                                }
                            });
                            for room in joins {
                                decide_join(&mut conn.session, &self.hub, &room);
                            }
                        } else {
                            let _ = conn.session.reject(CloseCode::UNAUTHORIZED, "bad token");
                        }
                    }
                    Decision::Join(room) => decide_join(&mut conn.session, &self.hub, &room),
                    Decision::Published(room, position, payload) => {
                        self.emitted
                            .entry((room, position.epoch))
                            .or_default()
                            .insert(position.offset, Emitted { payload, key: None });
                    }
                }
            }
            if conn.session.poll_timeout().is_some_and(|t| t <= now) {
                conn.session.handle_timeout(now, &mut |_| {});
            }
            // Server to client, within a bandwidth window, unless the client stalled reading.
            let peer_stalled = self.peers[conn.client].stalled_until > now;
            let in_flight: usize = conn.down.iter().map(|(_, b)| b.len()).sum();
            let mut budget = if peer_stalled {
                0
            } else {
                (64 * 1024usize).saturating_sub(in_flight)
            };
            while budget > 0 && !conn.server_gone {
                let Some(frame) = conn.session.poll_transmit(now) else {
                    break;
                };
                moved = true;
                let is_batch = matches!(frame, Frame::Batch(_));
                let bytes = encode(conn.transport, &frame)?;
                budget = budget.saturating_sub(bytes.len());
                if let (true, Some(n)) = (is_batch, self.params.drop_batches) {
                    if self.rng.up_to(u64::from(n) - 1) == 0 {
                        self.dropped_batches += 1;
                        continue;
                    }
                }
                let at = now + Duration::from_micros(200 + self.rng.up_to(30_000));
                let at = conn.down.back().map_or(at, |(t, _)| at.max(*t));
                conn.down.push_back((at, bytes));
            }
            if conn.session.poll_action().is_some() {
                conn.server_gone = true;
            }
            // Deliveries to the client.
            if !peer_stalled {
                while conn.down.front().is_some_and(|(t, _)| *t <= now) {
                    moved = true;
                    let (_, bytes) = conn.down.pop_front().unwrap();
                    if conn.closing {
                        continue;
                    }
                    self.feed_client(&mut conn, &bytes, now)?;
                }
            }
            let done = conn.server_gone && conn.down.is_empty();
            if done {
                moved = true;
                let peer = &mut self.peers[conn.client];
                if peer.conn == Some(c) {
                    peer.conn = None;
                    let (machine, mut sink) = peer.split(0);
                    machine.handle_disconnected(now, &mut |e| sink.record(e));
                }
            } else {
                self.conns[c] = Some(conn);
            }
        }
        Ok(moved)
    }

    fn feed_client(&mut self, conn: &mut Conn, bytes: &[u8], now: Instant) -> Result<(), String> {
        let peer = &mut self.peers[conn.client];
        match conn.transport {
            Transport::Binary | Transport::Json => {
                let frame = if conn.transport == Transport::Binary {
                    binary::decode(bytes, MAX_FRAME as usize)
                } else {
                    json::decode(bytes, MAX_FRAME as usize)
                }
                .map_err(|e| format!("client could not decode a server frame: {e}"))?;
                let head = head_of(&self.hub, &frame);
                if std::env::var_os("EVENTWIRE_SIM_TRACE").is_some() {
                    eprintln!(
                        "{now} conn->client {} (conn {:?}, peer conn {:?}, closing {}): {}",
                        conn.client,
                        conn.session.session_id(),
                        peer.conn,
                        conn.closing,
                        trace(&frame)
                    );
                }
                let (machine, mut sink) = peer.split(head);
                machine.handle_frame(now, &frame, &mut |e| sink.record(e));
            }
            Transport::Stream => {
                // Byte streams arrive in arbitrary chunks.
                let mut start = 0;
                while start < bytes.len() {
                    let end =
                        (start + 1 + self.rng.up_to(bytes.len() as u64) as usize).min(bytes.len());
                    let mut rest = &bytes[start..end];
                    start = end;
                    while !rest.is_empty() {
                        let (item, tail) = conn.down_stream.feed(rest);
                        if let Some(item) = item {
                            let frame = item.map_err(|e| format!("client stream decode: {e}"))?;
                            let head = head_of(&self.hub, &frame);
                            if std::env::var_os("EVENTWIRE_SIM_TRACE").is_some() {
                                eprintln!("{now} conn->client {} (conn {:?}, peer conn {:?}, closing {}): {}", conn.client, conn.session.session_id(), peer.conn, conn.closing, trace(&frame));
                            }
                            let (machine, mut sink) = peer.split(head);
                            machine.handle_frame(now, &frame, &mut |e| sink.record(e));
                        }
                        rest = tail;
                    }
                }
            }
        }
        Ok(())
    }

    fn converged(&self) -> bool {
        self.peers.iter().all(|p| {
            if p.fatal.is_some() {
                return true;
            }
            p.machine.state() == ConnState::Open
                && p.machine.outbox_len() == 0
                && p.machine.rooms().all(|(room, last)| {
                    let head = self.hub.room(room).map(|r| r.head());
                    head.is_some() && last == head
                })
        })
    }

    /// The oracle.
    fn check(&self) -> Result<Stats, String> {
        let mut stats = Stats::default();
        for (i, peer) in self.peers.iter().enumerate() {
            for (room, obs) in &peer.obs {
                self.check_room(i, room, obs, &mut stats).map_err(|e| {
                    if std::env::var_os("EVENTWIRE_SIM_DUMP").is_some() {
                        eprintln!("{obs:#?}");
                    }
                    format!("client {i} room {room}: {e}")
                })?;
            }
            if peer.fatal.is_none() {
                if peer.machine.state() != ConnState::Open {
                    return Err(format!(
                        "client {i} did not converge: {:?}",
                        peer.machine.state()
                    ));
                }
                for (room, last) in peer.machine.rooms() {
                    let head = self.hub.room(room).map(|r| r.head());
                    if last != head {
                        return Err(format!(
                            "client {i} room {room} stopped at {last:?}, head {head:?}"
                        ));
                    }
                }
                // Every accepted publish acknowledged exactly once.
                for id in peer.published.keys() {
                    let acks = peer.acks.get(id).map_or(0, |a| a.len());
                    let failed = peer.failed.contains_key(id);
                    if acks + usize::from(failed) != 1 {
                        return Err(format!(
                            "client {i} publish {id}: {acks} acks, failed {failed}"
                        ));
                    }
                }
            } else if peer.fatal != Some(CloseCode::UNAUTHORIZED) {
                return Err(format!("client {i} closed with {:?}", peer.fatal));
            }
            // A publish lands at most once per epoch, and where its ack says.
            for (id, text) in &peer.published {
                let mut per_epoch: BTreeMap<u32, usize> = BTreeMap::new();
                for ((room, epoch), events) in &self.emitted {
                    if room == "cmd" {
                        for e in events.values() {
                            if e.payload == text.as_bytes() {
                                *per_epoch.entry(*epoch).or_default() += 1;
                            }
                        }
                    }
                }
                if let Some((epoch, n)) = per_epoch.iter().find(|(_, n)| **n > 1) {
                    return Err(format!(
                        "client {i} publish {id} applied {n} times in epoch {epoch}"
                    ));
                }
                for position in peer.acks.get(id).into_iter().flatten() {
                    let at = self
                        .emitted
                        .get(&("cmd".to_string(), position.epoch))
                        .and_then(|m| m.get(&position.offset));
                    if at.map(|e| e.payload.as_slice()) != Some(text.as_bytes()) {
                        return Err(format!(
                            "client {i} publish {id} acked at {position} holding something else"
                        ));
                    }
                }
                stats.publishes += 1;
            }
            stats.rejected_at_call += peer.rejected_at_call;
        }
        // Memory stayed within the configured bounds.
        for handle in self.hub.rooms() {
            let room = handle.name();
            let h = self.hub_config.history;
            let (len, bytes) = handle.read(|log| (log.len(), log.bytes()));
            if len > h.max_events || bytes > h.max_bytes {
                return Err(format!("room {room} holds {len} events, {bytes} bytes"));
            }
        }
        for conn in self.conns.iter().flatten() {
            if conn.session.queued() > CONTROL_CAPACITY {
                return Err("control queue over its bound".into());
            }
        }
        for peer in &self.peers {
            if peer.machine.outbox_len() > OUTBOX {
                return Err("outbox over its bound".into());
            }
        }
        stats.dropped_batches = self.dropped_batches;
        Ok(stats)
    }

    fn check_room(
        &self,
        _i: usize,
        room: &str,
        obs: &[Obs],
        stats: &mut Stats,
    ) -> Result<(), String> {
        let mut last: Option<Position> = None;
        for o in obs {
            match o {
                Obs::Unsubscribed => last = None,
                Obs::Subscribed(p) => {
                    if let Some(l) = last {
                        if l != *p {
                            return Err(format!("subscribed at {p} while holding {l}"));
                        }
                    }
                    last = Some(*p);
                }
                Obs::Gap(Missed::Reset { position }) => {
                    stats.resets += 1;
                    last = Some(*position);
                }
                Obs::Gap(Missed::Range {
                    epoch,
                    first,
                    last: end,
                }) => {
                    stats.gaps += 1;
                    let l = last.ok_or("gap before subscribed")?;
                    if l.epoch != *epoch || *first <= l.offset || first > end {
                        return Err(format!("gap {first}..={end} in {epoch} after {l}"));
                    }
                    self.explain(room, l, *first, None)?;
                    last = Some(Position::new(*epoch, *end));
                }
                Obs::Event {
                    position,
                    payload,
                    head,
                } => {
                    stats.events += 1;
                    let l = last.ok_or("event before subscribed")?;
                    if l.epoch != position.epoch {
                        return Err(format!("event {position} after {l} without a reset"));
                    }
                    if position.offset <= l.offset {
                        return Err(format!(
                            "event {position} delivered again or out of order after {l}"
                        ));
                    }
                    self.explain(room, l, position.offset, Some(*head))?;
                    let sent = self
                        .emitted
                        .get(&(room.to_string(), position.epoch))
                        .and_then(|m| m.get(&position.offset))
                        .ok_or_else(|| format!("event {position} was never emitted"))?;
                    if &sent.payload != payload {
                        return Err(format!("event {position} carries the wrong payload"));
                    }
                    last = Some(*position);
                }
            }
        }
        Ok(())
    }

    /// Offsets strictly between `from` and `to` were skipped: each must have been superseded by
    /// a newer event with the same key that existed when the skip became visible.
    fn explain(
        &self,
        room: &str,
        from: Position,
        to: u64,
        head: Option<u64>,
    ) -> Result<(), String> {
        let Some(events) = self.emitted.get(&(room.to_string(), from.epoch)) else {
            return if to == from.offset + 1 {
                Ok(())
            } else {
                Err(format!(
                    "skipped {}..{to} of an unknown epoch",
                    from.offset + 1
                ))
            };
        };
        for o in from.offset + 1..to {
            let e = events
                .get(&o)
                .ok_or_else(|| format!("offset {o} never emitted"))?;
            let key = e
                .key
                .as_ref()
                .ok_or_else(|| format!("offset {o} silently lost (no key, no gap)"))?;
            let limit = head.unwrap_or(u64::MAX);
            let superseded = events
                .range(o + 1..=limit)
                .any(|(_, later)| later.key.as_ref() == Some(key));
            if !superseded {
                return Err(format!("offset {o} (key {key}) skipped but not superseded"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub events: u64,
    pub gaps: u64,
    pub resets: u64,
    pub publishes: u64,
    pub rejected_at_call: u64,
    pub dropped_batches: u64,
}

enum Decision {
    Auth(bool),
    Join(String),
    Published(String, Position, Vec<u8>),
}

fn decide_join(session: &mut ServerSession, hub: &Hub, room: &str) {
    if room == FORBIDDEN {
        let _ = session.deny(room);
    } else {
        let _ = session.allow(hub, room);
    }
}

fn feed_server(conn: &mut Conn, bytes: &[u8], now: Instant, hub: &Hub, events: &mut Vec<Decision>) {
    let mut handle = |session: &mut ServerSession, frame: &Frame<'_>, hub: &Hub| {
        session.handle_frame(now, frame, hub, &mut |e| match e {
            ServerEvent::Authenticate { token, .. } => {
                events.push(Decision::Auth(token == Some("good")))
            }
            ServerEvent::Authorize { room } => events.push(Decision::Join(room.to_string())),
            ServerEvent::Published {
                room,
                position,
                payload,
                ..
            } => events.push(Decision::Published(
                room.to_string(),
                position,
                payload.to_vec(),
            )),
            _ => {}
        });
    };
    match conn.transport {
        Transport::Binary | Transport::Json => {
            let decoded = if conn.transport == Transport::Binary {
                binary::decode(bytes, MAX_FRAME as usize)
            } else {
                json::decode(bytes, MAX_FRAME as usize)
            };
            match decoded {
                Ok(frame) => handle(&mut conn.session, &frame, hub),
                Err(e) => panic!("server could not decode a client frame: {e}"),
            }
        }
        Transport::Stream => {
            let mut rest = bytes;
            while !rest.is_empty() {
                let (item, tail) = conn.up_stream.feed(rest);
                if let Some(item) = item {
                    let frame = item.expect("client frames decode");
                    handle(&mut conn.session, &frame, hub);
                }
                rest = tail;
            }
        }
    }
}

fn encode(transport: Transport, frame: &Frame<'_>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match transport {
        Transport::Binary => binary::encode_into(frame, &mut out),
        Transport::Json => json::encode_into(frame, &mut out),
        Transport::Stream => {
            let mut buf = vec![0u8; 2 * MAX_FRAME as usize];
            let n = stream::encode(frame, &mut buf)
                .map_err(|e| e.to_string())?
                .len();
            out.extend_from_slice(&buf[..n]);
            Ok(())
        }
    }
    .map_err(|e| format!("encode {frame:?}: {e}"))?;
    Ok(out)
}

/// The room's head when a frame of it arrives (for the supersession check).
fn head_of(hub: &Hub, frame: &Frame<'_>) -> u64 {
    let room = match frame {
        Frame::Batch(b) => b.room,
        Frame::Event(e) => e.room,
        _ => return 0,
    };
    hub.room(room).map_or(0, |r| r.head().offset)
}

/// Records a client's application events.
struct Recorder<'r> {
    obs: &'r mut BTreeMap<String, Vec<Obs>>,
    acks: &'r mut BTreeMap<u64, Vec<Position>>,
    failed: &'r mut BTreeMap<u64, u16>,
    fatal: &'r mut Option<CloseCode>,
    head: u64,
}

impl Peer {
    /// The machine and a recorder of its events, borrowed apart. `head` is the room's head when
    /// the frame being handled arrived (for the supersession check).
    fn split(&mut self, head: u64) -> (&mut SimClient, Recorder<'_>) {
        let recorder = Recorder {
            obs: &mut self.obs,
            acks: &mut self.acks,
            failed: &mut self.failed,
            fatal: &mut self.fatal,
            head,
        };
        (&mut self.machine, recorder)
    }
}

impl Recorder<'_> {
    fn record(&mut self, e: ClientEvent<'_>) {
        match e {
            ClientEvent::Event {
                room,
                position,
                payload,
                ..
            } => self
                .obs
                .entry(room.to_string())
                .or_default()
                .push(Obs::Event {
                    position,
                    payload: payload.to_vec(),
                    head: self.head,
                }),
            ClientEvent::Gap { room, missed } => self
                .obs
                .entry(room.to_string())
                .or_default()
                .push(Obs::Gap(missed)),
            ClientEvent::Subscribed { room, position } => self
                .obs
                .entry(room.to_string())
                .or_default()
                .push(Obs::Subscribed(position)),
            ClientEvent::SubscribeFailed { room, .. } => self
                .obs
                .entry(room.to_string())
                .or_default()
                .push(Obs::Unsubscribed),
            ClientEvent::PublishAcked { id, position } => {
                self.acks.entry(id).or_default().push(position)
            }
            ClientEvent::PublishFailed { id, code } => {
                self.failed.insert(id, code.0);
            }
            ClientEvent::Closed { code, .. } => *self.fatal = Some(code.unwrap_or(CloseCode(0))),
            other => {
                if std::env::var_os("EVENTWIRE_SIM_TRACE").is_some() {
                    eprintln!("  event {other:?}");
                }
            }
        }
    }
}

/// Runs one seed; on a violation the message names the seed so it can be replayed.
pub fn run_seed(seed: u64, params: Params) -> Result<Stats, String> {
    let mut world = World::new(seed, params);
    world.run().map_err(|e| {
        let tail: Vec<&str> = world.log.lines().rev().take(10).collect();
        format!("seed {seed}: {e}\nlast notes: {tail:?}\nreplay: EVENTWIRE_SIM_SEED={seed} cargo test -p eventwire-core --test simulation replay")
    })
}

fn trace(frame: &Frame<'_>) -> String {
    match frame {
        Frame::Batch(b) => {
            let offs: Vec<u64> = b.events.iter().map(|e| e.offset).collect();
            format!("batch {} {} {:?}", b.room, b.epoch, offs)
        }
        other => format!("{other:?}").chars().take(160).collect(),
    }
}

/// The hub as the server application sets it up: its rooms declared at start, so that clients
/// (who may not create rooms) can join them before their first event.
fn declared(hub: Hub) -> Hub {
    for room in ROOMS {
        hub.ensure_room(room)
            .expect("the simulation's rooms are valid");
    }
    hub
}
