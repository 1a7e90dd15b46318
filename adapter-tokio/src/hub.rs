//! The `Hub` a service keeps: emit events into rooms, read statistics.
//!
//! A `Hub` is a cheap handle (an `Arc`) over the core's [`eventwire_core::hub::Hub`] behind a
//! mutex, plus a change signal that wakes the connections. Emitting appends the event to its room
//! once, encoded once; every connection reads the same bytes from the room's log when its socket
//! can take more. Critical sections are short (an append, or one batch read), and nothing awaits
//! while holding the lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use eventwire_core::dashboard::{
    AgentCreated, AgentDeleted, AgentMetrics, AgentStatus, AgentStatusChanged, DashboardEvent,
    Detail, Details, SystemAlert, SystemPerformance, SystemStatus, TaskAssigned, TaskCompleted,
    TaskFailed, TaskQueued,
};
use eventwire_core::frame::Position;
use eventwire_core::hub::{Hub as CoreHub, HubConfig, HubError};
use serde::Serialize;
use tokio::sync::watch;

use crate::clock::Clock;

/// Why an emit failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum EmitError {
    /// The payload could not be serialised to JSON.
    Payload(serde_json::Error),
    /// The hub refused the event (room limit, invalid name, event larger than the history).
    Hub(HubError),
    /// A dashboard event was invalid (for example an agent id that is not a valid name).
    Dashboard(eventwire_core::dashboard::DashboardError),
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmitError::Payload(e) => write!(f, "payload: {e}"),
            EmitError::Hub(e) => write!(f, "{e}"),
            EmitError::Dashboard(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EmitError {}

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

/// A snapshot of the hub's counters.
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

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connections: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) events_in: AtomicU64,
    pub(crate) events_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) gaps_sent: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
}

impl Counters {
    /// Counts a frame about to be sent: events in batches, gap notices.
    pub(crate) fn count_sent(&self, frame: &eventwire_core::frame::Frame<'_>) {
        use eventwire_core::frame::Frame;
        match frame {
            Frame::Batch(b) => {
                self.events_out
                    .fetch_add(b.events.len() as u64, Ordering::Relaxed);
            }
            Frame::Gap(_) => {
                self.gaps_sent.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

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

    /// Emits a typed dashboard event to its room, with its coalescing key.
    pub fn emit_dashboard(&self, event: &DashboardEvent<'_>) -> Result<Position, EmitError> {
        let key = event.coalesce_key().map_err(EmitError::Dashboard)?;
        let payload = event.to_json().map_err(EmitError::Payload)?;
        self.emit_raw(
            event.room(),
            event.kind(),
            &payload,
            key.as_ref().map(|k| k.as_str()),
        )
    }

    /// An agent changed status (the original system's `emit_agent_status_change`).
    pub fn emit_agent_status_change(
        &self,
        agent_id: &str,
        old_status: AgentStatus,
        new_status: AgentStatus,
        details: &[(&str, &str)],
    ) -> Result<Position, EmitError> {
        let mut list = Details::new();
        for (key, value) in details.iter().take(list.capacity()) {
            let _ = list.push(Detail { key, value });
        }
        self.emit_dashboard(&DashboardEvent::from(AgentStatusChanged {
            agent_id,
            old_status,
            new_status,
            details: list,
        }))
    }

    /// An agent was created.
    pub fn emit_agent_created(&self, event: &AgentCreated<'_>) -> Result<Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(event.clone()))
    }

    /// An agent was deleted.
    pub fn emit_agent_deleted(&self, event: &AgentDeleted<'_>) -> Result<Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// An agent's metrics (coalesced per agent).
    pub fn emit_agent_metrics(&self, event: &AgentMetrics<'_>) -> Result<Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// A task was queued.
    pub fn emit_task_queued(&self, event: &TaskQueued<'_>) -> Result<Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// A task was assigned to an agent.
    pub fn emit_task_assigned(&self, event: &TaskAssigned<'_>) -> Result<Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// A task completed.
    pub fn emit_task_completed(&self, event: &TaskCompleted<'_>) -> Result<Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// A task failed.
    pub fn emit_task_failed(&self, event: &TaskFailed<'_>) -> Result<Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// A system alert.
    pub fn emit_system_alert(&self, event: &SystemAlert<'_>) -> Result<Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// System performance figures (coalesced).
    pub fn emit_system_performance(
        &self,
        event: &SystemPerformance,
    ) -> Result<Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// System status (coalesced).
    pub fn emit_system_status(&self, event: &SystemStatus) -> Result<Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// Statistics of one room.
    pub fn room_stats(&self, room: &str) -> Option<RoomStats> {
        let hub = self.lock();
        let id = hub.room_id(room)?;
        let log = hub.log(id)?;
        Some(RoomStats {
            name: room.to_owned(),
            head: log.head(),
            oldest: log.oldest(),
            events: log.len(),
            bytes: log.bytes(),
        })
    }

    /// A snapshot of every counter and room.
    pub fn stats(&self) -> HubStats {
        let c = &self.inner.counters;
        let rooms = self
            .lock()
            .rooms()
            .map(|(_, name, log)| RoomStats {
                name: name.to_owned(),
                head: log.head(),
                oldest: log.oldest(),
                events: log.len(),
                bytes: log.bytes(),
            })
            .collect();
        HubStats {
            connections: c.connections.load(Ordering::Relaxed),
            connections_total: c.connections_total.load(Ordering::Relaxed),
            events_in: c.events_in.load(Ordering::Relaxed),
            events_out: c.events_out.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            gaps_sent: c.gaps_sent.load(Ordering::Relaxed),
            slow_consumers: c.slow_consumers.load(Ordering::Relaxed),
            rooms,
        }
    }
}
