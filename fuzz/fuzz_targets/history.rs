//! Operation sequences; invariants in `eventwire_fuzz::history` (its module docs). The input is read
//! as a scenario, so `cargo +nightly fuzz fmt history FILE` prints the operations a file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: eventwire_fuzz::history::Input| {
    eventwire_fuzz::history::run_scenario(&input);
});
