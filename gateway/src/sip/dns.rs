//! RFC 3263 DNS for the SIP shell: hickory-resolver answers the questions of
//! the sans-IO planner in `sip_trunk::resolve` (NAPTR → SRV → A/AAAA).
//!
//! The planner decides what to ask and how to order the answers (RFC 3263
//! section 4, RFC 2782 weights); this file only performs the lookups and maps
//! hickory's records onto the planner's types. [`DnsLookup::resolve`] drives
//! a planner asynchronously inside the runtime; [`BlockingLookup`] implements
//! the synchronous [`Lookup`] trait for threads outside it. Every failure
//! (NXDOMAIN, SERVFAIL, timeout, a malformed name) is an empty answer, as the
//! planner expects, so the configured fallback address is used.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use rand::SeedableRng;
use rand::rngs::StdRng;
use sip_trunk::resolve::{
    Answer, Lookup, NaptrRecord, Query, ResolveConfig, ResolveRequest, Resolver, SrvRecord,
    TargetList,
};
use tracing::debug;

/// Why a resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The system configuration (`/etc/resolv.conf`) could not be read.
    #[error("reading the system dns configuration: {0}")]
    SystemConfig(String),
    /// The blocking adapter could not start its runtime.
    #[error("starting the dns runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Asynchronous NAPTR/SRV/A/AAAA lookups through hickory-resolver.
#[derive(Clone)]
pub struct DnsLookup {
    resolver: TokioResolver,
}

impl std::fmt::Debug for DnsLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsLookup").finish_non_exhaustive()
    }
}

/// A name as a fully qualified DNS name, so no search domain is appended to
/// SRV owner names and targets the planner already has in full.
fn fqdn(name: &str) -> Option<Name> {
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() {
        return None;
    }
    Name::from_str(&format!("{trimmed}.")).ok()
}

/// A DNS name as the planner writes hosts: no trailing dot, `.` for the root.
fn host_of(name: &Name) -> String {
    let s = name.to_ascii();
    match s.trim_end_matches('.') {
        "" => ".".to_string(),
        h => h.to_string(),
    }
}

impl DnsLookup {
    /// Uses the name servers of `/etc/resolv.conf`.
    ///
    /// # Errors
    /// The system configuration cannot be read.
    pub fn system() -> Result<Self, DnsError> {
        let builder =
            TokioResolver::builder_tokio().map_err(|e| DnsError::SystemConfig(e.to_string()))?;
        Ok(Self {
            resolver: builder
                .build()
                .map_err(|e| DnsError::SystemConfig(e.to_string()))?,
        })
    }

    /// Uses exactly these name servers (UDP, then TCP for truncated
    /// answers), with `timeout` per query and `attempts` tries.
    ///
    /// # Errors
    /// Never in practice; hickory reports configuration errors here.
    pub fn with_servers(
        servers: &[SocketAddr],
        timeout: Duration,
        attempts: usize,
    ) -> Result<Self, DnsError> {
        let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
        for s in servers {
            let mut udp = ConnectionConfig::udp();
            udp.port = s.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = s.port();
            config.add_name_server(NameServerConfig::new(s.ip(), true, vec![udp, tcp]));
        }
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        let opts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = attempts;
        Ok(Self {
            resolver: builder
                .build()
                .map_err(|e| DnsError::SystemConfig(e.to_string()))?,
        })
    }

    /// NAPTR records of `domain` (RFC 3403); empty on any failure.
    pub async fn naptr(&self, domain: &str) -> Vec<NaptrRecord> {
        let Some(name) = fqdn(domain) else {
            return Vec::new();
        };
        match self.resolver.lookup(name, RecordType::NAPTR).await {
            Ok(l) => l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NAPTR(n) => Some(NaptrRecord {
                        order: n.order,
                        preference: n.preference,
                        flags: String::from_utf8_lossy(&n.flags).into_owned(),
                        services: String::from_utf8_lossy(&n.services).into_owned(),
                        replacement: host_of(&n.replacement),
                    }),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                debug!(domain, error = %e, "NAPTR lookup failed");
                Vec::new()
            }
        }
    }

    /// SRV records of `name` such as `_sip._udp.example.com`; empty on any failure.
    pub async fn srv(&self, name: &str) -> Vec<SrvRecord> {
        let Some(n) = fqdn(name) else {
            return Vec::new();
        };
        match self.resolver.lookup(n, RecordType::SRV).await {
            Ok(l) => l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some(SrvRecord {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: host_of(&s.target),
                    }),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                debug!(name, error = %e, "SRV lookup failed");
                Vec::new()
            }
        }
    }

    /// A and AAAA records of `host`; empty on any failure.
    pub async fn ip(&self, host: &str) -> Vec<IpAddr> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return vec![ip];
        }
        let Some(n) = fqdn(host) else {
            return Vec::new();
        };
        match self.resolver.lookup_ip(n).await {
            Ok(l) => l.iter().collect(),
            Err(e) => {
                debug!(host, error = %e, "A/AAAA lookup failed");
                Vec::new()
            }
        }
    }

    /// The answer to one planner question.
    pub async fn answer(&self, query: &Query) -> Answer {
        match query {
            Query::Naptr(d) => Answer::Naptr(self.naptr(d).await),
            Query::Srv(n) => Answer::Srv(self.srv(n).await),
            Query::Ip(h) => Answer::Ip(self.ip(h).await),
        }
    }

    /// Runs the RFC 3263 planner for `req` to completion: the ordered targets
    /// to try, ending with `config.fallback` when DNS yields nothing.
    pub async fn resolve(&self, req: &ResolveRequest, config: ResolveConfig) -> TargetList {
        let mut planner = Resolver::new(req, config);
        // StdRng is Send, so the future can move between worker threads.
        let mut rng = StdRng::from_rng(&mut rand::rng());
        while let Some(q) = planner.poll_query() {
            let answer = self.answer(&q).await;
            planner.handle_answer(answer, &mut rng);
        }
        planner.into_targets()
    }
}

/// The synchronous [`Lookup`] over [`DnsLookup`], with its own
/// single-threaded runtime. Use it from plain threads (or `spawn_blocking`),
/// never from inside an async task: blocking there would stall the runtime.
pub struct BlockingLookup {
    lookup: DnsLookup,
    runtime: tokio::runtime::Runtime,
}

impl BlockingLookup {
    /// Wraps a lookup built by [`DnsLookup::system`] or [`DnsLookup::with_servers`].
    ///
    /// # Errors
    /// The runtime cannot start.
    pub fn new(lookup: DnsLookup) -> Result<Self, DnsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self { lookup, runtime })
    }
}

impl Lookup for BlockingLookup {
    fn naptr(&mut self, domain: &str) -> Vec<NaptrRecord> {
        self.runtime.block_on(self.lookup.naptr(domain))
    }

    fn srv(&mut self, name: &str) -> Vec<SrvRecord> {
        self.runtime.block_on(self.lookup.srv(name))
    }

    fn ip(&mut self, host: &str) -> Vec<IpAddr> {
        self.runtime.block_on(self.lookup.ip(host))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use labkit::{DnsZone, Dnsmasq};
    use sip_trunk::message::Uri;
    use sip_trunk::resolve::{Target, Transport, resolve};

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_str(s).expect("test name")
    }

    /// One record of a test zone, served by dnsmasq and read by [`Table`].
    #[derive(Clone, Debug)]
    enum Rec {
        /// owner, order, preference, services (flag `S`), replacement
        Naptr(&'static str, u16, u16, &'static str, &'static str),
        /// owner, target, port, priority, weight
        Srv(&'static str, &'static str, u16, u16, u16),
        /// owner, IPv4 address
        A(&'static str, Ipv4Addr),
    }

    /// The zone of `example.test`: NAPTR prefers TCP, two TCP SRV priorities, one UDP SRV.
    fn zone() -> Vec<Rec> {
        vec![
            Rec::Naptr("example.test", 10, 10, "SIP+D2T", "_sip._tcp.example.test"),
            Rec::Naptr("example.test", 20, 10, "SIP+D2U", "_sip._udp.example.test"),
            Rec::Srv("_sip._tcp.example.test", "sip2.example.test", 5080, 20, 0),
            Rec::Srv("_sip._tcp.example.test", "sip1.example.test", 5070, 10, 60),
            Rec::Srv("_sip._udp.example.test", "sip1.example.test", 5060, 10, 0),
            Rec::A("sip1.example.test", Ipv4Addr::new(127, 0, 0, 10)),
            Rec::A("sip2.example.test", Ipv4Addr::new(127, 0, 0, 20)),
        ]
    }

    /// dnsmasq (a third-party DNS server) on loopback, serving `recs`.
    fn serve(recs: &[Rec]) -> Dnsmasq {
        let mut z = DnsZone::new();
        for r in recs {
            z = match *r {
                Rec::Naptr(owner, order, pref, services, repl) => {
                    z.naptr(owner, order, pref, "S", services, repl)
                }
                Rec::Srv(owner, target, port, prio, weight) => {
                    z.srv(owner, target, port, prio, weight)
                }
                Rec::A(owner, ip) => z.a(owner, ip),
            };
        }
        Dnsmasq::start(&z).expect("dnsmasq starts (Debian package dnsmasq-base)")
    }

    fn lookup_at(dns: &Dnsmasq) -> DnsLookup {
        DnsLookup::with_servers(&[dns.addr()], Duration::from_millis(500), 2).expect("resolver")
    }

    fn target(t: Transport, a: &str) -> Target {
        Target {
            transport: t,
            addr: a.parse().expect("addr"),
        }
    }

    fn request(uri: &str) -> ResolveRequest {
        ResolveRequest::from_uri(&Uri::parse(uri).expect("uri"))
    }

    /// The same records through the table planner, for comparison.
    struct Table(Vec<Rec>);

    impl Lookup for Table {
        fn naptr(&mut self, domain: &str) -> Vec<NaptrRecord> {
            self.0
                .iter()
                .filter_map(|r| match *r {
                    Rec::Naptr(owner, order, preference, services, repl) if owner == domain => {
                        Some(NaptrRecord {
                            order,
                            preference,
                            flags: "S".into(),
                            services: services.into(),
                            replacement: repl.into(),
                        })
                    }
                    _ => None,
                })
                .collect()
        }
        fn srv(&mut self, name: &str) -> Vec<SrvRecord> {
            self.0
                .iter()
                .filter_map(|r| match *r {
                    Rec::Srv(owner, target, port, priority, weight) if owner == name => {
                        Some(SrvRecord {
                            priority,
                            weight,
                            port,
                            target: target.into(),
                        })
                    }
                    _ => None,
                })
                .collect()
        }
        fn ip(&mut self, host: &str) -> Vec<IpAddr> {
            self.0
                .iter()
                .filter_map(|r| match *r {
                    Rec::A(owner, ip) if owner == host => Some(IpAddr::V4(ip)),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn names_are_made_fully_qualified_and_back() {
        assert_eq!(
            fqdn("_sip._udp.example.com").map(|n| n.to_ascii()),
            Some("_sip._udp.example.com.".to_string())
        );
        assert_eq!(fqdn("example.com.").map(|n| n.is_fqdn()), Some(true));
        assert!(fqdn("").is_none() && fqdn(".").is_none());
        assert_eq!(host_of(&Name::root()), ".");
        assert_eq!(host_of(&name("sip1.example.test.")), "sip1.example.test");
    }

    /// NAPTR → SRV (by priority) → A over real DNS packets on loopback.
    #[tokio::test]
    async fn naptr_srv_a_over_loopback_dns() {
        let dns = serve(&zone());
        let lookup = lookup_at(&dns);
        let naptr = lookup.naptr("example.test").await;
        assert_eq!(naptr.len(), 2);
        let srv = lookup.srv("_sip._tcp.example.test").await;
        assert_eq!(srv.len(), 2);
        assert_eq!(
            lookup.ip("sip1.example.test").await,
            vec![IpAddr::from([127, 0, 0, 10])]
        );

        let targets = lookup
            .resolve(&request("sip:pbx@example.test"), ResolveConfig::default())
            .await;
        assert_eq!(
            targets.as_slice(),
            &[
                target(Transport::Tcp, "127.0.0.10:5070"),
                target(Transport::Tcp, "127.0.0.20:5080"),
                target(Transport::Udp, "127.0.0.10:5060"),
            ],
            "NAPTR order 10 (TCP) first, SRV priority 10 before 20, then order 20 (UDP)"
        );
        // The planner over a table of the same records agrees with real DNS.
        let mut rng = StdRng::seed_from_u64(1);
        let table = resolve(
            &request("sip:pbx@example.test"),
            ResolveConfig::default(),
            &mut Table(zone()),
            &mut rng,
        );
        assert_eq!(table.as_slice(), targets.as_slice());
        // transport=udp skips NAPTR and asks _sip._udp directly.
        let udp = lookup
            .resolve(
                &request("sip:pbx@example.test;transport=udp"),
                ResolveConfig::default(),
            )
            .await;
        assert_eq!(udp.as_slice(), &[target(Transport::Udp, "127.0.0.10:5060")]);
        assert!(
            dns.wait_queries(5, Duration::from_secs(5)) >= 5,
            "{}",
            dns.log.tail(20)
        );
    }

    /// An unknown domain (NXDOMAIN everywhere) ends in the configured fallback.
    #[tokio::test]
    async fn nxdomain_falls_back_to_the_configured_address() {
        let dns = serve(&zone());
        let lookup = lookup_at(&dns);
        assert!(lookup.naptr("nowhere.test").await.is_empty());
        assert!(lookup.ip("nowhere.test").await.is_empty());
        let fallback = target(Transport::Udp, "192.0.2.7:5060");
        let config = ResolveConfig {
            fallback: vec![fallback],
            ..ResolveConfig::default()
        };
        let targets = lookup
            .resolve(&request("sip:pbx@nowhere.test"), config)
            .await;
        assert_eq!(targets.as_slice(), &[fallback]);
    }

    /// The blocking adapter implements `Lookup` for the synchronous planner.
    #[test]
    fn blocking_lookup_drives_the_sync_planner() {
        let dns = serve(&zone());
        let mut lookup = BlockingLookup::new(lookup_at(&dns)).expect("runtime");
        let mut rng = StdRng::seed_from_u64(2);
        let targets = resolve(
            &request("sip:pbx@example.test;transport=tcp"),
            ResolveConfig::default(),
            &mut lookup,
            &mut rng,
        );
        assert_eq!(
            targets.as_slice(),
            &[
                target(Transport::Tcp, "127.0.0.10:5070"),
                target(Transport::Tcp, "127.0.0.20:5080"),
            ]
        );
    }

    /// A trunk given by its domain alone: NAPTR picks TCP, SRV puts a dead
    /// address before Kamailio. The REGISTER fails at once on the dead one
    /// (TCP connection refused) and lands on the next; the keep-alive marks
    /// only the dead address down, so the trunk stays up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trunk_by_domain_registers_through_srv_past_a_dead_target() {
        let pbx = labkit::Kamailio::start(&[("trunk", "trunkpass")]).expect("kamailio");
        let dead = labkit::free_port();
        let dns = serve(&[
            Rec::Naptr("pbx.test", 10, 10, "SIP+D2T", "_sip._tcp.pbx.test"),
            Rec::Srv("_sip._tcp.pbx.test", "b.pbx.test", pbx.addr().port(), 20, 0),
            Rec::Srv("_sip._tcp.pbx.test", "a.pbx.test", dead, 10, 0),
            Rec::A("a.pbx.test", Ipv4Addr::LOCALHOST),
            Rec::A("b.pbx.test", Ipv4Addr::LOCALHOST),
        ]);
        let text = "version: 1\ntenant: acme\ntrunks:\n  main:\n    kind: register\n    registrar: pbx.test\n    username: trunk\n    password: trunkpass\n    domain: pbx.lab\n    keepalive: 1s\nnames:\n  sales:\n    route: { dial: { trunk: main, extension: \"100\" } }\n";
        let plans = dialplans::Dialplans::from_sources([("acme.yaml", text)]).expect("valid plan");
        let trunk = plans
            .get("acme")
            .and_then(|p| p.trunk("main"))
            .expect("trunk main")
            .clone();
        let lookup = lookup_at(&dns);
        let dead_addr = format!("127.0.0.1:{dead}");
        let targets = crate::sip::trunks::trunk_targets(Some(&lookup), "acme/main", &trunk)
            .await
            .expect("targets");
        assert_eq!(
            targets.as_slice(),
            &[
                target(Transport::Tcp, &dead_addr),
                target(Transport::Tcp, &pbx.addr().to_string()),
            ],
            "NAPTR -> SRV by priority -> A"
        );

        let (itx, _irx) = tokio::sync::mpsc::channel(8);
        let mut sip = crate::sip::spawn("127.0.0.1:0".parse().expect("addr"), None, itx)
            .await
            .expect("sip socket");
        sip.dns = Some(lookup);
        let started = crate::sip::trunks::start_registrations(&sip, &plans, 60).await;
        assert_eq!(started, vec!["acme/main".to_owned()]);
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while pbx.contacts("trunk").is_empty() {
            assert!(
                tokio::time::Instant::now() < end,
                "no binding at the second SRV target:\n{}",
                pbx.log.tail(20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let contacts = pbx.contacts("trunk");
        assert!(
            contacts[0].to_ascii_lowercase().contains("transport=tcp"),
            "{contacts:?}"
        );
        let dead_addr: SocketAddr = dead_addr.parse().expect("addr");
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let st = sip.trunks.get("acme/main").unwrap_or_default();
            if st.up == Some(true) && st.down_targets == vec![dead_addr] {
                break;
            }
            assert!(tokio::time::Instant::now() < end, "trunk state {st:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // the SRV targets are the company's: calls from them are admitted,
        // although `pbx.test` itself has no address
        assert_eq!(
            crate::sip::inbound::trunk_of(&plans, &sip.trunks, IpAddr::from([127, 0, 0, 1]))
                .await
                .as_deref(),
            Some("acme")
        );
        assert_eq!(
            crate::sip::inbound::trunk_of(&plans, &sip.trunks, IpAddr::from([127, 0, 0, 9])).await,
            None
        );
        sip.shutdown().await;
    }

    /// A trunk host that DNS does not know ends at the trunk's static
    /// `address`; a host with only an A record is used at port 5060 first.
    #[tokio::test]
    async fn static_address_is_the_last_resort() {
        let dns = serve(&zone());
        let lookup = lookup_at(&dns);
        let plan = |host: &str| {
            let text = format!(
                "version: 1\ntenant: acme\ntrunks:\n  main: {{ kind: ip, proxy: {host}, address: \"192.0.2.7:5070\" }}\nnames:\n  sales:\n    route: {{ dial: {{ trunk: main, extension: \"100\" }} }}\n"
            );
            let plans =
                dialplans::Dialplans::from_sources([("acme.yaml", text.as_str())]).expect("valid");
            plans
                .get("acme")
                .and_then(|p| p.trunk("main"))
                .expect("trunk")
                .clone()
        };
        let t =
            crate::sip::trunks::trunk_targets(Some(&lookup), "acme/main", &plan("nowhere.test"))
                .await
                .expect("the static address");
        assert_eq!(t.as_slice(), &[target(Transport::Udp, "192.0.2.7:5070")]);
        let t = crate::sip::trunks::trunk_targets(
            Some(&lookup),
            "acme/main",
            &plan("sip2.example.test"),
        )
        .await
        .expect("targets");
        assert_eq!(
            t.as_slice(),
            &[
                target(Transport::Udp, "127.0.0.20:5060"),
                target(Transport::Udp, "192.0.2.7:5070"),
            ]
        );
    }
}
