//! The demo: a live dashboard in the browser, fed by a simulated swarm of agents, with embedded
//! defaults and no external service.
//!
//! Run `cargo run -p eventwire-tokio --example dashboard` and open the printed URL. One port
//! serves everything: the page (`page/`, embedded in the binary), the browser client
//! (`/eventwire.js`), the dashboard's state (`/api/snapshot`), the WebSocket upgrade and the
//! long-polling fallback.
//!
//! Options:
//!
//! | flag | default | what it does |
//! |---|---|---|
//! | `--addr HOST:PORT` | `127.0.0.1:9001` | where to listen (`127.0.0.1:0`: a free port) |
//! | `--agents N` | 50 | agents in the swarm |
//! | `--rate R` | 1.0 | multiplier of the swarm's event rates (it ticks every 250 ms / R) |
//! | `--no-websocket` | off | refuse WebSocket upgrades (403): browsers fall back to polling |
//! | `--chaos P` | 0 | once a second, cut each client connection with probability P |
//! | `--seconds S` | run until stopped | shut down after S seconds |
//! | `--seed N` | 0x5eed | the swarm's seed: same seed, same events |
//!
//! The first line on stdout is `eventwire dashboard at http://HOST:PORT/`. Ctrl-c and SIGTERM
//! shut down gracefully: every client gets close 1001 with a 2 s retry-after hint.
//!
//! The swarm: every agent reports metrics every tick (coalesced per agent, so a lagging
//! dashboard only gets the latest value); tasks are queued, assigned to idle agents, and complete
//! or fail a few seconds later; now and then an alert is raised; the system reports its status
//! and performance every fourth tick. The same lock that orders the emits keeps a projection of
//! what they say (`Board`), so `/api/snapshot` is exactly the state at the positions it names: a
//! page that loads the snapshot and then subscribes from those positions counts every task once.
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use eventwire_core::backoff::Rng;
use eventwire_core::dashboard::{
    AgentCreated, AgentMetrics, AgentStatus, AlertLevel, Capabilities, SystemAlert, SystemHealth,
    SystemPerformance, SystemStatus, TaskAssigned, TaskCompleted, TaskFailed, TaskQueued,
};
use eventwire_core::frame::Position;
use eventwire_tokio::{
    shutdown_signal, EmitDashboard, EmitError, Grants, HttpRequest, HttpResponse, Hub, Server,
    ServerConfig,
};
use serde_json::{json, Value};

const INDEX_HTML: &str = include_str!("page/index.html");
const DASHBOARD_JS: &str = include_str!("page/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("page/dashboard.css");
const HTML: &str = "text/html; charset=utf-8";

/// The rooms the swarm emits to, in the snapshot's order.
const ROOMS: [&str; 3] = ["agents", "tasks", "system"];
/// Alerts kept in the snapshot.
const ALERTS_KEPT: usize = 20;
/// The retry-after hint of a graceful shutdown.
const RETRY_AFTER: Duration = Duration::from_secs(2);

struct Options {
    addr: String,
    agents: usize,
    rate: f64,
    websocket: bool,
    chaos: f64,
    seconds: Option<f64>,
    seed: u64,
    /// Other origins whose pages may connect (the demo's own always may).
    origins: Vec<String>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut o = Options {
            addr: "127.0.0.1:9001".into(),
            agents: 50,
            rate: 1.0,
            websocket: true,
            chaos: 0.0,
            seconds: None,
            seed: 0x5eed,
            origins: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
            match flag.as_str() {
                "--addr" => o.addr = value()?,
                "--agents" => o.agents = value()?.parse().map_err(|e| bad(&e))?,
                "--rate" => o.rate = value()?.parse().map_err(|e| bad(&e))?,
                "--no-websocket" => o.websocket = false,
                "--chaos" => o.chaos = value()?.parse().map_err(|e| bad(&e))?,
                "--seconds" => o.seconds = Some(value()?.parse().map_err(|e| bad(&e))?),
                "--seed" => o.seed = value()?.parse().map_err(|e| bad(&e))?,
                "--allow-origin" => o.origins.push(value()?),
                "--help" | "-h" => {
                    return Err(
                        "usage: dashboard [--addr HOST:PORT] [--agents N] [--rate R] \
                                [--no-websocket] [--chaos P] [--seconds S] [--seed N] \
                                [--allow-origin SCHEME://HOST:PORT]..."
                            .into(),
                    )
                }
                other => return Err(format!("unknown option {other} (see --help)")),
            }
        }
        if !(o.rate > 0.0 && o.rate <= 100.0) {
            return Err("--rate must be in (0, 100]".into());
        }
        if !(0.0..=1.0).contains(&o.chaos) {
            return Err("--chaos must be a probability in [0, 1]".into());
        }
        Ok(o)
    }
}

struct Agent {
    id: String,
    status: AgentStatus,
    /// The task and the ticks it still needs.
    busy_with: Option<(String, u32)>,
    completed: u64,
    cpu: f32,
    metrics: Option<Value>,
}

/// The swarm, and the projection of everything it emitted: what `/api/snapshot` serves.
struct Board {
    hub: Hub,
    rng: Rng,
    paused: bool,
    agents: Vec<Agent>,
    queue: Vec<String>,
    next_task: u64,
    running: u64,
    completed: u64,
    failed: u64,
    alerts: Vec<Value>,
    performance: Option<Value>,
    status: Option<Value>,
    /// The position of the last event emitted to each of `ROOMS`.
    positions: [Position; 3],
    started: tokio::time::Instant,
    /// When the last `system.performance` was taken, and the hub's event count then: its
    /// `events_per_sec` is the rate since, not the lifetime average.
    last_performance: (tokio::time::Instant, u64),
}

impl Board {
    fn new(hub: Hub, agents: usize, seed: u64) -> Board {
        let epoch = hub.epoch();
        Board {
            hub,
            rng: Rng::new(seed),
            paused: false,
            agents: (0..agents)
                .map(|i| Agent {
                    id: format!("agent-{i:03}"),
                    status: AgentStatus::Idle,
                    busy_with: None,
                    completed: 0,
                    cpu: 5.0,
                    metrics: None,
                })
                .collect(),
            queue: Vec::new(),
            next_task: 0,
            running: 0,
            completed: 0,
            failed: 0,
            alerts: Vec::new(),
            performance: None,
            status: None,
            positions: [Position::new(epoch, 0); 3],
            started: tokio::time::Instant::now(),
            last_performance: (tokio::time::Instant::now(), 0),
        }
    }

    /// Records the position an emit landed at.
    fn landed(&mut self, room: &str, at: Result<Position, EmitError>) -> Result<u64, EmitError> {
        let at = at?;
        if let Some(i) = ROOMS.iter().position(|r| *r == room) {
            self.positions[i] = at;
        }
        Ok(at.offset)
    }

    fn announce_agents(&mut self) -> Result<(), EmitError> {
        for i in 0..self.agents.len() {
            let mut capabilities = Capabilities::new();
            let _ = capabilities.push("analysis");
            let id = &self.agents[i].id;
            let at = self.hub.emit_agent_created(&AgentCreated {
                agent_id: id,
                name: id,
                agent_type: "worker",
                capabilities,
            });
            self.landed("agents", at)?;
        }
        Ok(())
    }

    fn set_status(&mut self, i: usize, new: AgentStatus, task: &str) -> Result<(), EmitError> {
        let agent = &mut self.agents[i];
        let old = std::mem::replace(&mut agent.status, new);
        let at = self
            .hub
            .emit_agent_status_change(&agent.id, old, new, &[("task", task)]);
        self.landed("agents", at).map(drop)
    }

    /// One tick of the swarm: new work, progress, metrics, alerts, and every fourth tick the
    /// system's status.
    fn tick(&mut self, step: u64) -> Result<(), EmitError> {
        let n = self.agents.len() as u64;
        for _ in 0..self.rng.up_to(n / 10 + 1) {
            self.next_task += 1;
            let task = format!("task-{:06}", self.next_task);
            let at = self.hub.emit_task_queued(&TaskQueued {
                task_id: &task,
                task_type: "analysis",
                priority: self.rng.up_to(9) as u8,
                queue_depth: self.queue.len() as u32 + 1,
            });
            self.landed("tasks", at)?;
            self.queue.push(task);
        }
        for i in 0..self.agents.len() {
            match self.agents[i].busy_with.take() {
                Some((task, 0)) => {
                    let agent_id = self.agents[i].id.clone();
                    self.running -= 1;
                    let at = if self.rng.up_to(19) == 0 {
                        self.failed += 1;
                        self.hub.emit_task_failed(&TaskFailed {
                            task_id: &task,
                            agent_id: Some(&agent_id),
                            error: "worker timed out",
                            retryable: true,
                        })
                    } else {
                        self.completed += 1;
                        self.agents[i].completed += 1;
                        self.hub.emit_task_completed(&TaskCompleted {
                            task_id: &task,
                            agent_id: &agent_id,
                            duration_ms: 1000 + self.rng.up_to(4000),
                            result: Some("ok"),
                        })
                    };
                    self.landed("tasks", at)?;
                    self.set_status(i, AgentStatus::Idle, &task)?;
                }
                Some((task, left)) => self.agents[i].busy_with = Some((task, left - 1)),
                None => {
                    if let Some(task) = self.queue.pop() {
                        let at = self.hub.emit_task_assigned(&TaskAssigned {
                            task_id: &task,
                            agent_id: &self.agents[i].id,
                            wait_ms: self.rng.up_to(2000),
                        });
                        self.landed("tasks", at)?;
                        self.running += 1;
                        self.set_status(i, AgentStatus::Busy, &task)?;
                        let ticks = 4 + self.rng.up_to(16) as u32;
                        self.agents[i].busy_with = Some((task, ticks));
                    }
                }
            }
            let noise = (self.rng.up_to(100) as f32 - 50.0) / 25.0;
            let agent = &mut self.agents[i];
            let target = if agent.busy_with.is_some() { 70.0 } else { 5.0 };
            agent.cpu += (target - agent.cpu) * 0.3 + noise;
            let metrics = AgentMetrics {
                agent_id: &agent.id,
                cpu_percent: agent.cpu.clamp(0.0, 100.0),
                memory_mb: 256.0 + agent.cpu.clamp(0.0, 100.0) * 4.0,
                tasks_in_progress: u32::from(agent.busy_with.is_some()),
                tasks_completed: agent.completed,
                error_rate: 0.05,
            };
            agent.metrics = Some(as_sent(&metrics));
            let at = self.hub.emit_agent_metrics(&metrics);
            self.landed("agents", at)?;
        }
        if self.rng.up_to(39) == 0 {
            let alert = SystemAlert {
                level: AlertLevel::Warning,
                source: "scheduler",
                message: "task queue is growing",
            };
            let at = self.hub.emit_system_alert(&alert);
            let offset = self.landed("system", at)?;
            self.alerts.push(json!({
                "offset": offset, "level": alert.level,
                "source": alert.source, "message": alert.message,
            }));
            if self.alerts.len() > ALERTS_KEPT {
                self.alerts.remove(0);
            }
        }
        if step.is_multiple_of(4) {
            let stats = self.hub.stats();
            let busy = self.agents.iter().filter(|a| a.busy_with.is_some()).count();
            let uptime = self.started.elapsed();
            let (since, events_then) = self.last_performance;
            let now = tokio::time::Instant::now();
            let window = now.duration_since(since).as_secs_f32().max(0.001);
            self.last_performance = (now, stats.events_in);
            let performance = SystemPerformance {
                cpu_percent: busy as f32 * 100.0 / n.max(1) as f32,
                memory_percent: 40.0,
                events_per_sec: stats.events_in.saturating_sub(events_then) as f32 / window,
                connections: stats.connections as u32,
            };
            let at = self.hub.emit_system_performance(&performance);
            self.landed("system", at)?;
            self.performance = Some(as_sent(&performance));
            let status = SystemStatus {
                status: SystemHealth::Healthy,
                agents_online: n as u32,
                tasks_pending: self.queue.len() as u32,
                uptime_s: uptime.as_secs(),
            };
            let at = self.hub.emit_system_status(&status);
            self.landed("system", at)?;
            self.status = Some(as_sent(&status));
        }
        Ok(())
    }

    /// The state at `positions`, as the page reads it (the contract is in the page's code).
    fn snapshot(&self) -> Value {
        let position = |p: &Position| json!({"epoch": p.epoch, "offset": p.offset});
        let agents: Vec<Value> = self
            .agents
            .iter()
            .map(|a| {
                json!({
                    "agent_id": a.id, "name": a.id, "agent_type": "worker",
                    "status": a.status,
                    "task": a.busy_with.as_ref().map(|(task, _)| task),
                    "metrics": a.metrics,
                })
            })
            .collect();
        json!({
            "epoch": self.hub.epoch(),
            "paused": self.paused,
            "positions": {
                ROOMS[0]: position(&self.positions[0]),
                ROOMS[1]: position(&self.positions[1]),
                ROOMS[2]: position(&self.positions[2]),
            },
            "agents": agents,
            "tasks": {
                "queued": self.queue.len(), "running": self.running,
                "completed": self.completed, "failed": self.failed,
            },
            "alerts": self.alerts,
            "system": {"performance": self.performance, "status": self.status},
        })
    }
}

/// A payload as the events carry it: through JSON text, so an `f32` reads as its shortest
/// decimal form (`0.05`) as in the event, not widened to `f64` (`0.05000000074505806`).
fn as_sent<T: serde::Serialize>(payload: &T) -> Value {
    serde_json::to_string(payload)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null)
}

type SharedBoard = Arc<Mutex<Board>>;

fn lock(board: &SharedBoard) -> MutexGuard<'_, Board> {
    board.lock().unwrap_or_else(|p| p.into_inner())
}

/// The one room clients may publish into.
const NOTES_ROOM: &str = "notes";

fn config(options: &Options, board: &SharedBoard) -> ServerConfig {
    let snapshot = board.clone();
    let pause = board.clone();
    let resume = board.clone();
    let set_paused = |board: SharedBoard, paused: bool| {
        move |req: &HttpRequest| {
            if req.method != "POST" {
                return HttpResponse::error(405, "method not allowed").header("Allow", "POST");
            }
            lock(&board).paused = paused;
            HttpResponse::json(json!({ "paused": paused }).to_string())
        }
    };
    let mut config = ServerConfig::default();
    if !options.origins.is_empty() {
        // Pages of these origins too, besides the demo's own.
        config = config.allowed_origins(options.origins.iter().cloned());
    }
    config
        // Clients read the swarm's rooms; they may write only into `notes` (the operators'
        // notes), never into `agents`, `tasks` or `system`, which the dashboard trusts.
        .grants(Grants::publish_to([NOTES_ROOM]).expect("a valid room name"))
        .websocket(options.websocket)
        .serve_client("/eventwire.js")
        .serve_static("/", HTML, INDEX_HTML)
        .serve_static("/index.html", HTML, INDEX_HTML)
        .serve_static(
            "/dashboard.js",
            "text/javascript; charset=utf-8",
            DASHBOARD_JS,
        )
        .serve_static("/dashboard.css", "text/css; charset=utf-8", DASHBOARD_CSS)
        .route("/api/snapshot", move |req| match req.method.as_str() {
            "GET" => HttpResponse::json(lock(&snapshot).snapshot().to_string()),
            _ => HttpResponse::error(405, "method not allowed").header("Allow", "GET"),
        })
        .route("/api/swarm/pause", set_paused(pause, true))
        .route("/api/swarm/resume", set_paused(resume, false))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = match Options::parse() {
        Ok(o) => o,
        Err(why) => {
            eprintln!("{why}");
            std::process::exit(2);
        }
    };
    // Installed before the address is printed, so a signal sent as soon as it is known is
    // never met by the default action (which kills the process with no close frame).
    let signal = shutdown_signal();
    let hub = Hub::new(Default::default());
    // Clients may not create rooms: the swarm's rooms and the notes exist from the start, so a
    // page that connects before their first event can join them.
    hub.declare(ROOMS.iter().chain([&NOTES_ROOM]))?;
    let board: SharedBoard = Arc::new(Mutex::new(Board::new(
        hub.clone(),
        options.agents,
        options.seed,
    )));
    let server = Server::bind(options.addr.as_str(), hub, config(&options, &board)).await?;
    let addr = server.local_addr();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "eventwire dashboard at http://{addr}/")?;
        out.flush()?;
    }
    eprintln!(
        "{} agents, rate x{}, websocket {}, chaos {}; ctrl-c or SIGTERM stops",
        options.agents,
        options.rate,
        if options.websocket {
            "on"
        } else {
            "off (polling only)"
        },
        options.chaos
    );
    lock(&board).announce_agents()?;

    let tick = Duration::from_secs_f64(0.25 / options.rate);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut chaos = tokio::time::interval(Duration::from_secs(1));
    chaos.tick().await;
    let stop = async {
        match options.seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop);
    tokio::pin!(signal);
    let mut step = 0u64;
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let mut board = lock(&board);
                if !board.paused {
                    board.tick(step)?;
                    step += 1;
                }
            }
            _ = chaos.tick(), if options.chaos > 0.0 => {
                server.drop_connections(options.chaos);
            }
            _ = &mut stop => break,
            _ = &mut signal => {
                eprintln!("stopping: clients reconnect after {RETRY_AFTER:?}");
                break;
            }
        }
    }
    server.shutdown(RETRY_AFTER).await;
    Ok(())
}
