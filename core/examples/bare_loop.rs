//! The core client machine driven by hand over a blocking `std::net::TcpStream`, against
//! `eventwire_tokio::TcpServer` (COBS-framed binary frames): no async runtime, no adapter crate.
//! Linking the core into another runtime takes a clock, a socket read with a timeout, and the
//! loop of the `client` module docs; this is that loop. Run it with
//! `cargo run -p eventwire-core --example bare_loop -- ADDR ROOM [COUNT]`: it prints each event
//! of ROOM as `room offset kind payload`, exits 0 after COUNT events, fails if the client stops.
use std::cell::Cell;
use std::io::ErrorKind::{Interrupted, TimedOut, WouldBlock};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use eventwire_core::client::{Action, Client, ClientConfig, ClientEvent, ConnState};
use eventwire_core::codec::stream::{self, StreamDecoder};
use eventwire_core::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, room, rest @ ..] = &args[..] else {
        panic!("usage: bare_loop ADDR ROOM [COUNT]");
    };
    let count: u64 = rest.first().map_or(u64::MAX, |c| c.parse().expect("COUNT"));
    let target = addr.to_socket_addrs().expect("ADDR").next().expect("ADDR");
    // The clock: std's monotonic clock, as microseconds since start (the core never reads one).
    let (origin, printed) = (std::time::Instant::now(), Cell::new(0u64));
    let now = || Instant::from_micros(origin.elapsed().as_micros() as u64);
    // A fresh identity per process, as the outbox requires; it also seeds the jitter.
    let seed = u64::from(std::process::id()) << 32 ^ now().as_micros();
    let mut client: Client = Client::new(ClientConfig::new(seed), seed);
    client.subscribe(room).expect("room name");
    let mut sink = |e: ClientEvent<'_>| match e {
        ClientEvent::Event {
            room,
            position,
            kind,
            payload,
        } if printed.get() < count => {
            let payload = String::from_utf8_lossy(payload);
            println!("{room} {} {kind} {payload}", position.offset);
            printed.set(printed.get() + 1);
        }
        ClientEvent::Event { .. } => {}
        other => eprintln!("{other:?}"),
    };
    let (mut sock, mut lost) = (None::<TcpStream>, false);
    let mut decoder = Box::new(StreamDecoder::<{ 64 * 1024 + 300 }>::new());
    let (mut out, mut chunk) = (vec![0u8; 70 * 1024], [0u8; 4096]);
    client.connect(now(), &mut sink);
    while printed.get() < count {
        if std::mem::take(&mut lost) {
            sock = None; // dropping the stream closes it
            client.handle_disconnected(now(), &mut sink);
        }
        // 1. Send every frame the machine has, in order.
        while let Some(frame) = client.poll_transmit(now()) {
            let bytes = stream::encode(&frame, &mut out).expect("frame fits the buffer");
            lost |= sock.as_mut().is_some_and(|s| s.write_all(bytes).is_err());
        }
        if lost {
            continue;
        }
        // 2. Act on the transport; an action may queue frames (the hello), so go back to 1.
        if let Some(action) = client.poll_action() {
            sock = None;
            if action == Action::Connect {
                sock = TcpStream::connect_timeout(&target, left(&client, now())).ok();
                *decoder = StreamDecoder::new();
                match sock {
                    Some(_) => client.handle_connected(now(), &mut sink),
                    None => client.handle_disconnected(now(), &mut sink),
                }
            }
            continue;
        }
        assert_ne!(
            client.state(),
            ConnState::Closed,
            "the client stopped for good"
        );
        // 3. Wait for bytes until the machine's next deadline, never past it.
        if let Some(s) = sock.as_mut() {
            let _ = s.set_read_timeout(Some(left(&client, now())));
            lost = match s.read(&mut chunk) {
                Err(e) if matches!(e.kind(), WouldBlock | TimedOut | Interrupted) => false,
                Ok(0) | Err(_) => true,
                Ok(n) => {
                    // 4. Feed every complete frame; a partial one waits in the decoder.
                    let (mut input, mut bad) = (&chunk[..n], false);
                    while !input.is_empty() && !bad {
                        let (decoded, rest) = decoder.feed(input);
                        input = rest;
                        match decoded {
                            Some(Ok(frame)) => client.handle_frame(now(), &frame, &mut sink),
                            Some(Err(e)) => bad = e.close_code().is_some(), // resume
                            None => {}
                        }
                    }
                    bad
                }
            };
        } else {
            std::thread::sleep(left(&client, now()));
        }
        client.handle_timeout(now(), &mut sink); // 5. timers that are due fire; early is a no-op
    }
    client.close(now(), &mut sink); // done: say goodbye with a normal close frame
    if let (Some(s), Some(frame)) = (sock.as_mut(), client.poll_transmit(now())) {
        let _ = s.write_all(stream::encode(&frame, &mut out).expect("fits"));
    }
}

/// Time until the machine's next deadline (1 s if none), at least 1 µs: std reads 0 as "never".
fn left(client: &Client, now: Instant) -> Duration {
    let tick = Duration::from_micros(1);
    match client.poll_timeout() {
        Some(at) => at.saturating_duration_since(now).max(tick),
        None => Duration::from_secs(1),
    }
}
