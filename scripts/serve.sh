#!/usr/bin/env bash
# Starts the namecall gateway on its embedded default: SQLite in ./data, the
# example dialplans, the web client on http://127.0.0.1:8080/ and the built-in
# `echo` target. Installs cmake/pkg-config first if they are missing.
# Arguments go to `namecall serve` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
exec cargo run --release --locked -p gateway --bin namecall -- serve "$@"
