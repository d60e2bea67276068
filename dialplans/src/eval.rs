//! The pure evaluator: (dialplans, caller, dialled name, time, menu input) →
//! routing [`Decision`].
//!
//! Nothing here reads the clock or the network. The gateway passes the call's
//! start time in `CallContext::time` (and keeps passing the same instant while
//! the caller walks a menu, so an hours check cannot flip mid-call).

use std::time::{Duration, SystemTime};

use crate::action::{Eval, Strategy};
use crate::plan::ChatRoute;
use crate::set::Dialplans;
use crate::types::Extension;

/// The dialled name that reaches the built-in echo target without any dialplan.
pub const ECHO_NAME: &str = "echo";

/// One input the caller gave to a menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuInput {
    /// A DTMF key (`0`-`9`, `*`, `#`, `A`-`D`).
    Digit(char),
    /// The menu's timeout passed without a key.
    Timeout,
}

/// Everything the evaluator needs to know about a call.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    /// Who calls: a messenger login name or a SIP URI (not used for routing
    /// decisions in schema version 1).
    pub caller: &'a str,
    /// The dialled name: `acme/sales`, `acme` (the main name) or `echo`.
    pub dialled: &'a str,
    /// When the call started.
    pub time: SystemTime,
    /// Menu inputs collected so far, oldest first; empty on the first step.
    pub dtmf: &'a [MenuInput],
}

/// What the gateway should do with a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Ring one extension on a trunk.
    Dial {
        /// Trunk name in the tenant's dialplan.
        trunk: String,
        /// Extension to ring.
        target: Extension,
        /// Ring time before giving up.
        timeout: Duration,
    },
    /// Ring several extensions on a trunk.
    RingGroup {
        /// Trunk name in the tenant's dialplan.
        trunk: String,
        /// Members in order.
        targets: Vec<Extension>,
        /// All at once or one after another.
        strategy: Strategy,
        /// Whole ring time (simultaneous) or per member (sequential).
        timeout: Duration,
    },
    /// No tenant or name matches; answer 404.
    NotFound,
    /// Refuse with this SIP status.
    Reject {
        /// SIP status code, 400 to 699.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
    /// Answer and loop the caller's media back.
    Echo,
    /// Play `prompt`, collect one key (or time out), then evaluate again with
    /// the input appended to `CallContext::dtmf`.
    Menu {
        /// Prompt identifier (a sound file name or text for TTS).
        prompt: String,
        /// Keys that select an option, in file order.
        options: Vec<char>,
        /// How long to wait for a key.
        timeout: Duration,
    },
}

/// Splits `tenant/sub` (or `tenant`) into lowercase parts.
fn split_name(dialled: &str) -> (String, String) {
    let dialled = dialled.trim().to_ascii_lowercase();
    match dialled.split_once('/') {
        Some((t, s)) => (t.to_owned(), s.to_owned()),
        None => (dialled, String::new()),
    }
}

/// Decides what a call to `call.dialled` does.
pub fn evaluate(plans: &Dialplans, call: &CallContext<'_>) -> Decision {
    let (tenant, sub) = split_name(call.dialled);
    if tenant == ECHO_NAME && sub.is_empty() {
        return Decision::Echo;
    }
    let Some(plan) = plans.get(&tenant) else {
        return Decision::NotFound;
    };
    if !sub.is_empty() && !plan.names.contains_key(&sub) {
        return Decision::NotFound;
    }
    let Ok(now) = jiff::Timestamp::try_from(call.time) else {
        return Decision::Reject {
            code: 500,
            reason: "Clock Out Of Range".into(),
        };
    };
    Eval::new(plan, now, call.dtmf).route_of(&sub)
}

/// What the gateway should do with a chat message to a name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChatDecision {
    /// Send a SIP MESSAGE to an extension.
    Message {
        /// Trunk name in the tenant's dialplan.
        trunk: String,
        /// Extension that receives the MESSAGE.
        target: Extension,
    },
    /// No tenant or name matches.
    NotFound,
    /// The name exists but takes no chat.
    Reject {
        /// SIP status code.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// Decides where a chat message to `dialled` goes.
pub fn evaluate_chat(plans: &Dialplans, dialled: &str) -> ChatDecision {
    let (tenant, sub) = split_name(dialled);
    let Some(entry) = plans.get(&tenant).and_then(|p| p.names.get(&sub)) else {
        return ChatDecision::NotFound;
    };
    match &entry.chat {
        Some(ChatRoute::Message { trunk, target }) => ChatDecision::Message {
            trunk: trunk.clone(),
            target: target.clone(),
        },
        None => ChatDecision::Reject {
            code: 405,
            reason: "Name Takes No Chat".into(),
        },
    }
}
