//! Encode and decode of one typical event and a batch of 50, in both codecs, and COBS stream
//! encoding and decoding of 10,000 events.
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use eventwire_benches::STATUS_PAYLOAD;
use eventwire_core::codec::{binary, json, stream};
use eventwire_core::frame::Seq;
use eventwire_core::frame::{Batch, BatchEvent, Event, Frame, Position};
use eventwire_core::payload::Payload;
use std::hint::black_box;

fn event() -> Frame<'static> {
    Frame::Event(Event {
        room: "agents",
        position: Position::new(3, 1_000_017),
        kind: "agent.status_changed",
        payload: Payload(STATUS_PAYLOAD),
    })
}

fn bench_event(c: &mut Criterion) {
    let frame = event();
    let mut g = c.benchmark_group("event");
    g.throughput(Throughput::Elements(1));
    let mut buf = [0u8; 512];
    g.bench_function("binary_encode", |b| {
        b.iter(|| binary::encode(black_box(&frame), &mut buf).map(|o| o.len()))
    });
    let bytes = binary::encode(&frame, &mut buf).unwrap().to_vec();
    g.bench_function("binary_decode", |b| {
        b.iter(|| binary::decode(black_box(&bytes), 65536).is_ok())
    });
    let mut out = Vec::with_capacity(512);
    g.bench_function("json_encode", |b| {
        b.iter(|| {
            out.clear();
            json::encode_into(black_box(&frame), &mut out)
        })
    });
    let text = json::encode(&frame).unwrap();
    g.bench_function("json_decode", |b| {
        b.iter(|| json::decode(black_box(&text), 65536).is_ok())
    });
    g.finish();
}

fn bench_batch(c: &mut Criterion) {
    let events: Vec<BatchEvent<'static>> = (0..50)
        .map(|i| BatchEvent {
            offset: 1_000 + i,
            kind: "agent.status_changed",
            payload: Payload(STATUS_PAYLOAD),
        })
        .collect();
    let frame = Frame::Batch(Batch {
        room: "agents",
        epoch: 3,
        events: Seq::from_slice(&events),
    });
    let mut g = c.benchmark_group("batch50");
    g.throughput(Throughput::Elements(50));
    let mut buf = vec![0u8; 16 * 1024];
    g.bench_function("binary_encode", |b| {
        b.iter(|| binary::encode(black_box(&frame), &mut buf).map(|o| o.len()))
    });
    let bytes = binary::encode(&frame, &mut buf).unwrap().to_vec();
    g.bench_function("binary_decode_and_iterate", |b| {
        b.iter(|| match binary::decode(black_box(&bytes), 1 << 20) {
            Ok(Frame::Batch(batch)) => batch.events.iter().map(|e| e.payload.0.len()).sum(),
            _ => 0usize,
        })
    });
    let mut out = Vec::with_capacity(16 * 1024);
    g.bench_function("json_encode", |b| {
        b.iter(|| {
            out.clear();
            json::encode_into(black_box(&frame), &mut out)
        })
    });
    let text = json::encode(&frame).unwrap();
    g.bench_function("json_decode_and_iterate", |b| {
        b.iter(|| match json::decode(black_box(&text), 1 << 20) {
            Ok(Frame::Batch(batch)) => batch.events.iter().map(|e| e.payload.0.len()).sum(),
            _ => 0usize,
        })
    });
    g.finish();
}

fn bench_stream(c: &mut Criterion) {
    let frame = event();
    let mut one = [0u8; 512];
    let n = stream::encode(&frame, &mut one).unwrap().len();
    let count = 10_000u64;
    let wire: Vec<u8> = one[..n].repeat(count as usize);
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(count));
    let mut out = vec![0u8; wire.len() + 512];
    g.bench_function("cobs_encode_10k_events", |b| {
        b.iter(|| {
            let mut at = 0;
            for _ in 0..count {
                at += stream::encode(black_box(&frame), &mut out[at..])
                    .unwrap()
                    .len();
            }
            at
        })
    });
    g.bench_function("cobs_decode_10k_events_4k_chunks", |b| {
        b.iter_batched_ref(
            stream::StreamDecoder::<1024>::new,
            |dec| {
                let mut got = 0u64;
                for chunk in wire.chunks(4096) {
                    let mut rest = chunk;
                    while !rest.is_empty() {
                        let (frame, tail) = dec.feed(rest);
                        if let Some(Ok(_)) = frame {
                            got += 1;
                        }
                        rest = tail;
                    }
                }
                assert_eq!(got, count);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_event, bench_batch, bench_stream);
criterion_main!(benches);
