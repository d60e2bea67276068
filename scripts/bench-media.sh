#!/usr/bin/env bash
# Media load benchmark (issue 4, done-when 4a/4b/4c): concurrent Opus ⇄ PCMU transcoded
# calls and passthrough relayed calls on loopback, each measured against rtpengine
# (Debian rtpengine-daemon, userspace, table = -1) in the same run, plus the bare
# libopus cost and memory per call. The bench binary (media/benches/load.rs) starts its
# own rtpengine on 127.0.0.1 (ng control port chosen free, media ports 10000-32000) and
# stops it at the end; nothing else needs to run.
#
# Usage: scripts/bench-media.sh [transcode|relay|all] [--calls N] [--secs S]
#        [--complexity C] [--opus-rate HZ] [--no-fec] [--no-rtpengine] [--inband-dtmf]
#        [--bursts]  (old pacing: a call's frames leave in 1 ms bursts, 100 at 1,000 calls)
# Defaults: all, 300 transcoded calls and 1000 relayed calls, 20 s each.
# Long-running (minutes); not part of scripts/test-all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v rtpengine >/dev/null || scripts/install-deps.sh all
# thousands of sockets: generator + system under test + rtpengine
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# On a shared machine, BENCH_NICE=-10 raises this session's scheduling weight (the kernel
# shares CPU between sessions first when sched_autogroup is on, so plain nice is not
# enough); the system under test is otherwise starved by unrelated builds.
# The weight belongs to the session, so the bench gets a session of its own first.
if [[ -n "${BENCH_NICE:-}" && -z "${BENCH_SESSION:-}" ]] && command -v setsid >/dev/null; then
    BENCH_SESSION=1 exec setsid -w "$0" "$@"
fi
if [[ -n "${BENCH_NICE:-}" && -w /proc/self/autogroup ]]; then
    echo "$BENCH_NICE" > /proc/self/autogroup || true
fi
exec nice -n "${BENCH_NICE:-0}" cargo bench -p media --bench load -- "$@"
