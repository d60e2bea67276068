//! Route actions: what a call to a name does. One file per verb, each with
//! its `parse` (YAML node → typed action, errors with positions) and its
//! `evaluate` (typed action + call context → [`Decision`]).
//!
//! The small verbs without options (`echo`, `reject`, `goto`) live here.
//! An unknown verb is a positioned validation error with a suggestion, so a
//! typo never reaches the evaluator.

pub(crate) mod dial;
pub(crate) mod hours;
pub(crate) mod menu;
pub(crate) mod ring_group;

pub use dial::Dial;
pub use hours::Hours;
pub use menu::Menu;
pub use ring_group::{RingGroup, Strategy};

use crate::error::ErrorKind;
use crate::eval::{Decision, MenuInput};
use crate::parse::Cx;
use crate::plan::Dialplan;
use crate::yaml::{Node, NodeKind};

/// The verbs an action may use, in the order the docs list them.
pub(crate) const VERBS: &[&str] = &[
    "dial",
    "ring_group",
    "hours",
    "menu",
    "echo",
    "reject",
    "goto",
];

/// Gotos followed without a caller keypress before the call is refused as a loop.
const MAX_HOPS: u32 = 16;

/// What a call does; actions nest (a menu option can be an hours check).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Action {
    /// Ring one extension.
    Dial(Dial),
    /// Ring several extensions at once or one after another.
    RingGroup(RingGroup),
    /// Branch on opening hours.
    Hours(Hours),
    /// Play a prompt and branch on a DTMF digit.
    Menu(Menu),
    /// Answer and send the caller's own audio back (the built-in test target).
    Echo,
    /// Refuse the call with a SIP status.
    Reject(Reject),
    /// Continue with another name's route in the same dialplan.
    Goto(String),
}

/// Refuse a call with a SIP status code and reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// SIP status, 400 to 699.
    pub code: u16,
    /// Reason phrase sent with the status.
    pub reason: String,
}

/// Parses an action node: `echo`, or a mapping with exactly one verb key.
pub(crate) fn parse(cx: &mut Cx<'_>, node: &Node) -> Option<Action> {
    let entries = match &node.kind {
        NodeKind::Scalar { value, .. } if value == "echo" => return Some(Action::Echo),
        NodeKind::Map(entries) if entries.len() == 1 => entries,
        NodeKind::Map(entries) if !entries.is_empty() => {
            let found: Vec<_> = entries
                .iter()
                .map(|(k, _)| format!("`{}`", k.name))
                .collect();
            cx.err(
                entries[1].0.at,
                ErrorKind::Conflict(format!(
                    "an action has exactly one verb ({}); found {}",
                    VERBS.join(", "),
                    found.join(", ")
                )),
            );
            return None;
        }
        _ => {
            cx.err(
                node.at,
                ErrorKind::WrongType {
                    what: "an action".into(),
                    expected: "`echo` or a mapping with one verb such as `{ dial: {...} }`",
                    found: node.type_name(),
                },
            );
            return None;
        }
    };
    let (key, value) = &entries[0];
    match key.name.as_str() {
        "dial" => dial::parse(cx, value).map(Action::Dial),
        "ring_group" => ring_group::parse(cx, value).map(Action::RingGroup),
        "hours" => hours::parse(cx, value).map(Action::Hours),
        "menu" => menu::parse(cx, value).map(Action::Menu),
        "echo" => {
            // `echo: {}` and `echo:` read as naturally as a bare `echo`.
            let empty = value.is_null() || matches!(&value.kind, NodeKind::Map(e) if e.is_empty());
            if !empty {
                cx.err(
                    value.at,
                    ErrorKind::Conflict("`echo` takes no options; write `echo: {}`".into()),
                );
                return None;
            }
            Some(Action::Echo)
        }
        "reject" => parse_reject(cx, value).map(Action::Reject),
        "goto" => {
            let target = cx.scalar(value, "goto target")?.to_owned();
            cx.gotos.push(crate::parse::GotoRef {
                from: cx.current_name.clone(),
                to: target.clone(),
                at: value.at,
                immediate: cx.menu_depth == 0,
            });
            Some(Action::Goto(target))
        }
        _ => {
            cx.unknown_key(key, "the action", VERBS);
            None
        }
    }
}

fn parse_reject(cx: &mut Cx<'_>, node: &Node) -> Option<Reject> {
    let f = cx.map(node, "the `reject` action", &["code", "reason"], &["code"])?;
    let code = cx.value(f.get("code")?, "sip status code", |s| {
        match s.parse::<u16>() {
            Ok(c) if (400..=699).contains(&c) => Ok(c),
            _ => Err("expected a final error status from 400 to 699".into()),
        }
    })?;
    let reason = match f.get("reason") {
        Some(n) => cx.scalar(n, "reason")?.to_owned(),
        None => default_reason(code).to_owned(),
    };
    Some(Reject { code, reason })
}

/// The RFC 3261 reason phrase for the statuses a dialplan typically uses.
fn default_reason(code: u16) -> &'static str {
    match code {
        403 => "Forbidden",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Rejected",
    }
}

/// The state of one evaluation: the plan, the time and the caller's menu input so far.
pub(crate) struct Eval<'a> {
    pub(crate) plan: &'a Dialplan,
    pub(crate) now: jiff::Timestamp,
    inputs: &'a [MenuInput],
    next: usize,
    hops: u32,
}

impl<'a> Eval<'a> {
    pub(crate) fn new(plan: &'a Dialplan, now: jiff::Timestamp, inputs: &'a [MenuInput]) -> Self {
        Self {
            plan,
            now,
            inputs,
            next: 0,
            hops: 0,
        }
    }

    /// Evaluates `action` to a decision.
    pub(crate) fn run(&mut self, action: &Action) -> Decision {
        match action {
            Action::Dial(d) => d.evaluate(),
            Action::RingGroup(r) => r.evaluate(),
            Action::Hours(h) => h.evaluate(self),
            Action::Menu(m) => m.evaluate(self),
            Action::Echo => Decision::Echo,
            Action::Reject(r) => Decision::Reject {
                code: r.code,
                reason: r.reason.clone(),
            },
            Action::Goto(name) => self.goto(name),
        }
    }

    /// Continues with the route of `sub_name`.
    pub(crate) fn goto(&mut self, sub_name: &str) -> Decision {
        self.hops += 1;
        if self.hops > MAX_HOPS {
            return Decision::Reject {
                code: 482,
                reason: "Loop Detected".into(),
            };
        }
        self.route_of(sub_name)
    }

    /// The decision for a sub-name's route.
    pub(crate) fn route_of(&mut self, sub_name: &str) -> Decision {
        let plan = self.plan;
        match plan.names.get(sub_name) {
            None => Decision::NotFound,
            Some(entry) => match &entry.route {
                Some(route) => self.run(route),
                None => Decision::Reject {
                    code: 403,
                    reason: "Name Accepts Chat Only".into(),
                },
            },
        }
    }

    /// The caller's next menu input, if the gateway has collected one.
    ///
    /// Consuming input resets the loop guard: a goto back to a menu after a
    /// keypress is a retry, not a loop.
    pub(crate) fn next_input(&mut self) -> Option<MenuInput> {
        let input = self.inputs.get(self.next).copied()?;
        self.next += 1;
        self.hops = 0;
        Some(input)
    }
}
