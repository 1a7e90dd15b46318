//! eventwire inside an existing [axum] app (feature `axum`): the same connections as the
//! standalone [`Server`](crate::Server), on axum's own WebSocket upgrade, at a path of your
//! router, next to your other routes.
//!
//! [`EventwireService`] is the mount: [`EventwireService::route`] is the route to put at a path
//! (for example `/ws`), and [`EventwireService::shutdown`] tells every connected client to come
//! back later (close 1001 with a retry-after hint, as [`Server::shutdown`](crate::Server::shutdown)
//! does) and waits for them to go. Apps that route by state use [`handler`] with an
//! `EventwireService` in their state instead (through `FromRef`).
//!
//! The upgrade request is handled like the standalone server's, with the same
//! [`ServerConfig`]:
//!
//! - a browser `Origin` that `ServerConfig::origins` does not admit (by default, any but the
//!   server's own) gets 403;
//! - the subprotocol is the client's first supported choice in `Sec-WebSocket-Protocol`
//!   (`eventwire.v1`, binary; `eventwire.v1.json`, JSON text); offers with none supported get
//!   400; a request offering none gets binary;
//! - messages and frames are limited to `session.max_frame` (larger ones close with 1009), and
//!   the read and write buffers are `read_buffer` and `write_buffer`;
//! - connections count against `max_connections` (together with every other server of the same
//!   hub); one over the limit is told to retry later (close 1013);
//! - the upgrade request's headers go to the authentication hook, and the peer address is axum's
//!   `ConnectInfo<SocketAddr>` when the app is served with
//!   `into_make_service_with_connect_info::<SocketAddr>()` (`0.0.0.0:0` otherwise);
//! - after [`EventwireService::shutdown`] has begun, upgrade requests get 503 with `Retry-After`.
//!
//! `upgrade_timeout` does not bound request heads: the HTTP part belongs to the app's own server.
//!
//! [`EventwireService::poll_route`] is the HTTP long-polling fallback (PROTOCOL.md 1.4) to route
//! at a path of its own (`POST`, and the CORS preflight `OPTIONS` for pages on other allowed
//! origins), with the polling limits of [`ServerConfig`]; it serves each request exactly as the
//! standalone server does (the same code), a polling body's arrival bounded by
//! `upgrade_timeout` (408). [`EventwireService::client_route`]
//! serves the browser client `eventwire.js` ([`crate::js`]) at a path you pick.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! use std::time::Duration;
//!
//! use axum::routing::get;
//! use eventwire_tokio::axum::EventwireService;
//! use eventwire_tokio::{Hub, ServerConfig};
//!
//! let hub = Hub::new(Default::default());
//! let eventwire = EventwireService::new(hub.clone(), ServerConfig::default());
//! let app = axum::Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .route("/ws", eventwire.route());
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let serving = tokio::spawn(async move {
//!     let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
//!     axum::serve(listener, app).await
//! });
//! hub.emit("system", "system.note", &serde_json::json!({"text": "hello"})).unwrap();
//!
//! // Later: clients reconnect after a second, elsewhere or to the next run.
//! eventwire.shutdown(Duration::from_secs(1)).await;
//! serving.abort();
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::axum::body::Body;
use ::axum::extract::connect_info::ConnectInfo;
use ::axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use ::axum::extract::{Request, State};
use ::axum::http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, CONTENT_TYPE};
use ::axum::http::{HeaderMap, HeaderValue};
use ::axum::response::Response;
use ::axum::routing::{get, post, MethodRouter};
use ::axum::Extension;
use eventwire_core::codec::Codec;
use eventwire_core::hub::Counter;
use eventwire_core::hub::Hub as CoreHub;
use eventwire_core::server::polling::Kind;
use eventwire_core::server::{Connection, Framing, TransportError};
use eventwire_core::time::Instant;
use eventwire_core::CloseCode;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tracing::{debug, info, info_span, Instrument};

use crate::conn::{self, drive, Buffers};
use crate::hub::Hub;
use crate::hub::Tokio;
use crate::server::{new_shared, wait_for_connections, ServerConfig, ServerState};
use crate::wire::{Outgoing, Recv, Wire};
use crate::{http, polling};

/// eventwire mounted in an axum app: a cheap handle (clone it freely) to route, and to shut
/// down. See the [module docs](self).
#[derive(Clone)]
pub struct EventwireService {
    mount: Arc<Mount>,
}

struct Mount {
    shared: Arc<ServerState>,
    /// Kept as long as any connection runs: a dropped sender reads as shutdown.
    stop: watch::Sender<Option<Duration>>,
    /// Connections of this mount (the hub's counter may include other servers').
    open: AtomicU64,
}

impl std::fmt::Debug for EventwireService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventwireService")
            .field("connections", &self.mount.open.load(Ordering::Relaxed))
            .field("shutting_down", &self.mount.stop.borrow().is_some())
            .finish()
    }
}

impl EventwireService {
    /// A mount serving `hub` with `config`'s limits and hooks.
    pub fn new(hub: Hub, config: ServerConfig) -> Self {
        info!(origins = %config.origins, "eventwire mounted");
        let (shared, stop) = new_shared(hub, config);
        EventwireService {
            mount: Arc::new(Mount {
                shared,
                stop,
                open: AtomicU64::new(0),
            }),
        }
    }

    /// The hub it serves.
    pub fn hub(&self) -> &Hub {
        &self.mount.shared.hub
    }

    /// The route to mount at a path of a router of any state:
    /// `Router::new().route("/ws", service.route())`. It answers `GET` WebSocket upgrades.
    pub fn route<S>(&self) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        get(handler).with_state(self.clone())
    }

    /// The HTTP long-polling route (PROTOCOL.md 1.4) to mount at a path of a router of any
    /// state: `Router::new().route("/eventwire/poll", service.poll_route())`. It answers `POST`
    /// with the limits of [`ServerConfig`] (`max_poll_body`, checked from `Content-Length`
    /// before the body is read, whatever axum's `DefaultBodyLimit`; `max_poll_frames`,
    /// `long_poll`, `poll_idle`). Its sessions count toward `max_connections` and end on
    /// [`EventwireService::shutdown`] (held requests return the close frame with the hint),
    /// but `shutdown` waits only for WebSocket connections.
    pub fn poll_route<S>(&self) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        post(poll_handler)
            .options(preflight_handler)
            .with_state(self.clone())
    }

    /// The route serving the browser client ([`crate::js::CLIENT_JS`], an ES module) with `GET`,
    /// to mount at a path of your choice: `Router::new().route("/eventwire.js",
    /// EventwireService::client_route())`. The declarations are [`crate::js::CLIENT_DTS`].
    pub fn client_route<S>() -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        get(|| async {
            (
                [
                    (CONTENT_TYPE, crate::js::JS_CONTENT_TYPE),
                    (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                    (CACHE_CONTROL, "no-cache"),
                ],
                crate::js::CLIENT_JS,
            )
        })
    }

    /// Refuses new connections (503), tells every connected client to reconnect after
    /// `retry_after` (close 1001 with the hint, so clients resume elsewhere with nothing lost),
    /// and waits for this mount's connections to end (at most the write timeout). The rest of
    /// the app keeps serving; stop its server yourself afterwards.
    pub async fn shutdown(&self, retry_after: Duration) {
        let mount = &self.mount;
        mount.stop.send_replace(Some(retry_after));
        wait_for_connections(&mount.shared, || mount.open.load(Ordering::Acquire)).await;
    }
}

/// The axum handler of eventwire's upgrade route, for routers whose state gives an
/// [`EventwireService`] (`impl FromRef<AppState> for EventwireService`). Most apps use
/// [`EventwireService::route`] instead.
pub async fn handler(
    State(service): State<EventwireService>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let mount = service.mount;
    let shared = &mount.shared;
    if let Some(refusal) = conn::shutting_down(shared) {
        return refusal.map(Body::new);
    }
    let (codec, subprotocol) = match conn::decide(shared, &headers) {
        Ok(upgrade) => (upgrade.codec, upgrade.subprotocol),
        Err(refusal) => return http::response(refusal).map(Body::new),
    };
    let buffers = Buffers::of(&shared.config);
    let mut upgrade = upgrade
        .read_buffer_size(buffers.read)
        .write_buffer_size(0)
        .max_write_buffer_size(buffers.max_write)
        .max_message_size(buffers.max_message)
        .max_frame_size(buffers.max_message);
    if let Some(name) = subprotocol {
        upgrade.set_selected_protocol(HeaderValue::from_static(name));
    }
    let peer = peer(connect_info);
    let headers = http::header_pairs(&headers);
    // Counted from here, so that a failed upgrade (the callback dropped unrun) uncounts too.
    let (open, over_capacity) = Open::count(mount);
    upgrade
        .on_failed_upgrade(|e| debug!(error = %e, "upgrade failed"))
        .on_upgrade(move |socket| {
            async move {
                debug!(?codec, "connected");
                let shared = open.mount.shared.clone();
                drive(
                    AxumWire::new(socket, codec),
                    peer,
                    headers,
                    &shared,
                    over_capacity,
                )
                .await;
                drop(open);
                debug!("closed");
            }
            .instrument(info_span!("connection", %peer))
        })
}

/// The peer's address: axum's `ConnectInfo` when the app is served with it, else `0.0.0.0:0`.
fn peer(connect_info: Option<Extension<ConnectInfo<SocketAddr>>>) -> SocketAddr {
    connect_info.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0 .0)
}

/// The axum handler of eventwire's long-polling route, for routers whose state gives an
/// [`EventwireService`]. Most apps use [`EventwireService::poll_route`] instead.
pub async fn poll_handler(
    State(service): State<EventwireService>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Response {
    serve_poll(Kind::Exchange, &service, connect_info, request).await
}

/// The axum handler of the CORS preflight of the long-polling route, for routers whose state
/// gives an [`EventwireService`]; [`EventwireService::poll_route`] includes it.
pub async fn preflight_handler(
    State(service): State<EventwireService>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Response {
    serve_poll(Kind::Preflight, &service, connect_info, request).await
}

/// A polling request, served as the standalone server serves it (`polling::serve`).
async fn serve_poll(
    kind: Kind,
    service: &EventwireService,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Response {
    let peer = peer(connect_info);
    polling::serve(kind, request, peer, &service.mount.shared, false)
        .await
        .map(Body::new)
}

/// One counted connection; uncounts when dropped.
struct Open {
    mount: Arc<Mount>,
}

impl Open {
    /// Counts a connection; `true` when it is over the limit.
    fn count(mount: Arc<Mount>) -> (Open, bool) {
        let over = mount
            .shared
            .hub
            .counters()
            .admit(mount.shared.config.max_connections, 0);
        mount.open.fetch_add(1, Ordering::AcqRel);
        (Open { mount }, over)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let shared = &self.mount.shared;
        let counters = &shared.hub.counters();
        counters.connections.sub(1);
        if self.mount.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.idle.notify_waiters();
        }
    }
}

/// WebSocket through axum's upgrade: one frame per message, like `WsWire`.
pub(crate) struct AxumWire {
    ws: WebSocket,
    codec: Codec,
    out: Outgoing,
}

impl AxumWire {
    fn new(ws: WebSocket, codec: Codec) -> Self {
        AxumWire {
            ws,
            codec,
            out: Outgoing::default(),
        }
    }
}

/// Whether a read error is tungstenite refusing an oversize message (from its header, before
/// buffering it). axum wraps tungstenite's error opaquely and re-exports none of its types, so
/// this looks behind `axum::Error` for the tungstenite axum uses (and ours, should axum move to
/// it).
fn too_big(error: &::axum::Error) -> bool {
    let Some(inner) = std::error::Error::source(error) else {
        return false;
    };
    matches!(
        inner.downcast_ref::<axum_tungstenite::Error>(),
        Some(axum_tungstenite::Error::Capacity(_))
    ) || matches!(
        inner.downcast_ref::<tokio_tungstenite::tungstenite::Error>(),
        Some(tokio_tungstenite::tungstenite::Error::Capacity(_))
    )
}

impl Wire for AxumWire {
    type Unit = Message;

    fn framing(&self) -> Framing {
        Framing::Message(self.codec)
    }

    async fn feed(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let payload = self.out.payload(bytes);
        let message = if self.codec.is_text() {
            // The JSON form is written by serde_json: UTF-8 always.
            Message::Text(Utf8Bytes::try_from(payload).map_err(std::io::Error::other)?)
        } else {
            Message::Binary(payload)
        };
        self.ws.feed(message).await.map_err(std::io::Error::other)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.ws.flush().await.map_err(std::io::Error::other)
    }

    async fn close(&mut self, code: CloseCode) {
        let close = Message::Close(Some(CloseFrame {
            code: code.0,
            reason: code.name().into(),
        }));
        let _ = self.ws.send(close).await;
    }

    async fn recv(&mut self) -> Recv<Message> {
        match self.ws.next().await {
            Some(Ok(Message::Close(_))) | None => Recv::Ended,
            Some(Ok(msg @ (Message::Binary(_) | Message::Text(_)))) => Recv::Data(msg),
            // Pings are answered by tungstenite inside axum; pongs carry nothing for us.
            Some(Ok(_)) => Recv::Nothing,
            Some(Err(e)) if too_big(&e) => Recv::Violation(TransportError::TooBig),
            Some(Err(e)) => {
                debug!(error = %e, "websocket error");
                Recv::Violation(TransportError::Protocol)
            }
        }
    }

    fn input(conn: &mut Connection<Tokio>, now: Instant, hub: &CoreHub<Tokio>, unit: &Message) {
        match unit {
            Message::Binary(b) => conn.handle_message(now, hub, b, false),
            Message::Text(t) => conn.handle_message(now, hub, t.as_bytes(), true),
            _ => {}
        }
    }
}
