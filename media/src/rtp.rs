//! RTP and RTCP on the wire (RFC 3550), plus the RTCP-mux demultiplexing rule (RFC 5761).
//!
//! This file owns the byte formats and the arithmetic that every leg needs: header
//! parse/serialise, sequence-number and timestamp wrap handling, receiver statistics
//! (loss fraction, cumulative loss, interarrival jitter, RFC 3550 A.1/A.3/A.8) and the
//! SR/RR/BYE packets that carry them. Parsers take untrusted bytes and return a typed
//! [`RtpError`] instead of panicking.

use std::net::SocketAddr;

use thiserror::Error;

/// Why a datagram was rejected as RTP or RTCP.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtpError {
    /// The buffer ended before the structure it announced.
    #[error("packet truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the header claimed.
        need: usize,
        /// Bytes actually present.
        have: usize,
    },
    /// The version field was not 2.
    #[error("unsupported rtp version {0}")]
    BadVersion(u8),
    /// The padding count was zero or larger than the payload.
    #[error("invalid padding length {0}")]
    BadPadding(u8),
    /// An RTCP packet's length field did not fit the compound packet.
    #[error("invalid rtcp length")]
    BadRtcpLength,
    /// A structure was too large to encode (for example more than 15 CSRCs).
    #[error("field too large to encode: {0}")]
    TooLarge(&'static str),
}

/// Header extension (RFC 3550 5.3.1): a profile word and opaque data, a multiple of 4 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpExtension {
    /// The profile-defined 16-bit identifier (0xBEDE for RFC 8285 one-byte headers).
    pub profile: u16,
    /// Extension data; its length must be a multiple of four when serialised.
    pub data: Vec<u8>,
}

/// A parsed RTP header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpHeader {
    /// Marker bit (for audio: first packet of a talkspurt).
    pub marker: bool,
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp in the codec's clock.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Contributing sources (at most 15).
    pub csrc: Vec<u32>,
    /// Optional header extension.
    pub extension: Option<RtpExtension>,
}

/// One RTP packet: header plus payload with padding removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpPacket {
    /// The header.
    pub header: RtpHeader,
    /// Payload bytes (without padding).
    pub payload: Vec<u8>,
    /// Padding bytes to append when serialising (0 = none); set by the parser to what it saw.
    pub padding: u8,
}

impl RtpPacket {
    /// Parses one RTP packet from a datagram.
    ///
    /// # Errors
    /// Returns [`RtpError`] for a wrong version, a truncated header/extension or bad padding.
    pub fn parse(buf: &[u8]) -> Result<Self, RtpError> {
        need(buf, 12)?;
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = buf[0] & 0x20 != 0;
        let has_ext = buf[0] & 0x10 != 0;
        let cc = usize::from(buf[0] & 0x0f);
        let marker = buf[1] & 0x80 != 0;
        let payload_type = buf[1] & 0x7f;
        let sequence = u16::from_be_bytes([buf[2], buf[3]]);
        let timestamp = be32(&buf[4..8]);
        let ssrc = be32(&buf[8..12]);
        let mut off = 12;
        need(buf, off + 4 * cc)?;
        let csrc = (0..cc).map(|i| be32(&buf[off + 4 * i..])).collect();
        off += 4 * cc;
        let extension = if has_ext {
            need(buf, off + 4)?;
            let profile = u16::from_be_bytes([buf[off], buf[off + 1]]);
            let words = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
            off += 4;
            need(buf, off + 4 * words)?;
            let data = buf[off..off + 4 * words].to_vec();
            off += 4 * words;
            Some(RtpExtension { profile, data })
        } else {
            None
        };
        let mut end = buf.len();
        let mut padding = 0;
        if has_padding {
            let p = buf[end - 1];
            if p == 0 || usize::from(p) > end - off {
                return Err(RtpError::BadPadding(p));
            }
            padding = p;
            end -= usize::from(p);
        }
        Ok(Self {
            header: RtpHeader {
                marker,
                payload_type,
                sequence,
                timestamp,
                ssrc,
                csrc,
                extension,
            },
            payload: buf[off..end].to_vec(),
            padding,
        })
    }

    /// Appends the wire form of this packet to `out`.
    ///
    /// # Errors
    /// Returns [`RtpError::TooLarge`] for more than 15 CSRCs, an extension whose length is not
    /// a multiple of 4 or exceeds 65535 words, or a payload type above 127.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), RtpError> {
        let h = &self.header;
        if h.csrc.len() > 15 {
            return Err(RtpError::TooLarge("csrc count"));
        }
        if h.payload_type > 127 {
            return Err(RtpError::TooLarge("payload type"));
        }
        let mut b0 = 0x80 | h.csrc.len() as u8;
        if self.padding > 0 {
            b0 |= 0x20;
        }
        if h.extension.is_some() {
            b0 |= 0x10;
        }
        out.push(b0);
        out.push(h.payload_type | if h.marker { 0x80 } else { 0 });
        out.extend_from_slice(&h.sequence.to_be_bytes());
        out.extend_from_slice(&h.timestamp.to_be_bytes());
        out.extend_from_slice(&h.ssrc.to_be_bytes());
        for c in &h.csrc {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some(ext) = &h.extension {
            if ext.data.len() % 4 != 0 || ext.data.len() / 4 > usize::from(u16::MAX) {
                return Err(RtpError::TooLarge("extension length"));
            }
            out.extend_from_slice(&ext.profile.to_be_bytes());
            out.extend_from_slice(&((ext.data.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(&ext.data);
        }
        out.extend_from_slice(&self.payload);
        if self.padding > 0 {
            out.extend(std::iter::repeat_n(0u8, usize::from(self.padding) - 1));
            out.push(self.padding);
        }
        Ok(())
    }

    /// Returns the wire form of this packet.
    ///
    /// # Errors
    /// See [`RtpPacket::write_to`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, RtpError> {
        let mut v = Vec::with_capacity(12 + self.payload.len());
        self.write_to(&mut v)?;
        Ok(v)
    }
}

fn need(buf: &[u8], n: usize) -> Result<(), RtpError> {
    if buf.len() < n {
        Err(RtpError::Truncated {
            need: n,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// RFC 5761 section 4: a datagram on a muxed port is RTCP when its second byte, marker bit
/// masked, is in 64..=95 (RTCP packet types 192..=223).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf[0] >> 6 == 2 && (64..=95).contains(&(buf[1] & 0x7f))
}

/// Signed distance `a - b` between two sequence numbers, correct across the 16-bit wrap.
pub fn seq_delta(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// Signed distance `a - b` between two RTP timestamps, correct across the 32-bit wrap.
pub fn ts_delta(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Extends 16-bit sequence numbers to a monotonic 64-bit index (rollover counting).
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    last: Option<u64>,
}

impl SeqExtender {
    /// Returns the extended index of `seq`, choosing the value closest to the last one seen.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(last) = self.last else {
            // Start one cycle up so an early reordered packet can still sit below.
            let v = (1u64 << 16) + u64::from(seq);
            self.last = Some(v);
            return v;
        };
        let d = i64::from(seq_delta(seq, last as u16));
        let v = (last as i64 + d).max(0) as u64;
        if v > last {
            self.last = Some(v);
        }
        v
    }
}

/// Where a plain-RTP peer is sent to, and who may send to us: symmetric RTP
/// (RFC 4961; "comedia"). With `symmetric` the first source of RTP is latched, even
/// behind a NAT that rewrote it, media goes back there and every other source is
/// refused; without it only the SDP address is accepted.
#[derive(Debug, Clone)]
pub struct SymmetricPeer {
    remote: SocketAddr,
    symmetric: bool,
    rtcp_mux: bool,
    latched: Option<SocketAddr>,
    latched_rtcp: Option<SocketAddr>,
}

/// What [`SymmetricPeer::admit_rtp`] decided about one packet's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// From the peer.
    Accept,
    /// The first packet: its source is latched now.
    Latched,
    /// From anyone else: drop it and count it.
    Refuse,
}

impl SymmetricPeer {
    /// A peer the SDP says is at `remote`.
    pub fn new(remote: SocketAddr, symmetric: bool, rtcp_mux: bool) -> Self {
        SymmetricPeer {
            remote,
            symmetric,
            rtcp_mux,
            latched: None,
            latched_rtcp: None,
        }
    }

    /// Address media is sent to now (latched source, else the SDP address).
    pub fn destination(&self) -> SocketAddr {
        self.latched.unwrap_or(self.remote)
    }

    /// Address RTCP is sent to now: the media address when muxed, else where the
    /// peer's RTCP came from, else the next port up.
    pub fn rtcp_destination(&self) -> SocketAddr {
        if self.rtcp_mux {
            return self.destination();
        }
        self.latched_rtcp.unwrap_or_else(|| {
            let d = self.destination();
            SocketAddr::new(d.ip(), d.port().wrapping_add(1))
        })
    }

    /// The latched source, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// A re-INVITE moved the peer: new SDP address, latch again.
    pub fn set_remote(&mut self, remote: SocketAddr) {
        self.remote = remote;
        self.latched = None;
        self.latched_rtcp = None;
    }

    /// Decides on an RTP packet from `from` (latching the first source).
    pub fn admit_rtp(&mut self, from: SocketAddr) -> Admit {
        match self.latched {
            // someone else (or a stale path) is sending to our port: never mix streams
            Some(addr) if addr != from => Admit::Refuse,
            Some(_) => Admit::Accept,
            None if self.symmetric => {
                self.latched = Some(from);
                Admit::Latched
            }
            None if from != self.remote => Admit::Refuse,
            None => Admit::Accept,
        }
    }

    /// Decides on an RTCP packet from `from`: once latched, RTCP must come from the
    /// RTP address when muxed, otherwise from the same host (whose port is then where
    /// our RTCP goes).
    pub fn admit_rtcp(&mut self, from: SocketAddr) -> bool {
        if let Some(l) = self.latched
            && ((self.rtcp_mux && l != from) || l.ip() != from.ip())
        {
            return false;
        }
        if !self.rtcp_mux {
            self.latched_rtcp = Some(from);
        }
        true
    }
}

/// Extends 32-bit RTP timestamps to a monotonic 64-bit clock (what str0m's writer wants).
#[derive(Debug, Clone, Default)]
pub struct TsExtender {
    last: Option<(u32, u64)>,
}

impl TsExtender {
    /// Returns the extended value of `ts`, a signed 32-bit step from the last one (so
    /// wrap-around works both ways), never below zero.
    pub fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.last {
            Some((prev, ext)) => ext.saturating_add_signed(i64::from(ts_delta(ts, prev))),
            None => u64::from(ts),
        };
        self.last = Some((ts, ext));
        ext
    }
}

/// Receiver-side statistics for one source (RFC 3550 A.1, A.3 and A.8).
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    ext: SeqExtender,
    base: Option<u64>,
    max: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    transit: Option<i64>,
    jitter: f64,
}

impl ReceiveStats {
    /// Records one packet: `arrival` is the arrival time expressed in the same clock units
    /// as the RTP timestamp (for example milliseconds × 8 for PCMU).
    pub fn record(&mut self, seq: u16, rtp_ts: u32, arrival: u64) {
        let ext = self.ext.extend(seq);
        match self.base {
            None => {
                self.base = Some(ext);
                self.max = ext;
            }
            Some(_) => self.max = self.max.max(ext),
        }
        self.received += 1;
        let transit = arrival as i64 - i64::from(rtp_ts);
        if let Some(prev) = self.transit {
            // Timestamps wrap: the difference is taken modulo 2^32 to stay small.
            let d = i64::from((transit - prev) as i32).abs();
            self.jitter += (d as f64 - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// Packets received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected from the sequence numbers seen so far.
    pub fn expected(&self) -> u64 {
        self.base.map_or(0, |b| self.max - b + 1)
    }

    /// Cumulative number of packets lost (may be negative with duplicates, RFC 3550 A.3).
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Highest extended sequence number received (cycles in the upper 16 bits).
    pub fn extended_max(&self) -> u32 {
        // Our extender starts one cycle up; report cycles from zero as peers expect.
        self.max.saturating_sub(1 << 16) as u32
    }

    /// Builds a report block and starts a new reporting interval for the loss fraction.
    pub fn report_block(&mut self, ssrc: u32, lsr: u32, dlsr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-(1 << 23), (1 << 23) - 1) as i32,
            highest_seq: self.extended_max(),
            jitter: self.jitter as u32,
            lsr,
            dlsr,
        }
    }
}

/// One reception report block (RFC 3550 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// Source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received (0 if none).
    pub lsr: u32,
    /// Delay since that SR in 1/65536 s.
    pub dlsr: u32,
}

/// Sender report (RFC 3550 6.4.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SenderReport {
    /// Sender's SSRC.
    pub ssrc: u32,
    /// 64-bit NTP timestamp of this report.
    pub ntp: u64,
    /// RTP timestamp matching `ntp`.
    pub rtp_ts: u32,
    /// Packets sent since the start.
    pub packet_count: u32,
    /// Payload octets sent since the start.
    pub octet_count: u32,
    /// Reception report blocks.
    pub reports: Vec<ReportBlock>,
}

/// Receiver report (RFC 3550 6.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiverReport {
    /// Reporter's SSRC.
    pub ssrc: u32,
    /// Reception report blocks.
    pub reports: Vec<ReportBlock>,
}

/// Goodbye (RFC 3550 6.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bye {
    /// Sources leaving.
    pub sources: Vec<u32>,
    /// Optional reason text.
    pub reason: Option<String>,
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    /// PT 200.
    SenderReport(SenderReport),
    /// PT 201.
    ReceiverReport(ReceiverReport),
    /// PT 203.
    Bye(Bye),
    /// Any other type (SDES, APP, feedback), kept opaque.
    Other {
        /// Packet type.
        packet_type: u8,
        /// The count/format field of the first byte.
        count: u8,
        /// Body after the 4-byte header.
        body: Vec<u8>,
    },
}

const PT_SR: u8 = 200;
const PT_RR: u8 = 201;
const PT_BYE: u8 = 203;

impl RtcpPacket {
    /// Parses a compound RTCP datagram into its packets.
    ///
    /// # Errors
    /// Returns [`RtpError`] if any packet has a wrong version or a length that does not fit.
    pub fn parse_compound(mut buf: &[u8]) -> Result<Vec<Self>, RtpError> {
        let mut out = Vec::new();
        if buf.is_empty() {
            return Err(RtpError::Truncated { need: 4, have: 0 });
        }
        while !buf.is_empty() {
            need(buf, 4)?;
            let version = buf[0] >> 6;
            if version != 2 {
                return Err(RtpError::BadVersion(version));
            }
            let len = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
            if len > buf.len() {
                return Err(RtpError::BadRtcpLength);
            }
            let mut body_end = len;
            if buf[0] & 0x20 != 0 {
                let p = usize::from(buf[len - 1]);
                if p == 0 || p > len - 4 {
                    return Err(RtpError::BadPadding(buf[len - 1]));
                }
                body_end -= p;
            }
            out.push(Self::parse_one(buf[0] & 0x1f, buf[1], &buf[4..body_end])?);
            buf = &buf[len..];
        }
        Ok(out)
    }

    fn parse_one(count: u8, pt: u8, body: &[u8]) -> Result<Self, RtpError> {
        let blocks = |b: &[u8]| -> Result<Vec<ReportBlock>, RtpError> {
            need(b, usize::from(count) * 24)?;
            Ok((0..usize::from(count))
                .map(|i| {
                    let r = &b[i * 24..];
                    let cl = (be32(&r[4..]) & 0x00ff_ffff) as i32;
                    ReportBlock {
                        ssrc: be32(r),
                        fraction_lost: r[4],
                        cumulative_lost: (cl << 8) >> 8,
                        highest_seq: be32(&r[8..]),
                        jitter: be32(&r[12..]),
                        lsr: be32(&r[16..]),
                        dlsr: be32(&r[20..]),
                    }
                })
                .collect())
        };
        Ok(match pt {
            PT_SR => {
                need(body, 24)?;
                SenderReport {
                    ssrc: be32(body),
                    ntp: (u64::from(be32(&body[4..])) << 32) | u64::from(be32(&body[8..])),
                    rtp_ts: be32(&body[12..]),
                    packet_count: be32(&body[16..]),
                    octet_count: be32(&body[20..]),
                    reports: blocks(&body[24..])?,
                }
                .into()
            }
            PT_RR => {
                need(body, 4)?;
                Self::ReceiverReport(ReceiverReport {
                    ssrc: be32(body),
                    reports: blocks(&body[4..])?,
                })
            }
            PT_BYE => {
                let n = usize::from(count);
                need(body, n * 4)?;
                let sources = (0..n).map(|i| be32(&body[i * 4..])).collect();
                let rest = &body[n * 4..];
                let reason = match rest.first() {
                    Some(&l) if l > 0 => {
                        need(rest, 1 + usize::from(l))?;
                        Some(String::from_utf8_lossy(&rest[1..1 + usize::from(l)]).into_owned())
                    }
                    _ => None,
                };
                Self::Bye(Bye { sources, reason })
            }
            other => Self::Other {
                packet_type: other,
                count,
                body: body.to_vec(),
            },
        })
    }

    /// Appends this packet's wire form (padded to 32-bit words) to `out`.
    ///
    /// # Errors
    /// Returns [`RtpError::TooLarge`] for more than 31 report blocks/sources or a long reason.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), RtpError> {
        let start = out.len();
        let (count, pt) = match self {
            Self::SenderReport(sr) => {
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&sr.ssrc.to_be_bytes());
                out.extend_from_slice(&sr.ntp.to_be_bytes());
                out.extend_from_slice(&sr.rtp_ts.to_be_bytes());
                out.extend_from_slice(&sr.packet_count.to_be_bytes());
                out.extend_from_slice(&sr.octet_count.to_be_bytes());
                write_blocks(out, &sr.reports)?;
                (sr.reports.len(), PT_SR)
            }
            Self::ReceiverReport(rr) => {
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&rr.ssrc.to_be_bytes());
                write_blocks(out, &rr.reports)?;
                (rr.reports.len(), PT_RR)
            }
            Self::Bye(bye) => {
                out.extend_from_slice(&[0; 4]);
                for s in &bye.sources {
                    out.extend_from_slice(&s.to_be_bytes());
                }
                if let Some(r) = &bye.reason {
                    let l = u8::try_from(r.len()).map_err(|_| RtpError::TooLarge("bye reason"))?;
                    out.push(l);
                    out.extend_from_slice(r.as_bytes());
                }
                (bye.sources.len(), PT_BYE)
            }
            Self::Other {
                packet_type,
                count,
                body,
            } => {
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(body);
                (usize::from(*count), *packet_type)
            }
        };
        if count > 31 {
            out.truncate(start);
            return Err(RtpError::TooLarge("rtcp count"));
        }
        while !(out.len() - start).is_multiple_of(4) {
            out.push(0);
        }
        let words = (out.len() - start) / 4 - 1;
        let words = u16::try_from(words).map_err(|_| RtpError::TooLarge("rtcp length"))?;
        out[start] = 0x80 | count as u8;
        out[start + 1] = pt;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
        Ok(())
    }

    /// Serialises several packets as one compound datagram.
    ///
    /// # Errors
    /// See [`RtcpPacket::write_to`].
    pub fn build_compound(packets: &[Self]) -> Result<Vec<u8>, RtpError> {
        let mut out = Vec::new();
        for p in packets {
            p.write_to(&mut out)?;
        }
        Ok(out)
    }
}

impl From<SenderReport> for RtcpPacket {
    fn from(sr: SenderReport) -> Self {
        Self::SenderReport(sr)
    }
}

fn write_blocks(out: &mut Vec<u8>, blocks: &[ReportBlock]) -> Result<(), RtpError> {
    if blocks.len() > 31 {
        return Err(RtpError::TooLarge("report blocks"));
    }
    for b in blocks {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        let cl = (b.cumulative_lost as u32) & 0x00ff_ffff;
        out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | cl).to_be_bytes());
        out.extend_from_slice(&b.highest_seq.to_be_bytes());
        out.extend_from_slice(&b.jitter.to_be_bytes());
        out.extend_from_slice(&b.lsr.to_be_bytes());
        out.extend_from_slice(&b.dlsr.to_be_bytes());
    }
    Ok(())
}

/// Middle 32 bits of a 64-bit NTP timestamp, as used in LSR (RFC 3550 6.4.1).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Round-trip time from a report block received at `arrival_ntp` (RFC 3550 6.4.1 figure 2):
/// `A - LSR - DLSR`, in 1/65536 s; `None` if the block carries no LSR.
pub fn rtt_from_block(block: &ReportBlock, arrival_ntp: u64) -> Option<std::time::Duration> {
    if block.lsr == 0 {
        return None;
    }
    let a = ntp_middle(arrival_ntp);
    let rtt = a.wrapping_sub(block.lsr).wrapping_sub(block.dlsr);
    // A huge value means clocks or fields are inconsistent; refuse rather than report hours.
    if rtt > 60 << 16 {
        return None;
    }
    Some(std::time::Duration::from_nanos(
        u64::from(rtt) * 1_000_000_000 / 65536,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RtpPacket {
        RtpPacket {
            header: RtpHeader {
                marker: true,
                payload_type: 111,
                sequence: 0xfffe,
                timestamp: 0xdead_beef,
                ssrc: 0x1234_5678,
                csrc: vec![1, 2],
                extension: Some(RtpExtension {
                    profile: 0xbede,
                    data: vec![0x10, 0xaa, 0, 0],
                }),
            },
            payload: vec![1, 2, 3, 4, 5],
            padding: 3,
        }
    }

    /// A packet with CSRCs, an extension and padding survives serialise → parse unchanged.
    #[test]
    fn rtp_round_trip_with_csrc_extension_padding() {
        let p = sample();
        let bytes = p.to_bytes().expect("encodable");
        assert_eq!(bytes.len(), 12 + 8 + 8 + 5 + 3);
        assert_eq!(bytes[0], 0x80 | 0x20 | 0x10 | 2);
        assert_eq!(RtpPacket::parse(&bytes), Ok(p));
    }

    /// Every truncation of a valid packet, and wrong versions, give typed errors, never panics.
    #[test]
    fn rtp_rejects_malformed_without_panic() {
        let bytes = sample().to_bytes().expect("encodable");
        for n in 0..bytes.len() {
            // Shorter buffers either fail or (cut inside payload+padding) reinterpret padding.
            let _ = RtpPacket::parse(&bytes[..n]);
        }
        assert!(matches!(
            RtpPacket::parse(&bytes[..11]),
            Err(RtpError::Truncated { .. })
        ));
        let mut v1 = bytes.clone();
        v1[0] = (v1[0] & 0x3f) | 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));
        let mut bad_pad = bytes.clone();
        *bad_pad.last_mut().expect("non-empty") = 200;
        assert_eq!(RtpPacket::parse(&bad_pad), Err(RtpError::BadPadding(200)));
        let mut zero_pad = bytes;
        *zero_pad.last_mut().expect("non-empty") = 0;
        assert_eq!(RtpPacket::parse(&zero_pad), Err(RtpError::BadPadding(0)));
        // Pseudo-random garbage must never panic.
        let mut x = 0x9e37_79b9u32;
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = RtpPacket::parse(&buf);
            let _ = RtcpPacket::parse_compound(&buf);
        }
    }

    /// Sequence and timestamp arithmetic is correct across the wrap.
    #[test]
    fn seq_and_ts_wrap() {
        assert_eq!(seq_delta(2, 65534), 4);
        assert_eq!(seq_delta(65534, 2), -4);
        assert_eq!(ts_delta(100, u32::MAX - 59), 160);
        let mut e = SeqExtender::default();
        let a = e.extend(65534);
        let b = e.extend(65535);
        let c = e.extend(1);
        let late = e.extend(0);
        assert_eq!((b - a, c - a, late - a), (1, 3, 2));
    }

    /// RFC 5761: PT 64..95 after masking the marker is RTCP; audio PTs are RTP.
    #[test]
    fn rtcp_mux_demux_rule() {
        let sr = RtcpPacket::build_compound(&[SenderReport::default().into()]).expect("ok");
        assert!(is_rtcp(&sr));
        let rtp = sample().to_bytes().expect("ok");
        assert!(!is_rtcp(&rtp));
        assert!(!is_rtcp(&[0x80, 0]));
        assert!(is_rtcp(&[0x80, 200]));
        assert!(!is_rtcp(&[0x80, 96 | 0x80]));
        assert!(!is_rtcp(&[0x80]));
    }

    /// SR with blocks, RR and BYE round-trip; negative cumulative loss keeps its sign.
    #[test]
    fn rtcp_compound_round_trip() {
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 64,
            cumulative_lost: -3,
            highest_seq: 0x0001_0005,
            jitter: 42,
            lsr: 0x1234_5678,
            dlsr: 65536,
        };
        let pkts = vec![
            RtcpPacket::SenderReport(SenderReport {
                ssrc: 1,
                ntp: 0x0102_0304_0506_0708,
                rtp_ts: 160,
                packet_count: 10,
                octet_count: 1600,
                reports: vec![block],
            }),
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 2,
                reports: vec![block, block],
            }),
            RtcpPacket::Bye(Bye {
                sources: vec![1],
                reason: Some("bye".into()),
            }),
        ];
        let bytes = RtcpPacket::build_compound(&pkts).expect("ok");
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(RtcpPacket::parse_compound(&bytes), Ok(pkts));
        let mut bad = bytes.clone();
        bad[3] = 0xff;
        assert_eq!(
            RtcpPacket::parse_compound(&bad),
            Err(RtpError::BadRtcpLength)
        );
    }

    /// Loss fraction, cumulative loss and jitter follow RFC 3550 A.3/A.8.
    #[test]
    fn receive_stats_loss_and_jitter() {
        let mut s = ReceiveStats::default();
        // 20 packets of 160 samples, every 5th lost, across the sequence wrap; constant delay.
        for i in 0..20u16 {
            if i % 5 == 4 {
                continue;
            }
            let seq = 65530u16.wrapping_add(i);
            let ts = u32::from(i) * 160;
            s.record(seq, ts, u64::from(ts) + 800);
        }
        let b = s.report_block(9, 0, 0);
        assert_eq!(s.expected(), 19);
        assert_eq!(b.cumulative_lost, 3);
        assert_eq!(b.fraction_lost, (3 * 256 / 19) as u8);
        assert_eq!(b.jitter, 0);
        assert_eq!(b.highest_seq, 0x0001_0000 + 12);
        // Second interval: delay alternates between +0 and +160 units.
        for i in 20..220u16 {
            let seq = 65530u16.wrapping_add(i);
            let ts = u32::from(i) * 160;
            let jit = if i % 2 == 0 { 0 } else { 160 };
            s.record(seq, ts, u64::from(ts) + 800 + jit);
        }
        let b2 = s.report_block(9, 0, 0);
        // Packet 19 of the first interval never came: 1 lost of 201 expected.
        assert_eq!(b2.fraction_lost, (256 / 201) as u8);
        // |D| is 160 every packet; J converges to 160.
        assert!((150..=160).contains(&b2.jitter), "jitter {}", b2.jitter);
    }

    /// RTT from LSR/DLSR: 100 ms between SR send and RR arrival minus 40 ms hold = 60 ms.
    #[test]
    fn rtt_from_lsr_dlsr() {
        let sr_ntp: u64 = 1000 << 32;
        let arrival = sr_ntp + (1u64 << 32) / 10; // +100 ms
        let block = ReportBlock {
            lsr: ntp_middle(sr_ntp),
            dlsr: 65536 * 40 / 1000,
            ..ReportBlock::default()
        };
        let rtt = rtt_from_block(&block, arrival).expect("has lsr");
        assert!((59..=61).contains(&rtt.as_millis()), "{rtt:?}");
    }
}
