//! The delivery guarantee over real sockets on 127.0.0.1: room routing, connections killed
//! mid-stream, a server restart, and a stalled reader.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventwire_core::backoff::BackoffPolicy;
use eventwire_core::backoff::Rng;
use eventwire_core::client::ClientConfig;
use eventwire_core::codec::{binary, Codec};
use eventwire_core::frame::Seq;
use eventwire_core::frame::{Frame, Hello, Missed, Position, Resume};
use eventwire_core::history::HistoryConfig;
use eventwire_core::hub::HubConfig;
use eventwire_core::server::ServerConfig as SessionConfig;
use eventwire_tokio::{Client, ClientOptions, Event, Hub, Server, ServerConfig};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(30);

fn options(id: u64) -> ClientOptions {
    let mut core = ClientConfig::new(id).backoff(
        BackoffPolicy::new()
            .initial(Duration::from_millis(10))
            .cap(Duration::from_millis(200)),
    );
    core.connect_timeout = Duration::from_secs(5);
    ClientOptions::new(id).core(core)
}

fn server_config() -> ServerConfig {
    ServerConfig::default().session(
        SessionConfig::new()
            .heartbeat(Duration::from_millis(500))
            .intervals(Duration::from_millis(5), Duration::from_millis(20)),
    )
}

/// A TCP proxy on 127.0.0.1 that can cut every connection through it and change its target.
struct Proxy {
    addr: SocketAddr,
    target: watch::Sender<SocketAddr>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (target_tx, target_rx) = watch::channel(target);
        let (cut_tx, cut_rx) = watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let to = *target_rx.borrow();
                let mut cut = cut_rx.clone();
                cut.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(to).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut ri, &mut wo) => {}
                        _ = tokio::io::copy(&mut ro, &mut wi) => {}
                        _ = cut.changed() => {}
                    }
                    let _ = wi.shutdown().await;
                    let _ = wo.shutdown().await;
                });
            }
        });
        Proxy {
            addr,
            target: target_tx,
            cut: cut_tx,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

/// Events seen by a client, per room: positions in order, and gaps.
#[derive(Default, Debug)]
struct Seen {
    events: BTreeMap<String, Vec<(Position, String)>>,
    gaps: BTreeMap<String, Vec<Missed>>,
}

fn collect(mut client: Client) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let out = seen.clone();
    let task = tokio::spawn(async move {
        while let Some(event) = client.next().await {
            let mut seen = out.lock().unwrap();
            match event {
                Event::Event {
                    room,
                    position,
                    payload,
                    ..
                } => seen
                    .events
                    .entry(room)
                    .or_default()
                    .push((position, String::from_utf8(payload.to_vec()).unwrap())),
                Event::Gap { room, missed } => seen.gaps.entry(room).or_default().push(missed),
                _ => {}
            }
        }
    });
    (seen, task)
}

async fn wait_for(seen: &Arc<Mutex<Seen>>, room: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let n = seen.lock().unwrap().events.get(room).map_or(0, Vec::len);
        if n >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{room}: only {n} of {count} events"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_exactly(seen: &Seen, room: &str, epoch: u32, expected: &[String]) {
    let got = seen.events.get(room).cloned().unwrap_or_default();
    let offsets: Vec<u64> = got.iter().map(|(p, _)| p.offset).collect();
    let want: Vec<u64> = (1..=expected.len() as u64).collect();
    assert_eq!(offsets, want, "{room}: every event once, in order");
    assert!(got.iter().all(|(p, _)| p.epoch == epoch));
    let payloads: Vec<&String> = got.iter().map(|(_, s)| s).collect();
    assert_eq!(payloads, expected.iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_only_get_the_rooms_they_joined() {
    let hub = Hub::with_epoch(3, Default::default());
    // The application's rooms: clients cannot create rooms.
    let rooms = ["r0", "r1", "r2", "r3", "r4"];
    hub.declare(rooms).unwrap();
    let server = Server::bind("127.0.0.1:0", hub.clone(), server_config())
        .await
        .unwrap();
    let url = format!("ws://{}", server.local_addr());
    let mut watchers = Vec::new();
    for i in 0..6u64 {
        let client = Client::connect(&url, options(100 + i)).unwrap();
        let mine: Vec<&str> = rooms
            .iter()
            .copied()
            .filter(|r| (r.as_bytes()[1] as u64 + i).is_multiple_of(2))
            .collect();
        for room in &mine {
            client.subscribe(room).await.unwrap();
        }
        let (seen, _task) = collect(client);
        watchers.push((mine, seen));
    }
    // Joins are answered before events flow; wait until every client is subscribed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for n in 0..200 {
        let room = rooms[n % rooms.len()];
        let payload = format!("{{\"n\":{n}}}");
        hub.emit_raw(room, "test.event", payload.as_bytes(), None)
            .unwrap();
        expected.entry(room).or_default().push(payload);
    }
    for (mine, seen) in &watchers {
        for room in mine {
            wait_for(seen, room, expected[room].len()).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen = seen.lock().unwrap();
        for room in rooms {
            if mine.contains(&room) {
                assert_exactly(&seen, room, 3, &expected[room]);
            } else {
                assert!(
                    !seen.events.contains_key(room),
                    "got events of {room} without joining it"
                );
            }
        }
    }
    server.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_lose_nothing() {
    let hub = Hub::with_epoch(
        5,
        HubConfig::new().history(HistoryConfig::new().max_events(4096)),
    );
    hub.declare(["feed", "mixed", "agents"]).unwrap();
    let server = Server::bind("127.0.0.1:0", hub.clone(), server_config())
        .await
        .unwrap();
    let proxy = Proxy::start(server.local_addr()).await;
    let client = Client::connect(&proxy.url(), options(7)).unwrap();
    client.subscribe("feed").await.unwrap();
    let (seen, _task) = collect(client);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut rng = Rng::new(11);
    let mut expected = Vec::new();
    for n in 0..2000u64 {
        let payload = format!("{{\"n\":{n}}}");
        hub.emit_raw("feed", "test.event", payload.as_bytes(), None)
            .unwrap();
        expected.push(payload);
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Cut the connection at random points, repeatedly.
        if rng.up_to(150) == 0 {
            proxy.cut_all();
        }
    }
    wait_for(&seen, "feed", expected.len()).await;
    {
        let seen = seen.lock().unwrap();
        assert_exactly(&seen, "feed", 5, &expected);
        assert!(seen.gaps.is_empty(), "nothing fell out: {:?}", seen.gaps);
    }
    server.shutdown(Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_announces_a_reset() {
    let hub1 = Hub::with_epoch(1, Default::default());
    // The application's rooms: clients cannot create rooms.
    hub1.declare(["feed", "mixed", "agents"]).unwrap();
    let server1 = Server::bind("127.0.0.1:0", hub1.clone(), server_config())
        .await
        .unwrap();
    let proxy = Proxy::start(server1.local_addr()).await;
    let client = Client::connect(&proxy.url(), options(8)).unwrap();
    client.subscribe("feed").await.unwrap();
    let (seen, _task) = collect(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 0..10 {
        hub1.emit_raw("feed", "test.event", format!("{n}").as_bytes(), None)
            .unwrap();
    }
    wait_for(&seen, "feed", 10).await;

    // The server restarts without its history: a new hub, a new epoch.
    server1.shutdown(Duration::from_millis(50)).await;
    let hub2 = Hub::with_epoch(2, Default::default());
    // The application's rooms: clients cannot create rooms.
    hub2.declare(["feed", "mixed", "agents"]).unwrap();
    let server2 = Server::bind("127.0.0.1:0", hub2.clone(), server_config())
        .await
        .unwrap();
    proxy.target.send(server2.local_addr()).unwrap();
    proxy.cut_all();
    // Wait until the client is back (it resumes from 1:10 and must be told of the reset).
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !seen.lock().unwrap().gaps.contains_key("feed") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no gap notice after the restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 0..5 {
        hub2.emit_raw(
            "feed",
            "test.event",
            format!("{}", 100 + n).as_bytes(),
            None,
        )
        .unwrap();
    }
    wait_for(&seen, "feed", 15).await;
    {
        let seen = seen.lock().unwrap();
        let reset = Missed::Reset {
            position: Position::new(2, 0),
        };
        assert_eq!(seen.gaps["feed"], [reset]);
        let epochs: Vec<u32> = seen.events["feed"].iter().map(|(p, _)| p.epoch).collect();
        assert_eq!(epochs, [[1; 10].as_slice(), &[2; 5]].concat());
    }
    server2.shutdown(Duration::from_millis(100)).await;
}

/// Servers restarted twice within a second, each with a fresh hub (`Hub::new`, the epoch the
/// adapter draws) and more events than the last run before the client is back. A resuming client
/// gets a reset and every event of each new run. With epochs in whole seconds (before), two of
/// the three runs shared an epoch, and the client, resuming at offset n, silently skipped events
/// 1..=n of the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_within_a_second_never_reuse_an_epoch() {
    let hub = Hub::new(Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare(["feed", "mixed", "agents"]).unwrap();
    let mut server = Server::bind("127.0.0.1:0", hub.clone(), server_config())
        .await
        .unwrap();
    let proxy = Proxy::start(server.local_addr()).await;
    let client = Client::connect(&proxy.url(), options(12)).unwrap();
    client.subscribe("feed").await.unwrap();
    let (seen, _task) = collect(client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for n in 0..3 {
        hub.emit_raw("feed", "test.event", format!("1.{n}").as_bytes(), None)
            .unwrap();
    }
    wait_for(&seen, "feed", 3).await;
    let mut epochs = vec![hub.epoch()];
    let mut expected: Vec<(u32, u64, String)> = (0..3)
        .map(|n| (hub.epoch(), n + 1, format!("1.{n}")))
        .collect();

    for run in 2..=3u64 {
        server.shutdown(Duration::from_millis(20)).await;
        // The new run's history holds more than the client has of the last one, before it is
        // back: a reused epoch would look like the continuation.
        let hub = Hub::new(Default::default());
        // The application's rooms: clients cannot create rooms.
        hub.declare(["feed", "mixed", "agents"]).unwrap();
        let count = 3 * run;
        for n in 0..count {
            hub.emit_raw("feed", "test.event", format!("{run}.{n}").as_bytes(), None)
                .unwrap();
        }
        server = Server::bind("127.0.0.1:0", hub.clone(), server_config())
            .await
            .unwrap();
        proxy.target.send(server.local_addr()).unwrap();
        proxy.cut_all();
        expected.extend((0..count).map(|n| (hub.epoch(), n + 1, format!("{run}.{n}"))));
        wait_for(&seen, "feed", expected.len()).await;
        epochs.push(hub.epoch());
    }
    server.shutdown(Duration::from_millis(50)).await;

    let seen = seen.lock().unwrap();
    let got: Vec<(u32, u64, String)> = seen.events["feed"]
        .iter()
        .map(|(p, payload)| (p.epoch, p.offset, payload.clone()))
        .collect();
    assert_eq!(got, expected, "every event of every run, once, in order");
    let resets: Vec<Missed> = epochs[1..]
        .iter()
        .map(|&epoch| Missed::Reset {
            position: Position::new(epoch, 0),
        })
        .collect();
    assert_eq!(seen.gaps["feed"], resets, "one reset per restart");
    let distinct: std::collections::BTreeSet<u32> = epochs.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "epochs {epochs:?} repeat");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_delays_nobody_and_gets_a_gap() {
    let history = HistoryConfig::new()
        .max_events(512)
        .max_bytes(2 * 1024 * 1024);
    let hub = Hub::with_epoch(9, HubConfig::new().history(history));
    // The application's rooms: clients cannot create rooms.
    hub.declare(["feed", "mixed", "agents"]).unwrap();
    let config = server_config().write_timeout(Duration::from_millis(500));
    let server = Server::bind("127.0.0.1:0", hub.clone(), config)
        .await
        .unwrap();
    let url = format!("ws://{}", server.local_addr());

    // The stalled reader joins, then never reads again.
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "eventwire.v1".parse().unwrap());
    let (mut stalled, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let rooms = [Resume {
        room: "feed",
        from: None,
    }];
    let hello = Frame::Hello(Hello {
        version: 1,
        client_id: 99,
        token: None,
        max_frame: 65536,
        max_batch: 50,
        rooms: Seq::from_slice(&rooms),
    });
    let mut bytes = Vec::new();
    binary::encode_into(&hello, &mut bytes).unwrap();
    stalled.send(Message::Binary(bytes.into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let healthy = Client::connect(&url, options(1)).unwrap();
    healthy.subscribe("feed").await.unwrap();
    let (seen, _task) = collect(healthy);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // More than the socket buffers hold, so the stalled peer's writes stop draining.
    let payload = "x".repeat(2000);
    let total = 4000;
    let started = tokio::time::Instant::now();
    for n in 0..total {
        hub.emit_raw(
            "feed",
            "test.event",
            format!("{{\"n\":{n},\"pad\":\"{payload}\"}}").as_bytes(),
            None,
        )
        .unwrap();
        if n % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // The healthy client keeps up although the other one stopped reading (it may see a gap only
    // if it fell behind the small history itself, which it must not).
    wait_for(&seen, "feed", total).await;
    assert!(seen.lock().unwrap().gaps.is_empty());
    assert!(started.elapsed() < Duration::from_secs(20));
    // Memory stays within the room's bounds; the stalled peer is closed as a slow consumer.
    let stats = hub.stats();
    assert!(stats
        .rooms
        .iter()
        .all(|r| r.events <= 512 && r.bytes <= 2 * 1024 * 1024));
    // The stalled peer is closed (as a slow consumer, or for its silence) and costs nothing more.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while hub.stats().connections > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled reader was never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // When it comes back from where it stopped, it is told what it missed.
    let resumed = Client::connect(&url, options(2)).unwrap();
    resumed
        .subscribe_from("feed", Position::new(9, 10))
        .await
        .unwrap();
    let (seen, _task) = collect(resumed);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(gaps) = seen.lock().unwrap().gaps.get("feed") {
            assert!(
                matches!(
                    gaps[0],
                    Missed::Range {
                        epoch: 9,
                        first: 11,
                        ..
                    }
                ),
                "{gaps:?}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no gap notice");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stalled);
    server.shutdown(Duration::from_millis(100)).await;
}

/// Waits for `n` events or gaps of `client`, as (offset, payload) and (first, last).
/// Events as (offset, payload) and range gaps as (first, last), in order.
type Received = (Vec<(u64, Vec<u8>)>, Vec<(u64, u64)>);

async fn gather(client: &mut Client, n: usize) -> Received {
    let (mut events, mut gaps) = (Vec::new(), Vec::new());
    while events.len() + gaps.len() < n {
        match tokio::time::timeout(LIMIT, client.next()).await {
            Ok(Some(Event::Event {
                position, payload, ..
            })) => events.push((position.offset, payload.to_vec())),
            Ok(Some(Event::Gap {
                missed: Missed::Range { first, last, .. },
                ..
            })) => gaps.push((first, last)),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("ended after {events:?} and {gaps:?}"),
        }
    }
    (events, gaps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_binary_subscribers_read_the_same_log() {
    let hub = Hub::with_epoch(9, Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare(["feed", "mixed", "agents"]).unwrap();
    let server = Server::bind("127.0.0.1:0", hub.clone(), server_config())
        .await
        .unwrap();
    let url = format!("ws://{}", server.local_addr());
    let mut binary = Client::connect(&url, options(1)).unwrap();
    let mut json = Client::connect(&url, options(2).codec(Codec::Json)).unwrap();
    for client in [&mut binary, &mut json] {
        client.subscribe("mixed").await.unwrap();
        while !matches!(
            tokio::time::timeout(LIMIT, client.next()).await,
            Ok(Some(Event::Subscribed { .. }))
        ) {}
    }
    let mut all = Vec::new();
    for n in 1..=100u64 {
        // Every tenth payload is not JSON text: it has no JSON form.
        let payload = if n % 10 == 0 {
            format!("raw\u{1}{n}").into_bytes()
        } else {
            format!(r#"{{"n":{n},"text":"caf\u00e9"}}"#).into_bytes()
        };
        hub.emit_raw("mixed", "test.event", &payload, None).unwrap();
        all.push((n, payload));
    }
    let (events, gaps) = gather(&mut binary, 100).await;
    assert_eq!(events, all);
    assert!(gaps.is_empty());
    let (events, gaps) = gather(&mut json, 100).await;
    let json_only: Vec<_> = all.into_iter().filter(|(n, _)| n % 10 != 0).collect();
    assert_eq!(events, json_only);
    let expected: Vec<(u64, u64)> = (1..=10).map(|k| (k * 10, k * 10)).collect();
    assert_eq!(gaps, expected);
    server.shutdown(Duration::from_millis(100)).await;
}
