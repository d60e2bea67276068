//! From a dialled name to a SIP destination: the dialplan decides, this module
//! turns the decision into where to send the INVITE and with which identity.
//!
//! The dialplan's [`Decision`] names a trunk of the company and one or more
//! extensions; the trunk gives the PBX address, the SIP domain for the
//! Request-URI and To, and the digest credentials that answer the PBX's 407.
//! The caller appears in From as their named login on the gateway's own
//! domain (`"alice" <sip:alice@gateway>`), never as a number.
//!
//! A trunk with `failover` trunks gives an ordered list of trunks: the
//! route's trunk first, then its failover chain
//! ([`dialplans::Dialplan::failover_order`]), minus every trunk whose
//! keep-alive says it is down. The call task moves down that list when a
//! trunk answers 503 or 408 or not at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dialplans::{CallContext, Decision, Dialplans, DtmfMode, MenuInput, Strategy, TrunkKind};
use sip_trunk::auth::Credentials;
use sip_trunk::dialog::CallConfig;
use sip_trunk::message::Uri;
use sip_trunk::resolve::TargetList;
use sip_trunk::transaction::Transport;

use media::codec::Codec;
use media::sdp::VideoCodec;

use crate::sip::TrunkStatus;
use crate::sip::dns::DnsLookup;
use crate::sip::trunks::{peer_of, trunk_targets, up_first, uri_transport_param};

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

/// Ringing one or more extensions on a company's trunk, with the trunks to
/// fall back on.
#[derive(Debug)]
pub struct TrunkRoute {
    /// The usable trunks in the order they are tried (never empty).
    pub trunks: Vec<TrunkLegs>,
    /// All at once, or one after another.
    pub strategy: Strategy,
    /// Ring time for the whole call (simultaneous) or per extension (sequential).
    pub ring_timeout: Duration,
}

impl TrunkRoute {
    /// The first trunk, the one the call starts on.
    pub fn first(&self) -> Option<&TrunkLegs> {
        self.trunks.first()
    }
}

/// The INVITEs of a call on one trunk.
#[derive(Debug, Clone)]
pub struct TrunkLegs {
    /// `tenant/trunk`, for logs and metrics.
    pub trunk_key: String,
    /// Where INVITEs go, in the order tried (addresses whose keep-alive
    /// says down come last).
    pub targets: TargetList,
    /// One configuration per extension to ring, in dialplan order.
    pub legs: Vec<CallConfig>,
    /// How the caller's digits reach the PBX (this trunk's `dtmf:`).
    pub dtmf: DtmfMode,
    /// Audio codecs offered to the PBX, in preference order (this trunk's `codecs:`).
    pub codecs: Vec<Codec>,
    /// Video codecs passed through with the PBX, in preference order (this trunk's
    /// `video:`); empty for audio only.
    pub video: Vec<VideoCodec>,
}

/// What the gateway knows about itself when it places calls.
#[derive(Debug, Clone)]
pub struct Local {
    /// `host:port` written in Via and Contact.
    pub sent_by: String,
    /// Up/down state of the trunks (keep-alive), to skip the dead ones.
    pub trunks: Arc<TrunkStatus>,
    /// RFC 3263 lookups for trunk peers given by name.
    pub dns: Option<DnsLookup>,
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
    let Some(plan) = plans.get(&tenant) else {
        return unavailable;
    };
    let mut trunks = Vec::new();
    for trunk in plan.failover_order(&trunk_name) {
        let key = format!("{}/{}", plan.tenant, trunk.name);
        if !local.trunks.usable(&key) {
            tracing::info!(trunk = %key, "trunk is down; skipped");
            continue;
        }
        let Some(target) = trunk_target(plans, local, &tenant, &trunk.name).await else {
            continue;
        };
        if let Some(t) = trunk_legs(local, caller, caller_display, &targets, target) {
            trunks.push(t);
        }
    }
    if trunks.is_empty() {
        return unavailable;
    }
    Route::Trunk(TrunkRoute {
        trunks,
        strategy,
        ring_timeout: timeout,
    })
}

/// One INVITE configuration per extension on one trunk; `None` when a URI does not parse.
fn trunk_legs(
    local: &Local,
    caller: &str,
    caller_display: &str,
    targets: &[dialplans::Extension],
    target: TrunkTarget,
) -> Option<TrunkLegs> {
    let transport = target.transport();
    let param = uri_transport_param(transport);
    let from = Uri::parse(&format!("sip:{caller}@{}", local.sent_by)).ok()?;
    let contact = Uri::parse(&format!("sip:{caller}@{}{param}", local.sent_by)).ok()?;
    let mut legs = Vec::with_capacity(targets.len());
    for ext in targets {
        let to = Uri::parse(&format!("sip:{ext}@{}", target.domain)).ok()?;
        let mut cfg = CallConfig::new(
            from.clone(),
            to,
            contact.clone(),
            (transport.via_token().into(), local.sent_by.clone()),
        );
        cfg.display_name = Some(caller_display.to_owned());
        cfg.credentials = target.credentials.clone();
        cfg.user_agent = Some(format!("namecall/{}", env!("CARGO_PKG_VERSION")));
        // we enforce ring timeouts ourselves (per member for sequential groups)
        cfg.answer_timeout = None;
        legs.push(cfg);
    }
    Some(TrunkLegs {
        trunk_key: target.trunk_key,
        targets: target.targets,
        legs,
        dtmf: target.dtmf,
        codecs: target.codecs,
        video: target.video,
    })
}

/// A company trunk ready to carry a request (an INVITE or a MESSAGE).
#[derive(Debug, Clone)]
pub struct TrunkTarget {
    /// `tenant/trunk`, for logs and metrics.
    pub trunk_key: String,
    /// Where requests go, in the order tried (never empty).
    pub targets: TargetList,
    /// Digest credentials that answer the PBX's 401/407 (`register` trunks).
    pub credentials: Option<Credentials>,
    /// SIP domain for the Request-URI and To (`pbx.lab`).
    pub domain: String,
    /// How DTMF is sent to the PBX.
    pub dtmf: DtmfMode,
    /// Audio codecs offered to the PBX, in preference order.
    pub codecs: Vec<Codec>,
    /// Video codecs passed through with the PBX, in preference order; empty for audio
    /// only.
    pub video: Vec<VideoCodec>,
}

impl TrunkTarget {
    /// The first address requests go to.
    pub fn dest(&self) -> SocketAddr {
        self.targets
            .current()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |t| t.addr)
    }

    /// The transport of the first address.
    pub fn transport(&self) -> Transport {
        self.targets
            .current()
            .map_or(Transport::Udp, |t| t.transport)
    }
}

/// Where and how requests on `tenant`'s trunk `trunk_name` go; `None` (and
/// a warning) when the trunk is unknown, its password is not set or its
/// peer does not resolve.
pub async fn trunk_target(
    plans: &Dialplans,
    local: &Local,
    tenant: &str,
    trunk_name: &str,
) -> Option<TrunkTarget> {
    let plan = plans.get(tenant)?;
    let trunk = plan.trunks.get(trunk_name)?;
    let trunk_key = format!("{}/{}", plan.tenant, trunk.name);
    let credentials = match &trunk.kind {
        TrunkKind::Register {
            username, password, ..
        } => {
            let Some(password) = password.resolve(|v| std::env::var(v).ok()) else {
                tracing::warn!(trunk = %trunk_key, "trunk password is not set; cannot use the trunk");
                return None;
            };
            Some(Credentials::new(username.clone(), password))
        }
        TrunkKind::Ip { .. } => None,
    };
    let targets = match trunk_targets(local.dns.as_ref(), &trunk_key, trunk).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(trunk = %trunk_key, cause = %e, "cannot use the trunk");
            return None;
        }
    };
    let down = local
        .trunks
        .get(&trunk_key)
        .map(|s| s.down_targets)
        .unwrap_or_default();
    let targets = up_first(&targets, &down);
    let peer = peer_of(trunk);
    let domain = trunk.domain.clone().unwrap_or_else(|| bracket(&peer.host));
    Some(TrunkTarget {
        trunk_key,
        targets,
        credentials,
        domain,
        dtmf: trunk.dtmf,
        codecs: super::audio_codecs(&trunk.codecs),
        video: super::video_codecs(&trunk.video),
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
            trunks: Arc::new(TrunkStatus::default()),
            dns: None,
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
        assert_eq!(r.trunks.len(), 1);
        let t = &r.trunks[0];
        assert_eq!(t.trunk_key, "acme/main");
        let first = t.targets.current().expect("a target");
        assert_eq!(first.addr, "127.0.0.1:5070".parse().expect("addr"));
        assert_eq!(first.transport, Transport::Udp);
        assert_eq!(t.legs.len(), 1);
        let leg = &t.legs[0];
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
        let to: Vec<String> = r.trunks[0]
            .legs
            .iter()
            .map(|l| l.remote.to_string())
            .collect();
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

    /// A route to a trunk with failover lists the failover trunks after it,
    /// skips the ones whose keep-alive says down, and refuses at once when
    /// every one is down.
    #[tokio::test]
    async fn failover_skips_down_trunks() {
        let text = "version: 1\ntenant: acme\ntrunks:\n  main: { kind: ip, proxy: 127.0.0.1:5070, failover: [backup], transport: tcp }\n  backup: { kind: ip, proxy: 127.0.0.1:5072 }\nnames:\n  sales:\n    route: { dial: { trunk: main, extension: \"100\" } }\n";
        let plans = Dialplans::from_sources([("acme.yaml", text)]).expect("valid");
        let local = local();
        let keys = |r: Route| match r {
            Route::Trunk(t) => t
                .trunks
                .iter()
                .map(|t| {
                    let first = t.targets.current().expect("a target");
                    (t.trunk_key.clone(), first.addr.port(), first.transport)
                })
                .collect::<Vec<_>>(),
            other => panic!("a trunk route, got {other:?}"),
        };
        let both = keys(route(&plans, &local, "alice", "Alice", "acme/sales").await);
        assert_eq!(
            both,
            vec![
                ("acme/main".to_owned(), 5070, Transport::Tcp),
                ("acme/backup".to_owned(), 5072, Transport::Udp)
            ]
        );
        local.trunks.update("acme/main", |s| s.up = Some(false));
        let backup = keys(route(&plans, &local, "alice", "Alice", "acme/sales").await);
        assert_eq!(
            backup,
            vec![("acme/backup".to_owned(), 5072, Transport::Udp)]
        );
        local.trunks.update("acme/backup", |s| s.up = Some(false));
        assert!(matches!(
            route(&plans, &local, "alice", "Alice", "acme/sales").await,
            Route::Refuse { code: 503, .. }
        ));
        // Back up: the main trunk is first again.
        local.trunks.update("acme/main", |s| s.up = Some(true));
        let main = keys(route(&plans, &local, "alice", "Alice", "acme/sales").await);
        assert_eq!(main[0].0, "acme/main");
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
