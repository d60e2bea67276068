//! Helpers that turn [`Node`]s into typed values while collecting errors.
//!
//! Every helper reports into the shared [`Cx`] and returns `None` on a
//! problem, so one pass over a file finds every error instead of stopping at
//! the first one.

use crate::error::{DialplanError, ErrorKind, Location};
use crate::yaml::{Key, Node, NodeKind};

/// The validation context for one file.
pub(crate) struct Cx<'f> {
    /// The file name used in error messages.
    pub(crate) file: &'f str,
    /// Errors found so far, in file order of discovery.
    pub(crate) errors: Vec<DialplanError>,
    /// Trunk names defined by the file, for checking references.
    pub(crate) trunks: Vec<String>,
    /// `goto` references seen, checked once all names are known.
    pub(crate) gotos: Vec<GotoRef>,
    /// The name whose route is being parsed.
    pub(crate) current_name: String,
    /// How many menus enclose the action being parsed; a goto inside a menu
    /// waits for a key press, so it cannot spin without the caller.
    pub(crate) menu_depth: u32,
}

/// One `goto` in the file.
pub(crate) struct GotoRef {
    /// The name whose route contains the goto.
    pub(crate) from: String,
    /// The name it jumps to.
    pub(crate) to: String,
    /// Where the target is written.
    pub(crate) at: Location,
    /// Taken without waiting for a key press (not inside a menu).
    pub(crate) immediate: bool,
}

/// The entries of a mapping whose keys have already been checked.
pub(crate) struct Fields<'n> {
    entries: &'n [(Key, Node)],
}

impl<'n> Fields<'n> {
    /// The value under `key`, if present and not null.
    pub(crate) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, v)| k.name == key && !v.is_null())
            .map(|(_, v)| v)
    }

    /// Whether `key` is written at all (even with a null value).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.name == key)
    }
}

impl<'f> Cx<'f> {
    pub(crate) fn new(file: &'f str) -> Self {
        Self {
            file,
            errors: Vec::new(),
            trunks: Vec::new(),
            gotos: Vec::new(),
            current_name: String::new(),
            menu_depth: 0,
        }
    }

    /// Records an error at `at`.
    pub(crate) fn err(&mut self, at: Location, kind: ErrorKind) {
        self.errors
            .push(DialplanError::new(self.file, Some(at), kind));
    }

    /// Records a value that failed its parser.
    pub(crate) fn invalid(
        &mut self,
        at: Location,
        what: &'static str,
        value: &str,
        reason: String,
    ) {
        self.err(
            at,
            ErrorKind::Invalid {
                what,
                value: value.to_owned(),
                reason,
            },
        );
    }

    /// Checks that `node` is a mapping whose keys are all in `allowed` and
    /// that every key in `required` is present.
    pub(crate) fn map<'n>(
        &mut self,
        node: &'n Node,
        context: &str,
        allowed: &[&str],
        required: &[&str],
    ) -> Option<Fields<'n>> {
        let NodeKind::Map(entries) = &node.kind else {
            self.err(
                node.at,
                ErrorKind::WrongType {
                    what: context.to_owned(),
                    expected: "a mapping",
                    found: node.type_name(),
                },
            );
            return None;
        };
        for (k, _) in entries {
            if !allowed.contains(&k.name.as_str()) {
                self.unknown_key(k, context, allowed);
            }
        }
        let fields = Fields { entries };
        for key in required {
            if fields.get(key).is_none() {
                self.err(
                    node.at,
                    ErrorKind::MissingKey {
                        key: (*key).to_owned(),
                        context: context.to_owned(),
                    },
                );
            }
        }
        Some(fields)
    }

    /// Reports `key` as unknown, suggesting the closest allowed key.
    pub(crate) fn unknown_key(&mut self, key: &Key, context: &str, allowed: &[&str]) {
        self.err(
            key.at,
            ErrorKind::UnknownKey {
                key: key.name.clone(),
                context: context.to_owned(),
                hint: hint(&key.name, allowed),
            },
        );
    }

    /// The text of a scalar node.
    pub(crate) fn scalar<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.kind {
            NodeKind::Scalar { value, .. } if !node.is_null() => Some(value),
            _ => {
                self.err(
                    node.at,
                    ErrorKind::WrongType {
                        what: what.to_owned(),
                        expected: "a scalar",
                        found: node.type_name(),
                    },
                );
                None
            }
        }
    }

    /// A scalar run through `parse`; a refusal is reported at the node.
    pub(crate) fn value<T>(
        &mut self,
        node: &Node,
        what: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.scalar(node, what)?;
        match parse(text) {
            Ok(v) => Some(v),
            Err(reason) => {
                self.invalid(node.at, what, text, reason);
                None
            }
        }
    }

    /// The items of a list node.
    pub(crate) fn list<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.kind {
            NodeKind::Seq(items) => Some(items),
            _ => {
                self.err(
                    node.at,
                    ErrorKind::WrongType {
                        what: what.to_owned(),
                        expected: "a list",
                        found: node.type_name(),
                    },
                );
                None
            }
        }
    }

    /// A reference to a trunk defined in the same file.
    pub(crate) fn trunk_ref(&mut self, node: &Node) -> Option<String> {
        let name = self.scalar(node, "trunk")?;
        if self.trunks.iter().any(|t| t == name) {
            return Some(name.to_owned());
        }
        let defined = if self.trunks.is_empty() {
            "none (add a `trunks:` section)".to_owned()
        } else {
            self.trunks.join(", ")
        };
        self.err(
            node.at,
            ErrorKind::UnknownTrunk {
                name: name.to_owned(),
                defined,
            },
        );
        None
    }
}

/// "; did you mean `x`?" when a close match exists, else the allowed list.
pub(crate) fn hint(key: &str, allowed: &[&str]) -> String {
    let best = allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, a)) if d <= 2.max(key.len() / 3) && d < key.len().max(1) => {
            format!("; did you mean `{a}`?")
        }
        _ if allowed.is_empty() => String::new(),
        _ => format!("; expected one of: {}", allowed.join(", ")),
    }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Near misses get a suggestion, far ones the list of keys.
    #[test]
    fn hints() {
        let keys = ["trunk", "extension", "timeout"];
        assert_eq!(hint("extention", &keys), "; did you mean `extension`?");
        assert_eq!(hint("trunck", &keys), "; did you mean `trunk`?");
        assert_eq!(
            hint("colour", &keys),
            "; expected one of: trunk, extension, timeout"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
