//! The transport-agnostic core of eventwire: its wire format and state machines.
//!
//! This crate is `#![no_std]` and sans-IO: it owns no sockets, clocks, threads or randomness.
//! Bytes and time go in, frames and events come out, so the same code runs under tokio, in a
//! blocking loop or on a microcontroller.
//!
//! # Map
//! Wire format:
//! - [`frame`]: the protocol messages and their field rules.
//! - [`codec`]: binary (postcard) and JSON message forms, COBS stream framing, subprotocols.
//! - [`text`]: the rules for strings on the wire (names, tokens, reasons).
//! - [`code`]: close and error codes.
//! - [`handshake`]: the WebSocket upgrade decision (allowed `Origin`, subprotocol).
//! - [`payload`]: borrowed payload bytes; lists inside frames are [`frame::Seq`]s.
//! - [`error`]: encode and decode errors.
//!
//! State machines (each takes `now` and returns what to do next; none reads a clock):
//! - [`client`]: the client connection: connect, handshake, resume, heartbeats, reconnect;
//!   `client::Connection` (feature `alloc`): the same in bytes, with every close code decided;
//!   `client::fallback` (feature `alloc`): when to fall back to long-polling, what each poll
//!   request carries, when to try a WebSocket again; `client::call` (feature `alloc`): the
//!   application's calls a client handle sends to its loop; `client::handle` (feature `alloc`):
//!   the options and errors every adapter's client handle shares; [`client::url`]: the URL check;
//!   `client::Level`: how client events are logged.
//! - `server` (feature `alloc`): one connection on the server, in bytes (`server::Connection`,
//!   what adapters drive) around its session in frames; `server::polling`: HTTP long-polling
//!   (request checks, the session table, held requests) and `server::http`: a server's HTTP
//!   answers (refusals, CORS), decided once for every front; `hub`: the rooms it reads, each behind
//!   its own lock from the adapter's `hub::Host` (`hub::Local` for a single loop); `history`: one
//!   room's bounded log; `dedup`: the publish deduplication window.
//! - [`backoff`]: reconnect delays; [`rtt`]: RTT smoothing and link quality;
//!   [`outbox`]: the client's bounded queue of publishes.
//! - [`dashboard`]: typed agent, task and system events for the payloads, and (feature `json`)
//!   the `EmitDashboard` helpers every adapter's hub offers.
//! - `stats` (feature `alloc`): a server's counters and statistics, kept alike by every adapter;
//!   `runtime` (feature `json`): the hub handle every adapter's `Hub` is.
//! - [`time`]: the `Instant` every input carries; [`backoff::Rng`]: the seeded PRNG for jitter.
//!
//! # Features
//! - `alloc`: the server side (`server`, `hub`, `history`, `dedup`), whose storage is allocated once
//!   at construction and bounded by configuration, and owned encodings (`encode_into` a `Vec`).
//! - `json`: the JSON form (implies `alloc`).
//! - `std`: `std` integrations (implies `alloc`).
//!
//! # Example
//! ```
//! use eventwire_core::codec::binary;
//! use eventwire_core::frame::{Event, Frame, Position};
//! use eventwire_core::payload::Payload;
//!
//! let event = Frame::Event(Event {
//!     room: "agents",
//!     position: Position::new(1, 42),
//!     kind: "agent.status",
//!     payload: Payload(br#"{"agent_id":"agent-7","status":"busy"}"#),
//! });
//! let mut buf = [0u8; 128];
//! let bytes = binary::encode(&event, &mut buf).unwrap();
//! // Decoding borrows room, kind and payload from `bytes`: nothing is copied.
//! let decoded = binary::decode(bytes, 1024).unwrap();
//! assert_eq!(decoded, event);
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod backoff;
pub mod client;
pub mod code;
pub mod codec;
pub mod dashboard;
#[cfg(feature = "alloc")]
pub mod dedup;
pub mod error;
pub mod frame;
pub mod handshake;
#[cfg(feature = "alloc")]
pub mod history;
#[cfg(feature = "alloc")]
pub mod hub;
#[cfg(feature = "json")]
mod json_text;
pub mod outbox;
pub mod payload;
mod rng;
pub mod rtt;
#[cfg(feature = "json")]
pub mod runtime;
mod seq;
#[cfg(feature = "alloc")]
pub mod server;
#[cfg(feature = "alloc")]
pub mod stats;
pub mod text;
pub mod time;

/// Re-exported so that users can name the bounded lists of [`dashboard`] events without a
/// matching dependency of their own.
pub use heapless;

pub use code::{CloseCode, ErrorCode};
pub use error::{DecodeError, EncodeError, TransportError};
pub use frame::{Frame, Position, PROTOCOL_VERSION};
