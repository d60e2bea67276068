//! The company admin's tools: API keys from the CLI, `/v1/admin/trunks`
//! behind them, and `namecall check-dialplans` for YAML files.
//!
//! The gateway registers the lab company's trunk at a real Kamailio; the
//! admin creates a key with `namecall apikey create acme` (next to the
//! running gateway, same data directory), reads the trunk's state with it,
//! and revokes it.

use std::path::Path;
use std::process::Command;

use labkit::{Kamailio, LabGateway, http_request};

fn namecall(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_namecall"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("namecall runs")
}

#[test]
fn api_key_reads_own_trunks_and_is_revocable() {
    let pbx = Kamailio::start(&[("trunk", "trunkpass")]).expect("kamailio");
    let data = tempfile::tempdir().expect("temp dir");
    let LabGateway {
        gw, data: data_dir, ..
    } = LabGateway::start(Path::new(env!("CARGO_BIN_EXE_namecall")), &pbx, data.path())
        .expect("gateway starts and registers its trunk");
    let data_arg = data_dir.to_string_lossy().into_owned();

    // no key, a wrong key: 401 problem+json with a Bearer challenge
    for auth in [None, Some("Bearer nck_not-a-key")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = http_request(&gw.addr, "GET", "/v1/admin/trunks", &headers).expect("request");
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let problem: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(problem["status"], 401);
    }

    // unknown company: a clear error, no key
    let out = namecall(&["apikey", "create", "globex", "--data-dir", &data_arg]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no company named globex"));

    let out = namecall(&["apikey", "create", "acme", "--data-dir", &data_arg]);
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(key.starts_with("nck_"), "{key}");
    let bearer = format!("Bearer {key}");
    let r = http_request(
        &gw.addr,
        "GET",
        "/v1/admin/trunks",
        &[("Authorization", &bearer)],
    )
    .expect("request");
    assert_eq!(r.status, 200, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(v["tenant"], "acme", "{v}");
    let main = &v["trunks"][0];
    assert_eq!(main["name"], "main", "{v}");
    assert_eq!(main["kind"], "register", "{v}");
    assert_eq!(main["peer"], pbx.addr().to_string(), "{v}");
    assert_eq!(main["registered"], true, "{v}");
    assert_eq!(main["expires"], 300, "{v}");

    let out = namecall(&["apikey", "revoke", &key, "--data-dir", &data_arg]);
    assert!(out.status.success(), "{out:?}");
    let r = http_request(
        &gw.addr,
        "GET",
        "/v1/admin/trunks",
        &[("Authorization", &bearer)],
    )
    .expect("request");
    assert_eq!(r.status, 401, "a revoked key is refused: {r:?}");
}

/// `check-dialplans` accepts the examples and points at a bad file's line and column.
#[test]
fn check_dialplans_reports_file_line_column() {
    let examples = labkit::workspace_root().join("dialplans/examples");
    let out = namecall(&["check-dialplans", &examples.to_string_lossy()]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("acme"));

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("broken.yaml"),
        "version: 1\ntenant: broken\ntrunks:\n  main:\n    kind: register\n    registrar: [not, a, host]\n",
    )
    .expect("write");
    let out = namecall(&["check-dialplans", &dir.path().to_string_lossy()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.yaml:6:"), "file:line:column in {err}");
}
