//! A fault-injecting TCP proxy for the chaos suite: listens on 127.0.0.1:0 and forwards every
//! connection to a target, with faults set at any moment through [`Proxy::set`] and friends:
//! latency and jitter per chunk (order kept), a bandwidth limit, a stall (nothing forwarded),
//! cuts (at once, or after a random number of bytes so that frames are cut in the middle, each
//! with a FIN or a reset), and refusal of new connections. Its choices come from a seeded
//! [`Rng`] (one stream per connection and direction, derived from the proxy's seed and the
//! connection's number), so the faults a seed draws replay; the timing of the sockets does not.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventwire_core::backoff::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The faults in force; the default forwards everything at once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Added to every chunk's delivery.
    pub latency: Duration,
    /// Up to this much more, drawn per chunk (delivery order is kept).
    pub jitter: Duration,
    /// Bytes per second each direction of each connection may carry; `None`: unlimited.
    pub bytes_per_sec: Option<u64>,
    /// Nothing is forwarded while set (the bytes wait; TCP pushes back once buffers fill).
    pub stalled: bool,
    /// New connections are accepted and reset at once.
    pub refusing: bool,
}

#[derive(Debug, Clone, Copy)]
struct Control {
    faults: Faults,
    target: SocketAddr,
    /// Bumped to cut every open connection at once.
    kill: u64,
    /// Bumped to cut every open connection after a random number of bytes (`1..=arm_max` in
    /// either direction), or after `ARM_DEADLINE` if they carry fewer.
    arm: u64,
    arm_max: u64,
}

/// How long an armed cut waits for its bytes before it cuts anyway.
const ARM_DEADLINE: Duration = Duration::from_millis(300);

/// What the proxy did, for the summary and the storm's measurements.
#[derive(Debug, Default)]
pub struct Tally {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    /// Connections cut at once.
    pub cuts: AtomicU64,
    /// Connections cut after a random number of bytes (in the middle of a chunk when it fell
    /// there).
    pub byte_cuts: AtomicU64,
    /// Armed cuts that met no bytes in time and cut at the deadline.
    pub idle_cuts: AtomicU64,
    pub bytes: AtomicU64,
    /// When each connection attempt arrived (accepted or refused).
    pub attempts: Mutex<Vec<Instant>>,
}

impl Tally {
    pub fn count(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    control: watch::Sender<Control>,
    pub tally: Arc<Tally>,
}

impl Proxy {
    /// Starts a proxy to `target`; `seed` decides its random choices.
    pub async fn start(target: SocketAddr, seed: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (control, rx) = watch::channel(Control {
            faults: Faults::default(),
            target,
            kill: 0,
            arm: 0,
            arm_max: 1,
        });
        let tally = Arc::new(Tally::default());
        let counts = tally.clone();
        tokio::spawn(async move {
            let mut number = 0u64;
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    // Out of file descriptors, say: try again shortly.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                counts.attempts.lock().unwrap().push(Instant::now());
                let now = *rx.borrow();
                if now.faults.refusing {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = inbound.set_zero_linger();
                    drop(inbound);
                    continue;
                }
                counts.accepted.fetch_add(1, Ordering::Relaxed);
                number += 1;
                let seed = seed ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                tokio::spawn(connection(inbound, rx.clone(), seed, counts.clone()));
            }
        });
        Proxy {
            addr,
            control,
            tally,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Replaces the faults in force (open connections follow at once).
    pub fn set(&self, faults: Faults) {
        self.control.send_modify(|c| c.faults = faults);
    }

    /// Sends new connections to `target`.
    pub fn retarget(&self, target: SocketAddr) {
        self.control.send_modify(|c| c.target = target);
    }

    /// Cuts every open connection now.
    pub fn cut_all(&self) {
        self.control.send_modify(|c| c.kill += 1);
    }

    /// Cuts every open connection after a random number of bytes, 1 to `max_bytes`, in
    /// whichever direction reaches its number first (mid-frame when it falls there).
    pub fn cut_all_within(&self, max_bytes: u64) {
        self.control.send_modify(|c| {
            c.arm += 1;
            c.arm_max = max_bytes.max(1);
        });
    }
}

/// One proxied connection: two pumps and the watch on cuts.
async fn connection(
    inbound: TcpStream,
    mut control: watch::Receiver<Control>,
    seed: u64,
    tally: Arc<Tally>,
) {
    let start = *control.borrow_and_update();
    let Ok(outbound) = TcpStream::connect(start.target).await else {
        let _ = inbound.set_zero_linger();
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let mut rng = Rng::new(seed);
    // Half the cuts are resets (linger 0), half FINs.
    if rng.up_to(1) == 0 {
        let _ = inbound.set_zero_linger();
        let _ = outbound.set_zero_linger();
    }
    let (ri, wi) = inbound.into_split();
    let (ro, wo) = outbound.into_split();
    let (cut_tx, cut_rx) = watch::channel(false);
    let up = pump(
        ri,
        wo,
        control.clone(),
        Rng::new(rng.next_u64()),
        cut_tx.clone(),
        tally.clone(),
    );
    let down = pump(
        ro,
        wi,
        control.clone(),
        Rng::new(rng.next_u64()),
        cut_tx.clone(),
        tally.clone(),
    );
    let mut cut = cut_rx;
    let watch_cuts = async {
        let mut armed_at: Option<Instant> = None;
        loop {
            let deadline = async {
                match armed_at {
                    Some(at) => tokio::time::sleep_until(at + ARM_DEADLINE).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = control.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *control.borrow_and_update();
                    if now.kill != start.kill {
                        tally.cuts.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if now.arm != start.arm && armed_at.is_none() {
                        armed_at = Some(Instant::now());
                    }
                }
                _ = deadline => {
                    tally.idle_cuts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                _ = cut.wait_for(|c| *c) => return,
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = watch_cuts => {}
    }
    // Dropping the halves closes both sockets (a reset where linger is 0).
}

/// Moves bytes one way, with the faults in force; returns when the source ends (after passing
/// the end on) or when it cuts the connection.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    control: watch::Receiver<Control>,
    mut rng: Rng,
    cut: watch::Sender<bool>,
    tally: Arc<Tally>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(16);
    let reading = {
        let control = control.clone();
        let mut rng = Rng::new(rng.next_u64());
        async move {
            let mut last_due = Instant::now();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let faults = control.borrow().faults;
                let mut due = Instant::now() + faults.latency;
                if !faults.jitter.is_zero() {
                    due += Duration::from_micros(rng.up_to(faults.jitter.as_micros() as u64));
                }
                last_due = last_due.max(due);
                if tx.send((last_due, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    };
    let writing = async move {
        let mut control = control;
        let mut arm_seen = control.borrow().arm;
        let mut budget: Option<u64> = None;
        while let Some((due, data)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            loop {
                let now = *control.borrow_and_update();
                if now.arm != arm_seen {
                    arm_seen = now.arm;
                    budget = Some(1 + rng.up_to(now.arm_max - 1));
                }
                if !now.faults.stalled {
                    break;
                }
                if control.changed().await.is_err() {
                    return;
                }
            }
            let faults = control.borrow().faults;
            if let Some(left) = budget {
                if data.len() as u64 >= left {
                    let _ = to.write_all(&data[..left as usize]).await;
                    tally.bytes.fetch_add(left, Ordering::Relaxed);
                    tally.byte_cuts.fetch_add(1, Ordering::Relaxed);
                    let _ = cut.send(true);
                    return;
                }
                budget = Some(left - data.len() as u64);
            }
            if to.write_all(&data).await.is_err() {
                let _ = cut.send(true);
                return;
            }
            tally.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            if let Some(rate) = faults.bytes_per_sec {
                let micros = data.len() as u64 * 1_000_000 / rate.max(1);
                tokio::time::sleep(Duration::from_micros(micros)).await;
            }
        }
        // The source ended: pass the end on.
        let _ = to.shutdown().await;
    };
    tokio::join!(reading, writing);
}
