//! Video with a PBX whose phones speak only H.264, and video in early media.
//!
//! The trunk says `video: [h264]`. Headless Chromium (fake camera) calls
//! `acme/sales` offering VP8 first, as browsers do; the gateway answers it with
//! H.264 alone and offers the PBX that same H.264 payload type. The PBX is SIPp
//! (tests/sipp/uas-h264-echo.xml): its scenario fails unless the INVITE carries
//! H.264, it answers 183 with H.264 video and echoes the audio and video RTP
//! back (`-rtp_echo`) while the call still rings, then answers 200. So
//! Chromium's own H.264 crosses the gateway's depacketizer and packetizer both
//! ways and Chromium decodes it before the answer (early video), with getStats
//! naming H264 both ways.

use std::path::PathBuf;
use std::time::Duration;

use labkit::{Gateway, NodeRun, SippUas};
use serde_json::Value;

fn script() -> PathBuf {
    labkit::workspace_root().join("gateway/tests/browser/call.mjs")
}

/// `acme` with one IP trunk to `pbx` passing only H.264 video.
fn plan(pbx: &str) -> String {
    format!(
        "version: 1\ntenant: acme\ntrunks:\n  main: {{ kind: ip, proxy: \"{pbx}\", keepalive: off, video: [h264] }}\n\
         names:\n  sales:\n    route: {{ dial: {{ trunk: main, extension: \"100\", timeout: 60s }} }}\n"
    )
}

#[test]
fn h264_only_pbx_gets_h264_and_early_video_reaches_the_browser() {
    let media_port = labkit::free_port();
    let mp = media_port.to_string();
    let pbx = SippUas::start(
        "uas-h264-echo.xml",
        &["-mi", "127.0.0.1", "-mp", &mp, "-rtp_echo"],
        Duration::from_secs(150),
    )
    .expect("sipp starts");
    let root = tempfile::tempdir().expect("temp dir");
    let gw = Gateway::start_with_plan(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        root.path(),
        "acme.yaml",
        &plan(&format!("127.0.0.1:{}", pbx.port)),
    )
    .expect("gateway");
    let url = format!("http://{}/", gw.addr);
    let run = NodeRun::spawn(
        &script(),
        &[
            &url,
            "--to",
            "acme/sales",
            "--end",
            "early",
            "--seconds",
            "9",
            "--video",
        ],
    )
    .expect("node runs call.mjs");
    let verdict = run.verdict(Duration::from_secs(150)).expect("verdict");
    eprintln!("call.mjs: {verdict}");
    if let Err(out) = pbx.finish() {
        panic!(
            "the H.264-only PBX refused our INVITE or saw no BYE:\n{out}\n{}",
            gw.log.tail(60)
        );
    }
    for name in ["ringing_early", "early_video_decoded", "connected"] {
        assert_eq!(
            verdict["checks"][name],
            Value::Bool(true),
            "check {name} failed: {verdict:#}\n--- gateway ---\n{}",
            gw.log.tail(60)
        );
    }
    let early = &verdict["early_video"];
    assert_eq!(early["in"]["codec"], "video/H264", "{verdict:#}");
    assert_eq!(early["out"]["codec"], "video/H264", "{verdict:#}");
    assert!(
        gw.log.contains("video passthrough with the pbx codec=H264"),
        "{}",
        gw.log.tail(60)
    );
    assert_eq!(verdict["ended"]["reason"], "hangup", "{verdict:#}");
}
