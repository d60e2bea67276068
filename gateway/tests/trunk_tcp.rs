//! Interop over TCP: the lab company's trunk with `transport: tcp` registers
//! to a real Kamailio (listening on UDP and TCP) over TCP, and calls flow
//! both ways with a baresip desk phone (extension 100, itself on UDP):
//! we call the phone through Kamailio over the TCP trunk and hang up; the
//! phone dials `echo`, Kamailio hands the call to our TCP-registered
//! contact, we answer and the phone hangs up.

use std::time::Duration;

use gateway::sip::{self, inbound, trunks};
use labkit::{Baresip, Kamailio};
use sip_trunk::auth::Credentials;
use sip_trunk::dialog::{Body, CallConfig, DialogEvent, TerminatedReason};
use sip_trunk::message::Uri;
use sip_trunk::transaction::Transport;
use tokio::sync::mpsc;

/// `dialplans/examples/acme.yaml` at `pbx` with `transport: tcp`.
fn tcp_plans(pbx: &Kamailio) -> dialplans::Dialplans {
    let text =
        std::fs::read_to_string(labkit::workspace_root().join("dialplans/examples/acme.yaml"))
            .expect("example dialplan")
            .replace("127.0.0.1:5070", &pbx.addr().to_string())
            .replace("transport: udp", "transport: tcp");
    assert!(
        text.contains("transport: tcp"),
        "the example names its transport"
    );
    dialplans::Dialplans::from_sources([("acme.yaml", text.as_str())]).expect("valid plan")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_trunk_registers_and_calls_flow_both_ways() {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let wav = labkit::speech_wav("You have reached extension one zero zero.", 8000, "ext100")
        .expect("wav");
    let phone = Baresip::start(&pbx, "100", "pass100", &wav).expect("baresip");
    let (itx, irx) = mpsc::channel(16);
    let sip = sip::spawn("127.0.0.1:0".parse().unwrap(), None, itx)
        .await
        .expect("sip");
    let plans = tcp_plans(&pbx);
    tokio::spawn(inbound::run(
        sip.clone(),
        irx,
        "127.0.0.1".parse().unwrap(),
        std::sync::Arc::new(gateway::plans::SharedPlans::new("unused", plans.clone())),
    ));
    let started = trunks::start_registrations(&sip, &plans, 300).await;
    assert_eq!(started, vec!["acme/main".to_string()]);
    let contacts = labkit::wait_for("trunk binding", Duration::from_secs(20), || {
        let c = pbx.contacts("trunk");
        (!c.is_empty()).then_some(c)
    })
    .expect("trunk registered");
    assert!(
        contacts[0].to_ascii_lowercase().contains("transport=tcp"),
        "the binding is a TCP contact: {contacts:?}"
    );
    // the keep-alive goes over TCP too, and Kamailio answers it
    labkit::wait_for("trunk up", Duration::from_secs(20), || {
        (sip.trunks.get("acme/main").and_then(|s| s.up) == Some(true)).then_some(())
    })
    .expect("keep-alive answered over tcp");

    // 1. we call the desk phone through Kamailio over the TCP trunk
    let mut ctl = phone.control().expect("control");
    let local = Uri::parse(&format!("sip:alice@{}", sip.sent_by)).unwrap();
    let remote = Uri::parse("sip:100@pbx.lab").unwrap();
    let contact = Uri::parse(&format!("sip:alice@{};transport=tcp", sip.sent_by)).unwrap();
    let mut cfg = CallConfig::new(local, remote, contact, ("TCP".into(), sip.sent_by.clone()));
    cfg.credentials = Some(Credentials::new("trunk", "trunkpass"));
    let (h, mut ev) = sip
        .invite_over(cfg, Some(pcmu_offer(40_020)), pbx.addr(), Transport::Tcp)
        .await
        .expect("invite");
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
    sip.with_call(h, |c, _| c.hangup().expect("hangup"))
        .await
        .unwrap();
    match next_event(&mut ev, 10).await {
        DialogEvent::Terminated { reason } => assert_eq!(reason, TerminatedReason::LocalBye),
        other => panic!("expected termination, got {other:?}"),
    }
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(10))
        .expect("phone saw our BYE");

    // 2. the desk phone dials echo: Kamailio sends it to our TCP binding
    ctl.command("dial", &format!("sip:echo@{}", pbx.addr()))
        .expect("dial");
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(15))
        .expect("we answered");
    let log = labkit::wait_for(
        "tcp INVITE in kamailio's log",
        Duration::from_secs(5),
        || {
            pbx.log
                .lines()
                .into_iter()
                .find(|l| l.contains("to trunk:") && l.contains("sip:echo@"))
        },
    )
    .expect("kamailio routed the call to the trunk");
    assert!(
        log.to_ascii_lowercase().contains("transport=tcp"),
        "the trunk's TCP binding carried the call: {log}"
    );
    ctl.command("hangup", "").expect("hangup");
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(10))
        .expect("closed");
    drop(phone);
}
