//! Turns the dialplans' trunk definitions into running registrations.
//!
//! A `kind: register` trunk becomes a `sip_trunk` registration client sent
//! through the [`Sip`] task; its state shows in [`Sip::trunks`] under
//! `tenant/trunk`. The registrar's address is resolved once here with the
//! system resolver (numeric hosts need none); RFC 3263 NAPTR/SRV selection
//! through `sip_trunk::resolve` replaces this when DNS names are configured.

use std::net::SocketAddr;

use dialplans::{Dialplans, Trunk, TrunkKind};
use sip_trunk::auth::Credentials;
use sip_trunk::message::Uri;
use sip_trunk::registration::RegistrationConfig;
use tracing::{info, warn};

use super::Sip;

/// Default SIP port when the dialplan gives none.
const SIP_PORT: u16 = 5060;

/// Requested registration expiry when the caller has no preference, seconds.
pub const DEFAULT_EXPIRES: u32 = 300;

/// Starts a registration for every `kind: register` trunk, asking for
/// `expires` seconds; returns the keys started.
pub async fn start_registrations(sip: &Sip, plans: &Dialplans, expires: u32) -> Vec<String> {
    let mut started = Vec::new();
    for (key, trunk) in register_trunks(plans) {
        if register_trunk(sip, &key, trunk, expires).await {
            started.push(key);
        }
    }
    started
}

/// After a dialplan reload: unregisters trunks that are gone or changed and
/// registers the new and changed ones; unchanged trunks keep their binding.
/// Returns (registered, unregistered) keys.
pub async fn apply_reload(
    sip: &Sip,
    old: &Dialplans,
    new: &Dialplans,
    expires: u32,
) -> (Vec<String>, Vec<String>) {
    let before: Vec<(String, &Trunk)> = register_trunks(old);
    let after: Vec<(String, &Trunk)> = register_trunks(new);
    let mut removed = Vec::new();
    for (key, trunk) in &before {
        let same = after.iter().any(|(k, t)| k == key && *t == *trunk);
        if !same && sip.unregister(key).await.is_ok() {
            removed.push(key.clone());
        }
    }
    let mut added = Vec::new();
    for (key, trunk) in after {
        let same = before.iter().any(|(k, t)| *k == key && *t == trunk);
        if !same && register_trunk(sip, &key, trunk, expires).await {
            added.push(key);
        }
    }
    (added, removed)
}

/// Every `kind: register` trunk with its `tenant/trunk` key.
fn register_trunks(plans: &Dialplans) -> Vec<(String, &Trunk)> {
    plans
        .tenants()
        .filter_map(|t| plans.get(t))
        .flat_map(|plan| {
            plan.trunks
                .values()
                .filter(|t| matches!(t.kind, TrunkKind::Register { .. }))
                .map(move |t| (format!("{}/{}", plan.tenant, t.name), t))
        })
        .collect()
}

/// Starts one trunk's registration; false when it cannot (no password, no address).
async fn register_trunk(sip: &Sip, key: &str, trunk: &Trunk, expires: u32) -> bool {
    let TrunkKind::Register {
        registrar,
        username,
        password,
        ..
    } = &trunk.kind
    else {
        return false;
    };
    let Some(password) = password.resolve(|v| std::env::var(v).ok()) else {
        warn!(trunk = %key, "trunk password is not set (environment variable missing); not registering");
        return false;
    };
    let port = registrar.port.unwrap_or(SIP_PORT);
    let dest: Option<SocketAddr> =
        match tokio::net::lookup_host((registrar.host.as_str(), port)).await {
            Ok(mut addrs) => addrs.next(),
            Err(e) => {
                warn!(trunk = %key, cause = %e, "cannot resolve registrar");
                None
            }
        };
    let Some(dest) = dest else { return false };
    let domain = trunk
        .domain
        .clone()
        .unwrap_or_else(|| registrar.host.clone());
    let hostport = match registrar.port {
        Some(p) => format!("{}:{p}", bracket(&registrar.host)),
        None => bracket(&registrar.host),
    };
    let (Ok(aor), Ok(reg_uri), Ok(contact)) = (
        Uri::parse(&format!("sip:{username}@{domain}")),
        Uri::parse(&format!("sip:{hostport}")),
        Uri::parse(&format!("sip:{username}@{}", sip.sent_by.clone())),
    ) else {
        warn!(trunk = %key, "trunk gives an invalid SIP URI");
        return false;
    };
    let mut config = RegistrationConfig::new(
        aor,
        reg_uri,
        contact,
        ("UDP".to_string(), sip.sent_by.clone()),
    );
    config.credentials = Some(Credentials::new(username.clone(), password));
    config.user_agent = Some(format!("namecall/{}", env!("CARGO_PKG_VERSION")));
    config.expires = expires;
    info!(trunk = %key, %dest, "registering trunk");
    sip.register(key, config, dest).await.is_ok()
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
