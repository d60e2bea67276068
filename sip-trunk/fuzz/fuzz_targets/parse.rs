//! cargo fuzz target: any bytes must parse or be refused without a panic, and
//! every message that parses must survive a serialise/parse round trip.
//! The same check runs without libfuzzer in `tests/fuzz-parse.rs`.
//!
//! Run: `cd sip-trunk/fuzz && cargo +nightly fuzz run parse`, seeding the
//! corpus with `mkdir -p corpus/parse && cp ../tests/rfc4475/*.sip corpus/parse/`.
//!
//! Without cargo-fuzz installed, the same build by hand (what cargo-fuzz does;
//! `--target` keeps the coverage flags off build scripts):
//!
//! ```text
//! RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
//!   -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
//!   -Cllvm-args=-sanitizer-coverage-pc-table \
//!   -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing \
//!   -Cdebug-assertions -Coverflow-checks" \
//!   cargo +nightly build --release --target x86_64-unknown-linux-gnu --bin parse
//! target/x86_64-unknown-linux-gnu/release/parse -max_total_time=120 corpus/parse
//! ```

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "parse_check.rs"]
mod parse_check;

fuzz_target!(|data: &[u8]| {
    parse_check::check(data);
});
