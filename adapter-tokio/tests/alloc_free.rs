//! The server's steady-state path allocates nothing per event, end to end in the adapter: an
//! append wakes the connection task, which reads the room, encodes the batch, hands it to the
//! WebSocket and writes it to a real socket on 127.0.0.1. Allocations are counted only on the
//! server runtime's threads (known by their name); the emitting thread and the reading client
//! run elsewhere and are not counted (emit has its own test in the core).

use std::time::Duration;

use eventwire_core::time::Instant;
use eventwire_tokio::{Hub, Server, ServerConfig};

#[path = "shared/steady.rs"]
mod steady;

#[global_allocator]
static GLOBAL: steady::Counting = steady::Counting;

#[test]
fn sending_allocates_nothing_per_event() {
    let _ = steady::SERVER_THREAD_NAMES.set(&["eventwire-server"]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("eventwire-server")
        .enable_all()
        .build()
        .unwrap();
    let hub = Hub::with_epoch(1, Default::default());
    let server = runtime
        .block_on(Server::bind(
            "127.0.0.1:0",
            hub.clone(),
            ServerConfig::default(),
        ))
        .unwrap();
    let room = hub.room(steady::ROOM).unwrap();
    steady::assert_allocation_free(server.local_addr(), |payload| {
        room.emit(Instant::ZERO, steady::KIND, payload, None)
    });
    runtime.block_on(server.shutdown(Duration::from_secs(1)));
}
