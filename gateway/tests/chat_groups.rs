//! Done-when 3 of the messenger: a group of five, one member removed
//! mid-conversation stops receiving, and the read-by lists are right.
//!
//! Runs `gateway::run` in-process with a temp data dir; five accounts talk
//! JSON over real WebSockets, each as one chat device.

mod common;

use common::{Ws, connect_device, drain_for, recv, recv_type, send};
use gateway::config::ServeConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;

async fn start() -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let config = ServeConfig::for_tests(dir.path().to_path_buf());
    tokio::spawn(async move {
        gateway::run(listener, config, async {
            let _ = rx.await;
        })
        .await
        .expect("gateway runs");
    });
    (addr, tx, dir)
}

/// Registers `login` and syncs its (empty) history so it gets live pushes.
async fn member(addr: std::net::SocketAddr, login: &str) -> Ws {
    let mut ws = connect_device(addr, &format!("{login}-phone")).await;
    send(
        &mut ws,
        json!({"type":"register","login":login,"password":"correct horse"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "welcome");
    send(&mut ws, json!({"type":"sync"})).await;
    assert_eq!(recv_type(&mut ws, "batch").await["more"], false);
    ws
}

fn post(conversation: &str, client_id: &str, text: &str) -> Value {
    json!({"type":"send","conversation":conversation,"client_id":client_id,
           "body":{"kind":"text","text":text}})
}

/// The next posted message a member receives (group events skipped).
async fn next_post(ws: &mut Ws) -> Value {
    loop {
        let m = recv_type(ws, "message").await;
        if m["op"] == "post" {
            return m;
        }
    }
}

fn names(v: &Value) -> Vec<String> {
    let mut n: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    n.sort();
    n
}

#[tokio::test]
async fn five_members_removal_and_read_by() {
    let (addr, _stop, _dir) = start().await;
    let mut alice = member(addr, "alice").await;
    let mut bob = member(addr, "bob").await;
    let mut carol = member(addr, "carol").await;
    let mut dan = member(addr, "dan").await;
    let mut erin = member(addr, "erin").await;

    send(
        &mut alice,
        json!({"type":"group_create","client_id":"team1","title":"Launch",
               "members":["bob","carol","dan","erin"]}),
    )
    .await;
    let ack = recv_type(&mut alice, "ack").await;
    let group = ack["conversation"].as_str().expect("group id").to_owned();
    assert_eq!(group, "g:alice:team1");

    // everyone gets the first message
    send(&mut alice, post(&group, "m1", "kick-off at ten")).await;
    let m1 = recv_type(&mut alice, "ack").await;
    for (name, ws) in [
        ("bob", &mut bob),
        ("carol", &mut carol),
        ("dan", &mut dan),
        ("erin", &mut erin),
    ] {
        let m = next_post(ws).await;
        assert_eq!(m["body"]["text"], "kick-off at ten", "{name}: {m}");
        assert_eq!(m["seq"], m1["seq"], "{name}");
    }

    // carol is removed; she hears of it and nothing after
    send(
        &mut alice,
        json!({"type":"group_remove","conversation":group,"client_id":"rm1","member":"carol"}),
    )
    .await;
    recv_type(&mut alice, "ack").await;
    let removed = recv_type(&mut carol, "message").await;
    assert_eq!(removed["op"], "group", "{removed}");
    send(&mut alice, post(&group, "m2", "carol has moved team")).await;
    let m2 = recv_type(&mut alice, "ack").await;
    let seq2 = m2["seq"].as_i64().expect("seq");
    for ws in [&mut bob, &mut dan, &mut erin] {
        let m = next_post(ws).await;
        assert_eq!(m["seq"].as_i64(), Some(seq2));
    }
    let leaked: Vec<Value> = drain_for(&mut carol, 400)
        .await
        .into_iter()
        .filter(|f| f["type"] == "message")
        .collect();
    assert!(leaked.is_empty(), "carol still receives: {leaked:?}");
    // and she may no longer write or read the group
    send(&mut carol, post(&group, "c1", "wait for me")).await;
    let refused = recv_type(&mut carol, "error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    // bob and dan read m2, erin's device only received it
    for ws in [&mut bob, &mut dan] {
        send(ws, json!({"type":"read","conversation":group,"seq":seq2})).await;
        recv_type(ws, "ok").await;
    }
    let m = drain_for(&mut erin, 200).await;
    let cursor = m
        .iter()
        .filter_map(|f| f["cursor"].as_i64())
        .max()
        .unwrap_or(0);
    let batch_cursor = {
        send(&mut erin, json!({"type":"sync"})).await;
        recv_type(&mut erin, "batch").await["cursor"]
            .as_i64()
            .unwrap_or(cursor)
    };
    send(
        &mut erin,
        json!({"type":"ack","cursor":batch_cursor.max(cursor)}),
    )
    .await;
    // the receipts settle; then alice asks who read m2
    let _ = drain_for(&mut alice, 400).await;
    send(
        &mut alice,
        json!({"type":"receipts","conversation":group,"seq":seq2}),
    )
    .await;
    let r = recv_type(&mut alice, "receipts").await;
    assert_eq!(names(&r["read_by"]), vec!["bob", "dan"], "{r}");
    assert_eq!(names(&r["delivered_to"]), vec!["erin"], "{r}");
    assert!(names(&r["pending"]).is_empty(), "{r}");
    let everyone = [
        r["read_by"].clone(),
        r["delivered_to"].clone(),
        r["pending"].clone(),
    ];
    assert!(
        everyone
            .iter()
            .all(|l| !names(l).contains(&"carol".to_owned())),
        "a removed member is in no list: {r}"
    );
}

/// `members` lists the current members with admin flags and watermarks, to
/// members only: a removed member is refused.
#[tokio::test]
async fn members_frame_lists_current_members_to_members_only() {
    let (addr, _stop, _dir) = start().await;
    let mut alice = member(addr, "alice").await;
    let mut bob = member(addr, "bob").await;
    let mut carol = member(addr, "carol").await;
    send(
        &mut alice,
        json!({"type":"group_create","client_id":"g2","title":"Trio","members":["bob","carol"]}),
    )
    .await;
    let group = recv_type(&mut alice, "ack").await["conversation"]
        .as_str()
        .expect("group id")
        .to_owned();
    send(&mut alice, post(&group, "p1", "hello trio")).await;
    let seq = recv_type(&mut alice, "ack").await["seq"]
        .as_i64()
        .expect("seq");
    let _ = next_post(&mut bob).await;
    send(
        &mut bob,
        json!({"type":"read","conversation":group,"seq":seq}),
    )
    .await;
    recv_type(&mut bob, "ok").await;
    send(
        &mut alice,
        json!({"type":"group_remove","conversation":group,"client_id":"rm2","member":"carol"}),
    )
    .await;
    recv_type(&mut alice, "ack").await;

    send(&mut bob, json!({"type":"members","conversation":group})).await;
    let m = recv_type(&mut bob, "members").await;
    let list = m["members"].as_array().expect("members array");
    let logins: Vec<&str> = list.iter().filter_map(|x| x["login"].as_str()).collect();
    assert_eq!(logins, vec!["alice", "bob"], "{m}");
    assert_eq!(list[0]["admin"], true, "{m}");
    assert_eq!(list[1]["admin"], false, "{m}");
    assert!(list[1]["read"].as_i64() >= Some(seq), "{m}");

    let _ = drain_for(&mut carol, 200).await;
    send(&mut carol, json!({"type":"members","conversation":group})).await;
    let refused = recv_type(&mut carol, "error").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // and a stranger's socket stays usable after a refusal
    send(&mut carol, json!({"type":"conversations"})).await;
    recv_type(&mut carol, "conversations").await;
}
