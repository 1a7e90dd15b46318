//! The outbox never loses or duplicates a publish: every accepted publish is handed out until it
//! is acknowledged or rejected, each acknowledged exactly once, in id order after every requeue,
//! and never beyond the window of ids the server deduplicates.

use std::collections::BTreeSet;

use eventwire_core::outbox::Outbox;
use eventwire_core::time::Instant;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Push(u8),
    Send(u8),
    Ack(u8),
    Reject(u8),
    Defer(u8, u16),
    Requeue,
    Tick(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Push),
        4 => (1..6u8).prop_map(Op::Send),
        3 => any::<u8>().prop_map(Op::Ack),
        1 => any::<u8>().prop_map(Op::Reject),
        1 => (any::<u8>(), any::<u16>()).prop_map(|(i, t)| Op::Defer(i, t)),
        1 => Just(Op::Requeue),
        1 => any::<u16>().prop_map(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn never_loses_or_duplicates(ops in proptest::collection::vec(op(), 1..200)) {
        let mut ob = Outbox::<8, 96>::new();
        let mut now = Instant::ZERO;
        let mut accepted = BTreeSet::new();
        let mut finished = BTreeSet::new();
        let mut in_flight = BTreeSet::new();
        for op in ops {
            match op {
                Op::Push(len) => {
                    let payload = vec![len; (len % 40) as usize];
                    if let Ok(id) = ob.push("room", "kind", &payload) {
                        prop_assert!(accepted.insert(id), "id {id} handed out twice");
                        prop_assert!(accepted.iter().all(|a| *a <= id), "ids must grow");
                    }
                }
                Op::Send(window) => {
                    while let Some(p) = ob.next_to_send(now, window as usize) {
                        prop_assert!(accepted.contains(&p.id) && !finished.contains(&p.id));
                        // The server's deduplication window is a span of ids.
                        let lowest = accepted.difference(&finished).next().copied().unwrap_or(0);
                        prop_assert!(p.id < lowest + u64::from(window), "{} beyond the window from {lowest}", p.id);
                        prop_assert!(in_flight.insert(p.id), "{} sent twice without a requeue", p.id);
                        prop_assert_eq!(p.payload.0.len(), (p.payload.0.first().copied().unwrap_or(0) % 40) as usize);
                    }
                }
                Op::Ack(i) | Op::Reject(i) => {
                    let Some(&id) = in_flight.iter().nth(i as usize % in_flight.len().max(1)) else { continue };
                    let held = if matches!(op, Op::Ack(_)) { ob.ack(id) } else { ob.reject(id) };
                    prop_assert!(held);
                    in_flight.remove(&id);
                    prop_assert!(finished.insert(id));
                    prop_assert!(!ob.ack(id), "finished twice");
                }
                Op::Defer(i, ms) => {
                    let Some(&id) = in_flight.iter().nth(i as usize % in_flight.len().max(1)) else { continue };
                    prop_assert!(ob.defer(id, now + std::time::Duration::from_millis(ms.into())));
                    in_flight.remove(&id);
                }
                Op::Requeue => {
                    ob.requeue();
                    in_flight.clear();
                }
                Op::Tick(ms) => now = now + std::time::Duration::from_millis(ms.into()),
            }
            prop_assert_eq!(ob.len(), accepted.len() - finished.len());
            prop_assert!(ob.bytes() <= 96);
        }
        // Everything not finished still comes out, each once, in id order.
        ob.requeue();
        let far = now + std::time::Duration::from_secs(100_000);
        let rest: Vec<u64> = std::iter::from_fn(|| ob.next_to_send(far, usize::MAX).map(|p| p.id)).collect();
        let expected: Vec<u64> = accepted.difference(&finished).copied().collect();
        prop_assert_eq!(rest, expected);
    }
}
