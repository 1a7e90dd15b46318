//! The steady-state paths allocate nothing per event: hub emit, server session batch, binary
//! encode, binary decode, client delivery. Counted with a global allocator in this test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventwire_core::client::{Action, Client, ClientConfig, ClientEvent};
use eventwire_core::codec::binary;
use eventwire_core::hub::{Hub, HubConfig};
use eventwire_core::server::{ServerConfig, ServerEvent, ServerSession};
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
fn drive(
    now: Instant,
    hub: &mut Hub,
    server: &mut ServerSession,
    client: &mut Client,
    wire: &mut [u8],
) -> usize {
    let mut delivered = 0;
    loop {
        let mut moved = false;
        while let Some(frame) = client.poll_transmit(now) {
            let n = binary::encode(&frame, wire).expect("encode").len();
            let frame = binary::decode(&wire[..n], wire.len()).expect("decode");
            let mut auth = false;
            server.handle_frame(now, &frame, hub, &mut |e| {
                if let ServerEvent::Authenticate { .. } = e {
                    auth = true;
                }
            });
            if auth {
                let mut rooms = Vec::new();
                server
                    .accept(now, &mut |e| {
                        if let ServerEvent::Authorize { room } = e {
                            rooms.push(room.to_string());
                        }
                    })
                    .unwrap();
                for room in rooms {
                    server.allow(hub, &room).unwrap();
                }
            }
            moved = true;
        }
        while let Some(frame) = server.poll_transmit(now, hub) {
            let n = binary::encode(&frame, wire).expect("encode").len();
            let frame = binary::decode(&wire[..n], wire.len()).expect("decode");
            client.handle_frame(now, &frame, &mut |e| {
                if let ClientEvent::Event { .. } = e {
                    delivered += 1;
                }
            });
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
    let mut hub = Hub::new(1, HubConfig::new());
    let mut server = ServerSession::new(now, ServerConfig::new(), 1, 1);
    let mut client: Client = Client::new(ClientConfig::new(7), 3);
    client.subscribe("agents").unwrap();
    client.connect(now, &mut |_| {});
    assert_eq!(client.poll_action(), Some(Action::Connect));
    client.handle_connected(now, &mut |_| {});
    let mut wire = vec![0u8; 64 * 1024];
    drive(now, &mut hub, &mut server, &mut client, &mut wire);
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
        drive(now, &mut hub, &mut server, &mut client, &mut wire);
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
        delivered += drive(now, &mut hub, &mut server, &mut client, &mut wire);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert!(delivered >= 5_000, "only {delivered} events went through");
    assert_eq!(allocs, 0, "{allocs} allocations for {delivered} events");
}
