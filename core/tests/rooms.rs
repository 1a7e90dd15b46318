//! Rooms without a global lock: an emit takes only its own room's locks (and, by name, a shared
//! read of the directory), and wakes only the sessions holding that room. Checked with a host
//! whose locks record every acquisition and whose wakers count.

use eventwire_core::server::Grants;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;

use eventwire_core::codec::{binary, Codec};
use eventwire_core::frame::Seq;
use eventwire_core::frame::{Frame, Hello, Resume};
use eventwire_core::hub::{self, Host, Hub, HubConfig};
use eventwire_core::server::{Connection, Decision, Framing, ServerConfig};
use eventwire_core::time::Instant;

thread_local! {
    /// Every lock taken: its address and whether it was taken to write.
    static TAKEN: RefCell<Vec<(usize, bool)>> = const { RefCell::new(Vec::new()) };
}

/// A single-threaded host that records its locks and counts its wake-ups.
struct Recording;

struct Recorded<T>(RefCell<T>);

impl<T> hub::Lock<T> for Recorded<T> {
    fn new(value: T) -> Self {
        Recorded(RefCell::new(value))
    }

    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        TAKEN.with(|t| t.borrow_mut().push((self as *const Self as usize, false)));
        f(&self.0.borrow())
    }

    fn write<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        TAKEN.with(|t| t.borrow_mut().push((self as *const Self as usize, true)));
        f(&mut self.0.borrow_mut())
    }
}

impl Host for Recording {
    type Lock<T> = Recorded<T>;
    type Shared<T> = Rc<T>;
    type Waker = Rc<Cell<u32>>;
    type Counter = Cell<u64>;

    fn share<T>(value: T) -> Rc<T> {
        Rc::new(value)
    }

    fn wake(waker: &Rc<Cell<u32>>) {
        waker.set(waker.get() + 1);
    }
}

const T0: Instant = Instant::from_micros(1);

/// The locks `f` takes.
fn locks_of(f: impl FnOnce()) -> Vec<(usize, bool)> {
    TAKEN.with(|t| t.borrow_mut().clear());
    f();
    TAKEN.with(|t| t.borrow_mut().drain(..).collect())
}

fn addresses(taken: &[(usize, bool)]) -> BTreeSet<usize> {
    taken.iter().map(|&(a, _)| a).collect()
}

/// A connection holding `rooms`, its wake-up counter.
fn subscriber(hub: &Hub<Recording>, rooms: &[&str]) -> (Connection<Recording>, Rc<Cell<u32>>) {
    let wakes = Rc::new(Cell::new(0));
    let mut conn = Connection::with_waker(
        T0,
        ServerConfig::new(),
        Framing::Message(Codec::Binary),
        1,
        1,
        wakes.clone(),
    );
    let resume: Vec<Resume<'_>> = rooms
        .iter()
        .map(|room| Resume { room, from: None })
        .collect();
    let hello = Frame::Hello(Hello {
        version: eventwire_core::PROTOCOL_VERSION,
        client_id: 1,
        token: None,
        max_frame: 64 * 1024,
        max_batch: 50,
        rooms: Seq::from_slice(&resume),
    });
    let mut bytes = Vec::new();
    binary::encode_into(&hello, &mut bytes).unwrap();
    conn.handle_message(T0, hub, &bytes, false);
    while let Some(decision) = conn.poll_decision() {
        match decision {
            Decision::Authenticate { .. } => {
                conn.settle_auth(T0, Ok(Grants::publish_any().create_any()))
            }
            Decision::Authorize { room } => conn.settle_join(hub, &room, true),
            other => panic!("unexpected {other:?}"),
        }
    }
    (conn, wakes)
}

#[test]
fn an_emit_wakes_only_the_sessions_holding_its_room() {
    let hub = Hub::<Recording>::with_host(1, HubConfig::new());
    let (a_conn, a_wakes) = subscriber(&hub, &["a"]);
    let (b_conn, b_wakes) = subscriber(&hub, &["b"]);
    let (both_conn, both_wakes) = subscriber(&hub, &["a", "b"]);
    for _ in 0..100 {
        hub.emit(T0, "b", "tick", b"1", None).unwrap();
    }
    assert_eq!(
        a_wakes.get(),
        0,
        "a subscriber of another room is never woken"
    );
    assert_eq!(b_wakes.get(), 100);
    assert_eq!(both_wakes.get(), 100);
    hub.emit(T0, "a", "tick", b"1", None).unwrap();
    assert_eq!(
        (a_wakes.get(), b_wakes.get(), both_wakes.get()),
        (1, 100, 101)
    );
    assert_eq!(hub.room("a").unwrap().watchers(), 2);

    // A connection that goes away stops being woken (and is no longer counted).
    drop(both_conn);
    hub.emit(T0, "b", "tick", b"1", None).unwrap();
    assert_eq!(both_wakes.get(), 101);
    assert_eq!(hub.room("b").unwrap().watchers(), 1);
    drop((a_conn, b_conn));
    assert_eq!(hub.room("a").unwrap().watchers(), 0);
}

#[test]
fn emits_to_different_rooms_take_disjoint_locks() {
    let hub = Hub::<Recording>::with_host(1, HubConfig::new());
    let (_a_conn, _) = subscriber(&hub, &["a"]);
    let (_b_conn, _) = subscriber(&hub, &["b"]);
    let a = hub.room("a").unwrap();
    let b = hub.room("b").unwrap();

    // Through a handle: the room's own locks and nothing else.
    let to_a = locks_of(|| {
        a.emit(T0, "tick", b"1", None).unwrap();
    });
    let to_b = locks_of(|| {
        b.emit(T0, "tick", b"1", None).unwrap();
    });
    assert!(!to_a.is_empty() && !to_b.is_empty());
    assert!(
        addresses(&to_a).is_disjoint(&addresses(&to_b)),
        "{to_a:?} vs {to_b:?}"
    );
    // The log is written, the watchers only read: an emit never blocks another room's emit,
    // and its wake-ups never block each other.
    assert_eq!(to_a.iter().filter(|&&(_, write)| write).count(), 1);

    // By name: the directory is shared by both, and only ever read.
    let by_name_a = locks_of(|| {
        hub.emit(T0, "a", "tick", b"1", None).unwrap();
    });
    let by_name_b = locks_of(|| {
        hub.emit(T0, "b", "tick", b"1", None).unwrap();
    });
    let shared: Vec<usize> = addresses(&by_name_a)
        .intersection(&addresses(&by_name_b))
        .copied()
        .collect();
    assert_eq!(shared.len(), 1, "only the directory is common");
    assert!(by_name_a
        .iter()
        .chain(&by_name_b)
        .filter(|&&(addr, _)| addr == shared[0])
        .all(|&(_, write)| !write));
}

#[test]
fn a_session_reads_its_rooms_without_the_directory() {
    let hub = Hub::<Recording>::with_host(1, HubConfig::new());
    let (mut conn, _) = subscriber(&hub, &["a"]);
    let mut out = Vec::new();
    while conn.poll_transmit(T0, &mut out).is_some() {}
    hub.emit(T0, "a", "tick", b"1", None).unwrap();
    let directory_and_dedup = locks_of(|| {
        let _ = hub.room("zzz");
        hub.dedup(|_| ());
    });
    let read = locks_of(|| {
        let _ = conn.poll_timeout();
        out.clear();
        assert!(conn
            .poll_transmit(T0 + std::time::Duration::from_secs(1), &mut out)
            .is_some());
    });
    assert!(!read.is_empty());
    assert!(
        addresses(&read).is_disjoint(&addresses(&directory_and_dedup)),
        "a batch is read through the room's handle alone"
    );
    assert!(read.iter().all(|&(_, write)| !write), "readers only read");
}

/// An epoch is any `u32` but 0, and entropy in either half of the bits reaches it.
#[test]
fn epochs_come_from_every_random_bit_and_are_never_zero() {
    use eventwire_core::hub::epoch_from_random;
    assert_eq!(epoch_from_random(0), 1);
    assert_eq!(
        epoch_from_random(1 << 32 | 1),
        1,
        "equal halves cancel, and 0 is left out"
    );
    let low: std::collections::BTreeSet<u32> = (0..64).map(|i| epoch_from_random(1 << i)).collect();
    assert_eq!(low.len(), 32, "each bit of a half moves the epoch");
    assert_ne!(
        epoch_from_random(0xdead_beef),
        epoch_from_random(0xdead_beef << 32 | 7)
    );
}

/// The connection limit every adapter admits through: a connection is over it when the others
/// open (less those that stand for a counted session) reached it, and stays counted until closed.
#[test]
fn admission_counts_in_and_refuses_at_the_limit() {
    let counters = eventwire_core::stats::Counters::<hub::Local>::default();
    assert!(!counters.admit(2, 0), "the first of two");
    assert!(!counters.admit(2, 0), "the second of two");
    assert!(counters.admit(2, 0), "a third over a limit of two");
    assert!(
        !counters.admit(2, 2),
        "two polling requests in flight do not count"
    );
    assert_eq!(
        counters.connections.get(),
        4,
        "refused ones stay counted until closed"
    );
    assert!(counters.over_limit(2, 0), "counted in: three others open");
    assert!(!counters.closed() && !counters.closed());
    assert!(!counters.over_limit(2, 0), "counted in: one other open");
    assert!(!counters.closed());
    assert!(counters.closed(), "the last one");
}

/// Rooms clients create live only while used: one without watchers and new events since a sweep
/// `room_idle` ago is freed, a watched or busy one is not, the application's rooms never are;
/// clients hold at most `max_client_rooms`; and a room created again after being freed starts
/// in a new epoch, so a position in the old one cannot pass for one in the new. Before this, a
/// subscribe created a room for the hub's life and junk names filled the hub until restart.
#[test]
fn client_rooms_are_freed_when_idle_and_come_back_in_a_new_epoch() {
    use core::time::Duration;
    use eventwire_core::hub::HubError;

    let t = |s: u64| Instant::from_millis(s * 1000);
    let config = HubConfig::new()
        .room_idle(Duration::from_secs(60))
        .max_client_rooms(2);
    let hub = Hub::new(9, config);
    hub.ensure_room("agents").unwrap();
    let (watched, slot) = hub
        .client_room("scratch:1", true, |r| (r.clone(), r.watch(())))
        .unwrap();
    let emit = |room: &str, at| {
        hub.client_room(room, true, |r| r.emit(at, "note", b"{}", None))
            .unwrap()
            .unwrap()
    };
    emit("scratch:2", t(0));
    assert_eq!(
        hub.client_room("scratch:3", true, |_| ()),
        Err(HubError::TooManyRooms),
        "clients hold at most max_client_rooms"
    );
    assert_eq!(
        hub.client_room("nope", false, |_| ()),
        Err(HubError::NoSuchRoom)
    );
    hub.emit(t(0), "agents", "note", b"{}", None).unwrap();

    // scratch:2 is quiet from the sweep at 1 s on; freed a full room_idle later, not before.
    for (at, freed) in [(0, 0), (1, 0), (60, 0), (61, 1)] {
        assert_eq!(hub.sweep(t(at)), freed, "sweep at {at} s");
    }
    assert!(hub.room("scratch:2").is_none());
    assert!(hub.room("scratch:1").is_some(), "a watched room was freed");

    // Activity restarts the clock: an event at 100 s keeps scratch:1 past 121 s.
    watched.unwatch(slot);
    assert_eq!(hub.sweep(t(62)), 0);
    emit("scratch:1", t(100));
    for (at, freed) in [(101, 0), (102, 0), (161, 0), (162, 1)] {
        assert_eq!(hub.sweep(t(at)), freed, "sweep at {at} s");
    }
    let rooms: Vec<String> = hub.rooms().iter().map(|r| r.name().to_string()).collect();
    assert_eq!(
        rooms,
        ["agents"],
        "the application's room stays, idle or not"
    );

    let again = emit("scratch:2", t(200));
    assert_eq!(again.offset, 1);
    assert_ne!(again.epoch, 9, "a room created again reused its old epoch");
    assert_eq!(hub.room("agents").unwrap().head().epoch, 9);
}
