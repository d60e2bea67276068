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
