//! Operation sequences; invariants in `eventwire_fuzz::client_machine` (its module docs). The input is read
//! as a scenario, so `cargo +nightly fuzz fmt client_machine FILE` prints the operations a file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: eventwire_fuzz::client_machine::Input| {
    eventwire_fuzz::client_machine::run_scenario(&input);
});
