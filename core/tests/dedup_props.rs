//! Property tests of `Dedup` with simulated well-behaved clients over a lossy link.

use std::collections::{BTreeSet, HashMap};

use eventwire_core::dedup::{Dedup, DedupConfig, Verdict};
use eventwire_core::frame::Position;
use eventwire_core::time::Instant;
use proptest::prelude::*;

/// A well-behaved client: it sends id `y` only while `y < lowest unanswered id + window`, where
/// answered means acknowledged or refused for good.
#[derive(Debug)]
struct Client {
    next: u64,
    /// Sent and not answered (lost, refused for now, or its answer lost).
    unanswered: BTreeSet<u64>,
}

impl Client {
    fn may_send(&self, window: u64) -> bool {
        let lowest = self.unanswered.first().copied().unwrap_or(self.next);
        self.next < lowest + window
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Client `c` sends its next id, if its window allows.
    Send { c: usize, fate: Fate },
    /// Client `c` resends its `k`-th unanswered id (a retry, after a reconnect or a delay).
    Retry { c: usize, k: usize, fate: Fate },
}

/// What the application does with a new publish.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Applied,
    /// Refused for good: the client drops it.
    Refused,
    /// Refused for now (a rate limit): the client sends it again later.
    Later,
}

/// What happens to one transmission.
#[derive(Debug, Clone, Copy)]
struct Fate {
    /// The publish reaches the server.
    arrives: bool,
    outcome: Outcome,
    /// The answer reaches the client.
    answered: bool,
}

fn fate() -> impl Strategy<Value = Fate> {
    let outcome = prop_oneof![
        6 => Just(Outcome::Applied),
        1 => Just(Outcome::Refused),
        2 => Just(Outcome::Later),
    ];
    (
        prop::bool::weighted(0.8),
        outcome,
        prop::bool::weighted(0.7),
    )
        .prop_map(|(arrives, outcome, answered)| Fate {
            arrives,
            outcome,
            answered,
        })
}

fn op(clients: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..clients, fate()).prop_map(|(c, fate)| Op::Send { c, fate }),
        2 => (0..clients, 0usize..64, fate()).prop_map(|(c, k, fate)| Op::Retry { c, k, fate }),
    ]
}

/// What the server side must have learnt of one client.
#[derive(Debug, Default)]
struct Settled {
    applied: HashMap<u64, Position>,
    refused: BTreeSet<u64>,
    first: Option<u64>,
}

impl Settled {
    fn contains(&self, id: u64) -> bool {
        self.applied.contains_key(&id) || self.refused.contains(&id)
    }

    /// Highest id applied or refused.
    fn highest(&self) -> u64 {
        let applied = self.applied.keys().copied().max().unwrap_or(0);
        applied.max(self.refused.last().copied().unwrap_or(0))
    }

    /// Every id up to this one was applied or refused (the client starts at 1, with no past).
    fn watermark(&self) -> u64 {
        (1..).find(|&id| !self.contains(id)).unwrap() - 1
    }
}

fn run(client_count: usize, window: u32, ops: Vec<Op>) {
    let mut dedup = Dedup::new(DedupConfig::new().clients(client_count).window(window));
    let w = u64::from(window);
    let mut clients: Vec<Client> = (0..client_count)
        .map(|_| Client {
            next: 1,
            unanswered: BTreeSet::new(),
        })
        .collect();
    let mut settled: Vec<Settled> = (0..client_count).map(|_| Settled::default()).collect();
    let mut offset = 0u64;
    let id_of = |c: usize| 1000 + c as u64 * 7;

    for (step, op) in ops.into_iter().enumerate() {
        let now = Instant::from_millis(step as u64);
        let (c, id, fate) = match op {
            Op::Send { c, fate } => {
                let client = &mut clients[c];
                if !client.may_send(w) {
                    continue;
                }
                let id = client.next;
                client.next += 1;
                client.unanswered.insert(id);
                (c, id, fate)
            }
            Op::Retry { c, k, fate } => {
                let client = &clients[c];
                if client.unanswered.is_empty() {
                    continue;
                }
                let id = *client
                    .unanswered
                    .iter()
                    .nth(k % client.unanswered.len())
                    .unwrap();
                (c, id, fate)
            }
        };
        if !fate.arrives {
            continue;
        }
        let verdict = dedup.check(id_of(c), id);
        let s = &mut settled[c];
        // Each (client, id) is new exactly until it is recorded, a duplicate with its position
        // afterwards; nothing a well-behaved client sends is out of its window.
        if let Some(&p) = s.applied.get(&id) {
            assert_eq!(verdict, Verdict::Duplicate(p), "client {c} id {id}");
        } else if s.refused.contains(&id) {
            assert_eq!(verdict, Verdict::Stale, "client {c} id {id}");
        } else {
            assert_eq!(verdict, Verdict::New, "client {c} id {id}");
        }
        let answered = match (verdict, fate.outcome) {
            (Verdict::New, Outcome::Applied) => {
                offset += 1;
                let position = Position::new(3, offset);
                dedup.record(now, id_of(c), id, position);
                s.applied.insert(id, position);
                s.first.get_or_insert(id);
                true
            }
            (Verdict::New, Outcome::Refused) => {
                dedup.record_refused(now, id_of(c), id);
                s.refused.insert(id);
                s.first.get_or_insert(id);
                true
            }
            (Verdict::New, Outcome::Later) => false,
            _ => true,
        };
        if answered && fate.answered {
            clients[c].unanswered.remove(&id);
        }

        // The whole state of every client, as the documented rules say.
        for (c, s) in settled.iter().enumerate() {
            let Some(first) = s.first else {
                for id in [0, 1, 2, 1000] {
                    let expected = if id == 0 {
                        Verdict::Stale
                    } else {
                        Verdict::New
                    };
                    assert_eq!(dedup.check(id_of(c), id), expected);
                }
                continue;
            };
            let (wm, hi) = (s.watermark(), s.highest());
            let span = 2 * w;
            for (&id, &p) in &s.applied {
                // A position is kept until a higher id takes its slot (`id % 2W`); the W highest
                // ids, where a well-behaved client's retries are, always keep theirs.
                let overwritten = (1..)
                    .map(|k| id + k * span)
                    .take_while(|&other| other <= hi)
                    .any(|other| s.contains(other));
                let expected = if overwritten {
                    Verdict::Stale
                } else {
                    Verdict::Duplicate(p)
                };
                assert_eq!(dedup.check(id_of(c), id), expected, "client {c} id {id}");
                if id + w > hi {
                    assert_eq!(expected, Verdict::Duplicate(p));
                }
            }
            for &id in &s.refused {
                assert_eq!(dedup.check(id_of(c), id), Verdict::Stale);
            }
            // Every unanswered id is accepted or answered again, never refused.
            for &id in &clients[c].unanswered {
                assert!(matches!(
                    dedup.check(id_of(c), id),
                    Verdict::New | Verdict::Duplicate(_) | Verdict::Stale
                ));
                assert_eq!(
                    dedup.check(id_of(c), id) == Verdict::New,
                    !s.contains(id),
                    "client {c} id {id}"
                );
            }
            // The window: beyond watermark + W is refused, except while the client is fresh.
            let limit = wm.max(hi.min(first + w - 1)) + w;
            for id in wm + 1..=limit + 2 * w {
                let v = dedup.check(id_of(c), id);
                if id > limit {
                    assert_eq!(v, Verdict::OutOfWindow, "client {c} id {id}");
                } else if !s.contains(id) {
                    assert_eq!(v, Verdict::New, "client {c} id {id}");
                }
            }
            if wm >= first + w - 1 {
                assert_eq!(limit, wm + w);
            }
        }
        assert_eq!(
            dedup.len(),
            settled.iter().filter(|s| s.first.is_some()).count()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Within the window, whatever the interleaving of sends, losses, refusals and retries of
    /// several clients: each (client, id) is `New` until recorded, then `Duplicate` with its
    /// position; nothing a well-behaved client sends is refused; ids beyond the window are.
    #[test]
    fn each_publish_is_new_exactly_once(
        client_count in 1usize..4,
        window in 1u32..9,
        ops in proptest::collection::vec(op(4), 1..300),
    ) {
        let ops = ops
            .into_iter()
            .map(|op| match op {
                Op::Send { c, fate } => Op::Send { c: c % client_count, fate },
                Op::Retry { c, k, fate } => Op::Retry { c: c % client_count, k, fate },
            })
            .collect();
        run(client_count, window, ops);
    }

    /// With more clients than room, the least recently recorded client is the one forgotten;
    /// tracked clients keep their state, forgotten ones are new again.
    #[test]
    fn the_least_recently_used_client_is_evicted(
        capacity in 1usize..5,
        window in 1u32..5,
        records in proptest::collection::vec(0u64..8, 1..200),
    ) {
        let mut dedup = Dedup::new(DedupConfig::new().clients(capacity).window(window));
        let w = u64::from(window);
        // Most recent last.
        let mut lru: Vec<u64> = Vec::new();
        let mut next: HashMap<u64, u64> = HashMap::new();
        // For tracked clients: the ids recorded since their admission, with positions.
        let mut known: HashMap<u64, Vec<(u64, Position)>> = HashMap::new();
        for (step, client) in records.into_iter().enumerate() {
            let id = *next.entry(client).and_modify(|n| *n += 1).or_insert(1);
            let position = Position::new(1, step as u64 + 1);
            if !known.contains_key(&client) {
                prop_assert_eq!(dedup.check(client, id), Verdict::New);
            }
            dedup.record(Instant::from_millis(step as u64), client, id, position);
            lru.retain(|&c| c != client);
            lru.push(client);
            if lru.len() > capacity {
                let evicted = lru.remove(0);
                known.remove(&evicted);
            }
            known.entry(client).or_default().push((id, position));

            prop_assert_eq!(dedup.len(), lru.len());
            for c in 0..8u64 {
                match known.get(&c) {
                    Some(ids) => {
                        let hi = ids.last().unwrap().0;
                        for &(id, p) in ids.iter().rev().take(2 * window as usize) {
                            prop_assert_eq!(dedup.check(c, id), Verdict::Duplicate(p));
                        }
                        prop_assert_eq!(dedup.check(c, hi + 1), Verdict::New);
                        prop_assert_eq!(dedup.check(c, hi + w), Verdict::New);
                        prop_assert_eq!(dedup.check(c, hi + w + 1), Verdict::OutOfWindow);
                    }
                    None => {
                        let id = next.get(&c).copied().unwrap_or(0) + 1;
                        prop_assert_eq!(dedup.check(c, id), Verdict::New);
                    }
                }
            }
        }
    }
}
