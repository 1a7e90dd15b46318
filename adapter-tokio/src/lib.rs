//! eventwire over tokio and tokio-tungstenite: the server hub services embed and the
//! reconnecting client.
//!
//! This crate is a thin loop around [`eventwire_core`]: it moves bytes and time between sockets
//! and the core's state machines and makes no protocol decisions of its own.
//!
//! - [`Hub`]: the handle a service keeps to emit events (typed dashboard helpers included).
//! - [`Server`]: a standalone WebSocket server on tokio-tungstenite serving a hub.
//! - [`Client`]: a reconnecting client; its events are a `futures::Stream`.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! use eventwire_tokio::{Hub, Server, ServerConfig};
//!
//! let hub = Hub::new(Default::default());
//! let server = Server::bind("127.0.0.1:9001", hub.clone(), ServerConfig::default()).await?;
//! hub.emit("system", "system.note", &serde_json::json!({"text": "hello"})).unwrap();
//! server.shutdown(std::time::Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "axum")]
pub mod axum;
mod clock;
mod conn;
mod hub;
mod message;
mod server;
mod tcp;
mod wire;

pub use eventwire_core as core;
pub use hub::{EmitError, Hub, HubStats, RoomStats};
pub use server::{AuthHook, AuthRequest, AuthResult, Peer, RoomHook, Server, ServerConfig};
pub use tcp::TcpServer;
mod client;
pub use client::{Client, ClientError, ClientOptions, Event, Status};
