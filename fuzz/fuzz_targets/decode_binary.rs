//! Binary (postcard) decoding of one whole message; invariants in `eventwire_fuzz::check_binary`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eventwire_fuzz::check_binary(data);
});
