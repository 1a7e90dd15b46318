//! Hostile input against the blocking server: the same cases and close codes as the tokio
//! server's (`adapter-tokio/tests/shared/hostile_cases.rs`, included here), sent by
//! tokio-tungstenite peers over real sockets on 127.0.0.1.

use eventwire_sync::Grants;
use std::time::Duration;

use eventwire_core::code::CloseCode;
use eventwire_sync::{Hub, Server, ServerConfig};

#[path = "../../adapter-tokio/tests/shared/hostile_cases.rs"]
mod cases;

use cases::{Limits, Target};

impl Target for Server {
    async fn start(limits: Limits) -> (Server, String) {
        let mut config = ServerConfig::default()
            .session(cases::session())
            .grants(Grants::publish_any());
        if limits.origins {
            config = config.allowed_origins([cases::ALLOWED_ORIGIN]);
        }
        if limits.auth {
            config = config.auth(|req| {
                if req.token.as_deref() == Some(cases::TOKEN) {
                    Ok(Grants::publish_any())
                } else {
                    Err(CloseCode::UNAUTHORIZED)
                }
            });
        }
        if limits.forbid_room {
            config = config.authorize(|_, room| room != cases::FORBIDDEN_ROOM);
        }
        if let Some(n) = limits.max_connections {
            config = config.max_connections(n);
        }
        let hub = Hub::with_epoch(7, Default::default());
        hub.declare(cases::DECLARED).expect("valid rooms");
        let server = Server::bind("127.0.0.1:0", hub, config).expect("bind");
        let url = format!("ws://{}", server.local_addr());
        (server, url)
    }

    /// The blocking shutdown, off the runtime's threads.
    async fn shutdown(self, retry_after: Duration) {
        tokio::task::spawn_blocking(move || Server::shutdown(self, retry_after))
            .await
            .expect("shutdown");
    }
}

#[tokio::test]
async fn malformed_truncated_and_unknown_frames() {
    cases::malformed_truncated_and_unknown_frames::<Server>().await;
}

#[tokio::test]
async fn oversize_message_gets_1009() {
    cases::oversize_message_gets_1009::<Server>().await;
}

#[tokio::test]
async fn wrong_version_bad_origin_failed_auth_slow_handshake() {
    cases::wrong_version_bad_origin_failed_auth_slow_handshake::<Server>().await;
}

#[tokio::test]
async fn forbidden_room_and_subscription_flood() {
    cases::forbidden_room_and_subscription_flood::<Server>().await;
}

#[tokio::test]
async fn shutdown_tells_clients_when_to_come_back() {
    cases::shutdown_tells_clients_when_to_come_back::<Server>().await;
}

#[tokio::test]
async fn connection_limit_says_try_again_later() {
    cases::connection_limit_says_try_again_later::<Server>().await;
}

#[tokio::test]
async fn only_the_servers_own_pages_by_default() {
    cases::only_the_servers_own_pages_by_default::<Server>().await;
}
