//! A real headless Firefox calls `echo` through the embedded web client and hears itself.
//!
//! The Firefox twin of `browser_echo.rs`: starts the `namecall` binary on a
//! free port with a temporary data dir, runs
//! `node tests/browser/echo-firefox.mjs <url>` (puppeteer-core driving
//! Debian's firefox-esr over WebDriver BiDi), checks the JSON verdict, checks
//! `/metrics` shows no leaked call or socket, and stops the gateway with
//! SIGTERM (graceful shutdown must exit 0).
//!
//! Meant to run in a network namespace with only `lo`
//! (`unshare --net sh -c 'ip link set lo up; cargo test -p gateway --test browser_firefox'`);
//! outside one the page drops non-loopback candidates, so it runs anyway.

use std::path::PathBuf;
use std::time::Duration;

use labkit::{Gateway, NodeRun};

/// Firefox signs in as a guest, calls `echo`, hears its own audio, hangs up; nothing leaks.
#[test]
fn firefox_hears_itself_through_echo() {
    let firefox = std::env::var_os("FIREFOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/firefox-esr"));
    assert!(
        firefox.is_file(),
        "{} not found: install Debian package `firefox-esr` (scripts/install-deps.sh)",
        firefox.display()
    );

    let data = tempfile::tempdir().expect("temp dir");
    let mut gw = Gateway::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        data.path(),
        &[],
    )
    .expect("namecall starts and prints its readiness line");

    let script = labkit::workspace_root().join("gateway/tests/browser/echo-firefox.mjs");
    let url = format!("http://{}/", gw.addr);
    let verdict = NodeRun::spawn(&script, &[url.as_str()])
        .expect("node runs (install nodejs and `npm install` in tests/)")
        .verdict(Duration::from_secs(120))
        .expect("echo-firefox.mjs prints its JSON verdict");
    eprintln!("echo-firefox.mjs verdict: {verdict:#}");
    assert_eq!(
        verdict["browser"], "firefox",
        "the verdict comes from Firefox"
    );
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

    let status = gw
        .terminate(Duration::from_secs(10))
        .expect("gateway exits within 10 s of SIGTERM");
    assert!(status.success(), "graceful exit, got {status}");
    assert!(
        gw.log.contains("call media ended"),
        "the media task logged its end"
    );
}
