//! [`DashboardEvent`]: any dashboard event, with its kind, room, coalescing key and class, and
//! its payload encoded and decoded in postcard or JSON.
//!
//! The payload is the inner struct alone; the kind travels in the frame and picks the struct to
//! decode (`decode_as`), so a payload decoded under another kind is the caller's mistake, not a
//! format this module can detect.

use serde::{Deserialize, Serialize};

use super::payloads::*;
use super::{CoalesceKey, DashboardError, EventClass, AGENTS_ROOM, SYSTEM_ROOM, TASKS_ROOM};

/// Any dashboard event, borrowing its strings.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DashboardEvent<'a> {
    /// `agent.created`.
    AgentCreated(AgentCreated<'a>),
    /// `agent.deleted`.
    AgentDeleted(AgentDeleted<'a>),
    /// `agent.status_changed`.
    AgentStatusChanged(AgentStatusChanged<'a>),
    /// `agent.metrics`.
    AgentMetrics(AgentMetrics<'a>),
    /// `task.queued`.
    TaskQueued(TaskQueued<'a>),
    /// `task.assigned`.
    TaskAssigned(TaskAssigned<'a>),
    /// `task.completed`.
    TaskCompleted(TaskCompleted<'a>),
    /// `task.failed`.
    TaskFailed(TaskFailed<'a>),
    /// `system.alert`.
    SystemAlert(SystemAlert<'a>),
    /// `system.performance`.
    SystemPerformance(SystemPerformance),
    /// `system.status`.
    SystemStatus(SystemStatus),
}

macro_rules! from_events {
    ($($ty:ident),* $(,)?) => {
        $(
            impl<'a> From<$ty<'a>> for DashboardEvent<'a> {
                fn from(e: $ty<'a>) -> Self {
                    DashboardEvent::$ty(e)
                }
            }
        )*
    };
}

from_events!(
    AgentCreated,
    AgentDeleted,
    AgentStatusChanged,
    AgentMetrics,
    TaskQueued,
    TaskAssigned,
    TaskCompleted,
    TaskFailed,
    SystemAlert,
);

impl From<SystemPerformance> for DashboardEvent<'_> {
    fn from(e: SystemPerformance) -> Self {
        DashboardEvent::SystemPerformance(e)
    }
}

impl From<SystemStatus> for DashboardEvent<'_> {
    fn from(e: SystemStatus) -> Self {
        DashboardEvent::SystemStatus(e)
    }
}

impl<'a> DashboardEvent<'a> {
    /// The event's kind, for the frame's `kind` field: one of [`KINDS`](super::KINDS), each a valid
    /// [`Name`](crate::text::Name).
    pub fn kind(&self) -> &'static str {
        match self {
            DashboardEvent::AgentCreated(_) => AgentCreated::KIND,
            DashboardEvent::AgentDeleted(_) => AgentDeleted::KIND,
            DashboardEvent::AgentStatusChanged(_) => AgentStatusChanged::KIND,
            DashboardEvent::AgentMetrics(_) => AgentMetrics::KIND,
            DashboardEvent::TaskQueued(_) => TaskQueued::KIND,
            DashboardEvent::TaskAssigned(_) => TaskAssigned::KIND,
            DashboardEvent::TaskCompleted(_) => TaskCompleted::KIND,
            DashboardEvent::TaskFailed(_) => TaskFailed::KIND,
            DashboardEvent::SystemAlert(_) => SystemAlert::KIND,
            DashboardEvent::SystemPerformance(_) => SystemPerformance::KIND,
            DashboardEvent::SystemStatus(_) => SystemStatus::KIND,
        }
    }

    /// The room the event is published to: [`AGENTS_ROOM`], [`TASKS_ROOM`] or [`SYSTEM_ROOM`].
    pub fn room(&self) -> &'static str {
        match self {
            DashboardEvent::AgentCreated(_)
            | DashboardEvent::AgentDeleted(_)
            | DashboardEvent::AgentStatusChanged(_)
            | DashboardEvent::AgentMetrics(_) => AGENTS_ROOM,
            DashboardEvent::TaskQueued(_)
            | DashboardEvent::TaskAssigned(_)
            | DashboardEvent::TaskCompleted(_)
            | DashboardEvent::TaskFailed(_) => TASKS_ROOM,
            DashboardEvent::SystemAlert(_)
            | DashboardEvent::SystemPerformance(_)
            | DashboardEvent::SystemStatus(_) => SYSTEM_ROOM,
        }
    }

    /// How the server's batcher paces the event: `agent.metrics` and `system.performance` are
    /// [`EventClass::Metrics`], everything else [`EventClass::Normal`].
    pub fn class(&self) -> EventClass {
        match self {
            DashboardEvent::AgentMetrics(_) | DashboardEvent::SystemPerformance(_) => {
                EventClass::Metrics
            }
            // Listed one by one so that a new kind has to be classed deliberately.
            DashboardEvent::AgentCreated(_)
            | DashboardEvent::AgentDeleted(_)
            | DashboardEvent::AgentStatusChanged(_)
            | DashboardEvent::TaskQueued(_)
            | DashboardEvent::TaskAssigned(_)
            | DashboardEvent::TaskCompleted(_)
            | DashboardEvent::TaskFailed(_)
            | DashboardEvent::SystemAlert(_)
            | DashboardEvent::SystemStatus(_) => EventClass::Normal,
        }
    }

    /// The key under which a newer event supersedes an older one, or `Ok(None)` for events that
    /// must each be delivered.
    ///
    /// `agent.metrics` gives `agent.metrics:<agent_id>`; `system.performance` and `system.status`
    /// give their kind; all others give `None`. The key is a valid [`Name`](crate::text::Name),
    /// built inline without allocating. An `agent.metrics` whose `agent_id` is not a name of at
    /// most [`MAX_KEYED_AGENT_ID_LEN`](super::MAX_KEYED_AGENT_ID_LEN) bytes gives [`DashboardError::InvalidAgentId`]: the caller
    /// decides whether to reject the event or deliver it uncoalesced.
    pub fn coalesce_key(&self) -> Result<Option<CoalesceKey>, DashboardError> {
        match self {
            DashboardEvent::AgentMetrics(m) => CoalesceKey::agent_metrics(m.agent_id).map(Some),
            DashboardEvent::SystemPerformance(_) => {
                Ok(Some(CoalesceKey::fixed(SystemPerformance::KIND)))
            }
            DashboardEvent::SystemStatus(_) => Ok(Some(CoalesceKey::fixed(SystemStatus::KIND))),
            // Facts, each of which must be delivered.
            DashboardEvent::AgentCreated(_)
            | DashboardEvent::AgentDeleted(_)
            | DashboardEvent::AgentStatusChanged(_)
            | DashboardEvent::TaskQueued(_)
            | DashboardEvent::TaskAssigned(_)
            | DashboardEvent::TaskCompleted(_)
            | DashboardEvent::TaskFailed(_)
            | DashboardEvent::SystemAlert(_) => Ok(None),
        }
    }

    /// The size of the event's postcard payload, to size the buffer of
    /// [`to_postcard`](Self::to_postcard).
    pub fn postcard_len(&self) -> Result<usize, postcard::Error> {
        postcard::experimental::serialized_size(&Body(self))
    }

    /// Encodes the payload (the inner struct, without the kind) with postcard into `buf`,
    /// returning the written prefix. A buffer that is too small gives
    /// [`postcard::Error::SerializeBufferFull`]; [`postcard_len`](Self::postcard_len) says how
    /// much is needed.
    pub fn to_postcard<'b>(&self, buf: &'b mut [u8]) -> Result<&'b mut [u8], postcard::Error> {
        postcard::to_slice(&Body(self), buf)
    }

    /// Encodes the payload (the inner struct, without the kind) as a JSON object.
    #[cfg(feature = "json")]
    pub fn to_json(&self) -> Result<alloc::vec::Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Body(self))
    }

    /// The payload as JSON text written into `buf` (cleared first), as [`Self::to_json`] gives
    /// it, known valid so that a room log appends it unchecked.
    #[cfg(feature = "json")]
    pub fn write_json<'b>(
        &self,
        buf: &'b mut alloc::vec::Vec<u8>,
    ) -> Result<crate::payload::JsonText<'b>, serde_json::Error> {
        crate::payload::JsonText::write(&Body(self), buf)
    }

    /// Decodes a postcard payload of the given kind, borrowing its strings from `payload`.
    ///
    /// A kind not in [`KINDS`](super::KINDS) gives [`DashboardError::UnknownKind`] without looking at the
    /// payload; a payload that does not decode as the kind's struct gives
    /// [`DashboardError::Malformed`]. Bytes after the struct are ignored.
    pub fn decode_postcard(kind: &str, payload: &'a [u8]) -> Result<Self, DashboardError> {
        decode_as(kind, Postcard(payload))
    }

    /// Decodes a JSON payload of the given kind, borrowing its strings from `payload`.
    ///
    /// Errors as [`decode_postcard`](Self::decode_postcard). Unknown fields are ignored; anything
    /// but white space after the object, and any string containing an escape (see the module
    /// documentation), give [`DashboardError::Malformed`].
    #[cfg(feature = "json")]
    pub fn decode_json(kind: &str, payload: &'a [u8]) -> Result<Self, DashboardError> {
        decode_as(kind, Json(payload))
    }
}

/// Serialises the inner struct of an event, without its variant.
struct Body<'e, 'a>(&'e DashboardEvent<'a>);

impl Serialize for Body<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            DashboardEvent::AgentCreated(e) => e.serialize(s),
            DashboardEvent::AgentDeleted(e) => e.serialize(s),
            DashboardEvent::AgentStatusChanged(e) => e.serialize(s),
            DashboardEvent::AgentMetrics(e) => e.serialize(s),
            DashboardEvent::TaskQueued(e) => e.serialize(s),
            DashboardEvent::TaskAssigned(e) => e.serialize(s),
            DashboardEvent::TaskCompleted(e) => e.serialize(s),
            DashboardEvent::TaskFailed(e) => e.serialize(s),
            DashboardEvent::SystemAlert(e) => e.serialize(s),
            DashboardEvent::SystemPerformance(e) => e.serialize(s),
            DashboardEvent::SystemStatus(e) => e.serialize(s),
        }
    }
}

/// A payload encoding: decodes one struct from the bytes it holds.
trait Format<'a> {
    fn read<T: Deserialize<'a>>(&self) -> Result<T, DashboardError>;
}

struct Postcard<'a>(&'a [u8]);

impl<'a> Format<'a> for Postcard<'a> {
    fn read<T: Deserialize<'a>>(&self) -> Result<T, DashboardError> {
        postcard::from_bytes(self.0).map_err(|_| DashboardError::Malformed)
    }
}

#[cfg(feature = "json")]
struct Json<'a>(&'a [u8]);

#[cfg(feature = "json")]
impl<'a> Format<'a> for Json<'a> {
    fn read<T: Deserialize<'a>>(&self) -> Result<T, DashboardError> {
        serde_json::from_slice(self.0).map_err(|_| DashboardError::Malformed)
    }
}

fn decode_as<'a, F: Format<'a>>(kind: &str, f: F) -> Result<DashboardEvent<'a>, DashboardError> {
    Ok(match kind {
        AgentCreated::KIND => DashboardEvent::AgentCreated(f.read()?),
        AgentDeleted::KIND => DashboardEvent::AgentDeleted(f.read()?),
        AgentStatusChanged::KIND => DashboardEvent::AgentStatusChanged(f.read()?),
        AgentMetrics::KIND => DashboardEvent::AgentMetrics(f.read()?),
        TaskQueued::KIND => DashboardEvent::TaskQueued(f.read()?),
        TaskAssigned::KIND => DashboardEvent::TaskAssigned(f.read()?),
        TaskCompleted::KIND => DashboardEvent::TaskCompleted(f.read()?),
        TaskFailed::KIND => DashboardEvent::TaskFailed(f.read()?),
        SystemAlert::KIND => DashboardEvent::SystemAlert(f.read()?),
        SystemPerformance::KIND => DashboardEvent::SystemPerformance(f.read()?),
        SystemStatus::KIND => DashboardEvent::SystemStatus(f.read()?),
        _ => return Err(DashboardError::UnknownKind),
    })
}
