//! What the adapter brings that the core has not: its clock (the core's `Instant` counted from
//! when the clock was made) and its entropy.

use std::time::Duration;

use eventwire_core::time::Instant;

/// Converts std's monotonic clock into the core's microsecond `Instant`s and back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    pub(crate) fn now(self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    /// The std instant of a core deadline; `None` for one too far away to represent ("never").
    pub(crate) fn to_std(self, t: Instant) -> Option<std::time::Instant> {
        self.origin
            .checked_add(Duration::from_micros(t.as_micros()))
    }
}

/// 64 random bits: the wall clock hashed with a `RandomState`, whose keys std draws from the OS
/// per thread and advances with every `new`, so calls differ within a process and across
/// processes. Not cryptographic: client seeds and ids, and hub epochs, only have to differ.
pub(crate) fn entropy() -> u64 {
    use std::hash::BuildHasher;
    std::hash::RandomState::new().hash_one(std::time::SystemTime::now())
}
