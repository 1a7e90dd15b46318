//! `tail` for eventwire rooms, without an async runtime: connects to a server, joins the rooms
//! given on the command line and prints each event as one JSON line on stdout, reconnecting
//! forever (resuming every room from its last position). Gaps and connection state changes go
//! to stderr, so stdout stays a clean stream of events.
//!
//! Run: `cargo run -p eventwire-sync --example tail -- ws://127.0.0.1:9001 system`
//! (against `cargo run -p eventwire-tokio --example server`, or the `swarm` example with rooms
//! `agents tasks system`). Options: `--json` speaks the JSON subprotocol instead of binary.
//! Ctrl-c or SIGTERM closes the connection normally (close 1000) before exiting.
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use eventwire_sync::core::backoff::BackoffPolicy;
use eventwire_sync::core::codec::Codec;
use eventwire_sync::core::frame::Missed;
use eventwire_sync::{shutdown_signal, Client, ClientOptions, Event, Status};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    args.retain(|a| a != "--json");
    let mut args = args.into_iter();
    let Some(url) = args.next() else {
        eprintln!("usage: tail [--json] ws://HOST:PORT[/PATH] ROOM...");
        return ExitCode::from(2);
    };
    let rooms: Vec<String> = args.collect();
    if rooms.is_empty() {
        eprintln!("tail: name at least one room to join");
        return ExitCode::from(2);
    }

    let mut options = ClientOptions::default();
    // Forever: no limit on reconnect attempts (the default, made explicit).
    options.core = options
        .core
        .clone()
        .backoff(BackoffPolicy::new().max_attempts(None));
    if json {
        options = options.codec(Codec::Json);
    }
    // Installed first, so that a signal from now on is ours to handle, never the default kill.
    let stop = match shutdown_signal() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("tail: cannot handle signals: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match Client::connect(&url, options) {
        Ok(client) => Arc::new(client),
        Err(e) => {
            eprintln!("tail: {e}");
            return ExitCode::from(2);
        }
    };
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        // On ctrl-c or SIGTERM: close normally; the loop below ends once the client stopped.
        let (client, stopping) = (client.clone(), stopping.clone());
        std::thread::spawn(move || {
            stop.wait();
            stopping.store(true, std::sync::atomic::Ordering::SeqCst);
            client.stop();
        });
    }
    for room in &rooms {
        if let Err(e) = client.subscribe(room) {
            eprintln!("tail: cannot join {room}: {e}");
            return ExitCode::from(2);
        }
    }

    let stdout = std::io::stdout();
    for event in client.events() {
        match event {
            Event::Event {
                room,
                position,
                kind,
                payload,
            } => {
                // JSON payloads are printed as JSON; anything else as a string of its bytes.
                let payload: serde_json::Value = serde_json::from_slice(&payload)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&payload).into_owned().into());
                let line = serde_json::json!({
                    "room": room,
                    "epoch": position.epoch,
                    "offset": position.offset,
                    "kind": kind,
                    "payload": payload,
                });
                let mut out = stdout.lock();
                // A closed stdout (`tail ... | head`) ends the program.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            Event::Gap { room, missed } => match missed {
                Missed::Range { epoch, first, last } => {
                    eprintln!("gap: {room} lost {epoch}:{first}..={epoch}:{last}")
                }
                Missed::Reset { position } => {
                    eprintln!(
                        "gap: {room} was reset (server restarted); continuing after {position}"
                    )
                }
            },
            Event::Subscribed { room, position } => eprintln!("joined {room} after {position}"),
            Event::SubscribeFailed { room, code } => eprintln!("refused: {room}: {code}"),
            Event::ServerError { code, reason } => eprintln!("server error {code}: {reason}"),
            Event::Status(status) => match status {
                Status::Connecting => eprintln!("state: connecting to {url}"),
                Status::Open => eprintln!("state: open"),
                Status::Reconnecting { attempt, delay } => {
                    eprintln!("state: disconnected; retry {attempt} in {delay:?}")
                }
                Status::Closed { code, reason } => {
                    eprintln!("state: closed for good ({code:?}) {reason}")
                }
                other => eprintln!("state: {other:?}"),
            },
            other => eprintln!("{other:?}"),
        }
    }
    // The iterator ends when the client stopped for good: asked to by a signal, or refused by
    // the server.
    if stopping.load(std::sync::atomic::Ordering::SeqCst) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
