//! Secure defaults over real sockets on 127.0.0.1 (docs/SECURITY.md): what a client may write.
//!
//! Before grants, every connection could publish into every room, so any page that reached the
//! server could forge the events dashboards show.

use std::time::Duration;

use eventwire_core::code::{CloseCode, ErrorCode};
use eventwire_tokio::{Client, ClientOptions, Event, Grants, Hub, Server, ServerConfig};
use futures_util::StreamExt;

const LIMIT: Duration = Duration::from_secs(20);

/// The answer to publish `id`: acknowledged (`Ok`) or refused with a code.
async fn answer(client: &mut Client, id: u64) -> Result<(), ErrorCode> {
    tokio::time::timeout(LIMIT, async {
        loop {
            match client.next().await {
                Some(Event::PublishAcked { id: got, .. }) if got == id => return Ok(()),
                Some(Event::PublishFailed { id: got, code }) if got == id => return Err(code),
                Some(_) => {}
                None => panic!("the client ended before publish {id} was answered"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("publish {id} was never answered"))
}

async fn connect(server: &Server, options: ClientOptions) -> Client {
    Client::connect(&format!("ws://{}", server.local_addr()), options).unwrap()
}

async fn publish(client: &mut Client, room: &str) -> Result<(), ErrorCode> {
    let id = client
        .publish(room, "note", &serde_json::json!({ "text": "hi" }))
        .await
        .unwrap();
    answer(client, id).await
}

#[tokio::test]
async fn a_default_server_lets_no_client_write() {
    let hub = Hub::new(Default::default());
    let server = Server::bind("127.0.0.1:0", hub.clone(), ServerConfig::default())
        .await
        .unwrap();
    let mut client = connect(&server, ClientOptions::default()).await;
    for room in ["agents", "system", "notes"] {
        assert_eq!(
            publish(&mut client, room).await,
            Err(ErrorCode::FORBIDDEN_ROOM),
            "{room}"
        );
        assert!(hub.room_stats(room).is_none(), "{room} was created");
    }
    assert_eq!(hub.stats().publishes_refused, 3);
    assert_eq!(hub.stats().events_in, 0);
    client.close().await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn grants_open_exactly_the_rooms_named() {
    let hub = Hub::new(Default::default());
    // The application's room; clients may create `agent:*` rooms, and no other.
    hub.declare(["notes"]).unwrap();
    let grants = Grants::publish_to(["notes", "agent:*", "drafts"])
        .and_then(|g| g.create_rooms(["agent:*"]))
        .unwrap();
    let config = ServerConfig::default().grants(grants);
    let server = Server::bind("127.0.0.1:0", hub.clone(), config)
        .await
        .unwrap();
    let mut client = connect(&server, ClientOptions::default()).await;
    assert_eq!(publish(&mut client, "notes").await, Ok(()));
    assert_eq!(publish(&mut client, "agent:7").await, Ok(()));
    assert_eq!(
        publish(&mut client, "agents").await,
        Err(ErrorCode::FORBIDDEN_ROOM)
    );
    // Granted to write, but nobody created it and the client may not: refused, not created.
    assert_eq!(
        publish(&mut client, "drafts").await,
        Err(ErrorCode::NO_SUCH_ROOM)
    );
    assert_eq!(hub.room_stats("notes").map(|r| r.head.offset), Some(1));
    assert_eq!(hub.room_stats("agent:7").map(|r| r.head.offset), Some(1));
    assert!(hub.room_stats("agents").is_none());
    assert!(hub.room_stats("drafts").is_none());
    client.close().await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_auth_hook_grants_per_connection() {
    let hub = Hub::new(Default::default());
    // The application's room: clients cannot create rooms.
    hub.declare(["tasks"]).unwrap();
    // Any page may read; only the holder of the writer's token may write, and only into tasks.
    let config = ServerConfig::default().auth(|req| async move {
        match req.token.as_deref() {
            Some("writer") => Grants::publish_to(["tasks"]).map_err(|_| CloseCode::INTERNAL_ERROR),
            Some(_) => Err(CloseCode::UNAUTHORIZED),
            None => Ok(Grants::none()),
        }
    });
    let server = Server::bind("127.0.0.1:0", hub.clone(), config)
        .await
        .unwrap();
    let mut reader = connect(&server, ClientOptions::new(1)).await;
    let writer_core = eventwire_core::client::ClientConfig::new(2)
        .token("writer")
        .unwrap();
    let mut writer = connect(&server, ClientOptions::new(2).core(writer_core)).await;
    assert_eq!(
        publish(&mut reader, "tasks").await,
        Err(ErrorCode::FORBIDDEN_ROOM)
    );
    assert_eq!(publish(&mut writer, "tasks").await, Ok(()));
    assert_eq!(
        publish(&mut writer, "system").await,
        Err(ErrorCode::FORBIDDEN_ROOM)
    );
    assert_eq!(hub.room_stats("tasks").map(|r| r.head.offset), Some(1));
    assert_eq!(hub.stats().publishes_refused, 2);
    reader.close().await;
    writer.close().await;
    server.shutdown(Duration::from_secs(1)).await;
}
