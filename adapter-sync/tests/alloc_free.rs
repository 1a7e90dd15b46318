//! The blocking server's steady-state path allocates nothing per event, end to end in the
//! adapter: an append wakes the connection's thread, which reads the room, encodes the batch,
//! hands it to tungstenite and writes it to a real socket on 127.0.0.1, while its reader thread
//! moves what the client sends. Allocations are counted only on those two threads (known by
//! their names); the emitting thread and the reading client are not counted (emit has its own
//! test in the core).

use std::time::Duration;

use eventwire_core::time::Instant;
use eventwire_sync::{Hub, Server, ServerConfig};

#[path = "../../adapter-tokio/tests/shared/steady.rs"]
mod steady;

#[global_allocator]
static GLOBAL: steady::Counting = steady::Counting;

#[test]
fn sending_allocates_nothing_per_event() {
    let _ = steady::SERVER_THREAD_NAMES.set(&["eventwire-conn", "eventwire-reader"]);
    let hub = Hub::with_epoch(1, Default::default());
    let server = Server::bind("127.0.0.1:0", hub.clone(), ServerConfig::default()).unwrap();
    let room = hub.room(steady::ROOM).unwrap();
    steady::assert_allocation_free(server.local_addr(), |payload| {
        room.emit(Instant::ZERO, steady::KIND, payload, None)
    });
    server.shutdown(Duration::from_secs(1));
}
