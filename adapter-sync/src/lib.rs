//! eventwire over blocking `tungstenite` and `std::net`, for programs without an async runtime.
//!
//! Like every adapter it is a thin loop around [`eventwire_core`]. The blocking client and server
//! arrive with the blocking adapter issue; until then the crate re-exports the core so that the
//! workspace layout is final.
//!
//! ```
//! use eventwire_sync::core::codec::Codec;
//! assert_eq!(Codec::negotiate("eventwire.v1"), Some(Codec::Binary));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use eventwire_core as core;
