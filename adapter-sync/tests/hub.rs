//! The blocking hub against the tokio one: the same typed dashboard helpers (the core's
//! `EmitDashboard`) give the same rooms, kinds, positions and statistics; and the blocking
//! server counts what it sends.

use std::time::{Duration, Instant};

use eventwire_core::dashboard::{
    AgentMetrics, AgentStatus, DashboardEvent, SystemHealth, SystemStatus, TaskQueued,
};
use eventwire_core::frame::Position;
use eventwire_sync::{
    Client, ClientOptions, EmitDashboard, EmitError, Event, Hub, Server, ServerConfig,
};

fn emit_all(hub: &impl EmitDashboard) -> Vec<Position> {
    let metrics = |cpu| AgentMetrics {
        agent_id: "agent-1",
        cpu_percent: cpu,
        memory_mb: 256.0,
        tasks_in_progress: 1,
        tasks_completed: 3,
        error_rate: 0.0,
    };
    vec![
        hub.emit_agent_status_change(
            "agent-1",
            AgentStatus::Idle,
            AgentStatus::Busy,
            &[("task", "t-1")],
        )
        .unwrap(),
        hub.emit_agent_metrics(&metrics(10.0)).unwrap(),
        hub.emit_agent_metrics(&metrics(20.0)).unwrap(),
        hub.emit_task_queued(&TaskQueued {
            task_id: "t-2",
            task_type: "analysis",
            priority: 1,
            queue_depth: 1,
        })
        .unwrap(),
        hub.emit_system_status(&SystemStatus {
            status: SystemHealth::Healthy,
            agents_online: 1,
            tasks_pending: 1,
            uptime_s: 5,
        })
        .unwrap(),
    ]
}

#[test]
fn dashboard_helpers_and_stats_match_the_tokio_hub() {
    let sync = Hub::with_epoch(4, Default::default());
    let tokio = eventwire_tokio::Hub::with_epoch(4, Default::default());
    let positions = emit_all(&sync);
    assert_eq!(positions, emit_all(&tokio));
    assert_eq!(
        positions[4],
        Position::new(4, 1),
        "system.status is the first of its room"
    );
    assert_eq!(sync.stats(), tokio.stats());
    assert_eq!(sync.stats().events_in, 5);
    assert_eq!(sync.room_stats("agents").unwrap().head, Position::new(4, 3));
    // An agent id that cannot form a coalescing key is refused, by either hub.
    let bad = AgentMetrics {
        agent_id: "not a name",
        cpu_percent: 0.0,
        memory_mb: 0.0,
        tasks_in_progress: 0,
        tasks_completed: 0,
        error_rate: 0.0,
    };
    assert!(matches!(
        sync.emit_agent_metrics(&bad),
        Err(EmitError::Dashboard(_))
    ));
    assert!(matches!(
        tokio.emit_dashboard(&DashboardEvent::from(bad)),
        Err(EmitError::Dashboard(_))
    ));
}

#[test]
fn the_server_counts_what_it_sends() {
    let hub = Hub::with_epoch(1, Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare(["agents"]).unwrap();
    let server = Server::bind("127.0.0.1:0", hub.clone(), ServerConfig::default()).unwrap();
    let client = Client::connect(
        &format!("ws://{}", server.local_addr()),
        ClientOptions::new(1),
    )
    .unwrap();
    client.subscribe("agents").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let next = || {
        client
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("an event in time")
    };
    while !matches!(next(), Event::Subscribed { .. }) {}
    emit_all(&hub);
    let mut events = 0;
    while events < 3 {
        // The two metrics may be coalesced into one.
        match next() {
            Event::Event { position, .. } if position.offset == 3 => events = 3,
            Event::Event { .. } => events += 1,
            _ => {}
        }
    }
    let stats = hub.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.connections_total, 1);
    assert!(stats.events_out >= 2, "{stats:?}");
    assert!(stats.bytes_out > 0 && stats.bytes_in > 0, "{stats:?}");
    client.close();
    server.shutdown(Duration::from_secs(1));
    assert_eq!(hub.stats().connections, 0);
}
