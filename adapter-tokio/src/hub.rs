//! The `Hub` a service keeps: emit events into rooms, read statistics.
//!
//! A `Hub` is a cheap handle (an `Arc`) over the core's [`eventwire_core::hub::Hub`] behind a
//! mutex, plus a change signal that wakes the connections. Emitting appends the event to its room
//! once, encoded once; every connection reads the same bytes from the room's log when its socket
//! can take more. Critical sections are short (an append, or one batch read), and nothing awaits
//! while holding the lock.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use eventwire_core::dashboard::{DashboardEvent, EmitDashboard};
use eventwire_core::frame::Position;
pub use eventwire_core::hub::EmitError;
use eventwire_core::hub::{Hub as CoreHub, HubConfig};
pub(crate) use eventwire_core::stats::Counters;
pub use eventwire_core::stats::{HubStats, RoomStats};
use serde::Serialize;
use tokio::sync::watch;

use crate::clock::Clock;

pub(crate) struct Inner {
    core: Mutex<CoreHub>,
    pub(crate) changed: watch::Sender<u64>,
    pub(crate) counters: Counters,
    pub(crate) clock: Clock,
}

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
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<Inner>,
}

impl Hub {
    /// A hub with a fresh epoch (taken from the wall clock), so that clients of a previous run
    /// learn that their positions are void.
    pub fn new(config: HubConfig) -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self::with_epoch(secs as u32, config)
    }

    /// A hub whose rooms start in `epoch`.
    pub fn with_epoch(epoch: u32, config: HubConfig) -> Self {
        let (changed, _) = watch::channel(0);
        Hub {
            inner: Arc::new(Inner {
                core: Mutex::new(CoreHub::new(epoch, config)),
                changed,
                counters: Counters::default(),
                clock: Clock::new(),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, CoreHub> {
        // A panic while holding the lock cannot leave the log half-written: appends are
        // validated before they change anything. Keep serving.
        self.inner.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn notify(&self) {
        self.inner.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The epoch of every room.
    pub fn epoch(&self) -> u32 {
        self.lock().epoch()
    }

    /// Emits `payload`, serialised as JSON, to `room`.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        room: &str,
        kind: &str,
        payload: &T,
    ) -> Result<Position, EmitError> {
        let bytes = serde_json::to_vec(payload).map_err(EmitError::Payload)?;
        self.emit_raw(room, kind, &bytes, None)
    }

    /// Emits `payload` with a coalescing key: a newer event with the same key supersedes this one
    /// for subscribers that have not received it yet (latest value wins).
    pub fn emit_keyed<T: Serialize + ?Sized>(
        &self,
        room: &str,
        kind: &str,
        key: &str,
        payload: &T,
    ) -> Result<Position, EmitError> {
        let bytes = serde_json::to_vec(payload).map_err(EmitError::Payload)?;
        self.emit_raw(room, kind, &bytes, Some(key))
    }

    /// Emits payload bytes as they are. Browsers on the JSON subprotocol need them to be JSON.
    pub fn emit_raw(
        &self,
        room: &str,
        kind: &str,
        payload: &[u8],
        key: Option<&str>,
    ) -> Result<Position, EmitError> {
        let now = self.inner.clock.now();
        let position = self
            .lock()
            .emit(now, room, kind, payload, key)
            .map_err(EmitError::Hub)?;
        self.inner
            .counters
            .events_in
            .fetch_add(1, Ordering::Relaxed);
        self.notify();
        Ok(position)
    }

    /// Statistics of one room.
    pub fn room_stats(&self, room: &str) -> Option<RoomStats> {
        RoomStats::find(&self.lock(), room)
    }

    /// A snapshot of every counter and room.
    pub fn stats(&self) -> HubStats {
        self.inner.counters.snapshot(&self.lock())
    }
}

/// The typed dashboard helpers (`emit_agent_status_change`, `emit_task_queued`, ...): bring
/// [`EmitDashboard`] into scope to call them.
impl EmitDashboard for Hub {
    fn emit_dashboard(&self, event: &DashboardEvent<'_>) -> Result<Position, EmitError> {
        let key = event.coalesce_key().map_err(EmitError::Dashboard)?;
        let payload = event.to_json().map_err(EmitError::Payload)?;
        self.emit_raw(
            event.room(),
            event.kind(),
            &payload,
            key.as_ref().map(|k| k.as_str()),
        )
    }
}
