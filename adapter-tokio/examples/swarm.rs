//! The demo: a server fed by a simulated swarm of agents, with embedded defaults and no external
//! service.
//!
//! Run: `cargo run -p eventwire-tokio --example swarm` (options: `--agents N`, `--addr HOST:PORT`,
//! `--seconds S` to stop after S seconds). Watch it with
//! `cargo run -p eventwire-tokio --example client -- ws://127.0.0.1:9001 agents tasks system`.
//!
//! Every agent reports metrics four times a second (coalesced per agent, so a lagging dashboard
//! only gets the latest value); tasks are queued, assigned to idle agents, and complete or fail a
//! few seconds later; now and then an alert is raised; the system reports its status and
//! performance every second.
use std::time::Duration;

use eventwire_core::dashboard::{
    AgentCreated, AgentMetrics, AgentStatus, AlertLevel, Capabilities, SystemAlert, SystemHealth,
    SystemPerformance, SystemStatus, TaskAssigned, TaskCompleted, TaskFailed, TaskQueued,
};
use eventwire_core::rng::Rng;
use eventwire_tokio::{EmitDashboard, Hub, Server, ServerConfig};

struct Agent {
    id: String,
    busy_with: Option<(String, u32)>,
    completed: u64,
    cpu: f32,
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let agents: usize = arg("--agents").map_or(Ok(50), |v| v.parse())?;
    let addr = arg("--addr").unwrap_or_else(|| "127.0.0.1:9001".into());
    let seconds: Option<u64> = arg("--seconds").map(|v| v.parse()).transpose()?;

    let hub = Hub::new(Default::default());
    let server = Server::bind(addr.as_str(), hub.clone(), ServerConfig::default()).await?;
    eprintln!("swarm of {agents} agents on ws://{}", server.local_addr());
    eprintln!(
        "watch it: cargo run -p eventwire-tokio --example client -- ws://{} agents tasks system",
        server.local_addr()
    );

    let mut rng = Rng::new(0x5eed);
    let mut swarm: Vec<Agent> = (0..agents)
        .map(|i| Agent {
            id: format!("agent-{i:03}"),
            busy_with: None,
            completed: 0,
            cpu: 5.0,
        })
        .collect();
    for agent in &swarm {
        let mut capabilities = Capabilities::new();
        let _ = capabilities.push("analysis");
        hub.emit_agent_created(&AgentCreated {
            agent_id: &agent.id,
            name: &agent.id,
            agent_type: "worker",
            capabilities,
        })?;
    }

    let tick = Duration::from_millis(250);
    let mut interval = tokio::time::interval(tick);
    let mut queue: Vec<String> = Vec::new();
    let mut next_task = 0u64;
    let started = tokio::time::Instant::now();
    for step in 0u64.. {
        tokio::select! {
            _ = interval.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        if seconds.is_some_and(|s| started.elapsed() >= Duration::from_secs(s)) {
            break;
        }
        // New work arrives.
        for _ in 0..rng.up_to(agents as u64 / 10 + 1) {
            next_task += 1;
            let task = format!("task-{next_task:06}");
            hub.emit_task_queued(&TaskQueued {
                task_id: &task,
                task_type: "analysis",
                priority: rng.up_to(9) as u8,
                queue_depth: queue.len() as u32 + 1,
            })?;
            queue.push(task);
        }
        for agent in swarm.iter_mut() {
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
                }
                Some((task, left)) => agent.busy_with = Some((task, left - 1)),
                None => {
                    if let Some(task) = queue.pop() {
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
        }
        if rng.up_to(39) == 0 {
            hub.emit_system_alert(&SystemAlert {
                level: AlertLevel::Warning,
                source: "scheduler",
                message: "task queue is growing",
            })?;
        }
        if step % 4 == 0 {
            let stats = hub.stats();
            let busy = swarm.iter().filter(|a| a.busy_with.is_some()).count();
            hub.emit_system_performance(&SystemPerformance {
                cpu_percent: busy as f32 * 100.0 / agents.max(1) as f32,
                memory_percent: 40.0,
                events_per_sec: stats.events_in as f32 / started.elapsed().as_secs_f32().max(1.0),
                connections: stats.connections as u32,
            })?;
            hub.emit_system_status(&SystemStatus {
                status: SystemHealth::Healthy,
                agents_online: agents as u32,
                tasks_pending: queue.len() as u32,
                uptime_s: started.elapsed().as_secs(),
            })?;
        }
    }
    server.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
