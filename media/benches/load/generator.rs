//! The load generator of `load.rs`: plays the browser and the PBX of every call.
//!
//! It must cost little and add no delay of its own, or it measures itself: the first
//! version (a tokio runtime, two sockets and a task per call, one syscall per packet)
//! used a whole core at 1,000 relayed calls and its own scheduling put 80 ms into the
//! "direct" latency floor. Now every call's ends share a few sockets per side; one
//! thread sends with `sendmmsg` in small batches (a packet is stamped just before the
//! batch it goes out in, so a stamp is at most `SEND_BATCH` sends early), and one
//! thread sweeps the sockets with `recvmmsg` every 0.5 ms, reading the kernel's receive
//! timestamp of every datagram (`SO_TIMESTAMPNS`), so when it runs does not matter and
//! no datagram has to wake it.
//!
//! The systems under test still see one address pair per call on their side (each
//! call has its own ports there); only the generator's side is shared, as behind an
//! SBC. Who a datagram is for is told by its source (the SUT's per-call socket is
//! symmetric) or, in stamped (relay) mode, by an endpoint index in the payload.

use std::collections::HashMap;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Generator sockets per side (browser side, PBX side).
const GEN_SOCKETS: usize = 4;
/// Packets per `sendmmsg`.
const SEND_BATCH: usize = 8;
/// Datagrams per `recvmmsg`.
const RECV_BATCH: usize = 64;

/// The generator's sockets: `GEN_SOCKETS` facing the browser side, then as many for
/// the PBX side.
pub struct Generator {
    socks: Vec<StdUdpSocket>,
}

impl Generator {
    /// Binds fresh sockets (one generator per run, so nothing of a previous run
    /// arrives in the next).
    pub fn new() -> Generator {
        let socks = (0..2 * GEN_SOCKETS)
            .map(|_| {
                let s = StdUdpSocket::bind("127.0.0.1:0").expect("bind loopback");
                setsockopt(&s, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
                setsockopt(&s, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
                setsockopt(&s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
                s
            })
            .collect();
        Generator { socks }
    }

    /// The generator sockets (browser side, PBX side) that play call `i`.
    pub fn call(&self, i: usize) -> (usize, usize) {
        (i % GEN_SOCKETS, GEN_SOCKETS + i % GEN_SOCKETS)
    }

    /// The local address of generator socket `s`.
    pub fn addr(&self, s: usize) -> SocketAddr {
        self.socks[s].local_addr().expect("local addr")
    }
}

pub fn setsockopt(s: &StdUdpSocket, level: i32, opt: i32, v: i32) {
    // SAFETY: a valid fd and a pointer to an i32 of the given length.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            opt,
            (&v as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt {opt}: {}", io::Error::last_os_error());
}

/// One endpoint of one call: sends one stream, receives the other.
pub struct Endpoint {
    /// Index of the generator socket it sends from and receives on.
    pub sock: usize,
    /// Where it sends (the system under test's port for this call end).
    pub send_to: SocketAddr,
    pub pt: u8,
    /// RTP timestamp increment per frame.
    pub samples: u32,
    pub frames: super::Frames,
    /// Put the send time (ns, realtime clock) in payload bytes 0..8 and the receiving
    /// endpoint's index in 8..12 (relay only: the payload must come back unchanged).
    pub stamp: bool,
}

/// What one endpoint received in the measured window.
#[derive(Default)]
pub struct Received {
    pub packets: u64,
    /// Arrival minus RTP-timestamp schedule, µs (transcode), or one-way latency (relay).
    pub offsets_us: Vec<i64>,
}

pub struct LoadResult {
    pub sent: u64,
    pub received: Vec<Received>,
    pub stamped: bool,
}

/// Lowers the calling thread to the least scheduling weight (nice 19). The generator
/// stands in for endpoints on other machines: when it competes with the system under
/// test for the 2 cores, the system under test must win, or the generator's time
/// slices show up as the system's latency. Its own delays do not distort the figures:
/// a packet is stamped right before it is sent and timed by the kernel on arrival.
pub fn background() {
    // With `BENCH_RT=<prio>` the systems under test run SCHED_FIFO at <prio>; the
    // generator then runs SCHED_FIFO just below them: they preempt it, but nothing
    // else on the machine (other sessions' builds) starves it of its ~0.6 cores.
    let rt = std::env::var("BENCH_RT")
        .ok()
        .and_then(|v| v.parse::<i32>().ok());
    // SAFETY: plain syscalls on the calling thread.
    unsafe {
        if let Some(prio) = rt {
            let param = libc::sched_param {
                sched_priority: (prio - 1).max(1),
            };
            if libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 {
                return;
            }
        }
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// CPU seconds the calling thread has used.
fn thread_cpu() -> f64 {
    // SAFETY: clock_gettime writes the timespec it is given.
    let mut ts: libc::timespec = unsafe { zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

pub fn realtime_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn rtp_header(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0x80, pt]);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Drives `eps` for `secs` after `warmup`: every endpoint sends a 20 ms frame every
/// 20 ms (at its own phase, see `schedule`), and what arrives is recorded. `marks` gets
/// 1 when measuring starts and 2 at its end.
pub fn run_load(
    generator: &Generator,
    eps: &[Endpoint],
    secs: f64,
    warmup: f64,
    marks: Option<watch::Sender<u8>>,
) -> LoadResult {
    let wall0 = Instant::now();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(secs);
    let measure_from_rt = realtime_ns() + (warmup * 1e9) as i64;
    let stamped = eps.first().is_some_and(|e| e.stamp);
    let by_source: HashMap<SocketAddr, usize> = if stamped {
        HashMap::new()
    } else {
        eps.iter()
            .enumerate()
            .map(|(i, e)| (e.send_to, i))
            .collect()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, received) = std::thread::scope(|s| {
        let receiver = std::thread::Builder::new()
            .name("gen-recv".into())
            .spawn_scoped(s, || {
                background();
                let r = receive(
                    &generator.socks,
                    &by_source,
                    eps,
                    stamped,
                    measure_from_rt,
                    &stop,
                );
                (r, thread_cpu())
            })
            .expect("spawn receiver");
        let sender = std::thread::Builder::new()
            .name("gen-send".into())
            .spawn_scoped(s, || {
                background();
                (send(generator, eps, measure_from, end, marks), thread_cpu())
            })
            .expect("spawn sender");
        let (sent, send_cpu) = sender.join().expect("sender");
        // Let the last frames drain through jitter buffers.
        std::thread::sleep(Duration::from_millis(400));
        stop.store(true, Ordering::Relaxed);
        let (received, recv_cpu) = receiver.join().expect("receiver");
        let wall = wall0.elapsed().as_secs_f64();
        println!(
            "  generator: {:.2} cores (sending {:.2}, receiving {:.2})",
            (send_cpu + recv_cpu) / wall,
            send_cpu / wall,
            recv_cpu / wall
        );
        (sent, received)
    });
    LoadResult {
        sent,
        received,
        stamped,
    }
}

/// How the sender spreads the endpoints' frames over the 20 ms period.
static BURSTS: AtomicBool = AtomicBool::new(false);

/// `true`: the old pacing, every endpoint of a call in the same 1 ms slot and all
/// of a slot's packets in one burst (100 datagrams at once at 1,000 calls). `false`
/// (default): every endpoint gets its own random phase in the 20 ms period and the
/// sender sends what is due every `TICK_US`, as independent phones would.
pub fn set_bursts(on: bool) {
    BURSTS.store(on, Ordering::Relaxed);
}

/// The sender's tick in spread pacing.
const TICK_US: u64 = 100;

/// Which tick of the 20 ms period each endpoint sends in: `ticks` buckets of endpoint
/// indices. Bursts: both ends of call `c` in slot `c % 20` of 1 ms. Spread: a seeded
/// uniform random phase per endpoint, so a run is repeatable.
fn schedule(n: usize) -> (Vec<Vec<usize>>, Duration) {
    if BURSTS.load(Ordering::Relaxed) {
        let mut slots = vec![Vec::new(); 20];
        for i in 0..n {
            slots[(i / 2) % 20].push(i);
        }
        return (slots, Duration::from_millis(1));
    }
    let ticks = (20_000 / TICK_US) as usize;
    let mut slots = vec![Vec::new(); ticks];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..n {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        slots[(r as usize) % ticks].push(i);
    }
    (slots, Duration::from_micros(TICK_US))
}

/// The sender thread; returns the number of packets sent in the measured window.
fn send(
    generator: &Generator,
    eps: &[Endpoint],
    measure_from: Instant,
    end: Instant,
    marks: Option<watch::Sender<u8>>,
) -> u64 {
    let n = eps.len();
    let (slots, tick) = schedule(n);
    // Sleep to the tick, not to the timer slack's 50 µs later.
    // SAFETY: prctl with an integer argument on the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong) };
    let mut seq = vec![0u16; n];
    let mut queues: Vec<Vec<(usize, Vec<u8>)>> = (0..generator.socks.len())
        .map(|_| Vec::with_capacity(n / generator.socks.len() + SEND_BATCH))
        .collect();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut sent = 0u64;
    let mut marked = false;
    let mut t = 0u64;
    let start = Instant::now();
    loop {
        let due = start + tick * t as u32;
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        if !marked && now >= measure_from {
            marked = true;
            if let Some(m) = &marks {
                let _ = m.send(1);
            }
        }
        let (slot, frame_no) = ((t as usize) % slots.len(), (t as usize) / slots.len());
        for &i in &slots[slot] {
            let ep = &eps[i];
            let payload = &ep.frames[frame_no % ep.frames.len()];
            let ts = (frame_no as u32).wrapping_mul(ep.samples);
            let mut pkt = spare.pop().unwrap_or_default();
            rtp_header(ep.pt, seq[i], ts, 0x1000 + i as u32, payload, &mut pkt);
            if ep.stamp && pkt.len() >= 24 {
                pkt[20..24].copy_from_slice(&((i ^ 1) as u32).to_be_bytes());
            }
            seq[i] = seq[i].wrapping_add(1);
            queues[ep.sock].push((i, pkt));
        }
        let counting = Instant::now() >= measure_from;
        for (k, q) in queues.iter_mut().enumerate() {
            for chunk in q.chunks_mut(SEND_BATCH) {
                let done = send_batch(&generator.socks[k], eps, chunk);
                if counting {
                    sent += done as u64;
                }
            }
            spare.extend(q.drain(..).map(|(_, p)| p));
        }
        t += 1;
    }
    if let Some(m) = &marks {
        let _ = m.send(2);
    }
    sent
}

/// One `sendmmsg` header per datagram: `addrs[k]` and `iovs[k]`, which must outlive
/// the headers' use.
pub fn mmsg_headers(
    addrs: &mut [libc::sockaddr_in],
    iovs: &mut [libc::iovec],
) -> Vec<libc::mmsghdr> {
    addrs
        .iter_mut()
        .zip(iovs.iter_mut())
        .map(|(addr, iov)| {
            // SAFETY: mmsghdr is plain old data; the pointers set below outlive the call.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect()
}

pub fn sockaddr(a: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = a else {
        panic!("the bench runs on IPv4 loopback");
    };
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = v4.port().to_be();
    sa.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
    sa
}

/// Sends one batch with `sendmmsg`, stamping the packets first; returns how many left.
fn send_batch(sock: &StdUdpSocket, eps: &[Endpoint], batch: &mut [(usize, Vec<u8>)]) -> usize {
    let stamp = realtime_ns();
    let mut addrs: Vec<libc::sockaddr_in> = Vec::with_capacity(batch.len());
    let mut iovs: Vec<libc::iovec> = Vec::with_capacity(batch.len());
    for (i, pkt) in batch.iter_mut() {
        let ep = &eps[*i];
        if ep.stamp && pkt.len() >= 20 {
            pkt[12..20].copy_from_slice(&stamp.to_be_bytes());
        }
        addrs.push(sockaddr(ep.send_to));
        iovs.push(libc::iovec {
            iov_base: pkt.as_mut_ptr().cast(),
            iov_len: pkt.len(),
        });
    }
    let mut hdrs = mmsg_headers(&mut addrs, &mut iovs);
    let (mut done, mut failed) = (0usize, 0usize);
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
        if r <= 0 {
            // A refused datagram (ICMP from a port already closed) fails one send;
            // skip it and go on with the rest.
            done += 1;
            failed += 1;
            continue;
        }
        done += r as usize;
    }
    hdrs.len() - failed
}

/// The receiver thread: per endpoint, the packets and offsets of the measured window.
fn receive(
    socks: &[StdUdpSocket],
    by_source: &HashMap<SocketAddr, usize>,
    eps: &[Endpoint],
    stamped: bool,
    measure_from_rt: i64,
    stop: &AtomicBool,
) -> Vec<Received> {
    let mut out: Vec<Received> = (0..eps.len()).map(|_| Received::default()).collect();
    // Per endpoint: arrival (ns) and RTP timestamp of the first packet, the schedule's base.
    let mut first: Vec<Option<(i64, u32)>> = vec![None; eps.len()];
    let fds: Vec<i32> = socks.iter().map(|s| s.as_raw_fd()).collect();
    let mut bufs = vec![[0u8; 2048]; RECV_BATCH];
    // SAFETY: plain old data, zero is valid.
    let mut names: Vec<libc::sockaddr_in> = vec![unsafe { zeroed() }; RECV_BATCH];
    let mut ctrl = vec![[0u64; 16]; RECV_BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: as above.
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; RECV_BATCH];
    while !stop.load(Ordering::Relaxed) {
        // Sweep every socket, then nap: a thread blocked in poll() would be woken by each
        // datagram, and that wake-up is paid by the sender (the system under test).
        // Arrival times come from the kernel, so the nap does not blur them.
        std::thread::sleep(Duration::from_micros(500));
        for fd in &fds {
            loop {
                for m in 0..RECV_BATCH {
                    let h = &mut hdrs[m].msg_hdr;
                    h.msg_name = (&mut names[m] as *mut libc::sockaddr_in).cast();
                    h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                    h.msg_iov = &mut iovs[m];
                    h.msg_iovlen = 1;
                    h.msg_control = ctrl[m].as_mut_ptr().cast();
                    h.msg_controllen = size_of::<[u64; 16]>();
                    h.msg_flags = 0;
                }
                // SAFETY: every header points at live buffers of the stated sizes.
                let got = unsafe {
                    libc::recvmmsg(
                        *fd,
                        hdrs.as_mut_ptr(),
                        RECV_BATCH as u32,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if got <= 0 {
                    break;
                }
                for m in 0..got as usize {
                    let n = hdrs[m].msg_len as usize;
                    let at = kernel_timestamp(&hdrs[m].msg_hdr).unwrap_or_else(realtime_ns);
                    let b = &bufs[m][..n.min(2048)];
                    // RTCP (PT 200..=204 with the marker bit folded in) is not media.
                    if n < 12 || (200..=204).contains(&b[1]) || at < measure_from_rt {
                        continue;
                    }
                    let idx = if stamped {
                        if n < 24 {
                            continue;
                        }
                        u32::from_be_bytes([b[20], b[21], b[22], b[23]]) as usize
                    } else {
                        let sa = &names[m];
                        let src = SocketAddr::V4(SocketAddrV4::new(
                            Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
                            u16::from_be(sa.sin_port),
                        ));
                        match by_source.get(&src) {
                            Some(&i) => i,
                            None => continue,
                        }
                    };
                    let Some(r) = out.get_mut(idx) else { continue };
                    r.packets += 1;
                    if stamped {
                        let sent = i64::from_be_bytes(b[12..20].try_into().unwrap_or([0; 8]));
                        r.offsets_us.push((at - sent) / 1000);
                    } else {
                        let clock: i64 = if b[1] & 0x7f == super::PCMU_PT {
                            8000
                        } else {
                            48000
                        };
                        let ts = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                        let (t0, ts0) = *first[idx].get_or_insert((at, ts));
                        let sched = i64::from(ts.wrapping_sub(ts0)) * 1_000_000 / clock;
                        r.offsets_us.push((at - t0) / 1000 - sched);
                    }
                }
                if (got as usize) < RECV_BATCH {
                    break;
                }
            }
        }
    }
    out
}

/// The `SCM_TIMESTAMPNS` of a received datagram, ns on the realtime clock.
pub fn kernel_timestamp(h: &libc::msghdr) -> Option<i64> {
    // SAFETY: `h` was filled by recvmmsg; the CMSG macros walk its control buffer.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}
