//! The client's bounded queue of upstream publishes.
//!
//! A publish is given an id (a counter that, with the client id, identifies it across reconnects)
//! and kept until the server acknowledges it. While offline, publishes wait here; on reconnect
//! every unacknowledged one is sent again, in id order, and the server's deduplication window
//! applies each exactly once.
//!
//! Invariants:
//! - At most `N` publishes and `BYTES` bytes of room, kind and payload are held; a publish that
//!   does not fit is refused when it is made ([`OutboxError::Full`]): nothing is dropped later.
//! - A publish leaves only when acknowledged or refused for good, in both cases reported to the
//!   application by the client machine.
//! - Ids strictly increase; the order of sending is the order of ids (deferred ones excepted).

use core::fmt;

use heapless::{Deque, Vec};

use crate::frame::Publish;
use crate::payload::Payload;
use crate::text::{check_name, Invalid};
use crate::time::Instant;

/// Why a publish was refused at call time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxError {
    /// The outbox holds as many publishes or bytes as it may.
    Full,
    /// The publish alone is larger than the outbox's byte capacity.
    TooLarge {
        /// Bytes of room, kind and payload.
        size: usize,
        /// The outbox's byte capacity.
        limit: usize,
    },
    /// The room or kind breaks the name rules.
    Invalid(Invalid),
}

impl fmt::Display for OutboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboxError::Full => f.write_str("outbox full: publish refused"),
            OutboxError::TooLarge { size, limit } => {
                write!(f, "publish of {size} bytes exceeds the outbox's {limit}")
            }
            OutboxError::Invalid(i) => write!(f, "invalid publish: {i}"),
        }
    }
}

impl core::error::Error for OutboxError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unsent,
    Sent,
    /// Refused for rate; send again at this instant.
    Deferred(Instant),
    /// Acknowledged or refused for good; removed once it reaches the front.
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u64,
    room_len: u8,
    kind_len: u8,
    payload_len: usize,
    state: State,
}

impl Slot {
    fn len(&self) -> usize {
        self.room_len as usize + self.kind_len as usize + self.payload_len
    }
}

/// Bounded queue of publishes awaiting acknowledgement: `N` entries, `BYTES` bytes.
pub struct Outbox<const N: usize, const BYTES: usize> {
    slots: Deque<Slot, N>,
    bytes: Vec<u8, BYTES>,
    next_id: u64,
}

impl<const N: usize, const BYTES: usize> Default for Outbox<N, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const BYTES: usize> Outbox<N, BYTES> {
    /// An empty outbox whose first publish gets id 1.
    pub const fn new() -> Self {
        Outbox {
            slots: Deque::new(),
            bytes: Vec::new(),
            next_id: 1,
        }
    }

    /// Publishes held (sent or not) that await an answer.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.state != State::Done).count()
    }

    /// Whether nothing awaits an answer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publishes sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.state == State::Sent).count()
    }

    /// Bytes of room, kind and payload held.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Queues a publish and returns its id; refuses it now if it does not fit.
    pub fn push(&mut self, room: &str, kind: &str, payload: &[u8]) -> Result<u64, OutboxError> {
        check_name(room, "room").map_err(OutboxError::Invalid)?;
        check_name(kind, "kind").map_err(OutboxError::Invalid)?;
        let size = room.len() + kind.len() + payload.len();
        if size > BYTES {
            return Err(OutboxError::TooLarge { size, limit: BYTES });
        }
        self.compact();
        if self.slots.is_full() || self.bytes.len() + size > BYTES {
            return Err(OutboxError::Full);
        }
        let id = self.next_id;
        let slot = Slot {
            id,
            room_len: room.len() as u8,
            kind_len: kind.len() as u8,
            payload_len: payload.len(),
            state: State::Unsent,
        };
        // Capacity was checked above, so neither can fail; the results are still handled.
        if self.slots.push_back(slot).is_err() {
            return Err(OutboxError::Full);
        }
        for part in [room.as_bytes(), kind.as_bytes(), payload] {
            if self.bytes.extend_from_slice(part).is_err() {
                return Err(OutboxError::Full);
            }
        }
        self.next_id += 1;
        Ok(id)
    }

    /// The next publish to send, if any; it counts as sent from now on. Only ids below the lowest
    /// unanswered id plus `window` go out: the server's deduplication window is a span of ids, so
    /// a deferred publish holds the window as a sent one does. Deferred publishes become
    /// sendable once `now` reaches their time.
    pub fn next_to_send(&mut self, now: Instant, window: usize) -> Option<Publish<'_>> {
        let limit = self.window_limit(window)?;
        let mut offset = 0;
        let mut found = None;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.id >= limit {
                break;
            }
            let ready = match slot.state {
                State::Unsent => true,
                State::Deferred(at) => at <= now,
                State::Sent | State::Done => false,
            };
            if ready {
                slot.state = State::Sent;
                found = Some((i, offset));
                break;
            }
            offset += slot.len();
        }
        let (i, offset) = found?;
        let slot = *self.slots.iter().nth(i)?;
        self.view(slot, offset)
    }

    fn view(&self, slot: Slot, offset: usize) -> Option<Publish<'_>> {
        let room_end = offset + slot.room_len as usize;
        let kind_end = room_end + slot.kind_len as usize;
        let end = kind_end + slot.payload_len;
        let room = core::str::from_utf8(self.bytes.get(offset..room_end)?).ok()?;
        let kind = core::str::from_utf8(self.bytes.get(room_end..kind_end)?).ok()?;
        Some(Publish {
            room,
            id: slot.id,
            kind,
            payload: Payload(self.bytes.get(kind_end..end)?),
        })
    }

    fn finish(&mut self, id: u64, state: State) -> bool {
        match self.slots.iter_mut().find(|s| s.id == id) {
            Some(slot) if slot.state != State::Done => {
                slot.state = state;
                true
            }
            _ => false,
        }
    }

    /// The server applied publish `id`. Returns whether it was held (a repeated ack is not).
    pub fn ack(&mut self, id: u64) -> bool {
        let held = self.finish(id, State::Done);
        self.compact();
        held
    }

    /// The server refused publish `id` for good. Returns whether it was held.
    pub fn reject(&mut self, id: u64) -> bool {
        let held = self.finish(id, State::Done);
        self.compact();
        held
    }

    /// The server asked to send publish `id` again no earlier than `at`.
    pub fn defer(&mut self, id: u64, at: Instant) -> bool {
        match self.slots.iter_mut().find(|s| s.id == id) {
            Some(slot) if slot.state == State::Sent => {
                slot.state = State::Deferred(at);
                true
            }
            _ => false,
        }
    }

    /// The connection was lost: everything sent but unanswered goes out again on the next one.
    pub fn requeue(&mut self) {
        for slot in self.slots.iter_mut() {
            if slot.state == State::Sent {
                slot.state = State::Unsent;
            }
        }
    }

    /// The earliest time a deferred publish becomes sendable.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| match s.state {
                State::Deferred(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Whether a publish could be sent now, given `window` (used for wake-ups).
    pub fn has_sendable(&self, now: Instant, window: usize) -> bool {
        let Some(limit) = self.window_limit(window) else {
            return false;
        };
        self.slots
            .iter()
            .take_while(|s| s.id < limit)
            .any(|s| match s.state {
                State::Unsent => true,
                State::Deferred(at) => at <= now,
                _ => false,
            })
    }

    /// The first id outside the window, or `None` if nothing awaits an answer.
    fn window_limit(&self, window: usize) -> Option<u64> {
        let lowest = self.slots.iter().find(|s| s.state != State::Done)?.id;
        Some(lowest.saturating_add(window as u64))
    }

    /// Drops finished publishes from the front, moving the remaining bytes down.
    fn compact(&mut self) {
        let mut drop_bytes = 0;
        while let Some(front) = self.slots.front() {
            if front.state != State::Done {
                break;
            }
            drop_bytes += front.len();
            self.slots.pop_front();
        }
        if drop_bytes > 0 {
            let len = self.bytes.len();
            self.bytes.copy_within(drop_bytes..len, 0);
            self.bytes.truncate(len - drop_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_outbox_refuses_at_call_time() {
        let mut ob = Outbox::<2, 64>::new();
        assert_eq!(ob.push("r", "k", b"1"), Ok(1));
        assert_eq!(ob.push("r", "k", b"2"), Ok(2));
        assert_eq!(ob.push("r", "k", b"3"), Err(OutboxError::Full));
        assert_eq!(
            ob.push("r", "k", &[0; 100]),
            Err(OutboxError::TooLarge {
                size: 102,
                limit: 64
            })
        );
        assert!(ob.push("r/x", "k", b"").is_err());
        // An ack frees room.
        let p = ob.next_to_send(Instant::ZERO, 8).map(|p| p.id);
        assert_eq!(p, Some(1));
        assert!(ob.ack(1));
        assert_eq!(ob.push("r", "k", b"3"), Ok(3));
    }

    #[test]
    fn resend_after_loss_in_id_order() {
        let mut ob = Outbox::<8, 256>::new();
        for i in 0..4u8 {
            ob.push("room", "kind", &[i]).unwrap();
        }
        let now = Instant::ZERO;
        let sent: std::vec::Vec<u64> =
            core::iter::from_fn(|| ob.next_to_send(now, 2).map(|p| p.id)).collect();
        assert_eq!(sent, [1, 2], "window of two");
        assert!(ob.ack(2));
        assert!(!ob.ack(2), "a repeated ack is not held");
        ob.requeue();
        let again: std::vec::Vec<(u64, u8)> =
            core::iter::from_fn(|| ob.next_to_send(now, 8).map(|p| (p.id, p.payload.0[0])))
                .collect();
        assert_eq!(again, [(1, 0), (3, 2), (4, 3)]);
        for id in [1, 3, 4] {
            assert!(ob.ack(id));
        }
        assert!(ob.is_empty());
        assert_eq!(ob.bytes(), 0);
    }

    #[test]
    fn deferred_publish_waits() {
        let mut ob = Outbox::<4, 64>::new();
        ob.push("r", "k", b"x").unwrap();
        assert!(ob.next_to_send(Instant::ZERO, 4).is_some());
        assert!(ob.defer(1, Instant::from_millis(250)));
        assert_eq!(ob.next_deadline(), Some(Instant::from_millis(250)));
        assert!(ob.next_to_send(Instant::from_millis(100), 4).is_none());
        assert_eq!(
            ob.next_to_send(Instant::from_millis(250), 4).map(|p| p.id),
            Some(1)
        );
        assert!(ob.reject(1));
        assert!(ob.is_empty());
    }
}
