//! Property tests of the codecs: round trips for every frame kind in both forms, chunking
//! independence of the stream decoder, and no panic on arbitrary input.

mod common;

use common::*;
use eventwire_core::codec::stream::StreamDecoder;
use eventwire_core::codec::{binary, json, stream};
use eventwire_core::frame::Frame;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(10_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn binary_round_trip(spec in spec_with(binary_payload().boxed())) {
        let lists = spec.lists();
        let frame = spec.frame(&lists);
        let mut buf = vec![0u8; binary::encoded_len(&frame).unwrap()];
        let bytes = binary::encode(&frame, &mut buf).unwrap();
        let decoded = binary::decode(bytes, bytes.len()).unwrap();
        prop_assert_eq!(&decoded, &frame);
        // Decoding a strict prefix never yields the same frame silently.
        if bytes.len() > 1 {
            let cut = &bytes[..bytes.len() - 1];
            prop_assert_ne!(binary::decode(cut, usize::MAX).ok(), Some(frame.clone()));
        }
    }

    #[test]
    fn json_round_trip(spec in spec_with(json_payload().boxed())) {
        let lists = spec.lists();
        let frame = spec.frame(&lists);
        let text = json::encode(&frame).unwrap();
        let decoded = json::decode(&text, text.len()).unwrap();
        prop_assert_eq!(&decoded, &frame);
        // The two forms carry the same frame: JSON -> binary gives the bytes binary gives.
        let mut direct = Vec::new();
        binary::encode_into(&frame, &mut direct).unwrap();
        let mut via_json = Vec::new();
        binary::encode_into(&decoded, &mut via_json).unwrap();
        prop_assert_eq!(direct, via_json);
    }

    #[test]
    fn stream_decoding_ignores_chunking(
        specs in proptest::collection::vec(spec_with(binary_payload().boxed()), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let lists: Vec<_> = specs.iter().map(|s| s.lists()).collect();
        let frames: Vec<Frame<'_>> = specs.iter().zip(&lists).map(|(s, l)| s.frame(l)).collect();
        let mut wire = Vec::new();
        for frame in &frames {
            let mut buf = vec![0u8; 64 * 1024];
            wire.extend_from_slice(stream::encode(frame, &mut buf).unwrap());
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut decoder = StreamDecoder::<{ 64 * 1024 }>::new();
        let mut got = 0;
        let mut start = 0;
        for end in points.into_iter().chain([wire.len()]) {
            let mut rest = &wire[start..end];
            start = end;
            while !rest.is_empty() {
                let (item, tail) = decoder.feed(rest);
                if let Some(result) = item {
                    let frame = result.unwrap();
                    prop_assert_eq!(&frame, &frames[got]);
                    got += 1;
                }
                rest = tail;
            }
        }
        prop_assert_eq!(got, frames.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = binary::decode(&bytes, 4096);
        let _ = json::decode(&bytes, 4096);
        let mut decoder = StreamDecoder::<128>::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (_item, tail) = decoder.feed(rest);
            prop_assert!(tail.len() < rest.len());
            rest = tail;
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        spec in spec_with(binary_payload().boxed()),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let lists = spec.lists();
        let frame = spec.frame(&lists);
        let mut bytes = Vec::new();
        binary::encode_into(&frame, &mut bytes).unwrap();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= b;
        }
        // Whatever comes out is a valid frame or a typed error.
        if let Ok(f) = binary::decode(&bytes, 1 << 20) {
            prop_assert!(f.validate().is_ok());
        }
    }
}
