//! `dial`: ring one extension on one trunk.

use std::time::Duration;

use crate::eval::Decision;
use crate::parse::Cx;
use crate::types::{Extension, parse_duration};
use crate::yaml::Node;

/// How long a dial rings when the file gives no `timeout`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Ring one extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// Trunk to place the call on.
    pub trunk: String,
    /// Extension to ring.
    pub extension: Extension,
    /// How long to ring before giving up.
    pub timeout: Duration,
}

pub(crate) fn parse(cx: &mut Cx<'_>, node: &Node) -> Option<Dial> {
    let f = cx.map(
        node,
        "the `dial` action",
        &["trunk", "extension", "timeout"],
        &["trunk", "extension"],
    )?;
    let trunk = f.get("trunk").and_then(|n| cx.trunk_ref(n));
    let extension = f
        .get("extension")
        .and_then(|n| cx.value(n, "extension", Extension::parse));
    let timeout = match f.get("timeout") {
        Some(n) => cx.value(n, "duration", parse_duration),
        None => Some(DEFAULT_TIMEOUT),
    };
    Some(Dial {
        trunk: trunk?,
        extension: extension?,
        timeout: timeout?,
    })
}

impl Dial {
    pub(crate) fn evaluate(&self) -> Decision {
        Decision::Dial {
            trunk: self.trunk.clone(),
            target: self.extension.clone(),
            timeout: self.timeout,
        }
    }
}
