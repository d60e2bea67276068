//! The PBX leg's video for passthrough (sans-IO): plain RTP video towards the PBX,
//! frames towards the WebRTC leg.
//!
//! Video is never decoded. str0m hands the browser's video out as whole frames and
//! packetizes the frames we give it, so this leg does the same on the PBX side: it
//! reassembles the PBX's RTP packets into frames (VP8, RFC 7741; H.264 single NAL,
//! STAP-A and FU-A, RFC 6184) and cuts frames from the browser into RTP packets of at
//! most [`VideoLegConfig::mtu`] payload bytes, on its own SSRC, sequence numbers and
//! timestamps. Symmetric RTP latches to the address the PBX really sends from, as for
//! audio ([`crate::rtp_leg`]).
//!
//! Receiving has a small reorder buffer ([`REORDER_WINDOW`]) but no jitter buffer: the far
//! decoder dejitters. A frame that cannot be completed (a packet lost or late) is dropped,
//! counted, and answered with a keyframe request towards the PBX (rate-limited by
//! [`KeyframeForwarder`]), since the frames after it do not decode without a new keyframe.
//! Keyframe requests from the PBX (PLI or FIR in its RTCP) come out as
//! [`VideoLegEvent::KeyframeRequest`] for the owner to pass to the browser.
//!
//! # Errors vs panics
//!
//! Malformed RTP, RTCP and payload descriptors are counted ([`VideoLegStats::malformed`])
//! and dropped; nothing from the network panics. The buffer is bounded
//! ([`MAX_PENDING_PACKETS`]) so a flood of never-completing frames cannot grow it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::keyframe::{KeyframeForwarder, KeyframeRequest};
use crate::rtp::{
    self, Admit, ReceiveStats, ReceiverReport, RtcpPacket, RtpHeader, RtpPacket, SenderReport,
    SymmetricPeer,
};
use crate::rtp_leg::Transmit;
use crate::sdp::VideoCodec;

/// How long an incomplete frame waits for a missing (reordered) packet after its
/// latest packet arrived, before it is given up.
pub const REORDER_WINDOW: Duration = Duration::from_millis(50);

/// Upper bound on packets held for incomplete frames.
pub const MAX_PENDING_PACKETS: usize = 2048;

/// Payload bytes per RTP packet we send by default (fits a 1500-byte path with room for
/// IP, UDP, RTP and SRTP overhead on the other leg).
pub const DEFAULT_MTU: usize = 1200;

/// Video RTP clock (RFC 7741, RFC 6184).
pub const VIDEO_CLOCK: u32 = 90_000;

/// A payload that cannot be depacketized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    /// The RTP payload is empty.
    #[error("empty video payload")]
    Empty,
    /// The VP8 payload descriptor is cut short.
    #[error("truncated vp8 payload descriptor")]
    TruncatedVp8,
    /// An H.264 STAP-A or FU-A packet is cut short.
    #[error("truncated h264 packet")]
    TruncatedH264,
    /// An H.264 packet type we do not take (STAP-B, MTAP, FU-B, reserved).
    #[error("unsupported h264 nal unit type {0}")]
    UnsupportedNal(u8),
    /// An FU-A continuation without its start fragment.
    #[error("h264 fragment without its start")]
    OrphanFragment,
}

/// One encoded video frame: the payloads of every packet with one RTP timestamp.
///
/// VP8 frames are the bare VP8 bitstream; H.264 frames are Annex B (each NAL unit after a
/// `00 00 00 01` start code), which is what str0m reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// RTP timestamp (90 kHz) on the leg it came from.
    pub rtp_time: u32,
    /// An intra frame (VP8 key frame, H.264 IDR): decodable on its own.
    pub keyframe: bool,
    /// The frame bytes.
    pub data: Vec<u8>,
}

/// What a VP8 payload descriptor says (RFC 7741 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Payload<'a> {
    /// S bit with partition index 0: the first packet of a frame.
    pub frame_start: bool,
    /// The 7- or 15-bit PictureID, if present.
    pub picture_id: Option<u16>,
    /// The VP8 bytes after the descriptor.
    pub data: &'a [u8],
}

/// Parses a VP8 RTP payload descriptor.
///
/// # Errors
/// [`VideoError::Empty`] or [`VideoError::TruncatedVp8`].
pub fn vp8_parse(payload: &[u8]) -> Result<Vp8Payload<'_>, VideoError> {
    let (&b0, mut rest) = payload.split_first().ok_or(VideoError::Empty)?;
    let frame_start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let mut picture_id = None;
    if b0 & 0x80 != 0 {
        let (&x, r) = rest.split_first().ok_or(VideoError::TruncatedVp8)?;
        rest = r;
        if x & 0x80 != 0 {
            let (&p0, r) = rest.split_first().ok_or(VideoError::TruncatedVp8)?;
            rest = r;
            if p0 & 0x80 != 0 {
                let (&p1, r) = rest.split_first().ok_or(VideoError::TruncatedVp8)?;
                rest = r;
                picture_id = Some(u16::from(p0 & 0x7f) << 8 | u16::from(p1));
            } else {
                picture_id = Some(u16::from(p0));
            }
        }
        // L: TL0PICIDX; T or K: TID/Y/KEYIDX
        for present in [x & 0x40 != 0, x & 0x30 != 0] {
            if present {
                rest = rest.get(1..).ok_or(VideoError::TruncatedVp8)?;
            }
        }
    }
    Ok(Vp8Payload {
        frame_start,
        picture_id,
        data: rest,
    })
}

/// Whether a VP8 frame is a key frame (RFC 6386 9.1: P bit clear in the frame tag).
pub fn vp8_is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// Cuts VP8 frames into RTP payloads with a 15-bit PictureID that counts frames.
#[derive(Debug, Clone, Default)]
pub struct Vp8Packetizer {
    picture_id: u16,
}

impl Vp8Packetizer {
    /// A packetizer whose first PictureID is `first` (only the low 15 bits count).
    pub fn new(first: u16) -> Self {
        Self {
            picture_id: first & 0x7fff,
        }
    }

    /// The payloads for one frame, each at most `mtu` bytes (at least 5). An empty frame
    /// gives no packets.
    pub fn packetize(&mut self, frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
        const DESCRIPTOR: usize = 4;
        let chunk = mtu.max(DESCRIPTOR + 1) - DESCRIPTOR;
        let pid = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, part)| {
                let mut p = Vec::with_capacity(DESCRIPTOR + part.len());
                // X, S on the first packet, PID 0; I with the 15-bit (M) PictureID
                p.push(if i == 0 { 0x90 } else { 0x80 });
                p.push(0x80);
                p.push(0x80 | (pid >> 8) as u8);
                p.push(pid as u8);
                p.extend_from_slice(part);
                p
            })
            .collect()
    }
}

const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;
const NAL_IDR: u8 = 5;
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Appends the NAL units of one H.264 RTP payload to `out` in Annex B form. `in_fu`
/// carries whether an FU-A is open between the packets of one frame.
///
/// # Errors
/// A [`VideoError`] for empty, truncated or unsupported packets and orphan fragments.
pub fn h264_depacketize(
    payload: &[u8],
    in_fu: &mut bool,
    out: &mut Vec<u8>,
) -> Result<(), VideoError> {
    let &b0 = payload.first().ok_or(VideoError::Empty)?;
    match b0 & 0x1f {
        1..=23 => {
            *in_fu = false;
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(payload);
        }
        NAL_STAP_A => {
            *in_fu = false;
            let mut rest = &payload[1..];
            if rest.is_empty() {
                return Err(VideoError::TruncatedH264);
            }
            while !rest.is_empty() {
                let len = rest
                    .get(..2)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                    .ok_or(VideoError::TruncatedH264)?;
                let nal = rest.get(2..2 + len).ok_or(VideoError::TruncatedH264)?;
                if nal.is_empty() {
                    return Err(VideoError::TruncatedH264);
                }
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(nal);
                rest = &rest[2 + len..];
            }
        }
        NAL_FU_A => {
            let &hdr = payload.get(1).ok_or(VideoError::TruncatedH264)?;
            let (start, end) = (hdr & 0x80 != 0, hdr & 0x40 != 0);
            if start {
                out.extend_from_slice(&START_CODE);
                out.push((b0 & 0xe0) | (hdr & 0x1f));
            } else if !*in_fu {
                return Err(VideoError::OrphanFragment);
            }
            out.extend_from_slice(&payload[2..]);
            *in_fu = !end;
        }
        t => return Err(VideoError::UnsupportedNal(t)),
    }
    Ok(())
}

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes), without them.
pub fn annex_b_nals(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &(_, from)) in starts.iter().enumerate() {
        let mut to = starts.get(k + 1).map_or(stream.len(), |&(at, _)| at);
        // a 4-byte start code's leading zero belongs to the code, not the NAL
        while to > from && stream[to - 1] == 0 && k + 1 < starts.len() {
            to -= 1;
        }
        if to > from {
            nals.push(&stream[from..to]);
        }
    }
    nals
}

/// Whether an Annex B H.264 frame holds an IDR slice.
pub fn h264_is_keyframe(frame: &[u8]) -> bool {
    annex_b_nals(frame).iter().any(|n| n[0] & 0x1f == NAL_IDR)
}

/// Cuts an Annex B H.264 frame into RTP payloads (packetization-mode 1): NAL units that
/// fit go as single NAL packets, larger ones as FU-A fragments of at most `mtu` bytes.
pub fn h264_packetize(frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let mtu = mtu.max(3);
    let mut out = Vec::new();
    for nal in annex_b_nals(frame) {
        if nal.len() <= mtu {
            out.push(nal.to_vec());
            continue;
        }
        let (head, body) = (nal[0], &nal[1..]);
        let chunks: Vec<&[u8]> = body.chunks(mtu - 2).collect();
        let last = chunks.len() - 1;
        for (i, part) in chunks.into_iter().enumerate() {
            let mut p = Vec::with_capacity(2 + part.len());
            p.push((head & 0xe0) | NAL_FU_A);
            let se = if i == 0 { 0x80 } else { 0 } | if i == last { 0x40 } else { 0 };
            p.push(se | (head & 0x1f));
            p.extend_from_slice(part);
            out.push(p);
        }
    }
    out
}

/// Whether a packet can begin a frame on its own (without knowing the previous frame's
/// last sequence number).
fn starts_frame(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_parse(payload).is_ok_and(|p| p.frame_start),
        VideoCodec::H264 => match payload.first().map(|b| b & 0x1f) {
            Some(NAL_FU_A) => payload.get(1).is_some_and(|h| h & 0x80 != 0),
            Some(_) => true,
            None => false,
        },
    }
}

/// Joins the ordered payloads of one frame.
fn depacketize(
    codec: VideoCodec,
    rtp_time: u32,
    payloads: &[Vec<u8>],
) -> Result<VideoFrame, VideoError> {
    let mut data = Vec::with_capacity(payloads.iter().map(Vec::len).sum::<usize>() + 16);
    match codec {
        VideoCodec::Vp8 => {
            for p in payloads {
                data.extend_from_slice(vp8_parse(p)?.data);
            }
            Ok(VideoFrame {
                rtp_time,
                keyframe: vp8_is_keyframe(&data),
                data,
            })
        }
        VideoCodec::H264 => {
            let mut in_fu = false;
            for p in payloads {
                h264_depacketize(p, &mut in_fu, &mut data)?;
            }
            Ok(VideoFrame {
                rtp_time,
                keyframe: h264_is_keyframe(&data),
                data,
            })
        }
    }
}

/// Packets of one RTP timestamp waiting for the rest of their frame.
#[derive(Debug)]
struct Pending {
    ts: u32,
    last_arrival: Instant,
    /// (sequence number, marker, payload), kept in sequence order.
    packets: Vec<(u16, bool, Vec<u8>)>,
}

/// What the reorder buffer did with a packet or a timeout.
#[derive(Debug, Default)]
struct Assembled {
    frames: Vec<VideoFrame>,
    /// Frames given up (lost or late packets, or undecodable payloads).
    lost: u64,
    malformed: u64,
}

/// The reorder buffer: packets in, whole frames out, in timestamp order.
#[derive(Debug)]
struct Assembler {
    codec: VideoCodec,
    pending: Vec<Pending>,
    /// Timestamp of the newest frame emitted or given up; older packets are late.
    last_ts: Option<u32>,
    /// Sequence number of the last packet of the newest frame emitted.
    last_seq: Option<u16>,
}

impl Assembler {
    fn new(codec: VideoCodec) -> Self {
        Self {
            codec,
            pending: Vec::new(),
            last_ts: None,
            last_seq: None,
        }
    }

    fn packet_count(&self) -> usize {
        self.pending.iter().map(|p| p.packets.len()).sum()
    }

    /// Takes one packet; returns false when it is late (its frame is gone already).
    fn insert(
        &mut self,
        now: Instant,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: Vec<u8>,
        out: &mut Assembled,
    ) -> bool {
        if self
            .last_ts
            .is_some_and(|last| rtp::ts_delta(ts, last) <= 0)
        {
            return false;
        }
        if self.packet_count() >= MAX_PENDING_PACKETS {
            // a flood of frames that never complete: start over
            out.lost += self.pending.len() as u64;
            self.pending.clear();
        }
        let i = match self.pending.iter().position(|p| p.ts == ts) {
            Some(i) => i,
            None => {
                self.pending.push(Pending {
                    ts,
                    last_arrival: now,
                    packets: Vec::new(),
                });
                self.pending.len() - 1
            }
        };
        let group = &mut self.pending[i];
        group.last_arrival = now;
        let base = group.packets.first().map_or(seq, |p| p.0);
        let at = group
            .packets
            .partition_point(|p| rtp::seq_delta(p.0, base) < rtp::seq_delta(seq, base));
        if group.packets.get(at).is_some_and(|p| p.0 == seq) {
            return true; // a duplicate
        }
        group.packets.insert(at, (seq, marker, payload));
        self.flush(now, out);
        true
    }

    fn is_complete(&self, g: &Pending) -> bool {
        let (Some(first), Some(last)) = (g.packets.first(), g.packets.last()) else {
            return false;
        };
        let contiguous = g
            .packets
            .windows(2)
            .all(|w| w[1].0 == w[0].0.wrapping_add(1));
        let starts = self.last_seq.is_some_and(|s| first.0 == s.wrapping_add(1))
            || starts_frame(self.codec, &first.2);
        contiguous && last.1 && starts
    }

    /// Index of the pending frame with the oldest timestamp.
    fn oldest(&self) -> Option<usize> {
        (0..self.pending.len())
            .min_by(|&a, &b| rtp::ts_delta(self.pending[a].ts, self.pending[b].ts).cmp(&0))
    }

    /// Hands out frames in timestamp order: the oldest pending frame goes out once
    /// complete, or is given up once it waited a whole window since its latest packet;
    /// newer complete frames wait behind it meanwhile.
    fn flush(&mut self, now: Instant, out: &mut Assembled) {
        while let Some(i) = self.oldest() {
            if self.is_complete(&self.pending[i]) {
                let g = self.pending.swap_remove(i);
                self.last_ts = Some(g.ts);
                self.last_seq = g.packets.last().map(|p| p.0);
                let payloads: Vec<Vec<u8>> = g.packets.into_iter().map(|p| p.2).collect();
                match depacketize(self.codec, g.ts, &payloads) {
                    Ok(f) => out.frames.push(f),
                    Err(_) => {
                        out.malformed += 1;
                        out.lost += 1;
                    }
                }
            } else if now.saturating_duration_since(self.pending[i].last_arrival) >= REORDER_WINDOW
            {
                let g = self.pending.swap_remove(i);
                out.lost += 1;
                self.last_ts = Some(g.ts);
                // the next frame's start is known only from its own first packet
                self.last_seq = None;
            } else {
                return;
            }
        }
    }

    /// Gives up the oldest frame once it waited a whole window, and what then can go.
    fn handle_timeout(&mut self, now: Instant, out: &mut Assembled) {
        self.flush(now, out);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .iter()
            .map(|p| p.last_arrival + REORDER_WINDOW)
            .min()
    }
}

/// Static configuration of a video leg, from [`crate::sdp::NegotiatedVideo`] and the
/// PBX's SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoLegConfig {
    /// Our SSRC on this leg.
    pub ssrc: u32,
    /// The shared codec.
    pub codec: VideoCodec,
    /// Its payload type on this leg.
    pub pt: u8,
    /// Where the SDP says to send video RTP.
    pub remote: SocketAddr,
    /// RTCP on the RTP port.
    pub rtcp_mux: bool,
    /// Latch to the observed source address (symmetric RTP).
    pub symmetric: bool,
    /// Ask the PBX for keyframes with FIR instead of PLI (it listed only `ccm fir`).
    pub use_fir: bool,
    /// Largest RTP payload we send.
    pub mtu: usize,
    /// Interval between RTCP reports.
    pub rtcp_interval: Duration,
    /// First sequence number to send.
    pub initial_seq: u16,
    /// First RTP timestamp to send.
    pub initial_ts: u32,
    /// NTP time (RFC 5905 64-bit format) at the `now` given to [`VideoLeg::new`].
    pub ntp_at_start: u64,
}

impl VideoLegConfig {
    /// A configuration with defaults: symmetric RTP, PLI, [`DEFAULT_MTU`], RTCP every 5 s.
    pub fn new(ssrc: u32, codec: VideoCodec, pt: u8, remote: SocketAddr) -> Self {
        Self {
            ssrc,
            codec,
            pt,
            remote,
            rtcp_mux: false,
            symmetric: true,
            use_fir: false,
            mtu: DEFAULT_MTU,
            rtcp_interval: Duration::from_secs(5),
            initial_seq: 0,
            initial_ts: 0,
            ntp_at_start: 0,
        }
    }
}

/// Something the owner should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoLegEvent {
    /// A whole frame from the PBX, in order: write it to the WebRTC leg.
    Frame(VideoFrame),
    /// The PBX asked for a keyframe (PLI or FIR): ask the browser's encoder. At most one
    /// per [`KeyframeForwarder::MIN_INTERVAL`].
    KeyframeRequest,
    /// Symmetric RTP latched to this source.
    Latched(SocketAddr),
    /// The PBX sent RTCP BYE.
    Bye,
}

/// Counters of one video leg.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoLegStats {
    /// RTP packets sent.
    pub packets_sent: u64,
    /// RTP payload octets sent.
    pub bytes_sent: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// RTP packets accepted from the PBX.
    pub packets_received: u64,
    /// RTP payload octets accepted from the PBX.
    pub bytes_received: u64,
    /// Whole frames handed out.
    pub frames_received: u64,
    /// Frames given up (a packet lost, late or undecodable).
    pub frames_lost: u64,
    /// Packets that came after their frame was given up or played.
    pub late: u64,
    /// Datagrams or payloads that failed to parse.
    pub malformed: u64,
    /// Datagrams from an unexpected source.
    pub unexpected_source: u64,
    /// RTP packets with a payload type we did not negotiate.
    pub unknown_pt: u64,
    /// Keyframe requests we sent to the PBX.
    pub keyframe_requests_sent: u64,
    /// Keyframe requests the PBX sent us.
    pub keyframe_requests_received: u64,
}

/// One video RTP session towards the PBX. See the module docs.
#[derive(Debug)]
pub struct VideoLeg {
    cfg: VideoLegConfig,
    start: Instant,
    peer: SymmetricPeer,
    remote_ssrc: Option<u32>,
    assembler: Assembler,
    vp8: Vp8Packetizer,
    seq: u16,
    /// First input RTP time (the source's clock) and our timestamp for it.
    ts_base: Option<(u64, u32)>,
    /// Our latest timestamp and when it was sent (for SR).
    last_send: Option<(Instant, u32)>,
    recv: ReceiveStats,
    /// Our keyframe requests to the PBX (rate-limited, addressed to its SSRC).
    requests_out: KeyframeForwarder,
    /// When we last passed on a PBX keyframe request.
    last_request_in: Option<Instant>,
    next_rtcp: Instant,
    last_sr: Option<(u32, Instant)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<VideoLegEvent>,
    stats: VideoLegStats,
}

impl VideoLeg {
    /// Creates a leg at time `now`.
    pub fn new(now: Instant, cfg: VideoLegConfig) -> Self {
        Self {
            start: now,
            peer: SymmetricPeer::new(cfg.remote, cfg.symmetric, cfg.rtcp_mux),
            remote_ssrc: None,
            assembler: Assembler::new(cfg.codec),
            vp8: Vp8Packetizer::new(cfg.initial_seq),
            seq: cfg.initial_seq,
            ts_base: None,
            last_send: None,
            recv: ReceiveStats::default(),
            requests_out: KeyframeForwarder::new(cfg.ssrc, 0, cfg.use_fir),
            last_request_in: None,
            next_rtcp: now + cfg.rtcp_interval / 2,
            last_sr: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: VideoLegStats::default(),
            cfg,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &VideoLegConfig {
        &self.cfg
    }

    /// Current counters.
    pub fn stats(&self) -> VideoLegStats {
        self.stats
    }

    /// The PBX encoder's SSRC, once it sent.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.remote_ssrc
    }

    /// Address video is sent to now (latched source, else the SDP address).
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

    /// Feeds one datagram that arrived on the video socket (RTP or RTCP).
    pub fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if rtp::is_rtcp(data) {
            self.handle_rtcp(now, from, data);
            return;
        }
        let Ok(pkt) = RtpPacket::parse(data) else {
            self.stats.malformed += 1;
            return;
        };
        match self.peer.admit_rtp(from) {
            Admit::Refuse => {
                self.stats.unexpected_source += 1;
                return;
            }
            Admit::Latched => self.events.push_back(VideoLegEvent::Latched(from)),
            Admit::Accept => {}
        }
        let h = &pkt.header;
        if h.payload_type != self.cfg.pt {
            self.stats.unknown_pt += 1;
            return;
        }
        if pkt.payload.is_empty() {
            self.stats.malformed += 1;
            return;
        }
        if self.remote_ssrc != Some(h.ssrc) {
            // a new encoder (first packet, or the PBX switched source): start over
            self.remote_ssrc = Some(h.ssrc);
            self.recv = ReceiveStats::default();
            self.assembler = Assembler::new(self.cfg.codec);
            self.requests_out.set_media_ssrc(h.ssrc);
        }
        let arrival = now.saturating_duration_since(self.start).as_micros() as u64
            * u64::from(VIDEO_CLOCK)
            / 1_000_000;
        self.recv.record(h.sequence, h.timestamp, arrival);
        self.stats.packets_received += 1;
        self.stats.bytes_received += pkt.payload.len() as u64;
        let mut out = Assembled::default();
        let (seq, ts, marker) = (h.sequence, h.timestamp, h.marker);
        if !self
            .assembler
            .insert(now, seq, ts, marker, pkt.payload, &mut out)
        {
            self.stats.late += 1;
        }
        self.absorb(now, out);
    }

    /// Counts what the reorder buffer did, hands out frames, asks for a keyframe on loss.
    fn absorb(&mut self, now: Instant, out: Assembled) {
        self.stats.malformed += out.malformed;
        self.stats.frames_lost += out.lost;
        for f in out.frames {
            self.stats.frames_received += 1;
            self.events.push_back(VideoLegEvent::Frame(f));
        }
        if out.lost > 0 {
            self.request_keyframe(now);
        }
    }

    fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Ok(pkts) = RtcpPacket::parse_compound(data) else {
            self.stats.malformed += 1;
            return;
        };
        if !self.peer.admit_rtcp(from) {
            self.stats.unexpected_source += 1;
            return;
        }
        for p in &pkts {
            match p {
                RtcpPacket::SenderReport(sr) => {
                    self.last_sr = Some((rtp::ntp_middle(sr.ntp), now));
                }
                RtcpPacket::Bye(_) => self.events.push_back(VideoLegEvent::Bye),
                // RFC 2032 FIR (PT 192), which older phones still send
                RtcpPacket::Other {
                    packet_type: 192, ..
                } => self.keyframe_request_in(now),
                other => {
                    if KeyframeRequest::from_rtcp(other).is_some() {
                        self.keyframe_request_in(now);
                    }
                }
            }
        }
    }

    /// A keyframe request from the PBX: passed on once per interval.
    fn keyframe_request_in(&mut self, now: Instant) {
        self.stats.keyframe_requests_received += 1;
        let due = self
            .last_request_in
            .is_none_or(|t| now.saturating_duration_since(t) >= KeyframeForwarder::MIN_INTERVAL);
        if due {
            self.last_request_in = Some(now);
            self.events.push_back(VideoLegEvent::KeyframeRequest);
        }
    }

    /// Asks the PBX's encoder for a keyframe (PLI, or FIR when configured); returns false
    /// when held back by the rate limit or before the PBX sent anything to address.
    pub fn request_keyframe(&mut self, now: Instant) -> bool {
        if self.remote_ssrc.is_none() {
            return false;
        }
        let Some(req) = self.requests_out.request(now) else {
            return false;
        };
        self.stats.keyframe_requests_sent += 1;
        self.transmits.push_back(Transmit {
            destination: self.rtcp_destination(),
            rtcp: true,
            data: req,
        });
        true
    }

    /// Sends one frame from the other leg. `rtp_time` is its 90 kHz time there (extended,
    /// as str0m gives it); it is rebased onto our own timestamps.
    pub fn send_frame(&mut self, now: Instant, rtp_time: u64, frame: &[u8]) {
        let (base_in, base_out) = *self.ts_base.get_or_insert((rtp_time, self.cfg.initial_ts));
        let ts = base_out.wrapping_add(rtp_time.wrapping_sub(base_in) as u32);
        let payloads = match self.cfg.codec {
            VideoCodec::Vp8 => self.vp8.packetize(frame, self.cfg.mtu),
            VideoCodec::H264 => h264_packetize(frame, self.cfg.mtu),
        };
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.into_iter().enumerate() {
            let pkt = RtpPacket {
                header: RtpHeader {
                    marker: i == last,
                    payload_type: self.cfg.pt,
                    sequence: self.seq,
                    timestamp: ts,
                    ssrc: self.cfg.ssrc,
                    ..RtpHeader::default()
                },
                payload,
                padding: 0,
            };
            self.seq = self.seq.wrapping_add(1);
            if let Ok(data) = pkt.to_bytes() {
                self.stats.packets_sent += 1;
                self.stats.bytes_sent += pkt.payload.len() as u64;
                self.transmits.push_back(Transmit {
                    destination: self.destination(),
                    rtcp: false,
                    data,
                });
            }
        }
        if last > 0 || !frame.is_empty() {
            self.stats.frames_sent += 1;
            self.last_send = Some((now, ts));
        }
    }

    fn ntp(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.start);
        let frac = ((u128::from(d.subsec_nanos()) << 32) / 1_000_000_000) as u64;
        self.cfg
            .ntp_at_start
            .wrapping_add((d.as_secs() << 32) | frac)
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
        match self.last_send {
            Some((at, ts)) => {
                let el = now.saturating_duration_since(at).as_micros() as u64;
                RtcpPacket::SenderReport(SenderReport {
                    ssrc: self.cfg.ssrc,
                    ntp: self.ntp(now),
                    rtp_ts: ts.wrapping_add((el * u64::from(VIDEO_CLOCK) / 1_000_000) as u32),
                    packet_count: self.stats.packets_sent as u32,
                    octet_count: self.stats.bytes_sent as u32,
                    reports: blocks,
                })
            }
            None => RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.cfg.ssrc,
                reports: blocks,
            }),
        }
    }

    fn queue_rtcp(&mut self, pkts: &[RtcpPacket]) {
        let dest = self.rtcp_destination();
        self.transmits.extend(Transmit::rtcp(dest, pkts));
    }

    /// Sends RTCP BYE (call teardown).
    pub fn send_bye(&mut self, now: Instant) {
        let r = self.report(now);
        self.queue_rtcp(&[
            r,
            RtcpPacket::Bye(rtp::Bye {
                sources: vec![self.cfg.ssrc],
                reason: None,
            }),
        ]);
    }

    /// Advances timers: gives up frames past the reorder window, sends RTCP when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut out = Assembled::default();
        self.assembler.handle_timeout(now, &mut out);
        self.absorb(now, out);
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
    pub fn poll_event(&mut self) -> Option<VideoLegEvent> {
        self.events.pop_front()
    }

    /// When to call [`VideoLeg::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Instant {
        match self.assembler.poll_timeout() {
            Some(t) => t.min(self.next_rtcp),
            None => self.next_rtcp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    const PBX: &str = "192.0.2.10:17002";

    /// A pseudo-random frame (deterministic xorshift), first byte chosen by the caller.
    fn frame(len: usize, first: u8, seed: u32) -> Vec<u8> {
        let mut x = seed | 1;
        let mut v: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        if let Some(b) = v.first_mut() {
            *b = first;
        }
        v
    }

    fn rtp(seq: u16, ts: u32, marker: bool, pt: u8, payload: Vec<u8>) -> Vec<u8> {
        RtpPacket {
            header: RtpHeader {
                marker,
                payload_type: pt,
                sequence: seq,
                timestamp: ts,
                ssrc: 0xbbbb,
                ..RtpHeader::default()
            },
            payload,
            padding: 0,
        }
        .to_bytes()
        .expect("valid")
    }

    fn frames(l: &mut VideoLeg) -> Vec<VideoFrame> {
        std::iter::from_fn(|| l.poll_event())
            .filter_map(|e| match e {
                VideoLegEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    /// VP8: a 5000-byte key frame becomes five packets with S only on the first, one
    /// PictureID per frame (15-bit, wrapping), no payload over the MTU; they join back
    /// byte for byte, and the key frame flag follows the frame tag's P bit.
    #[test]
    fn vp8_round_trip() {
        let mut p = Vp8Packetizer::new(0x7fff);
        let key = frame(5000, 0x10, 7);
        let pkts = p.packetize(&key, 1200);
        assert_eq!(pkts.len(), 5);
        assert!(pkts.iter().all(|x| x.len() <= 1200));
        let parsed: Vec<Vp8Payload<'_>> = pkts
            .iter()
            .map(|x| vp8_parse(x).expect("own packet"))
            .collect();
        assert_eq!(
            parsed.iter().map(|x| x.frame_start).collect::<Vec<_>>(),
            [true, false, false, false, false]
        );
        assert!(parsed.iter().all(|x| x.picture_id == Some(0x7fff)));
        let joined: Vec<u8> = parsed.iter().flat_map(|x| x.data.iter().copied()).collect();
        assert_eq!(joined, key);
        assert!(vp8_is_keyframe(&joined));
        let delta = frame(300, 0x11, 9);
        let pkts = p.packetize(&delta, 1200);
        let d = vp8_parse(&pkts[0]).expect("own packet");
        assert_eq!((d.picture_id, d.frame_start), (Some(0), true));
        assert!(!vp8_is_keyframe(d.data));
        // a 7-bit PictureID, TL0PICIDX and TID/KEYIDX as Chrome or libvpx may send them
        let chrome = [0x90, 0xe0, 0x05, 0x33, 0x40, 0xaa, 0xbb];
        let c = vp8_parse(&chrome).expect("valid");
        assert_eq!((c.picture_id, c.data), (Some(5), &[0xaa, 0xbb][..]));
        assert_eq!(p.packetize(&[], 1200), Vec::<Vec<u8>>::new());
    }

    /// H.264: SPS and PPS go as single NAL packets, a 3000-byte IDR as FU-A fragments;
    /// they join back into the same Annex B frame, flagged as a keyframe. A STAP-A from
    /// a phone unpacks into its NAL units.
    #[test]
    fn h264_round_trip_and_stap_a() {
        let sps = [0x67, 0x42, 0xe0, 0x1f, 0xda];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let idr = frame(3000, 0x65, 3);
        let mut annex_b = Vec::new();
        for n in [&sps[..], &pps[..], &idr[..]] {
            annex_b.extend_from_slice(&START_CODE);
            annex_b.extend_from_slice(n);
        }
        let pkts = h264_packetize(&annex_b, 1200);
        assert_eq!(pkts.len(), 2 + 3);
        assert!(pkts.iter().all(|p| p.len() <= 1200));
        assert_eq!(pkts[2][0] & 0x1f, NAL_FU_A);
        assert_eq!((pkts[2][1] & 0xc0, pkts[4][1] & 0xc0), (0x80, 0x40));
        let f = depacketize(VideoCodec::H264, 90, &pkts).expect("own packets");
        assert_eq!(f.data, annex_b);
        assert!(f.keyframe);
        // 3-byte start codes are read too
        let short = [0, 0, 1, 0x41, 9, 9, 0, 0, 1, 0x41, 8];
        assert_eq!(
            annex_b_nals(&short),
            vec![&[0x41, 9, 9][..], &[0x41, 8][..]]
        );
        assert!(!h264_is_keyframe(&short));
        let mut stap = vec![0x18];
        for n in [&sps[..], &pps[..]] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        let mut out = Vec::new();
        h264_depacketize(&stap, &mut false, &mut out).expect("valid stap-a");
        assert_eq!(annex_b_nals(&out), vec![&sps[..], &pps[..]]);
    }

    /// Malformed payloads are errors, never panics: truncated descriptors, STAP-A lengths
    /// past the end, a fragment without its start, unsupported NAL types, and random bytes.
    #[test]
    fn malformed_payloads_are_errors() {
        assert_eq!(vp8_parse(&[]), Err(VideoError::Empty));
        for bad in [
            &[0x80][..],
            &[0x80, 0x80],
            &[0x80, 0x80, 0x80],
            &[0x80, 0x40],
        ] {
            assert_eq!(vp8_parse(bad), Err(VideoError::TruncatedVp8), "{bad:?}");
        }
        let mut out = Vec::new();
        let cases: [(&[u8], VideoError); 5] = [
            (&[0x18, 0, 9, 1], VideoError::TruncatedH264),
            (&[0x18], VideoError::TruncatedH264),
            (&[0x1c], VideoError::TruncatedH264),
            (&[0x1c, 0x05, 1, 2], VideoError::OrphanFragment),
            (&[0x1d, 0x85, 1], VideoError::UnsupportedNal(29)),
        ];
        for (bad, want) in cases {
            assert_eq!(h264_depacketize(bad, &mut false, &mut out), Err(want));
        }
        let mut x = 0x1234_5678u32;
        for len in 0..400 {
            let junk: Vec<u8> = (0..len % 40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = vp8_parse(&junk);
            let _ = h264_depacketize(&junk, &mut (len % 2 == 0), &mut out);
            let _ = annex_b_nals(&junk);
        }
    }

    /// Receive side: packets of two frames arrive out of order and from a NAT'ed port;
    /// the leg latches, reorders, and hands out both frames in order, intact.
    #[test]
    fn reorders_and_assembles_frames() {
        let t0 = Instant::now();
        let mut l = VideoLeg::new(
            t0,
            VideoLegConfig::new(0xaaaa, VideoCodec::Vp8, 100, addr(PBX)),
        );
        let mut p = Vp8Packetizer::new(1);
        let (f1, f2) = (frame(2500, 0x10, 1), frame(1500, 0x11, 2));
        let mut pkts: Vec<Vec<u8>> = Vec::new();
        let (mut seq, parts1) = (500u16, p.packetize(&f1, 1200));
        let n1 = parts1.len();
        for (i, x) in parts1.into_iter().enumerate() {
            pkts.push(rtp(seq, 3000, i + 1 == n1, 100, x));
            seq += 1;
        }
        let parts2 = p.packetize(&f2, 1200);
        let n2 = parts2.len();
        for (i, x) in parts2.into_iter().enumerate() {
            pkts.push(rtp(seq, 6000, i + 1 == n2, 100, x));
            seq += 1;
        }
        let nat = addr("203.0.113.5:40002");
        for i in [1, 0, 3, 4, 2] {
            l.handle_input(t0, nat, &pkts[i]);
        }
        let events: Vec<VideoLegEvent> = std::iter::from_fn(|| l.poll_event()).collect();
        assert_eq!(events[0], VideoLegEvent::Latched(nat));
        let got: Vec<&VideoFrame> = events
            .iter()
            .filter_map(|e| match e {
                VideoLegEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].rtp_time, got[0].keyframe, &got[0].data),
            (3000, true, &f1)
        );
        assert_eq!(
            (got[1].rtp_time, got[1].keyframe, &got[1].data),
            (6000, false, &f2)
        );
        assert_eq!(l.stats().frames_received, 2);
        assert_eq!(l.stats().frames_lost, 0);
        // a repeat of an old packet is late; a stranger's packet is dropped
        l.handle_input(t0, nat, &pkts[0]);
        l.handle_input(t0, addr("198.51.100.1:9"), &pkts[0]);
        assert_eq!((l.stats().late, l.stats().unexpected_source), (1, 1));
        assert!(frames(&mut l).is_empty());
    }

    /// A lost packet: after the reorder window the frame is given up, counted, and one PLI
    /// (our SSRC, the PBX encoder's SSRC) goes to the PBX's RTCP port; the next frame
    /// still plays, and a second loss within 500 ms asks no second time.
    #[test]
    fn lost_packet_drops_frame_and_asks_for_keyframe() {
        let t0 = Instant::now();
        let mut l = VideoLeg::new(
            t0,
            VideoLegConfig::new(0xaaaa, VideoCodec::Vp8, 100, addr(PBX)),
        );
        let mut p = Vp8Packetizer::new(1);
        let from = addr(PBX);
        let f1 = p.packetize(&frame(2500, 0x10, 1), 1200);
        l.handle_input(t0, from, &rtp(10, 0, false, 100, f1[0].clone()));
        l.handle_input(t0, from, &rtp(12, 0, true, 100, f1[2].clone()));
        assert!(frames(&mut l).is_empty());
        let due = l.poll_timeout();
        assert!(due <= t0 + REORDER_WINDOW);
        l.handle_timeout(due);
        assert_eq!(l.stats().frames_lost, 1);
        let pli: Vec<Transmit> = std::iter::from_fn(|| l.poll_transmit()).collect();
        assert_eq!(pli.len(), 1);
        assert_eq!(
            (pli[0].rtcp, pli[0].destination),
            (true, addr("192.0.2.10:17003"))
        );
        assert_eq!(
            KeyframeRequest::from_compound(&pli[0].data),
            vec![KeyframeRequest::Pli {
                sender_ssrc: 0xaaaa,
                media_ssrc: 0xbbbb
            }]
        );
        // the late packet of the given-up frame is dropped; the next frame plays
        l.handle_input(due, from, &rtp(11, 0, false, 100, f1[1].clone()));
        let f2 = frame(800, 0x11, 4);
        let parts = p.packetize(&f2, 1200);
        l.handle_input(due, from, &rtp(13, 3000, true, 100, parts[0].clone()));
        assert_eq!(
            frames(&mut l).iter().map(|f| &f.data).collect::<Vec<_>>(),
            [&f2]
        );
        assert_eq!(l.stats().late, 1);
        // a frame with a hole, then a newer complete frame: it waits behind the hole for
        // the window, then the hole is given up and it plays
        let f3 = p.packetize(&frame(2000, 0x11, 5), 1200);
        l.handle_input(due, from, &rtp(14, 6000, false, 100, f3[0].clone()));
        let f4 = p.packetize(&frame(100, 0x11, 6), 1200);
        l.handle_input(due, from, &rtp(16, 9000, true, 100, f4[0].clone()));
        assert!(frames(&mut l).is_empty());
        l.handle_timeout(l.poll_timeout());
        assert_eq!(frames(&mut l).len(), 1);
        assert_eq!(l.stats().frames_lost, 2);
        assert!(
            l.poll_transmit().is_none(),
            "second request within 500 ms held back"
        );
        assert_eq!(l.stats().keyframe_requests_sent, 1);
    }

    /// Send side: frames from the browser go out on our SSRC, our continuous sequence
    /// numbers and timestamps rebased from the browser's clock, marker on each frame's
    /// last packet, to the latched address.
    #[test]
    fn send_rewrites_ssrc_seq_and_timestamps() {
        let t0 = Instant::now();
        let mut cfg = VideoLegConfig::new(0xaaaa, VideoCodec::Vp8, 100, addr(PBX));
        cfg.initial_seq = 65535;
        cfg.initial_ts = 4_294_967_000;
        let mut l = VideoLeg::new(t0, cfg);
        let browser_ts = 1u64 << 33;
        l.send_frame(t0, browser_ts, &frame(2000, 0x10, 1));
        l.send_frame(
            t0 + Duration::from_millis(33),
            browser_ts + 3000,
            &frame(100, 0x11, 2),
        );
        let sent: Vec<RtpPacket> = std::iter::from_fn(|| l.poll_transmit())
            .map(|t| {
                assert_eq!(t.destination, addr(PBX));
                RtpPacket::parse(&t.data).expect("own packet")
            })
            .collect();
        let h: Vec<(u32, u8, u16, u32, bool)> = sent
            .iter()
            .map(|p| {
                let h = &p.header;
                (h.ssrc, h.payload_type, h.sequence, h.timestamp, h.marker)
            })
            .collect();
        assert_eq!(
            h,
            [
                (0xaaaa, 100, 65535, 4_294_967_000, false),
                (0xaaaa, 100, 0, 4_294_967_000, true),
                (0xaaaa, 100, 1, 4_294_967_000u32.wrapping_add(3000), true),
            ]
        );
        assert_eq!(l.stats().frames_sent, 2);
        // the PBX leg's own depacketizer reads what we send
        let mut back = VideoLeg::new(t0, VideoLegConfig::new(1, VideoCodec::Vp8, 100, addr(PBX)));
        let src = addr("192.0.2.99:5000");
        for p in &sent {
            back.handle_input(t0, src, &p.to_bytes().expect("valid"));
        }
        assert_eq!(frames(&mut back).len(), 2);
    }

    /// RTCP from the PBX: a PLI or FIR becomes one keyframe request event (repeats within
    /// 500 ms are held back); an SR gives LSR to our RR, BYE is reported; garbage counts.
    #[test]
    fn pbx_keyframe_requests_and_rtcp() {
        let t0 = Instant::now();
        let mut l = VideoLeg::new(
            t0,
            VideoLegConfig::new(0xaaaa, VideoCodec::H264, 97, addr(PBX)),
        );
        let from = addr(PBX);
        l.handle_input(t0, from, &rtp(1, 0, true, 97, vec![0x65, 1, 2, 3]));
        let ms = |n| t0 + Duration::from_millis(n);
        let pli = KeyframeRequest::Pli {
            sender_ssrc: 0xbbbb,
            media_ssrc: 0xaaaa,
        }
        .to_bytes();
        let fir = KeyframeRequest::Fir {
            sender_ssrc: 0xbbbb,
            media_ssrc: 0xaaaa,
            seq: 1,
        }
        .to_bytes();
        l.handle_input(ms(10), addr("192.0.2.10:17003"), &pli);
        l.handle_input(ms(20), addr("192.0.2.10:17003"), &pli);
        l.handle_input(ms(700), addr("192.0.2.10:17003"), &fir);
        // an RFC 2032 FIR within the interval is counted, not passed on
        l.handle_input(
            ms(750),
            addr("192.0.2.10:17003"),
            &[0x80, 192, 0, 1, 0, 0, 0xbb, 0xbb],
        );
        let sr = RtcpPacket::SenderReport(SenderReport {
            ssrc: 0xbbbb,
            ntp: 0x0001_0002_0003_0000,
            ..SenderReport::default()
        });
        let bye = RtcpPacket::Bye(rtp::Bye {
            sources: vec![0xbbbb],
            reason: None,
        });
        let data = RtcpPacket::build_compound(&[sr, bye]).expect("valid");
        l.handle_input(ms(800), addr("192.0.2.10:17003"), &data);
        l.handle_input(ms(800), from, &[0x80, 0xc9, 0xff, 0xff]);
        let events: Vec<VideoLegEvent> = std::iter::from_fn(|| l.poll_event()).collect();
        let requests = events
            .iter()
            .filter(|e| **e == VideoLegEvent::KeyframeRequest)
            .count();
        assert_eq!(requests, 2, "{events:?}");
        assert!(events.contains(&VideoLegEvent::Bye));
        assert!(
            events
                .iter()
                .any(|e| matches!(e, VideoLegEvent::Frame(f) if f.keyframe))
        );
        assert_eq!(l.stats().keyframe_requests_received, 4);
        assert_eq!(l.stats().malformed, 1);
        l.handle_timeout(ms(2500));
        let rr = std::iter::from_fn(|| l.poll_transmit())
            .find(|t| t.rtcp)
            .expect("report due");
        assert_eq!(rr.destination, addr("192.0.2.10:17003"));
        let pkts = RtcpPacket::parse_compound(&rr.data).expect("valid");
        let RtcpPacket::ReceiverReport(rr) = &pkts[0] else {
            panic!("nothing sent yet, so RR: {pkts:?}")
        };
        assert_eq!(
            (rr.reports[0].ssrc, rr.reports[0].lsr),
            (0xbbbb, 0x0002_0003)
        );
    }

    /// Random datagrams from the latched source never panic; the malformed ones are counted.
    #[test]
    fn random_datagrams_are_counted_not_fatal() {
        let t0 = Instant::now();
        for codec in [VideoCodec::Vp8, VideoCodec::H264] {
            let mut l = VideoLeg::new(t0, VideoLegConfig::new(1, codec, 100, addr(PBX)));
            let mut x = 0x9e37_79b9u32;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            };
            for i in 0..5000u32 {
                let len = (next() % 60) as usize;
                let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if i % 2 == 0 && d.len() > 12 {
                    // mostly valid RTP headers with garbage payloads
                    d[0] = 0x80;
                    d[1] = 100 | if i % 3 == 0 { 0x80 } else { 0 };
                }
                l.handle_input(t0 + Duration::from_millis(u64::from(i)), addr(PBX), &d);
                l.handle_timeout(t0 + Duration::from_millis(u64::from(i)));
            }
            let s = l.stats();
            assert!(s.malformed > 0, "{s:?}");
            while l.poll_event().is_some() {}
            while l.poll_transmit().is_some() {}
        }
    }
}
