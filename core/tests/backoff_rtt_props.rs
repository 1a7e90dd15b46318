//! Property tests of the reconnect backoff and the link-quality level: delays never exceed the
//! cap, every run replays from its seed, growth matches an independent reference, and the quality
//! level never flaps while srtt stays inside a hysteresis band.

mod common;

use common::cases;
use core::time::Duration;
use eventwire_core::backoff::Rng;
use eventwire_core::backoff::{Backoff, BackoffPolicy, Jitter};
use eventwire_core::rtt::{LinkQuality, Quality, QualityConfig, RttEstimator};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(2_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)]
}

/// Durations from zero to beyond what a `u64` of microseconds holds.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        4 => (0u64..=120_000_000).prop_map(Duration::from_micros),
        1 => any::<u64>().prop_map(Duration::from_micros),
        1 => Just(Duration::MAX),
        1 => Just(Duration::ZERO),
    ]
}

fn policy() -> impl Strategy<Value = BackoffPolicy> {
    (
        duration(),
        prop_oneof![0u32..=10, any::<u32>()],
        duration(),
        proptest::option::of(0u32..40),
        jitter(),
        duration(),
    )
        .prop_map(
            |(initial, factor, cap, max_attempts, jitter, stable_after)| {
                BackoffPolicy::new()
                    .initial(initial)
                    .factor(factor)
                    .cap(cap)
                    .max_attempts(max_attempts)
                    .jitter(jitter)
                    .stable_after(stable_after)
            },
        )
}

#[derive(Debug, Clone)]
enum BackoffOp {
    Fail(Option<Duration>),
    Ended(Duration),
    Reset,
}

fn backoff_op() -> impl Strategy<Value = BackoffOp> {
    prop_oneof![
        6 => proptest::option::weighted(0.2, duration()).prop_map(BackoffOp::Fail),
        2 => duration().prop_map(BackoffOp::Ended),
        1 => Just(BackoffOp::Reset),
    ]
}

fn run(backoff: &mut Backoff, rng: &mut Rng, ops: &[BackoffOp]) -> Vec<Option<Duration>> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            BackoffOp::Fail(hint) => out.push(backoff.next_delay(rng, *hint)),
            BackoffOp::Ended(open_for) => backoff.connection_ended(*open_for),
            BackoffOp::Reset => backoff.reset(),
        }
    }
    out
}

/// `min(cap, initial * factor^n)` in microseconds, by a plain loop in `u128`: an implementation
/// independent of the one under test.
fn reference_base(policy: &BackoffPolicy, n: u32) -> u128 {
    let limit = u128::from(u64::MAX);
    let cap = policy.cap.as_micros().min(limit);
    let mut base = policy.initial.as_micros().min(limit);
    if policy.factor > 1 {
        for _ in 0..n {
            if base >= cap {
                break;
            }
            base *= u128::from(policy.factor);
        }
    }
    base.min(cap)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn delays_never_exceed_cap_without_a_hint(
        policy in policy(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(backoff_op(), 0..80),
    ) {
        let mut backoff = Backoff::new(policy);
        let mut rng = Rng::new(seed);
        for op in &ops {
            match op {
                BackoffOp::Fail(hint) => {
                    let failures = backoff.attempts();
                    let delay = backoff.next_delay(&mut rng, *hint);
                    prop_assert_eq!(backoff.attempts(), failures.saturating_add(1));
                    let Some(delay) = delay else { continue };
                    match hint {
                        None => prop_assert!(delay <= policy.cap, "{:?} > cap", delay),
                        Some(hint) => {
                            prop_assert!(delay >= *hint);
                            prop_assert!(delay <= policy.cap.max(*hint));
                        }
                    }
                }
                BackoffOp::Ended(open_for) => backoff.connection_ended(*open_for),
                BackoffOp::Reset => backoff.reset(),
            }
        }
    }

    #[test]
    fn same_seed_same_sequence(
        policy in policy(),
        seed in any::<u64>(),
        ops in proptest::collection::vec(backoff_op(), 0..80),
    ) {
        let a = run(&mut Backoff::new(policy), &mut Rng::new(seed), &ops);
        let b = run(&mut Backoff::new(policy), &mut Rng::new(seed), &ops);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn growth_without_jitter_matches_reference(policy in policy(), seed in any::<u64>()) {
        let policy = policy.jitter(Jitter::None).max_attempts(None);
        let mut backoff = Backoff::new(policy);
        let mut rng = Rng::new(seed);
        for n in 0..70 {
            let delay = backoff.next_delay(&mut rng, None).map(|d| d.as_micros());
            prop_assert_eq!(delay, Some(reference_base(&policy, n)), "failure {}", n);
        }
    }

    #[test]
    fn jitter_stays_within_its_range(policy in policy(), seed in any::<u64>()) {
        let policy = policy.max_attempts(None);
        let mut backoff = Backoff::new(policy);
        let mut rng = Rng::new(seed);
        for n in 0..70 {
            let base = reference_base(&policy, n);
            let delay = backoff.next_delay(&mut rng, None).map_or(u128::MAX, |d| d.as_micros());
            let low = match policy.jitter {
                Jitter::None => base,
                Jitter::Full => 0,
                Jitter::Equal => base.div_ceil(2),
            };
            prop_assert!((low..=base).contains(&delay), "{} not in {}..={}", delay, low, base);
        }
    }

    #[test]
    fn gives_up_on_the_nth_failure_in_a_row(policy in policy(), n in 0u32..60, seed in any::<u64>()) {
        let mut backoff = Backoff::new(policy.max_attempts(Some(n)));
        let mut rng = Rng::new(seed);
        for i in 1..=n + 5 {
            let delay = backoff.next_delay(&mut rng, None);
            prop_assert_eq!(delay.is_some(), i < n, "failure {} of limit {}", i, n);
        }
    }

    #[test]
    fn connection_ended_resets_exactly_when_stable(
        policy in policy(),
        failures in 0u32..20,
        open_for in duration(),
    ) {
        let mut backoff = Backoff::new(policy.max_attempts(None));
        let mut rng = Rng::new(0);
        for _ in 0..failures {
            let _ = backoff.next_delay(&mut rng, None);
        }
        backoff.connection_ended(open_for);
        let expected = if open_for >= policy.stable_after { 0 } else { failures };
        prop_assert_eq!(backoff.attempts(), expected);
    }

    #[test]
    fn srtt_stays_between_the_extreme_samples(
        samples in proptest::collection::vec(0u64..=u64::MAX, 1..60),
    ) {
        let mut rtt = RttEstimator::new();
        for &s in &samples {
            rtt.sample(Duration::from_micros(s));
        }
        let srtt = rtt.srtt().map(|d| d.as_micros()).unwrap_or_default();
        let min = samples.iter().min().copied().map(u128::from).unwrap_or_default();
        let max = samples.iter().max().copied().map(u128::from).unwrap_or_default();
        prop_assert!((min..=max).contains(&srtt));
        prop_assert_eq!(rtt.samples(), samples.len() as u64);
        prop_assert_eq!(rtt.latest(), samples.last().map(|&s| Duration::from_micros(s)));
    }
}

// --- Link quality -----------------------------------------------------------------------------

fn quality_config() -> impl Strategy<Value = QualityConfig> {
    (1u64..2_000, 1u64..5_000, 0u8..=120, 0u32..5).prop_map(|(degraded, extra, p, missed)| {
        QualityConfig::new()
            .degraded_rtt(Duration::from_millis(degraded))
            .poor_rtt(Duration::from_millis(degraded + extra))
            .recover_percent(p)
            .poor_after_missed(missed)
    })
}

#[derive(Debug, Clone)]
enum LinkOp {
    Pong(Duration),
    Missed,
}

fn link_op() -> impl Strategy<Value = LinkOp> {
    prop_oneof![
        5 => (0u64..8_000_000).prop_map(|us| LinkOp::Pong(Duration::from_micros(us))),
        1 => Just(LinkOp::Missed),
    ]
}

fn micros(d: Duration) -> u128 {
    d.as_micros()
}

/// The hysteresis band of a threshold, `[threshold * percent / 100, threshold]`, in microseconds.
fn band(config: &QualityConfig, threshold: Duration) -> (u128, u128) {
    let t = micros(threshold);
    (t * u128::from(config.recover_percent.min(100)) / 100, t)
}

/// Whether `level` is on the bad side of the threshold separating `better_or_equal` from worse.
fn worse_than(level: Quality, better_or_equal: Quality) -> bool {
    level > better_or_equal
}

proptest! {
    #![proptest_config(config())]

    /// Any sequence of pongs and misses: a pong that leaves srtt inside a threshold's band never
    /// moves the level across that threshold, worsening past a threshold is immediate, and the
    /// return value reports exactly the changes.
    #[test]
    fn level_never_crosses_a_threshold_from_inside_its_band(
        config in quality_config(),
        ops in proptest::collection::vec(link_op(), 0..200),
    ) {
        let mut link = LinkQuality::new(config);
        let thresholds = [
            (config.degraded_rtt, Quality::Good),
            (config.poor_rtt, Quality::Degraded),
        ];
        for op in &ops {
            let before = link.level();
            let changed = match op {
                LinkOp::Pong(rtt) => link.on_pong(*rtt),
                LinkOp::Missed => link.on_missed_pong(),
            };
            let after = link.level();
            prop_assert_eq!(changed, (after != before).then_some(after));
            match op {
                LinkOp::Missed => {
                    prop_assert!(after >= before.max(Quality::Degraded));
                    if link.missed() >= config.poor_after_missed {
                        prop_assert_eq!(after, Quality::Poor);
                    }
                }
                LinkOp::Pong(_) => {
                    prop_assert_eq!(link.missed(), 0);
                    let srtt = link.rtt().srtt().map(micros).unwrap_or_default();
                    for (threshold, below) in thresholds {
                        let (low, high) = band(&config, threshold);
                        if srtt > high {
                            prop_assert!(worse_than(after, below), "srtt {} above {:?}", srtt, threshold);
                        }
                        if (low..=high).contains(&srtt) {
                            prop_assert_eq!(
                                worse_than(before, below),
                                worse_than(after, below),
                                "srtt {} in band of {:?}", srtt, threshold
                            );
                        }
                    }
                }
            }
        }
    }

    /// Starting on either side of a threshold, samples that keep srtt inside its band never change
    /// the level at all.
    #[test]
    fn level_holds_while_srtt_stays_in_the_band(
        threshold_ms in 1u64..5_000,
        percent in 0u8..=100,
        start_degraded in any::<bool>(),
        picks in proptest::collection::vec(any::<u64>(), 1..200),
    ) {
        // Poor far away, so only the Good/Degraded boundary is in play.
        let config = QualityConfig::new()
            .degraded_rtt(Duration::from_millis(threshold_ms))
            .poor_rtt(Duration::from_secs(1_000_000))
            .recover_percent(percent)
            .poor_after_missed(u32::MAX);
        let mut link = LinkQuality::new(config);
        if start_degraded {
            prop_assert_eq!(link.on_missed_pong(), Some(Quality::Degraded));
        }
        let start = link.level();
        let (low, high) = band(&config, config.degraded_rtt);
        for pick in picks {
            // Samples inside the band keep srtt inside it: srtt is a weighted mean of them.
            let rtt = low + u128::from(pick) % (high - low + 1);
            let rtt = Duration::from_micros(u64::try_from(rtt).unwrap_or(u64::MAX));
            prop_assert_eq!(link.on_pong(rtt), None, "rtt {:?}", rtt);
            let srtt = link.rtt().srtt().map(micros).unwrap_or_default();
            prop_assert!((low..=high).contains(&srtt));
        }
        prop_assert_eq!(link.level(), start);
    }
}
