//! The `Hub` a service keeps: emit events into rooms, read statistics.
//!
//! A `Hub` is the core's [`SharedHub`] (the core hub behind a mutex, the counters, emit and
//! statistics) over this adapter's [`Wakeups`]: std's clock and the wakers of the connections
//! serving the hub. Every append wakes each connection (a coalesced message to its loop, see
//! `signal`). Nothing blocks on a socket while holding the hub's lock.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

pub use eventwire_core::hub::EmitError;
use eventwire_core::shared::{HubRuntime, SharedHub};
pub use eventwire_core::stats::{HubStats, RoomStats};
use eventwire_core::time::Instant;

use crate::clock::Clock;
use crate::signal::Waker;

/// A connection loop's waker; its loop takes no items, only wakes.
pub(crate) type ConnWaker = Waker<Infallible>;

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
pub type Hub = SharedHub<Wakeups>;

/// The blocking side of a [`Hub`]: the clock its sessions run on and the wakers of the
/// connections serving it, by registration id.
pub struct Wakeups {
    pub(crate) clock: Clock,
    wakers: Mutex<BTreeMap<u64, ConnWaker>>,
    next_waker: AtomicU64,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            clock: Clock::new(),
            wakers: Mutex::new(BTreeMap::new()),
            next_waker: AtomicU64::new(0),
        }
    }
}

impl Wakeups {
    fn wakers(&self) -> MutexGuard<'_, BTreeMap<u64, ConnWaker>> {
        self.wakers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl HubRuntime for Wakeups {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Wakes every registered connection.
    fn wake(&self) {
        for waker in self.wakers().values() {
            waker.wake();
        }
    }
}

/// Keeps a connection's waker registered with its hub; unregisters it when dropped.
pub(crate) struct Registration {
    hub: Hub,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.runtime().wakers().remove(&self.id);
    }
}

/// Wakes `waker` whenever `hub` changes, until the registration is dropped.
pub(crate) fn register(hub: &Hub, waker: ConnWaker) -> Registration {
    let wakeups = hub.runtime();
    let id = wakeups.next_waker.fetch_add(1, Ordering::Relaxed);
    wakeups.wakers().insert(id, waker);
    Registration {
        hub: hub.clone(),
        id,
    }
}
