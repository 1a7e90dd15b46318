//! The signals that ask a server to stop: ctrl-c (SIGINT) and, on Unix, SIGTERM, which is what
//! systemd, Docker and Kubernetes send. Waiting on ctrl-c alone would let SIGTERM kill the
//! process with no close frame, and every client would fall back to its backoff instead of
//! honouring a retry-after hint.

/// Resolves when the process is asked to stop: ctrl-c, or SIGTERM on Unix. Await it, then
/// shut the server down gracefully ([`Server::shutdown`](crate::Server::shutdown): close 1001
/// with a retry-after hint to every client).
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use eventwire_tokio::{shutdown_signal, Hub, Server, ServerConfig};
///
/// let hub = Hub::new(Default::default());
/// let server = Server::bind("127.0.0.1:9001", hub, ServerConfig::default()).await?;
/// shutdown_signal().await;
/// server.shutdown(Duration::from_secs(2)).await;
/// # Ok(())
/// # }
/// ```
///
/// If a handler cannot be installed (no signal support), that signal never resolves the
/// future; the other still does.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
