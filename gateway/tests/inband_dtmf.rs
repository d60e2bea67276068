//! In-band DTMF (a trunk with `dtmf: inband`) end to end, judged by
//! third-party parts only.
//!
//! A messenger user in headless Chromium (the real web client,
//! `tests/browser/call.mjs`) calls `acme/sales`; the real `namecall` binary
//! routes it over a trunk with `dtmf: inband` to Kamailio and baresip
//! (extension 100, auto-answering, recording what it hears). Chromium's fake
//! microphone plays quiet noise, so the only tones in the call are the ones
//! the gateway mixes into the G.711 stream. The user types a string of keys on
//! the keypad while the call is up; after the call, multimon-ng decodes
//! baresip's recording and must find exactly that string: every key once, in
//! order (a repeated key is two presses), nothing else. baresip reports no
//! RFC 4733 event: telephone-event was not offered on this trunk.
//!
//! The tone generator itself is unit-tested in `media/src/dtmf.rs` and
//! `media/src/bridge.rs`; this test is the interop half.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use labkit::{Baresip, Kamailio, LabGateway, NodeRun};
use serde_json::Value;

/// Every key of the keypad, and one pressed twice in a row. call.mjs types
/// them 6 s into a 12 s call: at 160 ms a key they need about 2.3 s, which
/// leaves room for a slow browser on a loaded machine.
const KEYS: &str = "1234567890*#44";

/// 30 s of quiet pink noise (-40 dBFS) at 48 kHz: Chromium's fake microphone
/// without its periodic beep, never digital silence.
fn quiet_noise(dir: &Path) -> PathBuf {
    let out = dir.join("quiet-48k.wav");
    let st = Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "1", "-b", "16"])
        .arg(&out)
        .args(["synth", "30", "pinknoise", "vol", "0.01"])
        .status()
        .expect("sox runs (Debian package sox)");
    assert!(st.success(), "sox could not make {}", out.display());
    out
}

#[test]
fn inband_keys_reach_the_desk_phone_as_tones() {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let speech = labkit::speech_wav(
        "Hello, this is the sales desk of Acme. Please type your customer number \
         on the keypad now. We are listening for the tones. Thank you. One, two, \
         three, four, five, six, seven, eight, nine, ten. Thank you for calling.",
        8000,
        "desk100-keypad",
    )
    .expect("speech wav");
    let phone = Baresip::start(&pbx, "100", "pass100", &speech).expect("baresip");
    let data = tempfile::tempdir().expect("temp dir");
    let noise = quiet_noise(data.path());
    let gw = LabGateway::start_with(
        Path::new(env!("CARGO_BIN_EXE_namecall")),
        &pbx,
        data.path(),
        |plan| {
            plan.replace(
                "    domain: pbx.lab\n",
                "    domain: pbx.lab\n    dtmf: inband\n",
            )
        },
        &[],
    )
    .expect("gateway starts and registers its trunk")
    .gw;
    let mut ctl = phone.control().expect("baresip control");
    let url = format!("http://{}/", gw.addr);
    let noise_arg = noise.to_string_lossy().into_owned();
    let run = NodeRun::spawn(
        &labkit::workspace_root().join("gateway/tests/browser/call.mjs"),
        &[
            url.as_str(),
            "--to",
            "acme/sales",
            "--end",
            "hangup",
            "--seconds",
            "12",
            "--dtmf",
            KEYS,
            "--audio",
            &noise_arg,
        ],
    )
    .expect("node runs call.mjs");
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(60)));
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("the phone never saw our BYE: {e}\n{}", gw.log.tail(60)));
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    eprintln!("call.mjs: {verdict}");
    for check in ["registered", "connected", "bytes_growing", "audio_energy"] {
        assert_eq!(
            verdict["checks"][check],
            Value::Bool(true),
            "check {check} failed: {verdict:#}\n--- gateway ---\n{}",
            gw.log.tail(60)
        );
    }
    let pressed: Vec<&str> = verdict["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["what"].as_str()?.strip_prefix("dtmf "))
        .collect();
    assert_eq!(pressed.concat(), KEYS, "the browser pressed every key");

    // RFC 4733 would show as baresip events: nothing but tones reached the phone
    let events: Vec<&Value> = ctl
        .events
        .iter()
        .filter(|e| e["type"] == "CALL_DTMF_START")
        .collect();
    assert!(
        events.is_empty(),
        "telephone-events reached the phone: {events:?}"
    );
    for key in KEYS.chars() {
        let line = format!("dtmf to the pbx digit={key} mode=Inband");
        let n = gw.log.lines().iter().filter(|l| l.contains(&line)).count();
        let want = KEYS.chars().filter(|&k| k == key).count();
        assert_eq!(n, want, "`{line}` logged {n} times\n{}", gw.log.tail(60));
    }

    // the phone's recording of the call, decoded by multimon-ng
    let rec = labkit::wait_for("recording", Duration::from_secs(10), || {
        phone.last_recording("dec")
    })
    .expect("the phone recorded the call");
    // baresip closes the file when the call ends: wait until its length settles
    let mut last = 0;
    labkit::wait_for("recording complete", Duration::from_secs(10), || {
        let len = std::fs::metadata(&rec).map(|m| m.len()).unwrap_or(0);
        let settled = len > 44 && len == last;
        last = len;
        settled.then_some(())
    })
    .expect("recording settles");
    let (secs, _) = labkit::wav_stats(&rec).expect("recording stats");
    assert!(secs >= 10.0, "recording of {secs} s");
    let heard = labkit::dtmf_in_wav(&rec).expect("multimon-ng decodes the recording");
    assert_eq!(
        heard,
        KEYS,
        "keys decoded from the phone's recording ({})\n--- gateway ---\n{}",
        rec.display(),
        gw.log.tail(40)
    );
}
