//! Done-when 5 of the messenger: Web Push. A local push service (axum on
//! 127.0.0.1) stands in for the browser vendor's; the test plays the
//! browser's push subscription, holding its P-256 private key and auth
//! secret, decrypts every `aes128gcm` body (RFC 8291, written here
//! independently of the gateway's code) and checks the VAPID header
//! (RFC 8292) against the key served at `GET /v1/push/vapid`.
//!
//! Checked: no push while the recipient has a device connected; a push per
//! post once it has none; no preview text until the user turns previews on.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Ws, connect_device, recv, recv_type, send};
use gateway::config::ServeConfig;
use hkdf::Hkdf;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const DM: &str = "dm:alice+bob";

async fn start_gateway() -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // for_tests allows the http:// endpoint of the local push service
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

/// One POST the push service received.
#[derive(Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A push service on loopback: every POST to `/push/{id}` is recorded and
/// answered 201 Created (RFC 8030 §5).
async fn start_push_service() -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new()
        .route(
            "/push/{id}",
            axum::routing::post(
                |State(tx): State<mpsc::UnboundedSender<Received>>,
                 uri: axum::http::Uri,
                 headers: HeaderMap,
                 body: axum::body::Bytes| async move {
                    let _ = tx.send(Received {
                        path: uri.path().to_owned(),
                        headers,
                        body: body.to_vec(),
                    });
                    StatusCode::CREATED
                },
            ),
        )
        .with_state(tx);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("push service runs");
    });
    (addr, rx)
}

/// `GET path` over a raw HTTP/1.1 connection; the body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("read");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_owned())
}

/// The browser side of a subscription: its key pair and auth secret.
struct Browser {
    secret: SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Self {
        let secret = loop {
            if let Ok(k) = SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        Self {
            secret,
            auth: rand::random(),
        }
    }

    fn public(&self) -> Vec<u8> {
        self.secret
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// RFC 8291 §3.4 / RFC 8188 §2, receiver side, one record.
    fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        assert!(body.len() > 86 + 16, "body too short: {}", body.len());
        let salt = &body[..16];
        let rs = u32::from_be_bytes(body[16..20].try_into().expect("4 bytes"));
        assert!(rs >= 18, "record size {rs}");
        let idlen = usize::from(body[20]);
        assert_eq!(idlen, 65, "keyid is the sender's uncompressed P-256 key");
        let as_public = &body[21..21 + idlen];
        let sealed = &body[21 + idlen..];
        assert!(sealed.len() <= rs as usize, "one record only");

        let peer = PublicKey::from_sec1_bytes(as_public).expect("sender key on the curve");
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(&self.public());
        info.extend_from_slice(as_public);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(&self.auth), shared.raw_secret_bytes().as_slice())
            .expand(&info, &mut ikm)
            .expect("ikm");
        let hk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        hk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
            .expect("cek");
        hk.expand(b"Content-Encoding: nonce\0", &mut nonce)
            .expect("nonce");
        let mut plain = Aes128Gcm::new_from_slice(&cek)
            .expect("key")
            .decrypt(Nonce::from_slice(&nonce), sealed)
            .expect("the payload decrypts with the subscription keys");
        // strip padding: trailing zeros, then the last-record delimiter 2
        while plain.last() == Some(&0) {
            plain.pop();
        }
        assert_eq!(plain.pop(), Some(2), "last-record delimiter");
        plain
    }
}

/// Checks the push request's headers; returns the decrypted JSON.
fn check_push(r: &Received, browser: &Browser, vapid_public: &str, push_addr: SocketAddr) -> Value {
    let h = |n: &str| {
        r.headers
            .get(n)
            .unwrap_or_else(|| panic!("{n} header"))
            .to_str()
            .expect("ascii header")
            .to_owned()
    };
    let ttl: u64 = h("ttl").parse().expect("TTL is a number");
    assert!(ttl > 0, "TTL {ttl}");
    assert_eq!(h("content-encoding"), "aes128gcm");

    // Authorization: vapid t=<jwt>, k=<public key>
    let auth = h("authorization");
    let rest = auth.strip_prefix("vapid ").expect("vapid scheme");
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("t=") {
            t = Some(v.to_owned());
        } else if let Some(v) = part.strip_prefix("k=") {
            k = Some(v.to_owned());
        }
    }
    let (jwt, k) = (t.expect("t="), k.expect("k="));
    assert_eq!(k, vapid_public, "k is the served VAPID key");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact serialization");
    let header: Value =
        serde_json::from_slice(&B64.decode(parts[0]).expect("b64")).expect("JWT header");
    assert_eq!(header["alg"], "ES256");
    let claims: Value =
        serde_json::from_slice(&B64.decode(parts[1]).expect("b64")).expect("JWT claims");
    assert_eq!(claims["aud"], format!("http://{push_addr}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(exp > now && exp <= now + 24 * 3600, "exp {exp} now {now}");
    assert!(
        claims["sub"]
            .as_str()
            .is_some_and(|s| s.starts_with("mailto:") || s.starts_with("https:")),
        "sub {}",
        claims["sub"]
    );
    let vk = VerifyingKey::from_sec1_bytes(&B64.decode(&k).expect("b64")).expect("P-256 key");
    let sig = Signature::from_slice(&B64.decode(parts[2]).expect("b64")).expect("r||s");
    vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("the JWT is signed with the served VAPID key");

    serde_json::from_slice(&browser.decrypt(&r.body)).expect("payload is JSON")
}

async fn login(addr: SocketAddr, who: &str, device: &str, register: bool) -> Ws {
    let mut ws = connect_device(addr, device).await;
    let kind = if register { "register" } else { "auth" };
    send(
        &mut ws,
        json!({"type":kind,"login":who,"password":"correct horse"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "welcome");
    send(&mut ws, json!({"type":"sync"})).await;
    loop {
        if recv_type(&mut ws, "batch").await["more"] == false {
            break;
        }
    }
    ws
}

async fn post(ws: &mut Ws, client_id: &str, text: &str) -> i64 {
    send(
        ws,
        json!({"type":"send","conversation":DM,"client_id":client_id,
               "body":{"kind":"text","text":text}}),
    )
    .await;
    let ack = recv_type(ws, "ack").await;
    assert_eq!(ack["client_id"], client_id);
    ack["seq"].as_i64().expect("seq")
}

/// Closes `ws` and waits until the gateway has seen bob's last device go
/// (alice watches bob's presence).
async fn go_offline(mut ws: Ws, watcher: &mut Ws) {
    ws.close(None).await.expect("close");
    drop(ws);
    loop {
        let p = recv_type(watcher, "presence").await;
        if p["login"] == "bob" && p["state"] == "last_seen" {
            return;
        }
    }
}

async fn next_push(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a push within 10 s")
        .expect("push service running")
}

#[tokio::test]
async fn web_push_reaches_an_offline_browser_encrypted() {
    let (addr, _stop, _dir) = start_gateway().await;
    let (push_addr, mut pushes) = start_push_service().await;

    let (status, body) = http_get(addr, "/v1/push/vapid").await;
    assert_eq!(status, 200, "{body}");
    let vapid: Value = serde_json::from_str(&body).expect("JSON");
    let vapid_public = vapid["public_key"].as_str().expect("public_key").to_owned();
    let raw = B64.decode(&vapid_public).expect("base64url");
    assert_eq!(raw.len(), 65, "uncompressed P-256 point");

    // the web client's service worker is served from the root (its scope)
    let (status, sw) = http_get(addr, "/sw.js").await;
    assert_eq!(status, 200);
    assert!(sw.contains("showNotification"), "{sw}");

    let browser = Browser::new();
    let mut alice = login(addr, "alice", "alice-phone", true).await;
    let mut bob = login(addr, "bob", "bob-laptop", true).await;

    // bad subscriptions are refused with an error frame, the socket stays
    send(
        &mut bob,
        json!({"type":"push_subscribe","endpoint":"ftp://x/y","p256dh":"AA","auth":"AA"}),
    )
    .await;
    assert_eq!(recv_type(&mut bob, "error").await["code"], "invalid");

    send(
        &mut bob,
        json!({"type":"push_subscribe",
               "endpoint": format!("http://{push_addr}/push/bob-laptop"),
               "p256dh": B64.encode(browser.public()),
               "auth": B64.encode(browser.auth)}),
    )
    .await;
    assert_eq!(recv(&mut bob).await["type"], "ok");

    // 1. bob is online: the message goes over his socket, no push
    let seq1 = post(&mut alice, "m1", "while you are here").await;
    let got = recv_type(&mut bob, "message").await;
    assert_eq!(got["seq"], seq1);

    // alice (now a contact) watches bob's presence, to know when the
    // gateway saw him leave
    send(&mut alice, json!({"type":"presence","login":"bob"})).await;
    assert_eq!(recv_type(&mut alice, "presence").await["state"], "online");
    go_offline(bob, &mut alice).await;

    // 2. bob is offline: one push, with no preview text
    let seq2 = post(&mut alice, "m2", "the secret plan").await;
    let r = next_push(&mut pushes).await;
    assert_eq!(r.path, "/push/bob-laptop");
    let notice = check_push(&r, &browser, &vapid_public, push_addr);
    assert_eq!(
        notice,
        json!({"conversation": DM, "seq": seq2, "sender": "alice"}),
        "no preview unless allowed; and the online message {seq1} was not pushed"
    );
    assert!(
        !String::from_utf8_lossy(&r.body).contains("secret"),
        "the body is encrypted"
    );

    // 3. bob allows previews; the next push carries the text
    let mut bob = login(addr, "bob", "bob-laptop", false).await;
    send(&mut bob, json!({"type":"push_preview","on":true})).await;
    assert_eq!(recv_type(&mut bob, "ok").await["type"], "ok");
    go_offline(bob, &mut alice).await;
    let seq3 = post(&mut alice, "m3", "lunch at noon?").await;
    let r = next_push(&mut pushes).await;
    let notice = check_push(&r, &browser, &vapid_public, push_addr);
    assert_eq!(
        notice,
        json!({"conversation": DM, "seq": seq3, "sender": "alice",
               "preview": "lunch at noon?"})
    );

    // 4. unsubscribed: no push for the next message. The message after it
    // goes to a new subscription; the first push seen must be that one.
    let mut bob = login(addr, "bob", "bob-laptop", false).await;
    send(&mut bob, json!({"type":"push_unsubscribe"})).await;
    assert_eq!(recv_type(&mut bob, "ok").await["type"], "ok");
    let other = Browser::new();
    let mut bob2 = login(addr, "bob", "bob-tablet", false).await;
    send(
        &mut bob2,
        json!({"type":"push_subscribe",
               "endpoint": format!("http://{push_addr}/push/bob-tablet"),
               "p256dh": B64.encode(other.public()),
               "auth": B64.encode(other.auth)}),
    )
    .await;
    assert_eq!(recv_type(&mut bob2, "ok").await["type"], "ok");
    bob.close(None).await.expect("close");
    drop(bob);
    go_offline(bob2, &mut alice).await;
    let seq4 = post(&mut alice, "m4", "still there?").await;
    let r = next_push(&mut pushes).await;
    assert_eq!(r.path, "/push/bob-tablet", "the laptop unsubscribed");
    let notice = check_push(&r, &other, &vapid_public, push_addr);
    assert_eq!(notice["seq"], seq4);
    // one more round trip, so a stray push for m4 would have arrived
    let seq5 = post(&mut alice, "m5", "hello?").await;
    let r = next_push(&mut pushes).await;
    assert_eq!(r.path, "/push/bob-tablet", "the laptop unsubscribed");
    assert_eq!(
        check_push(&r, &other, &vapid_public, push_addr)["seq"],
        seq5
    );
    assert!(pushes.try_recv().is_err(), "exactly one push per post");
}
