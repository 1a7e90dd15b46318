//! Replays the fuzz corpus on the stable toolchain, through the fuzz targets' own checks.
//!
//! The seeds in `fuzz/corpus/<target>/` and the minimised crash inputs in
//! `fuzz/regressions/<target>/` run through the invariant checks of `fuzz/src/lib.rs` (included
//! below, so the checks are written once), so `cargo test` keeps every bug the fuzzer ever found
//! fixed without needing nightly or cargo-fuzz. See `docs/FUZZING.md`.
//!
//! The seeds of the operation-sequence targets (`client_machine`, `server_session`, `history`,
//! `connection`)
//! are built from the golden vectors by `fuzz/src/seeds.rs`: `generate_seeds` (ignored; run it
//! with `--ignored` after changing a vector or a script) writes them, and
//! `seed_corpus_is_generated` checks that every one is committed as built.

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::fs;
use std::path::{Path, PathBuf};

const TARGETS: [&str; 7] = [
    "decode_binary",
    "decode_json",
    "stream",
    "client_machine",
    "server_session",
    "history",
    "connection",
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of `dir` (hidden ones skipped), sorted, with their bytes.
fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        assert!(path.is_file(), "{} is not a file", path.display());
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files.push((path, bytes));
    }
    files.sort();
    files
}

/// The seed corpus of `target` (which must exist and not be empty), then its regression files.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let corpus = fuzz_dir().join("corpus").join(target);
    let mut files = files_in(&corpus);
    assert!(
        !files.is_empty(),
        "the seed corpus {} is empty",
        corpus.display()
    );
    let regressions = fuzz_dir().join("regressions").join(target);
    if regressions.exists() {
        files.extend(files_in(&regressions));
    }
    files
}

#[test]
fn regressions_are_filed_under_a_target() {
    let dir = fuzz_dir().join("regressions");
    let Ok(entries) = fs::read_dir(&dir) else {
        return; // No regression yet.
    };
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        assert!(
            path.is_dir() && TARGETS.contains(&name.as_ref()),
            "{} is not replayed: regression files go in fuzz/regressions/<target>/, targets {TARGETS:?}",
            path.display()
        );
    }
}

#[test]
fn decode_binary_corpus() {
    let mut frames = 0;
    for (path, data) in inputs("decode_binary") {
        eprintln!("replaying {}", path.display());
        frames += usize::from(checks::check_binary(&data));
    }
    assert!(frames > 0, "no binary corpus file decodes to a frame");
}

#[test]
fn decode_json_corpus() {
    let mut frames = 0;
    for (path, data) in inputs("decode_json") {
        eprintln!("replaying {}", path.display());
        frames += usize::from(checks::check_json(&data));
    }
    assert!(frames > 0, "no JSON corpus file decodes to a frame");
}

/// A stream file holds the fuzz target's raw input: cut points, then the stream's bytes (see
/// `checks::split_stream_input`). Each is decoded in one chunk and compared with the file's own
/// cuts, byte by byte, every single cut position, and chunks of sizes around the capacity.
#[test]
fn stream_corpus() {
    let mut frames = 0;
    for (path, input) in inputs("stream") {
        eprintln!("replaying {}", path.display());
        let (raw_cuts, data) = checks::split_stream_input(&input);
        frames += checks::check_stream(data, &checks::cut_points(data.len(), &raw_cuts));
        let bytewise: Vec<usize> = (1..data.len()).collect();
        checks::check_stream(data, &bytewise);
        for cut in 0..=data.len() {
            checks::check_stream(data, &[cut]);
        }
        for size in [2, 3, 7, 64, 255, 256, 511, 512, 513] {
            let cuts: Vec<usize> = (size..data.len()).step_by(size).collect();
            checks::check_stream(data, &cuts);
        }
    }
    assert!(frames > 0, "no stream corpus file decodes to a frame");
}

#[test]
fn stream_input_layout() {
    // No cut points: a leading even byte, or nothing at all.
    assert_eq!(
        checks::split_stream_input(&[0, 5, 0]),
        (vec![], &[5, 0][..])
    );
    assert_eq!(checks::split_stream_input(&[]), (vec![], &[][..]));
    // Two cut points (0x0201 and 7), then the stream; a truncated point is zero-padded.
    assert_eq!(
        checks::split_stream_input(&[1, 1, 2, 3, 7, 0, 2, 9, 9]),
        (vec![0x0201, 7], &[9, 9][..])
    );
    assert_eq!(checks::split_stream_input(&[1, 4]), (vec![4], &[][..]));
    assert_eq!(checks::cut_points(3, &[9, 0, 3]), vec![0, 1, 3]);
}

/// Replays every input of an operation-sequence target through its `run`, which checks the
/// machine's invariants after every operation, and checks that the seeds get somewhere: `run`
/// counts what reached the far end (events delivered, sent, or read).
fn replay_ops(target: &str, run: fn(&[u8]) -> u64, what: &str) {
    let mut reached = 0;
    for (path, data) in inputs(target) {
        eprintln!("replaying {}", path.display());
        reached += run(&data);
    }
    assert!(reached > 0, "no {target} corpus file gets to {what}");
}

#[test]
fn client_machine_corpus() {
    replay_ops(
        "client_machine",
        checks::client_machine::run,
        "an event delivered",
    );
}

#[test]
fn server_session_corpus() {
    replay_ops(
        "server_session",
        checks::server_session::run,
        "an event sent",
    );
}

#[test]
fn connection_corpus() {
    replay_ops("connection", checks::connection::run, "an event sent");
}

#[test]
fn history_corpus() {
    replay_ops("history", checks::history::run, "an entry read");
}

/// The golden vectors, by name: (binary message, JSON message).
fn vectors() -> checks::seeds::Vectors {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    let mut vectors = checks::seeds::Vectors::new();
    for (path, text) in files_in(&dir) {
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let hex_path = path.with_extension("hex");
        let hex_text =
            fs::read_to_string(&hex_path).unwrap_or_else(|e| panic!("{}: {e}", hex_path.display()));
        let bin =
            hex::decode(hex_text.trim()).unwrap_or_else(|e| panic!("{}: {e}", hex_path.display()));
        let json = text.trim_ascii_end().to_vec();
        vectors.insert(name, (bin, json));
    }
    vectors
}

/// Seed files stay small: the fuzzer mutates them, and they are committed.
const MAX_SEED: usize = 4096;

#[test]
fn seed_corpus_is_generated() {
    let seeds = checks::seeds::all(&vectors());
    for target in ["client_machine", "server_session", "history", "connection"] {
        assert!(
            seeds.iter().filter(|s| s.0 == target).count() >= 5,
            "too few seeds for {target}"
        );
    }
    for (target, name, bytes) in seeds {
        assert!(
            bytes.len() <= MAX_SEED,
            "seed {target}/{name} has {} bytes",
            bytes.len()
        );
        let path = fuzz_dir().join("corpus").join(target).join(&name);
        let committed = fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo test -p eventwire-core --test fuzz_corpus -- --ignored \
                 generate_seeds`",
                path.display()
            )
        });
        assert!(
            committed == bytes,
            "{} is not what fuzz/src/seeds.rs builds; regenerate the seeds",
            path.display()
        );
    }
}

/// Writes the seeds of the operation-sequence targets (see `docs/FUZZING.md`).
#[test]
#[ignore = "writes fuzz/corpus/; run by hand after changing a vector or a seed script"]
fn generate_seeds() {
    for (target, name, bytes) in checks::seeds::all(&vectors()) {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(&name);
        fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
}
