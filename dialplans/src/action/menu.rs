//! `menu`: play a prompt and branch on the caller's DTMF digit (an IVR).
//!
//! The evaluator is pure, so a menu is evaluated once per step: without
//! input it returns [`Decision::Menu`]; the gateway plays the prompt,
//! collects one digit (or notices the timeout) and evaluates again with the
//! inputs so far. Invalid digits and timeouts re-offer the menu until
//! `attempts` is used up, unless `on_invalid` / `on_timeout` say otherwise.

use std::time::Duration;

use super::Action;
use crate::error::ErrorKind;
use crate::eval::{Decision, MenuInput};
use crate::parse::Cx;
use crate::types::parse_duration;
use crate::yaml::{Node, NodeKind};

/// The keys a caller can press.
pub(crate) const DTMF: &str = "0123456789*#ABCD";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_ATTEMPTS: u8 = 3;

/// Play a prompt, then branch on a digit.
#[derive(Debug, Clone)]
pub struct Menu {
    prompt: String,
    timeout: Duration,
    attempts: u8,
    options: Vec<(char, Action)>,
    on_invalid: Option<Box<Action>>,
    on_timeout: Option<Box<Action>>,
}

pub(crate) fn parse(cx: &mut Cx<'_>, node: &Node) -> Option<Menu> {
    let f = cx.map(
        node,
        "the `menu` action",
        &[
            "prompt",
            "timeout",
            "attempts",
            "options",
            "on_invalid",
            "on_timeout",
        ],
        &["prompt", "options"],
    )?;
    let prompt = f
        .get("prompt")
        .and_then(|n| cx.scalar(n, "prompt"))
        .map(str::to_owned);
    let timeout = match f.get("timeout") {
        Some(n) => cx.value(n, "duration", parse_duration),
        None => Some(DEFAULT_TIMEOUT),
    };
    let attempts = match f.get("attempts") {
        Some(n) => cx.value(n, "attempts", |s| match s.parse::<u8>() {
            Ok(a) if (1..=10).contains(&a) => Ok(a),
            _ => Err("expected a number from 1 to 10".into()),
        }),
        None => Some(DEFAULT_ATTEMPTS),
    };
    let mut options = Vec::new();
    let mut ok = true;
    cx.menu_depth += 1;
    if let Some(opts) = f.get("options") {
        match &opts.kind {
            NodeKind::Map(entries) if !entries.is_empty() => {
                for (key, value) in entries {
                    let mut chars = key.name.chars();
                    let digit = match (chars.next(), chars.next()) {
                        (Some(c), None) if DTMF.contains(c) => c,
                        _ => {
                            cx.invalid(
                                key.at,
                                "menu digit",
                                &key.name,
                                format!("expected one of {DTMF}"),
                            );
                            ok = false;
                            continue;
                        }
                    };
                    match super::parse(cx, value) {
                        Some(a) => options.push((digit, a)),
                        None => ok = false,
                    }
                }
            }
            _ => {
                cx.err(
                    opts.at,
                    ErrorKind::WrongType {
                        what: "menu options".into(),
                        expected: "a mapping from digit to action",
                        found: opts.type_name(),
                    },
                );
                ok = false;
            }
        }
    }
    let mut branch = |key: &str| match f.get(key) {
        Some(n) => super::parse(cx, n).map(|a| Some(Box::new(a))),
        None => Some(None),
    };
    let on_invalid = branch("on_invalid");
    let on_timeout = branch("on_timeout");
    cx.menu_depth -= 1;
    if !ok {
        return None;
    }
    Some(Menu {
        prompt: prompt?,
        timeout: timeout?,
        attempts: attempts?,
        options,
        on_invalid: on_invalid?,
        on_timeout: on_timeout?,
    })
}

impl Menu {
    pub(crate) fn evaluate(&self, ev: &mut super::Eval<'_>) -> Decision {
        let mut failures = 0u8;
        loop {
            let fallback = match ev.next_input() {
                None => {
                    return Decision::Menu {
                        prompt: self.prompt.clone(),
                        options: self.options.iter().map(|(d, _)| *d).collect(),
                        timeout: self.timeout,
                    };
                }
                Some(MenuInput::Digit(d)) => match self.options.iter().find(|(o, _)| *o == d) {
                    Some((_, action)) => return ev.run(action),
                    None => &self.on_invalid,
                },
                Some(MenuInput::Timeout) => &self.on_timeout,
            };
            if let Some(action) = fallback {
                return ev.run(action);
            }
            failures += 1;
            if failures >= self.attempts {
                return Decision::Reject {
                    code: 480,
                    reason: "No Menu Choice".into(),
                };
            }
        }
    }
}
