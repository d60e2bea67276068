//! A PBX moves an answered call to another codec with a re-INVITE (a transfer,
//! or its media bypass), against SIPp (tests/sipp/uas-reinvite-codec.xml): it
//! answers our INVITE with PCMU, then offers only PCMA. The gateway answers
//! with PCMA (the trunk allows it) and rebuilds the call's bridge; before, a
//! re-INVITE was answered only with the call's first codec and got 488.
//!
//! The WebSocket client offers real WebRTC SDP (str0m) but never connects ICE:
//! this is signalling, and the test ends well before ICE would time out.

mod common;

use std::time::Duration;

use common::{audio_offer, send, signed_in, until};
use labkit::{Gateway, SippUas};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbx_reinvite_to_another_codec_is_answered_with_it() {
    let pbx = SippUas::start("uas-reinvite-codec.xml", &[], Duration::from_secs(60))
        .expect("sipp starts");
    let root = tempfile::tempdir().expect("temp dir");
    let plan = format!(
        "version: 1\ntenant: acme\ntrunks:\n  main: {{ kind: ip, proxy: \"127.0.0.1:{}\", keepalive: off }}\n\
         names:\n  sales:\n    route: {{ dial: {{ trunk: main, extension: \"100\", timeout: 30s }} }}\n",
        pbx.port
    );
    let gw = Gateway::start_with_plan(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        root.path(),
        "acme.yaml",
        &plan,
    )
    .expect("gateway");
    let mut ws = signed_in(&gw, "reinvite-caller").await;
    send(
        &mut ws,
        json!({"type":"call","id":"c1","to":"acme/sales","sdp":audio_offer()}),
    )
    .await;
    until(&mut ws, "accepted", 30, &gw.log).await;
    gw.log
        .wait_for(
            "pbx changed media from=Pcmu to=Pcma",
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(40)));
    send(&mut ws, json!({"type":"hangup","id":"c1"})).await;
    until(&mut ws, "ended", 20, &gw.log).await;
    if let Err(out) = pbx.finish() {
        panic!(
            "the PBX did not get PCMA in our answer:\n{out}\n{}",
            gw.log.tail(40)
        );
    }
    assert!(
        gw.log.contains("media bridge codec=Pcma"),
        "a PCMA bridge: {}",
        gw.log.tail(40)
    );
}
