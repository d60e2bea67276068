//! An io_uring shell for the passthrough [`Relay`] (Linux): one thread and one
//! ring carry many relayed calls.
//!
//! The tokio shell pays, per relayed datagram, an epoll wake-up, a
//! `recvfrom`, the `recvfrom` that ends in `EAGAIN` (readiness is cleared
//! only by a failed read) and a `sendto`, plus a task wake-up. Here each
//! socket always has one `RECVMSG` in the ring; its completion is fed to the
//! call's sans-IO [`Relay`], whose answer becomes a `SENDMSG` from the other
//! side's socket out of the same buffer, and the socket's next `RECVMSG` is
//! queued when that send completes. All of it is submitted with one
//! `io_uring_enter` per loop turn, however many calls had traffic, so under
//! load the syscall count per datagram tends to zero and what is left is the
//! kernel's own UDP work.
//!
//! One datagram per socket is in flight at a time; what arrives meanwhile
//! waits in the socket's receive buffer, as it would for a task. Datagrams
//! longer than [`MAX_DATAGRAM`] are truncated by the kernel and dropped as
//! malformed.
//!
//! Memory the kernel writes to (buffers, `msghdr`s, addresses) lives in a
//! boxed [`Slot`] per socket and is freed only after the slot's last
//! operation has completed; a call removed while its receives are pending
//! gets them cancelled first. [`UringRelay::stop`] does the same for every
//! call before the ring is dropped.

use std::collections::HashMap;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use crate::relay::{Relay, RelayStats, Side};

/// Largest datagram relayed whole (RTP on an Ethernet path fits).
pub const MAX_DATAGRAM: usize = 1500;

/// Submission queue size; the completion queue is twice as large. Every
/// socket has at most one operation in flight, plus the tick.
const RING_ENTRIES: u32 = 4096;

/// How often the engine looks at its command queue when no datagram wakes it.
const TICK: Duration = Duration::from_millis(1);

/// How long [`UringRelay::stop`] waits for cancelled operations to complete.
const STOP_GRACE: Duration = Duration::from_secs(2);

const KIND_RECV: u64 = 0;
const KIND_SEND: u64 = 1;
const KIND_CANCEL: u64 = 2;
const TICK_DATA: u64 = u64::MAX;

/// A relayed call inside an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(u64);

/// Counters of the engine itself (the per-call ones are [`RelayStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Datagrams relayed.
    pub forwarded: u64,
    /// Receives that failed (other than by cancellation).
    pub recv_errors: u64,
    /// Sends that failed (e.g. `ECONNREFUSED` from an ICMP error).
    pub send_errors: u64,
    /// Datagrams longer than [`MAX_DATAGRAM`], dropped.
    pub truncated: u64,
}

enum Cmd {
    Add {
        id: CallId,
        a: UdpSocket,
        b: UdpSocket,
        relay: Relay,
    },
    Remove {
        id: CallId,
        reply: mpsc::Sender<Option<RelayStats>>,
    },
    Stats {
        reply: mpsc::Sender<EngineStats>,
    },
}

/// A ring for the calling thread: single issuer with deferred task work
/// (Linux 6.1+), or a plain ring on older kernels.
fn build_ring() -> io::Result<IoUring> {
    IoUring::builder()
        .setup_cqsize(RING_ENTRIES * 2)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES)
        .or_else(|_| {
            IoUring::builder()
                .setup_cqsize(RING_ENTRIES * 2)
                .build(RING_ENTRIES)
        })
}

/// An engine thread relaying calls through one io_uring.
#[derive(Debug)]
pub struct UringRelay {
    tx: Option<mpsc::Sender<Cmd>>,
    thread: Option<JoinHandle<io::Result<()>>>,
    next: AtomicU64,
}

impl UringRelay {
    /// Starts an engine on a new thread called `name`. Fails when the kernel
    /// refuses io_uring (too old, or disabled by `kernel.io_uring_disabled`
    /// or a seccomp filter); callers then fall back to the tokio shell.
    pub fn start(name: &str) -> io::Result<UringRelay> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // built on the thread that submits: the ring is single-issuer
                // and runs completion work only when that thread asks for
                // completions, instead of interrupting it for every datagram
                let ring = match build_ring() {
                    Ok(r) => {
                        let _ = ready_tx.send(Ok(()));
                        r
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return Ok(());
                    }
                };
                Engine::new(ring, rx).run()
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(UringRelay {
                tx: Some(tx),
                thread: Some(thread),
                next: AtomicU64::new(1),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(io::Error::other("relay engine thread ended at start")),
        }
    }

    /// Relays between `a` (side A) and `b` (side B) as `relay` decides. The
    /// sockets are taken over; they are closed when the call is removed.
    pub fn add(&self, a: UdpSocket, b: UdpSocket, relay: Relay) -> io::Result<CallId> {
        let id = CallId(self.next.fetch_add(1, Ordering::Relaxed));
        self.send(Cmd::Add { id, a, b, relay })?;
        Ok(id)
    }

    /// Stops relaying `id` and closes its sockets; its counters, or `None`
    /// if the engine does not know it.
    pub fn remove(&self, id: CallId) -> io::Result<Option<RelayStats>> {
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::Remove { id, reply })?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| io::Error::other("relay engine did not answer"))
    }

    /// The engine's own counters.
    pub fn stats(&self) -> io::Result<EngineStats> {
        let (reply, rx) = mpsc::channel();
        self.send(Cmd::Stats { reply })?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| io::Error::other("relay engine did not answer"))
    }

    /// Cancels every call's operations, waits for them and ends the thread.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn send(&self, cmd: Cmd) -> io::Result<()> {
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(cmd).ok())
            .ok_or_else(|| io::Error::other("relay engine has stopped"))
    }

    fn shutdown(&mut self) -> io::Result<()> {
        // a closed channel is the stop signal
        drop(self.tx.take());
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("relay engine panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for UringRelay {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// One socket of one call, with everything the kernel reads or writes for
/// its operations. Boxed: the `msghdr`s point into the slot itself.
struct Slot {
    sock: UdpSocket,
    call: CallId,
    side: Side,
    buf: [u8; MAX_DATAGRAM],
    src: libc::sockaddr_storage,
    recv_iov: libc::iovec,
    recv_msg: libc::msghdr,
    dst: libc::sockaddr_storage,
    send_iov: libc::iovec,
    send_msg: libc::msghdr,
    /// The peer this socket is `connect`ed to: once a side is latched its
    /// socket is connected, so the kernel routes sends from a cached route
    /// and delivers only that peer's datagrams to it.
    connected: Option<SocketAddr>,
    /// An operation of this slot is in the ring.
    busy: bool,
    /// The call is gone: free the slot when its operation completes.
    closing: bool,
}

impl Slot {
    fn new(sock: UdpSocket, call: CallId, side: Side) -> Box<Slot> {
        // SAFETY: all-zero is a valid value of these plain C structs.
        let (src, recv_msg, dst, send_msg) = unsafe { (zeroed(), zeroed(), zeroed(), zeroed()) };
        let mut s = Box::new(Slot {
            sock,
            call,
            side,
            buf: [0; MAX_DATAGRAM],
            src,
            recv_iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            recv_msg,
            dst,
            send_iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            send_msg,
            connected: None,
            busy: false,
            closing: false,
        });
        // self-references, valid for as long as the box lives
        s.recv_iov.iov_base = s.buf.as_mut_ptr().cast();
        s.send_iov.iov_base = s.buf.as_mut_ptr().cast();
        s.recv_msg.msg_iov = &mut s.recv_iov;
        s.recv_msg.msg_iovlen = 1;
        s.recv_msg.msg_name = (&mut s.src as *mut libc::sockaddr_storage).cast();
        s.send_msg.msg_iov = &mut s.send_iov;
        s.send_msg.msg_iovlen = 1;
        s
    }

    fn recv_entry(&mut self, slot: usize) -> squeue::Entry {
        self.recv_iov.iov_len = MAX_DATAGRAM;
        self.recv_msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        self.recv_msg.msg_flags = 0;
        opcode::RecvMsg::new(types::Fd(self.sock.as_raw_fd()), &mut self.recv_msg)
            .build()
            .user_data(user_data(slot, KIND_RECV))
    }
}

struct CallState {
    relay: Relay,
    slots: [usize; 2],
}

struct Engine {
    ring: IoUring,
    rx: mpsc::Receiver<Cmd>,
    slots: Vec<Option<Box<Slot>>>,
    free: Vec<usize>,
    calls: HashMap<CallId, CallState>,
    stats: EngineStats,
    tick: types::Timespec,
    /// Operations in the ring (the tick included).
    inflight: usize,
}

fn user_data(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << 2) | kind
}

impl Engine {
    fn new(ring: IoUring, rx: mpsc::Receiver<Cmd>) -> Engine {
        Engine {
            ring,
            rx,
            slots: Vec::new(),
            free: Vec::new(),
            calls: HashMap::new(),
            stats: EngineStats::default(),
            tick: types::Timespec::from(TICK),
            inflight: 0,
        }
    }

    fn run(mut self) -> io::Result<()> {
        self.arm_tick()?;
        let mut done: Vec<(u64, i32)> = Vec::with_capacity(1024);
        let mut stopping: Option<Instant> = None;
        loop {
            if stopping.is_none() && self.commands()? {
                stopping = Some(Instant::now());
                let ids: Vec<CallId> = self.calls.keys().copied().collect();
                for id in ids {
                    self.remove(id)?;
                }
            }
            if let Some(t) = stopping {
                // only the tick left
                if self.inflight <= 1 {
                    break;
                }
                if t.elapsed() > STOP_GRACE {
                    // the kernel still owns some buffers: never free them
                    for s in self.slots.drain(..).flatten() {
                        if s.busy {
                            std::mem::forget(s);
                        }
                    }
                    break;
                }
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            done.clear();
            done.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            for &(data, res) in &done {
                self.complete(data, res)?;
            }
        }
        Ok(())
    }

    /// Applies queued commands; true when the handle is gone (stop).
    fn commands(&mut self) -> io::Result<bool> {
        loop {
            match self.rx.try_recv() {
                Ok(Cmd::Add { id, a, b, relay }) => self.add(id, a, b, relay)?,
                Ok(Cmd::Remove { id, reply }) => {
                    let stats = self.remove(id)?;
                    let _ = reply.send(stats);
                }
                Ok(Cmd::Stats { reply }) => {
                    let _ = reply.send(self.stats);
                }
                Err(mpsc::TryRecvError::Empty) => return Ok(false),
                Err(mpsc::TryRecvError::Disconnected) => return Ok(true),
            }
        }
    }

    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry points into a boxed slot (or at `self.tick`)
            // that stays allocated until the entry's completion is reaped.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.inflight += 1;
                return Ok(());
            }
            // queue full: hand what is queued to the kernel and retry
            self.ring.submit()?;
        }
    }

    fn arm_tick(&mut self) -> io::Result<()> {
        let e = opcode::Timeout::new(&self.tick)
            .build()
            .user_data(TICK_DATA);
        self.push(&e)
    }

    fn add(&mut self, id: CallId, a: UdpSocket, b: UdpSocket, relay: Relay) -> io::Result<()> {
        let mut slots = [0; 2];
        for (k, (sock, side)) in [(a, Side::A), (b, Side::B)].into_iter().enumerate() {
            let slot = Slot::new(sock, id, side);
            let i = match self.free.pop() {
                Some(i) => {
                    self.slots[i] = Some(slot);
                    i
                }
                None => {
                    self.slots.push(Some(slot));
                    self.slots.len() - 1
                }
            };
            slots[k] = i;
        }
        self.calls.insert(id, CallState { relay, slots });
        for i in slots {
            self.arm_recv(i)?;
        }
        Ok(())
    }

    fn arm_recv(&mut self, i: usize) -> io::Result<()> {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return Ok(());
        };
        let e = slot.recv_entry(i);
        slot.busy = true;
        self.push(&e)
    }

    fn remove(&mut self, id: CallId) -> io::Result<Option<RelayStats>> {
        let Some(call) = self.calls.remove(&id) else {
            return Ok(None);
        };
        for i in call.slots {
            let busy = match self.slots.get_mut(i).and_then(Option::as_mut) {
                Some(s) => {
                    s.closing = true;
                    s.busy
                }
                None => false,
            };
            if busy {
                // its pending receive (a send only lasts a moment) is
                // cancelled; the slot is freed when that completes
                let e = opcode::AsyncCancel::new(user_data(i, KIND_RECV))
                    .build()
                    .user_data(user_data(i, KIND_CANCEL));
                self.push(&e)?;
            } else {
                self.free_slot(i);
            }
        }
        Ok(Some(call.relay.stats()))
    }

    fn free_slot(&mut self, i: usize) {
        if self.slots.get_mut(i).and_then(Option::take).is_some() {
            self.free.push(i);
        }
    }

    fn complete(&mut self, data: u64, res: i32) -> io::Result<()> {
        self.inflight = self.inflight.saturating_sub(1);
        if data == TICK_DATA {
            return self.arm_tick();
        }
        let i = (data >> 2) as usize;
        match data & 3 {
            KIND_CANCEL => Ok(()),
            KIND_RECV => self.received(i, res),
            _ => {
                if res < 0 {
                    self.stats.send_errors += 1;
                } else {
                    self.stats.forwarded += 1;
                }
                self.rearm_or_free(i)
            }
        }
    }

    fn rearm_or_free(&mut self, i: usize) -> io::Result<()> {
        let closing = match self.slots.get_mut(i).and_then(Option::as_mut) {
            Some(s) => {
                s.busy = false;
                s.closing
            }
            None => return Ok(()),
        };
        if closing {
            self.free_slot(i);
            Ok(())
        } else {
            self.arm_recv(i)
        }
    }

    fn received(&mut self, i: usize, res: i32) -> io::Result<()> {
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return Ok(());
        };
        if slot.closing || res < 0 {
            if res < 0 && res != -libc::ECANCELED && !slot.closing {
                self.stats.recv_errors += 1;
            }
            return self.rearm_or_free(i);
        }
        if slot.recv_msg.msg_flags & libc::MSG_TRUNC != 0 {
            self.stats.truncated += 1;
            return self.rearm_or_free(i);
        }
        let n = (res as usize).min(MAX_DATAGRAM);
        let from = from_sockaddr(&slot.src, slot.recv_msg.msg_namelen);
        let (call_id, side) = (slot.call, slot.side);
        let dest = match (from, self.calls.get_mut(&call_id)) {
            (Some(from), Some(call)) => {
                call.relay
                    .handle_input(side, from, &slot.buf[..n])
                    .map(|d| {
                        let other = side.other();
                        (d, call.slots[other as usize], call.relay.latched(other))
                    })
            }
            _ => None,
        };
        let Some((dest, other, latched)) = dest else {
            return self.rearm_or_free(i);
        };
        let Some(out) = self.slots.get_mut(other).and_then(Option::as_mut) else {
            return self.rearm_or_free(i);
        };
        if latched && out.connected != Some(dest) && out.sock.connect(dest).is_ok() {
            out.connected = Some(dest);
        }
        let (out_fd, connected) = (out.sock.as_raw_fd(), out.connected == Some(dest));
        let Some(slot) = self.slots.get_mut(i).and_then(Option::as_mut) else {
            return Ok(());
        };
        // a connected socket sends without an address (a name with length 0
        // would be EINVAL)
        if connected {
            slot.send_msg.msg_name = std::ptr::null_mut();
            slot.send_msg.msg_namelen = 0;
        } else {
            slot.send_msg.msg_name = (&mut slot.dst as *mut libc::sockaddr_storage).cast();
            slot.send_msg.msg_namelen = to_sockaddr(dest, &mut slot.dst);
        }
        slot.send_iov.iov_len = n;
        let e = opcode::SendMsg::new(types::Fd(out_fd), &slot.send_msg)
            .build()
            .user_data(user_data(i, KIND_SEND));
        self.push(&e)
    }
}

fn to_sockaddr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: sockaddr_storage is large and aligned enough for both kinds.
    unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let sin = &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

fn from_sockaddr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match s.ss_family as libc::c_int {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the kernel wrote a sockaddr_in of that family.
            let sin = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the kernel wrote a sockaddr_in6 of that family.
            let sin6 =
                unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTP: [u8; 12] = [0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];

    fn sock() -> (UdpSocket, SocketAddr) {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let a = s.local_addr().expect("addr");
        (s, a)
    }

    fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut b = [0u8; 2048];
        s.recv_from(&mut b).ok().map(|(n, f)| (b[..n].to_vec(), f))
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in ["192.0.2.7:5004", "[2001:db8::1]:40000"] {
            let a: SocketAddr = a.parse().expect("addr");
            // SAFETY: zeroed sockaddr_storage is valid.
            let mut s = unsafe { zeroed() };
            let len = to_sockaddr(a, &mut s);
            assert_eq!(from_sockaddr(&s, len), Some(a));
        }
    }

    #[test]
    fn relays_both_ways_latches_and_removes() {
        let engine = match UringRelay::start("relay-test") {
            Ok(e) => e,
            Err(e) => panic!("io_uring unavailable on this kernel: {e}"),
        };
        let (phone, phone_addr) = sock();
        let (pbx, pbx_addr) = sock();
        let (ra, ra_addr) = sock();
        let (rb, rb_addr) = sock();
        let id = engine
            .add(ra, rb, Relay::new(Some(phone_addr), Some(pbx_addr), true))
            .expect("add");
        for k in 0..20u8 {
            let mut p = RTP;
            p[3] = k;
            phone.send_to(&p, ra_addr).expect("send a");
            let (got, from) = recv(&pbx).expect("relayed to B");
            assert_eq!((got.as_slice(), from), (&p[..], rb_addr));
            pbx.send_to(&p, rb_addr).expect("send b");
            let (got, from) = recv(&phone).expect("relayed to A");
            assert_eq!((got.as_slice(), from), (&p[..], ra_addr));
        }
        // garbage and strangers are dropped, and relaying goes on; a
        // stranger's datagram never reaches the relay at all once side A's
        // socket is connected to the latched phone
        phone.send_to(b"not rtp", ra_addr).expect("send");
        let (stranger, _) = sock();
        let mut alien = RTP;
        alien[3] = 0xee;
        stranger.send_to(&alien, ra_addr).expect("send");
        phone.send_to(&RTP, ra_addr).expect("send");
        assert_eq!(recv(&pbx).map(|(d, _)| d), Some(RTP.to_vec()));
        // oversized datagrams are dropped, not cut
        phone.send_to(&[0x80; 4000], ra_addr).expect("send");
        phone.send_to(&RTP, ra_addr).expect("send");
        assert_eq!(recv(&pbx).map(|(d, _)| d.len()), Some(RTP.len()));

        let stats = engine.remove(id).expect("engine answers").expect("known");
        assert_eq!(stats.forwarded, [22, 20]);
        assert_eq!(stats.malformed, 1);
        assert_eq!(
            stats.unexpected_source, 0,
            "the kernel filtered the stranger"
        );
        assert_eq!(engine.stats().expect("stats").truncated, 1);
        assert_eq!(engine.stats().expect("stats").recv_errors, 0);
        // removed: the relay's sockets are closed
        phone.send_to(&RTP, ra_addr).expect("send");
        pbx.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        assert!(recv(&pbx).is_none());
        assert_eq!(engine.remove(id).expect("engine answers"), None);
        engine.stop().expect("stops");
    }

    #[test]
    fn many_calls_and_stop_with_pending_receives() {
        let engine = UringRelay::start("relay-test").expect("io_uring");
        let mut ends = Vec::new();
        for _ in 0..200 {
            let (a, a_addr) = sock();
            let (b, b_addr) = sock();
            let (ra, ra_addr) = sock();
            let (rb, _) = sock();
            engine
                .add(ra, rb, Relay::new(Some(a_addr), Some(b_addr), true))
                .expect("add");
            ends.push((a, b, ra_addr));
        }
        for (a, _, ra) in &ends {
            a.send_to(&RTP, ra).expect("send");
        }
        for (_, b, _) in &ends {
            assert_eq!(recv(b).map(|(d, _)| d), Some(RTP.to_vec()));
        }
        // the last send completions may still be on their way to the engine
        let deadline = Instant::now() + Duration::from_secs(2);
        while engine.stats().expect("stats").forwarded < 200 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(engine.stats().expect("stats").forwarded, 200);
        // every socket has a receive pending: stop cancels them all
        engine.stop().expect("stops");
        for (a, b, ra) in &ends[..3] {
            a.send_to(&RTP, ra).expect("send");
            b.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            assert!(recv(b).is_none());
        }
    }
}
