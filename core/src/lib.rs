//! The transport-agnostic core of eventwire: its wire format and state machines.
//!
//! This crate is `#![no_std]` and sans-IO: it owns no sockets, clocks, threads or randomness.
//! Bytes and time go in, frames and events come out, so the same code runs under tokio, in a
//! blocking loop or on a microcontroller.
//!
//! # Map
//! - [`frame`]: the protocol messages and their field rules.
//! - [`codec`]: binary (postcard) and JSON message forms, COBS stream framing, subprotocols.
//! - [`text`]: the rules for strings on the wire (names, tokens, reasons).
//! - [`code`]: close and error codes.
//! - [`payload`], [`seq`]: borrowed payload bytes and lists inside frames.
//! - [`error`]: encode and decode errors.
//!
//! # Features
//! - `alloc`: owned encodings (`encode_into` a `Vec`).
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

pub mod code;
pub mod codec;
pub mod error;
pub mod frame;
pub mod payload;
pub mod seq;
pub mod text;

pub use code::{CloseCode, ErrorCode};
pub use error::{DecodeError, EncodeError};
pub use frame::{Frame, Position, PROTOCOL_VERSION};
