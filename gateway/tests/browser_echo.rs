//! A real headless Chromium calls `echo` through the embedded web client and hears itself.
//!
//! Starts the `namecall` binary on a free port with a temporary data dir,
//! waits for its readiness line, runs `node tests/browser/echo.mjs <url>`
//! (playwright-core + Debian's chromium), checks the JSON verdict, checks
//! `/metrics` shows no leaked call or socket, and stops the gateway with
//! SIGTERM (graceful shutdown must exit 0).
//!
//! Meant to run in a network namespace with only `lo`
//! (`unshare --net sh -c 'ip link set lo up; cargo test -p gateway --test browser_echo'`);
//! outside one the page drops non-loopback candidates, so it runs anyway.

use std::time::Duration;

use labkit::{Gateway, NodeRun};

fn start_gateway(data_dir: &std::path::Path) -> Gateway {
    Gateway::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        data_dir,
        &[],
    )
    .expect("namecall starts and prints its readiness line")
}

/// Chromium signs in, calls `echo`, hears its own audio, hangs up; nothing leaks.
#[test]
fn chromium_hears_itself_through_echo() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut gw = start_gateway(data.path());

    let (status, body) = gw.get("/healthz").expect("healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, page) = gw.get("/").expect("index");
    assert_eq!(status, 200);
    assert!(
        page.contains("<script src=\"/app.js\">"),
        "the web client is served"
    );

    let script = labkit::workspace_root().join("gateway/tests/browser/echo.mjs");
    let url = format!("http://{}/", gw.addr);
    let verdict = NodeRun::spawn(&script, &[url.as_str()])
        .expect("node runs (install nodejs and `npm install` in tests/)")
        .verdict(Duration::from_secs(120))
        .expect("echo.mjs prints its JSON verdict");
    eprintln!("echo.mjs verdict: {verdict:#}");
    for check in [
        "signed_in",
        "connected",
        "bytes_growing",
        "codec_opus",
        "audio_energy",
        "loopback_pair",
        "ended_by_hangup",
    ] {
        assert_eq!(
            verdict["checks"][check],
            serde_json::Value::Bool(true),
            "check {check} failed: {verdict}"
        );
    }
    assert_eq!(verdict["ok"], serde_json::Value::Bool(true));

    // the call's task and socket are gone once the browser has seen `ended`
    for name in ["namecall_active_calls", "namecall_media_sockets"] {
        if let Err(body) = gw.wait_metric(name, 0, Duration::from_secs(5)) {
            panic!("{name} did not return to 0:\n{body}");
        }
    }
    assert!(
        gw.metric("namecall_calls_total").unwrap_or(0) >= 1,
        "the call was counted"
    );

    // graceful shutdown on SIGTERM
    let status = gw
        .terminate(Duration::from_secs(10))
        .expect("gateway exits within 10 s of SIGTERM");
    assert!(status.success(), "graceful exit, got {status}");
    assert!(
        gw.log.contains("call media ended"),
        "the media task logged its end"
    );
}
