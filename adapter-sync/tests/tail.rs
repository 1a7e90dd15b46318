//! The `tail` example as a process, against a tokio server (as `cargo run -p eventwire-tokio
//! --example server` runs it): one JSON line per event on stdout, in order; a server restart
//! shows on stderr as a disconnect and a reset notice, and the events go on in the new epoch.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Proxy, Side, TestHub, TestServer};

/// Lines of a child's output, read on a thread.
fn lines(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Emits a tick every 20 ms until stopped.
fn ticker(hub: TestHub) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        for n in 0u64.. {
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            hub.emit("system", &format!(r#"{{"tick":{n}}}"#));
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    stop
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next line matching `pred` within `limit` (the first wait may include building the
/// example).
fn expect_line(
    rx: &Receiver<String>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

#[test]
fn tail_prints_events_and_survives_a_restart() {
    let first = TestServer::start(Side::Tokio, 1, 1024);
    let proxy = Proxy::start(first.addr());
    let stop = ticker(first.hub());
    let mut child = Command::new(env!("CARGO"))
        .args([
            "run",
            "-q",
            "-p",
            "eventwire-sync",
            "--example",
            "tail",
            "--",
        ])
        .args([proxy.url().as_str(), "system"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cargo");
    let stdout = lines(child.stdout.take().expect("stdout"));
    let stderr = lines(child.stderr.take().expect("stderr"));
    let _child = Kill(child);

    // Five events of the first epoch, consecutive.
    let mut offsets = Vec::new();
    for _ in 0..5 {
        let line = expect_line(&stdout, Duration::from_secs(600), "an event", |_| true);
        let event: serde_json::Value = serde_json::from_str(&line).expect("one JSON object a line");
        assert_eq!(event["room"], "system", "{line}");
        assert_eq!(event["kind"], "test.event", "{line}");
        assert_eq!(event["epoch"], 1, "{line}");
        assert!(
            event["payload"]["tick"].is_u64(),
            "the payload as JSON: {line}"
        );
        offsets.push(event["offset"].as_u64().expect("an offset"));
    }
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "in order: {offsets:?}"
    );
    expect_line(&stderr, Duration::from_secs(10), "the open state", |l| {
        l == "state: open"
    });

    // The server restarts without its history.
    stop.store(true, Ordering::Relaxed);
    first.shutdown();
    let second = TestServer::start(Side::Tokio, 2, 1024);
    proxy.retarget(second.addr());
    proxy.cut_all();
    let stop = ticker(second.hub());
    expect_line(&stderr, Duration::from_secs(10), "the disconnect", |l| {
        l.starts_with("state: disconnected")
    });
    expect_line(&stderr, Duration::from_secs(10), "the reset notice", |l| {
        l.starts_with("gap: system was reset")
    });
    let line = expect_line(
        &stdout,
        Duration::from_secs(10),
        "an event of epoch 2",
        |l| l.contains(r#""epoch":2"#),
    );
    let event: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(
        event["offset"], 1,
        "the new epoch from its first event: {line}"
    );
    stop.store(true, Ordering::Relaxed);
    second.shutdown();
}
