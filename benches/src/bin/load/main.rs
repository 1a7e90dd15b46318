//! The end-to-end load bench: eventwire over real sockets on 127.0.0.1, against a plain
//! tokio-tungstenite broadcast server (W1-W3) and an HTTP polling dashboard (W5), printing one
//! markdown table per workload. See `BENCHMARKS.md` at the repository root.
//!
//! ```text
//! cargo run --release -p eventwire-benches --bin load -- [--quick] [--only W1,W3]
//!     [--codec binary|json|both] [--idle N] [--w5-secs S]
//! ```
//!
//! Every server runs in its own child process (this binary, `load serve --kind ...`), started
//! afresh for each measurement, so that its CPU time and resident memory come from `/proc`
//! clean of the subscribers, which run here on a two-worker tokio runtime. Every wait is capped:
//! a workload that does not finish in time is reported as incomplete.
//!
//! | workload | what | figure |
//! |---|---|---|
//! | W1 | 1 subscriber, 200,000 events of 120 bytes emitted back to back | events/s received, all arrived? |
//! | W2 | 50 subscribers of one room, 20,000 events | deliveries/s across all, all arrived? |
//! | W3 | 10 subscribers, 1,000 events/s for 10 s | p50 / p99 / max emit-to-receipt latency |
//! | W4 | 10,000 idle connections, each joined to a room | server memory per connection |
//! | W5 | 50 simulated agents for 60 s, 20 dashboards | bytes on the wire, server CPU, vs polling once a second |

mod event;
mod serve;
mod subs;
mod swarm;
mod sys;

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use eventwire_core::codec::Codec;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};

use serve::{Kind, ServeArgs};
use subs::{Subscribers, System};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return match serve::main(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("load serve: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    sys::raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(opts));
    ExitCode::SUCCESS
}

const USAGE: &str = "usage: load [--quick] [--only W1,W2,W3,W4,W5] [--codec binary|json|both] \
[--idle N] [--w5-secs S] [--w5-tuned] [--w1-events N]\n       load serve --kind eventwire|baseline|polling [...]  (internal)";

/// What to run, and how big.
#[derive(Debug, Clone)]
struct Opts {
    quick: bool,
    only: Vec<u8>,
    codecs: Vec<Codec>,
    w1_events: u64,
    w2_subs: usize,
    w2_events: u64,
    w3_subs: usize,
    w3_rate: u64,
    w3_secs: u64,
    idle: usize,
    w5_dashboards: usize,
    w5_secs: u64,
    /// Adds W5's diagnostic row: larger batches and a 1 s metrics interval.
    w5_tuned: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = if quick {
            Opts {
                quick,
                only: vec![1, 2, 3, 4, 5],
                codecs: vec![Codec::Binary, Codec::Json],
                w1_events: 2_000,
                w2_subs: 10,
                w2_events: 500,
                w3_subs: 3,
                w3_rate: 200,
                w3_secs: 1,
                idle: 200,
                w5_dashboards: 4,
                w5_secs: 2,
                w5_tuned: false,
            }
        } else {
            Opts {
                quick,
                only: vec![1, 2, 3, 4, 5],
                codecs: vec![Codec::Binary, Codec::Json],
                w1_events: 200_000,
                w2_subs: 50,
                w2_events: 20_000,
                w3_subs: 10,
                w3_rate: 1_000,
                w3_secs: 10,
                idle: 10_000,
                w5_dashboards: 20,
                w5_secs: 60,
                w5_tuned: false,
            }
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .map(String::as_str)
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--quick" => {}
                "--only" => {
                    o.only = value()?
                        .split(',')
                        .map(|w| {
                            w.trim()
                                .trim_start_matches(['W', 'w'])
                                .parse::<u8>()
                                .ok()
                                .filter(|n| (1..=5).contains(n))
                                .ok_or_else(|| format!("unknown workload {w}"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--codec" => {
                    o.codecs = match value()? {
                        "binary" => vec![Codec::Binary],
                        "json" => vec![Codec::Json],
                        "both" => vec![Codec::Binary, Codec::Json],
                        other => return Err(format!("unknown codec {other}")),
                    }
                }
                "--idle" => {
                    o.idle = value()?.parse().map_err(|e| format!("--idle: {e}"))?;
                    if o.idle == 0 || o.idle > 15_000 {
                        return Err("--idle must be 1 to 15,000".into());
                    }
                }
                "--w5-secs" => {
                    o.w5_secs = value()?.parse().map_err(|e| format!("--w5-secs: {e}"))?;
                    if o.w5_secs == 0 || o.w5_secs > 600 {
                        return Err("--w5-secs must be 1 to 600".into());
                    }
                }
                "--w5-tuned" => o.w5_tuned = true,
                "--w1-events" => {
                    o.w1_events = value()?.parse().map_err(|e| format!("--w1-events: {e}"))?;
                    if o.w1_events == 0 || o.w1_events > 5_000_000 {
                        return Err("--w1-events must be 1 to 5,000,000".into());
                    }
                }
                "--help" | "-h" => return Err("help".into()),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(o)
    }
}

fn codec_name(codec: Codec) -> &'static str {
    if codec.is_text() {
        "json"
    } else {
        "binary"
    }
}

/// A server child process and its command channel.
struct ServerProc {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    port: u16,
    pid: u32,
}

impl ServerProc {
    async fn spawn(args: &ServeArgs) -> Result<ServerProc, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        // For profiling the server (`LOAD_SERVER_WRAPPER=heaptrack`): figures read from /proc
        // are then those of the wrapper process.
        let mut cmd = match std::env::var("LOAD_SERVER_WRAPPER") {
            Ok(w) => {
                let mut c = tokio::process::Command::new(w);
                c.arg(exe);
                c
            }
            Err(_) => tokio::process::Command::new(exe),
        };
        let mut child = cmd
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn server: {e}"))?;
        let pid = child.id().ok_or("server exited at once")?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut proc = ServerProc {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            port: 0,
            pid,
        };
        // A wrapper may print first; bounded by the reply timeout and 100 lines.
        let mut first = proc.reply(Duration::from_secs(10)).await?;
        for _ in 0..100 {
            if first.starts_with("PORT ") {
                break;
            }
            first = proc.reply(Duration::from_secs(10)).await?;
        }
        proc.port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("server said {first:?}"))?;
        Ok(proc)
    }

    async fn send(&mut self, cmd: &str) -> Result<(), String> {
        self.stdin
            .write_all(format!("{cmd}\n").as_bytes())
            .await
            .map_err(|e| format!("to server: {e}"))?;
        self.stdin.flush().await.map_err(|e| e.to_string())
    }

    async fn reply(&mut self, cap: Duration) -> Result<String, String> {
        match timeout(cap, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => Err("server exited".into()),
            Ok(Err(e)) => Err(format!("from server: {e}")),
            Err(_) => Err(format!("server did not answer within {cap:?}")),
        }
    }

    async fn call(&mut self, cmd: &str, cap: Duration) -> Result<String, String> {
        self.send(cmd).await?;
        self.reply(cap).await
    }

    fn cpu(&self) -> f64 {
        sys::cpu_seconds(self.pid).unwrap_or(f64::NAN)
    }

    fn rss_kib(&self) -> u64 {
        sys::rss_kib(self.pid).unwrap_or(0)
    }

    /// Events the baseline dropped for lagging receivers.
    async fn lost(&mut self) -> u64 {
        self.call("stats", Duration::from_secs(5))
            .await
            .ok()
            .and_then(|l| l.rsplit(' ').next().and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }

    async fn quit(mut self) {
        let _ = self.send("quit").await;
        if timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A markdown table.
struct Table {
    title: String,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    fn new(title: impl Into<String>, header: &[&'static str]) -> Table {
        Table {
            title: title.into(),
            header: header.to_vec(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn print(&self) {
        println!("### {}\n", self.title);
        println!("| {} |", self.header.join(" | "));
        println!(
            "|{}",
            self.header.iter().map(|_| "---|").collect::<String>()
        );
        for row in &self.rows {
            println!("| {} |", row.join(" | "));
        }
        println!();
        for note in &self.notes {
            println!("{note}");
        }
        if !self.notes.is_empty() {
            println!();
        }
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn ratio(ours: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 && ours.is_finite() => format!("{:.2}x", ours / b),
        _ => "-".into(),
    }
}

/// `ours / theirs` as "92.0% less (0.080x)" or "138% more (2.378x)".
fn versus(r: f64) -> String {
    if !r.is_finite() {
        "-".into()
    } else if r <= 1.0 {
        format!("{:.1}% less ({r:.3}x)", (1.0 - r) * 100.0)
    } else {
        format!("{:.0}% more ({r:.3}x)", (r - 1.0) * 100.0)
    }
}

fn yes(met: bool) -> String {
    if met { "yes" } else { "**no**" }.into()
}

/// W1 and W2: events emitted back to back to `subs` subscribers.
struct Fanout {
    delivered: u64,
    expected: u64,
    gaps: u64,
    lost: u64,
    secs: f64,
    server_cpu: f64,
    client_cpu: f64,
    error: Option<String>,
}

impl Fanout {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.secs.max(1e-9)
    }

    fn complete(&self) -> bool {
        self.delivered == self.expected && self.gaps == 0
    }

    fn arrived(&self) -> String {
        if self.complete() {
            "yes".into()
        } else {
            let mut s = format!(
                "no ({}/{})",
                thousands(self.delivered as f64),
                thousands(self.expected as f64)
            );
            if self.gaps > 0 {
                s.push_str(&format!(", {} gaps", self.gaps));
            }
            if self.lost > 0 {
                s.push_str(&format!(", {} lagged", thousands(self.lost as f64)));
            }
            s
        }
    }
}

/// Server settings of a fan-out run: history (ours) or channel (baseline) holding every event,
/// so that a subscriber falling behind during the burst catches up instead of losing events.
fn fanout_server(system: System, events: u64, batch_ms: Option<u64>) -> ServeArgs {
    match system {
        System::Baseline => ServeArgs {
            capacity: events as usize + 1024,
            ..ServeArgs::new(Kind::Baseline)
        },
        System::Eventwire(_) | System::Lean(_) => {
            let mut a = ServeArgs::new(Kind::Eventwire);
            a.history_events = (events as usize + 1024).max(a.history_events);
            // Both forms of each event (postcard and JSON) with their headers, and slack.
            a.history_bytes = (events as usize * 400 + (1 << 20)).max(a.history_bytes);
            a.batch_ms = batch_ms;
            a
        }
    }
}

async fn fanout(
    system: System,
    subs: usize,
    events: u64,
    rate: u64,
    latency: bool,
    batch_ms: Option<u64>,
    cap: Duration,
) -> Result<(Fanout, Vec<u64>), String> {
    let mut server = ServerProc::spawn(&fanout_server(system, events, batch_ms)).await?;
    let deadline = Instant::now() + Duration::from_secs(30) + cap;
    let subscribers = Subscribers::start(
        system,
        server.port,
        subs,
        events,
        latency,
        Duration::from_secs(30),
        deadline,
    )
    .await?;
    let me = std::process::id();
    let (cpu0, me0) = (server.cpu(), sys::cpu_seconds(me).unwrap_or(f64::NAN));
    let started = Instant::now();
    server.send(&format!("emit {events} {rate}")).await?;
    let results = subscribers.finish().await;
    let me1 = sys::cpu_seconds(me).unwrap_or(f64::NAN);
    let emitted = server.reply(Duration::from_secs(5)).await;
    let cpu1 = server.cpu();
    let lost = server.lost().await;
    server.quit().await;
    let last = results.iter().filter_map(|r| r.last).max();
    let mut latencies = Vec::new();
    let mut out = Fanout {
        delivered: 0,
        expected: events * subs as u64,
        gaps: 0,
        lost,
        secs: last.map_or(f64::NAN, |l| (l - started).as_secs_f64()),
        server_cpu: cpu1 - cpu0,
        client_cpu: me1 - me0,
        error: emitted.err(),
    };
    for r in results {
        out.delivered += r.received;
        out.gaps += r.gaps;
        latencies.extend(r.latencies);
        if out.error.is_none() {
            out.error = r.error;
        }
    }
    Ok((out, latencies))
}

fn systems(opts: &Opts) -> Vec<System> {
    std::iter::once(System::Baseline)
        .chain(opts.codecs.iter().map(|&c| System::Eventwire(c)))
        .chain(opts.codecs.iter().map(|&c| System::Lean(c)))
        .collect()
}

fn system_cells(system: System) -> [String; 2] {
    match system {
        System::Baseline => [
            "tokio-tungstenite broadcast".into(),
            "text (raw JSON)".into(),
        ],
        System::Eventwire(c) => ["eventwire".into(), codec_name(c).into()],
        System::Lean(c) => ["eventwire (lean subscriber)".into(), codec_name(c).into()],
    }
}

async fn run_fanout_table(opts: &Opts, w: u8) -> Table {
    let (subs, events) = if w == 1 {
        (1, opts.w1_events)
    } else {
        (opts.w2_subs, opts.w2_events)
    };
    let figure = if w == 1 {
        "events/s received"
    } else {
        "deliveries/s (all subscribers)"
    };
    let mut table = Table::new(
        format!(
            "W{w}: {subs} subscriber(s), {} events of {} bytes emitted back to back",
            thousands(events as f64),
            event::SIZE
        ),
        &[
            "workload",
            "system",
            "codec",
            figure,
            "all arrived",
            "server CPU s",
            "subscribers' CPU s",
            "ratio to baseline",
            "target",
            "met?",
        ],
    );
    let mut base = None;
    for system in systems(opts) {
        let [name, codec] = system_cells(system);
        eprintln!("W{w}: {name} {codec} ...");
        let cap = Duration::from_secs(if opts.quick { 20 } else { 90 });
        match fanout(system, subs, events, 0, false, None, cap).await {
            Ok((f, _)) => {
                let rate = f.rate();
                eprintln!(
                    "W{w}: {name} {codec}: {} /s, {} of {}{}",
                    thousands(rate),
                    f.delivered,
                    f.expected,
                    f.error
                        .as_deref()
                        .map_or(String::new(), |e| format!(" ({e})"))
                );
                let (r, target, met) = if system == System::Baseline {
                    base = f.complete().then_some(rate);
                    ("1.00x".into(), "-".into(), "-".into())
                } else if matches!(system, System::Lean(_)) {
                    (ratio(rate, base), "(diagnostic)".into(), "-".into())
                } else {
                    let met = f.complete() && base.is_some_and(|b| rate >= 3.0 * b);
                    (ratio(rate, base), "≥ 3x baseline".into(), yes(met))
                };
                table.rows.push(vec![
                    format!("W{w}"),
                    name,
                    codec,
                    thousands(rate),
                    f.arrived(),
                    format!("{:.2}", f.server_cpu),
                    format!("{:.2}", f.client_cpu),
                    r,
                    target,
                    met,
                ]);
            }
            Err(e) => {
                eprintln!("W{w}: {name} {codec}: failed: {e}");
                table.rows.push(vec![
                    format!("W{w}"),
                    name,
                    codec,
                    format!("failed: {e}"),
                    "no".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "**no**".into(),
                ]);
            }
        }
    }
    table.notes.push(
        "`eventwire` rows: subscribers are `eventwire_tokio::Client` (what an application gets: \
         an owned `Event` per event through a channel). `lean subscriber` rows (diagnostic): the \
         core's client machine over tokio-tungstenite with no per-event allocation, to tell the \
         server's limit from the client's. Subscribers and server share the machine's cores."
            .into(),
    );
    table
}

fn percentile(sorted: &[u64], p: usize) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[i] as f64
}

fn ms(ns: f64) -> String {
    if ns.is_finite() {
        format!("{:.3}", ns / 1e6)
    } else {
        "-".into()
    }
}

async fn run_latency_table(opts: &Opts) -> Table {
    let events = opts.w3_rate * opts.w3_secs;
    let mut table = Table::new(
        format!(
            "W3: {} subscribers, {} events/s for {} s (emit to receipt, ms)",
            opts.w3_subs, opts.w3_rate, opts.w3_secs
        ),
        &[
            "workload",
            "system",
            "codec",
            "p50 ms",
            "p99 ms",
            "max ms",
            "received",
            "p99 ratio to baseline",
            "target",
            "met?",
        ],
    );
    let mut runs: Vec<(System, Option<u64>)> = vec![(System::Baseline, None)];
    for &c in &opts.codecs {
        runs.push((System::Eventwire(c), None));
    }
    for &c in &opts.codecs {
        runs.push((System::Eventwire(c), Some(0)));
    }
    let mut base_p99 = None;
    for (system, batch_ms) in runs {
        let [mut name, codec] = system_cells(system);
        if batch_ms == Some(0) {
            name.push_str(" (batch_interval 0)");
        }
        eprintln!("W3: {name} {codec} ...");
        let cap = Duration::from_secs(opts.w3_secs + 15);
        match fanout(
            system,
            opts.w3_subs,
            events,
            opts.w3_rate,
            true,
            batch_ms,
            cap,
        )
        .await
        {
            Ok((f, mut lat)) => {
                lat.sort_unstable();
                let (p50, p99, max) = (
                    percentile(&lat, 50),
                    percentile(&lat, 99),
                    lat.last().map_or(f64::NAN, |&m| m as f64),
                );
                eprintln!(
                    "W3: {name} {codec}: p50 {} p99 {} max {} ms, {} of {}",
                    ms(p50),
                    ms(p99),
                    ms(max),
                    f.delivered,
                    f.expected
                );
                let (r, target, met) = if system == System::Baseline {
                    base_p99 = f.complete().then_some(p99);
                    ("1.00x".into(), "-".into(), "-".into())
                } else {
                    let met = f.complete() && p99 < 2e6 && base_p99.is_some_and(|b| p99 <= 1.5 * b);
                    (
                        ratio(p99, base_p99),
                        "p99 ≤ 1.5x baseline and < 2 ms".into(),
                        yes(met),
                    )
                };
                table.rows.push(vec![
                    "W3".into(),
                    name,
                    codec,
                    ms(p50),
                    ms(p99),
                    ms(max),
                    f.arrived(),
                    r,
                    target,
                    met,
                ]);
            }
            Err(e) => {
                eprintln!("W3: {name} {codec}: failed: {e}");
                table.rows.push(vec![
                    "W3".into(),
                    name,
                    codec,
                    format!("failed: {e}"),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "**no**".into(),
                ]);
            }
        }
    }
    table.notes.push(
        "`batch_interval 0` rows: the same server with `ServerConfig::intervals(0, 500 ms)`, \
         so ordinary events are never held for batching; the default (100 ms) trades latency \
         under sustained load for fewer, larger frames."
            .into(),
    );
    table
}

/// W4: server memory per idle connection.
struct Idle {
    conns: usize,
    held: u64,
    rss_before: u64,
    rss_after: u64,
    secs: f64,
}

async fn idle(opts: &Opts, codec: Codec) -> Result<Idle, String> {
    let args = ServeArgs {
        max_conns: opts.idle + 100,
        ..ServeArgs::new(Kind::Eventwire)
    };
    let mut server = ServerProc::spawn(&args).await?;
    // The room exists before the first measurement: only connections are counted.
    server.call("emit 1 0", Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = server.rss_kib();
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(opts.idle);
    let wave = 250;
    let mut opened = 0;
    let mut failure = None;
    while opened < opts.idle && failure.is_none() {
        let n = wave.min(opts.idle - opened);
        let (ready_tx, mut ready_rx) = mpsc::channel(n);
        for i in opened..opened + n {
            let (ready, stop, port) = (ready_tx.clone(), stop_rx.clone(), server.port);
            let far = Instant::now() + Duration::from_secs(3600);
            tasks.push(tokio::spawn(async move {
                let id = 0x30_0000 + i as u64;
                subs::lean_conn(port, codec, id, 0, false, far, ready, stop).await
            }));
        }
        drop(ready_tx);
        let joined = timeout(Duration::from_secs(30), async {
            let mut k = 0;
            while k < n && ready_rx.recv().await.is_some() {
                k += 1;
            }
            k
        })
        .await
        .unwrap_or(0);
        if joined < n {
            failure = Some(format!(
                "only {} of {n} connections of a wave joined (after {opened})",
                joined
            ));
        }
        opened += n;
    }
    let secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let held = server
        .call("stats", Duration::from_secs(5))
        .await
        .ok()
        .and_then(|l| l.split(' ').nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let rss_after = server.rss_kib();
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = timeout(Duration::from_secs(5), t).await;
    }
    server.quit().await;
    if let Some(f) = failure {
        return Err(f);
    }
    Ok(Idle {
        conns: opts.idle,
        held,
        rss_before,
        rss_after,
        secs,
    })
}

async fn run_idle_table(opts: &Opts) -> Table {
    let mut table = Table::new(
        format!(
            "W4: {} idle connections, each joined to one room",
            thousands(opts.idle as f64)
        ),
        &[
            "workload",
            "system",
            "codec",
            "connections held",
            "server RSS before → after",
            "per connection",
            "target",
            "met?",
        ],
    );
    for &codec in &opts.codecs {
        eprintln!("W4: eventwire {} ...", codec_name(codec));
        match idle(opts, codec).await {
            Ok(i) => {
                let per = (i.rss_after.saturating_sub(i.rss_before) * 1024) as f64
                    / i.conns.max(1) as f64;
                eprintln!(
                    "W4: eventwire {}: {} bytes per connection ({} held, opened in {:.1} s)",
                    codec_name(codec),
                    thousands(per),
                    i.held,
                    i.secs
                );
                table.rows.push(vec![
                    "W4".into(),
                    "eventwire".into(),
                    codec_name(codec).into(),
                    format!(
                        "{} of {}",
                        thousands(i.held as f64),
                        thousands(i.conns as f64)
                    ),
                    format!(
                        "{:.1} → {:.1} MiB",
                        i.rss_before as f64 / 1024.0,
                        i.rss_after as f64 / 1024.0
                    ),
                    format!("{:.1} KiB", per / 1024.0),
                    "< 16 KiB".into(),
                    yes(per < 16.0 * 1024.0 && i.held as usize >= i.conns),
                ]);
            }
            Err(e) => {
                eprintln!("W4: eventwire {}: failed: {e}", codec_name(codec));
                table.rows.push(vec![
                    "W4".into(),
                    "eventwire".into(),
                    codec_name(codec).into(),
                    format!("failed: {e}"),
                    "-".into(),
                    "-".into(),
                    "< 16 KiB".into(),
                    "**no**".into(),
                ]);
            }
        }
    }
    table.notes.push(
        "Idle connections: WebSocket upgrade, hello, join of one room, then heartbeats only; \
         opened 250 at a time by lean clients (the core's client machine over tokio-tungstenite). \
         Memory is the server process's VmRSS after minus before, divided by the connections."
            .into(),
    );
    table
}

/// W5: one dashboard system over the swarm.
struct Dash {
    up: u64,
    down: u64,
    cpu: f64,
    emitted: u64,
    received: u64,
    payload: u64,
    dashboards: usize,
    error: Option<String>,
}

/// W5's diagnostic settings: batches up to this many events, metrics at most once a second.
const TUNED_BATCH: u16 = 1000;

async fn dash(opts: &Opts, system: Option<Codec>, tuned: bool) -> Result<Dash, String> {
    let kind = if system.is_some() {
        Kind::Eventwire
    } else {
        Kind::Polling
    };
    let mut args = ServeArgs::new(kind);
    let max_batch = if tuned {
        args.max_batch = Some(TUNED_BATCH);
        args.metrics_ms = Some(1000);
        TUNED_BATCH
    } else {
        eventwire_core::client::ClientConfig::new(0).max_batch
    };
    let mut server = ServerProc::spawn(&args).await?;
    let proxy = subs::Proxy::start(server.port).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let n = opts.w5_dashboards;
    let mut tasks = Vec::with_capacity(n);
    match system {
        Some(codec) => {
            let (ready_tx, mut ready_rx) = mpsc::channel(n);
            for i in 0..n {
                let (ready, stop, port) = (ready_tx.clone(), stop_rx.clone(), proxy.port);
                tasks.push(tokio::spawn(async move {
                    subs::dashboard(port, codec, max_batch, i as u64, ready, stop).await
                }));
            }
            drop(ready_tx);
            let joined = timeout(Duration::from_secs(30), async {
                let mut k = 0;
                while k < n && ready_rx.recv().await.is_some() {
                    k += 1;
                }
                k
            })
            .await
            .unwrap_or(0);
            if joined < n {
                return Err(format!("only {joined} of {n} dashboards joined"));
            }
        }
        None => {
            for i in 0..n {
                let phase = Duration::from_millis(1000 * i as u64 / n as u64);
                let (stop, port) = (stop_rx.clone(), proxy.port);
                tasks.push(tokio::spawn(async move {
                    subs::poller(port, phase, stop).await
                }));
            }
        }
    }
    let cpu0 = server.cpu();
    let reply = server
        .call(
            &format!("swarm {}", opts.w5_secs),
            Duration::from_secs(opts.w5_secs + 30),
        )
        .await;
    let cpu1 = server.cpu();
    let _ = stop_tx.send(true);
    let mut out = Dash {
        up: 0,
        down: 0,
        cpu: cpu1 - cpu0,
        emitted: reply
            .as_deref()
            .ok()
            .and_then(|l| l.strip_prefix("done "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        received: 0,
        payload: 0,
        dashboards: n,
        error: reply.err(),
    };
    for t in tasks {
        if let Ok(Ok(r)) = timeout(Duration::from_secs(5), t).await {
            out.received += r.received;
            out.payload += r.payload_bytes;
            if out.error.is_none() {
                out.error = r.error;
            }
        }
    }
    // Let the proxy count the last bytes (close handshakes).
    tokio::time::sleep(Duration::from_millis(300)).await;
    (out.up, out.down) = proxy.totals();
    server.quit().await;
    Ok(out)
}

async fn run_dash_table(opts: &Opts) -> Table {
    let mut table = Table::new(
        format!(
            "W5: dashboard, 50 simulated agents, {} dashboards, {} s",
            opts.w5_dashboards, opts.w5_secs
        ),
        &[
            "workload",
            "system",
            "codec",
            "bytes on the wire (down + up)",
            "per dashboard per s",
            "server CPU s",
            "received",
            "traffic vs polling",
            "CPU vs polling",
            "target",
            "met?",
        ],
    );
    let mut base: Option<(f64, f64)> = None;
    let mut runs = vec![(None, false)];
    runs.extend(opts.codecs.iter().map(|&c| (Some(c), false)));
    if opts.w5_tuned {
        runs.push((Some(Codec::Binary), true));
    }
    for (system, tuned) in runs {
        let (name, codec) = match system {
            None => ("HTTP polling, 1/s, full state", "JSON".to_owned()),
            Some(c) if tuned => (
                "eventwire (max_batch 1000, metrics 1 s)",
                codec_name(c).to_owned(),
            ),
            Some(c) => ("eventwire", codec_name(c).to_owned()),
        };
        eprintln!("W5: {name} {codec} ({} s) ...", opts.w5_secs);
        match dash(opts, system, tuned).await {
            Ok(d) => {
                let bytes = (d.up + d.down) as f64;
                let per = bytes / (d.dashboards.max(1) as f64 * opts.w5_secs as f64);
                eprintln!(
                    "W5: {name} {codec}: {} bytes, {:.2} CPU s, {} received{}",
                    thousands(bytes),
                    d.cpu,
                    d.received,
                    d.error
                        .as_deref()
                        .map_or(String::new(), |e| format!(" ({e})"))
                );
                let received = match system {
                    None => format!("{} responses", thousands(d.received as f64)),
                    Some(_) => format!(
                        "{} events ({} emitted)",
                        thousands(d.received as f64),
                        thousands(d.emitted as f64)
                    ),
                };
                let (tr, cr, target, met) = match (system, base) {
                    (None, _) => {
                        base = Some((bytes, d.cpu));
                        ("-".into(), "-".into(), "-".into(), "-".into())
                    }
                    (Some(_), Some((b, c))) if b > 0.0 && c > 0.0 => {
                        let (less_bytes, less_cpu) = (1.0 - bytes / b, 1.0 - d.cpu / c);
                        (
                            versus(bytes / b),
                            versus(d.cpu / c),
                            "≥ 95% less traffic, ≥ 90% less CPU".into(),
                            yes(less_bytes >= 0.95 && less_cpu >= 0.90 && d.error.is_none()),
                        )
                    }
                    (Some(_), _) => (
                        "-".into(),
                        "-".into(),
                        "≥ 95% less traffic, ≥ 90% less CPU".into(),
                        "**no**".into(),
                    ),
                };
                table.rows.push(vec![
                    "W5".into(),
                    name.into(),
                    codec,
                    format!(
                        "{} ({} + {})",
                        thousands(bytes),
                        thousands(d.down as f64),
                        thousands(d.up as f64)
                    ),
                    format!("{} B", thousands(per)),
                    format!("{:.2}", d.cpu),
                    received,
                    tr,
                    cr,
                    target,
                    met,
                ]);
            }
            Err(e) => {
                eprintln!("W5: {name} {codec}: failed: {e}");
                let mut row = vec!["W5".into(), name.into(), codec, format!("failed: {e}")];
                row.extend(std::iter::repeat_n("-".to_owned(), 6));
                row.push("**no**".into());
                table.rows.push(row);
            }
        }
    }
    if opts.w5_tuned {
        table.notes.push(
            "`max_batch 1000, metrics 1 s` (diagnostic, `--w5-tuned`): server \
             `ServerConfig::max_batch(1000)` and `intervals(100 ms, 1 s)`, clients \
             `ClientConfig::max_batch(1000)`, so that a burst of 50 metrics does not fill a batch \
             and flush at once, and each agent's metrics go out at most once a second."
                .into(),
        );
    }
    table.notes.push(
        "Bytes are counted by a TCP forwarder between every dashboard and the server, both \
         directions: HTTP heads and bodies, WebSocket handshakes, frame headers and payloads \
         (not TCP/IP headers). Server CPU is the server process's user + system time over the \
         swarm's run; the same swarm simulation runs inside both servers."
            .into(),
    );
    table
}

async fn run(opts: Opts) {
    let started = std::time::Instant::now();
    println!("## eventwire load bench\n");
    println!("- machine: {}", sys::machine());
    println!(
        "- mode: {}; server in a child process per measurement (tokio multi-thread, {} workers); \
         subscribers in the driver (tokio, 2 workers); CPU from /proc/<pid>/stat at {} ticks/s",
        if opts.quick { "--quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sys::clock_ticks()
    );
    println!(
        "- events: {} bytes of JSON; eventwire subscribers are `eventwire_tokio::Client`; \
         history (ours) and broadcast channel (baseline) sized to hold a whole W1/W2 burst\n",
        event::SIZE
    );
    for &w in &[1u8, 2, 3, 4, 5] {
        if !opts.only.contains(&w) {
            continue;
        }
        let table = match w {
            1 | 2 => run_fanout_table(&opts, w).await,
            3 => run_latency_table(&opts).await,
            4 => run_idle_table(&opts).await,
            _ => run_dash_table(&opts).await,
        };
        table.print();
    }
    println!("_total time {:.0} s_", started.elapsed().as_secs_f64());
}
