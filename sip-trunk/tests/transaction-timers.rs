//! One test per RFC 3261 timer letter: its value (Table 4) and its effect.
//! Time is driven by hand, so 32 s of SIP time take microseconds.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sip_trunk::message::Method;
use sip_trunk::transaction::{Timer, TransactionId, TransactionLayer, Transport, TxEvent};

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn uac(t0: Instant) -> TransactionLayer {
    TransactionLayer::new(config(UAC, 7), t0)
}

fn uas(t0: Instant) -> TransactionLayer {
    TransactionLayer::new(config(UAS, 8), t0)
}

fn start_client(
    layer: &mut TransactionLayer,
    t0: Instant,
    method: Method,
    transport: Transport,
) -> (TransactionId, Vec<u8>) {
    let id = layer
        .send_request(t0, request(method, 1), addr(UAS), transport)
        .expect("send");
    let d = drain(layer);
    assert_eq!(d.transmits.len(), 1);
    (id, d.transmits[0].data.clone())
}

fn send_times(tx: &[(Instant, sip_trunk::transaction::Transmit)], t0: Instant) -> Vec<u128> {
    tx.iter().map(|(t, _)| ms(*t - t0)).collect()
}

/// Timer A: INVITE retransmits at T1 and doubles with no cap (past T2).
#[test]
fn timer_a_doubles_without_cap() {
    let t0 = Instant::now();
    let mut l = uac(t0);
    let (id, first) = start_client(&mut l, t0, Method::Invite, Transport::Udp);
    assert_eq!(l.timer(id, Timer::A), Some(t0 + Duration::from_millis(500)));
    let (tx, _) = run_alone(&mut l, t0, t0 + Duration::from_secs(31));
    assert_eq!(
        send_times(&tx, t0),
        vec![500, 1500, 3500, 7500, 15500, 31500]
            .into_iter()
            .filter(|&t| t <= 31000)
            .collect::<Vec<_>>()
    );
    // 8 s and 16 s gaps prove there is no T2 cap.
    assert!(tx.iter().all(|(_, t)| t.data == first));
}

/// Timer B: the INVITE transaction times out at 64*T1 = 32 s.
#[test]
fn timer_b_is_64_t1() {
    let t0 = Instant::now();
    let mut l = uac(t0);
    let (id, _) = start_client(&mut l, t0, Method::Invite, Transport::Udp);
    assert_eq!(l.timer(id, Timer::B), Some(t0 + Duration::from_secs(32)));
    let (_, ev) = run_alone(&mut l, t0, t0 + Duration::from_secs(40));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].0, t0 + Duration::from_secs(32));
    assert_eq!(
        ev[0].1,
        TxEvent::Timeout {
            id,
            timer: Timer::B
        }
    );
    assert!(!l.contains(id));
}

/// Timer D: after a non-2xx final, absorb retransmissions for 32 s on UDP, 0 on TCP.
#[test]
fn timer_d_is_32s_on_udp_and_zero_on_tcp() {
    let t0 = Instant::now();
    let mut l = uac(t0);
    let (id, inv) = start_client(&mut l, t0, Method::Invite, Transport::Udp);
    let busy = answer(&inv, 486);
    let d = receive(&mut l, t0, UAS, Transport::Udp, &busy);
    let ack = parse_request(&d.transmits[0].data);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(l.timer(id, Timer::D), Some(t0 + Duration::from_secs(32)));
    // A retransmitted 486 just before D fires: ACK again, not passed up.
    let d = receive(
        &mut l,
        t0 + Duration::from_millis(31_900),
        UAS,
        Transport::Udp,
        &busy,
    );
    assert_eq!(d.transmits.len(), 1);
    assert!(d.events.is_empty());
    l.handle_timeout(t0 + Duration::from_secs(32));
    assert!(!l.contains(id));

    let mut l = uac(t0);
    let (id, inv) = start_client(&mut l, t0, Method::Invite, Transport::Tcp);
    receive(&mut l, t0, UAS, Transport::Tcp, &answer(&inv, 486));
    assert_eq!(l.timer(id, Timer::D), Some(t0));
    l.handle_timeout(t0);
    assert!(!l.contains(id));
}

/// Timer E: non-INVITE retransmits at T1, doubling up to T2 = 4 s.
#[test]
fn timer_e_doubles_capped_at_t2() {
    let t0 = Instant::now();
    let mut l = uac(t0);
    let (id, _) = start_client(&mut l, t0, Method::Options, Transport::Udp);
    assert_eq!(l.timer(id, Timer::E), Some(t0 + Duration::from_millis(500)));
    let (tx, _) = run_alone(&mut l, t0, t0 + Duration::from_millis(20_000));
    assert_eq!(
        send_times(&tx, t0),
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500]
    );
    // Once a provisional arrives, E fires every T2.
    let t0 = Instant::now();
    let mut l = uac(t0);
    let (_, req) = start_client(&mut l, t0, Method::Options, Transport::Udp);
    receive(&mut l, t0, UAS, Transport::Udp, &answer(&req, 100));
    let (tx, _) = run_alone(&mut l, t0, t0 + Duration::from_millis(9_000));
    assert_eq!(send_times(&tx, t0), vec![500, 4500, 8500]);
}

/// Timer F: the non-INVITE transaction times out at 64*T1 = 32 s.
#[test]
fn timer_f_is_64_t1() {
    let t0 = Instant::now();
    let mut l = uac(t0);
    let (id, _) = start_client(&mut l, t0, Method::Options, Transport::Udp);
    assert_eq!(l.timer(id, Timer::F), Some(t0 + Duration::from_secs(32)));
    let (_, ev) = run_alone(&mut l, t0, t0 + Duration::from_secs(40));
    assert_eq!(
        ev,
        vec![(
            t0 + Duration::from_secs(32),
            TxEvent::Timeout {
                id,
                timer: Timer::F
            }
        )]
    );
    // No retransmissions on TCP, only F.
    let mut l = uac(t0);
    let (id, _) = start_client(&mut l, t0, Method::Options, Transport::Tcp);
    assert_eq!(l.timer(id, Timer::E), None);
    let (tx, ev) = run_alone(&mut l, t0, t0 + Duration::from_secs(40));
    assert!(tx.is_empty());
    assert_eq!(ev.len(), 1);
}

fn server_invite(
    l: &mut TransactionLayer,
    t0: Instant,
    transport: &str,
    tp: Transport,
) -> (TransactionId, sip_trunk::message::Request) {
    let d = receive(
        l,
        t0,
        UAC,
        tp,
        &incoming(Method::Invite, "z9hG4bKsrv1", transport),
    );
    match &d.events[0] {
        TxEvent::Request { id, request, .. } => (*id, request.clone()),
        other => panic!("expected request, got {other:?}"),
    }
}

fn reject(
    l: &mut TransactionLayer,
    t0: Instant,
    id: TransactionId,
    req: &sip_trunk::message::Request,
) {
    let r = sip_trunk::message::Response::from_request(req, 486, "Busy Here").with_to_tag("x");
    l.send_response(t0, id, r).expect("respond");
    drain(l);
}

/// Timer G: the final response is resent at T1, doubling up to T2.
#[test]
fn timer_g_doubles_capped_at_t2() {
    let t0 = Instant::now();
    let mut l = uas(t0);
    let (id, req) = server_invite(&mut l, t0, "UDP", Transport::Udp);
    reject(&mut l, t0, id, &req);
    assert_eq!(l.timer(id, Timer::G), Some(t0 + Duration::from_millis(500)));
    let (tx, _) = run_alone(&mut l, t0, t0 + Duration::from_millis(16_000));
    assert_eq!(
        send_times(&tx, t0),
        vec![500, 1500, 3500, 7500, 11500, 15500]
    );
    assert!(
        tx.iter()
            .all(|(_, t)| parse_response(&t.data).status.0 == 486)
    );
}

/// Timer H: without an ACK the server INVITE transaction gives up at 64*T1.
#[test]
fn timer_h_is_64_t1() {
    let t0 = Instant::now();
    let mut l = uas(t0);
    let (id, req) = server_invite(&mut l, t0, "UDP", Transport::Udp);
    reject(&mut l, t0, id, &req);
    assert_eq!(l.timer(id, Timer::H), Some(t0 + Duration::from_secs(32)));
    let (_, ev) = run_alone(&mut l, t0, t0 + Duration::from_secs(40));
    assert_eq!(
        ev,
        vec![(
            t0 + Duration::from_secs(32),
            TxEvent::Timeout {
                id,
                timer: Timer::H
            }
        )]
    );
    assert!(!l.contains(id));
}

/// Timer I: after the ACK, absorb ACK retransmissions for T4 on UDP, 0 on TCP.
#[test]
fn timer_i_is_t4_on_udp() {
    let t0 = Instant::now();
    let mut l = uas(t0);
    let (id, req) = server_invite(&mut l, t0, "UDP", Transport::Udp);
    reject(&mut l, t0, id, &req);
    let ack = incoming(Method::Ack, "z9hG4bKsrv1", "UDP");
    let d = receive(
        &mut l,
        t0 + Duration::from_secs(1),
        UAC,
        Transport::Udp,
        &ack,
    );
    assert!(
        d.events.is_empty(),
        "the ACK for a non-2xx stays in the transaction"
    );
    assert_eq!(l.timer(id, Timer::I), Some(t0 + Duration::from_secs(6)));
    assert_eq!(l.timer(id, Timer::G), None);
    let d = receive(
        &mut l,
        t0 + Duration::from_secs(5),
        UAC,
        Transport::Udp,
        &ack,
    );
    assert!(d.events.is_empty() && d.transmits.is_empty());
    l.handle_timeout(t0 + Duration::from_secs(6));
    assert!(!l.contains(id));

    let mut l = uas(t0);
    let (id, req) = server_invite(&mut l, t0, "TCP", Transport::Tcp);
    reject(&mut l, t0, id, &req);
    assert_eq!(l.timer(id, Timer::G), None, "no G on reliable transports");
    receive(
        &mut l,
        t0,
        UAC,
        Transport::Tcp,
        &incoming(Method::Ack, "z9hG4bKsrv1", "TCP"),
    );
    assert_eq!(l.timer(id, Timer::I), Some(t0));
}

/// Timer J: a completed non-INVITE server transaction lingers 64*T1 on UDP.
#[test]
fn timer_j_is_64_t1_on_udp() {
    let t0 = Instant::now();
    let mut l = uas(t0);
    let d = receive(
        &mut l,
        t0,
        UAC,
        Transport::Udp,
        &incoming(Method::Options, "z9hG4bKj1", "UDP"),
    );
    let TxEvent::Request { id, request, .. } = &d.events[0] else {
        panic!("request expected");
    };
    let id = *id;
    let ok = sip_trunk::message::Response::from_request(request, 200, "OK").with_to_tag("j");
    l.send_response(t0, id, ok).expect("respond");
    drain(&mut l);
    assert_eq!(l.timer(id, Timer::J), Some(t0 + Duration::from_secs(32)));
    // A retransmitted request gets the 200 again.
    let d = receive(
        &mut l,
        t0 + Duration::from_secs(31),
        UAC,
        Transport::Udp,
        &incoming(Method::Options, "z9hG4bKj1", "UDP"),
    );
    assert_eq!(d.transmits.len(), 1);
    assert_eq!(parse_response(&d.transmits[0].data).status.0, 200);
    assert!(d.events.is_empty());
    l.handle_timeout(t0 + Duration::from_secs(32));
    assert!(!l.contains(id));
}

/// Timer K: a completed non-INVITE client transaction lingers T4 on UDP, 0 on TCP.
#[test]
fn timer_k_is_t4_on_udp() {
    let t0 = Instant::now();
    let mut l = uac(t0);
    let (id, req) = start_client(&mut l, t0, Method::Options, Transport::Udp);
    let d = receive(&mut l, t0, UAS, Transport::Udp, &answer(&req, 200));
    assert_eq!(d.events.len(), 1);
    assert_eq!(l.timer(id, Timer::K), Some(t0 + Duration::from_secs(5)));
    assert_eq!(l.timer(id, Timer::E), None);
    let d = receive(
        &mut l,
        t0 + Duration::from_secs(4),
        UAS,
        Transport::Udp,
        &answer(&req, 200),
    );
    assert!(d.events.is_empty(), "retransmitted 200 absorbed");
    l.handle_timeout(t0 + Duration::from_secs(5));
    assert!(!l.contains(id));

    let mut l = uac(t0);
    let (id, req) = start_client(&mut l, t0, Method::Options, Transport::Tcp);
    receive(&mut l, t0, UAS, Transport::Tcp, &answer(&req, 200));
    assert_eq!(l.timer(id, Timer::K), Some(t0));
}

/// T1, T2, T4 are adjustable and every timer follows them.
#[test]
fn timings_are_configurable() {
    let t0 = Instant::now();
    let mut cfg = config(UAC, 3);
    cfg.timings.t1 = Duration::from_millis(100);
    cfg.timings.t2 = Duration::from_millis(300);
    let mut l = TransactionLayer::new(cfg, t0);
    let (id, _) = start_client(&mut l, t0, Method::Options, Transport::Udp);
    assert_eq!(
        l.timer(id, Timer::F),
        Some(t0 + Duration::from_millis(6400))
    );
    let (tx, _) = run_alone(&mut l, t0, t0 + Duration::from_millis(1000));
    assert_eq!(send_times(&tx, t0), vec![100, 300, 600, 900]);
}

fn accept(
    l: &mut TransactionLayer,
    t0: Instant,
    id: TransactionId,
    req: &sip_trunk::message::Request,
) -> sip_trunk::message::Response {
    let r = sip_trunk::message::Response::from_request(req, 200, "OK").with_to_tag("x");
    l.send_response(t0, id, r.clone()).expect("respond");
    let d = drain(l);
    assert_eq!(d.transmits.len(), 1, "the 2xx goes out once");
    r
}

/// Timer L (RFC 6026): after a 2xx the server INVITE transaction is
/// Accepted for 64*T1: INVITE retransmissions are absorbed (no event, no
/// resend), 2xx retransmissions from the TU are sent, the ACK goes to the TU.
#[test]
fn timer_l_absorbs_invite_retransmissions_for_64_t1() {
    let t0 = Instant::now();
    let mut l = uas(t0);
    let (id, req) = server_invite(&mut l, t0, "UDP", Transport::Udp);
    let ok = accept(&mut l, t0, id, &req);
    assert_eq!(l.timer(id, Timer::L), Some(t0 + Duration::from_secs(32)));
    assert_eq!(
        l.timer(id, Timer::G),
        None,
        "the TU retransmits 2xx, not the transaction"
    );
    assert!(l.contains(id));

    let invite = incoming(Method::Invite, "z9hG4bKsrv1", "UDP");
    let t1 = t0 + Duration::from_secs(5);
    let d = receive(&mut l, t1, UAC, Transport::Udp, &invite);
    assert!(
        d.events.is_empty(),
        "retransmission is not a new call: {:?}",
        d.events
    );
    assert!(d.transmits.is_empty(), "absorbed without a resend");

    // The TU's 2xx retransmission passes through the Accepted transaction.
    l.send_response(t1, id, ok).expect("2xx in Accepted");
    assert_eq!(drain(&mut l).transmits.len(), 1);
    // A non-2xx after a 2xx is refused.
    let busy = sip_trunk::message::Response::from_request(&req, 486, "Busy Here").with_to_tag("x");
    assert!(l.send_response(t1, id, busy).is_err());

    // An ACK that matches the transaction (RFC 2543 style, reused branch) goes to the TU.
    let ack = sip_trunk::message::Request::new(
        Method::Ack,
        sip_trunk::message::Uri::parse("sip:bob@192.0.2.2").expect("uri"),
    )
    .with_header("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsrv1;rport")
    .with_header("From", "<sip:alice@example.com>;tag=a1")
    .with_header("To", "<sip:bob@example.com>;tag=x")
    .with_header("Call-ID", "call-1@example.com")
    .with_header("CSeq", "1 ACK")
    .with_header("Max-Forwards", "70");
    let d = receive(&mut l, t1, UAC, Transport::Udp, &ack.to_bytes());
    assert!(
        matches!(d.events.as_slice(), [TxEvent::Ack { .. }]),
        "{:?}",
        d.events
    );
    assert!(
        l.contains(id),
        "the ACK does not end Accepted; Timer L does"
    );

    let (tx, ev) = run_alone(&mut l, t1, t0 + Duration::from_secs(40));
    assert!(tx.is_empty() && ev.is_empty(), "Timer L ends it silently");
    assert!(!l.contains(id));
    // After Timer L the same INVITE would start a new transaction: the
    // dialog layer (ua.rs) recognises it there.
    let d = receive(
        &mut l,
        t0 + Duration::from_secs(41),
        UAC,
        Transport::Udp,
        &invite,
    );
    assert!(matches!(d.events.as_slice(), [TxEvent::Request { .. }]));
}

/// A CANCEL that arrives after the 2xx gets its 200 but does not reach the TU.
#[test]
fn cancel_after_2xx_has_no_effect() {
    let t0 = Instant::now();
    let mut l = uas(t0);
    let (id, req) = server_invite(&mut l, t0, "UDP", Transport::Udp);
    accept(&mut l, t0, id, &req);
    let cancel = incoming(Method::Cancel, "z9hG4bKsrv1", "UDP");
    let d = receive(
        &mut l,
        t0 + Duration::from_millis(10),
        UAC,
        Transport::Udp,
        &cancel,
    );
    assert!(d.events.is_empty(), "{:?}", d.events);
    assert_eq!(d.transmits.len(), 1);
    assert_eq!(parse_response(&d.transmits[0].data).status.0, 200);
}

/// Timer M (RFC 6026): after a 2xx the client INVITE transaction is
/// Accepted for 64*T1 and hands every further 2xx (retransmissions and
/// other forks) to the TU, which ACKs each; non-2xx are absorbed.
#[test]
fn timer_m_passes_further_2xx_to_the_tu_for_64_t1() {
    let t0 = Instant::now();
    let mut l = uac(t0);
    let (id, invite) = start_client(&mut l, t0, Method::Invite, Transport::Udp);
    let ok = answer(&invite, 200);
    let t1 = t0 + Duration::from_millis(100);
    let d = receive(&mut l, t1, UAS, Transport::Udp, &ok);
    assert!(matches!(d.events.as_slice(), [TxEvent::Response { .. }]));
    assert!(d.transmits.is_empty(), "the 2xx ACK is the TU's");
    assert_eq!(l.timer(id, Timer::M), Some(t1 + Duration::from_secs(32)));
    assert_eq!(l.timer(id, Timer::A), None);
    assert_eq!(l.timer(id, Timer::B), None);

    // A retransmission and a 2xx from another fork both reach the TU.
    let d = receive(
        &mut l,
        t1 + Duration::from_millis(500),
        UAS,
        Transport::Udp,
        &ok,
    );
    assert!(matches!(
        d.events.as_slice(),
        [TxEvent::Invite2xxRetransmission { .. }]
    ));
    let fork = String::from_utf8(ok.clone())
        .expect("utf8")
        .replace("uas-tag", "fork-2");
    let d = receive(
        &mut l,
        t1 + Duration::from_millis(600),
        UAS,
        Transport::Udp,
        fork.as_bytes(),
    );
    match d.events.as_slice() {
        [TxEvent::Invite2xxRetransmission { response }] => {
            assert_eq!(
                response.headers.to().expect("to").tag.as_deref(),
                Some("fork-2")
            );
        }
        other => panic!("expected the fork's 2xx, got {other:?}"),
    }
    // A late non-2xx final is absorbed.
    let busy = answer(&invite, 486);
    let d = receive(
        &mut l,
        t1 + Duration::from_millis(700),
        UAS,
        Transport::Udp,
        &busy,
    );
    assert!(d.events.is_empty() && d.transmits.is_empty());

    let (tx, ev) = run_alone(&mut l, t1, t1 + Duration::from_secs(31));
    assert!(tx.is_empty() && ev.is_empty());
    assert!(l.contains(id));
    let (tx, ev) = run_alone(&mut l, t1, t1 + Duration::from_secs(33));
    assert!(tx.is_empty() && ev.is_empty(), "Timer M ends it silently");
    assert!(!l.contains(id));
}
