//! Chat with a company over SIP MESSAGE, against real peers: Kamailio as
//! the company's PBX (digest auth, it relays MESSAGE like any request),
//! baresip registered to it as extension 100, and the real `namecall`
//! binary with `dialplans/examples/acme.yaml` (`acme/sales` chats with 100).
//!
//! A WebSocket client logged in as alice writes to `acme/sales`; baresip
//! shows the text on its console and alice gets `delivered`. baresip answers
//! with its `message` command (to `sip:alice@<pbx>`: Kamailio hands names it
//! does not know to the gateway's registered trunk) and the answer lands in
//! alice's conversation with `acme/sales`. Refusals are checked with raw
//! MESSAGEs sent straight to the gateway from the PBX's address.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::{Ws, recv_type, send};
use labkit::{Baresip, Kamailio, LabGateway};
use serde_json::{Value, json};

const SALES: &str = "co:alice+acme/sales";

struct Lab {
    pbx: Kamailio,
    phone: Baresip,
    console: labkit::Log,
    gw: labkit::Gateway,
    _data: tempfile::TempDir,
}

fn lab() -> Lab {
    let pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let wav = labkit::speech_wav("Extension one hundred.", 8000, "ext100").expect("wav");
    let peer = format!("sip:alice@{}", pbx.addr());
    let phone =
        Baresip::start_messaging(&pbx, "100", "pass100", &wav, &peer).expect("baresip starts");
    let console = phone.console().expect("baresip console");
    let data = tempfile::tempdir().expect("temp dir");
    let gw = LabGateway::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        &pbx,
        data.path(),
    )
    .expect("gateway starts and registers its trunk")
    .gw;
    Lab {
        pbx,
        phone,
        console,
        gw,
        _data: data,
    }
}

/// A client socket that keeps frames it was not asked for yet.
struct Sock {
    ws: Ws,
    backlog: Vec<Value>,
}

impl Sock {
    async fn send(&mut self, v: Value) {
        send(&mut self.ws, v).await;
    }

    /// The first frame of `kind` (earlier ones of other kinds stay queued),
    /// within `secs` seconds; the peers' logs on failure.
    async fn expect(&mut self, kind: &str, secs: u64, lab: &Lab) -> Value {
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(i) = self.backlog.iter().position(|f| f["type"] == kind) {
                return self.backlog.remove(i);
            }
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                panic!(
                    "no {kind} frame within {secs} s (saw {:?})\n--- gateway ---\n{}\n--- kamailio ---\n{}\n--- baresip ---\n{}",
                    self.backlog,
                    lab.gw.log.tail(40),
                    lab.pbx.log.tail(30),
                    lab.phone.log.tail(20)
                );
            }
            let more = common::drain_for(&mut self.ws, left.as_millis().min(200) as u64).await;
            self.backlog.extend(more);
        }
    }

    /// Frames that arrive within `ms`, plus the queued ones.
    async fn rest(&mut self, ms: u64) -> Vec<Value> {
        let more = common::drain_for(&mut self.ws, ms).await;
        self.backlog.extend(more);
        std::mem::take(&mut self.backlog)
    }
}

/// Registers `login`, syncs, and returns the live socket.
async fn account(lab: &Lab, login: &str) -> Sock {
    let mut ws = common::connect_device(&lab.gw.addr, &format!("{login}-dev1")).await;
    send(
        &mut ws,
        json!({"type":"register","login":login,"password":"correct horse"}),
    )
    .await;
    let w = recv_type(&mut ws, "welcome").await;
    assert_eq!(w["guest"], false, "{w}");
    send(&mut ws, json!({"type":"sync"})).await;
    let b = recv_type(&mut ws, "batch").await;
    assert_eq!(b["more"], false, "{b}");
    Sock {
        ws,
        backlog: Vec::new(),
    }
}

fn text(conversation: &str, client_id: &str, t: &str) -> Value {
    json!({"type":"send","conversation":conversation,"client_id":client_id,
           "body":{"kind":"text","text":t}})
}

/// The gateway's SIP address, from the contact its trunk registered.
fn gateway_sip(lab: &Lab) -> String {
    let contact = lab
        .pbx
        .contacts("trunk")
        .into_iter()
        .next()
        .expect("trunk registered");
    contact
        .trim_start_matches('<')
        .split('@')
        .nth(1)
        .expect("contact has a host")
        .split([';', '>'])
        .next()
        .expect("host:port")
        .to_owned()
}

/// Sends one MESSAGE from 127.0.0.1 (the PBX's address, so admitted as the
/// trunk) straight to the gateway; returns the final status.
fn raw_message(lab: &Lab, to_user: &str, from_ext: &str, ctype: &str, body: &str) -> u16 {
    raw_message_to(&gateway_sip(lab), to_user, from_ext, ctype, body)
}

/// Sends one MESSAGE from 127.0.0.1 to `gw` (`host:port`); returns the final status.
fn raw_message_to(gw: &str, to_user: &str, from_ext: &str, ctype: &str, body: &str) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let me = sock.local_addr().expect("local addr");
    let id = rand_tag();
    let req = format!(
        "MESSAGE sip:{to_user}@{gw} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from_ext}@pbx.lab>;tag={id}\r\n\
         To: <sip:{to_user}@pbx.lab>\r\n\
         Call-ID: {id}@127.0.0.1\r\n\
         CSeq: 1 MESSAGE\r\n\
         Content-Type: {ctype}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.send_to(req.as_bytes(), gw).expect("send MESSAGE");
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("an answer to MESSAGE");
        let text = String::from_utf8_lossy(&buf[..n]);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        if status >= 200 {
            return status;
        }
    }
}

fn rand_tag() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Done-when 4: the desk phone receives the chat as SIP MESSAGE, the sender
/// sees `delivered`, and the phone's reply reaches the messenger user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_phone_receives_a_chat_and_its_reply_reaches_the_user() {
    let lab = lab();
    let mut alice = account(&lab, "alice").await;

    alice
        .send(text(
            SALES,
            "c1",
            "Hello sales, this is Alice. Is my order ready?",
        ))
        .await;
    let ack = alice.expect("ack", 5, &lab).await;
    assert_eq!(
        (ack["seq"].as_i64(), ack["conversation"].as_str()),
        (Some(1), Some(SALES))
    );

    // the PBX (baresip behind Kamailio) accepted it: delivered, from the company
    let receipt = alice.expect("receipt", 20, &lab).await;
    assert_eq!(receipt["conversation"], SALES, "{receipt}");
    assert_eq!(receipt["member"], "acme", "{receipt}");
    assert_eq!(receipt["delivered"], 1, "{receipt}");

    // and the desk phone shows the text, from alice's login on the gateway
    let line = lab
        .console
        .wait_for("Is my order ready?", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n--- console ---\n{}", lab.console.tail(20)));
    assert!(line.contains("sip:alice@"), "{line}");

    // the desk phone answers alice
    let mut ctl = lab.phone.control().expect("baresip control");
    ctl.message("Hi Alice, sales here: it ships today.")
        .expect("message command");
    let m = alice.expect("message", 20, &lab).await;
    assert_eq!(m["conversation"], SALES, "{m}");
    assert_eq!(m["sender"], "acme", "{m}");
    assert_eq!(m["seq"], 2, "{m}");
    assert_eq!(
        m["body"]["text"], "Hi Alice, sales here: it ships today.",
        "{m}"
    );

    // history has both, in order; the receipts view says the company has c1
    alice
        .send(json!({"type":"history","conversation":SALES}))
        .await;
    let h = alice.expect("history", 5, &lab).await;
    let senders: Vec<&str> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["sender"].as_str())
        .collect();
    assert_eq!(senders, ["alice", "acme"], "{h}");
    alice
        .send(json!({"type":"receipts","conversation":SALES,"seq":1}))
        .await;
    let r = alice.expect("receipts", 5, &lab).await;
    assert_eq!(r["delivered_to"], json!(["acme"]), "{r}");
}

/// What cannot reach a company is refused with a clear code and nothing is
/// stored; another user never sees the conversation; MESSAGEs to unknown
/// logins, or of other types than text, are refused by status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_clear_on_both_sides() {
    let lab = lab();
    let mut alice = account(&lab, "alice").await;
    let mut bob = account(&lab, "bob").await;

    // a name without a chat route, an unknown name, someone else's conversation
    for (conversation, code) in [
        ("co:alice+acme/support", "company_no_chat"),
        ("co:alice+acme/nothing", "company_not_found"),
        ("co:bob+acme/sales", "forbidden"),
    ] {
        alice.send(text(conversation, "x1", "hello?")).await;
        let e = alice.expect("error", 5, &lab).await;
        assert_eq!(e["code"], code, "{conversation}: {e}");
        assert_eq!(e["client_id"], "x1", "{e}");
    }
    alice.send(json!({"type":"conversations"})).await;
    let c = alice.expect("conversations", 5, &lab).await;
    assert_eq!(c["items"], json!([]), "nothing stored: {c}");

    // the trunk's MESSAGE to alice from extension 101 (no chat route): the
    // company's own conversation
    assert_eq!(
        raw_message(&lab, "alice", "101", "text/plain", "from the front desk"),
        200
    );
    let m = alice.expect("message", 5, &lab).await;
    assert_eq!(m["conversation"], "co:alice+acme", "{m}");
    assert_eq!(m["body"]["text"], "from the front desk", "{m}");

    // bob cannot read alice's company conversation
    bob.send(json!({"type":"history","conversation":"co:alice+acme"}))
        .await;
    let e = bob.expect("error", 5, &lab).await;
    assert_eq!(e["code"], "forbidden", "{e}");
    let leaked = bob.rest(300).await;
    assert!(leaked.iter().all(|f| f["type"] != "message"), "{leaked:?}");

    assert_eq!(raw_message(&lab, "nobody", "100", "text/plain", "hi"), 404);
    assert_eq!(raw_message(&lab, "100", "100", "text/plain", "hi"), 404);
    assert_eq!(
        raw_message(
            &lab,
            "alice",
            "100",
            "application/im-iscomposing+xml",
            "<x/>"
        ),
        415
    );
}

/// The web client: alice finds `acme/sales` by search, presses *Chat*, her
/// text reaches the desk phone and turns delivered, the phone's reply shows
/// in the same thread (tests/browser/company-chat.mjs in headless Chromium).
#[test]
fn web_client_chats_with_the_desk_phone() {
    let lab = lab();
    let text = "Hello from the browser, is the shop open on Sunday?";
    let reply = "Yes, from ten to four.";
    let script = labkit::workspace_root().join("gateway/tests/browser/company-chat.mjs");
    let url = format!("http://{}/", lab.gw.addr);
    let run = labkit::NodeRun::spawn(&script, &[url.as_str(), text, reply])
        .expect("node runs company-chat.mjs");
    let line = lab
        .console
        .wait_for(text, Duration::from_secs(60))
        .unwrap_or_else(|e| {
            panic!(
                "{e}\n--- node ---\n{}\n--- gateway ---\n{}",
                run.log.tail(30),
                lab.gw.log.tail(40)
            )
        });
    assert!(line.contains("sip:alice@"), "{line}");
    let mut ctl = lab.phone.control().expect("baresip control");
    ctl.message(reply).expect("message command");
    let verdict = run
        .verdict(Duration::from_secs(90))
        .expect("company-chat.mjs verdict");
    for check in [
        "signed_in",
        "thread_opened",
        "delivered",
        "listed",
        "reply_arrived",
        "reply_from_company",
    ] {
        assert_eq!(
            verdict["checks"][check],
            Value::Bool(true),
            "check {check} failed: {verdict:#}\n--- gateway ---\n{}",
            lab.gw.log.tail(40)
        );
    }
}

/// The gateway's MESSAGE admission without a PBX: the SIP task and the chat
/// in-process, raw MESSAGEs from 127.0.0.1. A source that is no company's
/// trunk peer gets 403; a trunk peer gets 403 for a login its company's
/// `inbound.allow` does not list, 200 (stored) for one it does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_messages_are_admitted_like_calls() {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dialplans/examples/acme.yaml"),
    )
    .expect("example dialplan");
    for (registrar, allow, to, want) in [
        ("192.0.2.1:5060", "[users]", "alice", 403),
        ("127.0.0.1:5070", "[bob]", "alice", 403),
        ("127.0.0.1:5070", "[bob]", "bob", 200),
    ] {
        let text = example
            .replace("127.0.0.1:5070", registrar)
            .replace("allow: [users]", &format!("allow: {allow}"));
        let plans =
            dialplans::Dialplans::from_sources([("acme.yaml", text.as_str())]).expect("valid plan");
        let plans = std::sync::Arc::new(gateway::plans::SharedPlans::new("unused", plans));
        let data = tempfile::tempdir().expect("temp dir");
        let chat = gateway::chat::Chat::open(data.path())
            .await
            .expect("chat store");
        let (itx, _irx) = tokio::sync::mpsc::channel(4);
        let (mtx, mrx) = tokio::sync::mpsc::channel(4);
        let sip = gateway::sip::spawn_with_messages("127.0.0.1:0".parse().unwrap(), None, itx, mtx)
            .await
            .expect("sip");
        tokio::spawn(gateway::chat::company::run_inbound(
            chat.clone(),
            sip.clone(),
            plans,
            None,
            mrx,
        ));
        let gw = sip.sent_by.clone();
        let target = to.to_owned();
        let status = tokio::task::spawn_blocking(move || {
            raw_message_to(&gw, &target, "100", "text/plain", "hello")
        })
        .await
        .expect("sender thread");
        assert_eq!(
            status, want,
            "registrar {registrar}, allow {allow}, to {to}"
        );
        let stored = chat
            .service()
            .store()
            .conversations(&bridges::Login::parse(to).expect("login"))
            .await
            .expect("conversations");
        assert_eq!(stored.len(), usize::from(want == 200), "{stored:?}");
    }
}
