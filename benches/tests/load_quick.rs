//! Runs the load bench in `--quick` mode end to end (real sockets, server child processes):
//! correctness, not timings. Every event of W1 and W2 must reach every subscriber of our
//! server, in both codecs; the other workloads must produce their figures.
use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_load"))
        .args(args)
        .output()
        .expect("run the load bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "load {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The table rows of `workload` for `system` (the second column).
fn rows<'a>(report: &'a str, workload: &str, system: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter(|l| l.starts_with(&format!("| {workload} | {system} |")))
        .collect()
}

#[test]
fn w1_w2_deliver_every_event_in_both_codecs() {
    let report = run(&["--quick", "--only", "W1,W2"]);
    for w in ["W1", "W2"] {
        let ours = rows(&report, w, "eventwire");
        assert_eq!(ours.len(), 2, "{w}: one row per codec:\n{report}");
        for codec in ["binary", "json"] {
            let row = ours
                .iter()
                .find(|r| r.contains(&format!("| {codec} |")))
                .unwrap_or_else(|| panic!("{w} {codec} row:\n{report}"));
            assert!(
                row.contains("| yes |"),
                "{w} {codec}: not all arrived: {row}"
            );
        }
        for row in rows(&report, w, "eventwire (lean subscriber)") {
            assert!(row.contains("| yes |"), "{w} lean subscriber: {row}");
        }
        let base = rows(&report, w, "tokio-tungstenite broadcast");
        assert_eq!(base.len(), 1, "{w}: the baseline row:\n{report}");
        assert!(!base[0].contains("failed"), "{w} baseline: {}", base[0]);
    }
}

#[test]
fn w3_w4_w5_produce_their_figures() {
    let report = run(&["--quick", "--only", "W3,W4,W5", "--w5-secs", "1"]);
    assert!(
        !report.contains("failed"),
        "a measurement failed:\n{report}"
    );
    // Baseline, both codecs, both codecs without batching.
    assert_eq!(rows(&report, "W3", "eventwire").len(), 2, "{report}");
    assert_eq!(
        rows(&report, "W3", "eventwire (batch_interval 0)").len(),
        2,
        "{report}"
    );
    for row in rows(&report, "W4", "eventwire") {
        assert!(
            row.contains("200 of 200"),
            "W4: every idle connection held: {row}"
        );
    }
    assert_eq!(rows(&report, "W5", "eventwire").len(), 2, "{report}");
    assert_eq!(
        rows(&report, "W5", "HTTP polling, 1/s, full state").len(),
        1,
        "{report}"
    );
}
