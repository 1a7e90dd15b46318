//! The core without I/O: history append and replay, coalescing, and the whole in-memory path
//! from `Hub::emit` through a server session, a codec (binary or JSON) and a client machine to
//! the application event, including the batcher skipping coalesced metrics.
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventwire_benches::STATUS_PAYLOAD;
use eventwire_core::client::{Action, Client, ClientConfig, ClientEvent};
use eventwire_core::codec::Codec;
use eventwire_core::history::{HistoryConfig, RoomLog};
use eventwire_core::hub::{Hub, HubConfig};
use eventwire_core::server::{ServerConfig, ServerEvent, ServerSession};
use eventwire_core::time::Instant;

fn bench_history(c: &mut Criterion) {
    let mut g = c.benchmark_group("history");
    g.throughput(Throughput::Elements(1000));
    let config = HistoryConfig::new().max_events(4096).max_bytes(1 << 20);
    let mut log = RoomLog::new(1, config);
    let now = Instant::from_millis(1);
    g.bench_function("append_1000", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                black_box(log.append(now, "agent.status", STATUS_PAYLOAD, None).ok());
            }
        })
    });
    g.bench_function("append_1000_coalesced_over_50_keys", |b| {
        let keys: Vec<String> = (0..50)
            .map(|i| format!("agent.metrics:agent-{i:03}"))
            .collect();
        b.iter(|| {
            for i in 0..1000 {
                black_box(
                    log.append(now, "agent.metrics", STATUS_PAYLOAD, Some(&keys[i % 50]))
                        .ok(),
                );
            }
        })
    });
    let mut log = RoomLog::new(1, config);
    for _ in 0..4096 {
        log.append(now, "agent.status", STATUS_PAYLOAD, None)
            .unwrap();
    }
    let from = log.head().offset - 1000;
    g.bench_function("replay_1000", |b| {
        b.iter(|| {
            let mut bytes = 0;
            let mut cursor = from;
            while cursor < log.head().offset {
                match log.read(cursor, 50, 64 * 1024, |e| bytes += e.encoded.len()) {
                    eventwire_core::history::Read::Progress { cursor: c, .. } => cursor = c,
                    _ => break,
                }
            }
            black_box(bytes)
        })
    });
    g.finish();
}

/// One client subscribed to one room of a hub, connected in memory.
struct Pair {
    now: Instant,
    hub: Hub,
    server: ServerSession,
    client: Client,
    codec: Codec,
    wire: Vec<u8>,
}

impl Pair {
    fn new(codec: Codec) -> Pair {
        let now = Instant::from_millis(1);
        let hub = Hub::new(
            1,
            HubConfig::new().history(HistoryConfig::new().max_events(8192).max_bytes(2 << 20)),
        );
        hub.ensure_room("agents").unwrap();
        let mut server = ServerSession::new(now, ServerConfig::new(), 1, 1);
        server.set_codec(codec);
        let mut client: Client = Client::new(ClientConfig::new(7), 3);
        client.subscribe("agents").unwrap();
        client.connect(now, &mut |_| {});
        assert_eq!(client.poll_action(), Some(Action::Connect));
        client.handle_connected(now, &mut |_| {});
        let mut pair = Pair {
            now,
            hub,
            server,
            client,
            codec,
            wire: Vec::with_capacity(128 * 1024),
        };
        pair.drive();
        pair
    }

    /// Moves every frame both ways until both machines are quiet; returns events delivered.
    fn drive(&mut self) -> u64 {
        let mut delivered = 0;
        loop {
            let mut moved = false;
            while let Some(frame) = self.client.poll_transmit(self.now) {
                self.wire.clear();
                self.codec.encode_into(&frame, &mut self.wire).unwrap();
                let frame = self.codec.decode(&self.wire, 1 << 20).unwrap();
                let mut auth = false;
                self.server
                    .handle_frame(self.now, &frame, &self.hub, &mut |e| {
                        auth |= matches!(e, ServerEvent::Authenticate { .. });
                    });
                if auth {
                    let mut rooms = Vec::new();
                    self.server
                        .accept(self.now, &mut |e| {
                            if let ServerEvent::Authorize { room } = e {
                                rooms.push(room.to_string());
                            }
                        })
                        .unwrap();
                    for room in rooms {
                        self.server.allow(&self.hub, &room).unwrap();
                    }
                }
                moved = true;
            }
            while let Some(frame) = self.server.poll_transmit(self.now) {
                self.wire.clear();
                self.codec.encode_into(&frame, &mut self.wire).unwrap();
                let frame = self.codec.decode(&self.wire, 1 << 20).unwrap();
                self.client.handle_frame(self.now, &frame, &mut |e| {
                    if let ClientEvent::Event { payload, .. } = e {
                        black_box(payload);
                        delivered += 1;
                    }
                });
                moved = true;
            }
            if !moved {
                return delivered;
            }
        }
    }
}

fn bench_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("in_memory_path");
    let burst = 1000u64;
    g.throughput(Throughput::Elements(burst));
    for (name, codec) in [
        ("emit_1000_to_one_client_binary", Codec::Binary),
        ("emit_1000_to_one_client_json", Codec::Json),
    ] {
        let mut pair = Pair::new(codec);
        g.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..burst {
                    pair.hub
                        .emit(pair.now, "agents", "agent.status", STATUS_PAYLOAD, None)
                        .unwrap();
                }
                // Past the batch interval, so every batch is due.
                pair.now = pair.now + Duration::from_millis(200);
                assert_eq!(pair.drive(), burst);
            })
        });
    }
    // The batcher with coalescing: 1000 metrics over 50 agents wait for the metrics interval,
    // and only the latest value of each agent goes out.
    let keys: Vec<String> = (0..50)
        .map(|i| format!("agent.metrics:agent-{i:03}"))
        .collect();
    let mut pair = Pair::new(Codec::Binary);
    g.bench_function("metrics_1000_over_50_keys_coalesced_binary", |b| {
        b.iter(|| {
            for i in 0..burst as usize {
                pair.hub
                    .emit(
                        pair.now,
                        "agents",
                        "agent.metrics",
                        STATUS_PAYLOAD,
                        Some(&keys[i % 50]),
                    )
                    .unwrap();
            }
            // Past the metrics interval.
            pair.now = pair.now + Duration::from_millis(1000);
            assert_eq!(pair.drive(), 50);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_history, bench_path);
criterion_main!(benches);
