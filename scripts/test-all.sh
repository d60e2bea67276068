#!/usr/bin/env bash
# Runs namecall's whole test suite on a fresh clone: installs what it needs
# (scripts/install-deps.sh), checks formatting and clippy, builds, then runs
# every test, the interop tests against real Kamailio, baresip, SIPp and
# headless Chromium included, inside a private network namespace whose only
# interface is loopback (so Chromium's ICE and every peer stay on 127.0.0.0/8).
# The SIP parser's libFuzzer target runs for 60 s first (scripts/fuzz.sh).
# Ends with the test runner's summary line. Exit status is the suite's.
#
# Environment: NAMECALL_NO_NETNS=1 runs the tests in the current namespace.
# CI=true is set (unless already set): tests whose peer may be missing on a
# developer's machine (nats-server in ws_load_smoke) fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"
log() { printf '[test-all %s] %s\n' "$(date +%T)" "$*" >&2; }

scripts/install-deps.sh all

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "build (tests and binaries)"
cargo build --workspace --all-targets --locked

log "fuzz the SIP parser (60 s)"
scripts/fuzz.sh 60

if command -v cargo-nextest >/dev/null 2>&1; then
    run_tests='cargo nextest run --workspace --offline --locked --no-fail-fast'
else
    run_tests='cargo test --workspace --offline --locked --no-fail-fast'
fi

if [ "$(id -u)" = 0 ] && [ "${NAMECALL_NO_NETNS:-0}" != 1 ] && command -v unshare >/dev/null 2>&1; then
    log "tests in a private network namespace (lo only): $run_tests"
    exec unshare --net sh -c "ip link set lo up && $run_tests"
else
    log "tests in the current network namespace: $run_tests"
    exec $run_tests
fi
