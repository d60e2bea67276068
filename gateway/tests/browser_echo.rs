//! A real headless Chromium calls `echo` through the embedded web client and hears itself.
//!
//! Starts the `namecall` binary on a free port with a temporary data dir,
//! waits for its readiness line, runs `node tests/browser/echo.mjs <url>`
//! (playwright-core + Debian's chromium), checks the JSON verdict, checks
//! `/metrics` shows no leaked call or socket, and stops the gateway with
//! SIGTERM (graceful shutdown must exit 0).
//!
//! Meant to run in a network namespace with only `lo`
//! (`unshare --net sh -c 'ip link set lo up; cargo test -p gateway --test browser_echo'`);
//! outside one the page drops non-loopback candidates, so it runs anyway.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the gateway if the test panics before stopping it.
struct Gateway {
    child: Child,
    addr: String,
    log: mpsc::Receiver<String>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway/ has a parent")
        .to_path_buf()
}

/// Starts `namecall serve` on 127.0.0.1:0 and waits for `namecall ready http=<addr>`.
fn start_gateway(data_dir: &Path) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_namecall"))
        .args(["serve", "--http", "127.0.0.1:0", "--media-ip", "127.0.0.1"])
        // SIP on a free loopback port: the default 0.0.0.0:5060 may be taken
        .args(["--rtp-ports", "0-0", "--sip", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("namecall binary starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("gateway: {line}");
            if tx.send(line).is_err() {
                // keep draining so the gateway never blocks on a full pipe
                continue;
            }
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("gateway prints its readiness line within 30 s");
        if let Some(rest) = line.split("namecall ready http=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("address after =")
                .to_owned();
        }
    };
    Gateway {
        child,
        addr,
        log: rx,
    }
}

/// A minimal HTTP/1.1 GET; returns (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to gateway");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read response");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn metric(body: &str, name: &str) -> Option<i64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Chromium signs in, calls `echo`, hears its own audio, hangs up; nothing leaks.
#[test]
fn chromium_hears_itself_through_echo() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut gw = start_gateway(data.path());

    let (status, body) = http_get(&gw.addr, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, page) = http_get(&gw.addr, "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<script src=\"/app.js\">"),
        "the web client is served"
    );

    let script = repo_root().join("gateway/tests/browser/echo.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://{}/", gw.addr))
        .output()
        .expect("node runs (install nodejs and `npm install` in tests/)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("echo.mjs stderr: {}", String::from_utf8_lossy(&out.stderr));
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("echo.mjs printed no JSON: {stdout}"));
    let verdict: serde_json::Value = serde_json::from_str(line).expect("echo.mjs prints JSON");
    eprintln!("echo.mjs verdict: {verdict:#}");
    for check in [
        "signed_in",
        "connected",
        "bytes_growing",
        "codec_opus",
        "audio_energy",
        "loopback_pair",
        "ended_by_hangup",
    ] {
        assert_eq!(
            verdict["checks"][check],
            serde_json::Value::Bool(true),
            "check {check} failed: {verdict}"
        );
    }
    assert_eq!(verdict["ok"], serde_json::Value::Bool(true));
    assert!(out.status.success());

    // the call's task and socket are gone once the browser has seen `ended`
    let mut last = String::new();
    for _ in 0..50 {
        let (_, body) = http_get(&gw.addr, "/metrics");
        last = body;
        if metric(&last, "namecall_active_calls") == Some(0)
            && metric(&last, "namecall_media_sockets") == Some(0)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&last, "namecall_active_calls"), Some(0), "{last}");
    assert_eq!(metric(&last, "namecall_media_sockets"), Some(0), "{last}");
    assert!(
        metric(&last, "namecall_calls_total").unwrap_or(0) >= 1,
        "{last}"
    );

    // graceful shutdown on SIGTERM
    let pid = gw.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(
        killed.map(|s| s.success()).unwrap_or(false),
        "kill -TERM works"
    );
    let mut exited = None;
    for _ in 0..100 {
        if let Some(status) = gw.child.try_wait().expect("wait for gateway") {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = exited.expect("gateway exits within 10 s of SIGTERM");
    assert!(status.success(), "graceful exit, got {status}");
    let lines: Vec<String> = gw.log.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("call media ended")),
        "the media task logged its end"
    );
}
