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
    let mut child = Command::new(tail_binary())
        .args([proxy.url().as_str(), "system"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cargo");
    let stdout = lines(child.stdout.take().expect("stdout"));
    let stderr = lines(child.stderr.take().expect("stderr"));
    let pid = child.id();
    let mut child = Kill(child);

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

    // SIGTERM (what systemd and Kubernetes send) closes the connection normally and exits 0;
    // before `shutdown_signal`, it killed the process with no close frame.
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(sent.success());
    expect_line(&stderr, Duration::from_secs(10), "the normal close", |l| {
        l.starts_with("state: closed for good")
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "tail did not exit on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "tail exited with {status}");
    stop.store(true, Ordering::Relaxed);
    second.shutdown();
}

/// The `tail` example's binary, built first (it sits beside this test's `deps` folder).
fn tail_binary() -> std::path::PathBuf {
    let built = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "eventwire-sync", "--example", "tail"])
        .status()
        .expect("run cargo build");
    assert!(built.success(), "building the tail example failed");
    let exe = std::env::current_exe().expect("the test's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    profile.join("examples").join("tail")
}
