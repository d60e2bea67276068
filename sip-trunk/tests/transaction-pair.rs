//! A UAC and a UAS transaction layer talking over a simulated link: loss,
//! retransmission absorption, hop-by-hop ACK, CANCEL, rport/received and
//! refusal of malformed or oversized requests.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sip_trunk::message::{MAX_MESSAGE_SIZE, Method};
use sip_trunk::transaction::{Input, Output, Timer, TransactionLayer, Transport, TxEvent};

/// An INVITE whose first two copies are lost still completes; the UAS sees
/// one request, sends 100 Trying at once, and the UAC sees 100, 180, 200.
#[test]
fn invite_survives_loss_and_retransmissions_are_absorbed() {
    let mut p = Pair::new(Transport::Udp);
    let mut lost = 0;
    p.drop = Box::new(move |dir, data| {
        if dir == Dir::ToUas && data.starts_with(b"INVITE") && lost < 2 {
            lost += 1;
            return true;
        }
        false
    });
    let id = p.send(request(Method::Invite, 1));
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.dropped, 2);
    let (sid, req) = p.last_uas_request();
    assert_eq!(
        p.uas.events.len(),
        1,
        "one Request event despite 3 copies sent"
    );
    // The copy that got through arrived after 0.5 + 1 s of Timer A.
    assert_eq!(p.uas.events[0].0 - p.start, Duration::from_millis(1510));
    // 100 Trying went out immediately.
    assert!(p.uas.sent[0].1.starts_with(b"SIP/2.0 100 Trying"));
    p.respond(sid, &req, 180);
    p.respond(sid, &req, 200);
    p.run_for(Duration::from_secs(1));
    assert_eq!(p.uac_responses(), vec![100, 180, 200]);
    // RFC 6026: both INVITE transactions wait in Accepted for 64*T1
    // (Timer M on the client, Timer L on the server), then end.
    assert!(p.uac.layer.timer(id, Timer::M).is_some());
    assert!(p.uas.layer.timer(sid, Timer::L).is_some());
    assert!(p.uac.layer.contains(id) && p.uas.layer.contains(sid));
    p.run_for(Duration::from_secs(33));
    assert!(
        !p.uac.layer.contains(id),
        "Timer M ends the client INVITE transaction"
    );
    assert!(
        !p.uas.layer.contains(sid),
        "Timer L ends the server INVITE transaction"
    );
}

/// A retransmitted request makes the server resend its last response, not
/// raise a second event.
#[test]
fn server_resends_last_response_to_retransmissions() {
    let mut p = Pair::new(Transport::Udp);
    p.send(request(Method::Options, 1));
    p.run_for(Duration::from_millis(100));
    let (sid, req) = p.last_uas_request();
    p.respond(sid, &req, 200);
    // Feed the UAS three retransmissions by hand.
    for i in 0..3 {
        let now = p.now + Duration::from_millis(i);
        let d = receive(
            &mut p.uas.layer,
            now,
            UAC,
            Transport::Udp,
            &p.uac.sent[0].1.clone(),
        );
        assert!(d.events.is_empty());
        assert_eq!(d.transmits.len(), 1);
        assert_eq!(parse_response(&d.transmits[0].data).status.0, 200);
    }
    assert_eq!(p.uas.layer.stats().retransmissions_absorbed, 3);
}

/// The ACK for a non-2xx is built by the client transaction: same branch,
/// To with the UAS tag, CSeq ACK, and it completes the server transaction.
#[test]
fn non_2xx_ack_is_hop_by_hop_with_the_same_branch() {
    let mut p = Pair::new(Transport::Udp);
    let cid = p.send(request(Method::Invite, 7));
    p.run_for(Duration::from_millis(50));
    let (sid, req) = p.last_uas_request();
    p.respond(sid, &req, 486);
    p.run_for(Duration::from_millis(100));
    let invite = parse_request(&p.uac.sent[0].1);
    let ack = parse_request(&p.uac.sent.last().expect("ack").1);
    assert_eq!(ack.method, Method::Ack);
    let (iv, av) = (invite.headers.via().unwrap(), ack.headers.via().unwrap());
    assert_eq!(iv.branch, av.branch);
    assert_eq!(ack.uri, invite.uri);
    assert_eq!(ack.headers.cseq().unwrap().seq, 7);
    assert_eq!(ack.headers.to().unwrap().tag.as_deref(), Some("uas-tag"));
    assert_eq!(
        ack.headers.call_id().unwrap(),
        invite.headers.call_id().unwrap()
    );
    // The ACK was absorbed by the server transaction (no Ack event), which
    // stopped retransmitting 486 and waits out Timer I.
    assert!(
        !p.uas
            .events
            .iter()
            .any(|(_, e)| matches!(e, TxEvent::Ack { .. }))
    );
    assert_eq!(p.uas.layer.timer(sid, Timer::G), None);
    assert!(p.uas.layer.timer(sid, Timer::I).is_some());
    assert_eq!(p.uac_responses(), vec![100, 486]);
    p.run_for(Duration::from_secs(40));
    assert!(p.uas.layer.is_empty() && p.uac.layer.is_empty());
    let _ = cid;
}

/// The ACK for a 2xx does not match any transaction and goes to the TU.
#[test]
fn ack_for_2xx_is_passed_up() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(config(UAS, 1), t0);
    let d = receive(
        &mut l,
        t0,
        UAC,
        Transport::Udp,
        &incoming(Method::Ack, "z9hG4bKother", "UDP"),
    );
    assert!(matches!(&d.events[..], [TxEvent::Ack { .. }]));
    assert!(d.transmits.is_empty());
}

/// CANCEL matches the INVITE server transaction: 200 to the CANCEL, a
/// Cancelled event, and the TU's 487 ends the INVITE.
#[test]
fn cancel_matches_its_invite() {
    let mut p = Pair::new(Transport::Udp);
    let cid = p.send(request(Method::Invite, 1));
    p.run_for(Duration::from_millis(50));
    let (sid, req) = p.last_uas_request();
    p.respond(sid, &req, 180);
    p.run_for(Duration::from_millis(50));
    let cancel_id = p.uac.layer.cancel(p.now, cid).expect("cancel");
    p.run_for(Duration::from_millis(50));
    let cancelled = p.uas.events.iter().find_map(|(_, e)| match e {
        TxEvent::Cancelled { id, cancel } => Some((*id, cancel.clone())),
        _ => None,
    });
    let (inv_id, cancel) = cancelled.expect("Cancelled event");
    assert_eq!(inv_id, sid);
    assert_eq!(cancel.method, Method::Cancel);
    let cancel_resp = p.uac.events.iter().find_map(|(_, e)| match e {
        TxEvent::Response { id, response } if *id == cancel_id => Some(response.status.0),
        _ => None,
    });
    assert_eq!(cancel_resp, Some(200));
    p.respond(sid, &req, 487);
    p.run_for(Duration::from_millis(50));
    assert_eq!(p.uac_responses(), vec![100, 180, 200, 487]);
    // A CANCEL for nothing gets 481.
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(config(UAS, 1), t0);
    let d = receive(
        &mut l,
        t0,
        UAC,
        Transport::Udp,
        &incoming(Method::Cancel, "z9hG4bKnone", "UDP"),
    );
    assert!(d.events.is_empty());
    assert_eq!(parse_response(&d.transmits[0].data).status.0, 481);
}

/// RFC 3581: the server fills rport and received and answers to the source
/// address, even when Via names another host and port.
#[test]
fn rport_and_received_route_the_response() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(config(UAS, 1), t0);
    let nat = "198.51.100.7:40000";
    let d = receive(
        &mut l,
        t0,
        nat,
        Transport::Udp,
        &incoming(Method::Options, "z9hG4bKnat", "UDP"),
    );
    let TxEvent::Request { id, request, .. } = &d.events[0] else {
        panic!("request expected");
    };
    let via = request.headers.via().unwrap();
    assert_eq!(via.received.as_deref(), Some("198.51.100.7"));
    assert_eq!(via.rport, Some(Some(40000)));
    let ok = sip_trunk::message::Response::from_request(request, 200, "OK");
    l.send_response(t0, *id, ok).unwrap();
    let d = drain(&mut l);
    assert_eq!(d.transmits[0].dest, addr(nat));
    let resp = parse_response(&d.transmits[0].data);
    assert_eq!(resp.headers.via().unwrap().rport, Some(Some(40000)));

    // Without rport: received is added (IP differs) and the Via port is used.
    let raw = String::from_utf8(incoming(Method::Options, "z9hG4bKnorport", "UDP"))
        .unwrap()
        .replace(";rport", "");
    let d = receive(&mut l, t0, nat, Transport::Udp, raw.as_bytes());
    let TxEvent::Request { id, request, .. } = &d.events[0] else {
        panic!("request expected");
    };
    assert_eq!(request.headers.via().unwrap().rport, None);
    l.send_response(
        t0,
        *id,
        sip_trunk::message::Response::from_request(request, 200, "OK"),
    )
    .unwrap();
    assert_eq!(drain(&mut l).transmits[0].dest, addr("198.51.100.7:5060"));
}

/// Malformed requests get a stateless 400 naming the problem; malformed
/// responses and garbage are dropped and counted; nothing reaches the TU.
#[test]
fn malformed_requests_get_400_and_garbage_is_counted() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(config(UAS, 1), t0);
    let bad = String::from_utf8(incoming(Method::Invite, "z9hG4bKbad", "UDP"))
        .unwrap()
        .replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    let d = receive(&mut l, t0, UAC, Transport::Udp, bad.as_bytes());
    assert!(d.events.is_empty());
    let reply = parse_response(&d.transmits[0].data);
    assert_eq!(reply.status.0, 400);
    assert!(reply.reason.contains("cseq method"), "{}", reply.reason);
    assert_eq!(d.transmits[0].dest, addr(UAC));
    let d = receive(&mut l, t0, UAC, Transport::Udp, b"\x16\x03\x01garbage");
    assert!(d.transmits.is_empty() && d.events.is_empty());
    // A response to nothing is a stray.
    let stray = answer(&incoming(Method::Options, "z9hG4bKstray", "UDP"), 200);
    let d = receive(&mut l, t0, UAC, Transport::Udp, &stray);
    assert!(d.transmits.is_empty() && d.events.is_empty());
    let s = l.stats();
    assert_eq!(
        (s.malformed, s.bad_request_replies, s.stray_responses),
        (2, 1, 1)
    );
    // RFC 4475 badbranch: a bare magic cookie gets a stateless 400.
    let d = receive(
        &mut l,
        t0,
        UAC,
        Transport::Udp,
        &incoming(Method::Options, "z9hG4bK", "UDP"),
    );
    assert_eq!(parse_response(&d.transmits[0].data).status.0, 400);
    assert!(d.events.is_empty());
}

/// Requests over 64 KiB are refused with 513 when the Via is readable.
#[test]
fn oversized_messages_are_refused() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(config(UAS, 1), t0);
    let mut big = String::from_utf8(incoming(Method::Message, "z9hG4bKbig", "UDP")).unwrap();
    big = big.replace("Content-Length: 0\r\n\r\n", "");
    big.push_str(&format!("Content-Length: {}\r\n\r\n", MAX_MESSAGE_SIZE));
    big.push_str(&"x".repeat(MAX_MESSAGE_SIZE));
    let d = receive(&mut l, t0, UAC, Transport::Udp, big.as_bytes());
    assert!(d.events.is_empty());
    assert_eq!(parse_response(&d.transmits[0].data).status.0, 513);
    assert_eq!(l.stats().malformed, 1);
}

/// A clock that goes backwards is clamped: timers never fire early or twice.
#[test]
fn clock_going_backwards_is_clamped() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(config(UAC, 1), t0);
    let ten = t0 + Duration::from_secs(10);
    let first = l
        .send_request(ten, request(Method::Options, 1), addr(UAS), Transport::Udp)
        .unwrap();
    assert_eq!(
        l.timer(first, Timer::E),
        Some(ten + Duration::from_millis(500))
    );
    drain(&mut l);
    // The clock jumps back 5 s: nothing is due, nothing is re-armed early.
    l.handle_timeout(t0 + Duration::from_secs(5));
    let d = drain(&mut l);
    assert!(d.transmits.is_empty());
    assert_eq!(d.timeout, Some(ten + Duration::from_millis(500)));
    // A command stamped in the past is treated as happening now.
    let mut req = request(Method::Options, 2);
    req.headers.set("Call-ID", "call-2@example.com");
    let second = l.send_request(t0, req, addr(UAS), Transport::Udp).unwrap();
    assert_eq!(
        l.timer(second, Timer::F),
        Some(ten + Duration::from_secs(32))
    );
}

/// The shell reports a failed send: the transaction ends with an event.
#[test]
fn transport_error_terminates_the_transaction() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(config(UAC, 1), t0);
    let id = l
        .send_request(t0, request(Method::Invite, 1), addr(UAS), Transport::Tcp)
        .unwrap();
    let Output::Transmit(t) = l.poll_output() else {
        panic!("transmit expected");
    };
    assert_eq!(t.transaction, Some(id));
    l.handle_input(t0, Input::TransportError { id });
    assert_eq!(
        l.poll_output(),
        Output::Event(TxEvent::TransportError { id })
    );
    assert!(!l.contains(id));
}

/// Branches, tags and Call-IDs come from the seeded RNG: same seed, same values.
#[test]
fn rng_is_seedable() {
    let t0 = Instant::now();
    let mut a = TransactionLayer::new(config(UAC, 42), t0);
    let mut b = TransactionLayer::new(config(UAC, 42), t0);
    let (ba, bb) = (a.new_branch(), b.new_branch());
    assert_eq!(ba, bb);
    assert!(ba.starts_with("z9hG4bK"));
    assert_eq!(a.new_tag(), b.new_tag());
    assert_eq!(a.new_call_id("example.com"), b.new_call_id("example.com"));
    let mut c = TransactionLayer::new(config(UAC, 43), t0);
    assert_ne!(a.new_tag(), c.new_tag());
}

/// A 2xx retransmission after the client INVITE transaction ended is passed
/// up for the dialog layer to ACK again.
#[test]
fn late_2xx_goes_to_the_dialog_layer() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(config(UAC, 1), t0);
    l.send_request(t0, request(Method::Invite, 1), addr(UAS), Transport::Udp)
        .unwrap();
    let inv = drain(&mut l).transmits[0].data.clone();
    let ok = answer(&inv, 200);
    let d = receive(&mut l, t0, UAS, Transport::Udp, &ok);
    assert!(matches!(&d.events[..], [TxEvent::Response { .. }]));
    let d = receive(&mut l, t0, UAS, Transport::Udp, &ok);
    assert!(matches!(
        &d.events[..],
        [TxEvent::Invite2xxRetransmission { .. }]
    ));
}

/// 100 Trying can be left to the TU; then nothing is sent until it answers.
#[test]
fn automatic_100_trying_is_configurable() {
    let t0 = Instant::now();
    let mut cfg = config(UAS, 1);
    cfg.send_100_trying = false;
    let mut l = TransactionLayer::new(cfg, t0);
    let d = receive(
        &mut l,
        t0,
        UAC,
        Transport::Udp,
        &incoming(Method::Invite, "z9hG4bKq", "UDP"),
    );
    assert!(d.transmits.is_empty());
    assert!(matches!(&d.events[..], [TxEvent::Request { .. }]));
    let mut l = TransactionLayer::new(config(UAS, 1), t0);
    let d = receive(
        &mut l,
        t0,
        UAC,
        Transport::Udp,
        &incoming(Method::Invite, "z9hG4bKq", "UDP"),
    );
    assert_eq!(parse_response(&d.transmits[0].data).status.0, 100);
}

/// RFC 2543 peers (no magic cookie, RFC 4475 inv2543) still get
/// retransmission absorption through the fallback key.
#[test]
fn rfc_2543_requests_match_by_the_fallback_key() {
    let t0 = Instant::now();
    let mut l = TransactionLayer::new(config(UAS, 1), t0);
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/rfc4475/inv2543.sip"
    ))
    .unwrap();
    let d = receive(&mut l, t0, "192.0.2.77:5060", Transport::Udp, &raw);
    assert!(matches!(&d.events[..], [TxEvent::Request { .. }]));
    assert_eq!(d.transmits.len(), 1, "100 Trying");
    let d = receive(
        &mut l,
        t0 + Duration::from_millis(500),
        "192.0.2.77:5060",
        Transport::Udp,
        &raw,
    );
    assert!(d.events.is_empty(), "retransmission absorbed");
    assert_eq!(
        parse_response(&d.transmits[0].data).status.0,
        100,
        "last response resent"
    );
}
