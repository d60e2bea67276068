//! The WebRTC leg: one browser call's ICE, DTLS-SRTP, Opus and (optionally) video, as a
//! sans-IO state machine.
//!
//! [`WebRtcLeg`] wraps a [`str0m::Rtc`] and narrows it to what a voice gateway
//! needs: accept a browser's SDP offer (Opus 48 kHz, telephone-event,
//! rtcp-mux, trickle ICE), answer with our host candidates (plus a server-reflexive
//! one per socket with [`WebRtcConfig::external_ip`], for a gateway behind 1:1 NAT), hand out received
//! Opus frames and take Opus frames to send. With [`WebRtcConfig::video`] it also
//! accepts one video m-line (VP8 or H.264) for passthrough: str0m depacketizes the
//! browser's video into whole frames ([`Event::Video`]) and packetizes the frames we
//! write ([`WebRtcLeg::write_video`]); keyframe requests cross both ways
//! ([`Event::KeyframeRequest`], [`WebRtcLeg::request_keyframe`]). It speaks the project's verbs:
//! [`WebRtcLeg::handle_input`], [`WebRtcLeg::handle_timeout`],
//! [`WebRtcLeg::poll_output`] and [`WebRtcLeg::accepts`]. Sockets and clocks
//! belong to the caller (the gateway's `media_io` shell).
//!
//! A leg without video runs str0m in RTP mode: an Opus frame is one RTP packet, so we
//! write and receive whole packets and str0m's sample-level packetizer, depacketizer
//! and their buffers stay out of the per-frame path. A leg configured with video codecs
//! whose offer has a video m-line runs in frame mode (str0m (de)packetizes the video
//! frames, and the audio with them), even if no video codec matches in the end: the
//! mode is chosen before str0m answers.
//!
//! # Why str0m and not the `webrtc` crate
//!
//! str0m is sans-IO like every other core in this project: no tasks, no
//! sockets, no `Instant::now()` inside, so tests drive two legs against each
//! other in microseconds. One UDP socket can carry many calls because
//! [`Rtc::accepts`] tells which leg a datagram belongs to. It is also far
//! smaller than webrtc-rs, and with the `rust-crypto` feature DTLS and SRTP are
//! pure Rust (no OpenSSL to build or ship).
//!
//! # Time
//!
//! Every call takes `now`. The leg adds two deadlines of its own on top of
//! str0m's: [`CONNECT_TIMEOUT`] for ICE+DTLS to come up, and
//! [`DISCONNECT_GRACE`] after ICE reports the peer gone; when either passes
//! the leg emits [`Event::Failed`] once and the caller ends the call.
//!
//! # Errors vs panics
//!
//! Bad SDP, bad candidates and bad datagrams are [`WebRtcError`]s; nothing
//! from the network panics.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid, Pt};
use str0m::net::Protocol;
use str0m::rtp::{Extension, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, IceConnectionState, Rtc};

use crate::sdp::{MediaDescription, SessionDescription, VideoCodec};

/// How long ICE and DTLS may take before an unconnected leg fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connected leg may stay ICE-disconnected before it fails.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(10);

/// The payload type we offer for telephone-event/48000 when the browser has none of its own.
const PT_TELEPHONE_EVENT: u8 = 110;

/// Errors of the WebRTC leg.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebRtcError {
    /// The offer is not valid SDP.
    #[error("invalid sdp offer: {0}")]
    BadOffer(String),
    /// The offer parsed but has no audio we can answer with Opus.
    #[error("offer has no opus audio")]
    NoOpus,
    /// A remote ICE candidate could not be parsed.
    #[error("invalid ice candidate: {0}")]
    BadCandidate(String),
    /// The leg has no local candidate address to answer with.
    #[error("no local candidate address")]
    NoLocalAddress,
    /// A local address could not become an ICE host candidate.
    #[error("invalid local address {0}")]
    BadLocalAddress(SocketAddr),
    /// The configured external IP cannot become a server-reflexive candidate.
    #[error("invalid external address {0}")]
    BadExternalAddress(SocketAddr),
    /// A received datagram is neither STUN, DTLS nor SRTP.
    #[error("unrecognised datagram")]
    BadDatagram,
    /// Media was written before the leg had negotiated an Opus stream.
    #[error("no negotiated opus stream")]
    NotNegotiated,
    /// Video was written or a keyframe asked for on a leg without a video stream.
    #[error("no negotiated video stream")]
    NoVideo,
    /// str0m refused an operation.
    #[error("webrtc: {0}")]
    Rtc(#[from] str0m::RtcError),
}

/// Settings for a new leg.
#[derive(Debug, Clone)]
pub struct WebRtcConfig {
    /// Addresses of the UDP socket(s) this leg receives on; each becomes a host candidate.
    pub local_addrs: Vec<SocketAddr>,
    /// Video codecs accepted for passthrough, in preference order (the first one the
    /// browser offers is what it will send); empty refuses video.
    pub video: Vec<VideoCodec>,
    /// The public address of a gateway behind 1:1 NAT (like Asterisk's
    /// `external_media_address`): each local address is also offered as a
    /// server-reflexive candidate `external_ip:<same port>` with that socket as base.
    pub external_ip: Option<IpAddr>,
}

/// A UDP datagram that arrived on one of the leg's local addresses.
#[derive(Debug, Clone, Copy)]
pub struct Receive<'a> {
    /// Who sent it.
    pub source: SocketAddr,
    /// The local address it arrived on.
    pub destination: SocketAddr,
    /// The datagram bytes.
    pub contents: &'a [u8],
}

/// A UDP datagram the caller must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local address to send from.
    pub source: SocketAddr,
    /// The peer address to send to.
    pub destination: SocketAddr,
    /// The datagram bytes.
    pub contents: Vec<u8>,
}

/// One received Opus frame (one RTP packet's payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusFrame {
    /// The RTP payload type the browser used.
    pub pt: u8,
    /// The RTP sequence number, extended past 16-bit wrap-around (for reordering and loss).
    pub seq: u64,
    /// The RTP timestamp at 48 kHz, extended past 32-bit wrap-around.
    pub rtp_timestamp: u64,
    /// The Opus packet.
    pub payload: Arc<[u8]>,
}

/// One received video frame, depacketized by str0m.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserVideoFrame {
    /// The RTP payload type the browser used.
    pub pt: u8,
    /// The RTP timestamp at 90 kHz, extended past 32-bit wrap-around.
    pub rtp_time: u64,
    /// A key frame (decodable on its own).
    pub keyframe: bool,
    /// False when packets were lost since the previous frame.
    pub contiguous: bool,
    /// The frame (VP8 bitstream, or H.264 Annex B).
    pub data: Arc<[u8]>,
}

/// Something the caller should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// ICE and DTLS are up; media can flow.
    Connected,
    /// An Opus frame arrived from the browser.
    Opus(OpusFrame),
    /// An RFC 4733 telephone-event payload arrived (raw 4-byte event).
    TelephoneEvent {
        /// The RTP timestamp of the event start, at 48 kHz.
        rtp_timestamp: u64,
        /// The event payload.
        payload: Arc<[u8]>,
    },
    /// A video frame arrived from the browser.
    Video(BrowserVideoFrame),
    /// The browser asked for a keyframe of the video we send (PLI or FIR).
    KeyframeRequest,
    /// ICE never connected or stayed disconnected too long; end the call.
    Failed,
    /// The peer closed DTLS; end the call.
    Closed,
}

/// What [`WebRtcLeg::poll_output`] hands back.
#[derive(Debug)]
pub enum Output {
    /// Send this datagram.
    Transmit(Transmit),
    /// Handle this event.
    Event(Event),
    /// Nothing more until this instant (or new input).
    Timeout(Instant),
}

/// One browser's WebRTC session, answered by us.
pub struct WebRtcLeg {
    /// The str0m engine; every mutation is followed by draining `poll_output`.
    rtc: Rtc,
    /// The audio m-line we send on, learnt from the offer.
    mid: Option<Mid>,
    /// Our Opus payload type on that m-line.
    opus_pt: Option<Pt>,
    /// The video m-line, when one was accepted.
    video_mid: Option<Mid>,
    /// The video payload type the browser sends with (the first of our answer).
    video_pt: Option<Pt>,
    /// Our answer's video m-line narrowed to that payload type, for the PBX offer.
    video_media: Option<MediaDescription>,
    /// Events held back while str0m is drained (our own deadlines).
    pending: VecDeque<Event>,
    /// When the leg was created; the connect deadline counts from here.
    started: Instant,
    /// When ICE reported the peer gone, if it is gone now.
    disconnected_since: Option<Instant>,
    /// Whether ICE+DTLS came up at least once.
    connected: bool,
    /// Whether `Failed` or `Closed` was emitted; the leg is then dead.
    finished: bool,
    /// The latest `now` we were given; time that goes backwards is clamped to it.
    now: Instant,
    /// str0m's last answer was "nothing until this time" and nothing was fed in
    /// since: `poll_output` answers that again without asking str0m, whose poll walks
    /// its whole session (a call's task polls after every turn, most of them
    /// playout ticks of the bridge that never touch this leg).
    idle_until: Option<Instant>,
    /// str0m runs in RTP mode (every leg without video): received packets come out
    /// as they are and we write whole RTP packets, so str0m's sample-level
    /// packetizer, depacketizer and their buffers are skipped (Opus is one frame
    /// per packet). A leg with video runs in frame mode: str0m depacketizes and
    /// packetizes the video frames.
    rtp_mode: bool,
    /// The payload types of our codec config and their codecs (RTP mode: what a
    /// received packet carries).
    codecs: Vec<(Pt, Codec)>,
    /// Our outgoing audio stream (RTP mode): its SSRC, once looked up, and the next
    /// sequence number.
    tx: Option<(Ssrc, SeqNo)>,
}

impl std::fmt::Debug for WebRtcLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcLeg")
            .field("mid", &self.mid)
            .field("connected", &self.connected)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl WebRtcLeg {
    /// Accepts a browser's SDP offer and returns the leg with the SDP answer to send back.
    ///
    /// # Errors
    /// [`WebRtcError::BadOffer`] for unparseable SDP, [`WebRtcError::NoOpus`]
    /// when no audio m-line offers Opus, [`WebRtcError::NoLocalAddress`] with an
    /// empty config.
    pub fn accept_offer(
        now: Instant,
        config: &WebRtcConfig,
        offer_sdp: &str,
    ) -> Result<(Self, String), WebRtcError> {
        if config.local_addrs.is_empty() {
            return Err(WebRtcError::NoLocalAddress);
        }
        let offer = str0m::change::SdpOffer::from_sdp_string(offer_sdp)
            .map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        // Frame mode only when video may be accepted (str0m then (de)packetizes the
        // video frames); a voice leg moves whole RTP packets.
        let rtp_mode = config.video.is_empty() || mids_of(offer_sdp, "video").is_empty();
        let mut builder = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_rtp_mode(rtp_mode)
            .clear_codecs()
            .enable_opus(true, false)
            // Hand every packet out as it comes: the bridge's jitter buffer reorders
            // and conceals. str0m's default holds frames after a gap until 15 more
            // have arrived (300 ms of audio), which turns every lost packet into a
            // 300 ms stall before the jitter buffer.
            .set_reordering_size_audio(0)
            // Only what an audio leg uses: the mid (BUNDLE demux) and the audio
            // level. No transport-wide sequence numbers: with them the browser sends
            // transport-cc feedback for every few packets and str0m books each one,
            // for a bandwidth estimate a fixed-rate voice leg has no use for.
            .clear_extension_map()
            .set_extension(1, Extension::AudioLevel)
            .set_extension(4, Extension::RtpMid);
        // str0m answers with its codecs in the order they were enabled
        for codec in &config.video {
            builder = match codec {
                VideoCodec::Vp8 => builder.enable_vp8(true),
                VideoCodec::H264 => builder.enable_h264(true),
            };
        }
        builder.codec_config().add_config(
            Pt::new_with_value(PT_TELEPHONE_EVENT),
            None,
            Codec::Tele,
            Frequency::FORTY_EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
        let mut rtc = builder.build(now);
        for addr in &config.local_addrs {
            let candidate = Candidate::host(*addr, Protocol::Udp)
                .map_err(|_| WebRtcError::BadLocalAddress(*addr))?;
            rtc.add_local_candidate(candidate);
            if let Some(ip) = config.external_ip {
                let public = SocketAddr::new(ip, addr.port());
                let srflx = Candidate::server_reflexive(public, *addr, Protocol::Udp)
                    .map_err(|_| WebRtcError::BadExternalAddress(public))?;
                rtc.add_local_candidate(srflx);
            }
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        // (after the offer: str0m takes over the browser's payload type numbers)
        let codecs = rtc
            .codec_config()
            .params()
            .iter()
            .map(|p| (p.pt(), p.spec().codec))
            .collect();
        let mut leg = WebRtcLeg {
            rtc,
            mid: None,
            opus_pt: None,
            video_mid: None,
            video_pt: None,
            video_media: None,
            pending: VecDeque::new(),
            started: now,
            disconnected_since: None,
            connected: false,
            finished: false,
            now,
            idle_until: None,
            rtp_mode,
            codecs,
            tx: None,
        };
        leg.find_opus(&mids_of(offer_sdp, "audio"));
        if leg.opus_pt.is_none() {
            return Err(WebRtcError::NoOpus);
        }
        let answer = answer.to_sdp_string();
        if !config.video.is_empty() {
            leg.find_video(&answer);
        }
        Ok((leg, answer))
    }

    /// Finds the accepted video m-line in our answer and the codec the browser will send
    /// with: the first VP8 or H.264 payload type of the answer (JSEP 5.3.1: the answer's
    /// order is what the offerer sends).
    fn find_video(&mut self, answer: &str) {
        let Ok(sd) = SessionDescription::parse(answer) else {
            return;
        };
        let Some(m) = sd
            .media
            .iter()
            .find(|m| m.kind == crate::sdp::MediaKind::Video && m.port != 0)
        else {
            return;
        };
        let Some(mid) = m.attribute("mid").and_then(|a| a.value.as_deref()) else {
            return;
        };
        let Some(pt) = m.payload_types().find(|&pt| {
            m.rtpmap(pt).is_some_and(|r| {
                r.clock_rate == 90_000 && VideoCodec::from_name(&r.encoding).is_some()
            })
        }) else {
            return;
        };
        let mid = Mid::from(mid);
        if self.rtc.media(mid).is_none() {
            return;
        }
        let mut narrowed = MediaDescription::new(m.kind.clone(), m.port, &m.proto);
        narrowed.formats = vec![pt.to_string()];
        narrowed.rtpmaps = m.rtpmaps.iter().filter(|r| r.pt == pt).cloned().collect();
        narrowed.fmtps = m.fmtps.iter().filter(|f| f.pt == pt).cloned().collect();
        let (pt_s, star) = (format!("{pt} "), "* ");
        narrowed.attributes = m
            .attributes
            .iter()
            .filter(|a| {
                a.name == "rtcp-fb"
                    && a.value
                        .as_deref()
                        .is_some_and(|v| v.starts_with(&pt_s) || v.starts_with(star))
            })
            .cloned()
            .collect();
        self.video_mid = Some(mid);
        self.video_pt = Some(Pt::new_with_value(pt));
        self.video_media = Some(narrowed);
    }

    /// The video codec the browser sends, when a video m-line was accepted.
    pub fn video_codec(&self) -> Option<VideoCodec> {
        let m = self.video_media.as_ref()?;
        VideoCodec::from_name(&m.rtpmaps.first()?.encoding)
    }

    /// The accepted video m-line narrowed to the one codec the browser sends (payload
    /// type, rtpmap, fmtp, rtcp-fb): what to offer the PBX for passthrough. `None` when
    /// the offer had no video, or the leg was configured without video.
    pub fn video_media(&self) -> Option<&MediaDescription> {
        self.video_media.as_ref()
    }

    /// Writes one video frame towards the browser; str0m packetizes it on our own SSRC
    /// and sequence numbers. `rtp_time` is our outgoing 90 kHz clock (extended,
    /// monotonic). Frames written before [`Event::Connected`] are dropped by str0m.
    ///
    /// # Errors
    /// [`WebRtcError::NoVideo`] without a video stream; [`WebRtcError::Rtc`] when str0m
    /// refuses the frame.
    pub fn write_video(
        &mut self,
        now: Instant,
        rtp_time: u64,
        frame: &[u8],
    ) -> Result<(), WebRtcError> {
        let (Some(mid), Some(pt)) = (self.video_mid, self.video_pt) else {
            return Err(WebRtcError::NoVideo);
        };
        let time = MediaTime::new(rtp_time, Frequency::NINETY_KHZ);
        self.write_media(now, (mid, pt), time, frame, WebRtcError::NoVideo)
    }

    /// Hands one frame to str0m's writer for `mid` (which packetizes and encrypts it
    /// on the next poll); `missing` when the m-line has no writer.
    fn write_media(
        &mut self,
        now: Instant,
        (mid, pt): (Mid, Pt),
        time: MediaTime,
        data: &[u8],
        missing: WebRtcError,
    ) -> Result<(), WebRtcError> {
        let now = self.advance(now);
        self.idle_until = None;
        if self.rtp_mode {
            return self.write_packet(now, (mid, pt), time, data, missing);
        }
        let writer = self.rtc.writer(mid).ok_or(missing)?;
        writer.write(pt, now, time, data.to_vec())?;
        Ok(())
    }

    /// RTP mode: hands one frame to str0m as one RTP packet on our stream for `mid`
    /// (our SSRC, our sequence numbers); str0m adds the header extensions, encrypts
    /// and sends it on the next poll. Before ICE and DTLS are up the frame is dropped,
    /// as frame mode does.
    fn write_packet(
        &mut self,
        now: Instant,
        (mid, pt): (Mid, Pt),
        time: MediaTime,
        data: &[u8],
        missing: WebRtcError,
    ) -> Result<(), WebRtcError> {
        if !self.connected {
            return Ok(());
        }
        let mut api = self.rtc.direct_api();
        let stream = match self.tx {
            Some((ssrc, _)) => api.stream_tx(&ssrc),
            None => api.stream_tx_by_mid(mid, None),
        }
        .ok_or(missing)?;
        let (ssrc, seq) = match self.tx {
            Some(tx) => tx,
            // a random start (RFC 3550 5.1): the SSRC str0m drew at random
            None => (stream.ssrc(), SeqNo::from(u64::from(*stream.ssrc() as u16))),
        };
        stream.write_rtp(RtpWrite::new(pt, seq, time.numer() as u32, now, data));
        self.tx = Some((ssrc, SeqNo::from(*seq + 1)));
        Ok(())
    }

    /// Asks the browser's video encoder for a keyframe (PLI).
    ///
    /// # Errors
    /// [`WebRtcError::NoVideo`] without a video stream; [`WebRtcError::Rtc`] before the
    /// browser sent any video (there is no stream to address yet).
    pub fn request_keyframe(&mut self) -> Result<(), WebRtcError> {
        let mid = self.video_mid.ok_or(WebRtcError::NoVideo)?;
        self.idle_until = None;
        let mut writer = self.rtc.writer(mid).ok_or(WebRtcError::NoVideo)?;
        writer.request_keyframe(None, KeyframeRequestKind::Pli)?;
        Ok(())
    }

    /// Finds the audio m-line and its Opus payload type after negotiation.
    fn find_opus(&mut self, mids: &[Mid]) {
        // the answer is applied already, so str0m knows every m-line; MediaAdded
        // events would tell the same but only once polled
        for &mid in mids {
            let Some(media) = self.rtc.media(mid) else {
                continue;
            };
            if media.kind() != MediaKind::Audio {
                continue;
            }
            let pt = media.remote_pts().iter().copied().find(|pt| {
                self.rtc
                    .codec_config()
                    .params()
                    .iter()
                    .any(|p| p.pt() == *pt && p.spec().codec == Codec::Opus)
            });
            if let Some(pt) = pt {
                self.mid = Some(mid);
                self.opus_pt = Some(pt);
                return;
            }
        }
    }

    /// Adds a trickled remote candidate (`candidate:...` with or without the `a=` prefix).
    ///
    /// An empty string (end of candidates) is accepted and ignored.
    ///
    /// # Errors
    /// [`WebRtcError::BadCandidate`] when the line cannot be parsed (for
    /// example an mDNS `.local` name, which we cannot resolve).
    pub fn add_remote_candidate(&mut self, candidate: &str) -> Result<(), WebRtcError> {
        let line = candidate.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        if line.is_empty() {
            return Ok(());
        }
        let c = Candidate::from_sdp_string(line)
            .map_err(|e| WebRtcError::BadCandidate(e.to_string()))?;
        self.idle_until = None;
        self.rtc.add_remote_candidate(c);
        Ok(())
    }

    /// Whether this datagram belongs to this leg (for many legs on one socket).
    pub fn accepts(&self, input: &Receive<'_>) -> bool {
        let Ok(receive) = str0m::net::Receive::new(
            Protocol::Udp,
            input.source,
            input.destination,
            input.contents,
        ) else {
            return false;
        };
        // str0m's `accepts` ignores the time in the input
        self.rtc.accepts(&str0m::Input::Receive(self.now, receive))
    }

    /// Feeds one received datagram. Drain [`Self::poll_output`] afterwards.
    ///
    /// # Errors
    /// [`WebRtcError::BadDatagram`] for bytes that are no WebRTC packet;
    /// [`WebRtcError::Rtc`] when str0m rejects it. Either way the leg stays usable.
    pub fn handle_input(&mut self, now: Instant, input: Receive<'_>) -> Result<(), WebRtcError> {
        let now = self.advance(now);
        let receive = str0m::net::Receive::new(
            Protocol::Udp,
            input.source,
            input.destination,
            input.contents,
        )
        .map_err(|_| WebRtcError::BadDatagram)?;
        self.idle_until = None;
        self.rtc.handle_input(str0m::Input::Receive(now, receive))?;
        Ok(())
    }

    /// Advances time; fires str0m's timers and our connect/disconnect deadlines.
    ///
    /// # Errors
    /// [`WebRtcError::Rtc`] when str0m fails internally.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), WebRtcError> {
        let now = self.advance(now);
        if !self.finished {
            let connect_expired = !self.connected && now >= self.started + CONNECT_TIMEOUT;
            let gone_too_long = self
                .disconnected_since
                .is_some_and(|since| now >= since + DISCONNECT_GRACE);
            if connect_expired || gone_too_long {
                self.finished = true;
                self.pending.push_back(Event::Failed);
            }
        }
        self.idle_until = None;
        self.rtc.handle_input(str0m::Input::Timeout(now))?;
        Ok(())
    }

    /// Records `now`, clamping time that goes backwards.
    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// Writes one Opus frame towards the browser on our own SSRC and sequence numbers.
    ///
    /// `rtp_time` is our outgoing RTP clock at 48 kHz (extended, monotonic);
    /// `now` is used as the frame's wallclock. Frames written before
    /// [`Event::Connected`] are dropped by str0m.
    ///
    /// # Errors
    /// [`WebRtcError::NotNegotiated`] without an Opus stream.
    pub fn write_opus(
        &mut self,
        now: Instant,
        rtp_time: u64,
        payload: &[u8],
    ) -> Result<(), WebRtcError> {
        let (Some(mid), Some(pt)) = (self.mid, self.opus_pt) else {
            return Err(WebRtcError::NotNegotiated);
        };
        let time = MediaTime::new(rtp_time, Frequency::FORTY_EIGHT_KHZ);
        self.write_media(now, (mid, pt), time, payload, WebRtcError::NotNegotiated)
    }

    /// Leaves `frames` audio frames out of the stream to the browser as lost: in RTP
    /// mode the next frame's sequence number is that much further on (the caller has
    /// already left their time out of its timestamps), so the browser conceals the gap
    /// instead of taking it for silence. In frame mode str0m numbers the packets and
    /// only the timestamps show the gap.
    pub fn skip_audio(&mut self, frames: u16) {
        if let Some((ssrc, seq)) = self.tx {
            self.tx = Some((ssrc, SeqNo::from(*seq + u64::from(frames))));
        }
    }

    /// Whether ICE and DTLS are up right now.
    pub fn is_connected(&self) -> bool {
        self.connected && self.disconnected_since.is_none()
    }

    /// Whether the leg has ended (failed, closed by the peer or by [`Self::close`]).
    pub fn is_finished(&self) -> bool {
        self.finished || !self.rtc.is_alive()
    }

    /// Closes the leg: sends DTLS close_notify; drain [`Self::poll_output`] afterwards.
    pub fn close(&mut self) {
        self.finished = true;
        self.idle_until = None;
        if let Err(e) = self.rtc.close() {
            tracing::debug!(cause = %e, "closing webrtc leg");
        }
    }

    /// Returns the next transmit, event or timeout. Call until it returns [`Output::Timeout`].
    ///
    /// # Errors
    /// [`WebRtcError::Rtc`] when str0m fails internally; the leg should then be dropped.
    pub fn poll_output(&mut self) -> Result<Output, WebRtcError> {
        if let Some(ev) = self.pending.pop_front() {
            return Ok(Output::Event(ev));
        }
        // str0m asks for a timeout at "now" after every frame written (and after
        // some received ones) to move it through its send queue; run those here
        // rather than hand the caller a deadline that is already due, which costs
        // the caller a whole wake-up per frame. Bounded, in case str0m keeps asking.
        if let Some(t) = self.idle_until {
            return Ok(Output::Timeout(self.own_deadline(t)));
        }
        let mut due_again = 0;
        loop {
            let out = match self.rtc.poll_output() {
                Ok(out) => out,
                // once closed str0m has nothing more to say; park far in the future
                Err(_) if !self.rtc.is_alive() => {
                    return Ok(Output::Timeout(self.far_future()));
                }
                Err(e) => return Err(e.into()),
            };
            match out {
                str0m::Output::Timeout(t) if t <= self.now && due_again < 4 => {
                    due_again += 1;
                    self.rtc.handle_input(str0m::Input::Timeout(self.now))?;
                }
                str0m::Output::Timeout(t) => {
                    self.idle_until = Some(t);
                    return Ok(Output::Timeout(self.own_deadline(t)));
                }
                str0m::Output::Transmit(t) => {
                    return Ok(Output::Transmit(Transmit {
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    }));
                }
                str0m::Output::Event(ev) => {
                    if let Some(ev) = self.translate(ev) {
                        return Ok(Output::Event(ev));
                    }
                }
            }
        }
    }

    /// Far enough that the caller sleeps until new input arrives.
    fn far_future(&self) -> Instant {
        self.started + Duration::from_secs(86_400 * 365)
    }

    /// The earlier of str0m's timeout and our own connect/disconnect deadline.
    fn own_deadline(&self, rtc_timeout: Instant) -> Instant {
        if self.finished {
            return rtc_timeout;
        }
        let ours = if !self.connected {
            Some(self.started + CONNECT_TIMEOUT)
        } else {
            self.disconnected_since.map(|t| t + DISCONNECT_GRACE)
        };
        match ours {
            Some(t) => rtc_timeout.min(t),
            None => rtc_timeout,
        }
    }

    /// Maps str0m events to ours; `None` for the ones a voice leg ignores.
    fn translate(&mut self, ev: str0m::Event) -> Option<Event> {
        match ev {
            str0m::Event::Connected => {
                self.connected = true;
                self.disconnected_since = None;
                Some(Event::Connected)
            }
            str0m::Event::IceConnectionStateChange(state) => {
                match state {
                    IceConnectionState::Disconnected => {
                        self.disconnected_since.get_or_insert(self.now);
                    }
                    IceConnectionState::Connected | IceConnectionState::Completed => {
                        self.disconnected_since = None;
                    }
                    _ => {}
                }
                None
            }
            str0m::Event::MediaAdded(added) if added.kind == MediaKind::Audio => {
                if self.mid.is_none() {
                    self.mid = Some(added.mid);
                }
                None
            }
            str0m::Event::MediaData(data) if self.video_mid == Some(data.mid) => {
                Some(Event::Video(BrowserVideoFrame {
                    pt: *data.pt,
                    rtp_time: data.time.numer(),
                    keyframe: data.is_keyframe(),
                    contiguous: data.contiguous,
                    data: data.data,
                }))
            }
            str0m::Event::KeyframeRequest(req) if self.video_mid == Some(req.mid) => {
                Some(Event::KeyframeRequest)
            }
            str0m::Event::MediaData(data) => {
                if Some(data.mid) != self.mid {
                    return None;
                }
                audio_event(
                    data.params.spec().codec,
                    *data.pt,
                    **data.seq_range.start(),
                    data.time.numer(),
                    data.data,
                )
            }
            str0m::Event::RtpPacket(packet) => self.translate_packet(packet),
            str0m::Event::Closed => {
                if self.finished {
                    None
                } else {
                    self.finished = true;
                    Some(Event::Closed)
                }
            }
            _ => None,
        }
    }

    /// RTP mode: an Opus frame or a telephone-event out of one received packet, as
    /// frame mode hands them out (extended sequence number and timestamp, the payload).
    fn translate_packet(&mut self, packet: str0m::rtp::RtpPacket) -> Option<Event> {
        let pt = packet.header.payload_type;
        let codec = self
            .codecs
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, c)| *c)?;
        // only our audio m-line's packets (an offer may bundle a second one)
        let mid = self
            .rtc
            .direct_api()
            .stream_rx(&packet.header.ssrc)
            .map(|s| s.mid());
        if mid.is_none() || mid != self.mid {
            return None;
        }
        audio_event(
            codec,
            *pt,
            *packet.seq_no,
            packet.time.numer(),
            packet.payload,
        )
    }
}

/// The leg's event for one received audio payload, in either mode: an Opus frame or a
/// telephone-event (extended sequence number, RTP timestamp); other codecs are ignored.
fn audio_event(
    codec: Codec,
    pt: u8,
    seq: u64,
    rtp_timestamp: u64,
    payload: Arc<[u8]>,
) -> Option<Event> {
    match codec {
        Codec::Opus => Some(Event::Opus(OpusFrame {
            pt,
            seq,
            rtp_timestamp,
            payload,
        })),
        Codec::Tele => Some(Event::TelephoneEvent {
            rtp_timestamp,
            payload,
        }),
        _ => None,
    }
}

/// The `a=mid:` values of the offer's m-lines of `kind` (`audio`), in order.
fn mids_of(sdp: &str, kind: &str) -> Vec<Mid> {
    let mut in_audio = false;
    let mut mids = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.strip_prefix(kind).is_some_and(|r| r.starts_with(' '));
        } else if let Some(mid) = line.strip_prefix("a=mid:")
            && in_audio
        {
            mids.push(Mid::from(mid));
        }
    }
    mids
}

#[cfg(test)]
mod tests {
    //! Two-party tests: a str0m `Rtc` plays the browser, datagrams move through
    //! memory and time is driven by hand, so a 30 s ICE timeout takes microseconds.

    use super::*;
    use str0m::media::Direction;

    fn browser_addr() -> SocketAddr {
        "127.0.0.1:50000".parse().expect("literal address")
    }

    /// The leg's address on the public side of a 1:1 NAT (`external_ip` tests).
    fn nat_public_addr() -> SocketAddr {
        "203.0.113.7:40000".parse().expect("literal address")
    }

    fn leg_addr() -> SocketAddr {
        "127.0.0.1:40000".parse().expect("literal address")
    }

    /// str0m's defaults plus telephone-event/48000, as Chromium offers.
    fn browser_builder() -> str0m::RtcConfig {
        let mut builder =
            Rtc::builder().set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()));
        builder.codec_config().add_config(
            Pt::new_with_value(126),
            None,
            Codec::Tele,
            Frequency::FORTY_EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
        builder
    }

    /// A browser-like peer making an audio offer; returns it with its offer SDP and audio mid.
    fn browser(now: Instant, kind: MediaKind) -> (Rtc, String, Mid) {
        let mut rtc = browser_builder().build(now);
        let cand = Candidate::host(browser_addr(), Protocol::Udp).expect("host candidate");
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(kind, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().expect("offer with one m-line");
        let sdp = offer.to_sdp_string();
        // keep the pending offer to accept the answer later
        PENDING.with(|p| *p.borrow_mut() = Some(pending));
        (rtc, sdp, mid)
    }

    thread_local! {
        static PENDING: std::cell::RefCell<Option<str0m::change::SdpPendingOffer>> =
            const { std::cell::RefCell::new(None) };
    }

    fn accept_answer(rtc: &mut Rtc, answer: &str) {
        let pending = PENDING
            .with(|p| p.borrow_mut().take())
            .expect("browser made an offer");
        let answer = str0m::change::SdpAnswer::from_sdp_string(answer).expect("answer parses");
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
    }

    /// Everything both sides said during a run.
    #[derive(Default)]
    struct Seen {
        leg: Vec<Event>,
        browser: Vec<str0m::Event>,
    }

    /// Moves datagrams and time between the browser and the leg until `until` or `done`.
    fn drive(
        now: &mut Instant,
        until: Instant,
        b: &mut Rtc,
        leg: &mut WebRtcLeg,
        seen: &mut Seen,
        echo: bool,
        mut done: impl FnMut(&Seen) -> bool,
    ) {
        while *now < until && !done(seen) {
            let mut to_leg = Vec::new();
            let tb = loop {
                match b.poll_output().expect("browser poll") {
                    str0m::Output::Timeout(t) => break t,
                    str0m::Output::Transmit(t) => to_leg.push(t),
                    str0m::Output::Event(e) => seen.browser.push(e),
                }
            };
            let mut to_b = Vec::new();
            let tl = loop {
                match leg.poll_output().expect("leg poll") {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => to_b.push(t),
                    Output::Event(e) => {
                        if let (true, Event::Opus(f)) = (echo, &e) {
                            leg.write_opus(*now, f.rtp_timestamp + 1000, &f.payload)
                                .expect("echo write");
                        }
                        seen.leg.push(e);
                    }
                }
            };
            // every datagram is delivered (a video frame spans several)
            let moved = !to_leg.is_empty() || !to_b.is_empty();
            for t in to_leg {
                // a 1:1 NAT in front of the leg forwards its public address to the socket
                let destination = if t.destination == nat_public_addr() {
                    leg_addr()
                } else {
                    t.destination
                };
                assert_eq!(destination, leg_addr());
                let input = Receive {
                    source: t.source,
                    destination,
                    contents: &t.contents,
                };
                assert!(leg.accepts(&input), "leg accepts its peer's datagrams");
                leg.handle_input(*now, input).expect("leg input");
            }
            for t in to_b {
                assert_eq!(t.destination, browser_addr());
                let recv =
                    str0m::net::Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
                        .expect("valid datagram");
                b.handle_input(str0m::Input::Receive(*now, recv))
                    .expect("browser input");
            }
            if moved {
                continue;
            }
            let next = tb.min(tl).min(until);
            *now = next.max(*now + Duration::from_micros(100));
            b.handle_input(str0m::Input::Timeout(*now))
                .expect("browser timeout");
            leg.handle_timeout(*now).expect("leg timeout");
        }
    }

    fn config() -> WebRtcConfig {
        WebRtcConfig {
            local_addrs: vec![leg_addr()],
            video: Vec::new(),
            external_ip: None,
        }
    }

    /// A browser offer is answered with Opus and our host candidate, and ICE+DTLS connect.
    #[test]
    fn answers_offer_and_connects() {
        let start = Instant::now();
        let mut now = start;
        let (mut b, offer, _) = browser(now, MediaKind::Audio);
        let (mut leg, answer) = WebRtcLeg::accept_offer(now, &config(), &offer).expect("answer");
        assert!(answer.contains("opus/48000/2"), "answer has opus: {answer}");
        assert!(
            answer.contains("127.0.0.1 40000 typ host"),
            "answer has our candidate"
        );
        assert!(answer.contains("a=rtcp-mux"));
        assert!(answer.contains("a=fingerprint:sha-256"));
        accept_answer(&mut b, &answer);
        // trickle: the browser's candidate arrives after the offer
        leg.add_remote_candidate("candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host")
            .expect("candidate parses");
        let mut seen = Seen::default();
        drive(
            &mut now,
            start + Duration::from_secs(10),
            &mut b,
            &mut leg,
            &mut seen,
            false,
            |s| s.leg.contains(&Event::Connected),
        );
        assert!(seen.leg.contains(&Event::Connected), "leg connected");
        assert!(leg.is_connected());
        assert!(
            now - start < Duration::from_secs(5),
            "connected in {:?}",
            now - start
        );
    }

    /// Behind 1:1 NAT the answer also carries a server-reflexive candidate: the external
    /// IP with our socket's port; the host candidate stays, and ICE still connects
    /// through the socket itself (the srflx candidate's base).
    #[test]
    fn external_ip_adds_srflx_candidate() {
        let start = Instant::now();
        let mut now = start;
        let (mut b, offer, _) = browser(now, MediaKind::Audio);
        let cfg = WebRtcConfig {
            external_ip: Some("203.0.113.7".parse().expect("literal address")),
            ..config()
        };
        let (mut leg, answer) = WebRtcLeg::accept_offer(now, &cfg, &offer).expect("answer");
        let candidates: Vec<&str> = answer
            .lines()
            .filter(|l| l.starts_with("a=candidate:"))
            .collect();
        assert_eq!(candidates.len(), 2, "host and srflx: {candidates:?}");
        assert!(
            candidates
                .iter()
                .any(|c| c.contains(" 127.0.0.1 40000 typ host")),
            "host candidate kept: {candidates:?}"
        );
        let srflx = candidates
            .iter()
            .find(|c| c.contains(" typ srflx"))
            .expect("srflx candidate");
        assert!(
            srflx.contains(" udp ") && srflx.contains(" 203.0.113.7 40000 typ srflx"),
            "external ip, same port: {srflx}"
        );
        // the base (our socket) stays inside: str0m writes a placeholder raddr, as RFC
        // 8839 allows, so the private address does not leak into the answer
        assert!(
            srflx.contains("raddr 0.0.0.0 rport 0") && !srflx.contains("127.0.0.1"),
            "private base not leaked: {srflx}"
        );

        accept_answer(&mut b, &answer);
        leg.add_remote_candidate("candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host")
            .expect("candidate parses");
        let mut seen = Seen::default();
        drive(
            &mut now,
            start + Duration::from_secs(10),
            &mut b,
            &mut leg,
            &mut seen,
            false,
            |s| s.leg.contains(&Event::Connected),
        );
        assert!(seen.leg.contains(&Event::Connected), "leg connected");
        // without the option there is no srflx candidate
        let (_b2, offer2, _) = browser(now, MediaKind::Audio);
        let (_leg2, plain) = WebRtcLeg::accept_offer(now, &config(), &offer2).expect("answer");
        assert!(!plain.contains("typ srflx"), "no srflx by default: {plain}");
    }

    /// A browser and a leg with ICE and DTLS up on both sides; returns them with the
    /// clock, what was seen so far, the browser's audio mid and its Opus payload type.
    fn connected_audio() -> (Instant, Rtc, WebRtcLeg, Seen, Mid, Pt) {
        connected_audio_in(false)
    }

    /// As [`connected_audio`]; with `frame_mode` the browser also offers video and the
    /// leg accepts it, so str0m runs the leg in frame mode instead of RTP mode.
    fn connected_audio_in(frame_mode: bool) -> (Instant, Rtc, WebRtcLeg, Seen, Mid, Pt) {
        let start = Instant::now();
        let mut now = start;
        let (mut b, offer, mid) = if frame_mode {
            let (b, offer, mid, _) = browser_av(now);
            (b, offer, mid)
        } else {
            browser(now, MediaKind::Audio)
        };
        let cfg = WebRtcConfig {
            video: if frame_mode {
                vec![VideoCodec::Vp8]
            } else {
                vec![]
            },
            ..config()
        };
        let (mut leg, answer) = WebRtcLeg::accept_offer(now, &cfg, &offer).expect("answer");
        assert_eq!(leg.rtp_mode, !frame_mode);
        accept_answer(&mut b, &answer);
        leg.add_remote_candidate("a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host")
            .expect("candidate parses");
        let mut seen = Seen::default();
        drive(
            &mut now,
            start + Duration::from_secs(10),
            &mut b,
            &mut leg,
            &mut seen,
            false,
            |s| {
                s.leg.contains(&Event::Connected)
                    && s.browser
                        .iter()
                        .any(|e| matches!(e, str0m::Event::Connected))
            },
        );
        let pt = b
            .writer(mid)
            .expect("browser writer")
            .payload_params()
            .find(|p| p.spec().codec == Codec::Opus)
            .expect("browser has opus")
            .pt();
        (now, b, leg, seen, mid, pt)
    }

    /// Opus written by the browser comes out as frames, and frames we write reach the browser.
    #[test]
    fn opus_flows_both_ways() {
        opus_flows_both_ways_in(false);
    }

    /// The same through a leg in frame mode (a call with video).
    #[test]
    fn opus_flows_both_ways_in_frame_mode() {
        opus_flows_both_ways_in(true);
    }

    /// `skip_audio` leaves sequence numbers out of our stream in RTP mode: the next
    /// packet the browser gets is that many further on (it conceals the gap).
    #[test]
    fn skipped_frames_are_a_sequence_gap() {
        let (mut now, mut b, mut leg, mut seen, _, _) = connected_audio_in(false);
        leg.write_opus(now, 0, &[0xF8, 0]).expect("write");
        leg.skip_audio(2);
        // str0m's receive side (the test's browser) holds frames after a gap until more
        // have come: write enough of them
        for i in 3..30u8 {
            leg.write_opus(now, u64::from(i) * 960, &[0xF8, i])
                .expect("write");
            let until = now + Duration::from_millis(20);
            drive(&mut now, until, &mut b, &mut leg, &mut seen, false, |_| {
                false
            });
        }
        let got: Vec<(u64, u8)> = seen
            .browser
            .iter()
            .filter_map(|e| match e {
                str0m::Event::MediaData(d) => Some((**d.seq_range.start(), d.data[1])),
                _ => None,
            })
            .collect();
        assert!(got.len() >= 2, "{got:?}");
        assert_eq!((got[0].1, got[1].1), (0, 3), "{got:?}");
        assert_eq!(got[1].0 - got[0].0, 3, "{got:?}");
    }

    fn opus_flows_both_ways_in(frame_mode: bool) {
        let (mut now, mut b, mut leg, mut seen, mid, pt) = connected_audio_in(frame_mode);
        for i in 0..10u64 {
            let payload = vec![0xF8, i as u8, 1, 2, 3];
            b.writer(mid)
                .expect("browser writer")
                .write(
                    pt,
                    now,
                    MediaTime::new(i * 960, Frequency::FORTY_EIGHT_KHZ),
                    payload,
                )
                .expect("browser write");
            let until = now + Duration::from_millis(20);
            drive(&mut now, until, &mut b, &mut leg, &mut seen, true, |_| {
                false
            });
        }
        let until = now + Duration::from_millis(200);
        drive(&mut now, until, &mut b, &mut leg, &mut seen, true, |_| {
            false
        });
        let frames: Vec<&OpusFrame> = seen
            .leg
            .iter()
            .filter_map(|e| match e {
                Event::Opus(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), 10, "every frame arrives once");
        assert_eq!(&*frames[3].payload, &[0xF8, 3, 1, 2, 3]);
        assert_eq!(frames[3].rtp_timestamp - frames[2].rtp_timestamp, 960);
        let echoed: Vec<&[u8]> = seen
            .browser
            .iter()
            .filter_map(|e| match e {
                str0m::Event::MediaData(d) => Some(&*d.data),
                _ => None,
            })
            .collect();
        // str0m's receive side may hold back the newest frames in its reorder
        // buffer, so not all ten show up within the run; the echoed ones are intact
        assert!(echoed.len() >= 5, "echo reached the browser: {echoed:?}");
        for d in &echoed {
            assert!(
                d.len() == 5 && d[0] == 0xF8 && d[2..] == [1, 2, 3],
                "echoed {d:?}"
            );
        }
        // our packets are numbered one after another and stamped with the times we wrote
        let sent: Vec<(u64, u64)> = seen
            .browser
            .iter()
            .filter_map(|e| match e {
                str0m::Event::MediaData(d) => Some((**d.seq_range.start(), d.time.numer())),
                _ => None,
            })
            .collect();
        for w in sent.windows(2) {
            assert_eq!(w[1].0, w[0].0 + 1, "sequence numbers: {sent:?}");
            assert_eq!(w[1].1, w[0].1 + 960, "timestamps: {sent:?}");
        }
    }

    /// A telephone-event from the browser comes out as one event per packet (updates
    /// and the end packet share the event's timestamp) with its payload, in RTP mode
    /// and in frame mode.
    #[test]
    fn telephone_events_arrive() {
        for frame_mode in [false, true] {
            let (mut now, mut b, mut leg, mut seen, mid, _) = connected_audio_in(frame_mode);
            let tele = b
                .writer(mid)
                .expect("browser writer")
                .payload_params()
                .find(|p| p.spec().codec == Codec::Tele)
                .expect("browser has telephone-event")
                .pt();
            // digit 5, volume 10: two updates and the end packet (one event, one
            // timestamp), then digit 6 starting 100 ms later
            let events: [([u8; 4], u64); 4] = [
                ([5, 10, 0, 160], 48_000),
                ([5, 10, 1, 64], 48_000),
                ([5, 0x8A, 1, 224], 48_000),
                ([6, 10, 0, 160], 52_800),
            ];
            for (ev, start) in &events {
                b.writer(mid)
                    .expect("browser writer")
                    .write(
                        tele,
                        now,
                        MediaTime::new(*start, Frequency::FORTY_EIGHT_KHZ),
                        ev.to_vec(),
                    )
                    .expect("browser write");
                let until = now + Duration::from_millis(20);
                drive(&mut now, until, &mut b, &mut leg, &mut seen, false, |_| {
                    false
                });
            }
            let got: Vec<(u64, Vec<u8>)> = seen
                .leg
                .iter()
                .filter_map(|e| match e {
                    Event::TelephoneEvent {
                        rtp_timestamp,
                        payload,
                    } => Some((*rtp_timestamp, payload.to_vec())),
                    _ => None,
                })
                .collect();
            assert_eq!(got.len(), 4, "frame mode {frame_mode}: {got:?}");
            for (i, (ts, p)) in got.iter().enumerate() {
                let (ev, start) = events[i];
                assert_eq!(p[..], ev[..], "frame mode {frame_mode}");
                // the event's start as the browser stamped it, at 48 kHz
                assert_eq!(
                    ts.wrapping_sub(got[0].0),
                    start - events[0].1,
                    "frame mode {frame_mode}: {got:?}"
                );
            }
        }
    }

    /// The trunk's video codec list decides what the browser sends: its first codec leads
    /// the answer (a browser sends the answer's first codec), and an H.264-only list
    /// answers H.264 alone to a browser that offers VP8 first.
    #[test]
    fn video_answer_follows_the_codec_preference() {
        let now = Instant::now();
        let first_video_codec = |prefer: Vec<VideoCodec>| {
            let (_, offer, _, _) = browser_av(now);
            assert!(
                offer.find("VP8/90000") < offer.find("H264/90000"),
                "the browser offers vp8 first: {offer}"
            );
            let cfg = WebRtcConfig {
                video: prefer,
                ..config()
            };
            let (leg, answer) = WebRtcLeg::accept_offer(now, &cfg, &offer).expect("answer");
            let vm = leg.video_media().expect("video accepted");
            assert_eq!(vm.rtpmaps.len(), 1, "narrowed to one codec");
            (vm.rtpmaps[0].encoding.clone(), answer)
        };
        let (codec, answer) = first_video_codec(vec![VideoCodec::H264]);
        assert_eq!(codec, "H264");
        assert!(!answer.contains("VP8/90000"), "h264 only: {answer}");
        let (codec, answer) = first_video_codec(vec![VideoCodec::H264, VideoCodec::Vp8]);
        assert_eq!(codec, "H264", "{answer}");
        let (codec, answer) = first_video_codec(vec![VideoCodec::Vp8, VideoCodec::H264]);
        assert_eq!(codec, "VP8", "{answer}");
        let (_, offer, _, _) = browser_av(now);
        let (leg, answer) = WebRtcLeg::accept_offer(now, &config(), &offer).expect("answer");
        assert!(leg.video_media().is_none(), "no video codecs: {answer}");
    }

    /// A browser offering audio and video (every codec str0m knows); returns it with its
    /// offer SDP and the audio and video mids.
    fn browser_av(now: Instant) -> (Rtc, String, Mid, Mid) {
        let mut rtc = browser_builder().build(now);
        let cand = Candidate::host(browser_addr(), Protocol::Udp).expect("host candidate");
        rtc.add_local_candidate(cand);
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().expect("offer with two m-lines");
        PENDING.with(|p| *p.borrow_mut() = Some(pending));
        (rtc, offer.to_sdp_string(), audio, video)
    }

    /// A VP8-looking frame: the frame tag's P bit (bit 0) clear for a key frame.
    fn vp8_frame(i: u8, key: bool, len: usize) -> Vec<u8> {
        let mut f = vec![i; len];
        f[0] = if key { 0x10 } else { 0x11 };
        f
    }

    /// Video beside audio: the answer accepts VP8 and names it for the PBX offer; frames
    /// cross both ways whole (a 3000-byte key frame spans packets); a PLI from the browser
    /// comes out as a keyframe request, and ours reaches the browser's encoder side.
    #[test]
    fn video_frames_and_keyframe_requests_both_ways() {
        let start = Instant::now();
        let mut now = start;
        let (mut b, offer, _, vmid) = browser_av(now);
        let cfg = WebRtcConfig {
            video: vec![VideoCodec::Vp8, VideoCodec::H264],
            ..config()
        };
        let (mut leg, answer) = WebRtcLeg::accept_offer(now, &cfg, &offer).expect("answer");
        assert!(answer.contains("VP8/90000"), "answer has vp8: {answer}");
        let vm = leg.video_media().expect("video accepted").clone();
        assert_eq!(vm.rtpmaps.len(), 1);
        assert_eq!(vm.rtpmaps[0].encoding, "VP8");
        assert!(
            vm.attributes
                .iter()
                .any(|a| a.value.as_deref().is_some_and(|v| v.ends_with("pli")))
        );
        accept_answer(&mut b, &answer);
        leg.add_remote_candidate("candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host")
            .expect("candidate parses");
        let mut seen = Seen::default();
        drive(
            &mut now,
            start + Duration::from_secs(10),
            &mut b,
            &mut leg,
            &mut seen,
            false,
            |s| {
                s.leg.contains(&Event::Connected)
                    && s.browser
                        .iter()
                        .any(|e| matches!(e, str0m::Event::Connected))
            },
        );
        assert!(leg.is_connected());
        // gateway -> browser
        let sent: Vec<Vec<u8>> = (0..6u8)
            .map(|i| vp8_frame(i, i == 0, if i == 0 { 3000 } else { 400 }))
            .collect();
        for (i, f) in sent.iter().enumerate() {
            leg.write_video(now, 90_000 + 3000 * i as u64, f)
                .expect("video write");
            let until = now + Duration::from_millis(33);
            drive(&mut now, until, &mut b, &mut leg, &mut seen, false, |_| {
                false
            });
        }
        let got: Vec<&[u8]> = seen
            .browser
            .iter()
            .filter_map(|e| match e {
                str0m::Event::MediaData(d) if d.mid == vmid => Some(&*d.data),
                _ => None,
            })
            .collect();
        assert!(got.len() >= 4, "frames reached the browser: {}", got.len());
        assert_eq!(got[0], &sent[0][..], "the key frame arrives whole");
        // browser -> gateway
        let pt = b
            .writer(vmid)
            .expect("browser writer")
            .payload_params()
            .find(|p| p.spec().codec == Codec::Vp8)
            .expect("browser has vp8")
            .pt();
        assert_eq!(
            Some(pt),
            leg.video_pt,
            "the browser sends with the answer's first pt"
        );
        for (i, f) in sent.iter().enumerate() {
            b.writer(vmid)
                .expect("browser writer")
                .write(
                    pt,
                    now,
                    MediaTime::new(3000 * i as u64, Frequency::NINETY_KHZ),
                    f.clone(),
                )
                .expect("browser write");
            let until = now + Duration::from_millis(33);
            drive(&mut now, until, &mut b, &mut leg, &mut seen, false, |_| {
                false
            });
        }
        let frames: Vec<&BrowserVideoFrame> = seen
            .leg
            .iter()
            .filter_map(|e| match e {
                Event::Video(f) => Some(f),
                _ => None,
            })
            .collect();
        assert!(
            frames.len() >= 4,
            "frames reached the gateway: {}",
            frames.len()
        );
        assert!(frames[0].keyframe && !frames[1].keyframe);
        assert_eq!(&*frames[0].data, &sent[0][..]);
        assert_eq!(frames[1].rtp_time - frames[0].rtp_time, 3000);
        // keyframe requests both ways
        b.writer(vmid)
            .expect("browser writer")
            .request_keyframe(None, KeyframeRequestKind::Pli)
            .expect("browser receives our video");
        leg.request_keyframe()
            .expect("leg receives the browser's video");
        let until = now + Duration::from_millis(500);
        drive(&mut now, until, &mut b, &mut leg, &mut seen, false, |s| {
            s.leg.contains(&Event::KeyframeRequest)
                && s.browser
                    .iter()
                    .any(|e| matches!(e, str0m::Event::KeyframeRequest(_)))
        });
        assert!(
            seen.leg.contains(&Event::KeyframeRequest),
            "browser PLI reached the leg"
        );
        assert!(
            seen.browser
                .iter()
                .any(|e| matches!(e, str0m::Event::KeyframeRequest(r) if r.mid == vmid)),
            "our PLI reached the browser"
        );
    }

    /// Without video in the config the video m-line is refused and video calls are errors.
    #[test]
    fn video_refused_when_not_configured() {
        let now = Instant::now();
        let (_b, offer, _, _) = browser_av(now);
        let (mut leg, answer) = WebRtcLeg::accept_offer(now, &config(), &offer).expect("answer");
        assert!(!answer.contains("VP8"), "{answer}");
        assert!(leg.video_media().is_none());
        assert!(matches!(
            leg.write_video(now, 0, &[0x10]),
            Err(WebRtcError::NoVideo)
        ));
        assert!(matches!(leg.request_keyframe(), Err(WebRtcError::NoVideo)));
    }

    /// A lost packet does not hold back the frames after it: each comes out as it
    /// arrives (the bridge's jitter buffer conceals the gap), not after str0m's
    /// default reorder window of 15 packets (300 ms of audio).
    #[test]
    fn a_lost_packet_does_not_stall_later_frames() {
        let (mut now, mut b, mut leg, mut seen, mid, pt) = connected_audio();
        let frames = |seen: &Seen| {
            seen.leg
                .iter()
                .filter(|e| matches!(e, Event::Opus(_)))
                .count()
        };
        for i in 0..10u64 {
            b.writer(mid)
                .expect("browser writer")
                .write(
                    pt,
                    now,
                    MediaTime::new(i * 960, Frequency::FORTY_EIGHT_KHZ),
                    vec![0xF8, i as u8],
                )
                .expect("browser write");
            if i == 5 {
                // the network loses frame 5 (str0m's pacer sends it on a timeout)
                let mut dropped = 0;
                for _ in 0..3 {
                    b.handle_input(str0m::Input::Timeout(now))
                        .expect("browser timeout");
                    loop {
                        match b.poll_output().expect("browser poll") {
                            str0m::Output::Timeout(_) => break,
                            str0m::Output::Transmit(_) => dropped += 1,
                            str0m::Output::Event(e) => seen.browser.push(e),
                        }
                    }
                }
                assert!(dropped > 0, "frame 5 was sent and lost");
            }
            let until = now + Duration::from_millis(20);
            drive(&mut now, until, &mut b, &mut leg, &mut seen, false, |_| {
                false
            });
            // every frame sent so far but the lost one is out, within its 20 ms
            let expected = if i < 5 { i + 1 } else { i } as usize;
            assert_eq!(frames(&seen), expected, "after frame {i}");
        }
    }

    /// Without any peer the leg fails after the connect timeout, once.
    #[test]
    fn fails_when_ice_never_connects() {
        let start = Instant::now();
        let (_b, offer, _) = browser(start, MediaKind::Audio);
        let (mut leg, _) = WebRtcLeg::accept_offer(start, &config(), &offer).expect("answer");
        let mut now = start;
        let mut failed = 0;
        while now < start + CONNECT_TIMEOUT + Duration::from_secs(5) {
            let next = loop {
                match leg.poll_output().expect("poll") {
                    Output::Timeout(t) => break t,
                    Output::Event(Event::Failed) => failed += 1,
                    _ => {}
                }
            };
            assert!(
                next <= start + CONNECT_TIMEOUT || failed > 0,
                "the connect deadline is never overslept"
            );
            now = next.max(now + Duration::from_millis(1));
            leg.handle_timeout(now).expect("timeout");
        }
        assert_eq!(failed, 1);
        assert!(leg.is_finished());
    }

    /// Garbage offers, video-only offers, bad candidates and stray bytes are errors, not panics.
    #[test]
    fn refuses_bad_input() {
        let now = Instant::now();
        assert!(matches!(
            WebRtcLeg::accept_offer(now, &config(), "hello"),
            Err(WebRtcError::BadOffer(_))
        ));
        let (_b, video_offer, _) = browser(now, MediaKind::Video);
        assert!(matches!(
            WebRtcLeg::accept_offer(now, &config(), &video_offer),
            Err(WebRtcError::NoOpus)
        ));
        let empty = WebRtcConfig {
            local_addrs: vec![],
            video: Vec::new(),
            external_ip: None,
        };
        let (_b, offer, _) = browser(now, MediaKind::Audio);
        assert!(matches!(
            WebRtcLeg::accept_offer(now, &empty, &offer),
            Err(WebRtcError::NoLocalAddress)
        ));
        let (mut leg, _) = WebRtcLeg::accept_offer(now, &config(), &offer).expect("answer");
        assert!(matches!(
            leg.add_remote_candidate("candidate:garbage"),
            Err(WebRtcError::BadCandidate(_))
        ));
        leg.add_remote_candidate("")
            .expect("end of candidates is fine");
        let stray = Receive {
            source: browser_addr(),
            destination: leg_addr(),
            contents: &[0xFF; 3],
        };
        assert!(!leg.accepts(&stray));
        assert!(leg.handle_input(now, stray).is_err());
    }
}
