//! One test per dialog rule, each driving time by hand.

use std::time::{Duration, Instant};

use super::*;
use crate::auth::Credentials;
use crate::message::{Method, Request, Response, Uri};

fn uri(s: &str) -> Uri {
    Uri::parse(s).expect("test uri")
}

fn uac_config() -> CallConfig {
    CallConfig::new(
        uri("sip:gw@192.0.2.1"),
        uri("sip:200@pbx.example.com"),
        uri("sip:gw@192.0.2.1:5060"),
        ("UDP".into(), "192.0.2.1:5060".into()),
    )
}

fn uas_config() -> CallConfig {
    CallConfig::new(
        uri("sip:gw@192.0.2.1"),
        uri("sip:unused@invalid"),
        uri("sip:gw@192.0.2.1:5060"),
        ("UDP".into(), "192.0.2.1:5060".into()),
    )
}

fn sdp(s: &str) -> Body {
    Body::sdp(s.as_bytes().to_vec())
}

/// Every pending output.
fn drain(call: &mut Call) -> Vec<Send> {
    std::iter::from_fn(|| call.poll_transmit()).collect()
}

fn events(call: &mut Call) -> Vec<DialogEvent> {
    std::iter::from_fn(|| call.poll_event()).collect()
}

fn one_request(call: &mut Call) -> Request {
    match drain(call).as_slice() {
        [Send::Request(r)] => r.clone(),
        other => panic!("expected one request, got {other:?}"),
    }
}

fn one_response(call: &mut Call) -> Response {
    match drain(call).as_slice() {
        [Send::Response(r)] => r.clone(),
        other => panic!("expected one response, got {other:?}"),
    }
}

fn cseq(req: &Request) -> u32 {
    req.headers.cseq().expect("cseq").seq
}

fn branch(req: &Request) -> Option<String> {
    req.headers.via().expect("via").branch
}

/// The PBX answers our request with `status`, its tag and Contact, plus extra headers.
fn peer_reply(req: &Request, status: u16, extra: &[(&str, &str)]) -> Response {
    let mut r = Response::from_request(req, status, "Peer").with_to_tag("pbxtag");
    if status > 100 && status < 300 {
        r = r.with_header("Contact", "<sip:200@10.0.0.9:5060>");
    }
    for (n, v) in extra {
        r = r.with_header(n, *v);
    }
    r
}

/// An INVITE from the PBX to us.
fn pbx_invite(extra: &[(&str, &str)]) -> Request {
    let mut req = Request::new(Method::Invite, uri("sip:gw@192.0.2.1:5060"))
        .with_header("Via", "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKpbx1")
        .with_header("Record-Route", "<sip:p1.example.com;lr>")
        .with_header("Record-Route", "<sip:p2.example.com;lr>")
        .with_header("From", "\"Desk\" <sip:100@pbx.example.com>;tag=desk")
        .with_header("To", "<sip:gw@192.0.2.1>")
        .with_header("Call-ID", "pbxcall@10.0.0.9")
        .with_header("CSeq", "10 INVITE")
        .with_header("Contact", "<sip:100@10.0.0.9:5060>")
        .with_header("Max-Forwards", "70");
    for (n, v) in extra {
        req = req.with_header(n, *v);
    }
    req.with_body("application/sdp", "v=0 offer".as_bytes().to_vec())
}

/// An in-dialog request from the PBX within the dialog `call` holds as UAS.
fn pbx_request(call: &Call, method: Method, seq: u32, body: Option<&str>) -> Request {
    let id = call.id().expect("dialog id");
    let mut req = Request::new(method.clone(), uri("sip:gw@192.0.2.1:5060"))
        .with_header(
            "Via",
            format!("SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKpbx{seq}"),
        )
        .with_header(
            "From",
            format!("<sip:100@pbx.example.com>;tag={}", id.remote_tag),
        )
        .with_header("To", format!("<sip:gw@192.0.2.1>;tag={}", id.local_tag))
        .with_header("Call-ID", id.call_id.clone())
        .with_header("CSeq", format!("{seq} {method}"))
        .with_header("Contact", "<sip:100@10.0.0.9:5060>");
    if let Some(b) = body {
        req = req.with_body("application/sdp", b.as_bytes().to_vec());
    }
    req
}

/// A UAS call that answered the PBX's INVITE at `t0` and got the ACK.
fn answered_uas(t0: Instant, extra: &[(&str, &str)]) -> Call {
    let invite = pbx_invite(extra);
    let mut call = Call::incoming(uas_config(), t0, &invite, 7).expect("valid INVITE");
    call.answer(t0, Some(sdp("v=0 answer")))
        .expect("unanswered");
    drain(&mut call);
    let ack = pbx_request(&call, Method::Ack, 10, None);
    call.handle_request(t0, &ack);
    events(&mut call);
    call
}

/// A UAC call answered by the PBX at `t0` with `extra` headers on the 200.
fn answered_uac(t0: Instant, extra: &[(&str, &str)]) -> (Call, Request) {
    let mut call = Call::outgoing(uac_config(), t0, Some(sdp("v=0 offer")), 1);
    let invite = one_request(&mut call);
    call.handle_response(t0, &peer_reply(&invite, 200, extra));
    drain(&mut call);
    events(&mut call);
    (call, invite)
}

/// UAC: 180 creates an early dialog, 200 confirms it, the ACK follows the route set, a 2xx retransmission is re-ACKed.
#[test]
fn uac_ringing_answer_and_ack() {
    let t0 = Instant::now();
    let mut call = Call::outgoing(uac_config(), t0, Some(sdp("v=0 offer")), 1);
    let invite = one_request(&mut call);
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(invite.uri.to_string(), "sip:200@pbx.example.com");
    assert!(invite.headers.from().expect("from").tag.is_some());
    assert!(invite.headers.to().expect("to").tag.is_none());
    assert_eq!(invite.headers.get("Session-Expires"), Some("1800"));
    assert_eq!(&invite.body[..], b"v=0 offer");
    assert_eq!(call.state(), DialogState::Initial);

    call.handle_response(t0, &peer_reply(&invite, 100, &[]));
    assert!(events(&mut call).is_empty(), "100 is not ringing");
    let ringing = peer_reply(
        &invite,
        183,
        &[
            ("Record-Route", "<sip:p1.example.com;lr>"),
            ("Record-Route", "<sip:p2.example.com;lr>"),
        ],
    )
    .with_body("application/sdp", "v=0 early".as_bytes().to_vec());
    call.handle_response(t0, &ringing);
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Ringing {
            status: 183,
            body: Some(sdp("v=0 early"))
        }]
    );
    assert_eq!(call.state(), DialogState::Early);
    let hosts: Vec<&str> = call
        .route_set()
        .iter()
        .map(|r| r.uri.host.as_str())
        .collect();
    assert_eq!(
        hosts,
        ["p2.example.com", "p1.example.com"],
        "reversed for the UAC"
    );

    let ok = peer_reply(
        &invite,
        200,
        &[
            ("Record-Route", "<sip:p1.example.com;lr>"),
            ("Record-Route", "<sip:p2.example.com;lr>"),
        ],
    )
    .with_body("application/sdp", "v=0 answer".as_bytes().to_vec());
    call.handle_response(t0, &ok);
    let ack = match drain(&mut call).as_slice() {
        [Send::Ack(a)] => a.clone(),
        other => panic!("expected ACK, got {other:?}"),
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(
        cseq(&ack),
        cseq(&invite),
        "ACK carries the INVITE's CSeq number"
    );
    assert_eq!(ack.headers.cseq().expect("cseq").method, Method::Ack);
    assert_eq!(
        ack.uri.to_string(),
        "sip:200@10.0.0.9:5060",
        "remote target from Contact"
    );
    let routes: Vec<&str> = ack.headers.get_all("Route").collect();
    assert_eq!(
        routes,
        ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    );
    assert_eq!(ack.headers.to().expect("to").tag.as_deref(), Some("pbxtag"));
    assert_ne!(
        branch(&ack),
        branch(&invite),
        "2xx ACK is a new transaction"
    );
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Answered {
            body: Some(sdp("v=0 answer"))
        }]
    );
    assert_eq!(call.state(), DialogState::Confirmed);

    call.handle_response(t0 + Duration::from_millis(500), &ok);
    assert_eq!(
        drain(&mut call),
        vec![Send::Ack(ack)],
        "retransmitted 2xx re-ACKed"
    );
    assert!(events(&mut call).is_empty());
}

/// UAS: the 200 is retransmitted at T1, 2T1, 4T1 ... capped at T2 until the ACK, which is absorbed.
#[test]
fn uas_2xx_retransmitted_until_ack() {
    let t0 = Instant::now();
    let invite = pbx_invite(&[]);
    let mut call = Call::incoming(uas_config(), t0, &invite, 2).expect("valid INVITE");
    call.ring(t0, 180, None).expect("ringing allowed");
    let ringing = one_response(&mut call);
    assert_eq!(ringing.status.0, 180);
    let tag = ringing
        .headers
        .to()
        .expect("to")
        .tag
        .expect("to tag on 180");
    assert_eq!(ringing.headers.get_all("Record-Route").count(), 2);
    assert_eq!(call.state(), DialogState::Early);

    call.answer(t0, Some(sdp("v=0 answer")))
        .expect("unanswered");
    let ok = one_response(&mut call);
    assert_eq!(ok.status.0, 200);
    assert_eq!(
        ok.headers.to().expect("to").tag,
        Some(tag),
        "same tag as the 180"
    );
    assert!(ok.headers.contact().is_ok());
    let mut retransmits = Vec::new();
    let mut now = t0;
    while let Some(next) = call.poll_timeout() {
        if next - t0 > Duration::from_secs(15) {
            break;
        }
        now = next;
        call.handle_timeout(now);
        for s in drain(&mut call) {
            assert_eq!(s, Send::Retransmit(ok.clone()));
            retransmits.push((now - t0).as_millis());
        }
    }
    assert_eq!(retransmits, [500, 1500, 3500, 7500, 11500]);
    call.handle_request(now, &pbx_request(&call, Method::Ack, 10, None));
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Answered { body: None }]
    );
    call.handle_timeout(now + Duration::from_secs(4));
    assert!(
        drain(&mut call).is_empty(),
        "ACK stopped the retransmissions"
    );
    call.handle_request(now, &pbx_request(&call, Method::Ack, 10, None));
    assert!(
        drain(&mut call).is_empty() && events(&mut call).is_empty(),
        "ACK retransmission absorbed"
    );
}

/// UAS: no ACK within 64*T1 ends the session with BYE.
#[test]
fn uas_2xx_without_ack_sends_bye() {
    let t0 = Instant::now();
    let mut call = Call::incoming(uas_config(), t0, &pbx_invite(&[]), 3).expect("valid INVITE");
    call.answer(t0, None).expect("unanswered");
    drain(&mut call);
    call.handle_timeout(t0 + Duration::from_millis(31_999));
    assert!(
        drain(&mut call)
            .iter()
            .all(|s| matches!(s, Send::Retransmit(_)))
    );
    assert!(events(&mut call).is_empty());
    call.handle_timeout(t0 + Duration::from_secs(32));
    let bye = one_request(&mut call);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Timeout
        }]
    );
}

/// In-dialog requests from the UAS use the remote Contact, the Record-Route order and a rising CSeq.
#[test]
fn uas_builds_in_dialog_requests() {
    let t0 = Instant::now();
    let mut call = answered_uas(t0, &[]);
    call.info(Body {
        content_type: "application/dtmf-relay".into(),
        data: "Signal=5".into(),
    })
    .expect("confirmed");
    let info = one_request(&mut call);
    assert_eq!(info.uri.to_string(), "sip:100@10.0.0.9:5060");
    let routes: Vec<&str> = info.headers.get_all("Route").collect();
    assert_eq!(
        routes,
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"],
        "UAS keeps order"
    );
    let from = info.headers.from().expect("from");
    let to = info.headers.to().expect("to");
    assert_eq!(from.uri.to_string(), "sip:gw@192.0.2.1");
    assert_eq!(to.tag.as_deref(), Some("desk"));
    assert_eq!(info.headers.call_id().ok(), Some("pbxcall@10.0.0.9"));
    call.message(Body {
        content_type: "text/plain".into(),
        data: "hi".into(),
    })
    .expect("confirmed");
    let msg = one_request(&mut call);
    assert_eq!(cseq(&msg), cseq(&info) + 1);
    call.hangup().expect("confirmed");
    let bye = one_request(&mut call);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(cseq(&bye), cseq(&msg) + 1);
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::LocalBye
        }]
    );
    assert_eq!(call.state(), DialogState::Terminated);
    assert_eq!(call.poll_timeout(), None);
}

/// Incoming BYE, INFO and MESSAGE are answered 200 and reported; old CSeq gets 500.
#[test]
fn remote_requests_answered() {
    let t0 = Instant::now();
    let mut call = answered_uas(t0, &[]);
    call.handle_request(t0, &pbx_request(&call, Method::Info, 11, Some("dtmf")));
    assert_eq!(one_response(&mut call).status.0, 200);
    assert!(matches!(
        events(&mut call).as_slice(),
        [DialogEvent::Info { body: Some(_) }]
    ));
    call.handle_request(t0, &pbx_request(&call, Method::Message, 12, None));
    assert_eq!(one_response(&mut call).status.0, 200);
    assert_eq!(events(&mut call), vec![DialogEvent::Message { body: None }]);
    call.handle_request(t0, &pbx_request(&call, Method::Info, 11, None));
    assert_eq!(one_response(&mut call).status.0, 500, "CSeq went backwards");
    call.handle_request(t0, &pbx_request(&call, Method::Subscribe, 13, None));
    assert_eq!(one_response(&mut call).status.0, 501);
    call.handle_request(t0, &pbx_request(&call, Method::Bye, 14, None));
    assert_eq!(one_response(&mut call).status.0, 200);
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::RemoteBye
        }]
    );
    call.handle_request(t0, &pbx_request(&call, Method::Info, 15, None));
    assert_eq!(one_response(&mut call).status.0, 481, "dialog is gone");
}

/// Requests naming an unknown dialog get 481; ACK gets nothing; out-of-dialog requests are not ours.
#[test]
fn unknown_dialog_gets_481() {
    let t0 = Instant::now();
    let mut call = answered_uas(t0, &[]);
    let mut stray = pbx_request(&call, Method::Bye, 20, None);
    stray.headers.set("To", "<sip:gw@192.0.2.1>;tag=nosuch");
    assert!(!call.accepts_request(&stray));
    let resp = unknown_dialog_response(&stray).expect("in-dialog request");
    assert_eq!(resp.status.0, 481);
    call.handle_request(t0, &stray);
    assert_eq!(one_response(&mut call).status.0, 481);
    assert!(events(&mut call).is_empty(), "our dialog is untouched");
    let mut ack = pbx_request(&call, Method::Ack, 20, None);
    ack.headers.set("To", "<sip:gw@192.0.2.1>;tag=nosuch");
    assert!(unknown_dialog_response(&ack).is_none());
    assert!(
        unknown_dialog_response(&pbx_invite(&[])).is_none(),
        "no To tag: new dialog"
    );
}

/// The peer's re-INVITE (hold) is a TargetRefresh; our 200 is retransmitted until its ACK.
#[test]
fn incoming_reinvite_is_target_refresh() {
    let t0 = Instant::now();
    let mut call = answered_uas(t0, &[]);
    let mut reinvite = pbx_request(&call, Method::Invite, 11, Some("v=0 sendonly"));
    reinvite.headers.set("Contact", "<sip:100@10.0.0.10:5070>");
    call.handle_request(t0, &reinvite);
    assert!(drain(&mut call).is_empty(), "the application answers");
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::TargetRefresh {
            offer: Some(sdp("v=0 sendonly"))
        }]
    );
    assert_eq!(call.remote_target().to_string(), "sip:100@10.0.0.10:5070");
    // A second offer while the first is open: 500 with Retry-After.
    call.handle_request(t0, &pbx_request(&call, Method::Invite, 12, Some("v=0 x")));
    let busy = one_response(&mut call);
    assert_eq!(busy.status.0, 500);
    assert!(busy.headers.get("Retry-After").is_some());

    call.accept_refresh(t0, Some(sdp("v=0 recvonly")))
        .expect("pending");
    let ok = one_response(&mut call);
    assert_eq!(ok.status.0, 200);
    assert_eq!(&ok.body[..], b"v=0 recvonly");
    call.handle_timeout(t0 + Duration::from_millis(500));
    assert_eq!(drain(&mut call), vec![Send::Retransmit(ok)]);
    call.handle_request(t0, &pbx_request(&call, Method::Ack, 11, None));
    assert!(
        events(&mut call).is_empty(),
        "re-INVITE ACK is not a new answer"
    );
    assert!(
        call.reinvite(Some(sdp("v=0 again"))).is_ok(),
        "no offer pending any more"
    );
}

/// Glare: our re-INVITE and theirs cross; we answer 491, and after our 491 retry within 2.1-4 s (we own the Call-ID).
#[test]
fn reinvite_glare_retry_uac() {
    let t0 = Instant::now();
    let (mut call, _) = answered_uac(t0, &[]);
    call.reinvite(Some(sdp("v=0 hold"))).expect("confirmed");
    let ours = one_request(&mut call);
    assert_eq!(ours.method, Method::Invite);
    assert_eq!(call.reinvite(None), Err(DialogError::Busy));

    // The PBX's re-INVITE crosses ours.
    let id = call.id().expect("dialog");
    let theirs = Request::new(Method::Invite, uri("sip:gw@192.0.2.1:5060"))
        .with_header("Via", "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKx")
        .with_header(
            "From",
            format!("<sip:200@pbx.example.com>;tag={}", id.remote_tag),
        )
        .with_header("To", format!("<sip:gw@192.0.2.1>;tag={}", id.local_tag))
        .with_header("Call-ID", id.call_id.clone())
        .with_header("CSeq", "1 INVITE");
    call.handle_request(t0, &theirs);
    assert_eq!(one_response(&mut call).status.0, 491);

    call.handle_response(t0, &peer_reply(&ours, 491, &[]));
    assert!(drain(&mut call).is_empty());
    let at = call.poll_timeout().expect("glare timer");
    let wait = at - t0;
    assert!(
        wait >= Duration::from_millis(2100) && wait <= Duration::from_secs(4),
        "{wait:?}"
    );
    call.handle_timeout(at - Duration::from_millis(1));
    assert!(drain(&mut call).is_empty());
    call.handle_timeout(at);
    let retry = one_request(&mut call);
    assert_eq!(retry.method, Method::Invite);
    assert_eq!(&retry.body[..], b"v=0 hold");
    assert!(cseq(&retry) > cseq(&ours));
    call.handle_response(
        at,
        &peer_reply(&retry, 200, &[]).with_body("application/sdp", "v=0 held".as_bytes().to_vec()),
    );
    assert!(matches!(drain(&mut call).as_slice(), [Send::Ack(_)]));
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::RefreshAnswered {
            body: Some(sdp("v=0 held"))
        }]
    );
}

/// Glare as UAS (the peer owns the Call-ID): retry within 0-2 s.
#[test]
fn reinvite_glare_retry_uas() {
    let t0 = Instant::now();
    let mut call = answered_uas(t0, &[]);
    call.reinvite(Some(sdp("v=0 hold"))).expect("confirmed");
    let ours = one_request(&mut call);
    let mut resp = Response::from_request(&ours, 491, "Request Pending");
    resp.headers.set("Contact", "<sip:100@10.0.0.9>");
    call.handle_response(t0, &resp);
    let wait = call.poll_timeout().expect("glare timer") - t0;
    assert!(wait <= Duration::from_secs(2), "{wait:?}");
}

/// Session timer, we refresh: UPDATE at half the interval, then again after the next half.
#[test]
fn session_refresh_at_half_interval() {
    let t0 = Instant::now();
    let (mut call, _) = answered_uac(
        t0,
        &[
            ("Session-Expires", "180;refresher=uac"),
            ("Allow", "INVITE, ACK, BYE, UPDATE"),
        ],
    );
    assert_eq!(call.session_timer(), Some((Duration::from_secs(180), true)));
    assert_eq!(call.poll_timeout(), Some(t0 + Duration::from_secs(90)));
    call.handle_timeout(t0 + Duration::from_secs(89));
    assert!(drain(&mut call).is_empty());
    let t1 = t0 + Duration::from_secs(90);
    call.handle_timeout(t1);
    let refresh = one_request(&mut call);
    assert_eq!(refresh.method, Method::Update, "peer allows UPDATE");
    assert_eq!(
        refresh.headers.get("Session-Expires"),
        Some("180;refresher=uac")
    );
    assert!(refresh.body.is_empty());
    call.handle_response(
        t1,
        &peer_reply(&refresh, 200, &[("Session-Expires", "180;refresher=uac")]),
    );
    assert!(
        events(&mut call).is_empty(),
        "a refresh is not an application event"
    );
    assert_eq!(call.poll_timeout(), Some(t1 + Duration::from_secs(90)));
}

/// Session timer without UPDATE support: the refresh is a re-INVITE with the last SDP.
#[test]
fn session_refresh_by_reinvite() {
    let t0 = Instant::now();
    let (mut call, _) = answered_uac(t0, &[("Session-Expires", "120")]);
    call.handle_timeout(t0 + Duration::from_secs(60));
    let refresh = one_request(&mut call);
    assert_eq!(refresh.method, Method::Invite);
    assert_eq!(&refresh.body[..], b"v=0 offer");
    // A failed refresh stops refreshing; the session then dies at the full interval.
    call.handle_response(
        t0 + Duration::from_secs(60),
        &peer_reply(&refresh, 500, &[]),
    );
    assert_eq!(call.poll_timeout(), Some(t0 + Duration::from_secs(120)));
    call.handle_timeout(t0 + Duration::from_secs(120));
    assert_eq!(one_request(&mut call).method, Method::Bye);
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::SessionTimerExpired
        }]
    );
}

/// Session timer, the peer refreshes but goes silent: BYE at interval - min(32 s, interval/3).
#[test]
fn session_expiry_sends_bye() {
    let t0 = Instant::now();
    let mut call = answered_uas(
        t0,
        &[
            ("Session-Expires", "600;refresher=uac"),
            ("Supported", "timer"),
        ],
    );
    assert_eq!(
        call.session_timer(),
        Some((Duration::from_secs(600), false))
    );
    // The peer refreshes once with UPDATE at 300 s: the timer restarts.
    let t1 = t0 + Duration::from_secs(300);
    let mut update = pbx_request(&call, Method::Update, 11, None);
    update.headers.set("Session-Expires", "600;refresher=uac");
    call.handle_request(t1, &update);
    let ok = one_response(&mut call);
    assert_eq!(ok.status.0, 200);
    assert_eq!(ok.headers.get("Session-Expires"), Some("600;refresher=uac"));
    assert_eq!(call.poll_timeout(), Some(t1 + Duration::from_secs(568)));
    call.handle_timeout(t1 + Duration::from_secs(567));
    assert!(drain(&mut call).is_empty());
    call.handle_timeout(t1 + Duration::from_secs(568));
    assert_eq!(one_request(&mut call).method, Method::Bye);
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::SessionTimerExpired
        }]
    );
}

/// Incoming INVITE: a too small Session-Expires gets 422 with our Min-SE; the 2xx names the refresher.
#[test]
fn session_timer_negotiation_uas() {
    let t0 = Instant::now();
    let err = Call::incoming(
        uas_config(),
        t0,
        &pbx_invite(&[("Session-Expires", "30")]),
        1,
    )
    .expect_err("below Min-SE");
    assert_eq!(err.status.0, 422);
    assert_eq!(err.headers.get("Min-SE"), Some("90"));

    let mut call =
        Call::incoming(uas_config(), t0, &pbx_invite(&[("Supported", "timer")]), 1).expect("valid");
    call.answer(t0, None).expect("unanswered");
    let ok = one_response(&mut call);
    assert_eq!(
        ok.headers.get("Session-Expires"),
        Some("1800;refresher=uac")
    );
    assert_eq!(ok.headers.get("Require"), Some("timer"));
    let mut call = Call::incoming(uas_config(), t0, &pbx_invite(&[]), 1).expect("valid");
    call.answer(t0, None).expect("unanswered");
    let ok = one_response(&mut call);
    assert_eq!(
        ok.headers.get("Session-Expires"),
        Some("1800;refresher=uas"),
        "a peer without timer support makes us the refresher"
    );
    assert_eq!(
        call.session_timer(),
        Some((Duration::from_secs(1800), true))
    );
}

/// UAC: 422 is retried once with the peer's Min-SE.
#[test]
fn uac_retries_422_with_min_se() {
    let t0 = Instant::now();
    let mut call = Call::outgoing(uac_config(), t0, None, 5);
    let invite = one_request(&mut call);
    call.handle_response(t0, &peer_reply(&invite, 422, &[("Min-SE", "3600")]));
    let retry = one_request(&mut call);
    assert_eq!(retry.headers.get("Session-Expires"), Some("3600"));
    assert_eq!(cseq(&retry), cseq(&invite) + 1);
    call.handle_response(t0, &peer_reply(&retry, 422, &[("Min-SE", "7200")]));
    assert!(drain(&mut call).is_empty(), "only once");
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Rejected(422)
        }]
    );
}

/// UAC CANCEL waits for a provisional, reuses the INVITE's branch and CSeq number; 487 ends as Cancelled.
#[test]
fn uac_cancel_before_answer() {
    let t0 = Instant::now();
    let mut call = Call::outgoing(uac_config(), t0, None, 6);
    let invite = one_request(&mut call);
    call.cancel().expect("unanswered");
    assert!(
        drain(&mut call).is_empty(),
        "no CANCEL before a provisional"
    );
    call.handle_response(t0, &peer_reply(&invite, 180, &[]));
    let cancel = one_request(&mut call);
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(branch(&cancel), branch(&invite));
    assert_eq!(cseq(&cancel), cseq(&invite));
    assert_eq!(cancel.uri, invite.uri);
    assert!(
        cancel.headers.to().expect("to").tag.is_none(),
        "To copied from the INVITE"
    );
    assert!(matches!(
        events(&mut call).as_slice(),
        [DialogEvent::Ringing { status: 180, .. }]
    ));
    call.handle_response(t0, &Response::from_request(&cancel, 200, "OK"));
    call.handle_response(t0, &peer_reply(&invite, 487, &[]));
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Cancelled
        }]
    );
}

/// A 200 that crosses our CANCEL is ACKed and then ended with BYE.
#[test]
fn uac_cancel_race_with_200() {
    let t0 = Instant::now();
    let mut call = Call::outgoing(uac_config(), t0, None, 6);
    let invite = one_request(&mut call);
    call.handle_response(t0, &peer_reply(&invite, 180, &[]));
    events(&mut call);
    call.cancel().expect("unanswered");
    drain(&mut call);
    call.handle_response(t0, &peer_reply(&invite, 200, &[]));
    let out = drain(&mut call);
    assert!(
        matches!(out.as_slice(), [Send::Ack(_), Send::Request(bye)] if bye.method == Method::Bye),
        "{out:?}"
    );
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Cancelled
        }]
    );
}

/// UAS: CANCEL before answer gets 200 and the INVITE gets 487.
#[test]
fn uas_cancel_gives_487() {
    let t0 = Instant::now();
    let invite = pbx_invite(&[]);
    let mut call = Call::incoming(uas_config(), t0, &invite, 8).expect("valid");
    call.ring(t0, 180, None).expect("unanswered");
    drain(&mut call);
    let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
    for n in ["Via", "From", "To", "Call-ID"] {
        cancel
            .headers
            .push(n, invite.headers.get(n).expect("copied"));
    }
    cancel.headers.push("CSeq", "10 CANCEL");
    assert!(call.accepts_request(&cancel));
    call.handle_request(t0, &cancel);
    let out = drain(&mut call);
    let statuses: Vec<(u16, Method)> = out
        .iter()
        .map(|s| match s {
            Send::Response(r) => (r.status.0, r.headers.cseq().expect("cseq").method),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        statuses,
        [(487, Method::Invite)],
        "the transaction layer answers the CANCEL"
    );
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Cancelled
        }]
    );
    assert!(call.answer(t0, None).is_err(), "too late to answer");
}

/// A challenged INVITE is answered once with credentials; a second challenge rejects the call.
#[test]
fn uac_invite_challenge_answered_once() {
    let t0 = Instant::now();
    let mut cfg = uac_config();
    cfg.credentials = Some(Credentials::new("gw", "pw"));
    let mut call = Call::outgoing(cfg, t0, Some(sdp("v=0 offer")), 9);
    let invite = one_request(&mut call);
    let challenge = r#"Digest realm="pbx", nonce="abc", qop="auth""#;
    call.handle_response(
        t0,
        &peer_reply(&invite, 407, &[("Proxy-Authenticate", challenge)]),
    );
    let retry = one_request(&mut call);
    assert_eq!(cseq(&retry), cseq(&invite) + 1);
    assert_eq!(retry.headers.call_id().ok(), invite.headers.call_id().ok());
    assert_eq!(
        retry.headers.from().expect("from").tag,
        invite.headers.from().expect("from").tag
    );
    assert_ne!(branch(&retry), branch(&invite));
    let auth = crate::auth::Authorization::parse(
        retry
            .headers
            .get("Proxy-Authorization")
            .expect("credentials"),
    )
    .expect("valid credentials");
    assert_eq!(auth.uri, "sip:200@pbx.example.com");
    assert_eq!(&retry.body[..], b"v=0 offer");
    assert!(events(&mut call).is_empty());
    call.handle_response(
        t0,
        &peer_reply(&retry, 407, &[("Proxy-Authenticate", challenge)]),
    );
    assert!(drain(&mut call).is_empty());
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Rejected(407)
        }]
    );
}

/// No final response to our INVITE: Timeout. A timed-out re-INVITE ends the dialog with BYE.
#[test]
fn transaction_timeouts() {
    let t0 = Instant::now();
    let mut call = Call::outgoing(uac_config(), t0, None, 10);
    let invite = one_request(&mut call);
    call.handle_transaction_timeout(t0 + Duration::from_secs(32), &Method::Invite, cseq(&invite));
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Timeout
        }]
    );

    let (mut call, _) = answered_uac(t0, &[]);
    call.reinvite(None).expect("confirmed");
    let re = one_request(&mut call);
    call.handle_transaction_timeout(t0, &Method::Invite, cseq(&re));
    assert_eq!(one_request(&mut call).method, Method::Bye);
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Timeout
        }]
    );
}

/// UAC rejected with a final error reports Rejected(status).
#[test]
fn uac_rejected() {
    let t0 = Instant::now();
    let mut call = Call::outgoing(uac_config(), t0, None, 11);
    let invite = one_request(&mut call);
    call.handle_response(t0, &peer_reply(&invite, 486, &[]));
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Rejected(486)
        }]
    );
    assert_eq!(call.cancel(), Err(DialogError::InvalidState("cancel")));
}

/// A 2xx from a second fork is ACKed and ended with BYE; our dialog stays up.
#[test]
fn uac_second_fork_2xx_is_acked_and_ended() {
    let t0 = Instant::now();
    let (mut call, invite) = answered_uac(t0, &[]);
    let fork = Response::from_request(&invite, 200, "OK")
        .with_to_tag("fork2")
        .with_header("Contact", "<sip:201@10.0.0.20>");
    call.handle_response(t0, &fork);
    let out = drain(&mut call);
    let [Send::Ack(ack), Send::Request(bye)] = out.as_slice() else {
        panic!("expected ACK and BYE, got {out:?}");
    };
    for r in [ack, bye] {
        assert_eq!(r.headers.to().expect("to").tag.as_deref(), Some("fork2"));
        assert_eq!(r.uri.to_string(), "sip:201@10.0.0.20");
    }
    assert_eq!(bye.method, Method::Bye);
    assert!(events(&mut call).is_empty());
    assert_eq!(call.state(), DialogState::Confirmed);
    assert_eq!(call.id().expect("dialog").remote_tag, "pbxtag");
    call.hangup().expect("confirmed");
    let our_bye = one_request(&mut call);
    assert_eq!(
        our_bye.headers.to().expect("to").tag.as_deref(),
        Some("pbxtag")
    );
    assert_eq!(our_bye.uri.to_string(), "sip:200@10.0.0.9:5060");
}

/// Moves every pending message between two legs until both are quiet; returns how many moved.
fn shuttle(now: Instant, a: &mut Call, b: &mut Call) -> usize {
    fn pass(now: Instant, from: &mut Call, to: &mut Call) -> usize {
        let mut moved = 0;
        while let Some(s) = from.poll_transmit() {
            moved += 1;
            match s {
                Send::Request(r) | Send::Ack(r) => to.handle_request(now, &r),
                Send::Response(r) | Send::Retransmit(r) => to.handle_response(now, &r),
            }
        }
        moved
    }
    let mut total = 0;
    loop {
        let moved = pass(now, a, b) + pass(now, b, a);
        if moved == 0 {
            return total;
        }
        total += moved;
    }
}

/// Our UAC against our UAS: call set-up, a session refresh by the refresher, BYE; both sides agree.
#[test]
fn uac_uas_pair_end_to_end() {
    let t0 = Instant::now();
    let mut cfg = uac_config();
    cfg.session_expires = Some(180);
    let mut a = Call::outgoing(cfg, t0, Some(sdp("v=0 a")), 21);
    let invite = one_request(&mut a);
    let mut b = Call::incoming(uas_config(), t0, &invite, 22).expect("our INVITE is valid");
    b.ring(t0, 180, None).expect("unanswered");
    shuttle(t0, &mut a, &mut b);
    assert!(matches!(
        events(&mut a).as_slice(),
        [DialogEvent::Ringing { status: 180, .. }]
    ));
    b.answer(t0, Some(sdp("v=0 b"))).expect("unanswered");
    shuttle(t0, &mut a, &mut b);
    assert_eq!(
        events(&mut a),
        vec![DialogEvent::Answered {
            body: Some(sdp("v=0 b"))
        }]
    );
    assert_eq!(events(&mut b), vec![DialogEvent::Answered { body: None }]);
    let (ida, idb) = (a.id().expect("dialog"), b.id().expect("dialog"));
    assert_eq!(
        (ida.local_tag, ida.remote_tag),
        (idb.remote_tag, idb.local_tag)
    );
    assert_eq!(
        a.session_timer(),
        Some((Duration::from_secs(180), true)),
        "UAC supports timer"
    );
    assert_eq!(b.session_timer(), Some((Duration::from_secs(180), false)));

    // Run the clock for ten minutes: A refreshes every 90 s, B never expires.
    let mut now = t0;
    let mut refreshes = 0;
    loop {
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .expect("session timers armed");
        if next > t0 + Duration::from_secs(600) {
            break;
        }
        now = next;
        a.handle_timeout(now);
        b.handle_timeout(now);
        refreshes += shuttle(now, &mut a, &mut b) / 2;
    }
    assert_eq!(refreshes, 6, "one UPDATE and its 200 every 90 s");
    assert!(events(&mut a).is_empty() && events(&mut b).is_empty());
    assert_eq!(a.state(), DialogState::Confirmed);

    b.hangup().expect("confirmed");
    shuttle(now, &mut a, &mut b);
    assert_eq!(
        events(&mut a),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::RemoteBye
        }]
    );
    assert_eq!(
        events(&mut b),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::LocalBye
        }]
    );
    assert_eq!((a.poll_timeout(), b.poll_timeout()), (None, None));
}

/// A proxy challenging our BYE gets it again once with credentials; a second challenge is not answered.
#[test]
fn in_dialog_request_challenge_answered_once() {
    let t0 = Instant::now();
    let mut cfg = uac_config();
    cfg.credentials = Some(Credentials::new("gw", "pw"));
    let mut call = Call::outgoing(cfg, t0, None, 12);
    let invite = one_request(&mut call);
    call.handle_response(t0, &peer_reply(&invite, 200, &[]));
    drain(&mut call);
    events(&mut call);
    call.hangup().expect("confirmed");
    let bye = one_request(&mut call);
    assert!(!call.is_finished(), "BYE still pending");
    let challenge = r#"Digest realm="pbx", nonce="n9", qop="auth""#;
    call.handle_response(
        t0,
        &peer_reply(&bye, 407, &[("Proxy-Authenticate", challenge)]),
    );
    let bye2 = one_request(&mut call);
    assert_eq!(bye2.method, Method::Bye);
    assert_eq!(cseq(&bye2), cseq(&bye) + 1);
    assert_ne!(branch(&bye2), branch(&bye));
    let auth = crate::auth::Authorization::parse(
        bye2.headers
            .get("Proxy-Authorization")
            .expect("credentials"),
    )
    .expect("valid");
    assert_eq!(auth.uri, bye.uri.to_string());
    call.handle_response(
        t0,
        &peer_reply(&bye2, 407, &[("Proxy-Authenticate", challenge)]),
    );
    assert!(drain(&mut call).is_empty(), "answered once only");
    assert!(call.is_finished());
}

/// The ACK to the peer's offer-less re-INVITE carries the answer to our offer.
#[test]
fn ack_answer_to_offerless_reinvite() {
    let t0 = Instant::now();
    let mut call = answered_uas(t0, &[]);
    call.handle_request(t0, &pbx_request(&call, Method::Invite, 11, None));
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::TargetRefresh { offer: None }]
    );
    call.accept_refresh(t0, Some(sdp("v=0 our offer")))
        .expect("pending");
    assert_eq!(one_response(&mut call).status.0, 200);
    call.handle_request(
        t0,
        &pbx_request(&call, Method::Ack, 11, Some("v=0 their answer")),
    );
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::RefreshAnswered {
            body: Some(sdp("v=0 their answer"))
        }]
    );
}

/// Garbage in headers never panics a leg, in either role, whatever the state.
#[test]
fn hostile_headers_do_not_panic() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    const NASTY: &[&str] = &[
        "",
        "abc",
        "0",
        "-1",
        "4294967295",
        "18446744073709551616",
        "<>",
        "<sip:>",
        "\"",
        ";;;",
        "1;refresher=",
        "90;refresher=uas",
        "<sip:x@y>;tag=",
        "<sip:x@y;lr>, <sip:z>",
        "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256-sess, qop=\"auth-int\"",
    ];
    const HEADERS: &[&str] = &[
        "Session-Expires",
        "Min-SE",
        "Contact",
        "Record-Route",
        "Allow",
        "Supported",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "To",
        "CSeq",
        "Content-Type",
    ];
    let mut rng = StdRng::seed_from_u64(77);
    let t0 = Instant::now();
    for round in 0..300 {
        let mut cfg = uac_config();
        cfg.credentials = Some(Credentials::new("u", "p"));
        if round % 3 == 0 {
            cfg.session_expires = None;
        }
        let mut uac = Call::outgoing(cfg, t0, None, round);
        let invite = one_request(&mut uac);
        let mut uas = match Call::incoming(uas_config(), t0, &pbx_invite(&[]), round) {
            Ok(c) => c,
            Err(r) => panic!("valid INVITE refused: {r:?}"),
        };
        let mut now = t0;
        for _ in 0..6 {
            let status =
                [100, 180, 183, 200, 401, 407, 422, 486, 491, 503][rng.random_range(0..10)];
            let mut resp = peer_reply(&invite, status, &[]);
            for _ in 0..3 {
                let h = HEADERS[rng.random_range(0..HEADERS.len())];
                resp.headers.set(h, NASTY[rng.random_range(0..NASTY.len())]);
            }
            uac.handle_response(now, &resp);
            let _ = uac.reinvite(None);
            let _ = uas.answer(now, None);
            let method = [
                Method::Invite,
                Method::Update,
                Method::Bye,
                Method::Ack,
                Method::Info,
            ][rng.random_range(0..5)]
            .clone();
            let mut req = pbx_request(&uas, method, rng.random_range(0..20), None);
            for _ in 0..3 {
                let h = HEADERS[rng.random_range(0..HEADERS.len())];
                req.headers.set(h, NASTY[rng.random_range(0..NASTY.len())]);
            }
            uas.handle_request(now, &req);
            let _ = uas.accept_refresh(now, None);
            now += Duration::from_secs(rng.random_range(0..120));
            uac.handle_timeout(now);
            uas.handle_timeout(now);
            drain(&mut uac);
            drain(&mut uas);
            events(&mut uac);
            events(&mut uas);
        }
    }
}

/// REFER both ways between our two roles: 202, NOTIFY 100 at once, final NOTIFY ends the subscription.
#[test]
fn refer_transfer_round_trip() {
    let t0 = Instant::now();
    let mut a = Call::outgoing(uac_config(), t0, Some(sdp("v=0 a")), 31);
    let invite = one_request(&mut a);
    let mut b = Call::incoming(uas_config(), t0, &invite, 32).expect("valid");
    b.answer(t0, Some(sdp("v=0 b"))).expect("unanswered");
    shuttle(t0, &mut a, &mut b);
    events(&mut a);
    events(&mut b);

    a.refer(&uri("sip:300@pbx.example.com")).expect("confirmed");
    let refer = one_request(&mut a);
    assert_eq!(refer.method, Method::Refer);
    assert_eq!(
        refer.headers.get("Refer-To"),
        Some("<sip:300@pbx.example.com>")
    );
    b.handle_request(t0, &refer);
    let out = drain(&mut b);
    let [Send::Response(accepted), Send::Request(notify)] = out.as_slice() else {
        panic!("expected 202 and NOTIFY, got {out:?}");
    };
    assert_eq!(accepted.status.0, 202);
    assert_eq!(notify.method, Method::Notify);
    assert_eq!(notify.headers.get("Event"), Some("refer"));
    assert_eq!(&notify.body[..], b"SIP/2.0 100 Trying");
    let ev = events(&mut b);
    let [DialogEvent::Refer { refer_to, .. }] = ev.as_slice() else {
        panic!("expected Refer, got {ev:?}");
    };
    assert_eq!(refer_to.uri.to_string(), "sip:300@pbx.example.com");
    a.handle_response(t0, accepted);
    a.handle_request(t0, notify);
    assert_eq!(one_response(&mut a).status.0, 200);
    assert_eq!(
        events(&mut a),
        vec![
            DialogEvent::ReferResult { status: 202 },
            DialogEvent::ReferProgress {
                status: 100,
                done: false
            }
        ]
    );
    b.refer_progress(200, "OK").expect("confirmed");
    let last = one_request(&mut b);
    assert!(
        last.headers
            .get("Subscription-State")
            .is_some_and(|s| s.starts_with("terminated"))
    );
    a.handle_request(t0, &last);
    drain(&mut a);
    assert_eq!(
        events(&mut a),
        vec![DialogEvent::ReferProgress {
            status: 200,
            done: true
        }]
    );

    // Two Refer-To headers are refused.
    let mut bad = refer.clone();
    bad.headers.push("Refer-To", "<sip:400@x>");
    bad.headers
        .set("CSeq", format!("{} REFER", cseq(&refer) + 10));
    b.handle_request(t0, &bad);
    assert_eq!(one_response(&mut b).status.0, 400);
}

/// Unanswered too long: the UAC cancels (ending as Timeout), the UAS answers 480.
#[test]
fn answer_timeout_both_roles() {
    let t0 = Instant::now();
    let mut cfg = uac_config();
    cfg.answer_timeout = Some(Duration::from_secs(60));
    let mut call = Call::outgoing(cfg, t0, None, 41);
    let invite = one_request(&mut call);
    call.handle_response(t0, &peer_reply(&invite, 180, &[]));
    events(&mut call);
    assert_eq!(call.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    call.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(one_request(&mut call).method, Method::Cancel);
    call.handle_response(t0, &peer_reply(&invite, 487, &[]));
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Timeout
        }]
    );

    let mut cfg = uas_config();
    cfg.answer_timeout = Some(Duration::from_secs(30));
    let mut call = Call::incoming(cfg, t0, &pbx_invite(&[]), 42).expect("valid");
    call.ring(t0, 180, None).expect("unanswered");
    drain(&mut call);
    call.handle_timeout(t0 + Duration::from_secs(29));
    assert!(drain(&mut call).is_empty());
    call.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(one_response(&mut call).status.0, 480);
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Timeout
        }]
    );
    assert_eq!(call.poll_timeout(), None);
}

/// The caller's display name goes in From, quoted, with quotes and backslashes
/// escaped and control characters dropped, and parses back to the same text.
#[test]
fn uac_from_carries_escaped_display_name() {
    let mut cfg = uac_config();
    cfg.display_name = Some("Alice \"A\\B\"\r\n".into());
    let mut call = Call::outgoing(cfg, Instant::now(), None, 1);
    let invite = one_request(&mut call);
    let wire = invite.to_string();
    assert!(
        wire.contains("From: \"Alice \\\"A\\\\B\\\"\" <sip:gw@192.0.2.1>"),
        "{wire}"
    );
    let reparsed = crate::message::parse_message(wire.as_bytes()).expect("parses");
    let from = match reparsed {
        crate::message::SipMessage::Request(r) => r.headers.from().expect("from"),
        crate::message::SipMessage::Response(_) => panic!("a request"),
    };
    assert_eq!(from.display.as_deref(), Some("Alice \\\"A\\\\B\\\""));
}

/// RFC 3262 as UAC: we advertise 100rel, PRACK each reliable provisional in
/// its early dialog with the right RAck, discard retransmitted and
/// out-of-order ones, and leave unreliable ones alone.
#[test]
fn uac_pracks_reliable_provisionals() {
    let t0 = Instant::now();
    let mut call = Call::outgoing(uac_config(), t0, Some(sdp("v=0 offer")), 1);
    let invite = one_request(&mut call);
    let supported = invite.headers.get("Supported").expect("Supported");
    assert!(
        supported.split(',').any(|t| t.trim() == "100rel"),
        "{supported}"
    );

    let reliable = |status: u16, rseq: &str| {
        peer_reply(
            &invite,
            status,
            &[
                ("Require", "100rel"),
                ("RSeq", rseq),
                ("Record-Route", "<sip:p1.example.com;lr>"),
            ],
        )
    };
    call.handle_response(t0, &reliable(180, "7"));
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Ringing {
            status: 180,
            body: None
        }]
    );
    let prack = one_request(&mut call);
    assert_eq!(prack.method, Method::Prack);
    assert_eq!(prack.headers.get("RAck"), Some("7 1 INVITE"));
    assert_eq!(cseq(&prack), 2);
    assert_eq!(
        prack.headers.to().expect("to").tag.as_deref(),
        Some("pbxtag"),
        "in the early dialog"
    );
    assert_eq!(
        prack.uri.to_string(),
        "sip:200@10.0.0.9:5060",
        "to the remote target"
    );
    assert_eq!(
        prack.headers.get("Route"),
        Some("<sip:p1.example.com;lr>"),
        "along the early route set"
    );
    assert_ne!(branch(&prack), branch(&invite));

    // The UAS retransmits the 180 until our PRACK arrives: no second event or PRACK.
    call.handle_response(t0, &reliable(180, "7"));
    assert!(events(&mut call).is_empty());
    assert!(drain(&mut call).is_empty());
    // RSeq 9 before 8 is out of order: discarded; the UAS resends 8 first.
    call.handle_response(t0, &reliable(183, "9"));
    assert!(events(&mut call).is_empty() && drain(&mut call).is_empty());
    call.handle_response(t0, &reliable(183, "8"));
    assert_eq!(events(&mut call).len(), 1);
    let prack2 = one_request(&mut call);
    assert_eq!(prack2.headers.get("RAck"), Some("8 1 INVITE"));
    assert_eq!(cseq(&prack2), 3);
    // The PRACKs' 200s change nothing.
    call.handle_response(t0, &peer_reply(&prack, 200, &[]));
    call.handle_response(t0, &peer_reply(&prack2, 200, &[]));
    assert!(events(&mut call).is_empty() && drain(&mut call).is_empty());
    // An unreliable 180 is not PRACKed.
    call.handle_response(t0, &peer_reply(&invite, 180, &[]));
    assert_eq!(events(&mut call).len(), 1);
    assert!(drain(&mut call).is_empty());

    // The 200 to the INVITE is ACKed with the INVITE's CSeq, not the PRACK's.
    call.handle_response(t0, &peer_reply(&invite, 200, &[]));
    match drain(&mut call).as_slice() {
        [Send::Ack(a)] => assert_eq!(cseq(a), 1),
        other => panic!("expected ACK, got {other:?}"),
    }
    assert_eq!(call.state(), DialogState::Confirmed);
    // In-dialog requests continue after the PRACKs' CSeqs.
    call.hangup().expect("confirmed");
    let bye = one_request(&mut call);
    assert_eq!(cseq(&bye), 4);
}

/// A reliable provisional without RSeq cannot be acknowledged: treated as unreliable.
#[test]
fn uac_reliable_provisional_without_rseq_is_not_pracked() {
    let t0 = Instant::now();
    let mut cfg = uac_config();
    cfg.supports_100rel = false;
    let mut call = Call::outgoing(cfg, t0, None, 1);
    let invite = one_request(&mut call);
    assert_eq!(invite.headers.get("Supported"), Some("timer"));
    call.handle_response(t0, &peer_reply(&invite, 180, &[("Require", "100rel")]));
    assert_eq!(events(&mut call).len(), 1);
    assert!(drain(&mut call).is_empty());
}

/// A PRACK from the PBX acknowledging `prov` (RFC 3262 7.2).
fn pbx_prack(call: &Call, seq: u32, prov: &Response) -> Request {
    let rseq = prov
        .headers
        .get("RSeq")
        .expect("RSeq on a reliable provisional");
    pbx_request(call, Method::Prack, seq, None).with_header("RAck", format!("{rseq} 10 INVITE"))
}

/// RFC 3262 as UAS: an INVITE that requires 100rel gets its 180 with
/// `Require: 100rel` and an RSeq, retransmitted at T1, 2T1, 4T1 ... until the
/// PRACK, which gets 200; a PRACK for nothing pending gets 481; the next
/// provisional counts the RSeq up.
#[test]
fn uas_reliable_provisional_retransmitted_until_prack() {
    let t0 = Instant::now();
    let invite = pbx_invite(&[("Require", "100rel")]);
    let mut call = Call::incoming(uas_config(), t0, &invite, 31).expect("valid INVITE");
    call.ring(t0, 180, None).expect("unanswered");
    let ringing = one_response(&mut call);
    assert_eq!(ringing.status.0, 180);
    assert_eq!(ringing.headers.get("Require"), Some("100rel"));
    let rseq: u32 = ringing
        .headers
        .get("RSeq")
        .and_then(|r| r.parse().ok())
        .expect("numeric RSeq");
    assert!((1..1u32 << 31).contains(&rseq));

    let mut resent = Vec::new();
    let mut now = t0;
    while let Some(next) = call.poll_timeout() {
        if next - t0 > Duration::from_millis(7_600) {
            break;
        }
        now = next;
        call.handle_timeout(now);
        for s in drain(&mut call) {
            assert_eq!(
                s,
                Send::Response(ringing.clone()),
                "the same 180, same RSeq"
            );
            resent.push((now - t0).as_millis());
        }
    }
    assert_eq!(resent, [500, 1500, 3500, 7500], "T1 doubling, no T2 cap");

    let prack = pbx_prack(&call, 11, &ringing);
    call.handle_request(now, &prack);
    let ok = one_response(&mut call);
    assert_eq!(
        (ok.status.0, ok.headers.cseq().expect("cseq").method),
        (200, Method::Prack)
    );
    call.handle_timeout(now + Duration::from_secs(20));
    assert!(
        drain(&mut call).is_empty(),
        "PRACK stopped the retransmissions"
    );

    // The same PRACK again, as a new request: nothing is pending any more.
    call.handle_request(now, &pbx_prack(&call, 12, &ringing));
    assert_eq!(one_response(&mut call).status.0, 481);

    call.ring(now, 183, Some(sdp("v=0 early")))
        .expect("unanswered");
    let progress = one_response(&mut call);
    assert_eq!(
        progress.headers.get("RSeq"),
        Some((rseq + 1).to_string().as_str())
    );
    assert!(events(&mut call).is_empty());
}

/// RFC 3262 3: a second reliable provisional waits for the first one's PRACK,
/// and a 2xx waits for the PRACK of a provisional that carried SDP.
#[test]
fn uas_reliable_provisionals_in_order_and_2xx_after_prack() {
    let t0 = Instant::now();
    let invite = pbx_invite(&[("Supported", "100rel, timer")]);
    let mut cfg = uas_config();
    cfg.reliable_provisionals = true;
    let mut call = Call::incoming(cfg, t0, &invite, 32).expect("valid INVITE");
    call.ring(t0, 180, None).expect("unanswered");
    let ringing = one_response(&mut call);
    assert_eq!(ringing.headers.get("Require"), Some("100rel"));
    call.ring(t0, 183, Some(sdp("v=0 early"))).expect("queued");
    assert!(
        drain(&mut call).is_empty(),
        "the 183 waits for the 180's PRACK"
    );
    call.answer(t0, Some(sdp("v=0 answer"))).expect("held");
    assert!(drain(&mut call).is_empty(), "the 200 waits too");
    assert_eq!(
        call.ring(t0, 180, None),
        Err(DialogError::InvalidState("ring")),
        "no provisional after answer"
    );

    let t1 = t0 + Duration::from_millis(100);
    call.handle_request(t1, &pbx_prack(&call, 11, &ringing));
    let out = drain(&mut call);
    let [Send::Response(ok), Send::Response(progress)] = out.as_slice() else {
        panic!("expected 200 to PRACK then the 183, got {out:?}");
    };
    assert_eq!((ok.status.0, progress.status.0), (200, 183));
    assert!(progress.body.starts_with(b"v=0 early"));

    let t2 = t1 + Duration::from_millis(100);
    call.handle_request(t2, &pbx_prack(&call, 12, progress));
    let out = drain(&mut call);
    let [Send::Response(ok), Send::Response(answer)] = out.as_slice() else {
        panic!("expected 200 to PRACK then the 200 to INVITE, got {out:?}");
    };
    assert_eq!(ok.headers.cseq().expect("cseq").method, Method::Prack);
    assert_eq!(answer.headers.cseq().expect("cseq").method, Method::Invite);
    assert_eq!(answer.status.0, 200);
    assert_eq!(call.state(), DialogState::Confirmed);
    call.handle_request(t2, &pbx_request(&call, Method::Ack, 10, None));
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Answered { body: None }]
    );
}

/// Without `reliable_provisionals`, `Supported: 100rel` alone changes nothing,
/// and a 2xx after an SDP-less reliable 180 goes out at once.
#[test]
fn uas_reliable_only_when_asked() {
    let t0 = Instant::now();
    let invite = pbx_invite(&[("Supported", "100rel")]);
    let mut call = Call::incoming(uas_config(), t0, &invite, 33).expect("valid INVITE");
    call.ring(t0, 180, None).expect("unanswered");
    let ringing = one_response(&mut call);
    assert_eq!(
        (ringing.headers.get("Require"), ringing.headers.get("RSeq")),
        (None, None)
    );

    let invite = pbx_invite(&[("Require", "100rel")]);
    let mut call = Call::incoming(uas_config(), t0, &invite, 34).expect("valid INVITE");
    call.ring(t0, 180, None).expect("unanswered");
    drain(&mut call);
    call.answer(t0, None).expect("unanswered");
    assert_eq!(
        one_response(&mut call).status.0,
        200,
        "no SDP in the 180: 2xx may go"
    );
}

/// No PRACK within 64*T1: the INVITE is refused with 5xx and the call ends.
#[test]
fn uas_reliable_provisional_without_prack_gives_up() {
    let t0 = Instant::now();
    let invite = pbx_invite(&[("Require", "100rel")]);
    let mut call = Call::incoming(uas_config(), t0, &invite, 35).expect("valid INVITE");
    call.ring(t0, 183, Some(sdp("v=0 early")))
        .expect("unanswered");
    drain(&mut call);
    call.answer(t0, None).expect("held until PRACK");
    call.handle_timeout(t0 + Duration::from_millis(31_999));
    assert!(
        drain(&mut call)
            .iter()
            .all(|s| matches!(s, Send::Response(r) if r.status.0 == 183))
    );
    call.handle_timeout(t0 + Duration::from_secs(32));
    let refused = one_response(&mut call);
    assert_eq!(refused.status.0, 504);
    assert_eq!(
        events(&mut call),
        vec![DialogEvent::Terminated {
            reason: TerminatedReason::Timeout
        }]
    );
    assert_eq!(call.poll_timeout(), None);
}

/// CANCEL while a reliable provisional is unacknowledged: 487, retransmissions stop.
#[test]
fn uas_cancel_stops_reliable_provisional() {
    let t0 = Instant::now();
    let invite = pbx_invite(&[("Require", "100rel")]);
    let mut call = Call::incoming(uas_config(), t0, &invite, 36).expect("valid INVITE");
    call.ring(t0, 180, None).expect("unanswered");
    drain(&mut call);
    let cancel = Request::new(Method::Cancel, invite.uri.clone())
        .with_header("Via", invite.headers.get("Via").expect("via"))
        .with_header("From", invite.headers.get("From").expect("from"))
        .with_header("To", invite.headers.get("To").expect("to"))
        .with_header("Call-ID", "pbxcall@10.0.0.9")
        .with_header("CSeq", "10 CANCEL");
    call.handle_request(t0, &cancel);
    assert_eq!(one_response(&mut call).status.0, 487);
    call.handle_timeout(t0 + Duration::from_secs(5));
    assert!(drain(&mut call).is_empty());
}

/// Our UAC (which PRACKs) against our UAS requiring reliability: 183 with
/// early media, PRACK, 200, ACK; nothing left pending on either side.
#[test]
fn uac_uas_pair_reliable_provisionals() {
    let t0 = Instant::now();
    let mut a = Call::outgoing(uac_config(), t0, Some(sdp("v=0 a")), 37);
    let invite = one_request(&mut a).with_header("Require", "100rel");
    let mut b = Call::incoming(uas_config(), t0, &invite, 38).expect("our INVITE is valid");
    b.ring(t0, 183, Some(sdp("v=0 early"))).expect("unanswered");
    b.answer(t0, Some(sdp("v=0 b"))).expect("held until PRACK");
    shuttle(t0, &mut a, &mut b);
    assert_eq!(
        events(&mut a),
        vec![
            DialogEvent::Ringing {
                status: 183,
                body: Some(sdp("v=0 early"))
            },
            DialogEvent::Answered {
                body: Some(sdp("v=0 b"))
            },
        ]
    );
    assert_eq!(events(&mut b), vec![DialogEvent::Answered { body: None }]);
    // Nothing retransmits: the 183 was PRACKed and the 200 ACKed.
    b.handle_timeout(t0 + Duration::from_secs(40));
    a.handle_timeout(t0 + Duration::from_secs(40));
    assert_eq!(shuttle(t0 + Duration::from_secs(40), &mut a, &mut b), 0);
    assert_eq!(b.state(), DialogState::Confirmed);
}
