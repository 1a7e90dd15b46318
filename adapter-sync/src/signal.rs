//! How a blocking loop waits for "anything happened" without polling.
//!
//! Each loop (a server connection, the client's driver) owns an [`Inbox`] and blocks in
//! [`Inbox::wait`] until its next deadline. Everything that may need the loop holds a [`Waker`]:
//! the thread reading its socket, the hub on emit, the server on shutdown, the client handle. A
//! wake is one message in a channel, coalesced by a flag so that a burst of wakes costs one
//! message; items (client commands, results of connection attempts) travel in the same channel.
//! The loop re-checks every source after each return from `wait`, so a wake is never lost: the
//! flag is cleared before the loop looks, and anything that happens afterwards sends a new one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;

enum Message<T> {
    Wake,
    Item(T),
}

/// What one wait gave.
pub(crate) enum Woke<T> {
    /// An item sent with [`Waker::send`].
    Item(T),
    /// A [`Waker::wake`]: some source has news; look at all of them.
    Wake,
    /// The deadline passed.
    Timeout,
    /// Every waker is gone.
    Orphaned,
}

/// The receiving end, owned by the loop.
pub(crate) struct Inbox<T> {
    rx: Receiver<Message<T>>,
    flag: Arc<AtomicBool>,
}

/// A handle that wakes the loop or hands it an item; clone it freely.
pub struct Waker<T> {
    tx: Sender<Message<T>>,
    flag: Arc<AtomicBool>,
}

impl<T> Clone for Waker<T> {
    fn clone(&self) -> Self {
        Waker {
            tx: self.tx.clone(),
            flag: self.flag.clone(),
        }
    }
}

/// A new inbox and its first waker.
pub(crate) fn inbox<T>() -> (Inbox<T>, Waker<T>) {
    let (tx, rx) = mpsc::channel();
    let flag = Arc::new(AtomicBool::new(false));
    (
        Inbox {
            rx,
            flag: flag.clone(),
        },
        Waker { tx, flag },
    )
}

impl<T> Waker<T> {
    /// Wakes the loop, unless a wake is already on its way.
    pub(crate) fn wake(&self) {
        if !self.flag.swap(true, Ordering::SeqCst) {
            let _ = self.tx.send(Message::Wake);
        }
    }

    /// Hands the loop an item; gives it back if the loop is gone.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        self.tx.send(Message::Item(item)).map_err(|e| match e.0 {
            Message::Item(item) => item,
            Message::Wake => unreachable!("only items are sent here"),
        })
    }
}

impl<T> Inbox<T> {
    /// Blocks until an item, a wake, or `deadline` (`None`: no deadline).
    pub(crate) fn wait(&self, deadline: Option<std::time::Instant>) -> Woke<T> {
        let received = match deadline {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                self.rx.recv_timeout(left)
            }
        };
        match received {
            Ok(Message::Item(item)) => Woke::Item(item),
            Ok(Message::Wake) => {
                self.flag.store(false, Ordering::SeqCst);
                Woke::Wake
            }
            Err(RecvTimeoutError::Timeout) => Woke::Timeout,
            Err(RecvTimeoutError::Disconnected) => Woke::Orphaned,
        }
    }

    /// An item or wake already waiting, without blocking.
    pub(crate) fn poll(&self) -> Option<Woke<T>> {
        match self.rx.try_recv() {
            Ok(Message::Item(item)) => Some(Woke::Item(item)),
            Ok(Message::Wake) => {
                self.flag.store(false, Ordering::SeqCst);
                Some(Woke::Wake)
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn wakes_coalesce_and_items_pass() {
        let (inbox, waker) = inbox::<u32>();
        waker.wake();
        waker.wake();
        assert!(waker.send(7).is_ok());
        assert!(matches!(inbox.wait(None), Woke::Wake));
        assert!(matches!(inbox.wait(None), Woke::Item(7)));
        // The two wakes were one message; after it was taken, a wake sends a new one.
        assert!(inbox.poll().is_none());
        waker.clone().wake();
        assert!(matches!(inbox.poll(), Some(Woke::Wake)));
    }

    #[test]
    fn waits_end_at_the_deadline_or_without_wakers() {
        let (inbox, waker) = inbox::<()>();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(matches!(inbox.wait(Some(deadline)), Woke::Timeout));
        assert!(Instant::now() >= deadline);
        drop(waker);
        assert!(matches!(inbox.wait(None), Woke::Orphaned));
    }
}
