//! A headless Chromium behind "NAT" (allowed to use relay candidates only) calls
//! `echo` through a real coturn and hears itself.
//!
//! coturn (Debian `coturn`) runs on 127.0.0.1 with a TURN REST shared secret;
//! the gateway gets the same secret (`--turn-secret`) and the server in
//! `--ice-servers`, and hands the web client fresh credentials in `welcome`.
//! `node tests/browser/echo.mjs <url> --relay` opens the client with
//! `?ice=relay` (`iceTransportPolicy: 'relay'`, a test-only switch), so the
//! call connects only if coturn accepted the gateway's credentials and relays
//! the media: the selected pair's local candidate must be a relay one, and the
//! echoed audio must arrive with energy above zero.

use std::time::Duration;

use labkit::{Coturn, Gateway, NodeRun};

/// Chromium restricted to relay candidates hears itself through coturn and `echo`.
#[test]
fn chromium_hears_itself_through_turn() {
    let secret = format!("labkit-{}", std::process::id());
    let turn = Coturn::start(&secret).expect("coturn starts (scripts/install-deps.sh)");
    let ice_servers = format!(r#"[{{"urls":["turn:{}?transport=udp"]}}]"#, turn.addr());
    let data = tempfile::tempdir().expect("temp dir");
    let mut gw = Gateway::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        data.path(),
        &[
            "--ice-servers",
            &ice_servers,
            "--turn-secret",
            &secret,
            "--turn-ttl",
            "600",
        ],
    )
    .expect("namecall starts and prints its readiness line");

    let script = labkit::workspace_root().join("gateway/tests/browser/echo.mjs");
    let url = format!("http://{}/", gw.addr);
    let verdict = NodeRun::spawn(&script, &[url.as_str(), "--relay"])
        .expect("node runs (install nodejs and `npm install` in tests/)")
        .verdict(Duration::from_secs(120))
        .expect("echo.mjs prints its JSON verdict");
    eprintln!("echo.mjs --relay verdict: {verdict:#}");
    for check in [
        "signed_in",
        "turn_credentials",
        "connected",
        "relay_pair",
        "bytes_growing",
        "codec_opus",
        "audio_energy",
        "ended_by_hangup",
    ] {
        assert_eq!(
            verdict["checks"][check],
            serde_json::Value::Bool(true),
            "check {check} failed: {verdict}\ncoturn:\n{}",
            turn.log.tail(40)
        );
    }
    assert_eq!(verdict["ok"], serde_json::Value::Bool(true));
    // coturn itself saw an authenticated allocation for this login
    assert!(
        turn.log
            .lines()
            .iter()
            .any(|l| l.contains(":browser-test>") && l.contains("ALLOCATE")),
        "coturn logged the allocation of browser-test:\n{}",
        turn.log.tail(60)
    );

    for name in ["namecall_active_calls", "namecall_media_sockets"] {
        if let Err(body) = gw.wait_metric(name, 0, Duration::from_secs(5)) {
            panic!("{name} did not return to 0:\n{body}");
        }
    }
    let status = gw
        .terminate(Duration::from_secs(10))
        .expect("gateway exits within 10 s of SIGTERM");
    assert!(status.success(), "graceful exit, got {status}");
}
