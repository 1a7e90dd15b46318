//! The `Hub` a service keeps: emit events into rooms, read statistics.
//!
//! A `Hub` is the core's [`SharedHub`] (the rooms, each behind its own lock, the counters, emit
//! and statistics) on this adapter's [`Threads`] host: a `Mutex` per room, `Arc` handles,
//! atomics for the counters, and each connection loop's waker, which an append to a room it
//! holds wakes (a coalesced message to its loop, see `signal`). Nothing blocks on a socket while
//! holding a lock.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use eventwire_core::dashboard::EmitError;
use eventwire_core::hub::{self, Counter, Host};
use eventwire_core::runtime::{Runtime, SharedHub};
pub use eventwire_core::stats::{HubStats, RoomStats};
use eventwire_core::time::Instant;

use crate::clock::{self, Clock};
use crate::signal::Waker;

/// A connection loop's waker; its loop takes no items, only wakes.
pub type ConnWaker = Waker<Infallible>;

/// The handle a service keeps to emit events; clone it freely and use it from any thread.
///
/// The typed dashboard helpers (`emit_agent_status_change`, `emit_task_queued`, ...) come with
/// the [`EmitDashboard`](eventwire_core::dashboard::EmitDashboard) trait, re-exported by this
/// crate.
///
/// ```
/// use eventwire_sync::Hub;
///
/// let hub = Hub::new(Default::default());
/// hub.emit("system", "system.note", &serde_json::json!({"text": "started"})).unwrap();
/// assert_eq!(hub.room_stats("system").unwrap().head.offset, 1);
/// ```
pub type Hub = SharedHub<Threads>;

/// The blocking host of a [`Hub`]: its clock, and the locks, handles, wakers and counters its
/// rooms use.
#[derive(Debug)]
pub struct Threads {
    pub(crate) clock: Clock,
}

impl Default for Threads {
    fn default() -> Self {
        Threads {
            clock: Clock::new(),
        }
    }
}

impl Runtime for Threads {
    type Host = Threads;

    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn epoch(&self) -> u32 {
        hub::epoch_from_random(clock::entropy())
    }
}

impl Host for Threads {
    type Lock<T> = Guarded<T>;
    type Shared<T> = Arc<T>;
    type Waker = ConnWaker;
    type Counter = Tally;

    fn share<T>(value: T) -> Arc<T> {
        Arc::new(value)
    }

    fn wake(waker: &ConnWaker) {
        waker.wake();
    }
}

/// A room's lock. Threads hold it for an append or one batch's copy; a poisoned lock is used
/// on (appends are validated before they change anything).
#[derive(Debug)]
pub struct Guarded<T>(Mutex<T>);

impl<T> hub::Lock<T> for Guarded<T> {
    fn new(value: T) -> Self {
        Guarded(Mutex::new(value))
    }

    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        self.write(|value| f(value))
    }

    fn write<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A counter any thread adds to.
#[derive(Debug, Default)]
pub struct Tally(AtomicU64);

impl Counter for Tally {
    fn add(&self, n: u64) -> u64 {
        self.0.fetch_add(n, Ordering::AcqRel)
    }

    fn sub(&self, n: u64) -> u64 {
        self.0.fetch_sub(n, Ordering::AcqRel)
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}
