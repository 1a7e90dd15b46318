//! The smallest eventwire server: serves a hub on 127.0.0.1:9001 and emits a tick every second.
//!
//! Run: `cargo run -p eventwire-tokio --example server`
use std::time::Duration;

use eventwire_tokio::{shutdown_signal, Hub, Server, ServerConfig};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Ctrl-c or SIGTERM: every client is told to come back in 2 s (close 1001).
    let stop = shutdown_signal();
    let hub = Hub::new(Default::default());
    // Clients may join `system` before its first tick: they cannot create rooms themselves.
    hub.declare(["system"]).map_err(std::io::Error::other)?;
    let server = Server::bind("127.0.0.1:9001", hub.clone(), ServerConfig::default()).await?;
    eprintln!("serving on ws://{}", server.local_addr());
    tokio::pin!(stop);
    for tick in 0u64.. {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = &mut stop => break,
        }
        hub.emit(
            "system",
            "system.tick",
            &serde_json::json!({ "tick": tick }),
        )
        .ok();
    }
    server.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
