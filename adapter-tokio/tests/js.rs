//! The browser end, run from `cargo test`: the JavaScript client's own tests in Node
//! (`js/test/`, against the golden vectors and the real `dashboard` server), the type check of
//! its declarations, and the Chromium scenarios of the demo page (`tests/browser/`).
//!
//! Each runs `node` in a child process against the `dashboard` example built here. What they
//! need from the system: Node 20 or later (`node`), the browser tests' npm packages
//! (`npm ci` in `tests/browser/`, which `.ci/run` does), and Chromium (`/usr/bin/chromium`, Debian's
//! `chromium` package, or `EVENTWIRE_CHROMIUM`). Outside CI a missing one skips its suite with a
//! loud message; with `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

#[path = "shared/demo.rs"]
mod demo;

/// The suites start servers and a browser and measure time: one at a time, not beside each
/// other on a two-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (loudly) outside CI, fails in CI.
fn missing(what: &str) {
    let banner = "!".repeat(78);
    if in_ci() {
        panic!("{what}: required in CI (CI=true)");
    }
    eprintln!("{banner}\n!!! SKIPPED: {what}\n{banner}");
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("EVENTWIRE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.exists().then_some(path)
}

/// Runs `node args...` in `dir` with the demo's path in the environment; panics with the
/// output's tail if it fails.
fn node(dir: &Path, args: &[&str], chromium: Option<&Path>) {
    let mut command = Command::new("node");
    command
        .args(args)
        .current_dir(dir)
        .env("EVENTWIRE_DEMO_BIN", demo::build());
    if let Some(chromium) = chromium {
        command.env("EVENTWIRE_CHROMIUM", chromium);
    }
    let status = command.status().expect("run node");
    assert!(
        status.success(),
        "node {} in {} failed ({status}); its output is above",
        args.join(" "),
        dir.display()
    );
}

#[test]
fn javascript_client_in_node() {
    let _serial = serial();
    if !node_available() {
        return missing("node is not installed: the JavaScript client's tests did not run");
    }
    node(
        &crate_dir().join("js"),
        &["--experimental-websocket", "--test", "test/"],
        None,
    );
}

#[test]
fn javascript_declarations_type_check() {
    let browser = crate_dir().join("tests/browser");
    let tsc = browser.join("node_modules/typescript/bin/tsc");
    if !node_available() || !tsc.exists() {
        return missing("typescript is not installed (npm ci in adapter-tokio/tests/browser): the .d.ts was not checked");
    }
    let status = Command::new("node")
        .arg(&tsc)
        .args([
            "--strict",
            "--noEmit",
            "--target",
            "es2022",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            "--lib",
            "es2022,dom",
            "test/usage.ts",
        ])
        .current_dir(crate_dir().join("js"))
        .status()
        .expect("run tsc");
    assert!(
        status.success(),
        "eventwire.d.ts does not type-check test/usage.ts"
    );
}

#[test]
fn dashboard_in_chromium() {
    let _serial = serial();
    let browser = crate_dir().join("tests/browser");
    if !node_available() {
        return missing("node is not installed: the Chromium scenarios did not run");
    }
    if !browser.join("node_modules/playwright-core").exists() {
        return missing("playwright-core is not installed (npm ci in adapter-tokio/tests/browser): the Chromium scenarios did not run");
    }
    let Some(chromium) = chromium() else {
        return missing("Chromium is not installed (apt-get install chromium): the Chromium scenarios did not run");
    };
    node(
        &browser,
        &["--test", "--test-concurrency=1", "."],
        Some(&chromium),
    );
}
