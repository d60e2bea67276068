//! Media ports are taken from the configured range before anything rings.
//!
//! The gateway runs with `--rtp-ports P-P+1`: exactly one call's worth (its
//! WebRTC socket and its RTP socket). While a call to the desk phone rings and
//! holds both ports, a second browser call gets an `error` frame
//! `no-media-port` and `ended unavailable 503` without the phone ringing
//! again, and the desk phone calling the signed-in user gets SIP 503 (500 with
//! reason "Service Unavailable" after Kamailio, as RFC 3261 16.7 asks of a
//! proxy) without the user's session seeing an `incoming` frame. Once the first call ends
//! the ports are free and the next call rings.
//!
//! A video call to a trunk with `video: true` needs a third port (the PBX leg's
//! video): with a two-port range it is refused the same way before ringing, while
//! an audio call in the same range still rings.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Ws, audio_offer, drain_for, recv_within, send, signed_in, video_offer};
use labkit::{Baresip, Kamailio, LabGateway};
use serde_json::{Value, json};

/// Two consecutive UDP ports free on 127.0.0.1 right now.
fn free_pair() -> u16 {
    for _ in 0..200 {
        let p = labkit::free_port();
        if p < 65535
            && UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no two consecutive free ports");
}

/// Frames up to and including the first of `kind` (within `secs`).
async fn frames_until(ws: &mut Ws, kind: &str, secs: u64) -> Vec<Value> {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut seen = Vec::new();
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "no {kind} frame; saw {seen:?}");
        let f = recv_within(ws, left.as_secs().max(1)).await;
        let done = f["type"] == kind;
        seen.push(f);
        if done {
            return seen;
        }
    }
}

/// Kamailio, desk phone 100 (rings until told) and the gateway with its lab plan
/// (through `edit`) and room for two media ports only.
struct TwoPortLab {
    gw: labkit::Gateway,
    phone: Baresip,
    pbx: Kamailio,
    /// The first of the two ports.
    first: u16,
    _data: tempfile::TempDir,
}

fn two_port_lab(edit: impl FnOnce(String) -> String) -> TwoPortLab {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let wav = labkit::speech_wav("Extension one hundred.", 8000, "ports100").expect("wav");
    let phone = Baresip::start_with(&pbx, "100", "pass100", &wav, false).expect("baresip");
    let data = tempfile::tempdir().expect("temp dir");
    let first = free_pair();
    let range = format!("{first}-{}", first + 1);
    let gw = LabGateway::start_with(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        &pbx,
        data.path(),
        edit,
        &["--rtp-ports", &range],
    )
    .expect("gateway starts and registers its trunk")
    .gw;
    TwoPortLab {
        gw,
        phone,
        pbx,
        first,
        _data: data,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_range_refuses_before_ringing() {
    // the phone rings until told: the first call holds its ports while it rings
    let lab = two_port_lab(|plan| plan);
    let (gw, mut ctl) = (&lab.gw, lab.phone.control().expect("baresip control"));
    let (pbx, first) = (&lab.pbx, lab.first);
    let mut ws = signed_in(gw, "alice").await;

    // call 1 rings the phone and holds both ports
    send(
        &mut ws,
        json!({"type":"call","id":"c1","to":"acme/sales","sdp":audio_offer()}),
    )
    .await;
    let frames = frames_until(&mut ws, "ringing", 30).await;
    let answer = frames
        .iter()
        .find(|f| f["type"] == "answer")
        .expect("an answer frame");
    let sdp = answer["sdp"].as_str().unwrap_or_default();
    assert!(
        sdp.contains(&format!(" {first} typ host"))
            || sdp.contains(&format!(" {} typ host", first + 1)),
        "the WebRTC port comes from the range: {sdp}"
    );
    ctl.wait_event("CALL_INCOMING", Duration::from_secs(20))
        .expect("the phone rings");
    gw.wait_metric("namecall_media_sockets", 2, Duration::from_secs(5))
        .expect("two media sockets held");

    // call 2: no port left, refused at once with an error frame, the phone does not ring
    send(
        &mut ws,
        json!({"type":"call","id":"c2","to":"acme/sales","sdp":audio_offer()}),
    )
    .await;
    let frames = frames_until(&mut ws, "ended", 10).await;
    let c2: Vec<&Value> = frames
        .iter()
        .filter(|f| f["id"] == "c2" || f["ref"] == "c2")
        .collect();
    assert_eq!(
        c2.first().map(|f| (f["type"].clone(), f["code"].clone())),
        Some((json!("error"), json!("no-media-port"))),
        "{frames:?}"
    );
    let ended = frames.last().expect("ended");
    assert_eq!(
        (&ended["id"], &ended["reason"], &ended["code"]),
        (&json!("c2"), &json!("unavailable"), &json!(503)),
        "{frames:?}"
    );

    // the desk phone calls alice: SIP 503, and alice's session is not rung
    ctl.command("dial", &format!("sip:alice@{}", pbx.addr()))
        .expect("dial");
    let closed = ctl
        .wait_event("CALL_CLOSED", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(40)));
    // the gateway answers 503; Kamailio, as a proxy, forwards it as 500 with the same
    // reason phrase (RFC 3261 16.7: a 503 is not passed upstream)
    assert!(
        closed["param"]
            .as_str()
            .unwrap_or_default()
            .contains("Service Unavailable"),
        "the phone's call was refused for lack of service: {closed}"
    );
    assert!(
        gw.log.contains("no media port free; refusing the call"),
        "{}",
        gw.log.tail(30)
    );
    let meanwhile = drain_for(&mut ws, 300).await;
    assert!(
        meanwhile.iter().all(|f| f["type"] != "incoming"),
        "alice was rung without ports: {meanwhile:?}"
    );
    assert_eq!(
        ctl.events
            .iter()
            .filter(|e| e["type"] == "CALL_INCOMING")
            .count(),
        0,
        "the phone rang for the refused browser call"
    );

    // call 1 ends; its ports come back and the next call rings
    send(&mut ws, json!({"type":"hangup","id":"c1"})).await;
    frames_until(&mut ws, "ended", 20).await;
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(20))
        .expect("the phone stops ringing");
    gw.wait_metric("namecall_media_sockets", 0, Duration::from_secs(10))
        .expect("ports released");
    send(
        &mut ws,
        json!({"type":"call","id":"c3","to":"acme/sales","sdp":audio_offer()}),
    )
    .await;
    frames_until(&mut ws, "ringing", 30).await;
    ctl.wait_event("CALL_INCOMING", Duration::from_secs(20))
        .expect("the phone rings again");
    send(&mut ws, json!({"type":"hangup","id":"c3"})).await;
    frames_until(&mut ws, "ended", 20).await;
}

/// A video call takes its video port before ringing too: with room for two ports only,
/// a video offer to a video trunk is refused with `no-media-port` and 503, nothing
/// rings and no socket stays bound; an audio-only call in the same range rings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_call_needs_its_video_port() {
    let lab = two_port_lab(|plan| {
        plan.replacen(
            "    domain: pbx.lab\n",
            "    domain: pbx.lab\n    video: true\n",
            1,
        )
    });
    let (gw, mut ctl) = (&lab.gw, lab.phone.control().expect("baresip control"));
    let mut ws = signed_in(gw, "alice").await;

    send(
        &mut ws,
        json!({"type":"call","id":"v1","to":"acme/sales","sdp":video_offer()}),
    )
    .await;
    let frames = frames_until(&mut ws, "ended", 10).await;
    assert!(
        frames
            .iter()
            .any(|f| f["type"] == "error" && f["code"] == "no-media-port"),
        "{frames:?}"
    );
    let ended = frames.last().expect("ended");
    assert_eq!(
        (&ended["id"], &ended["reason"], &ended["code"]),
        (&json!("v1"), &json!("unavailable"), &json!(503)),
        "{frames:?}"
    );
    gw.wait_metric("namecall_media_sockets", 0, Duration::from_secs(5))
        .expect("the two ports taken before the refusal are released");
    // the refusal came before any INVITE: the phone stays quiet
    assert!(
        ctl.wait_event("CALL_INCOMING", Duration::from_secs(2))
            .is_err(),
        "the refused video call rang the phone"
    );

    send(
        &mut ws,
        json!({"type":"call","id":"a1","to":"acme/sales","sdp":audio_offer()}),
    )
    .await;
    frames_until(&mut ws, "ringing", 30).await;
    ctl.wait_event("CALL_INCOMING", Duration::from_secs(20))
        .expect("the audio call rings");
    send(&mut ws, json!({"type":"hangup","id":"a1"})).await;
    frames_until(&mut ws, "ended", 20).await;
}
