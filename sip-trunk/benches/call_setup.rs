//! Call setups per second through our user agent, measured by SIPp, with
//! SIPp against itself as the peer in the same run.
//!
//! Run: `cargo bench -p sip-trunk --bench call_setup -- --rate 1200 --calls 24000`
//! (or `scripts/bench-sip.sh`). Needs `sipp` (Debian package sip-tester).
//!
//! 1. ours: `ua::UserAgent` (parser, transaction layer, dialogs) behind a
//!    minimal blocking shell: one std UDP socket on loopback, one thread,
//!    the same drain-then-wait loop as the gateway's tokio shell, answering
//!    every INVITE at once with 200 and an SDP answer. SIPp's stock `uac`
//!    scenario calls it: INVITE → 100 → 200 → ACK → BYE → 200, `--calls`
//!    calls at `--rate` calls/s.
//! 2. peer: the same SIPp `uac` run against SIPp's stock `uas` scenario.
//! 3. with `--gateway HOST:PORT`: the same run against a running `namecall
//!    serve` (the whole gateway: its tokio SIP shell, inbound admission, the
//!    dialplan, and the built-in `echo` answering each call with its own RTP
//!    socket); `scripts/bench-sip.sh` starts one with an `ip` trunk that admits
//!    SIPp's address.
//!
//! For each it prints the achieved call rate (successful calls over the
//! run's wall time), failed calls, INVITE/BYE retransmissions and setup time
//! percentiles from SIPp's per-call response time 1 (INVITE sent → 200 OK
//! received, which SIPp measures in whole milliseconds), then the ratios.
//! The shell is std-only on purpose: this crate stays free of tokio.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sip_trunk::dialog::Body;
use sip_trunk::message::Uri;
use sip_trunk::transaction::Transport;
use sip_trunk::ua::{UaConfig, UaEvent, UaOutput, UserAgent};

struct Args {
    rate: u32,
    calls: u32,
    limit: u32,
    /// A running gateway to measure too.
    gateway: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        rate: 1200,
        calls: 24_000,
        limit: 2000,
        gateway: None,
    };
    let v: Vec<String> = std::env::args().collect();
    for (flag, value) in v.iter().zip(v.iter().skip(1)) {
        if flag == "--gateway" {
            a.gateway = Some(value.clone());
            continue;
        }
        let Ok(n) = value.parse::<u32>() else {
            continue;
        };
        match flag.as_str() {
            "--rate" => a.rate = n,
            "--calls" => a.calls = n,
            "--limit" => a.limit = n,
            _ => {}
        }
    }
    a
}

/// What one SIPp uac run measured.
#[derive(Debug)]
struct Run {
    successful: u64,
    failed: u64,
    retransmissions: u64,
    wall: Duration,
    /// Per-call setup times in ms (SIPp's response time 1), sorted.
    setup_ms: Vec<f64>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.successful as f64 / self.wall.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        if self.setup_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((self.setup_ms.len() as f64 - 1.0) * p).round() as usize;
        self.setup_ms[i]
    }
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// The last number on the first line of SIPp's final screen that names `what`.
fn screen_stat(screen: &str, what: &str) -> u64 {
    screen
        .lines()
        .rev()
        .find(|l| l.contains(what))
        .and_then(|l| {
            l.rsplit('|')
                .map(str::trim)
                .find(|f| !f.is_empty())
                .and_then(|f| f.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn read_matching(dir: &Path, suffix: &str) -> String {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn uac(target: &str, a: &Args, dir: &Path) -> Run {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("sipp work dir");
    let start = Instant::now();
    let out = Command::new("sipp")
        .args([
            "-sn",
            "uac",
            "-s",
            "echo",
            "-r",
            &a.rate.to_string(),
            "-m",
            &a.calls.to_string(),
            "-l",
            &a.limit.to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-nostdin",
            "-trace_screen",
            "-trace_rtt",
            "-rtt_freq",
            "200",
            "-timeout",
            "300s",
            target,
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("sipp runs (Debian package sip-tester)");
    let wall = start.elapsed();
    let screen = read_matching(dir, "_screen.log");
    if screen.is_empty() {
        panic!(
            "sipp left no screen log: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rtt = read_matching(dir, "_rtt.csv");
    let mut setup_ms: Vec<f64> = rtt
        .lines()
        .filter_map(|l| {
            let mut f = l.split(';');
            let _date = f.next()?;
            let ms = f.next()?.trim().parse::<f64>().ok()?;
            (f.next()?.trim() == "1").then_some(ms)
        })
        .collect();
    setup_ms.sort_by(|x, y| x.total_cmp(y));
    Run {
        successful: screen_stat(&screen, "Successful call"),
        failed: screen_stat(&screen, "Failed call"),
        retransmissions: screen
            .lines()
            .map(str::split_whitespace)
            .filter_map(|mut w| {
                // "INVITE ---------->  <messages> <retrans> ..."
                let (name, arrow) = (w.next()?, w.next()?);
                let ours = matches!(name, "INVITE" | "BYE") && arrow.ends_with('>');
                ours.then(|| w.nth(1)?.parse::<u64>().ok()).flatten()
            })
            .sum(),
        wall,
        setup_ms,
    }
}

fn print(name: &str, r: &Run) {
    println!(
        "  {name:<34} {:>6} ok {:>4} failed {:>5} retrans  {:>7.0} calls/s  setup p50 {:>3.0} ms  p90 {:>3.0} ms  p99 {:>3.0} ms  max {:>4.0} ms  ({} samples, {:.1} s)",
        r.successful,
        r.failed,
        r.retransmissions,
        r.rate(),
        r.pct(0.50),
        r.pct(0.90),
        r.pct(0.99),
        r.setup_ms.last().copied().unwrap_or(f64::NAN),
        r.setup_ms.len(),
        r.wall.as_secs_f64(),
    );
}

/// The SDP answer the bench UAS gives every call (SIPp does not check it).
fn answer_sdp(ip: &str) -> Body {
    Body::sdp(
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        .into_bytes(),
    )
}

/// Asks for a 4 MiB receive buffer (the kernel caps it at `net.core.rmem_max`).
/// On a shared machine the thread is sometimes descheduled for tens of
/// milliseconds; the default ~200 KiB holds only ~25 ms of this load, and a
/// dropped INVITE costs a 500 ms retransmission. SIPp enlarges its buffers too.
fn grow_receive_buffer(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4 << 20;
    // SAFETY: setsockopt reads `size` for the given length; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        eprintln!("SO_RCVBUF not raised: {}", std::io::Error::last_os_error());
    }
}

/// Runs the user agent on `sock` until `stop`, answering every call at once.
fn serve(sock: UdpSocket, stop: Arc<AtomicBool>) {
    let local = sock.local_addr().expect("local addr");
    let sent_by = local.to_string();
    let contact = Uri::parse(&format!("sip:bench@{sent_by}")).expect("contact");
    let mut ua = UserAgent::new(UaConfig::new(contact, &sent_by, 7), Instant::now());
    let body = answer_sdp(&local.ip().to_string());
    let mut buf = vec![0u8; 65_535];
    while !stop.load(Ordering::Relaxed) {
        // Drain everything the last input caused, like the gateway's shell.
        let deadline = loop {
            match ua.poll_output() {
                UaOutput::Transmit(t) => {
                    if sock.send_to(&t.data, t.dest).is_err() {
                        ua.handle_transport_error(Instant::now(), &t);
                    }
                }
                UaOutput::Event(UaEvent::IncomingCall { call, .. }) => {
                    let now = Instant::now();
                    if let Some(c) = ua.call(call) {
                        let _ = c.answer(now, Some(body.clone()));
                    }
                }
                UaOutput::Event(_) => {}
                UaOutput::Timeout(at) => break at,
            }
        };
        let now = Instant::now();
        if deadline <= now {
            ua.handle_timeout(now);
            continue;
        }
        // Wake for the deadline, and at least every 50 ms to see `stop`.
        let wait = (deadline - now).clamp(Duration::from_micros(100), Duration::from_millis(50));
        let _ = sock.set_read_timeout(Some(wait));
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => ua.handle_input(Instant::now(), from, Transport::Udp, &buf[..n]),
            Err(_) => ua.handle_timeout(Instant::now()),
        }
    }
}

fn main() {
    let a = args();
    let work = std::env::temp_dir().join(format!("sip-call-setup-{}", std::process::id()));
    println!(
        "call_setup: {} calls at {} calls/s (at most {} open), SIPp stock uac scenario",
        a.calls, a.rate, a.limit
    );

    // 1. ours.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    grow_receive_buffer(&sock);
    let ours_addr: SocketAddr = sock.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || serve(sock, stop))
    };
    let ours_dir: PathBuf = work.join("ours");
    let ours = uac(&ours_addr.to_string(), &a, &ours_dir);
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();

    // 2. peer: SIPp uas on the same machine, the same uac run.
    let port = free_port();
    let peer_dir = work.join("peer");
    std::fs::create_dir_all(&peer_dir).expect("peer dir");
    let mut uas = Command::new("sipp")
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-nostdin",
            "-timeout",
            "600s",
        ])
        .current_dir(&peer_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas");
    // Wait until the uas has bound its port (a bind then fails).
    let ready = Instant::now() + Duration::from_secs(10);
    while Instant::now() < ready && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let peer = uac(&format!("127.0.0.1:{port}"), &a, &work.join("peer-uac"));
    // End only the SIPp we started.
    let _ = uas.kill();
    let _ = uas.wait();

    println!(
        "\nresults (setup = SIPp response time 1: INVITE sent -> 200 OK received, ms granularity):"
    );
    print("namecall UserAgent (answers at once)", &ours);
    print("peer: SIPp uas", &peer);
    let gateway = a.gateway.as_deref().map(|g| {
        let r = uac(g, &a, &work.join("gateway"));
        print("namecall serve (echo, RTP socket)", &r);
        r
    });
    println!(
        "  ratio namecall/SIPp-uas: call rate {:.2}x, p50 setup {:.2}x, p99 setup {:.2}x (ms values floored at 1)",
        ours.rate() / peer.rate(),
        ours.pct(0.5).max(1.0) / peer.pct(0.5).max(1.0),
        ours.pct(0.99).max(1.0) / peer.pct(0.99).max(1.0),
    );
    println!(
        "  target >= 1,000 setups/s with p99 < 10 ms and no failed call: {}",
        // SIPp paces calls at the offered rate, so offer a little more than 1,000.
        if ours.rate() >= 1000.0 && ours.pct(0.99) < 10.0 && ours.failed == 0 {
            "met"
        } else {
            "NOT met"
        }
    );
    if let Some(g) = gateway {
        println!(
            "  whole gateway: ratio to SIPp uas: call rate {:.2}x, p99 setup {:.2}x; target: {}",
            g.rate() / peer.rate(),
            g.pct(0.99).max(1.0) / peer.pct(0.99).max(1.0),
            if g.rate() >= 1000.0 && g.pct(0.99) < 10.0 && g.failed == 0 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}
