//! Reconnect delays: exponential backoff with jitter, as a pure state machine.
//!
//! [`Backoff`] only says *how long* to wait; sleeping, reading a clock and reconnecting are the
//! adapter's job. Randomness comes from the caller's seeded [`Rng`], so a run replays exactly.
//!
//! # Driving
//! - A connection attempt failed, or an open connection was lost: call
//!   [`Backoff::next_delay`] and wait that long before the next attempt (or give up on `None`).
//! - An open connection ended: call [`Backoff::connection_ended`] with how long it was open
//!   *before* asking for the next delay, so a connection that lived long enough starts the next
//!   round from [`BackoffPolicy::initial`] again.
//! - The application wants a fresh start (the user pressed "reconnect"): [`Backoff::reset`].
//!
//! # Invariants
//! - The `n`th failure in a row (counting from 0) has the base delay
//!   `min(cap, initial * factor^n)`, computed in whole microseconds with saturating arithmetic, so
//!   no attempt count or policy overflows or panics. A `factor` of 0 or 1 keeps the base constant.
//! - Jitter is applied to the base *after* the cap, so without a server hint no delay exceeds
//!   `cap`. (Clamping before jitter, as some libraries do, lets a delay reach twice the cap.)
//! - With a server hint `retry_after`, the delay is `max(jittered, retry_after)`, hence always
//!   `<= max(cap, retry_after)`. The hint may exceed `cap` on purpose: the server knows when it
//!   will have room again, and coming back earlier only earns another refusal.
//! - [`Backoff::attempts`] counts failures since the last reset. After `max_attempts` failures in
//!   a row `next_delay` returns `None`, and keeps doing so until a reset.
//! - The count resets only through [`Backoff::reset`] or a connection that stayed open at least
//!   `stable_after`: a flapping link that opens and drops at once keeps backing off rather than
//!   hammering the server at the initial delay.
//! - Given the same policy, the same [`Rng`] seed and the same calls, the delays are identical.
//!   [`Jitter::None`] draws nothing from the generator; the other modes draw one `u64` per delay.

use core::fmt;
use core::time::Duration;

pub use crate::rng::Rng;

/// How the base delay is randomised, so that many clients dropped at once do not all come back
/// at the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// The delay is the base delay: predictable, and fine for a single client.
    None,
    /// Uniform in `[0, base]`: spreads a crowd of clients the most (the mean is `base / 2`).
    Full,
    /// `base / 2` plus uniform in `[0, base / 2]`: keeps at least half the backoff while still
    /// spreading clients.
    Equal,
}

impl fmt::Display for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Jitter::None => "none",
            Jitter::Full => "full",
            Jitter::Equal => "equal",
        })
    }
}

/// How delays grow, where they stop, and when the count starts over.
///
/// Build it from [`BackoffPolicy::new`] (the defaults) and the consuming setters:
/// ```
/// use core::time::Duration;
/// use eventwire_core::backoff::{BackoffPolicy, Jitter};
///
/// let policy = BackoffPolicy::new()
///     .initial(Duration::from_millis(100))
///     .cap(Duration::from_secs(10))
///     .max_attempts(Some(8))
///     .jitter(Jitter::Equal);
/// assert_eq!(policy.factor, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Base delay after the first failure. Default 250 ms.
    pub initial: Duration,
    /// Each further failure multiplies the base by this. 0 or 1 keep it constant. Default 2.
    pub factor: u32,
    /// No base delay (hence, without a server hint, no delay) exceeds this. Default 30 s.
    pub cap: Duration,
    /// Give up after this many failures in a row; `None` retries forever. `Some(0)` and
    /// `Some(1)` both give up on the first failure. Default `None`.
    pub max_attempts: Option<u32>,
    /// How the base delay is randomised. Default [`Jitter::Full`].
    pub jitter: Jitter,
    /// A connection open at least this long counts as a success and resets the attempt count.
    /// Default 10 s.
    pub stable_after: Duration,
}

impl BackoffPolicy {
    /// The defaults: 250 ms initial, factor 2, cap 30 s, no attempt limit, full jitter, stable
    /// after 10 s.
    pub const fn new() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(250),
            factor: 2,
            cap: Duration::from_secs(30),
            max_attempts: None,
            jitter: Jitter::Full,
            stable_after: Duration::from_secs(10),
        }
    }

    /// Sets [`initial`](Self::initial).
    pub const fn initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// Sets [`factor`](Self::factor).
    pub const fn factor(mut self, factor: u32) -> Self {
        self.factor = factor;
        self
    }

    /// Sets [`cap`](Self::cap).
    pub const fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    pub const fn max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets [`jitter`](Self::jitter).
    pub const fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`stable_after`](Self::stable_after).
    pub const fn stable_after(mut self, stable_after: Duration) -> Self {
        self.stable_after = stable_after;
        self
    }

    /// The delay before jitter after `failures` earlier failures in a row:
    /// `min(cap, initial * factor^failures)`, in whole microseconds, saturating.
    pub fn base_delay(&self, failures: u32) -> Duration {
        Duration::from_micros(self.base_micros(failures))
    }

    fn base_micros(&self, failures: u32) -> u64 {
        let initial = micros(self.initial);
        let cap = micros(self.cap);
        // Factor 0 would otherwise zero every delay after the first; the documented meaning of
        // 0 and 1 is "constant".
        let growth = if self.factor <= 1 {
            1
        } else {
            // Saturation is harmless: anything past u64::MAX microseconds is capped anyway.
            u64::from(self.factor).saturating_pow(failures)
        };
        initial.saturating_mul(growth).min(cap)
    }
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self::new()
    }
}

/// Whole microseconds in `d`, saturating at `u64::MAX` (about 584,000 years).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The reconnect backoff of one client: a [`BackoffPolicy`] and the failures counted so far.
///
/// ```
/// use core::time::Duration;
/// use eventwire_core::backoff::{Backoff, BackoffPolicy, Jitter};
/// use eventwire_core::backoff::Rng;
///
/// let mut backoff = Backoff::new(BackoffPolicy::new().jitter(Jitter::None).max_attempts(Some(3)));
/// let mut rng = Rng::new(7);
/// assert_eq!(backoff.next_delay(&mut rng, None), Some(Duration::from_millis(250)));
/// // A server that said "come back in 5 s" is obeyed.
/// let hint = Some(Duration::from_secs(5));
/// assert_eq!(backoff.next_delay(&mut rng, hint), Some(Duration::from_secs(5)));
/// // The third failure in a row: give up.
/// assert_eq!(backoff.next_delay(&mut rng, None), None);
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempts: u32,
}

impl Backoff {
    /// A backoff with no failures yet.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            attempts: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Failures since the last reset (saturates at `u32::MAX`).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether `max_attempts` failures in a row have happened, so [`next_delay`](Self::next_delay)
    /// returns `None` until a reset.
    pub fn gave_up(&self) -> bool {
        self.policy
            .max_attempts
            .is_some_and(|max| self.attempts >= max)
    }

    /// A connection attempt failed or an open connection was lost: the delay before the next
    /// attempt, or `None` once `max_attempts` failures happened in a row (the caller gives up).
    ///
    /// `retry_after` is the server's hint (from a `close` or `error` frame); the delay is at least
    /// that long, even beyond `cap`. Call [`connection_ended`](Self::connection_ended) first if a
    /// connection was open.
    pub fn next_delay(&mut self, rng: &mut Rng, retry_after: Option<Duration>) -> Option<Duration> {
        let failures = self.attempts;
        self.attempts = self.attempts.saturating_add(1);
        if self.gave_up() {
            return None;
        }
        let base = self.policy.base_micros(failures);
        let jittered = match self.policy.jitter {
            Jitter::None => base,
            Jitter::Full => rng.up_to(base),
            // Lower bound rounded up so the upper bound is exactly `base` even when it is odd.
            Jitter::Equal => (base - base / 2) + rng.up_to(base / 2),
        };
        let delay = Duration::from_micros(jittered);
        Some(match retry_after {
            Some(hint) => delay.max(hint),
            None => delay,
        })
    }

    /// An open connection ended after `open_for`: resets the attempt count only if
    /// `open_for >= stable_after` (a flapping link that opens and drops at once keeps backing
    /// off). Call it before [`next_delay`](Self::next_delay) for the same loss.
    pub fn connection_ended(&mut self, open_for: Duration) {
        if open_for >= self.policy.stable_after {
            self.attempts = 0;
        }
    }

    /// Forgets all failures: the next delay is the initial one again.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn delays(backoff: &mut Backoff, rng: &mut Rng, n: usize) -> std::vec::Vec<Option<Duration>> {
        (0..n).map(|_| backoff.next_delay(rng, None)).collect()
    }

    #[test]
    fn defaults_are_documented_values() {
        let p = BackoffPolicy::default();
        assert_eq!(p, BackoffPolicy::new());
        assert_eq!(p.initial, ms(250));
        assert_eq!(p.factor, 2);
        assert_eq!(p.cap, Duration::from_secs(30));
        assert_eq!(p.max_attempts, None);
        assert_eq!(p.jitter, Jitter::Full);
        assert_eq!(p.stable_after, Duration::from_secs(10));
    }

    #[test]
    fn builder_sets_every_field() {
        let p = BackoffPolicy::new()
            .initial(ms(1))
            .factor(5)
            .cap(ms(9))
            .max_attempts(Some(4))
            .jitter(Jitter::Equal)
            .stable_after(ms(3));
        assert_eq!(
            p,
            BackoffPolicy {
                initial: ms(1),
                factor: 5,
                cap: ms(9),
                max_attempts: Some(4),
                jitter: Jitter::Equal,
                stable_after: ms(3),
            }
        );
    }

    #[test]
    fn growth_without_jitter_is_exact_and_capped() {
        let policy = BackoffPolicy::new()
            .initial(ms(100))
            .factor(3)
            .cap(Duration::from_secs(5))
            .jitter(Jitter::None);
        let mut b = Backoff::new(policy);
        let got = delays(&mut b, &mut Rng::new(0), 7);
        let want = [100, 300, 900, 2700, 5000, 5000, 5000].map(|n| Some(ms(n)));
        assert_eq!(got, want);
        assert_eq!(b.attempts(), 7);
    }

    #[test]
    fn factor_zero_or_one_is_constant() {
        for factor in [0, 1] {
            let mut b = Backoff::new(BackoffPolicy::new().factor(factor).jitter(Jitter::None));
            let got = delays(&mut b, &mut Rng::new(0), 5);
            assert!(
                got.iter().all(|d| *d == Some(ms(250))),
                "factor {factor}: {got:?}"
            );
        }
    }

    #[test]
    fn extreme_policies_saturate_without_panicking() {
        let policy = BackoffPolicy::new()
            .initial(Duration::MAX)
            .factor(u32::MAX)
            .cap(Duration::MAX)
            .jitter(Jitter::None);
        let mut b = Backoff::new(policy);
        b.attempts = u32::MAX - 1;
        let d = b.next_delay(&mut Rng::new(0), None);
        assert_eq!(d, Some(Duration::from_micros(u64::MAX)));
        // The count saturates instead of wrapping back to the initial delay.
        assert_eq!(b.next_delay(&mut Rng::new(0), None), d);
        assert_eq!(b.attempts(), u32::MAX);
        assert_eq!(policy.base_delay(u32::MAX), Duration::from_micros(u64::MAX));
        assert_eq!(
            policy.initial(Duration::ZERO).base_delay(u32::MAX),
            Duration::ZERO
        );
    }

    #[test]
    fn max_attempts_gives_up_on_the_nth_failure() {
        let mut b = Backoff::new(BackoffPolicy::new().max_attempts(Some(3)));
        let mut rng = Rng::new(1);
        assert!(b.next_delay(&mut rng, None).is_some());
        assert!(b.next_delay(&mut rng, None).is_some());
        assert!(!b.gave_up());
        assert_eq!(b.next_delay(&mut rng, None), None);
        assert!(b.gave_up());
        // A hint does not revive a backoff that gave up.
        assert_eq!(b.next_delay(&mut rng, Some(ms(5))), None);
        b.reset();
        assert!(b.next_delay(&mut rng, None).is_some());

        let mut never = Backoff::new(BackoffPolicy::new().max_attempts(Some(0)));
        assert_eq!(never.next_delay(&mut rng, None), None);
    }

    #[test]
    fn connection_ended_resets_only_after_the_stable_period() {
        let policy = BackoffPolicy::new().jitter(Jitter::None);
        let mut b = Backoff::new(policy);
        let mut rng = Rng::new(2);
        delays(&mut b, &mut rng, 3);
        assert_eq!(b.attempts(), 3);

        // Flapping: opened, dropped before it was stable. Backoff keeps growing.
        b.connection_ended(policy.stable_after - Duration::from_micros(1));
        assert_eq!(b.attempts(), 3);
        assert_eq!(b.next_delay(&mut rng, None), Some(ms(2000)));

        b.connection_ended(policy.stable_after);
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay(&mut rng, None), Some(ms(250)));
    }

    #[test]
    fn retry_after_is_honoured_even_beyond_cap() {
        let policy = BackoffPolicy::new()
            .cap(Duration::from_secs(1))
            .jitter(Jitter::None);
        let mut b = Backoff::new(policy);
        let mut rng = Rng::new(3);
        let hint = Duration::from_secs(120);
        assert_eq!(b.next_delay(&mut rng, Some(hint)), Some(hint));
        // A hint shorter than the backoff does not shorten it.
        assert_eq!(b.next_delay(&mut rng, Some(ms(1))), Some(ms(500)));
        // The hint still counted as a failure.
        assert_eq!(b.attempts(), 2);
    }

    #[test]
    fn full_jitter_covers_the_range() {
        let base = Duration::from_secs(1);
        let policy = BackoffPolicy::new().initial(base).factor(1).cap(base);
        let mut b = Backoff::new(policy);
        let mut rng = Rng::new(4);
        let (mut sum, mut min, mut max) = (0u128, u128::MAX, 0u128);
        let draws = 10_000u128;
        for _ in 0..draws {
            let d = b.next_delay(&mut rng, None).map(|d| d.as_micros());
            let d = d.unwrap_or(u128::MAX);
            assert!(d <= base.as_micros());
            sum += d;
            min = min.min(d);
            max = max.max(d);
        }
        let mean = sum / draws;
        // The expected mean is 500_000 µs with a standard error near 2_900 µs; without jitter it
        // would be 1_000_000.
        assert!((450_000..=550_000).contains(&mean), "mean {mean}");
        assert!(min < 10_000, "min {min}");
        assert!(max > 990_000, "max {max}");
    }

    #[test]
    fn equal_jitter_keeps_half_the_base() {
        let base = 1_000_001u64;
        let policy = BackoffPolicy::new()
            .initial(Duration::from_micros(base))
            .factor(1)
            .cap(Duration::from_secs(60))
            .jitter(Jitter::Equal);
        let mut b = Backoff::new(policy);
        let mut rng = Rng::new(5);
        let (mut min, mut max) = (u64::MAX, 0);
        for _ in 0..10_000 {
            let d = b.next_delay(&mut rng, None).map_or(0, micros);
            assert!((base.div_ceil(2)..=base).contains(&d), "{d}");
            min = min.min(d);
            max = max.max(d);
        }
        assert!(min < 510_000 && max > 990_000, "{min}..{max}");
    }

    #[test]
    fn same_seed_same_delays() {
        let policy = BackoffPolicy::new().max_attempts(Some(20));
        let (mut a, mut b) = (Backoff::new(policy), Backoff::new(policy));
        let run_a = delays(&mut a, &mut Rng::new(99), 25);
        let run_b = delays(&mut b, &mut Rng::new(99), 25);
        assert_eq!(run_a, run_b);
        let other = delays(&mut Backoff::new(policy), &mut Rng::new(100), 25);
        assert_ne!(run_a, other);
    }

    #[test]
    fn jitter_display() {
        assert_eq!(std::format!("{}", Jitter::Equal), "equal");
    }
}
