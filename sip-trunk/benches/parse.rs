//! Parse throughput for a typical INVITE with an SDP offer (the message a
//! PBX trunk sees most), plus the typed accessors the transaction layer reads
//! for every request. Target: at least 500k messages per second per core.
//!
//! Run: `cargo bench -p sip-trunk --bench parse`
//!
//! The peer is `rsip` 0.4 (the SIP parser the issue named) on the same bytes:
//! `rsip/...` groups time it like ours, and a final report measures both
//! interleaved on this thread's CPU clock and prints messages/s and the ratio.
//! rsip keeps header values untyped until asked, while our parse checks Via,
//! From, To, CSeq, Call-ID, Max-Forwards and Contact; the `key_headers` rows
//! read the top Via branch and CSeq number from both, the fairer comparison.
//!
//! Two groups: `parse` measures wall time (criterion's default); `parse_cpu`
//! measures this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which is the
//! per-core figure on a machine shared with other work.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group};
use std::hint::black_box;

/// Nanoseconds of CPU time spent by the calling thread.
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, like WallTime's, so its formatter fits.
        WALL.formatter()
    }
}

use rsip::prelude::{HeadersExt, ToTypedHeader};
use sip_trunk::message::{SipMessage, parse_message};

const INVITE: &str = "INVITE sip:+4930123456@pbx.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice Example\" <sip:alice@gateway.example.net>;tag=1928301774\r\n\
To: <sip:+4930123456@pbx.example.com;user=phone>\r\n\
Call-ID: a84b4c76e66710@gateway.example.net\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, MESSAGE\r\n\
Supported: replaces, timer, 100rel\r\n\
User-Agent: namecall/0.1\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 330\r\n\
\r\n\
v=0\r\n\
o=namecall 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 9 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=maxptime:150\r\n\
a=x-namecall:bench-padding-line-000\r\n";

fn ours_key_headers(data: &[u8]) -> (Option<String>, u32) {
    let Ok(SipMessage::Request(r)) = parse_message(black_box(data)) else {
        unreachable!("fixture checked before timing")
    };
    let branch = r.headers.via().ok().and_then(|v| v.branch);
    let seq = r.headers.cseq().map_or(0, |c| c.seq);
    (branch, seq)
}

fn rsip_key_headers(data: &[u8]) -> (Option<String>, u32) {
    let Ok(r) = rsip::Request::try_from(black_box(data)) else {
        unreachable!("fixture checked before timing")
    };
    let branch = r
        .via_header()
        .ok()
        .and_then(|v| v.typed().ok())
        .and_then(|v| v.branch().map(|b| b.to_string()));
    let seq = r.cseq_header().ok().and_then(|c| c.seq().ok()).unwrap_or(0);
    (branch, seq)
}

fn check_fixture(data: &[u8]) {
    // Keep the fixture honest: it must parse in both and its body must match Content-Length.
    match parse_message(data) {
        Ok(SipMessage::Request(r)) => assert_eq!(r.body.len(), 330),
        other => panic!("bench fixture does not parse: {other:?}"),
    }
    let r = rsip::Request::try_from(data).expect("rsip parses the fixture");
    assert_eq!(r.body.len(), 330);
    assert_eq!(ours_key_headers(data), rsip_key_headers(data));
    assert_eq!(ours_key_headers(data).1, 314159);
}

fn bench_parse(c: &mut Criterion) {
    let data = INVITE.as_bytes();
    check_fixture(data);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("invite_with_sdp", |b| {
        b.iter(|| parse_message(black_box(data)))
    });
    g.bench_function("invite_with_sdp_and_key_headers", |b| {
        b.iter(|| ours_key_headers(data))
    });
    g.bench_function("rsip/invite_with_sdp", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(data)))
    });
    g.bench_function("rsip/invite_with_sdp_and_key_headers", |b| {
        b.iter(|| rsip_key_headers(data))
    });
    g.finish();
}

fn bench_parse_cpu(c: &mut Criterion<ThreadCpuTime>) {
    let data = INVITE.as_bytes();
    let mut g = c.benchmark_group("parse_cpu");
    g.throughput(Throughput::Elements(1));
    g.bench_function("invite_with_sdp", |b| {
        b.iter(|| parse_message(black_box(data)))
    });
    g.bench_function("rsip/invite_with_sdp", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(data)))
    });
    g.finish();
}

/// CPU nanoseconds per call of `f`: the best of several interleaved rounds,
/// so a burst of load from other processes affects both parsers alike.
fn cpu_ns_per_call(f: &mut dyn FnMut(), iters: u32) -> f64 {
    let t0 = thread_cpu_ns();
    for _ in 0..iters {
        f();
    }
    (thread_cpu_ns() - t0) as f64 / f64::from(iters)
}

fn report_ratio() {
    let data = INVITE.as_bytes();
    let iters = 20_000;
    type Case = (&'static str, Box<dyn FnMut()>, Box<dyn FnMut()>);
    let cases: Vec<Case> = vec![
        (
            "parse",
            Box::new(move || {
                black_box(parse_message(black_box(data)).is_ok());
            }),
            Box::new(move || {
                black_box(rsip::SipMessage::try_from(black_box(data)).is_ok());
            }),
        ),
        (
            "parse + Via branch + CSeq",
            Box::new(move || {
                black_box(ours_key_headers(data));
            }),
            Box::new(move || {
                black_box(rsip_key_headers(data));
            }),
        ),
    ];
    println!("\nratio report (thread CPU time, best of 15 interleaved rounds of {iters}):");
    for (name, mut ours, mut peer) in cases {
        let (mut best_ours, mut best_peer) = (f64::MAX, f64::MAX);
        for _ in 0..15 {
            best_ours = best_ours.min(cpu_ns_per_call(&mut *ours, iters));
            best_peer = best_peer.min(cpu_ns_per_call(&mut *peer, iters));
        }
        println!(
            "  {name:<28} sip-trunk {:>6.0} ns ({:>5.0}k/s per core)   rsip {:>6.0} ns ({:>5.0}k/s)   sip-trunk is {:.2}x rsip",
            best_ours,
            1e6 / best_ours,
            best_peer,
            1e6 / best_peer,
            best_peer / best_ours
        );
    }
}

criterion_group!(benches, bench_parse);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_parse_cpu
}

fn main() {
    benches();
    cpu();
    // `cargo bench -- <filter>` and `--list` should not pay for the report.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .all(|a| a.starts_with("--") && a != "--list" && a != "--profile-time")
    {
        report_ratio();
    }
    Criterion::default().configure_from_args().final_summary();
}
