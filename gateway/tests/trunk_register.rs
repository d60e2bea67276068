//! Interop: the gateway's trunk registers to a real Kamailio (digest auth),
//! refreshes before expiry, re-registers after Kamailio restarts, and
//! unregisters on shutdown. Kamailio is the company's registrar; nothing
//! here is mocked.

use std::time::Duration;

use gateway::sip::{self, trunks};
use labkit::Kamailio;
use tokio::sync::mpsc;

/// The example company's dialplan, pointed at this test's Kamailio.
fn acme_plan(pbx: &Kamailio) -> dialplans::Dialplans {
    let path = labkit::workspace_root().join("dialplans/examples/acme.yaml");
    let text = std::fs::read_to_string(&path).expect("read acme.yaml");
    let text = text.replace("127.0.0.1:5070", &pbx.addr().to_string());
    dialplans::Dialplans::from_sources([("acme.yaml", text.as_str())]).expect("acme.yaml is valid")
}

async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Registers with a 10 s expiry (Kamailio's minimum), sees a refresh, then
/// restarts Kamailio (which forgets every binding) and sees the binding back
/// within 10 s; finally unregisters on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_registers_refreshes_and_survives_pbx_restart() {
    let mut pbx = Kamailio::start(&[("trunk", "trunkpass"), ("100", "pass100")]).expect("kamailio");
    let (itx, _irx) = mpsc::channel(8);
    let sip = sip::spawn("127.0.0.1:0".parse().unwrap(), None, itx)
        .await
        .expect("sip socket");
    let started = trunks::start_registrations(&sip, &acme_plan(&pbx), 10).await;
    assert_eq!(started, vec!["acme/main".to_string()]);

    let state = || sip.trunks.get("acme/main").unwrap_or_default();
    wait_until("first registration", 10, || state().registered).await;
    let contacts = pbx.contacts("trunk");
    assert_eq!(
        contacts.len(),
        1,
        "kamailio has the trunk's binding: {contacts:?}"
    );
    assert!(
        contacts[0].contains(&sip.local_addr.port().to_string()),
        "{contacts:?}"
    );

    // refresh at about 80% of the 10 s granted
    wait_until("a refresh", 15, || state().registrations >= 2).await;

    pbx.restart().expect("kamailio restarts");
    assert!(
        pbx.contacts("trunk").is_empty(),
        "kamailio forgot the binding"
    );
    let t = std::time::Instant::now();
    wait_until("re-registration after restart", 10, || {
        !pbx.contacts("trunk").is_empty()
    })
    .await;
    eprintln!("re-registered {:?} after the restart", t.elapsed());

    sip.shutdown().await;
    assert!(
        pbx.contacts("trunk").is_empty(),
        "unregistered on shutdown: {:?}",
        pbx.contacts("trunk")
    );
}

/// A wrong password is refused by Kamailio and reported, with no retry storm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_reported() {
    let pbx = Kamailio::start(&[("trunk", "other-password")]).expect("kamailio");
    let (itx, _irx) = mpsc::channel(8);
    let sip = sip::spawn("127.0.0.1:0".parse().unwrap(), None, itx)
        .await
        .expect("sip socket");
    trunks::start_registrations(&sip, &acme_plan(&pbx), 60).await;
    let state = || sip.trunks.get("acme/main").unwrap_or_default();
    wait_until("a failure", 10, || state().last_error.is_some()).await;
    let s = state();
    assert!(!s.registered);
    assert!(
        s.last_error.as_deref().unwrap_or("").starts_with("401"),
        "{s:?}"
    );
    assert!(pbx.contacts("trunk").is_empty());
}
