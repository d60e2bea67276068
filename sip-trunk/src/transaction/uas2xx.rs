//! Retransmission of a 2xx to INVITE until the ACK arrives (RFC 3261
//! 13.3.1.4). The INVITE server transaction ends when it sends a 2xx, so the
//! dialog layer owns this; it is a separate sans-IO machine with the same
//! verbs as the layer so a dialog can embed one per pending 2xx.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Timings, Transmit, Transport};
use crate::message::Response;

/// What happened to a pending 2xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uas2xxEvent {
    /// 64*T1 passed without an ACK: confirm the dialog, then end the session
    /// with BYE (RFC 3261 13.3.1.4).
    AckTimeout,
}

/// Resends one 2xx at T1, 2*T1, ... capped at T2, and gives up at 64*T1.
/// On reliable transports it only runs the 64*T1 timeout.
#[derive(Debug, Clone)]
pub struct Uas2xxRetransmitter {
    data: Vec<u8>,
    dest: SocketAddr,
    transport: Transport,
    t2: Duration,
    interval: Duration,
    next_send: Option<Instant>,
    give_up_at: Instant,
    pending: Option<Transmit>,
    event: Option<Uas2xxEvent>,
    done: bool,
}

impl Uas2xxRetransmitter {
    /// Starts after the first send of `response` (already done by the layer) at `now`.
    pub fn new(
        now: Instant,
        response: &Response,
        dest: SocketAddr,
        transport: Transport,
        timings: Timings,
    ) -> Uas2xxRetransmitter {
        Uas2xxRetransmitter {
            data: response.to_bytes(),
            dest,
            transport,
            t2: timings.t2,
            interval: timings.t1,
            next_send: (!transport.is_reliable()).then(|| now + timings.t1),
            give_up_at: now + timings.t1_x64(),
            pending: None,
            event: None,
            done: false,
        }
    }

    /// The ACK for this 2xx arrived: stop.
    pub fn handle_ack(&mut self) {
        self.done = true;
        self.pending = None;
    }

    /// Resends or gives up when due; spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.done {
            return;
        }
        if now >= self.give_up_at {
            self.done = true;
            self.event = Some(Uas2xxEvent::AckTimeout);
            return;
        }
        if let Some(at) = self.next_send
            && now >= at
        {
            self.pending = Some(Transmit {
                dest: self.dest,
                transport: self.transport,
                data: self.data.clone(),
                transaction: None,
            });
            self.interval = (self.interval * 2).min(self.t2);
            self.next_send = Some(now + self.interval);
        }
    }

    /// A retransmission to send, if one is due.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.pending.take()
    }

    /// The give-up event, once.
    pub fn poll_event(&mut self) -> Option<Uas2xxEvent> {
        self.event.take()
    }

    /// When `handle_timeout` should run next; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        Some(match self.next_send {
            Some(t) => t.min(self.give_up_at),
            None => self.give_up_at,
        })
    }

    /// True after the ACK or the give-up.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Response {
        Response::new(200, "OK")
    }

    /// Resends at 0.5, 1.5, 3.5, 7.5, 11.5 ... s and gives up at 32 s.
    #[test]
    fn doubles_to_t2_and_gives_up_at_64_t1() {
        let t0 = Instant::now();
        let addr: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let mut r = Uas2xxRetransmitter::new(t0, &ok(), addr, Transport::Udp, Timings::default());
        let mut sends = Vec::new();
        while let Some(t) = r.poll_timeout() {
            r.handle_timeout(t);
            if r.poll_transmit().is_some() {
                sends.push((t - t0).as_millis());
            }
        }
        assert_eq!(&sends[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
        assert!(sends.iter().all(|&ms| ms < 32_000));
        assert_eq!(r.poll_event(), Some(Uas2xxEvent::AckTimeout));
    }

    #[test]
    fn ack_stops_it_and_reliable_only_waits() {
        let t0 = Instant::now();
        let addr: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let mut r = Uas2xxRetransmitter::new(t0, &ok(), addr, Transport::Udp, Timings::default());
        r.handle_ack();
        assert_eq!(r.poll_timeout(), None);
        let mut tcp = Uas2xxRetransmitter::new(t0, &ok(), addr, Transport::Tcp, Timings::default());
        assert_eq!(tcp.poll_timeout(), Some(t0 + Duration::from_secs(32)));
        tcp.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tcp.poll_transmit().is_none());
        assert_eq!(tcp.poll_event(), Some(Uas2xxEvent::AckTimeout));
    }
}
