//! JSON text decoding of one whole message; invariants in `eventwire_fuzz::check_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eventwire_fuzz::check_json(data);
});
