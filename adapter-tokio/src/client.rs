//! The reconnecting client: the core's client machine driven over tokio-tungstenite.
//!
//! [`Client::connect`] returns at once and spawns one task that owns the core's
//! [`eventwire_core::client::Client`] and the WebSocket. The handle talks to it through a bounded
//! command channel (each call answered on a oneshot), receives room events as a
//! [`Stream`] of [`Event`]s, and watches [`Status`] and link [`Quality`] through
//! `tokio::sync::watch`. The task makes no protocol decisions: it runs the core's loop.
//!
//! # The task's loop
//! 1. Check the clock: if the machine's deadline passed, `handle_timeout(now)`; if the
//!    fallback's probe is due, start it.
//! 2. Drain `poll_transmit`, encoding each frame into the connection's write queue.
//! 3. Act on `poll_action`: `Connect` starts an attempt (a future polled alongside everything
//!    else, so the machine's timers keep running); `Disconnect` drops a pending attempt or hands
//!    the socket, with its queued frames, to a short-lived closer task that sends them and the
//!    WebSocket close frame.
//! 4. Hand queued events to the application channel.
//! 5. Wait for whichever comes first: a message (decoded and fed to `handle_frame`), the write
//!    queue being flushed, an attempt finishing (`handle_connected` / `handle_disconnected`), the
//!    deadline, a command, or room in the event channel. Then go to 1.
//!
//! Reads and writes are separate branches of that wait (the socket is split), and the wait picks
//! among ready branches at random, so neither path starves the other. Writes are batched: queued
//! messages are fed to the socket and flushed once.
//!
//! # Long-polling fallback
//! After [`PollingOptions::after_failures`] failed WebSocket attempts in a row, `Connect` opens
//! an HTTP long-polling session instead (PROTOCOL.md section 1.4): to the machine it is a
//! connection like any other, and a WebSocket is tried again every
//! [`PollingOptions::upgrade_every`]. The core's [`Fallback`] makes every decision of it (its
//! probe deadline joins the machine's in the wait); `client/polling.rs` does the HTTP. Each switch is a reconnect with resume, lossless by
//! positions; [`Client::transport`] tells which transport is in use. On by default; see
//! [`TokioOptions::polling`].
//!
//! # Backpressure
//! The event channel is bounded ([`Options::events_capacity`]). Events one frame produces
//! that do not fit wait in the task, in order, and while any wait the task stops reading the
//! socket; TCP then pushes back on the server. Nothing is dropped. Timers keep running meanwhile:
//! a consumer that stalls for longer than the dead-link timeout (three heartbeats by default)
//! makes the client reconnect, and resuming from the last position delivered to the channel
//! loses nothing either.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), eventwire_tokio::ClientError> {
//! use eventwire_tokio::{Client, ClientOptions, Event};
//! use futures_util::StreamExt;
//!
//! let mut client = Client::connect("ws://127.0.0.1:9001/", ClientOptions::default())?;
//! client.subscribe("agents").await?;
//! while let Some(event) = client.next().await {
//!     if let Event::Event { room, position, kind, .. } = &event {
//!         println!("{room} {position} {kind}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::{pending, poll_fn, Future};
use std::pin::Pin;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use eventwire_core::client::handle::{self, OUTBOX_BYTES};
pub use eventwire_core::client::Status;
use eventwire_core::client::{
    Action, AdapterOptions, Call, Channel, ClientEvent, ConnState, Fallback, HandleConnection,
    HandleError, Level, Options, OwnedEvent, WsUrl,
};
use eventwire_core::codec::Codec;
use eventwire_core::frame::Position;
use eventwire_core::handshake;
use eventwire_core::rtt::Quality;
use eventwire_core::time::Instant;
use eventwire_core::{CloseCode, TransportError};
use futures_util::stream::{SplitSink, SplitStream, Stream, StreamExt};
use futures_util::SinkExt;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::clock::{entropy, Clock};
use crate::message;

mod polling;
/// When and how the client falls back to HTTP long-polling (PROTOCOL.md section 1.4): the
/// core's [`PollingConfig`](eventwire_core::client::PollingConfig). Set with
/// [`TokioOptions::polling`]; the fallback is on by default.
pub use eventwire_core::client::PollingConfig as PollingOptions;
/// The transport of the client's current (or last) session; see [`Client::transport`].
pub use eventwire_core::client::Transport;

/// Commands queued from the handle to the task; a caller waits when it is full.
const COMMANDS: usize = 64;
/// Bytes the socket buffers before writing; a flush always writes everything.
const WRITE_BUFFER: usize = 64 * 1024;
/// How long a closing connection may take to send its last frames and the close handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

type Ws = WebSocketStream<Box<dyn Io>>;
type Attempt = Pin<Box<dyn Future<Output = Result<(Ws, Response), WsError>> + Send>>;

/// The byte stream under the WebSocket: plain TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// How a [`Client`] connects and behaves: the core's client [`Options`] (codec, message limit,
/// event capacity, seed, the machine's configuration) with this client's own [`TokioOptions`].
/// Build it with `ClientOptions::new(client_id)` (or `default()`) and the setters; set the polling
/// fallback and TLS with [`Options::adapter`].
pub type ClientOptions = Options<TokioOptions>;

/// What the tokio client adds to the core's client [`Options`]: the long-polling fallback and
/// TLS. Set through [`Options::adapter`]:
/// `ClientOptions::default().adapter(|a| a.polling(None))`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TokioOptions {
    /// The HTTP long-polling fallback (PROTOCOL.md section 1.4); `None` turns it off. On by
    /// default, with [`PollingOptions::default`]: after 3 failed WebSocket attempts in a row the
    /// client polls `/eventwire/poll`, and tries a WebSocket again every 30 s. For `wss://` the
    /// polling requests are HTTPS, through `tls`.
    pub polling: Option<PollingOptions>,
    /// The TLS configuration of `wss://` connections (its root certificates decide which
    /// servers are trusted). `wss://` URLs need one: there are no built-in roots.
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl Default for TokioOptions {
    fn default() -> Self {
        TokioOptions {
            polling: Some(PollingOptions::default()),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// Default client ids and seeds: `clock::entropy`.
impl AdapterOptions for TokioOptions {
    fn fresh_id() -> u64 {
        entropy()
    }
}

impl TokioOptions {
    /// Sets the long-polling fallback: `PollingOptions`, or `None` for WebSocket only.
    pub fn polling(mut self, polling: impl Into<Option<PollingOptions>>) -> Self {
        self.polling = polling.into();
        self
    }

    /// Sets the TLS configuration of `wss://` connections; the server's certificate must be
    /// valid for the URL's host under its roots.
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let ca = eventwire_tokio::rustls::pki_types::CertificateDer::from(Vec::<u8>::new());
    /// use std::sync::Arc;
    /// use eventwire_tokio::{rustls, Client, ClientOptions};
    ///
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(ca)?;
    /// let tls = rustls::ClientConfig::builder()
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let options = ClientOptions::default().adapter(|a| a.tls(Arc::new(tls)));
    /// let client = Client::connect("wss://events.example.com/", options)?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: Arc<tokio_rustls::rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }
}

/// Why a client call failed: the core's [`HandleError`], which the blocking client returns too.
/// This client never returns [`HandleError::Spawn`] (it spawns a task, not a thread).
pub type ClientError = HandleError;

/// Something the application receives from the [`Client`] stream, in the order it happened
/// (the core's [`OwnedEvent`] with a shared payload). This client never yields
/// [`OwnedEvent::Status`]: it reports status changes through [`Client::status`].
pub type Event = OwnedEvent<Bytes>;

/// A request from the handle to the task: one of the core's calls, or closing.
enum Command {
    Call(Call<Oneshot>),
    Close { reply: oneshot::Sender<()> },
}

/// The core's calls answer on tokio's one-shot channels.
struct Oneshot;

impl Channel for Oneshot {
    type Sender<T> = oneshot::Sender<T>;

    fn send<T>(sender: oneshot::Sender<T>, value: T) {
        let _ = sender.send(value);
    }
}

/// A reconnecting eventwire client: a handle to the task that drives the connection.
///
/// Its room events are a [`Stream`] of [`Event`]s, which ends once the client is closed for good
/// and every event received before has been taken. Dropping the handle closes the client as
/// [`Client::close`] does (without waiting).
///
/// The machine it drives holds up to 64 rooms and 256 unacknowledged publishes of together up
/// to 256 KiB (room, kind and payload bytes).
pub struct Client {
    commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    status: watch::Receiver<Status>,
    quality: watch::Receiver<Quality>,
    transport: watch::Receiver<Transport>,
    codec: Codec,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("status", &*self.status.borrow())
            .field("quality", &*self.quality.borrow())
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a client for `url` (`ws://host[:port][/path]`, or `wss://` with the `tls` feature
    /// and `TokioOptions::tls`) and returns at once; the first connection attempt runs in a
    /// spawned task. Only the URL is checked here; connection
    /// failures show in [`Client::status`] and are retried with backoff.
    ///
    /// # Panics
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub fn connect(url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let machine = options.connection();
        let Options {
            core,
            codec,
            max_message,
            events_capacity,
            adapter:
                TokioOptions {
                    polling,
                    #[cfg(feature = "tls")]
                    tls,
                },
            ..
        } = options;
        let target = Target::new(
            url,
            #[cfg(feature = "tls")]
            tls,
        )?;
        let uri = &target.uri;
        let (commands_tx, commands_rx) = mpsc::channel(COMMANDS);
        let (events_tx, events_rx) = mpsc::channel(events_capacity.max(1));
        let (status_tx, status_rx) = watch::channel(Status::Connecting);
        let (quality_tx, quality_rx) = watch::channel(Quality::Good);
        let (transport_tx, transport_rx) = watch::channel(Transport::WebSocket);
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message))
            .write_buffer_size(WRITE_BUFFER)
            // The socket takes another message only once the buffer is written out, so it
            // holds at most WRITE_BUFFER and one message, and no message this client sends is
            // larger than its outbox plus framing.
            .max_write_buffer_size(WRITE_BUFFER + OUTBOX_BYTES + 64 * 1024);
        let span = tracing::info_span!("eventwire_client", url = %uri, client_id = core.client_id);
        let task = Task {
            machine,
            clock: Clock::new(),
            target,
            out_buf: Vec::new(),
            max_message,
            ws_config,
            commands: commands_rx,
            commands_open: true,
            out: Outputs {
                events: events_tx,
                pending: VecDeque::new(),
                status: status_tx,
                quality: quality_tx,
            },
            attempt: None,
            conn: None,
            closing: None,
            close_reply: None,
            poll: polling::Polling::new(Fallback::new(polling), transport_tx),
        };
        tokio::spawn(task.run().instrument(span));
        Ok(Client {
            commands: commands_tx,
            events: events_rx,
            status: status_rx,
            quality: quality_rx,
            transport: transport_rx,
            codec,
        })
    }

    /// Joins `room` at its live head (or keeps the position already held). The answer comes as
    /// [`Event::Subscribed`] or [`Event::SubscribeFailed`]; after a reconnect the room resumes
    /// from its last position.
    pub async fn subscribe(&self, room: &str) -> Result<(), ClientError> {
        self.subscribe_at(room, None).await
    }

    /// Joins `room`, resuming after `from` (a position saved from an earlier run).
    pub async fn subscribe_from(&self, room: &str, from: Position) -> Result<(), ClientError> {
        self.subscribe_at(room, Some(from)).await
    }

    async fn subscribe_at(&self, room: &str, from: Option<Position>) -> Result<(), ClientError> {
        self.request(|reply| Command::Call(Call::subscribe(room, from, reply)))
            .await?
            .map_err(ClientError::from_core)
    }

    /// Leaves `room`: nothing more of it is delivered. Returns whether it was held.
    pub async fn unsubscribe(&self, room: &str) -> Result<bool, ClientError> {
        self.request(|reply| Command::Call(Call::unsubscribe(room, reply)))
            .await
    }

    /// Publishes `payload`, serialised as JSON, to `room` and returns the publish id. It is sent
    /// now or after reconnecting, exactly once, and answered by [`Event::PublishAcked`] or
    /// [`Event::PublishFailed`] with that id. A full outbox refuses it here.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        room: &str,
        kind: &str,
        payload: &T,
    ) -> Result<u64, ClientError> {
        self.publish_bytes(room, kind, handle::json_payload(payload)?)
            .await
    }

    /// Publishes payload bytes as they are; with the JSON codec they must be JSON text.
    pub async fn publish_raw(
        &self,
        room: &str,
        kind: &str,
        payload: &[u8],
    ) -> Result<u64, ClientError> {
        self.publish_bytes(room, kind, handle::raw_payload(self.codec, payload)?)
            .await
    }

    async fn publish_bytes(
        &self,
        room: &str,
        kind: &str,
        payload: Vec<u8>,
    ) -> Result<u64, ClientError> {
        self.request(|reply| Command::Call(Call::publish(room, kind, payload, reply)))
            .await?
            .map_err(ClientError::from_core)
    }

    /// The rooms held, each with the last position delivered (save them to resume a later run
    /// with [`Client::subscribe_from`]).
    pub async fn positions(&self) -> Result<Vec<(String, Option<Position>)>, ClientError> {
        self.request(|reply| Command::Call(Call::Positions { reply }))
            .await
    }

    /// Closes the client for good: sends a normal close (protocol frame, then WebSocket close
    /// frame) and returns once the task ended, at most about a second later. Events not yet
    /// taken are dropped. Closing a client that already stopped returns at once.
    pub async fn close(self) {
        let Client {
            commands, events, ..
        } = self;
        // Nobody takes events any more: the task must not wait for room in the channel.
        drop(events);
        let (reply, done) = oneshot::channel();
        if commands.send(Command::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
    }

    /// The connection state; `borrow()` it, or `changed().await` / `wait_for` changes.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The link quality, from the round-trip times of pings and missed pongs.
    pub fn quality(&self) -> watch::Receiver<Quality> {
        self.quality.clone()
    }

    /// The transport of the current (or last) session: [`Transport::Polling`] while the client
    /// falls back to HTTP long-polling (see [`TokioOptions::polling`]).
    pub fn transport(&self) -> watch::Receiver<Transport> {
        self.transport.clone()
    }

    /// The next event, or `None` once the client stopped and every event was taken; the same
    /// as `StreamExt::next`.
    pub async fn recv(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| ClientError::Closed)?;
        answer.await.map_err(|_| ClientError::Closed)
    }
}

impl Stream for Client {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

/// Where each attempt connects, and for `wss://` how it secures the connection.
#[derive(Clone)]
struct Target {
    uri: Uri,
    /// The host to connect to (an IPv6 address without brackets) and the port.
    host: String,
    port: u16,
    /// The `Host` header value of polling requests.
    authority: String,
    /// The connector and the name the server's certificate must match (the URL's host).
    #[cfg(feature = "tls")]
    tls: Option<(
        tokio_rustls::TlsConnector,
        tokio_rustls::rustls::pki_types::ServerName<'static>,
    )>,
}

impl Target {
    /// Checks `url` (the core's `WsUrl`: `ws://` or `wss://` with a host) and that this client
    /// can open it: `wss://` needs the `tls` feature and a `config`.
    fn new(
        url: &str,
        #[cfg(feature = "tls")] config: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    ) -> Result<Target, ClientError> {
        let parts = WsUrl::parse(url).map_err(|e| ClientError::InvalidUrl(e.as_str()))?;
        #[cfg(feature = "tls")]
        let tls = match config {
            Some(config) if parts.secure => {
                let name =
                    tokio_rustls::rustls::pki_types::ServerName::try_from(parts.host.to_owned())
                        .map_err(|_| {
                            ClientError::InvalidUrl("the host is not a valid TLS server name")
                        })?;
                Some((tokio_rustls::TlsConnector::from(config), name))
            }
            Some(_) => None,
            None if parts.secure => {
                return Err(ClientError::InvalidUrl("wss needs TokioOptions::tls"))
            }
            None => None,
        };
        #[cfg(not(feature = "tls"))]
        if parts.secure {
            return Err(ClientError::InvalidUrl(
                "wss needs the `tls` feature of eventwire-tokio",
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
            authority: parts.authority.to_owned(),
            uri,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// Opens the byte stream of one attempt: TCP, then the TLS handshake for `wss://`.
    async fn open(self) -> std::io::Result<Box<dyn Io>> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
        // The task batches its writes, so Nagle's delay would only add latency.
        tcp.set_nodelay(true)?;
        #[cfg(feature = "tls")]
        if let Some((connector, name)) = self.tls {
            return Ok(Box::new(connector.connect(name, tcp).await?));
        }
        Ok(Box::new(tcp))
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

/// An open connection: the socket's halves and the messages waiting to be written.
struct Conn {
    sink: SplitSink<Ws, Message>,
    stream: SplitStream<Ws>,
    queue: VecDeque<Message>,
    /// Messages were handed to the socket since the last completed flush.
    unflushed: bool,
}

/// Feeds every queued message to the socket, then flushes. Cancel-safe: progress lives in
/// `queue` and the socket, so dropping the future loses nothing.
async fn write_queue(
    sink: &mut SplitSink<Ws, Message>,
    queue: &mut VecDeque<Message>,
) -> Result<(), WsError> {
    poll_fn(|cx| {
        while !queue.is_empty() {
            ready!(sink.poll_ready_unpin(cx))?;
            if let Some(message) = queue.pop_front() {
                sink.start_send_unpin(message)?;
            }
        }
        sink.poll_flush_unpin(cx)
    })
    .await
}

/// Sends what is queued and the WebSocket close frame, then waits for the peer's close, all
/// within [`CLOSE_TIMEOUT`].
async fn close_conn(mut conn: Conn, code: CloseCode) {
    let handshake = async {
        write_queue(&mut conn.sink, &mut conn.queue).await?;
        conn.sink
            .send(Message::Close(Some(message::close_frame(code, ""))))
            .await?;
        while let Some(message) = conn.stream.next().await {
            message?;
        }
        Ok::<(), WsError>(())
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, handshake).await {
        Ok(Ok(())) => tracing::debug!(%code, "connection closed"),
        Ok(Err(e)) => tracing::debug!(%code, error = %e, "close handshake failed"),
        Err(_) => tracing::debug!(%code, "close handshake timed out"),
    }
}

/// Where the machine's outputs go: events to the application channel (or, when it is full, to
/// `pending`), state to the watches.
struct Outputs {
    events: mpsc::Sender<Event>,
    /// Events that did not fit in the channel, oldest first; the socket is not read while any.
    pending: VecDeque<Event>,
    status: watch::Sender<Status>,
    quality: watch::Sender<Quality>,
}

impl Outputs {
    /// The machine's sink.
    fn on_event(&mut self, event: ClientEvent<'_>) {
        match event.log_level() {
            Some(Level::Warn) => tracing::warn!("{event}"),
            Some(Level::Info) => tracing::info!("{event}"),
            Some(Level::Debug) => tracing::debug!("{event}"),
            _ => {}
        }
        if let ClientEvent::Quality(quality) = event {
            self.quality.send_replace(quality);
            return;
        }
        let event = match event.to_owned_event() {
            Some(OwnedEvent::Status(status)) => {
                self.status.send_replace(status);
                return;
            }
            // Copied once: a slice of the message would pin tungstenite's whole read buffer
            // for as long as the application keeps the event.
            Some(event) => event.map_payload(Bytes::from),
            // Kinds a later core adds reach applications once this adapter maps them.
            None => return,
        };
        if self.pending.is_empty() {
            match self.events.try_send(event) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(event)) => self.pending.push_back(event),
            }
        } else {
            self.pending.push_back(event);
        }
    }

    /// Moves pending events into the channel while it has room.
    fn flush_pending(&mut self) {
        while let Some(event) = self.pending.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.pending.push_front(event);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    // Nobody takes events any more.
                    self.pending.clear();
                    return;
                }
            }
        }
    }
}

/// What ended a wait of the task.
enum Wake {
    Read(Option<Result<Message, WsError>>),
    Written(Result<(), WsError>),
    /// Boxed: an open socket is large, and every other wake is small.
    Attempt(Box<Result<(Ws, Response), WsError>>),
    Timer,
    Command(Option<Command>),
    Room(Result<mpsc::OwnedPermit<Event>, mpsc::error::SendError<()>>),
    /// The long-polling fallback (client/polling.rs).
    Poll(polling::PollWake),
}

/// The background task: the machine, the socket, and the channels to the handle.
struct Task {
    machine: Box<HandleConnection>,
    clock: Clock,
    target: Target,
    /// The message being written (or a polling request's frame).
    out_buf: Vec<u8>,
    /// The limit of a polling response body is `max_message` times the frames one may hold.
    max_message: usize,
    ws_config: WebSocketConfig,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    out: Outputs,
    /// The connection attempt under way, if any; dropping it abandons the attempt.
    attempt: Option<Attempt>,
    conn: Option<Conn>,
    /// The task closing the latest connection.
    closing: Option<JoinHandle<()>>,
    close_reply: Option<oneshot::Sender<()>>,
    /// The long-polling fallback: the core's decisions, its session's HTTP, the probe.
    poll: polling::Polling,
}

impl Task {
    /// Runs the client until the machine is closed for good.
    async fn run(mut self) {
        let now = self.clock.now();
        self.machine.connect(now, &mut |e| self.out.on_event(e));
        self.drive().await;
        self.finish().await;
    }

    async fn drive(&mut self) {
        loop {
            // The clock first: a deadline that passed while the task was busy fires now.
            let now = self.clock.now();
            if self.machine.poll_timeout().is_some_and(|t| t <= now) {
                self.machine
                    .handle_timeout(now, &mut |e| self.out.on_event(e));
            }
            self.probe_if_due(now);
            self.transmit(now);
            self.act(now);
            self.out.flush_pending();
            if self.machine.state() == ConnState::Closed {
                return;
            }
            let deadline = [self.machine.poll_timeout(), self.poll.core.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .map(|t| self.clock.to_tokio(t));
            let wake = self.wait(deadline).await;
            self.on_wake(wake);
        }
    }

    /// Drains the connection's messages into the socket's write queue (or its frames into the
    /// polling session's next requests).
    fn transmit(&mut self, now: Instant) {
        if self.poll.core.in_session() {
            while let Some(len) = self.machine.poll_transmit_body(now, &mut self.out_buf) {
                tracing::trace!(len, "queued for a poll request");
                self.poll.core.queue(std::mem::take(&mut self.out_buf));
            }
        } else {
            let text = self.machine.is_text();
            self.out_buf.clear();
            while let Some(len) = self.machine.poll_transmit(now, &mut self.out_buf) {
                let payload = Bytes::copy_from_slice(&self.out_buf);
                match self.conn.as_mut() {
                    Some(conn) => match message::from_payload(text, payload) {
                        Ok(message) => {
                            conn.queue.push_back(message);
                            conn.unflushed = true;
                        }
                        Err(e) => tracing::error!(error = %e, "a message is not UTF-8; dropped"),
                    },
                    None => tracing::trace!(len, "no connection for a message"),
                }
                self.out_buf.clear();
            }
        }
        self.send_polls();
    }

    /// Acts on `poll_action`.
    fn act(&mut self, now: Instant) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Connect => {
                    if !self.start_polling(now) {
                        self.start_attempt();
                    }
                }
                Action::Disconnect { code } => {
                    self.end_polling();
                    if self.attempt.take().is_some() {
                        self.poll.core.handle_ws_failed();
                        tracing::info!(%code, "connection attempt abandoned");
                    }
                    if let Some(conn) = self.conn.take() {
                        tracing::info!(%code, "disconnecting");
                        self.close_later(conn, code);
                    }
                }
            }
        }
    }

    fn start_attempt(&mut self) {
        if let Some(conn) = self.conn.take() {
            // The machine always disconnects first; keep at most one socket regardless.
            self.close_later(conn, CloseCode::NORMAL);
        }
        let request = request(&self.target.uri, self.machine.codec());
        let target = self.target.clone();
        let config = self.ws_config;
        let span = tracing::debug_span!("attempt");
        // One future for TCP, TLS and the upgrade: dropping it abandons the attempt wherever
        // it is.
        self.attempt = Some(Box::pin(
            async move {
                let request = request?;
                let stream = target.open().await?;
                tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await
            }
            .instrument(span),
        ));
    }

    /// Hands `conn` to a task that sends what is queued and the close handshake.
    fn close_later(&mut self, conn: Conn, code: CloseCode) {
        self.closing = Some(tokio::spawn(close_conn(conn, code).in_current_span()));
    }

    async fn wait(&mut self, deadline: Option<tokio::time::Instant>) -> Wake {
        let Task {
            conn,
            attempt,
            commands,
            commands_open,
            out,
            poll,
            ..
        } = self;
        let (stream, writer) = match conn.as_mut() {
            Some(Conn {
                sink,
                stream,
                queue,
                unflushed,
            }) => (Some(stream), Some((sink, queue, *unflushed))),
            None => (None, None),
        };
        // Backpressure: nothing is read while events wait for room in the channel.
        let readable = out.pending.is_empty();
        let events = (!readable).then(|| out.events.clone());
        let commands_open = *commands_open;
        tokio::select! {
            message = async {
                match stream {
                    Some(stream) if readable => stream.next().await,
                    _ => pending().await,
                }
            } => Wake::Read(message),
            written = async {
                match writer {
                    Some((sink, queue, unflushed)) if unflushed || !queue.is_empty() => {
                        write_queue(sink, queue).await
                    }
                    _ => pending().await,
                }
            } => Wake::Written(written),
            result = async {
                match attempt.as_mut() {
                    Some(attempt) => attempt.await,
                    None => pending().await,
                }
            } => Wake::Attempt(Box::new(result)),
            () = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => pending().await,
                }
            } => Wake::Timer,
            command = async {
                if commands_open {
                    commands.recv().await
                } else {
                    pending().await
                }
            } => Wake::Command(command),
            permit = async {
                match events {
                    Some(events) => events.reserve_owned().await,
                    None => pending().await,
                }
            } => Wake::Room(permit),
            wake = poll.wake() => Wake::Poll(wake),
        }
    }

    fn on_wake(&mut self, wake: Wake) {
        let now = self.clock.now();
        match wake {
            Wake::Read(Some(Ok(message))) => self.on_message(now, message),
            Wake::Read(Some(Err(WsError::Capacity(e)))) => {
                tracing::warn!(error = %e, "message too big");
                self.machine
                    .handle_transport_error(now, TransportError::TooBig, &mut |e| {
                        self.out.on_event(e)
                    });
            }
            Wake::Read(Some(Err(e @ (WsError::Protocol(_) | WsError::Utf8(_))))) => {
                tracing::warn!(error = %e, "transport violation");
                self.machine
                    .handle_transport_error(now, TransportError::Protocol, &mut |e| {
                        self.out.on_event(e)
                    });
            }
            Wake::Read(Some(Err(e))) => {
                tracing::warn!(error = %e, "connection failed");
                self.lose_conn(now);
            }
            Wake::Read(None) => {
                tracing::info!("connection ended");
                self.lose_conn(now);
            }
            Wake::Written(Ok(())) => {
                if let Some(conn) = self.conn.as_mut() {
                    conn.unflushed = !conn.queue.is_empty();
                }
            }
            Wake::Written(Err(e)) => {
                tracing::warn!(error = %e, "write failed");
                self.lose_conn(now);
            }
            Wake::Attempt(result) => self.on_attempt(now, *result),
            // Handled at the top of the loop, after reading the clock.
            Wake::Timer => {}
            Wake::Command(Some(command)) => self.on_command(now, command),
            Wake::Command(None) => {
                // Every handle is gone: close as `Client::close` does.
                tracing::debug!("client handle dropped");
                self.commands_open = false;
                self.machine.close(now, &mut |e| self.out.on_event(e));
            }
            Wake::Room(Ok(permit)) => {
                if let Some(event) = self.out.pending.pop_front() {
                    permit.send(event);
                }
            }
            // Nobody takes events any more.
            Wake::Room(Err(_)) => self.out.pending.clear(),
            Wake::Poll(wake) => self.on_poll(now, wake),
        }
    }

    fn on_attempt(&mut self, now: Instant, result: Result<(Ws, Response), WsError>) {
        self.attempt = None;
        let (ws, response) = match result {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(error = %e, "connection attempt failed");
                self.poll.core.handle_ws_failed();
                self.machine
                    .handle_disconnected(now, &mut |e| self.out.on_event(e));
                return;
            }
        };
        let selected = response.headers().get(SEC_WEBSOCKET_PROTOCOL);
        let (sink, stream) = ws.split();
        let conn = Conn {
            sink,
            stream,
            queue: VecDeque::new(),
            unflushed: false,
        };
        let codec = self.machine.codec();
        // tungstenite refuses most mismatches itself; this catches the rest.
        if let Err(code) = handshake::check_selected(codec, selected.map(HeaderValue::as_bytes)) {
            tracing::warn!(
                ?selected,
                expected = codec.subprotocol(),
                "the server did not select the subprotocol"
            );
            self.close_later(conn, code);
            self.poll.core.handle_ws_failed();
            self.machine
                .handle_disconnected(now, &mut |e| self.out.on_event(e));
            return;
        }
        if self.machine.state() != ConnState::Connecting {
            // Cannot happen (a disconnect drops the attempt); never hold a socket the machine
            // does not know about.
            self.close_later(conn, CloseCode::NORMAL);
            return;
        }
        tracing::info!("connected");
        self.poll.ws_opened();
        self.conn = Some(conn);
        self.machine
            .handle_connected(now, &mut |e| self.out.on_event(e));
    }

    /// Feeds one message to the connection; control messages other than a close are
    /// tungstenite's to answer.
    fn on_message(&mut self, now: Instant, message: Message) {
        let out = &mut self.out;
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

    /// The connection is gone without a close handshake; the machine learns it is disconnected.
    fn lose_conn(&mut self, now: Instant) {
        self.conn = None;
        self.machine
            .handle_disconnected(now, &mut |e| self.out.on_event(e));
    }

    fn on_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Call(call) => {
                tracing::debug!(%call, "call");
                self.machine.answer(call);
            }
            Command::Close { reply } => {
                tracing::debug!("close requested");
                self.close_reply = Some(reply);
                self.machine.close(now, &mut |e| self.out.on_event(e));
            }
        }
    }

    /// The machine closed for good: refuse further commands, let the last connection close,
    /// hand over the events still waiting, then answer `close`.
    async fn finish(&mut self) {
        self.commands.close();
        // Queued commands are dropped unanswered: their callers get `ClientError::Closed`.
        while self.commands.try_recv().is_ok() {}
        self.attempt = None;
        self.stop_polling();
        if let Some(conn) = self.conn.take() {
            self.close_later(conn, CloseCode::NORMAL);
        }
        if let Some(closer) = self.closing.take() {
            let _ = closer.await;
        }
        while let Some(event) = self.out.pending.pop_front() {
            if self.out.events.send(event).await.is_err() {
                break;
            }
        }
        tracing::debug!("client task ended");
        if let Some(reply) = self.close_reply.take() {
            let _ = reply.send(());
        }
    }
}
