//! Smoke run of the chat load tool (`benches/ws_load`): a few idle and
//! active clients against the real `namecall` binary for two seconds. The
//! numbers are not checked (they belong in `docs/benchmarks.md`); what is
//! checked is that the tool works: every acknowledged message arrived once,
//! in seq order, latencies and CPU were measured.

#[path = "../benches/ws_load/load.rs"]
mod load;

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tool_smoke() {
    // NATS only when the machine has it; the gateway half always runs
    let cfg = load::Config::smoke(
        PathBuf::from(env!("CARGO_BIN_EXE_namecall")),
        load::find_nats(),
    );
    let (ours, theirs) = load::run(&cfg).await.expect("load run");
    assert!(ours.acked > 0, "no send was acknowledged: {ours:?}");
    assert_eq!(ours.errors, 0, "{ours:?}");
    assert_eq!(ours.delivered, ours.acked, "{ours:?}");
    assert!(ours.delivered_per_s > 0.0 && ours.p99_ms > 0.0, "{ours:?}");
    assert!(
        ours.p50_ms <= ours.p99_ms && ours.p99_ms <= ours.max_ms,
        "{ours:?}"
    );
    if let Some(t) = theirs {
        assert_eq!(t.errors, 0, "{t:?}");
        assert_eq!(t.delivered, t.acked, "{t:?}");
    }
}
