//! The `server_session` target: `eventwire_core::server::ServerSession` over a
//! `eventwire_core::hub::Hub`, driven by an arbitrary sequence of operations and checked after
//! every step against what its docs and `docs/PROTOCOL.md` promise a client.
//!
//! An operation is a frame from the client (hello, subscribe, unsubscribe, publish, ping, pong,
//! close, or one only servers send, built from arbitrary fields relative to the hub's rooms, or
//! raw bytes through a decoder), an emit into the hub (with or without a coalescing key), time
//! passing, an application decision (accept, reject, allow, deny, publish done), a drain of up to
//! N frames (the transport taking only part: backpressure), a server-side close, or a reconnect
//! (a new session of the same client on the same hub). The hub's history is small, so clients
//! fall behind it and get gaps.
//!
//! # Invariants checked
//! - Every frame sent validates, goes server to client, has a binary form and, for a JSON
//!   session, a JSON form (an event without one is announced as missed, not sent); each decodes
//!   back. Its encoding in the session's form fits the client's frame limit (the smaller of the
//!   server's and the hello's `max_frame`, at least 256).
//! - Nothing but a close goes out before the welcome (unless the client already closed), one
//!   welcome at most, and nothing after a close.
//! - A join answer's position is the client's `from` or the room's head when it was allowed.
//! - Per room, from the client's view: a batch or gap only for a room it was told it joined; a
//!   batch in the hub's epoch, of 1 to `max_batch` events (the smaller of the server's and the
//!   hello's), offsets strictly increasing and above everything sent or announced before (no
//!   event twice), each with the log's kind and payload; an offset skipped between deliveries is
//!   a superseded event, never a retained one that was simply dropped, and never an evicted one
//!   that the cursor had not passed as superseded (that takes a gap). A range gap starts after
//!   the last offset sent (past superseded events only, like a batch) and ends at most at the
//!   head; a reset only when the position held is void (another epoch, or past the head).
//! - Skips are judged where they happen: right after each batch or gap, the subscription's
//!   cursor is checked to have stepped past what the frame told the client over retained,
//!   superseded events only, and that cursor is kept as the room's *passed* offset. An offset up
//!   to it is one the client may miss without a gap even once it is evicted (it was superseded
//!   by a newer event of its key, which the client gets or hears of in a gap); an evicted offset
//!   after it must be announced by a gap before any later batch of the room.
//! - A publish acknowledged twice (a retry) gets the same position, across sessions too.
//! - `queued()` is at most `CONTROL_CAPACITY`; at most `max_subscriptions` subscriptions; each
//!   subscription's cursor is, once the control queue is drained, exactly its passed offset (what
//!   the client was last told, or past it over superseded events only): a cursor moves only with
//!   a frame.
//! - A close action only when closed; no deadline when closed; after `handle_timeout` and a full
//!   drain the deadline is in the future (a due flush is always served: no busy loop).
//! - Stats count exactly the frames, events, gaps sent and frames received.

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_core::codec::{binary, json, Codec};
use eventwire_core::dedup::DedupConfig;
use eventwire_core::frame::Seq;
use eventwire_core::frame::{
    Close, Frame, Hello, Missed, Ping, Position, Publish, Resume, Subscribe, Unsubscribe, Welcome,
};
use eventwire_core::history::HistoryConfig;
use eventwire_core::hub::{Hub, HubConfig, Room};
use eventwire_core::payload::Payload;
use eventwire_core::server::{
    Grants, PublishMode, ServerConfig, ServerEvent, ServerSession, SessionState, CONTROL_CAPACITY,
};
use eventwire_core::text::MAX_SAFE_INTEGER;
use eventwire_core::time::Instant;

use super::ops::{self, variant, Advance, Bytes, Encode, Via};

/// Sizes and timings of the session and the hub, read first.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub struct Setup {
    /// The hub's epoch.
    pub epoch: u32,
    /// Seed of the sessions' nonces.
    pub seed: u64,
    /// `max_subscriptions`, 0 to 4.
    pub max_subscriptions: u8,
    /// `max_batch`, 0 to 15 (0 is taken as 1).
    pub max_batch: u8,
    /// `max_frame` above 256.
    pub max_frame: u16,
    /// `publish_rate`, 0 to 15 per second.
    pub publish_rate: u8,
    /// `rate_strikes`, 0 to 7.
    pub rate_strikes: u8,
    /// Publishes applied by the application instead of the session.
    pub app_publishes: bool,
    /// Batch interval in milliseconds.
    pub batch_ms: u16,
    /// Metrics interval in milliseconds.
    pub metrics_ms: u16,
    /// History per room: 1 to 16 events.
    pub history_events: u8,
    /// History per room: 0 to 4095 bytes.
    pub history_bytes: u16,
    /// History age limit in milliseconds, if any.
    pub history_age_ms: Option<u16>,
    /// Whether the logs keep JSON forms.
    pub json_form: bool,
    /// Most rooms of the hub, 1 to 4.
    pub max_rooms: u8,
    /// Whether the session speaks JSON.
    pub json: bool,
    /// What the sessions may publish, modulo 3: every room; the first room of the operations'
    /// table and the `agent:` prefix; nothing.
    pub grants: u8,
}

impl Encode for Setup {
    fn encode(&self, out: &mut Vec<u8>) {
        self.epoch.encode(out);
        self.seed.encode(out);
        self.max_subscriptions.encode(out);
        self.max_batch.encode(out);
        self.max_frame.encode(out);
        self.publish_rate.encode(out);
        self.rate_strikes.encode(out);
        self.app_publishes.encode(out);
        self.batch_ms.encode(out);
        self.metrics_ms.encode(out);
        self.history_events.encode(out);
        self.history_bytes.encode(out);
        self.history_age_ms.encode(out);
        self.json_form.encode(out);
        self.max_rooms.encode(out);
        self.json.encode(out);
        self.grants.encode(out);
    }
}

/// An epoch relative to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum EpochSel {
    /// The hub's.
    Hub,
    /// Any.
    Other(u32),
}

/// An offset relative to the room's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum OffsetSel {
    /// The head minus this.
    Head(u8),
    /// Before the oldest retained event, minus this.
    Oldest(u8),
    /// Past the head by one plus this.
    Ahead(u8),
    /// Any (masked to 2^53 - 1).
    Abs(u64),
}

/// A position relative to the room's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub struct PosSel {
    /// The epoch.
    pub epoch: EpochSel,
    /// The offset.
    pub offset: OffsetSel,
}

/// A publish id relative to the client's previous publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum IdSel {
    /// The next new id.
    Next,
    /// One sent before (by index, modulo their number; 1 if none): a retry.
    Retry(u8),
    /// Any (masked to 2^53 - 1).
    Abs(u64),
}

/// A well-formed frame from the client, built relative to the hub.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum ClientFrame {
    /// A hello of client `client % 4`, resuming the rooms listed.
    Hello {
        client: u8,
        version: u8,
        token: bool,
        max_frame: u16,
        max_batch: u8,
        rooms: Vec<(u8, Option<PosSel>)>,
    },
    /// A subscribe.
    Subscribe { room: u8, from: Option<PosSel> },
    /// An unsubscribe.
    Unsubscribe { room: u8 },
    /// A publish.
    Publish {
        room: u8,
        id: IdSel,
        kind: u8,
        payload: u8,
    },
    /// A ping.
    Ping { nonce: u32 },
    /// A pong, with the nonce of the session's last ping or any.
    Pong { echo: bool, nonce: u32 },
    /// A close.
    Close { code: u16 },
    /// A welcome, which only servers send.
    Stray,
}

/// One step of the scenario.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum Op {
    /// A frame from the client built from fields.
    Client { frame: ClientFrame, via: Via },
    /// A message from the client as raw bytes, decoded in the binary or JSON form with the
    /// server's frame limit; fed if it decodes.
    Raw { json: bool, bytes: Bytes },
    /// `Hub::emit`.
    Emit {
        room: u8,
        kind: u8,
        payload: u8,
        key: Option<u8>,
    },
    /// Time passes, then `Hub::expire` and `handle_timeout`; with `drain`, everything is sent.
    Advance { by: Advance, drain: bool },
    /// `accept`.
    Accept,
    /// `reject`.
    Reject,
    /// `allow` of a room the session asked about (by index).
    Allow(u8),
    /// `deny` of a room the session asked about (by index).
    Deny(u8),
    /// `publish_done` of a publish handed to the application (by index): applied to the hub, or
    /// refused.
    PublishDone { index: u8, ok: bool },
    /// `poll_transmit` up to this many times: the transport takes only so much.
    Drain(u8),
    /// `close` from the server side.
    Close,
    /// The connection is replaced by a new session on the same hub (the client reconnects).
    Reconnect,
}

/// The input of the `server_session` target.
pub type Input = ops::Scenario<Setup, Op>;

/// Runs one raw input of the `server_session` target; returns the number of events sent in batches (so the
/// stable replay can check that the seeds reach that far).
pub fn run(data: &[u8]) -> u64 {
    let (setup, ops) = ops::ops::<Setup, Op>(data);
    run_scenario(&ops::Scenario { setup, ops })
}

/// Runs one scenario of the `server_session` target; returns the number of events sent in batches.
pub fn run_scenario(input: &Input) -> u64 {
    let mut h = Harness::new(&input.setup);
    for op in &input.ops {
        h.step(op);
    }
    h.delivered + h.view.events_out
}

/// What the client has been told, per session.
#[derive(Debug, Default)]
struct View {
    welcomed: bool,
    /// A close frame was sent.
    closed: bool,
    /// The client sent a close.
    peer_closed: bool,
    /// Rooms the client was told it joined, with the last position sent or announced.
    joined: BTreeMap<String, Position>,
    /// Per joined room, the offset the session's cursor was verified to have reached, in the
    /// epoch of `joined`: at least the offset there, and every offset between the two was a
    /// retained, superseded event when the cursor stepped over it (checked right after the read
    /// that did, before anything could change the log; see `Harness::passed_over`). The client
    /// is entitled to have skipped those without a gap, even once they are evicted, so a batch
    /// or gap is checked against this position, not against `joined` alone.
    passed: BTreeMap<String, u64>,
    /// Positions a join answer of a room may carry: the `from`s asked, and the heads at allow.
    answers: BTreeMap<String, BTreeSet<(u32, u64)>>,
    max_frame: usize,
    max_batch: usize,
    client_id: u64,
    frames_out: u64,
    events_out: u64,
    gaps: u64,
    frames_in: u64,
    /// Rooms the session asked the application to authorise.
    authorize: Vec<String>,
    /// Publishes handed to the application: (id, room, kind, payload).
    publishes: Vec<(u64, String, String, Vec<u8>)>,
    last_ping: Option<u64>,
}

struct Harness {
    /// What every session of the run may publish.
    grants: Grants,
    hub: Hub,
    session: ServerSession,
    config: ServerConfig,
    seed: u64,
    json: bool,
    sessions: u64,
    now: Instant,
    view: View,
    /// Acknowledged publishes across sessions: (client, id) -> position.
    acks: BTreeMap<(u64, u64), Position>,
    next_id: u64,
    sent_ids: Vec<u64>,
    /// Events sent in batches, over every session.
    delivered: u64,
}

impl Harness {
    fn new(s: &Setup) -> Self {
        let config = ServerConfig::new()
            .max_subscriptions(u16::from(s.max_subscriptions % 5))
            .max_batch(u16::from(s.max_batch % 16))
            .max_frame(256 + u32::from(s.max_frame))
            .publish_rate(u16::from(s.publish_rate % 16))
            .intervals(
                std::time::Duration::from_millis(u64::from(s.batch_ms)),
                std::time::Duration::from_millis(u64::from(s.metrics_ms)),
            )
            .publish_mode(if s.app_publishes {
                PublishMode::Application
            } else {
                PublishMode::AppendToRoom
            });
        let config = ServerConfig {
            rate_strikes: u32::from(s.rate_strikes % 8),
            ..config
        };
        let history = HistoryConfig::new()
            .max_events(usize::from(s.history_events % 16) + 1)
            .max_bytes(usize::from(s.history_bytes % 4096))
            .max_age(
                s.history_age_ms
                    .map(|ms| std::time::Duration::from_millis(u64::from(ms))),
            )
            .json_form(s.json_form);
        let hub = Hub::new(
            s.epoch,
            HubConfig::new()
                .history(history)
                .max_rooms(usize::from(s.max_rooms % 4) + 1)
                // Few clients and a short window: forgetting (LRU) and out-of-window ids happen,
                // and the window is allocated per input cheaply.
                .dedup(DedupConfig::new().clients(3).window(8)),
        );
        let grants = match s.grants % 4 {
            0 => Grants::publish_any().create_any(),
            1 => match Grants::publish_to([ops::ROOMS[0], "agent:*"])
                .and_then(|g| g.create_rooms(["agent:*"]))
            {
                Ok(g) => g,
                Err(e) => panic!("the operations' first room is not a grant: {e}"),
            },
            2 => Grants::publish_any(),
            _ => Grants::none(),
        };
        let mut h = Harness {
            grants,
            hub,
            session: ServerSession::new(Instant::ZERO, config, 0, s.seed),
            config,
            seed: s.seed,
            json: s.json,
            sessions: 0,
            now: Instant::ZERO,
            view: View::default(),
            acks: BTreeMap::new(),
            next_id: 1,
            sent_ids: Vec::new(),
            delivered: 0,
        };
        h.open_session();
        h
    }

    fn open_session(&mut self) {
        self.delivered += self.view.events_out;
        self.sessions += 1;
        self.session = ServerSession::new(
            self.now,
            self.config,
            self.sessions,
            self.seed.wrapping_add(self.sessions),
        );
        self.session.grant(self.grants.clone());
        if self.json {
            self.session.set_codec(Codec::Json);
        }
        self.view = View {
            max_frame: self.config.max_frame as usize,
            max_batch: usize::from(self.config.max_batch.max(1)),
            ..View::default()
        };
    }

    fn step(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Client { frame, via } => {
                let mut store = Vec::new();
                let frame = self.build(frame, &mut store);
                // Decoders hand out only valid frames; a built one may break a list limit.
                if frame.validate().is_ok() {
                    ops::feed_via(&frame, *via, |f| self.feed(f));
                }
            }
            Op::Raw { json, bytes } => {
                let max = self.config.max_frame as usize;
                let decoded = if *json {
                    json::decode(&bytes.0, max)
                } else {
                    binary::decode(&bytes.0, max)
                };
                if let Ok(frame) = decoded {
                    self.feed(&frame);
                }
            }
            Op::Emit {
                room,
                kind,
                payload,
                key,
            } => {
                let _ = self.hub.emit(
                    now,
                    ops::room(*room),
                    ops::kind(*kind),
                    ops::payload(*payload),
                    key.map(ops::key),
                );
            }
            Op::Advance { by, drain } => {
                self.now = by.apply(now, self.session.poll_timeout());
                let now = self.now;
                self.hub.expire(now);
                let mut events = Vec::new();
                self.session
                    .handle_timeout(now, &mut |e| events.push(owned(&e)));
                self.seen(&events);
                if *drain {
                    self.drain(usize::MAX);
                    if let Some(at) = self.session.poll_timeout() {
                        assert!(
                            at > now,
                            "deadline {at} not after now {now} once timers fired and all was sent \
                             (state {:?})",
                            self.session.state()
                        );
                    }
                }
            }
            Op::Accept => {
                let before = self.session.state();
                let mut events = Vec::new();
                let r = self.session.accept(now, &mut |e| events.push(owned(&e)));
                assert_eq!(
                    r.is_ok(),
                    before == SessionState::AwaitAuth,
                    "accept: {r:?}"
                );
                self.seen(&events);
            }
            Op::Reject => {
                let before = self.session.state();
                let r = self.session.reject(CloseCode::UNAUTHORIZED, "fuzz");
                assert_eq!(
                    r.is_ok(),
                    before == SessionState::AwaitAuth,
                    "reject: {r:?}"
                );
                if r.is_ok() {
                    assert_eq!(self.session.state(), SessionState::Closed);
                }
            }
            Op::Allow(i) | Op::Deny(i) => {
                if self.view.authorize.is_empty() {
                    return self.check();
                }
                let n = self.view.authorize.len();
                let room = self.view.authorize[usize::from(*i) % n].clone();
                let head = self
                    .hub
                    .room(&room)
                    .map_or(Position::new(self.hub.epoch(), 0), |r| r.head());
                let r = if matches!(op, Op::Allow(_)) {
                    self.session.allow(&self.hub, &room)
                } else {
                    self.session.deny(&room)
                };
                if r.is_ok() {
                    self.view
                        .answers
                        .entry(room)
                        .or_default()
                        .insert((head.epoch, head.offset));
                }
            }
            Op::PublishDone { index, ok } => {
                if self.view.publishes.is_empty() {
                    return self.check();
                }
                let n = self.view.publishes.len();
                let (id, room, kind, payload) = self.view.publishes.remove(usize::from(*index) % n);
                let result = if *ok {
                    self.hub
                        .emit(now, &room, &kind, &payload, None)
                        .map_err(|_| ErrorCode::PUBLISH_REJECTED)
                } else {
                    Err(ErrorCode::PUBLISH_REJECTED)
                };
                let r = self.session.publish_done(&self.hub, now, id, result);
                assert_eq!(
                    r,
                    Ok(()),
                    "publish_done of publish {id} handed to the application"
                );
            }
            Op::Drain(n) => self.drain(usize::from(*n)),
            Op::Close => {
                self.session.close(CloseCode::GOING_AWAY, None, "fuzz");
                assert_eq!(self.session.state(), SessionState::Closed);
            }
            Op::Reconnect => self.open_session(),
        }
        self.check();
    }

    /// Feeds one decoded frame, keeping the view of what the client asked.
    fn feed(&mut self, frame: &Frame<'_>) {
        let now = self.now;
        let before = self.session.state();
        if before != SessionState::Closed {
            self.view.frames_in += 1;
        }
        match frame {
            Frame::Hello(h) if before == SessionState::AwaitHello && h.version != 0 => {
                self.view.client_id = h.client_id;
                self.view.max_frame = (self.config.max_frame.min(h.max_frame.max(256))) as usize;
                self.view.max_batch = usize::from(self.config.max_batch.min(h.max_batch).max(1));
                for r in h.rooms.iter() {
                    if let Some(p) = r.from {
                        self.view
                            .answers
                            .entry(r.room.to_string())
                            .or_default()
                            .insert((p.epoch, p.offset));
                    }
                }
            }
            Frame::Subscribe(s) if before == SessionState::Open => {
                if let Some(p) = s.from {
                    self.view
                        .answers
                        .entry(s.room.to_string())
                        .or_default()
                        .insert((p.epoch, p.offset));
                }
            }
            Frame::Unsubscribe(u) if before == SessionState::Open => {
                self.view.joined.remove(u.room);
                self.view.passed.remove(u.room);
            }
            Frame::Publish(p) => self.sent_ids.push(p.id),
            Frame::Close(_) if before != SessionState::Closed => self.view.peer_closed = true,
            _ => {}
        }
        let mut events = Vec::new();
        self.session
            .handle_frame(now, frame, &self.hub, &mut |e| events.push(owned(&e)));
        self.seen(&events);
    }

    /// Takes in what the session asked of the application.
    fn seen(&mut self, events: &[Owned]) {
        for e in events {
            match e {
                Owned::Authorize(room) => {
                    if !self.view.authorize.contains(room) {
                        self.view.authorize.push(room.clone());
                    }
                }
                Owned::Publish(id, room, kind, payload) => {
                    assert!(
                        self.grants.may_publish(room),
                        "a publish into {room}, outside the grants, was handed over"
                    );
                    assert!(
                        !self.view.publishes.iter().any(|p| p.0 == *id),
                        "publish {id} handed to the application twice"
                    );
                    self.view
                        .publishes
                        .push((*id, room.clone(), kind.clone(), payload.clone()));
                }
                Owned::Refused(room) => assert!(
                    !self.grants.may_publish(room)
                        || (self.hub.room(room).is_none() && !self.grants.may_create(room)),
                    "a publish into {room}, which the grants allow, was refused"
                ),
                Owned::Published(room, position, kind, payload) => {
                    assert!(
                        self.grants.may_publish(room),
                        "a publish into {room}, outside the grants, was appended"
                    );
                    let handle = self.hub.room(room);
                    let Some(log) = handle.as_deref().map(Room::log) else {
                        panic!("published into {room}, which the hub does not have");
                    };
                    let mut found = None;
                    let _ = log.read(position.offset.saturating_sub(1), 1, usize::MAX, |e| {
                        found = Some((e.offset, e.kind.to_string(), e.payload.to_vec()))
                    });
                    assert_eq!(
                        found,
                        Some((position.offset, kind.clone(), payload.clone())),
                        "a published event is not in its room at {position}"
                    );
                }
                Owned::Other => {}
            }
        }
    }

    /// `poll_transmit` up to `max` times, checking each frame, then `poll_action`.
    fn drain(&mut self, max: usize) {
        self.drain_with(max, |_| {});
    }

    /// [`Harness::drain`], showing each frame to `seen` once it passed its checks.
    fn drain_with(&mut self, max: usize, mut seen: impl FnMut(&Frame<'_>)) {
        let now = self.now;
        let mut n = 0;
        while n < max {
            let Some(frame) = self.session.poll_transmit(now) else {
                break;
            };
            n += 1;
            assert!(n < 100_000, "poll_transmit never returns None");
            let read = check_out(&frame, &self.hub, self.json, &mut self.view, &mut self.acks);
            seen(&frame);
            if let Some(room) = read {
                self.passed_over(&room);
            }
        }
        if let Some(code) = self.session.poll_action() {
            assert_eq!(
                self.session.state(),
                SessionState::Closed,
                "close action {code:?} while not closed"
            );
        }
    }

    /// Right after a batch or gap of `room` (the only frames a read of the log makes, and the
    /// only way a cursor moves apart from a join answer): the session's cursor may have stepped
    /// past what the frame told the client, over superseded events only. That is checked now,
    /// while the log is as the read saw it (nothing changes it within a drain), and the cursor is
    /// recorded as the position the client is entitled to have skipped to without a gap.
    fn passed_over(&mut self, room: &str) {
        let Some(&told) = self.view.joined.get(room) else {
            panic!("a batch or gap of {room}, which the client was not told it joined");
        };
        let cursor = self
            .session
            .subscriptions()
            .find(|(r, _)| *r == room)
            .map(|(_, c)| c);
        let Some(cursor) = cursor else {
            panic!("a batch or gap of {room}, which the session does not hold");
        };
        let handle = self.hub.room(room);
        let Some(log) = handle.as_deref().map(Room::log) else {
            panic!("a batch or gap of {room}, which the hub does not have");
        };
        let passed = cursor_passed(&log, room, told, cursor);
        self.view.passed.insert(room.to_string(), passed);
    }

    fn check(&self) {
        let s = &self.session;
        assert!(
            s.queued() <= CONTROL_CAPACITY,
            "control queue over its capacity"
        );
        let subs: Vec<(&str, Position)> = s.subscriptions().collect();
        assert!(
            subs.len() <= usize::from(self.config.max_subscriptions),
            "{} subscriptions, limit {}",
            subs.len(),
            self.config.max_subscriptions
        );
        if s.queued() == 0 && s.state() == SessionState::Open {
            // Every join answer went out: each cursor is what the client was told, or past it
            // over superseded events only, exactly where `passed_over` verified it after the
            // frame that moved it (a cursor moves only with a frame).
            for (room, cursor) in &subs {
                let told = self.view.joined.get(*room);
                let Some(told) = told.filter(|t| t.epoch == cursor.epoch) else {
                    panic!(
                        "the cursor {cursor} of {room} is not what the client was told: {told:?}"
                    );
                };
                let passed = self.view.passed.get(*room);
                assert_eq!(
                    Some(&cursor.offset),
                    passed,
                    "the cursor {cursor} of {room} is not where it was verified to be after the \
                     last frame (told {told}): it moved without a frame"
                );
            }
        }
        let stats = s.stats();
        assert_eq!(stats.frames_out, self.view.frames_out, "stats.frames_out");
        assert_eq!(stats.events_out, self.view.events_out, "stats.events_out");
        assert_eq!(stats.gaps, self.view.gaps, "stats.gaps");
        assert_eq!(stats.frames_in, self.view.frames_in, "stats.frames_in");
        if s.state() == SessionState::Closed {
            assert_eq!(s.poll_timeout(), None, "a deadline once closed");
        } else {
            assert!(
                s.poll_timeout().is_some(),
                "no deadline while {:?}",
                s.state()
            );
        }
    }

    /// Builds a client frame from its fields and the hub's rooms. Hello rooms go to `store`.
    fn build<'s>(&mut self, f: &ClientFrame, store: &'s mut Vec<Resume<'static>>) -> Frame<'s> {
        let hub = &self.hub;
        let pos_of = |room: &str, p: PosSel| {
            let handle = hub.room(room);
            let head = handle.as_ref().map_or(0, |r| r.head().offset);
            let oldest = handle.as_ref().map_or(1, |r| r.log().oldest());
            let offset = match p.offset {
                OffsetSel::Head(n) => head.saturating_sub(u64::from(n)),
                OffsetSel::Oldest(n) => (oldest - 1).saturating_sub(u64::from(n)),
                OffsetSel::Ahead(n) => head + 1 + u64::from(n),
                OffsetSel::Abs(o) => o,
            };
            let epoch = match p.epoch {
                EpochSel::Hub => hub.epoch(),
                EpochSel::Other(e) => e,
            };
            Position::new(epoch, offset & MAX_SAFE_INTEGER)
        };
        match f {
            ClientFrame::Hello {
                client,
                version,
                token,
                max_frame,
                max_batch,
                rooms,
            } => {
                for &(room, from) in rooms {
                    let room = ops::valid_room(room);
                    store.push(Resume {
                        room,
                        from: from.map(|p| pos_of(room, p)),
                    });
                }
                Frame::Hello(Hello {
                    version: u16::from(*version % 3),
                    client_id: u64::from(*client % 4) + 1,
                    token: token.then_some("eyJhbGciOiJIUzI1NiJ9.e30.sig-_"),
                    max_frame: u32::from(*max_frame),
                    max_batch: u16::from(*max_batch),
                    rooms: Seq::from_slice(store),
                })
            }
            ClientFrame::Subscribe { room, from } => {
                let room = ops::valid_room(*room);
                Frame::Subscribe(Subscribe {
                    room,
                    from: from.map(|p| pos_of(room, p)),
                })
            }
            ClientFrame::Unsubscribe { room } => Frame::Unsubscribe(Unsubscribe {
                room: ops::valid_room(*room),
            }),
            ClientFrame::Publish {
                room,
                id,
                kind,
                payload,
            } => {
                let id = match *id {
                    IdSel::Next => {
                        self.next_id += 1;
                        self.next_id - 1
                    }
                    IdSel::Retry(i) if !self.sent_ids.is_empty() => {
                        self.sent_ids[usize::from(i) % self.sent_ids.len()]
                    }
                    IdSel::Retry(_) => 1,
                    IdSel::Abs(id) => id & MAX_SAFE_INTEGER,
                };
                Frame::Publish(Publish {
                    room: ops::valid_room(*room),
                    id,
                    // Valid kinds only: a frame must validate.
                    kind: ops::kind(*kind % 3),
                    payload: Payload(ops::payload(*payload)),
                })
            }
            ClientFrame::Ping { nonce } => Frame::Ping(Ping {
                nonce: u64::from(*nonce),
            }),
            ClientFrame::Pong { echo, nonce } => Frame::Pong(Ping {
                nonce: match (echo, self.view.last_ping) {
                    (true, Some(n)) => n,
                    _ => u64::from(*nonce),
                },
            }),
            ClientFrame::Close { code } => Frame::Close(Close {
                code: CloseCode(*code),
                retry_after_ms: None,
                reason: "",
            }),
            ClientFrame::Stray => Frame::Welcome(Welcome {
                version: 1,
                session_id: 1,
                heartbeat_ms: 1000,
                max_frame: 1024,
                max_subscriptions: 1,
                publish_rate: 1,
            }),
        }
    }
}

/// A sink event, owned.
#[derive(Debug)]
enum Owned {
    Authorize(String),
    Publish(u64, String, String, Vec<u8>),
    Published(String, Position, String, Vec<u8>),
    Refused(String),
    Other,
}

fn owned(e: &ServerEvent<'_>) -> Owned {
    match *e {
        ServerEvent::Authorize { room } => Owned::Authorize(room.to_string()),
        ServerEvent::Publish {
            room,
            id,
            kind,
            payload,
        } => Owned::Publish(id, room.to_string(), kind.to_string(), payload.to_vec()),
        ServerEvent::Published {
            room,
            position,
            kind,
            payload,
        } => Owned::Published(
            room.to_string(),
            position,
            kind.to_string(),
            payload.to_vec(),
        ),
        ServerEvent::PublishRefused { room, .. } => Owned::Refused(room.to_string()),
        _ => Owned::Other,
    }
}

/// Checks one frame the session sent against the client's view, and updates the view. Returns
/// the room of a batch or gap (a frame made by reading the room's log), whose cursor the caller
/// then checks with `cursor_passed`.
fn check_out(
    frame: &Frame<'_>,
    hub: &Hub,
    json_session: bool,
    view: &mut View,
    acks: &mut BTreeMap<(u64, u64), Position>,
) -> Option<String> {
    view.frames_out += 1;
    let (bin, text) = ops::check_sent(frame, false, json_session);
    let size = match (json_session, &text) {
        (true, Some(text)) => text.len(),
        _ => bin.len(),
    };
    assert!(
        size <= view.max_frame,
        "a {}-byte frame for a client that takes {}: {frame:?}",
        size,
        view.max_frame
    );
    assert!(!view.closed, "{frame:?} sent after the close frame");
    if matches!(frame, Frame::Close(_)) {
        view.closed = true;
    }
    // Once the client closed, what still goes out (what was queued before) reaches no one.
    if !view.welcomed && !view.peer_closed {
        assert!(
            matches!(frame, Frame::Welcome(_) | Frame::Close(_)),
            "{frame:?} sent before the welcome: a client takes nothing else before it"
        );
    }
    match frame {
        Frame::Welcome(_) => {
            assert!(!view.welcomed, "a second welcome");
            view.welcomed = true;
            None
        }
        Frame::Subscribed(s) => {
            let allowed = view.answers.get(s.room);
            assert!(
                allowed.is_some_and(|a| a.contains(&(s.position.epoch, s.position.offset))),
                "join answer {} of {} is neither a `from` asked nor the head at allow ({allowed:?})",
                s.position,
                s.room
            );
            view.joined.insert(s.room.to_string(), s.position);
            view.passed.insert(s.room.to_string(), s.position.offset);
            None
        }
        Frame::Batch(b) => {
            let Some(&at) = view.joined.get(b.room) else {
                panic!(
                    "a batch of {}, which the client was not told it joined",
                    b.room
                );
            };
            let handle = hub.room(b.room);
            let Some(log) = handle.as_deref().map(Room::log) else {
                panic!("a batch of {}, which the hub does not have", b.room);
            };
            assert_eq!(
                b.epoch,
                hub.epoch(),
                "a batch of another epoch than the hub's"
            );
            assert_eq!(
                b.epoch, at.epoch,
                "a batch of {} in epoch {} without a reset from {at}",
                b.room, b.epoch
            );
            // Where the client may be without a gap: after `at`, or past superseded events
            // verified when the cursor stepped over them, which may be evicted since (the
            // protocol lets a client miss those). Anything evicted after that must be a gap.
            let passed = passed_since(view, b.room, at);
            assert!(
                passed + 1 >= log.oldest(),
                "a batch of {} after {at} (past superseded events up to {passed}), behind the \
                 history (oldest {}), without a gap",
                b.room,
                log.oldest()
            );
            let events: Vec<_> = b.events.iter().collect();
            assert!(
                !events.is_empty() && events.len() <= view.max_batch,
                "a batch of {} events for a client that takes {}",
                events.len(),
                view.max_batch
            );
            let mut prev = at.offset;
            for e in &events {
                assert!(
                    e.offset > prev,
                    "offset {} of {} after {prev}: sent twice or out of order",
                    e.offset,
                    b.room
                );
                assert!(
                    e.offset <= log.head().offset,
                    "offset {} past the head",
                    e.offset
                );
                only_superseded(&log, b.room, prev.max(passed), e.offset);
                let mut entry = None;
                let _ = log.read(e.offset - 1, 1, usize::MAX, |x| {
                    entry = Some((x.offset, x.kind, x.payload))
                });
                assert_eq!(
                    entry,
                    Some((e.offset, e.kind, e.payload.0)),
                    "the batch's event differs from the log's"
                );
                prev = e.offset;
            }
            if let Some(text) = &text {
                // The JSON form carries the same events (the log's JSON forms, copied).
                let Ok(Frame::Batch(j)) = json::decode(text, usize::MAX) else {
                    panic!("the JSON form of a batch is not a batch");
                };
                let from_json: Vec<_> = j.events.iter().map(|e| (e.offset, e.kind)).collect();
                let from_bin: Vec<_> = events.iter().map(|e| (e.offset, e.kind)).collect();
                assert_eq!(
                    from_json, from_bin,
                    "the JSON form of a batch has other events"
                );
                for (je, be) in j.events.iter().zip(&events) {
                    assert_eq!(
                        je.payload.0,
                        be.payload.0.trim_ascii(),
                        "the JSON form of an event has another payload"
                    );
                }
            }
            view.events_out += events.len() as u64;
            view.joined
                .insert(b.room.to_string(), Position::new(b.epoch, prev));
            view.passed.insert(b.room.to_string(), prev);
            Some(b.room.to_string())
        }
        Frame::Gap(g) => {
            view.gaps += 1;
            let Some(&at) = view.joined.get(g.room) else {
                panic!(
                    "a gap of {}, which the client was not told it joined",
                    g.room
                );
            };
            let handle = hub.room(g.room);
            let Some(log) = handle.as_deref().map(Room::log) else {
                panic!("a gap of {}, which the hub does not have", g.room);
            };
            let head = log.head();
            let to = match g.missed {
                Missed::Range { epoch, first, last } => {
                    assert_eq!(epoch, at.epoch, "a range gap of another epoch than {at}");
                    assert!(
                        first > at.offset,
                        "a range gap from {first}, not after {at}"
                    );
                    let passed = passed_since(view, g.room, at);
                    only_superseded(&log, g.room, at.offset.max(passed), first);
                    assert!(last <= head.offset, "a range gap past the head {head}");
                    Position::new(epoch, last)
                }
                Missed::Reset { position } => {
                    assert!(
                        at.epoch != head.epoch || at.offset > head.offset,
                        "a reset of {} while its position {at} is valid (head {head})",
                        g.room
                    );
                    assert_eq!(position.epoch, head.epoch, "a reset to another epoch");
                    assert!(position.offset <= head.offset, "a reset past the head");
                    position
                }
            };
            view.joined.insert(g.room.to_string(), to);
            view.passed.insert(g.room.to_string(), to.offset);
            Some(g.room.to_string())
        }
        Frame::PublishAck(a) => {
            let first = *acks.entry((view.client_id, a.id)).or_insert(a.position);
            assert_eq!(
                first, a.position,
                "publish {} of client {} acknowledged at two positions",
                a.id, view.client_id
            );
            None
        }
        Frame::Ping(p) => {
            view.last_ping = Some(p.nonce);
            None
        }
        _ => None,
    }
}

/// The offset up to which the client of `room`, told `at`, may have skipped superseded events
/// without a gap: what `cursor_passed` verified after the last frame of the room (never less
/// than `at`).
fn passed_since(view: &View, room: &str, at: Position) -> u64 {
    view.passed
        .get(room)
        .map_or(at.offset, |&p| p.max(at.offset))
}

/// Checks a subscription's `cursor` right after a read of `room` told the client `told`: in the
/// same epoch, not behind it, and past it over retained, superseded events only (an event still
/// to be sent, or an evicted one, would be lost without a gap). Returns the offset the client is
/// now entitled to have skipped to.
fn cursor_passed(
    log: &eventwire_core::history::RoomLog,
    room: &str,
    told: Position,
    cursor: Position,
) -> u64 {
    assert_eq!(
        cursor.epoch, told.epoch,
        "the cursor {cursor} of {room} is in another epoch than what the client was told ({told})"
    );
    assert!(
        cursor.offset >= told.offset,
        "the cursor {cursor} of {room} is behind what the client was told ({told})"
    );
    for o in told.offset + 1..=cursor.offset {
        assert!(
            o >= log.oldest(),
            "the cursor {cursor} of {room} passed {o}, out of the history, without a gap \
             (told {told})"
        );
        let mut visited = None;
        let _ = log.read(o - 1, 1, usize::MAX, |e| visited = Some(e.offset));
        assert_ne!(
            visited,
            Some(o),
            "the cursor {cursor} of {room} passed {o}, which was not sent (told {told})"
        );
    }
    cursor.offset
}

/// Checks that the offsets strictly between `after` and `next` of `room`, skipped without a gap,
/// are superseded events (a newer one with the same key was sent or is to come) and not events
/// still to be sent; an evicted one cannot be skipped (the log reports the loss as a gap).
fn only_superseded(log: &eventwire_core::history::RoomLog, room: &str, after: u64, next: u64) {
    for skipped in after + 1..next {
        assert!(
            skipped >= log.oldest(),
            "offset {skipped} of {room}, out of the history, skipped without a gap"
        );
        let mut visited = None;
        let _ = log.read(skipped - 1, 1, usize::MAX, |x| visited = Some(x.offset));
        assert_ne!(
            visited,
            Some(skipped),
            "offset {skipped} of {room} skipped without a gap, and it is not superseded"
        );
    }
}

impl Encode for EpochSel {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            EpochSel::Hub => variant(out, 0, 2),
            EpochSel::Other(e) => {
                variant(out, 1, 2);
                e.encode(out);
            }
        }
    }
}

impl Encode for OffsetSel {
    fn encode(&self, out: &mut Vec<u8>) {
        let (i, v) = match self {
            OffsetSel::Head(n) => (0, u64::from(*n)),
            OffsetSel::Oldest(n) => (1, u64::from(*n)),
            OffsetSel::Ahead(n) => (2, u64::from(*n)),
            OffsetSel::Abs(o) => (3, *o),
        };
        variant(out, i, 4);
        if i == 3 {
            v.encode(out);
        } else {
            (v as u8).encode(out);
        }
    }
}

impl Encode for PosSel {
    fn encode(&self, out: &mut Vec<u8>) {
        self.epoch.encode(out);
        self.offset.encode(out);
    }
}

impl Encode for IdSel {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            IdSel::Next => variant(out, 0, 3),
            IdSel::Retry(i) => {
                variant(out, 1, 3);
                i.encode(out);
            }
            IdSel::Abs(id) => {
                variant(out, 2, 3);
                id.encode(out);
            }
        }
    }
}

impl Encode for ClientFrame {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 8;
        match self {
            ClientFrame::Hello {
                client,
                version,
                token,
                max_frame,
                max_batch,
                rooms,
            } => {
                variant(out, 0, N);
                client.encode(out);
                version.encode(out);
                token.encode(out);
                max_frame.encode(out);
                max_batch.encode(out);
                // A `Vec` reads as: before each element an odd byte, then an even one to end.
                for (room, from) in rooms {
                    out.push(1);
                    room.encode(out);
                    from.encode(out);
                }
                out.push(0);
            }
            ClientFrame::Subscribe { room, from } => {
                variant(out, 1, N);
                room.encode(out);
                from.encode(out);
            }
            ClientFrame::Unsubscribe { room } => {
                variant(out, 2, N);
                room.encode(out);
            }
            ClientFrame::Publish {
                room,
                id,
                kind,
                payload,
            } => {
                variant(out, 3, N);
                room.encode(out);
                id.encode(out);
                kind.encode(out);
                payload.encode(out);
            }
            ClientFrame::Ping { nonce } => {
                variant(out, 4, N);
                nonce.encode(out);
            }
            ClientFrame::Pong { echo, nonce } => {
                variant(out, 5, N);
                echo.encode(out);
                nonce.encode(out);
            }
            ClientFrame::Close { code } => {
                variant(out, 6, N);
                code.encode(out);
            }
            ClientFrame::Stray => variant(out, 7, N),
        }
    }
}

impl Encode for Op {
    fn encode(&self, out: &mut Vec<u8>) {
        const N: u32 = 12;
        match self {
            Op::Client { frame, via } => {
                variant(out, 0, N);
                frame.encode(out);
                via.encode(out);
            }
            Op::Raw { json, bytes } => {
                variant(out, 1, N);
                json.encode(out);
                bytes.encode(out);
            }
            Op::Emit {
                room,
                kind,
                payload,
                key,
            } => {
                variant(out, 2, N);
                room.encode(out);
                kind.encode(out);
                payload.encode(out);
                key.encode(out);
            }
            Op::Advance { by, drain } => {
                variant(out, 3, N);
                by.encode(out);
                drain.encode(out);
            }
            Op::Accept => variant(out, 4, N),
            Op::Reject => variant(out, 5, N),
            Op::Allow(i) => {
                variant(out, 6, N);
                i.encode(out);
            }
            Op::Deny(i) => {
                variant(out, 7, N);
                i.encode(out);
            }
            Op::PublishDone { index, ok } => {
                variant(out, 8, N);
                index.encode(out);
                ok.encode(out);
            }
            Op::Drain(n) => {
                variant(out, 9, N);
                n.encode(out);
            }
            Op::Close => variant(out, 10, N),
            Op::Reconnect => variant(out, 11, N),
        }
    }
}

/// The check of skips and gaps, on the real session and on made-up frames. Run by the stable
/// test `core/tests/fuzz_corpus.rs`, which includes this file (`cargo test`).
#[cfg(test)]
mod tests {
    use super::*;
    use eventwire_core::frame::{Batch, BatchEvent, Gap};

    /// A hub of epoch 3 whose rooms keep 8 events; sessions send one event per batch, so a read
    /// stops right after the event it sends and steps over the superseded events that follow.
    fn setup() -> Setup {
        Setup {
            epoch: 3,
            seed: 1,
            max_subscriptions: 4,
            max_batch: 1,
            max_frame: 1024,
            publish_rate: 0,
            rate_strikes: 0,
            app_publishes: false,
            batch_ms: 100,
            metrics_ms: 500,
            history_events: 7,
            history_bytes: 4000,
            history_age_ms: None,
            json_form: true,
            max_rooms: 3,
            json: false,
            grants: 0,
        }
    }

    /// A hello of client 1 joining `agents` (from `from`, if any), accepted and allowed.
    fn join(from: Option<PosSel>) -> Vec<Op> {
        vec![
            Op::Client {
                frame: ClientFrame::Hello {
                    client: 0,
                    version: 1,
                    token: false,
                    max_frame: 4096,
                    max_batch: 1,
                    rooms: vec![(0, from)],
                },
                via: Via::Direct,
            },
            Op::Accept,
            Op::Allow(0),
        ]
    }

    /// An emit into `agents`, with key `agent-1` (0) or `agent-2` (1), or none.
    fn emit(key: Option<u8>) -> Op {
        Op::Emit {
            room: 0,
            kind: 0,
            payload: 1,
            key,
        }
    }

    /// What the client got of `agents`: the offsets of each batch, and gaps.
    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Batch(Vec<u64>),
        Gap(Missed),
    }

    /// Runs `ops` through the harness (every check after every step), recording what `agents`
    /// got.
    fn run(ops: &[Op]) -> Vec<Got> {
        let mut h = Harness::new(&setup());
        let mut got = Vec::new();
        for op in ops {
            match op {
                Op::Drain(n) => {
                    h.drain_with(usize::from(*n), |f| match f {
                        Frame::Batch(b) if b.room == "agents" => {
                            got.push(Got::Batch(b.events.iter().map(|e| e.offset).collect()));
                        }
                        Frame::Gap(g) if g.room == "agents" => got.push(Got::Gap(g.missed)),
                        _ => {}
                    });
                    h.check();
                }
                _ => h.step(op),
            }
        }
        got
    }

    /// The regression `batch-after-evicted-superseded` as a script: the client is told 1 while
    /// the cursor steps over 2 and 3, both superseded; once they are evicted, 4 goes out in a
    /// batch without a gap, which is right (2 and 3 are superseded by 4 and 5, which the client
    /// gets). The old check, comparing the oldest offset (4) with what the client was told (1),
    /// failed here.
    #[test]
    fn a_batch_after_evicted_superseded_events_needs_no_gap() {
        let mut ops = join(None);
        ops.push(Op::Drain(255));
        ops.extend([emit(None), emit(Some(0)), emit(Some(1))]); // 1, 2 (a), 3 (b)
        ops.extend([emit(Some(0)), emit(Some(1))]); // 4 (a) and 5 (b) supersede 2 and 3
        ops.push(Op::Drain(1)); // 1 goes out; the cursor steps over 2 and 3, stops before 4
        ops.extend((6..=11).map(|_| emit(None))); // 8 retained: 4..=11, so 1..=3 are evicted
        ops.push(Op::Drain(255));
        let got = run(&ops);
        let batches: Vec<Got> = [1, 4, 5, 6, 7, 8, 9, 10, 11]
            .into_iter()
            .map(|o| Got::Batch(vec![o]))
            .collect();
        assert_eq!(got, batches);
    }

    /// A client resuming from a position whose next events were evicted is told of them in a
    /// gap, superseded or not, before anything else of the room; here 3 is superseded (by 6)
    /// and 4 is not.
    #[test]
    fn a_resuming_client_hears_of_evicted_events_that_were_not_superseded() {
        let mut ops = vec![emit(None), emit(None), emit(Some(0)), emit(None)]; // 1..=4
        ops.extend([emit(None), emit(Some(0))]); // 5, 6 (a) supersedes 3
        ops.extend((7..=12).map(|_| emit(None))); // 8 retained: 5..=12
        ops.extend(join(Some(PosSel {
            epoch: EpochSel::Hub,
            offset: OffsetSel::Abs(2),
        })));
        ops.push(Op::Drain(255));
        let got = run(&ops);
        assert_eq!(
            got.first(),
            Some(&Got::Gap(Missed::Range {
                epoch: 3,
                first: 3,
                last: 4
            }))
        );
        assert_eq!(got.get(1), Some(&Got::Batch(vec![5])));
    }

    /// The same after a session that stepped over superseded events: the next session resumes
    /// from what its client was told, and hears of everything evicted after that.
    #[test]
    fn a_reconnecting_client_hears_of_evicted_events_past_what_it_was_told() {
        let mut ops = join(None);
        ops.push(Op::Drain(255));
        ops.extend([emit(None), emit(Some(0)), emit(None), emit(Some(0))]); // 1..=4, 4 supersedes 2
        ops.push(Op::Drain(1)); // 1 goes out, the cursor steps over 2
        ops.push(Op::Reconnect);
        ops.extend((5..=12).map(|_| emit(None))); // 8 retained: 5..=12
        ops.extend(join(Some(PosSel {
            epoch: EpochSel::Hub,
            offset: OffsetSel::Abs(1),
        })));
        ops.push(Op::Drain(255));
        let got = run(&ops);
        assert_eq!(got[0], Got::Batch(vec![1]));
        assert_eq!(
            got[1],
            Got::Gap(Missed::Range {
                epoch: 3,
                first: 2,
                last: 4
            })
        );
        assert_eq!(got[2], Got::Batch(vec![5]));
    }

    /// A hub with `agents` holding `keys.len()` events of the given keys (of 4 retained), and a
    /// view of a welcomed client told `told` there, with the cursor verified up to `passed`.
    fn made_up(keys: &[Option<&str>], told: u64, passed: u64) -> (Hub, View) {
        let history = HistoryConfig::new().max_events(4);
        let hub = Hub::new(3, HubConfig::new().history(history));
        for key in keys {
            hub.emit(Instant::ZERO, "agents", "agent.status", b"{}", *key)
                .unwrap();
        }
        let mut view = View {
            welcomed: true,
            max_frame: 4096,
            max_batch: 4,
            ..View::default()
        };
        view.joined
            .insert("agents".to_string(), Position::new(3, told));
        view.passed.insert("agents".to_string(), passed);
        (hub, view)
    }

    fn batch_of(hub: &Hub, view: &mut View, offset: u64) {
        let events = [BatchEvent {
            offset,
            kind: "agent.status",
            payload: Payload(b"{}"),
        }];
        let frame = Frame::Batch(Batch {
            room: "agents",
            epoch: 3,
            events: Seq::from_slice(&events),
        });
        check_out(&frame, hub, false, view, &mut BTreeMap::new());
    }

    fn gap_of(hub: &Hub, view: &mut View, first: u64, last: u64) {
        let frame = Frame::Gap(Gap {
            room: "agents",
            missed: Missed::Range {
                epoch: 3,
                first,
                last,
            },
        });
        check_out(&frame, hub, false, view, &mut BTreeMap::new());
    }

    /// 1 and 2 (not superseded) are evicted; the client was told 1 and nothing was verified
    /// past it: a batch of 3 would lose 2 without a gap.
    #[test]
    #[should_panic(expected = "behind the history (oldest 3), without a gap")]
    fn a_batch_past_an_evicted_event_that_was_not_superseded_fails() {
        let (hub, mut view) = made_up(&[None; 6], 1, 1);
        batch_of(&hub, &mut view, 3);
    }

    /// Likewise when the cursor was verified past superseded events, but an event after those
    /// was evicted unsent: 2 is superseded (by 4), 3 is not.
    #[test]
    #[should_panic(expected = "behind the history (oldest 4), without a gap")]
    fn a_batch_past_an_evicted_event_after_a_verified_skip_fails() {
        let keys = [None, Some("a"), None, Some("a"), None, None, None];
        let (hub, mut view) = made_up(&keys, 1, 2);
        batch_of(&hub, &mut view, 4);
    }

    /// The same batch is right when the cursor was verified past the evicted events: 2 and 3
    /// were superseded (by 5 and 6) when it stepped over them.
    #[test]
    fn a_batch_past_evicted_events_verified_as_superseded_passes() {
        let keys = [None, Some("a"), Some("b"), None, Some("a"), Some("b"), None];
        let (hub, mut view) = made_up(&keys, 1, 3);
        batch_of(&hub, &mut view, 4);
        assert_eq!(view.joined["agents"], Position::new(3, 4));
        assert_eq!(view.passed["agents"], 4);
    }

    /// A range gap that starts past an evicted event that was neither sent nor verified.
    #[test]
    #[should_panic(expected = "out of the history, skipped without a gap")]
    fn a_range_gap_past_an_evicted_event_fails() {
        let (hub, mut view) = made_up(&[None; 6], 1, 1);
        gap_of(&hub, &mut view, 3, 3);
    }

    /// A cursor stepping over an event it did not send (a session that drops an event).
    #[test]
    #[should_panic(expected = "passed 2, which was not sent")]
    fn a_cursor_past_an_unsent_event_fails() {
        let (hub, _) = made_up(&[None, None, None], 1, 1);
        let handle = hub.room("agents").unwrap();
        cursor_passed(
            &handle.log(),
            "agents",
            Position::new(3, 1),
            Position::new(3, 2),
        );
    }

    /// A cursor stepping over an evicted event (it cannot have been verified as superseded).
    #[test]
    #[should_panic(expected = "passed 2, out of the history")]
    fn a_cursor_past_an_evicted_event_fails() {
        let (hub, _) = made_up(&[None, Some("a"), Some("a"), None, None, None], 1, 1);
        let handle = hub.room("agents").unwrap();
        cursor_passed(
            &handle.log(),
            "agents",
            Position::new(3, 1),
            Position::new(3, 2),
        );
    }

    /// A cursor stepping over superseded events only is recorded where it stopped.
    #[test]
    fn a_cursor_past_superseded_events_is_recorded() {
        let (hub, _) = made_up(&[None, Some("a"), Some("a")], 1, 1);
        let handle = hub.room("agents").unwrap();
        let passed = cursor_passed(
            &handle.log(),
            "agents",
            Position::new(3, 1),
            Position::new(3, 2),
        );
        assert_eq!(passed, 2);
    }
}
