//! The company admin API under `/v1/admin`, authenticated by the company's API key.
//!
//! An admin creates a key with `namecall apikey create <company>` and sends
//! it as `Authorization: Bearer nck_...`. Each key belongs to one company
//! (tenant) and only ever sees that company: today its trunks, their
//! registration state and whether they are up, the first thing an admin checks when desk phones
//! stop ringing. Errors are problem+json (401 without a valid key).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use dialplans::TrunkKind;
use serde::Serialize;

use super::AppError;
use crate::AppState;
use crate::accounts::DirectoryAccounts;
use crate::sip::TrunkStatus;

/// What the admin API reads.
pub struct Admin {
    /// Accounts and API keys.
    pub accounts: Arc<DirectoryAccounts>,
    /// Registration state per `tenant/trunk`.
    pub trunks: Arc<TrunkStatus>,
    /// The running dialplans (trunk definitions).
    pub plans: Arc<crate::plans::SharedPlans>,
}

/// `GET /v1/admin/trunks`: the company's trunks and their state.
#[derive(Debug, Serialize)]
pub struct TrunksReply {
    /// The company's name.
    pub tenant: String,
    /// Its trunks, by name.
    pub trunks: Vec<TrunkReply>,
}

/// One trunk in [`TrunksReply`].
#[derive(Debug, Serialize)]
pub struct TrunkReply {
    /// Name in the dialplan.
    pub name: String,
    /// `register` or `ip`.
    pub kind: &'static str,
    /// Where INVITEs (and REGISTERs) go.
    pub peer: String,
    /// A registration binding is in place (always false for `ip` trunks).
    pub registered: bool,
    /// Granted expiry of the last REGISTER, seconds.
    pub expires: u32,
    /// Successful registrations and refreshes since start.
    pub registrations: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// `up` (answers keep-alive OPTIONS), `down` (silent or 5xx: calls skip
    /// it), or `unknown` (no answer yet, or `keepalive: off`).
    pub state: &'static str,
    /// When `state` last changed, Unix seconds (`null` before the first answer).
    pub last_change: Option<u64>,
    /// Calls that failed on this trunk and were retried on the next one.
    pub failovers: u64,
}

/// `GET /v1/admin/trunks`.
pub async fn trunks(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<TrunksReply>, AppError> {
    let admin = state.admin.as_ref().ok_or(AppError::NotFound)?;
    let tenant = tenant_of(admin, &headers).await?;
    let plans = admin.plans.get();
    let plan = plans.get(&tenant);
    let trunks = plan
        .map(|p| {
            p.trunks
                .values()
                .map(|t| {
                    let st = admin
                        .trunks
                        .get(&format!("{}/{}", p.tenant, t.name))
                        .unwrap_or_default();
                    let (kind, peer) = match &t.kind {
                        TrunkKind::Register { registrar, .. } => ("register", host_port(registrar)),
                        TrunkKind::Ip { proxy, .. } => ("ip", host_port(proxy)),
                    };
                    TrunkReply {
                        name: t.name.clone(),
                        kind,
                        peer,
                        registered: st.registered,
                        expires: st.expires,
                        registrations: st.registrations,
                        last_error: st.last_error,
                        state: match st.up {
                            Some(true) => "up",
                            Some(false) => "down",
                            None => "unknown",
                        },
                        last_change: st.last_change,
                        failovers: st.failovers,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(TrunksReply { tenant, trunks }))
}

fn host_port(hp: &dialplans::HostPort) -> String {
    match hp.port {
        Some(p) => format!("{}:{p}", hp.host),
        None => hp.host.clone(),
    }
}

/// The company behind the request's bearer key.
async fn tenant_of(admin: &Admin, headers: &HeaderMap) -> Result<String, AppError> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or(AppError::Unauthorized)?;
    let dir = admin.accounts.directory();
    let id = dir
        .check_api_key(key)
        .await
        .map_err(|_| AppError::Unauthorized)?;
    let tenant = dir.tenant(id).await.map_err(|_| AppError::Unauthorized)?;
    Ok(tenant.login.to_string())
}
