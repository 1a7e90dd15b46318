//! What a blocking server's threads share: the hub, the configuration, the shutdown flag and
//! hint, the count of running connections, and the loops that shutdown wakes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::ServerConfig;
use crate::hub::{ConnWaker, Hub};

/// What a server's threads share.
pub(crate) struct ServerState {
    pub(crate) hub: Hub,
    pub(crate) config: ServerConfig,
    /// `Some(retry_after)` once shutting down.
    pub(crate) shutdown: Mutex<Option<Duration>>,
    pub(crate) stopping: AtomicBool,
    /// Connections of this server still running, and the signal of their count reaching zero.
    pub(crate) open: Mutex<usize>,
    pub(crate) idle: Condvar,
    /// The loops of the open connections, by registration: shutdown wakes them all (an append
    /// wakes only those holding its room, through the hub).
    pub(crate) loops: Mutex<BTreeMap<u64, ConnWaker>>,
    pub(crate) next_loop: AtomicU64,
}

/// Keeps a connection loop registered for shutdown's wake-up; unregisters it when dropped.
pub(crate) struct Registration<'s> {
    shared: &'s ServerState,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.loops().remove(&self.id);
    }
}

impl ServerState {
    /// The retry-after hint, once shutdown was asked for.
    pub(crate) fn shutdown_requested(&self) -> Option<Duration> {
        *self.shutdown.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The count of running connections.
    pub(crate) fn open(&self) -> MutexGuard<'_, usize> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The registered connection loops.
    pub(crate) fn loops(&self) -> MutexGuard<'_, BTreeMap<u64, ConnWaker>> {
        self.loops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes `waker` at shutdown, until the registration is dropped.
    pub(crate) fn register(&self, waker: ConnWaker) -> Registration<'_> {
        let id = self.next_loop.fetch_add(1, Ordering::Relaxed);
        self.loops().insert(id, waker);
        Registration { shared: self, id }
    }
}
