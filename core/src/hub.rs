//! The server's rooms: one bounded [`RoomLog`] per room, each behind its own lock, and the
//! publish deduplication window.
//!
//! A hub is shared by every [`ServerSession`](crate::server::ServerSession) of a server. Sessions
//! keep a handle ([`RoomRef`]) and a cursor per room they hold, so a subscriber costs no memory
//! beyond its cursor; memory is per room, bounded by [`HistoryConfig`] times `max_rooms`. Emitting
//! appends to the room's log once; every session reads the same encoded bytes from it.
//!
//! # Locks without a lock
//! The core has no threads, so it takes its locks and shared handles from a [`Host`]: the
//! single-threaded [`Local`] (a `RefCell` and an `Rc`, for a device's loop, the tests and the
//! simulation), or an adapter's (a lock and an `Arc`). Each room has its own lock for its log and
//! one for its watchers; the directory of names and the deduplication window have theirs. An emit
//! through a [`RoomRef`] takes only that room's locks, an emit by name adds a shared read of the
//! directory; a session reads only the rooms it holds, through its handles. Lock order: dedup,
//! then directory, then a room's log, then its watchers; nothing is called back under a lock but
//! [`Host::wake`].
//!
//! # Wake-ups
//! A session that holds a room registers its waker in the room ([`Room::watch`]); an append wakes
//! the room's watchers and nobody else.
//!
//! # Who creates rooms, and for how long
//! A room the application creates (an emit, or [`Hub::ensure_room`] to declare it before its
//! first event) stays for the hub's life. A client creates a room only where its
//! [`Grants`](crate::server::Grants) allow it ([`Hub::client_room`], for a join or a publish into
//! a room that does not exist); such a room is freed once it has had no watcher and no new event
//! for [`HubConfig::room_idle`], so junk names cost nothing for long. [`Hub::sweep`] frees them; a
//! server connection calls [`Hub::sweep_due`] as its peer's messages arrive, so any live client
//! keeps the sweep going. A client room created after a sweep freed rooms starts in an epoch of
//! its own, so that a position in a freed room is never taken for one in its successor.
//!
//! Invariants: at most `max_rooms` rooms, of which at most `max_client_rooms` created by
//! clients; an application's room stays for the hub's life; an application's room has the hub's
//! epoch, a client's room an epoch of its own creation; every append wakes each of the room's
//! watchers once.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Deref;
use core::time::Duration;

use crate::dedup::{Dedup, DedupConfig};
use crate::frame::Position;
use crate::history::{AppendError, HistoryConfig, RoomLog};
use crate::text::{check_name, Invalid};
use crate::time::Instant;

/// The epoch of a new hub, drawn from 64 bits of the adapter's entropy: any `u32` but 0.
///
/// An epoch must not repeat across runs of a server, or a client resuming at offset `n` of the
/// old run would take offsets `n + 1..` of the new one as the continuation and silently miss
/// `1..=n`. The wall clock cannot promise that (two starts within its resolution, a clock set
/// back), and a counter would need storage: 32 random bits can. Two given runs share an epoch
/// with probability 2^-32, and a client only ever compares the epoch it holds with the server's
/// (PROTOCOL.md, "Epochs"). Epochs are compared for equality only, never ordered.
#[must_use]
pub fn epoch_from_random(bits: u64) -> u32 {
    // Both halves, so entropy in either reaches the epoch; 0 is left out so that a zeroed
    // position never names a run.
    let folded = (bits ^ (bits >> 32)) as u32;
    folded.max(1)
}

/// Where the core's shared state lives: the adapter (or the single-threaded [`Local`]) chooses
/// the lock, the shared handle and the waker.
pub trait Host: Sized + 'static {
    /// A lock around one value.
    type Lock<T>: Lock<T>;
    /// A shared handle to a value (`Rc`, `Arc`).
    type Shared<T>: Clone + Deref<Target = T>;
    /// What wakes one connection.
    type Waker: Clone;
    /// A counter that connections add to (an atomic, or a `Cell`).
    type Counter: Counter;
    /// Shares `value`.
    fn share<T>(value: T) -> Self::Shared<T>;
    /// Wakes a connection (called with the room's watcher list read-locked: keep it short and
    /// non-blocking).
    fn wake(waker: &Self::Waker);
}

/// A lock around a value: shared reads, exclusive writes.
pub trait Lock<T> {
    /// A lock holding `value`.
    fn new(value: T) -> Self;
    /// Runs `f` with shared access.
    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R;
    /// Runs `f` with exclusive access.
    fn write<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

/// A counter shared by connections.
pub trait Counter: Default {
    /// Adds `n`; returns the value before.
    fn add(&self, n: u64) -> u64;
    /// Subtracts `n`; returns the value before.
    fn sub(&self, n: u64) -> u64;
    /// The value.
    fn get(&self) -> u64;
}

impl Counter for core::cell::Cell<u64> {
    fn add(&self, n: u64) -> u64 {
        let before = self.get();
        self.set(before.wrapping_add(n));
        before
    }

    fn sub(&self, n: u64) -> u64 {
        let before = self.get();
        self.set(before.wrapping_sub(n));
        before
    }

    fn get(&self) -> u64 {
        core::cell::Cell::get(self)
    }
}

/// The single-threaded host: `RefCell`, `Rc`, and no wakers (a single loop looks at every
/// session anyway).
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Host for Local {
    type Lock<T> = core::cell::RefCell<T>;
    type Shared<T> = alloc::rc::Rc<T>;
    type Waker = ();
    type Counter = core::cell::Cell<u64>;

    fn share<T>(value: T) -> Self::Shared<T> {
        alloc::rc::Rc::new(value)
    }

    fn wake(_: &()) {}
}

impl<T> Lock<T> for core::cell::RefCell<T> {
    fn new(value: T) -> Self {
        core::cell::RefCell::new(value)
    }

    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.borrow())
    }

    fn write<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.borrow_mut())
    }
}

/// A handle to one room of a hub.
pub type RoomRef<H> = <H as Host>::Shared<Room<H>>;

/// The wakers of the sessions holding a room, in slots so that each session removes its own.
struct Watchers<W> {
    slots: Vec<Option<W>>,
    free: Vec<usize>,
}

/// One room: its log and the sessions watching it.
pub struct Room<H: Host> {
    name: String,
    log: H::Lock<RoomLog>,
    watchers: H::Lock<Watchers<H::Waker>>,
}

impl<H: Host> fmt::Debug for Room<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Room")
            .field("name", &self.name)
            .field("head", &self.head())
            .finish_non_exhaustive()
    }
}

impl<H: Host> Room<H> {
    fn new(name: &str, epoch: u32, history: HistoryConfig) -> Self {
        Room {
            name: String::from(name),
            log: H::Lock::new(RoomLog::new(epoch, history)),
            watchers: H::Lock::new(Watchers {
                slots: Vec::new(),
                free: Vec::new(),
            }),
        }
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on the room's log, read-locked.
    pub fn read<R>(&self, f: impl FnOnce(&RoomLog) -> R) -> R {
        self.log.read(f)
    }

    /// The position of the room's latest event.
    pub fn head(&self) -> Position {
        self.log.read(RoomLog::head)
    }

    /// Appends an event (see [`RoomLog::append`]) and wakes the room's watchers.
    pub fn emit(
        &self,
        now: Instant,
        kind: &str,
        payload: &[u8],
        key: Option<&str>,
    ) -> Result<Position, HubError> {
        let position = self
            .log
            .write(|log| log.append(now, kind, payload, key))
            .map_err(HubError::Append)?;
        self.wake();
        Ok(position)
    }

    /// [`Room::emit`] for a payload known to be JSON text (see [`RoomLog::append_json`]).
    #[cfg(feature = "json")]
    pub fn emit_json(
        &self,
        now: Instant,
        kind: &str,
        payload: crate::payload::JsonText<'_>,
        key: Option<&str>,
    ) -> Result<Position, HubError> {
        let position = self
            .log
            .write(|log| log.append_json(now, kind, payload, key))
            .map_err(HubError::Append)?;
        self.wake();
        Ok(position)
    }

    /// Registers a session's waker; returns the slot to give back to [`Room::unwatch`].
    pub fn watch(&self, waker: H::Waker) -> usize {
        self.watchers.write(|w| match w.free.pop() {
            Some(slot) => {
                w.slots[slot] = Some(waker);
                slot
            }
            None => {
                w.slots.push(Some(waker));
                w.slots.len() - 1
            }
        })
    }

    /// Removes the waker in `slot`.
    pub fn unwatch(&self, slot: usize) {
        self.watchers.write(|w| {
            if let Some(entry) = w.slots.get_mut(slot) {
                if entry.take().is_some() {
                    w.free.push(slot);
                }
            }
        });
    }

    /// How many sessions watch the room.
    pub fn watchers(&self) -> usize {
        self.watchers.read(|w| w.slots.len() - w.free.len())
    }

    fn wake(&self) {
        self.watchers.read(|w| {
            for waker in w.slots.iter().flatten() {
                H::wake(waker);
            }
        });
    }
}

impl Room<Local> {
    /// The room's log, lent out: a single-threaded host has no lock to hold (a `RefCell`
    /// borrow; appending while it is held panics).
    pub fn log(&self) -> core::cell::Ref<'_, RoomLog> {
        self.log.borrow()
    }
}

/// A server's rooms and deduplication state. `Hub::new` makes a single-threaded one ([`Local`]);
/// adapters make theirs with [`Hub::with_host`].
pub struct Hub<H: Host = Local> {
    epoch: u32,
    config: HubConfig,
    directory: H::Lock<Directory<H>>,
    dedup: H::Lock<Dedup>,
    /// When [`Hub::sweep_due`] sweeps next.
    sweep_at: H::Lock<Instant>,
}

/// The rooms by name, and how many of them clients created.
struct Directory<H: Host> {
    rooms: BTreeMap<String, Listed<H>>,
    client_rooms: usize,
    /// Client rooms freed so far: a client room's epoch is derived from this count at its
    /// creation, so a room freed and created again never has its old epoch.
    freed: u32,
}

/// A room in the directory; `quiet` is `Some` for a room a client created.
struct Listed<H: Host> {
    room: RoomRef<H>,
    quiet: Option<Quiet>,
}

/// What the last sweep saw of a client's room: since when it has been without watchers and
/// new events (`None` until a sweep has seen it so), and its head then.
#[derive(Clone, Copy)]
struct Quiet {
    since: Option<Instant>,
    head: u64,
}

/// The epoch of a client room created after `n` client rooms were freed, in a hub of `epoch`:
/// the hub's own before any was freed, then a new one for each `n` (a multiplication by an odd
/// constant is a bijection on `u32`, so no two counts of one run give the same epoch, and the
/// hub's random epoch makes a run's sequence its own; 0 is left out as for hub epochs).
fn client_epoch(epoch: u32, n: u32) -> u32 {
    epoch.wrapping_add(n.wrapping_mul(0x9E37_79B9)).max(1)
}

impl Hub<Local> {
    /// An empty single-threaded hub whose rooms all start in `epoch`. A restarted server without
    /// shared history must pick a new epoch (for example from the clock or a random draw), so
    /// clients learn that their positions are void.
    pub fn new(epoch: u32, config: HubConfig) -> Self {
        Self::with_host(epoch, config)
    }
}

impl<H: Host> Hub<H> {
    /// An empty hub on host `H` whose rooms all start in `epoch`.
    pub fn with_host(epoch: u32, config: HubConfig) -> Self {
        Hub {
            epoch,
            config,
            directory: H::Lock::new(Directory {
                rooms: BTreeMap::new(),
                client_rooms: 0,
                freed: 0,
            }),
            dedup: H::Lock::new(Dedup::new(config.dedup)),
            sweep_at: H::Lock::new(Instant::ZERO),
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

    /// The room `name`, if it exists. Keep the handle to emit without looking the name up again.
    pub fn room(&self, name: &str) -> Option<RoomRef<H>> {
        self.directory
            .read(|d| d.rooms.get(name).map(|l| l.room.clone()))
    }

    /// The room `name`, created (empty) if needed, as the application's: it stays for the hub's
    /// life. Call it at startup to declare the rooms clients may subscribe to before their first
    /// event (clients cannot create rooms unless granted).
    pub fn ensure_room(&self, name: &str) -> Result<RoomRef<H>, HubError> {
        if let Some(room) = self.room(name) {
            return Ok(room);
        }
        check_name(name, "room").map_err(HubError::InvalidRoom)?;
        self.directory
            .write(|d| self.create(d, name, false).map(|l| l.room.clone()))
    }

    /// Runs `f` on the room `name` for a client, under the directory's lock so that a sweep
    /// cannot free the room meanwhile: on the existing room, or (if `may_create`) on a new
    /// client room, freed once idle (see the [module docs](self)). [`HubError::NoSuchRoom`] if
    /// it does not exist and the client may not create it.
    ///
    /// `f` runs with the directory locked (shared, or exclusive when it created the room): keep
    /// it to an append or a watch.
    pub fn client_room<R>(
        &self,
        name: &str,
        may_create: bool,
        f: impl FnOnce(&RoomRef<H>) -> R,
    ) -> Result<R, HubError> {
        let mut f = Some(f);
        let found = self.directory.read(|d| {
            let listed = d.rooms.get(name)?;
            f.take().map(|f| f(&listed.room))
        });
        if let Some(found) = found {
            return Ok(found);
        }
        if !may_create {
            return Err(HubError::NoSuchRoom);
        }
        check_name(name, "room").map_err(HubError::InvalidRoom)?;
        let f = f.ok_or(HubError::NoSuchRoom)?;
        self.directory
            .write(|d| self.create(d, name, true).map(|l| f(&l.room)))
    }

    /// Creates `name` in the write-locked directory, unless another caller did since the read.
    fn create<'d>(
        &self,
        d: &'d mut Directory<H>,
        name: &str,
        by_client: bool,
    ) -> Result<&'d Listed<H>, HubError> {
        if !d.rooms.contains_key(name) {
            if d.rooms.len() >= self.config.max_rooms {
                return Err(HubError::TooManyRooms);
            }
            let (epoch, quiet) = if by_client {
                if d.client_rooms >= self.config.max_client_rooms {
                    return Err(HubError::TooManyRooms);
                }
                d.client_rooms += 1;
                let quiet = Quiet {
                    since: None,
                    head: 0,
                };
                (client_epoch(self.epoch, d.freed), Some(quiet))
            } else {
                (self.epoch, None)
            };
            let room = H::share(Room::new(name, epoch, self.config.history));
            d.rooms.insert(String::from(name), Listed { room, quiet });
        }
        d.rooms.get(name).ok_or(HubError::NoSuchRoom)
    }

    /// Every room, in name order (handles, taken under one read of the directory).
    pub fn rooms(&self) -> Vec<RoomRef<H>> {
        self.directory
            .read(|d| d.rooms.values().map(|l| l.room.clone()).collect())
    }

    /// Frees the rooms clients created that have had no watcher and no new event since a sweep
    /// at least [`HubConfig::room_idle`] ago; returns how many. A client room is marked quiet at
    /// the first sweep that finds it so, hence freed between `room_idle` and `room_idle` plus
    /// the sweep interval after its last activity.
    pub fn sweep(&self, now: Instant) -> usize {
        let idle = self.config.room_idle;
        self.directory.write(|d| {
            let before = d.rooms.len();
            d.rooms.retain(|_, listed| {
                let Some(quiet) = listed.quiet.as_mut() else {
                    return true;
                };
                let head = listed.room.head().offset;
                if listed.room.watchers() > 0 || head != quiet.head {
                    *quiet = Quiet { since: None, head };
                    return true;
                }
                match quiet.since {
                    None => {
                        quiet.since = Some(now);
                        true
                    }
                    Some(since) => now.saturating_duration_since(since) < idle,
                }
            });
            let freed = before - d.rooms.len();
            d.client_rooms -= freed;
            d.freed = d.freed.wrapping_add(freed as u32);
            freed
        })
    }

    /// [`Hub::sweep`] if a quarter of `room_idle` has passed since the last: cheap enough to call
    /// on every message a connection receives.
    pub fn sweep_due(&self, now: Instant) -> usize {
        if now < self.sweep_at.read(|at| *at) {
            return 0;
        }
        let due = self.sweep_at.write(|at| {
            let due = now >= *at;
            if due {
                *at = now + self.config.room_idle / 4;
            }
            due
        });
        if due {
            self.sweep(now)
        } else {
            0
        }
    }

    /// Appends an event to `room` (created if needed). `key`, if any, is its coalescing key: it
    /// supersedes the unsent older event with the same key.
    pub fn emit(
        &self,
        now: Instant,
        room: &str,
        kind: &str,
        payload: &[u8],
        key: Option<&str>,
    ) -> Result<Position, HubError> {
        self.ensure_room(room)?.emit(now, kind, payload, key)
    }

    /// [`Hub::emit`] for a payload known to be JSON text (see [`RoomLog::append_json`]).
    #[cfg(feature = "json")]
    pub fn emit_json(
        &self,
        now: Instant,
        room: &str,
        kind: &str,
        payload: crate::payload::JsonText<'_>,
        key: Option<&str>,
    ) -> Result<Position, HubError> {
        self.ensure_room(room)?.emit_json(now, kind, payload, key)
    }

    /// Drops events older than the history's age limit, in every room.
    pub fn expire(&self, now: Instant) {
        for room in self.rooms() {
            room.log.write(|log| log.expire(now));
        }
    }

    /// Runs `f` on the deduplication window.
    pub fn dedup<R>(&self, f: impl FnOnce(&mut Dedup) -> R) -> R {
        self.dedup.write(f)
    }
}

/// Sizes of a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// History kept per room.
    pub history: HistoryConfig,
    /// Most rooms the hub holds. Default 1024.
    pub max_rooms: usize,
    /// Most of those that clients created (where their grants allow it), so that clients
    /// cannot take the rooms the application needs. Default 256.
    pub max_client_rooms: usize,
    /// How long a room a client created may go without watchers and events before it is freed.
    /// Default 60 s.
    pub room_idle: Duration,
    /// Publish deduplication window.
    pub dedup: DedupConfig,
}

impl HubConfig {
    /// The defaults.
    pub const fn new() -> Self {
        HubConfig {
            history: HistoryConfig::new(),
            max_rooms: 1024,
            max_client_rooms: 256,
            room_idle: Duration::from_secs(60),
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

    /// Sets the most rooms clients may create.
    pub const fn max_client_rooms(mut self, rooms: usize) -> Self {
        self.max_client_rooms = rooms;
        self
    }

    /// Sets how long a client's room may stay idle before it is freed.
    pub const fn room_idle(mut self, idle: Duration) -> Self {
        self.room_idle = idle;
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
    /// The hub holds `max_rooms` rooms already (or, for a client's room, `max_client_rooms`
    /// client rooms).
    TooManyRooms,
    /// The room does not exist, and the client may not create it.
    NoSuchRoom,
    /// The room name breaks the name rules.
    InvalidRoom(Invalid),
    /// The room's log refused the event.
    Append(AppendError),
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HubError::TooManyRooms => f.write_str("room limit reached"),
            HubError::NoSuchRoom => f.write_str("no such room"),
            HubError::InvalidRoom(i) => write!(f, "{i}"),
            HubError::Append(e) => write!(f, "{e}"),
        }
    }
}

impl core::error::Error for HubError {}
