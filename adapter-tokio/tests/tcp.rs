//! The plain TCP listener (COBS-framed binary frames) over real sockets on 127.0.0.1: the core
//! client machine driven by a small loop in this file, the core's `bare_loop` example as a real
//! process, hostile bytes, and the shared limits, hooks and shutdown.

use eventwire_tokio::Grants;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use eventwire_core::backoff::BackoffPolicy;
use eventwire_core::client::{Action, Client, ClientConfig, ClientEvent, ClientStats, ConnState};
use eventwire_core::code::CloseCode;
use eventwire_core::codec::stream::{self, StreamDecoder};
use eventwire_core::frame::Seq;
use eventwire_core::frame::{Frame, Hello, Position, PROTOCOL_VERSION};
use eventwire_core::server::ServerConfig as SessionConfig;
use eventwire_core::time::Instant;
use eventwire_core::DecodeError;
use eventwire_tokio::{Hub, ServerConfig, TcpServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);
const EPOCH: u32 = 7;
/// Decoder capacity on the test side: any frame the server may send.
const BUF: usize = 80 * 1024;

fn config() -> ServerConfig {
    ServerConfig::default().session(
        SessionConfig::new()
            .max_frame(4096)
            .heartbeat(Duration::from_millis(500))
            .handshake_timeout(Duration::from_secs(5))
            .intervals(Duration::from_millis(5), Duration::from_millis(20)),
    )
}

async fn start(config: ServerConfig) -> (TcpServer, Hub) {
    let hub = Hub::with_epoch(EPOCH, Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare(["feed", "other", "agents"]).unwrap();
    let server = TcpServer::bind("127.0.0.1:0", hub.clone(), config)
        .await
        .expect("bind");
    (server, hub)
}

/// What one received event was, owned.
#[derive(Debug, Clone, PartialEq)]
struct Got {
    position: Position,
    kind: String,
    payload: String,
}

fn record(got: &mut Vec<Got>, event: ClientEvent<'_>) {
    if let ClientEvent::Event {
        position,
        kind,
        payload,
        ..
    } = event
    {
        got.push(Got {
            position,
            kind: kind.to_owned(),
            payload: String::from_utf8_lossy(payload).into_owned(),
        });
    }
}

/// Drives a core client machine over tokio TCP streams until `want` events of `room` arrived
/// (resuming from the start of the epoch); after each count in `kills` events, the connection
/// is dropped abruptly (no close frame) and the machine is told it was lost.
async fn run_client(
    addr: SocketAddr,
    room: &str,
    want: usize,
    kills: &[usize],
) -> (Vec<Got>, ClientStats) {
    let origin = tokio::time::Instant::now();
    let now = || Instant::from_micros(origin.elapsed().as_micros() as u64);
    let to_tokio = |t: Instant| origin + Duration::from_micros(t.as_micros());
    let backoff = BackoffPolicy::new()
        .initial(Duration::from_millis(10))
        .cap(Duration::from_millis(100));
    let mut client: Client = Client::new(ClientConfig::new(77).backoff(backoff), 5);
    client
        .subscribe_from(room, Position::new(EPOCH, 0))
        .unwrap();
    let mut got = Vec::new();
    let mut kills = kills.iter().copied().peekable();
    let mut sock: Option<TcpStream> = None;
    let mut decoder = Box::new(StreamDecoder::<BUF>::new());
    let (mut out, mut chunk) = (vec![0u8; BUF], vec![0u8; 4096]);
    client.connect(now(), &mut |e| record(&mut got, e));
    while got.len() < want {
        let mut lost = false;
        while let Some(frame) = client.poll_transmit(now()) {
            let bytes = stream::encode(&frame, &mut out).unwrap();
            if let Some(s) = sock.as_mut() {
                lost |= s.write_all(bytes).await.is_err();
            }
        }
        if kills.peek().is_some_and(|&k| got.len() >= k) && client.state() == ConnState::Open {
            kills.next();
            lost = true;
        }
        if lost {
            sock = None;
            client.handle_disconnected(now(), &mut |e| record(&mut got, e));
            continue;
        }
        if let Some(action) = client.poll_action() {
            sock = None;
            if action == Action::Connect {
                *decoder = StreamDecoder::new();
                match TcpStream::connect(addr).await {
                    Ok(s) => {
                        sock = Some(s);
                        client.handle_connected(now(), &mut |e| record(&mut got, e));
                    }
                    Err(_) => client.handle_disconnected(now(), &mut |e| record(&mut got, e)),
                }
            }
            continue;
        }
        assert_ne!(client.state(), ConnState::Closed, "client stopped for good");
        let deadline = client.poll_timeout().map(to_tokio);
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        match sock.as_mut() {
            Some(s) => tokio::select! {
                read = s.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => {
                        sock = None;
                        client.handle_disconnected(now(), &mut |e| record(&mut got, e));
                    }
                    Ok(n) => {
                        let mut input = &chunk[..n];
                        while !input.is_empty() {
                            let (decoded, rest) = decoder.feed(input);
                            input = rest;
                            match decoded {
                                Some(Ok(frame)) => client
                                    .handle_frame(now(), &frame, &mut |e| record(&mut got, e)),
                                Some(Err(e)) => panic!("server sent a bad frame: {e}"),
                                None => {}
                            }
                        }
                    }
                },
                _ = sleep => {}
            },
            None => sleep.await,
        }
        client.handle_timeout(now(), &mut |e| record(&mut got, e));
    }
    (got, client.stats())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_client_resumes_across_killed_connections() {
    let (server, hub) = start(config()).await;
    const N: u64 = 300;
    hub.emit("feed", "tick", &1).unwrap();
    let emitter = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for n in 2..=N {
                hub.emit("feed", "tick", &n).unwrap();
                if n % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    // Also an unrelated room, which must not leak into "feed".
    hub.emit("other", "noise", &0).unwrap();
    let run = run_client(server.local_addr(), "feed", N as usize, &[40, 150]);
    let (got, stats) = tokio::time::timeout(LIMIT, run)
        .await
        .expect("all events in time");
    emitter.await.unwrap();
    let expected: Vec<Got> = (1..=N)
        .map(|n| Got {
            position: Position::new(EPOCH, n),
            kind: "tick".into(),
            payload: n.to_string(),
        })
        .collect();
    assert_eq!(got, expected, "every event once, in order");
    assert!(stats.sessions >= 3, "two kills, two resumes: {stats:?}");
    server.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_loop_example_receives_events_in_order() {
    let (server, hub) = start(config()).await;
    let addr = server.local_addr().to_string();
    // Emit for as long as the example runs (it may first have to be built); it joins at the
    // live head, so which five it gets depends on timing, but they must be consecutive.
    let emitter = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for n in 1u64.. {
                hub.emit("feed", "tick", &n).unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let child = tokio::process::Command::new(env!("CARGO"))
        .args([
            "run",
            "-q",
            "-p",
            "eventwire-core",
            "--example",
            "bare_loop",
            "--",
        ])
        .args([addr.as_str(), "feed", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cargo");
    // On timeout the future, which owns the child, is dropped, and `kill_on_drop` kills it
    // (`cargo run` execs the example in its place on Unix).
    let output = tokio::time::timeout(Duration::from_secs(600), child.wait_with_output())
        .await
        .expect("bare_loop finished in time")
        .expect("wait for bare_loop");
    emitter.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bare_loop failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "five events:\n{stdout}\nstderr:\n{stderr}");
    let first: u64 = lines[0].split(' ').nth(1).unwrap().parse().unwrap();
    for (i, line) in lines.iter().enumerate() {
        let n = first + i as u64;
        assert_eq!(*line, format!("feed {n} tick {n}"), "in order:\n{stdout}");
    }
    server.shutdown(Duration::from_millis(100)).await;
}

/// What the raw test client saw, owned.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Welcome,
    Close {
        code: u16,
        retry_after_ms: Option<u32>,
    },
    Other(String),
    Bad(DecodeError),
}

/// A raw TCP peer speaking COBS frames by hand.
struct Raw {
    s: TcpStream,
    decoder: Box<StreamDecoder<BUF>>,
    queue: VecDeque<Seen>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            s: TcpStream::connect(addr).await.expect("connect"),
            decoder: Box::new(StreamDecoder::new()),
            queue: VecDeque::new(),
        }
    }

    async fn send_frame(&mut self, frame: &Frame<'_>) {
        let mut buf = vec![0u8; BUF];
        let bytes = stream::encode(frame, &mut buf).unwrap();
        self.s.write_all(bytes).await.unwrap();
    }

    async fn hello(&mut self, token: Option<&str>) {
        self.send_frame(&Frame::Hello(Hello {
            version: PROTOCOL_VERSION,
            client_id: 9,
            token,
            max_frame: 65536,
            max_batch: 50,
            rooms: Seq::empty(),
        }))
        .await;
    }

    /// The next frame, or `None` at the end of the stream.
    async fn next(&mut self) -> Option<Seen> {
        loop {
            if let Some(seen) = self.queue.pop_front() {
                return Some(seen);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(LIMIT, self.s.read(&mut chunk))
                .await
                .expect("server answers in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            let mut input = &chunk[..n];
            while !input.is_empty() {
                let (decoded, rest) = self.decoder.feed(input);
                input = rest;
                self.queue.extend(decoded.map(|d| match d {
                    Ok(Frame::Welcome(_)) => Seen::Welcome,
                    Ok(Frame::Close(c)) => Seen::Close {
                        code: c.code.0,
                        retry_after_ms: c.retry_after_ms,
                    },
                    Ok(other) => Seen::Other(format!("{other:?}")),
                    Err(e) => Seen::Bad(e),
                }));
            }
        }
    }

    /// Reads to the end of the stream; the close frame that came last, if any.
    async fn closed_with(&mut self) -> Option<Seen> {
        let mut close = None;
        while let Some(seen) = self.next().await {
            assert!(
                !matches!(seen, Seen::Bad(_)),
                "server frames decode: {seen:?}"
            );
            if matches!(seen, Seen::Close { .. }) {
                close = Some(seen);
            }
        }
        close
    }

    async fn welcomed(&mut self) {
        loop {
            match self.next().await {
                Some(Seen::Welcome) => return,
                Some(Seen::Other(_)) => {}
                other => panic!("expected a welcome, got {other:?}"),
            }
        }
    }
}

fn close(code: CloseCode) -> Option<Seen> {
    Some(Seen::Close {
        code: code.0,
        retry_after_ms: None,
    })
}

/// Sends `bytes` (the server may stop reading early) and returns how the server closed.
async fn close_after(addr: SocketAddr, bytes: &[u8]) -> Option<Seen> {
    let mut raw = Raw::connect(addr).await;
    let _ = raw.s.write_all(bytes).await;
    raw.closed_with().await
}

#[tokio::test]
async fn hostile_bytes_get_the_documented_close() {
    let (server, _hub) = start(config()).await;
    let addr = server.local_addr();

    // An HTTP request on the COBS port: not a frame (COBS breaks), close 1002.
    let http = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n\0";
    assert_eq!(
        close_after(addr, http).await,
        close(CloseCode::PROTOCOL_ERROR)
    );
    // Random bytes with a frame end in the middle.
    let garbage = [0x02, 0xff, 0x00, 0x13, 0x37, 0xde, 0xad, 0x00, 0x05];
    assert_eq!(
        close_after(addr, &garbage).await,
        close(CloseCode::PROTOCOL_ERROR)
    );
    // A lone zero: an empty frame.
    assert_eq!(
        close_after(addr, &[0]).await,
        close(CloseCode::PROTOCOL_ERROR)
    );
    // A frame larger than session.max_frame (4 KiB) that never ends: close 1009 as soon as the
    // limit is passed, without waiting for a zero.
    let oversize = vec![0x41u8; 64 * 1024];
    assert_eq!(
        close_after(addr, &oversize).await,
        close(CloseCode::MESSAGE_TOO_BIG)
    );
    // The same after a valid hello and welcome.
    let mut raw = Raw::connect(addr).await;
    raw.hello(None).await;
    raw.welcomed().await;
    let _ = raw.s.write_all(&oversize).await;
    assert_eq!(raw.closed_with().await, close(CloseCode::MESSAGE_TOO_BIG));

    // The server keeps serving.
    let mut healthy = Raw::connect(addr).await;
    healthy.hello(None).await;
    healthy.welcomed().await;
    server.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn max_frame_above_64_kib_is_capped() {
    let session = SessionConfig::new().max_frame(1 << 20);
    let (server, _hub) = start(ServerConfig::default().session(session)).await;
    let oversize = vec![0x41u8; 200 * 1024];
    assert_eq!(
        close_after(server.local_addr(), &oversize).await,
        close(CloseCode::MESSAGE_TOO_BIG)
    );
    let mut healthy = Raw::connect(server.local_addr()).await;
    healthy.hello(None).await;
    healthy.welcomed().await;
    server.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn shutdown_and_connection_limit_apply() {
    let (server, _hub) = start(config().max_connections(1)).await;
    let addr = server.local_addr();
    let mut first = Raw::connect(addr).await;
    first.hello(None).await;
    first.welcomed().await;
    // Over the limit: told to come back later, with a hint.
    let mut second = Raw::connect(addr).await;
    assert_eq!(
        second.closed_with().await,
        Some(Seen::Close {
            code: CloseCode::TRY_AGAIN_LATER.0,
            retry_after_ms: Some(1000),
        })
    );
    // Shutdown: going away, reconnect after the hint; the stream then ends.
    let stop = tokio::spawn(server.shutdown(Duration::from_millis(1500)));
    assert_eq!(
        first.closed_with().await,
        Some(Seen::Close {
            code: CloseCode::GOING_AWAY.0,
            retry_after_ms: Some(1500),
        })
    );
    tokio::time::timeout(LIMIT, stop)
        .await
        .expect("shutdown returns")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn auth_hook_sees_the_token_and_no_headers() {
    let config = config().auth(|req| async move {
        if req.headers.is_empty() && req.token.as_deref() == Some("secret") {
            Ok(Grants::none())
        } else {
            Err(CloseCode::UNAUTHORIZED)
        }
    });
    let (server, _hub) = start(config).await;
    let mut denied = Raw::connect(server.local_addr()).await;
    denied.hello(Some("wrong")).await;
    assert_eq!(denied.closed_with().await, close(CloseCode::UNAUTHORIZED));
    let mut allowed = Raw::connect(server.local_addr()).await;
    allowed.hello(Some("secret")).await;
    allowed.welcomed().await;
    server.shutdown(Duration::from_millis(100)).await;
}
