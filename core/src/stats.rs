//! A server's counters and statistics, kept the same way by every adapter (feature `alloc`).
//!
//! A server holds one [`Counters`] next to its [`Hub`] and updates it from its connection loops: a
//! connection opened or closed, what each connection counted ([`Counters::add`] of a [`Counts`]:
//! bytes, events sent, gaps, publishes appended), slow consumers. The counters are the host's
//! ([`Host::Counter`]: atomics in a threaded adapter). [`Counters::snapshot`] turns the counters
//! and the hub's rooms into the [`HubStats`] the adapters hand to applications.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::frame::Position;
use crate::hub::{Counter, Host, Hub, Room};
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
    /// Sessions holding the room (woken by its appends).
    pub watchers: usize,
}

impl RoomStats {
    /// The statistics of `room`.
    pub fn of<H: Host>(room: &Room<H>) -> RoomStats {
        room.read(|log| RoomStats {
            name: room.name().to_string(),
            head: log.head(),
            oldest: log.oldest(),
            events: log.len(),
            bytes: log.bytes(),
            watchers: room.watchers(),
        })
    }

    /// The statistics of the room `name` in `hub`, if it exists.
    pub fn find<H: Host>(hub: &Hub<H>, name: &str) -> Option<RoomStats> {
        hub.room(name).map(|room| RoomStats::of(&room))
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
    /// Publishes refused as outside their connection's grants.
    pub publishes_refused: u64,
    /// Every room.
    pub rooms: Vec<RoomStats>,
}

/// The live counters behind [`HubStats`], in the host's counter type.
pub struct Counters<H: Host> {
    /// Open connections.
    pub connections: H::Counter,
    /// Connections accepted since start.
    pub connections_total: H::Counter,
    /// Events emitted (including publishes appended).
    pub events_in: H::Counter,
    /// Events sent, summed over connections.
    pub events_out: H::Counter,
    /// Bytes received.
    pub bytes_in: H::Counter,
    /// Bytes sent.
    pub bytes_out: H::Counter,
    /// Gap notices sent.
    pub gaps_sent: H::Counter,
    /// Connections closed because they stopped reading.
    pub slow_consumers: H::Counter,
    /// Publishes refused as outside their connection's grants.
    pub publishes_refused: H::Counter,
}

impl<H: Host> Default for Counters<H> {
    fn default() -> Self {
        Counters {
            connections: Default::default(),
            connections_total: Default::default(),
            events_in: Default::default(),
            events_out: Default::default(),
            bytes_in: Default::default(),
            bytes_out: Default::default(),
            gaps_sent: Default::default(),
            slow_consumers: Default::default(),
            publishes_refused: Default::default(),
        }
    }
}

impl<H: Host> core::fmt::Debug for Counters<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Counters")
            .field("connections", &self.connections.get())
            .field("events_in", &self.events_in.get())
            .field("events_out", &self.events_out.get())
            .finish_non_exhaustive()
    }
}

impl<H: Host> Counters<H> {
    /// Adds what a connection counted.
    pub fn add(&self, counts: Counts) {
        for (counter, n) in [
            (&self.bytes_in, counts.bytes_in),
            (&self.bytes_out, counts.bytes_out),
            (&self.events_out, counts.events_out),
            (&self.gaps_sent, counts.gaps_sent),
            (&self.events_in, counts.events_in),
            (&self.publishes_refused, counts.publishes_refused),
        ] {
            if n > 0 {
                counter.add(n);
            }
        }
    }

    /// Counts an accepted connection; returns how many were open before it.
    pub fn opened(&self) -> u64 {
        self.connections_total.add(1);
        self.connections.add(1)
    }

    /// Counts an accepted connection in and decides whether it is over the limit `max`: the
    /// connections open before it, less `uncounted` of them, reached it. `uncounted` is what
    /// stands for a connection counted elsewhere (a polling request in flight belongs to a
    /// session already counted). A connection over the limit stays counted until it is closed;
    /// the adapter refuses it with `TRY_AGAIN_LATER`. Every adapter admits through here, so the
    /// limit means the same on every transport.
    pub fn admit(&self, max: usize, uncounted: u64) -> bool {
        self.opened().saturating_sub(uncounted) >= max as u64
    }

    /// Whether a connection already counted in (by [`Counters::admit`]) is over the limit `max`
    /// now: the others open, less `uncounted` of them, reached it.
    pub fn over_limit(&self, max: usize, uncounted: u64) -> bool {
        let others = self.connections.get().saturating_sub(1);
        others.saturating_sub(uncounted) >= max as u64
    }

    /// Counts a connection that ended; returns whether it was the last one open.
    pub fn closed(&self) -> bool {
        self.connections.sub(1) == 1
    }

    /// The counters and `hub`'s rooms.
    pub fn snapshot(&self, hub: &Hub<H>) -> HubStats {
        HubStats {
            connections: self.connections.get(),
            connections_total: self.connections_total.get(),
            events_in: self.events_in.get(),
            events_out: self.events_out.get(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            gaps_sent: self.gaps_sent.get(),
            slow_consumers: self.slow_consumers.get(),
            publishes_refused: self.publishes_refused.get(),
            rooms: hub.rooms().iter().map(|r| RoomStats::of(r)).collect(),
        }
    }
}
