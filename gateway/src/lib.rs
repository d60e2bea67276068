//! namecall gateway: wires the domain crates to the network.
//!
//! This crate is the only one that does I/O and spawns tasks. It is a thin
//! tokio shell: protocol decisions live in the sans-IO cores of `media`
//! (and later `sip-trunk`), and the tasks here move bytes and time into
//! them (see DESIGN.md, "thin async shells").
//!
//! # Layout
//!
//! - `config`: the `namecall` command line and its env fallbacks.
//! - `http`: the axum router (web client, `/healthz`, `/metrics`, `/v1/ws`) and problem+json errors.
//! - `ws`: the client WebSocket protocol (`docs/protocol.md`), one task per socket.
//! - `calls`: the call registry and the built-in `echo` target.
//! - `chat`: the chat shell: device routes and timers around `bridges::ChatService`.
//! - `media_io`: the UDP task driving a `media::webrtc::WebRtcLeg`.
//! - `accounts`: the `Accounts` seam (guest logins until the directory is wired in).
//! - `metrics`: gauges that show leaked calls and sockets.
//!
//! `main.rs` only parses the command line and calls [`serve`]; tests call
//! [`serve`] or [`http::router`] directly.
//!
//! # Shutdown
//!
//! [`serve`] takes any future as the shutdown signal (mini-redis style):
//! `main` passes Ctrl-C/SIGTERM. When it fires the HTTP server stops
//! accepting, WebSocket sessions close, their calls' media tasks end, and
//! `serve` returns.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod accounts;
pub mod calls;
pub mod chat;
pub mod config;
pub mod http;
pub mod ice;
pub mod media_io;
pub mod metrics;
pub mod plans;
pub mod push;
pub mod sip;
pub mod ws;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::accounts::{Accounts, GuestAccounts};
use crate::calls::CallRegistry;
use crate::config::ServeConfig;
use crate::media_io::MediaSockets;
use crate::metrics::Metrics;

/// What every request handler and session can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Authenticates sessions.
    pub accounts: Arc<dyn Accounts>,
    /// Starts calls.
    pub calls: Arc<CallRegistry>,
    /// Gauges and counters.
    pub metrics: Arc<Metrics>,
    /// The chat; `None` until `run` opened its store.
    pub chat: Option<Arc<chat::Chat>>,
    /// Flips to `true` when the server shuts down; sessions watch it.
    pub shutdown: watch::Receiver<bool>,
    /// The company admin API (absent without a directory).
    pub admin: Option<Arc<http::admin::Admin>>,
    /// The STUN/TURN servers clients get in `welcome`.
    pub ice: Arc<ice::ClientIce>,
}

impl AppState {
    /// State for `config`, with guest accounts; returns the sender that signals shutdown.
    pub fn new(config: &ServeConfig) -> (Self, watch::Sender<bool>) {
        let metrics = Arc::new(Metrics::default());
        let sockets = MediaSockets::new(
            config.effective_media_ip(),
            config.rtp_ports,
            Arc::clone(&metrics),
        )
        .with_external_ip(config.external_ip);
        let (tx, rx) = watch::channel(false);
        // `run` checks the pairing first; a bad one here (tests) hands out no servers
        let ice = ice::ClientIce::new(
            config.ice_servers.clone(),
            config.turn_secret.clone(),
            config.turn_ttl,
        )
        .unwrap_or_default();
        let state = AppState {
            accounts: Arc::new(GuestAccounts),
            calls: Arc::new(CallRegistry::new(sockets, Arc::clone(&metrics))),
            metrics,
            chat: None,
            shutdown: rx,
            admin: None,
            ice: Arc::new(ice),
        };
        (state, tx)
    }
}

/// Binds the HTTP listener, logs the readiness line and serves until `shutdown` completes.
///
/// # Errors
/// When the HTTP address cannot be bound or the data directory cannot be created.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.http).await?;
    run(listener, config, shutdown).await
}

/// Serves on an already bound listener (tests bind `127.0.0.1:0` themselves).
///
/// # Errors
/// When the data directory cannot be created or the server fails.
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    ice::ClientIce::new(
        config.ice_servers.clone(),
        config.turn_secret.clone(),
        config.turn_ttl,
    )
    .map_err(|e| anyhow::anyhow!("invalid ICE server configuration: {e}"))?;
    std::fs::create_dir_all(&config.data_dir)?;
    let addr = listener.local_addr()?;
    let (mut state, stop) = AppState::new(&config);
    let db = config.data_dir.join("namecall.sqlite");
    let dir = directory::Directory::open(&format!("sqlite://{}", db.display()))
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the directory {}: {e}", db.display()))?;
    let accounts = Arc::new(crate::accounts::DirectoryAccounts::new(dir));
    let plans = Arc::new(plans::SharedPlans::new(
        config.dialplans.clone(),
        load_dialplans(&config)?,
    ));
    publish_names(accounts.directory(), &plans.get()).await;
    state.accounts = accounts.clone();
    tokio::spawn(purge_sessions(accounts.clone(), state.shutdown.clone()));
    let (sip, incoming, messages) = start_sip(&config, &plans.get()).await?;
    tokio::spawn(reload_on_hangup(
        plans.clone(),
        accounts.clone(),
        sip.clone(),
        state.shutdown.clone(),
    ));
    let chat = chat::Chat::open(&config.data_dir).await?;
    tokio::spawn(Arc::clone(&chat).run_timer(state.shutdown.clone()));
    chat.start_push(
        &config.data_dir,
        &push::PushSettings {
            subject: config.push_subject.clone(),
            allow_http: config.push_allow_http,
        },
        state.shutdown.clone(),
    )?;
    // chat with companies: outbound SIP MESSAGE through the trunks, inbound
    // MESSAGE from trunk peers into the users' company conversations
    let (relay, outcomes) = chat::company::SipRelay::new(
        plans.clone(),
        sip.clone(),
        Some(accounts.clone()),
        Arc::clone(&chat),
        state.shutdown.clone(),
    );
    chat.service().set_company_relay(relay);
    tokio::spawn(outcomes);
    tokio::spawn(chat::company::run_inbound(
        Arc::clone(&chat),
        sip.clone(),
        plans.clone(),
        Some(accounts.clone()),
        messages,
    ));
    state.chat = Some(chat);
    let sockets = MediaSockets::new(
        config.effective_media_ip(),
        config.rtp_ports,
        Arc::clone(&state.metrics),
    )
    .with_external_ip(config.external_ip);
    state.admin = Some(Arc::new(http::admin::Admin {
        accounts: accounts.clone(),
        trunks: sip.trunks.clone(),
        plans: plans.clone(),
    }));
    let calls = Arc::new(
        CallRegistry::new(sockets, Arc::clone(&state.metrics))
            .with_trunks(plans.clone(), sip.clone()),
    );
    tokio::spawn(sip::inbound::run_with(
        sip.clone(),
        incoming,
        config.effective_media_ip(),
        plans.clone(),
        Some(calls.clone()),
    ));
    state.calls = calls;
    let app = http::router(state);
    info!(media_ip = %config.effective_media_ip(), data_dir = %config.data_dir.display(), "starting");
    // tests wait for this exact line on stderr
    info!("namecall ready http={addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            info!("shutting down");
            // sessions close their sockets, which ends their calls
            let _ = stop.send(true);
        })
        .await?;
    // unregister the trunks before the process goes away
    sip.shutdown().await;
    info!("stopped");
    Ok(())
}

/// `namecall apikey ...`: creates or revokes a company admin's API key.
///
/// # Errors
/// When the directory cannot be opened, the company is unknown or the key is not valid.
pub async fn apikey(action: config::ApiKeyAction) -> anyhow::Result<String> {
    let open = |data_dir: &std::path::Path| {
        let db = data_dir.join("namecall.sqlite");
        async move {
            directory::Directory::open(&format!("sqlite://{}", db.display()))
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the directory {}: {e}", db.display()))
        }
    };
    let now = std::time::SystemTime::now();
    match action {
        config::ApiKeyAction::Create { tenant, data_dir } => {
            let dir = open(&data_dir).await?;
            let name = directory::LoginName::parse(&tenant)
                .map_err(|e| anyhow::anyhow!("{tenant}: {e}"))?;
            let t = dir.tenant_by_name(&name).await.map_err(|_| {
                anyhow::anyhow!(
                    "no company named {tenant} (companies come from the dialplans; start the gateway once)"
                )
            })?;
            let key = dir.create_api_key(t.id, now).await?;
            Ok(key.secret)
        }
        config::ApiKeyAction::Revoke { key, data_dir } => {
            let dir = open(&data_dir).await?;
            dir.revoke_api_key(key.trim(), now)
                .await
                .map_err(|_| anyhow::anyhow!("no such active key"))?;
            Ok("revoked".into())
        }
    }
}

/// `namecall check-dialplans DIR`: validates a dialplan folder without starting anything.
///
/// # Errors
/// Every problem as `file:line:column: message`, one per line.
pub fn check_dialplans(dir: &std::path::Path) -> anyhow::Result<String> {
    match dialplans::Dialplans::load_dir(dir) {
        Ok(p) => Ok(format!(
            "{}: {} dialplan(s) valid: {}",
            dir.display(),
            p.len(),
            p.tenants().collect::<Vec<_>>().join(", ")
        )),
        Err(errors) => {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            anyhow::bail!("{}", text.join("\n"))
        }
    }
}

/// Loads the dialplan folder.
///
/// A folder with errors stops the start with every error as
/// `file:line:column: message`; a missing folder only warns (no trunks).
fn load_dialplans(config: &ServeConfig) -> anyhow::Result<dialplans::Dialplans> {
    match dialplans::Dialplans::load_dir(&config.dialplans) {
        Ok(p) => {
            info!(tenants = p.len(), dir = %config.dialplans.display(), "dialplans loaded");
            Ok(p)
        }
        Err(_) if !config.dialplans.exists() => {
            tracing::warn!(dir = %config.dialplans.display(), "no dialplan folder: no companies, no trunks");
            dialplans::Dialplans::from_sources(std::iter::empty::<(&str, &str)>())
                .map_err(|_| anyhow::anyhow!("empty dialplan set refused"))
        }
        Err(errors) => {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            anyhow::bail!("dialplans refused:\n{}", text.join("\n"))
        }
    }
}

/// Makes every company of the dialplans, and its sub-names, findable in the
/// directory (created when absent; existing entries are left alone).
async fn publish_names(dir: &directory::Directory, plans: &dialplans::Dialplans) {
    let now = std::time::SystemTime::now();
    for tenant in plans.tenants() {
        let Some(plan) = plans.get(tenant) else {
            continue;
        };
        let Ok(login) = directory::LoginName::parse(&plan.tenant.to_string()) else {
            continue;
        };
        let display = plan
            .display_name
            .clone()
            .unwrap_or_else(|| login.to_string());
        let Ok(display) = directory::DisplayName::parse(&display) else {
            continue;
        };
        let id = match dir.tenant_by_name(&login).await {
            Ok(t) => t.id,
            Err(_) => match dir.create_tenant(&login, &display, now).await {
                Ok(id) => id,
                Err(e) => {
                    tracing::warn!(tenant = %login, cause = %e, "cannot publish company name");
                    continue;
                }
            },
        };
        for (sub, entry) in &plan.names {
            if sub.is_empty() {
                continue;
            }
            let (Ok(s), Ok(d)) = (
                directory::SubName::parse(sub),
                directory::DisplayName::parse(entry.display_name.as_deref().unwrap_or(sub)),
            ) else {
                continue;
            };
            // NameTaken means it is already published
            let _ = dir.add_subname(id, &s, &d, "").await;
        }
    }
}

/// Binds the SIP socket and registers every `kind: register` trunk of
/// `plans`; returns the SIP handle and the channels of incoming calls and
/// incoming MESSAGEs.
async fn start_sip(
    config: &ServeConfig,
    plans: &dialplans::Dialplans,
) -> anyhow::Result<(
    sip::Sip,
    tokio::sync::mpsc::Receiver<sip::IncomingCall>,
    tokio::sync::mpsc::Receiver<sip::IncomingMessage>,
)> {
    let (itx, irx) = tokio::sync::mpsc::channel(256);
    let (mtx, mrx) = tokio::sync::mpsc::channel(256);
    let mut sip = sip::spawn_with_messages(config.sip, None, itx, mtx)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind SIP socket {}: {e}", config.sip))?;
    let dns = if config.dns_servers.is_empty() {
        sip::dns::DnsLookup::system()
    } else {
        sip::dns::DnsLookup::with_servers(&config.dns_servers, std::time::Duration::from_secs(2), 2)
    };
    match dns {
        Ok(d) => sip.dns = Some(d),
        // names still resolve through the system resolver's A/AAAA answer
        Err(e) => tracing::warn!(cause = %e, "no RFC 3263 dns for trunks"),
    }
    sip::trunks::start_registrations(&sip, plans, sip::trunks::DEFAULT_EXPIRES).await;
    Ok((sip, irx, mrx))
}

/// Reloads the dialplans on SIGHUP: a valid folder replaces the running
/// plans (new names are published, changed trunks re-register); a folder
/// with errors is refused with every `file:line:column` and changes nothing.
async fn reload_on_hangup(
    plans: Arc<plans::SharedPlans>,
    accounts: Arc<crate::accounts::DirectoryAccounts>,
    sip: sip::Sip,
    mut shutdown: watch::Receiver<bool>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; dialplan reload disabled");
            return;
        };
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                _ = shutdown.changed() => return,
            }
            info!(dir = %plans.dir().display(), "SIGHUP: reloading dialplans");
            match plans.reload() {
                Ok((old, new)) => {
                    publish_names(accounts.directory(), &new).await;
                    let (added, removed) =
                        sip::trunks::apply_reload(&sip, &old, &new, sip::trunks::DEFAULT_EXPIRES)
                            .await;
                    info!(tenants = new.len(), ?added, ?removed, "dialplans reloaded");
                }
                Err(errors) => {
                    for e in &errors {
                        tracing::error!("{e}");
                    }
                    tracing::error!(
                        errors = errors.len(),
                        "dialplans refused; the running dialplans stay"
                    );
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (plans, accounts, sip);
        let _ = shutdown.changed().await;
    }
}

/// Deletes expired login sessions every hour until shutdown.
async fn purge_sessions(
    accounts: Arc<crate::accounts::DirectoryAccounts>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = every.tick() => {
                let n = accounts.purge_sessions().await;
                if n > 0 {
                    info!(purged = n, "expired login sessions deleted");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
