//! Whole-flow media load benchmark (issue 4, done-when 4a/4b/4c), each figure printed
//! next to a peer measured in the same run:
//!
//! - `transcode`: N concurrent Opus ⇄ PCMU calls, 20 ms, both directions, real UDP
//!   sockets on loopback, through our [`Bridge`] and through rtpengine (userspace,
//!   `table = -1`), plus the bare libopus encode+decode cost at the same settings;
//! - `relay`: N concurrent passthrough calls through our [`Relay`] and through
//!   rtpengine's userspace relay: packets/s per core and added latency p50/p99
//!   (against the same generator sending straight to the receiver);
//! - memory per call of both (RSS growth per established call).
//!
//! A load generator (`load/generator.rs`: two threads named `gen-*`, `sendmmsg` and
//! `recvmmsg` with kernel receive timestamps, at the lowest scheduling weight) plays
//! the browser and the PBX of every call; the system under test runs in threads named
//! `sut-*` (one single-threaded tokio runtime per core, each call on one of them; CPU
//! time read from /proc per thread) or is the rtpengine process.
//!
//! Run with `scripts/bench-media.sh` (it passes the arguments through):
//! `cargo bench -p media --bench load -- transcode --calls 300 --secs 20`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::bridge::{Bridge, BridgeConfig, BridgeStats, MediaFrame, WebrtcOutput};
use media::codec::Codec;
use media::codec::g711;
use media::codec::opus::{OpusDecoder, OpusEncoder, OpusSettings};
use media::relay::{Relay, Side};
use media::relay_uring::UringRelay;
use media::rtp::TsExtender;
use media::rtp_leg::RtpLegConfig;
use media::webrtc::{self, WebRtcConfig, WebRtcLeg};
use tokio::net::UdpSocket;
use tokio::sync::watch;

#[path = "load/generator.rs"]
mod load_gen;
use load_gen::{Endpoint, Generator, LoadResult, run_load};
#[path = "load/browsers.rs"]
mod browsers;
use browsers::Browsers;

const OPUS_PT: u8 = 111;
const PCMU_PT: u8 = 0;

// ---------------------------------------------------------------- bencode / ng protocol

#[derive(Debug, Clone)]
enum B {
    Int(i64),
    Str(Vec<u8>),
    List(Vec<B>),
    Dict(BTreeMap<Vec<u8>, B>),
}

impl B {
    fn s(v: &str) -> B {
        B::Str(v.as_bytes().to_vec())
    }
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            B::Int(i) => out.extend(format!("i{i}e").bytes()),
            B::Str(s) => {
                out.extend(format!("{}:", s.len()).bytes());
                out.extend(s);
            }
            B::List(l) => {
                out.push(b'l');
                l.iter().for_each(|x| x.encode(out));
                out.push(b'e');
            }
            B::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    B::Str(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }
    fn decode(buf: &[u8]) -> Option<(B, &[u8])> {
        match *buf.first()? {
            b'i' => {
                let end = buf.iter().position(|&c| c == b'e')?;
                let v = std::str::from_utf8(&buf[1..end]).ok()?.parse().ok()?;
                Some((B::Int(v), &buf[end + 1..]))
            }
            b'l' => {
                let mut rest = &buf[1..];
                let mut l = Vec::new();
                while *rest.first()? != b'e' {
                    let (x, r) = B::decode(rest)?;
                    l.push(x);
                    rest = r;
                }
                Some((B::List(l), &rest[1..]))
            }
            b'd' => {
                let mut rest = &buf[1..];
                let mut d = BTreeMap::new();
                while *rest.first()? != b'e' {
                    let (B::Str(k), r) = B::decode(rest)? else {
                        return None;
                    };
                    let (v, r) = B::decode(r)?;
                    d.insert(k, v);
                    rest = r;
                }
                Some((B::Dict(d), &rest[1..]))
            }
            b'0'..=b'9' => {
                let colon = buf.iter().position(|&c| c == b':')?;
                let n: usize = std::str::from_utf8(&buf[..colon]).ok()?.parse().ok()?;
                let s = buf.get(colon + 1..colon + 1 + n)?;
                Some((B::Str(s.to_vec()), &buf[colon + 1 + n..]))
            }
            _ => None,
        }
    }
    fn get(&self, key: &str) -> Option<&B> {
        match self {
            B::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }
    fn str(&self) -> Option<String> {
        match self {
            B::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }
}

fn dict(items: Vec<(&str, B)>) -> B {
    B::Dict(
        items
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

/// rtpengine started on loopback, controlled over the ng protocol.
struct Rtpengine {
    child: Child,
    ng: StdUdpSocket,
    ng_addr: SocketAddr,
    cookie: u64,
}

impl Rtpengine {
    fn start() -> Rtpengine {
        let ng_port = {
            let s = StdUdpSocket::bind("127.0.0.1:0").expect("probe port");
            s.local_addr().expect("addr").port()
        };
        let child = Command::new("rtpengine")
            .args([
                "--config-file=none",
                "--foreground",
                "--log-stderr",
                "--table=-1",
                "--interface=127.0.0.1",
                &format!("--listen-ng=127.0.0.1:{ng_port}"),
                "--port-min=10000",
                "--port-max=32000",
                "--num-threads=2",
                "--log-level=3",
                "--timeout=120",
                "--delete-delay=0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(std::env::temp_dir().join("bench-rtpengine.log"))
                    .map_or_else(|_| Stdio::null(), Stdio::from),
            )
            .spawn()
            .expect("start rtpengine (Debian rtpengine-daemon)");
        let ng = StdUdpSocket::bind("127.0.0.1:0").expect("ng socket");
        ng.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut r = Rtpengine {
            child,
            ng,
            ng_addr: SocketAddr::from(([127, 0, 0, 1], ng_port)),
            cookie: 0,
        };
        let t0 = Instant::now();
        loop {
            if let Some(rep) = r.try_command(dict(vec![("command", B::s("ping"))]))
                && rep.get("result").and_then(B::str).as_deref() == Some("pong")
            {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "rtpengine did not answer ping"
            );
        }
        r
    }

    fn try_command(&mut self, cmd: B) -> Option<B> {
        self.cookie += 1;
        let cookie = format!("c{}", self.cookie);
        let mut msg = format!("{cookie} ").into_bytes();
        cmd.encode(&mut msg);
        self.ng.send_to(&msg, self.ng_addr).ok()?;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = self.ng.recv(&mut buf).ok()?;
            let reply = &buf[..n];
            if let Some(rest) = reply.strip_prefix(format!("{cookie} ").as_bytes()) {
                return B::decode(rest).map(|(b, _)| b);
            }
        }
    }

    fn command(&mut self, cmd: B) -> B {
        for _ in 0..10 {
            if let Some(r) = self.try_command(cmd.clone()) {
                let result = r.get("result").and_then(B::str);
                assert_eq!(result.as_deref(), Some("ok"), "rtpengine: {r:?}");
                return r;
            }
        }
        panic!("rtpengine does not answer");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sdp(port: u16, pt: u8, rtpmap: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {rtpmap}\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

fn sdp_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("m=audio port in rtpengine's SDP")
}

/// Sets up one call in rtpengine between endpoint `a` (offerer) and `b`; returns the
/// rtpengine addresses that `a` and `b` must send to.
fn rtpengine_call(
    r: &mut Rtpengine,
    id: usize,
    a: SocketAddr,
    b: SocketAddr,
    transcode: bool,
) -> (SocketAddr, SocketAddr) {
    let call_id = format!("bench-{id}-{}", if transcode { "t" } else { "r" });
    let (a_sdp, b_sdp) = if transcode {
        (
            sdp(a.port(), OPUS_PT, "opus/48000/2"),
            sdp(b.port(), PCMU_PT, "PCMU/8000"),
        )
    } else {
        (
            sdp(a.port(), PCMU_PT, "PCMU/8000"),
            sdp(b.port(), PCMU_PT, "PCMU/8000"),
        )
    };
    let mut offer = vec![
        ("command", B::s("offer")),
        ("call-id", B::s(&call_id)),
        ("from-tag", B::s("a")),
        ("sdp", B::s(&a_sdp)),
        ("ICE", B::s("remove")),
    ];
    if transcode {
        offer.push((
            "codec",
            dict(vec![
                ("transcode", B::List(vec![B::s("PCMU")])),
                ("mask", B::List(vec![B::s("opus")])),
            ]),
        ));
    }
    let rep = r.command(dict(offer));
    let to_b = sdp_port(&rep.get("sdp").and_then(B::str).expect("offer sdp"));
    let rep = r.command(dict(vec![
        ("command", B::s("answer")),
        ("call-id", B::s(&call_id)),
        ("from-tag", B::s("a")),
        ("to-tag", B::s("b")),
        ("sdp", B::s(&b_sdp)),
        ("ICE", B::s("remove")),
    ]));
    let answer = rep.get("sdp").and_then(B::str).expect("answer sdp");
    if transcode {
        assert!(
            answer.contains("opus"),
            "rtpengine answers A with opus: {answer}"
        );
    }
    let to_a = sdp_port(&answer);
    (
        SocketAddr::from(([127, 0, 0, 1], to_a)),
        SocketAddr::from(([127, 0, 0, 1], to_b)),
    )
}

// ---------------------------------------------------------------- CPU and memory

fn clock_ticks(stat: &str) -> Option<u64> {
    // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU seconds used so far by this process's threads whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> f64 {
    let mut ticks = 0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.starts_with(prefix) {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                ticks += clock_ticks(&stat).unwrap_or(0);
            }
        }
    }
    ticks as f64 / 100.0
}

/// `BENCH_RT=<prio>`: the systems under test run SCHED_FIFO at that priority, as a
/// media server is deployed (Asterisk `-p`, FreeSWITCH `-rp`, `chrt` for rtpengine),
/// so the load generator sharing their two cores never delays them. Applies to the
/// threads of `pid` (0: this process) whose name starts with `prefix`.
fn realtime_threads(pid: u32, prefix: &str) {
    let Some(prio) = std::env::var("BENCH_RT")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    let dir = if pid == 0 {
        "/proc/self/task".to_string()
    } else {
        format!("/proc/{pid}/task")
    };
    let mut n = 0;
    if let Ok(dir) = std::fs::read_dir(dir) {
        for e in dir.flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else {
                continue;
            };
            if comm.starts_with(prefix) {
                let param = libc::sched_param {
                    sched_priority: prio,
                };
                // SAFETY: sched_setscheduler reads the param it is given.
                if unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) } == 0 {
                    n += 1;
                }
            }
        }
    }
    println!(
        "  SCHED_FIFO {prio}: {n} threads of {}",
        if pid == 0 {
            prefix.to_string()
        } else {
            format!("pid {pid}")
        }
    );
}

/// Seconds the threads named `prefix*` spent runnable but waiting for a CPU (schedstat):
/// on a shared machine this tells a slow system under test from a starved one.
fn threads_wait(prefix: &str) -> f64 {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if comm.starts_with(prefix) {
                let st = std::fs::read_to_string(e.path().join("schedstat")).unwrap_or_default();
                ns += st
                    .split(' ')
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    ns as f64 / 1e9
}

fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    clock_ticks(&stat).unwrap_or(0) as f64 / 100.0
}

/// Resident set size of `pid` in KiB.
/// The bench's allocator: the system's, counting live heap bytes, so memory per call
/// is what the calls hold, not what the allocator keeps from earlier runs (RSS never
/// shrinks after a free, so RSS growth of a second run measures nothing).
struct CountingAlloc;

static LIVE_HEAP: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter
// is updated beside it.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { std::alloc::System.alloc(l) };
        if !p.is_null() {
            LIVE_HEAP.fetch_add(l.size() as i64, std::sync::atomic::Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { std::alloc::System.dealloc(p, l) };
        LIVE_HEAP.fetch_sub(l.size() as i64, std::sync::atomic::Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let q = unsafe { std::alloc::System.realloc(p, l, new) };
        if !q.is_null() {
            LIVE_HEAP.fetch_add(
                new as i64 - l.size() as i64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        q
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Live heap bytes of the bench process.
fn live_heap() -> i64 {
    LIVE_HEAP.load(std::sync::atomic::Ordering::Relaxed)
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------- signals

/// A deterministic speech-like test signal (voiced syllables with pauses) at `rate`.
fn speech_like(rate: u32, secs: f64) -> Vec<i16> {
    let n = (f64::from(rate) * secs) as usize;
    let mut out = vec![0i16; n];
    let mut t = 0.05;
    let mut k = 0u32;
    while t < secs - 0.3 {
        k += 1;
        let f0 = 100.0 + f64::from(k % 7) * 9.0;
        let len = 0.18 + f64::from(k % 5) * 0.03;
        let start = (t * f64::from(rate)) as usize;
        let len_n = (len * f64::from(rate)) as usize;
        for i in 0..len_n {
            let x = i as f64 / len_n as f64;
            let env = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * x).cos();
            let tt = i as f64 / f64::from(rate);
            let mut s = 0.0;
            for h in 1..30 {
                let fh = f0 * f64::from(h);
                if fh > 3400.0 {
                    break;
                }
                let formant = 1.0
                    / (1.0 + ((fh - 500.0 - f64::from(k % 4) * 120.0) / 150.0).powi(2))
                    + 0.5 / (1.0 + ((fh - 1500.0) / 250.0).powi(2));
                s += formant * (2.0 * std::f64::consts::PI * fh * tt).sin();
            }
            if let Some(o) = out.get_mut(start + i) {
                *o = (3000.0 * env * s).clamp(-32000.0, 32000.0) as i16;
            }
        }
        t += len + 0.08;
    }
    out
}

/// Pre-encoded payloads a generator endpoint cycles through.
type Frames = Arc<Vec<Vec<u8>>>;

/// 250 Opus frames (5 s) as a browser sends them (48 kHz, complexity 10) and the same
/// signal as 250 PCMU frames as a desk phone sends them.
fn test_streams() -> (Frames, Frames) {
    let wide = speech_like(48000, 5.0);
    let narrow = speech_like(8000, 5.0);
    let mut enc = OpusEncoder::new(OpusSettings::fullband()).expect("opus encoder");
    let opus = wide
        .chunks_exact(960)
        .map(|c| {
            let mut p = Vec::new();
            enc.encode(c, &mut p).expect("encode");
            p
        })
        .collect();
    let pcmu = narrow
        .chunks_exact(160)
        .map(|c| c.iter().map(|&s| g711::ulaw_encode(s)).collect())
        .collect();
    (Arc::new(opus), Arc::new(pcmu))
}

/// Bare libopus cost of one call-frame at `settings`: one encode of 20 ms and one decode
/// of the browser's 48 kHz packet to the encoder's rate, on one thread. Returns µs.
fn bare_libopus_us(settings: OpusSettings, opus: &[Vec<u8>]) -> f64 {
    let pcm = speech_like(settings.sample_rate, 5.0);
    let n = settings.frame_samples();
    let mut enc = OpusEncoder::new(settings).expect("encoder");
    let mut dec = OpusDecoder::new(settings.sample_rate).expect("decoder");
    let mut out = Vec::new();
    let mut pcm_out = Vec::new();
    let rounds = 4;
    let t0 = Instant::now();
    for _ in 0..rounds {
        for (frame, packet) in pcm.chunks_exact(n).zip(opus.iter()) {
            out.clear();
            enc.encode(frame, &mut out).expect("encode");
            pcm_out.clear();
            dec.decode(packet, &mut pcm_out).expect("decode");
        }
    }
    t0.elapsed().as_secs_f64() * 1e6 / (rounds * opus.len().min(pcm.len() / n)) as f64
}

/// RSS growth per live transcoding [`Bridge`] after a second of traffic through each
/// (codec states, jitter buffers, queues); the kernel's socket buffers are not included,
/// as they are not in rtpengine's RSS either.
fn bridge_memory_kib(n: usize, args: &Args, o: &[Vec<u8>], p: &[Vec<u8>]) -> f64 {
    let pbx: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    let heap0 = live_heap();
    let t0 = Instant::now();
    let mut bridges = Vec::with_capacity(n);
    for _ in 0..n {
        let cfg = bridge_config(pbx, args.opus, args.inband_dtmf);
        bridges.push(Bridge::new(t0, cfg).expect("bridge"));
    }
    for (k, (op, pp)) in o.iter().zip(p).take(50).enumerate() {
        let now = t0 + Duration::from_millis(20 * k as u64);
        let mut pkt = Vec::new();
        rtp_packet(PCMU_PT, k as u16, 160 * k as u32, 7, pp, &mut pkt);
        for b in &mut bridges {
            b.handle_webrtc_media(
                now,
                MediaFrame {
                    seq: k as u16,
                    timestamp: 960 * k as u32,
                    marker: k == 0,
                    payload: op.clone(),
                },
            );
            b.handle_rtp_input(now, pbx, pkt.clone());
            b.handle_timeout(now);
            while b.poll_transmit().is_some() {}
            while b.poll_webrtc().is_some() {}
        }
    }
    let kib = (live_heap() - heap0) as f64 / 1024.0 / n as f64;
    drop(bridges);
    kib
}

// ---------------------------------------------------------------- load generator

fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0x80, pt]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

struct Summary {
    sent: u64,
    received: u64,
    lost_pct: f64,
    late_pct: f64,
    p50_us: i64,
    p99_us: i64,
}

fn summarize(r: &LoadResult) -> Summary {
    let received: u64 = r.received.iter().map(|x| x.packets).sum();
    let mut late = 0usize;
    let mut late_by_side = [0usize; 2];
    let mut all = Vec::new();
    for (k, x) in r.received.iter().enumerate() {
        let late_before = late;
        if r.stamped {
            all.extend_from_slice(&x.offsets_us);
        } else {
            // A frame more than one frame time behind its stream's best slot of the last
            // 2 s is late (a window, so a peer that re-bases its timestamps once is not
            // counted late for the rest of the run).
            let mut window: std::collections::VecDeque<(usize, i64)> = Default::default();
            for (i, &o) in x.offsets_us.iter().enumerate() {
                while window.back().is_some_and(|&(_, v)| v >= o) {
                    window.pop_back();
                }
                window.push_back((i, o));
                while window.front().is_some_and(|&(j, _)| j + 100 <= i) {
                    window.pop_front();
                }
                let min = window.front().map_or(o, |&(_, v)| v);
                if o - min > 20_000 {
                    late += 1;
                }
                all.push(o - min);
            }
        }
        late_by_side[k % 2] += late - late_before;
    }
    let rx = |side: usize| -> u64 {
        r.received
            .iter()
            .skip(side)
            .step_by(2)
            .map(|x| x.packets)
            .sum()
    };
    let mut per: Vec<u64> = r.received.iter().map(|x| x.packets).collect();
    per.sort_unstable();
    println!(
        "  received towards the browser {}, towards the PBX {}; per endpoint min {} median {} max {}",
        rx(0),
        rx(1),
        per.first().unwrap_or(&0),
        per.get(per.len() / 2).unwrap_or(&0),
        per.last().unwrap_or(&0)
    );
    if late > 0 {
        println!(
            "  late frames towards the browser (Opus) {}, towards the PBX (PCMU) {}",
            late_by_side[0], late_by_side[1]
        );
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    Summary {
        sent: r.sent,
        received,
        lost_pct: 100.0 * (r.sent.saturating_sub(received)) as f64 / r.sent.max(1) as f64,
        late_pct: 100.0 * late as f64 / received.max(1) as f64,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
    }
}

// ---------------------------------------------------------------- our system under test

/// The bridge of one benchmarked call, its PBX side at `pbx`.
fn bridge_config(pbx: SocketAddr, opus: OpusSettings, inband_dtmf: bool) -> BridgeConfig {
    let mut leg = RtpLegConfig::new(0xabc, Codec::Pcmu, PCMU_PT, pbx);
    leg.rtcp_mux = true;
    // Asterisk and FreeSWITCH offer telephone-event by default; without it the bridge
    // also listens for in-band digits (`--inband-dtmf` measures that case).
    leg.dtmf_pt = (!inband_dtmf).then_some(101);
    let mut cfg = BridgeConfig::new(leg);
    cfg.opus = opus;
    cfg
}

/// Runs our transcoding bridge for one call: `wsock` faces the browser (Opus RTP),
/// `rsock` the PBX (PCMU RTP).
async fn our_transcoded_call(
    wsock: StdUdpSocket,
    rsock: StdUdpSocket,
    browser: SocketAddr,
    cfg: BridgeConfig,
    mut stop: watch::Receiver<bool>,
    mut marks: watch::Receiver<u8>,
) -> Vec<BridgeStats> {
    let (Ok(wsock), Ok(rsock)) = (UdpSocket::from_std(wsock), UdpSocket::from_std(rsock)) else {
        return Vec::new();
    };
    let mut snapshots = Vec::new();
    let mut marks_open = true;
    let Ok(mut bridge) = Bridge::new(Instant::now(), cfg) else {
        return snapshots;
    };
    let mut wbuf = vec![0u8; 1500];
    let mut rbuf = vec![0u8; 1500];
    let mut out = Vec::with_capacity(256);
    let mut seq = 0u16;
    loop {
        let deadline = bridge
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_millis(20));
        tokio::select! {
            _ = stop.changed() => break,
            r = marks.changed(), if marks_open => match r {
                Ok(()) => snapshots.push(bridge.stats()),
                Err(_) => marks_open = false,
            },
            r = wsock.recv_from(&mut wbuf) => {
                let Ok((n, _)) = r else { continue };
                if n < 12 { continue; }
                let b = &wbuf[..n];
                bridge.handle_webrtc_media(Instant::now(), MediaFrame {
                    seq: u16::from_be_bytes([b[2], b[3]]),
                    timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                    marker: b[1] & 0x80 != 0,
                    payload: b[12..].to_vec(),
                });
            }
            r = rsock.recv_from(&mut rbuf) => {
                let Ok((n, from)) = r else { continue };
                bridge.handle_rtp_input(Instant::now(), from, rbuf[..n].to_vec());
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                bridge.handle_timeout(Instant::now());
            }
        }
        while let Some(t) = bridge.poll_transmit() {
            let _ = rsock.try_send_to(&t.data, t.destination);
        }
        while let Some(o) = bridge.poll_webrtc() {
            if let WebrtcOutput::Audio(f) = o {
                rtp_packet(OPUS_PT, seq, f.timestamp, 0xdef, &f.payload, &mut out);
                seq = seq.wrapping_add(1);
                let _ = wsock.try_send_to(&out, browser);
            }
        }
    }
    snapshots
}

/// Loop turns of the WebRTC call tasks, and of those the ones whose deadline was due.
static WAKEUPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static TIMER_WAKEUPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs one call as the gateway does (`gateway/src/calls/trunk.rs`): `wsock` carries
/// the browser's ICE, DTLS-SRTP and Opus through the real [`WebRtcLeg`], `rsock` the
/// PBX's PCMU, and the [`Bridge`] transcodes between them. `connected` counts legs
/// whose ICE and DTLS are up.
async fn our_webrtc_call(
    wsock: StdUdpSocket,
    rsock: StdUdpSocket,
    mut leg: WebRtcLeg,
    cfg: BridgeConfig,
    mut stop: watch::Receiver<bool>,
    mut marks: watch::Receiver<u8>,
    connected: Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<BridgeStats> {
    let mut snapshots = Vec::new();
    let Ok(local) = wsock.local_addr() else {
        return snapshots;
    };
    let (Ok(wsock), Ok(rsock)) = (UdpSocket::from_std(wsock), UdpSocket::from_std(rsock)) else {
        return snapshots;
    };
    let mut marks_open = true;
    let Ok(mut bridge) = Bridge::new(Instant::now(), cfg) else {
        return snapshots;
    };
    let mut out_ts = TsExtender::default();
    let mut wbuf = vec![0u8; 2048];
    let mut rbuf = vec![0u8; 1500];
    loop {
        // Drain the leg into the bridge and the bridge into both sockets until both
        // have nothing more to say (Opus written to the leg makes new transmits).
        let leg_deadline = loop {
            let now = Instant::now();
            let deadline = loop {
                match leg.poll_output() {
                    Ok(webrtc::Output::Timeout(t)) => break Some(t),
                    Ok(webrtc::Output::Transmit(t)) => {
                        let _ = wsock.try_send_to(&t.contents, t.destination);
                    }
                    Ok(webrtc::Output::Event(webrtc::Event::Connected)) => {
                        connected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(webrtc::Output::Event(webrtc::Event::Opus(f))) => {
                        bridge.handle_webrtc_media(
                            now,
                            MediaFrame {
                                seq: f.seq as u16,
                                timestamp: f.rtp_timestamp as u32,
                                marker: false,
                                payload: f.payload.to_vec(),
                            },
                        );
                    }
                    Ok(webrtc::Output::Event(_)) => {}
                    Err(_) => break None,
                }
            };
            let Some(deadline) = deadline else {
                return snapshots;
            };
            while let Some(t) = bridge.poll_transmit() {
                let _ = rsock.try_send_to(&t.data, t.destination);
            }
            let mut wrote = false;
            while let Some(o) = bridge.poll_webrtc() {
                if let WebrtcOutput::Audio(f) = o {
                    wrote |= leg
                        .write_opus(now, out_ts.extend(f.timestamp), &f.payload)
                        .is_ok();
                }
            }
            if !wrote {
                break deadline;
            }
        };
        let deadline = bridge
            .poll_timeout()
            .map_or(leg_deadline, |t| t.min(leg_deadline));
        WAKEUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if leg_deadline <= Instant::now() + Duration::from_micros(50) {
            TIMER_WAKEUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tokio::select! {
            _ = stop.changed() => break,
            r = marks.changed(), if marks_open => match r {
                Ok(()) => snapshots.push(bridge.stats()),
                Err(_) => marks_open = false,
            },
            r = wsock.recv_from(&mut wbuf) => {
                let Ok((n, source)) = r else { continue };
                let input = webrtc::Receive { source, destination: local, contents: &wbuf[..n] };
                let _ = leg.handle_input(Instant::now(), input);
            }
            r = rsock.recv_from(&mut rbuf) => {
                let Ok((n, from)) = r else { continue };
                bridge.handle_rtp_input(Instant::now(), from, rbuf[..n].to_vec());
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                // each side only when its own deadline is due: str0m's timeout
                // handling walks its whole session, 100 times a second for nothing
                // if it ran on every playout tick of the bridge
                let now = Instant::now();
                if now >= leg_deadline {
                    let _ = leg.handle_timeout(now);
                }
                if bridge.poll_timeout().is_some_and(|t| now >= t) {
                    bridge.handle_timeout(now);
                }
            }
        }
    }
    snapshots
}

/// Runs our passthrough relay for one call.
async fn our_relayed_call(
    a_sock: StdUdpSocket,
    b_sock: StdUdpSocket,
    a: SocketAddr,
    b: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let mut relay = Relay::new(Some(a), Some(b), true);
    let (Ok(a_sock), Ok(b_sock)) = (UdpSocket::from_std(a_sock), UdpSocket::from_std(b_sock))
    else {
        return;
    };
    let mut abuf = vec![0u8; 1500];
    let mut bbuf = vec![0u8; 1500];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            r = a_sock.recv_from(&mut abuf) => {
                let Ok((n, from)) = r else { continue };
                if let Some(to) = relay.handle_input(Side::A, from, &abuf[..n]) {
                    let _ = b_sock.try_send_to(&abuf[..n], to);
                }
            }
            r = b_sock.recv_from(&mut bbuf) => {
                let Ok((n, from)) = r else { continue };
                if let Some(to) = relay.handle_input(Side::B, from, &bbuf[..n]) {
                    let _ = a_sock.try_send_to(&bbuf[..n], to);
                }
            }
        }
    }
}

/// The system under test's threads: one single-threaded runtime per core (named
/// `sut-<k>`), each call pinned to one of them, as the gateway runs media; or, with
/// `BENCH_SUT=mt`, one work-stealing runtime with two workers, for comparison.
struct Sut {
    handles: Vec<tokio::runtime::Handle>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    mt: Option<tokio::runtime::Runtime>,
    /// Waits for tasks from the bench's main thread.
    ctl: tokio::runtime::Runtime,
}

impl Sut {
    fn new() -> Sut {
        let ctl = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("control runtime");
        if std::env::var("BENCH_SUT").as_deref() == Ok("mt") {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("sut")
                .enable_all()
                .build()
                .expect("sut runtime");
            return Sut {
                handles: vec![rt.handle().clone()],
                stops: Vec::new(),
                threads: Vec::new(),
                mt: Some(rt),
                ctl,
            };
        }
        let (mut handles, mut stops, mut threads) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..2 {
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let (h_tx, h_rx) = std::sync::mpsc::channel();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("sut-{k}"))
                    .spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("sut runtime");
                        let _ = h_tx.send(rt.handle().clone());
                        rt.block_on(async {
                            let _ = stop_rx.await;
                        });
                    })
                    .expect("sut thread"),
            );
            handles.push(h_rx.recv().expect("sut handle"));
            stops.push(stop_tx);
        }
        Sut {
            handles,
            stops,
            threads,
            mt: None,
            ctl,
        }
    }

    /// Runs call `i` on its runtime.
    fn spawn<F>(&self, i: usize, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[i % self.handles.len()].spawn(f)
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.ctl.block_on(f)
    }
}

impl Drop for Sut {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        drop(self.mt.take());
    }
}

/// A loopback socket for the system under test, registered with the runtime of the
/// task that converts it.
fn sut_socket() -> (StdUdpSocket, SocketAddr) {
    let s = StdUdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    s.set_nonblocking(true).expect("nonblocking");
    let a = s.local_addr().expect("addr");
    (s, a)
}

// ---------------------------------------------------------------- scenarios

struct Args {
    calls: usize,
    secs: f64,
    warmup: f64,
    opus: OpusSettings,
    skip_rtpengine: bool,
    /// The PBX side has no telephone-event, so the bridge runs its tone detector.
    inband_dtmf: bool,
    /// The browser side sends plain RTP Opus straight into the bridge (no WebRTC leg,
    /// no SRTP): the same streams rtpengine gets.
    plain_opus: bool,
}

/// CPU µs per frame delivered on time or late (not lost): the cost that stays fair when
/// a system under test is overloaded and drops frames.
fn cpu_per_delivered_us(s: &Summary, cpu: f64, wall: f64, secs: f64) -> f64 {
    cpu * 1e6 / (s.received as f64 * wall / secs).max(1.0)
}

fn report_line(name: &str, calls: usize, s: &Summary, cpu: f64, wall: f64) -> f64 {
    let cores = cpu / wall;
    println!(
        "{name:<28} calls {calls:>5}  sent {:>8}  recv {:>8}  lost {:>5.2}%  late {:>5.2}%  \
         p50 {:>6} µs  p99 {:>6} µs  cpu {:>5.2} cores  → {:>6.0} calls/core",
        s.sent,
        s.received,
        s.lost_pct,
        s.late_pct,
        s.p50_us,
        s.p99_us,
        cores,
        calls as f64 / cores.max(1e-9)
    );
    cores
}

fn transcode(args: &Args) {
    let (opus_frames, pcmu_frames) = test_streams();
    let bare = bare_libopus_us(args.opus, &opus_frames);
    println!(
        "bare libopus, {} Hz complexity {}: {bare:.1} µs per call-frame (encode 20 ms + decode 20 ms) \
         → bound {:.0} calls/core",
        args.opus.sample_rate,
        args.opus.complexity,
        20_000.0 / bare
    );
    // ours
    let sut = Sut::new();
    realtime_threads(0, "sut-");
    let generator = Generator::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (mark_tx, mark_rx) = watch::channel(0u8);
    let rss0 = rss_kib("self");
    let mut eps = Vec::new();
    let mut tasks = Vec::new();
    let heap_before = live_heap();
    let mut browsers = (!args.plain_opus).then(Browsers::new);
    let mut leg_heap = 0i64;
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for i in 0..args.calls {
        let (browser, pbx) = generator.call(i);
        let ((w, wa), (r, ra)) = (sut_socket(), sut_socket());
        let (b_addr, p_addr) = (generator.addr(browser), generator.addr(pbx));
        let cfg = bridge_config(p_addr, args.opus, args.inband_dtmf);
        if let Some(browsers) = browsers.as_mut() {
            let offer = browsers.offer(Instant::now());
            let wcfg = WebRtcConfig {
                local_addrs: vec![wa],
                video: Vec::new(),
                external_ip: None,
            };
            let h = live_heap();
            let (leg, answer) =
                WebRtcLeg::accept_offer(Instant::now(), &wcfg, &offer).expect("webrtc leg");
            leg_heap += live_heap() - h;
            browsers.answer(&answer, wa);
            let (stop, marks, c) = (stop_rx.clone(), mark_rx.clone(), connected.clone());
            tasks.push(sut.spawn(i, our_webrtc_call(w, r, leg, cfg, stop, marks, c)));
        } else {
            tasks.push(sut.spawn(
                i,
                our_transcoded_call(w, r, b_addr, cfg, stop_rx.clone(), mark_rx.clone()),
            ));
            eps.push(Endpoint {
                sock: browser,
                send_to: wa,
                pt: OPUS_PT,
                samples: 960,
                frames: opus_frames.clone(),
                stamp: false,
            });
        }
        eps.push(Endpoint {
            sock: pbx,
            send_to: ra,
            pt: PCMU_PT,
            samples: 160,
            frames: pcmu_frames.clone(),
            stamp: false,
        });
    }
    // The browsers connect (ICE, DTLS) before anything is measured.
    let browser_side = browsers.map(|mut b| {
        let (bstop, frames, marks) = (
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
            opus_frames.clone(),
            mark_rx.clone(),
        );
        let b_connected = b.connected();
        let stop = bstop.clone();
        let thread = std::thread::Builder::new()
            .name("gen-browsers".into())
            .spawn(move || b.run(&frames, marks, &stop))
            .expect("spawn browsers");
        let t = Instant::now();
        let up = |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::Relaxed);
        while (up(&connected) < args.calls || up(&b_connected) < args.calls)
            && t.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!(
            "  WebRTC legs (ICE + DTLS-SRTP) connected: {} of {} (browsers: {}) in {:.1} s",
            up(&connected),
            args.calls,
            up(&b_connected),
            t.elapsed().as_secs_f64()
        );
        (thread, bstop)
    });
    let cpu0 = threads_cpu("sut");
    let wait0 = threads_wait("sut");
    let browsers_cpu0 = threads_cpu("gen-browsers");
    let t0 = Instant::now();
    let w0 = WAKEUPS.load(std::sync::atomic::Ordering::Relaxed);
    let tw0 = TIMER_WAKEUPS.load(std::sync::atomic::Ordering::Relaxed);
    let mut res = run_load(&generator, &eps, args.secs, args.warmup, Some(mark_tx));
    let heap_run = live_heap() - heap_before;
    if !args.plain_opus {
        let per = |n: u64| n as f64 / args.calls as f64 / t0.elapsed().as_secs_f64();
        println!(
            "  call task turns per call-second: {:.0} (of which the leg's deadline was already due: {:.0})",
            per(WAKEUPS.load(std::sync::atomic::Ordering::Relaxed) - w0),
            per(TIMER_WAKEUPS.load(std::sync::atomic::Ordering::Relaxed) - tw0)
        );
    }
    if let Some((thread, stop)) = browser_side {
        println!(
            "  browser peers (gen-browsers thread): {:.2} cores",
            (threads_cpu("gen-browsers") - browsers_cpu0) / t0.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_millis(400));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let b = thread.join().expect("browsers");
        // summarize() wants [towards browser 0, towards PBX 0, towards browser 1, …]
        let pbx = std::mem::take(&mut res.received);
        res.received = b
            .received
            .into_iter()
            .zip(pbx)
            .flat_map(|(x, y)| [x, y])
            .collect();
        res.sent += b.sent;
        println!(
            "  browser peers' 1 ms ticks started > 5 ms late: {}, > 20 ms late (frames not sent): {}; worst {:.1} ms",
            b.behind.0,
            b.behind.1,
            b.worst_lag_us as f64 / 1000.0
        );
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = threads_cpu("sut") - cpu0;
    println!(
        "  namecall threads waited {:.2} s for a CPU (run queue) during {wall:.1} s",
        threads_wait("sut") - wait0
    );
    let rss1 = rss_kib("self");
    let _ = stop_tx.send(true);
    let (mut concealed, mut dropped_late) = (0u64, 0u64);
    for t in tasks {
        // Snapshots at the start and the end of the measured window.
        if let Ok(snaps) = sut.block_on(t)
            && let [a, b, ..] = snaps.as_slice()
        {
            let c = |s: &BridgeStats| s.webrtc_lost + s.to_webrtc.concealed + s.to_rtp.concealed;
            concealed += c(b) - c(a);
            dropped_late += b.rtp.late - a.rtp.late;
        }
    }
    drop(sut);
    let ours = summarize(&res);
    let our_cores = report_line("namecall bridge", args.calls, &ours, cpu, wall);
    let (our_cpu, our_wall) = (cpu, wall);
    // The bridge's jitter buffers hide input that came too late behind concealment, so
    // the generator sees a frame on time; count those as late too.
    println!(
        "namecall: frames concealed by the bridge {concealed}, dropped late {dropped_late} \
         → late+lost {:.2}% of {} frames",
        ours.lost_pct
            + ours.late_pct
            + 100.0 * (concealed + dropped_late) as f64 / ours.sent.max(1) as f64,
        ours.sent
    );
    let per_frame = cpu * 1e6 / (args.calls as f64 * wall * 50.0);
    println!(
        "namecall: {per_frame:.1} µs CPU per call-frame = {:.0}% of the bare libopus bound",
        100.0 * bare / per_frame
    );
    let _ = (rss0, rss1);
    let bridge_kib = bridge_memory_kib(args.calls, args, &opus_frames, &pcmu_frames);
    let leg_kib = leg_heap as f64 / 1024.0 / args.calls as f64;
    println!(
        "namecall memory: {:.1} KiB heap per transcoded call (WebRTC leg at setup {leg_kib:.1} \
         + Bridge after 1 s of traffic {bridge_kib:.1}; {} calls)",
        leg_kib + bridge_kib,
        args.calls
    );
    println!(
        "  (whole bench process during the run, browser peers and generator included: \
         {:.1} KiB heap per call)",
        heap_run as f64 / 1024.0 / args.calls as f64
    );
    if args.skip_rtpengine {
        return;
    }

    // rtpengine, same streams
    let mut rtpe = Rtpengine::start();
    realtime_threads(rtpe.pid(), "");
    let generator = Generator::new();
    let rss0 = rss_kib(&rtpe.pid().to_string());
    let mut eps = Vec::new();
    for i in 0..args.calls {
        let (browser, pbx) = generator.call(i);
        let (to_a, to_b) = rtpengine_call(
            &mut rtpe,
            i,
            generator.addr(browser),
            generator.addr(pbx),
            true,
        );
        eps.push(Endpoint {
            sock: browser,
            send_to: to_a,
            pt: OPUS_PT,
            samples: 960,
            frames: opus_frames.clone(),
            stamp: false,
        });
        eps.push(Endpoint {
            sock: pbx,
            send_to: to_b,
            pt: PCMU_PT,
            samples: 160,
            frames: pcmu_frames.clone(),
            stamp: false,
        });
    }
    let cpu0 = process_cpu(rtpe.pid());
    let t0 = Instant::now();
    let res = run_load(&generator, &eps, args.secs, args.warmup, None);
    let wall = t0.elapsed().as_secs_f64();
    let cpu = process_cpu(rtpe.pid()) - cpu0;
    let rss1 = rss_kib(&rtpe.pid().to_string());
    let theirs = summarize(&res);
    let their_cores = report_line("rtpengine (userspace)", args.calls, &theirs, cpu, wall);
    println!(
        "rtpengine memory: {:.1} KiB per transcoded call (RSS growth)",
        (rss1.saturating_sub(rss0)) as f64 / args.calls as f64
    );
    let ours_us = cpu_per_delivered_us(&ours, our_cpu, our_wall, args.secs);
    let theirs_us = cpu_per_delivered_us(&theirs, cpu, wall, args.secs);
    println!(
        "ratio: namecall calls/core ÷ rtpengine calls/core = {:.2}; CPU per delivered frame \
         namecall {ours_us:.1} µs, rtpengine {theirs_us:.1} µs → {:.2}x",
        their_cores / our_cores.max(1e-9),
        theirs_us / ours_us.max(1e-9)
    );
}

/// Our relay on the io_uring engine (`media::relay_uring`): one engine thread
/// per core (`sut-u0`, `sut-u1`), calls spread over them.
fn uring_relay(args: &Args, direct: &Summary) {
    let engines: Vec<UringRelay> = match (0..2)
        .map(|k| UringRelay::start(&format!("sut-u{k}")))
        .collect::<std::io::Result<_>>()
    {
        Ok(e) => e,
        Err(e) => {
            println!("namecall relay (io_uring): not run, io_uring unavailable: {e}");
            return;
        }
    };
    realtime_threads(0, "sut-u");
    let pcmu: Frames = Arc::new(vec![vec![0xffu8; 160]; 50]);
    let generator = Generator::new();
    let rss0 = rss_kib("self");
    let mut eps = Vec::new();
    for i in 0..args.calls {
        let (a, b) = generator.call(i);
        let ((sa, saa), (sb, sba)) = (sut_socket(), sut_socket());
        let relay = Relay::new(Some(generator.addr(a)), Some(generator.addr(b)), true);
        engines[i % engines.len()]
            .add(sa, sb, relay)
            .expect("engine takes the call");
        for (sock, to) in [(a, saa), (b, sba)] {
            eps.push(Endpoint {
                sock,
                send_to: to,
                pt: PCMU_PT,
                samples: 160,
                frames: pcmu.clone(),
                stamp: true,
            });
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss1 = rss_kib("self");
    let cpu0 = threads_cpu("sut-u");
    let t0 = Instant::now();
    let res = run_load(&generator, &eps, args.secs, args.warmup, None);
    let wall = t0.elapsed().as_secs_f64();
    let cpu = threads_cpu("sut-u") - cpu0;
    let errors: u64 = engines
        .iter()
        .filter_map(|e| e.stats().ok())
        .map(|s| s.send_errors + s.recv_errors + s.truncated)
        .sum();
    for e in engines {
        let _ = e.stop();
    }
    let ours = summarize(&res);
    let pps = ours.received as f64 / args.secs;
    let cores = report_line("namecall relay (io_uring)", args.calls, &ours, cpu, wall);
    println!(
        "namecall relay (io_uring): {:.0} packets/s, {:.0} packets/s per core, added latency p50 {} µs \
         p99 {} µs, {:.1} KiB per call (RSS growth), {errors} engine errors",
        pps,
        pps / cores.max(1e-9),
        ours.p50_us - direct.p50_us,
        ours.p99_us - direct.p99_us,
        (rss1.saturating_sub(rss0)) as f64 / args.calls as f64
    );
}

fn relay(args: &Args) {
    let pcmu: Frames = Arc::new(vec![vec![0xffu8; 160]; 50]);
    let ep = |sock: usize, to: SocketAddr| Endpoint {
        sock,
        send_to: to,
        pt: PCMU_PT,
        samples: 160,
        frames: pcmu.clone(),
        stamp: true,
    };

    // direct: generator to generator, the latency floor of the generator itself
    let generator = Generator::new();
    let mut eps = Vec::new();
    for i in 0..args.calls {
        let (a, b) = generator.call(i);
        eps.push(ep(a, generator.addr(b)));
        eps.push(ep(b, generator.addr(a)));
    }
    let direct = summarize(&run_load(&generator, &eps, args.secs, args.warmup, None));
    println!(
        "{:<28} calls {:>5}  sent {:>8}  recv {:>8}  lost {:>5.2}%  p50 {:>6} µs  p99 {:>6} µs",
        "direct (no relay)",
        args.calls,
        direct.sent,
        direct.received,
        direct.lost_pct,
        direct.p50_us,
        direct.p99_us
    );

    // ours
    let sut = Sut::new();
    realtime_threads(0, "sut-");
    let generator = Generator::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let rss0 = rss_kib("self");
    let mut eps = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..args.calls {
        let (a, b) = generator.call(i);
        let ((sa, saa), (sb, sba)) = (sut_socket(), sut_socket());
        tasks.push(sut.spawn(
            i,
            our_relayed_call(
                sa,
                sb,
                generator.addr(a),
                generator.addr(b),
                stop_rx.clone(),
            ),
        ));
        eps.push(ep(a, saa));
        eps.push(ep(b, sba));
    }
    // Let every task start (buffers, socket registration) before reading RSS.
    std::thread::sleep(Duration::from_millis(500));
    let rss1 = rss_kib("self");
    let cpu0 = threads_cpu("sut");
    let t0 = Instant::now();
    let res = run_load(&generator, &eps, args.secs, args.warmup, None);
    let wall = t0.elapsed().as_secs_f64();
    let cpu = threads_cpu("sut") - cpu0;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = sut.block_on(t);
    }
    drop(sut);
    let ours = summarize(&res);
    let our_pps = ours.received as f64 / args.secs;
    let our_cores = report_line("namecall relay", args.calls, &ours, cpu, wall);
    println!(
        "namecall relay: {:.0} packets/s, {:.0} packets/s per core, added latency p50 {} µs p99 {} µs, \
         {:.1} KiB per call (RSS growth per started relay task)",
        our_pps,
        our_pps / our_cores.max(1e-9),
        ours.p50_us - direct.p50_us,
        ours.p99_us - direct.p99_us,
        (rss1.saturating_sub(rss0)) as f64 / args.calls as f64
    );
    uring_relay(args, &direct);
    if args.skip_rtpengine {
        return;
    }

    let mut rtpe = Rtpengine::start();
    realtime_threads(rtpe.pid(), "");
    let rss0 = rss_kib(&rtpe.pid().to_string());
    let generator = Generator::new();
    let mut eps = Vec::new();
    for i in 0..args.calls {
        let (a, b) = generator.call(i);
        let (to_a, to_b) =
            rtpengine_call(&mut rtpe, i, generator.addr(a), generator.addr(b), false);
        eps.push(ep(a, to_a));
        eps.push(ep(b, to_b));
    }
    let rss1 = rss_kib(&rtpe.pid().to_string());
    let cpu0 = process_cpu(rtpe.pid());
    let t0 = Instant::now();
    let res = run_load(&generator, &eps, args.secs, args.warmup, None);
    let wall = t0.elapsed().as_secs_f64();
    let cpu = process_cpu(rtpe.pid()) - cpu0;
    let theirs = summarize(&res);
    let their_pps = theirs.received as f64 / args.secs;
    let their_cores = report_line(
        "rtpengine relay (userspace)",
        args.calls,
        &theirs,
        cpu,
        wall,
    );
    println!(
        "rtpengine relay: {:.0} packets/s, {:.0} packets/s per core, added latency p50 {} µs p99 {} µs, \
         {:.1} KiB per call (RSS growth)",
        their_pps,
        their_pps / their_cores.max(1e-9),
        theirs.p50_us - direct.p50_us,
        theirs.p99_us - direct.p99_us,
        (rss1.saturating_sub(rss0)) as f64 / args.calls as f64
    );
    println!(
        "ratio: namecall packets/s per core ÷ rtpengine = {:.2}",
        (our_pps / our_cores.max(1e-9)) / (their_pps / their_cores.max(1e-9))
    );
}

fn main() {
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    let mut mode = String::from("all");
    let mut args = Args {
        calls: 0,
        secs: 20.0,
        warmup: 2.0,
        opus: OpusSettings::narrowband(),
        skip_rtpengine: false,
        inband_dtmf: false,
        plain_opus: false,
    };
    let mut relay_calls = 1000;
    let mut transcode_calls = 300;
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> f64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "transcode" | "relay" | "all" => mode = a,
            "--calls" => {
                let n = num("--calls") as usize;
                relay_calls = n;
                transcode_calls = n;
            }
            "--secs" => args.secs = num("--secs"),
            "--complexity" => args.opus.complexity = num("--complexity") as i32,
            "--opus-rate" => args.opus.sample_rate = num("--opus-rate") as u32,
            "--no-fec" => args.opus.inband_fec = false,
            "--no-rtpengine" => args.skip_rtpengine = true,
            "--inband-dtmf" => args.inband_dtmf = true,
            "--bursts" => load_gen::set_bursts(true),
            "--plain-opus" => args.plain_opus = true,
            other => eprintln!("ignoring argument {other}"),
        }
    }
    println!(
        "opus settings: {:?}; PBX side {}; {} s measured after {} s warm-up",
        args.opus,
        if args.inband_dtmf {
            "without telephone-event (in-band DTMF detection on)"
        } else {
            "with telephone-event"
        },
        args.secs,
        args.warmup
    );
    if mode == "transcode" || mode == "all" {
        args.calls = transcode_calls;
        transcode(&args);
    }
    if mode == "relay" || mode == "all" {
        args.calls = relay_calls;
        relay(&args);
    }
}
