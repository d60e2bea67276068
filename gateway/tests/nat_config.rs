//! The NAT settings reach the wire: `--ice-servers` with `--turn-secret` puts
//! TURN REST credentials for the session's login into `welcome`, and
//! `--external-ip` adds a server-reflexive candidate with the host candidate's
//! port to the answer of an `echo` call.

mod common;

use common::{audio_offer, connect, recv_within, send};
use labkit::Gateway;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_has_turn_credentials_and_answer_has_srflx() {
    let data = tempfile::tempdir().expect("temp dir");
    let gw = Gateway::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        data.path(),
        &[
            "--external-ip",
            "192.0.2.10",
            "--ice-servers",
            r#"[{"urls":"stun:stun.example.com"},{"urls":["turn:turn.example.com:3478"]}]"#,
            "--turn-secret",
            "s3cret",
            "--turn-ttl",
            "120",
        ],
    )
    .expect("namecall starts");

    let mut ws = connect(&gw.addr).await;
    send(&mut ws, json!({"type":"hello","login":"carol"})).await;
    let welcome = recv_within(&mut ws, 10).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let servers = welcome["ice_servers"].as_array().expect("ice_servers list");
    assert_eq!(servers.len(), 2, "{welcome}");
    assert_eq!(servers[0], json!({"urls":["stun:stun.example.com"]}));
    let user = servers[1]["username"].as_str().expect("turn username");
    let (expiry, login) = user.split_once(':').expect("<expiry>:<login>");
    assert_eq!(login, "carol");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let expiry: u64 = expiry.parse().expect("unix expiry");
    assert!(
        (now + 100..=now + 130).contains(&expiry),
        "expires about 120 s from now ({now}): {expiry}"
    );
    assert_eq!(
        servers[1]["credential"].as_str().map(str::len),
        Some(28),
        "base64 of a 20-byte HMAC-SHA1: {welcome}"
    );

    send(
        &mut ws,
        json!({"type":"call","id":"c1","to":"echo","sdp":audio_offer()}),
    )
    .await;
    let sdp = loop {
        let f = recv_within(&mut ws, 10).await;
        assert_ne!(f["type"], "ended", "call ended: {f}");
        assert_ne!(f["type"], "error", "call refused: {f}");
        if f["type"] == "answer" {
            break f["sdp"].as_str().unwrap_or_default().to_owned();
        }
    };
    let port = |kind: &str| {
        sdp.lines()
            .filter(|l| l.starts_with("a=candidate:") && l.contains(&format!(" typ {kind}")))
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[4].to_owned(), f[5].to_owned())
            })
            .next()
    };
    let (host_ip, host_port) = port("host").expect("host candidate");
    let (srflx_ip, srflx_port) = port("srflx").expect("srflx candidate");
    assert_eq!(host_ip, "127.0.0.1");
    assert_eq!(srflx_ip, "192.0.2.10", "{sdp}");
    assert_eq!(srflx_port, host_port, "same port as our socket: {sdp}");
    send(&mut ws, json!({"type":"hangup","id":"c1"})).await;
}
