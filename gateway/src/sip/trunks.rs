//! Turns the dialplans' trunk definitions into running registrations.
//!
//! A `kind: register` trunk becomes a `sip_trunk` registration client sent
//! through the [`Sip`] task; its state shows in [`Sip::trunks`] under
//! `tenant/trunk`. The registrar's address is resolved once here with the
//! system resolver (numeric hosts need none); RFC 3263 NAPTR/SRV selection
//! through `sip_trunk::resolve` replaces this when DNS names are configured.

use std::net::SocketAddr;

use dialplans::{Dialplans, TrunkKind};
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
    for tenant in plans.tenants() {
        let Some(plan) = plans.get(tenant) else {
            continue;
        };
        for trunk in plan.trunks.values() {
            let TrunkKind::Register {
                registrar,
                username,
                password,
                ..
            } = &trunk.kind
            else {
                continue;
            };
            let key = format!("{}/{}", plan.tenant, trunk.name);
            let Some(password) = password.resolve(|v| std::env::var(v).ok()) else {
                warn!(trunk = %key, "trunk password is not set (environment variable missing); not registering");
                continue;
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
            let Some(dest) = dest else { continue };
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
                continue;
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
            if sip.register(&key, config, dest).await.is_ok() {
                started.push(key);
            }
        }
    }
    started
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}
