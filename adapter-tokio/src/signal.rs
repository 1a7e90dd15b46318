//! The signals that ask a server to stop: ctrl-c (SIGINT) and, on Unix, SIGTERM, which is what
//! systemd, Docker and Kubernetes send. Waiting on ctrl-c alone would let SIGTERM kill the
//! process with no close frame, and every client would fall back to its backoff instead of
//! honouring a retry-after hint.

use std::future::Future;

/// Resolves when the process is asked to stop: ctrl-c, or SIGTERM on Unix. Await it, then
/// shut the server down gracefully ([`Server::shutdown`](crate::Server::shutdown): close 1001
/// with a retry-after hint to every client).
///
/// The handlers are installed when this is called, not when the future is first polled: call it
/// before the server is announced (before printing its address), so that a signal sent as soon
/// as the address is known is not met by the default action, which kills the process. Call it
/// inside a tokio runtime.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// use eventwire_tokio::{shutdown_signal, Hub, Server, ServerConfig};
///
/// let stop = shutdown_signal();
/// let hub = Hub::new(Default::default());
/// let server = Server::bind("127.0.0.1:9001", hub, ServerConfig::default()).await?;
/// println!("listening on {}", server.local_addr());
/// stop.await;
/// server.shutdown(Duration::from_secs(2)).await;
/// # Ok(())
/// # }
/// ```
///
/// If a handler cannot be installed (no signal support), that signal never resolves the
/// future; the other still does.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(interrupt) => {}
                _ = wait(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
