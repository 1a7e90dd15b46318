//! A blocking server's configuration: its limits, and the application's hooks with what they are
//! told ([`AuthRequest`], [`Peer`]).

use std::sync::Arc;
use std::time::Duration;

pub use eventwire_core::handshake::OriginPolicy;
pub use eventwire_core::server::{AuthRequest, Peer};
use eventwire_core::server::{Grants, ServerConfig as SessionConfig};
use eventwire_core::CloseCode;

/// The result of the authentication hook: the connection's [`Grants`] (what it may publish;
/// [`Grants::none`] for a read-only client), or `Err` to close with the given code (usually
/// [`CloseCode::UNAUTHORIZED`]).
pub type AuthResult = Result<Grants, CloseCode>;

/// An authentication hook. It runs on the connection's own thread, so it may block (a database
/// lookup, say) without holding up other connections.
pub type AuthHook = Arc<dyn Fn(AuthRequest) -> AuthResult + Send + Sync>;

/// A room authorisation hook: whether `peer` may join `room`.
pub type RoomHook = Arc<dyn Fn(&Peer, &str) -> bool + Send + Sync>;

/// Configuration of a [`Server`](crate::Server); every limit has a safe default.
///
/// # Limits
/// Every limit is set deliberately, as in the tokio adapter's server:
///
/// | limit | default | on breach |
/// |---|---|---|
/// | message size (`session.max_frame`) | 64 KiB | close 1009; refused from the frame header, nothing is buffered for the message |
/// | WebSocket upgrade time (`upgrade_timeout`) | 10 s | connection dropped (every read and write of the upgrade is bounded by what is left) |
/// | hello + authentication time (`session.handshake_timeout`) | 10 s | close 4000 |
/// | connections | 10,000 | close 1013 with a retry-after hint |
/// | bytes read ahead per connection (`read_buffer`) | 4 KiB | the reader stops reading; TCP pushes back |
/// | write buffer per connection (`write_buffer`) | 64 KiB | writes block on the socket (backpressure) |
/// | a write that does not drain (`write_timeout`) | 30 s | connection closed as a slow consumer |
/// | browser origins (`origins`) | the server's own (same-origin) | upgrade (and polling request) refused with 403 |
/// | subscriptions, publish rate | from `session` | error frames, then close 4004 |
/// | bytes a connection sends (`session.max_bytes_in`) | 1 MiB/s, one second's burst | close 4004 with retry-after 1 s |
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Session limits and timings of the core (frame size, subscriptions, publish rate,
    /// heartbeat, batching).
    pub session: SessionConfig,
    /// Most open connections.
    pub max_connections: usize,
    /// Longest WebSocket upgrade.
    pub upgrade_timeout: Duration,
    /// Which browsers may connect, by the `Origin` header they send: by default only the
    /// server's own pages ([`OriginPolicy::SameOrigin`]). Requests without an `Origin`
    /// (non-browser clients) are allowed whatever the policy.
    pub origins: OriginPolicy,
    /// Longest time one write may block on the socket before the peer counts as stalled.
    pub write_timeout: Duration,
    /// Bytes read ahead of the connection's loop.
    pub read_buffer: usize,
    /// tungstenite's write buffer per connection.
    pub write_buffer: usize,
    /// Authentication hook; `None` accepts every hello.
    pub auth: Option<AuthHook>,
    /// Room authorisation hook; `None` allows every room.
    pub authorize: Option<RoomHook>,
    /// What every connection may publish when there is no authentication hook (with one, its
    /// verdict decides). Default [`Grants::none`]: clients only read.
    pub grants: Grants,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("session", &self.session)
            .field("max_connections", &self.max_connections)
            .field("upgrade_timeout", &self.upgrade_timeout)
            .field("origins", &self.origins)
            .field("write_timeout", &self.write_timeout)
            .field("read_buffer", &self.read_buffer)
            .field("write_buffer", &self.write_buffer)
            .field("auth", &self.auth.is_some())
            .field("authorize", &self.authorize.is_some())
            .field("grants", &self.grants)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            session: SessionConfig::new(),
            max_connections: 10_000,
            upgrade_timeout: Duration::from_secs(10),
            origins: OriginPolicy::SameOrigin,
            write_timeout: Duration::from_secs(30),
            read_buffer: 4 * 1024,
            write_buffer: 64 * 1024,
            auth: None,
            authorize: None,
            grants: Grants::none(),
        }
    }
}

impl ServerConfig {
    /// Sets the core session configuration.
    pub fn session(mut self, session: SessionConfig) -> Self {
        self.session = session;
        self
    }

    /// Sets the connection limit.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets the WebSocket upgrade timeout.
    pub fn upgrade_timeout(mut self, timeout: Duration) -> Self {
        self.upgrade_timeout = timeout;
        self
    }

    /// Allows browsers from these origins (`scheme://host[:port]`, for example
    /// `https://dash.example`) besides the server's own pages.
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        origins: I,
    ) -> Self {
        self.origins = OriginPolicy::Listed(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Allows browsers from any origin: for development only, since any web page its visitors
    /// open may then connect with their access. The server says so at startup.
    pub fn allow_any_origin(mut self) -> Self {
        self.origins = OriginPolicy::Any;
        self
    }

    /// Sets the stalled-write timeout.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets the authentication hook.
    pub fn auth<F>(mut self, hook: F) -> Self
    where
        F: Fn(AuthRequest) -> AuthResult + Send + Sync + 'static,
    {
        self.auth = Some(Arc::new(hook));
        self
    }

    /// Sets what every connection may publish when there is no authentication hook, for
    /// example `Grants::publish_to(["notes"])`. Without this, clients cannot publish at all.
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }

    /// Sets the room authorisation hook.
    pub fn authorize<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Peer, &str) -> bool + Send + Sync + 'static,
    {
        self.authorize = Some(Arc::new(hook));
        self
    }
}
