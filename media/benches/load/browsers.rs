//! The browser side of the transcoding bench: one str0m peer per call, as a browser
//! is (ICE, DTLS-SRTP, Opus 48 kHz), so the system under test runs the gateway's real
//! WebRTC leg (`media::webrtc::WebRtcLeg`) and pays for SRTP, RTCP and ICE keep-alives.
//!
//! All peers live on one thread (`gen-browsers`, at the generator's low scheduling
//! weight) and share a few UDP sockets; who a datagram is for is told by its source
//! (each call has its own socket on the system under test's side). The peers are as
//! lean as a real WebRTC peer can be, so that the simulation does not take the cores
//! from the system it measures:
//! - str0m runs in RTP mode: a peer writes each pre-encoded Opus frame as one RTP
//!   packet and takes received packets as they are (no packetizer, depacketizer or
//!   reorder buffers; nothing is decoded);
//! - a peer's timers run only when str0m's deadline for it is due, not every tick;
//! - sends go out with `sendmmsg` at the end of each 1 ms tick, receives come in with
//!   `recvmmsg`, with the kernel's arrival time (`SO_TIMESTAMPNS`), so when this
//!   thread gets to a datagram does not change its measured arrival.
//!
//! Every 1 ms the thread writes the frames due in that slot (the same schedule as the
//! PBX side: call `c` in slot `c % 20`), fires the due str0m timers and drains the
//! sockets. A received frame is timed at its kernel arrival against its RTP
//! timestamp, like the PBX side's frames.

use std::collections::HashMap;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::watch;

use super::load_gen::{
    Received, kernel_timestamp, mmsg_headers, realtime_ns, setsockopt, sockaddr,
};

/// Sockets shared by all browser peers.
const SOCKETS: usize = 4;
/// Datagrams per `recvmmsg`.
const RECV_BATCH: usize = 64;

struct Peer {
    rtc: Rtc,
    mid: Mid,
    pt: Option<Pt>,
    /// The next sequence number of our audio stream.
    seq: u64,
    sock: usize,
    pending: Option<SdpPendingOffer>,
    connected: bool,
    /// str0m's next deadline for this peer.
    next: Instant,
}

/// The browser peers of all calls.
pub struct Browsers {
    socks: Vec<StdUdpSocket>,
    peers: Vec<Peer>,
    by_source: HashMap<SocketAddr, usize>,
    connected: Arc<AtomicUsize>,
    /// Datagrams to send at the end of the tick, per socket.
    out: Vec<Vec<(SocketAddr, Vec<u8>)>>,
}

/// What the browser side measured.
pub struct BrowserResult {
    /// Opus frames written in the measured window.
    pub sent: u64,
    /// Per call, the frames that arrived in the measured window.
    pub received: Vec<Received>,
    /// Ticks of the measured window the thread started more than 5 ms late, and more
    /// than 20 ms late (whose frames it then did not send).
    pub behind: (u64, u64),
    /// The latest a tick of the measured window started, µs after its time.
    pub worst_lag_us: u64,
}

impl Browsers {
    pub fn new() -> Browsers {
        let socks = (0..SOCKETS)
            .map(|_| {
                let s = StdUdpSocket::bind("127.0.0.1:0").expect("bind loopback");
                s.set_nonblocking(true).expect("nonblocking");
                setsockopt(&s, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
                setsockopt(&s, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
                setsockopt(&s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
                s
            })
            .collect();
        Browsers {
            socks,
            peers: Vec::new(),
            by_source: HashMap::new(),
            connected: Arc::new(AtomicUsize::new(0)),
            out: (0..SOCKETS).map(|_| Vec::new()).collect(),
        }
    }

    /// A new peer's SDP offer (one sendrecv audio m-line, Opus as browsers offer it).
    pub fn offer(&mut self, now: Instant) -> String {
        let sock = self.peers.len() % SOCKETS;
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_rtp_mode(true)
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
            seq: u64::from(rand_u16(self.peers.len())),
            sock,
            pending: Some(pending),
            connected: false,
            next: now,
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
        peer.pt = peer
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt());
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
        let frames: Vec<Arc<[u8]>> = frames.iter().map(|f| Arc::from(&f[..])).collect();
        let n = self.peers.len();
        let mut received: Vec<Received> = (0..n).map(|_| Received::default()).collect();
        let mut sent = 0u64;
        let mut rx = RecvBufs::new();
        let start = Instant::now();
        let start_rt = realtime_ns();
        let mut ms = 0u64;
        let (mut behind, mut worst_lag_us) = ((0u64, 0u64), 0u64);
        while !stop.load(Ordering::Relaxed) {
            // (the generator drops its sender right after mark 2: read the value, not
            // the change)
            let phase = *marks.borrow_and_update();
            let due = start + Duration::from_millis(ms);
            let now = Instant::now();
            let lag = now.saturating_duration_since(due);
            if phase == 1 {
                worst_lag_us = worst_lag_us.max(lag.as_micros() as u64);
                behind.0 += u64::from(lag > Duration::from_millis(5));
                behind.1 += u64::from(lag > Duration::from_millis(20));
            }
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
                if !peer.connected {
                    continue;
                }
                let Some(pt) = peer.pt else { continue };
                let mut api = peer.rtc.direct_api();
                let Some(stream) = api.stream_tx_by_mid(peer.mid, None) else {
                    continue;
                };
                let data = frames[(k as usize) % frames.len()].clone();
                let w = RtpWrite::new(pt, SeqNo::from(peer.seq), (k * 960) as u32, now, data);
                stream.write_rtp(w);
                peer.seq += 1;
                if phase == 1 {
                    sent += 1;
                }
                // str0m queues the packet; its timer moves it out
                peer.next = now;
            }
            // the peers whose timers are due (ICE, DTLS, RTCP, the packets just written)
            for i in 0..n {
                if self.peers[i].next <= now {
                    let _ = self.peers[i].rtc.handle_input(Input::Timeout(now));
                    self.drain(i, now, None, phase, &mut received);
                }
            }
            // what arrived meanwhile
            for s in 0..self.socks.len() {
                let dest = self.socks[s].local_addr().expect("local addr");
                loop {
                    let got = rx.recv(&self.socks[s]);
                    for m in 0..got {
                        let (source, len, at_rt) = rx.meta(m);
                        let Some(&i) = self.by_source.get(&source) else {
                            continue;
                        };
                        let Ok(r) = Receive::new(Protocol::Udp, source, dest, &rx.bufs[m][..len])
                        else {
                            continue;
                        };
                        let now = Instant::now();
                        if self.peers[i]
                            .rtc
                            .handle_input(Input::Receive(now, r))
                            .is_ok()
                        {
                            // arrival since `start`, by the kernel's clock
                            let at = at_rt.unwrap_or_else(realtime_ns);
                            let arrival_us = Some((at - start_rt) / 1000);
                            self.drain(i, now, arrival_us, phase, &mut received);
                        }
                    }
                    if got < RECV_BATCH {
                        break;
                    }
                }
            }
            for s in 0..self.socks.len() {
                send_all(&self.socks[s], &mut self.out[s]);
            }
            ms += 1;
        }
        BrowserResult {
            sent,
            received,
            behind,
            worst_lag_us,
        }
    }

    /// Queues what peer `i` has to send and records the frames it received
    /// (`arrival_us`: when the datagram just handed in arrived, µs since the start).
    fn drain(
        &mut self,
        i: usize,
        now: Instant,
        arrival_us: Option<i64>,
        phase: u8,
        received: &mut [Received],
    ) {
        let peer = &mut self.peers[i];
        let mut due_again = 0;
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    // str0m may ask for "now" again to move its send queue on
                    if t <= now
                        && due_again < 4
                        && peer.rtc.handle_input(Input::Timeout(now)).is_ok()
                    {
                        due_again += 1;
                        continue;
                    }
                    peer.next = t.max(now + Duration::from_micros(1));
                    break;
                }
                Err(_) => {
                    peer.next = now + Duration::from_secs(3600);
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    self.out[peer.sock].push((t.destination, t.contents.into()));
                }
                Ok(Output::Event(Event::Connected)) => {
                    peer.connected = true;
                    self.connected.fetch_add(1, Ordering::Relaxed);
                }
                // received until the end, 400 ms after the last send (as the PBX side)
                Ok(Output::Event(Event::RtpPacket(p))) if phase >= 1 => {
                    let Some(arrival) = arrival_us else { continue };
                    let scheduled = p.time.numer() as i64 * 1_000_000 / 48_000;
                    let r = &mut received[i];
                    r.packets += 1;
                    r.offsets_us.push(arrival - scheduled);
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

/// A random-looking start for a peer's sequence numbers (RFC 3550 5.1), repeatable.
fn rand_u16(i: usize) -> u16 {
    (i as u32).wrapping_mul(2_654_435_761).rotate_right(16) as u16
}

/// `recvmmsg` buffers with room for the source and the kernel's timestamp.
struct RecvBufs {
    bufs: Vec<[u8; 2048]>,
    names: Vec<libc::sockaddr_in>,
    ctrl: Vec<[u64; 16]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBufs {
    fn new() -> RecvBufs {
        let mut bufs = vec![[0u8; 2048]; RECV_BATCH];
        let iovs = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        RecvBufs {
            bufs,
            // SAFETY: plain old data, zero is valid.
            names: vec![unsafe { zeroed() }; RECV_BATCH],
            ctrl: vec![[0u64; 16]; RECV_BATCH],
            iovs,
            // SAFETY: as above.
            hdrs: vec![unsafe { zeroed() }; RECV_BATCH],
        }
    }

    /// Receives what is waiting on `sock`, up to a batch; returns how many.
    fn recv(&mut self, sock: &StdUdpSocket) -> usize {
        for m in 0..RECV_BATCH {
            let h = &mut self.hdrs[m].msg_hdr;
            h.msg_name = (&mut self.names[m] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[m];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[m].as_mut_ptr().cast();
            h.msg_controllen = size_of::<[u64; 16]>();
            h.msg_flags = 0;
        }
        // SAFETY: every header points at live buffers of the stated sizes (the
        // buffers are owned by `self` and not moved while the call runs).
        let got = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                RECV_BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        got.max(0) as usize
    }

    /// Source, length and kernel arrival time (ns, realtime clock) of datagram `m`.
    fn meta(&self, m: usize) -> (SocketAddr, usize, Option<i64>) {
        let sa = &self.names[m];
        let source = SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
            u16::from_be(sa.sin_port),
        ));
        let len = (self.hdrs[m].msg_len as usize).min(2048);
        (source, len, kernel_timestamp(&self.hdrs[m].msg_hdr))
    }
}

/// Sends every queued datagram with `sendmmsg`, and empties the queue.
fn send_all(sock: &StdUdpSocket, queue: &mut Vec<(SocketAddr, Vec<u8>)>) {
    if queue.is_empty() {
        return;
    }
    let mut addrs: Vec<libc::sockaddr_in> = queue.iter().map(|(a, _)| sockaddr(*a)).collect();
    let mut iovs: Vec<libc::iovec> = queue
        .iter_mut()
        .map(|(_, p)| libc::iovec {
            iov_base: p.as_mut_ptr().cast(),
            iov_len: p.len(),
        })
        .collect();
    let mut hdrs = mmsg_headers(&mut addrs, &mut iovs);
    let mut done = 0usize;
    while done < hdrs.len() {
        // SAFETY: `hdrs[done..]` point at live buffers and addresses.
        let r = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                hdrs[done..].as_mut_ptr(),
                (hdrs.len() - done) as u32,
                0,
            )
        };
        // a refused datagram fails one send: skip it and go on with the rest
        done += r.max(1) as usize;
    }
    queue.clear();
}
