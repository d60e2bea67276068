//! One company's dialplan: the typed form of one YAML file, and the code that
//! builds it from the node tree.
//!
//! Building runs in two passes: trunks first (so routes can check their
//! trunk references at the line of the reference), then names, then the
//! `goto` references between names.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::action::{self, Action};
use crate::error::{DialplanError, ErrorKind, Location};
use crate::parse::Cx;
use crate::types::{
    AudioCodec, DtmfMode, Extension, HostPort, LoginName, Transport, VideoCodec, parse_duration,
};
use crate::yaml::{self, Node, NodeKind};

/// The schema version this build reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Interval between OPTIONS keep-alives to a trunk peer when the file sets none.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(30);

/// Shortest keep-alive interval accepted: faster pings only load the PBX.
const MIN_KEEPALIVE: Duration = Duration::from_secs(1);

/// Names that cannot be tenants because the gateway answers them itself.
const RESERVED_TENANTS: &[&str] = &["echo"];

/// One company's validated dialplan.
#[derive(Debug, Clone)]
pub struct Dialplan {
    /// The file it was loaded from, as given to the loader.
    pub file: String,
    /// The company's named login (`acme`).
    pub tenant: LoginName,
    /// A human-readable company name for the directory.
    pub display_name: Option<String>,
    /// SIP trunks towards the company's PBX, by name.
    pub trunks: BTreeMap<String, Trunk>,
    /// Routes by sub-name; the empty key `""` is the company's main name.
    pub names: BTreeMap<String, NameEntry>,
    /// Which messenger names desk phones may call.
    pub inbound: Inbound,
    /// Where `tenant:` is written, for errors across files.
    pub(crate) tenant_at: Location,
}

impl Dialplan {
    /// Parses and validates one dialplan file; `file` is used in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Dialplan, Vec<DialplanError>> {
        let mut cx = Cx::new(file);
        let root = match yaml::parse(text) {
            Ok((root, soft)) => {
                for (at, kind) in soft {
                    cx.errors.push(DialplanError::new(file, at, kind));
                }
                root
            }
            Err(errs) => {
                return Err(errs
                    .into_iter()
                    .map(|(at, kind)| DialplanError::new(file, at, kind))
                    .collect());
            }
        };
        let plan = build(&mut cx, &root);
        match plan {
            Some(plan) if cx.errors.is_empty() => Ok(plan),
            _ => {
                cx.errors.sort_by_key(|e| e.location());
                Err(cx.errors)
            }
        }
    }

    /// The trunk named `name`.
    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.get(name)
    }

    /// The entry for a sub-name (`""` for the main name).
    pub fn name(&self, sub_name: &str) -> Option<&NameEntry> {
        self.names.get(sub_name)
    }

    /// The trunks a call routed to `trunk` may use, in the order they are
    /// tried: `trunk` itself, then its `failover` trunks depth-first in the
    /// order written (each trunk once). Empty when `trunk` is unknown.
    ///
    /// Validation refuses failover cycles, so the walk is finite anyway; the
    /// visited check only keeps a trunk reached twice from being tried twice.
    pub fn failover_order(&self, trunk: &str) -> Vec<&Trunk> {
        let mut out: Vec<&Trunk> = Vec::new();
        let mut stack = vec![trunk];
        while let Some(name) = stack.pop() {
            let Some(t) = self.trunks.get(name) else {
                continue;
            };
            if out.iter().any(|o| o.name == t.name) {
                continue;
            }
            out.push(t);
            stack.extend(t.failover.iter().rev().map(String::as_str));
        }
        out
    }
}

/// A SIP trunk towards the company's PBX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// The trunk's name in the file (`main`).
    pub name: String,
    /// How the gateway authenticates to the PBX.
    pub kind: TrunkKind,
    /// SIP transport as written; `None` when the file leaves it open: UDP
    /// for an address or a host with a port, DNS NAPTR records decide for a
    /// bare host name (RFC 3263). [`Trunk::transport_or_udp`] for the simple case.
    pub transport: Option<Transport>,
    /// A static address tried after the peer's own addresses (its DNS
    /// targets), and alone when the host name does not resolve.
    pub address: Option<std::net::SocketAddr>,
    /// Domain for From/To headers; defaults to the peer host when absent.
    pub domain: Option<String>,
    /// Lower is tried first when several trunks could carry a call.
    pub priority: u32,
    /// Trunks that carry a call when this one is down or refuses it with
    /// 503/408 or times out, in the order written (see [`Dialplan::failover_order`]).
    pub failover: Vec<String>,
    /// Interval between OPTIONS keep-alives to the peer; `None` (`off`)
    /// sends none and the trunk is always taken as up.
    pub keepalive: Option<Duration>,
    /// How DTMF digits are sent to the PBX (`dtmf:`, default RFC 4733).
    pub dtmf: DtmfMode,
    /// Audio codecs offered to and accepted from the PBX, in preference order
    /// (`codecs:`, default [`AudioCodec::DEFAULT`]: Opus, G.722, PCMU, PCMA).
    pub codecs: Vec<AudioCodec>,
    /// Video codecs passed through to and from the PBX, in preference order, when the
    /// caller sends video: `video: true` is VP8 then H.264, `video: [h264]` suits a
    /// PBX whose phones speak only H.264; empty (the default, `video: false`) is audio
    /// only.
    pub video: Vec<VideoCodec>,
}

impl Trunk {
    /// The transport, UDP when the file leaves it open.
    pub fn transport_or_udp(&self) -> Transport {
        self.transport.unwrap_or_default()
    }
}

/// How a trunk is authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkKind {
    /// The gateway REGISTERs to the PBX with digest credentials.
    Register {
        /// Where to send REGISTER and INVITE.
        registrar: HostPort,
        /// Digest user name.
        username: String,
        /// Digest password, preferably from the environment.
        password: Secret,
        /// Digest realm, when the PBX's challenge should be checked against it.
        realm: Option<String>,
    },
    /// The PBX trusts the gateway's IP address; no registration.
    Ip {
        /// Where to send INVITEs.
        proxy: HostPort,
        /// Source addresses accepted for calls from the PBX; empty means the
        /// resolved `proxy` only.
        allow_from: Vec<IpAddr>,
    },
}

/// A secret, kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Read from this environment variable when the trunk starts.
    Env(String),
    /// Written in the file (for labs; discouraged in production).
    Plain(String),
}

impl Secret {
    /// The secret's value, looking environment variables up through `env`.
    ///
    /// The lookup is passed in so this crate never reads process state itself.
    pub fn resolve(&self, env: impl FnOnce(&str) -> Option<String>) -> Option<String> {
        match self {
            Secret::Env(var) => env(var),
            Secret::Plain(p) => Some(p.clone()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(var) => f.debug_tuple("Env").field(var).finish(),
            Secret::Plain(_) => f.write_str("Plain(<redacted>)"),
        }
    }
}

/// What one name of the company does for calls and chats.
#[derive(Debug, Clone)]
pub struct NameEntry {
    /// A human-readable label for the directory (`Sales`).
    pub display_name: Option<String>,
    /// What a call to the name does; `None` for chat-only names.
    pub route: Option<Action>,
    /// Where a chat message to the name goes; `None` when chat is not offered.
    pub chat: Option<ChatRoute>,
}

/// Where chat messages to a name are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatRoute {
    /// SIP MESSAGE to an extension (a desk phone or a group).
    Message {
        /// Trunk to send on.
        trunk: String,
        /// Extension that receives the MESSAGE.
        target: Extension,
    },
}

/// Which messenger names a desk phone of the company may call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inbound {
    /// The allowed callees; empty means desk phones cannot call out to messenger users.
    pub allow: Vec<InboundAllow>,
}

impl Inbound {
    /// Whether a desk phone may call `callee` (a messenger user's login name).
    pub fn allows(&self, callee: &str) -> bool {
        self.allow.iter().any(|a| match a {
            InboundAllow::Users => true,
            InboundAllow::Name(n) => n.as_str() == callee,
        })
    }
}

/// One entry of `inbound.allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundAllow {
    /// Any messenger user (`users`).
    Users,
    /// One named login.
    Name(LoginName),
}

const TOP_KEYS: &[&str] = &[
    "version",
    "tenant",
    "display_name",
    "trunks",
    "names",
    "inbound",
];

fn build(cx: &mut Cx<'_>, root: &Node) -> Option<Dialplan> {
    // The version decides the schema, so check it before reading anything else.
    if let NodeKind::Map(entries) = &root.kind {
        match entries.iter().find(|(k, _)| k.name == "version") {
            Some((_, v)) => {
                let text = cx.scalar(v, "version")?;
                if text != SCHEMA_VERSION.to_string() {
                    cx.err(v.at, ErrorKind::UnsupportedVersion(text.to_owned()));
                    return None;
                }
            }
            None => {
                cx.err(
                    root.at,
                    ErrorKind::MissingKey {
                        key: "version".into(),
                        context: "the dialplan (write `version: 1`)".into(),
                    },
                );
                return None;
            }
        }
    }
    let f = cx.map(
        root,
        "the dialplan",
        TOP_KEYS,
        &["version", "tenant", "names"],
    )?;
    let tenant_at = f.get("tenant").map_or(root.at, |n| n.at);
    let tenant = f.get("tenant").and_then(|n| {
        let t = cx.value(n, "tenant name", LoginName::parse)?;
        if RESERVED_TENANTS.contains(&t.as_str()) {
            cx.invalid(
                n.at,
                "tenant name",
                t.as_str(),
                "reserved for the built-in echo target".into(),
            );
            return None;
        }
        Some(t)
    });
    let display_name = f
        .get("display_name")
        .and_then(|n| cx.scalar(n, "display_name"))
        .map(str::to_owned);
    let trunks = f.get("trunks").map(|n| trunks(cx, n)).unwrap_or_default();
    cx.trunks = trunks.keys().cloned().collect();
    let names = f.get("names").map(|n| names(cx, n)).unwrap_or_default();
    let inbound = f.get("inbound").map(|n| inbound(cx, n)).unwrap_or_default();

    check_gotos(cx, &names);

    Some(Dialplan {
        file: cx.file.to_owned(),
        tenant: tenant?,
        display_name,
        trunks,
        names,
        inbound,
        tenant_at,
    })
}

/// Checks that every goto target exists and that no gotos form a loop that
/// could spin without the caller pressing a key.
///
/// Loops through `hours` branches are refused even when the schedules never
/// overlap: proving that would need the calendar, and such a file is a trap
/// for the next edit anyway.
fn check_gotos(cx: &mut Cx<'_>, names: &BTreeMap<String, NameEntry>) {
    let gotos = std::mem::take(&mut cx.gotos);
    let shown = |k: &str| {
        if k.is_empty() {
            "\"\" (main)".to_owned()
        } else {
            k.to_owned()
        }
    };
    for g in &gotos {
        if !names.contains_key(&g.to) {
            let defined = names
                .keys()
                .map(|k| shown(k))
                .collect::<Vec<_>>()
                .join(", ");
            cx.err(
                g.at,
                ErrorKind::UnknownName {
                    name: g.to.clone(),
                    defined,
                },
            );
        }
    }
    let edges: Vec<&crate::parse::GotoRef> = gotos.iter().filter(|g| g.immediate).collect();
    let mut reported: Vec<Vec<String>> = Vec::new();
    for start in &edges {
        // Breadth-first from the target back to the source, remembering the way.
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.to.as_str()]);
        let mut found = start.to == start.from;
        while let Some(n) = queue.pop_front() {
            if found {
                break;
            }
            for e in edges.iter().filter(|e| e.from == n) {
                if e.to == start.from {
                    parent.insert(e.to.as_str(), n);
                    found = true;
                    break;
                }
                if e.to != start.to && !parent.contains_key(e.to.as_str()) {
                    parent.insert(e.to.as_str(), n);
                    queue.push_back(e.to.as_str());
                }
            }
        }
        if !found {
            continue;
        }
        let mut cycle = vec![start.from.clone()];
        let mut n = start.from.as_str();
        while n != start.to {
            let Some(p) = parent.get(n) else { break };
            cycle.push((*p).to_owned());
            n = p;
        }
        cycle.reverse();
        let mut key = cycle.clone();
        key.sort();
        key.dedup();
        if reported.contains(&key) {
            continue;
        }
        reported.push(key);
        let path: Vec<String> = std::iter::once(&start.from)
            .chain(cycle.iter())
            .map(|k| shown(k))
            .collect();
        cx.err(
            start.at,
            ErrorKind::Conflict(format!(
                "goto loop {} without a menu in between; calls would never ring",
                path.join(" -> ")
            )),
        );
    }
}

fn trunk_name_ok(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 32 {
        return Err("a trunk name has 1 to 32 characters".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err("use lowercase letters, digits, `-` and `_`".into());
    }
    Ok(())
}

const REGISTER_KEYS: &[&str] = &[
    "kind",
    "registrar",
    "transport",
    "username",
    "password",
    "password_env",
    "realm",
    "domain",
    "priority",
    "failover",
    "keepalive",
    "address",
    "dtmf",
    "codecs",
    "video",
];
const IP_KEYS: &[&str] = &[
    "kind",
    "proxy",
    "allow_from",
    "transport",
    "domain",
    "priority",
    "failover",
    "keepalive",
    "address",
    "dtmf",
    "codecs",
    "video",
];

/// One `failover` entry: trunk `from` lists `to`, written at `at`.
struct FailoverRef {
    from: String,
    to: String,
    at: Location,
}

fn trunks(cx: &mut Cx<'_>, node: &Node) -> BTreeMap<String, Trunk> {
    let mut out = BTreeMap::new();
    let NodeKind::Map(entries) = &node.kind else {
        cx.err(
            node.at,
            ErrorKind::WrongType {
                what: "trunks".into(),
                expected: "a mapping",
                found: node.type_name(),
            },
        );
        return out;
    };
    let mut refs = Vec::new();
    for (key, value) in entries {
        if let Err(reason) = trunk_name_ok(&key.name) {
            cx.invalid(key.at, "trunk name", &key.name, reason);
            continue;
        }
        if let Some(t) = trunk(cx, &key.name, value, &mut refs) {
            out.insert(key.name.clone(), t);
        } else {
            // Keep the name known so routes referring to it do not add a
            // second, misleading "unknown trunk" error.
            out.insert(key.name.clone(), placeholder_trunk(&key.name));
        }
    }
    check_failover(cx, &out, &refs);
    out
}

/// Checks that every `failover` entry names a trunk of the file and that no
/// chain of failovers leads back to where it started. A cycle is reported
/// once, at the first entry of it in file order.
fn check_failover(cx: &mut Cx<'_>, trunks: &BTreeMap<String, Trunk>, refs: &[FailoverRef]) {
    for r in refs {
        if !trunks.contains_key(&r.to) {
            cx.err(
                r.at,
                ErrorKind::UnknownTrunk {
                    name: r.to.clone(),
                    defined: trunks.keys().cloned().collect::<Vec<_>>().join(", "),
                },
            );
        }
    }
    let mut reported: Vec<Vec<String>> = Vec::new();
    for start in refs {
        let mut path = vec![start.from.clone(), start.to.clone()];
        let mut seen = vec![start.to.clone()];
        if !way_back(refs, &start.from, &mut path, &mut seen) {
            continue;
        }
        let mut key = path.clone();
        key.sort();
        key.dedup();
        if reported.contains(&key) {
            continue;
        }
        reported.push(key);
        cx.err(
            start.at,
            ErrorKind::Conflict(format!(
                "failover cycle {}; a trunk must not fail over back to itself",
                path.join(" -> ")
            )),
        );
    }
}

/// Depth-first from the last trunk of `path` towards `home`; on success
/// `path` ends at `home`. `seen` keeps the walk linear in the number of
/// entries (a trunk that did not lead home once will not later either), and
/// the walk keeps its own stack so a huge file cannot overflow the thread's.
fn way_back(
    refs: &[FailoverRef],
    home: &str,
    path: &mut Vec<String>,
    seen: &mut Vec<String>,
) -> bool {
    // For each trunk on the path after the first: the next entry to try from it.
    let mut next: Vec<usize> = vec![0; path.len().saturating_sub(1)];
    while let (Some(here), Some(i)) = (path.last().cloned(), next.last().copied()) {
        if here == home {
            return true;
        }
        let Some((j, r)) = refs
            .iter()
            .enumerate()
            .skip(i)
            .find(|(_, r)| r.from == here && (r.to == home || !seen.contains(&r.to)))
        else {
            path.pop();
            next.pop();
            continue;
        };
        if let Some(n) = next.last_mut() {
            *n = j + 1;
        }
        seen.push(r.to.clone());
        path.push(r.to.clone());
        next.push(0);
    }
    false
}

fn placeholder_trunk(name: &str) -> Trunk {
    Trunk {
        name: name.to_owned(),
        kind: TrunkKind::Ip {
            proxy: HostPort {
                host: "invalid".into(),
                port: None,
            },
            allow_from: Vec::new(),
        },
        transport: None,
        address: None,
        domain: None,
        priority: u32::MAX,
        failover: Vec::new(),
        keepalive: None,
        dtmf: DtmfMode::default(),
        codecs: AudioCodec::DEFAULT.to_vec(),
        video: Vec::new(),
    }
}

fn trunk(cx: &mut Cx<'_>, name: &str, node: &Node, refs: &mut Vec<FailoverRef>) -> Option<Trunk> {
    let context = format!("trunk `{name}`");
    let kind_text = match &node.kind {
        NodeKind::Map(entries) => match entries.iter().find(|(k, _)| k.name == "kind") {
            Some((_, v)) => cx.value(v, "trunk kind", |s| match s {
                "register" | "ip" => Ok(s.to_owned()),
                _ => Err("expected `register` or `ip`".into()),
            })?,
            None => {
                cx.err(
                    node.at,
                    ErrorKind::MissingKey {
                        key: "kind".into(),
                        context,
                    },
                );
                return None;
            }
        },
        _ => {
            cx.map(node, &context, &[], &[]);
            return None;
        }
    };
    let (allowed, required): (&[&str], &[&str]) = if kind_text == "register" {
        (REGISTER_KEYS, &["kind", "registrar", "username"])
    } else {
        (IP_KEYS, &["kind", "proxy"])
    };
    let f = cx.map(
        node,
        &format!("{kind_text} trunk `{name}`"),
        allowed,
        required,
    )?;
    let transport = match f.get("transport") {
        Some(n) => Some(cx.value(n, "transport", Transport::parse)?),
        None => None,
    };
    let address = match f.get("address") {
        Some(n) => Some(cx.value(n, "address", |s| {
            if let Ok(a) = s.parse::<std::net::SocketAddr>() {
                return Ok(a);
            }
            s.parse::<IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 5060))
                .map_err(|_| {
                    "expected an ip address with an optional port, e.g. `192.0.2.7:5060`".into()
                })
        })?),
        None => None,
    };
    let domain = f
        .get("domain")
        .and_then(|n| cx.scalar(n, "domain"))
        .map(str::to_owned);
    let priority = match f.get("priority") {
        Some(n) => cx.value(n, "priority", |s| {
            s.parse::<u32>()
                .map_err(|_| "expected a whole number".into())
        })?,
        None => 1,
    };
    let keepalive = match f.get("keepalive") {
        Some(n) => cx.value(n, "keepalive", |s| {
            if s == "off" {
                return Ok(None);
            }
            let d = parse_duration(s).map_err(|e| format!("{e}; or `off`"))?;
            if d < MIN_KEEPALIVE {
                return Err("a keep-alive interval is at least 1s".into());
            }
            Ok(Some(d))
        })?,
        None => Some(DEFAULT_KEEPALIVE),
    };
    let mut failover = Vec::new();
    if let Some(list) = f.get("failover").and_then(|n| cx.list(n, "failover")) {
        for item in list {
            let Some(to) = cx.scalar(item, "failover trunk") else {
                continue;
            };
            if failover.iter().any(|t| t == to) {
                cx.invalid(item.at, "failover trunk", to, "listed twice".into());
                continue;
            }
            failover.push(to.to_owned());
            refs.push(FailoverRef {
                from: name.to_owned(),
                to: to.to_owned(),
                at: item.at,
            });
        }
    }
    let dtmf = match f.get("dtmf") {
        Some(n) => cx.value(n, "dtmf mode", DtmfMode::parse)?,
        None => DtmfMode::default(),
    };
    let codecs = match f.get("codecs") {
        Some(n) => codec_list(cx, n, "codecs", "audio codec", AudioCodec::parse)?,
        None => AudioCodec::DEFAULT.to_vec(),
    };
    let video = match f.get("video") {
        Some(n) if matches!(n.kind, NodeKind::Seq(_)) => {
            codec_list(cx, n, "video", "video codec", VideoCodec::parse)?
        }
        Some(n) => cx.value(n, "video", |s| match s {
            "true" | "yes" | "on" => Ok(VideoCodec::DEFAULT.to_vec()),
            "false" | "no" | "off" => Ok(Vec::new()),
            _ => Err("expected `true`, `false` or a list of codecs (`[h264, vp8]`)".into()),
        })?,
        None => Vec::new(),
    };
    let kind = if kind_text == "register" {
        let registrar = cx.value(f.get("registrar")?, "registrar", HostPort::parse);
        let username = f
            .get("username")
            .and_then(|n| cx.scalar(n, "username"))
            .map(str::to_owned);
        let password = match (f.get("password_env"), f.get("password")) {
            (Some(_), Some(p)) => {
                cx.err(
                    p.at,
                    ErrorKind::Conflict("set either `password_env` or `password`, not both".into()),
                );
                None
            }
            (Some(e), None) => cx.value(e, "environment variable name", |s| {
                if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    Ok(Secret::Env(s.to_owned()))
                } else {
                    Err("use letters, digits and `_`".into())
                }
            }),
            (None, Some(p)) => cx
                .scalar(p, "password")
                .map(|s| Secret::Plain(s.to_owned())),
            (None, None) => {
                cx.err(
                    node.at,
                    ErrorKind::MissingKey {
                        key: "password_env".into(),
                        context: format!("register trunk `{name}` (or `password`)"),
                    },
                );
                None
            }
        };
        let realm = f
            .get("realm")
            .and_then(|n| cx.scalar(n, "realm"))
            .map(str::to_owned);
        TrunkKind::Register {
            registrar: registrar?,
            username: username?,
            password: password?,
            realm,
        }
    } else {
        let proxy = cx.value(f.get("proxy")?, "proxy", HostPort::parse);
        let mut allow_from = Vec::new();
        if let Some(list) = f.get("allow_from").and_then(|n| cx.list(n, "allow_from")) {
            for item in list {
                if let Some(ip) = cx.value(item, "ip address", |s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| "expected an ipv4 or ipv6 address".into())
                }) {
                    allow_from.push(ip);
                }
            }
        }
        TrunkKind::Ip {
            proxy: proxy?,
            allow_from,
        }
    };
    Some(Trunk {
        name: name.to_owned(),
        kind,
        transport,
        address,
        domain,
        priority,
        failover,
        keepalive,
        dtmf,
        codecs,
        video,
    })
}

/// A codec list (`codecs: [opus, pcmu]`, `video: [h264, vp8]`): at least one codec,
/// each once, in preference order.
fn codec_list<T: PartialEq>(
    cx: &mut Cx<'_>,
    node: &Node,
    key: &str,
    what: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    let items = cx.list(node, key)?;
    if items.is_empty() {
        cx.invalid(node.at, what, "[]", "list at least one codec".into());
        return None;
    }
    let mut codecs = Vec::new();
    let mut ok = true;
    for item in items {
        match cx.value(item, what, &parse) {
            Some(c) if codecs.contains(&c) => {
                let text = match &item.kind {
                    NodeKind::Scalar { value, .. } => value.as_str(),
                    _ => "",
                };
                cx.invalid(item.at, what, text, "listed twice".into());
                ok = false;
            }
            Some(c) => codecs.push(c),
            None => ok = false,
        }
    }
    ok.then_some(codecs)
}

/// A sub-name follows the login-name rules; `""` is the company's main name.
fn sub_name_ok(s: &str) -> Result<(), String> {
    if s.is_empty() {
        Ok(())
    } else {
        LoginName::parse(s).map(|_| ())
    }
}

const NAME_KEYS: &[&str] = &["display_name", "route", "chat"];

fn names(cx: &mut Cx<'_>, node: &Node) -> BTreeMap<String, NameEntry> {
    let mut out = BTreeMap::new();
    let NodeKind::Map(entries) = &node.kind else {
        cx.err(
            node.at,
            ErrorKind::WrongType {
                what: "names".into(),
                expected: "a mapping",
                found: node.type_name(),
            },
        );
        return out;
    };
    for (key, value) in entries {
        if let Err(reason) = sub_name_ok(&key.name) {
            cx.invalid(key.at, "name", &key.name, reason);
            continue;
        }
        let context = if key.name.is_empty() {
            "the main name `\"\"`".to_owned()
        } else {
            format!("name `{}`", key.name)
        };
        let Some(f) = cx.map(value, &context, NAME_KEYS, &[]) else {
            continue;
        };
        if !f.has("route") && !f.has("chat") {
            cx.err(
                value.at,
                ErrorKind::MissingKey {
                    key: "route".into(),
                    context: format!("{context} (or `chat`)"),
                },
            );
        }
        let display_name = f
            .get("display_name")
            .and_then(|n| cx.scalar(n, "display_name"))
            .map(str::to_owned);
        cx.current_name.clone_from(&key.name);
        let route = f.get("route").and_then(|n| action::parse(cx, n));
        let chat = f.get("chat").and_then(|n| chat(cx, n));
        out.insert(
            key.name.clone(),
            NameEntry {
                display_name,
                route,
                chat,
            },
        );
    }
    out
}

fn chat(cx: &mut Cx<'_>, node: &Node) -> Option<ChatRoute> {
    let f = cx.map(node, "chat", &["message"], &["message"])?;
    let m = cx.map(
        f.get("message")?,
        "chat `message`",
        &["trunk", "extension"],
        &["trunk", "extension"],
    )?;
    let trunk = m.get("trunk").and_then(|n| cx.trunk_ref(n));
    let target = m
        .get("extension")
        .and_then(|n| cx.value(n, "extension", Extension::parse));
    Some(ChatRoute::Message {
        trunk: trunk?,
        target: target?,
    })
}

fn inbound(cx: &mut Cx<'_>, node: &Node) -> Inbound {
    let mut out = Inbound::default();
    let Some(f) = cx.map(node, "inbound", &["allow"], &[]) else {
        return out;
    };
    if let Some(list) = f.get("allow").and_then(|n| cx.list(n, "inbound.allow")) {
        for item in list {
            let Some(text) = cx.scalar(item, "inbound.allow entry") else {
                continue;
            };
            if text == "users" {
                out.allow.push(InboundAllow::Users);
            } else if let Some(n) = cx.value(item, "login name", LoginName::parse) {
                out.allow.push(InboundAllow::Name(n));
            }
        }
    }
    out
}
