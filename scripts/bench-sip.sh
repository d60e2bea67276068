#!/usr/bin/env bash
# SIP benchmarks of issue 3, each with its peer in the same run:
#   1. parser: sip-trunk vs rsip 0.4 (criterion + a CPU-time ratio report);
#   2. call setups/s: SIPp's stock uac scenario against our UserAgent (a
#      std UDP shell answering at once), then against SIPp's own uas, then
#      against the whole gateway (`namecall serve`, release build, answering
#      every call with the built-in echo and an RTP socket of its own).
# Usage: scripts/bench-sip.sh [rate calls/s] [calls]   (default 1200 24000)
#        BENCH_SIP_PARSE=0 skips the parser bench.
# Needs sipp (Debian package sip-tester). Record results in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-1200}"
calls="${2:-24000}"
command -v sipp >/dev/null || { echo "sipp missing: apt-get install sip-tester" >&2; exit 1; }

if [[ "${BENCH_SIP_PARSE:-1}" != 0 ]]; then
    echo "== parse: cargo bench -p sip-trunk --bench parse"
    cargo bench -p sip-trunk --bench parse 2>&1 | grep -E "^(parse|  parse|ratio)|time:|sip-trunk is"
fi

echo
echo "== the gateway under test: cargo build --release -p gateway --bin namecall"
cargo build --release -p gateway --bin namecall 2>&1 | tail -1
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
work="$(mktemp -d)"
gw_pid=""
cleanup() {
    [[ -n "$gw_pid" ]] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/plans" "$work/data"
# An IP-authenticated trunk whose peer is SIPp's address: its INVITEs are
# admitted, and the Request-URI user `echo` reaches the built-in echo.
cat > "$work/plans/bench.yaml" <<'EOF'
version: 1
tenant: sipbench
display_name: SIP load bench
trunks:
  sipp:
    kind: ip
    proxy: 127.0.0.1:5999
    allow_from: [127.0.0.1]
    transport: udp
    domain: bench.invalid
names:
  "":
    display_name: Bench
    route: echo
EOF
sip_port="$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
RUST_LOG=warn "$target_dir/release/namecall" serve --http 127.0.0.1:0 --sip "127.0.0.1:$sip_port" \
    --data-dir "$work/data" --dialplans "$work/plans" --rtp-ports 20000-39999 \
    > "$work/gateway.log" 2>&1 &
gw_pid=$!
# ready when its SIP port answers OPTIONS
ready=0
for _ in $(seq 1 300); do
    python3 - "$sip_port" <<'EOF' && { ready=1; break; }
import socket, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
req = ("OPTIONS sip:echo@127.0.0.1:%d SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKready\r\n"
       "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:echo@127.0.0.1>\r\nCall-ID: ready@probe\r\n"
       "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
s.bind(("127.0.0.1", 0))
s.sendto((req % (port, s.getsockname()[1])).encode(), ("127.0.0.1", port))
try:
    s.recvfrom(4096)
except OSError:
    sys.exit(1)
EOF
    kill -0 "$gw_pid" 2>/dev/null || break
done
if [[ "$ready" != 1 ]]; then
    echo "namecall did not answer OPTIONS on 127.0.0.1:$sip_port:" >&2
    cat "$work/gateway.log" >&2
    exit 1
fi

echo
echo "== call setups: cargo bench -p sip-trunk --bench call_setup -- --rate $rate --calls $calls --gateway 127.0.0.1:$sip_port"
cargo bench -p sip-trunk --bench call_setup -- --rate "$rate" --calls "$calls" --gateway "127.0.0.1:$sip_port"
