//! The chaos suite's oracle and its seed.
//!
//! Every client's events are recorded per room, in the order the application received them
//! ([`Logs`]); [`check_room`] then walks them: within an epoch each event comes exactly at the
//! offset after the last one (in order, at most once, nothing missing), a `range` gap names
//! exactly the offsets after the last one, a `reset` moves to a new epoch, an event of an epoch
//! nobody announced is an error, and the walk must end at the room's head.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use eventwire_core::client::OwnedEvent;
use eventwire_core::frame::{Missed, Position};

/// The run's seed: `CHAOS_SEED` if set (to replay a failure), else drawn from the clock.
pub fn seed() -> u64 {
    match std::env::var("CHAOS_SEED") {
        Ok(s) => s.trim().parse().expect("CHAOS_SEED is a u64"),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            eventwire_core::backoff::Rng::new(nanos).next_u64() >> 1
        }
    }
}

/// Prints the seed when the test it guards fails (panics), so that the run replays with
/// `CHAOS_SEED`.
pub struct SeedGuard {
    pub test: &'static str,
    pub seed: u64,
}

impl SeedGuard {
    pub fn new(test: &'static str) -> SeedGuard {
        let seed = seed();
        eprintln!("chaos {test}: seed {seed}");
        SeedGuard { test, seed }
    }
}

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "chaos {} FAILED with seed {}: replay with CHAOS_SEED={} cargo test -p \
                 eventwire-tokio --test chaos -- --exact {} --nocapture",
                self.test, self.seed, self.seed, self.test
            );
        }
    }
}

/// What a client received of one room, in order (of a payload, its first [`KEPT`] bytes).
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Subscribed(Position),
    Event(Position, Vec<u8>),
    Gap(Missed),
}

/// A client's receipts per room.
pub type Logs = Arc<Mutex<BTreeMap<String, Vec<Item>>>>;

/// Records one event of a client into `logs`.
pub fn record<P: AsRef<[u8]>>(logs: &Logs, event: &OwnedEvent<P>) {
    let mut logs = logs.lock().unwrap();
    match event {
        OwnedEvent::Subscribed { room, position } => logs
            .entry(room.clone())
            .or_default()
            .push(Item::Subscribed(*position)),
        OwnedEvent::Event {
            room,
            position,
            payload,
            ..
        } => logs
            .entry(room.clone())
            .or_default()
            .push(Item::Event(*position, kept(payload.as_ref()))),
        OwnedEvent::Gap { room, missed } => logs
            .entry(room.clone())
            .or_default()
            .push(Item::Gap(*missed)),
        _ => {}
    }
}

/// The bytes of a payload the oracle keeps: the first 64 (the suite's payloads say what they
/// are at their start), so that long runs and many clients do not fill memory with copies.
pub const KEPT: usize = 64;

fn kept(payload: &[u8]) -> Vec<u8> {
    payload[..payload.len().min(KEPT)].to_vec()
}

/// The last position a room's receipts reach (the last event, or the end of the last gap).
pub fn reached(items: &[Item]) -> Option<Position> {
    let mut at = None;
    for item in items {
        match item {
            Item::Subscribed(p) if at.is_none() => at = Some(*p),
            Item::Subscribed(_) => {}
            Item::Event(p, _) => at = Some(*p),
            Item::Gap(Missed::Range { epoch, last, .. }) => at = Some(Position::new(*epoch, *last)),
            Item::Gap(Missed::Reset { position }) => at = Some(*position),
        }
    }
    at
}

/// What the walk of one room counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Verdict {
    pub events: u64,
    pub gaps: u64,
    /// Events named by range gaps.
    pub missed: u64,
    pub resets: u64,
}

impl std::ops::AddAssign for Verdict {
    fn add_assign(&mut self, other: Verdict) {
        self.events += other.events;
        self.gaps += other.gaps;
        self.missed += other.missed;
        self.resets += other.resets;
    }
}

/// Checks one room's receipts: from the first `subscribed` position, every event in order at
/// the next offset, once; every gap announcing exactly what follows; the end at `head`.
/// `payload_ok` checks an event's payload against its position.
pub fn check_room(
    who: &str,
    room: &str,
    items: &[Item],
    head: Position,
    payload_ok: impl Fn(Position, &[u8]) -> bool,
) -> Result<Verdict, String> {
    let mut verdict = Verdict::default();
    let mut at: Option<Position> = None;
    let fail = |i: usize, what: String| {
        let from = i.saturating_sub(3);
        let to = (i + 3).min(items.len());
        Err(format!(
            "{who} {room}: item {i}: {what}; around it: {:?}",
            &items[from..to]
        ))
    };
    for (i, item) in items.iter().enumerate() {
        match (item, at) {
            (Item::Subscribed(p), None) => at = Some(*p),
            (Item::Subscribed(_), Some(_)) => {}
            (_, None) => return fail(i, "before the subscription was answered".into()),
            (Item::Event(p, payload), Some(last)) => {
                if p.epoch != last.epoch {
                    return fail(i, format!("epoch {} without a reset (at {last})", p.epoch));
                }
                if p.offset != last.offset + 1 {
                    return fail(i, format!("event {p} after {last}"));
                }
                if !payload_ok(*p, payload) {
                    return fail(i, format!("wrong payload at {p}"));
                }
                verdict.events += 1;
                at = Some(*p);
            }
            (Item::Gap(Missed::Range { epoch, first, last }), Some(was)) => {
                if *epoch != was.epoch || *first != was.offset + 1 || last < first {
                    return fail(i, format!("gap {first}..={last} of {epoch} after {was}"));
                }
                verdict.gaps += 1;
                verdict.missed += last - first + 1;
                at = Some(Position::new(*epoch, *last));
            }
            (Item::Gap(Missed::Reset { position }), Some(was)) => {
                if position.epoch == was.epoch {
                    return fail(i, format!("reset to {position} within epoch of {was}"));
                }
                verdict.resets += 1;
                at = Some(*position);
            }
        }
    }
    if at != Some(head) {
        return Err(format!(
            "{who} {room}: ends at {at:?}, the room's head is {head} (last items: {:?})",
            &items[items.len().saturating_sub(3)..]
        ));
    }
    Ok(verdict)
}

/// The payloads of the suite's emitted events: `{"n":<offset>,"pad":"..."}`.
pub fn payload(n: u64, pad: usize) -> Vec<u8> {
    format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(pad)).into_bytes()
}

/// Whether `bytes` is the payload of the event at `position` (its `n` is the offset).
pub fn numbered(position: Position, bytes: &[u8]) -> bool {
    let prefix = format!("{{\"n\":{},", position.offset);
    bytes.starts_with(prefix.as_bytes())
}

/// The process's resident-set high-water mark in KiB (Linux `VmHWM`), if known.
pub fn rss_high_water_kib() -> Option<u64> {
    status_field("VmHWM:")
}

/// The process's resident set now, in KiB (Linux `VmRSS`), if known.
pub fn rss_kib() -> Option<u64> {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
