//! W5's simulated swarm (the rates of `adapter-tokio/examples/dashboard/main.rs`) and the polling
//! baseline's dashboard state, which the same swarm keeps up to date.
//!
//! Every 250 ms: new tasks arrive (up to agents/10 + 1), idle agents take queued tasks
//! (queued → assigned, status idle → busy), busy agents finish after 1 to 5 s (completed, or
//! failed one time in 20; status busy → idle), every agent reports its metrics (four times a
//! second), an alert comes one tick in 40, and system performance and status once a second.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use eventwire_core::backoff::Rng;
use eventwire_core::dashboard::EmitError;
use eventwire_core::dashboard::{
    AgentCreated, AgentMetrics, AgentStatus, AlertLevel, Capabilities, DashboardEvent,
    EmitDashboard, SystemAlert, SystemHealth, SystemPerformance, SystemStatus, TaskAssigned,
    TaskCompleted, TaskFailed, TaskQueued,
};
use eventwire_core::frame::Position;
use serde::Serialize;

/// The tick of the simulation.
pub const TICK: Duration = Duration::from_millis(250);

struct Agent {
    id: String,
    busy_with: Option<(String, u32)>,
    completed: u64,
    cpu: f32,
}

/// The simulated swarm; `run` drives it against any [`EmitDashboard`].
pub struct Swarm {
    rng: Rng,
    agents: Vec<Agent>,
    queue: Vec<String>,
    next_task: u64,
    started: Instant,
    total: u64,
}

impl Swarm {
    /// A swarm of `agents` agents, seeded so that every run emits the same events.
    pub fn new(agents: usize) -> Swarm {
        Swarm {
            rng: Rng::new(0x5eed),
            agents: (0..agents)
                .map(|i| Agent {
                    id: format!("agent-{i:03}"),
                    busy_with: None,
                    completed: 0,
                    cpu: 5.0,
                })
                .collect(),
            queue: Vec::new(),
            next_task: 0,
            started: Instant::now(),
            total: 0,
        }
    }

    /// Creates the agents, then steps every [`TICK`] for `duration` (blocking the thread).
    /// Returns the number of events emitted.
    pub fn run<H: EmitDashboard>(
        &mut self,
        hub: &H,
        duration: Duration,
        connections: impl Fn() -> u32,
    ) -> Result<u64, EmitError> {
        self.started = Instant::now();
        let mut emitted = 0;
        for agent in &self.agents {
            let mut capabilities = Capabilities::new();
            let _ = capabilities.push("analysis");
            hub.emit_agent_created(&AgentCreated {
                agent_id: &agent.id,
                name: &agent.id,
                agent_type: "worker",
                capabilities,
            })?;
            emitted += 1;
        }
        let steps = (duration.as_millis() / TICK.as_millis()).max(1) as u64;
        for step in 0..steps {
            let due = self.started + TICK * (step as u32 + 1);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let n = self.step(hub, step, connections())?;
            emitted += n;
            self.total = emitted;
        }
        Ok(emitted)
    }

    fn step<H: EmitDashboard>(
        &mut self,
        hub: &H,
        step: u64,
        connections: u32,
    ) -> Result<u64, EmitError> {
        let mut emitted = 0;
        let n = self.agents.len();
        let rng = &mut self.rng;
        for _ in 0..rng.up_to(n as u64 / 10 + 1) {
            self.next_task += 1;
            let task = format!("task-{:06}", self.next_task);
            hub.emit_task_queued(&TaskQueued {
                task_id: &task,
                task_type: "analysis",
                priority: rng.up_to(9) as u8,
                queue_depth: self.queue.len() as u32 + 1,
            })?;
            emitted += 1;
            self.queue.push(task);
        }
        for agent in self.agents.iter_mut() {
            match agent.busy_with.take() {
                Some((task, 0)) => {
                    if rng.up_to(19) == 0 {
                        hub.emit_task_failed(&TaskFailed {
                            task_id: &task,
                            agent_id: Some(&agent.id),
                            error: "worker timed out",
                            retryable: true,
                        })?;
                    } else {
                        agent.completed += 1;
                        hub.emit_task_completed(&TaskCompleted {
                            task_id: &task,
                            agent_id: &agent.id,
                            duration_ms: 1000 + rng.up_to(4000),
                            result: Some("ok"),
                        })?;
                    }
                    hub.emit_agent_status_change(
                        &agent.id,
                        AgentStatus::Busy,
                        AgentStatus::Idle,
                        &[("task", &task)],
                    )?;
                    emitted += 2;
                }
                Some((task, left)) => agent.busy_with = Some((task, left - 1)),
                None => {
                    if let Some(task) = self.queue.pop() {
                        hub.emit_task_assigned(&TaskAssigned {
                            task_id: &task,
                            agent_id: &agent.id,
                            wait_ms: rng.up_to(2000),
                        })?;
                        hub.emit_agent_status_change(
                            &agent.id,
                            AgentStatus::Idle,
                            AgentStatus::Busy,
                            &[("task", &task)],
                        )?;
                        emitted += 2;
                        agent.busy_with = Some((task, 4 + rng.up_to(16) as u32));
                    }
                }
            }
            let target = if agent.busy_with.is_some() { 70.0 } else { 5.0 };
            agent.cpu += (target - agent.cpu) * 0.3 + (rng.up_to(100) as f32 - 50.0) / 25.0;
            hub.emit_agent_metrics(&AgentMetrics {
                agent_id: &agent.id,
                cpu_percent: agent.cpu.clamp(0.0, 100.0),
                memory_mb: 256.0 + agent.cpu * 4.0,
                tasks_in_progress: u32::from(agent.busy_with.is_some()),
                tasks_completed: agent.completed,
                error_rate: 0.05,
            })?;
            emitted += 1;
        }
        if rng.up_to(39) == 0 {
            hub.emit_system_alert(&SystemAlert {
                level: AlertLevel::Warning,
                source: "scheduler",
                message: "task queue is growing",
            })?;
            emitted += 1;
        }
        if step.is_multiple_of(4) {
            let busy = self.agents.iter().filter(|a| a.busy_with.is_some()).count();
            let secs = self.started.elapsed().as_secs_f32().max(1.0);
            hub.emit_system_performance(&SystemPerformance {
                cpu_percent: busy as f32 * 100.0 / n.max(1) as f32,
                memory_percent: 40.0,
                events_per_sec: self.total as f32 / secs,
                connections,
            })?;
            hub.emit_system_status(&SystemStatus {
                status: SystemHealth::Healthy,
                agents_online: n as u32,
                tasks_pending: self.queue.len() as u32,
                uptime_s: self.started.elapsed().as_secs(),
            })?;
            emitted += 2;
        }
        Ok(emitted)
    }
}

/// One agent as the polling dashboard shows it.
#[derive(Serialize, Default, Clone)]
struct AgentView {
    agent_id: String,
    name: String,
    agent_type: String,
    status: &'static str,
    current_task: Option<String>,
    cpu_percent: f32,
    memory_mb: f32,
    tasks_in_progress: u32,
    tasks_completed: u64,
    error_rate: f32,
    updated_ms: u64,
}

/// One task of the recent-task list.
#[derive(Serialize, Clone)]
struct TaskView {
    task_id: String,
    state: &'static str,
    agent_id: Option<String>,
}

/// One alert of the recent-alert list.
#[derive(Serialize, Clone)]
struct AlertView {
    level: &'static str,
    source: String,
    message: String,
    at_ms: u64,
}

/// The whole dashboard state, as a Flask dashboard's `/api/state` returns it.
#[derive(Serialize, Default)]
struct State {
    agents: Vec<AgentView>,
    tasks_queued: u64,
    tasks_running: u64,
    tasks_completed: u64,
    tasks_failed: u64,
    queue_depth: u32,
    recent_tasks: VecDeque<TaskView>,
    alerts: VecDeque<AlertView>,
    cpu_percent: f32,
    memory_percent: f32,
    events_per_sec: f32,
    connections: u32,
    health: &'static str,
    agents_online: u32,
    tasks_pending: u32,
    uptime_s: u64,
}

/// Recent tasks and alerts the state keeps.
const RECENT_TASKS: usize = 20;
const RECENT_ALERTS: usize = 10;

/// The polling baseline's state: the swarm "emits" into it, and every poll serialises all of it.
pub struct Board {
    state: Mutex<State>,
    started: Instant,
}

impl Board {
    /// An empty board.
    pub fn new() -> Board {
        Board {
            state: Mutex::new(State {
                health: "healthy",
                ..State::default()
            }),
            started: Instant::now(),
        }
    }

    /// The full state as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::to_vec(&*state).unwrap_or_default()
    }
}

fn status_name(s: AgentStatus) -> &'static str {
    match s {
        AgentStatus::Idle => "idle",
        AgentStatus::Busy => "busy",
        AgentStatus::Offline => "offline",
        AgentStatus::Error => "error",
        AgentStatus::Starting => "starting",
        AgentStatus::Stopping => "stopping",
        _ => "unknown",
    }
}

fn push_task(state: &mut State, task_id: &str, task_state: &'static str, agent: Option<&str>) {
    if state.recent_tasks.len() == RECENT_TASKS {
        state.recent_tasks.pop_front();
    }
    state.recent_tasks.push_back(TaskView {
        task_id: task_id.to_owned(),
        state: task_state,
        agent_id: agent.map(str::to_owned),
    });
}

impl EmitDashboard for Board {
    fn emit_dashboard(&self, event: &DashboardEvent<'_>) -> Result<Position, EmitError> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let agent = |st: &mut State, id: &str| st.agents.iter().position(|a| a.agent_id == id);
        match event {
            DashboardEvent::AgentCreated(e) => {
                st.agents.push(AgentView {
                    agent_id: e.agent_id.to_owned(),
                    name: e.name.to_owned(),
                    agent_type: e.agent_type.to_owned(),
                    status: "idle",
                    updated_ms: now_ms,
                    ..AgentView::default()
                });
                st.agents_online = st.agents.len() as u32;
            }
            DashboardEvent::AgentStatusChanged(e) => {
                if let Some(i) = agent(&mut st, e.agent_id) {
                    let a = &mut st.agents[i];
                    a.status = status_name(e.new_status);
                    a.current_task = e
                        .details
                        .iter()
                        .find(|d| d.key == "task" && e.new_status == AgentStatus::Busy)
                        .map(|d| d.value.to_owned());
                    a.updated_ms = now_ms;
                }
            }
            DashboardEvent::AgentMetrics(e) => {
                if let Some(i) = agent(&mut st, e.agent_id) {
                    let a = &mut st.agents[i];
                    a.cpu_percent = e.cpu_percent;
                    a.memory_mb = e.memory_mb;
                    a.tasks_in_progress = e.tasks_in_progress;
                    a.tasks_completed = e.tasks_completed;
                    a.error_rate = e.error_rate;
                    a.updated_ms = now_ms;
                }
            }
            DashboardEvent::TaskQueued(e) => {
                st.tasks_queued += 1;
                st.queue_depth = e.queue_depth;
                push_task(&mut st, e.task_id, "queued", None);
            }
            DashboardEvent::TaskAssigned(e) => {
                st.tasks_running += 1;
                st.queue_depth = st.queue_depth.saturating_sub(1);
                push_task(&mut st, e.task_id, "assigned", Some(e.agent_id));
            }
            DashboardEvent::TaskCompleted(e) => {
                st.tasks_running = st.tasks_running.saturating_sub(1);
                st.tasks_completed += 1;
                push_task(&mut st, e.task_id, "completed", Some(e.agent_id));
            }
            DashboardEvent::TaskFailed(e) => {
                st.tasks_running = st.tasks_running.saturating_sub(1);
                st.tasks_failed += 1;
                push_task(&mut st, e.task_id, "failed", e.agent_id);
            }
            DashboardEvent::SystemAlert(e) => {
                if st.alerts.len() == RECENT_ALERTS {
                    st.alerts.pop_front();
                }
                st.alerts.push_back(AlertView {
                    level: match e.level {
                        AlertLevel::Info => "info",
                        AlertLevel::Warning => "warning",
                        AlertLevel::Error => "error",
                        _ => "critical",
                    },
                    source: e.source.to_owned(),
                    message: e.message.to_owned(),
                    at_ms: now_ms,
                });
            }
            DashboardEvent::SystemPerformance(e) => {
                st.cpu_percent = e.cpu_percent;
                st.memory_percent = e.memory_percent;
                st.events_per_sec = e.events_per_sec;
                st.connections = e.connections;
            }
            DashboardEvent::SystemStatus(e) => {
                st.tasks_pending = e.tasks_pending;
                st.uptime_s = e.uptime_s;
            }
            _ => {}
        }
        Ok(Position::new(1, now_ms))
    }
}
