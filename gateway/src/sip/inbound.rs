//! Calls that arrive from SIP peers (a trunk, a desk phone through its PBX).
//!
//! Only a company's trunk peer may call in: the source address must be one
//! of a trunk's peers (the registrar of a `register` trunk, the proxy or an
//! `allow_from` address of an `ip` trunk); anything else gets 403. The
//! Request-URI user is the dialled name: `echo` is answered by the
//! built-in RTP echo (a PBX admin can test the trunk's audio path in both
//! directions without any messenger user); a named login that the
//! company's `inbound.allow` permits rings that user's signed-in browsers
//! (`calls::incoming`), or gets 480 when none is online; anything that is
//! not a valid name gets 404.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use media::codec::Codec;
use media::sdp::{RtpSdp, SessionDescription};
use sip_trunk::dialog::{Body, DialogEvent};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use dialplans::{Dialplans, TrunkKind};

use super::{IncomingCall, Sip, TrunkStatus};
use crate::calls::CallRegistry;
use crate::calls::incoming::TrunkMedia;
use crate::plans::SharedPlans;

/// Codecs the RTP echo accepts, in preference order (echo needs no transcoding).
const ECHO_CODECS: [Codec; 4] = [Codec::Pcmu, Codec::Pcma, Codec::Opus, Codec::TelephoneEvent];

/// An echo call with no RTP at all for this long is ended.
const ECHO_IDLE: Duration = Duration::from_secs(60);

/// Answers calls from the trunk peers of `plans` until `incoming` closes.
/// `media_ip` is where RTP sockets bind. Without a call registry no
/// messenger user can be rung (named logins get 480).
pub async fn run(
    sip: Sip,
    incoming: mpsc::Receiver<IncomingCall>,
    media_ip: IpAddr,
    plans: Arc<SharedPlans>,
) {
    run_with(sip, incoming, media_ip, plans, None).await
}

/// Like [`run`], ringing messenger users through `registry`.
pub async fn run_with(
    sip: Sip,
    mut incoming: mpsc::Receiver<IncomingCall>,
    media_ip: IpAddr,
    plans: Arc<SharedPlans>,
    registry: Option<Arc<CallRegistry>>,
) {
    while let Some(call) = incoming.recv().await {
        let sip = sip.clone();
        let registry = registry.clone();
        let plans = plans.get();
        tokio::spawn(async move { handle(sip, call, media_ip, &plans, registry).await });
    }
}

/// The company whose trunk peer `source` is, if any: an `allow_from`
/// address, an address the peer resolved to when the trunk started (DNS
/// SRV targets included, from `trunks`), or the peer host's address now.
pub async fn trunk_of(plans: &Dialplans, trunks: &TrunkStatus, source: IpAddr) -> Option<String> {
    peer_trunk(plans, trunks, source)
        .await
        .map(|(tenant, _)| tenant)
}

/// The company whose trunk peer `source` is, and how calls on that trunk run (its
/// DTMF mode, audio codecs and video codecs).
pub async fn peer_trunk(
    plans: &Dialplans,
    trunks: &TrunkStatus,
    source: IpAddr,
) -> Option<(String, TrunkMedia)> {
    for tenant in plans.tenants() {
        let Some(plan) = plans.get(tenant) else {
            continue;
        };
        for trunk in plan.trunks.values() {
            let (peer, allow) = match &trunk.kind {
                TrunkKind::Register { registrar, .. } => (registrar, &[][..]),
                TrunkKind::Ip { proxy, allow_from } => (proxy, &allow_from[..]),
            };
            if allow.contains(&source) {
                return Some((tenant.to_owned(), TrunkMedia::of(trunk)));
            }
            if !allow.is_empty() {
                continue;
            }
            let known = trunks
                .get(&format!("{}/{}", plan.tenant, trunk.name))
                .is_some_and(|s| s.addresses.iter().any(|a| a.ip() == source));
            if known {
                return Some((tenant.to_owned(), TrunkMedia::of(trunk)));
            }
            let port = peer.port.unwrap_or(5060);
            if let Ok(mut addrs) = tokio::net::lookup_host((peer.host.as_str(), port)).await
                && addrs.any(|a| a.ip() == source)
            {
                return Some((tenant.to_owned(), TrunkMedia::of(trunk)));
            }
        }
    }
    None
}

async fn handle(
    sip: Sip,
    call: IncomingCall,
    media_ip: IpAddr,
    plans: &Dialplans,
    registry: Option<Arc<CallRegistry>>,
) {
    let dialled = call.invite.uri.user.clone().unwrap_or_default();
    let tenant = match call.source {
        Some(s) => peer_trunk(plans, &sip.trunks, s.ip()).await,
        None => None,
    };
    let Some((tenant, media)) = tenant else {
        warn!(%dialled, source = ?call.source, "call from a peer that is no company's trunk refused");
        let _ = sip
            .with_call(call.call, |c, _| drop(c.reject(403, "Forbidden")))
            .await;
        return;
    };
    info!(%dialled, %tenant, "incoming sip call");
    if dialled == "echo" {
        echo(sip, call, media_ip).await;
        return;
    }
    if let (Ok(login), Some(registry)) = (directory::LoginName::parse(&dialled), registry) {
        let allowed = plans
            .get(&tenant)
            .is_some_and(|p| p.inbound.allows(login.as_str()));
        if !allowed {
            info!(%dialled, %tenant, "the company's inbound rules do not allow calling this user");
            let _ = sip
                .with_call(call.call, |c, _| drop(c.reject(403, "Forbidden")))
                .await;
            return;
        }
        crate::calls::incoming::ring(registry, sip, call, login.to_string(), media).await;
        return;
    }
    let (code, reason) = if directory::LoginName::parse(&dialled).is_ok() {
        (480, "Temporarily Unavailable")
    } else {
        (404, "Not Found")
    };
    let _ = sip
        .with_call(call.call, move |c, _| {
            let _ = c.reject(code, reason);
        })
        .await;
}

/// Answers with an RTP socket that sends every packet back where it came from.
async fn echo(sip: Sip, mut call: IncomingCall, media_ip: IpAddr) {
    let h = call.call;
    let reject = |code: u16, reason: &'static str| {
        let sip = sip.clone();
        async move {
            let _ = sip
                .with_call(h, move |c, _| {
                    let _ = c.reject(code, reason);
                })
                .await;
        }
    };
    let offer = match call
        .offer
        .as_ref()
        .map(|b| SessionDescription::parse(&String::from_utf8_lossy(&b.data)))
    {
        Some(Ok(o)) => o,
        Some(Err(e)) => {
            debug!(cause = %e, "echo: bad SDP offer");
            return reject(488, "Not Acceptable Here").await;
        }
        // offerless INVITE (offer in our 200, answer in the ACK) is not supported by echo
        None => return reject(488, "Not Acceptable Here").await,
    };
    let socket = match UdpSocket::bind(SocketAddr::new(media_ip, 0)).await {
        Ok(s) => s,
        Err(e) => {
            warn!(cause = %e, "echo: no RTP port");
            return reject(503, "Service Unavailable").await;
        }
    };
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(_) => return reject(503, "Service Unavailable").await,
    };
    let mut neg = RtpSdp::new(local, rand::random::<u32>() as u64);
    let answer = match neg.answer(&offer, &ECHO_CODECS) {
        Ok((sd, _)) => sd,
        Err(e) => {
            debug!(cause = %e, "echo: no common codec");
            return reject(488, "Not Acceptable Here").await;
        }
    };
    let body = Body {
        content_type: "application/sdp".into(),
        data: answer.to_string().into_bytes().into(),
    };
    if sip
        .with_call(h, move |c, now| {
            let _ = c.answer(now, Some(body));
        })
        .await
        .is_err()
    {
        return;
    }
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            r = tokio::time::timeout(ECHO_IDLE, socket.recv_from(&mut buf)) => match r {
                Ok(Ok((n, from))) => { let _ = socket.send_to(&buf[..n], from).await; }
                Ok(Err(_)) => {}
                Err(_) => {
                    debug!("echo: no RTP for a minute, hanging up");
                    let _ = sip.with_call(h, |c, _| { let _ = c.hangup(); }).await;
                    break;
                }
            },
            ev = call.events.recv() => match ev {
                Some(DialogEvent::Terminated { reason }) => { debug!(?reason, "echo call ended"); break; }
                Some(_) => {}
                None => break,
            },
        }
    }
}
