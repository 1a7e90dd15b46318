//! eventwire over tokio and tokio-tungstenite: the server hub services embed and the
//! reconnecting client.
//!
//! This crate is a thin loop around [`eventwire_core`]: it moves bytes and time between sockets
//! and the core's state machines and makes no protocol decisions of its own. The hub, the client
//! and the axum integration arrive with the tokio adapter issue; until then the crate re-exports
//! the core so that the workspace layout is final.
//!
//! ```
//! use eventwire_tokio::core::codec::Codec;
//! assert_eq!(Codec::negotiate("eventwire.v1"), Some(Codec::Binary));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use eventwire_core as core;
