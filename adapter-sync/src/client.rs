//! The reconnecting blocking client: the core's client machine driven over tungstenite and
//! `std::net::TcpStream`.
//!
//! # Threads
//! [`Client::connect`] returns at once and starts one **driver** thread that owns the core's
//! [`eventwire_core::client::Client`] and the WebSocket. The handle sends it commands (each
//! answered on its own channel, so a call returns the machine's verdict) and takes events from a
//! bounded queue. Each connection attempt (DNS, TCP connect, WebSocket upgrade) runs on a
//! short-lived **attempt** thread bounded by the connect timeout, so the driver keeps serving
//! commands and timers meanwhile; an open connection has a **reader** thread that only moves
//! socket bytes into a bounded buffer (`pipe`). A connection that closes hands its socket to a
//! short-lived thread that sends the close handshake (at most a second).
//!
//! # The driver's loop
//! 1. Read the clock: if the machine's deadline passed, `handle_timeout(now)`.
//! 2. Drain `poll_transmit` into the WebSocket and flush (writes block, bounded by
//!    [`SyncOptions::write_timeout`]).
//! 3. Act on `poll_action`: `Connect` starts an attempt thread; `Disconnect` abandons an attempt
//!    or closes the socket.
//! 4. Read what the reader thread buffered, a bounded number of messages per round, feeding each
//!    frame to `handle_frame`; then go to 1.
//! 5. With nothing to read, block until the machine's deadline (`poll_timeout - now`) or a wake:
//!    bytes from the reader thread, a command, an attempt's result, or room in the event queue.
//!
//! No loop polls: every wake is a message in one channel (coalesced, see `signal`), and the only
//! timeout is the machine's own deadline, so nothing sleeps past it.
//!
//! # Backpressure
//! Events wait in a queue of [`Options::events_capacity`]. While it is full the driver
//! stops reading the socket (the reader thread then stops too, and TCP pushes back on the
//! server); taking an event wakes it again. Nothing is dropped: the events of one frame always
//! enter the queue, so it can exceed the capacity by one frame's worth. Timers keep running
//! meanwhile: a consumer that stalls for longer than the dead-link timeout makes the client
//! reconnect, and resuming from the last position delivered loses nothing either.
//!
//! ```no_run
//! use eventwire_sync::{Client, ClientOptions, Event};
//!
//! let client = Client::connect("ws://127.0.0.1:9001/", ClientOptions::default())?;
//! client.subscribe("agents")?;
//! for event in client.events() {
//!     if let Event::Event { room, position, kind, .. } = &event {
//!         println!("{room} {position} {kind}");
//!     }
//! }
//! # Ok::<(), eventwire_sync::ClientError>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use eventwire_core::client::handle::{self, OUTBOX_BYTES};
pub use eventwire_core::client::Status;
use eventwire_core::client::{
    Action, AdapterOptions, Call, Channel, ClientEvent, ConnState, HandleConnection, HandleError,
    Level, Options, OwnedEvent, WsUrl,
};
use eventwire_core::codec::Codec;
use eventwire_core::frame::Position;
use eventwire_core::handshake;
use eventwire_core::rtt::Quality;
use eventwire_core::time::Instant;
use eventwire_core::{CloseCode, TransportError};
use serde::Serialize;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Request;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tungstenite::http::{HeaderValue, Uri};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Bytes, Error as WsError, Message, WebSocket};

use crate::clock::{entropy, Clock};
use crate::message;
use crate::pipe::Duplex;
use crate::signal::{self, Inbox, Waker, Woke};

/// Bytes tungstenite buffers before writing; a flush always writes everything.
const WRITE_BUFFER: usize = 64 * 1024;
/// Bytes the reader thread reads ahead of the driver.
const READ_AHEAD: usize = 64 * 1024;
/// Messages handled per round before the driver writes and checks its timers again.
const READS_PER_ROUND: usize = 64;
/// How long a closing connection may take to send its last frames and the close handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

type Ws = WebSocket<Duplex>;

/// How a [`Client`] connects and behaves: the core's client [`Options`] (codec, message limit,
/// event capacity, seed, the machine's configuration) with this client's own [`SyncOptions`].
/// Build it with `ClientOptions::new(client_id)` (or `default()`) and the setters; set the write
/// timeout with [`Options::adapter`].
pub type ClientOptions = Options<SyncOptions>;

/// What the blocking client adds to the core's client [`Options`]: how long a write may block.
/// Set through [`Options::adapter`]:
/// `ClientOptions::default().adapter(|a| a.write_timeout(Duration::from_secs(2)))`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Longest time one write may block on the socket before the connection counts as lost.
    /// Default 10 s.
    pub write_timeout: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// Default client ids and seeds: `clock::entropy`.
impl AdapterOptions for SyncOptions {
    fn fresh_id() -> u64 {
        entropy()
    }
}

impl SyncOptions {
    /// Sets the longest time one write may block.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }
}

/// Why a client call failed: the core's [`HandleError`], which the tokio client returns too.
/// [`HandleError::InvalidUrl`] includes `wss://` URLs: this client has no TLS.
pub type ClientError = HandleError;

/// Why [`Client::recv_timeout`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No event came within the timeout; the client goes on.
    Timeout,
    /// The client stopped for good and every event was taken.
    Closed,
}

impl fmt::Display for RecvTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvTimeoutError::Timeout => f.write_str("no event within the timeout"),
            RecvTimeoutError::Closed => f.write_str("client closed"),
        }
    }
}

impl std::error::Error for RecvTimeoutError {}

/// Something the application receives from the [`Client`], in the order it happened: the
/// core's [`OwnedEvent`], including the connection's status changes ([`OwnedEvent::Status`]; the
/// tokio client reports those through a `watch` instead).
pub type Event = OwnedEvent;

/// A request from the handle to the driver: one of the core's calls, or closing.
enum Command {
    Call(Call<Oneshot>),
    /// Close for good; `reply` is answered once the driver ended.
    Close {
        reply: Option<Sender<()>>,
    },
}

/// The core's calls answer on std channels, one per call.
struct Oneshot;

impl Channel for Oneshot {
    type Sender<T> = Sender<T>;

    fn send<T>(sender: Sender<T>, value: T) {
        let _ = sender.send(value);
    }
}

/// What the driver's inbox carries besides wakes.
enum Input {
    Command(Command),
    /// The end of connection attempt `id`.
    Attempt {
        id: u64,
        result: Result<Box<Ws>, AttemptError>,
    },
}

/// The events queue and the status, shared by the handle and the driver.
struct ClientState {
    queue: Mutex<Queue>,
    /// Signalled when an event is queued or the queue ends.
    ready: Condvar,
    capacity: usize,
    state: Mutex<(Status, Quality)>,
}

struct Queue {
    events: VecDeque<Event>,
    /// The driver ended: no more events come.
    ended: bool,
}

impl ClientState {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, (Status, Quality)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, event: Event) {
        self.queue().events.push_back(event);
        self.ready.notify_all();
    }

    fn full(&self) -> bool {
        self.queue().events.len() >= self.capacity
    }

    fn end(&self) {
        self.queue().ended = true;
        self.ready.notify_all();
    }

    /// Records a status change and queues it as an event. While the queue is full, a status
    /// change replaces a status change at its back, so a consumer that does not read while the
    /// client keeps reconnecting costs one event, not one per attempt (the current status is
    /// always [`Client::status`]).
    fn set_status(&self, status: Status) {
        self.state().0 = status.clone();
        let mut queue = self.queue();
        let full = queue.events.len() >= self.capacity;
        match queue.events.back_mut() {
            Some(last @ Event::Status(_)) if full => *last = Event::Status(status),
            _ => queue.events.push_back(Event::Status(status)),
        }
        drop(queue);
        self.ready.notify_all();
    }

    /// The machine's sink: events to the queue, state to the snapshot.
    fn on_event(&self, event: ClientEvent<'_>) {
        match event.log_level() {
            Some(Level::Warn) => tracing::warn!("{event}"),
            Some(Level::Info) => tracing::info!("{event}"),
            Some(Level::Debug) => tracing::debug!("{event}"),
            _ => {}
        }
        if let ClientEvent::Quality(quality) = event {
            self.state().1 = quality;
            return;
        }
        let event = match event.to_owned_event() {
            Some(OwnedEvent::Status(status)) => return self.set_status(status),
            Some(event) => event,
            // Kinds a later core adds reach applications once this adapter maps them.
            None => return,
        };
        self.push(event);
    }
}

/// A reconnecting eventwire client: a handle to the thread that drives the connection.
///
/// Take its events with [`Client::events`] (a blocking iterator that ends once the client is
/// closed for good and every event was taken), [`Client::recv`] or [`Client::recv_timeout`].
/// Dropping the handle closes the client as [`Client::close`] does, without waiting.
///
/// The machine it drives holds up to 64 rooms and 256 unacknowledged publishes of together up
/// to 256 KiB (room, kind and payload bytes). `ws://` only: for `wss://`, use `eventwire-tokio`
/// or a TLS-terminating proxy.
pub struct Client {
    waker: Waker<Input>,
    shared: Arc<ClientState>,
    codec: Codec,
    driver: Option<JoinHandle<()>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state();
        f.debug_struct("Client")
            .field("status", &state.0)
            .field("quality", &state.1)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a client for `url` (`ws://host[:port][/path]`) and returns at once; the first
    /// connection attempt runs in the background. Only the URL is checked here; connection
    /// failures show as [`Event::Status`] changes and are retried with backoff.
    pub fn connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let machine = options.connection();
        let Options {
            core,
            codec,
            max_message,
            events_capacity,
            adapter: SyncOptions { write_timeout },
            ..
        } = options;
        let target = Target::new(url)?;
        let shared = Arc::new(ClientState {
            queue: Mutex::new(Queue {
                events: VecDeque::new(),
                ended: false,
            }),
            ready: Condvar::new(),
            capacity: events_capacity.max(1),
            state: Mutex::new((Status::Connecting, Quality::Good)),
        });
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message))
            .write_buffer_size(WRITE_BUFFER)
            // No message this client sends is larger than its outbox plus framing.
            .max_write_buffer_size(WRITE_BUFFER + OUTBOX_BYTES + 64 * 1024);
        let (inbox, waker) = signal::inbox();
        let span =
            tracing::info_span!("eventwire_client", url = %target.uri, client_id = core.client_id);
        let driver = Driver {
            machine,
            clock: Clock::new(),
            target,
            ws_config,
            write_timeout,
            inbox,
            waker: waker.clone(),
            shared: shared.clone(),
            conn: None,
            attempt: None,
            attempts: 0,
            closing: Vec::new(),
            close_replies: Vec::new(),
            out_buf: Vec::new(),
        };
        let driver = std::thread::Builder::new()
            .name("eventwire-client".into())
            .spawn(move || {
                let _entered = span.enter();
                driver.run();
            })
            .map_err(ClientError::Spawn)?;
        Ok(Client {
            waker,
            shared,
            codec,
            driver: Some(driver),
        })
    }

    /// Joins `room` at its live head (or keeps the position already held). The answer comes as
    /// [`Event::Subscribed`] or [`Event::SubscribeFailed`]; after a reconnect the room resumes
    /// from its last position.
    pub fn subscribe(&self, room: &str) -> Result<(), ClientError> {
        self.subscribe_at(room, None)
    }

    /// Joins `room`, resuming after `from` (a position saved from an earlier run).
    pub fn subscribe_from(&self, room: &str, from: Position) -> Result<(), ClientError> {
        self.subscribe_at(room, Some(from))
    }

    fn subscribe_at(&self, room: &str, from: Option<Position>) -> Result<(), ClientError> {
        self.request(|reply| Command::Call(Call::subscribe(room, from, reply)))?
            .map_err(ClientError::from_core)
    }

    /// Leaves `room`: nothing more of it is delivered. Returns whether it was held.
    pub fn unsubscribe(&self, room: &str) -> Result<bool, ClientError> {
        self.request(|reply| Command::Call(Call::unsubscribe(room, reply)))
    }

    /// Publishes `payload`, serialised as JSON, to `room` and returns the publish id. It is sent
    /// now or after reconnecting, exactly once, and answered by [`Event::PublishAcked`] or
    /// [`Event::PublishFailed`] with that id. A full outbox refuses it here.
    pub fn publish<T: Serialize + ?Sized>(
        &self,
        room: &str,
        kind: &str,
        payload: &T,
    ) -> Result<u64, ClientError> {
        self.publish_bytes(room, kind, handle::json_payload(payload)?)
    }

    /// Publishes payload bytes as they are; with the JSON codec they must be JSON text.
    pub fn publish_raw(&self, room: &str, kind: &str, payload: &[u8]) -> Result<u64, ClientError> {
        self.publish_bytes(room, kind, handle::raw_payload(self.codec, payload)?)
    }

    fn publish_bytes(&self, room: &str, kind: &str, payload: Vec<u8>) -> Result<u64, ClientError> {
        self.request(|reply| Command::Call(Call::publish(room, kind, payload, reply)))?
            .map_err(ClientError::from_core)
    }

    /// The rooms held, each with the last position delivered (save them to resume a later run
    /// with [`Client::subscribe_from`]).
    pub fn positions(&self) -> Result<Vec<(String, Option<Position>)>, ClientError> {
        self.request(|reply| Command::Call(Call::Positions { reply }))
    }

    /// The connection state now.
    pub fn status(&self) -> Status {
        self.shared.state().0.clone()
    }

    /// The link quality, from the round-trip times of pings and missed pongs.
    pub fn quality(&self) -> Quality {
        self.shared.state().1
    }

    /// The next event, blocking until there is one; `None` once the client stopped and every
    /// event was taken.
    pub fn recv(&self) -> Option<Event> {
        self.take(None).ok()
    }

    /// The next event, blocking at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Event, RecvTimeoutError> {
        let deadline = std::time::Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(86_400 * 365));
        self.take(Some(deadline))
    }

    /// A blocking iterator over the events: `for event in client.events()`. It ends once the
    /// client stopped for good and every event was taken.
    pub fn events(&self) -> Events<'_> {
        Events { client: self }
    }

    fn take(&self, deadline: Option<std::time::Instant>) -> Result<Event, RecvTimeoutError> {
        let mut queue = self.shared.queue();
        loop {
            if let Some(event) = queue.events.pop_front() {
                let was_full = queue.events.len() + 1 >= self.shared.capacity;
                drop(queue);
                if was_full {
                    // The driver may have stopped reading for want of room.
                    self.waker.wake();
                }
                return Ok(event);
            }
            if queue.ended {
                return Err(RecvTimeoutError::Closed);
            }
            queue = match deadline {
                None => self
                    .shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(RecvTimeoutError::Timeout);
                    }
                    match self.shared.ready.wait_timeout(queue, left) {
                        Ok((queue, _)) => queue,
                        Err(p) => p.into_inner().0,
                    }
                }
            };
        }
    }

    /// Closes the client for good: sends a normal close (protocol frame, then WebSocket close
    /// frame) and returns once the driver ended, at most about a second later. Events not yet
    /// taken are dropped. Closing a client that already stopped returns at once.
    pub fn close(mut self) {
        let (reply, done) = mpsc::channel();
        if self
            .waker
            .send(Input::Command(Command::Close { reply: Some(reply) }))
            .is_ok()
        {
            let _ = done.recv();
        }
        if let Some(driver) = self.driver.take() {
            let _ = driver.join();
        }
    }

    /// Starts closing the client from any thread, without waiting: as [`Client::close`] (a
    /// normal close) but through a shared reference, so that a thread watching for a signal can
    /// end a loop over [`Client::events`] elsewhere; that loop ends once the driver stopped.
    pub fn stop(&self) {
        let _ = self
            .waker
            .send(Input::Command(Command::Close { reply: None }));
    }

    fn request<T>(&self, command: impl FnOnce(Sender<T>) -> Command) -> Result<T, ClientError> {
        let (reply, answer) = mpsc::channel();
        self.waker
            .send(Input::Command(command(reply)))
            .map_err(|_| ClientError::Closed)?;
        answer.recv().map_err(|_| ClientError::Closed)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.driver.is_some() {
            let _ = self
                .waker
                .send(Input::Command(Command::Close { reply: None }));
        }
    }
}

/// The blocking iterator of [`Client::events`].
#[derive(Debug)]
pub struct Events<'a> {
    client: &'a Client,
}

impl Iterator for Events<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.client.recv()
    }
}

/// Where each attempt connects.
#[derive(Debug, Clone)]
struct Target {
    uri: Uri,
    /// The host to resolve (an IPv6 address without brackets) and the port.
    host: String,
    port: u16,
}

impl Target {
    /// Checks `url` (the core's `WsUrl`: `ws://` with a host; this client has no TLS).
    fn new(url: &str) -> Result<Target, ClientError> {
        let parts = WsUrl::parse(url).map_err(|e| ClientError::InvalidUrl(e.as_str()))?;
        if parts.secure {
            return Err(ClientError::InvalidUrl(
                "wss needs TLS, which eventwire-sync does not do (use eventwire-tokio)",
            ));
        }
        // Whatever tungstenite would refuse at each attempt is refused now.
        let uri: Uri = url
            .parse()
            .map_err(|_| ClientError::InvalidUrl("not a URL"))?;
        uri.clone()
            .into_client_request()
            .map_err(|_| ClientError::InvalidUrl("not a WebSocket URL"))?;
        Ok(Target {
            host: parts.host.to_owned(),
            port: parts.port,
            uri,
        })
    }
}

/// The upgrade request of one attempt, asking for `codec`'s subprotocol.
fn request(uri: &Uri, codec: Codec) -> Result<Request, WsError> {
    let mut request = uri.clone().into_client_request()?;
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(codec.subprotocol()),
    );
    Ok(request)
}

/// Why a connection attempt failed (logged; the machine only learns that it did).
#[derive(Debug)]
enum AttemptError {
    /// Resolving the host, connecting, or setting up the socket.
    Io(io::Error),
    /// The WebSocket upgrade.
    Upgrade(WsError),
    /// The server answered the upgrade without selecting this subprotocol.
    Subprotocol(&'static str),
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Io(e) => write!(f, "{e}"),
            AttemptError::Upgrade(e) => write!(f, "upgrade: {e}"),
            AttemptError::Subprotocol(wanted) => {
                write!(f, "the server did not select the subprotocol {wanted}")
            }
        }
    }
}

/// One connection attempt, on its own thread: TCP, then the upgrade, all before `deadline`.
fn open(
    target: &Target,
    codec: Codec,
    config: WebSocketConfig,
    deadline: std::time::Instant,
) -> Result<Box<Ws>, AttemptError> {
    let request = request(&target.uri, codec).map_err(AttemptError::Upgrade)?;
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(AttemptError::Io)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host has no address");
    let mut tcp = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            last = io::ErrorKind::TimedOut.into();
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or(AttemptError::Io(last))?;
    // The driver batches its writes, so Nagle's delay would only add latency.
    tcp.set_nodelay(true).map_err(AttemptError::Io)?;
    let mut attempt = tungstenite::client::client_with_config(
        request,
        Duplex::direct(tcp, deadline),
        Some(config),
    );
    let (ws, response) = loop {
        match attempt {
            Ok(opened) => break opened,
            // A read timed out: `Duplex` fails the next one once the deadline passed.
            Err(HandshakeError::Interrupted(mid)) => attempt = mid.handshake(),
            Err(HandshakeError::Failure(e)) => return Err(AttemptError::Upgrade(e)),
        }
    };
    let selected = response.headers().get(SEC_WEBSOCKET_PROTOCOL);
    // tungstenite refuses most mismatches itself; this catches the rest.
    if handshake::check_selected(codec, selected.map(HeaderValue::as_bytes)).is_err() {
        return Err(AttemptError::Subprotocol(codec.subprotocol()));
    }
    Ok(Box::new(ws))
}

/// Sends what is queued and the WebSocket close frame, then waits for the peer's close, all
/// within [`CLOSE_TIMEOUT`].
fn close_ws(mut ws: Box<Ws>, code: CloseCode) {
    let deadline = std::time::Instant::now() + CLOSE_TIMEOUT;
    let _ = ws.get_ref().set_write_timeout(CLOSE_TIMEOUT);
    if let Err(e) = ws.close(Some(message::close_frame(code, ""))) {
        tracing::debug!(%code, error = %e, "close handshake failed");
        return;
    }
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                if !ws.get_ref().wait_readable(deadline) {
                    break;
                }
            }
            Err(WsError::ConnectionClosed) => {
                tracing::debug!(%code, "connection closed");
                return;
            }
            Err(e) => {
                tracing::debug!(%code, error = %e, "close handshake failed");
                return;
            }
        }
    }
    tracing::debug!(%code, "close handshake timed out");
}

/// The driver thread: the machine, the socket, and the channels to the handle.
struct Driver {
    machine: Box<HandleConnection>,
    clock: Clock,
    target: Target,
    ws_config: WebSocketConfig,
    write_timeout: Duration,
    inbox: Inbox<Input>,
    waker: Waker<Input>,
    shared: Arc<ClientState>,
    conn: Option<Box<Ws>>,
    /// The connection attempt under way, if any; a result with another id is stale.
    attempt: Option<u64>,
    attempts: u64,
    /// Threads closing earlier connections.
    closing: Vec<JoinHandle<()>>,
    close_replies: Vec<Sender<()>>,
    /// The message being written.
    out_buf: Vec<u8>,
}

/// How a round of reading ended.
enum Round {
    /// Messages were handled, or the connection ended: go round again.
    Progress,
    /// Nothing to read now (or no room for events).
    Idle,
}

impl Driver {
    /// Runs the client until the machine is closed for good.
    fn run(mut self) {
        let now = self.clock.now();
        let out = &self.shared;
        self.machine.connect(now, &mut |e| out.on_event(e));
        self.drive();
        self.finish();
    }

    fn drive(&mut self) {
        loop {
            // The clock first: a deadline that passed while the driver was busy fires now.
            let now = self.clock.now();
            if self.machine.poll_timeout().is_some_and(|t| t <= now) {
                let out = &self.shared;
                self.machine.handle_timeout(now, &mut |e| out.on_event(e));
            }
            self.transmit(now);
            self.act(now);
            if self.machine.state() == ConnState::Closed {
                return;
            }
            if let Round::Progress = self.read_round(now) {
                // Commands are taken between rounds too, so a busy socket cannot starve them.
                self.take_inputs();
                continue;
            }
            let deadline = self
                .machine
                .poll_timeout()
                .and_then(|t| self.clock.to_std(t));
            match self.inbox.wait(deadline) {
                Woke::Item(input) => self.on_input(input),
                Woke::Wake | Woke::Timeout => {}
                // The driver holds a waker itself; kept for completeness.
                Woke::Orphaned => return,
            }
            self.take_inputs();
        }
    }

    /// Takes every input already waiting, without blocking.
    fn take_inputs(&mut self) {
        while let Some(woke) = self.inbox.poll() {
            if let Woke::Item(input) = woke {
                self.on_input(input);
            }
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Command(command) => self.on_command(now, command),
            Input::Attempt { id, result } => self.on_attempt(now, id, result),
        }
    }

    /// Drains `poll_transmit` into the socket, then flushes it.
    fn transmit(&mut self, now: Instant) {
        let mut failed = None;
        let mut wrote = false;
        let text = self.machine.is_text();
        self.out_buf.clear();
        while let Some(len) = self.machine.poll_transmit(now, &mut self.out_buf) {
            let result = match self.conn.as_mut() {
                Some(ws) => message::from_payload(text, Bytes::copy_from_slice(&self.out_buf))
                    .and_then(|m| ws.write(m)),
                None => {
                    tracing::trace!(len, "no connection for a message");
                    Ok(())
                }
            };
            self.out_buf.clear();
            if let Err(e) = result {
                failed = Some(e);
                break;
            }
            wrote |= self.conn.is_some();
        }
        if failed.is_none() && wrote {
            if let Some(ws) = self.conn.as_mut() {
                failed = ws.flush().err();
            }
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, "write failed");
            self.lose_conn(now);
        }
    }

    /// Acts on `poll_action`.
    fn act(&mut self, now: Instant) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Connect => self.start_attempt(now),
                Action::Disconnect { code } => {
                    if self.attempt.take().is_some() {
                        tracing::info!(%code, "connection attempt abandoned");
                    }
                    if let Some(ws) = self.conn.take() {
                        tracing::info!(%code, "disconnecting");
                        self.close_later(ws, code);
                    }
                }
            }
        }
    }

    fn start_attempt(&mut self, now: Instant) {
        if let Some(ws) = self.conn.take() {
            // The machine always disconnects first; keep at most one socket regardless.
            self.close_later(ws, CloseCode::NORMAL);
        }
        self.attempts += 1;
        let id = self.attempts;
        self.attempt = Some(id);
        let deadline = std::time::Instant::now() + self.machine.machine().config().connect_timeout;
        let (target, codec, config, waker) = (
            self.target.clone(),
            self.machine.codec(),
            self.ws_config,
            self.waker.clone(),
        );
        let span = tracing::debug_span!("attempt", id);
        let spawned = std::thread::Builder::new()
            .name("eventwire-connect".into())
            .spawn(move || {
                let _entered = span.enter();
                let result = open(&target, codec, config, deadline);
                // A driver that is gone no longer wants it; the socket closes with it.
                let _ = waker.send(Input::Attempt { id, result });
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a connection attempt");
            self.attempt = None;
            let out = &self.shared;
            self.machine
                .handle_disconnected(now, &mut |e| out.on_event(e));
        }
    }

    fn on_attempt(&mut self, now: Instant, id: u64, result: Result<Box<Ws>, AttemptError>) {
        if self.attempt != Some(id) {
            // Abandoned (the machine's connect timeout, or a close): dropping it closes it.
            return;
        }
        self.attempt = None;
        let opened = result.and_then(|mut ws| {
            ws.get_mut()
                .start_reader(READ_AHEAD, self.waker.clone())
                .and_then(|()| ws.get_ref().set_write_timeout(self.write_timeout))
                .map_err(AttemptError::Io)?;
            Ok(ws)
        });
        let out = &self.shared;
        match opened {
            Ok(ws) if self.machine.state() == ConnState::Connecting => {
                tracing::info!("connected");
                self.conn = Some(ws);
                self.machine.handle_connected(now, &mut |e| out.on_event(e));
            }
            Ok(ws) => {
                // Cannot happen (a disconnect abandons the attempt); never hold a socket the
                // machine does not know about.
                self.close_later(ws, CloseCode::NORMAL);
            }
            Err(e) => {
                tracing::warn!(error = %e, "connection attempt failed");
                self.machine
                    .handle_disconnected(now, &mut |e| out.on_event(e));
            }
        }
    }

    /// Handles up to `READS_PER_ROUND` messages the reader thread buffered, while the event
    /// queue has room.
    fn read_round(&mut self, now: Instant) -> Round {
        let mut handled = 0;
        while handled < READS_PER_ROUND {
            // Backpressure: nothing is read while the queue is full.
            if self.shared.full() {
                break;
            }
            let Some(ws) = self.conn.as_mut() else {
                break;
            };
            let message = match ws.read() {
                Ok(message) => message,
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                // tungstenite refuses an oversize message from its header, before buffering it.
                Err(WsError::Capacity(e)) => {
                    tracing::warn!(error = %e, "message too big");
                    self.on_transport_error(now, TransportError::TooBig);
                    return Round::Progress;
                }
                Err(e @ (WsError::Protocol(_) | WsError::Utf8(_))) => {
                    tracing::warn!(error = %e, "transport violation");
                    self.on_transport_error(now, TransportError::Protocol);
                    return Round::Progress;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "connection failed");
                    self.lose_conn(now);
                    return Round::Progress;
                }
            };
            handled += 1;
            self.on_message(now, message);
            if !self.machine.is_reading() {
                // The connection closes the transport: `act` does, after what is queued.
                return Round::Progress;
            }
        }
        if handled > 0 {
            Round::Progress
        } else {
            Round::Idle
        }
    }

    /// Feeds one message to the connection; control messages other than a close are
    /// tungstenite's to answer.
    fn on_message(&mut self, now: Instant, message: Message) {
        let out = &self.shared;
        let sink = &mut |e| out.on_event(e);
        match &message {
            Message::Binary(b) => self.machine.handle_message(now, b, false, sink),
            Message::Text(t) => self.machine.handle_message(now, t.as_bytes(), true, sink),
            Message::Close(frame) => {
                let code = frame.as_ref().map(|f| CloseCode(u16::from(f.code)));
                tracing::info!(?code, "the server closed the WebSocket");
                self.machine.handle_peer_close(now, code, sink);
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }

    /// The transport refused what the server sent: the connection decides the close.
    fn on_transport_error(&mut self, now: Instant, error: TransportError) {
        let out = &self.shared;
        self.machine
            .handle_transport_error(now, error, &mut |e| out.on_event(e));
    }

    /// The connection is gone without a close handshake; the machine learns it is disconnected.
    fn lose_conn(&mut self, now: Instant) {
        self.conn = None;
        let out = &self.shared;
        self.machine
            .handle_disconnected(now, &mut |e| out.on_event(e));
    }

    /// Hands `ws` to a thread that sends what is queued and the close handshake.
    fn close_later(&mut self, ws: Box<Ws>, code: CloseCode) {
        self.closing.retain(|t| !t.is_finished());
        let span = tracing::Span::current();
        match std::thread::Builder::new()
            .name("eventwire-close".into())
            .spawn(move || {
                let _entered = span.enter();
                close_ws(ws, code);
            }) {
            Ok(thread) => self.closing.push(thread),
            Err(e) => tracing::debug!(error = %e, "cannot start a closing thread; socket dropped"),
        }
    }

    fn on_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Call(call) => {
                tracing::debug!(%call, "call");
                self.machine.answer(call);
            }
            Command::Close { reply } => {
                tracing::debug!("close requested");
                self.close_replies.extend(reply);
                let out = &self.shared;
                self.machine.close(now, &mut |e| out.on_event(e));
            }
        }
    }

    /// The machine closed for good: let the last connection close, end the event queue, then
    /// answer `close`. Commands still queued are dropped unanswered (their callers get
    /// `ClientError::Closed`) when the inbox goes with the driver.
    fn finish(mut self) {
        self.attempt = None;
        if let Some(ws) = self.conn.take() {
            self.close_later(ws, CloseCode::NORMAL);
        }
        for closing in self.closing.drain(..) {
            let _ = closing.join();
        }
        self.shared.end();
        // Commands that came meanwhile: only closes are answered.
        while let Some(woke) = self.inbox.poll() {
            if let Woke::Item(Input::Command(Command::Close { reply })) = woke {
                self.close_replies.extend(reply);
            }
        }
        tracing::debug!("client driver ended");
        for reply in self.close_replies.drain(..) {
            let _ = reply.send(());
        }
    }
}
