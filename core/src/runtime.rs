//! The hub handle a threaded or async server shares between its connections (feature `json`).
//!
//! [`SharedHub`] is what every adapter's `Hub` is: a cheap handle (the host's shared pointer)
//! over the core's [`Hub`] (rooms locked one by one), the server's [`Counters`], and an adapter's
//! [`Runtime`], which reads the adapter's clock. Emitting appends the event to its room once,
//! encoded once, counts it, and wakes the sessions holding that room; each reads the same bytes
//! from the room's log when its transport can take more.
//!
//! Nothing here reads a clock, draws entropy or picks a lock: the epoch, each connection's seed
//! and waker come from the adapter, the locks and counters from its [`Host`].
//!
//! Invariants: every append through the handle (an emit, or a publish a connection appended, see
//! [`SharedHub::count`]) counts one event in; only the appended room's watchers are woken.

use alloc::vec::Vec;
use core::fmt;

use serde::Serialize;

use crate::code::CloseCode;
use crate::dashboard::{DashboardEvent, EmitDashboard, EmitError};
use crate::frame::Position;
use crate::hub::{Counter, Host, Hub, HubConfig, RoomRef};
use crate::payload::JsonText;
use crate::server::{Connection, Counts, Framing, PublishMode, ServerConfig as SessionConfig};
use crate::stats::{Counters, HubStats, RoomStats};
use crate::time::Instant;

/// What a [`SharedHub`] needs from the adapter around it: its host (locks, shared pointers,
/// wakers, counters) and its clock.
pub trait Runtime: Sized + 'static {
    /// Where the hub's shared state lives.
    type Host: Host;
    /// The adapter's current time, on the clock its connections run on.
    fn now(&self) -> Instant;
    /// An epoch for a new hub, different from the epochs of this server's earlier runs: an
    /// adapter passes fresh entropy through [`epoch_from_random`](crate::hub::epoch_from_random).
    fn epoch(&self) -> u32;
}

/// What the handle shares.
pub struct Inner<R: Runtime> {
    hub: Hub<R::Host>,
    counters: Counters<R::Host>,
    runtime: R,
}

/// The handle a service keeps to emit events; clone it freely.
///
/// The typed dashboard helpers (`emit_agent_status_change`, `emit_task_queued`, ...) come with
/// the [`EmitDashboard`] trait.
///
/// ```
/// use eventwire_core::hub::Local;
/// use eventwire_core::runtime::{Runtime, SharedHub};
/// use eventwire_core::time::Instant;
///
/// #[derive(Default)]
/// struct Manual;
/// impl Runtime for Manual {
///     type Host = Local;
///     fn now(&self) -> Instant { Instant::from_micros(0) }
///     fn epoch(&self) -> u32 { 1 }
/// }
///
/// let hub = SharedHub::<Manual>::new(Default::default());
/// hub.emit("system", "system.note", &serde_json::json!({"text": "started"})).unwrap();
/// assert_eq!(hub.room_stats("system").unwrap().head.offset, 1);
/// ```
pub struct SharedHub<R: Runtime> {
    inner: <R::Host as Host>::Shared<Inner<R>>,
}

impl<R: Runtime> Clone for SharedHub<R> {
    fn clone(&self) -> Self {
        SharedHub {
            inner: self.inner.clone(),
        }
    }
}

impl<R: Runtime> fmt::Debug for SharedHub<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime + Default> SharedHub<R> {
    /// A hub with a fresh epoch ([`Runtime::epoch`]), so that clients of a previous run learn
    /// that their positions are void.
    pub fn new(config: HubConfig) -> Self {
        let runtime = R::default();
        Self::with_runtime(runtime.epoch(), config, runtime)
    }

    /// A hub whose rooms start in `epoch`.
    pub fn with_epoch(epoch: u32, config: HubConfig) -> Self {
        Self::with_runtime(epoch, config, R::default())
    }
}

impl<R: Runtime> SharedHub<R> {
    /// A hub whose rooms start in `epoch`, served through `runtime`.
    pub fn with_runtime(epoch: u32, config: HubConfig, runtime: R) -> Self {
        SharedHub {
            inner: R::Host::share(Inner {
                hub: Hub::with_host(epoch, config),
                counters: Counters::default(),
                runtime,
            }),
        }
    }

    /// The rooms.
    pub fn hub(&self) -> &Hub<R::Host> {
        &self.inner.hub
    }

    /// The server's counters, which the connection loops update.
    pub fn counters(&self) -> &Counters<R::Host> {
        &self.inner.counters
    }

    /// The adapter's runtime of this hub.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }

    /// Adds what a connection counted.
    pub fn count(&self, counts: Counts) {
        self.inner.counters.add(counts);
    }

    /// A new connection, framed as `framing`, whose appends wake `waker`: its session id is the
    /// number of connections accepted before it; `seed` (the adapter's entropy) drives its ping
    /// nonces. A connection `over_capacity` is closed at once with `TRY_AGAIN_LATER` and a
    /// retry-after hint of one second.
    ///
    /// Its session appends publishes to their rooms itself ([`PublishMode::AppendToRoom`],
    /// whatever `config` says): a shared hub's servers have no hook that applies them, so a
    /// publish handed over would wait for an answer that never comes.
    pub fn open_connection(
        &self,
        config: SessionConfig,
        framing: Framing,
        seed: u64,
        waker: <R::Host as Host>::Waker,
        over_capacity: bool,
    ) -> Connection<R::Host> {
        let session_id = self.inner.counters.connections_total.get();
        let now = self.inner.runtime.now();
        let config = config.publish_mode(PublishMode::AppendToRoom);
        let mut conn = Connection::with_waker(now, config, framing, session_id, seed, waker);
        if over_capacity {
            conn.close(
                CloseCode::TRY_AGAIN_LATER,
                Some(core::time::Duration::from_secs(1)),
                "server at capacity",
            );
        }
        conn
    }

    /// The epoch of every room.
    pub fn epoch(&self) -> u32 {
        self.inner.hub.epoch()
    }

    /// The room `name`, created if needed (as the application's, kept for the hub's life): keep
    /// it to emit without looking the name up.
    pub fn room(&self, name: &str) -> Result<RoomRef<R::Host>, EmitError> {
        self.inner.hub.ensure_room(name).map_err(EmitError::Hub)
    }

    /// Creates the application's `rooms` that do not exist yet, so that clients may join them
    /// before their first event: clients do not create rooms unless granted
    /// ([`Grants::create_rooms`](crate::server::Grants::create_rooms)), and a join of a room
    /// nobody created is refused with `NO_SUCH_ROOM`.
    pub fn declare<I, S>(&self, rooms: I) -> Result<(), EmitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for room in rooms {
            self.room(room.as_ref())?;
        }
        Ok(())
    }

    /// Emits `payload`, serialised as JSON, to `room`.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        room: &str,
        kind: &str,
        payload: &T,
    ) -> Result<Position, EmitError> {
        self.emit_serialized(room, kind, payload, None)
    }

    /// Emits `payload` with a coalescing key: a newer event with the same key supersedes this one
    /// for subscribers that have not received it yet (latest value wins).
    pub fn emit_keyed<T: Serialize + ?Sized>(
        &self,
        room: &str,
        kind: &str,
        key: &str,
        payload: &T,
    ) -> Result<Position, EmitError> {
        self.emit_serialized(room, kind, payload, Some(key))
    }

    /// Serialises `payload` with serde_json and appends it as JSON text known to be valid, so the
    /// room log does not check it again for its JSON form.
    fn emit_serialized<T: Serialize + ?Sized>(
        &self,
        room: &str,
        kind: &str,
        payload: &T,
        key: Option<&str>,
    ) -> Result<Position, EmitError> {
        let mut buf = Vec::new();
        let text = JsonText::write(payload, &mut buf).map_err(EmitError::Payload)?;
        self.emit_text(room, kind, text, key)
    }

    /// Appends JSON text known to be valid.
    fn emit_text(
        &self,
        room: &str,
        kind: &str,
        text: JsonText<'_>,
        key: Option<&str>,
    ) -> Result<Position, EmitError> {
        let now = self.inner.runtime.now();
        let position = self
            .inner
            .hub
            .emit_json(now, room, kind, text, key)
            .map_err(EmitError::Hub)?;
        self.inner.counters.events_in.add(1);
        Ok(position)
    }

    /// Emits payload bytes as they are. Clients on the JSON subprotocol need them to be JSON
    /// text; an event whose payload is not reaches them as a gap.
    pub fn emit_raw(
        &self,
        room: &str,
        kind: &str,
        payload: &[u8],
        key: Option<&str>,
    ) -> Result<Position, EmitError> {
        let now = self.inner.runtime.now();
        let position = self
            .inner
            .hub
            .emit(now, room, kind, payload, key)
            .map_err(EmitError::Hub)?;
        self.inner.counters.events_in.add(1);
        Ok(position)
    }

    /// Statistics of one room.
    pub fn room_stats(&self, room: &str) -> Option<RoomStats> {
        RoomStats::find(&self.inner.hub, room)
    }

    /// A snapshot of every counter and room.
    pub fn stats(&self) -> HubStats {
        self.inner.counters.snapshot(&self.inner.hub)
    }
}

/// The typed dashboard helpers: bring [`EmitDashboard`] into scope to call them.
impl<R: Runtime> EmitDashboard for SharedHub<R> {
    fn emit_dashboard(&self, event: &DashboardEvent<'_>) -> Result<Position, EmitError> {
        let key = event.coalesce_key().map_err(EmitError::Dashboard)?;
        let mut buf = Vec::new();
        let text = event.write_json(&mut buf).map_err(EmitError::Payload)?;
        self.emit_text(
            event.room(),
            event.kind(),
            text,
            key.as_ref().map(|k| k.as_str()),
        )
    }
}
