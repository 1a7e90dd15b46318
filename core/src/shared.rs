//! The hub handle a threaded or async server shares between its connections (features `std` and
//! `json`).
//!
//! [`SharedHub`] is what every adapter's `Hub` is: a cheap handle (an `Arc`) over the core's
//! [`Hub`] behind a mutex, the server's [`Counters`], and an adapter-specific [`HubRuntime`] that
//! reads the adapter's clock and wakes the connections serving the hub. Emitting appends the event
//! to its room once, encoded once, counts it, then wakes every connection; each reads the same
//! bytes from the room's log when its transport can take more.
//!
//! Invariants: every append through the handle (an emit, or a publish a connection appended, see
//! [`SharedHub::count`]) counts one event in and wakes the connections after the lock
//! is released; critical sections are short (an append, or one batch read), and a panic while
//! holding the lock does not stop the hub (appends are validated before they change anything).

use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use std::vec::Vec;

use serde::Serialize;

use crate::code::CloseCode;
use crate::dashboard::{DashboardEvent, EmitDashboard};
use crate::frame::Position;
use crate::hub::{EmitError, Hub, HubConfig};
use crate::payload::JsonText;
use crate::server::{Connection, Counts, Framing, ServerConfig as SessionConfig};
use crate::stats::{Counters, HubStats, RoomStats};
use crate::time::Instant;

/// What a [`SharedHub`] needs from the adapter around it: its clock, and a way to wake the
/// connections serving the hub.
pub trait HubRuntime: Send + Sync + 'static {
    /// The adapter's current time, on the clock its sessions run on.
    fn now(&self) -> Instant;
    /// Wakes every connection serving the hub (called after each append, without the lock).
    fn wake(&self);
}

struct Inner<R> {
    core: Mutex<Hub>,
    counters: Counters,
    runtime: R,
}

/// The handle a service keeps to emit events; clone it freely and use it from any thread.
///
/// The typed dashboard helpers (`emit_agent_status_change`, `emit_task_queued`, ...) come with
/// the [`EmitDashboard`] trait.
///
/// ```
/// use eventwire_core::shared::{HubRuntime, SharedHub};
/// use eventwire_core::time::Instant;
///
/// #[derive(Default)]
/// struct Manual;
/// impl HubRuntime for Manual {
///     fn now(&self) -> Instant { Instant::from_micros(0) }
///     fn wake(&self) {}
/// }
///
/// let hub = SharedHub::<Manual>::new(Default::default());
/// hub.emit("system", "system.note", &serde_json::json!({"text": "started"})).unwrap();
/// assert_eq!(hub.room_stats("system").unwrap().head.offset, 1);
/// ```
pub struct SharedHub<R> {
    inner: Arc<Inner<R>>,
}

impl<R> Clone for SharedHub<R> {
    fn clone(&self) -> Self {
        SharedHub {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<R: HubRuntime> fmt::Debug for SharedHub<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl<R: HubRuntime + Default> SharedHub<R> {
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
        Self::with_runtime(epoch, config, R::default())
    }
}

impl<R: HubRuntime> SharedHub<R> {
    /// A hub whose rooms start in `epoch`, served through `runtime`.
    pub fn with_runtime(epoch: u32, config: HubConfig, runtime: R) -> Self {
        SharedHub {
            inner: Arc::new(Inner {
                core: Mutex::new(Hub::new(epoch, config)),
                counters: Counters::default(),
                runtime,
            }),
        }
    }

    /// Locks the core hub (for a session's input or output). Keep the guard briefly.
    pub fn lock(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock cannot leave the log half-written: appends are
        // validated before they change anything. Keep serving.
        self.inner.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The server's counters, which the connection loops update.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// The adapter's runtime of this hub.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }

    /// Wakes every connection serving the hub.
    pub fn notify(&self) {
        self.inner.runtime.wake();
    }

    /// Adds what a connection counted; publishes it appended wake the connections, as an emit
    /// does.
    pub fn count(&self, counts: Counts) {
        self.inner.counters.add(counts);
        if counts.events_in > 0 {
            self.notify();
        }
    }

    /// Counts one appended event and wakes the connections.
    fn count_published(&self) {
        self.inner
            .counters
            .events_in
            .fetch_add(1, Ordering::Relaxed);
        self.notify();
    }

    /// A new connection from `peer`, framed as `framing`: its session id is the number of
    /// connections accepted before it, its seed is drawn from `peer` with a `RandomState`. A
    /// connection `over_capacity` is closed at once with `TRY_AGAIN_LATER` and a retry-after
    /// hint of one second.
    pub fn open_connection(
        &self,
        config: SessionConfig,
        framing: Framing,
        peer: impl Hash,
        over_capacity: bool,
    ) -> Connection {
        let seed = RandomState::new().hash_one(peer);
        let session_id = self
            .inner
            .counters
            .connections_total
            .load(Ordering::Relaxed);
        let mut session =
            Connection::new(self.inner.runtime.now(), config, framing, session_id, seed);
        if over_capacity {
            session.close(
                CloseCode::TRY_AGAIN_LATER,
                Some(Duration::from_secs(1)),
                "server at capacity",
            );
        }
        session
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
        self.emit_serialized(room, kind, payload, None)
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
        self.emit_serialized(room, kind, payload, Some(key))
    }

    /// Serialises `payload` with serde_json and appends it as JSON text known to be valid, so the
    /// room log does not check it again for its JSON form.
    fn emit_serialized<T: Serialize + ?Sized>(
        &self,
        room: &str,
        kind: &str,
        payload: &T,
        key: Option<&str>,
    ) -> Result<Position, EmitError> {
        let mut buf = Vec::new();
        let text = JsonText::write(payload, &mut buf).map_err(EmitError::Payload)?;
        self.emit_text(room, kind, text, key)
    }

    /// Appends JSON text known to be valid.
    fn emit_text(
        &self,
        room: &str,
        kind: &str,
        text: JsonText<'_>,
        key: Option<&str>,
    ) -> Result<Position, EmitError> {
        let now = self.inner.runtime.now();
        let position = self
            .lock()
            .emit_json(now, room, kind, text, key)
            .map_err(EmitError::Hub)?;
        self.count_published();
        Ok(position)
    }

    /// Emits payload bytes as they are. Clients on the JSON subprotocol need them to be JSON
    /// text; an event whose payload is not reaches them as a gap.
    pub fn emit_raw(
        &self,
        room: &str,
        kind: &str,
        payload: &[u8],
        key: Option<&str>,
    ) -> Result<Position, EmitError> {
        let now = self.inner.runtime.now();
        let position = self
            .lock()
            .emit(now, room, kind, payload, key)
            .map_err(EmitError::Hub)?;
        self.count_published();
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

/// The typed dashboard helpers: bring [`EmitDashboard`] into scope to call them.
impl<R: HubRuntime> EmitDashboard for SharedHub<R> {
    fn emit_dashboard(&self, event: &DashboardEvent<'_>) -> Result<Position, EmitError> {
        let key = event.coalesce_key().map_err(EmitError::Dashboard)?;
        let mut buf = Vec::new();
        let text = event.write_json(&mut buf).map_err(EmitError::Payload)?;
        self.emit_text(
            event.room(),
            event.kind(),
            text,
            key.as_ref().map(|k| k.as_str()),
        )
    }
}
