//! The byte-level server connection fed raw transport input in each framing; input layout and
//! invariants in `eventwire_fuzz::connection` (its module docs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    eventwire_fuzz::connection::run(data);
});
