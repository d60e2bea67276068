//! Turns the dialplans' trunk definitions into running registrations and
//! keep-alives, and finds where a trunk's requests go.
//!
//! A `kind: register` trunk becomes a `sip_trunk` registration client sent
//! through the [`Sip`] task, and every trunk (either kind) whose `keepalive`
//! is not `off` gets OPTIONS keep-alives to each of its addresses; both show
//! in [`Sip::trunks`] under `tenant/trunk`.
//!
//! A trunk peer given as a host name without a port is located by RFC 3263
//! ([`trunk_targets`]): NAPTR (unless the file names the transport), SRV
//! by priority and weight, then A/AAAA, through hickory
//! ([`super::dns::DnsLookup`]), with the trunk's static `address` as the
//! last resort. Requests go to the first target and move to the next on a
//! timeout or 503. Addresses and `host:port` peers resolve to one target.

use std::net::SocketAddr;

use dialplans::{Dialplans, HostPort, Transport as PlanTransport, Trunk, TrunkKind};
use sip_trunk::auth::Credentials;
use sip_trunk::message::Uri;
use sip_trunk::registration::RegistrationConfig;
use sip_trunk::resolve::{Host, ResolveConfig, ResolveRequest, Target, TargetList};
use sip_trunk::transaction::Transport;
use tracing::{info, warn};

use super::Sip;
use super::dns::DnsLookup;

/// Default SIP port when the dialplan gives none.
const SIP_PORT: u16 = 5060;

/// Requested registration expiry when the caller has no preference, seconds.
pub const DEFAULT_EXPIRES: u32 = 300;

/// Starts a registration for every `kind: register` trunk, asking for
/// `expires` seconds, and keep-alives for every trunk that wants them;
/// returns the keys of the registrations started.
pub async fn start_registrations(sip: &Sip, plans: &Dialplans, expires: u32) -> Vec<String> {
    let mut started = Vec::new();
    for (key, trunk) in all_trunks(plans) {
        if start_trunk(sip, &key, trunk, expires) {
            started.push(key);
        }
    }
    started
}

/// Starts the keep-alive and, for a `register` trunk, the registration of
/// one trunk; true when a registration will be attempted (false: no
/// password, or TLS). The peer is resolved in a task of its own: a slow or
/// dead name server must not hold up the other trunks or the gateway's start.
fn start_trunk(sip: &Sip, key: &str, trunk: &Trunk, expires: u32) -> bool {
    let password = match &trunk.kind {
        TrunkKind::Register { password, .. } => match password.resolve(|v| std::env::var(v).ok()) {
            Some(p) => Some(p),
            None => {
                warn!(trunk = %key, "trunk password is not set (environment variable missing); not registering");
                return false;
            }
        },
        TrunkKind::Ip { .. } => None,
    };
    if trunk.transport.is_some_and(|t| sip_transport(t).is_none()) {
        warn!(trunk = %key, "tls trunks are not supported yet; not used");
        return false;
    }
    let registers = password.is_some();
    let (sip, key, trunk) = (sip.clone(), key.to_owned(), trunk.clone());
    tokio::spawn(async move {
        let targets = match trunk_targets(sip.dns.as_ref(), &key, &trunk).await {
            Ok(t) => t,
            Err(e) => {
                warn!(trunk = %key, cause = %e, "trunk not started");
                return;
            }
        };
        let addresses = targets.as_slice().iter().map(|t| t.addr).collect();
        let _ = sip.set_addresses(&key, addresses).await;
        watch_trunk(&sip, &key, &trunk, &targets).await;
        if let Some(password) = password {
            register_trunk(&sip, &key, &trunk, targets, password, expires).await;
        }
    });
    registers
}

/// After a dialplan reload: unregisters trunks that are gone or changed and
/// registers the new and changed ones (keep-alives follow the same rule);
/// unchanged trunks keep their binding. Returns (registered, unregistered) keys.
pub async fn apply_reload(
    sip: &Sip,
    old: &Dialplans,
    new: &Dialplans,
    expires: u32,
) -> (Vec<String>, Vec<String>) {
    let before: Vec<(String, &Trunk)> = all_trunks(old);
    let after: Vec<(String, &Trunk)> = all_trunks(new);
    let mut removed = Vec::new();
    for (key, trunk) in &before {
        let same = after.iter().any(|(k, t)| k == key && *t == *trunk);
        if same {
            continue;
        }
        let _ = sip.unwatch(key).await;
        if matches!(trunk.kind, TrunkKind::Register { .. }) && sip.unregister(key).await.is_ok() {
            removed.push(key.clone());
        }
    }
    let mut added = Vec::new();
    for (key, trunk) in after {
        let same = before.iter().any(|(k, t)| *k == key && *t == trunk);
        if !same && start_trunk(sip, &key, trunk, expires) {
            added.push(key);
        }
    }
    (added, removed)
}

/// Every trunk with its `tenant/trunk` key.
fn all_trunks(plans: &Dialplans) -> Vec<(String, &Trunk)> {
    plans
        .tenants()
        .filter_map(|t| plans.get(t))
        .flat_map(|plan| {
            plan.trunks
                .values()
                .map(move |t| (format!("{}/{}", plan.tenant, t.name), t))
        })
        .collect()
}

/// The SIP transport of a trunk; `None` for TLS, which the SIP task does not carry yet.
pub fn sip_transport(t: PlanTransport) -> Option<Transport> {
    match t {
        PlanTransport::Udp => Some(Transport::Udp),
        PlanTransport::Tcp => Some(Transport::Tcp),
        PlanTransport::Tls => None,
    }
}

/// `;transport=tcp` for URIs of stream trunks, nothing for UDP (the default).
pub fn uri_transport_param(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => ";transport=tcp",
        _ => "",
    }
}

/// Where a trunk's requests go (registrar or proxy).
pub fn peer_of(trunk: &Trunk) -> &HostPort {
    match &trunk.kind {
        TrunkKind::Register { registrar, .. } => registrar,
        TrunkKind::Ip { proxy, .. } => proxy,
    }
}

/// Why a trunk cannot be used at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TrunkError {
    /// `transport: tls` (the SIP task has no TLS yet).
    #[error("tls trunks are not supported yet")]
    Tls,
    /// Neither DNS nor the static `address` gave any target.
    #[error("the trunk peer does not resolve and no static address is set")]
    NoTarget,
}

/// The addresses a trunk's requests go to, in the order they are tried
/// (RFC 3263 for a host name without port when `dns` is set; the system
/// resolver otherwise), ending with the static `address` if any.
///
/// # Errors
/// [`TrunkError`] when the trunk cannot be used.
pub async fn trunk_targets(
    dns: Option<&DnsLookup>,
    key: &str,
    trunk: &Trunk,
) -> Result<TargetList, TrunkError> {
    let transport = match trunk.transport {
        Some(t) => Some(sip_transport(t).ok_or(TrunkError::Tls)?),
        None => None,
    };
    let peer = peer_of(trunk);
    let fallback: Vec<Target> = trunk
        .address
        .map(|addr| Target {
            transport: transport.unwrap_or(Transport::Udp),
            addr,
        })
        .into_iter()
        .collect();
    let by_dns = matches!(Host::parse(&peer.host), Host::Name(_));
    let targets = match dns {
        Some(dns) if by_dns => {
            let param = transport.map_or(String::new(), |t| {
                format!(";transport={}", t.via_token().to_ascii_lowercase())
            });
            let uri = Uri::parse(&format!("sip:{}{param}", host_port(peer)))
                .map_err(|_| TrunkError::NoTarget)?;
            let config = ResolveConfig {
                // what the SIP task carries, most preferred first
                transports: vec![Transport::Udp, Transport::Tcp],
                fallback: fallback.clone(),
            };
            let found = dns.resolve(&ResolveRequest::from_uri(&uri), config).await;
            // the static address is also the last resort after the DNS targets
            let mut v = found.as_slice().to_vec();
            for f in fallback {
                if !v.contains(&f) {
                    v.push(f);
                }
            }
            TargetList::new(v)
        }
        _ => {
            let t = transport.unwrap_or(Transport::Udp);
            let mut v: Vec<Target> = resolve_peer(key, peer)
                .await
                .map(|addr| Target { transport: t, addr })
                .into_iter()
                .collect();
            for f in fallback {
                if !v.contains(&f) {
                    v.push(f);
                }
            }
            TargetList::new(v)
        }
    };
    if targets.is_empty() {
        return Err(TrunkError::NoTarget);
    }
    Ok(targets)
}

/// `targets` with the addresses known down moved to the end, order kept otherwise.
pub fn up_first(targets: &TargetList, down: &[SocketAddr]) -> TargetList {
    let (up, late): (Vec<Target>, Vec<Target>) = targets
        .as_slice()
        .iter()
        .partition(|t| !down.contains(&t.addr));
    TargetList::new(up.into_iter().chain(late).collect())
}

/// Resolves a trunk peer with the system resolver; `None` (and a warning) when it does not resolve.
pub async fn resolve_peer(key: &str, peer: &HostPort) -> Option<SocketAddr> {
    let port = peer.port.unwrap_or(SIP_PORT);
    match tokio::net::lookup_host((peer.host.as_str(), port)).await {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            warn!(trunk = %key, cause = %e, "cannot resolve the trunk peer");
            None
        }
    }
}

/// Starts OPTIONS keep-alives to each of a trunk's `targets`, unless its `keepalive` is `off`.
async fn watch_trunk(sip: &Sip, key: &str, trunk: &Trunk, targets: &TargetList) {
    let Some(interval) = trunk.keepalive else {
        return;
    };
    let peer = peer_of(trunk);
    let Ok(uri) = Uri::parse(&format!("sip:{}", host_port(peer))) else {
        warn!(trunk = %key, "trunk peer gives an invalid SIP URI; no keep-alive");
        return;
    };
    let mut distinct: Vec<Target> = Vec::new();
    for t in targets.as_slice() {
        if !distinct.contains(t) {
            distinct.push(*t);
        }
    }
    info!(trunk = %key, targets = ?distinct, ?interval, "trunk keep-alive");
    let _ = sip.watch(key, uri, distinct, interval).await;
}

/// Starts one `register` trunk's registration at `targets`.
async fn register_trunk(
    sip: &Sip,
    key: &str,
    trunk: &Trunk,
    targets: TargetList,
    password: String,
    expires: u32,
) {
    let TrunkKind::Register {
        registrar,
        username,
        ..
    } = &trunk.kind
    else {
        return;
    };
    let Some(first) = targets.current().copied() else {
        return;
    };
    let transport = first.transport;
    let domain = trunk
        .domain
        .clone()
        .unwrap_or_else(|| registrar.host.clone());
    let param = uri_transport_param(transport);
    let (Ok(aor), Ok(reg_uri), Ok(contact)) = (
        Uri::parse(&format!("sip:{username}@{domain}")),
        Uri::parse(&format!("sip:{}{param}", host_port(registrar))),
        Uri::parse(&format!("sip:{username}@{}{param}", sip.sent_by)),
    ) else {
        warn!(trunk = %key, "trunk gives an invalid SIP URI");
        return;
    };
    let mut config = RegistrationConfig::new(
        aor,
        reg_uri,
        contact,
        (transport.via_token().to_string(), sip.sent_by.clone()),
    );
    config.credentials = Some(Credentials::new(username.clone(), password));
    config.user_agent = Some(format!("namecall/{}", env!("CARGO_PKG_VERSION")));
    config.expires = expires;
    info!(trunk = %key, targets = ?targets.as_slice(), "registering trunk");
    if let Err(e) = sip.register(key, config, targets).await {
        warn!(trunk = %key, cause = %e, "not registering");
    }
}

/// `host[:port]` with IPv6 literals bracketed.
fn host_port(hp: &HostPort) -> String {
    let host = if hp.host.contains(':') {
        format!("[{}]", hp.host)
    } else {
        hp.host.clone()
    };
    match hp.port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}
