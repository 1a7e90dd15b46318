//! The `Hub` a service keeps: emit events into rooms, read statistics.
//!
//! A `Hub` is the core's [`SharedHub`] (the core hub behind a mutex, the counters, emit and
//! statistics) over this adapter's [`Wakeups`]: tokio's clock and a `watch` channel that wakes
//! the connections on every append. Nothing awaits while holding the hub's lock.

pub use eventwire_core::hub::EmitError;
use eventwire_core::shared::{HubRuntime, SharedHub};
pub use eventwire_core::stats::{HubStats, RoomStats};
use eventwire_core::time::Instant;
use tokio::sync::watch;

use crate::clock::Clock;

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
pub type Hub = SharedHub<Wakeups>;

/// The tokio side of a [`Hub`]: the clock its sessions run on and the `watch` channel every
/// connection task listens to.
#[derive(Debug)]
pub struct Wakeups {
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) clock: Clock,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            changed: watch::channel(0).0,
            clock: Clock::new(),
        }
    }
}

impl HubRuntime for Wakeups {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn wake(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}
