//! Reloading: a bad edit is refused and the running set stays in service.

use std::path::PathBuf;
use std::time::SystemTime;

use dialplans::{CallContext, Decision, Dialplans, evaluate};

const GOOD: &str = "version: 1\ntenant: acme\ntrunks:\n  main: { kind: ip, proxy: 127.0.0.1 }\nnames:\n  sales:\n    route: { dial: { trunk: main, extension: \"100\" } }\n";

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn target(plans: &Dialplans) -> Option<String> {
    let call = CallContext {
        caller: "alice",
        dialled: "acme/sales",
        time: SystemTime::UNIX_EPOCH,
        dtmf: &[],
    };
    match evaluate(plans, &call) {
        Decision::Dial { target, .. } => Some(target.to_string()),
        _ => None,
    }
}

/// good → bad edit (refused, old set keeps routing) → fixed edit (swapped in).
#[test]
fn bad_reload_keeps_running_set() {
    let dir = scratch("reload");
    let file = dir.join("acme.yaml");
    std::fs::write(&file, GOOD).expect("write");
    std::fs::write(dir.join("notes.txt"), "not yaml, ignored").expect("write");
    let running = Dialplans::load_dir(&dir).expect("good set");
    assert_eq!(target(&running).as_deref(), Some("100"));

    std::fs::write(&file, GOOD.replace("trunk: main,", "trunk: mian,")).expect("write");
    let errors = running.reload(&dir).expect_err("bad edit refused");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .to_string()
            .ends_with("acme.yaml:7:29: unknown trunk `mian`; defined trunks: main"),
        "{}",
        errors[0]
    );
    assert_eq!(
        target(&running).as_deref(),
        Some("100"),
        "running set untouched"
    );

    std::fs::write(&file, GOOD.replace("\"100\"", "\"101\"")).expect("write");
    let next = running.reload(&dir).expect("fixed edit accepted");
    assert_eq!(target(&next).as_deref(), Some("101"));
    assert_eq!(target(&running).as_deref(), Some("100"));
}

/// A second file with an error blocks the whole reload, not just its tenant.
#[test]
fn one_bad_file_blocks_the_reload() {
    let dir = scratch("reload-two");
    std::fs::write(dir.join("acme.yaml"), GOOD).expect("write");
    let running = Dialplans::load_dir(&dir).expect("good set");
    std::fs::write(
        dir.join("globex.yml"),
        "version: 1\ntenant: globex\nnames: {}\nextra: 1\n",
    )
    .expect("write");
    let errors = running.reload(&dir).expect_err("globex is bad");
    assert!(
        errors.iter().all(|e| e.file().ends_with("globex.yml")),
        "{errors:?}"
    );
    assert_eq!(running.len(), 1);
}

/// A missing directory is an error without a position, not a panic.
#[test]
fn missing_directory() {
    let errors = Dialplans::load_dir("/nonexistent/dialplans").expect_err("no dir");
    assert!(errors[0].location().is_none());
    assert!(
        errors[0]
            .to_string()
            .starts_with("/nonexistent/dialplans: cannot read:"),
        "{}",
        errors[0]
    );
}
