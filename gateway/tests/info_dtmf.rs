//! SIP INFO DTMF (a trunk with `dtmf: info`) against third-party peers.
//!
//! 1. baresip (desk phone 100 behind a real Kamailio) gets the caller's keys as
//!    INFO `application/dtmf-relay`; keys pressed while the phone still rings are
//!    queued and arrive, in order, once it answers; none travels as RTP as well.
//!    The same holds on a call the desk phone places to a messenger user.
//! 2. SIPp plays a PBX on an IP trunk: it checks the INFO it gets (`Signal=5`,
//!    `Duration=160`, the content type) and presses 7 with an INFO of its own,
//!    which reaches the WebSocket client as a `dtmf` frame.
//!
//! The WebSocket client offers real WebRTC SDP (str0m) but never connects ICE:
//! DTMF is signalling here, and each test ends well before ICE would time out.

mod common;

use std::time::Duration;

use common::{audio_offer, send, signed_in, until};
use labkit::{Baresip, Gateway, Kamailio, LabGateway, SippUas};
use serde_json::{Value, json};

/// Keys typed while the desk phone rings wait for the answer, then reach it as SIP INFO
/// in order; nothing is sent as RFC 4733 as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_dtmf_reaches_the_desk_phone_after_answer() {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let wav = labkit::speech_wav("Extension one hundred.", 8000, "info100").expect("wav");
    let phone = Baresip::start_with(&pbx, "100", "pass100", &wav, false).expect("baresip");
    let data = tempfile::tempdir().expect("temp dir");
    let gw = LabGateway::start_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        &pbx,
        data.path(),
        |plan| {
            plan.replace(
                "    domain: pbx.lab\n",
                "    domain: pbx.lab\n    dtmf: info\n",
            )
        },
        &[],
    )
    .expect("gateway starts and registers its trunk")
    .gw;
    let mut ctl = phone.control().expect("baresip control");
    let mut ws = signed_in(&gw, "info-caller").await;
    send(
        &mut ws,
        json!({"type":"call","id":"c1","to":"acme/sales","sdp":audio_offer()}),
    )
    .await;
    until(&mut ws, "ringing", 30, &gw.log).await;
    ctl.wait_event("CALL_INCOMING", Duration::from_secs(20))
        .expect("the phone rings");
    // pressed before anyone answered: one key, then two more in one frame
    send(&mut ws, json!({"type":"dtmf","id":"c1","digit":"1"})).await;
    send(&mut ws, json!({"type":"dtmf","id":"c1","digits":"2#"})).await;
    ctl.command("accept", "").expect("accept");
    until(&mut ws, "accepted", 20, &gw.log).await;
    let mut keys = Vec::new();
    for _ in 0..3 {
        let ev = ctl
            .wait_event("CALL_DTMF_START", Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(40)));
        keys.push(ev["param"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(keys, ["1", "2", "#"], "keys in order after the answer");
    send(&mut ws, json!({"type":"hangup","id":"c1"})).await;
    until(&mut ws, "ended", 20, &gw.log).await;
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(20))
        .expect("the phone sees our BYE");
    // every event up to the BYE has been read: a key sent twice (INFO and RTP) would show here
    let extra: Vec<&Value> = ctl
        .events
        .iter()
        .filter(|e| e["type"] == "CALL_DTMF_START")
        .collect();
    assert!(extra.is_empty(), "keys arrived twice: {extra:?}");
    assert!(
        gw.log.contains("dtmf to the pbx digit=1 mode=Info"),
        "{}",
        gw.log.tail(40)
    );
}

/// A desk phone calls a messenger user over the same `dtmf: info` trunk: the keys the
/// user presses reach the phone as SIP INFO too (the calling trunk's mode applies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_dtmf_on_a_call_from_the_desk_phone() {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let wav = labkit::speech_wav("Extension one hundred.", 8000, "info100").expect("wav");
    let phone = Baresip::start(&pbx, "100", "pass100", &wav).expect("baresip");
    let data = tempfile::tempdir().expect("temp dir");
    let gw = LabGateway::start_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        &pbx,
        data.path(),
        |plan| {
            plan.replace(
                "    domain: pbx.lab\n",
                "    domain: pbx.lab\n    dtmf: info\n",
            )
        },
        &[],
    )
    .expect("gateway starts and registers its trunk")
    .gw;
    let mut ctl = phone.control().expect("baresip control");
    let mut ws = signed_in(&gw, "alice").await;
    ctl.command("dial", &format!("sip:alice@{}", pbx.addr()))
        .expect("dial");
    let incoming = until(&mut ws, "incoming", 30, &gw.log).await;
    let id = incoming["id"].as_str().expect("call id").to_owned();
    send(
        &mut ws,
        json!({"type":"accept","id":id,"sdp":audio_offer()}),
    )
    .await;
    until(&mut ws, "accepted", 20, &gw.log).await;
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(20))
        .expect("the phone's call is up");
    send(&mut ws, json!({"type":"dtmf","id":id,"digit":"4"})).await;
    let ev = ctl
        .wait_event("CALL_DTMF_START", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(40)));
    assert_eq!(ev["param"], "4", "{ev}");
    assert!(
        gw.log.contains("dtmf to the pbx digit=4 mode=Info"),
        "{}",
        gw.log.tail(40)
    );
    ctl.command("hangup", "").expect("hangup");
    until(&mut ws, "ended", 20, &gw.log).await;
}

/// The lab plan with an IP trunk to `pbx` using SIP INFO DTMF (no OPTIONS keep-alive:
/// the SIPp scenario expects the INVITE first).
fn sipp_plan(pbx: &str) -> String {
    format!(
        "version: 1\ntenant: acme\ntrunks:\n  main: {{ kind: ip, proxy: \"{pbx}\", dtmf: info, keepalive: off }}\n\
         names:\n  sales:\n    route: {{ dial: {{ trunk: main, extension: \"100\", timeout: 30s }} }}\n"
    )
}

/// SIPp checks our INFO and sends one back; the client sees its key as a `dtmf` frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbx_info_dtmf_reaches_the_client() {
    let pbx =
        SippUas::start("uas-info-dtmf.xml", &[], Duration::from_secs(90)).expect("sipp starts");
    let root = tempfile::tempdir().expect("temp dir");
    let gw = Gateway::start_with_plan(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        root.path(),
        "acme.yaml",
        &sipp_plan(&format!("127.0.0.1:{}", pbx.port)),
    )
    .expect("gateway");
    let mut ws = signed_in(&gw, "info-client").await;
    send(
        &mut ws,
        json!({"type":"call","id":"c1","to":"acme/sales","sdp":audio_offer()}),
    )
    .await;
    until(&mut ws, "accepted", 30, &gw.log).await;
    send(&mut ws, json!({"type":"dtmf","id":"c1","digit":"5"})).await;
    let key = until(&mut ws, "dtmf", 30, &gw.log).await;
    assert_eq!(key, json!({"type":"dtmf","id":"c1","digit":"7"}));
    send(&mut ws, json!({"type":"hangup","id":"c1"})).await;
    until(&mut ws, "ended", 20, &gw.log).await;
    if let Err(out) = pbx.finish() {
        panic!(
            "the SIPp PBX saw a wrong INFO or none:\n{out}\n{}",
            gw.log.tail(40)
        );
    }
}
