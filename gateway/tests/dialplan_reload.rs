//! Dialplans change while the gateway runs: SIGHUP reloads the folder.
//!
//! A broken file is refused with `file:line:column` and changes nothing; a
//! new company's file publishes its name and registers its trunk at the
//! real Kamailio; deleting the file unregisters the trunk.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{connect, recv, send};
use labkit::{Gateway, Kamailio, LabGateway};
use serde_json::json;

fn hup(gw: &Gateway) {
    let pid = gw.pid().expect("running").to_string();
    let ok = Command::new("kill").args(["-HUP", &pid]).status();
    assert!(ok.map(|s| s.success()).unwrap_or(false), "kill -HUP works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_valid_folders_only() {
    let pbx =
        Kamailio::start(&[("trunk", "trunkpass"), ("globex", "globexpass")]).expect("kamailio");
    let data = tempfile::tempdir().expect("temp dir");
    let LabGateway { gw, plans, .. } =
        LabGateway::start(Path::new(env!("CARGO_BIN_EXE_namecall")), &pbx, data.path())
            .expect("gateway starts and registers its trunk");

    // a broken file: refused with file:line:column, nothing changes
    std::fs::write(
        plans.join("broken.yaml"),
        "version: 1\ntenant: broken\nnames:\n  sales:\n    route: { dial: { trunk: nowhere, extension: \"1\" } }\n",
    )
    .expect("write");
    hup(&gw);
    gw.log
        .wait_for("dialplans refused", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(40)));
    assert!(
        gw.log.lines().iter().any(|l| l.contains("broken.yaml:5:")),
        "the error names file:line:column:\n{}",
        gw.log.tail(20)
    );
    assert!(
        !pbx.contacts("trunk").is_empty(),
        "acme's trunk stays registered"
    );

    // a new company: its trunk registers, its name is searchable
    std::fs::remove_file(plans.join("broken.yaml")).expect("rm");
    let globex = format!(
        "version: 1\ntenant: globex\ndisplay_name: Globex Corporation\ntrunks:\n  main:\n    kind: register\n    registrar: {}\n    username: globex\n    password: globexpass\n    domain: pbx.lab\nnames:\n  sales:\n    display_name: Globex Sales\n    route: {{ dial: {{ trunk: main, extension: \"100\" }} }}\n",
        pbx.addr()
    );
    std::fs::write(plans.join("globex.yaml"), globex).expect("write");
    hup(&gw);
    labkit::wait_for("globex trunk registered", Duration::from_secs(20), || {
        (!pbx.contacts("globex").is_empty()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(40)));
    let mut ws = connect(&gw.addr).await;
    send(&mut ws, json!({"type":"search","query":"globex"})).await;
    let results = recv(&mut ws).await;
    let names: Vec<&str> = results["hits"]
        .as_array()
        .map(|h| h.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(names.contains(&"globex/sales"), "{results}");
    assert!(
        !pbx.contacts("trunk").is_empty(),
        "acme's unchanged trunk kept its binding"
    );

    // the company leaves: its trunk unregisters
    std::fs::remove_file(plans.join("globex.yaml")).expect("rm");
    hup(&gw);
    labkit::wait_for("globex trunk unregistered", Duration::from_secs(20), || {
        pbx.contacts("globex").is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", gw.log.tail(40)));
    assert!(!pbx.contacts("trunk").is_empty());
}
