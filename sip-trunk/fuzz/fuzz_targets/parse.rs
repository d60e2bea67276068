//! cargo fuzz target: any bytes must parse or be refused without a panic, and
//! every message that parses must survive a serialise/parse round trip.
//! The same check runs without libfuzzer in `tests/fuzz-parse.rs`.
//!
//! Run: `cd sip-trunk/fuzz && cargo +nightly fuzz run parse`

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "parse_check.rs"]
mod parse_check;

fuzz_target!(|data: &[u8]| {
    parse_check::check(data);
});
