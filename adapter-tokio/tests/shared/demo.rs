//! The `dashboard` example as a test subject: built with the test profile (the artifacts
//! `cargo test` already has) and started on a free port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Builds the demo and returns its path.
pub fn build() -> PathBuf {
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
    // target/<profile dir>/deps/<this test> -> target/<profile dir>/examples/dashboard
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let demo = dir.join("examples").join("dashboard");
    assert!(demo.exists(), "{} was not built", demo.display());
    demo
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
