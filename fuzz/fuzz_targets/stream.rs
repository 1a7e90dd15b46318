//! COBS stream decoding fed in arbitrary chunks; invariants in `eventwire_fuzz::check_stream`.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

/// The bytes of a stream and where to cut it into chunks.
///
/// Layout of a raw input (what corpus and regression files hold): the cut points as `arbitrary`
/// encodes a `Vec<u16>` (before each element a byte, odd for one more, then the element in
/// little-endian; an even byte or the end closes the list), then the stream's bytes verbatim.
/// `eventwire_fuzz::split_stream_input` reads the same layout for the stable corpus replay.
#[derive(Debug, Arbitrary)]
struct Input {
    /// Cut points, taken modulo `data.len() + 1` and sorted.
    cuts: Vec<u16>,
    /// The stream: the rest of the input as is, so the fuzzer mutates stream bytes directly.
    #[arbitrary(with = rest_of_input)]
    data: Vec<u8>,
}

fn rest_of_input(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let n = u.len();
    Ok(u.bytes(n)?.to_vec())
}

fuzz_target!(|input: Input| {
    let cuts = eventwire_fuzz::cut_points(input.data.len(), &input.cuts);
    eventwire_fuzz::check_stream(&input.data, &cuts);
});
