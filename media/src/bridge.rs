//! The bridge (sans-IO) that joins the WebRTC leg and the RTP leg of one call.
//!
//! The WebRTC side is abstract here: the owner hands in Opus frames as depacketised by the
//! WebRTC leg ([`MediaFrame`], 48 kHz RTP clock) and takes out frames to write back
//! ([`WebrtcOutput`]). The PBX side is a full [`RtpLeg`] owned by the bridge. Each
//! direction has its own jitter buffer (the RTP leg's for PBX → browser, the bridge's for
//! browser → PBX) feeding a [`Transcoder`]; when both legs use the same codec the payloads
//! pass through untouched. DTMF crosses as RFC 4733 events with clock and PT rewritten, or
//! as an in-band tone when the PBX did not negotiate telephone-event. Call quality is
//! summarised as an E-model (ITU-T G.107, simplified) MOS.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::opus::OpusSettings;
use crate::codec::{Codec, CodecError};
use crate::dtmf::{DtmfEvent, DtmfPacket, DtmfRewriter};
use crate::jitter::{JitterBuffer, JitterConfig, JitterOutput};
use crate::rtp_leg::{Input, RtpLeg, RtpLegConfig, RtpLegEvent, RtpLegStats, Transmit};
use crate::transcode::{TranscodeStats, Transcoder};

/// An audio frame on the WebRTC side (Opus, 48 kHz RTP clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// RTP sequence number as received (used for reordering and loss detection).
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// Something to write to the WebRTC leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebrtcOutput {
    /// An Opus frame with its timestamp (48 kHz).
    Audio(MediaFrame),
    /// A telephone-event packet (48 kHz clock); `payload_type` is the one given in the config.
    Dtmf(DtmfPacket),
    /// Passthrough: this many of the PBX's frames never came. Their timestamps are
    /// already left out of the next [`WebrtcOutput::Audio`]; the leg should skip as many
    /// sequence numbers, so the browser sees the loss and conceals it (Opus PLC/FEC).
    Gap(u16),
}

/// Things the call controller should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeEvent {
    /// A DTMF digit pressed in the browser (once per press).
    WebrtcDigit(char),
    /// A DTMF digit pressed on the PBX side (once per press).
    PbxDigit(char),
    /// The RTP leg latched to the PBX's real source address.
    Latched(SocketAddr),
    /// The PBX sent RTCP BYE.
    PbxBye,
}

/// How digits pressed in the browser are sent to the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PbxDtmf {
    /// RFC 4733 telephone-events when the PBX leg negotiated them, else in-band tones.
    #[default]
    Rfc4733,
    /// Always in-band tones mixed into the audio (and tone detection on the PBX's audio).
    Inband,
    /// Not in the media at all: each press is only reported as
    /// [`BridgeEvent::WebrtcDigit`] for the controller to signal (SIP INFO).
    Signalled,
}

/// Bridge configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The PBX leg (from SDP negotiation).
    pub rtp: RtpLegConfig,
    /// Codec of the WebRTC leg (Opus normally; PCMU/PCMA if the browser negotiated it).
    pub webrtc_codec: Codec,
    /// Packet duration on the WebRTC side in ms.
    pub webrtc_ptime: u32,
    /// telephone-event PT on the WebRTC side (48 kHz), if negotiated.
    pub webrtc_dtmf_pt: Option<u8>,
    /// Opus settings used when transcoding: Opus runs at the PBX codec's sample rate
    /// ([`OpusSettings::for_pbx_codec`]: 16 kHz for G.722, 8 kHz for G.711).
    pub opus: OpusSettings,
    /// First timestamp of frames produced for the WebRTC side.
    pub webrtc_initial_ts: u32,
    /// How browser digits reach the PBX.
    pub pbx_dtmf: PbxDtmf,
}

impl BridgeConfig {
    /// Default bridge: Opus 20 ms on the WebRTC side, transcoded at the PBX codec's rate
    /// (wideband for G.722, narrowband for G.711).
    pub fn new(rtp: RtpLegConfig) -> Self {
        Self {
            webrtc_codec: Codec::Opus,
            webrtc_ptime: 20,
            webrtc_dtmf_pt: Some(126),
            opus: OpusSettings::for_pbx_codec(rtp.codec),
            rtp,
            webrtc_initial_ts: 0,
            pbx_dtmf: PbxDtmf::default(),
        }
    }
}

/// Counters of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BridgeStats {
    /// The PBX leg's counters.
    pub rtp: RtpLegStats,
    /// Frames received from the WebRTC leg.
    pub webrtc_packets_in: u64,
    /// Payload octets received from the WebRTC leg.
    pub webrtc_bytes_in: u64,
    /// Frames written to the WebRTC leg.
    pub webrtc_packets_out: u64,
    /// Payload octets written to the WebRTC leg.
    pub webrtc_bytes_out: u64,
    /// Browser → PBX slots concealed by the bridge's jitter buffer (transcoding), or
    /// missing in the browser's stream (passthrough).
    pub webrtc_lost: u64,
    /// Browser frames dropped in passthrough because they came after a later one.
    pub webrtc_late: u64,
    /// Browser → PBX transcoder counters.
    pub to_rtp: TranscodeStats,
    /// PBX → browser transcoder counters.
    pub to_webrtc: TranscodeStats,
    /// True when payloads pass through without transcoding.
    pub passthrough: bool,
    /// E-model MOS estimate for the PBX leg (1.0..=4.5).
    pub mos: f64,
}

/// Simplified ITU-T G.107 E-model: MOS from one-way delay, packet loss (0..1) and the
/// codec's equipment impairment (`ie`, `bpl`). Uses R = 93.2 - Id - Ie,eff with random loss.
pub fn emodel_mos(one_way_delay: Duration, loss: f64, ie: f64, bpl: f64) -> f64 {
    let d = one_way_delay.as_secs_f64() * 1000.0;
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    let ppl = (loss * 100.0).clamp(0.0, 100.0);
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl + bpl);
    let r = (93.2 - id - ie_eff).clamp(0.0, 100.0);
    if r <= 0.0 {
        1.0
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6).clamp(1.0, 4.5)
    }
}

/// G.113 Appendix I equipment impairment and packet-loss robustness of a codec.
pub fn codec_impairment(codec: Codec) -> (f64, f64) {
    match codec {
        // G.711 with PLC (G.113 Table I.3).
        Codec::Pcmu | Codec::Pcma => (0.0, 25.1),
        Codec::G722 => (0.0, 25.1),
        // Opus at 24 kbit/s narrowband has no G.113 entry; it is treated like G.711 with
        // slightly better loss robustness thanks to in-band FEC.
        Codec::Opus | Codec::TelephoneEvent => (0.0, 30.0),
    }
}

/// The longest run of lost browser packets a passthrough stream shows as a gap
/// (1 s at 20 ms); a longer jump is a new start, not a loss.
const MAX_PASSED_GAP: u16 = 50;

/// Why the bridge could not be built.
pub type BridgeError = CodecError;

/// The two-leg bridge. See the module docs.
#[derive(Debug)]
pub struct Bridge {
    cfg: BridgeConfig,
    rtp: RtpLeg,
    passthrough: bool,
    to_rtp: Option<Transcoder>,
    to_webrtc: Option<Transcoder>,
    webrtc_jitter: JitterBuffer,
    dtmf_to_rtp: DtmfRewriter,
    dtmf_to_webrtc: Option<DtmfRewriter>,
    /// Digit being played in-band towards the PBX (no telephone-event negotiated).
    inband: Option<u32>,
    webrtc_out: VecDeque<WebrtcOutput>,
    events: VecDeque<BridgeEvent>,
    /// Last send per side, to detect talkspurt starts.
    last_rtp_send: Option<Instant>,
    /// Passthrough: the sequence number of the browser's last forwarded frame.
    passed: Option<u16>,
    /// Passthrough: the sequence number of the PBX's last frame played to the browser.
    pbx_last_seq: Option<u16>,
    webrtc_clock: Option<(Instant, u32)>,
    webrtc_next_ts: u32,
    stats: BridgeStats,
}

impl Bridge {
    /// Creates a bridge at `now`.
    ///
    /// # Errors
    /// [`CodecError`] when a transcoding path is not supported (telephone-event as audio,
    /// an Opus rate libopus refuses, a ptime that is not a multiple of 10 ms).
    pub fn new(now: Instant, cfg: BridgeConfig) -> Result<Self, BridgeError> {
        let pbx = cfg.rtp.codec;
        // Digits that must sound in the audio need the transcoder's tone generator.
        let dtmf_outside_audio = match cfg.pbx_dtmf {
            PbxDtmf::Rfc4733 => cfg.rtp.dtmf_pt.is_some(),
            PbxDtmf::Signalled => true,
            PbxDtmf::Inband => false,
        };
        let passthrough =
            pbx == cfg.webrtc_codec && cfg.rtp.ptime == cfg.webrtc_ptime && dtmf_outside_audio;
        let (to_rtp, to_webrtc) = if passthrough {
            (None, None)
        } else {
            let mut to_webrtc = Transcoder::new(pbx, cfg.webrtc_codec, cfg.webrtc_ptime, cfg.opus)?;
            if cfg.rtp.dtmf_pt.is_none() || cfg.pbx_dtmf == PbxDtmf::Inband {
                // The PBX signals digits in-band: listen for them.
                to_webrtc.enable_tone_detection();
            }
            (
                Some(Transcoder::new(
                    cfg.webrtc_codec,
                    pbx,
                    cfg.rtp.ptime,
                    cfg.opus,
                )?),
                Some(to_webrtc),
            )
        };
        let wclock = cfg.webrtc_codec.clock_rate();
        let webrtc_jitter = JitterBuffer::new(JitterConfig::new(
            wclock,
            Duration::from_millis(u64::from(cfg.webrtc_ptime)),
        ));
        let pbx_dtmf_clock = cfg.rtp.dtmf_clock.unwrap_or(pbx.clock_rate());
        let dtmf_to_rtp = DtmfRewriter::new(cfg.rtp.dtmf_pt.unwrap_or(101), wclock, pbx_dtmf_clock);
        let dtmf_to_webrtc = cfg
            .webrtc_dtmf_pt
            .map(|pt| DtmfRewriter::new(pt, pbx_dtmf_clock, wclock));
        Ok(Self {
            rtp: RtpLeg::new(now, cfg.rtp.clone()),
            passthrough,
            to_rtp,
            to_webrtc,
            webrtc_jitter,
            dtmf_to_rtp,
            dtmf_to_webrtc,
            inband: None,
            webrtc_out: VecDeque::new(),
            events: VecDeque::new(),
            last_rtp_send: None,
            passed: None,
            pbx_last_seq: None,
            webrtc_clock: None,
            webrtc_next_ts: cfg.webrtc_initial_ts,
            stats: BridgeStats {
                passthrough,
                ..BridgeStats::default()
            },
            cfg,
        })
    }

    /// True when no transcoding happens.
    pub fn is_passthrough(&self) -> bool {
        self.passthrough
    }

    /// The PBX leg.
    pub fn rtp_leg(&self) -> &RtpLeg {
        &self.rtp
    }

    /// Mutable access to the PBX leg (re-INVITE address changes, BYE).
    pub fn rtp_leg_mut(&mut self) -> &mut RtpLeg {
        &mut self.rtp
    }

    /// Current statistics including the MOS estimate.
    pub fn stats(&self) -> BridgeStats {
        let mut s = self.stats;
        s.rtp = self.rtp.stats();
        s.to_rtp = self.to_rtp.as_ref().map(|t| t.stats()).unwrap_or_default();
        s.to_webrtc = self
            .to_webrtc
            .as_ref()
            .map(|t| t.stats())
            .unwrap_or_default();
        if !self.passthrough {
            s.webrtc_lost = self.webrtc_jitter.stats().concealed;
        }
        let expected = s.rtp.packets_received as f64 + s.rtp.lost.max(0) as f64;
        let loss = if expected > 0.0 {
            (s.rtp.lost.max(0) as f64 / expected).max(s.rtp.remote_fraction_lost)
        } else {
            s.rtp.remote_fraction_lost
        };
        let delay = s.rtp.rtt.map_or(Duration::ZERO, |r| r / 2)
            + self.rtp.jitter_buffer().target_delay()
            + Duration::from_millis(u64::from(self.cfg.rtp.ptime));
        let (ie, bpl) = codec_impairment(self.cfg.rtp.codec);
        s.mos = emodel_mos(delay, loss, ie, bpl);
        s
    }

    /// A datagram from the PBX side.
    pub fn handle_rtp_input(&mut self, now: Instant, from: SocketAddr, data: Vec<u8>) {
        self.rtp.handle_input(now, Input::Receive { from, data });
        self.drain_rtp_events(now);
    }

    /// An audio frame from the WebRTC leg.
    pub fn handle_webrtc_media(&mut self, now: Instant, frame: MediaFrame) {
        self.stats.webrtc_packets_in += 1;
        self.stats.webrtc_bytes_in += frame.payload.len() as u64;
        if self.passthrough {
            // Same codec and ptime: forward now; the PBX does its own dejittering.
            let samples = self.cfg.rtp.codec.clock_rate() / 1000 * self.cfg.rtp.ptime;
            if let Some(seq) = self.passed {
                let ahead = frame.seq.wrapping_sub(seq) as i16;
                if ahead <= 0 {
                    // late (reordered) or repeated: its slot is already gone
                    self.stats.webrtc_late += 1;
                    return;
                }
                // browser packets lost on the way: the PBX sees the same gap and
                // conceals it (Opus PLC/FEC) instead of hearing the audio cut short
                let missing = ahead as u16 - 1;
                if missing > 0 && missing <= MAX_PASSED_GAP {
                    self.rtp.skip(missing, u32::from(missing) * samples);
                    self.stats.webrtc_lost += u64::from(missing);
                }
            }
            self.passed = Some(frame.seq);
            let start = self.rtp_talkspurt(now, frame.marker);
            self.rtp.send_audio(now, &frame.payload, samples, start);
            return;
        }
        self.webrtc_jitter.insert(
            now,
            0,
            frame.seq,
            frame.timestamp,
            frame.marker,
            frame.payload,
        );
    }

    /// A telephone-event packet from the WebRTC leg (48 kHz clock).
    pub fn handle_webrtc_dtmf(&mut self, now: Instant, timestamp: u32, payload: &[u8]) {
        let out_ts = self.rtp.timestamp_at(now);
        let Ok(rw) = self.dtmf_to_rtp.push(timestamp, payload, Some(out_ts)) else {
            return;
        };
        if let Some(d) = rw.digit {
            self.events.push_back(BridgeEvent::WebrtcDigit(d));
        }
        match self.cfg.pbx_dtmf {
            PbxDtmf::Signalled => return,
            PbxDtmf::Rfc4733 if self.cfg.rtp.dtmf_pt.is_some() => {
                for p in &rw.packets {
                    self.rtp.send_dtmf(p);
                }
                return;
            }
            PbxDtmf::Rfc4733 | PbxDtmf::Inband => {}
        }
        // No telephone-event towards the PBX: play the tone in-band while the key is down.
        if let (Some(first), Some(t)) = (rw.packets.first(), self.to_rtp.as_mut()) {
            if first.marker {
                t.start_tone(first.event.event, 5000);
                self.inband = Some(timestamp);
            }
            if first.event.end && self.inband == Some(timestamp) {
                t.stop_tone();
                self.inband = None;
            }
        }
    }

    fn rtp_talkspurt(&mut self, now: Instant, marker: bool) -> bool {
        let gap = Duration::from_millis(u64::from(self.cfg.rtp.ptime) * 3);
        let start = marker
            || self
                .last_rtp_send
                .is_none_or(|t| now.saturating_duration_since(t) > gap);
        self.last_rtp_send = Some(now);
        start
    }

    fn push_webrtc_audio(
        &mut self,
        now: Instant,
        payload: Vec<u8>,
        samples: u32,
        marker_hint: bool,
    ) {
        let gap = Duration::from_millis(u64::from(self.cfg.webrtc_ptime) * 3);
        let clock = self.cfg.webrtc_codec.clock_rate();
        let start = marker_hint
            || self
                .webrtc_clock
                .is_none_or(|(t, _)| now.saturating_duration_since(t) > gap);
        if start && let Some((t, ts)) = self.webrtc_clock {
            let el =
                now.saturating_duration_since(t).as_micros() as u64 * u64::from(clock) / 1_000_000;
            let by_clock = ts.wrapping_add(el as u32);
            if crate::rtp::ts_delta(by_clock, self.webrtc_next_ts) > 0 {
                self.webrtc_next_ts = by_clock;
            }
        }
        let ts = self.webrtc_next_ts;
        self.webrtc_clock = Some((now, ts));
        self.webrtc_next_ts = ts.wrapping_add(samples);
        self.stats.webrtc_packets_out += 1;
        self.stats.webrtc_bytes_out += payload.len() as u64;
        self.webrtc_out.push_back(WebrtcOutput::Audio(MediaFrame {
            seq: 0,
            timestamp: ts,
            marker: start,
            payload,
        }));
    }

    fn drain_rtp_events(&mut self, now: Instant) {
        while let Some(ev) = self.rtp.poll_event() {
            match ev {
                RtpLegEvent::Media(out) => {
                    if let Some(t) = self.to_webrtc.as_mut() {
                        if t.push(&out).is_err() {
                            continue;
                        }
                        let frames: Vec<_> = std::iter::from_fn(|| t.poll_frame()).collect();
                        while let Some(d) = t.poll_digit() {
                            self.events.push_back(BridgeEvent::PbxDigit(d));
                        }
                        for f in frames {
                            self.push_webrtc_audio(now, f.payload, f.samples, false);
                        }
                    } else {
                        let samples =
                            self.cfg.webrtc_codec.clock_rate() / 1000 * self.cfg.webrtc_ptime;
                        // passthrough: the browser conceals on its own; the PBX's losses
                        // (a jump in its sequence numbers, not a pause of the jitter
                        // buffer) stay a gap towards it
                        if let JitterOutput::Frame(f) = out {
                            let ahead = self
                                .pbx_last_seq
                                .map_or(1, |prev| f.seq.wrapping_sub(prev) as i16);
                            self.pbx_last_seq = Some(f.seq);
                            if ahead > 1 && ahead as u16 - 1 <= MAX_PASSED_GAP {
                                let missing = ahead as u16 - 1;
                                self.webrtc_next_ts = self
                                    .webrtc_next_ts
                                    .wrapping_add(u32::from(missing) * samples);
                                self.webrtc_out.push_back(WebrtcOutput::Gap(missing));
                            }
                            self.push_webrtc_audio(now, f.payload, samples, f.marker);
                        }
                    }
                }
                RtpLegEvent::Dtmf {
                    timestamp, event, ..
                } => self.forward_pbx_dtmf(now, timestamp, event),
                RtpLegEvent::Latched(a) => self.events.push_back(BridgeEvent::Latched(a)),
                RtpLegEvent::Bye => self.events.push_back(BridgeEvent::PbxBye),
            }
        }
    }

    fn forward_pbx_dtmf(&mut self, now: Instant, timestamp: u32, event: DtmfEvent) {
        let clock = self.cfg.webrtc_codec.clock_rate();
        let out_ts = match self.webrtc_clock {
            Some((t, ts)) => ts.wrapping_add(
                (now.saturating_duration_since(t).as_micros() as u64 * u64::from(clock) / 1_000_000)
                    as u32,
            ),
            None => self.webrtc_next_ts,
        };
        let Some(rw) = self.dtmf_to_webrtc.as_mut() else {
            if let Some(d) = event.digit().filter(|_| !event.end) {
                // Without a rewriter we can still tell the controller, once per start.
                self.events.push_back(BridgeEvent::PbxDigit(d));
            }
            return;
        };
        if let Ok(r) = rw.push(timestamp, &event.to_bytes(), Some(out_ts)) {
            if let Some(d) = r.digit {
                self.events.push_back(BridgeEvent::PbxDigit(d));
            }
            self.webrtc_out
                .extend(r.packets.into_iter().map(WebrtcOutput::Dtmf));
        }
    }

    /// Advances both legs' clocks.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.rtp.handle_timeout(now);
        self.drain_rtp_events(now);
        while let Some(out) = self.webrtc_jitter.poll(now) {
            let Some(t) = self.to_rtp.as_mut() else { break };
            if t.push(&out).is_err() {
                continue;
            }
            while let Some(f) = t.poll_frame() {
                let start = {
                    let gap = Duration::from_millis(u64::from(self.cfg.rtp.ptime) * 3);
                    let s = self
                        .last_rtp_send
                        .is_none_or(|t| now.saturating_duration_since(t) > gap);
                    self.last_rtp_send = Some(now);
                    s
                };
                self.rtp.send_audio(now, &f.payload, f.samples, start);
            }
        }
    }

    /// Next datagram for the PBX side.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.rtp.poll_transmit()
    }

    /// Next frame for the WebRTC leg.
    pub fn poll_webrtc(&mut self) -> Option<WebrtcOutput> {
        self.webrtc_out.pop_front()
    }

    /// Next event for the call controller.
    pub fn poll_event(&mut self) -> Option<BridgeEvent> {
        self.events.pop_front()
    }

    /// When to call [`Bridge::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.rtp.poll_timeout(), self.webrtc_jitter.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g711;
    use crate::codec::opus::OpusEncoder;
    use crate::rtp::RtpPacket;

    /// Feeds the bridge frame `i` (20 ms at 8 kHz) from the test PBX with payload type `pt`.
    fn from_pbx(b: &mut Bridge, now: Instant, pt: u8, i: u32, payload: Vec<u8>) {
        let pkt = RtpPacket {
            header: crate::rtp::RtpHeader {
                payload_type: pt,
                sequence: i as u16,
                timestamp: i * 160,
                ssrc: 9,
                ..Default::default()
            },
            payload,
            padding: 0,
        };
        b.handle_rtp_input(now, addr("192.0.2.10:17000"), pkt.to_bytes().expect("ok"));
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn rtp_cfg(codec: Codec, pt: u8, dtmf: Option<u8>) -> RtpLegConfig {
        let mut c = RtpLegConfig::new(0x1111, codec, pt, addr("192.0.2.10:17000"));
        c.dtmf_pt = dtmf;
        c
    }

    fn tone8k(n: usize, start: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect()
    }

    /// Browser Opus → PCMU to the PBX and PBX PCMU → Opus to the browser, on a driven clock.
    #[test]
    fn transcodes_both_directions() {
        let t0 = Instant::now();
        let mut b =
            Bridge::new(t0, BridgeConfig::new(rtp_cfg(Codec::Pcmu, 0, Some(101)))).expect("bridge");
        assert!(!b.is_passthrough());
        let mut enc = OpusEncoder::new(OpusSettings::narrowband()).expect("enc");
        let mut to_pbx = 0;
        let mut to_browser = 0;
        for ms in 0..1000u32 {
            let now = t0 + Duration::from_millis(u64::from(ms));
            if ms % 20 == 0 {
                let i = ms / 20;
                let mut p = Vec::new();
                enc.encode(&tone8k(160, i as usize * 160), &mut p)
                    .expect("enc");
                b.handle_webrtc_media(
                    now,
                    MediaFrame {
                        seq: i as u16,
                        timestamp: i * 960,
                        marker: i == 0,
                        payload: p,
                    },
                );
                let pcmu: Vec<u8> = tone8k(160, i as usize * 160)
                    .iter()
                    .map(|&s| g711::ulaw_encode(s))
                    .collect();
                from_pbx(&mut b, now, 0, i, pcmu);
            }
            b.handle_timeout(now);
            while let Some(t) = b.poll_transmit() {
                if !t.rtcp {
                    let p = RtpPacket::parse(&t.data).expect("valid");
                    assert_eq!((p.header.payload_type, p.payload.len()), (0, 160));
                    to_pbx += 1;
                }
            }
            while let Some(o) = b.poll_webrtc() {
                if let WebrtcOutput::Audio(f) = o {
                    assert!(!f.payload.is_empty());
                    to_browser += 1;
                }
            }
        }
        assert!((45..=50).contains(&to_pbx), "to pbx {to_pbx}");
        assert!((45..=50).contains(&to_browser), "to browser {to_browser}");
        let s = b.stats();
        assert_eq!(s.rtp.lost, 0);
        assert!(s.mos > 4.3, "mos {}", s.mos);
    }

    /// An Opus PBX: the browser's Opus passes through untouched when digits can travel
    /// as telephone-events (or SIP INFO); digits that must sound in the audio (no
    /// telephone-event at 48 kHz, or `inband`) need the tone generator, so the bridge
    /// transcodes then, at 16 kHz.
    #[test]
    fn opus_pbx_passes_through_unless_digits_must_be_tones() {
        let t0 = Instant::now();
        let bridge = |dtmf_pt: Option<u8>, mode: PbxDtmf| {
            let mut cfg = BridgeConfig::new(rtp_cfg(Codec::Opus, 111, dtmf_pt));
            cfg.pbx_dtmf = mode;
            Bridge::new(t0, cfg).expect("bridge")
        };
        assert!(bridge(Some(110), PbxDtmf::Rfc4733).is_passthrough());
        assert!(bridge(None, PbxDtmf::Signalled).is_passthrough());
        assert!(!bridge(None, PbxDtmf::Rfc4733).is_passthrough());
        assert!(!bridge(Some(110), PbxDtmf::Inband).is_passthrough());
        assert_eq!(OpusSettings::for_pbx_codec(Codec::Opus).sample_rate, 16_000);
        // passed through: the browser's Opus payload reaches the PBX byte for byte
        let mut b = bridge(Some(110), PbxDtmf::Rfc4733);
        let payload = vec![0x78, 9, 8, 7];
        b.handle_webrtc_media(
            t0,
            MediaFrame {
                seq: 7,
                timestamp: 960,
                marker: false,
                payload: payload.clone(),
            },
        );
        let t = b.poll_transmit().expect("forwarded at once");
        let p = RtpPacket::parse(&t.data).expect("rtp");
        let (seq0, ts0) = (p.header.sequence, p.header.timestamp);
        assert_eq!((p.header.payload_type, p.payload), (111, payload.clone()));
        // two browser packets lost: the PBX sees the same gap (and conceals it); a
        // late packet from before is dropped, not sent out of order
        let frame = |seq: u16| MediaFrame {
            seq,
            timestamp: u32::from(seq) * 960,
            marker: false,
            payload: payload.clone(),
        };
        b.handle_webrtc_media(t0, frame(10));
        b.handle_webrtc_media(t0, frame(9));
        let p = RtpPacket::parse(&b.poll_transmit().expect("sent").data).expect("rtp");
        assert_eq!(p.header.sequence, seq0.wrapping_add(3));
        assert_eq!(p.header.timestamp, ts0.wrapping_add(3 * 960));
        assert!(b.poll_transmit().is_none(), "the late frame is dropped");
        let s = b.stats();
        assert_eq!((s.webrtc_lost, s.webrtc_late), (2, 1));
        // a browser digit still reaches the PBX as a 48 kHz telephone-event
        let ev = DtmfEvent {
            event: 5,
            end: false,
            volume: 10,
            duration: 960,
        }
        .to_bytes();
        b.handle_webrtc_dtmf(t0, 4800, &ev);
        let t = b.poll_transmit().expect("telephone-event");
        let p = RtpPacket::parse(&t.data).expect("rtp");
        assert_eq!(p.header.payload_type, 110);
        assert_eq!(DtmfEvent::parse(&p.payload).expect("event").duration, 960);
        // Opus beside telephone-event/8000 only: still passed through, and the event's
        // duration counts at 8 kHz
        let mut cfg = BridgeConfig::new(rtp_cfg(Codec::Opus, 111, Some(101)));
        cfg.rtp.dtmf_clock = Some(8000);
        let mut b = Bridge::new(t0, cfg).expect("bridge");
        assert!(b.is_passthrough());
        b.handle_webrtc_dtmf(t0, 4800, &ev);
        let t = b.poll_transmit().expect("telephone-event");
        let p = RtpPacket::parse(&t.data).expect("rtp");
        assert_eq!(p.header.payload_type, 101);
        assert_eq!(DtmfEvent::parse(&p.payload).expect("event").duration, 160);
    }

    /// Opus passthrough from the PBX: a packet the PBX lost is a gap towards the browser
    /// (`Gap` for the leg's sequence numbers, its 20 ms left out of the timestamps), so
    /// the browser conceals it; a pause of the jitter buffer is not a gap.
    #[test]
    fn pbx_losses_stay_gaps_towards_the_browser() {
        let t0 = Instant::now();
        let mut b = Bridge::new(t0, BridgeConfig::new(rtp_cfg(Codec::Opus, 111, Some(110))))
            .expect("bridge");
        assert!(b.is_passthrough());
        let mut out = Vec::new();
        for ms in 0..400u32 {
            let now = t0 + Duration::from_millis(u64::from(ms));
            let i = ms / 20;
            // packets 5 and 6 never come
            if ms % 20 == 0 && i != 5 && i != 6 {
                let pkt = RtpPacket {
                    header: crate::rtp::RtpHeader {
                        payload_type: 111,
                        sequence: i as u16,
                        timestamp: i * 960,
                        ssrc: 9,
                        ..Default::default()
                    },
                    payload: vec![0x78, i as u8],
                    padding: 0,
                };
                b.handle_rtp_input(now, addr("192.0.2.10:17000"), pkt.to_bytes().expect("ok"));
            }
            b.handle_timeout(now);
            while let Some(o) = b.poll_webrtc() {
                out.push(o);
            }
        }
        let gaps: Vec<u16> = out
            .iter()
            .filter_map(|o| match o {
                WebrtcOutput::Gap(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(gaps, [2], "{out:?}");
        let frames: Vec<(u8, u32)> = out
            .iter()
            .filter_map(|o| match o {
                WebrtcOutput::Audio(f) => Some((f.payload[1], f.timestamp)),
                _ => None,
            })
            .collect();
        let at = |i: u8| {
            frames
                .iter()
                .find(|(p, _)| *p == i)
                .map(|(_, ts)| *ts)
                .expect("frame played")
        };
        // at least the lost 40 ms between them (more when the PBX side's jitter buffer
        // waited a tick before giving the packets up: timestamps follow the playout)
        assert!(at(7).wrapping_sub(at(4)) >= 3 * 960, "{frames:?}");
        assert_eq!(at(8).wrapping_sub(at(7)), 960, "{frames:?}");
    }

    /// Same codec and ptime on both legs: payloads pass through byte for byte.
    #[test]
    fn passthrough_when_codecs_match() {
        let t0 = Instant::now();
        let mut cfg = BridgeConfig::new(rtp_cfg(Codec::Pcmu, 0, Some(101)));
        cfg.webrtc_codec = Codec::Pcmu;
        let mut b = Bridge::new(t0, cfg).expect("bridge");
        assert!(b.is_passthrough());
        b.handle_webrtc_media(
            t0,
            MediaFrame {
                seq: 1,
                timestamp: 0,
                marker: true,
                payload: vec![1, 2, 3],
            },
        );
        let t = b.poll_transmit().expect("forwarded at once");
        assert_eq!(
            RtpPacket::parse(&t.data).expect("ok").payload,
            vec![1, 2, 3]
        );
    }

    /// Browser DTMF (48 kHz) reaches the PBX as 8 kHz telephone-events and a digit event.
    #[test]
    fn dtmf_crosses_to_pbx() {
        let t0 = Instant::now();
        let mut b =
            Bridge::new(t0, BridgeConfig::new(rtp_cfg(Codec::Pcmu, 0, Some(101)))).expect("bridge");
        let ev = |end, dur| {
            DtmfEvent {
                event: 9,
                end,
                volume: 10,
                duration: dur,
            }
            .to_bytes()
        };
        b.handle_webrtc_dtmf(t0, 4800, &ev(false, 960));
        for _ in 0..3 {
            b.handle_webrtc_dtmf(t0, 4800, &ev(true, 4800));
        }
        let mut got = Vec::new();
        while let Some(t) = b.poll_transmit() {
            let p = RtpPacket::parse(&t.data).expect("ok");
            let e = DtmfEvent::parse(&p.payload).expect("event");
            got.push((p.header.payload_type, p.header.marker, e.end, e.duration));
        }
        assert_eq!(
            got,
            vec![
                (101, true, false, 160),
                (101, false, true, 800),
                (101, false, true, 800),
                (101, false, true, 800)
            ]
        );
        assert_eq!(b.poll_event(), Some(BridgeEvent::WebrtcDigit('9')));
    }

    /// Without telephone-event on the PBX leg, DTMF goes in-band both ways: browser events
    /// become a tone in the PCMU stream, and a tone from the PBX becomes a digit event.
    #[test]
    fn inband_dtmf_both_ways() {
        let t0 = Instant::now();
        let mut b =
            Bridge::new(t0, BridgeConfig::new(rtp_cfg(Codec::Pcmu, 0, None))).expect("bridge");
        let mut enc = OpusEncoder::new(OpusSettings::narrowband()).expect("enc");
        let mut det = crate::dtmf::ToneDetector::new(8000);
        let mut heard = Vec::new();
        let mut tone = crate::dtmf::ToneGenerator::new(8000);
        tone.start(4, 8000 / 1000 * 120);
        for i in 0..30u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 20);
            if i == 5 {
                let ev = DtmfEvent {
                    event: 7,
                    end: false,
                    volume: 10,
                    duration: 960,
                };
                b.handle_webrtc_dtmf(now, 48_000, &ev.to_bytes());
            }
            if i == 12 {
                let ev = DtmfEvent {
                    event: 7,
                    end: true,
                    volume: 10,
                    duration: 6720,
                };
                b.handle_webrtc_dtmf(now, 48_000, &ev.to_bytes());
            }
            let mut p = Vec::new();
            enc.encode(&[0; 160], &mut p).expect("enc");
            b.handle_webrtc_media(
                now,
                MediaFrame {
                    seq: i as u16,
                    timestamp: i * 960,
                    marker: i == 0,
                    payload: p,
                },
            );
            let mut pcm = vec![0i16; 160];
            if (10..20).contains(&i) {
                tone.fill(&mut pcm);
            }
            from_pbx(
                &mut b,
                now,
                0,
                i,
                pcm.iter().map(|&s| g711::ulaw_encode(s)).collect(),
            );
            for ms in 0..20 {
                b.handle_timeout(now + Duration::from_millis(ms));
            }
            while let Some(t) = b.poll_transmit() {
                if !t.rtcp {
                    let p = RtpPacket::parse(&t.data).expect("ok");
                    let pcm: Vec<i16> = p.payload.iter().map(|&c| g711::ulaw_decode(c)).collect();
                    heard.extend(det.feed(&pcm));
                }
            }
        }
        assert_eq!(heard, vec!['7'], "tone towards the PBX");
        let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
        assert!(
            events.contains(&BridgeEvent::WebrtcDigit('7')),
            "{events:?}"
        );
        assert!(events.contains(&BridgeEvent::PbxDigit('4')), "{events:?}");
    }

    /// `Signalled` keeps digits out of the media (the controller sends SIP INFO) but still
    /// reports each press once; `Inband` plays a tone although telephone-event was negotiated.
    #[test]
    fn dtmf_modes_towards_the_pbx() {
        let ev = |end, dur| {
            DtmfEvent {
                event: 5,
                end,
                volume: 10,
                duration: dur,
            }
            .to_bytes()
        };
        let t0 = Instant::now();
        let mut cfg = BridgeConfig::new(rtp_cfg(Codec::Pcmu, 0, Some(101)));
        cfg.pbx_dtmf = PbxDtmf::Signalled;
        let mut b = Bridge::new(t0, cfg).expect("bridge");
        b.handle_webrtc_dtmf(t0, 4800, &ev(false, 960));
        for _ in 0..3 {
            b.handle_webrtc_dtmf(t0, 4800, &ev(true, 4800));
        }
        assert!(b.poll_transmit().is_none(), "no telephone-event sent");
        assert_eq!(b.poll_event(), Some(BridgeEvent::WebrtcDigit('5')));
        assert_eq!(b.poll_event(), None, "one report per press");

        let mut cfg = BridgeConfig::new(rtp_cfg(Codec::Pcmu, 0, Some(101)));
        cfg.pbx_dtmf = PbxDtmf::Inband;
        let mut b = Bridge::new(t0, cfg).expect("bridge");
        let mut enc = OpusEncoder::new(OpusSettings::narrowband()).expect("enc");
        let mut det = crate::dtmf::ToneDetector::new(8000);
        let mut heard = Vec::new();
        for i in 0..20u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 20);
            if i == 3 {
                b.handle_webrtc_dtmf(now, 48_000, &ev(false, 960));
            }
            if i == 10 {
                b.handle_webrtc_dtmf(now, 48_000, &ev(true, 6720));
            }
            let mut p = Vec::new();
            enc.encode(&[0; 160], &mut p).expect("enc");
            b.handle_webrtc_media(
                now,
                MediaFrame {
                    seq: i as u16,
                    timestamp: i * 960,
                    marker: i == 0,
                    payload: p,
                },
            );
            for ms in 0..20 {
                b.handle_timeout(now + Duration::from_millis(ms));
            }
            while let Some(t) = b.poll_transmit() {
                if t.rtcp {
                    continue;
                }
                let p = RtpPacket::parse(&t.data).expect("ok");
                assert_eq!(p.header.payload_type, 0, "audio only, no telephone-event");
                let pcm: Vec<i16> = p.payload.iter().map(|&c| g711::ulaw_decode(c)).collect();
                heard.extend(det.feed(&pcm));
            }
        }
        assert_eq!(heard, vec!['5']);
    }

    /// An Opus ⇄ G.722 bridge runs Opus at 16 kHz without a resampler and stamps G.722
    /// packets on the 8 kHz RTP clock (160 per 20 ms) while they carry 320 samples.
    #[test]
    fn g722_leg_uses_wideband_opus_and_8k_clock() {
        let t0 = Instant::now();
        let cfg = BridgeConfig::new(rtp_cfg(Codec::G722, 9, Some(101)));
        assert_eq!(cfg.opus.sample_rate, 16000);
        let mut b = Bridge::new(t0, cfg).expect("bridge");
        let mut enc = OpusEncoder::new(OpusSettings::wideband()).expect("enc");
        let mut g722 = crate::codec::g722::G722Encoder::new();
        let mut stamps = Vec::new();
        let mut to_browser = 0;
        for i in 0..50u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 20);
            let pcm: Vec<i16> = (0..320)
                .map(|k| {
                    let t = f64::from(i * 320 + k) / 16000.0;
                    (6000.0 * (2.0 * std::f64::consts::PI * 5000.0 * t).sin()) as i16
                })
                .collect();
            let mut p = Vec::new();
            enc.encode(&pcm, &mut p).expect("enc");
            b.handle_webrtc_media(
                now,
                MediaFrame {
                    seq: i as u16,
                    timestamp: i * 960,
                    marker: i == 0,
                    payload: p,
                },
            );
            let mut codes = Vec::new();
            g722.encode(&pcm, &mut codes).expect("even");
            from_pbx(&mut b, now, 9, i, codes);
            for ms in 0..20 {
                b.handle_timeout(now + Duration::from_millis(ms));
            }
            while let Some(t) = b.poll_transmit() {
                if !t.rtcp {
                    let p = RtpPacket::parse(&t.data).expect("ok");
                    assert_eq!((p.header.payload_type, p.payload.len()), (9, 160));
                    stamps.push(p.header.timestamp);
                }
            }
            while let Some(o) = b.poll_webrtc() {
                if let WebrtcOutput::Audio(_) = o {
                    to_browser += 1;
                }
            }
        }
        assert!(stamps.len() >= 45, "{} packets to the pbx", stamps.len());
        assert!(
            stamps.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 160),
            "{stamps:?}"
        );
        assert!(to_browser >= 45, "{to_browser} frames to the browser");
        let s = b.stats();
        assert!(s.to_webrtc.decoded >= 45 && s.to_rtp.encoded >= 45, "{s:?}");
    }

    /// E-model: clean G.711 ~4.4, 5 % loss clearly worse, 400 ms delay worse still.
    #[test]
    fn emodel_mos_shape() {
        let clean = emodel_mos(Duration::from_millis(40), 0.0, 0.0, 25.1);
        let lossy = emodel_mos(Duration::from_millis(40), 0.05, 0.0, 25.1);
        let slow = emodel_mos(Duration::from_millis(400), 0.0, 0.0, 25.1);
        assert!((4.35..=4.45).contains(&clean), "{clean}");
        assert!((3.5..4.0).contains(&lossy), "{lossy}");
        assert!(slow < 3.8 && slow > 2.5, "{slow}");
    }
}
