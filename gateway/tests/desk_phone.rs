//! Interop with a third-party desk phone: baresip (Debian `baresip-core`,
//! libre SIP stack) registered as extension 100 at a real Kamailio. Our user
//! agent calls it through Kamailio (digest 407 answered), it auto-answers,
//! we hang up; it calls a name (`echo`) that Kamailio hands to our
//! registered trunk, we answer, it hangs up; and a CANCEL before answer
//! leaves no call behind.

mod common;

use std::time::Duration;

use gateway::sip::{self, inbound, trunks};
use labkit::{Baresip, Kamailio};
use sip_trunk::auth::Credentials;
use sip_trunk::dialog::{Body, CallConfig, DialogEvent, TerminatedReason};
use sip_trunk::message::Uri;
use tokio::sync::mpsc;

struct Lab {
    pbx: Kamailio,
    phone: Baresip,
    sip: sip::Sip,
}

async fn lab() -> Lab {
    lab_with(true).await
}

async fn lab_with(auto_answer: bool) -> Lab {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let wav = labkit::speech_wav("You have reached extension one zero zero.", 8000, "ext100")
        .expect("wav");
    let phone = Baresip::start_with(&pbx, "100", "pass100", &wav, auto_answer).expect("baresip");
    let (itx, irx) = mpsc::channel(16);
    let sip = sip::spawn("127.0.0.1:0".parse().unwrap(), None, itx)
        .await
        .expect("sip");
    tokio::spawn(inbound::run(
        sip.clone(),
        irx,
        "127.0.0.1".parse().unwrap(),
        common::lab_plans(&pbx.addr().to_string()),
    ));
    Lab { pbx, phone, sip }
}

fn call_config(lab: &Lab, to: &str) -> CallConfig {
    let pbx = lab.pbx.addr();
    let local = Uri::parse(&format!("sip:alice@{}", lab.sip.sent_by)).unwrap();
    let remote = Uri::parse(&format!("sip:{to}@{pbx}")).unwrap();
    let contact = Uri::parse(&format!("sip:namecall@{}", lab.sip.sent_by)).unwrap();
    let mut cfg = CallConfig::new(
        local,
        remote,
        contact,
        ("UDP".into(), lab.sip.sent_by.clone()),
    );
    cfg.credentials = Some(Credentials::new("trunk", "trunkpass"));
    cfg
}

fn pcmu_offer(port: u16) -> Body {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    );
    Body {
        content_type: "application/sdp".into(),
        data: sdp.into_bytes().into(),
    }
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<DialogEvent>, secs: u64) -> DialogEvent {
    tokio::time::timeout(Duration::from_secs(secs), rx.recv())
        .await
        .expect("a call event in time")
        .expect("event channel open")
}

/// We call extension 100 through Kamailio; baresip answers; we send BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_call_the_desk_phone_and_hang_up() {
    let lab = lab().await;
    let mut ctl = lab.phone.control().expect("control");
    let (h, mut ev) = lab
        .sip
        .invite(
            call_config(&lab, "100"),
            Some(pcmu_offer(40_002)),
            lab.pbx.addr(),
        )
        .await
        .unwrap();
    let answer = loop {
        match next_event(&mut ev, 20).await {
            DialogEvent::Answered { body } => break body,
            DialogEvent::Terminated { reason } => panic!("call ended before answer: {reason:?}"),
            _ => {}
        }
    };
    let sdp = String::from_utf8_lossy(&answer.expect("answer has SDP").data).into_owned();
    assert!(sdp.contains("PCMU/8000"), "{sdp}");
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
        .expect("phone sees the call up");
    lab.sip
        .with_call(h, |c, _| c.hangup().expect("hangup"))
        .await
        .unwrap();
    match next_event(&mut ev, 10).await {
        DialogEvent::Terminated { reason } => assert_eq!(reason, TerminatedReason::LocalBye),
        other => panic!("expected termination, got {other:?}"),
    }
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(10))
        .expect("phone saw our BYE");
}

/// The desk phone dials `echo`: Kamailio sends it to our registered trunk, we
/// answer with the RTP echo, and the phone hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_phone_calls_us_and_hangs_up() {
    let lab = lab().await;
    let plan_text =
        std::fs::read_to_string(labkit::workspace_root().join("dialplans/examples/acme.yaml"))
            .unwrap()
            .replace("127.0.0.1:5070", &lab.pbx.addr().to_string());
    let plans = dialplans::Dialplans::from_sources([("acme.yaml", plan_text.as_str())]).unwrap();
    trunks::start_registrations(&lab.sip, &plans, 300).await;
    labkit::wait_for("trunk binding", Duration::from_secs(10), || {
        (!lab.pbx.contacts("trunk").is_empty()).then_some(())
    })
    .expect("trunk registered");
    let mut ctl = lab.phone.control().expect("control");
    ctl.command("dial", &format!("sip:echo@{}", lab.pbx.addr()))
        .expect("dial");
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(15))
        .expect("we answered");
    tokio::time::sleep(Duration::from_secs(2)).await;
    ctl.command("hangup", "").expect("hangup");
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(10))
        .expect("closed");
    // what the phone heard is its own prompt, echoed back by us
    let rec = labkit::wait_for("recording", Duration::from_secs(10), || {
        lab.phone.last_recording("dec")
    })
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (len, rms) = labkit::wav_stats(&rec).unwrap();
    assert!(len > 1.0, "heard {len} s");
    assert!(rms > 0.01, "the echo came back silent (rms {rms})");
}

/// We call, the phone rings (auto-answer off), we CANCEL: the INVITE ends
/// with 487, the phone stops ringing, and no call is left on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_answer_leaves_nothing_behind() {
    let lab = lab_with(false).await;
    let mut ctl = lab.phone.control().expect("control");
    let (h, mut ev) = lab
        .sip
        .invite(
            call_config(&lab, "100"),
            Some(pcmu_offer(40_004)),
            lab.pbx.addr(),
        )
        .await
        .unwrap();
    loop {
        match next_event(&mut ev, 20).await {
            DialogEvent::Ringing { .. } => break,
            DialogEvent::Terminated { reason } => panic!("ended before ringing: {reason:?}"),
            _ => {}
        }
    }
    ctl.wait_event("CALL_INCOMING", Duration::from_secs(10))
        .expect("phone rings");
    lab.sip
        .with_call(h, |c, _| c.cancel().expect("cancel while ringing"))
        .await
        .unwrap();
    let reason = loop {
        if let DialogEvent::Terminated { reason } = next_event(&mut ev, 20).await {
            break reason;
        }
    };
    assert_eq!(reason, TerminatedReason::Cancelled);
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(10))
        .expect("phone stopped ringing");
    let calls = ctl.command("listcalls", "").expect("listcalls");
    let data = calls
        .get("data")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_string();
    assert!(!data.contains("sip:"), "the phone still has a call: {data}");
    // the leg lingers only until its INVITE transaction settles (Timer D on UDP is 32 s)
    let gone = labkit::wait_for("leg released", Duration::from_secs(40), || {
        let sip = lab.sip.clone();
        let rt = tokio::runtime::Handle::current();
        std::thread::spawn(move || rt.block_on(sip.with_call(h, |_, _| {})).is_err())
            .join()
            .ok()
            .filter(|g| *g)
    });
    assert!(
        gone.is_ok(),
        "our call leg is still there after the INVITE transaction ended"
    );
}

/// Toll-fraud guard for inbound calls: a SIP peer that is no company's
/// trunk (here a user agent on 127.0.0.2, while the lab trunk's peer is
/// Kamailio on 127.0.0.1) gets 403 and reaches nothing, not even `echo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_from_unknown_peers_are_refused() {
    let lab = lab().await;
    let (itx, _irx) = mpsc::channel(16);
    let stranger = sip::spawn("127.0.0.2:0".parse().unwrap(), None, itx)
        .await
        .expect("a second user agent on 127.0.0.2");
    for callee in ["echo", "alice"] {
        let local = Uri::parse(&format!("sip:mallory@{}", stranger.sent_by)).unwrap();
        let remote = Uri::parse(&format!("sip:{callee}@{}", lab.sip.sent_by)).unwrap();
        let contact = Uri::parse(&format!("sip:mallory@{}", stranger.sent_by)).unwrap();
        let cfg = CallConfig::new(
            local,
            remote,
            contact,
            ("UDP".into(), stranger.sent_by.clone()),
        );
        let (_h, mut ev) = stranger
            .invite(cfg, Some(pcmu_offer(40_010)), lab.sip.local_addr)
            .await
            .unwrap();
        loop {
            match next_event(&mut ev, 10).await {
                DialogEvent::Terminated { reason } => {
                    assert_eq!(reason, TerminatedReason::Rejected(403), "{callee}");
                    break;
                }
                DialogEvent::Answered { .. } => panic!("a stranger reached {callee}"),
                _ => {}
            }
        }
    }
}
