//! RFC 3263 server location: which transport, address and port a request goes to.
//!
//! This file owns the decision procedure of RFC 3263 section 4 (NAPTR, then
//! SRV, then A/AAAA; an explicit port or a numeric host skips SRV; the
//! `transport=` parameter skips NAPTR) and the RFC 2782 ordering of SRV
//! records. It performs no lookups itself: [`Resolver`] is a sans-IO planner
//! that asks for DNS records through [`Resolver::poll_query`] and takes the
//! answers through [`Resolver::handle_answer`], so the gateway can answer
//! with hickory-resolver asynchronously while tests answer from a table. The
//! [`Lookup`] trait plus [`resolve`] cover the synchronous case (tests, a
//! pre-filled cache). Weight randomisation uses an injected RNG.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use rand::RngCore;

use crate::message::{Scheme, Uri};

pub use crate::transaction::Transport;

/// Parses a `transport=` URI parameter value, case-insensitively.
pub fn transport_from_param(value: &str) -> Option<Transport> {
    match value.to_ascii_lowercase().as_str() {
        "udp" => Some(Transport::Udp),
        "tcp" => Some(Transport::Tcp),
        "tls" => Some(Transport::Tls),
        "ws" => Some(Transport::Ws),
        "wss" => Some(Transport::Wss),
        _ => None,
    }
}

/// The SRV owner name prefix of a transport; WebSocket has none (RFC 7118 uses no SRV).
fn srv_prefix(t: Transport) -> Option<&'static str> {
    match t {
        Transport::Udp => Some("_sip._udp."),
        Transport::Tcp => Some("_sip._tcp."),
        Transport::Tls => Some("_sips._tcp."),
        Transport::Ws | Transport::Wss => None,
    }
}

/// The NAPTR service field of a transport (RFC 3263 section 4.1).
fn naptr_service(t: Transport) -> Option<&'static str> {
    match t {
        Transport::Udp => Some("SIP+D2U"),
        Transport::Tcp => Some("SIP+D2T"),
        Transport::Tls => Some("SIPS+D2T"),
        Transport::Ws | Transport::Wss => None,
    }
}

/// Whether a transport is acceptable for a `sips:` URI.
fn is_secure(t: Transport) -> bool {
    matches!(t, Transport::Tls | Transport::Wss)
}

/// The host part of a URI: a DNS name or a literal address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, resolved through NAPTR/SRV/A.
    Name(String),
    /// A numeric address, used as is.
    Ip(IpAddr),
}

impl Host {
    /// Classifies a URI host, accepting bracketed IPv6 (`[::1]`).
    pub fn parse(host: &str) -> Self {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => Self::Ip(ip),
            Err(_) => Self::Name(host.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

/// What to resolve: the parts of a SIP URI that RFC 3263 looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    /// URI host (or `maddr` when present).
    pub host: Host,
    /// Explicit port, if the URI has one.
    pub port: Option<u16>,
    /// The `transport=` parameter, if any.
    pub transport: Option<Transport>,
    /// `sips:` scheme: only TLS targets are acceptable.
    pub secure: bool,
}

impl ResolveRequest {
    /// The RFC 3263 inputs of a SIP URI: `maddr` over host, port, `transport=`, `sips:`.
    pub fn from_uri(uri: &Uri) -> Self {
        let host = match uri.param("maddr") {
            Some(Some(maddr)) => maddr,
            _ => uri.host.as_str(),
        };
        Self {
            host: Host::parse(host),
            port: uri.port,
            transport: uri
                .transport_param()
                .as_deref()
                .and_then(transport_from_param),
            secure: uri.scheme == Scheme::Sips,
        }
    }

    /// A request for `host` with no port, transport or `sips`.
    pub fn host(host: &str) -> Self {
        Self {
            host: Host::parse(host),
            port: None,
            transport: None,
            secure: false,
        }
    }
}

/// One NAPTR record (RFC 3403), as far as SIP uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaptrRecord {
    /// Lower is tried first.
    pub order: u16,
    /// Tie-breaker within one order, lower first.
    pub preference: u16,
    /// Flags; SIP uses `S` (next step is SRV).
    pub flags: String,
    /// Service, e.g. `SIP+D2U` or `SIPS+D2T`.
    pub services: String,
    /// SRV owner name to look up next.
    pub replacement: String,
}

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative share among records of the same priority.
    pub weight: u16,
    /// Port on the target.
    pub port: u16,
    /// Target host; `.` means the service is not offered.
    pub target: String,
}

/// A DNS question the planner wants answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    /// NAPTR records of a domain.
    Naptr(String),
    /// SRV records of an owner name such as `_sip._udp.example.com`.
    Srv(String),
    /// A and AAAA records of a host.
    Ip(String),
}

/// The answer to a [`Query`]; failures (NXDOMAIN, SERVFAIL, timeout) are an empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Records for [`Query::Naptr`].
    Naptr(Vec<NaptrRecord>),
    /// Records for [`Query::Srv`].
    Srv(Vec<SrvRecord>),
    /// Addresses for [`Query::Ip`].
    Ip(Vec<IpAddr>),
}

/// A synchronous DNS source, for tests and pre-filled caches.
pub trait Lookup {
    /// NAPTR records of `domain`; empty on any failure.
    fn naptr(&mut self, domain: &str) -> Vec<NaptrRecord>;
    /// SRV records of `name`; empty on any failure.
    fn srv(&mut self, name: &str) -> Vec<SrvRecord>;
    /// A and AAAA records of `host`; empty on any failure.
    fn ip(&mut self, host: &str) -> Vec<IpAddr>;
}

/// One place to send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// Transport to use.
    pub transport: Transport,
    /// Destination address and port.
    pub addr: SocketAddr,
}

/// Resolver settings.
#[derive(Debug, Clone)]
pub struct ResolveConfig {
    /// Transports we can use, most preferred first (ordering SRV fallback queries).
    pub transports: Vec<Transport>,
    /// Targets used when DNS yields nothing (a configured trunk address).
    pub fallback: Vec<Target>,
}

impl Default for ResolveConfig {
    fn default() -> Self {
        Self {
            transports: vec![Transport::Udp, Transport::Tcp, Transport::Tls],
            fallback: Vec::new(),
        }
    }
}

/// Work still to do, processed strictly in order so the output order is deterministic.
#[derive(Debug, Clone)]
enum Step {
    Naptr(String),
    Srv(Transport, String),
    Host(Transport, String, u16),
}

/// The sans-IO RFC 3263 planner for one request.
///
/// Drive it with `while let Some(q) = r.poll_query() { r.handle_answer(q-answer, rng) }`,
/// then take [`Resolver::into_targets`].
#[derive(Debug)]
pub struct Resolver {
    config: ResolveConfig,
    secure: bool,
    /// Host to fall back to with A/AAAA when SRV finds nothing.
    fallback_host: Option<(Transport, String, u16)>,
    steps: VecDeque<Step>,
    /// The step whose query is out, if any.
    outstanding: Option<Step>,
    /// SRV queries queued but not answered; when it reaches zero without records, use A/AAAA.
    srv_pending: usize,
    srv_found: bool,
    /// Addresses already learned, so one host named by several SRV records is asked once.
    ip_cache: HashMap<String, Vec<IpAddr>>,
    targets: Vec<Target>,
}

impl Resolver {
    /// Plans resolution for `req`; numeric hosts resolve without any query.
    pub fn new(req: &ResolveRequest, config: ResolveConfig) -> Self {
        let mut r = Self {
            config,
            secure: req.secure,
            fallback_host: None,
            steps: VecDeque::new(),
            outstanding: None,
            srv_pending: 0,
            srv_found: false,
            ip_cache: HashMap::new(),
            targets: Vec::new(),
        };
        let default_transport = if req.secure {
            Transport::Tls
        } else {
            Transport::Udp
        };
        // sips: means TLS whatever the transport parameter says (RFC 3261 26.2.2);
        // without a parameter NAPTR still runs, filtered to SIPS services.
        let transport = if req.secure {
            req.transport.map(|t| match t {
                Transport::Ws | Transport::Wss => Transport::Wss,
                _ => Transport::Tls,
            })
        } else {
            req.transport
        };
        match (&req.host, req.port, transport) {
            (Host::Ip(ip), port, t) => {
                let t = t.unwrap_or(default_transport);
                let port = port.unwrap_or(t.default_port());
                r.targets.push(Target {
                    transport: t,
                    addr: SocketAddr::new(*ip, port),
                });
            }
            (Host::Name(name), Some(port), t) => {
                r.steps.push_back(Step::Host(
                    t.unwrap_or(default_transport),
                    name.clone(),
                    port,
                ));
            }
            (Host::Name(name), None, Some(t)) => match srv_prefix(t) {
                Some(prefix) => {
                    r.fallback_host = Some((t, name.clone(), t.default_port()));
                    r.push_srv(t, format!("{prefix}{name}"));
                }
                None => r
                    .steps
                    .push_back(Step::Host(t, name.clone(), t.default_port())),
            },
            (Host::Name(name), None, None) => {
                r.fallback_host = Some((
                    default_transport,
                    name.clone(),
                    default_transport.default_port(),
                ));
                r.steps.push_back(Step::Naptr(name.clone()));
            }
        }
        r
    }

    /// The next DNS question, or `None` when resolution is complete.
    ///
    /// Only one query is outstanding at a time; it is repeated until answered.
    pub fn poll_query(&mut self) -> Option<Query> {
        loop {
            if let Some(step) = &self.outstanding {
                return Some(match step {
                    Step::Naptr(d) => Query::Naptr(d.clone()),
                    Step::Srv(_, n) => Query::Srv(n.clone()),
                    Step::Host(_, h, _) => Query::Ip(h.clone()),
                });
            }
            let step = self.steps.pop_front()?;
            if let Step::Host(t, host, port) = &step
                && let Some(ips) = self.ip_cache.get(host).cloned()
            {
                self.push_targets(*t, &ips, *port);
                continue;
            }
            self.outstanding = Some(step);
        }
    }

    /// Feeds the answer to the query last returned by [`poll_query`](Self::poll_query).
    ///
    /// An answer of the wrong kind counts as an empty answer.
    pub fn handle_answer(&mut self, answer: Answer, rng: &mut dyn RngCore) {
        let Some(step) = self.outstanding.take() else {
            return;
        };
        match (step, answer) {
            (Step::Naptr(domain), answer) => {
                let records = match answer {
                    Answer::Naptr(r) => r,
                    _ => Vec::new(),
                };
                self.on_naptr(&domain, records);
            }
            (Step::Srv(t, _), answer) => {
                self.srv_pending = self.srv_pending.saturating_sub(1);
                let records = match answer {
                    Answer::Srv(r) => r,
                    _ => Vec::new(),
                };
                for rec in order_srv(records, rng) {
                    self.srv_found = true;
                    let host = rec.target.trim_end_matches('.').to_ascii_lowercase();
                    self.steps.push_back(Step::Host(t, host, rec.port));
                }
                if self.srv_pending == 0 && !self.srv_found {
                    // RFC 3263 4.2: no SRV records, use A/AAAA with the default port.
                    if let Some((t, h, p)) = self.fallback_host.take() {
                        self.steps.push_back(Step::Host(t, h, p));
                    }
                }
            }
            (Step::Host(t, host, port), answer) => {
                let ips = match answer {
                    Answer::Ip(ips) => ips,
                    _ => Vec::new(),
                };
                self.push_targets(t, &ips, port);
                self.ip_cache.insert(host, ips);
            }
        }
    }

    /// Whether every query has been answered.
    pub fn is_done(&self) -> bool {
        self.outstanding.is_none() && self.steps.is_empty()
    }

    /// The ordered targets; the configured fallback when DNS gave nothing.
    pub fn into_targets(self) -> TargetList {
        let mut targets = self.targets;
        if targets.is_empty() {
            targets = self.config.fallback;
        }
        let mut seen = Vec::with_capacity(targets.len());
        targets.retain(|t| {
            let fresh = !seen.contains(t);
            seen.push(*t);
            fresh
        });
        TargetList { targets, pos: 0 }
    }

    fn push_srv(&mut self, t: Transport, name: String) {
        self.srv_pending += 1;
        self.steps.push_back(Step::Srv(t, name));
    }

    fn push_targets(&mut self, t: Transport, ips: &[IpAddr], port: u16) {
        for ip in ips {
            self.targets.push(Target {
                transport: t,
                addr: SocketAddr::new(*ip, port),
            });
        }
    }

    fn on_naptr(&mut self, domain: &str, mut records: Vec<NaptrRecord>) {
        records.sort_by_key(|r| (r.order, r.preference));
        let mut any = false;
        for rec in records {
            if !rec.flags.eq_ignore_ascii_case("s") {
                continue;
            }
            let Some(t) = self.config.transports.iter().copied().find(|t| {
                naptr_service(*t).is_some_and(|svc| rec.services.eq_ignore_ascii_case(svc))
            }) else {
                continue;
            };
            if self.secure && !is_secure(t) {
                continue;
            }
            any = true;
            let name = rec.replacement.trim_end_matches('.').to_ascii_lowercase();
            self.push_srv(t, name);
        }
        if !any {
            // RFC 3263 4.1: no usable NAPTR, query SRV for each transport we support.
            let transports: Vec<Transport> = self
                .config
                .transports
                .iter()
                .copied()
                .filter(|t| !self.secure || is_secure(*t))
                .collect();
            for t in transports {
                if let Some(prefix) = srv_prefix(t) {
                    self.push_srv(t, format!("{prefix}{domain}"));
                }
            }
            if self.srv_pending == 0
                && let Some((t, h, p)) = self.fallback_host.take()
            {
                self.steps.push_back(Step::Host(t, h, p));
            }
        }
    }
}

/// Runs a [`Resolver`] to completion against a synchronous [`Lookup`].
pub fn resolve(
    req: &ResolveRequest,
    config: ResolveConfig,
    lookup: &mut dyn Lookup,
    rng: &mut dyn RngCore,
) -> TargetList {
    let mut r = Resolver::new(req, config);
    while let Some(q) = r.poll_query() {
        let answer = match &q {
            Query::Naptr(d) => Answer::Naptr(lookup.naptr(d)),
            Query::Srv(n) => Answer::Srv(lookup.srv(n)),
            Query::Ip(h) => Answer::Ip(lookup.ip(h)),
        };
        r.handle_answer(answer, rng);
    }
    r.into_targets()
}

/// Orders SRV records per RFC 2782: ascending priority, weighted random within a priority.
pub fn order_srv(mut records: Vec<SrvRecord>, rng: &mut dyn RngCore) -> Vec<SrvRecord> {
    // A lone "." target means "decidedly not available" (RFC 2782).
    records.retain(|r| r.target != "." && !r.target.is_empty());
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let n = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let (group, tail) = rest.split_at(n);
        rest = tail;
        // Zero-weight records first, so they get a small chance (RFC 2782 "Usage rules").
        let mut group: Vec<SrvRecord> = group.to_vec();
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                let roll = rng.next_u64() % (total + 1);
                let mut running = 0u64;
                group
                    .iter()
                    .position(|r| {
                        running += u64::from(r.weight);
                        running >= roll
                    })
                    .unwrap_or(group.len() - 1)
            };
            out.push(group.remove(pick));
        }
    }
    out
}

/// Ordered targets with a cursor: the current one, and the next after a timeout or 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetList {
    targets: Vec<Target>,
    pos: usize,
}

impl TargetList {
    /// A list from already ordered targets.
    pub fn new(targets: Vec<Target>) -> Self {
        Self { targets, pos: 0 }
    }

    /// The target to use now, or `None` when all have failed.
    pub fn current(&self) -> Option<&Target> {
        self.targets.get(self.pos)
    }

    /// Marks the current target failed (transport error, timeout, 503) and returns the next.
    pub fn next_target(&mut self) -> Option<&Target> {
        if self.pos < self.targets.len() {
            self.pos += 1;
        }
        self.current()
    }

    /// Starts over at the first target (a new attempt after all failed).
    pub fn rewind(&mut self) {
        self.pos = 0;
    }

    /// Whether a final response status means "try the next target" (RFC 3263 section 4.3).
    pub fn fails_over_on(status: u16) -> bool {
        status == 503
    }

    /// All targets in order.
    pub fn as_slice(&self) -> &[Target] {
        &self.targets
    }

    /// Whether no target is known at all.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// A DNS table that records the questions asked.
    #[derive(Default)]
    struct FakeDns {
        naptr: HashMap<String, Vec<NaptrRecord>>,
        srv: HashMap<String, Vec<SrvRecord>>,
        ip: HashMap<String, Vec<IpAddr>>,
        asked: Vec<Query>,
    }

    impl Lookup for FakeDns {
        fn naptr(&mut self, d: &str) -> Vec<NaptrRecord> {
            self.asked.push(Query::Naptr(d.into()));
            self.naptr.get(d).cloned().unwrap_or_default()
        }
        fn srv(&mut self, n: &str) -> Vec<SrvRecord> {
            self.asked.push(Query::Srv(n.into()));
            self.srv.get(n).cloned().unwrap_or_default()
        }
        fn ip(&mut self, h: &str) -> Vec<IpAddr> {
            self.asked.push(Query::Ip(h.into()));
            self.ip.get(h).cloned().unwrap_or_default()
        }
    }

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn addrs(list: &TargetList) -> Vec<(Transport, String)> {
        list.as_slice()
            .iter()
            .map(|t| (t.transport, t.addr.to_string()))
            .collect()
    }

    fn run(req: ResolveRequest, dns: &mut FakeDns) -> TargetList {
        let mut rng = StdRng::seed_from_u64(3);
        resolve(&req, ResolveConfig::default(), dns, &mut rng)
    }

    /// URI inputs: maddr wins over host, transport and sips are read.
    #[test]
    fn request_from_uri() {
        let u = Uri::parse("sips:alice@example.com;transport=TCP;maddr=10.0.0.1").expect("uri");
        let req = ResolveRequest::from_uri(&u);
        assert_eq!(req.host, Host::Ip("10.0.0.1".parse().expect("ip")));
        assert_eq!(req.transport, Some(Transport::Tcp));
        assert!(req.secure);
        let u = Uri::parse("sip:[2001:db8::5]:5080").expect("uri");
        let req = ResolveRequest::from_uri(&u);
        assert_eq!(req.host, Host::Ip("2001:db8::5".parse().expect("ip")));
        assert_eq!(req.port, Some(5080));
        let mut dns = FakeDns::default();
        let list = run(
            ResolveRequest::from_uri(&Uri::parse("sips:pbx.example.com").expect("uri")),
            &mut dns,
        );
        assert!(list.is_empty());
        assert_eq!(dns.asked[0], Query::Naptr("pbx.example.com".into()));
        assert!(
            dns.asked
                .iter()
                .all(|q| !matches!(q, Query::Srv(n) if n.starts_with("_sip._"))),
            "sips only asks _sips"
        );
    }

    /// WebSocket has no SRV: `transport=ws` goes straight to A/AAAA.
    #[test]
    fn websocket_transport_skips_srv() {
        let mut dns = FakeDns::default();
        dns.ip
            .insert("edge.example.com".into(), vec![ip("192.0.2.44")]);
        let u = Uri::parse("sip:edge.example.com;transport=ws").expect("uri");
        let list = run(ResolveRequest::from_uri(&u), &mut dns);
        assert_eq!(
            addrs(&list),
            vec![(Transport::Ws, "192.0.2.44:5060".into())]
        );
        assert_eq!(dns.asked, vec![Query::Ip("edge.example.com".into())]);
    }

    /// A numeric host needs no DNS; the port defaults per transport.
    #[test]
    fn numeric_host_skips_dns() {
        let mut dns = FakeDns::default();
        let list = run(ResolveRequest::host("192.0.2.1"), &mut dns);
        assert_eq!(
            addrs(&list),
            vec![(Transport::Udp, "192.0.2.1:5060".into())]
        );
        let mut req = ResolveRequest::host("[2001:db8::1]");
        req.secure = true;
        let list = run(req, &mut dns);
        assert_eq!(
            addrs(&list),
            vec![(Transport::Tls, "[2001:db8::1]:5061".into())]
        );
        assert!(dns.asked.is_empty());
    }

    /// An explicit port skips NAPTR and SRV and goes straight to A/AAAA.
    #[test]
    fn explicit_port_skips_srv() {
        let mut dns = FakeDns::default();
        dns.ip
            .insert("pbx.example.com".into(), vec![ip("192.0.2.7")]);
        let mut req = ResolveRequest::host("pbx.example.com");
        req.port = Some(5080);
        req.transport = Some(Transport::Tcp);
        let list = run(req, &mut dns);
        assert_eq!(
            addrs(&list),
            vec![(Transport::Tcp, "192.0.2.7:5080".into())]
        );
        assert_eq!(dns.asked, vec![Query::Ip("pbx.example.com".into())]);
    }

    /// `transport=tcp` without a port looks up `_sip._tcp` only, then A with 5060 if empty.
    #[test]
    fn transport_param_uses_that_srv_then_a() {
        let mut dns = FakeDns::default();
        dns.ip.insert("example.com".into(), vec![ip("192.0.2.9")]);
        let mut req = ResolveRequest::host("example.com");
        req.transport = Some(Transport::Tcp);
        let list = run(req, &mut dns);
        assert_eq!(
            dns.asked,
            vec![
                Query::Srv("_sip._tcp.example.com".into()),
                Query::Ip("example.com".into())
            ]
        );
        assert_eq!(
            addrs(&list),
            vec![(Transport::Tcp, "192.0.2.9:5060".into())]
        );
    }

    /// NAPTR picks transports by order/preference and follows the replacement to SRV.
    #[test]
    fn naptr_then_srv_then_a() {
        let mut dns = FakeDns::default();
        dns.naptr.insert(
            "example.com".into(),
            vec![
                NaptrRecord {
                    order: 20,
                    preference: 0,
                    flags: "S".into(),
                    services: "SIP+D2U".into(),
                    replacement: "_sip._udp.example.com".into(),
                },
                NaptrRecord {
                    order: 10,
                    preference: 0,
                    flags: "s".into(),
                    services: "SIPS+D2T".into(),
                    replacement: "_sips._tcp.example.com.".into(),
                },
                NaptrRecord {
                    order: 5,
                    preference: 0,
                    flags: "s".into(),
                    services: "SIP+D2S".into(),
                    replacement: "_sip._sctp.example.com".into(),
                },
            ],
        );
        dns.srv.insert(
            "_sips._tcp.example.com".into(),
            vec![srv(0, 0, 5061, "tls.example.com.")],
        );
        dns.srv.insert(
            "_sip._udp.example.com".into(),
            vec![srv(0, 0, 5060, "udp.example.com")],
        );
        dns.ip
            .insert("tls.example.com".into(), vec![ip("192.0.2.10")]);
        dns.ip.insert(
            "udp.example.com".into(),
            vec![ip("192.0.2.11"), ip("2001:db8::11")],
        );
        let list = run(ResolveRequest::host("example.com"), &mut dns);
        assert_eq!(
            addrs(&list),
            vec![
                (Transport::Tls, "192.0.2.10:5061".into()),
                (Transport::Udp, "192.0.2.11:5060".into()),
                (Transport::Udp, "[2001:db8::11]:5060".into()),
            ]
        );
        assert!(
            !dns.asked
                .contains(&Query::Srv("_sip._sctp.example.com".into()))
        );
    }

    /// Without NAPTR, SRV is tried for each supported transport in preference order.
    #[test]
    fn no_naptr_queries_srv_per_transport() {
        let mut dns = FakeDns::default();
        dns.srv.insert(
            "_sip._tcp.example.com".into(),
            vec![
                srv(10, 0, 5070, "a.example.com"),
                srv(5, 0, 5071, "b.example.com"),
            ],
        );
        dns.ip.insert("a.example.com".into(), vec![ip("192.0.2.1")]);
        dns.ip.insert("b.example.com".into(), vec![ip("192.0.2.2")]);
        let list = run(ResolveRequest::host("example.com"), &mut dns);
        assert_eq!(
            addrs(&list),
            vec![
                (Transport::Tcp, "192.0.2.2:5071".into()),
                (Transport::Tcp, "192.0.2.1:5070".into()),
            ]
        );
        assert_eq!(
            &dns.asked[..4],
            &[
                Query::Naptr("example.com".into()),
                Query::Srv("_sip._udp.example.com".into()),
                Query::Srv("_sip._tcp.example.com".into()),
                Query::Srv("_sips._tcp.example.com".into()),
            ]
        );
    }

    /// No NAPTR and no SRV: A/AAAA of the host with the default port.
    #[test]
    fn plain_a_record() {
        let mut dns = FakeDns::default();
        dns.ip.insert("pbx.local".into(), vec![ip("10.0.0.5")]);
        let list = run(ResolveRequest::host("PBX.local."), &mut dns);
        assert_eq!(addrs(&list), vec![(Transport::Udp, "10.0.0.5:5060".into())]);
    }

    /// When DNS gives nothing, the configured static address is used.
    #[test]
    fn static_fallback_when_dns_empty() {
        let mut dns = FakeDns::default();
        let fallback = Target {
            transport: Transport::Udp,
            addr: "198.51.100.1:5060".parse().expect("test address"),
        };
        let config = ResolveConfig {
            fallback: vec![fallback],
            ..ResolveConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let mut list = resolve(
            &ResolveRequest::host("gone.example"),
            config,
            &mut dns,
            &mut rng,
        );
        assert_eq!(list.current(), Some(&fallback));
        assert_eq!(list.next_target(), None);
        assert_eq!(list.next_target(), None, "stays exhausted");
    }

    /// Timeout/503 moves to the next target in order.
    #[test]
    fn next_target_on_failure() {
        let mut dns = FakeDns::default();
        dns.ip
            .insert("h".into(), vec![ip("192.0.2.1"), ip("192.0.2.2")]);
        let mut list = run(ResolveRequest::host("h"), &mut dns);
        assert_eq!(
            list.current().map(|t| t.addr.to_string()),
            Some("192.0.2.1:5060".into())
        );
        assert!(TargetList::fails_over_on(503));
        assert!(!TargetList::fails_over_on(486));
        assert_eq!(
            list.next_target().map(|t| t.addr.to_string()),
            Some("192.0.2.2:5060".into())
        );
        assert_eq!(list.next_target(), None);
    }

    /// RFC 2782 weights: over many draws, the share follows the weights and priority is strict.
    #[test]
    fn srv_weight_distribution() {
        let mut rng = StdRng::seed_from_u64(42);
        let records = vec![
            srv(1, 90, 1, "heavy"),
            srv(1, 10, 2, "light"),
            srv(2, 100, 3, "backup"),
            srv(0, 0, 4, "."),
        ];
        let mut heavy_first = 0;
        for _ in 0..2000 {
            let ordered = order_srv(records.clone(), &mut rng);
            assert_eq!(ordered.len(), 3, "'.' target is dropped");
            assert_eq!(ordered[2].target, "backup", "priority 2 always last");
            if ordered[0].target == "heavy" {
                heavy_first += 1;
            }
        }
        // Expected 90%; allow a wide band so the test checks weighting, not luck.
        assert!(
            (1700..=1900).contains(&heavy_first),
            "heavy first {heavy_first} of 2000"
        );
    }

    /// The planner is sans-IO: queries come out one at a time and a repeated host is asked once.
    #[test]
    fn planner_asks_one_query_at_a_time() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut req = ResolveRequest::host("example.com");
        req.transport = Some(Transport::Udp);
        let mut r = Resolver::new(&req, ResolveConfig::default());
        assert_eq!(
            r.poll_query(),
            Some(Query::Srv("_sip._udp.example.com".into()))
        );
        assert_eq!(
            r.poll_query(),
            Some(Query::Srv("_sip._udp.example.com".into())),
            "repeated until answered"
        );
        r.handle_answer(
            Answer::Srv(vec![srv(0, 0, 5060, "same"), srv(1, 0, 5062, "same")]),
            &mut rng,
        );
        assert_eq!(r.poll_query(), Some(Query::Ip("same".into())));
        r.handle_answer(Answer::Ip(vec![ip("192.0.2.3")]), &mut rng);
        assert_eq!(r.poll_query(), None);
        assert!(r.is_done());
        let list = r.into_targets();
        assert_eq!(
            addrs(&list),
            vec![
                (Transport::Udp, "192.0.2.3:5060".into()),
                (Transport::Udp, "192.0.2.3:5062".into())
            ]
        );
    }
}
