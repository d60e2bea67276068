//! The RTP leg (sans-IO): one RTP/RTCP session towards the PBX.
//!
//! It owns symmetric RTP (latch to the address the PBX really sends from, count and drop
//! anything else), the send side (sequence numbers, timestamps that follow the wall clock
//! across silence, marker on talkspurt start), the receive side through the
//! [`JitterBuffer`], telephone-event reception, RTCP SR/RR on a timer, and statistics
//! including RTT from the peer's report blocks. Input is `(now, datagram)`, output is
//! polled: [`RtpLeg::poll_transmit`], [`RtpLeg::poll_event`], [`RtpLeg::poll_timeout`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::Codec;
use crate::dtmf::{DtmfEvent, DtmfPacket};
use crate::jitter::{JitterBuffer, JitterConfig, JitterOutput};
use crate::rtp::{
    self, Admit, ReceiveStats, ReceiverReport, ReportBlock, RtcpPacket, RtpHeader, RtpPacket,
    SenderReport, SymmetricPeer,
};

/// Static configuration of a leg, mostly from [`crate::sdp::NegotiatedAudio`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpLegConfig {
    /// Our SSRC (random per call; chosen by the caller so tests are deterministic).
    pub ssrc: u32,
    /// Negotiated audio codec.
    pub codec: Codec,
    /// Its payload type.
    pub pt: u8,
    /// telephone-event payload type, if negotiated.
    pub dtmf_pt: Option<u8>,
    /// The telephone-event clock when it is not the codec's (Opus at 48 kHz with
    /// `telephone-event/8000`, as baresip and older Asterisk pair them): event
    /// durations count in this clock, timestamps stay the audio's.
    pub dtmf_clock: Option<u32>,
    /// Packet duration in ms.
    pub ptime: u32,
    /// Where the SDP says to send RTP.
    pub remote: SocketAddr,
    /// RTCP on the RTP port.
    pub rtcp_mux: bool,
    /// Latch to the observed source address (symmetric RTP).
    pub symmetric: bool,
    /// Interval between RTCP reports.
    pub rtcp_interval: Duration,
    /// First sequence number to send.
    pub initial_seq: u16,
    /// First RTP timestamp to send.
    pub initial_ts: u32,
    /// NTP time (RFC 5905 64-bit format) at the `now` given to [`RtpLeg::new`].
    pub ntp_at_start: u64,
}

impl RtpLegConfig {
    /// A configuration with defaults: symmetric RTP, RTCP every 5 s.
    pub fn new(ssrc: u32, codec: Codec, pt: u8, remote: SocketAddr) -> Self {
        Self {
            ssrc,
            codec,
            pt,
            dtmf_pt: None,
            dtmf_clock: None,
            ptime: 20,
            remote,
            rtcp_mux: false,
            symmetric: true,
            rtcp_interval: Duration::from_secs(5),
            initial_seq: 0,
            initial_ts: 0,
            ntp_at_start: 0,
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub destination: SocketAddr,
    /// True for RTCP (the shell sends it from the RTCP socket when not muxed).
    pub rtcp: bool,
    /// Bytes.
    pub data: Vec<u8>,
}

impl Transmit {
    /// One compound RTCP packet of `pkts` to `destination`; `None` when they do not
    /// build (nothing to send).
    pub(crate) fn rtcp(destination: SocketAddr, pkts: &[RtcpPacket]) -> Option<Transmit> {
        let data = RtcpPacket::build_compound(pkts).ok()?;
        Some(Transmit {
            destination,
            rtcp: true,
            data,
        })
    }
}

/// Input to [`RtpLeg::handle_input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A datagram arrived on the RTP (or RTCP) socket.
    Receive {
        /// Source address.
        from: SocketAddr,
        /// Bytes.
        data: Vec<u8>,
    },
}

/// Something the owner should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtpLegEvent {
    /// One frame slot of received audio, dejittered: decode it or conceal.
    Media(JitterOutput),
    /// A telephone-event packet from the peer (PBX clock).
    Dtmf {
        /// Event timestamp.
        timestamp: u32,
        /// Marker bit.
        marker: bool,
        /// The event.
        event: DtmfEvent,
    },
    /// Symmetric RTP latched to this source.
    Latched(SocketAddr),
    /// The peer sent RTCP BYE.
    Bye,
}

/// Counters of one leg.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtpLegStats {
    /// RTP packets sent.
    pub packets_sent: u64,
    /// RTP payload octets sent.
    pub bytes_sent: u64,
    /// RTP packets accepted from the peer.
    pub packets_received: u64,
    /// RTP payload octets accepted from the peer.
    pub bytes_received: u64,
    /// Cumulative packets lost from the peer (RFC 3550 A.3).
    pub lost: i64,
    /// Interarrival jitter of the peer's stream.
    pub jitter: Duration,
    /// Latest round-trip time from RTCP.
    pub rtt: Option<Duration>,
    /// Loss the peer reports for our stream (fraction 0..1).
    pub remote_fraction_lost: f64,
    /// Jitter the peer reports for our stream.
    pub remote_jitter: Duration,
    /// Datagrams dropped because they came from an unexpected source.
    pub unexpected_source: u64,
    /// Datagrams that failed to parse.
    pub malformed: u64,
    /// RTP packets with a payload type we did not negotiate.
    pub unknown_pt: u64,
    /// Packets the jitter buffer dropped as late.
    pub late: u64,
}

/// One RTP session. See the module docs.
#[derive(Debug)]
pub struct RtpLeg {
    cfg: RtpLegConfig,
    start: Instant,
    peer: SymmetricPeer,
    remote_ssrc: Option<u32>,
    seq: u16,
    /// Timestamp of the next packet and the time it corresponds to.
    next_ts: u32,
    last_send: Option<(Instant, u32)>,
    recv: ReceiveStats,
    jitter: JitterBuffer,
    next_rtcp: Instant,
    /// LSR and arrival time of the last SR from the peer.
    last_sr: Option<(u32, Instant)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<RtpLegEvent>,
    stats: RtpLegStats,
    clock: u32,
}

impl RtpLeg {
    /// Creates a leg at time `now`.
    pub fn new(now: Instant, cfg: RtpLegConfig) -> Self {
        let clock = cfg.codec.clock_rate();
        let jcfg = JitterConfig::new(clock, Duration::from_millis(u64::from(cfg.ptime.max(1))));
        Self {
            start: now,
            peer: SymmetricPeer::new(cfg.remote, cfg.symmetric, cfg.rtcp_mux),
            remote_ssrc: None,
            seq: cfg.initial_seq,
            next_ts: cfg.initial_ts,
            last_send: None,
            recv: ReceiveStats::default(),
            jitter: JitterBuffer::new(jcfg),
            // RFC 3550 6.2: the first report goes out after half an interval.
            next_rtcp: now + cfg.rtcp_interval / 2,
            last_sr: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: RtpLegStats::default(),
            clock,
            cfg,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &RtpLegConfig {
        &self.cfg
    }

    /// Current counters.
    pub fn stats(&self) -> RtpLegStats {
        let mut s = self.stats;
        s.lost = self.recv.cumulative_lost();
        s.jitter = Duration::from_secs_f64(self.recv.jitter() / f64::from(self.clock));
        s.late = self.jitter.stats().late;
        s
    }

    /// The jitter buffer (for its own counters).
    pub fn jitter_buffer(&self) -> &JitterBuffer {
        &self.jitter
    }

    /// Address media is sent to now (latched source, else the SDP address).
    pub fn destination(&self) -> SocketAddr {
        self.peer.destination()
    }

    fn rtcp_destination(&self) -> SocketAddr {
        self.peer.rtcp_destination()
    }

    /// A re-INVITE moved the peer: new SDP address, latch again.
    pub fn set_remote(&mut self, remote: SocketAddr) {
        self.cfg.remote = remote;
        self.peer.set_remote(remote);
    }

    fn ntp(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.start);
        let frac = ((u128::from(d.subsec_nanos()) << 32) / 1_000_000_000) as u64;
        self.cfg
            .ntp_at_start
            .wrapping_add((d.as_secs() << 32) | frac)
    }

    /// The RTP timestamp that corresponds to `now` on our send clock.
    pub fn timestamp_at(&self, now: Instant) -> u32 {
        match self.last_send {
            Some((t, ts)) => {
                let el = now.saturating_duration_since(t);
                ts.wrapping_add((el.as_micros() as u64 * u64::from(self.clock) / 1_000_000) as u32)
            }
            None => self.next_ts,
        }
    }

    /// Feeds one received datagram.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        let Input::Receive { from, data } = input;
        if rtp::is_rtcp(&data) {
            self.handle_rtcp(now, from, &data);
            return;
        }
        let pkt = match RtpPacket::parse(&data) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        match self.peer.admit_rtp(from) {
            Admit::Refuse => {
                self.stats.unexpected_source += 1;
                return;
            }
            Admit::Latched => self.events.push_back(RtpLegEvent::Latched(from)),
            Admit::Accept => {}
        }
        let h = &pkt.header;
        if Some(h.payload_type) == self.cfg.dtmf_pt {
            match DtmfEvent::parse(&pkt.payload) {
                Ok(event) => self.events.push_back(RtpLegEvent::Dtmf {
                    timestamp: h.timestamp,
                    marker: h.marker,
                    event,
                }),
                Err(_) => self.stats.malformed += 1,
            }
            return;
        }
        if h.payload_type != self.cfg.pt {
            self.stats.unknown_pt += 1;
            return;
        }
        if self.remote_ssrc != Some(h.ssrc) {
            self.remote_ssrc = Some(h.ssrc);
            self.recv = ReceiveStats::default();
        }
        let arrival = now.saturating_duration_since(self.start).as_micros() as u64
            * u64::from(self.clock)
            / 1_000_000;
        self.recv.record(h.sequence, h.timestamp, arrival);
        self.stats.packets_received += 1;
        self.stats.bytes_received += pkt.payload.len() as u64;
        self.jitter
            .insert(now, h.ssrc, h.sequence, h.timestamp, h.marker, pkt.payload);
    }

    fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let pkts = match RtcpPacket::parse_compound(data) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        if !self.peer.admit_rtcp(from) {
            self.stats.unexpected_source += 1;
            return;
        }
        for p in pkts {
            let blocks = match p {
                RtcpPacket::SenderReport(sr) => {
                    self.last_sr = Some((rtp::ntp_middle(sr.ntp), now));
                    sr.reports
                }
                RtcpPacket::ReceiverReport(rr) => rr.reports,
                RtcpPacket::Bye(_) => {
                    self.events.push_back(RtpLegEvent::Bye);
                    continue;
                }
                _ => continue,
            };
            for b in blocks.iter().filter(|b| b.ssrc == self.cfg.ssrc) {
                if let Some(rtt) = rtp::rtt_from_block(b, self.ntp(now)) {
                    self.stats.rtt = Some(rtt);
                }
                self.stats.remote_fraction_lost = f64::from(b.fraction_lost) / 256.0;
                self.stats.remote_jitter =
                    Duration::from_secs_f64(f64::from(b.jitter) / f64::from(self.clock));
            }
        }
    }

    /// Queues one audio packet; `samples` is its duration in clock units. `talkspurt_start`
    /// sets the marker and re-aligns the timestamp with elapsed time after a silence.
    pub fn send_audio(
        &mut self,
        now: Instant,
        payload: &[u8],
        samples: u32,
        talkspurt_start: bool,
    ) {
        if talkspurt_start && self.last_send.is_some() {
            let by_clock = self.timestamp_at(now);
            if rtp::ts_delta(by_clock, self.next_ts) > 0 {
                self.next_ts = by_clock;
            }
        }
        let ts = self.next_ts;
        self.push_rtp(self.cfg.pt, talkspurt_start, ts, payload);
        self.last_send = Some((now, ts));
        self.next_ts = ts.wrapping_add(samples);
    }

    /// Leaves a gap in the outgoing stream: the next packet's sequence number is
    /// `packets` further on and its timestamp `samples` further on, as if they had been
    /// sent and lost (a relayed stream keeps its sender's losses visible, so the far
    /// end conceals them instead of hearing the audio cut short).
    pub fn skip(&mut self, packets: u16, samples: u32) {
        self.seq = self.seq.wrapping_add(packets);
        self.next_ts = self.next_ts.wrapping_add(samples);
    }

    /// Queues one telephone-event packet (its timestamp and marker are kept).
    /// Returns false (and sends nothing) when telephone-event was not negotiated.
    pub fn send_dtmf(&mut self, pkt: &DtmfPacket) -> bool {
        let Some(pt) = self.cfg.dtmf_pt else {
            return false;
        };
        self.push_rtp(pt, pkt.marker, pkt.timestamp, &pkt.event.to_bytes());
        true
    }

    fn push_rtp(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let pkt = RtpPacket {
            header: RtpHeader {
                marker,
                payload_type: pt,
                sequence: self.seq,
                timestamp: ts,
                ssrc: self.cfg.ssrc,
                ..RtpHeader::default()
            },
            payload: payload.to_vec(),
            padding: 0,
        };
        self.seq = self.seq.wrapping_add(1);
        if let Ok(data) = pkt.to_bytes() {
            self.stats.packets_sent += 1;
            self.stats.bytes_sent += payload.len() as u64;
            self.transmits.push_back(Transmit {
                destination: self.destination(),
                rtcp: false,
                data,
            });
        }
    }

    /// Sends RTCP BYE (call teardown).
    pub fn send_bye(&mut self, now: Instant) {
        let mut pkts = vec![self.report(now)];
        pkts.push(RtcpPacket::Bye(rtp::Bye {
            sources: vec![self.cfg.ssrc],
            reason: None,
        }));
        self.queue_rtcp(&pkts);
    }

    fn report(&mut self, now: Instant) -> RtcpPacket {
        let mut blocks = Vec::new();
        if let Some(ssrc) = self.remote_ssrc {
            let (lsr, dlsr) = match self.last_sr {
                Some((lsr, at)) => {
                    let d = now.saturating_duration_since(at);
                    (lsr, (d.as_micros() as u64 * 65536 / 1_000_000) as u32)
                }
                None => (0, 0),
            };
            blocks.push(self.recv.report_block(ssrc, lsr, dlsr));
        }
        if self.stats.packets_sent > 0 {
            RtcpPacket::SenderReport(SenderReport {
                ssrc: self.cfg.ssrc,
                ntp: self.ntp(now),
                rtp_ts: self.timestamp_at(now),
                packet_count: self.stats.packets_sent as u32,
                octet_count: self.stats.bytes_sent as u32,
                reports: blocks,
            })
        } else {
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.cfg.ssrc,
                reports: blocks,
            })
        }
    }

    fn queue_rtcp(&mut self, pkts: &[RtcpPacket]) {
        let dest = self.rtcp_destination();
        self.transmits.extend(Transmit::rtcp(dest, pkts));
    }

    /// Advances timers: plays due jitter-buffer frames and sends RTCP when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(out) = self.jitter.poll(now) {
            self.events.push_back(RtpLegEvent::Media(out));
        }
        if now >= self.next_rtcp {
            let r = self.report(now);
            self.queue_rtcp(&[r]);
            self.next_rtcp = now + self.cfg.rtcp_interval;
        }
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<RtpLegEvent> {
        self.events.pop_front()
    }

    /// When to call [`RtpLeg::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.jitter.poll_timeout() {
            Some(t) => t.min(self.next_rtcp),
            None => self.next_rtcp,
        })
    }
}

/// Report block helper for tests and the bridge: how a peer would report on our stream.
pub fn block_for(ssrc: u32, fraction_lost: u8, lsr: u32, dlsr: u32) -> ReportBlock {
    ReportBlock {
        ssrc,
        fraction_lost,
        lsr,
        dlsr,
        ..ReportBlock::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn leg(now: Instant) -> RtpLeg {
        let mut cfg = RtpLegConfig::new(0xaaaa, Codec::Pcmu, 0, addr("192.0.2.10:17000"));
        cfg.dtmf_pt = Some(101);
        cfg.initial_seq = 65534;
        cfg.initial_ts = 1000;
        RtpLeg::new(now, cfg)
    }

    fn pbx_packet(seq: u16, ts: u32, pt: u8, payload: &[u8]) -> Vec<u8> {
        RtpPacket {
            header: RtpHeader {
                payload_type: pt,
                sequence: seq,
                timestamp: ts,
                ssrc: 0xbbbb,
                ..RtpHeader::default()
            },
            payload: payload.to_vec(),
            padding: 0,
        }
        .to_bytes()
        .expect("valid")
    }

    /// Symmetric RTP: the first source is latched (even behind NAT), others are dropped and counted,
    /// and media goes back to the latched address.
    #[test]
    fn symmetric_latching() {
        let t0 = Instant::now();
        let mut l = leg(t0);
        l.send_audio(t0, &[0xff; 160], 160, true);
        assert_eq!(
            l.poll_transmit().map(|t| t.destination),
            Some(addr("192.0.2.10:17000"))
        );
        let nat = addr("203.0.113.5:40002");
        l.handle_input(
            t0,
            Input::Receive {
                from: nat,
                data: pbx_packet(1, 0, 0, &[0xff; 160]),
            },
        );
        assert_eq!(l.poll_event(), Some(RtpLegEvent::Latched(nat)));
        l.handle_input(
            t0,
            Input::Receive {
                from: addr("198.51.100.66:5000"),
                data: pbx_packet(2, 160, 0, &[0; 160]),
            },
        );
        assert_eq!(l.stats().unexpected_source, 1);
        assert_eq!(l.stats().packets_received, 1);
        l.send_audio(t0 + Duration::from_millis(20), &[0xff; 160], 160, false);
        assert_eq!(l.poll_transmit().map(|t| t.destination), Some(nat));
        l.handle_input(
            t0,
            Input::Receive {
                from: nat,
                data: vec![0x80, 0, 1],
            },
        );
        l.handle_input(
            t0,
            Input::Receive {
                from: nat,
                data: pbx_packet(3, 320, 13, &[0; 1]),
            },
        );
        assert_eq!((l.stats().malformed, l.stats().unknown_pt), (1, 1));
    }

    /// Send side: sequence wraps, timestamps advance per frame and jump after silence with marker.
    #[test]
    fn send_side_sequence_timestamp_marker() {
        let t0 = Instant::now();
        let mut l = leg(t0);
        let mut sent = Vec::new();
        for i in 0..3u64 {
            l.send_audio(t0 + Duration::from_millis(20 * i), &[0; 160], 160, i == 0);
        }
        // 1 s of silence, then a new talkspurt.
        l.send_audio(t0 + Duration::from_millis(1060), &[0; 160], 160, true);
        while let Some(t) = l.poll_transmit() {
            let p = RtpPacket::parse(&t.data).expect("own packet");
            sent.push((p.header.sequence, p.header.timestamp, p.header.marker));
        }
        assert_eq!(
            sent,
            vec![
                (65534, 1000, true),
                (65535, 1160, false),
                (0, 1320, false),
                (1, 1000 + 8480, true)
            ]
        );
    }

    /// Received audio comes out dejittered on the frame clock; DTMF bypasses the buffer.
    #[test]
    fn receive_through_jitter_buffer_and_dtmf() {
        let t0 = Instant::now();
        let mut l = leg(t0);
        let from = addr("192.0.2.10:17000");
        // Packets 0..10 arrive with the two first swapped.
        let order = [1u16, 0, 2, 3, 4, 5, 6, 7, 8, 9];
        for (k, &i) in order.iter().enumerate() {
            let now = t0 + Duration::from_millis(20 * k as u64);
            l.handle_input(
                now,
                Input::Receive {
                    from,
                    data: pbx_packet(i, u32::from(i) * 160, 0, &[i as u8; 160]),
                },
            );
        }
        let dtmf = DtmfEvent {
            event: 3,
            end: false,
            volume: 10,
            duration: 160,
        };
        l.handle_input(
            t0,
            Input::Receive {
                from,
                data: pbx_packet(100, 7777, 101, &dtmf.to_bytes()),
            },
        );
        let mut media = Vec::new();
        let mut got_dtmf = None;
        let mut now = t0;
        for _ in 0..400 {
            l.handle_timeout(now);
            while let Some(e) = l.poll_event() {
                match e {
                    RtpLegEvent::Media(JitterOutput::Frame(f)) => media.push(f.payload[0]),
                    RtpLegEvent::Dtmf {
                        event, timestamp, ..
                    } => got_dtmf = Some((event, timestamp)),
                    _ => {}
                }
            }
            now += Duration::from_millis(1);
        }
        assert_eq!(media, (0..10).collect::<Vec<u8>>());
        assert_eq!(got_dtmf, Some((dtmf, 7777)));
    }

    /// RTCP: an SR goes out on the timer with a report block on the peer; the peer's RR
    /// (LSR/DLSR) gives the RTT; BYE is reported.
    #[test]
    fn rtcp_reports_and_rtt() {
        let t0 = Instant::now();
        let mut l = leg(t0);
        let from = addr("192.0.2.10:17000");
        l.handle_input(
            t0,
            Input::Receive {
                from,
                data: pbx_packet(1, 0, 0, &[0; 160]),
            },
        );
        l.send_audio(t0, &[0; 160], 160, true);
        let _ = l.poll_transmit();
        let t1 = t0 + Duration::from_millis(2500);
        assert_eq!(l.poll_timeout().map(|t| t <= t1), Some(true));
        l.handle_timeout(t1);
        let sr = loop {
            let t = l.poll_transmit().expect("rtcp due");
            if t.rtcp {
                break t;
            }
        };
        assert_eq!(
            sr.destination,
            addr("192.0.2.10:17001"),
            "rtcp on port+1 without mux"
        );
        let pkts = RtcpPacket::parse_compound(&sr.data).expect("valid");
        let RtcpPacket::SenderReport(sr) = &pkts[0] else {
            panic!("expected SR, got {pkts:?}")
        };
        assert_eq!(
            (sr.ssrc, sr.packet_count, sr.reports[0].ssrc),
            (0xaaaa, 1, 0xbbbb)
        );
        // The PBX answers 30 ms later after holding the SR for 10 ms: RTT = 20 ms.
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 0xbbbb,
            reports: vec![block_for(0xaaaa, 64, rtp::ntp_middle(sr.ntp), 65536 / 100)],
        });
        let bye = RtcpPacket::Bye(rtp::Bye {
            sources: vec![0xbbbb],
            reason: None,
        });
        let data = RtcpPacket::build_compound(&[rr, bye]).expect("valid");
        l.handle_input(
            t1 + Duration::from_millis(30),
            Input::Receive {
                from: addr("192.0.2.10:17001"),
                data,
            },
        );
        let s = l.stats();
        let rtt = s.rtt.expect("rtt").as_millis();
        assert!((19..=21).contains(&rtt), "rtt {rtt}");
        assert!((s.remote_fraction_lost - 0.25).abs() < 1e-9);
        let events: Vec<_> = std::iter::from_fn(|| l.poll_event()).collect();
        assert!(events.contains(&RtpLegEvent::Bye), "{events:?}");
    }

    /// With rtcp-mux, RTCP goes to the RTP address and is demultiplexed from the RTP port;
    /// a new SSRC from the PBX (e.g. after a transfer) restarts reception cleanly.
    #[test]
    fn rtcp_mux_and_ssrc_change() {
        let t0 = Instant::now();
        let mut cfg = RtpLegConfig::new(0xaaaa, Codec::Pcmu, 0, addr("192.0.2.10:17000"));
        cfg.rtcp_mux = true;
        let mut l = RtpLeg::new(t0, cfg);
        let from = addr("192.0.2.10:17000");
        let mut played = Vec::new();
        let mut now = t0;
        for i in 0..100u32 {
            // The PBX switches source after 50 packets: new SSRC, new seq and ts base.
            let (ssrc, seq, ts) = if i < 50 {
                (0xbbbb, i as u16, i * 160)
            } else {
                (0xcccc, 40_000 + i as u16, 1_000_000 + i * 160)
            };
            let data = RtpPacket {
                header: RtpHeader {
                    payload_type: 0,
                    sequence: seq,
                    timestamp: ts,
                    ssrc,
                    ..RtpHeader::default()
                },
                payload: vec![i as u8; 160],
                padding: 0,
            }
            .to_bytes()
            .expect("valid");
            l.handle_input(now, Input::Receive { from, data });
            for _ in 0..20 {
                l.handle_timeout(now);
                while let Some(e) = l.poll_event() {
                    if let RtpLegEvent::Media(JitterOutput::Frame(f)) = e {
                        played.push(f.payload[0]);
                    }
                }
                now += Duration::from_millis(1);
            }
        }
        // Let the first RTCP interval (2.5 s) pass.
        for _ in 0..4000 {
            l.handle_timeout(now);
            while l.poll_event().is_some() {}
            now += Duration::from_millis(1);
        }
        // Everything from both sources plays except at most the frames in flight at the switch.
        assert!(played.len() >= 96, "played {}", played.len());
        assert!(played.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(l.stats().lost, 0, "stats restart with the new source");
        let rtcp: Vec<Transmit> = std::iter::from_fn(|| l.poll_transmit())
            .filter(|t| t.rtcp)
            .collect();
        assert!(!rtcp.is_empty());
        assert!(
            rtcp.iter()
                .all(|t| t.destination == from && rtp::is_rtcp(&t.data))
        );
        let rr = RtcpPacket::parse_compound(&rtcp[rtcp.len() - 1].data).expect("valid");
        let RtcpPacket::ReceiverReport(rr) = &rr[0] else {
            panic!("no media sent, so RR: {rr:?}")
        };
        assert_eq!(rr.reports[0].ssrc, 0xcccc);
    }
}
