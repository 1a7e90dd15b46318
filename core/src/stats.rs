//! A server's counters and statistics, kept the same way by every adapter (feature `std`).
//!
//! An adapter's hub holds one [`Counters`] next to the core [`Hub`] and updates it from its
//! connection loops: a connection opened or closed, what each connection counted
//! ([`Counters::add`] of a [`Counts`]: bytes, events sent, gaps, publishes appended), slow
//! consumers.
//! [`Counters::snapshot`] turns the counters and the hub's rooms into the [`HubStats`] the
//! adapters hand to applications.

use std::string::{String, ToString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::vec::Vec;

use crate::frame::Position;
use crate::history::RoomLog;
use crate::hub::Hub;
use crate::server::Counts;

/// Statistics of one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomStats {
    /// The room.
    pub name: String,
    /// Position of its latest event.
    pub head: Position,
    /// Offset of its oldest retained event.
    pub oldest: u64,
    /// Events retained.
    pub events: usize,
    /// Bytes retained.
    pub bytes: usize,
}

impl RoomStats {
    /// The statistics of the room `name` with log `log`.
    pub fn of(name: &str, log: &RoomLog) -> RoomStats {
        RoomStats {
            name: name.to_string(),
            head: log.head(),
            oldest: log.oldest(),
            events: log.len(),
            bytes: log.bytes(),
        }
    }

    /// The statistics of `room` in `hub`, if it exists.
    pub fn find(hub: &Hub, room: &str) -> Option<RoomStats> {
        let log = hub.log(hub.room_id(room)?)?;
        Some(RoomStats::of(room, log))
    }
}

/// A snapshot of a hub's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Open connections.
    pub connections: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Events emitted (including publishes appended).
    pub events_in: u64,
    /// Events sent, summed over connections.
    pub events_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Gap notices sent because a connection fell out of the history.
    pub gaps_sent: u64,
    /// Connections closed because they stopped reading.
    pub slow_consumers: u64,
    /// Every room.
    pub rooms: Vec<RoomStats>,
}

/// The live counters behind [`HubStats`]: atomics an adapter updates from any thread or task.
#[derive(Debug, Default)]
pub struct Counters {
    /// Open connections.
    pub connections: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Events emitted (including publishes appended).
    pub events_in: AtomicU64,
    /// Events sent, summed over connections.
    pub events_out: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Gap notices sent.
    pub gaps_sent: AtomicU64,
    /// Connections closed because they stopped reading.
    pub slow_consumers: AtomicU64,
}

impl Counters {
    /// Adds what a connection counted.
    pub fn add(&self, counts: Counts) {
        for (counter, n) in [
            (&self.bytes_in, counts.bytes_in),
            (&self.bytes_out, counts.bytes_out),
            (&self.events_out, counts.events_out),
            (&self.gaps_sent, counts.gaps_sent),
            (&self.events_in, counts.events_in),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Counts an accepted connection; returns how many were open before it.
    pub fn opened(&self) -> u64 {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.connections.fetch_add(1, Ordering::AcqRel)
    }

    /// Counts a connection that ended; returns whether it was the last one open.
    pub fn closed(&self) -> bool {
        self.connections.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// The counters and `hub`'s rooms.
    pub fn snapshot(&self, hub: &Hub) -> HubStats {
        HubStats {
            connections: self.connections.load(Ordering::Relaxed),
            connections_total: self.connections_total.load(Ordering::Relaxed),
            events_in: self.events_in.load(Ordering::Relaxed),
            events_out: self.events_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            gaps_sent: self.gaps_sent.load(Ordering::Relaxed),
            slow_consumers: self.slow_consumers.load(Ordering::Relaxed),
            rooms: hub
                .rooms()
                .map(|(_, name, log)| RoomStats::of(name, log))
                .collect(),
        }
    }
}
