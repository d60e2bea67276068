//! The lab's peers start, answer and stop: Kamailio registers baresip with
//! digest auth, and a call between two baresip phones through Kamailio is
//! answered and recorded. If this fails, every interop test would too.

use labkit::{Baresip, Kamailio, speech_wav, wav_stats};
use std::time::Duration;

/// Two desk phones register to the lab PBX; 100 calls 101 through it; 101
/// auto-answers and records speech from 100; the PBX restarts and the phones'
/// registrations are gone (they are in memory only).
#[test]
fn kamailio_and_two_phones_call_each_other() {
    let mut pbx = Kamailio::start(&[
        ("100", "pass100"),
        ("101", "pass101"),
        ("trunk", "trunkpass"),
    ])
    .expect("kamailio starts");
    let wav = speech_wav(
        "You have reached the lab phone. Thank you.",
        8000,
        "labkit-check",
    )
    .expect("speech wav");
    let a = Baresip::start(&pbx, "100", "pass100", &wav).expect("phone 100");
    let b = Baresip::start(&pbx, "101", "pass101", &wav).expect("phone 101");
    let mut ca = a.control().expect("control 100");
    ca.command("dial", &format!("sip:101@{}", pbx.addr()))
        .expect("dial");
    ca.wait_event("CALL_ESTABLISHED", Duration::from_secs(15))
        .expect("answered");
    std::thread::sleep(Duration::from_secs(2));
    ca.command("hangup", "").expect("hangup");
    ca.wait_event("CALL_CLOSED", Duration::from_secs(10))
        .expect("closed");
    let rec = labkit::wait_for("recording", Duration::from_secs(10), || {
        b.last_recording("dec")
    })
    .expect("101 recorded the call");
    std::thread::sleep(Duration::from_millis(300));
    let (len, rms) = wav_stats(&rec).expect("stats");
    assert!(len > 1.0, "recording is {len} s");
    assert!(rms > 0.01, "recording is silent (rms {rms})");
    pbx.restart().expect("restart");
    assert!(
        pbx.contacts("100").is_empty(),
        "registrations survive a restart?"
    );
}

/// multimon-ng reads DTMF keys out of a WAV: sox synthesises 1, 5, 9, D, #
/// (100 ms tones, 60 ms apart, a repeated key included) and
/// `dtmf_in_wav` gives them back once each, in order.
#[test]
fn multimon_decodes_dtmf_made_by_sox() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = [
        ('1', 697, 1209),
        ('5', 770, 1336),
        ('5', 770, 1336),
        ('9', 852, 1477),
        ('D', 941, 1633),
        ('#', 941, 1477),
    ];
    let mut parts = Vec::new();
    for (i, (_, low, high)) in keys.iter().enumerate() {
        let p = dir.path().join(format!("key{i}.wav"));
        let st = std::process::Command::new("sox")
            .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
            .arg(&p)
            .args(["synth", "0.1", "sine", &low.to_string(), "sine"])
            .arg(high.to_string())
            .args(["remix", "-", "gain", "-12", "pad", "0", "0.06"])
            .status()
            .expect("sox runs");
        assert!(st.success());
        parts.push(p);
    }
    let seq = dir.path().join("seq.wav");
    let st = std::process::Command::new("sox")
        .args(&parts)
        .arg(&seq)
        .status()
        .expect("sox runs");
    assert!(st.success());
    let want: String = keys.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(labkit::dtmf_in_wav(&seq).expect("multimon-ng"), want);
}
