//! eventwire over blocking `tungstenite` and `std::net`, for programs without an async runtime:
//! command-line tools, embedded Linux daemons, test rigs, plain threads.
//!
//! Like every adapter it is a thin loop around [`eventwire_core`]: it moves bytes and time
//! between sockets and the core's state machines and makes no protocol decisions of its own. It
//! speaks the same protocol as `eventwire-tokio`, so either side can be either adapter.
//!
//! - [`Hub`]: the handle a service keeps to emit events (typed dashboard helpers through the
//!   [`EmitDashboard`] trait, statistics).
//! - [`Server`]: a WebSocket server with a thread per connection, with the same limits, hooks
//!   (authentication, room authorisation, allowed Origins) and graceful shutdown as the tokio
//!   adapter's. No HTTP long-polling, plain-TCP listener or TLS here.
//! - [`Client`]: a reconnecting client that resumes every room; a blocking iterator of
//!   [`Event`]s ([`Client::events`]) and [`Client::recv_timeout`].
//!
//! # Threads and wakeups
//!
//! - **Server**: one accept thread, then a thread per connection (bounded by
//!   [`ServerConfig::max_connections`]), which runs the upgrade and the loop around the core's
//!   `ServerSession`. This keeps each loop a plain sequence of blocking calls and isolates a slow
//!   peer in its own thread; it suits the hundreds of connections of a tool, a daemon or a test
//!   rig (for tens of thousands, use `eventwire-tokio`).
//! - **Client**: one driver thread owns the core's client machine and the WebSocket; the handle
//!   sends it commands over a channel (each answered, so calls return the machine's verdict) and
//!   takes events from a bounded queue. Each connection attempt (DNS, TCP, upgrade) runs on a
//!   short-lived thread bounded by the connect timeout, so commands and timers are served
//!   meanwhile; a closing connection's close handshake runs on another (at most a second).
//! - **Reading**: a blocking read cannot be interrupted by an emit or a command, and a short read
//!   timeout would be a busy loop. So every open connection, on either side, has a small reader
//!   thread that only moves socket bytes into a bounded buffer and wakes its loop; when the
//!   buffer is full it stops reading and TCP pushes back on the peer. The loop's WebSocket reads
//!   that buffer and writes straight to the socket, each write bounded by a write timeout.
//! - **Waiting**: every loop blocks in exactly one place, a channel of wakes and commands, with
//!   the core machine's next deadline (`poll_timeout - now`) as the timeout. Bytes from the
//!   reader, an emit in the hub, a command, an attempt's result, room in the client's event queue
//!   and shutdown each send a (coalesced) wake; after every wake the loop looks at all of them.
//!   Nothing polls, and nothing sleeps past a deadline.
//!
//! ```
//! use std::time::Duration;
//! use eventwire_sync::{Client, ClientOptions, Event, Hub, Server, ServerConfig};
//!
//! let hub = Hub::new(Default::default());
//! hub.declare(["system"])?; // the rooms clients may join (they cannot create rooms)
//! let server = Server::bind("127.0.0.1:0", hub.clone(), ServerConfig::default())?;
//!
//! let client = Client::connect(&format!("ws://{}", server.local_addr()), ClientOptions::default())?;
//! client.subscribe("system")?;
//! // Wait until the join is answered, then emit.
//! let limit = Duration::from_secs(10);
//! while !matches!(client.recv_timeout(limit)?, Event::Subscribed { .. }) {}
//! hub.emit("system", "system.note", &serde_json::json!({"text": "hello"}))?;
//! loop {
//!     if let Event::Event { kind, payload, .. } = client.recv_timeout(limit)? {
//!         assert_eq!(kind, "system.note");
//!         assert_eq!(payload, br#"{"text":"hello"}"#);
//!         break;
//!     }
//! }
//! client.close();
//! server.shutdown(Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod clock;
mod config;
mod conn;
mod hub;
mod message;
mod pipe;
mod server;
mod shutdown;
mod signal;
mod state;

pub use client::{
    Client, ClientError, ClientOptions, Event, Events, RecvTimeoutError, Status, SyncOptions,
};
pub use config::{AuthHook, AuthRequest, AuthResult, Peer, RoomHook, ServerConfig};
pub use eventwire_core as core;
pub use eventwire_core::dashboard::EmitDashboard;
pub use eventwire_core::server::Grants;
pub use hub::{EmitError, Hub, HubStats, RoomStats};
pub use server::Server;
pub use shutdown::{shutdown_signal, ShutdownSignal};
