//! eventwire over tokio and tokio-tungstenite: the server hub services embed and the
//! reconnecting client.
//!
//! This crate is a thin loop around [`eventwire_core`]: it moves bytes and time between sockets
//! and the core's state machines and makes no protocol decisions of its own.
//!
//! - [`Hub`]: the handle a service keeps to emit events (typed dashboard helpers through the
//!   [`EmitDashboard`] trait, statistics).
//! - [`Server`]: a standalone WebSocket server (HTTP/1.1 on hyper, WebSockets on
//!   tokio-tungstenite) serving a hub, with limits, an authentication hook, a room authorisation
//!   hook and graceful shutdown. It answers HTTP long-polling (`POST /eventwire/poll`,
//!   PROTOCOL.md 1.4, with CORS for allowed origins) and plain HTTP [`Route`]s (a page, a state
//!   snapshot) on the same port, with keep-alive.
//! - [`js`]: the browser client `eventwire.js` and its TypeScript declarations, embedded, for
//!   [`ServerConfig::serve_client`] (or the axum mount's `client_route`).
//! - [`shutdown_signal`]: resolves on ctrl-c or SIGTERM, for a graceful shutdown either way.
//! - [`TcpServer`]: the same over plain TCP with COBS-framed binary frames, for devices without a
//!   WebSocket stack.
//! - `axum` (feature `axum`): eventwire mounted at a path of an existing axum app.
//! - TLS (feature `tls`): `Server::bind_tls` serves `wss://`, and `TokioOptions::tls` lets the
//!   client connect to it, both through rustls (re-exported as `rustls`) with the caller's
//!   configuration.
//! - [`Client`]: a reconnecting client that resumes every room; its events are a
//!   `futures::Stream`, its state and link quality `watch` channels.
//!
//! Inside, one task per connection runs `conn::drive`, the loop around the core's
//! `ServerSession`, over a small `Wire` trait implemented by each transport.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt;
//! use eventwire_tokio::{Client, ClientOptions, Event, Hub, Server, ServerConfig};
//!
//! let hub = Hub::new(Default::default());
//! hub.declare(["system"])?; // the rooms clients may join (they cannot create rooms)
//! let server = Server::bind("127.0.0.1:0", hub.clone(), ServerConfig::default()).await?;
//!
//! let mut client = Client::connect(&format!("ws://{}", server.local_addr()), ClientOptions::default())?;
//! client.subscribe("system").await?;
//! // Wait until the join is answered, then emit.
//! while !matches!(client.next().await, Some(Event::Subscribed { .. })) {}
//! hub.emit("system", "system.note", &serde_json::json!({"text": "hello"}))?;
//! if let Some(Event::Event { kind, payload, .. }) = client.next().await {
//!     assert_eq!(kind, "system.note");
//!     assert_eq!(&payload[..], br#"{"text":"hello"}"#);
//! }
//! client.close().await;
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
mod http;
mod hub;
pub mod js;
mod message;
mod polling;
mod server;
mod signal;
mod tcp;
mod wire;

pub use eventwire_core as core;
pub use eventwire_core::dashboard::EmitDashboard;
pub use eventwire_core::server::Grants;
pub use http::{HttpRequest, HttpResponse, Route, MAX_ROUTE_BODY};
pub use hub::{EmitError, Hub, HubStats, RoomStats};
pub use server::{AuthHook, AuthRequest, AuthResult, Peer, RoomHook, Server, ServerConfig};
pub use signal::shutdown_signal;
pub use tcp::TcpServer;
/// The rustls this crate's TLS runs on, for building the server's and the client's configs.
#[cfg(feature = "tls")]
pub use tokio_rustls::rustls;
mod client;
pub use client::{
    Client, ClientError, ClientOptions, Event, PollingOptions, Status, TokioOptions, Transport,
};
