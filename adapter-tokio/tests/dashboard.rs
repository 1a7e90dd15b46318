//! The demo (`examples/dashboard`) as a process, from a Rust client on a real socket: its
//! snapshot is exactly the state at the positions it names, and SIGTERM shuts it down
//! gracefully (close 1001 with the retry-after hint, exit status 0).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

#[path = "shared/demo.rs"]
mod demo;
use demo::Demo;

/// A plain HTTP request to the demo; the JSON body of its 200 answer. The reply is read to the
/// end of the connection, which the request asks the server to close after it (keep-alive
/// would hold it open until the idle timeout).
async fn http(addr: &str, method: &str, path: &str) -> Value {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    socket.read_to_end(&mut reply).await.unwrap();
    let text = String::from_utf8(reply).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{method} {path}: {head}");
    serde_json::from_str(body).unwrap()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// A JSON-subprotocol connection whose hello resumes `rooms` from the given positions.
async fn connect(addr: &str, rooms: Value) -> Ws {
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "eventwire.v1.json".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let hello = json!({"hello": {"version": 1, "client_id": 11, "token": null,
        "max_frame": 65536, "max_batch": 50, "rooms": rooms}});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    ws
}

/// The task counters, kept by the rules of the page (and of the snapshot).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tasks {
    queued: i64,
    running: i64,
    completed: i64,
    failed: i64,
}

impl Tasks {
    fn of(snapshot: &Value) -> Tasks {
        let n = |k: &str| snapshot["tasks"][k].as_i64().unwrap();
        Tasks {
            queued: n("queued"),
            running: n("running"),
            completed: n("completed"),
            failed: n("failed"),
        }
    }

    fn apply(&mut self, kind: &str) {
        match kind {
            "task.queued" => self.queued += 1,
            "task.assigned" => {
                self.queued -= 1;
                self.running += 1;
            }
            "task.completed" => {
                self.running -= 1;
                self.completed += 1;
            }
            "task.failed" => {
                self.running -= 1;
                self.failed += 1;
            }
            other => panic!("unexpected kind in tasks: {other}"),
        }
    }
}

#[tokio::test]
async fn the_snapshot_and_the_events_after_it_add_up() {
    let demo = Demo::start(&["--agents", "12", "--rate", "4"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let first = http(&demo.addr, "GET", "/api/snapshot").await;
    let from = &first["positions"]["tasks"];
    assert!(from["offset"].as_u64().unwrap() > 0, "{first}");
    let mut ws = connect(
        &demo.addr,
        json!([{"room": "tasks", "from": from}, {"room": "agents", "from": null}]),
    )
    .await;
    let mut tasks = Tasks::of(&first);
    let mut at = from["offset"].as_u64().unwrap();
    let epoch = from["epoch"].as_u64().unwrap();
    let mut agents = BTreeMap::new();

    // Let events flow, then pause and read the state the server ends at.
    let paused_at = Instant::now() + Duration::from_millis(1500);
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if last.is_none() && Instant::now() >= paused_at {
            assert_eq!(
                http(&demo.addr, "POST", "/api/swarm/pause").await["paused"],
                true
            );
            last = Some(http(&demo.addr, "GET", "/api/snapshot").await);
        }
        if let Some(last) = &last {
            if at == last["positions"]["tasks"]["offset"].as_u64().unwrap() {
                assert_eq!(tasks, Tasks::of(last), "counters from the events");
                break;
            }
        }
        assert!(Instant::now() < deadline, "events stopped at tasks:{at}");
        let Ok(Some(message)) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await
        else {
            continue;
        };
        let frame: Value = serde_json::from_str(message.unwrap().to_text().unwrap()).unwrap();
        if let Some(batch) = frame.get("batch") {
            let room = batch["room"].as_str().unwrap();
            assert_eq!(batch["epoch"].as_u64().unwrap(), epoch);
            for event in batch["events"].as_array().unwrap() {
                let offset = event["offset"].as_u64().unwrap();
                let kind = event["kind"].as_str().unwrap();
                if room == "tasks" {
                    // No keys in this room: every offset arrives once, in order.
                    assert_eq!(offset, at + 1, "tasks offsets are contiguous");
                    at = offset;
                    tasks.apply(kind);
                } else if kind == "agent.status_changed" {
                    let e = &event["payload"];
                    agents.insert(e["agent_id"].to_string(), e["new_status"].to_string());
                }
            }
        }
        assert!(frame.get("gap").is_none(), "no gap at this rate: {frame}");
    }
    assert!(
        tasks.completed + tasks.failed + tasks.running > 0,
        "{tasks:?}"
    );
    assert!(!agents.is_empty(), "agents room delivered status changes");
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_closes_every_client_with_going_away_and_a_hint() {
    let mut demo = Demo::start(&["--agents", "3"]);
    let mut ws = connect(&demo.addr, json!([{"room": "system", "from": null}])).await;
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().starts_with(r#"{"welcome""#));
    let pid = demo.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut close_frame = None;
    let mut ws_close = None;
    let read = async {
        while let Some(Ok(message)) = ws.next().await {
            match message {
                Message::Text(text) if text.starts_with(r#"{"close""#) => {
                    close_frame = Some(serde_json::from_str::<Value>(&text).unwrap());
                }
                Message::Close(frame) => ws_close = frame.map(|f| u16::from(f.code)),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server closed the connection");
    let close = close_frame.expect("a close frame");
    assert_eq!(close["close"]["code"], 1001, "{close}");
    assert_eq!(close["close"]["retry_after_ms"], 2000, "{close}");
    assert_eq!(ws_close, Some(1001));
    let status = demo.child.wait().unwrap();
    assert!(status.success(), "the demo exits cleanly: {status}");
}
