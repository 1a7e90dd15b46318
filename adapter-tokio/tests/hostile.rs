//! Hostile input against the tokio server over real WebSocket connections on 127.0.0.1: each case
//! gets its documented close code or error, the server keeps serving everyone else, and nothing
//! panics. The cases live in `shared/hostile_cases.rs`, shared with the blocking adapter's test.

use eventwire_tokio::Grants;
use std::time::Duration;

use eventwire_core::code::CloseCode;
use eventwire_tokio::{Hub, Server, ServerConfig};

#[path = "shared/hostile_cases.rs"]
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
            config = config.auth(|req| async move {
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
        let server = Server::bind("127.0.0.1:0", hub, config)
            .await
            .expect("bind");
        let url = format!("ws://{}", server.local_addr());
        (server, url)
    }

    fn shutdown(self, retry_after: Duration) -> impl std::future::Future<Output = ()> + Send {
        Server::shutdown(self, retry_after)
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
