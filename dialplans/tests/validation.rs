//! Validation errors: every fixture in `tests/bad/` must be refused with an
//! error at the position and with the message its first line announces
//! (`# expect: LINE:COL message fragment`).

use dialplans::{AudioCodec, Dialplan, DialplanError, Dialplans, ErrorKind, VideoCodec};

fn bad_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad")
}

/// Reads `# expect: L:C text` from the first line of a fixture.
fn expectation(text: &str) -> (u32, u32, String) {
    let line = text.lines().next().unwrap_or_default();
    let rest = line
        .strip_prefix("# expect: ")
        .expect("fixture starts with `# expect: L:C text`");
    let (pos, msg) = rest.split_once(' ').expect("position and message");
    let (l, c) = pos.split_once(':').expect("LINE:COL");
    (
        l.parse().expect("line"),
        c.parse().expect("column"),
        msg.to_owned(),
    )
}

/// Every bad fixture fails at its announced position with its announced message.
#[test]
fn bad_fixtures_report_their_position() {
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(bad_dir())
        .expect("tests/bad exists")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).expect("readable fixture");
        let (line, column, msg) = expectation(&text);
        let errors = match Dialplan::parse(&name, &text) {
            Ok(_) => {
                failures.push(format!("{name}: accepted, expected {line}:{column} {msg}"));
                continue;
            }
            Err(e) => e,
        };
        let want_prefix = format!("{name}:{line}:{column}: ");
        let hit = errors
            .iter()
            .map(ToString::to_string)
            .any(|e| e.starts_with(&want_prefix) && e.contains(&msg));
        if !hit {
            let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
            failures.push(format!(
                "{name}: expected `{want_prefix}…{msg}…`, got:\n  {}",
                got.join("\n  ")
            ));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 20, "only {checked} fixtures checked");
}

const GOOD: &str = "version: 1\ntenant: acme\ntrunks:\n  main: { kind: ip, proxy: 127.0.0.1 }\nnames:\n  sales:\n    route: { dial: { trunk: main, extension: \"100\" } }\n";

/// The message format admins see: `file:line:col: unknown trunk ...; defined trunks: ...`.
#[test]
fn unknown_trunk_message_is_exact() {
    let text = GOOD.replace("trunk: main,", "trunk: mian,");
    let errors = Dialplan::parse("acme.yaml", &text).expect_err("unknown trunk");
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        vec!["acme.yaml:7:29: unknown trunk `mian`; defined trunks: main".to_owned()]
    );
    assert!(matches!(errors[0].kind(), ErrorKind::UnknownTrunk { .. }));
}

/// All errors of a file come back together, in file order.
#[test]
fn all_errors_are_collected() {
    let text = "version: 1\ntenant: Acme\ntrunks:\n  main: { kind: ip, proxy: 127.0.0.1, colour: red }\nnames:\n  sales:\n    route: { dial: { trunk: mian, extension: \"1 0\", timeout: 3x } }\n";
    let errors = Dialplan::parse("multi.yaml", text).expect_err("several errors");
    let lines: Vec<u32> = errors
        .iter()
        .filter_map(|e| e.location())
        .map(|l| l.line)
        .collect();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "sorted by position: {lines:?}"
    );
}

/// A tenant defined in two files is refused at the second file's `tenant:` line.
#[test]
fn duplicate_tenant_across_files() {
    let errors = Dialplans::from_sources([("a.yaml", GOOD), ("b.yaml", GOOD)])
        .expect_err("duplicate tenant");
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "b.yaml:2:9: tenant `acme` is already defined in a.yaml"
    );
}

/// The valid baseline used above really is valid, so the tests above fail for the reason they name.
#[test]
fn baseline_is_valid() {
    let plan = Dialplan::parse("acme.yaml", GOOD).expect("valid");
    assert_eq!(plan.tenant.as_str(), "acme");
}

/// Random garbage never panics the validator.
#[test]
fn garbage_does_not_panic() {
    let samples = [
        "",
        "\0",
        "[",
        "{",
        "- - - -",
        "version: [1",
        "&a [*a]",
        "*x",
        "? [a]: b",
        "version: 1\ntenant: acme\nnames: 5",
        "version: 1\nnames:\n  x: { route: { menu: { prompt: p, options: [1, 2] } } }",
        "version: 1\ntenant: acme\nnames:\n  \"\": { route: { hours: { time_zone: UTC, schedule: 1, open: 2 } } }",
        "%YAML 1.2\n---\nversion: 1\n...\n---\nversion: 1\n",
    ];
    for s in samples {
        let r: Result<Dialplan, Vec<DialplanError>> = Dialplan::parse("g.yaml", s);
        assert!(r.is_err(), "{s:?} accepted");
    }
    // Deep nesting is bounded, not a stack overflow.
    let deep = format!(
        "version: 1\ntenant: acme\nnames: {}{}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(Dialplan::parse("deep.yaml", &deep).is_err());
}

/// A goto loop is reported once, at the first goto of the loop in file order.
#[test]
fn goto_loop_reported_once() {
    let text = std::fs::read_to_string(bad_dir().join("goto-loop.yaml")).expect("fixture");
    let errors = Dialplan::parse("goto-loop.yaml", &text).expect_err("loop");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    // Putting a menu on the way breaks the loop: the caller has to press a key.
    let fixed = text.replace(
        "route: { goto: one }",
        "route: { menu: { prompt: p, options: { 1: { goto: one } } } }",
    );
    assert!(Dialplan::parse("goto-loop.yaml", &fixed).is_ok());
}

/// Thousands of byte-level mutations of the examples never panic the loader.
#[test]
fn mutated_examples_do_not_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64: deterministic, so a failure reproduces.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b" :-{}[]\"'\n\t#&*!|>0123456789abz";
    for entry in std::fs::read_dir(dir).expect("examples") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("utf-8 example");
        for _ in 0..400 {
            let mut bytes = text.clone().into_bytes();
            for _ in 0..(1 + next() % 4) {
                let i = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => bytes[i] = alphabet[(next() % alphabet.len() as u64) as usize],
                    1 => {
                        bytes.remove(i);
                    }
                    _ => bytes.insert(i, alphabet[(next() % alphabet.len() as u64) as usize]),
                }
            }
            let Ok(mutated) = String::from_utf8(bytes) else {
                continue;
            };
            let _ = Dialplan::parse("m.yaml", &mutated);
        }
    }
}

/// A call routed to a trunk may use that trunk and then its failover
/// trunks, depth-first in the order written, each once.
#[test]
fn failover_order_follows_the_chain() {
    let text = "version: 1\ntenant: acme\ntrunks:\n  main: { kind: ip, proxy: 127.0.0.1, failover: [b, c] }\n  b: { kind: ip, proxy: 127.0.0.2, failover: [d, c] }\n  c: { kind: ip, proxy: 127.0.0.3 }\n  d: { kind: ip, proxy: 127.0.0.4 }\nnames:\n  sales:\n    route: { dial: { trunk: main, extension: \"100\" } }\n";
    let plan = Dialplan::parse("acme.yaml", text).expect("valid");
    let order: Vec<&str> = plan
        .failover_order("main")
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(order, ["main", "b", "d", "c"]);
    let order: Vec<&str> = plan
        .failover_order("c")
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(order, ["c"]);
    assert!(plan.failover_order("nope").is_empty());
}

/// Keep-alives default to 30 s, take any duration of at least 1 s, and `off`.
#[test]
fn keepalive_default_value_and_off() {
    let plan = Dialplan::parse("acme.yaml", GOOD).expect("valid");
    assert_eq!(
        plan.trunk("main").expect("main").keepalive,
        Some(std::time::Duration::from_secs(30))
    );
    let with = |v: &str| {
        GOOD.replace(
            "proxy: 127.0.0.1 }",
            &format!("proxy: 127.0.0.1, keepalive: {v} }}"),
        )
    };
    let plan = Dialplan::parse("acme.yaml", &with("5s")).expect("valid");
    assert_eq!(
        plan.trunk("main").expect("main").keepalive,
        Some(std::time::Duration::from_secs(5))
    );
    let plan = Dialplan::parse("acme.yaml", &with("off")).expect("valid");
    assert_eq!(plan.trunk("main").expect("main").keepalive, None);
    let errors = Dialplan::parse("acme.yaml", &with("500ms")).expect_err("too short");
    assert!(errors[0].to_string().contains("at least 1s"), "{errors:?}");
}

/// A cycle through three trunks is one error, not one per trunk on it.
#[test]
fn failover_cycle_reported_once() {
    let text = std::fs::read_to_string(bad_dir().join("failover-cycle.yaml")).expect("fixture");
    let errors = Dialplan::parse("failover-cycle.yaml", &text).expect_err("cycle");
    assert_eq!(errors.len(), 1, "{errors:#?}");
    // Breaking the cycle makes the file valid: the error was the cycle.
    let fixed = text.replace("failover: [main]", "failover: []");
    assert!(Dialplan::parse("failover-cycle.yaml", &fixed).is_ok());
}

/// `dtmf:` on a trunk: `rfc4733` unless set, `info` and `inband` accepted.
#[test]
fn trunk_dtmf_mode() {
    use dialplans::DtmfMode;
    let plan = Dialplan::parse("acme.yaml", GOOD).expect("valid");
    assert_eq!(plan.trunks["main"].dtmf, DtmfMode::Rfc4733);
    for (text, mode) in [("info", DtmfMode::Info), ("inband", DtmfMode::Inband)] {
        let src = GOOD.replace(
            "proxy: 127.0.0.1 }",
            &format!("proxy: 127.0.0.1, dtmf: {text} }}"),
        );
        let plan = Dialplan::parse("acme.yaml", &src).expect("valid");
        assert_eq!(plan.trunks["main"].dtmf, mode, "{text}");
    }
}

/// `video:` on a trunk: off unless set; `true` is VP8 then H.264, a list names the
/// codecs in preference order; anything else is an error at its line and column.
#[test]
fn trunk_video_option() {
    let with = |v: &str| trunk_with("video", v);
    let plan = Dialplan::parse("acme.yaml", GOOD).expect("valid");
    assert!(plan.trunks["main"].video.is_empty());
    let plan = Dialplan::parse("acme.yaml", &with("true")).expect("valid");
    assert_eq!(
        plan.trunks["main"].video,
        [VideoCodec::Vp8, VideoCodec::H264]
    );
    let plan = Dialplan::parse("acme.yaml", &with("[h264]")).expect("valid");
    assert_eq!(plan.trunks["main"].video, [VideoCodec::H264]);
    let plan = Dialplan::parse("acme.yaml", &with("[H264, vp8]")).expect("valid");
    assert_eq!(
        plan.trunks["main"].video,
        [VideoCodec::H264, VideoCodec::Vp8]
    );
    let plan = Dialplan::parse("acme.yaml", &with("false")).expect("valid");
    assert!(plan.trunks["main"].video.is_empty());
    for (bad, needle) in [
        ("maybe", "maybe"),
        ("[h264, av1]", "av1"),
        ("[vp8, vp8]", "listed twice"),
        ("[]", "at least one codec"),
    ] {
        assert_refused(&with(bad), needle);
    }
}

/// `codecs:` on a trunk: Opus, G.722, PCMU, PCMA unless set; a list in preference
/// order (`ulaw`/`alaw` as Asterisk spells them); bad entries at their line and column.
#[test]
fn trunk_codecs_option() {
    let with = |v: &str| trunk_with("codecs", v);
    let plan = Dialplan::parse("acme.yaml", GOOD).expect("valid");
    assert_eq!(plan.trunks["main"].codecs, AudioCodec::DEFAULT);
    let plan = Dialplan::parse("acme.yaml", &with("[ulaw, alaw]")).expect("valid");
    assert_eq!(
        plan.trunks["main"].codecs,
        [AudioCodec::Pcmu, AudioCodec::Pcma]
    );
    let plan = Dialplan::parse("acme.yaml", &with("[G722, opus]")).expect("valid");
    assert_eq!(
        plan.trunks["main"].codecs,
        [AudioCodec::G722, AudioCodec::Opus]
    );
    for (bad, needle) in [
        ("opus", "a list"),
        ("[opus, gsm]", "gsm"),
        ("[pcmu, ulaw]", "listed twice"),
        ("[]", "at least one codec"),
    ] {
        assert_refused(&with(bad), needle);
    }
}

/// The GOOD plan with `key: value` added to its trunk.
fn trunk_with(key: &str, value: &str) -> String {
    GOOD.replace(
        "proxy: 127.0.0.1 }",
        &format!("proxy: 127.0.0.1, {key}: {value} }}"),
    )
}

/// `src` is refused with `needle` in an error that names file, line and column.
fn assert_refused(src: &str, needle: &str) {
    let errors = Dialplan::parse("acme.yaml", src).expect_err(needle);
    let text: String = errors.iter().map(|e| format!("{e}\n")).collect();
    assert!(text.contains(needle), "{needle}: {text}");
    assert!(text.contains("acme.yaml:"), "file:line:column in {text}");
}
