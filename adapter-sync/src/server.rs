//! The blocking WebSocket server: an accept thread, and a thread per connection.
//!
//! # Threads
//! One thread accepts connections; each accepted connection gets its own thread, which runs the
//! upgrade and then the connection's loop (`conn`), plus a small reader thread that moves bytes
//! from the socket into a bounded buffer and wakes the loop (`pipe`). A thread per connection
//! keeps each loop a plain sequence of blocking calls, isolates a slow peer in its own thread,
//! and is bounded by [`ServerConfig::max_connections`]: it suits the hundreds of connections of
//! a command-line tool, a daemon or a test rig. For tens of thousands, use `eventwire-tokio`.
//!
//! Graceful shutdown ([`Server::shutdown`]) closes every connection with 1001 and a retry-after
//! hint. Not served here, unlike the tokio adapter: HTTP long-polling, plain-TCP COBS streams and
//! TLS (`wss://`); put a TLS-terminating proxy in front for `wss://`.

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use crate::conn;
use crate::hub::Hub;
use crate::state::ServerState;

/// A running WebSocket server (an accept thread and a thread per connection); dropping it does
/// not stop it, [`Server::shutdown`] does.
///
/// It serves the binary (`eventwire.v1`) and JSON (`eventwire.v1.json`) subprotocols with the
/// limits of [`ServerConfig`]. Unlike the tokio adapter's server it does not serve HTTP
/// long-polling, COBS byte streams or TLS: put a TLS-terminating proxy in front for `wss://`.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<ServerState>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `addr` and starts serving `hub` on background threads.
    pub fn bind<A: ToSocketAddrs>(addr: A, hub: Hub, config: ServerConfig) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let origins = config.origins.to_string();
        let shared = Arc::new(ServerState {
            hub,
            config,
            shutdown: Mutex::new(None),
            stopping: AtomicBool::new(false),
            open: Mutex::new(0),
            idle: Condvar::new(),
            loops: Mutex::new(BTreeMap::new()),
            next_loop: AtomicU64::new(0),
        });
        info!(%addr, %origins, "eventwire server listening");
        let accept = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("eventwire-accept".into())
                .spawn(move || accept_loop(&listener, &shared))?
        };
        Ok(Server {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hub it serves.
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    /// Stops accepting, tells every client to reconnect after `retry_after` (close 1001 with the
    /// hint, so clients resume elsewhere with nothing lost), and waits for the connections to
    /// end (at most the write timeout).
    pub fn shutdown(mut self, retry_after: Duration) {
        *self
            .shared
            .shutdown
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(retry_after);
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The accept thread blocks in `accept`: a connection of our own wakes it to see the flag
        // (and it closes the listener as it ends).
        match TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1)) {
            Ok(_) => {
                if let Some(accept) = self.accept.take() {
                    let _ = accept.join();
                }
            }
            Err(e) => {
                warn!(error = %e, "shutdown: cannot wake the accept thread; it stops at its next connection")
            }
        }
        for waker in self.shared.loops().values() {
            waker.wake();
        }
        let deadline = Instant::now() + self.shared.config.write_timeout;
        let mut open = self.shared.open();
        while *open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(
                    open = *open,
                    "shutdown: connections still open after the write timeout"
                );
                return;
            }
            open = match self.shared.idle.wait_timeout(open, left) {
                Ok((open, _)) => open,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// Where to connect to reach a listener bound to `addr` (a wildcard address means loopback).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut to = addr;
    if to.ip().is_unspecified() {
        to.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    to
}

fn accept_loop(listener: &TcpListener, shared: &Arc<ServerState>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                debug!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let over = shared
            .hub
            .counters()
            .admit(shared.config.max_connections, 0);
        *shared.open() += 1;
        let conn_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("eventwire-conn".into())
            .spawn(move || {
                // Counted out however the connection ends, a panic included.
                let _open = Open(&conn_shared);
                conn::serve(tcp, peer, &conn_shared, over);
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot spawn a connection thread; connection dropped");
            drop(Open(shared));
        }
    }
}

/// A connection of this server; dropping it counts the connection out.
struct Open<'a>(&'a ServerState);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        let shared = self.0;
        shared.hub.counters().closed();
        let mut open = shared.open();
        *open = open.saturating_sub(1);
        if *open == 0 {
            shared.idle.notify_all();
        }
    }
}
