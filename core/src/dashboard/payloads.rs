//! The payload of each dashboard event kind: the structs a frame's payload decodes into, and the
//! enums their fields use.
//!
//! Each struct borrows its strings from the payload and names its kind (`KIND`); field order is
//! the wire order, so a field may only be appended.

use serde::{Deserialize, Serialize};

use super::{Capabilities, Details};

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
    /// What the agent can do, at most [`MAX_CAPABILITIES`](super::MAX_CAPABILITIES). Optional in JSON (empty when absent).
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
    /// Free-form context, at most [`MAX_DETAILS`](super::MAX_DETAILS) pairs in the order given, for example
    /// `task = analysis`. A JSON object in the JSON form (optional there; empty when absent).
    #[serde(borrow, default, with = "details_map")]
    pub details: Details<'a>,
}

/// `agent.metrics`: an agent's latest figures. Coalesced per agent: only the newest counts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AgentMetrics<'a> {
    /// The agent's identifier; it also forms the coalescing key, so it must be a
    /// [`Name`](crate::text::Name) of at most [`MAX_KEYED_AGENT_ID_LEN`](super::MAX_KEYED_AGENT_ID_LEN) bytes.
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

/// [`AgentStatusChanged::details`] as a map: a JSON object, or a postcard count and pairs.
mod details_map {
    use core::fmt;
    use core::marker::PhantomData;

    use serde::de::{Error as _, MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    use crate::dashboard::{Detail, Details, MAX_DETAILS};

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
