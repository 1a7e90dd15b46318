//! Operation sequences; invariants in `eventwire_fuzz::server_session` (its module docs). The input is read
//! as a scenario, so `cargo +nightly fuzz fmt server_session FILE` prints the operations a file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: eventwire_fuzz::server_session::Input| {
    eventwire_fuzz::server_session::run_scenario(&input);
});
