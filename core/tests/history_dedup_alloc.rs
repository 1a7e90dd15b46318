//! `RoomLog` and `Dedup` allocate only when built: appends, reads, expiry, checks and records
//! allocate nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use eventwire_core::dedup::{Dedup, DedupConfig};
use eventwire_core::history::{HistoryConfig, RoomLog};
use eventwire_core::time::Instant;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

const JSON: [&[u8]; 3] = [
    br#"{"cpu":0.5,"tags":[{"k":"a","v":[1,2,{"deep":[[[]]]}]}]}"#,
    b" [true, null, \"\\u00e9\"] ",
    b"not json",
];

#[test]
fn steady_state_allocates_nothing() {
    let config = HistoryConfig::new()
        .max_events(64)
        .max_bytes(4096)
        .max_age(Some(Duration::from_secs(5)));
    let built = allocations();
    let mut log = RoomLog::new(1, config);
    // A room nobody emits to costs no storage (a client-created room, say): none is allocated
    // before the first event.
    assert_eq!(allocations(), built, "a new log allocated storage");
    let mut dedup = Dedup::new(DedupConfig::new().clients(16).window(8));
    let payload = [7u8; 100];
    let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
    // The log's storage grows with its events (a new log allocates nothing), up to its bounds:
    // fill it to both once before measuring: large events for the bytes, then small ones for
    // the count.
    fill_to_bounds(&mut log);
    // The counter works: filling allocated the storage.
    assert!(allocations() > built);
    // Preallocated, a log takes its storage at once and nothing while filling.
    let mut pre = RoomLog::new(1, config.preallocate(true));
    let filling = allocations();
    fill_to_bounds(&mut pre);
    assert_eq!(allocations(), filling, "a preallocated log grew");
    drop(pre);

    let before = allocations();
    let mut delivered = 0usize;
    for i in 0..10_000u64 {
        let now = Instant::from_millis(i * 3);
        let key = (i % 3 != 0).then(|| keys[(i % 8) as usize]);
        let len = (i as usize * 37) % payload.len();
        let position = log
            .append(now, "agent.status", &payload[..len], key)
            .unwrap();
        // JSON payloads get a JSON form too, checked and written without allocating.
        log.append(now, "agent.metrics", JSON[(i % 3) as usize], key)
            .unwrap();
        let client = i % 24; // more clients than room: evictions too
        let id = i / 24 + 1;
        let _ = dedup.check(client, id);
        dedup.record(now, client, id, position);
        if i % 7 == 0 {
            dedup.record_refused(now, client, id + 1);
        }
        let _ = dedup.check(client, id);
        let after = log.head().offset.saturating_sub(i % 50);
        let _ = log.read(after, 10, 2048, |e| delivered += e.encoded.len());
        let _ = log.read_json(after, 10, 2048, |e| {
            delivered += e.json.map_or(0, <[u8]>::len)
        });
        log.expire(now);
        let _ = log.next_expiry();
        if i % 1000 == 0 {
            let _ = dedup.forget_idle(now, Duration::from_millis(30));
        }
    }
    assert_eq!(allocations() - before, 0);
    assert!(delivered > 0);
}

/// Appends large events (to the byte bound) then small ones (to the count bound), keyed.
fn fill_to_bounds(log: &mut RoomLog) {
    let fill = [1u8; 200];
    for i in 0..200u64 {
        let len = if i < 100 { fill.len() } else { 1 };
        let key = ["a", "b", "c", "d", "e", "f", "g", "h"][(i % 8) as usize];
        log.append(Instant::ZERO, "warm", &fill[..len], Some(key))
            .unwrap();
    }
}
