//! The server's rooms: one bounded [`RoomLog`] per room, and the publish deduplication window.
//!
//! A hub is shared by every [`ServerSession`](crate::server::ServerSession) of a server: sessions
//! keep only a cursor per room, so a subscriber, online or not, costs no memory beyond its cursor;
//! memory is per room, bounded by [`HistoryConfig`] times `max_rooms`. Emitting appends to the
//! room's log once; every session reads the same encoded bytes from it.
//!
//! Invariants: at most `max_rooms` rooms; a room, once created, keeps its id for the hub's life
//! (sessions index rooms by it); every room of a hub has the hub's epoch.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::dedup::{Dedup, DedupConfig};
use crate::frame::Position;
use crate::history::{AppendError, HistoryConfig, RoomLog};
use crate::text::{check_name, Invalid};
use crate::time::Instant;

/// Identifies a room of one hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomId(pub(crate) usize);

/// Sizes of a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// History kept per room.
    pub history: HistoryConfig,
    /// Most rooms the hub holds. Default 1024.
    pub max_rooms: usize,
    /// Publish deduplication window.
    pub dedup: DedupConfig,
}

impl HubConfig {
    /// The defaults.
    pub const fn new() -> Self {
        HubConfig {
            history: HistoryConfig::new(),
            max_rooms: 1024,
            dedup: DedupConfig::new(),
        }
    }

    /// Sets the history kept per room.
    pub const fn history(mut self, history: HistoryConfig) -> Self {
        self.history = history;
        self
    }

    /// Sets the most rooms.
    pub const fn max_rooms(mut self, rooms: usize) -> Self {
        self.max_rooms = rooms;
        self
    }

    /// Sets the deduplication window.
    pub const fn dedup(mut self, dedup: DedupConfig) -> Self {
        self.dedup = dedup;
        self
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Why an emit or a room creation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubError {
    /// The hub holds `max_rooms` rooms already.
    TooManyRooms,
    /// The room name breaks the name rules.
    InvalidRoom(Invalid),
    /// The room's log refused the event.
    Append(AppendError),
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubError::TooManyRooms => f.write_str("room limit reached"),
            HubError::InvalidRoom(i) => write!(f, "{i}"),
            HubError::Append(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for HubError {}

/// Why an adapter's emit failed: the hub, the payload's serialisation, or a dashboard event.
/// Every adapter's `Hub` reports it (feature `json`).
#[cfg(feature = "json")]
#[derive(Debug)]
#[non_exhaustive]
pub enum EmitError {
    /// The payload could not be serialised to JSON.
    Payload(serde_json::Error),
    /// The hub refused the event (room limit, invalid name, event larger than the history).
    Hub(HubError),
    /// A dashboard event was invalid (for example an agent id that is not a valid name).
    Dashboard(crate::dashboard::DashboardError),
}

#[cfg(feature = "json")]
impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::Payload(e) => write!(f, "payload: {e}"),
            EmitError::Hub(e) => write!(f, "{e}"),
            EmitError::Dashboard(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "json")]
impl core::error::Error for EmitError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            EmitError::Payload(e) => Some(e),
            EmitError::Hub(e) => Some(e),
            EmitError::Dashboard(e) => Some(e),
        }
    }
}

/// A server's rooms and deduplication state.
pub struct Hub {
    epoch: u32,
    config: HubConfig,
    names: BTreeMap<String, RoomId>,
    rooms: Vec<(String, RoomLog)>,
    dedup: Dedup,
}

impl Hub {
    /// An empty hub whose rooms all start in `epoch`. A restarted server without shared history
    /// must pick a new epoch (for example from the clock or a random draw), so clients learn that
    /// their positions are void.
    pub fn new(epoch: u32, config: HubConfig) -> Self {
        Hub {
            epoch,
            config,
            names: BTreeMap::new(),
            rooms: Vec::new(),
            dedup: Dedup::new(config.dedup),
        }
    }

    /// The epoch of every room.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The id of `room`, if it exists.
    pub fn room_id(&self, room: &str) -> Option<RoomId> {
        self.names.get(room).copied()
    }

    /// The id of `room`, creating it (empty) if needed.
    pub fn ensure_room(&mut self, room: &str) -> Result<RoomId, HubError> {
        if let Some(id) = self.room_id(room) {
            return Ok(id);
        }
        check_name(room, "room").map_err(HubError::InvalidRoom)?;
        if self.rooms.len() >= self.config.max_rooms {
            return Err(HubError::TooManyRooms);
        }
        let id = RoomId(self.rooms.len());
        self.rooms.push((
            String::from(room),
            RoomLog::new(self.epoch, self.config.history),
        ));
        self.names.insert(String::from(room), id);
        Ok(id)
    }

    /// The log of a room.
    pub fn log(&self, id: RoomId) -> Option<&RoomLog> {
        self.rooms.get(id.0).map(|(_, log)| log)
    }

    /// The name of a room.
    pub fn name(&self, id: RoomId) -> Option<&str> {
        self.rooms.get(id.0).map(|(name, _)| name.as_str())
    }

    /// Every room with its log.
    pub fn rooms(&self) -> impl Iterator<Item = (RoomId, &str, &RoomLog)> {
        self.rooms
            .iter()
            .enumerate()
            .map(|(i, (name, log))| (RoomId(i), name.as_str(), log))
    }

    /// Appends an event to `room` (created if needed). `key`, if any, is its coalescing key: it
    /// supersedes the unsent older event with the same key.
    pub fn emit(
        &mut self,
        now: Instant,
        room: &str,
        kind: &str,
        payload: &[u8],
        key: Option<&str>,
    ) -> Result<Position, HubError> {
        let id = self.ensure_room(room)?;
        self.emit_to(now, id, kind, payload, key)
    }

    /// [`Hub::emit`] for a payload known to be JSON text (see
    /// [`RoomLog::append_json`](crate::history::RoomLog::append_json)).
    #[cfg(feature = "json")]
    pub fn emit_json(
        &mut self,
        now: Instant,
        room: &str,
        kind: &str,
        payload: crate::payload::JsonText<'_>,
        key: Option<&str>,
    ) -> Result<Position, HubError> {
        let id = self.ensure_room(room)?;
        let (_, log) = self.rooms.get_mut(id.0).ok_or(HubError::TooManyRooms)?;
        log.append_json(now, kind, payload, key)
            .map_err(HubError::Append)
    }

    /// Appends an event to the room `id`.
    pub fn emit_to(
        &mut self,
        now: Instant,
        id: RoomId,
        kind: &str,
        payload: &[u8],
        key: Option<&str>,
    ) -> Result<Position, HubError> {
        let (_, log) = self.rooms.get_mut(id.0).ok_or(HubError::TooManyRooms)?;
        log.append(now, kind, payload, key)
            .map_err(HubError::Append)
    }

    /// Drops events older than the history's age limit, in every room.
    pub fn expire(&mut self, now: Instant) {
        for (_, log) in self.rooms.iter_mut() {
            log.expire(now);
        }
    }

    /// The deduplication window.
    pub fn dedup(&self) -> &Dedup {
        &self.dedup
    }

    /// The deduplication window, to record applied publishes.
    pub fn dedup_mut(&mut self) -> &mut Dedup {
        &mut self.dedup
    }
}
