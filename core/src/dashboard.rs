//! Typed dashboard events: what services tell dashboards about agents, tasks and the system.
//!
//! The core carries event payloads as opaque bytes ([`crate::payload`]); this module gives the
//! dashboard's events a shape, so that a service and a dashboard (and the server between them,
//! when it coalesces or transcodes) agree on it. Every type works without `std` or `alloc`.
//!
//! # The events
//!
//! | kind | struct | what it says | room | coalescing key | class |
//! |---|---|---|---|---|---|
//! | `agent.created` | [`AgentCreated`] | an agent joined the fleet | `agents` | none | normal |
//! | `agent.deleted` | [`AgentDeleted`] | an agent left the fleet | `agents` | none | normal |
//! | `agent.status_changed` | [`AgentStatusChanged`] | an agent moved from one [`AgentStatus`] to another | `agents` | none | normal |
//! | `agent.metrics` | [`AgentMetrics`] | an agent's latest resource and throughput figures | `agents` | `agent.metrics:<agent_id>` | metrics |
//! | `task.queued` | [`TaskQueued`] | a task entered the queue | `tasks` | none | normal |
//! | `task.assigned` | [`TaskAssigned`] | a task was handed to an agent | `tasks` | none | normal |
//! | `task.completed` | [`TaskCompleted`] | a task finished | `tasks` | none | normal |
//! | `task.failed` | [`TaskFailed`] | a task failed | `tasks` | none | normal |
//! | `system.alert` | [`SystemAlert`] | something needs an operator's attention | `system` | none | normal |
//! | `system.performance` | [`SystemPerformance`] | the platform's latest load figures | `system` | `system.performance` | metrics |
//! | `system.status` | [`SystemStatus`] | the platform's overall health | `system` | `system.status` | normal |
//!
//! [`DashboardEvent`] wraps them all and answers the table's questions:
//! [`kind`](DashboardEvent::kind) (the frame's `kind` field), [`room`](DashboardEvent::room),
//! [`coalesce_key`](DashboardEvent::coalesce_key) and [`class`](DashboardEvent::class).
//!
//! **Coalescing.** Events with a key are snapshots: a newer one makes an older one with the same
//! key worthless, so a server whose batch is still pending may drop the older (the batch's offsets
//! then skip, as the protocol allows). Events without a key are facts (a status change, every task
//! event, an alert) and are always delivered, each one, in order.
//!
//! **Class.** The server's batcher flushes [`EventClass::Normal`] events every 100 ms and
//! [`EventClass::Metrics`] events every 500 ms (its defaults), as the system this replaces did.
//!
//! # Encoding
//!
//! The payload of a frame is the *inner struct* alone, in postcard
//! ([`to_postcard`](DashboardEvent::to_postcard)) or, with the `json` feature, as a JSON object
//! (`DashboardEvent::to_json`). The kind is not repeated inside: it travels in the
//! frame's `kind` field, and the decoders ([`DashboardEvent::decode_postcard`],
//! `DashboardEvent::decode_json` with `json`) take it from there. Field order is the declaration order;
//! enums are a varint index in postcard and a `snake_case` string in JSON; `Option` is `null` in
//! JSON. [`AgentStatusChanged::details`] is a JSON object (`{"task":"analysis"}`), like the
//! `details` dict of the Python system; in postcard it is a count followed by key/value pairs.
//! As with frames, bytes after the last field of a postcard payload are ignored and so are unknown
//! fields of a JSON payload: a later version can append a field without breaking older readers.
//!
//! A payload does not say which kind it is. Decoded under the wrong kind it usually fails, but not
//! always: postcard is not self-describing and may read nonsense values, and JSON ignores unknown
//! fields (any payload with an `agent_id` reads as an `agent.deleted`). The frame's `kind` is the
//! authority; decode with the one it carries.
//!
//! ```
//! use eventwire_core::dashboard::{AgentStatus, AgentStatusChanged, DashboardEvent, Detail, Details};
//! use eventwire_core::frame::Publish;
//! use eventwire_core::payload::Payload;
//!
//! let mut details = Details::new();
//! details.push(Detail { key: "task", value: "analysis" }).unwrap();
//! let event = DashboardEvent::from(AgentStatusChanged {
//!     agent_id: "agent-1",
//!     old_status: AgentStatus::Idle,
//!     new_status: AgentStatus::Busy,
//!     details,
//! });
//!
//! let mut buf = [0u8; 128];
//! let payload = event.to_postcard(&mut buf).unwrap();
//! let publish = Publish { room: event.room(), id: 1, kind: event.kind(), payload: Payload(payload) };
//!
//! // The receiving side: the kind and payload of the frame give the event back, borrowed.
//! let decoded = DashboardEvent::decode_postcard(publish.kind, publish.payload.as_bytes()).unwrap();
//! assert_eq!(decoded, event);
//! ```
//!
//! # Why borrowed strings
//!
//! Every string is a `&'a str` borrowed from the payload, itself borrowed from the received
//! message: decoding copies nothing and allocates nothing, so the same types serve a server, a
//! browser-facing gateway and a microcontroller that reports its metrics. Lists
//! ([`Capabilities`], [`Details`]) are [`heapless::Vec`]s of fixed capacity for the same reason; a
//! payload whose list is longer does not decode ([`DashboardError::Malformed`]).
//!
//! The price is on the JSON side: a JSON string that contains an escape (`\"`, `\\`, `\n`, or a
//! `\u` sequence, which some encoders such as Python's `json.dumps` use for every non-ASCII
//! character) cannot be borrowed, so `DashboardEvent::decode_json` refuses it as
//! [`DashboardError::Malformed`]. `DashboardEvent::to_json` writes such strings correctly for
//! any other reader (a browser parses them fine); it is only this crate's zero-copy JSON decoder
//! that cannot read them back. Postcard carries any string. Identifiers (`agent_id`, `task_id`)
//! are meant to be [`Name`](crate::text::Name)s, which never need escapes.
//!
//! Numbers: `f32` fields should be finite; JSON writes NaN and infinities as `null`, which does
//! not decode back. `u64` fields above 2^53 - 1 lose precision in a browser's `JSON.parse`.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::text::{check_name, MAX_NAME_LEN};

/// The room of the `agent.*` events.
pub const AGENTS_ROOM: &str = "agents";
/// The room of the `task.*` events.
pub const TASKS_ROOM: &str = "tasks";
/// The room of the `system.*` events.
pub const SYSTEM_ROOM: &str = "system";

/// Most capabilities an [`AgentCreated`] lists.
pub const MAX_CAPABILITIES: usize = 8;
/// Most details an [`AgentStatusChanged`] carries.
pub const MAX_DETAILS: usize = 8;

/// The capabilities of an [`AgentCreated`]: a list of at most [`MAX_CAPABILITIES`], held inline.
/// Build one with `Capabilities::new()` and `push`, or `collect()`.
pub type Capabilities<'a> = heapless::Vec<&'a str, MAX_CAPABILITIES>;

/// The details of an [`AgentStatusChanged`]: at most [`MAX_DETAILS`] pairs, held inline.
/// Build one with `Details::new()` and `push`, or `collect()`.
pub type Details<'a> = heapless::Vec<Detail<'a>, MAX_DETAILS>;

/// Longest agent id that can form a coalescing key (`agent.metrics:` and the id must fit in a
/// [`MAX_NAME_LEN`]-byte name).
pub const MAX_KEYED_AGENT_ID_LEN: usize = MAX_NAME_LEN - METRICS_KEY_PREFIX.len();

const METRICS_KEY_PREFIX: &str = "agent.metrics:";

/// Every kind of [`DashboardEvent`], in the order of its variants.
pub const KINDS: [&str; 11] = [
    AgentCreated::KIND,
    AgentDeleted::KIND,
    AgentStatusChanged::KIND,
    AgentMetrics::KIND,
    TaskQueued::KIND,
    TaskAssigned::KIND,
    TaskCompleted::KIND,
    TaskFailed::KIND,
    SystemAlert::KIND,
    SystemPerformance::KIND,
    SystemStatus::KIND,
];

/// What an agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentStatus {
    /// Running and waiting for work.
    Idle,
    /// Running a task.
    Busy,
    /// Not reachable.
    Offline,
    /// Running but failing; the details of the status change say why.
    Error,
    /// Starting up; not yet accepting work.
    Starting,
    /// Shutting down; accepts no new work.
    Stopping,
}

/// How urgent a [`SystemAlert`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertLevel {
    /// For information; nothing to do.
    Info,
    /// Something may need attention soon.
    Warning,
    /// Something failed.
    Error,
    /// Something failed that needs attention now.
    Critical,
}

/// The platform's overall health, in a [`SystemStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SystemHealth {
    /// Everything works.
    Healthy,
    /// Working, with reduced capacity or some parts failing.
    Degraded,
    /// Not working.
    Down,
}

/// One key/value pair of [`AgentStatusChanged::details`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Detail<'a> {
    /// What the value is, for example `task`.
    pub key: &'a str,
    /// The value, for example `analysis`.
    pub value: &'a str,
}

/// `agent.created`: an agent joined the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCreated<'a> {
    /// The agent's identifier, a [`Name`](crate::text::Name).
    pub agent_id: &'a str,
    /// The agent's human-readable name.
    pub name: &'a str,
    /// What sort of agent it is, for example `researcher`.
    pub agent_type: &'a str,
    /// What the agent can do, at most [`MAX_CAPABILITIES`]. Optional in JSON (empty when absent).
    #[serde(borrow, default)]
    pub capabilities: Capabilities<'a>,
}

/// `agent.deleted`: an agent left the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDeleted<'a> {
    /// The agent's identifier.
    pub agent_id: &'a str,
    /// Why it was removed, if known.
    #[serde(borrow)]
    pub reason: Option<&'a str>,
}

/// `agent.status_changed`: an agent moved from one status to another.
///
/// Never coalesced: a dashboard sees every transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatusChanged<'a> {
    /// The agent's identifier.
    pub agent_id: &'a str,
    /// The status before the change.
    pub old_status: AgentStatus,
    /// The status after the change.
    pub new_status: AgentStatus,
    /// Free-form context, at most [`MAX_DETAILS`] pairs in the order given, for example
    /// `task = analysis`. A JSON object in the JSON form (optional there; empty when absent).
    #[serde(borrow, default, with = "details_map")]
    pub details: Details<'a>,
}

/// `agent.metrics`: an agent's latest figures. Coalesced per agent: only the newest counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AgentMetrics<'a> {
    /// The agent's identifier; it also forms the coalescing key, so it must be a
    /// [`Name`](crate::text::Name) of at most [`MAX_KEYED_AGENT_ID_LEN`] bytes.
    pub agent_id: &'a str,
    /// CPU use in percent, where 100 is one core fully used (so above 100 on several cores).
    pub cpu_percent: f32,
    /// Resident memory, in mebibytes.
    pub memory_mb: f32,
    /// Tasks the agent is running now.
    pub tasks_in_progress: u32,
    /// Tasks the agent has completed since it started.
    pub tasks_completed: u64,
    /// Fraction of the agent's recent tasks that failed, from 0.0 to 1.0.
    pub error_rate: f32,
}

/// `task.queued`: a task entered the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskQueued<'a> {
    /// The task's identifier.
    pub task_id: &'a str,
    /// What sort of task it is, for example `analysis`.
    pub task_type: &'a str,
    /// Scheduling priority; higher runs first.
    pub priority: u8,
    /// Tasks in the queue once this one was added.
    pub queue_depth: u32,
}

/// `task.assigned`: a task was handed to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskAssigned<'a> {
    /// The task's identifier.
    pub task_id: &'a str,
    /// The agent that took it.
    pub agent_id: &'a str,
    /// How long the task waited in the queue, in milliseconds.
    pub wait_ms: u64,
}

/// `task.completed`: a task finished successfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCompleted<'a> {
    /// The task's identifier.
    pub task_id: &'a str,
    /// The agent that ran it.
    pub agent_id: &'a str,
    /// How long the agent worked on it, in milliseconds.
    pub duration_ms: u64,
    /// A short summary of the result for display, if any (not the result itself: payloads are
    /// meant to stay small).
    #[serde(borrow)]
    pub result: Option<&'a str>,
}

/// `task.failed`: a task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailed<'a> {
    /// The task's identifier.
    pub task_id: &'a str,
    /// The agent that ran it; `None` when it failed before being assigned.
    #[serde(borrow)]
    pub agent_id: Option<&'a str>,
    /// What went wrong, for display.
    pub error: &'a str,
    /// Whether the task will be (or may be) tried again.
    pub retryable: bool,
}

/// `system.alert`: something needs an operator's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemAlert<'a> {
    /// How urgent it is.
    pub level: AlertLevel,
    /// The component that raised it, for example `scheduler`.
    pub source: &'a str,
    /// What happened, for display.
    pub message: &'a str,
}

/// `system.performance`: the platform's latest load figures. Coalesced: only the newest counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SystemPerformance {
    /// CPU use of the platform's hosts, in percent of their total capacity (0 to 100).
    pub cpu_percent: f32,
    /// Memory use of the platform's hosts, in percent of their total memory (0 to 100).
    pub memory_percent: f32,
    /// Events published per second, recently.
    pub events_per_sec: f32,
    /// Open connections (services and dashboards).
    pub connections: u32,
}

/// `system.status`: the platform's overall health. Coalesced: only the newest counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// Overall health.
    pub status: SystemHealth,
    /// Agents that are not offline.
    pub agents_online: u32,
    /// Tasks queued or assigned but not finished.
    pub tasks_pending: u32,
    /// Time since the platform started, in seconds.
    pub uptime_s: u64,
}

macro_rules! kinds {
    ($($ty:ident => $kind:literal),* $(,)?) => {
        $(
            impl $ty<'_> {
                #[doc = concat!("The kind of this event: `", $kind, "`.")]
                pub const KIND: &'static str = $kind;
            }
        )*
    };
}

kinds! {
    AgentCreated => "agent.created",
    AgentDeleted => "agent.deleted",
    AgentStatusChanged => "agent.status_changed",
    AgentMetrics => "agent.metrics",
    TaskQueued => "task.queued",
    TaskAssigned => "task.assigned",
    TaskCompleted => "task.completed",
    TaskFailed => "task.failed",
    SystemAlert => "system.alert",
}

impl SystemPerformance {
    /// The kind of this event: `system.performance`.
    pub const KIND: &'static str = "system.performance";
}

impl SystemStatus {
    /// The kind of this event: `system.status`.
    pub const KIND: &'static str = "system.status";
}

/// How the server's batcher paces an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventClass {
    /// Flushed with the normal batches (every 100 ms by default).
    Normal,
    /// High-frequency figures, flushed with the metrics batches (every 500 ms by default).
    Metrics,
}

/// Why a dashboard event could not be decoded, or keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DashboardError {
    /// The kind is not one of [`KINDS`]. Not necessarily an error for the receiver: a newer
    /// service may send kinds this version does not know.
    UnknownKind,
    /// The payload does not decode as the kind's struct: truncated, wrong shape, a list over its
    /// capacity, or (JSON) a string with escapes, which cannot be borrowed.
    Malformed,
    /// [`DashboardEvent::coalesce_key`]: the agent id is not a [`Name`](crate::text::Name) of at
    /// most [`MAX_KEYED_AGENT_ID_LEN`] bytes, so it cannot form a key.
    InvalidAgentId,
}

impl fmt::Display for DashboardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DashboardError::UnknownKind => f.write_str("unknown dashboard event kind"),
            DashboardError::Malformed => {
                f.write_str("payload does not decode as its dashboard event kind")
            }
            DashboardError::InvalidAgentId => write!(
                f,
                "agent id must be 1 to {MAX_KEYED_AGENT_ID_LEN} bytes of A-Z a-z 0-9 . _ : - \
                 to form a coalescing key"
            ),
        }
    }
}

impl core::error::Error for DashboardError {}

/// A coalescing key: a valid [`Name`](crate::text::Name) of at most [`MAX_NAME_LEN`] bytes,
/// held inline (no allocation).
#[derive(Clone)]
pub struct CoalesceKey(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Fixed(&'static str),
    Built(heapless::String<MAX_NAME_LEN>),
}

impl CoalesceKey {
    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            KeyRepr::Fixed(s) => s,
            KeyRepr::Built(s) => s.as_str(),
        }
    }

    fn agent_metrics(agent_id: &str) -> Result<Self, DashboardError> {
        check_name(agent_id, "agent_id").map_err(|_| DashboardError::InvalidAgentId)?;
        let mut key = heapless::String::new();
        key.push_str(METRICS_KEY_PREFIX)
            .and_then(|()| key.push_str(agent_id))
            .map_err(|_| DashboardError::InvalidAgentId)?;
        Ok(CoalesceKey(KeyRepr::Built(key)))
    }
}

impl PartialEq for CoalesceKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for CoalesceKey {}

impl core::hash::Hash for CoalesceKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for CoalesceKey {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for CoalesceKey {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl AsRef<str> for CoalesceKey {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for CoalesceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CoalesceKey({:?})", self.as_str())
    }
}

impl fmt::Display for CoalesceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// The event's kind, for the frame's `kind` field: one of [`KINDS`], each a valid
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
    /// most [`MAX_KEYED_AGENT_ID_LEN`] bytes gives [`DashboardError::InvalidAgentId`]: the caller
    /// decides whether to reject the event or deliver it uncoalesced.
    pub fn coalesce_key(&self) -> Result<Option<CoalesceKey>, DashboardError> {
        match self {
            DashboardEvent::AgentMetrics(m) => CoalesceKey::agent_metrics(m.agent_id).map(Some),
            DashboardEvent::SystemPerformance(_) => {
                Ok(Some(CoalesceKey(KeyRepr::Fixed(SystemPerformance::KIND))))
            }
            DashboardEvent::SystemStatus(_) => {
                Ok(Some(CoalesceKey(KeyRepr::Fixed(SystemStatus::KIND))))
            }
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
    /// A kind not in [`KINDS`] gives [`DashboardError::UnknownKind`] without looking at the
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

/// [`AgentStatusChanged::details`] as a map: a JSON object, or a postcard count and pairs.
mod details_map {
    use core::fmt;
    use core::marker::PhantomData;

    use serde::de::{Error as _, MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    use super::{Detail, Details, MAX_DETAILS};

    pub fn serialize<S: Serializer>(details: &Details<'_>, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(details.len()))?;
        for d in details {
            map.serialize_entry(d.key, d.value)?;
        }
        map.end()
    }

    pub fn deserialize<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Details<'a>, D::Error> {
        struct DetailsVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for DetailsVisitor<'a> {
            type Value = Details<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a map of at most {MAX_DETAILS} string pairs")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Details<'a>, A::Error> {
                let mut details = Details::new();
                while let Some((key, value)) = map.next_entry::<&'de str, &'de str>()? {
                    details
                        .push(Detail { key, value })
                        .map_err(|_| A::Error::invalid_length(MAX_DETAILS + 1, &self))?;
                }
                Ok(details)
            }
        }

        d.deserialize_map(DetailsVisitor(PhantomData))
    }
}

/// Why an adapter's emit failed: the hub, the payload's serialisation, or a dashboard event.
/// Every adapter's `Hub` reports it (feature `json`).
#[cfg(feature = "json")]
#[derive(Debug)]
#[non_exhaustive]
pub enum EmitError {
    /// The payload could not be serialised to JSON.
    Payload(serde_json::Error),
    /// The hub refused the event (room limit, invalid name, event larger than the history).
    Hub(crate::hub::HubError),
    /// A dashboard event was invalid (for example an agent id that is not a valid name).
    Dashboard(DashboardError),
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

/// The typed dashboard helpers of a server adapter's hub (feature `json`): one required method,
/// [`emit_dashboard`](EmitDashboard::emit_dashboard), which appends an event to its
/// [`room`](DashboardEvent::room) with its [`kind`](DashboardEvent::kind), its JSON payload
/// ([`to_json`](DashboardEvent::to_json)) and its [coalescing key](DashboardEvent::coalesce_key);
/// the helpers build the event and call it. Every adapter's `Hub` implements it, so the helpers
/// are the same everywhere (bring the trait into scope to call them).
///
/// ```
/// use core::cell::RefCell;
/// use eventwire_core::dashboard::{AgentStatus, DashboardEvent, EmitDashboard};
/// use eventwire_core::frame::Position;
/// use eventwire_core::dashboard::EmitError;
///
/// /// Records the kinds it is asked to emit.
/// struct Recorder(RefCell<Vec<&'static str>>);
///
/// impl EmitDashboard for Recorder {
///     fn emit_dashboard(&self, event: &DashboardEvent<'_>) -> Result<Position, EmitError> {
///         self.0.borrow_mut().push(event.kind());
///         Ok(Position::new(1, self.0.borrow().len() as u64))
///     }
/// }
///
/// let hub = Recorder(RefCell::new(Vec::new()));
/// hub.emit_agent_status_change("agent-1", AgentStatus::Idle, AgentStatus::Busy, &[("task", "t-1")])
///     .unwrap();
/// assert_eq!(*hub.0.borrow(), ["agent.status_changed"]);
/// ```
#[cfg(feature = "json")]
pub trait EmitDashboard {
    /// Emits a typed dashboard event to its room, with its coalescing key.
    fn emit_dashboard(
        &self,
        event: &DashboardEvent<'_>,
    ) -> Result<crate::frame::Position, EmitError>;

    /// An agent changed status (the original system's `emit_agent_status_change`); `details`
    /// beyond [`MAX_DETAILS`] pairs are left out.
    fn emit_agent_status_change(
        &self,
        agent_id: &str,
        old_status: AgentStatus,
        new_status: AgentStatus,
        details: &[(&str, &str)],
    ) -> Result<crate::frame::Position, EmitError> {
        let mut list = Details::new();
        for (key, value) in details.iter().take(MAX_DETAILS) {
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
    fn emit_agent_created(
        &self,
        event: &AgentCreated<'_>,
    ) -> Result<crate::frame::Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(event.clone()))
    }

    /// An agent was deleted.
    fn emit_agent_deleted(
        &self,
        event: &AgentDeleted<'_>,
    ) -> Result<crate::frame::Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// An agent's metrics (coalesced per agent).
    fn emit_agent_metrics(
        &self,
        event: &AgentMetrics<'_>,
    ) -> Result<crate::frame::Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// A task was queued.
    fn emit_task_queued(
        &self,
        event: &TaskQueued<'_>,
    ) -> Result<crate::frame::Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// A task was assigned to an agent.
    fn emit_task_assigned(
        &self,
        event: &TaskAssigned<'_>,
    ) -> Result<crate::frame::Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// A task completed.
    fn emit_task_completed(
        &self,
        event: &TaskCompleted<'_>,
    ) -> Result<crate::frame::Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// A task failed.
    fn emit_task_failed(
        &self,
        event: &TaskFailed<'_>,
    ) -> Result<crate::frame::Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// A system alert.
    fn emit_system_alert(
        &self,
        event: &SystemAlert<'_>,
    ) -> Result<crate::frame::Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// System performance figures (coalesced).
    fn emit_system_performance(
        &self,
        event: &SystemPerformance,
    ) -> Result<crate::frame::Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }

    /// System status (coalesced).
    fn emit_system_status(
        &self,
        event: &SystemStatus,
    ) -> Result<crate::frame::Position, EmitError> {
        self.emit_dashboard(&DashboardEvent::from(*event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Name;
    use std::vec::Vec;
    use std::{format, vec};

    fn details<'a>(pairs: &[(&'a str, &'a str)]) -> Details<'a> {
        pairs
            .iter()
            .map(|&(key, value)| Detail { key, value })
            .collect()
    }

    /// One event of every kind, in the order of [`KINDS`].
    fn samples() -> Vec<DashboardEvent<'static>> {
        vec![
            AgentCreated {
                agent_id: "agent-1",
                name: "Researcher One",
                agent_type: "researcher",
                capabilities: ["search", "summarise"].into_iter().collect(),
            }
            .into(),
            AgentDeleted {
                agent_id: "agent-1",
                reason: Some("scaled down"),
            }
            .into(),
            AgentStatusChanged {
                agent_id: "agent-1",
                old_status: AgentStatus::Idle,
                new_status: AgentStatus::Busy,
                details: details(&[("task", "analysis")]),
            }
            .into(),
            AgentMetrics {
                agent_id: "agent-1",
                cpu_percent: 42.5,
                memory_mb: 512.0,
                tasks_in_progress: 2,
                tasks_completed: 1000,
                error_rate: 0.25,
            }
            .into(),
            TaskQueued {
                task_id: "task-9",
                task_type: "analysis",
                priority: 5,
                queue_depth: 12,
            }
            .into(),
            TaskAssigned {
                task_id: "task-9",
                agent_id: "agent-1",
                wait_ms: 250,
            }
            .into(),
            TaskCompleted {
                task_id: "task-9",
                agent_id: "agent-1",
                duration_ms: 1500,
                result: Some("3 findings"),
            }
            .into(),
            TaskFailed {
                task_id: "task-10",
                agent_id: None,
                error: "no agent with capability 'ocr'",
                retryable: true,
            }
            .into(),
            SystemAlert {
                level: AlertLevel::Critical,
                source: "scheduler",
                message: "queue above 10000 tasks",
            }
            .into(),
            SystemPerformance {
                cpu_percent: 63.5,
                memory_percent: 71.25,
                events_per_sec: 1200.0,
                connections: 48,
            }
            .into(),
            SystemStatus {
                status: SystemHealth::Degraded,
                agents_online: 7,
                tasks_pending: 31,
                uptime_s: 86_400,
            }
            .into(),
        ]
    }

    fn postcard_bytes(event: &DashboardEvent<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; event.postcard_len().unwrap()];
        let n = event.to_postcard(&mut buf).unwrap().len();
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn every_kind_round_trips_through_postcard() {
        let samples = samples();
        assert_eq!(samples.len(), KINDS.len());
        for (event, kind) in samples.iter().zip(KINDS) {
            assert_eq!(event.kind(), kind);
            let bytes = postcard_bytes(event);
            let decoded = DashboardEvent::decode_postcard(event.kind(), &bytes).unwrap();
            assert_eq!(&decoded, event);
        }
    }

    #[cfg(feature = "json")]
    #[test]
    fn every_kind_round_trips_through_json() {
        for event in samples() {
            let text = event.to_json().unwrap();
            let decoded = DashboardEvent::decode_json(event.kind(), &text).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn postcard_golden_bytes() {
        let expected = [
            "076167656e742d310e52657365617263686572204f6e650a7265736561726368657202067365617263680973756d6d6172697365",
            "076167656e742d3101 0b7363616c656420646f776e",
            "076167656e742d31000101047461736b08616e616c79736973",
            "076167656e742d310000 2a4200000044 02e807000080 3e",
            "067461736b2d3908616e616c79736973050c",
            "067461736b2d39076167656e742d31fa01",
            "067461736b2d39076167656e742d31dc0b010a332066696e64696e6773",
            "077461736b2d3130001e6e6f206167656e742077697468206361706162696c69747920276f63722701",
            "03097363686564756c65721771756575652061626f7665203130303030207461736b73",
            "00007e42 00808e42 00009644 30",
            "01071f80a305",
        ];
        for (event, hex) in samples().iter().zip(expected) {
            let hex: std::string::String = hex.split_whitespace().collect();
            assert_eq!(hex::encode(postcard_bytes(event)), hex, "{}", event.kind());
        }
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_golden_text() {
        let expected = [
            r#"{"agent_id":"agent-1","name":"Researcher One","agent_type":"researcher","capabilities":["search","summarise"]}"#,
            r#"{"agent_id":"agent-1","reason":"scaled down"}"#,
            r#"{"agent_id":"agent-1","old_status":"idle","new_status":"busy","details":{"task":"analysis"}}"#,
            r#"{"agent_id":"agent-1","cpu_percent":42.5,"memory_mb":512.0,"tasks_in_progress":2,"tasks_completed":1000,"error_rate":0.25}"#,
            r#"{"task_id":"task-9","task_type":"analysis","priority":5,"queue_depth":12}"#,
            r#"{"task_id":"task-9","agent_id":"agent-1","wait_ms":250}"#,
            r#"{"task_id":"task-9","agent_id":"agent-1","duration_ms":1500,"result":"3 findings"}"#,
            r#"{"task_id":"task-10","agent_id":null,"error":"no agent with capability 'ocr'","retryable":true}"#,
            r#"{"level":"critical","source":"scheduler","message":"queue above 10000 tasks"}"#,
            r#"{"cpu_percent":63.5,"memory_percent":71.25,"events_per_sec":1200.0,"connections":48}"#,
            r#"{"status":"degraded","agents_online":7,"tasks_pending":31,"uptime_s":86400}"#,
        ];
        for (event, json) in samples().iter().zip(expected) {
            assert_eq!(
                std::str::from_utf8(&event.to_json().unwrap()).unwrap(),
                json,
                "{}",
                event.kind()
            );
        }
    }

    #[test]
    fn kind_room_key_class_table() {
        type Row = (&'static str, &'static str, Option<&'static str>, EventClass);
        let table: [Row; 11] = [
            ("agent.created", "agents", None, EventClass::Normal),
            ("agent.deleted", "agents", None, EventClass::Normal),
            ("agent.status_changed", "agents", None, EventClass::Normal),
            (
                "agent.metrics",
                "agents",
                Some("agent.metrics:agent-1"),
                EventClass::Metrics,
            ),
            ("task.queued", "tasks", None, EventClass::Normal),
            ("task.assigned", "tasks", None, EventClass::Normal),
            ("task.completed", "tasks", None, EventClass::Normal),
            ("task.failed", "tasks", None, EventClass::Normal),
            ("system.alert", "system", None, EventClass::Normal),
            (
                "system.performance",
                "system",
                Some("system.performance"),
                EventClass::Metrics,
            ),
            (
                "system.status",
                "system",
                Some("system.status"),
                EventClass::Normal,
            ),
        ];
        for (event, (kind, room, key, class)) in samples().iter().zip(table) {
            assert_eq!(event.kind(), kind);
            assert_eq!(event.room(), room, "{kind}");
            let got = event.coalesce_key().unwrap();
            assert_eq!(got.as_ref().map(CoalesceKey::as_str), key, "{kind}");
            assert_eq!(event.class(), class, "{kind}");
        }
    }

    #[test]
    fn kinds_rooms_and_keys_are_valid_names() {
        for kind in KINDS {
            assert!(Name::new(kind).is_ok(), "{kind}");
        }
        for room in [AGENTS_ROOM, TASKS_ROOM, SYSTEM_ROOM] {
            assert!(Name::new(room).is_ok(), "{room}");
        }
        for event in samples() {
            if let Some(key) = event.coalesce_key().unwrap() {
                assert!(Name::new(key.as_str()).is_ok(), "{key}");
            }
        }
        // The longest agent id that fits gives a key of exactly the longest name.
        let id = "a".repeat(MAX_KEYED_AGENT_ID_LEN);
        let key = metrics(&id).coalesce_key().unwrap().unwrap();
        assert_eq!(key.as_str().len(), crate::text::MAX_NAME_LEN);
        assert!(Name::new(key.as_str()).is_ok());
        assert_eq!(key, format!("agent.metrics:{id}").as_str());
    }

    fn metrics(agent_id: &str) -> DashboardEvent<'_> {
        DashboardEvent::AgentMetrics(AgentMetrics {
            agent_id,
            cpu_percent: 1.0,
            memory_mb: 2.0,
            tasks_in_progress: 0,
            tasks_completed: 0,
            error_rate: 0.0,
        })
    }

    #[test]
    fn agent_id_that_is_not_a_name_has_no_key() {
        let too_long = "a".repeat(MAX_KEYED_AGENT_ID_LEN + 1);
        for bad in ["", "agent 1", "agent/1", "caf\u{e9}", too_long.as_str()] {
            assert_eq!(
                metrics(bad).coalesce_key(),
                Err(DashboardError::InvalidAgentId),
                "{bad:?}"
            );
        }
        // Ids of events without a key are not checked.
        let deleted = DashboardEvent::from(AgentDeleted {
            agent_id: "agent 1",
            reason: None,
        });
        assert_eq!(deleted.coalesce_key(), Ok(None));
    }

    #[test]
    fn unknown_kind_is_an_error() {
        let bytes = postcard_bytes(&samples()[0]);
        for kind in ["", "agent", "agent.created.v2", "AGENT.CREATED", "task.*"] {
            assert_eq!(
                DashboardEvent::decode_postcard(kind, &bytes),
                Err(DashboardError::UnknownKind)
            );
            #[cfg(feature = "json")]
            assert_eq!(
                DashboardEvent::decode_json(kind, b"{}"),
                Err(DashboardError::UnknownKind)
            );
        }
    }

    #[test]
    fn payload_of_another_kind_is_an_error() {
        // A system status is four bytes here; read as a status change (a string, two enums, a
        // map) it runs out of bytes.
        let status = DashboardEvent::from(SystemStatus {
            status: SystemHealth::Down,
            agents_online: 0,
            tasks_pending: 0,
            uptime_s: 0,
        });
        let bytes = postcard_bytes(&status);
        assert_eq!(
            DashboardEvent::decode_postcard(AgentStatusChanged::KIND, &bytes),
            Err(DashboardError::Malformed)
        );
        #[cfg(feature = "json")]
        for (i, event) in samples().iter().enumerate() {
            let text = event.to_json().unwrap();
            for (j, kind) in KINDS.iter().enumerate() {
                // JSON ignores unknown fields, so `agent.deleted` (an `agent_id` and an optional
                // reason) accepts any payload with an `agent_id`; every other pair fails.
                if i != j && *kind != AgentDeleted::KIND {
                    assert_eq!(
                        DashboardEvent::decode_json(kind, &text),
                        Err(DashboardError::Malformed),
                        "{} as {kind}",
                        event.kind()
                    );
                }
            }
        }
    }

    #[test]
    fn truncated_or_garbage_payload_is_an_error() {
        for event in samples() {
            let bytes = postcard_bytes(&event);
            for cut in 0..bytes.len() {
                assert_eq!(
                    DashboardEvent::decode_postcard(event.kind(), &bytes[..cut]),
                    Err(DashboardError::Malformed),
                    "{} cut at {cut}",
                    event.kind()
                );
            }
            #[cfg(feature = "json")]
            {
                let text = event.to_json().unwrap();
                for cut in 0..text.len() {
                    assert_eq!(
                        DashboardEvent::decode_json(event.kind(), &text[..cut]),
                        Err(DashboardError::Malformed)
                    );
                }
                assert_eq!(
                    DashboardEvent::decode_json(event.kind(), &bytes),
                    Err(DashboardError::Malformed)
                );
            }
        }
        // Bad enum index, bad bool, bad UTF-8, huge length.
        let garbage: [(&str, &[u8]); 4] = [
            (SystemStatus::KIND, &[9, 0, 0, 0]),
            (TaskFailed::KIND, &[1, b't', 0, 1, b'e', 2]),
            (AgentDeleted::KIND, &[2, 0xff, 0xfe, 0]),
            (AgentDeleted::KIND, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (kind, bytes) in garbage {
            assert_eq!(
                DashboardEvent::decode_postcard(kind, bytes),
                Err(DashboardError::Malformed),
                "{kind} {bytes:02x?}"
            );
        }
    }

    #[test]
    fn trailing_postcard_bytes_are_ignored() {
        let event = &samples()[3];
        let mut bytes = postcard_bytes(event);
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            DashboardEvent::decode_postcard(event.kind(), &bytes).as_ref(),
            Ok(event)
        );
    }

    /// The fields of [`AgentCreated`] and [`AgentStatusChanged`] without their capacity limits.
    #[derive(Serialize)]
    struct WideCreated<'a> {
        agent_id: &'a str,
        name: &'a str,
        agent_type: &'a str,
        capabilities: &'a [&'a str],
    }

    #[derive(Serialize)]
    struct WideStatus<'a> {
        agent_id: &'a str,
        old_status: AgentStatus,
        new_status: AgentStatus,
        details: std::collections::BTreeMap<std::string::String, &'a str>,
    }

    fn wide(n: usize) -> (WideCreated<'static>, WideStatus<'static>) {
        const CAPS: [&str; 9] = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        let created = WideCreated {
            agent_id: "agent-1",
            name: "one",
            agent_type: "t",
            capabilities: &CAPS[..n],
        };
        let status = WideStatus {
            agent_id: "agent-1",
            old_status: AgentStatus::Starting,
            new_status: AgentStatus::Idle,
            details: (0..n).map(|i| (format!("k{i}"), "v")).collect(),
        };
        (created, status)
    }

    #[test]
    fn lists_over_capacity_do_not_decode() {
        assert_eq!(MAX_CAPABILITIES, 8);
        assert_eq!(MAX_DETAILS, 8);
        for (n, fits) in [(8, true), (9, false)] {
            let (created, status) = wide(n);
            let c = postcard::to_allocvec(&created).unwrap();
            let s = postcard::to_allocvec(&status).unwrap();
            let rc = DashboardEvent::decode_postcard(AgentCreated::KIND, &c);
            let rs = DashboardEvent::decode_postcard(AgentStatusChanged::KIND, &s);
            assert_eq!(rc.is_ok(), fits, "{rc:?}");
            assert_eq!(rs.is_ok(), fits, "{rs:?}");
            if !fits {
                assert_eq!(rc, Err(DashboardError::Malformed));
                assert_eq!(rs, Err(DashboardError::Malformed));
            }
            #[cfg(feature = "json")]
            {
                let c = serde_json::to_vec(&created).unwrap();
                let s = serde_json::to_vec(&status).unwrap();
                let rc = DashboardEvent::decode_json(AgentCreated::KIND, &c);
                let rs = DashboardEvent::decode_json(AgentStatusChanged::KIND, &s);
                assert_eq!(rc.is_ok(), fits, "{rc:?}");
                assert_eq!(rs.is_ok(), fits, "{rs:?}");
                if !fits {
                    assert_eq!(rc, Err(DashboardError::Malformed));
                    assert_eq!(rs, Err(DashboardError::Malformed));
                }
            }
        }
    }

    #[test]
    fn small_buffer_is_an_error() {
        for event in samples() {
            let len = event.postcard_len().unwrap();
            let mut buf = vec![0u8; len - 1];
            assert_eq!(
                event.to_postcard(&mut buf),
                Err(postcard::Error::SerializeBufferFull)
            );
        }
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_lists_may_be_omitted() {
        let created = br#"{"agent_id":"a","name":"n","agent_type":"t"}"#;
        let status = br#"{"agent_id":"a","old_status":"error","new_status":"stopping","x":1}"#;
        let DashboardEvent::AgentCreated(c) =
            DashboardEvent::decode_json(AgentCreated::KIND, created).unwrap()
        else {
            panic!("wrong variant")
        };
        assert!(c.capabilities.is_empty());
        let DashboardEvent::AgentStatusChanged(s) =
            DashboardEvent::decode_json(AgentStatusChanged::KIND, status).unwrap()
        else {
            panic!("wrong variant")
        };
        assert_eq!(
            (s.old_status, s.new_status),
            (AgentStatus::Error, AgentStatus::Stopping)
        );
        assert!(s.details.is_empty());
        // A missing optional field reads as absent.
        assert_eq!(
            DashboardEvent::decode_json(AgentDeleted::KIND, br#"{"agent_id":"a"}"#),
            Ok(DashboardEvent::AgentDeleted(AgentDeleted {
                agent_id: "a",
                reason: None
            }))
        );
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_strings_with_escapes_encode_but_do_not_decode_borrowed() {
        let alert = DashboardEvent::from(SystemAlert {
            level: AlertLevel::Error,
            source: "db",
            message: "disk \"sda\" full\n",
        });
        let text = alert.to_json().unwrap();
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(value["message"], "disk \"sda\" full\n");
        assert_eq!(
            DashboardEvent::decode_json(alert.kind(), &text),
            Err(DashboardError::Malformed)
        );
        // Unescaped non-ASCII borrows fine; the same text escaped as \u does not.
        let raw = "{\"level\":\"info\",\"source\":\"caf\u{e9}\",\"message\":\"\"}";
        assert!(DashboardEvent::decode_json(SystemAlert::KIND, raw.as_bytes()).is_ok());
        let escaped = br#"{"level":"info","source":"caf\u00e9","message":""}"#;
        assert_eq!(
            DashboardEvent::decode_json(SystemAlert::KIND, escaped),
            Err(DashboardError::Malformed)
        );
        // Postcard carries the same alert unchanged.
        let bytes = postcard_bytes(&alert);
        assert_eq!(
            DashboardEvent::decode_postcard(alert.kind(), &bytes),
            Ok(alert)
        );
    }

    #[test]
    fn errors_display() {
        use std::string::ToString;
        assert_eq!(
            DashboardError::UnknownKind.to_string(),
            "unknown dashboard event kind"
        );
        assert!(DashboardError::Malformed.to_string().contains("payload"));
        assert!(DashboardError::InvalidAgentId
            .to_string()
            .contains(&MAX_KEYED_AGENT_ID_LEN.to_string()));
    }
}
