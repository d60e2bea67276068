//! The browser side of the transcoding bench: one str0m peer per call, as a browser
//! is (ICE, DTLS-SRTP, Opus 48 kHz), so the system under test runs the gateway's real
//! WebRTC leg (`media::webrtc::WebRtcLeg`) and pays for SRTP, RTCP and ICE keep-alives.
//!
//! All peers live on one thread (`gen-browsers`, at the generator's low scheduling
//! weight) and share a few UDP sockets; who a datagram is for is told by its source
//! (each call has its own socket on the system under test's side). Every 1 ms the
//! thread writes the frames due in that slot (the same schedule as the PBX side:
//! call `c` in slot `c % 20`), fires the str0m timers of that slot's calls, and drains
//! the sockets. A received frame is timed when str0m hands it out (`network_time`),
//! against its RTP timestamp, like the PBX side's frames.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::watch;

use super::load_gen::Received;

/// Sockets shared by all browser peers.
const SOCKETS: usize = 4;

struct Peer {
    rtc: Rtc,
    mid: Mid,
    pt: Option<Pt>,
    sock: usize,
    pending: Option<SdpPendingOffer>,
    connected: bool,
}

/// The browser peers of all calls.
pub struct Browsers {
    socks: Vec<StdUdpSocket>,
    peers: Vec<Peer>,
    by_source: HashMap<SocketAddr, usize>,
    connected: Arc<AtomicUsize>,
}

/// What the browser side measured.
pub struct BrowserResult {
    /// Opus frames written in the measured window.
    pub sent: u64,
    /// Per call, the frames that arrived in the measured window.
    pub received: Vec<Received>,
}

impl Browsers {
    pub fn new() -> Browsers {
        let socks = (0..SOCKETS)
            .map(|_| {
                let s = StdUdpSocket::bind("127.0.0.1:0").expect("bind loopback");
                s.set_nonblocking(true).expect("nonblocking");
                s
            })
            .collect();
        Browsers {
            socks,
            peers: Vec::new(),
            by_source: HashMap::new(),
            connected: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A new peer's SDP offer (one sendrecv audio m-line, Opus as browsers offer it).
    pub fn offer(&mut self, now: Instant) -> String {
        let sock = self.peers.len() % SOCKETS;
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .build(now);
        let addr = self.socks[sock].local_addr().expect("local addr");
        rtc.add_local_candidate(Candidate::host(addr, Protocol::Udp).expect("host candidate"));
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().expect("an offer with one m-line");
        self.peers.push(Peer {
            rtc,
            mid,
            pt: None,
            sock,
            pending: Some(pending),
            connected: false,
        });
        offer.to_sdp_string()
    }

    /// Applies the answer of the system under test to the last offer; `remote` is the
    /// call's socket on its side.
    pub fn answer(&mut self, answer: &str, remote: SocketAddr) {
        let i = self.peers.len() - 1;
        let peer = &mut self.peers[i];
        let answer = SdpAnswer::from_sdp_string(answer).expect("answer parses");
        let pending = peer.pending.take().expect("an offer is pending");
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        peer.pt = peer.rtc.writer(peer.mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt())
        });
        self.by_source.insert(remote, i);
    }

    /// Runs every peer until `stop`: sends `frames` (48 kHz Opus, 20 ms) on the 20 ms
    /// schedule, counts what it sent between `marks` 1 and 2 and records what arrives
    /// from mark 1 until `stop`.
    pub fn run(
        &mut self,
        frames: &[Vec<u8>],
        mut marks: watch::Receiver<u8>,
        stop: &AtomicBool,
    ) -> BrowserResult {
        super::load_gen::background();
        let n = self.peers.len();
        let mut received: Vec<Received> = (0..n).map(|_| Received::default()).collect();
        let mut sent = 0u64;
        let mut phase;
        let mut buf = vec![0u8; 2048];
        let start = Instant::now();
        let mut ms = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // (the generator drops its sender right after mark 2: read the value, not
            // the change)
            phase = *marks.borrow_and_update();
            let due = start + Duration::from_millis(ms);
            let now = Instant::now();
            if now < due {
                std::thread::sleep(due - now);
            } else if now > due + Duration::from_millis(20) {
                // Behind by more than a frame (a starved thread): the missed frames are
                // not sent (nor counted), as a browser's would be lost.
                ms = now.saturating_duration_since(start).as_millis() as u64;
            }
            let now = Instant::now();
            let slot = (ms % 20) as usize;
            // the RTP clock follows the schedule, so skipped frames are a gap in it
            let k = ms / 20;
            for i in (slot..n).step_by(20) {
                let peer = &mut self.peers[i];
                if peer.connected
                    && let (Some(pt), Some(w)) = (peer.pt, peer.rtc.writer(peer.mid))
                {
                    let data = frames[(k as usize) % frames.len()].clone();
                    let t = MediaTime::new(k * 960, Frequency::FORTY_EIGHT_KHZ);
                    if w.write(pt, now, t, data).is_ok() && phase == 1 {
                        sent += 1;
                    }
                }
                let _ = peer.rtc.handle_input(Input::Timeout(now));
                self.drain(i, phase, start, &mut received);
            }
            // what arrived meanwhile
            for s in 0..self.socks.len() {
                loop {
                    let (len, source) = match self.socks[s].recv_from(&mut buf) {
                        Ok(r) => r,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    };
                    let Some(&i) = self.by_source.get(&source) else {
                        continue;
                    };
                    let dest = self.socks[s].local_addr().expect("local addr");
                    let Ok(r) = Receive::new(Protocol::Udp, source, dest, &buf[..len]) else {
                        continue;
                    };
                    let now = Instant::now();
                    if self.peers[i]
                        .rtc
                        .handle_input(Input::Receive(now, r))
                        .is_ok()
                    {
                        self.drain(i, phase, start, &mut received);
                    }
                }
            }
            ms += 1;
        }
        BrowserResult { sent, received }
    }

    /// Sends what peer `i` has to send and records the frames it received.
    fn drain(&mut self, i: usize, phase: u8, start: Instant, received: &mut [Received]) {
        let peer = &mut self.peers[i];
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(_)) | Err(_) => break,
                Ok(Output::Transmit(t)) => {
                    let _ = self.socks[peer.sock].send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => {
                    peer.connected = true;
                    self.connected.fetch_add(1, Ordering::Relaxed);
                }
                // received until the end, 400 ms after the last send (as the PBX side)
                Ok(Output::Event(Event::MediaData(m))) if phase >= 1 => {
                    let arrival = m.network_time.saturating_duration_since(start);
                    let scheduled = m.time.numer() as i64 * 1_000_000 / 48_000;
                    let r = &mut received[i];
                    r.packets += 1;
                    r.offsets_us.push(arrival.as_micros() as i64 - scheduled);
                }
                Ok(Output::Event(_)) => {}
            }
        }
    }

    /// How many peers are connected (ICE and DTLS up), readable while `run` runs.
    pub fn connected(&self) -> Arc<AtomicUsize> {
        self.connected.clone()
    }
}
