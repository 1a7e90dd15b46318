//! Strategies that generate valid frames of every kind, for property tests.
#![allow(dead_code)]

use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_core::frame::Seq;
use eventwire_core::frame::*;
use eventwire_core::payload::Payload;
use eventwire_core::text::MAX_SAFE_INTEGER;
use proptest::collection::{btree_set, vec};
use proptest::option;
use proptest::prelude::*;

/// Owned material a frame of any kind can be built from by borrowing.
#[derive(Debug, Clone)]
pub struct Spec {
    pub tag: u32,
    pub room: String,
    pub kind: String,
    pub token: Option<String>,
    pub reason: String,
    pub payload: Vec<u8>,
    pub n: [u64; 4],
    pub small: [u32; 4],
    pub opt_pos: Option<Position>,
    pub opt_room: bool,
    pub rooms: Vec<(String, Option<Position>)>,
    pub events: Vec<(u64, String, Vec<u8>)>,
}

/// Lists a frame borrows besides the spec's strings.
pub struct Lists<'a> {
    pub rooms: Vec<Resume<'a>>,
    pub events: Vec<BatchEvent<'a>>,
}

impl Spec {
    pub fn lists(&self) -> Lists<'_> {
        Lists {
            rooms: self
                .rooms
                .iter()
                .map(|(room, from)| Resume { room, from: *from })
                .collect(),
            events: self
                .events
                .iter()
                .map(|(offset, kind, payload)| BatchEvent {
                    offset: *offset,
                    kind,
                    payload: Payload(payload),
                })
                .collect(),
        }
    }

    pub fn frame<'a>(&'a self, lists: &'a Lists<'a>) -> Frame<'a> {
        let pos = Position::new(self.small[0], self.n[1]);
        let payload = Payload(&self.payload);
        match self.tag {
            0 => Frame::Hello(Hello {
                version: self.small[1] as u16,
                client_id: self.n[0],
                token: self.token.as_deref(),
                max_frame: self.small[2],
                max_batch: self.small[3] as u16,
                rooms: Seq::from_slice(&lists.rooms),
            }),
            1 => Frame::Welcome(Welcome {
                version: self.small[1] as u16,
                session_id: self.n[0],
                heartbeat_ms: self.small[0],
                max_frame: self.small[2],
                max_subscriptions: self.small[3] as u16,
                publish_rate: self.small[1] as u16,
            }),
            2 => Frame::Subscribe(Subscribe {
                room: &self.room,
                from: self.opt_pos,
            }),
            3 => Frame::Subscribed(Subscribed {
                room: &self.room,
                position: pos,
            }),
            4 => Frame::Unsubscribe(Unsubscribe { room: &self.room }),
            5 => Frame::Event(Event {
                room: &self.room,
                position: pos,
                kind: &self.kind,
                payload,
            }),
            6 => Frame::Batch(Batch {
                room: &self.room,
                epoch: self.small[0],
                events: Seq::from_slice(&lists.events),
            }),
            7 => Frame::Publish(Publish {
                room: &self.room,
                id: self.n[0],
                kind: &self.kind,
                payload,
            }),
            8 => Frame::PublishAck(PublishAck {
                id: self.n[0],
                position: pos,
            }),
            9 => Frame::Ping(Ping { nonce: self.n[0] }),
            10 => Frame::Pong(Ping { nonce: self.n[0] }),
            11 => Frame::Gap(Gap {
                room: &self.room,
                missed: if self.opt_room {
                    Missed::Range {
                        epoch: self.small[0],
                        first: self.n[2].min(self.n[3]),
                        last: self.n[2].max(self.n[3]),
                    }
                } else {
                    Missed::Reset { position: pos }
                },
            }),
            12 => Frame::Error(ErrorFrame {
                code: ErrorCode(self.small[1] as u16),
                id: self.opt_pos.map(|p| p.offset),
                room: self.opt_room.then_some(self.room.as_str()),
                retry_after_ms: self.opt_pos.map(|p| p.epoch),
                reason: &self.reason,
            }),
            _ => Frame::Close(Close {
                code: CloseCode(self.small[1] as u16),
                retry_after_ms: self.opt_pos.map(|p| p.epoch),
                reason: &self.reason,
            }),
        }
    }
}

pub fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,64}"
}

pub fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~+=-]{1,200}"
}

pub fn reason() -> impl Strategy<Value = String> {
    "[ !#-%'-.0-;=?-\\[\\]-~]{0,123}"
}

pub fn safe() -> impl Strategy<Value = u64> {
    prop_oneof![0..=300u64, 0..=MAX_SAFE_INTEGER]
}

pub fn position() -> impl Strategy<Value = Position> {
    (any::<u32>(), safe()).prop_map(|(e, o)| Position::new(e, o))
}

/// JSON texts with escapes, nesting, numbers and unicode: payloads both codecs carry.
pub fn json_payload() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    value.prop_map(|v| serde_json::to_vec(&v).expect("a Value always serialises"))
}

/// Any bytes: payloads only the binary form carries.
pub fn binary_payload() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..300)
}

pub fn spec_with(payload: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Spec> {
    let events = btree_set(safe(), 0..12).prop_flat_map({
        let payload = payload.clone();
        move |offsets| {
            let n = offsets.len();
            (
                Just(offsets),
                vec(name(), n..=n),
                vec(payload.clone(), n..=n),
            )
                .prop_map(|(offsets, kinds, payloads)| {
                    offsets
                        .into_iter()
                        .zip(kinds)
                        .zip(payloads)
                        .map(|((o, k), p)| (o, k, p))
                        .collect::<Vec<_>>()
                })
        }
    });
    (
        (
            0..14u32,
            name(),
            name(),
            option::of(token()),
            reason(),
            payload,
        ),
        (
            [safe(), safe(), safe(), safe()],
            any::<[u32; 4]>(),
            option::of(position()),
            any::<bool>(),
        ),
        vec((name(), option::of(position())), 0..8),
        events,
    )
        .prop_map(
            |(
                (tag, room, kind, token, reason, payload),
                (n, small, opt_pos, opt_room),
                rooms,
                events,
            )| Spec {
                tag,
                room,
                kind,
                token,
                reason,
                payload,
                n,
                small,
                opt_pos,
                opt_room,
                rooms,
                events,
            },
        )
}

pub fn cases(default: u32) -> u32 {
    std::env::var("EVENTWIRE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
