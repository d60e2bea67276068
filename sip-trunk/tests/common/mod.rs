//! Test harness for the transaction layer: message builders, a drain helper
//! for one layer, and `Pair`, a UAC and a UAS layer joined by a simulated
//! network with latency and optional loss (in the spirit of quinn's `Pair`
//! and str0m's `progress`). Time only moves when the harness moves it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sip_trunk::message::{Method, Request, Response, SipMessage, Uri, parse_message};
use sip_trunk::transaction::{
    Config, Input, Output, TransactionId, TransactionLayer, Transmit, Transport, TxEvent,
};

pub const UAC: &str = "192.0.2.1:5060";
pub const UAS: &str = "192.0.2.2:5060";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

pub fn config(sent_by: &str, seed: u64) -> Config {
    Config {
        rng_seed: Some(seed),
        sent_by: Some(sent_by.to_string()),
        ..Config::default()
    }
}

/// A request without Via (the layer adds it), ready for `send_request`.
pub fn request(method: Method, cseq: u32) -> Request {
    Request::new(
        method.clone(),
        Uri::parse("sip:bob@192.0.2.2").expect("uri"),
    )
    .with_header("From", "<sip:alice@example.com>;tag=a1")
    .with_header("To", "<sip:bob@example.com>")
    .with_header("Call-ID", "call-1@example.com")
    .with_header("CSeq", format!("{cseq} {method}"))
}

/// A request as a remote UAC would send it, with its own Via.
pub fn incoming(method: Method, branch: &str, transport: &str) -> Vec<u8> {
    request(method, 1)
        .with_header(
            "Via",
            format!("SIP/2.0/{transport} 192.0.2.1:5060;branch={branch};rport"),
        )
        .with_header("Max-Forwards", "70")
        .to_bytes()
}

pub fn parse_request(data: &[u8]) -> Request {
    match parse_message(data) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

pub fn parse_response(data: &[u8]) -> Response {
    match parse_message(data) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// The response a UAS would send to the bytes of a request.
pub fn answer(request_bytes: &[u8], code: u16) -> Vec<u8> {
    let req = parse_request(request_bytes);
    let mut r = Response::from_request(&req, code, "Test");
    if code > 100 {
        r = r.with_to_tag("uas-tag");
    }
    r.to_bytes()
}

/// Everything one drain of `poll_output` produced.
#[derive(Debug, Default)]
pub struct Drained {
    pub transmits: Vec<Transmit>,
    pub events: Vec<TxEvent>,
    pub timeout: Option<Instant>,
}

pub fn drain(layer: &mut TransactionLayer) -> Drained {
    let mut d = Drained::default();
    loop {
        match layer.poll_output() {
            Output::Transmit(t) => d.transmits.push(t),
            Output::Event(e) => d.events.push(e),
            Output::Timeout(t) => {
                d.timeout = Some(t);
                return d;
            }
        }
    }
}

pub fn receive(
    layer: &mut TransactionLayer,
    now: Instant,
    from: &str,
    transport: Transport,
    data: &[u8],
) -> Drained {
    layer.handle_input(
        now,
        Input::Receive {
            from: addr(from),
            transport,
            data,
        },
    );
    drain(layer)
}

/// Runs one layer alone until `until`, firing timers; returns every transmit
/// with its time and every event with its time.
pub type Timed<T> = Vec<(Instant, T)>;

pub fn run_alone(
    layer: &mut TransactionLayer,
    mut now: Instant,
    until: Instant,
) -> (Timed<Transmit>, Timed<TxEvent>) {
    let mut tx = Vec::new();
    let mut ev = Vec::new();
    loop {
        let d = drain(layer);
        tx.extend(d.transmits.into_iter().map(|t| (now, t)));
        ev.extend(d.events.into_iter().map(|e| (now, e)));
        let next = d.timeout.expect("drain always ends in a timeout");
        if next > until {
            return (tx, ev);
        }
        now = next;
        layer.handle_timeout(now);
    }
}

/// Decides whether a packet is lost.
pub type DropFn = Box<dyn FnMut(Dir, &[u8]) -> bool>;

/// A packet on the simulated link: delivery time, direction, bytes.
type InFlight = (Instant, Dir, Vec<u8>);

/// Which way a packet travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToUas,
    ToUac,
}

pub struct Side {
    pub layer: TransactionLayer,
    pub addr: SocketAddr,
    pub events: Vec<(Instant, TxEvent)>,
    pub sent: Vec<(Instant, Vec<u8>)>,
    timeout: Instant,
}

/// A UAC and a UAS layer on one simulated link.
pub struct Pair {
    pub start: Instant,
    pub now: Instant,
    pub uac: Side,
    pub uas: Side,
    pub transport: Transport,
    pub latency: Duration,
    /// Return true to drop a packet.
    pub drop: DropFn,
    pub dropped: usize,
    queue: Vec<InFlight>,
}

impl Pair {
    pub fn new(transport: Transport) -> Pair {
        let start = Instant::now();
        let side = |a: &str, seed| Side {
            layer: TransactionLayer::new(config(a, seed), start),
            addr: addr(a),
            events: Vec::new(),
            sent: Vec::new(),
            timeout: start,
        };
        Pair {
            start,
            now: start,
            uac: side(UAC, 1),
            uas: side(UAS, 2),
            transport,
            latency: Duration::from_millis(10),
            drop: Box::new(|_, _| false),
            dropped: 0,
            queue: Vec::new(),
        }
    }

    fn drain_side(&mut self, dir: Dir) {
        let now = self.now;
        let (side, peer) = match dir {
            Dir::ToUas => (&mut self.uac, self.uas.addr),
            Dir::ToUac => (&mut self.uas, self.uac.addr),
        };
        let d = drain(&mut side.layer);
        side.timeout = d.timeout.expect("timeout");
        side.events.extend(d.events.into_iter().map(|e| (now, e)));
        for t in d.transmits {
            side.sent.push((now, t.data.clone()));
            if t.dest != peer {
                panic!("{dir:?}: transmit to unexpected {}", t.dest);
            }
            if (self.drop)(dir, &t.data) {
                self.dropped += 1;
                continue;
            }
            self.queue.push((now + self.latency, dir, t.data));
        }
    }

    /// Drains both sides and moves time to the next event; false past `until`.
    pub fn step(&mut self, until: Instant) -> bool {
        self.drain_side(Dir::ToUas);
        self.drain_side(Dir::ToUac);
        let next_packet = self.queue.iter().map(|(t, _, _)| *t).min();
        let next = [Some(self.uac.timeout), Some(self.uas.timeout), next_packet]
            .into_iter()
            .flatten()
            .min()
            .expect("always a timeout");
        if next > until {
            return false;
        }
        self.now = next.max(self.now);
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|(t, _, _)| *t <= now);
        self.queue = later;
        for (_, dir, data) in due {
            let (to, from) = match dir {
                Dir::ToUas => (&mut self.uas.layer, self.uac.addr),
                Dir::ToUac => (&mut self.uac.layer, self.uas.addr),
            };
            to.handle_input(
                now,
                Input::Receive {
                    from,
                    transport: self.transport,
                    data: &data,
                },
            );
        }
        self.uac.layer.handle_timeout(now);
        self.uas.layer.handle_timeout(now);
        true
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
        self.now = until;
        self.drain_side(Dir::ToUas);
        self.drain_side(Dir::ToUac);
    }

    pub fn send(&mut self, req: Request) -> TransactionId {
        let dest = self.uas.addr;
        let t = self.transport;
        let id = self
            .uac
            .layer
            .send_request(self.now, req, dest, t)
            .expect("send_request");
        self.drain_side(Dir::ToUas);
        id
    }

    /// The server transaction id and request of the last `Request` event at the UAS.
    pub fn last_uas_request(&self) -> (TransactionId, Request) {
        self.uas
            .events
            .iter()
            .rev()
            .find_map(|(_, e)| match e {
                TxEvent::Request { id, request, .. } => Some((*id, request.clone())),
                _ => None,
            })
            .expect("the UAS saw a request")
    }

    pub fn respond(&mut self, id: TransactionId, req: &Request, code: u16) {
        let mut r = Response::from_request(req, code, "Test");
        if code > 100 {
            r = r.with_to_tag("uas-tag");
        }
        let now = self.now;
        self.uas
            .layer
            .send_response(now, id, r)
            .expect("send_response");
        self.drain_side(Dir::ToUac);
    }

    pub fn uac_responses(&self) -> Vec<u16> {
        self.uac
            .events
            .iter()
            .filter_map(|(_, e)| match e {
                TxEvent::Response { response, .. } => Some(response.status.0),
                _ => None,
            })
            .collect()
    }
}
