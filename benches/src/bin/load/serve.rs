//! The server process (`load serve --kind ...`): the driver starts one per measurement, so that
//! the server's CPU time and memory can be read from `/proc` without the subscribers in them.
//!
//! It binds 127.0.0.1 on a free port, prints `PORT <n>` on stdout, then takes one command per
//! line on stdin and answers each with one line:
//!
//! | command | does | answer |
//! |---|---|---|
//! | `emit COUNT RATE` | emits COUNT events (RATE per second, 0: as fast as it can) | `done COUNT NANOS` |
//! | `swarm SECS` | runs the simulated swarm for SECS seconds | `done EVENTS` |
//! | `stats` | | `conns N lost M` |
//! | `quit` | exits | |
//!
//! Emission runs on the thread reading stdin, outside the tokio runtime (whose workers serve
//! the connections), the same way for every kind of server.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventwire_core::dashboard::{AGENTS_ROOM, SYSTEM_ROOM, TASKS_ROOM};
use eventwire_core::history::HistoryConfig;
use eventwire_core::hub::HubConfig;
use eventwire_core::server::ServerConfig as SessionConfig;
use eventwire_tokio::{Hub, Server, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::event;
use crate::swarm::{Board, Swarm};

/// Which server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `eventwire_tokio::Server` over a `Hub`.
    Eventwire,
    /// A plain tokio-tungstenite broadcast server: one event per text message, no protocol.
    Baseline,
    /// A minimal keep-alive HTTP/1.1 server answering `GET /api/state` with the full dashboard
    /// state as JSON.
    Polling,
}

impl Kind {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Eventwire => "eventwire",
            Kind::Baseline => "baseline",
            Kind::Polling => "polling",
        }
    }
}

/// Settings of a server process, passed as flags.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    /// Which server.
    pub kind: Kind,
    /// Events each room keeps (ours).
    pub history_events: usize,
    /// Bytes each room keeps (ours).
    pub history_bytes: usize,
    /// Batch interval of ordinary events, in ms (ours; `None`: the default 100 ms).
    pub batch_ms: Option<u64>,
    /// Batch interval of coalescable events, in ms (ours; `None`: the default 500 ms).
    pub metrics_ms: Option<u64>,
    /// Most events per batch (ours; `None`: the default 50).
    pub max_batch: Option<u16>,
    /// Connection limit (ours).
    pub max_conns: usize,
    /// Capacity of the broadcast channel (baseline).
    pub capacity: usize,
}

impl ServeArgs {
    /// Defaults for `kind`: the hub's and server's defaults.
    pub fn new(kind: Kind) -> ServeArgs {
        let history = HistoryConfig::new();
        ServeArgs {
            kind,
            history_events: history.max_events,
            history_bytes: history.max_bytes,
            batch_ms: None,
            metrics_ms: None,
            max_batch: None,
            max_conns: ServerConfig::default().max_connections,
            capacity: 1024,
        }
    }

    /// The flags that give these settings to `load serve`.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "serve".to_owned(),
            "--kind".into(),
            self.kind.name().into(),
            "--history-events".into(),
            self.history_events.to_string(),
            "--history-bytes".into(),
            self.history_bytes.to_string(),
            "--max-conns".into(),
            self.max_conns.to_string(),
            "--capacity".into(),
            self.capacity.to_string(),
        ];
        for (flag, value) in [
            ("--batch-ms", self.batch_ms),
            ("--metrics-ms", self.metrics_ms),
            ("--max-batch", self.max_batch.map(u64::from)),
        ] {
            if let Some(value) = value {
                v.push(flag.into());
                v.push(value.to_string());
            }
        }
        v
    }

    /// Parses the flags after `serve`.
    pub fn parse(args: &[String]) -> Result<ServeArgs, String> {
        let mut out = ServeArgs::new(Kind::Eventwire);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .as_str();
            let num = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--kind" => {
                    out.kind = match value {
                        "eventwire" => Kind::Eventwire,
                        "baseline" => Kind::Baseline,
                        "polling" => Kind::Polling,
                        other => return Err(format!("unknown kind {other}")),
                    }
                }
                "--history-events" => out.history_events = num()?,
                "--history-bytes" => out.history_bytes = num()?,
                "--batch-ms" => out.batch_ms = Some(num()? as u64),
                "--metrics-ms" => out.metrics_ms = Some(num()? as u64),
                "--max-batch" => out.max_batch = Some(num()?.clamp(1, u16::MAX as usize) as u16),
                "--max-conns" => out.max_conns = num()?,
                "--capacity" => out.capacity = num()?.max(1),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(out)
    }
}

/// What emits: our hub, or the baseline's broadcast channel.
enum Target {
    Hub(Hub),
    Broadcast(broadcast::Sender<Utf8Bytes>),
    Board(Arc<Board>),
}

/// Runs a server process until `quit` or the end of stdin.
pub fn main(args: &[String]) -> Result<(), String> {
    let args = ServeArgs::parse(args)?;
    crate::sys::raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let conns = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let (port, target, _server) = match args.kind {
        Kind::Eventwire => {
            let history = HistoryConfig::new()
                .max_events(args.history_events)
                .max_bytes(args.history_bytes);
            let hub = Hub::new(HubConfig::new().history(history));
            // The rooms subscribers join, declared as a service would: clients cannot create
            // rooms.
            hub.declare([event::ROOM, AGENTS_ROOM, TASKS_ROOM, SYSTEM_ROOM])
                .map_err(|e| format!("rooms: {e}"))?;
            let mut session = SessionConfig::new();
            let batch = args
                .batch_ms
                .map_or(session.batch_interval, Duration::from_millis);
            let metrics = args
                .metrics_ms
                .map_or(session.metrics_interval, Duration::from_millis);
            session = session.intervals(batch, metrics);
            if let Some(n) = args.max_batch {
                session = session.max_batch(n);
            }
            let config = ServerConfig::default()
                .session(session)
                .max_connections(args.max_conns);
            let server = rt
                .block_on(Server::bind("127.0.0.1:0", hub.clone(), config))
                .map_err(|e| format!("bind: {e}"))?;
            (server.local_addr().port(), Target::Hub(hub), Some(server))
        }
        Kind::Baseline => {
            let listener = rt
                .block_on(TcpListener::bind("127.0.0.1:0"))
                .map_err(|e| format!("bind: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let (tx, _) = broadcast::channel(args.capacity);
            rt.spawn(baseline_accept(
                listener,
                tx.clone(),
                conns.clone(),
                lost.clone(),
            ));
            (port, Target::Broadcast(tx), None)
        }
        Kind::Polling => {
            let listener = rt
                .block_on(TcpListener::bind("127.0.0.1:0"))
                .map_err(|e| format!("bind: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let board = Arc::new(Board::new());
            rt.spawn(http_accept(listener, board.clone(), conns.clone()));
            (port, Target::Board(board), None)
        }
    };
    let reply = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    reply(&format!("PORT {port}"));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["emit", count, rate] => {
                let count: u64 = count.parse().map_err(|e| format!("count: {e}"))?;
                let rate: u64 = rate.parse().map_err(|e| format!("rate: {e}"))?;
                let started = Instant::now();
                let sent = emit(&target, count, rate);
                reply(&format!("done {sent} {}", started.elapsed().as_nanos()));
            }
            ["swarm", secs] => {
                let secs: u64 = secs.parse().map_err(|e| format!("secs: {e}"))?;
                let mut swarm = Swarm::new(50);
                let duration = Duration::from_secs(secs);
                let conns = || conns.load(Ordering::Relaxed) as u32;
                let events = match &target {
                    Target::Hub(hub) => swarm.run(hub, duration, || hub.stats().connections as u32),
                    Target::Board(board) => swarm.run(&**board, duration, conns),
                    Target::Broadcast(_) => Ok(0),
                }
                .map_err(|e| format!("swarm: {e}"))?;
                reply(&format!("done {events}"));
            }
            ["stats"] => {
                let open = match &target {
                    Target::Hub(hub) => hub.stats().connections,
                    _ => conns.load(Ordering::Relaxed),
                };
                reply(&format!(
                    "conns {open} lost {}",
                    lost.load(Ordering::Relaxed)
                ));
            }
            ["quit"] => break,
            _ => reply(&format!("error unknown command {line:?}")),
        }
    }
    // Connections are not closed gracefully: the process exits.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// Emits `count` events, `rate` per second (0: back to back). Returns how many went out.
fn emit(target: &Target, count: u64, rate: u64) -> u64 {
    let started = Instant::now();
    let mut sent = 0;
    for seq in 0..count {
        if let Some(at) = seq.saturating_mul(1_000_000_000).checked_div(rate) {
            let due = started + Duration::from_nanos(at);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let payload = event::payload(seq, event::now_ns());
        let ok = match target {
            Target::Hub(hub) => hub
                .emit_raw(event::ROOM, event::KIND, &payload, None)
                .is_ok(),
            Target::Broadcast(tx) => {
                // No receiver is not a failure of the sender: the baseline drops it.
                let text = String::from_utf8(payload).unwrap_or_default();
                let _ = tx.send(Utf8Bytes::from(text));
                true
            }
            Target::Board(_) => false,
        };
        sent += u64::from(ok);
    }
    sent
}

/// The baseline: accept, subscribe to the broadcast at once (before the upgrade completes, so
/// that a client whose handshake finished misses nothing), forward every event as one text
/// message. Writes are fed while more events are ready and flushed once (at most 256 at a
/// time), as any tuned broadcast server does.
async fn baseline_accept(
    listener: TcpListener,
    tx: broadcast::Sender<Utf8Bytes>,
    conns: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let rx = tx.subscribe();
        let (conns, lost) = (conns.clone(), lost.clone());
        tokio::spawn(async move {
            conns.fetch_add(1, Ordering::Relaxed);
            let _ = baseline_conn(stream, rx, &lost).await;
            conns.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn baseline_conn(
    stream: TcpStream,
    mut rx: broadcast::Receiver<Utf8Bytes>,
    lost: &AtomicU64,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    use broadcast::error::{RecvError, TryRecvError};
    let ws = tokio_tungstenite::accept_async(stream).await?;
    let (mut sink, mut source) = ws.split();
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(text) => {
                    sink.feed(Message::Text(text)).await?;
                    for _ in 0..255 {
                        match rx.try_recv() {
                            Ok(text) => sink.feed(Message::Text(text)).await?,
                            Err(TryRecvError::Lagged(n)) => {
                                lost.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(_) => break,
                        }
                    }
                    sink.flush().await?;
                }
                Err(RecvError::Lagged(n)) => {
                    lost.fetch_add(n, Ordering::Relaxed);
                }
                Err(RecvError::Closed) => return Ok(()),
            },
            m = source.next() => match m {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The polling baseline's HTTP/1.1 server.
async fn http_accept(listener: TcpListener, board: Arc<Board>, conns: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (board, conns) = (board.clone(), conns.clone());
        tokio::spawn(async move {
            conns.fetch_add(1, Ordering::Relaxed);
            let _ = http_conn(stream, &board).await;
            conns.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Serves keep-alive requests: `GET /api/state` gets the state, anything else 404. Request
/// bodies are not expected (GET only) and a request with one ends the connection.
async fn http_conn(mut stream: TcpStream, board: &Board) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Ok(());
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if head.contains("\r\ncontent-length:") || head.contains("\r\ntransfer-encoding:") {
            return Ok(());
        }
        let (status, body) = if head.starts_with("get /api/state ") {
            ("200 OK", board.to_json())
        } else {
            ("404 Not Found", b"{\"error\":\"not found\"}".to_vec())
        };
        buf.drain(..end);
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        stream.write_all(&response).await?;
    }
}
