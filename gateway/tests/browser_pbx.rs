//! The product's promise, end to end: a messenger user in headless Chromium
//! calls a company by name and the desk phone on the company's own PBX rings.
//!
//! Every test starts a real Kamailio (the company's registrar, digest auth),
//! a real baresip registered to it as extension 100 (plays a speech WAV,
//! records what it hears), and the real `namecall` binary whose dialplan is
//! `dialplans/examples/acme.yaml` pointed at that Kamailio. The gateway
//! registers its trunk; Chromium (tests/browser/call.mjs) registers an
//! account, finds `acme/sales` by searching "acme" and calls it through the
//! web client. The Rust side drives the desk phone through baresip's control
//! socket and checks what it heard.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use labkit::{Baresip, Gateway, Kamailio, LabGateway, NodeRun, PhoneAudio};
use serde_json::Value;

struct Lab {
    pbx: Kamailio,
    phone: Baresip,
    gw: Gateway,
    _data: tempfile::TempDir,
}

fn script() -> PathBuf {
    labkit::workspace_root().join("gateway/tests/browser/call.mjs")
}

/// Kamailio, desk phone 100 (auto-answering or not), and the gateway with its trunk registered.
fn lab(auto_answer: bool) -> Lab {
    lab_with(auto_answer, "100")
}

/// Like [`lab`] with the desk phone registered as `ext` (100 and 101 are subscribers).
fn lab_with(auto_answer: bool, ext: &str) -> Lab {
    let pbx = Kamailio::start(&[
        ("trunk", "trunkpass"),
        ("100", "pass100"),
        ("101", "pass101"),
    ])
    .expect("kamailio");
    // long enough to still be talking after a hold and resume
    let wav = labkit::speech_wav(
        "Hello, this is the sales desk of Acme. You are speaking to extension one hundred. \
         We are testing the call from the messenger. One, two, three, four, five, six, seven, \
         eight, nine, ten. The quick brown fox jumps over the lazy dog. Thank you for calling.",
        8000,
        "desk100-long",
    )
    .expect("wav");
    let pass = format!("pass{ext}");
    let phone = Baresip::start_with(&pbx, ext, &pass, &wav, auto_answer).expect("baresip");
    lab_around(pbx, phone)
}

/// The gateway with the lab dialplan pointed at `pbx`, around a started phone.
fn lab_around(pbx: Kamailio, phone: Baresip) -> Lab {
    let data = tempfile::tempdir().expect("temp dir");
    let gw = LabGateway::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        &pbx,
        data.path(),
    )
    .expect("gateway starts and registers its trunk")
    .gw;
    Lab {
        pbx,
        phone,
        gw,
        _data: data,
    }
}

fn call(lab: &Lab, args: &[&str]) -> NodeRun {
    let url = format!("http://{}/", lab.gw.addr);
    let mut all = vec![url.as_str()];
    all.extend_from_slice(args);
    NodeRun::spawn(&script(), &all).expect("node runs call.mjs")
}

fn check(verdict: &Value, names: &[&str], lab: &Lab) {
    for name in names {
        assert_eq!(
            verdict["checks"][name],
            Value::Bool(true),
            "check {name} failed: {verdict:#}\n--- gateway ---\n{}",
            lab.gw.log.tail(60)
        );
    }
}

/// After a call, the gateway is back to idle: no call task, no media socket.
fn assert_idle(lab: &Lab) {
    for name in ["namecall_active_calls", "namecall_media_sockets"] {
        if let Err(body) = lab.gw.wait_metric(name, 0, Duration::from_secs(10)) {
            panic!("{name} did not return to 0:\n{body}");
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Done-when 1: search, call, the desk phone answers; audio both ways,
/// DTMF `1` reaches the phone, the browser hangs up and the phone sees BYE.
#[test]
fn browser_calls_desk_phone_by_name() {
    let lab = lab(true);
    let mut ctl = lab.phone.control().expect("baresip control");
    let run = call(
        &lab,
        &[
            "--to",
            "acme/sales",
            "--search",
            "acme",
            "--end",
            "hangup",
            "--seconds",
            "5",
            "--dtmf",
            "1",
        ],
    );
    let established = ctl
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.gw.log.tail(60)));
    let dtmf = ctl
        .wait_event("CALL_DTMF_START", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.gw.log.tail(60)));
    assert_eq!(dtmf["param"].as_str(), Some("1"), "{dtmf}");
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(30))
        .expect("the desk phone sees our BYE");
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    eprintln!("call.mjs: {verdict}");
    check(
        &verdict,
        &[
            "registered",
            "resumed_after_reload",
            "found_by_search",
            "connected",
            "bytes_growing",
            "audio_energy",
        ],
        &lab,
    );
    assert_eq!(verdict["ended"]["reason"], "hangup", "{verdict}");
    // the phone heard the browser's fake microphone (a beep every second) for the call's length
    let rec = lab
        .phone
        .last_recording("dec")
        .expect("the phone recorded the call");
    let (len, rms) = labkit::wav_stats(&rec).expect("recording stats");
    assert!(len >= 4.0, "recording of {len} s");
    assert!(rms > 0.01, "the phone heard speech-level audio, rms {rms}");
    assert_idle(&lab);
    // the messenger user's named login is who called: baresip names the peer
    let peer = established["peeruri"].as_str().unwrap_or_default();
    assert!(
        peer.starts_with("sip:alice@"),
        "caller shown as {established}"
    );
}

/// Chromium calls `acme/sales` on a desk phone that offers and accepts only `audio`,
/// pressing the `dtmf` keys midway: the call connects, the browser hears the phone's
/// speech, the phone records the browser's fake microphone, and the gateway logged
/// `expect_log`. Returns the keys the phone saw as telephone-events.
fn single_codec_call(audio: PhoneAudio, speech: &str, dtmf: &str, expect_log: &str) -> Vec<String> {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let rate = audio.sample_rate();
    let wav = labkit::speech_wav(speech, rate, &format!("desk100-{rate}")).expect("wav");
    let phone = Baresip::start_codec(&pbx, "100", "pass100", &wav, audio).expect("baresip");
    let lab = lab_around(pbx, phone);
    let mut ctl = lab.phone.control().expect("baresip control");
    let mut args = vec!["--to", "acme/sales", "--end", "hangup", "--seconds", "6"];
    if !dtmf.is_empty() {
        args.extend(["--dtmf", dtmf]);
    }
    let run = call(&lab, &args);
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.gw.log.tail(60)));
    let mut keys = Vec::new();
    for _ in dtmf.chars() {
        let key = ctl
            .wait_event("CALL_DTMF_START", Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}\n{}", lab.gw.log.tail(60)));
        keys.push(key["param"].as_str().unwrap_or_default().to_owned());
    }
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(30))
        .expect("the desk phone sees our BYE");
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    eprintln!("call.mjs: {verdict}");
    check(
        &verdict,
        &["connected", "bytes_growing", "audio_energy"],
        &lab,
    );
    assert!(
        lab.gw.log.contains(expect_log),
        "no `{expect_log}` in the gateway's log:\n{}",
        lab.gw.log.tail(60)
    );
    let rec = lab
        .phone
        .last_recording("dec")
        .expect("the phone recorded the call");
    let (len, rms) = labkit::wav_stats(&rec).expect("recording stats");
    assert!(len >= 4.0, "recording of {len} s");
    assert!(
        rms > 0.01,
        "the phone heard the browser over {audio:?}, rms {rms}"
    );
    assert_idle(&lab);
    // the call's PBX leg in the metrics: one call, its packets, a good line
    let metric = |name: &str| lab.gw.metric(name).unwrap_or(-1);
    assert_eq!(metric("namecall_call_mos_count"), 1);
    assert_eq!(
        metric("namecall_poor_calls_total"),
        0,
        "{}",
        lab.gw.log.tail(20)
    );
    let received = metric("namecall_pbx_rtp_packets_received_total");
    assert!(
        received > 150,
        "{received} RTP packets from the phone in a 6 s call"
    );
    assert!(lab.gw.log.contains("call media"), "{}", lab.gw.log.tail(20));
    keys
}

/// G.722 towards the PBX: the desk phone offers and accepts only G.722
/// (baresip's `g722` module, 16 kHz audio). The gateway lists G.722 before G.711,
/// the phone takes it, the bridge runs Opus at 16 kHz, and audio flows both ways.
#[test]
fn browser_calls_g722_desk_phone() {
    single_codec_call(
        PhoneAudio::G722,
        "Hello, this is the wideband desk of Acme. You are hearing G seven twenty two. \
         One, two, three, four, five, six, seven, eight, nine, ten.",
        "",
        "pbx answered codec=G722",
    );
}

/// Opus towards the PBX: the desk phone offers and accepts only Opus (a PBX with
/// Opus enabled; baresip's `opus` module). The gateway offers Opus first, the phone
/// takes it, and the bridge passes the browser's Opus through untouched both ways
/// (no transcoding, no resampling). A key pressed in the browser still reaches the
/// phone as a telephone-event (baresip pairs Opus with telephone-event/8000).
#[test]
fn browser_calls_opus_desk_phone_without_transcoding() {
    let keys = single_codec_call(
        PhoneAudio::Opus,
        "Hello, this is the full band desk of Acme. You are hearing Opus end to end. \
         One, two, three, four, five, six, seven, eight, nine, ten.",
        "7",
        "media bridge codec=Opus passthrough=true",
    );
    assert_eq!(keys, ["7"]);
}

/// Done-when 2: the desk phone hangs up first.
#[test]
fn desk_phone_hangs_up_first() {
    let lab = lab(true);
    let mut ctl = lab.phone.control().expect("baresip control");
    let run = call(
        &lab,
        &["--to", "acme/sales", "--end", "remote", "--seconds", "30"],
    );
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.gw.log.tail(60)));
    // let audio flow for a moment, then hang up on the phone
    std::thread::sleep(Duration::from_secs(2));
    ctl.command("hangup", "").expect("hangup command");
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    check(&verdict, &["connected"], &lab);
    assert_eq!(verdict["ended"]["reason"], "remote-hangup", "{verdict}");
    assert!(
        verdict["ended"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("hung up"),
        "{verdict}"
    );
    assert_idle(&lab);
}

/// Done-when 2: the caller gives up while the phone rings: CANCEL, the phone stops ringing.
#[test]
fn caller_cancels_while_ringing() {
    let lab = lab(false);
    let mut ctl = lab.phone.control().expect("baresip control");
    let run = call(&lab, &["--to", "acme/sales", "--end", "cancel"]);
    ctl.wait_event("CALL_INCOMING", Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.gw.log.tail(60)));
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(30))
        .expect("the phone stops ringing");
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    check(&verdict, &["ringing"], &lab);
    assert_eq!(verdict["ended"]["reason"], "hangup", "{verdict}");
    assert!(
        ctl.events.iter().all(|e| e["type"] != "CALL_ESTABLISHED"),
        "nobody answered"
    );
    assert_idle(&lab);
}

/// Done-when 2: a busy desk phone (486) ends the call with a clear message.
#[test]
fn busy_desk_phone_is_clear() {
    let lab = lab(false);
    let mut ctl = lab.phone.control().expect("baresip control");
    let run = call(&lab, &["--to", "acme/sales", "--end", "fail"]);
    ctl.wait_event("CALL_INCOMING", Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.gw.log.tail(60)));
    // the user rejects the call on the phone: baresip answers 486 Busy Here
    ctl.command("hangup", "486 Busy Here").expect("reject");
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    check(&verdict, &["registered", "not_connected"], &lab);
    assert_eq!(verdict["ended"]["reason"], "busy", "{verdict}");
    assert!(
        verdict["ended"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Busy"),
        "{verdict}"
    );
    assert_idle(&lab);
}

/// Done-when 2: extension 100 is a subscriber of the PBX but no phone is
/// registered for it (the only phone is 101): the PBX answers 480 and the
/// caller reads "not available".
#[test]
fn unregistered_extension_is_clear() {
    let lab = lab_with(true, "101");
    let run = call(&lab, &["--to", "acme/sales", "--end", "fail"]);
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    check(&verdict, &["registered", "not_connected"], &lab);
    assert_eq!(verdict["ended"]["reason"], "unavailable", "{verdict}");
    assert!(
        verdict["ended"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Not available"),
        "{verdict}"
    );
    assert_idle(&lab);
}

/// Done-when 3: the desk phone holds and resumes; audio flows both ways after resume.
#[test]
fn hold_and_resume_keep_audio_both_ways() {
    let lab = lab(true);
    let mut ctl = lab.phone.control().expect("baresip control");
    let run = call(
        &lab,
        &["--to", "acme/sales", "--end", "hangup", "--seconds", "12"],
    );
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.gw.log.tail(60)));
    std::thread::sleep(Duration::from_secs(2));
    let held_at = now_ms();
    ctl.command("hold", "").expect("hold");
    std::thread::sleep(Duration::from_secs(3));
    let resumed_at = now_ms();
    ctl.command("resume", "").expect("resume");
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    check(&verdict, &["connected", "audio_energy"], &lab);
    assert!(
        lab.gw.log.contains("pbx changed hold state held=true")
            && lab.gw.log.contains("pbx changed hold state held=false"),
        "the gateway saw hold and resume:\n{}",
        lab.gw.log.tail(60)
    );
    // browser side: energy grows again after the resume (desk phone → browser)
    let samples = verdict["samples"].as_array().cloned().unwrap_or_default();
    let energy_at = |t: u64| {
        samples
            .iter()
            .rfind(|s| s["t"].as_u64().unwrap_or(0) <= t)
            .and_then(|s| s["energy"].as_f64())
            .unwrap_or(0.0)
    };
    let end = samples
        .last()
        .and_then(|s| s["t"].as_u64())
        .unwrap_or(resumed_at);
    let before_hold = energy_at(held_at);
    let after_resume = energy_at(resumed_at + 1000);
    let last = energy_at(end);
    assert!(before_hold > 0.0, "audio before hold: {verdict}");
    assert!(
        last > after_resume,
        "desk phone → browser audio after resume ({after_resume} → {last}): {verdict}"
    );
    // phone side: the end of its recording (after the resume) is not silent (browser → desk phone)
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(30))
        .expect("the phone sees our BYE");
    let rec = lab.phone.last_recording("dec").expect("recording");
    let tail = labkit::wav_tail_rms(&rec, 2.0).expect("recording tail");
    assert!(
        tail > 0.005,
        "browser → desk phone audio after resume, tail rms {tail}"
    );
    assert_idle(&lab);
}

/// A desk phone dials a named login: the messenger user's browser rings,
/// they answer, audio flows both ways, the desk phone hangs up.
#[test]
fn desk_phone_calls_a_messenger_user() {
    let lab = lab(true);
    let mut ctl = lab.phone.control().expect("baresip control");
    let run = call(
        &lab,
        &["--login", "alice", "--end", "answer", "--seconds", "20"],
    );
    // the browser is signed in (its session rings) once it printed READY
    run.log
        .wait_for("READY", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", run.log.tail(20)));
    ctl.command("dial", &format!("sip:alice@{}", lab.pbx.addr()))
        .expect("dial");
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(40))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.gw.log.tail(60)));
    std::thread::sleep(Duration::from_secs(4));
    ctl.command("hangup", "").expect("hangup");
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    eprintln!("call.mjs: {verdict}");
    check(
        &verdict,
        &[
            "incoming_shown",
            "connected",
            "bytes_growing",
            "audio_energy",
        ],
        &lab,
    );
    assert_eq!(verdict["incoming_from"], "100", "caller shown: {verdict}");
    assert_eq!(verdict["ended"]["reason"], "remote-hangup", "{verdict}");
    let rec = lab
        .phone
        .last_recording("dec")
        .expect("the phone recorded the call");
    let (len, rms) = labkit::wav_stats(&rec).expect("recording stats");
    assert!(len >= 3.0, "recording of {len} s");
    assert!(rms > 0.01, "the phone heard the browser, rms {rms}");
    assert_idle(&lab);
}

/// The PBX answers 183 with SDP (early media: an announcement or its own
/// ringback): the gateway bridges the early stream at once, the client is
/// told not to play its own ringback, and the answered call goes on on the
/// same stream. baresip 1.0's `early` mode sends no RTP before it accepts,
/// so the energy of early audio itself is not checked here.
#[test]
fn early_media_is_bridged_before_answer() {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let wav = labkit::speech_wav(
        "Thank you for calling Acme. Please hold, an agent will answer shortly. \
         Thank you for calling Acme. Please hold, an agent will answer shortly.",
        8000,
        "early100",
    )
    .expect("wav");
    let phone = Baresip::start_mode(&pbx, "100", "pass100", &wav, "early").expect("baresip");
    let lab = lab_around(pbx, phone);
    let mut ctl = lab.phone.control().expect("baresip control");
    let run = call(
        &lab,
        &["--to", "acme/sales", "--end", "early", "--seconds", "3"],
    );
    run.log
        .wait_for("EARLY-DONE", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", run.log.tail(20), lab.gw.log.tail(40)));
    ctl.command("accept", "").expect("accept");
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(40))
        .expect("the phone sees our BYE");
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    eprintln!("call.mjs: {verdict}");
    check(&verdict, &["ringing_early", "connected"], &lab);
    assert!(lab.gw.log.contains("early media from the pbx"));
    assert_idle(&lab);
}

/// Kamailio, a baresip video phone (VP8, fake camera, speech) registered as 100, and
/// the gateway with `video: true` on its trunk.
fn video_lab() -> Lab {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let wav = labkit::speech_wav(
        "Hello, this is the video desk of Acme. You are speaking to extension one hundred. \
         We are testing the video call from the messenger. One, two, three, four, five, six, \
         seven, eight, nine, ten. The quick brown fox jumps over the lazy dog. Thank you.",
        8000,
        "desk100-video-long",
    )
    .expect("wav");
    let phone = Baresip::start_video(&pbx, "100", "pass100", &wav).expect("baresip");
    let data = tempfile::tempdir().expect("temp dir");
    let gw = LabGateway::start_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        &pbx,
        data.path(),
        |plan| {
            plan.replacen(
                "    domain: pbx.lab\n",
                "    domain: pbx.lab\n    video: true\n",
                1,
            )
        },
        &[],
    )
    .expect("gateway starts and registers its trunk")
    .gw;
    Lab {
        pbx,
        phone,
        gw,
        _data: data,
    }
}

/// Panics with `what`, the error and both logs' tails.
fn video_fail(lab: &Lab, what: &str, e: std::io::Error) -> ! {
    panic!(
        "{what}: {e}\n--- phone ---\n{}\n--- gateway ---\n{}",
        lab.phone.log.tail(40),
        lab.gw.log.tail(60)
    )
}

/// Video flows both ways: the gateway latched the phone's video and the phone decoded
/// the browser's.
fn video_both_ways(lab: &Lab) {
    lab.gw
        .log
        .wait_for("video rtp latched", Duration::from_secs(20))
        .unwrap_or_else(|e| video_fail(lab, "no video from the phone", e));
    lab.phone
        .log
        .wait_for("video: receiving with resolution", Duration::from_secs(20))
        .unwrap_or_else(|e| video_fail(lab, "the phone decoded no video", e));
}

/// Issue 4, video passthrough: the caller ticks Video (Chromium's fake camera), the
/// trunk allows video (`video: true`), and the desk phone is a baresip video phone
/// (VP8, fake camera). VP8 crosses the gateway undecoded both ways: Chromium decodes
/// the phone's frames (getStats framesDecoded grows) and the phone decodes Chromium's
/// (baresip logs the decoded resolution). The phone then holds: its video stops, so
/// Chromium's decoder starves and asks for a keyframe (PLI); the gateway forwards it to
/// the phone's RTCP, and after the resume the phone's encoder answers with a keyframe
/// that Chromium decodes (keyFramesDecoded goes up).
#[test]
fn browser_video_call_passes_vp8_through() {
    let lab = video_lab();
    let mut ctl = lab.phone.control().expect("baresip control");
    let run = call(
        &lab,
        &[
            "--to",
            "acme/sales",
            "--end",
            "hangup",
            "--seconds",
            "16",
            "--video",
        ],
    );
    // generous: Chromium with a fake camera starts slowly on a loaded machine
    if let Err(e) = ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(90)) {
        let verdict = run.verdict(Duration::from_secs(10));
        panic!("{e}\nbrowser: {verdict:?}\n{}", lab.gw.log.tail(60));
    }
    video_both_ways(&lab);
    let fail = |what: &str, e: std::io::Error| -> ! { video_fail(&lab, what, e) };
    let held_at = now_ms();
    ctl.command("hold", "").expect("hold");
    lab.gw
        .log
        .wait_for(
            "browser keyframe request sent to the pbx",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| fail("no keyframe request crossed", e));
    ctl.command("resume", "").expect("resume");
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(40))
        .expect("the desk phone sees our BYE");
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    eprintln!("--- phone ---\n{}", lab.phone.log.tail(30));
    check(
        &verdict,
        &["connected", "audio_energy", "video_decoded", "video_sent"],
        &lab,
    );
    assert_eq!(
        verdict["ended"]["reason"],
        "hangup",
        "{verdict}\n--- phone ---\n{}",
        lab.phone.log.tail(20)
    );
    assert!(
        lab.gw.log.contains("pbx changed hold state held=false"),
        "{}",
        lab.gw.log.tail(60)
    );
    // Chromium's side of the keyframe exchange: it asked (inbound pliCount), and a
    // second keyframe from the phone was decoded after the hold
    let samples = verdict["samples"].as_array().cloned().unwrap_or_default();
    let video_at = |t: u64, dir: &str, what: &str| {
        samples
            .iter()
            .rfind(|s| s["t"].as_u64().unwrap_or(0) <= t && s["video"][dir].is_object())
            .and_then(|s| s["video"][dir][what].as_u64())
            .unwrap_or(0)
    };
    let end = samples
        .iter()
        .rfind(|s| s["video"]["in"].is_object())
        .and_then(|s| s["t"].as_u64())
        .unwrap_or(0);
    assert!(
        video_at(end, "in", "pli") + video_at(end, "in", "fir") > 0,
        "chromium sent a keyframe request: {verdict}"
    );
    assert!(
        video_at(end, "in", "keyFrames") > video_at(held_at, "in", "keyFrames"),
        "a keyframe from the phone after the request: {verdict}"
    );
    assert!(
        video_at(end, "in", "frames") > video_at(held_at, "in", "frames"),
        "video from the phone after the resume: {verdict}"
    );
    assert_idle(&lab);
}

/// Issue 4 the other way: the video desk phone dials a messenger user over a
/// `video: true` trunk. The browser is told the call has video (`incoming` frame),
/// answers with its fake camera, and VP8 passes through both ways: Chromium decodes
/// the phone's frames and the phone decodes Chromium's.
#[test]
fn desk_phone_video_calls_a_messenger_user() {
    let lab = video_lab();
    let mut ctl = lab.phone.control().expect("baresip control");
    let run = call(
        &lab,
        &[
            "--login",
            "alice",
            "--end",
            "answer",
            "--seconds",
            "20",
            "--video",
        ],
    );
    run.log
        .wait_for("READY", Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}\n{}", run.log.tail(20)));
    ctl.command("dial", &format!("sip:alice@{}", lab.pbx.addr()))
        .expect("dial");
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.gw.log.tail(60)));
    video_both_ways(&lab);
    // let frames flow through a few of the browser's samples, then hang up
    std::thread::sleep(Duration::from_secs(4));
    ctl.command("hangup", "").expect("hangup");
    let verdict = run.verdict(Duration::from_secs(60)).expect("verdict");
    eprintln!("call.mjs: {verdict}");
    check(
        &verdict,
        &[
            "incoming_shown",
            "connected",
            "audio_energy",
            "video_decoded",
            "video_sent",
        ],
        &lab,
    );
    assert_eq!(
        verdict["incoming_from"], "100 (video)",
        "the browser was told the call has video: {verdict}"
    );
    assert_eq!(verdict["ended"]["reason"], "remote-hangup", "{verdict}");
    assert_idle(&lab);
}
