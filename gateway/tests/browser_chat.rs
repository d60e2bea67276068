//! Two headless Chromium pages chat through the embedded web client.
//!
//! Starts the `namecall` binary on a free port with a temporary data dir,
//! waits for its readiness line, runs `node tests/browser/chat.mjs <url>`
//! (playwright-core + Debian's chromium) and checks its JSON verdict: text,
//! a location and an uploaded PNG (shown as its thumbnail) arrive, the sender sees delivered then read, typing shows,
//! and last seen replaces online when the peer's page closes. A second test
//! runs `group-chat.mjs`: three pages in a group (create, members panel,
//! read-by, remove, promote, rename, leave).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the gateway when the test ends, passed or not.
struct Gateway {
    child: Child,
    addr: String,
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

/// Starts `namecall serve` on free loopback ports and waits for `namecall ready http=<addr>`.
fn start_gateway(data_dir: &Path) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_namecall"))
        .args(["serve", "--http", "127.0.0.1:0", "--media-ip", "127.0.0.1"])
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
            // keep draining after the receiver is gone so the pipe never fills
            let _ = tx.send(line);
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
    Gateway { child, addr }
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

/// Alice and Bob chat in two Chromium pages: text, location, receipts,
/// typing and last seen.
#[test]
fn two_chromium_users_chat() {
    let data = tempfile::tempdir().expect("temp dir");
    let gw = start_gateway(data.path());
    let (status, page) = http_get(&gw.addr, "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<script src=\"/chat.js\">"),
        "the chat client is served"
    );
    let (status, js) = http_get(&gw.addr, "/chat.js");
    assert_eq!(status, 200);
    assert!(js.contains("namecall:frame"), "chat.js hooks the frames");

    let picture = data.path().join("photo.png");
    image::RgbImage::from_fn(640, 400, |x, y| image::Rgb([x as u8, y as u8, 200]))
        .save(&picture)
        .expect("write a test PNG");

    let (verdict, ok) = run_script(
        "chat.mjs",
        &[
            format!("http://{}/", gw.addr),
            "--image".into(),
            picture.display().to_string(),
        ],
    );
    for check in [
        "signed_in",
        "unread_badge",
        "delivered",
        "text_arrived",
        "read",
        "typing_shown",
        "reply_arrived",
        "typing_cleared",
        "location_arrived",
        "location_read",
        "image_arrived",
        "image_full_size",
        "online",
        "last_seen",
    ] {
        assert_eq!(
            verdict["checks"][check],
            serde_json::Value::Bool(true),
            "check {check} failed: {verdict}"
        );
    }
    assert_eq!(verdict["ok"], serde_json::Value::Bool(true));
    assert!(ok);
}

/// Runs `node gateway/tests/browser/<script> <args>` and returns its JSON
/// verdict (the last line starting with `{`) and whether it exited 0.
fn run_script(script: &str, args: &[String]) -> (serde_json::Value, bool) {
    let out = Command::new("node")
        .arg(repo_root().join("gateway/tests/browser").join(script))
        .args(args)
        .output()
        .expect("node runs (install nodejs and `npm install` in tests/)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{script} stderr: {}", String::from_utf8_lossy(&out.stderr));
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{script} printed no JSON: {stdout}"));
    let verdict: serde_json::Value = serde_json::from_str(line).expect("the script prints JSON");
    eprintln!("{script} verdict: {verdict:#}");
    (verdict, out.status.success())
}

/// Alice, Bob and Carol in a group, all through the web client: create from
/// the form, members panel with admin controls, read-by lists growing to
/// read, removal (the removed page can no longer send and gets nothing),
/// promotion, rename by the new admin, leave.
#[test]
fn three_chromium_users_in_a_group() {
    let data = tempfile::tempdir().expect("temp dir");
    let gw = start_gateway(data.path());
    let (verdict, ok) = run_script("group-chat.mjs", &[format!("http://{}/", gw.addr)]);
    for check in [
        "signed_in",
        "created",
        "creator_is_admin",
        "admin_controls",
        "listed_with_title",
        "bob_not_admin",
        "read_by_one",
        "read_by_all",
        "removed_member_told",
        "removed_member_gets_nothing",
        "promoted",
        "renamed",
        "left",
    ] {
        assert_eq!(
            verdict["checks"][check],
            serde_json::Value::Bool(true),
            "check {check} failed: {verdict}"
        );
    }
    assert_eq!(verdict["ok"], serde_json::Value::Bool(true));
    assert!(ok);
}
