//! Media engine of namecall: everything between a WebRTC leg (Opus) and the company's
//! PBX (RTP, G.711), written as sans-IO state machines.
//!
//! # Run loop
//!
//! A call's media is one [`bridge::Bridge`]. The gateway's tokio task owns the UDP socket
//! and the WebRTC leg and drives the bridge; the bridge never touches a socket or a clock:
//!
//! ```no_run
//! use std::time::Instant;
//! use media::bridge::{Bridge, BridgeConfig, WebrtcOutput};
//! use media::codec::Codec;
//! use media::rtp_leg::RtpLegConfig;
//!
//! let now = Instant::now();
//! let pbx = "192.0.2.10:17000".parse().expect("addr");
//! let cfg = RtpLegConfig::new(0x1234, Codec::Pcmu, 0, pbx);
//! let mut bridge = Bridge::new(now, BridgeConfig::new(cfg)).expect("supported codecs");
//! loop {
//!     // 1. feed input: bridge.handle_rtp_input(now, from, datagram),
//!     //    bridge.handle_webrtc_media(now, frame), bridge.handle_webrtc_dtmf(now, ts, payload)
//!     // 2. advance time when bridge.poll_timeout() is reached: bridge.handle_timeout(now)
//!     bridge.handle_timeout(Instant::now());
//!     // 3. drain output
//!     while let Some(t) = bridge.poll_transmit() { /* socket.send_to(&t.data, t.destination) */ }
//!     while let Some(WebrtcOutput::Audio(_f)) = bridge.poll_webrtc() { /* write to the WebRTC leg */ }
//!     while let Some(_e) = bridge.poll_event() { /* digits, latching, BYE */ }
//!     # break;
//! }
//! ```
//!
//! # Time
//!
//! Every core takes `now: Instant` as an argument (`insert(now, ..)`, `poll(now)`,
//! `handle_timeout(now)`) and reports its next deadline through `poll_timeout()`. Nothing
//! in this crate reads the clock, so tests drive jitter, loss and RTCP timers by hand in
//! microseconds. Wall-clock NTP time for RTCP is injected once
//! ([`rtp_leg::RtpLegConfig::ntp_at_start`]).
//!
//! # Errors vs panics
//!
//! Parsers of network input ([`rtp::RtpPacket::parse`], [`rtp::RtcpPacket::parse_compound`],
//! [`sdp::SessionDescription::parse`], [`dtmf::DtmfEvent::parse`]) return typed errors and
//! never panic; a malformed datagram on a live leg is counted and dropped. A corrupt Opus
//! frame is concealed, not propagated. [`sdp::SdpError`] maps to SIP 488 at the edge.
//! [`MediaError`] gathers the module errors for callers that want one type.
//!
//! # Out of scope
//!
//! Sockets, SRTP/DTLS/ICE (the WebRTC leg, `webrtc.rs`, wraps str0m for those), G.722 at
//! 56 and 48 kbit/s (modes 2 and 3: SDP never negotiates them), video transcoding (video is
//! only passed through: [`sdp::negotiate_video_passthrough`], [`video::VideoLeg`]).
//!
//! # Layout
//!
//! - [`rtp`]: RTP/RTCP wire formats, sequence arithmetic, receiver statistics, RTCP-mux rule.
//! - [`codec`]: [`codec::Codec`], G.711 tables, G.722 SB-ADPCM, Opus wrapper, polyphase resampler.
//! - [`jitter`]: adaptive jitter buffer yielding a frame or a loss per slot.
//! - [`dtmf`]: RFC 4733 events, cross-leg rewriter, Q.23 tone generator, Goertzel detector.
//! - [`sdp`]: SDP model and RFC 3264 offer/answer for the RTP leg.
//! - [`rtp_leg`]: the PBX-facing RTP session (symmetric RTP, RTCP, stats).
//! - [`transcode`]: one direction of decode → adapt → encode.
//! - [`bridge`]: two directions plus DTMF and call quality (E-model MOS).
//! - [`relay`]: passthrough RTP relay (no decode, no dejitter) for same-codec calls.
//! - [`relay_uring`] (Linux): an io_uring engine running many [`relay`] calls on one thread.
//! - [`keyframe`]: RTCP PLI/FIR parsing, re-addressing and building, for video passthrough.
//! - [`video`]: the PBX leg's video RTP (VP8/H.264 frames in and out, reorder, keyframe requests).
// unsafe only where the kernel shares memory with us (relay_uring.rs)
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod bridge;
pub mod codec;
pub mod dtmf;
pub mod jitter;
pub mod keyframe;
pub mod relay;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod relay_uring;
pub mod rtp;
pub mod rtp_leg;
pub mod sdp;
pub mod transcode;
pub mod video;
pub mod webrtc;

use thiserror::Error;

/// Any error of the media crate, for callers that want a single type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MediaError {
    /// A malformed RTP or RTCP packet.
    #[error(transparent)]
    Rtp(#[from] rtp::RtpError),
    /// An SDP body that cannot be parsed or negotiated (answer with 488).
    #[error(transparent)]
    Sdp(#[from] sdp::SdpError),
    /// A codec, rate or frame size this build cannot handle.
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
    /// A malformed telephone-event payload.
    #[error(transparent)]
    Dtmf(#[from] dtmf::DtmfError),
}
