//! The steady-state paths allocate nothing per event: hub emit, the server connection's batch
//! (session and encoding into the adapter's buffer), binary decode, client delivery. Counted with a global allocator in this test binary.

use eventwire_core::server::Grants;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventwire_core::client::{Action, Client, ClientConfig, ClientEvent};
use eventwire_core::codec::{binary, Codec};
use eventwire_core::hub::{Hub, HubConfig};
use eventwire_core::server::{Connection, Decision, Framing, ServerConfig};
use eventwire_core::time::Instant;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PAYLOAD: &[u8] = br#"{"agent_id":"agent-0042","cpu":0.42,"mem_mb":512,"tasks":3,"status":"busy","queue":"analysis"}"#;

/// Moves every frame between the two machines until both are quiet; returns events delivered.
/// The server side is the byte-level connection adapters drive: messages in, messages out.
fn drive(
    now: Instant,
    hub: &Hub,
    server: &mut Connection,
    client: &mut Client,
    wire: &mut [u8],
    out: &mut Vec<u8>,
) -> usize {
    let mut delivered = 0;
    loop {
        let mut moved = false;
        while let Some(frame) = client.poll_transmit(now) {
            let n = binary::encode(&frame, wire).expect("encode").len();
            server.handle_message(now, hub, &wire[..n], false);
            while let Some(decision) = server.poll_decision() {
                match decision {
                    Decision::Authenticate { .. } => {
                        server.settle_auth(now, Ok(Grants::publish_any().create_any()))
                    }
                    Decision::Authorize { room } => server.settle_join(hub, &room, true),
                    other => panic!("unexpected {other:?}"),
                }
            }
            moved = true;
        }
        out.clear();
        while server.poll_transmit(now, out).is_some() {
            let frame = binary::decode(out, out.len()).expect("decode");
            client.handle_frame(now, &frame, &mut |e| {
                if let ClientEvent::Event { .. } = e {
                    delivered += 1;
                }
            });
            out.clear();
            moved = true;
        }
        if !moved {
            return delivered;
        }
    }
}

#[test]
fn steady_state_allocates_nothing_per_event() {
    let mut now = Instant::from_millis(1);
    let hub = Hub::new(1, HubConfig::new());
    let mut server = Connection::new(
        now,
        ServerConfig::new(),
        Framing::Message(Codec::Binary),
        1,
        1,
    );
    let mut out = Vec::with_capacity(64 * 1024);
    let mut client: Client = Client::new(ClientConfig::new(7), 3);
    client.subscribe("agents").unwrap();
    client.connect(now, &mut |_| {});
    assert_eq!(client.poll_action(), Some(Action::Connect));
    client.handle_connected(now, &mut |_| {});
    let mut wire = vec![0u8; 64 * 1024];
    drive(now, &hub, &mut server, &mut client, &mut wire, &mut out);
    hub.emit(now, "agents", "agent.status", PAYLOAD, None)
        .unwrap();
    // Warm up: the room exists, queues have grown to their working size.
    for _ in 0..200 {
        now = now + Duration::from_millis(1);
        for _ in 0..10 {
            hub.emit(now, "agents", "agent.status", PAYLOAD, Some("agent:a1"))
                .unwrap();
            hub.emit(now, "agents", "agent.status", PAYLOAD, None)
                .unwrap();
        }
        now = now + Duration::from_millis(200);
        drive(now, &hub, &mut server, &mut client, &mut wire, &mut out);
    }

    let before = ALLOCS.load(Ordering::Relaxed);
    let mut delivered = 0;
    for _ in 0..500 {
        now = now + Duration::from_millis(1);
        for _ in 0..10 {
            hub.emit(now, "agents", "agent.metrics", PAYLOAD, Some("agent:a1"))
                .unwrap();
            hub.emit(now, "agents", "agent.status", PAYLOAD, None)
                .unwrap();
        }
        now = now + Duration::from_millis(200);
        delivered += drive(now, &hub, &mut server, &mut client, &mut wire, &mut out);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert!(delivered >= 5_000, "only {delivered} events went through");
    assert_eq!(allocs, 0, "{allocs} allocations for {delivered} events");
}
