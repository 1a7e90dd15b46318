//! The smallest eventwire client: joins rooms and prints each event as one JSON line.
//!
//! Run: `cargo run -p eventwire-tokio --example client -- ws://127.0.0.1:9001 agents tasks system`
//!
//! Ctrl-c or SIGTERM closes the session normally (close 1000), so the server frees it at once.
use eventwire_tokio::{shutdown_signal, Client, ClientOptions, Event};
use futures_util::StreamExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let mut client = Client::connect(&url, ClientOptions::default())?;
    for room in args {
        client.subscribe(&room).await?;
    }
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        let event = tokio::select! {
            event = client.next() => event,
            () = &mut signal => {
                client.close().await;
                return Ok(());
            }
        };
        let Some(event) = event else { break };
        match event {
            Event::Event {
                room,
                position,
                kind,
                payload,
            } => {
                let payload: serde_json::Value =
                    serde_json::from_slice(&payload).unwrap_or_default();
                println!(
                    "{}",
                    serde_json::json!({"room": room, "epoch": position.epoch, "offset": position.offset, "kind": kind, "payload": payload})
                );
            }
            other => eprintln!("{other:?}"),
        }
    }
    Ok(())
}
