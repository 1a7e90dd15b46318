//! A COBS-over-TCP client for the chaos suite: the core's client machine driven over tokio TCP
//! streams (as `tests/tcp.rs` drives it), running until stopped, recording what it receives into
//! the oracle's [`Logs`] and publishing whether its session is open.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventwire_core::backoff::BackoffPolicy;
use eventwire_core::client::{Action, Client, ClientConfig, ClientEvent, ConnState};
use eventwire_core::codec::stream::{self, StreamDecoder};
use eventwire_core::frame::Position;
use eventwire_core::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::oracle::{record, Logs};

/// Decoder capacity: any frame the server may send.
const BUF: usize = 80 * 1024;

/// A running COBS client.
pub struct CobsClient {
    pub logs: Logs,
    pub open: Arc<AtomicBool>,
    /// Sessions opened so far.
    pub sessions: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl CobsClient {
    /// Starts a client of `addr` holding `rooms` from the start of `epoch`.
    pub fn start(addr: SocketAddr, id: u64, seed: u64, rooms: &[&str], epoch: u32) -> CobsClient {
        let logs = Logs::default();
        let open = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = watch::channel(false);
        let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
        let task = tokio::spawn(run(
            addr,
            id,
            seed,
            rooms,
            epoch,
            logs.clone(),
            open.clone(),
            sessions.clone(),
            stopped,
        ));
        CobsClient {
            logs,
            open,
            sessions,
            stop,
            task,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    addr: SocketAddr,
    id: u64,
    seed: u64,
    rooms: Vec<String>,
    epoch: u32,
    logs: Logs,
    open: Arc<AtomicBool>,
    sessions: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) {
    let origin = tokio::time::Instant::now();
    let now = || Instant::from_micros(origin.elapsed().as_micros() as u64);
    let to_tokio = |t: Instant| origin + Duration::from_micros(t.as_micros());
    let backoff = BackoffPolicy::new()
        .initial(Duration::from_millis(10))
        .cap(Duration::from_millis(200));
    let mut config = ClientConfig::new(id).backoff(backoff);
    config.connect_timeout = Duration::from_secs(5);
    let mut client: Client = Client::new(config, seed);
    for room in &rooms {
        client
            .subscribe_from(room, Position::new(epoch, 0))
            .unwrap();
    }
    let mut sink = |e: ClientEvent<'_>| {
        if let ClientEvent::Open { .. } = e {
            sessions.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(owned) = e.to_owned_event() {
            record(&logs, &owned);
        }
    };
    let mut sock: Option<TcpStream> = None;
    let mut decoder = Box::new(StreamDecoder::<BUF>::new());
    let (mut out, mut chunk) = (vec![0u8; BUF], vec![0u8; 4096]);
    client.connect(now(), &mut sink);
    while !*stopped.borrow() {
        open.store(client.state() == ConnState::Open, Ordering::Relaxed);
        let mut lost = false;
        while let Some(frame) = client.poll_transmit(now()) {
            let bytes = stream::encode(&frame, &mut out).unwrap();
            if let Some(s) = sock.as_mut() {
                lost |= s.write_all(bytes).await.is_err();
            }
        }
        if lost {
            sock = None;
            client.handle_disconnected(now(), &mut sink);
            continue;
        }
        if let Some(action) = client.poll_action() {
            sock = None;
            if action == Action::Connect {
                *decoder = StreamDecoder::new();
                let attempt =
                    tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr));
                match attempt.await {
                    Ok(Ok(s)) => {
                        sock = Some(s);
                        client.handle_connected(now(), &mut sink);
                    }
                    _ => client.handle_disconnected(now(), &mut sink),
                }
            }
            continue;
        }
        assert_ne!(
            client.state(),
            ConnState::Closed,
            "COBS client stopped for good"
        );
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
                        client.handle_disconnected(now(), &mut sink);
                    }
                    Ok(n) => {
                        let mut input = &chunk[..n];
                        while !input.is_empty() {
                            let (decoded, rest) = decoder.feed(input);
                            input = rest;
                            match decoded {
                                Some(Ok(frame)) => client.handle_frame(now(), &frame, &mut sink),
                                // A cut mid-frame leaves no partial frame behind: each attempt
                                // starts a new decoder, so a bad frame is the server's.
                                Some(Err(e)) => panic!("the server sent a bad frame: {e}"),
                                None => {}
                            }
                        }
                    }
                },
                _ = sleep => {}
                _ = stopped.changed() => {}
            },
            None => tokio::select! {
                _ = sleep => {}
                _ = stopped.changed() => {}
            },
        }
        client.handle_timeout(now(), &mut sink);
    }
}
