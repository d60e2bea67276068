//! Evaluator table tests: (dialled name, time, menu input) → decision, for
//! every action, against the lab example and a small inline dialplan.

use std::time::{Duration, SystemTime};

use MenuInput::{Digit, Timeout};
use dialplans::{
    CallContext, ChatDecision, Decision, Dialplans, Extension, MenuInput, Strategy, evaluate,
    evaluate_chat,
};

fn at(rfc3339: &str) -> SystemTime {
    SystemTime::from(rfc3339.parse::<jiff::Timestamp>().expect("valid timestamp"))
}

fn ext(s: &str) -> Extension {
    Extension::parse(s).expect("valid extension")
}

fn examples() -> Dialplans {
    Dialplans::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
        .expect("examples validate")
}

fn decide(plans: &Dialplans, dialled: &str, time: &str, dtmf: &[MenuInput]) -> Decision {
    evaluate(
        plans,
        &CallContext {
            caller: "alice",
            dialled,
            time: at(time),
            dtmf,
        },
    )
}

fn dial(trunk: &str, target: &str, secs: u64) -> Decision {
    Decision::Dial {
        trunk: trunk.into(),
        target: ext(target),
        timeout: Duration::from_secs(secs),
    }
}

fn reject(code: u16, reason: &str) -> Decision {
    Decision::Reject {
        code,
        reason: reason.into(),
    }
}

// 2026-11-23 is a Monday; Berlin is UTC+1 in November and UTC+2 in July.
const MON_OPEN: &str = "2026-11-23T10:00:00Z";

/// The lab company: sales dials 100, support rings 100+101, the main name is an hours-gated menu.
#[test]
fn acme_table() {
    let plans = examples();
    let sales = dial("main", "100", 30);
    let support = Decision::RingGroup {
        trunk: "main".into(),
        targets: vec![ext("100"), ext("101")],
        strategy: Strategy::Simultaneous,
        timeout: Duration::from_secs(25),
    };
    let menu = Decision::Menu {
        prompt: "acme-welcome".into(),
        options: vec!['1', '2', '9'],
        timeout: Duration::from_secs(5),
    };
    let closed = reject(480, "Closed");
    let table: &[(&str, &str, &[MenuInput], Decision)] = &[
        ("acme/sales", MON_OPEN, &[], sales.clone()),
        ("ACME/Sales", MON_OPEN, &[], sales.clone()),
        ("acme/support", MON_OPEN, &[], support.clone()),
        ("acme/nobody", MON_OPEN, &[], Decision::NotFound),
        ("globex", MON_OPEN, &[], Decision::NotFound),
        ("echo", MON_OPEN, &[], Decision::Echo),
        // hours: Europe/Berlin mon-fri 09:00-17:00, with daylight saving
        ("acme", MON_OPEN, &[], menu.clone()),
        ("acme", "2026-11-23T08:00:00Z", &[], menu.clone()), // 09:00 local: opens
        ("acme", "2026-11-23T07:59:59Z", &[], closed.clone()), // 08:59 local
        ("acme", "2026-11-23T15:59:00Z", &[], menu.clone()), // 16:59 local
        ("acme", "2026-11-23T16:00:00Z", &[], closed.clone()), // 17:00 local: closed
        ("acme", "2026-11-28T10:00:00Z", &[], closed.clone()), // saturday
        ("acme", "2026-07-01T07:30:00Z", &[], menu.clone()), // 09:30 CEST
        ("acme", "2026-01-07T07:30:00Z", &[], closed.clone()), // 08:30 CET
        ("acme", "2026-12-25T10:00:00Z", &[], closed.clone()), // holiday (a friday)
        // menu: digits select, timeout has its own action, invalid digits re-offer
        ("acme", MON_OPEN, &[Digit('1')], sales.clone()),
        ("acme", MON_OPEN, &[Digit('2')], support.clone()),
        ("acme", MON_OPEN, &[Digit('9')], Decision::Echo),
        ("acme", MON_OPEN, &[Timeout], sales.clone()),
        ("acme", MON_OPEN, &[Digit('5')], menu.clone()),
        ("acme", MON_OPEN, &[Digit('5'), Digit('2')], support.clone()),
        ("acme", MON_OPEN, &[Digit('5'), Digit('#')], menu.clone()),
        (
            "acme",
            MON_OPEN,
            &[Digit('5'), Digit('#'), Digit('0')],
            reject(480, "No Menu Choice"),
        ),
    ];
    for (dialled, time, dtmf, want) in table {
        assert_eq!(
            &decide(&plans, dialled, time, dtmf),
            want,
            "{dialled} at {time} with {dtmf:?}"
        );
    }
}

/// The FreeSWITCH example: an overnight window in America/Chicago, and `on_invalid`.
#[test]
fn northwind_table() {
    let plans = examples();
    let operator = dial("fs", "operator", 30);
    let group = Decision::RingGroup {
        trunk: "fs".into(),
        targets: vec![ext("3001"), ext("3002"), ext("3003")],
        strategy: Strategy::Simultaneous,
        timeout: Duration::from_secs(30),
    };
    let on_call = dial("fs", "3099", 30);
    let table: &[(&str, &str, &[MenuInput], Decision)] = &[
        ("northwind", MON_OPEN, &[Digit('0')], operator.clone()),
        ("northwind", MON_OPEN, &[Digit('7')], operator.clone()),
        (
            "northwind",
            MON_OPEN,
            &[Timeout, Timeout],
            reject(480, "No Menu Choice"),
        ),
        ("northwind", MON_OPEN, &[Digit('2')], dial("fs", "4000", 30)),
        // Chicago is UTC-6 in November. Tuesday 04:00 local: closed.
        (
            "northwind/dispatch",
            "2026-11-24T10:00:00Z",
            &[],
            on_call.clone(),
        ),
        (
            "northwind/dispatch",
            "2026-11-24T03:59:00Z",
            &[],
            group.clone(),
        ), // mon 21:59
        (
            "northwind/dispatch",
            "2026-11-24T04:00:00Z",
            &[],
            on_call.clone(),
        ), // mon 22:00
        (
            "northwind/dispatch",
            "2026-11-23T12:00:00Z",
            &[],
            group.clone(),
        ), // 06:00 local
        // Saturday 23:00 local (Sunday 05:00Z): inside sat's 22:00-06:00 window.
        (
            "northwind/dispatch",
            "2026-11-29T05:00:00Z",
            &[],
            group.clone(),
        ),
        // Monday 03:00 local: still sunday night's window.
        (
            "northwind/dispatch",
            "2026-11-30T09:00:00Z",
            &[],
            group.clone(),
        ),
        // Saturday 03:00 local: friday has no overnight window.
        (
            "northwind/dispatch",
            "2026-11-28T09:00:00Z",
            &[],
            on_call.clone(),
        ),
    ];
    for (dialled, time, dtmf, want) in table {
        assert_eq!(
            &decide(&plans, dialled, time, dtmf),
            want,
            "{dialled} at {time} with {dtmf:?}"
        );
    }
}

const INLINE: &str = r#"
version: 1
tenant: lab
trunks:
  t: { kind: ip, proxy: 10.0.0.1 }
names:
  seq:
    route: { ring_group: { trunk: t, extensions: ["1", "2"], strategy: sequential, timeout: 10s } }
  busy:
    route: { reject: { code: 486 } }
  retry:
    route:
      menu:
        prompt: retry
        attempts: 1
        options: { 1: { goto: busy } }
        on_invalid: { goto: retry }
  chain:
    route: { goto: chain2 }
  chain2:
    route: { goto: busy }
  desk:
    chat: { message: { trunk: t, extension: "200" } }
  fixed:
    route:
      hours:
        time_zone: "-05:00"
        schedule: [{ days: daily, times: ["08:00-12:00", "13:00-17:00"] }]
        open: echo
  nested:
    route:
      menu:
        prompt: top
        options:
          1:
            menu:
              prompt: sub
              timeout: 2s
              attempts: 1
              options: { "*": { goto: busy }, 2: { goto: seq } }
inbound:
  allow: [users]
"#;

fn inline() -> Dialplans {
    match Dialplans::from_sources([("lab.yaml", INLINE)]) {
        Ok(p) => p,
        Err(e) => panic!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Sequential groups, rejects, loops, chat-only names, fixed offsets and nested menus.
#[test]
fn inline_table() {
    let plans = inline();
    let seq = Decision::RingGroup {
        trunk: "t".into(),
        targets: vec![ext("1"), ext("2")],
        strategy: Strategy::Sequential,
        timeout: Duration::from_secs(10),
    };
    let sub = Decision::Menu {
        prompt: "sub".into(),
        options: vec!['*', '2'],
        timeout: Duration::from_secs(2),
    };
    let table: &[(&str, &str, &[MenuInput], Decision)] = &[
        ("lab/seq", MON_OPEN, &[], seq.clone()),
        ("lab/busy", MON_OPEN, &[], reject(486, "Busy Here")),
        ("lab/chain", MON_OPEN, &[], reject(486, "Busy Here")),
        // a goto back into a menu after a key press is a retry, not a loop
        (
            "lab/retry",
            MON_OPEN,
            &[Digit('7'), Digit('7'), Digit('7'), Digit('1')],
            reject(486, "Busy Here"),
        ),
        (
            "lab/retry",
            MON_OPEN,
            &[Digit('7'), Timeout],
            reject(480, "No Menu Choice"),
        ),
        (
            "lab/desk",
            MON_OPEN,
            &[],
            reject(403, "Name Accepts Chat Only"),
        ),
        ("lab", MON_OPEN, &[], Decision::NotFound), // no main name defined
        ("lab/fixed", "2026-11-23T13:00:00Z", &[], Decision::Echo), // 08:00 at -05:00
        (
            "lab/fixed",
            "2026-11-23T17:30:00Z",
            &[],
            reject(480, "Closed"),
        ), // 12:30 lunch
        ("lab/fixed", "2026-11-23T21:59:00Z", &[], Decision::Echo), // 16:59
        ("lab/nested", MON_OPEN, &[Digit('1')], sub.clone()),
        (
            "lab/nested",
            MON_OPEN,
            &[Digit('1'), Digit('2')],
            seq.clone(),
        ),
        (
            "lab/nested",
            MON_OPEN,
            &[Digit('1'), Digit('*')],
            reject(486, "Busy Here"),
        ),
        (
            "lab/nested",
            MON_OPEN,
            &[Digit('1'), Timeout],
            reject(480, "No Menu Choice"),
        ),
    ];
    for (dialled, time, dtmf, want) in table {
        assert_eq!(
            &decide(&plans, dialled, time, dtmf),
            want,
            "{dialled} at {time} with {dtmf:?}"
        );
    }
}

/// Chat goes to the `chat` target, or is refused for names without one.
#[test]
fn chat_table() {
    let plans = examples();
    let table = [
        (
            "acme/sales",
            ChatDecision::Message {
                trunk: "main".into(),
                target: ext("100"),
            },
        ),
        (
            "smile-dental/billing",
            ChatDecision::Message {
                trunk: "asterisk".into(),
                target: ext("210"),
            },
        ),
        (
            "acme/support",
            ChatDecision::Reject {
                code: 405,
                reason: "Name Takes No Chat".into(),
            },
        ),
        ("acme/nobody", ChatDecision::NotFound),
        ("nobody", ChatDecision::NotFound),
    ];
    for (dialled, want) in table {
        assert_eq!(evaluate_chat(&plans, dialled), want, "{dialled}");
    }
}

/// `inbound.allow` decides which messenger users desk phones may call.
#[test]
fn inbound_policy() {
    let plans = examples();
    let acme = plans.get("acme").expect("acme loaded");
    assert!(acme.inbound.allows("alice"));
    let dental = plans.get("smile-dental").expect("dental loaded");
    assert!(dental.inbound.allows("dr-miller"));
    assert!(!dental.inbound.allows("alice"));
    let northwind = plans.get("northwind").expect("northwind loaded");
    assert!(
        !northwind.inbound.allows("alice"),
        "no inbound section: nobody"
    );
}
