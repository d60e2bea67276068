//! Media interop (issue 4, done-when 2): our RTP leg, driven through a
//! [`Bridge`] that is fed Opus like a browser would, exchanges real audio with
//! a third-party endpoint: baresip (libre/baresip's own RTP stack and G.711
//! codec) registered at Kamailio as extension 100, auto-answering, playing a
//! speech WAV made by espeak-ng, recording what it hears, and hanging up at
//! the end of its WAV.
//!
//! Both directions are checked against the audio that was sent:
//! - baresip → us: the Opus frames the bridge hands to the "browser" decode to
//!   one 20 ms frame per 20 ms of RTP baresip sent (right length) and carry speech
//!   (non-silent) for about as long as baresip's WAV has speech;
//! - us → baresip: baresip's recording of what it heard is as long as the call
//!   and carries about as much speech as the WAV we encoded to Opus.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use gateway::sip;
use labkit::{Baresip, Kamailio};
use media::bridge::{Bridge, BridgeConfig, MediaFrame, WebrtcOutput};
use media::codec::Codec;
use media::codec::opus::{OpusDecoder, OpusEncoder, OpusSettings};
use media::rtp_leg::RtpLegConfig;
use media::sdp::{Direction, RtpSdp, SessionDescription};
use sip_trunk::auth::Credentials;
use sip_trunk::dialog::{Body, CallConfig, DialogEvent, TerminatedReason};
use sip_trunk::message::Uri;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Reads a 16-bit mono PCM WAV (as sox writes it) into (rate, samples).
fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let bytes = std::fs::read(path).expect("read wav");
    assert_eq!(&bytes[0..4], b"RIFF", "RIFF header");
    let mut pos = 12;
    let mut rate = 0;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes")) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            assert_eq!(u16::from_le_bytes([body[0], body[1]]), 1, "PCM");
            assert_eq!(u16::from_le_bytes([body[2], body[3]]), 1, "mono");
            assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "16 bit");
            rate = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes"));
        } else if id == b"data" {
            let pcm = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return (rate, pcm);
        }
        pos += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

fn rms(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Seconds of 20 ms frames whose RMS is above `floor` (speech, not silence or noise).
fn active_secs(x: &[i16], rate: u32, floor: f64) -> f64 {
    let n = rate as usize / 50;
    x.chunks(n).filter(|c| rms(c) > floor).count() as f64 * 0.02
}

/// Binds an even RTP port and the RTCP port above it on loopback.
async fn rtp_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..50 {
        let port = labkit::free_port() & !1;
        let Ok(rtp) = UdpSocket::bind(("127.0.0.1", port)).await else {
            continue;
        };
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
            return (rtp, rtcp);
        }
    }
    panic!("no free RTP port pair");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_leg_exchanges_speech_with_baresip() {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let phone_text =
        "You have reached extension one zero zero. Please leave a message after the tone.";
    let phone_wav = labkit::speech_wav(phone_text, 8000, "interop-phone").expect("phone wav");
    let phone = Baresip::start(&pbx, "100", "pass100", &phone_wav).expect("baresip");
    let mut ctl = phone.control().expect("control");
    let browser_wav = labkit::speech_wav(
        "Hello, I am calling about my account.",
        48000,
        "interop-browser",
    )
    .expect("browser wav");
    let (_, browser_pcm) = read_wav(&browser_wav);
    let (_, phone_pcm) = read_wav(&phone_wav);

    let (itx, _irx) = mpsc::channel(16);
    let sip = sip::spawn("127.0.0.1:0".parse().expect("addr"), None, itx)
        .await
        .expect("sip");
    let (rtp_sock, rtcp_sock) = rtp_pair().await;
    let local = rtp_sock.local_addr().expect("local addr");
    let mut negotiator = RtpSdp::new(local, 42);
    let offer = negotiator.offer(&[Codec::Pcmu, Codec::Pcma], Direction::SendRecv);

    let mut cfg = CallConfig::new(
        Uri::parse(&format!("sip:alice@{}", sip.sent_by)).expect("uri"),
        Uri::parse(&format!("sip:100@{}", pbx.addr())).expect("uri"),
        Uri::parse(&format!("sip:namecall@{}", sip.sent_by)).expect("uri"),
        ("UDP".into(), sip.sent_by.clone()),
    );
    cfg.credentials = Some(Credentials::new("trunk", "trunkpass"));
    let body = Body {
        content_type: "application/sdp".into(),
        data: offer.to_string().into_bytes().into(),
    };
    let (_call, mut ev) = sip
        .invite(cfg, Some(body), pbx.addr())
        .await
        .expect("invite");
    let answer = loop {
        let e = tokio::time::timeout(Duration::from_secs(20), ev.recv())
            .await
            .expect("call event in time")
            .expect("event channel open");
        match e {
            DialogEvent::Answered { body } => break body.expect("answer has SDP"),
            DialogEvent::Terminated { reason } => panic!("call ended before answer: {reason:?}"),
            _ => {}
        }
    };
    let answer = SessionDescription::parse(&String::from_utf8_lossy(&answer.data))
        .expect("baresip's answer parses");
    let neg = negotiator
        .process_answer(&answer)
        .expect("answer negotiates");
    assert!(matches!(neg.codec, Codec::Pcmu | Codec::Pcma), "{neg:?}");

    let mut leg = RtpLegConfig::new(0x1f2e_3d4c, neg.codec, neg.pt, neg.remote_addr);
    leg.dtmf_pt = neg.dtmf_pt;
    leg.ptime = neg.ptime;
    leg.rtcp_mux = neg.rtcp_mux;
    let t0 = Instant::now();
    let mut bridge = Bridge::new(t0, BridgeConfig::new(leg)).expect("bridge");
    assert!(!bridge.is_passthrough(), "Opus ⇄ G.711 transcodes");

    // baresip plays its WAV once and hangs up at its end (aufile end of file);
    // we send the browser's (shorter) speech from the start and keep the bridge
    // running until that BYE.
    let mut enc = OpusEncoder::new(OpusSettings::fullband()).expect("browser encoder");
    let mut dec = OpusDecoder::new(8000).expect("browser decoder");
    let mut heard: Vec<i16> = Vec::new();
    let mut frames_out = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut buf = vec![0u8; 2048];
    let mut cbuf = vec![0u8; 2048];
    let mut i = 0usize;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    let ended = loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let pcm: Vec<i16> = browser_pcm
                    .get(i * 960..(i + 1) * 960)
                    .map_or_else(|| vec![0; 960], <[i16]>::to_vec);
                let mut p = Vec::new();
                enc.encode(&pcm, &mut p).expect("encode");
                bridge.handle_webrtc_media(now, MediaFrame {
                    seq: i as u16,
                    timestamp: (i * 960) as u32,
                    marker: i == 0,
                    payload: p,
                });
                i += 1;
                bridge.handle_timeout(now);
            }
            r = rtp_sock.recv_from(&mut buf) => {
                let (n, from): (usize, SocketAddr) = r.expect("rtp recv");
                bridge.handle_rtp_input(Instant::now(), from, buf[..n].to_vec());
            }
            r = rtcp_sock.recv_from(&mut cbuf) => {
                let (n, from): (usize, SocketAddr) = r.expect("rtcp recv");
                bridge.handle_rtp_input(Instant::now(), from, cbuf[..n].to_vec());
            }
            e = ev.recv() => {
                if let Some(DialogEvent::Terminated { reason }) = e {
                    break reason;
                }
            }
            _ = tokio::time::sleep_until(give_up) => panic!("baresip did not hang up in 30 s"),
        }
        while let Some(t) = bridge.poll_transmit() {
            let sock = if t.rtcp && !neg.rtcp_mux {
                &rtcp_sock
            } else {
                &rtp_sock
            };
            sock.send_to(&t.data, t.destination).await.expect("send");
        }
        while let Some(o) = bridge.poll_webrtc() {
            if let WebrtcOutput::Audio(f) = o {
                frames_out += 1;
                dec.decode(&f.payload, &mut heard)
                    .expect("bridge output decodes");
            }
        }
    };
    let call_secs = i as f64 * 0.02;
    let stats = bridge.stats();
    println!("call ended after {call_secs:.2} s: {ended:?}; bridge stats: {stats:?}");
    assert_eq!(
        ended,
        TerminatedReason::RemoteBye,
        "baresip hangs up at the end of its WAV"
    );
    ctl.wait_event("CALL_CLOSED", Duration::from_secs(10))
        .expect("phone closed the call");

    // baresip → us: as long as baresip's WAV (the call's length), with its speech in it.
    assert!(stats.rtp.packets_received > 0, "no RTP from baresip");
    assert_eq!(heard.len(), frames_out * 160, "20 ms per frame at 8 kHz");
    let phone_secs = phone_pcm.len() as f64 / 8000.0;
    let heard_secs = heard.len() as f64 / 8000.0;
    let phone_active = active_secs(&phone_pcm, 8000, 300.0);
    let heard_active = active_secs(&heard, 8000, 300.0);
    println!(
        "phone wav {phone_secs:.2} s ({phone_active:.2} s speech), heard {heard_secs:.2} s \
         ({heard_active:.2} s speech), rms {:.0} vs {:.0}",
        rms(&heard),
        rms(&phone_pcm)
    );
    // baresip streams from answer to BYE (its WAV, then silence until it notices the end).
    let rx_secs = stats.rtp.packets_received as f64 * 0.02;
    assert!(
        rx_secs > phone_secs - 0.1 && rx_secs < call_secs + 0.1,
        "baresip sent {rx_secs:.2} s of RTP for a {phone_secs:.2} s WAV in a {call_secs:.2} s call"
    );
    assert!(
        (heard_secs - rx_secs).abs() < 0.15,
        "the browser got {heard_secs:.2} s for {rx_secs:.2} s of RTP"
    );
    assert!(phone_active > 1.0, "the phone's WAV has speech");
    assert!(
        heard_active > 0.7 * phone_active && heard_active < 1.3 * phone_active + 0.2,
        "heard {heard_active:.2} s of speech, baresip played {phone_active:.2} s"
    );

    // us → baresip: its recording holds our speech.
    let rec = labkit::wait_for("baresip's recording", Duration::from_secs(10), || {
        phone.last_recording("dec")
    })
    .expect("baresip wrote what it heard");
    let (rec_secs, _) = labkit::wait_for("recording complete", Duration::from_secs(10), || {
        labkit::wav_stats(&rec).ok().filter(|(s, _)| *s > 0.0)
    })
    .expect("recording readable");
    let (rec_rate, rec_pcm) = read_wav(&rec);
    let sent_active = active_secs(&browser_pcm, 48000, 300.0);
    let rec_active = active_secs(&rec_pcm, rec_rate, 300.0);
    println!(
        "baresip heard {rec_secs:.2} s, {rec_active:.2} s of speech; we sent {sent_active:.2} s of speech"
    );
    assert!(
        rec_secs > 0.85 * call_secs - 0.5 && rec_secs < call_secs + 1.0,
        "baresip recorded {rec_secs:.2} s of a {call_secs:.2} s call"
    );
    assert!(sent_active > 1.0, "the browser's WAV has speech");
    assert!(
        rec_active > 0.7 * sent_active && rec_active < 1.3 * sent_active + 0.2,
        "baresip heard {rec_active:.2} s of speech, we sent {sent_active:.2} s"
    );
}
