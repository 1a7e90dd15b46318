//! The `dashboard` example as a test subject: the binary `cargo test` builds beside the tests
//! (rebuilt here when a source is newer), started on a free port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

/// The demo's path: the binary `cargo test` built beside the tests when it is newer than every
/// source it is made of, else built here first. (Building it here when it is fresh would not be
/// free: `cargo build --example` and `cargo test` resolve features differently enough to rebuild
/// each other's artifacts.)
pub fn build() -> PathBuf {
    // target/<profile dir>/deps/<this test> -> target/<profile dir>/examples/dashboard
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let demo = dir.join("examples").join("dashboard");
    let built = std::fs::metadata(&demo).and_then(|m| m.modified()).ok();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [
        root.join("src"),
        root.join("examples/dashboard"),
        root.join("js/eventwire.js"),
        root.join("js/eventwire.d.ts"),
        root.join("Cargo.toml"),
        root.join("../core/src"),
        root.join("../core/Cargo.toml"),
        root.join("../Cargo.lock"),
    ];
    let newest = sources.iter().filter_map(|p| newest_in(p)).max();
    if built.is_none() || newest.is_some_and(|n| Some(n) > built) {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-q",
                "--profile",
                "test",
                "-p",
                "eventwire-tokio",
                "--example",
                "dashboard",
            ])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the dashboard example failed");
    }
    assert!(demo.exists(), "{} was not built", demo.display());
    demo
}

/// The latest modification time of a file, or of the files below a folder.
fn newest_in(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| newest_in(&entry.path()))
        .max()
}

/// A running demo; killed when dropped.
pub struct Demo {
    pub child: Child,
    /// `host:port`.
    pub addr: String,
}

impl Demo {
    /// Starts the demo with `args` on a free port and waits for its address.
    pub fn start(args: &[&str]) -> Demo {
        let mut child = Command::new(build())
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the dashboard example");
        let stdout = child.stdout.take().expect("its stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("its first line");
        let addr = line
            .trim()
            .strip_prefix("eventwire dashboard at http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Demo { child, addr }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
