//! The invariants the fuzz targets check, in one place.
//!
//! The cargo-fuzz targets in `fuzz_targets/` call these functions on every input, and the stable
//! test `core/tests/fuzz_corpus.rs` includes this very file (`#[path]`) to replay the committed
//! corpus and regression files through the same checks. It therefore depends on nothing but
//! `eventwire-core` (with `std` and `json`) and `std`.
//!
//! Every check panics, with the input's story in the message, only when an invariant breaks:
//! a decode error on hostile input is an expected outcome, not a failure.
//!
//! The decoder targets' checks are below. The state machine targets each have a module, with
//! the invariants they check in its docs: [`client_machine`], [`server_session`], [`history`],
//! and [`connection`] (the byte-level server connection, fed raw transport input);
//! [`ops`] holds what they share (the input layout and the seed writer), [`seeds`] their seed
//! corpus, built from the golden vectors. Modules refer to each
//! other with `super::`, never `crate::`, since this file is also a module of the stable test.

pub mod client_machine;
pub mod connection;
pub mod history;
pub mod ops;
pub mod seeds;
pub mod server_session;

use eventwire_core::codec::stream::{self, StreamDecoder};
use eventwire_core::codec::{binary, json};
use eventwire_core::{DecodeError, EncodeError, Frame};

/// The `max_frame` limit the message targets decode with. Below libFuzzer's default `-max_len`
/// (4096), so the oversize path is exercised too.
pub const MAX_FRAME: usize = 2048;

/// Capacity of the stream decoder under test: the largest COBS-encoded frame it accepts.
pub const STREAM_CAPACITY: usize = 512;

/// Decodes `data` as one binary message and checks, when it yields a frame:
/// - the frame validates;
/// - it re-encodes (`encode_into` and `encoded_len` agree on the size), and the re-encoding is
///   no longer than `data` (postcard's encoding is the shortest of the forms its decoder accepts;
///   trailing extension bytes are ignored by the decoder and dropped);
/// - the re-encoding decodes to an equal frame and encodes to the very same bytes (canonical);
/// - extension bytes appended after the re-encoding change nothing;
/// - the JSON form, when the payloads are JSON text, decodes back and re-encodes to the same text;
///   otherwise the only JSON encode error is [`EncodeError::PayloadNotJson`].
///
/// When it yields none: an input over [`MAX_FRAME`] gets exactly `TooLarge`, only an empty one
/// gets `Empty`. Returns whether a frame was decoded.
pub fn check_binary(data: &[u8]) -> bool {
    let decoded = binary::decode(data, MAX_FRAME);
    let frame = match check_message_error(decoded, data.len(), data.is_empty()) {
        Some(frame) => frame,
        None => return false,
    };
    assert_eq!(frame.validate(), Ok(()), "decoded frame does not validate");

    let out = encode_binary(&frame);
    assert_eq!(
        binary::encoded_len(&frame),
        Ok(out.len()),
        "encoded_len disagrees with encode_into for {frame:?}"
    );
    assert!(
        out.len() <= data.len(),
        "re-encoding ({} bytes, {out:02x?}) is longer than the input ({} bytes) for {frame:?}",
        out.len(),
        data.len()
    );
    let again = match binary::decode(&out, usize::MAX) {
        Ok(f) => f,
        Err(e) => panic!("re-encoding {out:02x?} of {frame:?} does not decode: {e:?}"),
    };
    assert_eq!(again, frame, "binary round trip changed the frame");
    assert_eq!(
        encode_binary(&again),
        out,
        "binary encoding is not a fixpoint"
    );

    let mut extended = out.clone();
    extended.extend_from_slice(data);
    assert_eq!(
        binary::decode(&extended, usize::MAX),
        Ok(frame.clone()),
        "bytes after the frame changed what decodes"
    );

    match json::encode(&frame) {
        Ok(text) => {
            let from_json = match json::decode(&text, usize::MAX) {
                Ok(f) => f,
                Err(e) => panic!(
                    "JSON form {:?} of {frame:?} does not decode: {e:?}",
                    String::from_utf8_lossy(&text)
                ),
            };
            // Payloads may lose white space around them in the JSON form, so the frames are
            // compared through their JSON text, which must be stable.
            assert_eq!(
                json::encode(&from_json),
                Ok(text),
                "JSON form of a binary frame is not a fixpoint"
            );
        }
        Err(EncodeError::PayloadNotJson) => {}
        Err(e) => panic!("valid frame {frame:?} has no JSON form: {e:?}"),
    }
    true
}

/// Decodes `data` as one JSON text message and checks, when it yields a frame:
/// - the frame validates;
/// - it has a JSON form (its payloads came as JSON), which decodes to an equal frame and
///   re-encodes to the very same text (after one round, the text is canonical);
/// - its binary form decodes to an equal frame (the codecs carry the same information).
///
/// When it yields none: an input over [`MAX_FRAME`] gets exactly `TooLarge`, only an input of
/// nothing but white space gets `Empty`. Returns whether a frame was decoded.
pub fn check_json(data: &[u8]) -> bool {
    let decoded = json::decode(data, MAX_FRAME);
    let blank = data.iter().all(u8::is_ascii_whitespace);
    let frame = match check_message_error(decoded, data.len(), blank) {
        Some(frame) => frame,
        None => return false,
    };
    assert_eq!(frame.validate(), Ok(()), "decoded frame does not validate");

    let text = match json::encode(&frame) {
        Ok(text) => text,
        Err(e) => panic!("frame {frame:?} decoded from JSON does not re-encode: {e:?}"),
    };
    let again = match json::decode(&text, usize::MAX) {
        Ok(f) => f,
        Err(e) => panic!(
            "re-encoding {:?} of {frame:?} does not decode: {e:?}",
            String::from_utf8_lossy(&text)
        ),
    };
    assert_eq!(again, frame, "JSON round trip changed the frame");
    assert_eq!(
        json::encode(&again),
        Ok(text),
        "JSON encoding is not a fixpoint"
    );

    let bytes = encode_binary(&frame);
    assert_eq!(
        binary::decode(&bytes, usize::MAX),
        Ok(frame.clone()),
        "binary form {bytes:02x?} of a JSON frame decodes differently"
    );
    true
}

/// Checks a message decoder's result against the input's size; returns the frame, if any.
fn check_message_error<'a>(
    decoded: Result<Frame<'a>, DecodeError>,
    len: usize,
    blank: bool,
) -> Option<Frame<'a>> {
    if len > MAX_FRAME {
        assert_eq!(
            decoded,
            Err(DecodeError::TooLarge {
                size: len,
                limit: MAX_FRAME
            }),
            "oversize input not refused up front"
        );
        return None;
    }
    match decoded {
        Ok(frame) => {
            assert!(!blank, "a blank input decoded to {frame:?}");
            Some(frame)
        }
        Err(e) => {
            assert!(
                !matches!(e, DecodeError::TooLarge { .. }),
                "input within the limit refused as too large: {e:?}"
            );
            assert_eq!(
                e == DecodeError::Empty,
                blank,
                "`Empty` must be the error of exactly the blank inputs, got {e:?}"
            );
            None
        }
    }
}

fn encode_binary(frame: &Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = binary::encode_into(frame, &mut out) {
        panic!("valid frame {frame:?} does not encode: {e:?}");
    }
    out
}

/// Splits a raw input of the stream target into its cut points and its stream bytes, as the
/// target's `Arbitrary` input does (see `fuzz_targets/stream.rs`): before each cut point a byte,
/// odd for one more, then the point in little-endian (zero-padded at the end of the input); an
/// even byte or the end of the input closes the list, and the rest is the stream. A seed that is
/// a plain stream with one zero byte in front thus means that stream, uncut.
pub fn split_stream_input(bytes: &[u8]) -> (Vec<u16>, &[u8]) {
    let mut cuts = Vec::new();
    let mut rest = bytes;
    while let Some((&more, tail)) = rest.split_first() {
        rest = tail;
        if more & 1 == 0 {
            break;
        }
        let n = rest.len().min(2);
        let mut le = [0u8; 2];
        le[..n].copy_from_slice(&rest[..n]);
        cuts.push(u16::from_le_bytes(le));
        rest = &rest[n..];
    }
    (cuts, rest)
}

/// Turns raw cut points into sorted positions in `0..=len` (the stream target's chunking).
pub fn cut_points(len: usize, raw: &[u16]) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.iter().map(|&c| usize::from(c) % (len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

/// Splits `data` at sorted positions `cuts` (duplicates give empty chunks).
fn chunks<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &end in cuts {
        assert!(
            start <= end && end <= data.len(),
            "cut points must be sorted and within the data"
        );
        out.push(&data[start..end]);
        start = end;
    }
    out.push(&data[start..]);
    out
}

/// Decodes the stream `data` with fresh `StreamDecoder::<STREAM_CAPACITY>`s twice: in one chunk
/// and in the chunks `cuts` (sorted positions in `0..=data.len()`) make. Checks:
/// - every call on a non-empty chunk consumes at least one byte and returns a suffix of it as the
///   rest; an empty chunk yields nothing;
/// - every frame validates, and its own stream encoding decodes to an equal frame;
/// - an oversize frame is reported with the decoder's capacity as the limit;
/// - both ways give the same results, in the same order (chunking independence).
///
/// Returns the number of frames decoded.
pub fn check_stream(data: &[u8], cuts: &[usize]) -> usize {
    let whole = decode_stream(&[data]);
    let chunked = decode_stream(&chunks(data, cuts));
    assert_eq!(
        whole, chunked,
        "chunking at {cuts:?} changed what the stream decodes to"
    );
    whole.iter().filter(|r| r.starts_with("Ok(")).count()
}

/// Feeds `chunks` in order to a fresh decoder; returns each result's `Debug` text (frames borrow
/// the decoder, so they cannot outlive the next call).
fn decode_stream(chunks: &[&[u8]]) -> Vec<String> {
    let mut decoder = StreamDecoder::<STREAM_CAPACITY>::new();
    let mut results = Vec::new();
    for &chunk in chunks {
        if chunk.is_empty() {
            let (item, rest) = decoder.feed(chunk);
            assert!(
                item.is_none() && rest.is_empty(),
                "an empty chunk yielded {item:?}"
            );
            continue;
        }
        let mut rest = chunk;
        while !rest.is_empty() {
            let (item, tail) = decoder.feed(rest);
            assert!(
                tail.len() < rest.len(),
                "feed consumed nothing of {} bytes",
                rest.len()
            );
            // An empty rest may be any empty slice; a non-empty one must be the input's tail.
            assert!(
                tail.is_empty() || std::ptr::eq(tail, &rest[rest.len() - tail.len()..]),
                "the rest is not a suffix of the input"
            );
            if let Some(result) = item {
                match &result {
                    Ok(frame) => check_stream_frame(frame),
                    Err(DecodeError::TooLarge { limit, .. }) => {
                        assert_eq!(*limit, STREAM_CAPACITY, "oversize frame reported wrongly");
                    }
                    Err(_) => {}
                }
                results.push(format!("{result:?}"));
            }
            rest = tail;
        }
    }
    results
}

/// A frame out of the stream decoder validates and survives its own stream encoding.
fn check_stream_frame(frame: &Frame<'_>) {
    assert_eq!(frame.validate(), Ok(()), "stream frame does not validate");
    let mut buf = [0u8; 2 * STREAM_CAPACITY];
    let wire = match stream::encode(frame, &mut buf) {
        Ok(wire) => wire,
        Err(e) => panic!("stream frame {frame:?} does not re-encode: {e:?}"),
    };
    assert_eq!(
        wire.last(),
        Some(&0),
        "stream encoding must end with a zero"
    );
    assert_eq!(
        wire.iter().filter(|&&b| b == 0).count(),
        1,
        "stream encoding holds a zero before its end"
    );
    let mut fresh = StreamDecoder::<{ 2 * STREAM_CAPACITY }>::new();
    match fresh.feed(wire) {
        (Some(Ok(again)), rest) => {
            assert!(rest.is_empty(), "one encoded frame left {rest:02x?}");
            assert_eq!(&again, frame, "stream round trip changed the frame");
        }
        (other, _) => panic!("stream encoding of {frame:?} decodes to {other:?}"),
    }
}
