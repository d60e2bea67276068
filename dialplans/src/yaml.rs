//! A small YAML node tree that remembers where every node and key starts.
//!
//! serde-style deserialisers lose positions once a value is built, but the
//! validator needs them for semantic errors too ("unknown trunk" at the line of
//! the reference). So the file is read into this tree from `saphyr-parser`
//! events first, and the typed dialplan is built from the tree.
//!
//! Every scalar stays a string: the schema decides whether `100` is an
//! extension or a number, so YAML 1.1 surprises (`no` → false, `09:00` →
//! sexagesimal) cannot happen.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span};

use crate::error::{ErrorKind, Location};

/// Deepest nesting accepted; real dialplans stay far below it.
const MAX_DEPTH: usize = 64;
/// Most nodes accepted after alias expansion (guards against "billion laughs").
const MAX_NODES: usize = 100_000;

/// A YAML node with the position of its first character.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) at: Location,
    pub(crate) kind: NodeKind,
}

/// The shape of a node.
#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    /// A scalar; `plain` is false when it was quoted or a block scalar.
    Scalar { value: String, plain: bool },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order, with duplicate keys already refused.
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) name: String,
    pub(crate) at: Location,
}

impl Node {
    /// A plain empty, `~` or `null` scalar.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The YAML type of the node for error messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "nothing (null)",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

fn loc(m: Marker) -> Location {
    Location {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

/// A parse problem with its position (if known).
pub(crate) type YamlError = (Option<Location>, ErrorKind);

/// Parses one YAML document into a node tree.
///
/// Duplicate keys are reported but do not stop parsing, so they come back
/// next to the tree; syntax errors stop it.
pub(crate) fn parse(text: &str) -> Result<(Node, Vec<YamlError>), Vec<YamlError>> {
    let mut b = Builder {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        nodes: 0,
        soft: Vec::new(),
    };
    let mut root = None;
    loop {
        let (ev, span) = b.next()?;
        match ev {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err(vec![(Some(loc(span.start)), ErrorKind::MultipleDocuments)]);
                }
                let (ev, span) = b.next()?;
                root = Some(b.node(ev, span, 0)?);
            }
            _ => {
                return Err(vec![(
                    Some(loc(span.start)),
                    ErrorKind::Syntax("unexpected content outside a document".into()),
                )]);
            }
        }
    }
    match root {
        Some(r) if !r.is_null() => Ok((r, b.soft)),
        Some(r) => Err(vec![(Some(r.at), ErrorKind::Empty)]),
        None => Err(vec![(
            Some(Location { line: 1, column: 1 }),
            ErrorKind::Empty,
        )]),
    }
}

struct Builder<'a> {
    parser: Parser<'a, saphyr_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    soft: Vec<YamlError>,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), Vec<YamlError>> {
        match self.parser.next_event() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(vec![(
                Some(loc(*e.marker())),
                ErrorKind::Syntax(e.info().to_owned()),
            )]),
            None => Err(vec![(
                None,
                ErrorKind::Syntax("unexpected end of input".into()),
            )]),
        }
    }

    fn count(&mut self, n: usize, at: Location) -> Result<(), Vec<YamlError>> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(vec![(
                Some(at),
                ErrorKind::TooComplex(format!("more than {MAX_NODES} nodes")),
            )]);
        }
        Ok(())
    }

    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<Node, Vec<YamlError>> {
        let at = loc(span.start);
        if depth > MAX_DEPTH {
            return Err(vec![(
                Some(at),
                ErrorKind::TooComplex(format!("nested deeper than {MAX_DEPTH}")),
            )]);
        }
        self.count(1, at)?;
        let (node, anchor) = match ev {
            Event::Scalar(value, style, anchor, _tag) => (
                Node {
                    at,
                    kind: NodeKind::Scalar {
                        value: value.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                },
                anchor,
            ),
            Event::Alias(id) => {
                let Some(n) = self.anchors.get(&id).cloned() else {
                    return Err(vec![(
                        Some(at),
                        ErrorKind::Syntax("alias to an unknown anchor".into()),
                    )]);
                };
                self.count(count_nodes(&n), at)?;
                // Keep the alias position so errors inside point at the use site's line.
                return Ok(n);
            }
            Event::SequenceStart(anchor, _tag) => {
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span, depth + 1)?);
                }
                (
                    Node {
                        at,
                        kind: NodeKind::Seq(items),
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, _tag) => {
                let mut entries: Vec<(Key, Node)> = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key_node = self.node(ev, span, depth + 1)?;
                    let (ev, span) = self.next()?;
                    let value = self.node(ev, span, depth + 1)?;
                    let NodeKind::Scalar { value: name, .. } = key_node.kind else {
                        self.soft.push((
                            Some(key_node.at),
                            ErrorKind::WrongType {
                                what: "a mapping key".into(),
                                expected: "a scalar",
                                found: "a list or mapping",
                            },
                        ));
                        continue;
                    };
                    if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == name) {
                        self.soft.push((
                            Some(key_node.at),
                            ErrorKind::DuplicateKey {
                                key: name,
                                first_line: first.at.line,
                            },
                        ));
                        continue;
                    }
                    entries.push((
                        Key {
                            name,
                            at: key_node.at,
                        },
                        value,
                    ));
                }
                (
                    Node {
                        at,
                        kind: NodeKind::Map(entries),
                    },
                    anchor,
                )
            }
            other => {
                return Err(vec![(
                    Some(at),
                    ErrorKind::Syntax(format!("unexpected event {other:?}")),
                )]);
            }
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

fn count_nodes(n: &Node) -> usize {
    match &n.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(_, v)| 1 + count_nodes(v))
                .sum::<usize>()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32) -> Option<Location> {
        Some(Location { line, column })
    }

    /// Positions are 1-based and point at the first character of keys and values.
    #[test]
    fn positions_are_one_based() {
        let (root, soft) = parse("a: 1\nb:\n  c: [x, y]\n").expect("valid yaml");
        assert!(soft.is_empty());
        let NodeKind::Map(e) = &root.kind else {
            panic!("map expected")
        };
        assert_eq!(Some(e[1].0.at), at(2, 1));
        let NodeKind::Map(inner) = &e[1].1.kind else {
            panic!("map expected")
        };
        assert_eq!(Some(inner[0].0.at), at(3, 3));
        let NodeKind::Seq(items) = &inner[0].1.kind else {
            panic!("seq expected")
        };
        assert_eq!(Some(items[1].at), at(3, 10));
    }

    /// A repeated key is reported at the second occurrence.
    #[test]
    fn duplicate_keys_are_reported() {
        let (_, soft) = parse("a: 1\nb: 2\na: 3\n").expect("valid yaml");
        assert_eq!(
            soft,
            vec![(
                at(3, 1),
                ErrorKind::DuplicateKey {
                    key: "a".into(),
                    first_line: 1
                }
            )]
        );
    }

    /// Syntax errors carry the scanner's position.
    #[test]
    fn syntax_error_has_position() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("unclosed flow sequence");
        assert!(matches!(err[0], (Some(_), ErrorKind::Syntax(_))), "{err:?}");
    }

    /// Aliases expand, but exponential expansion is refused.
    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let err = parse(&text).expect_err("too many nodes");
        assert!(matches!(err[0].1, ErrorKind::TooComplex(_)), "{err:?}");
    }

    /// Empty input is a positioned error, not a panic.
    #[test]
    fn empty_is_an_error() {
        assert_eq!(parse("").expect_err("empty").len(), 1);
        assert_eq!(parse("# only a comment\n").expect_err("empty").len(), 1);
    }
}
