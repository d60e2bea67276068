//! From a dialled name to a SIP destination: the dialplan decides, this module
//! turns the decision into where to send the INVITE and with which identity.
//!
//! The dialplan's [`Decision`] names a trunk of the company and one or more
//! extensions; the trunk gives the PBX address, the SIP domain for the
//! Request-URI and To, and the digest credentials that answer the PBX's 407.
//! The caller appears in From as their named login on the gateway's own
//! domain (`"alice" <sip:alice@gateway>`), never as a number.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use dialplans::{CallContext, Decision, Dialplans, DtmfMode, MenuInput, Strategy, TrunkKind};
use sip_trunk::auth::Credentials;
use sip_trunk::dialog::CallConfig;
use sip_trunk::message::Uri;

/// Default SIP port when the dialplan gives none.
const SIP_PORT: u16 = 5060;

/// How many menu steps we follow by their timeout branch before giving up (loops in a plan).
const MAX_MENU_STEPS: usize = 8;

/// What a call to a name turns into.
#[derive(Debug)]
pub enum Route {
    /// The built-in echo.
    Echo,
    /// INVITE one or more extensions on a trunk.
    Trunk(TrunkRoute),
    /// Refuse with a status the caller sees.
    Refuse {
        /// SIP-like status code.
        code: u16,
        /// Short reason token for the client.
        reason: &'static str,
    },
}

/// Ringing one or more extensions on one trunk.
#[derive(Debug)]
pub struct TrunkRoute {
    /// `tenant/trunk`, for logs and metrics.
    pub trunk_key: String,
    /// Where INVITEs go.
    pub dest: SocketAddr,
    /// One configuration per extension to ring, in dialplan order.
    pub legs: Vec<CallConfig>,
    /// All at once, or one after another.
    pub strategy: Strategy,
    /// Ring time for the whole call (simultaneous) or per extension (sequential).
    pub ring_timeout: Duration,
    /// How the caller's digits reach the PBX (the trunk's `dtmf:`).
    pub dtmf: DtmfMode,
}

/// What the gateway knows about itself when it places calls.
#[derive(Debug, Clone)]
pub struct Local {
    /// `host:port` written in Via and Contact.
    pub sent_by: String,
}

/// Decides where a call from `caller` to `dialled` goes.
///
/// Menus (which need an announcement and key input) are followed along their
/// timeout branch until the IVR player exists, so a company's main name still
/// reaches its default destination.
pub async fn route(
    plans: &Dialplans,
    local: &Local,
    caller: &str,
    caller_display: &str,
    dialled: &str,
) -> Route {
    let mut inputs = Vec::new();
    let decision = loop {
        let ctx = CallContext {
            caller,
            dialled,
            time: SystemTime::now(),
            dtmf: &inputs,
        };
        match dialplans::evaluate(plans, &ctx) {
            Decision::Menu { .. } if inputs.len() < MAX_MENU_STEPS => {
                inputs.push(MenuInput::Timeout)
            }
            Decision::Menu { .. } => {
                return Route::Refuse {
                    code: 508,
                    reason: "loop-detected",
                };
            }
            d => break d,
        }
    };
    let tenant = dialled
        .trim()
        .to_ascii_lowercase()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let (trunk_name, targets, strategy, timeout) = match decision {
        Decision::Echo => return Route::Echo,
        Decision::NotFound => {
            return Route::Refuse {
                code: 404,
                reason: "not-found",
            };
        }
        Decision::Reject { code, .. } => {
            return Route::Refuse {
                code,
                reason: reason_of(code),
            };
        }
        Decision::Dial {
            trunk,
            target,
            timeout,
        } => (trunk, vec![target], Strategy::Simultaneous, timeout),
        Decision::RingGroup {
            trunk,
            targets,
            strategy,
            timeout,
        } => (trunk, targets, strategy, timeout),
        _ => {
            return Route::Refuse {
                code: 501,
                reason: "not-implemented",
            };
        }
    };
    let unavailable = Route::Refuse {
        code: 503,
        reason: "unavailable",
    };
    let Some(TrunkTarget {
        trunk_key,
        dest,
        credentials,
        domain,
        dtmf,
    }) = trunk_target(plans, &tenant, &trunk_name).await
    else {
        return unavailable;
    };
    let (Ok(from), Ok(contact)) = (
        Uri::parse(&format!("sip:{caller}@{}", local.sent_by)),
        Uri::parse(&format!("sip:{caller}@{}", local.sent_by)),
    ) else {
        return unavailable;
    };
    let mut legs = Vec::with_capacity(targets.len());
    for target in &targets {
        let Ok(to) = Uri::parse(&format!("sip:{target}@{domain}")) else {
            return unavailable;
        };
        let mut cfg = CallConfig::new(
            from.clone(),
            to,
            contact.clone(),
            ("UDP".into(), local.sent_by.clone()),
        );
        cfg.display_name = Some(caller_display.to_owned());
        cfg.credentials = credentials.clone();
        cfg.user_agent = Some(format!("namecall/{}", env!("CARGO_PKG_VERSION")));
        // we enforce ring timeouts ourselves (per member for sequential groups)
        cfg.answer_timeout = None;
        legs.push(cfg);
    }
    Route::Trunk(TrunkRoute {
        trunk_key,
        dest,
        legs,
        strategy,
        ring_timeout: timeout,
        dtmf,
    })
}

/// A company trunk ready to carry a request (an INVITE or a MESSAGE).
#[derive(Debug, Clone)]
pub struct TrunkTarget {
    /// `tenant/trunk`, for logs and metrics.
    pub trunk_key: String,
    /// The PBX address requests go to.
    pub dest: SocketAddr,
    /// Digest credentials that answer the PBX's 401/407 (`register` trunks).
    pub credentials: Option<Credentials>,
    /// SIP domain for the Request-URI and To (`pbx.lab`).
    pub domain: String,
    /// How DTMF is sent to the PBX.
    pub dtmf: DtmfMode,
}

/// Where and how requests on `tenant`'s trunk `trunk_name` go; `None` (and
/// a warning) when the trunk is unknown, its password is not set or its
/// peer does not resolve.
pub async fn trunk_target(
    plans: &Dialplans,
    tenant: &str,
    trunk_name: &str,
) -> Option<TrunkTarget> {
    let plan = plans.get(tenant)?;
    let trunk = plan.trunks.get(trunk_name)?;
    let trunk_key = format!("{}/{}", plan.tenant, trunk.name);
    let (peer, credentials) = match &trunk.kind {
        TrunkKind::Register {
            registrar,
            username,
            password,
            ..
        } => {
            let Some(password) = password.resolve(|v| std::env::var(v).ok()) else {
                tracing::warn!(trunk = %trunk_key, "trunk password is not set; cannot use the trunk");
                return None;
            };
            (
                registrar,
                Some(Credentials::new(username.clone(), password)),
            )
        }
        TrunkKind::Ip { proxy, .. } => (proxy, None),
    };
    let port = peer.port.unwrap_or(SIP_PORT);
    let dest = match tokio::net::lookup_host((peer.host.as_str(), port)).await {
        Ok(mut a) => a.next(),
        Err(e) => {
            tracing::warn!(trunk = %trunk_key, cause = %e, "cannot resolve the trunk peer");
            None
        }
    }?;
    let domain = trunk.domain.clone().unwrap_or_else(|| bracket(&peer.host));
    Some(TrunkTarget {
        trunk_key,
        dest,
        credentials,
        domain,
        dtmf: trunk.dtmf,
    })
}

/// The client-facing reason token of a SIP final status.
pub fn reason_of(code: u16) -> &'static str {
    match code {
        486 | 600 => "busy",
        404 | 484 | 604 => "not-found",
        408 => "no-answer",
        480 | 410 | 503 | 502 | 504 | 500 => "unavailable",
        401 | 403 | 407 | 603 => "declined",
        487 => "cancelled",
        488 | 606 | 415 => "not-acceptable",
        _ => "failed",
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plans() -> Dialplans {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../dialplans/examples/acme.yaml"),
        )
        .expect("example dialplan");
        Dialplans::from_sources([("acme.yaml", text.as_str())]).expect("valid")
    }

    fn local() -> Local {
        Local {
            sent_by: "127.0.0.1:5099".into(),
        }
    }

    /// A sub-name with a dial route becomes one INVITE to the extension at the
    /// trunk's registrar, with the caller's login in From and the trunk's credentials.
    #[tokio::test]
    async fn sub_name_dials_its_extension_on_the_trunk() {
        let Route::Trunk(r) = route(&plans(), &local(), "alice", "Alice", "acme/sales").await
        else {
            panic!("a trunk route")
        };
        assert_eq!(r.trunk_key, "acme/main");
        assert_eq!(r.dest, "127.0.0.1:5070".parse().expect("addr"));
        assert_eq!(r.legs.len(), 1);
        let leg = &r.legs[0];
        assert_eq!(leg.remote.to_string(), "sip:100@pbx.lab");
        assert_eq!(leg.local.to_string(), "sip:alice@127.0.0.1:5099");
        assert_eq!(leg.display_name.as_deref(), Some("Alice"));
        assert!(leg.credentials.is_some());
        assert_eq!(r.ring_timeout, Duration::from_secs(30));
    }

    /// A ring group gives one leg per member.
    #[tokio::test]
    async fn ring_group_rings_every_member() {
        let Route::Trunk(r) = route(&plans(), &local(), "alice", "Alice", "acme/support").await
        else {
            panic!("a trunk route")
        };
        let to: Vec<String> = r.legs.iter().map(|l| l.remote.to_string()).collect();
        assert_eq!(to, vec!["sip:100@pbx.lab", "sip:101@pbx.lab"]);
        assert_eq!(r.strategy, Strategy::Simultaneous);
    }

    /// Unknown names and the echo are told apart from trunk calls.
    #[tokio::test]
    async fn unknown_and_echo() {
        let p = plans();
        assert!(matches!(
            route(&p, &local(), "alice", "Alice", "nobody/sales").await,
            Route::Refuse { code: 404, .. }
        ));
        assert!(matches!(
            route(&p, &local(), "alice", "Alice", "acme/nothing").await,
            Route::Refuse { code: 404, .. }
        ));
        assert!(matches!(
            route(&p, &local(), "alice", "Alice", "echo").await,
            Route::Echo
        ));
    }

    #[test]
    fn statuses_map_to_clear_reasons() {
        assert_eq!(reason_of(486), "busy");
        assert_eq!(reason_of(480), "unavailable");
        assert_eq!(reason_of(404), "not-found");
        assert_eq!(reason_of(487), "cancelled");
        assert_eq!(reason_of(599), "failed");
    }
}
