//! A socket under a WebSocket that a loop can wait on together with everything else.
//!
//! A blocking `read` cannot be interrupted by an emit, a command or a shutdown, and a short read
//! timeout would be a busy loop. So each connection has a small reader thread that only moves
//! bytes from the socket into a bounded [`Pipe`] and wakes the loop; the loop's WebSocket reads
//! from the pipe ([`Duplex`]), which answers `WouldBlock` when it is empty, and writes straight
//! to the socket (blocking, bounded by the socket's write timeout). When the pipe is full the
//! reader stops reading, so TCP pushes back on the peer: nothing is buffered beyond the pipe's
//! bound and tungstenite's own buffer.
//!
//! During the HTTP upgrade the same `Duplex` reads the socket directly, under the upgrade's read
//! timeout; [`Duplex::start_reader`] then hands reading to the thread. Dropping the `Duplex`
//! shuts the socket down, which ends the reader thread.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::signal::Waker;

#[derive(Default)]
struct State {
    bytes: VecDeque<u8>,
    /// The socket ended (or failed); no more bytes will come.
    ended: bool,
    /// The owner is gone; the reader stops.
    closed: bool,
}

/// Bytes read from a socket, bounded.
struct Pipe {
    state: Mutex<State>,
    /// Signalled when bytes arrive, are taken, or the pipe ends.
    changed: Condvar,
    limit: usize,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The stream a connection's WebSocket runs over.
pub(crate) struct Duplex {
    tcp: TcpStream,
    pipe: Option<Arc<Pipe>>,
    /// While reading directly: every read and write fails with `TimedOut` after this, so a peer
    /// that trickles bytes cannot stretch the upgrade.
    deadline: Option<Instant>,
}

impl Duplex {
    /// Reads and writes `tcp` directly, all of it before `deadline` (for the upgrade).
    pub(crate) fn direct(tcp: TcpStream, deadline: Instant) -> Duplex {
        Duplex {
            tcp,
            pipe: None,
            deadline: Some(deadline),
        }
    }

    /// Sets the socket's timeouts to what is left of the deadline.
    fn before_io(&self, write: bool) -> io::Result<()> {
        let Some(deadline) = self.deadline else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if write {
            self.tcp.set_write_timeout(Some(left))
        } else {
            self.tcp.set_read_timeout(Some(left))
        }
    }

    /// Hands reading to a thread that fills a pipe of about `limit` bytes and calls
    /// `waker.wake()` whenever bytes arrive or the socket ends.
    pub(crate) fn start_reader<T: Send + 'static>(
        &mut self,
        limit: usize,
        waker: Waker<T>,
    ) -> io::Result<()> {
        self.tcp.set_read_timeout(None)?;
        self.tcp.set_write_timeout(None)?;
        self.deadline = None;
        let mut tcp = self.tcp.try_clone()?;
        let pipe = Arc::new(Pipe {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            limit: limit.max(1024),
        });
        let shared = pipe.clone();
        std::thread::Builder::new()
            .name("eventwire-reader".into())
            .spawn(move || read_loop(&mut tcp, &shared, &waker))?;
        self.pipe = Some(pipe);
        Ok(())
    }

    /// Blocks until bytes (or the end) wait to be read, or `deadline` passes; returns whether
    /// something is readable. For a connection that is closing and has no loop to wake.
    pub(crate) fn wait_readable(&self, deadline: Instant) -> bool {
        let Some(pipe) = &self.pipe else {
            return true;
        };
        let mut state = pipe.lock();
        loop {
            if !state.bytes.is_empty() || state.ended {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = match pipe.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Limits how long one write may block (the slow-consumer bound).
    pub(crate) fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.tcp
            .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
    }
}

fn read_loop<T>(tcp: &mut TcpStream, pipe: &Pipe, waker: &Waker<T>) {
    let mut buf = vec![0u8; pipe.limit.min(64 * 1024)];
    loop {
        {
            let mut state = pipe.lock();
            while state.bytes.len() >= pipe.limit && !state.closed {
                state = pipe.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.closed {
                return;
            }
        }
        let read = tcp.read(&mut buf);
        let mut state = pipe.lock();
        match read {
            Ok(0) | Err(_) => {
                if let Err(e) = read {
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    tracing::trace!(error = %e, "socket read failed");
                }
                state.ended = true;
                drop(state);
                pipe.changed.notify_all();
                waker.wake();
                return;
            }
            Ok(n) => state.bytes.extend(&buf[..n]),
        }
        drop(state);
        pipe.changed.notify_all();
        waker.wake();
    }
}

impl Read for Duplex {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(pipe) = &self.pipe else {
            self.before_io(false)?;
            return self.tcp.read(out);
        };
        let mut state = pipe.lock();
        if state.bytes.is_empty() {
            return if state.ended {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = state.bytes.read(out)?;
        drop(state);
        pipe.changed.notify_all();
        Ok(n)
    }
}

impl Write for Duplex {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.before_io(true)?;
        self.tcp.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl Drop for Duplex {
    fn drop(&mut self) {
        if let Some(pipe) = &self.pipe {
            pipe.lock().closed = true;
            pipe.changed.notify_all();
        }
        // Ends the reader thread's blocking read.
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}
