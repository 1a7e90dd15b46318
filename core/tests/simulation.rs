//! The delivery guarantee under faults, checked by deterministic simulation (see `sim/mod.rs`).
//!
//! `EVENTWIRE_SIM_SEEDS=N` runs N seeds (default 2,000: the CI run); `EVENTWIRE_SIM_SEED=S` with
//! the `replay` test replays one failing seed exactly.

mod sim;

use sim::{run_seed, Params};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn guarantee_holds_across_seeds() {
    let seeds = env("EVENTWIRE_SIM_SEEDS", 2_000);
    let first = env("EVENTWIRE_SIM_FIRST_SEED", 0);
    let mut total = sim::Stats::default();
    for seed in first..first + seeds {
        match run_seed(seed, Params::default()) {
            Ok(s) => {
                total.events += s.events;
                total.gaps += s.gaps;
                total.resets += s.resets;
                total.publishes += s.publishes;
                total.rejected_at_call += s.rejected_at_call;
            }
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("{seeds} seeds: {total:?}");
    // The faults must actually have exercised gaps, resets and publishes.
    assert!(total.events > seeds * 50, "{total:?}");
    assert!(
        total.gaps > 0 && total.resets > 0 && total.publishes > 0,
        "{total:?}"
    );
}

#[test]
fn replay() {
    let seed = env("EVENTWIRE_SIM_SEED", 7);
    let a = run_seed(seed, Params::default()).map(|s| format!("{s:?}"));
    let b = run_seed(seed, Params::default()).map(|s| format!("{s:?}"));
    assert_eq!(a, b, "a seed must replay exactly");
    a.unwrap();
}

#[test]
fn oracle_catches_silent_loss() {
    // A network that silently drops batches stands for a server that skips a replay or loses a
    // batch: the oracle must see it.
    let params = Params {
        drop_batches: Some(20),
        ..Params::default()
    };
    let caught = (0..50u64)
        .filter(|seed| run_seed(*seed, params).is_err())
        .count();
    assert!(
        caught >= 25,
        "the oracle caught silent loss in only {caught} of 50 runs"
    );
}
