//! What both adapters' allocation tests share: a counting allocator that counts only on the
//! server's threads (known by their names), and a plain blocking WebSocket subscriber that
//! drives a room through its steady state (bursts of one batch, each read before the next).
//! Included with `#[path]` by `adapter-tokio/tests/alloc_free.rs` and
//! `adapter-sync/tests/alloc_free.rs`, each with its own server.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventwire_core::codec::binary;
use eventwire_core::frame::Seq;
use eventwire_core::frame::{Frame, Hello, Resume};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Counts allocations made on the server's threads.
pub struct Counting;

static SERVER_ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread is one of the server's: 0 not known yet, 1 yes, 2 no.
    static SERVER_THREAD: Cell<u8> = const { Cell::new(0) };
}

/// The names of the server's threads.
pub static SERVER_THREAD_NAMES: std::sync::OnceLock<&'static [&'static str]> =
    std::sync::OnceLock::new();

fn count() {
    let server = SERVER_THREAD.with(|state| {
        if state.get() == 0 {
            // Asking for the name may allocate: that allocation finds "no" and is not counted.
            state.set(2);
            let names = SERVER_THREAD_NAMES.get().copied().unwrap_or(&[]);
            let thread = std::thread::current();
            let ours = thread.name().is_some_and(|n| names.contains(&n));
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

const PAYLOAD: &[u8] = br#"{"agent_id":"agent-0042","cpu":0.42,"mem_mb":512,"tasks":3}"#;

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// Reads messages until `events` batch events arrived; returns them.
fn read_events(ws: &mut Ws, events: usize) -> usize {
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

/// The room every event goes to.
pub const ROOM: &str = "agents";
/// The kind of every event.
pub const KIND: &str = "agent.metrics";

/// Runs [`steady_state`] and asserts that every event arrived and the server's threads
/// allocated nothing; `emit` appends one event of [`KIND`] to [`ROOM`] on the server's hub.
pub fn assert_allocation_free<T, E: std::fmt::Debug>(
    addr: SocketAddr,
    emit: impl Fn(&[u8]) -> Result<T, E>,
) {
    let (delivered, allocs) = steady_state(addr, |payload| {
        emit(payload).expect("emit");
    });
    assert_eq!(delivered, 20_000);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations on the server's threads for {delivered} events"
    );
}

/// Subscribes to [`ROOM`] on the server at `addr`, warms up, then sends 20,000 events through
/// `emit` in bursts of 50 (one batch each, read before the next); returns the events delivered
/// and the allocations counted on the server's threads meanwhile.
fn steady_state(addr: SocketAddr, emit: impl Fn(&[u8])) -> (usize, usize) {
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "eventwire.v1".parse().unwrap());
    let (mut ws, _) = tungstenite::connect(request).expect("connect");
    let rooms = [Resume {
        room: ROOM,
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
    // The welcome and the join answer.
    for _ in 0..2 {
        let _ = ws.read().unwrap();
    }
    let mut burst = |n: usize| {
        for _ in 0..n {
            emit(PAYLOAD);
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
    (delivered, SERVER_ALLOCS.load(Ordering::Relaxed) - before)
}
