//! Interop with SIPp (Debian `sip-tester`), the SIP load and conformance tool
//! nobody here wrote: its stock `uac` scenario calls our user agent 100
//! times over UDP and 50 times over TCP (answered by the built-in echo), its
//! stock `uas` scenario answers 100 calls we place, and a caller that never
//! ACKs sees our 200 OK retransmitted and the dialog ended with BYE after 64*T1.

mod common;

use std::time::Duration;

use gateway::sip::{self, inbound};
use sip_trunk::dialog::{Body, CallConfig, DialogEvent};
use sip_trunk::message::Uri;
use tokio::sync::mpsc;

async fn start_gateway_sip() -> sip::Sip {
    let (itx, irx) = mpsc::channel(256);
    let sip = sip::spawn("127.0.0.1:0".parse().unwrap(), None, itx)
        .await
        .expect("sip socket");
    // SIPp calls from 127.0.0.1, the lab trunk's peer address
    tokio::spawn(inbound::run(
        sip.clone(),
        irx,
        "127.0.0.1".parse().unwrap(),
        common::lab_plans("127.0.0.1:5070"),
    ));
    sip
}

/// Runs SIPp as a client towards `target` with the shared options (bound to
/// 127.0.0.1 on any port, no stdin) and `args`, in a fresh directory; gives
/// its verdict, its output and the text of its `*{log_suffix}` trace files.
async fn run_sipp(
    args: &[&str],
    target: String,
    log_suffix: &'static str,
    limit: Duration,
) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["-i", "127.0.0.1", "-p", "0", "-nostdin"].map(String::from));
    all.push(target);
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        labkit::sipp(&args, &d, limit)
    })
    .await
    .unwrap()
    .expect("sipp runs");
    let logs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(log_suffix))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect::<String>();
    (ok, out, logs)
}

fn stat(out: &str, name: &str) -> Option<u64> {
    // SIPp's final screen: "Successful call | ... | 100" style lines
    out.lines()
        .rev()
        .filter(|l| l.contains(name))
        .filter_map(|l| {
            l.rsplit('|')
                .map(str::trim)
                .find(|f| !f.is_empty())
                .and_then(|f| f.parse().ok())
        })
        .next()
}

/// SIPp's stock `uac` scenario calls `echo` `calls` times, 10 at a time,
/// with `transport` (`u1`: UDP, `t1`: one TCP connection for all calls);
/// every call must succeed.
async fn stock_uac(transport: &str, calls: u64) {
    let sip = start_gateway_sip().await;
    let calls_arg = calls.to_string();
    let args = [
        "-sn",
        "uac",
        "-t",
        transport,
        "-s",
        "echo",
        "-m",
        &calls_arg,
        "-r",
        "20",
        "-l",
        "10",
        "-trace_screen",
        "-timeout",
        "60s",
    ];
    let (ok, out, screen) = run_sipp(
        &args,
        sip.local_addr.to_string(),
        "_screen.log",
        Duration::from_secs(90),
    )
    .await;
    assert!(ok, "sipp uac over {transport} failed:\n{out}\n{screen}");
    assert_eq!(stat(&screen, "Successful call"), Some(calls), "{screen}");
    assert_eq!(stat(&screen, "Failed call"), Some(0), "{screen}");
}

/// SIPp's stock `uac` scenario: 100 calls over UDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uac_calls_us_100_times() {
    stock_uac("u1", 100).await;
}

/// The same over TCP: our listener accepts, frames by Content-Length and
/// answers on the connection the requests came on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uac_calls_us_over_tcp() {
    stock_uac("t1", 50).await;
}

/// SIPp's stock `uas` scenario answers; we place 100 calls (INVITE, 200, ACK,
/// BYE) through our user agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_call_sipp_uas_100_times() {
    let sip = start_gateway_sip().await;
    let port = labkit::free_port();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let sipp = std::thread::spawn(move || {
        labkit::sipp(
            &[
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                "100",
                "-nostdin",
                "-trace_screen",
                "-timeout",
                "90s",
            ],
            &d,
            Duration::from_secs(120),
        )
    });
    let dest = format!("127.0.0.1:{port}").parse().unwrap();
    // SIPp's uas answers whatever arrives once it is listening; give it a moment by retrying the first call
    let mut answered = 0;
    for i in 0..100 {
        let local = Uri::parse(&format!("sip:alice@{}", sip.sent_by)).unwrap();
        let remote = Uri::parse(&format!("sip:service@127.0.0.1:{port}")).unwrap();
        let contact = Uri::parse(&format!("sip:namecall@{}", sip.sent_by)).unwrap();
        let cfg = CallConfig::new(local, remote, contact, ("UDP".into(), sip.sent_by.clone()));
        let sdp = format!(
            "v=0\r\no=- {i} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        );
        let body = Body {
            content_type: "application/sdp".into(),
            data: sdp.into_bytes().into(),
        };
        let (h, mut events) = sip.invite(cfg, Some(body), dest).await.expect("invite");
        let mut up = false;
        while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(10), events.recv()).await
        {
            match ev {
                DialogEvent::Answered { .. } => {
                    up = true;
                    sip.with_call(h, |c, _| {
                        let _ = c.hangup();
                    })
                    .await
                    .expect("hangup");
                }
                DialogEvent::Terminated { .. } => break,
                _ => {}
            }
        }
        if up {
            answered += 1;
        }
    }
    let (ok, out) = tokio::task::spawn_blocking(move || sipp.join().unwrap())
        .await
        .unwrap()
        .expect("sipp ran");
    assert_eq!(answered, 100, "calls answered by sipp uas");
    assert!(ok, "sipp uas reported failures:\n{out}");
}

/// A caller that never ACKs our 200: RFC 3261 13.3.1.4 retransmission, then BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_200_is_retransmitted_then_bye() {
    let sip = start_gateway_sip().await;
    let scenario = labkit::workspace_root().join("tests/sipp/uac-no-ack.xml");
    let t = std::time::Instant::now();
    let (ok, out, msgs) = run_sipp(
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "echo",
            "-m",
            "1",
            "-trace_msg",
            "-timeout",
            "80s",
        ],
        sip.local_addr.to_string(),
        "_messages.log",
        Duration::from_secs(90),
    )
    .await;
    assert!(ok, "scenario failed:\n{out}\n{msgs}");
    let oks = msgs.matches("SIP/2.0 200 OK").count();
    assert!(
        oks >= 4,
        "expected the 200 and at least three retransmissions, saw {oks}"
    );
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_secs(30),
        "BYE came after {elapsed:?}, before 64*T1"
    );
}

/// RFC 3262 with SIPp as a caller that `Require`s 100rel: our 183 with SDP
/// carries `Require: 100rel` and an RSeq, is retransmitted (same RSeq) until
/// SIPp's PRACK, the PRACK gets 200, and only then our 200 to the INVITE
/// goes out (it was asked for at once); SIPp ACKs and hangs up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliable_183_waits_for_prack() {
    let (itx, mut irx) = mpsc::channel(4);
    let sip = sip::spawn("127.0.0.1:0".parse().unwrap(), None, itx)
        .await
        .expect("sip socket");
    let leg = sip.clone();
    let callee = tokio::spawn(async move {
        let mut call = irx.recv().await.expect("SIPp's INVITE");
        let sdp = |s: &str| Body::sdp(s.as_bytes().to_vec());
        let early = sdp(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        );
        let answer = early.clone();
        leg.with_call(call.call, move |c, now| {
            c.ring(now, 183, Some(early)).expect("unanswered");
            // Held by the dialog until the 183 is PRACKed.
            c.answer(now, Some(answer)).expect("unanswered");
        })
        .await
        .expect("leg alive");
        let mut seen = Vec::new();
        while let Some(ev) = tokio::time::timeout(Duration::from_secs(20), call.events.recv())
            .await
            .ok()
            .flatten()
        {
            let end = matches!(ev, DialogEvent::Terminated { .. });
            seen.push(ev);
            if end {
                break;
            }
        }
        seen
    });
    let scenario = labkit::workspace_root().join("tests/sipp/uac-100rel.xml");
    let (ok, out, msgs) = run_sipp(
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "alice",
            "-m",
            "1",
            "-trace_msg",
            "-timeout",
            "30s",
        ],
        sip.local_addr.to_string(),
        "_messages.log",
        Duration::from_secs(40),
    )
    .await;
    assert!(ok, "scenario failed:\n{out}\n{msgs}");
    let rseqs: Vec<&str> = msgs
        .split("SIP/2.0 183 ")
        .skip(1)
        .filter_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("RSeq:").map(str::trim))
        })
        .collect();
    assert!(
        rseqs.len() >= 2 && rseqs.iter().all(|r| *r == rseqs[0]),
        "expected the 183 and its retransmission with one RSeq, saw {rseqs:?}\n{msgs}"
    );
    let events = callee.await.expect("callee task");
    assert!(
        matches!(
            events.as_slice(),
            [DialogEvent::Answered { .. }, DialogEvent::Terminated { .. }]
        ),
        "{events:?}"
    );
}
