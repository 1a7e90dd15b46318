//! Round-trip time smoothing (RFC 6298) and a link-quality level with hysteresis.
//!
//! The adapter (or the client state machine) measures each ping/pong round trip with its own
//! clock and hands the duration in; nothing here reads a clock.
//!
//! # [`RttEstimator`]
//! The smoothed RTT and its variation, by RFC 6298 sections 2.2 and 2.3 with
//! alpha = 1/8 and beta = 1/4, in integer microseconds:
//! - first sample `r`: `srtt = r`, `rttvar = r / 2`;
//! - each later sample: `rttvar = (3 * rttvar + |srtt - r|) / 4`, then `srtt = (7 * srtt + r) / 8`
//!   (rttvar uses the *old* srtt, as the RFC orders it). Divisions truncate; intermediate sums are
//!   computed in `u128`, so no sample overflows, and samples beyond `u64::MAX` microseconds
//!   saturate.
//!
//! Because each new srtt is a weighted mean of the old one and the sample, srtt always lies
//! between the smallest and the largest sample seen.
//!
//! # [`LinkQuality`]
//! A three-level summary ([`Quality`]) of the smoothed RTT and of missed pongs, for dashboards and
//! for adapting behaviour (batching, timeouts) to a slow link.
//!
//! Invariants:
//! - It starts [`Quality::Good`].
//! - Getting worse is immediate: after a pong, `srtt > degraded_rtt` makes the level at least
//!   `Degraded`, and `srtt > poor_rtt` makes it `Poor`.
//! - Getting better needs margin: to improve past a threshold `T`, srtt must drop strictly below
//!   `T * recover_percent / 100`. While srtt stays in the band `[T * recover_percent / 100, T]`,
//!   the level never crosses `T` in either direction.
//! - Missed pongs count in a row; one makes the level at least `Degraded`, `poor_after_missed` of
//!   them make it `Poor`. Only a pong clears the count, and then the level follows srtt under the
//!   same hysteresis (so recovering from a miss also needs srtt below the recover threshold).
//! - Missed pongs do not feed the estimator: a missing answer has no round-trip time.
//! - `on_pong` and `on_missed_pong` return `Some(level)` exactly when the level changed.
//!
//! Why hysteresis: srtt of a real link wanders by a few percent. With a single threshold, a link
//! whose srtt hovers at 300 ms would flip between `Good` and `Degraded` on every other pong, and
//! everything keyed to the level (a dashboard colour, a batching mode, a log line) would flap with
//! it. Requiring a margin to recover turns that noise into at most one change.

use core::fmt;
use core::time::Duration;

use serde::{Deserialize, Serialize};

/// Whole microseconds in `d`, saturating at `u64::MAX`.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Smoothed round-trip time and its variation, per RFC 6298, in integer microseconds.
///
/// ```
/// use core::time::Duration;
/// use eventwire_core::rtt::RttEstimator;
///
/// let mut rtt = RttEstimator::new();
/// assert_eq!(rtt.srtt(), None);
/// rtt.sample(Duration::from_millis(100));
/// rtt.sample(Duration::from_millis(200));
/// assert_eq!(rtt.srtt(), Some(Duration::from_micros(112_500)));
/// assert_eq!(rtt.rttvar(), Some(Duration::from_micros(62_500)));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RttEstimator {
    /// Smoothed RTT in microseconds; meaningless while `samples == 0`.
    srtt: u64,
    /// RTT variation in microseconds; meaningless while `samples == 0`.
    rttvar: u64,
    /// The last sample in microseconds.
    latest: u64,
    samples: u64,
}

impl RttEstimator {
    /// An estimator with no samples.
    pub const fn new() -> Self {
        RttEstimator {
            srtt: 0,
            rttvar: 0,
            latest: 0,
            samples: 0,
        }
    }

    /// Feeds one measured round trip (truncated to whole microseconds).
    pub fn sample(&mut self, rtt: Duration) {
        let r = micros(rtt);
        self.latest = r;
        if self.samples == 0 {
            self.srtt = r;
            self.rttvar = r / 2;
        } else {
            let deviation = self.srtt.abs_diff(r);
            // Weighted means of u64 values: the results fit u64, the sums may not.
            self.rttvar = narrow((3 * u128::from(self.rttvar) + u128::from(deviation)) / 4);
            self.srtt = narrow((7 * u128::from(self.srtt) + u128::from(r)) / 8);
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// The smoothed RTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.get(self.srtt)
    }

    /// The RTT variation, once there is a sample.
    pub fn rttvar(&self) -> Option<Duration> {
        self.get(self.rttvar)
    }

    /// The most recent sample.
    pub fn latest(&self) -> Option<Duration> {
        self.get(self.latest)
    }

    /// How many samples were fed (saturates at `u64::MAX`).
    pub fn samples(&self) -> u64 {
        self.samples
    }

    fn get(&self, micros: u64) -> Option<Duration> {
        (self.samples > 0).then(|| Duration::from_micros(micros))
    }
}

/// A weighted mean of `u64` values back into `u64` (it always fits; saturate rather than trust it).
fn narrow(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// How usable the link is, from best to worst (`Good < Degraded < Poor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Round trips are short and pongs arrive.
    Good,
    /// Round trips are slow, or a pong went missing.
    Degraded,
    /// Round trips are very slow, or several pongs in a row went missing.
    Poor,
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quality::Good => "good",
            Quality::Degraded => "degraded",
            Quality::Poor => "poor",
        })
    }
}

/// The thresholds of [`LinkQuality`].
///
/// `poor_rtt` is meant to be above `degraded_rtt`; if it is not, a srtt above `poor_rtt` is still
/// `Poor` (the worse level wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualityConfig {
    /// A srtt above this makes the link at least `Degraded`. Default 300 ms.
    pub degraded_rtt: Duration,
    /// A srtt above this makes the link `Poor`. Default 1 s.
    pub poor_rtt: Duration,
    /// To move to a better level, srtt must drop below `threshold * recover_percent / 100`.
    /// Values above 100 act as 100 (no hysteresis). Default 80.
    pub recover_percent: u8,
    /// This many pongs missed in a row make the link `Poor`; one missed makes it at least
    /// `Degraded`. 0 and 1 both make the first miss `Poor`. Default 2.
    pub poor_after_missed: u32,
}

impl QualityConfig {
    /// The defaults: degraded above 300 ms, poor above 1 s, recover below 80 % of a threshold,
    /// poor after 2 missed pongs.
    pub const fn new() -> Self {
        QualityConfig {
            degraded_rtt: Duration::from_millis(300),
            poor_rtt: Duration::from_secs(1),
            recover_percent: 80,
            poor_after_missed: 2,
        }
    }

    /// Sets [`degraded_rtt`](Self::degraded_rtt).
    pub const fn degraded_rtt(mut self, degraded_rtt: Duration) -> Self {
        self.degraded_rtt = degraded_rtt;
        self
    }

    /// Sets [`poor_rtt`](Self::poor_rtt).
    pub const fn poor_rtt(mut self, poor_rtt: Duration) -> Self {
        self.poor_rtt = poor_rtt;
        self
    }

    /// Sets [`recover_percent`](Self::recover_percent).
    pub const fn recover_percent(mut self, recover_percent: u8) -> Self {
        self.recover_percent = recover_percent;
        self
    }

    /// Sets [`poor_after_missed`](Self::poor_after_missed).
    pub const fn poor_after_missed(mut self, poor_after_missed: u32) -> Self {
        self.poor_after_missed = poor_after_missed;
        self
    }

    /// `threshold * recover_percent / 100` in microseconds.
    fn recover_below(&self, threshold: Duration) -> u64 {
        let percent = u128::from(self.recover_percent.min(100));
        narrow(u128::from(micros(threshold)) * percent / 100)
    }

    /// The level srtt calls for when getting worse.
    fn worsen_level(&self, srtt: u64) -> Quality {
        if srtt > micros(self.poor_rtt) {
            Quality::Poor
        } else if srtt > micros(self.degraded_rtt) {
            Quality::Degraded
        } else {
            Quality::Good
        }
    }

    /// The best level srtt allows when getting better.
    fn recover_level(&self, srtt: u64) -> Quality {
        if srtt >= self.recover_below(self.poor_rtt) {
            Quality::Poor
        } else if srtt >= self.recover_below(self.degraded_rtt) {
            Quality::Degraded
        } else {
            Quality::Good
        }
    }

    /// The level after a pong left srtt at `srtt`, starting from `current`.
    fn next_level(&self, current: Quality, srtt: u64) -> Quality {
        let worse = self.worsen_level(srtt);
        if worse >= current {
            worse
        } else {
            // Improving: only as far as the recover thresholds allow, and never to a worse level
            // than now (with close thresholds the recover level of one can pass the other).
            current.min(self.recover_level(srtt))
        }
    }
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// The quality level of one link, from pongs and missed pongs.
///
/// ```
/// use core::time::Duration;
/// use eventwire_core::rtt::{LinkQuality, Quality, QualityConfig};
///
/// let mut link = LinkQuality::new(QualityConfig::new());
/// assert_eq!(link.on_pong(Duration::from_millis(50)), None);
/// assert_eq!(link.on_missed_pong(), Some(Quality::Degraded));
/// assert_eq!(link.on_missed_pong(), Some(Quality::Poor));
/// assert_eq!(link.on_pong(Duration::from_millis(50)), Some(Quality::Good));
/// ```
#[derive(Debug, Clone)]
pub struct LinkQuality {
    config: QualityConfig,
    rtt: RttEstimator,
    level: Quality,
    missed: u32,
}

impl LinkQuality {
    /// A link with no measurements, at [`Quality::Good`].
    pub fn new(config: QualityConfig) -> Self {
        LinkQuality {
            config,
            rtt: RttEstimator::new(),
            level: Quality::Good,
            missed: 0,
        }
    }

    /// The current level.
    pub fn level(&self) -> Quality {
        self.level
    }

    /// The RTT estimate behind the level.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The thresholds in force.
    pub fn config(&self) -> &QualityConfig {
        &self.config
    }

    /// Pongs missed in a row since the last pong (saturates at `u32::MAX`).
    pub fn missed(&self) -> u32 {
        self.missed
    }

    /// A pong arrived after `rtt`: resets the missed count, feeds the estimator; `Some(new level)`
    /// if the level changed.
    pub fn on_pong(&mut self, rtt: Duration) -> Option<Quality> {
        self.missed = 0;
        self.rtt.sample(rtt);
        let next = self.config.next_level(self.level, self.rtt.srtt);
        self.set(next)
    }

    /// A ping went unanswered past its deadline; `Some(new level)` if the level changed.
    pub fn on_missed_pong(&mut self) -> Option<Quality> {
        self.missed = self.missed.saturating_add(1);
        let floor = if self.missed >= self.config.poor_after_missed {
            Quality::Poor
        } else {
            Quality::Degraded
        };
        self.set(self.level.max(floor))
    }

    fn set(&mut self, next: Quality) -> Option<Quality> {
        (next != self.level).then(|| {
            self.level = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Option<Duration> {
        Some(Duration::from_micros(n))
    }

    #[test]
    fn rfc6298_first_sample() {
        let mut e = RttEstimator::new();
        assert_eq!(
            (e.srtt(), e.rttvar(), e.latest(), e.samples()),
            (None, None, None, 0)
        );
        e.sample(Duration::from_micros(1001));
        assert_eq!(
            (e.srtt(), e.rttvar(), e.latest()),
            (us(1001), us(500), us(1001))
        );
        assert_eq!(e.samples(), 1);
    }

    #[test]
    fn rfc6298_known_sequence() {
        let mut e = RttEstimator::default();
        // r = 100 ms: srtt = 100_000, rttvar = 50_000.
        e.sample(ms(100));
        assert_eq!((e.srtt(), e.rttvar()), (us(100_000), us(50_000)));
        // r = 200 ms: rttvar = (3*50_000 + |100_000 - 200_000|) / 4 = 250_000 / 4 = 62_500,
        //             srtt = (7*100_000 + 200_000) / 8 = 900_000 / 8 = 112_500.
        e.sample(ms(200));
        assert_eq!((e.srtt(), e.rttvar()), (us(112_500), us(62_500)));
        // r = 50 ms: rttvar = (3*62_500 + |112_500 - 50_000|) / 4 = 250_000 / 4 = 62_500,
        //            srtt = (7*112_500 + 50_000) / 8 = 837_500 / 8 = 104_687 (truncated .5).
        e.sample(ms(50));
        assert_eq!((e.srtt(), e.rttvar()), (us(104_687), us(62_500)));
        // r = 104_687 µs (equal to srtt): rttvar = (3*62_500 + 0) / 4 = 46_875, srtt unchanged.
        e.sample(Duration::from_micros(104_687));
        assert_eq!((e.srtt(), e.rttvar()), (us(104_687), us(46_875)));
        assert_eq!(e.latest(), us(104_687));
        assert_eq!(e.samples(), 4);
    }

    #[test]
    fn rfc6298_extreme_samples_do_not_overflow() {
        let mut e = RttEstimator::new();
        e.sample(Duration::MAX);
        assert_eq!(e.srtt(), us(u64::MAX));
        e.sample(Duration::MAX);
        assert_eq!(e.srtt(), us(u64::MAX));
        // rttvar = (3 * (u64::MAX / 2) + 0) / 4, computed without overflow.
        assert_eq!(e.rttvar(), us(narrow(3 * u128::from(u64::MAX / 2) / 4)));
        e.sample(Duration::ZERO);
        assert_eq!(e.srtt(), us(narrow(7 * u128::from(u64::MAX) / 8)));
    }

    #[test]
    fn defaults_are_documented_values() {
        let c = QualityConfig::default();
        assert_eq!(c, QualityConfig::new());
        assert_eq!(c.degraded_rtt, ms(300));
        assert_eq!(c.poor_rtt, ms(1000));
        assert_eq!(c.recover_percent, 80);
        assert_eq!(c.poor_after_missed, 2);
        let c = c
            .degraded_rtt(ms(1))
            .poor_rtt(ms(2))
            .recover_percent(50)
            .poor_after_missed(7);
        assert_eq!(
            (
                c.degraded_rtt,
                c.poor_rtt,
                c.recover_percent,
                c.poor_after_missed
            ),
            (ms(1), ms(2), 50, 7)
        );
    }

    #[test]
    fn worsening_is_immediate() {
        let mut link = LinkQuality::new(QualityConfig::new());
        assert_eq!(link.level(), Quality::Good);
        assert_eq!(
            link.on_pong(ms(300)),
            None,
            "at the threshold is not above it"
        );
        let mut link = LinkQuality::new(QualityConfig::new());
        assert_eq!(link.on_pong(ms(301)), Some(Quality::Degraded));
        let mut link = LinkQuality::new(QualityConfig::new());
        assert_eq!(link.on_pong(ms(1001)), Some(Quality::Poor));
    }

    #[test]
    fn oscillating_around_a_threshold_changes_level_at_most_once() {
        let mut link = LinkQuality::new(QualityConfig::new());
        let threshold = ms(300).as_micros();
        let (mut changes, mut crossings) = (0, 0);
        let mut above = false;
        // Blocks of samples at +5% and -5% of the threshold: srtt really crosses it each block,
        // so a single threshold would flap every block.
        for block in 0..20 {
            let rtt = if block % 2 == 0 { ms(315) } else { ms(285) };
            for _ in 0..30 {
                if link.on_pong(rtt).is_some() {
                    changes += 1;
                }
                let now_above = link.rtt().srtt().map_or(0, |d| d.as_micros()) > threshold;
                if now_above != above {
                    crossings += 1;
                    above = now_above;
                }
            }
        }
        assert!(
            crossings >= 10,
            "the test must cross the threshold: {crossings}"
        );
        assert_eq!(changes, 1);
        assert_eq!(link.level(), Quality::Degraded);
    }

    #[test]
    fn recovery_requires_dropping_below_the_recover_threshold() {
        let mut link = LinkQuality::new(QualityConfig::new());
        assert_eq!(link.on_pong(ms(400)), Some(Quality::Degraded));
        // 250 ms is below the 300 ms threshold but above 80% of it (240 ms): no recovery.
        for _ in 0..200 {
            assert_eq!(link.on_pong(ms(250)), None);
        }
        assert_eq!(link.rtt().srtt(), us(250_000));
        // Now down towards 200 ms: recovery exactly when srtt drops below 240 ms.
        loop {
            let changed = link.on_pong(ms(200));
            let srtt = link.rtt().srtt().map_or(u128::MAX, |d| d.as_micros());
            if srtt < 240_000 {
                assert_eq!(changed, Some(Quality::Good));
                break;
            }
            assert_eq!(changed, None, "srtt {srtt}");
        }
    }

    #[test]
    fn poor_recovers_step_by_step() {
        let mut link = LinkQuality::new(QualityConfig::new());
        assert_eq!(link.on_pong(ms(2000)), Some(Quality::Poor));
        // Below 1 s but not below 800 ms: still Poor.
        for _ in 0..100 {
            assert_eq!(link.on_pong(ms(900)), None);
        }
        // 500 ms: below 800 ms, so Degraded, but far above 240 ms.
        let mut seen = std::vec::Vec::new();
        for _ in 0..100 {
            seen.extend(link.on_pong(ms(500)));
        }
        assert_eq!(seen, [Quality::Degraded]);
        for _ in 0..100 {
            seen.extend(link.on_pong(ms(10)));
        }
        assert_eq!(seen, [Quality::Degraded, Quality::Good]);
    }

    #[test]
    fn missed_pongs_degrade_then_a_pong_recovers() {
        let mut link = LinkQuality::new(QualityConfig::new());
        link.on_pong(ms(100));
        assert_eq!(link.on_missed_pong(), Some(Quality::Degraded));
        assert_eq!(link.missed(), 1);
        assert_eq!(link.on_missed_pong(), Some(Quality::Poor));
        assert_eq!(link.on_missed_pong(), None);
        assert_eq!(link.rtt().samples(), 1, "misses feed no samples");
        assert_eq!(link.on_pong(ms(100)), Some(Quality::Good));
        assert_eq!(link.missed(), 0);
    }

    #[test]
    fn recovering_from_a_miss_is_subject_to_srtt() {
        let mut link = LinkQuality::new(QualityConfig::new());
        // 280 ms: Good, but inside the hysteresis band of the 300 ms threshold.
        assert_eq!(link.on_pong(ms(280)), None);
        assert_eq!(link.on_missed_pong(), Some(Quality::Degraded));
        // The pong clears the miss, but srtt is not below 240 ms: stays Degraded.
        assert_eq!(link.on_pong(ms(280)), None);
        assert_eq!(link.level(), Quality::Degraded);
        // Missing again after a pong starts the count over: one miss is not yet Poor.
        assert_eq!(link.on_missed_pong(), None);
        assert_eq!(link.level(), Quality::Degraded);
    }

    #[test]
    fn poor_after_one_miss_when_configured() {
        for n in [0, 1] {
            let mut link = LinkQuality::new(QualityConfig::new().poor_after_missed(n));
            assert_eq!(link.on_missed_pong(), Some(Quality::Poor));
        }
    }

    #[test]
    fn recover_percent_above_100_means_no_hysteresis() {
        let config = QualityConfig::new().recover_percent(255);
        assert_eq!(config.recover_below(ms(300)), 300_000);
        let mut link = LinkQuality::new(config);
        assert_eq!(link.on_pong(ms(301)), Some(Quality::Degraded));
        // Recovery happens as soon as srtt is below the threshold itself.
        loop {
            let changed = link.on_pong(ms(299));
            let srtt = link.rtt().srtt().map_or(u128::MAX, |d| d.as_micros());
            if srtt < 300_000 {
                assert_eq!(changed, Some(Quality::Good));
                break;
            }
            assert_eq!(changed, None, "srtt {srtt}");
        }
    }

    #[test]
    fn close_thresholds_never_improve_to_a_worse_level() {
        // Recover threshold of Poor (280 ms) is below the Degraded threshold (300 ms).
        let config = QualityConfig::new().poor_rtt(ms(350));
        assert_eq!(
            config.next_level(Quality::Degraded, 290_000),
            Quality::Degraded
        );
        assert_eq!(config.next_level(Quality::Poor, 290_000), Quality::Poor);
        assert_eq!(config.next_level(Quality::Poor, 200_000), Quality::Good);
    }

    #[test]
    fn quality_is_ordered_and_serialises_in_snake_case() {
        assert!(Quality::Good < Quality::Degraded && Quality::Degraded < Quality::Poor);
        assert_eq!(
            serde_json::to_string(&Quality::Degraded).ok().as_deref(),
            Some("\"degraded\"")
        );
        let back: Result<Quality, _> = serde_json::from_str("\"poor\"");
        assert_eq!(back.ok(), Some(Quality::Poor));
        assert_eq!(std::format!("{}", Quality::Good), "good");
    }
}
