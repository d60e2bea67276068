//! Chat over `/v1/ws` against an in-process gateway: two accounts exchange
//! messages with receipts, a third cannot see or write their conversation,
//! guests and bad frames are refused while the socket stays usable.
//!
//! Each test starts `gateway::run` on 127.0.0.1:0 with a temp data dir and
//! talks JSON over real WebSockets (tokio-tungstenite).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway::config::ServeConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const DM: &str = "dm:alice+bob";

/// Starts a gateway; returns its address, the shutdown trigger and the temp dir guard.
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

async fn connect(addr: std::net::SocketAddr, device: &str) -> Ws {
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
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("frame ok");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("server sends JSON");
        }
    }
}

/// Asserts that no frame arrives for a short while (used after the one
/// frame that must arrive, to catch duplicates and leaks to others).
async fn quiet(ws: &mut Ws) {
    if let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        panic!("unexpected frame: {t}");
    }
}

/// Registers `login` on a new socket and syncs it up (so it gets pushes).
async fn account(addr: std::net::SocketAddr, login: &str) -> Ws {
    let mut ws = connect(addr, &format!("{login}-dev1")).await;
    send(
        &mut ws,
        json!({"type":"register","login":login,"password":"correct horse"}),
    )
    .await;
    let w = recv(&mut ws).await;
    assert_eq!(
        (w["type"].as_str(), w["guest"].as_bool()),
        (Some("welcome"), Some(false)),
        "{w}"
    );
    send(&mut ws, json!({"type":"sync"})).await;
    let b = recv(&mut ws).await;
    assert_eq!(b["type"], "batch", "{b}");
    assert_eq!(b["more"], false, "{b}");
    ws
}

fn text(conversation: &str, client_id: &str, t: &str) -> Value {
    json!({"type":"send","conversation":conversation,"client_id":client_id,
           "body":{"kind":"text","text":t}})
}

/// Alice and Bob exchange text; acks, pushes, delivered and read receipts,
/// retries and unread counts behave as docs/protocol.md says.
#[tokio::test]
async fn two_users_exchange_text_with_receipts() {
    let (addr, _stop, _dir) = start().await;
    let mut alice = account(addr, "alice").await;
    let mut bob = account(addr, "bob").await;

    send(&mut alice, text(DM, "a1", "hello bob")).await;
    let ack = recv(&mut alice).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(
        (ack["seq"].as_i64(), ack["duplicate"].as_bool()),
        (Some(1), Some(false))
    );
    let m = recv(&mut bob).await;
    assert_eq!(m["type"], "message", "{m}");
    assert_eq!(
        (
            m["sender"].as_str(),
            m["seq"].as_i64(),
            m["body"]["text"].as_str()
        ),
        (Some("alice"), Some(1), Some("hello bob"))
    );

    // the retry of a1 is answered with the same ack and stores nothing
    send(&mut alice, text(DM, "a1", "hello bob")).await;
    let dup = recv(&mut alice).await;
    assert_eq!(
        (dup["seq"].as_i64(), dup["duplicate"].as_bool()),
        (Some(1), Some(true)),
        "{dup}"
    );
    quiet(&mut bob).await;

    // bob has it: delivered at alice
    send(&mut bob, json!({"type":"ack","cursor":m["cursor"]})).await;
    let r = recv(&mut alice).await;
    assert_eq!(
        r,
        json!({"type":"receipt","conversation":DM,"member":"bob","delivered":1,"read":0})
    );
    // bob reads it: read at alice
    send(&mut bob, json!({"type":"read","conversation":DM,"seq":1})).await;
    assert_eq!(recv(&mut bob).await, json!({"type":"ok"}));
    let r = recv(&mut alice).await;
    assert_eq!(
        r,
        json!({"type":"receipt","conversation":DM,"member":"bob","delivered":1,"read":1})
    );

    // typing reaches the other side only
    send(
        &mut bob,
        json!({"type":"typing","conversation":DM,"on":true}),
    )
    .await;
    let t = recv(&mut alice).await;
    assert_eq!(
        t,
        json!({"type":"typing","conversation":DM,"user":"bob","typing":true})
    );

    // bob answers; alice gets it pushed
    send(&mut bob, text(DM, "b1", "hi alice")).await;
    assert_eq!(recv(&mut bob).await["seq"], 2);
    // the reply also ends bob's typing at alice
    let (f1, f2) = (recv(&mut alice).await, recv(&mut alice).await);
    let (m2, stop) = if f1["type"] == "message" {
        (f1, f2)
    } else {
        (f2, f1)
    };
    assert_eq!(
        (m2["type"].as_str(), m2["seq"].as_i64()),
        (Some("message"), Some(2)),
        "{m2}"
    );
    assert_eq!(
        (stop["type"].as_str(), stop["typing"].as_bool()),
        (Some("typing"), Some(false)),
        "{stop}"
    );

    // unread counts and history
    send(&mut alice, text(DM, "a2", "how are you?")).await;
    assert_eq!(recv(&mut alice).await["seq"], 3);
    assert_eq!(recv(&mut bob).await["seq"], 3);
    send(&mut bob, json!({"type":"conversations"})).await;
    let c = recv(&mut bob).await;
    assert_eq!(
        c,
        json!({"type":"conversations","items":[{"id":DM,"last_seq":3,"unread":1,"active":true}]})
    );
    send(&mut bob, json!({"type":"history","conversation":DM})).await;
    let h = recv(&mut bob).await;
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"]["text"].as_str())
        .collect();
    assert_eq!(texts, ["hello bob", "hi alice", "how are you?"]);

    // presence: online while connected; bob asked, so alice leaving is pushed
    send(&mut bob, json!({"type":"presence","login":"alice"})).await;
    assert_eq!(
        recv(&mut bob).await,
        json!({"type":"presence","login":"alice","state":"online"})
    );
    drop(alice);
    let last = recv(&mut bob).await;
    assert_eq!(last["type"], "presence", "{last}");
    assert_eq!(last["state"], "last_seen", "{last}");
    assert!(
        last["at"].as_i64().unwrap_or(0) > 1_700_000_000_000,
        "{last}"
    );
    // and her coming back is pushed too
    let mut alice = connect(addr, "alice-dev2").await;
    send(
        &mut alice,
        json!({"type":"auth","login":"alice","password":"correct horse"}),
    )
    .await;
    assert_eq!(recv(&mut alice).await["type"], "welcome");
    send(&mut alice, json!({"type":"sync"})).await;
    assert_eq!(
        recv(&mut bob).await,
        json!({"type":"presence","login":"alice","state":"online"})
    );
}

/// Carol is not in Alice and Bob's conversation: she can neither read nor
/// write it, and their messages never reach her.
#[tokio::test]
async fn one_user_cannot_read_or_write_anothers_conversation() {
    let (addr, _stop, _dir) = start().await;
    let mut alice = account(addr, "alice").await;
    let mut bob = account(addr, "bob").await;
    let mut carol = account(addr, "carol").await;
    send(&mut alice, text(DM, "a1", "secret")).await;
    assert_eq!(recv(&mut alice).await["type"], "ack");
    assert_eq!(recv(&mut bob).await["type"], "message");
    quiet(&mut carol).await;

    for (frame, client_id) in [
        (json!({"type":"history","conversation":DM}), None),
        (text(DM, "c1", "let me in"), Some("c1")),
        (json!({"type":"read","conversation":DM,"seq":1}), None),
        (json!({"type":"receipts","conversation":DM,"seq":1}), None),
        (json!({"type":"typing","conversation":DM,"on":true}), None),
        (
            json!({"type":"edit","conversation":DM,"client_id":"c2","target":1,
                   "body":{"kind":"text","text":"mine now"}}),
            Some("c2"),
        ),
        (
            json!({"type":"delete","conversation":DM,"client_id":"c3","target":1}),
            Some("c3"),
        ),
    ] {
        send(&mut carol, frame.clone()).await;
        let e = recv(&mut carol).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "{frame} -> {e}"
        );
        assert_eq!(e["client_id"].as_str(), client_id, "{e}");
    }
    // bob even cannot edit alice's message
    send(
        &mut bob,
        json!({"type":"edit","conversation":DM,"client_id":"b9","target":1,
               "body":{"kind":"text","text":"forged"}}),
    )
    .await;
    assert_eq!(recv(&mut bob).await["code"], "forbidden");

    // carol's own stream and list stay empty
    send(&mut carol, json!({"type":"sync","since":0})).await;
    let b = recv(&mut carol).await;
    assert_eq!(b["messages"], json!([]), "{b}");
    send(&mut carol, json!({"type":"conversations"})).await;
    assert_eq!(recv(&mut carol).await["items"], json!([]));
    // nothing carol tried reached alice or bob
    quiet(&mut alice).await;
    quiet(&mut bob).await;
    send(&mut alice, json!({"type":"history","conversation":DM})).await;
    let h = recv(&mut alice).await;
    assert_eq!(h["messages"].as_array().map(Vec::len), Some(1), "{h}");
    assert_eq!(h["messages"][0]["body"]["text"], "secret");
}

/// Malformed chat frames get error frames and the socket keeps working;
/// guests and sockets without a login cannot chat.
#[tokio::test]
async fn malformed_chat_frames_get_errors_and_socket_stays_usable() {
    let (addr, _stop, _dir) = start().await;

    let mut anon = connect(addr, "anon").await;
    send(&mut anon, json!({"type":"sync"})).await;
    let e = recv(&mut anon).await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_str()),
        (Some("not-logged-in"), Some("sync")),
        "{e}"
    );
    send(&mut anon, json!({"type":"hello","login":"guesty"})).await;
    assert_eq!(recv(&mut anon).await["guest"], true);
    send(&mut anon, text("dm:alice+guesty", "g1", "hi")).await;
    assert_eq!(recv(&mut anon).await["code"], "account-required");

    let mut alice = account(addr, "alice").await;
    let bad = [
        (json!({"type":"send"}), "bad_frame"),
        (
            json!({"type":"send","conversation":"dm:bob+alice","client_id":"x1","body":{"kind":"text","text":"hi"}}),
            "bad_frame",
        ),
        (
            json!({"type":"send","conversation":DM,"client_id":"has space","body":{"kind":"text","text":"hi"}}),
            "bad_frame",
        ),
        (
            json!({"type":"send","conversation":DM,"client_id":"x2","body":{"kind":"sticker"}}),
            "bad_frame",
        ),
        (
            json!({"type":"read","conversation":DM,"seq":"one"}),
            "bad_frame",
        ),
        (json!({"type":"sync","limit":5,"extra":true}), "bad_frame"),
        (json!({"type":"presence","login":"NOT VALID"}), "bad_frame"),
        (
            json!({"type":"send","conversation":DM,"client_id":"x3","body":{"kind":"text","text":"   "}}),
            "invalid",
        ),
        (
            json!({"type":"send","conversation":DM,"client_id":"x4",
                   "body":{"kind":"location","lat":95.0,"lon":0.0}}),
            "invalid",
        ),
        (
            json!({"type":"send","conversation":DM,"client_id":"x5",
                   "body":{"kind":"text","text":"a".repeat(20_000)}}),
            "invalid",
        ),
    ];
    for (frame, code) in bad {
        send(&mut alice, frame.clone()).await;
        let e = recv(&mut alice).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{frame} -> {e}"
        );
    }
    // over the 64 KiB frame limit: refused before parsing
    send(&mut alice, text(DM, "x6", &"a".repeat(70_000))).await;
    assert_eq!(recv(&mut alice).await["code"], "too-large");
    // still usable: a good message and a location are stored
    send(&mut alice, text(DM, "ok1", "still here")).await;
    let ack = recv(&mut alice).await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_i64()),
        (Some("ack"), Some(1)),
        "{ack}"
    );
    send(
        &mut alice,
        json!({"type":"send","conversation":DM,"client_id":"ok2",
               "body":{"kind":"location","lat":48.8584,"lon":2.2945,"accuracy_m":12.0,"label":"Eiffel"}}),
    )
    .await;
    assert_eq!(recv(&mut alice).await["seq"], 2);
    // and the call protocol on the same socket still answers
    send(&mut alice, json!({"type":"search","query":"echo"})).await;
    assert_eq!(recv(&mut alice).await["type"], "results");
}

/// Two devices of one user: a message reaches both, and reading on one
/// clears the other (`read_elsewhere`).
#[tokio::test]
async fn two_devices_of_one_user_stay_in_sync() {
    let (addr, _stop, _dir) = start().await;
    let mut alice = account(addr, "alice").await;
    let mut bob1 = account(addr, "bob").await;
    let mut bob2 = connect(addr, "bob-dev2").await;
    send(
        &mut bob2,
        json!({"type":"auth","login":"bob","password":"correct horse"}),
    )
    .await;
    assert_eq!(recv(&mut bob2).await["type"], "welcome");
    send(&mut bob2, json!({"type":"sync"})).await;
    assert_eq!(recv(&mut bob2).await["type"], "batch");

    send(&mut alice, text(DM, "a1", "to both")).await;
    assert_eq!(recv(&mut alice).await["type"], "ack");
    let m1 = recv(&mut bob1).await;
    let m2 = recv(&mut bob2).await;
    assert_eq!(m1["body"], m2["body"]);
    send(&mut bob1, json!({"type":"read","conversation":DM,"seq":1})).await;
    assert_eq!(recv(&mut bob1).await["type"], "ok");
    assert_eq!(
        recv(&mut bob2).await,
        json!({"type":"read_elsewhere","conversation":DM,"read":1})
    );
    assert_eq!(recv(&mut alice).await["read"], 1);
}

/// One HTTP/1.1 request over a fresh connection; returns (status, head, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write head");
    // the server may answer (413) before reading a big body
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP head");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, head, out[split + 4..].to_vec())
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode png");
    out
}

/// Uploads need a session token, a size within the limit and bytes that
/// match the declared type; an image gets a thumbnail; both are served
/// back with their checked type, and an image message can name them.
#[tokio::test]
async fn image_upload_with_thumbnail_and_limits() {
    let (addr, _stop, _dir) = start().await;
    let mut alice = connect(addr, "alice-dev1").await;
    send(
        &mut alice,
        json!({"type":"register","login":"alice","password":"correct horse"}),
    )
    .await;
    let w = recv(&mut alice).await;
    let token = w["token"]
        .as_str()
        .expect("accounts get a session token")
        .to_owned();
    let auth = format!("Bearer {token}");
    let picture = png(640, 400);

    let (status, head, _) = http(
        addr,
        "POST",
        "/v1/uploads",
        &[("Content-Type", "image/png")],
        &picture,
    )
    .await;
    assert_eq!(status, 401, "{head}");
    let (status, _, _) = http(
        addr,
        "POST",
        "/v1/uploads",
        &[
            ("Content-Type", "image/png"),
            ("Authorization", "Bearer nope"),
        ],
        &picture,
    )
    .await;
    assert_eq!(status, 401);
    for (ct, body, want) in [
        ("text/html", &b"<script>alert(1)</script>"[..], 415),
        ("image/jpeg", &picture[..], 415),
        ("application/pdf", &b"not a pdf"[..], 415),
        ("image/png", &b""[..], 400),
        ("image/png", &picture[..40], 422),
    ] {
        let (status, _, body) = http(
            addr,
            "POST",
            "/v1/uploads",
            &[("Content-Type", ct), ("Authorization", &auth)],
            body,
        )
        .await;
        assert_eq!(status, want, "{ct}: {}", String::from_utf8_lossy(&body));
    }
    let huge = vec![0u8; 17 * 1024 * 1024];
    let (status, _, _) = http(
        addr,
        "POST",
        "/v1/uploads",
        &[("Content-Type", "image/png"), ("Authorization", &auth)],
        &huge,
    )
    .await;
    assert_eq!(status, 413);

    let (status, _, body) = http(
        addr,
        "POST",
        "/v1/uploads",
        &[("Content-Type", "image/png"), ("Authorization", &auth)],
        &picture,
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let up: Value = serde_json::from_slice(&body).expect("json answer");
    assert_eq!(
        (up["mime"].as_str(), up["kind"].as_str()),
        (Some("image/png"), Some("image"))
    );
    assert_eq!(up["size"].as_u64(), Some(picture.len() as u64));
    let id = up["upload_id"].as_str().expect("upload id");
    let thumb = up["thumbnail_id"].as_str().expect("a png gets a thumbnail");

    let (status, head, bytes) = http(addr, "GET", &format!("/v1/uploads/{id}"), &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: image/png"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("x-content-type-options: nosniff"),
        "{head}"
    );
    assert_eq!(bytes, picture);
    let (status, head, bytes) = http(addr, "GET", &format!("/v1/uploads/{thumb}"), &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: image/jpeg"),
        "{head}"
    );
    let t = image::load_from_memory(&bytes).expect("thumbnail decodes");
    assert_eq!((t.width(), t.height()), (320, 200));
    for missing in [
        "up_00000000000000000000000000000000",
        "..%2F..%2Fchat.sqlite",
        "x",
    ] {
        let (status, _, _) = http(addr, "GET", &format!("/v1/uploads/{missing}"), &[], b"").await;
        assert_eq!(status, 404, "{missing}");
    }

    // a PDF is a file: stored, no thumbnail, served as a download
    let (status, _, body) = http(
        addr,
        "POST",
        "/v1/uploads",
        &[
            ("Content-Type", "application/pdf"),
            ("Authorization", &auth),
        ],
        b"%PDF-1.7\n%%EOF\n",
    )
    .await;
    assert_eq!(status, 201);
    let pdf: Value = serde_json::from_slice(&body).expect("json answer");
    assert_eq!(pdf["kind"], "file");
    assert!(pdf.get("thumbnail_id").is_none(), "{pdf}");
    let (_, head, _) = http(
        addr,
        "GET",
        &format!(
            "/v1/uploads/{}",
            pdf["upload_id"].as_str().unwrap_or_default()
        ),
        &[],
        b"",
    )
    .await;
    assert!(
        head.to_ascii_lowercase()
            .contains("content-disposition: attachment"),
        "{head}"
    );

    // the image message reaches bob with its ids
    send(&mut alice, json!({"type":"sync"})).await;
    assert_eq!(recv(&mut alice).await["type"], "batch");
    let mut bob = account(addr, "bob").await;
    send(
        &mut alice,
        json!({"type":"send","conversation":DM,"client_id":"img1",
               "body":{"kind":"image","upload_id":id,"mime":"image/png","size":picture.len(),"thumbnail_id":thumb}}),
    )
    .await;
    assert_eq!(recv(&mut alice).await["type"], "ack");
    let m = recv(&mut bob).await;
    assert_eq!(
        (
            m["body"]["kind"].as_str(),
            m["body"]["upload_id"].as_str(),
            m["body"]["thumbnail_id"].as_str()
        ),
        (Some("image"), Some(id), Some(thumb)),
        "{m}"
    );
}

/// A second socket with the same device id takes the device over: the first
/// is told `chat-closed` and pushes go to the new one; the first socket's
/// next chat frame attaches it again.
#[tokio::test]
async fn a_device_id_reused_by_a_new_socket_takes_over() {
    let (addr, _stop, _dir) = start().await;
    let mut alice = account(addr, "alice").await;
    let mut old = account(addr, "bob").await;
    let mut new = connect(addr, "bob-dev1").await;
    send(
        &mut new,
        json!({"type":"auth","login":"bob","password":"correct horse"}),
    )
    .await;
    assert_eq!(recv(&mut new).await["type"], "welcome");
    send(&mut new, json!({"type":"sync"})).await;
    assert_eq!(recv(&mut new).await["type"], "batch");
    let e = recv(&mut old).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("chat-closed")),
        "{e}"
    );

    send(&mut alice, text(DM, "a1", "where are you?")).await;
    assert_eq!(recv(&mut alice).await["type"], "ack");
    assert_eq!(recv(&mut new).await["body"]["text"], "where are you?");
    quiet(&mut old).await;
    // bob is still online: the takeover did not count as leaving
    send(&mut alice, json!({"type":"presence","login":"bob"})).await;
    assert_eq!(recv(&mut alice).await["state"], "online");
}
