//! The driver's side of the sockets: subscribers of our server (the real `eventwire_tokio::Client`)
//! and of the baseline, W4's idle connections, W5's pollers, and the byte-counting proxy that
//! W5 puts between every dashboard and its server.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use eventwire_core::client::{Action, Client as Machine, ClientConfig, ClientEvent};
use eventwire_core::codec::Codec;
use eventwire_core::dashboard::{AGENTS_ROOM, SYSTEM_ROOM, TASKS_ROOM};
use eventwire_core::time::Instant as CoreInstant;
use eventwire_tokio::{Client, ClientOptions, Event};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::event;

/// Which system a subscriber talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// Our server, through `eventwire_tokio::Client` with this codec.
    Eventwire(Codec),
    /// Our server, through a lean subscriber: the core's client machine over tokio-tungstenite
    /// ([`lean_conn`]), to tell the server's cost from `Client`'s.
    Lean(Codec),
    /// The plain tokio-tungstenite broadcast server.
    Baseline,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct SubResult {
    /// Events received.
    pub received: u64,
    /// Gap notices (events the server announced as lost).
    pub gaps: u64,
    /// When the last event arrived.
    pub last: Option<Instant>,
    /// Receipt time minus emission time of each event, in nanoseconds (when asked for).
    pub latencies: Vec<u64>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Subscribers that connected and joined, running until they have `expected` events or
/// `deadline` passes.
pub struct Subscribers {
    tasks: Vec<tokio::task::JoinHandle<SubResult>>,
    /// Never sent: lean subscribers end at their count or deadline, but would take a dropped
    /// sender for a stop.
    _stop: watch::Sender<bool>,
}

impl Subscribers {
    /// Starts `n` subscribers of `system` at `port` and waits (at most `ready_cap`) until every
    /// one has joined: past that, an event emitted reaches all of them.
    pub async fn start(
        system: System,
        port: u16,
        n: usize,
        expected: u64,
        latency: bool,
        ready_cap: Duration,
        deadline: Instant,
    ) -> Result<Subscribers, String> {
        let (ready_tx, mut ready_rx) = mpsc::channel(n.max(1));
        // Lean subscribers end at their deadline or count; `stop` is never sent.
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let ready = ready_tx.clone();
            let url = format!("ws://127.0.0.1:{port}/");
            let stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut r = SubResult::default();
                let outcome = match system {
                    System::Lean(codec) => {
                        let id = 0x40_0000 + i as u64;
                        return lean_conn(
                            port, codec, id, expected, latency, deadline, ready, stop,
                        )
                        .await;
                    }
                    System::Eventwire(codec) => {
                        eventwire_sub(
                            &url, codec, i as u64, expected, latency, deadline, ready, &mut r,
                        )
                        .await
                    }
                    System::Baseline => {
                        baseline_sub(&url, expected, latency, deadline, ready, &mut r).await
                    }
                };
                if let Err(e) = outcome {
                    r.error = Some(e);
                }
                r
            }));
        }
        drop(ready_tx);
        let subs = Subscribers {
            tasks,
            _stop: stop_tx,
        };
        let wait_all = async {
            for _ in 0..n {
                if ready_rx.recv().await.is_none() {
                    return false;
                }
            }
            true
        };
        match timeout(ready_cap, wait_all).await {
            Ok(true) => Ok(subs),
            Ok(false) => {
                let results = subs.finish().await;
                let why = results
                    .iter()
                    .find_map(|r| r.error.clone())
                    .unwrap_or_else(|| "a subscriber stopped".into());
                Err(format!("subscribers did not join: {why}"))
            }
            Err(_) => {
                subs.abort();
                Err(format!("subscribers did not join within {ready_cap:?}"))
            }
        }
    }

    /// Waits for every subscriber to end (each stops at its deadline at the latest).
    pub async fn finish(self) -> Vec<SubResult> {
        let mut out = Vec::with_capacity(self.tasks.len());
        for t in self.tasks {
            out.push(t.await.unwrap_or_else(|e| SubResult {
                error: Some(format!("task: {e}")),
                ..SubResult::default()
            }));
        }
        out
    }

    fn abort(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

fn record(r: &mut SubResult, payload: &[u8], latency: bool) {
    r.received += 1;
    r.last = Some(Instant::now());
    if latency {
        if let Some(t) = event::emitted_at(payload) {
            r.latencies.push(event::now_ns().saturating_sub(t));
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn eventwire_sub(
    url: &str,
    codec: Codec,
    i: u64,
    expected: u64,
    latency: bool,
    deadline: Instant,
    ready: mpsc::Sender<()>,
    r: &mut SubResult,
) -> Result<(), String> {
    let options = ClientOptions::new(0x10_0000 + i)
        .codec(codec)
        .adapter(|a| a.polling(None));
    let mut client = Client::connect(url, options).map_err(|e| e.to_string())?;
    client
        .subscribe(event::ROOM)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match timeout_at(deadline, client.next()).await {
            Ok(Some(Event::Subscribed { .. })) => break,
            Ok(Some(Event::SubscribeFailed { code, .. })) => {
                return Err(format!("subscribe failed: {code:?}"))
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err("client closed before joining".into()),
            Err(_) => return Err("no subscribed before the deadline".into()),
        }
    }
    let _ = ready.send(()).await;
    while r.received < expected {
        match timeout_at(deadline, client.next()).await {
            Ok(Some(Event::Event { payload, .. })) => record(r, &payload, latency),
            Ok(Some(Event::Gap { .. })) => r.gaps += 1,
            Ok(Some(_)) => {}
            Ok(None) => {
                r.error = Some("client closed".into());
                break;
            }
            Err(_) => break,
        }
    }
    let _ = timeout(Duration::from_secs(2), client.close()).await;
    Ok(())
}

async fn baseline_sub(
    url: &str,
    expected: u64,
    latency: bool,
    deadline: Instant,
    ready: mpsc::Sender<()>,
    r: &mut SubResult,
) -> Result<(), String> {
    let (mut ws, _) = timeout_at(deadline, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let _ = ready.send(()).await;
    while r.received < expected {
        match timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => record(r, text.as_bytes(), latency),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => {
                r.error = Some(e.to_string());
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = timeout(Duration::from_secs(2), ws.close(None)).await;
    Ok(())
}

/// What a lean connection has seen so far.
#[derive(Default)]
struct Lean {
    joined: bool,
    closed: bool,
    result: SubResult,
}

fn on_lean_event(st: &mut Lean, e: ClientEvent<'_>, latency: bool) {
    match e {
        ClientEvent::Subscribed { .. } => st.joined = true,
        ClientEvent::Event { payload, .. } => record(&mut st.result, payload, latency),
        ClientEvent::Gap { .. } => st.result.gaps += 1,
        ClientEvent::Closed { .. } | ClientEvent::Reconnecting { .. } => st.closed = true,
        _ => {}
    }
}

/// A lean connection to our server: the WebSocket upgrade with the codec's subprotocol, then
/// the core's client machine driven directly (no `Client` task, no per-event allocation or
/// channel). Sends `()` on `ready` once joined; ends after `expected` events (never, for 0),
/// at `deadline`, or at `stop`.
///
/// W4 holds its idle connections with it (`expected` 0); W1/W2 use it as a diagnostic
/// subscriber that costs less than `eventwire_tokio::Client`.
#[allow(clippy::too_many_arguments)]
pub async fn lean_conn(
    port: u16,
    codec: Codec,
    id: u64,
    expected: u64,
    latency: bool,
    deadline: Instant,
    ready: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> SubResult {
    let mut st = Lean::default();
    if let Err(e) = lean_loop(
        port, codec, id, expected, latency, deadline, ready, &mut stop, &mut st,
    )
    .await
    {
        st.result.error = Some(e);
    }
    st.result
}

#[allow(clippy::too_many_arguments)]
async fn lean_loop(
    port: u16,
    codec: Codec,
    id: u64,
    expected: u64,
    latency: bool,
    deadline: Instant,
    ready: mpsc::Sender<()>,
    stop: &mut watch::Receiver<bool>,
    st: &mut Lean,
) -> Result<(), String> {
    let mut request = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(codec.subprotocol()),
    );
    let (mut ws, _) = timeout_at(deadline, tokio_tungstenite::connect_async(request))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let origin = std::time::Instant::now();
    let now = || CoreInstant::from_micros(origin.elapsed().as_micros() as u64);
    let mut machine: Machine<1, 1, 256> = Machine::new(ClientConfig::new(id), id);
    machine
        .subscribe(event::ROOM)
        .map_err(|e| format!("{e:?}"))?;
    machine.connect(now(), &mut |e| on_lean_event(st, e, latency));
    if machine.poll_action() != Some(Action::Connect) {
        return Err("machine did not ask to connect".into());
    }
    machine.handle_connected(now(), &mut |e| on_lean_event(st, e, latency));
    let mut buf = Vec::with_capacity(256);
    let mut told = false;
    loop {
        let mut sent = false;
        while let Some(frame) = machine.poll_transmit(now()) {
            buf.clear();
            codec
                .encode_into(&frame, &mut buf)
                .map_err(|e| format!("{e:?}"))?;
            let msg = if codec.is_text() {
                Message::Text(String::from_utf8_lossy(&buf).into_owned().into())
            } else {
                Message::Binary(buf.clone().into())
            };
            ws.feed(msg).await.map_err(|e| e.to_string())?;
            sent = true;
        }
        if sent {
            ws.flush().await.map_err(|e| e.to_string())?;
        }
        if machine.poll_action().is_some() {
            return Err("the machine dropped the connection".into());
        }
        if st.joined && !told {
            told = true;
            let _ = ready.send(()).await;
        }
        if st.closed {
            return Err("closed by the server".into());
        }
        if expected > 0 && st.result.received >= expected {
            let _ = timeout(Duration::from_secs(2), ws.close(None)).await;
            return Ok(());
        }
        let wake = machine
            .poll_timeout()
            .map(|at| at.saturating_duration_since(now()))
            .unwrap_or(Duration::from_secs(60));
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(Message::Binary(b))) => {
                    if let Ok(frame) = codec.decode(&b, 1 << 20) {
                        machine.handle_frame(now(), &frame, &mut |e| on_lean_event(st, e, latency));
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    if let Ok(frame) = codec.decode(t.as_bytes(), 1 << 20) {
                        machine.handle_frame(now(), &frame, &mut |e| on_lean_event(st, e, latency));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed by the server".into()),
            },
            _ = tokio::time::sleep(wake) => {
                machine.handle_timeout(now(), &mut |e| on_lean_event(st, e, latency));
            }
            // A dropped sender counts as a stop too (and ends the loop instead of spinning).
            _ = stop.changed() => return Ok(()),
            _ = tokio::time::sleep_until(deadline) => return Ok(()),
        }
    }
}

/// Bytes one way and the other through the [`Proxy`].
#[derive(Debug, Default)]
pub struct Bytes {
    /// From the dashboards to the server.
    pub up: AtomicU64,
    /// From the server to the dashboards.
    pub down: AtomicU64,
}

/// A TCP forwarder on 127.0.0.1 that counts every byte of every connection, both ways: HTTP
/// heads, WebSocket handshakes and frame headers included (TCP/IP headers are not).
pub struct Proxy {
    /// Where dashboards connect.
    pub port: u16,
    /// What went through so far.
    pub bytes: Arc<Bytes>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Result<Proxy, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let bytes = Arc::new(Bytes::default());
        let counted = bytes.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let bytes = counted.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let mut inbound = Counted {
                        inner: inbound,
                        bytes,
                    };
                    let mut outbound = outbound;
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Ok(Proxy { port, bytes, task })
    }

    /// Bytes up and down so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.bytes.up.load(Ordering::Relaxed),
            self.bytes.down.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The dashboard side of a proxied connection: reads are bytes up, writes bytes down.
struct Counted {
    inner: TcpStream,
    bytes: Arc<Bytes>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.bytes.up.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes.down.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What one W5 dashboard saw.
#[derive(Debug, Default)]
pub struct DashResult {
    /// Events received (ours) or state responses received (polling).
    pub received: u64,
    /// Payload bytes: event payloads (ours) or response bodies (polling).
    pub payload_bytes: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// W5 on our server: a dashboard joined to the agents, tasks and system rooms, until `stop`,
/// asking for batches of at most `max_batch` events. Sends `()` on `ready` once it holds all
/// three.
pub async fn dashboard(
    port: u16,
    codec: Codec,
    max_batch: u16,
    id: u64,
    ready: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> DashResult {
    let mut r = DashResult::default();
    let options = ClientOptions::new(0x20_0000 + id)
        .core(ClientConfig::new(0x20_0000 + id).max_batch(max_batch))
        .codec(codec)
        .adapter(|a| a.polling(None));
    let mut client = match Client::connect(&format!("ws://127.0.0.1:{port}/"), options) {
        Ok(c) => c,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    for room in [AGENTS_ROOM, TASKS_ROOM, SYSTEM_ROOM] {
        if let Err(e) = client.subscribe(room).await {
            r.error = Some(e.to_string());
            return r;
        }
    }
    let mut joined = 0;
    let mut told = false;
    loop {
        tokio::select! {
            e = client.next() => match e {
                Some(Event::Subscribed { .. }) => joined += 1,
                Some(Event::Event { payload, .. }) => {
                    r.received += 1;
                    r.payload_bytes += payload.len() as u64;
                }
                Some(_) => {}
                None => {
                    r.error = Some("client closed".into());
                    break;
                }
            },
            _ = stop.changed() => break,
        }
        if joined >= 3 && !told {
            told = true;
            let _ = ready.send(()).await;
        }
    }
    let _ = timeout(Duration::from_secs(2), client.close()).await;
    r
}

/// W5's polling dashboard: `GET /api/state` once a second on one keep-alive connection, the
/// first after `phase`, until `stop`.
pub async fn poller(port: u16, phase: Duration, mut stop: watch::Receiver<bool>) -> DashResult {
    let mut r = DashResult::default();
    let mut stream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(s) => s,
        Err(e) => {
            r.error = Some(e.to_string());
            return r;
        }
    };
    let _ = stream.set_nodelay(true);
    let request = format!(
        "GET /api/state HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\nUser-Agent: eventwire-load/0.1\r\nConnection: keep-alive\r\n\r\n"
    );
    let mut tick = tokio::time::interval_at(Instant::now() + phase, Duration::from_secs(1));
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let got = timeout(Duration::from_secs(5), async {
            stream.write_all(request.as_bytes()).await?;
            read_response(&mut stream, &mut buf).await
        })
        .await;
        match got {
            Ok(Ok(body)) => {
                r.received += 1;
                r.payload_bytes += body as u64;
            }
            Ok(Err(e)) => {
                r.error = Some(e.to_string());
                break;
            }
            Err(_) => {
                r.error = Some("response timed out".into());
                break;
            }
        }
    }
    r
}

/// Reads one response (head and `Content-Length` body); returns the body's length.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::io::{Error, ErrorKind};
    buf.clear();
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err(Error::new(ErrorKind::InvalidData, "head too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "no content-length"))?;
    if length > 16 * 1024 * 1024 {
        return Err(Error::new(ErrorKind::InvalidData, "body too large"));
    }
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(length)
}
