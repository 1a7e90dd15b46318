//! What every adapter's client handle shares (feature `alloc`): the [`Options`] it is built
//! with, the size of the [`HandleConnection`] its loop drives, and (features `std` and `json`)
//! the [`HandleError`] its calls return and the payload bytes a publish sends.
//!
//! Both clients (an async one and a blocking one) take the same options and refuse calls for the
//! same reasons; only their transports differ. An adapter names its own options (TLS, write
//! timeouts, the polling fallback) as the `A` of [`Options<A>`], and draws the default client id
//! from its own entropy through [`AdapterOptions`]: nothing here reads a clock or draws entropy.
//!
//! Invariants: `max_message` follows `core.max_frame` unless set after it; the setter keeps
//! `events_capacity` at least 1; a raw payload published in the JSON form is one JSON value, checked before it
//! reaches the outbox, so encoding its frame cannot fail later.

use alloc::boxed::Box;
#[cfg(all(feature = "std", feature = "json"))]
use alloc::vec::Vec;
#[cfg(all(feature = "std", feature = "json"))]
use core::fmt;

#[cfg(all(feature = "std", feature = "json"))]
use super::ClientError;
use super::{ClientConfig, Connection};
use crate::codec::Codec;

/// Rooms one adapter client holds: far more than a dashboard needs, and small (each is a name and
/// a position).
pub const ROOMS: usize = 64;
/// Publishes an adapter client keeps awaiting acknowledgement; the machine sends at most
/// [`ClientConfig::publish_window`] of them at a time.
pub const OUTBOX: usize = 256;
/// Bytes of room, kind and payload an adapter client's outbox holds. They live in the machine,
/// which an adapter keeps on the heap.
pub const OUTBOX_BYTES: usize = 256 * 1024;

/// The connection every adapter's client drives: [`ROOMS`] rooms, [`OUTBOX`] publishes awaiting
/// acknowledgement of together up to [`OUTBOX_BYTES`].
pub type HandleConnection = Connection<ROOMS, OUTBOX, OUTBOX_BYTES>;

/// What an adapter adds to a client's [`Options`]: its transport's own options (the `A` of
/// `Options<A>`, its defaults from `Default`), and where a default client id comes from.
pub trait AdapterOptions: Default {
    /// 64 bits from the adapter's entropy: the client id of [`Options::default`], and the seed
    /// of [`Options::connection`] when none is set. They only have to differ between clients
    /// (and between runs of one process).
    fn fresh_id() -> u64;
}

/// How a client connects and behaves: what every adapter's client takes, and the adapter's own
/// options in [`adapter`](Self::adapter). Build it with [`Options::new`] (or `default()`, with a
/// fresh client id) and the setters.
///
/// ```
/// use eventwire_core::client::{AdapterOptions, Options};
/// use eventwire_core::codec::Codec;
///
/// /// An adapter's own options.
/// #[derive(Debug, Clone, Default)]
/// struct Mine {
///     nodelay: bool,
/// }
/// impl AdapterOptions for Mine {
///     fn fresh_id() -> u64 {
///         7 // an adapter draws this from its entropy
///     }
/// }
///
/// let options = Options::<Mine>::default()
///     .codec(Codec::Json)
///     .events_capacity(0)
///     .adapter(|a| Mine { nodelay: true, ..a });
/// assert_eq!(options.core.client_id, 7);
/// assert_eq!(options.max_message, options.core.max_frame as usize);
/// assert_eq!(options.events_capacity, 1);
/// assert!(options.adapter.nodelay);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options<A> {
    /// The core machine's configuration: identity, token, backoff, timeouts, frame limits.
    pub core: ClientConfig,
    /// The message form, sent as the WebSocket subprotocol. Default [`Codec::Binary`].
    pub codec: Codec,
    /// Largest WebSocket message (and frame) accepted, in bytes. Default: `core.max_frame`.
    /// Before the first welcome it also bounds the size of a publish (afterwards the server's
    /// `max_frame` does).
    pub max_message: usize,
    /// Events the client queues for the application (the tokio client's channel, the blocking
    /// client's queue) before it stops reading. Default 1024.
    pub events_capacity: usize,
    /// Seed of the machine's backoff jitter and ping nonces; `None` draws one like the default
    /// client id.
    pub seed: Option<u64>,
    /// The adapter's own options, with its defaults.
    pub adapter: A,
}

impl<A: Default> Options<A> {
    /// Defaults for a client with identity `client_id` (masked to 53 bits). The id must be new
    /// for every process: publish ids restart at 1 with each client.
    pub fn new(client_id: u64) -> Self {
        let core = ClientConfig::new(client_id);
        Options {
            max_message: core.max_frame as usize,
            core,
            codec: Codec::Binary,
            events_capacity: 1024,
            seed: None,
            adapter: A::default(),
        }
    }
}

impl<A> Options<A> {
    /// Replaces the core configuration; [`max_message`](Self::max_message) follows its
    /// `max_frame` (set it afterwards to differ).
    pub fn core(mut self, core: ClientConfig) -> Self {
        self.max_message = core.max_frame as usize;
        self.core = core;
        self
    }

    /// Sets the message form.
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Sets the largest message accepted.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// Sets how many events the client queues for the application (at least 1).
    pub fn events_capacity(mut self, events: usize) -> Self {
        self.events_capacity = events.max(1);
        self
    }

    /// Sets the seed of the machine's randomness, for runs that replay.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the adapter's own options through their setters:
    /// `options.adapter(|a| a.write_timeout(timeout))`.
    pub fn adapter(mut self, set: impl FnOnce(A) -> A) -> Self {
        self.adapter = set(self.adapter);
        self
    }
}

impl<A: AdapterOptions> Options<A> {
    /// The connection these options describe, on the heap (the machine holds its outbox
    /// inline), seeded with [`seed`](Self::seed) or else a fresh seed from the adapter.
    pub fn connection(&self) -> Box<HandleConnection> {
        let seed = self.seed.unwrap_or_else(A::fresh_id);
        Box::new(Connection::new(
            self.core.clone(),
            self.codec,
            self.max_message,
            seed,
        ))
    }
}

impl<A: AdapterOptions> Default for Options<A> {
    /// Defaults with a fresh client id from the adapter ([`AdapterOptions::fresh_id`]).
    fn default() -> Self {
        Options::new(A::fresh_id())
    }
}

/// Why a client handle's call failed (features `std` and `json`): both adapters' `ClientError`.
#[cfg(all(feature = "std", feature = "json"))]
#[derive(Debug)]
#[non_exhaustive]
pub enum HandleError {
    /// The URL is not one the client can open (`ws://host[:port][/path]`, or `wss://` where the
    /// adapter has TLS); the text says what is wrong.
    InvalidUrl(&'static str),
    /// The blocking client's driver thread could not be started.
    Spawn(std::io::Error),
    /// The client is closed for good: closed by the application, refused by the server, or out
    /// of reconnect attempts.
    Closed,
    /// The core machine refused the call: too many rooms, an invalid name, or a publish the
    /// outbox cannot take. A full outbox is `Core(Outbox(OutboxError::Full))`; a publish larger
    /// than the server accepts is `Core(Outbox(OutboxError::TooLarge { .. }))`, with the frame's
    /// size and the limit.
    Core(ClientError),
    /// The payload could not be serialised to JSON, or (JSON codec) raw bytes are not JSON text.
    Payload(serde_json::Error),
}

#[cfg(all(feature = "std", feature = "json"))]
impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            HandleError::Spawn(e) => write!(f, "cannot start the client thread: {e}"),
            HandleError::Closed => f.write_str("client closed"),
            HandleError::Core(e) => write!(f, "{e}"),
            HandleError::Payload(e) => write!(f, "payload: {e}"),
        }
    }
}

#[cfg(all(feature = "std", feature = "json"))]
impl std::error::Error for HandleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandleError::Spawn(e) => Some(e),
            HandleError::Core(e) => Some(e),
            HandleError::Payload(e) => Some(e),
            HandleError::InvalidUrl(_) | HandleError::Closed => None,
        }
    }
}

#[cfg(all(feature = "std", feature = "json"))]
impl HandleError {
    /// The handle's error for a refusal of the machine: its `Closed` is the handle's
    /// [`Closed`](HandleError::Closed), every other refusal is [`Core`](HandleError::Core).
    pub fn from_core(e: ClientError) -> Self {
        match e {
            ClientError::Closed => HandleError::Closed,
            e => HandleError::Core(e),
        }
    }
}

/// The payload bytes a publish of `payload` sends: its JSON text (features `std` and `json`).
#[cfg(all(feature = "std", feature = "json"))]
pub fn json_payload<T: serde::Serialize + ?Sized>(payload: &T) -> Result<Vec<u8>, HandleError> {
    serde_json::to_vec(payload).map_err(HandleError::Payload)
}

/// The payload bytes a publish of raw `payload` sends in `codec`'s form (features `std` and
/// `json`): as they are, but the JSON form carries the payload inline, so there they must be one
/// JSON value; refused here, the publish cannot fail later when its frame is encoded.
#[cfg(all(feature = "std", feature = "json"))]
pub fn raw_payload(codec: Codec, payload: &[u8]) -> Result<Vec<u8>, HandleError> {
    if codec.is_text() {
        serde_json::from_slice::<&serde_json::value::RawValue>(payload)
            .map_err(HandleError::Payload)?;
    }
    Ok(payload.to_vec())
}
