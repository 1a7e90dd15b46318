//! Coalescing keys: the names under which a newer snapshot event supersedes an older one.
//!
//! A key is always a valid [`Name`](crate::text::Name), built inline without allocation; an agent
//! id too long to form one is refused, never cut.

use core::fmt;

use super::{DashboardError, METRICS_KEY_PREFIX};
use crate::text::{check_name, MAX_NAME_LEN};

/// A coalescing key: a valid [`Name`](crate::text::Name) of at most [`MAX_NAME_LEN`] bytes,
/// held inline (no allocation).
#[derive(Clone)]
pub struct CoalesceKey(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Fixed(&'static str),
    Built(heapless::String<MAX_NAME_LEN>),
}

impl CoalesceKey {
    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            KeyRepr::Fixed(s) => s,
            KeyRepr::Built(s) => s.as_str(),
        }
    }

    /// The key of a kind that has one event at a time (`system.status`, say).
    pub(super) fn fixed(kind: &'static str) -> Self {
        CoalesceKey(KeyRepr::Fixed(kind))
    }

    /// The key of one agent's metrics: `agent.metrics:<agent_id>`.
    pub(super) fn agent_metrics(agent_id: &str) -> Result<Self, DashboardError> {
        check_name(agent_id, "agent_id").map_err(|_| DashboardError::InvalidAgentId)?;
        let mut key = heapless::String::new();
        key.push_str(METRICS_KEY_PREFIX)
            .and_then(|()| key.push_str(agent_id))
            .map_err(|_| DashboardError::InvalidAgentId)?;
        Ok(CoalesceKey(KeyRepr::Built(key)))
    }
}

impl PartialEq for CoalesceKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for CoalesceKey {}

impl core::hash::Hash for CoalesceKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for CoalesceKey {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for CoalesceKey {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl AsRef<str> for CoalesceKey {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for CoalesceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CoalesceKey({:?})", self.as_str())
    }
}

impl fmt::Display for CoalesceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
