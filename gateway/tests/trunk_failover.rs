//! Interop: a company with two sites, each a real Kamailio with an
//! auto-answering baresip as extension 100. The dialplan routes `acme/sales`
//! to the `main` trunk with `failover: [backup]` and 1 s keep-alives.
//!
//! 1. Both sites up: the call rings the main site's phone.
//! 2. The main site dies (Kamailio and its phone stopped): a call placed
//!    right away gets no answer from `main`, moves to `backup` and is
//!    answered there; `namecall_trunk_failovers_total{trunk="acme/main"}` is 1.
//! 3. The keep-alive marks `main` down (`namecall_trunk_up` 0, admin API
//!    `down`); the next call goes straight to the backup site.
//! 4. The main site comes back on the same port with an empty location
//!    table: the gateway notices (OPTIONS answered), registers again at once
//!    (measured and printed; within 10 s), and calls go to the main site.
//! 5. Nothing leaks: no active call, no media socket, no SIP dialog and no
//!    SIP transaction (keep-alive OPTIONS aside) once the calls are over.
//!
//! A second test puts SIPp in front as a PBX that answers every INVITE
//! with 503: the call moves to the backup trunk at once.
//!
//! The real `namecall` binary is the gateway, driven over its WebSocket with
//! a real WebRTC offer (str0m), as in `call_leaks.rs`. Every wait is on a
//! state (a metric, a registration, a phone event), never a fixed sleep.

mod common;

use std::time::{Duration, Instant};

use common::{audio_offer, connect, recv_within, send};
use labkit::{Baresip, Gateway, Kamailio, SippUas, http_request, wait_for};
use serde_json::json;

const ACCOUNTS: &[(&str, &str)] = &[("trunk", "trunkpass"), ("100", "pass100")];

fn plan(main: &Kamailio, backup: &Kamailio) -> String {
    format!(
        "version: 1\n\
         tenant: acme\n\
         trunks:\n\
         \x20 main:\n\
         \x20   kind: register\n\
         \x20   registrar: {main}\n\
         \x20   username: trunk\n\
         \x20   password: trunkpass\n\
         \x20   realm: pbx.lab\n\
         \x20   domain: pbx.lab\n\
         \x20   keepalive: 1s\n\
         \x20   failover: [backup]\n\
         \x20 backup:\n\
         \x20   kind: register\n\
         \x20   registrar: {backup}\n\
         \x20   username: trunk\n\
         \x20   password: trunkpass\n\
         \x20   realm: pbx.lab\n\
         \x20   domain: pbx.lab\n\
         \x20   keepalive: 1s\n\
         names:\n\
         \x20 sales:\n\
         \x20   route: {{ dial: {{ trunk: main, extension: \"100\", timeout: 10s }} }}\n",
        main = main.addr(),
        backup = backup.addr(),
    )
}

/// Calls `acme/sales`; once answered, hangs up. Returns (answered, ended frame).
async fn one_call(ws: &mut common::Ws, id: &str) -> (bool, serde_json::Value) {
    send(
        ws,
        json!({"type":"call","id":id,"to":"acme/sales","sdp":audio_offer()}),
    )
    .await;
    let mut accepted = false;
    loop {
        // a call across a failover waits for the ring timeout (10 s) first
        let f = recv_within(ws, 60).await;
        match f["type"].as_str() {
            Some("accepted") => {
                accepted = true;
                send(ws, json!({"type":"hangup","id":id})).await;
            }
            Some("ended") => return (accepted, f),
            _ => {}
        }
    }
}

fn up_metric(trunk: &str) -> String {
    format!("namecall_trunk_up{{trunk=\"acme/{trunk}\"}}")
}

fn failovers_metric(trunk: &str) -> String {
    format!("namecall_trunk_failovers_total{{trunk=\"acme/{trunk}\"}}")
}

/// (active calls, media sockets, SIP dialogs, SIP transactions).
fn load(gw: &Gateway) -> (i64, i64, i64, i64) {
    (
        gw.metric("namecall_active_calls").unwrap_or(-1),
        gw.metric("namecall_media_sockets").unwrap_or(-1),
        gw.metric("namecall_sip_dialogs").unwrap_or(-1),
        gw.metric("namecall_sip_transactions").unwrap_or(-1),
    )
}

/// The admin API's view of trunk `name` (needs an API key for `acme`).
fn admin_trunk(gw: &Gateway, key: &str, name: &str) -> serde_json::Value {
    let auth = format!("Bearer {key}");
    let r = http_request(
        &gw.addr,
        "GET",
        "/v1/admin/trunks",
        &[("Authorization", auth.as_str())],
    )
    .expect("admin request");
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    v["trunks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name).cloned())
        .unwrap_or_else(|| panic!("trunk {name} listed: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_over_to_the_backup_site_and_come_back() {
    let mut main = Kamailio::start(ACCOUNTS).expect("main site kamailio");
    let backup = Kamailio::start(ACCOUNTS).expect("backup site kamailio");
    let wav = labkit::speech_wav("Extension one hundred.", 8000, "failover100").expect("wav");
    let main_phone = Baresip::start(&main, "100", "pass100", &wav).expect("main site phone");
    let backup_phone = Baresip::start(&backup, "100", "pass100", &wav).expect("backup site phone");
    let mut main_ctl = main_phone.control().expect("main phone control");
    let mut backup_ctl = backup_phone.control().expect("backup phone control");

    let root = tempfile::tempdir().expect("temp dir");
    let plans = root.path().join("plans");
    std::fs::create_dir_all(&plans).expect("plans dir");
    std::fs::write(plans.join("acme.yaml"), plan(&main, &backup)).expect("write plan");
    let data = root.path().join("data");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_namecall"));
    let gw = Gateway::start(bin, &data, &["--dialplans", &plans.to_string_lossy()])
        .expect("gateway starts");
    for (site, pbx) in [("main", &main), ("backup", &backup)] {
        wait_for(
            &format!("trunk registered at the {site} site"),
            Duration::from_secs(20),
            || (!pbx.contacts("trunk").is_empty()).then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(40)));
    }
    for t in ["main", "backup"] {
        gw.wait_metric(&up_metric(t), 1, Duration::from_secs(20))
            .unwrap_or_else(|m| panic!("trunk {t} up: {m}"));
    }
    let key = {
        // the admin API key is made with the CLI, as an admin would
        let out = std::process::Command::new(bin)
            .args(["apikey", "create", "acme", "--data-dir"])
            .arg(&data)
            .output()
            .expect("namecall apikey create");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert!(key.starts_with("nck_"), "api key printed: {key:?}");
    assert_eq!(admin_trunk(&gw, &key, "main")["state"], "up");

    let mut ws = connect(&gw.addr).await;
    send(
        &mut ws,
        json!({"type":"register","login":"failover-tester","password":"correct horse battery"}),
    )
    .await;
    assert_eq!(recv_within(&mut ws, 10).await["type"], "welcome");

    // 1. both sites up: the main site's phone answers
    let (ok, ended) = one_call(&mut ws, "c1").await;
    assert!(ok, "call 1 answered: {ended}\n{}", gw.log.tail(40));
    main_ctl
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
        .expect("the main site's phone took call 1");
    assert_eq!(gw.metric(&failovers_metric("main")), Some(0));

    // 2. the main site dies; a call placed at once fails over
    main.stop();
    drop(main_ctl);
    drop(main_phone);
    let t = Instant::now();
    let (ok, ended) = one_call(&mut ws, "c2").await;
    assert!(ok, "call 2 answered: {ended}\n{}", gw.log.tail(40));
    backup_ctl
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
        .expect("the backup site's phone took call 2");
    eprintln!("call across the failover answered after {:?}", t.elapsed());
    assert_eq!(gw.metric(&failovers_metric("main")), Some(1));

    // 3. the keep-alive marks main down (Timer F); calls skip it
    let t = Instant::now();
    gw.wait_metric(&up_metric("main"), 0, Duration::from_secs(60))
        .unwrap_or_else(|m| panic!("main marked down: {m}"));
    eprintln!("main trunk marked down {:?} after call 2", t.elapsed());
    let down = admin_trunk(&gw, &key, "main");
    assert_eq!(down["state"], "down", "{down}");
    assert!(down["last_change"].as_u64().is_some(), "{down}");
    assert_eq!(down["failovers"], 1, "{down}");
    assert_eq!(gw.metric(&up_metric("backup")), Some(1));
    let (ok, ended) = one_call(&mut ws, "c3").await;
    assert!(ok, "call 3 answered: {ended}\n{}", gw.log.tail(40));
    backup_ctl
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
        .expect("the backup site's phone took call 3");
    assert_eq!(
        gw.metric(&failovers_metric("main")),
        Some(1),
        "call 3 did not try the down trunk"
    );

    // 4. the main site comes back with an empty location table
    main.start_again().expect("main site kamailio starts again");
    let t = Instant::now();
    wait_for(
        "re-registration at the restarted main site",
        Duration::from_secs(10),
        || (!main.contacts("trunk").is_empty()).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(40)));
    let took = t.elapsed();
    eprintln!("trunk re-registered {took:?} after the main site came back");
    gw.wait_metric(&up_metric("main"), 1, Duration::from_secs(10))
        .unwrap_or_else(|m| panic!("main up again: {m}"));
    assert_eq!(admin_trunk(&gw, &key, "main")["state"], "up");
    let main_phone = Baresip::start(&main, "100", "pass100", &wav).expect("main site phone again");
    let mut main_ctl = main_phone.control().expect("main phone control");
    let (ok, ended) = one_call(&mut ws, "c4").await;
    assert!(ok, "call 4 answered: {ended}\n{}", gw.log.tail(40));
    main_ctl
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
        .expect("the main site's phone took call 4");
    assert!(
        backup_ctl
            .wait_event("CALL_ESTABLISHED", Duration::from_millis(500))
            .is_err(),
        "call 4 did not ring the backup site"
    );
    assert_eq!(gw.metric(&failovers_metric("main")), Some(1));

    // 5. nothing left behind: the failed INVITE to the dead site ended
    // (Timer B), answered INVITEs left Accepted state (Timer M, 32 s)
    let mut last = load(&gw);
    let end = Instant::now() + Duration::from_secs(90);
    while Instant::now() < end {
        last = load(&gw);
        if last == (0, 0, 0, 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        last,
        (0, 0, 0, 0),
        "(active calls, media sockets, sip dialogs, sip transactions but keep-alives)\n{}",
        gw.log.tail(40)
    );
    drop(backup_phone);
}

/// A PBX that answers 503 (SIPp, `tests/sipp/uas-503.xml`) behind an `ip`
/// trunk without keep-alive: the call is offered to the backup trunk at
/// once, without waiting for the ring timeout, and counted as a failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_moves_the_call_to_the_next_trunk() {
    let backup = Kamailio::start(ACCOUNTS).expect("backup site kamailio");
    let wav = labkit::speech_wav("Extension one hundred.", 8000, "failover100").expect("wav");
    let phone = Baresip::start(&backup, "100", "pass100", &wav).expect("backup site phone");
    let mut ctl = phone.control().expect("phone control");
    let pbx = SippUas::start("uas-503.xml", &[], Duration::from_secs(60)).expect("sipp starts");
    let port = pbx.port;
    let root = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "version: 1\n\
         tenant: acme\n\
         trunks:\n\
         \x20 main: {{ kind: ip, proxy: \"127.0.0.1:{port}\", keepalive: \"off\", failover: [backup] }}\n\
         \x20 backup:\n\
         \x20   kind: register\n\
         \x20   registrar: {backup}\n\
         \x20   username: trunk\n\
         \x20   password: trunkpass\n\
         \x20   domain: pbx.lab\n\
         names:\n\
         \x20 sales:\n\
         \x20   route: {{ dial: {{ trunk: main, extension: \"100\", timeout: 60s }} }}\n",
        backup = backup.addr(),
    );
    let gw = Gateway::start_with_plan(
        std::path::Path::new(env!("CARGO_BIN_EXE_namecall")),
        root.path(),
        "acme.yaml",
        &text,
    )
    .expect("gateway starts");
    wait_for(
        "trunk registered at the backup site",
        Duration::from_secs(20),
        || (!backup.contacts("trunk").is_empty()).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(40)));

    let mut ws = connect(&gw.addr).await;
    send(
        &mut ws,
        json!({"type":"register","login":"failover-tester","password":"correct horse battery"}),
    )
    .await;
    assert_eq!(recv_within(&mut ws, 10).await["type"], "welcome");
    let (ok, ended) = one_call(&mut ws, "c1").await;
    assert!(ok, "call answered: {ended}\n{}", gw.log.tail(40));
    ctl.wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
        .expect("the backup site's phone took the call");
    assert_eq!(gw.metric(&failovers_metric("main")), Some(1));
    assert!(
        gw.log.contains("503, 408 or no answer"),
        "moved on the 503, not on the 60 s ring timeout\n{}",
        gw.log.tail(40)
    );
    if let Err(out) = pbx.finish() {
        panic!("sipp saw INVITE, sent 503 and got the ACK:\n{out}");
    }
    drop(phone);
}
