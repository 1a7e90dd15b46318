//! The typed emit helpers every server adapter's hub offers (feature `json`), and the error of an
//! adapter's emit.

use core::fmt;

use super::*;

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
