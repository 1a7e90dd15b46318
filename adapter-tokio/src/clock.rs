//! What the adapter brings that the core has not: its clock (the core's `Instant` counted from
//! when the clock was made) and its entropy.

use eventwire_core::time::Instant;

/// Converts tokio's monotonic clock into the core's microsecond `Instant`s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            origin: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now(self) -> Instant {
        self.to_core(tokio::time::Instant::now())
    }

    pub(crate) fn to_core(self, t: tokio::time::Instant) -> Instant {
        Instant::from_micros(t.saturating_duration_since(self.origin).as_micros() as u64)
    }

    pub(crate) fn to_tokio(self, t: Instant) -> tokio::time::Instant {
        let d = std::time::Duration::from_micros(t.as_micros());
        // "Never" is far enough in the future for a sleep.
        self.origin.checked_add(d).unwrap_or_else(|| {
            tokio::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365)
        })
    }
}

/// 64 random bits: the wall clock hashed with a `RandomState`, whose keys std draws from the OS
/// per thread and advances with every `new`, so calls differ within a process and across
/// processes. Not cryptographic: client seeds and ids, and hub epochs, only have to differ.
pub(crate) fn entropy() -> u64 {
    use std::hash::BuildHasher;
    std::hash::RandomState::new().hash_one(std::time::SystemTime::now())
}
