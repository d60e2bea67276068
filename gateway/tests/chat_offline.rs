//! Offline delivery survives a crash: Bob is offline, Alice sends 100
//! messages and gets each acknowledged, the `namecall` process is killed
//! with SIGKILL and started again on the same data dir, and Bob, connecting
//! only then, receives all 100 in order, once each.
//!
//! Runs the real binary (`CARGO_BIN_EXE_namecall`) so that the kill is a
//! real process death: nothing is flushed or closed on the way out.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const DM: &str = "dm:alice+bob";
const COUNT: usize = 100;

/// Kills the gateway if the test panics before it does.
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

/// Starts `namecall serve` on free loopback ports and waits for its readiness line.
fn start_gateway(data_dir: &Path) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_namecall"))
        .args(["serve", "--http", "127.0.0.1:0", "--media-ip", "127.0.0.1"])
        .args(["--rtp-ports", "0-0", "--sip", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["--dialplans", "no-such-dialplans"])
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

async fn connect(addr: &str, device: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws?device={device}"))
        .await
        .expect("websocket upgrade");
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send frame");
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("socket open")
            .expect("frame ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("server sends JSON");
        }
    }
}

async fn login(ws: &mut Ws, kind: &str, login: &str) {
    send(
        ws,
        json!({"type":kind,"login":login,"password":"correct horse"}),
    )
    .await;
    let w = recv(ws).await;
    assert_eq!(
        (w["type"].as_str(), w["guest"].as_bool()),
        (Some("welcome"), Some(false)),
        "{w}"
    );
}

#[tokio::test]
async fn hundred_acked_messages_survive_sigkill() {
    let data = tempfile::tempdir().expect("temp dir");
    let gw = start_gateway(data.path());

    // Bob exists but is offline for the whole first life of the gateway.
    let mut bob = connect(&gw.addr, "bob-phone").await;
    login(&mut bob, "register", "bob").await;
    drop(bob);

    let mut alice = connect(&gw.addr, "alice-laptop").await;
    login(&mut alice, "register", "alice").await;
    send(&mut alice, json!({"type":"sync"})).await;
    assert_eq!(recv(&mut alice).await["type"], "batch");
    // pipelined: all 100 go out, then every ack must come back
    for i in 0..COUNT {
        send(
            &mut alice,
            json!({"type":"send","conversation":DM,"client_id":format!("m{i:03}"),
                   "body":{"kind":"text","text":format!("message {i:03}")}}),
        )
        .await;
    }
    let mut acked = [false; COUNT];
    for _ in 0..COUNT {
        let ack = recv(&mut alice).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["duplicate"], false, "{ack}");
        let i: usize = ack["client_id"]
            .as_str()
            .and_then(|c| c.strip_prefix('m'))
            .and_then(|n| n.parse().ok())
            .expect("client id m<NNN>");
        assert_eq!(
            ack["seq"].as_u64(),
            Some(i as u64 + 1),
            "seq follows send order: {ack}"
        );
        assert!(!acked[i], "acked twice: {ack}");
        acked[i] = true;
    }

    // SIGKILL: no shutdown path runs
    let pid = gw.child.id().to_string();
    let killed = Command::new("kill").args(["-KILL", &pid]).status();
    assert!(
        killed.map(|s| s.success()).unwrap_or(false),
        "kill -KILL works"
    );
    drop(alice);
    drop(gw);

    let gw = start_gateway(data.path());
    let mut bob = connect(&gw.addr, "bob-phone").await;
    login(&mut bob, "auth", "bob").await;
    let mut got: Vec<(i64, String)> = Vec::new();
    let mut cursor = None;
    loop {
        send(&mut bob, json!({"type":"sync","limit":30})).await;
        let b = recv(&mut bob).await;
        assert_eq!(b["type"], "batch", "{b}");
        for m in b["messages"].as_array().expect("messages array") {
            assert_eq!(
                (m["sender"].as_str(), m["op"].as_str()),
                (Some("alice"), Some("post")),
                "{m}"
            );
            got.push((
                m["seq"].as_i64().expect("seq"),
                m["body"]["text"].as_str().expect("text").to_owned(),
            ));
        }
        send(&mut bob, json!({"type":"ack","cursor":b["cursor"]})).await;
        cursor = b["cursor"].as_i64().or(cursor);
        if b["more"] == false {
            break;
        }
    }
    let want: Vec<(i64, String)> = (0..COUNT)
        .map(|i| (i as i64 + 1, format!("message {i:03}")))
        .collect();
    assert_eq!(got, want, "all {COUNT}, in order, once each");

    // the acks moved bob's cursor: a new sync from the stored cursor is empty
    send(&mut bob, json!({"type":"sync"})).await;
    let b = recv(&mut bob).await;
    assert_eq!(b["messages"], json!([]), "{b}");
    assert_eq!(b["cursor"].as_i64(), cursor, "{b}");
}
