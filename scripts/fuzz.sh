#!/usr/bin/env bash
# Runs the SIP parser's libFuzzer target for a bounded time (default 60 s),
# seeded with the 49 RFC 4475 torture messages. Uses cargo-fuzz when it is
# installed, else the same build by hand (the coverage flags cargo-fuzz sets).
# Needs a nightly toolchain (rustup); without one it says so and exits 0 —
# the seeded property test tests/fuzz-parse.rs still runs in the suite.
# Usage: scripts/fuzz.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../sip-trunk/fuzz"
secs=${1:-60}
log() { printf '[fuzz] %s\n' "$*" >&2; }
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    log "no nightly toolchain: libFuzzer run skipped (tests/fuzz-parse.rs covers the property)"
    exit 0
fi
mkdir -p corpus/parse
cp ../tests/rfc4475/*.sip corpus/parse/
if command -v cargo-fuzz >/dev/null 2>&1; then
    exec cargo +nightly fuzz run parse corpus/parse -- -max_total_time="$secs"
fi
triple=$(rustc +nightly -vV | awk '/^host:/{print $2}')
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
    cargo +nightly build --release --target "$triple" --bin parse
log "fuzzing the SIP parser for $secs s"
exec "${CARGO_TARGET_DIR:-target}/$triple/release/parse" -max_total_time="$secs" -print_final_stats=1 corpus/parse
