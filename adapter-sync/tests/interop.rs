//! Interop over real sockets on 127.0.0.1: every scenario runs in all four pairings of the
//! blocking and the tokio adapters (sync client with tokio server, tokio client with sync
//! server, and each with its own kind). The scenarios are written once, against the harness's
//! `TestClient` and `TestServer`, so the blocking client is held to exactly what the tokio
//! client does: the same events, in the same order, nothing lost, and an explicit notice when
//! something was.

mod common;

use common::{client, Log, Proxy, Side, TestServer};

/// The scenario list: each is a function of (server side, client side).
mod scenarios {
    use eventwire_core::backoff::Rng;
    use eventwire_core::codec::Codec;
    use eventwire_core::frame::{Missed, Position};

    use super::*;

    /// Room routing, an upstream publish and its ack, in both message forms.
    pub fn delivery(server: Side, side: Side) {
        for codec in [Codec::Binary, Codec::Json] {
            let srv = TestServer::start(server, 3, 1024);
            let hub = srv.hub();
            let mut c = client(side, &srv.url(), 100, codec, 1024);
            c.subscribe("r0");
            c.subscribe("r1");
            let mut log = Log::default();
            log.until(&mut *c, "both joins", |l| l.subscribed.len() >= 2);

            let note = r#"{"text":"hi"}"#;
            let id = c.publish("r1", "note.added", note.as_bytes());
            log.until(&mut *c, "the ack", |l| {
                l.acked.iter().any(|(i, _)| *i == id)
            });
            assert_eq!(log.acked, [(id, Position::new(3, 1))], "{codec:?}");

            let rooms = ["r0", "r1", "r2"];
            let mut expected = [Vec::new(), vec![note.to_owned()], Vec::new()];
            for n in 0..300 {
                let payload = format!(r#"{{"n":{n},"codec":"{codec:?}"}}"#);
                hub.emit(rooms[n % 3], &payload);
                expected[n % 3].push(payload);
            }
            log.until(&mut *c, "every event of r0 and r1", |l| {
                l.count("r0") >= expected[0].len() && l.count("r1") >= expected[1].len()
            });
            log.assert_exactly("r0", 3, &expected[0]);
            log.assert_exactly("r1", 3, &expected[1]);
            assert!(
                !log.events.contains_key("r2"),
                "events of a room not joined"
            );
            assert!(log.gaps.is_empty(), "{:?}", log.gaps);
            c.close();
            srv.shutdown();
        }
    }

    /// Connections cut by a proxy at random points, repeatedly, while events flow: every event
    /// once, in order, and no gap (the history holds them all).
    pub fn killed_connections_lose_nothing(server: Side, side: Side) {
        let srv = TestServer::start(server, 5, 4096);
        let proxy = Proxy::start(srv.addr());
        let mut c = client(side, &proxy.url(), 7, Codec::Binary, 1024);
        c.subscribe("feed");
        let mut log = Log::default();
        log.until(&mut *c, "the join", |l| !l.subscribed.is_empty());

        let total = 1500;
        let hub = srv.hub();
        let cutter = proxy.clone();
        let emitter = std::thread::spawn(move || {
            let mut rng = Rng::new(11);
            let mut expected = Vec::new();
            let mut cuts = 0;
            for n in 0..total {
                let payload = format!(r#"{{"n":{n}}}"#);
                hub.emit("feed", &payload);
                expected.push(payload);
                if n % 20 == 0 {
                    // Pacing, so that cuts land mid-stream rather than after it.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                if rng.up_to(100) == 0 {
                    cutter.cut_all();
                    cuts += 1;
                }
            }
            (expected, cuts)
        });
        log.until(&mut *c, "every event", |l| l.count("feed") >= total);
        let (expected, cuts) = emitter.join().expect("the emitter");
        assert!(cuts > 3, "only {cuts} cuts");
        log.assert_exactly("feed", 5, &expected);
        assert!(log.gaps.is_empty(), "nothing fell out: {:?}", log.gaps);
        // Every cut made the client join again.
        assert!(log.subscribed.len() > 1, "never reconnected");
        c.close();
        srv.shutdown();
    }

    /// A server restarted without its history: the client resumes from its position, is told
    /// of the reset (never a silent loss), and goes on in the new epoch.
    pub fn restarted_server_announces_a_reset(server: Side, side: Side) {
        let first = TestServer::start(server, 1, 1024);
        let proxy = Proxy::start(first.addr());
        let mut c = client(side, &proxy.url(), 8, Codec::Binary, 1024);
        c.subscribe("feed");
        let mut log = Log::default();
        log.until(&mut *c, "the join", |l| !l.subscribed.is_empty());
        let hub = first.hub();
        for n in 0..10 {
            hub.emit("feed", &format!("{n}"));
        }
        log.until(&mut *c, "the first 10 events", |l| l.count("feed") >= 10);

        first.shutdown();
        let second = TestServer::start(server, 2, 1024);
        proxy.retarget(second.addr());
        proxy.cut_all();
        log.until(&mut *c, "the reset notice", |l| l.gaps.contains_key("feed"));
        let hub = second.hub();
        for n in 0..5 {
            hub.emit("feed", &format!("{}", 100 + n));
        }
        log.until(&mut *c, "5 events of the new epoch", |l| {
            l.count("feed") >= 15
        });
        let reset = Missed::Reset {
            position: Position::new(2, 0),
        };
        assert_eq!(log.gaps["feed"], [reset]);
        let seen: Vec<(u32, u64)> = log.events["feed"]
            .iter()
            .map(|(p, _)| (p.epoch, p.offset))
            .collect();
        let want: Vec<(u32, u64)> = (1..=10)
            .map(|o| (1, o))
            .chain((1..=5).map(|o| (2, o)))
            .collect();
        assert_eq!(seen, want);
        c.close();
        second.shutdown();
    }

    /// A consumer that does not read while 500 events of 1 KiB arrive, with room for 4 events:
    /// the client stops reading (TCP pushes back) and, once read, delivers every event once.
    pub fn slow_consumer_loses_nothing(server: Side, side: Side) {
        let srv = TestServer::start(server, 9, 4096);
        let mut c = client(side, &srv.url(), 9, Codec::Binary, 4);
        c.subscribe("metrics");
        let mut log = Log::default();
        log.until(&mut *c, "the join", |l| !l.subscribed.is_empty());
        let pad = "x".repeat(1000);
        let expected: Vec<String> = (0..500)
            .map(|n| format!(r#"{{"n":{n},"pad":"{pad}"}}"#))
            .collect();
        let hub = srv.hub();
        for payload in &expected {
            hub.emit("metrics", payload);
        }
        log.until(&mut *c, "every event", |l| {
            l.count("metrics") >= expected.len()
        });
        log.assert_exactly("metrics", 9, &expected);
        assert!(log.gaps.is_empty(), "{:?}", log.gaps);
        c.close();
        srv.shutdown();
    }
}

/// One test per scenario and pairing.
macro_rules! pairings {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;

            #[test]
            fn sync_client_sync_server() {
                scenarios::$scenario(Side::Sync, Side::Sync);
            }

            #[test]
            fn sync_client_tokio_server() {
                scenarios::$scenario(Side::Tokio, Side::Sync);
            }

            #[test]
            fn tokio_client_sync_server() {
                scenarios::$scenario(Side::Sync, Side::Tokio);
            }

            #[test]
            fn tokio_client_tokio_server() {
                scenarios::$scenario(Side::Tokio, Side::Tokio);
            }
        }
    )*};
}

pairings!(
    delivery,
    killed_connections_lose_nothing,
    restarted_server_announces_a_reset,
    slow_consumer_loses_nothing,
);
