//! The `/v1/ws` protocol against an in-process gateway: sessions, refusals and call endings.
//!
//! Each test starts `gateway::run` on 127.0.0.1:0 and talks JSON over a real
//! WebSocket (tokio-tungstenite), as a second client would.

mod common;

use std::time::Duration;

use common::{audio_offer, connect, recv, send};
use futures_util::SinkExt;
use gateway::config::ServeConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Starts a gateway; returns its address, the shutdown trigger and the temp dir guard.
async fn start() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    start_with(|_| {}).await
}

/// Like [`start`], with the test configuration changed by `tweak` first.
async fn start_with(
    tweak: impl FnOnce(&mut ServeConfig),
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut config = ServeConfig::for_tests(dir.path().to_path_buf());
    tweak(&mut config);
    tokio::spawn(async move {
        gateway::run(listener, config, async {
            let _ = rx.await;
        })
        .await
        .expect("gateway runs");
    });
    (addr, tx, dir)
}

/// hello is answered with welcome, marked guest.
#[tokio::test]
async fn hello_gets_guest_welcome() {
    let (addr, _stop, _dir) = start().await;
    let mut ws = connect(addr).await;
    send(&mut ws, json!({"type":"hello","login":"alice"})).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type":"welcome","login":"alice","guest":true})
    );
}

/// Bad frames get error frames with codes, and the socket keeps working afterwards.
#[tokio::test]
async fn bad_frames_get_errors_and_socket_stays_usable() {
    let (addr, _stop, _dir) = start().await;
    let mut ws = connect(addr).await;
    ws.send(Message::Text("{not json".into()))
        .await
        .expect("send");
    assert_eq!(recv(&mut ws).await["code"], "bad-json");
    send(&mut ws, json!({"type":"teleport","id":"x"})).await;
    let e = recv(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["ref"].as_str()),
        (Some("error"), Some("unknown-type"), Some("x"))
    );
    send(&mut ws, json!({"type":"call","id":"c1"})).await;
    assert_eq!(recv(&mut ws).await["code"], "bad-frame");
    let big = json!({"type":"hello","login":"a".repeat(70_000)});
    send(&mut ws, big).await;
    assert_eq!(recv(&mut ws).await["code"], "too-large");
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    assert_eq!(recv(&mut ws).await["code"], "binary");
    send(
        &mut ws,
        json!({"type":"call","id":"c1","to":"echo","sdp":"v=0"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["code"], "not-logged-in");
    send(&mut ws, json!({"type":"hangup","id":"nope"})).await;
    assert_eq!(recv(&mut ws).await["code"], "no-such-call");
    // still usable
    send(&mut ws, json!({"type":"hello","login":"bob"})).await;
    assert_eq!(recv(&mut ws).await["type"], "welcome");
}

/// Calling an unknown name rings and ends with 404; a broken offer to echo ends with 488.
#[tokio::test]
async fn failed_calls_end_with_codes() {
    let (addr, _stop, _dir) = start().await;
    let mut ws = connect(addr).await;
    send(&mut ws, json!({"type":"hello","login":"alice"})).await;
    recv(&mut ws).await;
    send(
        &mut ws,
        json!({"type":"call","id":"c1","to":"nobody","sdp":"v=0"}),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type":"ended","id":"c1","reason":"not-found","code":404})
    );
    send(
        &mut ws,
        json!({"type":"call","id":"c2","to":"echo","sdp":"garbage"}),
    )
    .await;
    let ended = recv(&mut ws).await;
    assert_eq!(
        (ended["reason"].as_str(), ended["code"].as_u64()),
        (Some("not-acceptable"), Some(488))
    );
}

/// The metrics endpoint reports the session gauge in Prometheus format.
#[tokio::test]
async fn metrics_count_sessions() {
    let (addr, _stop, _dir) = start().await;
    let mut ws = connect(addr).await;
    // a round trip makes sure the session task is running
    send(&mut ws, json!({"type":"hello","login":"alice"})).await;
    recv(&mut ws).await;
    let body = reqwest_free_get(addr, "/metrics").await;
    assert!(
        body.contains("# TYPE namecall_active_calls gauge"),
        "{body}"
    );
    assert!(body.contains("namecall_ws_sessions 1"), "{body}");
    let missing = reqwest_free_get(addr, "/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    assert!(missing.contains("application/problem+json"), "{missing}");
}

fn metric(body: &str, name: &str) -> Option<i64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Closing the WebSocket mid-call ends the call: its task and media socket go away.
#[tokio::test]
async fn closing_the_socket_ends_its_calls() {
    let (addr, _stop, _dir) = start().await;
    let mut ws = connect(addr).await;
    send(&mut ws, json!({"type":"hello","login":"alice"})).await;
    recv(&mut ws).await;
    send(
        &mut ws,
        json!({"type":"call","id":"c1","to":"echo","sdp":audio_offer()}),
    )
    .await;
    let answer = recv(&mut ws).await;
    assert_eq!(answer["type"], "answer");
    assert!(
        answer["sdp"]
            .as_str()
            .unwrap_or("")
            .contains("opus/48000/2")
    );
    assert!(answer["sdp"].as_str().unwrap_or("").contains("127.0.0.1"));
    let body = reqwest_free_get(addr, "/metrics").await;
    assert_eq!(metric(&body, "namecall_active_calls"), Some(1), "{body}");
    assert_eq!(metric(&body, "namecall_media_sockets"), Some(1), "{body}");
    drop(ws);
    let mut body = String::new();
    for _ in 0..100 {
        body = reqwest_free_get(addr, "/metrics").await;
        if metric(&body, "namecall_active_calls") == Some(0)
            && metric(&body, "namecall_media_sockets") == Some(0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&body, "namecall_active_calls"), Some(0), "{body}");
    assert_eq!(metric(&body, "namecall_media_sockets"), Some(0), "{body}");
    assert_eq!(metric(&body, "namecall_ws_sessions"), Some(0), "{body}");
}

/// A plain HTTP/1.1 GET returning the whole response text.
async fn reqwest_free_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

/// Accounts come from the directory: register creates an argon2id account and
/// logs in (not a guest), a wrong password is refused, the right one works on
/// a new socket, a taken name is refused, and search finds `echo` by a typo.
#[tokio::test]
async fn register_login_and_search_use_the_directory() {
    let (addr, _stop, _dir) = start().await;
    let mut ws = connect(addr).await;
    send(
        &mut ws,
        json!({"type": "register", "login": "alice", "password": "correct horse"}),
    )
    .await;
    let w = recv(&mut ws).await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["login"], "alice");
    assert_eq!(w["guest"], false);

    send(
        &mut ws,
        json!({"type": "register", "login": "alice", "password": "another one"}),
    )
    .await;
    let e = recv(&mut ws).await;
    assert_eq!(e["type"], "error", "{e}");
    assert_eq!(e["code"], "register-failed");

    let mut ws2 = connect(addr).await;
    send(
        &mut ws2,
        json!({"type": "auth", "login": "alice", "password": "wrong password"}),
    )
    .await;
    let e = recv(&mut ws2).await;
    assert_eq!(e["code"], "auth-failed", "{e}");
    send(
        &mut ws2,
        json!({"type": "auth", "login": "alice", "password": "correct horse"}),
    )
    .await;
    let w = recv(&mut ws2).await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["guest"], false);

    send(&mut ws2, json!({"type": "search", "query": "ehco"})).await;
    let r = recv(&mut ws2).await;
    assert_eq!(r["type"], "results", "{r}");
    assert!(hit_names(&r).contains(&"echo"), "{r}");
    send(&mut ws2, json!({"type": "search", "query": "alice"})).await;
    let r = recv(&mut ws2).await;
    assert_eq!(r["hits"][0]["name"], "alice", "{r}");
    assert_eq!(r["hits"][0]["matched"], "exact", "{r}");
}

/// The companies of the dialplan folder are published in the directory: a
/// search for "acme sals" (a typo) finds `acme/sales` from
/// `dialplans/examples/acme.yaml`.
#[tokio::test]
async fn dialplan_companies_are_searchable() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dialplans/examples");
    let (addr, _stop, _dir) = start_with(|c| c.dialplans = examples).await;
    let mut ws = connect(addr).await;
    send(&mut ws, json!({"type": "search", "query": "acme sals"})).await;
    let r = recv(&mut ws).await;
    assert_eq!(r["type"], "results", "{r}");
    assert!(hit_names(&r).contains(&"acme/sales"), "{r}");
}

/// The names of a `results` frame's hits, best first.
fn hit_names(results: &Value) -> Vec<&str> {
    results["hits"]
        .as_array()
        .map(|hits| hits.iter().filter_map(|h| h["name"].as_str()).collect())
        .unwrap_or_default()
}

/// Toll-fraud guard: a guest may call `echo` but never a company's trunk; the
/// call ends with `login-required` before any INVITE leaves.
#[tokio::test]
async fn guests_cannot_call_companies() {
    let (addr, _stop, _dir) = start_with(|c| {
        c.dialplans =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dialplans/examples");
    })
    .await;
    let mut ws = connect(addr).await;
    send(&mut ws, json!({"type":"hello","login":"mallory"})).await;
    assert_eq!(recv(&mut ws).await["guest"], true);
    send(
        &mut ws,
        json!({"type":"call","id":"c1","to":"acme/sales","sdp":audio_offer()}),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type":"ended","id":"c1","reason":"login-required","code":403})
    );
    let body = reqwest_free_get(addr, "/metrics").await;
    assert_eq!(metric(&body, "namecall_active_calls"), Some(0), "{body}");
    assert_eq!(metric(&body, "namecall_media_sockets"), Some(0), "{body}");
    // an unknown sub-name of a real company is not found, for guests and accounts alike
    send(
        &mut ws,
        json!({"type":"call","id":"c2","to":"acme/nobody","sdp":audio_offer()}),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type":"ended","id":"c2","reason":"not-found","code":404})
    );
}

/// An account session has a token: a new socket resumes with it (a page
/// reload), `logout` ends it everywhere, and a guest gets no token.
#[tokio::test]
async fn tokens_resume_and_logout() {
    let (addr, _stop, _dir) = start().await;
    let mut ws = connect(addr).await;
    send(
        &mut ws,
        json!({"type":"register","login":"tokyo","password":"correct horse battery"}),
    )
    .await;
    let welcome = recv(&mut ws).await;
    assert_eq!(welcome["guest"], false, "{welcome}");
    let token = welcome["token"].as_str().expect("a token").to_owned();
    assert!(token.len() >= 32, "a long random token: {token}");

    let mut again = connect(addr).await;
    send(&mut again, json!({"type":"resume","token":token})).await;
    let resumed = recv(&mut again).await;
    assert_eq!(
        (resumed["type"].as_str(), resumed["login"].as_str()),
        (Some("welcome"), Some("tokyo")),
        "{resumed}"
    );
    send(&mut again, json!({"type":"logout"})).await;
    assert_eq!(recv(&mut again).await["type"], "logged_out");
    // logged out: calls need a login again, and the token is dead
    send(
        &mut again,
        json!({"type":"call","id":"c1","to":"echo","sdp":"v=0"}),
    )
    .await;
    assert_eq!(recv(&mut again).await["code"], "not-logged-in");
    send(&mut again, json!({"type":"resume","token":token})).await;
    assert_eq!(recv(&mut again).await["code"], "auth-failed");
    send(&mut again, json!({"type":"resume","token":""})).await;
    assert_eq!(recv(&mut again).await["code"], "invalid");

    let mut guest = connect(addr).await;
    send(&mut guest, json!({"type":"hello","login":"visitor"})).await;
    let w = recv(&mut guest).await;
    assert!(w.get("token").is_none(), "guests get no token: {w}");
}
