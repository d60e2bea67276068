//! `ring_group`: ring several extensions, all at once or one after another.

use std::time::Duration;

use crate::error::ErrorKind;
use crate::eval::Decision;
use crate::parse::Cx;
use crate::types::{Extension, parse_duration};
use crate::yaml::Node;

/// The most members a group may have; more is almost always a mistake.
const MAX_MEMBERS: usize = 64;

/// How a ring group rings its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Ring every member at once; the first to answer wins.
    #[default]
    Simultaneous,
    /// Ring members in file order, each for `timeout`.
    Sequential,
}

/// Ring several extensions on one trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingGroup {
    /// Trunk to place the calls on.
    pub trunk: String,
    /// Members in file order.
    pub extensions: Vec<Extension>,
    /// How to ring them.
    pub strategy: Strategy,
    /// Whole ring time (simultaneous) or ring time per member (sequential).
    pub timeout: Duration,
}

pub(crate) fn parse(cx: &mut Cx<'_>, node: &Node) -> Option<RingGroup> {
    let f = cx.map(
        node,
        "the `ring_group` action",
        &["trunk", "extensions", "strategy", "timeout"],
        &["trunk", "extensions"],
    )?;
    let trunk = f.get("trunk").and_then(|n| cx.trunk_ref(n));
    let mut extensions = Vec::new();
    let mut ok = true;
    if let Some(list_node) = f.get("extensions") {
        let list = cx.list(list_node, "extensions")?;
        if list.is_empty() || list.len() > MAX_MEMBERS {
            cx.err(
                list_node.at,
                ErrorKind::Conflict(format!("a ring group has 1 to {MAX_MEMBERS} extensions")),
            );
            ok = false;
        }
        for item in list {
            match cx.value(item, "extension", Extension::parse) {
                Some(e) if extensions.contains(&e) => {
                    cx.invalid(
                        item.at,
                        "extension",
                        e.as_str(),
                        "listed twice in this ring group".into(),
                    );
                    ok = false;
                }
                Some(e) => extensions.push(e),
                None => ok = false,
            }
        }
    }
    let strategy = match f.get("strategy") {
        Some(n) => cx.value(n, "strategy", |s| match s {
            "simultaneous" => Ok(Strategy::Simultaneous),
            "sequential" => Ok(Strategy::Sequential),
            _ => Err("expected `simultaneous` or `sequential`".into()),
        }),
        None => Some(Strategy::default()),
    };
    let timeout = match f.get("timeout") {
        Some(n) => cx.value(n, "duration", parse_duration),
        None => Some(super::dial::DEFAULT_TIMEOUT),
    };
    if !ok {
        return None;
    }
    Some(RingGroup {
        trunk: trunk?,
        extensions,
        strategy: strategy?,
        timeout: timeout?,
    })
}

impl RingGroup {
    pub(crate) fn evaluate(&self) -> Decision {
        Decision::RingGroup {
            trunk: self.trunk.clone(),
            targets: self.extensions.clone(),
            strategy: self.strategy,
            timeout: self.timeout,
        }
    }
}
