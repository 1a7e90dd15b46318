//! The blocking server's steady-state path allocates nothing per event, end to end in the
//! adapter: an append wakes the connection's thread, which reads the room, encodes the batch,
//! hands it to tungstenite and writes it to a real socket on 127.0.0.1, while its reader thread
//! moves what the client sends. Allocations are counted only on those two threads (known by
//! their names); the emitting thread and the reading client are not counted (emit has its own
//! test in the core).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventwire_core::codec::binary;
use eventwire_core::frame::{Frame, Hello, Resume};
use eventwire_core::seq::Seq;
use eventwire_sync::{Hub, Server, ServerConfig};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

struct Counting;

static SERVER_ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread is one of the server's: 0 not known yet, 1 yes, 2 no.
    static SERVER_THREAD: Cell<u8> = const { Cell::new(0) };
}

fn count() {
    let server = SERVER_THREAD.with(|state| {
        if state.get() == 0 {
            // Asking for the name may allocate: that allocation finds "no" and is not counted.
            state.set(2);
            let name = std::thread::current();
            let ours = matches!(name.name(), Some("eventwire-conn" | "eventwire-reader"));
            state.set(if ours { 1 } else { 2 });
        }
        state.get() == 1
    });
    if server {
        SERVER_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PAYLOAD: &[u8] = br#"{"agent_id":"agent-0042","cpu":0.42,"mem_mb":512,"tasks":3}"#;

/// Reads messages until `events` batch events arrived; returns them.
fn read_events(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>, events: usize) -> usize {
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got < events {
        assert!(
            Instant::now() < deadline,
            "only {got} of {events} events arrived"
        );
        match ws.read().expect("read") {
            Message::Binary(bytes) => match binary::decode(&bytes, usize::MAX).expect("decode") {
                Frame::Batch(b) => got += b.events.len(),
                Frame::Ping(p) => {
                    let mut out = Vec::new();
                    binary::encode_into(&Frame::Pong(p), &mut out).unwrap();
                    ws.send(Message::Binary(out.into())).unwrap();
                }
                Frame::Gap(g) => panic!("a gap in the steady state: {g:?}"),
                _ => {}
            },
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

#[test]
fn sending_allocates_nothing_per_event() {
    let hub = Hub::with_epoch(1, Default::default());
    let server = Server::bind("127.0.0.1:0", hub.clone(), ServerConfig::default()).unwrap();
    let addr = server.local_addr();

    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "eventwire.v1".parse().unwrap());
    let (mut ws, _) = tungstenite::connect(request).expect("connect");
    let rooms = [Resume {
        room: "agents",
        from: None,
    }];
    let hello = Frame::Hello(Hello {
        version: eventwire_core::PROTOCOL_VERSION,
        client_id: 7,
        token: None,
        max_frame: 65536,
        max_batch: 50,
        rooms: Seq::from_slice(&rooms),
    });
    let mut out = Vec::new();
    binary::encode_into(&hello, &mut out).unwrap();
    ws.send(Message::Binary(out.into())).unwrap();
    let room = hub.room("agents").unwrap();
    // The welcome and the join answer.
    for _ in 0..2 {
        let _ = ws.read().unwrap();
    }

    // Bursts of 50 (one batch each), each read before the next: the steady state of a busy room.
    let mut burst = |n: usize| {
        for _ in 0..n {
            room.emit(
                eventwire_core::time::Instant::ZERO,
                "agent.metrics",
                PAYLOAD,
                None,
            )
            .unwrap();
        }
        read_events(&mut ws, n)
    };
    // Warm up: buffers grow to their working size, the runtime's timers exist.
    for _ in 0..200 {
        burst(50);
    }
    let before = SERVER_ALLOCS.load(Ordering::Relaxed);
    let mut delivered = 0;
    for _ in 0..400 {
        delivered += burst(50);
    }
    let allocs = SERVER_ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(delivered, 20_000);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations on the server's threads for {delivered} events"
    );
    drop(ws);
    server.shutdown(Duration::from_secs(1));
}
