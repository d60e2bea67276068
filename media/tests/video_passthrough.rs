//! Video passthrough across both legs, sans-IO and in virtual time: a str0m peer plays
//! the browser (DTLS-SRTP, VP8), [`WebRtcLeg`] and [`VideoLeg`] are the gateway's two
//! legs joined the way `gateway/src/calls/trunk.rs` joins them, and a second
//! [`VideoLeg`] plays the desk phone's RTP stack (plain RTP). Frames cross both ways
//! byte for byte on each leg's own SSRC; keyframe requests cross both ways; a packet
//! lost between the phone and the gateway costs one frame and makes the gateway ask
//! the phone for a keyframe.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::sdp::VideoCodec;
use media::video::{VideoFrame, VideoLeg, VideoLegConfig, VideoLegEvent};
use media::webrtc::{Event, Output, Receive, WebRtcConfig, WebRtcLeg};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::Protocol;
use str0m::{Candidate, Rtc};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

const BROWSER: &str = "127.0.0.1:50000";
const GW_WEBRTC: &str = "127.0.0.1:40000";
const GW_VIDEO: &str = "127.0.0.1:40002";
const PHONE: &str = "127.0.0.1:30002";
const GW_SSRC: u32 = 0x1111_1111;
const PHONE_SSRC: u32 = 0x2222_2222;

/// A VP8-looking frame: the frame tag's P bit clear for a key frame.
fn vp8(i: u8, key: bool, len: usize) -> Vec<u8> {
    let mut f = vec![i; len];
    f[0] = if key { 0x10 } else { 0x11 };
    f
}

/// Everything in the run, with what each end saw.
struct Lab {
    now: Instant,
    browser: Rtc,
    vmid: Mid,
    leg: WebRtcLeg,
    gw_video: VideoLeg,
    phone: VideoLeg,
    /// Frames the browser decoded (str0m MediaData on the video mid).
    browser_frames: Vec<Vec<u8>>,
    browser_keyframe_requests: usize,
    phone_frames: Vec<VideoFrame>,
    phone_keyframe_requests: usize,
    connected: bool,
    /// Drop the next RTP packet the phone sends (network loss).
    drop_next_phone_rtp: bool,
}

impl Lab {
    fn new() -> Lab {
        let now = Instant::now();
        let mut browser = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        browser.add_local_candidate(
            Candidate::host(addr(BROWSER), Protocol::Udp).expect("host candidate"),
        );
        let mut api = browser.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let vmid = api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        let cfg = WebRtcConfig {
            local_addrs: vec![addr(GW_WEBRTC)],
            video: vec![VideoCodec::Vp8, VideoCodec::H264],
            external_ip: None,
        };
        let (mut leg, answer) =
            WebRtcLeg::accept_offer(now, &cfg, &offer.to_sdp_string()).expect("answer");
        let answer = str0m::change::SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        browser
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        leg.add_remote_candidate(&format!(
            "candidate:1 1 udp 2130706431 127.0.0.1 {} typ host",
            addr(BROWSER).port()
        ))
        .expect("candidate");
        let pt = leg
            .video_media()
            .and_then(|m| m.payload_types().next())
            .expect("video accepted");
        let gw_video = VideoLeg::new(
            now,
            VideoLegConfig::new(GW_SSRC, VideoCodec::Vp8, pt, addr(PHONE)),
        );
        let phone = VideoLeg::new(
            now,
            VideoLegConfig::new(PHONE_SSRC, VideoCodec::Vp8, pt, addr(GW_VIDEO)),
        );
        Lab {
            now,
            browser,
            vmid,
            leg,
            gw_video,
            phone,
            browser_frames: Vec::new(),
            browser_keyframe_requests: 0,
            phone_frames: Vec::new(),
            phone_keyframe_requests: 0,
            connected: false,
            drop_next_phone_rtp: false,
        }
    }

    /// Moves datagrams until nothing is in flight, then advances time by 1 ms.
    fn tick(&mut self) {
        loop {
            let mut moved = false;
            // browser -> gateway
            loop {
                match self.browser.poll_output().expect("browser poll") {
                    str0m::Output::Timeout(_) => break,
                    str0m::Output::Transmit(t) => {
                        moved = true;
                        let input = Receive {
                            source: t.source,
                            destination: t.destination,
                            contents: &t.contents,
                        };
                        self.leg.handle_input(self.now, input).expect("leg input");
                    }
                    str0m::Output::Event(str0m::Event::MediaData(d)) if d.mid == self.vmid => {
                        self.browser_frames.push(d.data.to_vec());
                    }
                    str0m::Output::Event(str0m::Event::KeyframeRequest(r))
                        if r.mid == self.vmid =>
                    {
                        self.browser_keyframe_requests += 1;
                    }
                    str0m::Output::Event(_) => {}
                }
            }
            // the gateway's WebRTC leg, glued to its video leg as trunk.rs does
            loop {
                match self.leg.poll_output().expect("leg poll") {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => {
                        moved = true;
                        let recv = str0m::net::Receive::new(
                            Protocol::Udp,
                            t.source,
                            t.destination,
                            &t.contents,
                        )
                        .expect("datagram");
                        self.browser
                            .handle_input(str0m::Input::Receive(self.now, recv))
                            .expect("browser input");
                    }
                    Output::Event(Event::Connected) => self.connected = true,
                    Output::Event(Event::Video(f)) => {
                        self.gw_video.send_frame(self.now, f.rtp_time, &f.data);
                    }
                    Output::Event(Event::KeyframeRequest) => {
                        self.gw_video.request_keyframe(self.now);
                    }
                    Output::Event(_) => {}
                }
            }
            // gateway video leg -> phone, and its frames/requests -> WebRTC leg
            while let Some(t) = self.gw_video.poll_transmit() {
                moved = true;
                assert_eq!(t.destination.ip(), addr(PHONE).ip());
                self.phone.handle_input(self.now, addr(GW_VIDEO), &t.data);
            }
            while let Some(ev) = self.gw_video.poll_event() {
                moved = true;
                match ev {
                    VideoLegEvent::Frame(f) => {
                        // 90 kHz, extended; the frames of this run never wrap
                        self.leg
                            .write_video(self.now, u64::from(f.rtp_time), &f.data)
                            .expect("video write");
                    }
                    VideoLegEvent::KeyframeRequest => {
                        self.leg
                            .request_keyframe()
                            .expect("browser video to ask about");
                    }
                    _ => {}
                }
            }
            // phone -> gateway video leg
            while let Some(t) = self.phone.poll_transmit() {
                moved = true;
                if !t.rtcp && std::mem::take(&mut self.drop_next_phone_rtp) {
                    continue;
                }
                self.gw_video.handle_input(self.now, addr(PHONE), &t.data);
            }
            while let Some(ev) = self.phone.poll_event() {
                match ev {
                    VideoLegEvent::Frame(f) => self.phone_frames.push(f),
                    VideoLegEvent::KeyframeRequest => self.phone_keyframe_requests += 1,
                    _ => {}
                }
            }
            if !moved {
                break;
            }
        }
        self.now += Duration::from_millis(1);
        self.browser
            .handle_input(str0m::Input::Timeout(self.now))
            .expect("browser timeout");
        self.leg.handle_timeout(self.now).expect("leg timeout");
        self.gw_video.handle_timeout(self.now);
        self.phone.handle_timeout(self.now);
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.tick();
        }
    }
}

/// Frames both ways byte for byte, keyframe requests both ways, and loss on the
/// phone's side answered by one keyframe request to the phone.
#[test]
fn vp8_frames_and_keyframe_requests_cross_both_legs() {
    let mut lab = Lab::new();
    let mut waited = 0;
    while !lab.connected && waited < 10_000 {
        lab.tick();
        waited += 1;
    }
    assert!(lab.connected, "ICE and DTLS came up");

    // phone -> browser: a key frame of three packets, then deltas
    let sent: Vec<Vec<u8>> = (0..5u8)
        .map(|i| vp8(i, i == 0, if i == 0 { 3000 } else { 500 }))
        .collect();
    for (i, f) in sent.iter().enumerate() {
        lab.phone.send_frame(lab.now, 3000 * i as u64, f);
        lab.run(66);
    }
    lab.run(200);
    assert!(
        lab.browser_frames.len() >= 4,
        "frames reached the browser: {}",
        lab.browser_frames.len()
    );
    assert_eq!(
        lab.browser_frames[0], sent[0],
        "the key frame arrives whole"
    );
    assert_eq!(lab.browser_frames[1], sent[1]);

    // browser -> phone, on the gateway's SSRC
    let pt = lab
        .browser
        .writer(lab.vmid)
        .expect("browser writer")
        .payload_params()
        .find(|p| p.spec().codec == Codec::Vp8)
        .expect("vp8")
        .pt();
    for (i, f) in sent.iter().enumerate() {
        let now = lab.now;
        lab.browser
            .writer(lab.vmid)
            .expect("browser writer")
            .write(
                pt,
                now,
                MediaTime::new(3000 * i as u64, Frequency::NINETY_KHZ),
                f.clone(),
            )
            .expect("browser write");
        lab.run(66);
    }
    lab.run(200);
    assert!(
        lab.phone_frames.len() >= 4,
        "frames reached the phone: {}",
        lab.phone_frames.len()
    );
    assert_eq!(lab.phone_frames[0].data, sent[0]);
    assert!(lab.phone_frames[0].keyframe && !lab.phone_frames[1].keyframe);
    assert_eq!(
        lab.phone_frames[1]
            .rtp_time
            .wrapping_sub(lab.phone_frames[0].rtp_time),
        3000
    );
    assert_eq!(lab.phone.remote_ssrc(), Some(GW_SSRC));
    assert_eq!(lab.gw_video.remote_ssrc(), Some(PHONE_SSRC));

    // the phone asks for a keyframe: it reaches the browser's encoder side
    assert!(lab.phone.request_keyframe(lab.now), "PLI sent");
    lab.run(50);
    assert_eq!(lab.browser_keyframe_requests, 1, "the phone's PLI crossed");

    // the browser asks: it reaches the phone as PLI from the gateway
    lab.browser
        .writer(lab.vmid)
        .expect("browser writer")
        .request_keyframe(None, KeyframeRequestKind::Pli)
        .expect("browser receives video");
    lab.run(50);
    assert_eq!(lab.phone_keyframe_requests, 1, "the browser's PLI crossed");

    // loss between phone and gateway: the frame is given up, the phone is asked once
    lab.run(600);
    let before = lab.browser_frames.len();
    lab.drop_next_phone_rtp = true;
    lab.phone.send_frame(lab.now, 30_000, &vp8(9, false, 2500));
    lab.run(100);
    lab.phone.send_frame(lab.now, 33_000, &vp8(10, false, 400));
    lab.run(200);
    let s = lab.gw_video.stats();
    assert_eq!(s.frames_lost, 1, "{s:?}");
    assert_eq!(
        lab.phone_keyframe_requests, 2,
        "loss asked the phone for a keyframe"
    );
    assert_eq!(
        lab.browser_frames.last().map(Vec::as_slice),
        Some(&vp8(10, false, 400)[..]),
        "the frame after the loss still plays"
    );
    assert_eq!(lab.browser_frames.len(), before + 1);
}
