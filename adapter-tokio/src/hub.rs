//! The `Hub` a service keeps: emit events into rooms, read statistics.
//!
//! A `Hub` is the core's [`SharedHub`] (the rooms, each behind its own lock, the counters, emit
//! and statistics) on this adapter's [`Tokio`] host: `std`'s `RwLock` for each room, `Arc`
//! handles, atomics for the counters, and a `Notify` per connection that an append to a room it
//! holds wakes. Nothing awaits while holding a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use eventwire_core::dashboard::EmitError;
use eventwire_core::hub::{self, Counter, Host};
use eventwire_core::runtime::{Runtime, SharedHub};
pub use eventwire_core::stats::{HubStats, RoomStats};
use eventwire_core::time::Instant;
use tokio::sync::Notify;

use crate::clock::{self, Clock};

/// The handle a service keeps to emit events; clone it freely.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use eventwire_tokio::Hub;
///
/// let hub = Hub::new(Default::default());
/// hub.emit("system", "system.note", &serde_json::json!({"text": "started"})).unwrap();
/// assert_eq!(hub.room_stats("system").unwrap().head.offset, 1);
/// # }
/// ```
pub type Hub = SharedHub<Tokio>;

/// The tokio host of a [`Hub`]: its clock, and the locks, handles, wakers and counters its
/// rooms use.
#[derive(Debug)]
pub struct Tokio {
    pub(crate) clock: Clock,
}

impl Default for Tokio {
    fn default() -> Self {
        Tokio {
            clock: Clock::new(),
        }
    }
}

impl Runtime for Tokio {
    type Host = Tokio;

    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn epoch(&self) -> u32 {
        hub::epoch_from_random(clock::entropy())
    }
}

impl Host for Tokio {
    type Lock<T> = Lock<T>;
    type Shared<T> = Arc<T>;
    type Waker = Arc<Notify>;
    type Counter = Count;

    fn share<T>(value: T) -> Arc<T> {
        Arc::new(value)
    }

    fn wake(waker: &Arc<Notify>) {
        // A permit is stored when the task is busy, so an append is never missed.
        waker.notify_one();
    }
}

/// A room's lock: readers (sessions copying a batch) share it, an append takes it alone. A
/// panic while holding it cannot leave a log half-written (appends are validated before they
/// change anything), so a poisoned lock is used on.
#[derive(Debug)]
pub struct Lock<T>(RwLock<T>);

impl<T> hub::Lock<T> for Lock<T> {
    fn new(value: T) -> Self {
        Lock(RwLock::new(value))
    }

    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn write<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.write().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A counter any task adds to.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Counter for Count {
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
