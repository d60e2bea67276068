#!/usr/bin/env bash
# SIP benchmarks of issue 3, each with its peer in the same run:
#   1. parser: sip-trunk vs rsip 0.4 (criterion + a CPU-time ratio report);
#   2. call setups/s: SIPp's stock uac scenario against our UserAgent (a
#      std UDP shell answering at once), then against SIPp's own uas.
# Usage: scripts/bench-sip.sh [rate calls/s] [calls]   (default 1200 24000)
# Needs sipp (Debian package sip-tester). Record results in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-1200}"
calls="${2:-24000}"
command -v sipp >/dev/null || { echo "sipp missing: apt-get install sip-tester" >&2; exit 1; }

echo "== parse: cargo bench -p sip-trunk --bench parse"
cargo bench -p sip-trunk --bench parse 2>&1 | grep -E "^(parse|  parse|ratio)|time:|sip-trunk is"

echo
echo "== call setups: cargo bench -p sip-trunk --bench call_setup -- --rate $rate --calls $calls"
cargo bench -p sip-trunk --bench call_setup -- --rate "$rate" --calls "$calls"
