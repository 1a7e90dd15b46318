//! The signals that ask a program to stop: ctrl-c (SIGINT) and SIGTERM, which is what systemd,
//! Docker and Kubernetes send. A program that waits on neither dies by the default action with no
//! close frame, so its peers learn of it only from their timeouts; one that waits on both can
//! close its client or shut its server down first (close 1000, or 1001 with a retry-after hint).

use std::io;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A request to stop, once ctrl-c or SIGTERM arrives; see [`shutdown_signal`].
#[derive(Debug)]
pub struct ShutdownSignal {
    signals: Signals,
}

/// Installs handlers for ctrl-c and SIGTERM and returns the [`ShutdownSignal`] to wait on.
///
/// Call it before the program announces itself (before printing an address), so that a signal
/// sent as soon as that is known is not met by the default action, which kills the process. From
/// then on these signals no longer end the process by themselves: wait, then stop gracefully.
///
/// ```no_run
/// use std::time::Duration;
/// use eventwire_sync::{shutdown_signal, Hub, Server, ServerConfig};
///
/// let stop = shutdown_signal()?;
/// let server = Server::bind("127.0.0.1:9001", Hub::new(Default::default()), ServerConfig::default())?;
/// println!("listening on {}", server.local_addr());
/// stop.wait();
/// server.shutdown(Duration::from_secs(2));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
/// When the handlers cannot be installed (the operating system refuses).
pub fn shutdown_signal() -> io::Result<ShutdownSignal> {
    Ok(ShutdownSignal {
        signals: Signals::new([SIGINT, SIGTERM])?,
    })
}

impl ShutdownSignal {
    /// Blocks until ctrl-c or SIGTERM arrives (at once if one arrived since the handlers were
    /// installed).
    pub fn wait(mut self) {
        // `forever` ends only if the handle is closed, which nothing here does.
        let _ = self.signals.forever().next();
    }
}
