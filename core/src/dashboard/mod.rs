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

use crate::text::MAX_NAME_LEN;

mod event;
mod key;
mod payloads;

#[cfg(feature = "json")]
mod emit;
#[cfg(test)]
mod tests;

#[cfg(feature = "json")]
pub use emit::{EmitDashboard, EmitError};
pub use event::DashboardEvent;
pub use key::CoalesceKey;
pub use payloads::{
    AgentCreated, AgentDeleted, AgentMetrics, AgentStatus, AgentStatusChanged, AlertLevel, Detail,
    SystemAlert, SystemHealth, SystemPerformance, SystemStatus, TaskAssigned, TaskCompleted,
    TaskFailed, TaskQueued,
};

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
