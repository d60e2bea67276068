//! Calls from desk phones to messenger users: `alice` dialled on a PBX rings
//! every browser where Alice is signed in.
//!
//! [`Users`] knows which WebSocket sessions each account has open (a session
//! registers on `welcome` and leaves when it closes). A call for a named
//! login becomes one ringing task ([`ring`]) that sends 180 to the PBX,
//! pushes an `incoming` frame to each of the user's sessions, and waits:
//! the first session that accepts (with its WebRTC offer) gets the call, the
//! others see `ended answered-elsewhere`; if all decline the PBX gets 603,
//! if nobody answers in time 480, and a CANCEL from the PBX ends the ringing
//! everywhere. Once accepted, the call runs in the same task shape as an
//! outgoing trunk call ([`super::trunk::AnsweredCall`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dialplans::DtmfMode;
use media::codec::Codec;
use media::sdp::{RtpSdp, SessionDescription, VideoCodec};
use media::webrtc::{WebRtcConfig, WebRtcLeg};
use sip_trunk::dialog::{Body, DialogEvent};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{CallError, CallHandle, CallRegistry};
use crate::media_io::{LegEvent, MediaSocket};
use crate::sip::{IncomingCall, Sip};

/// How long a messenger user's devices ring before the PBX gets 480.
pub const RING_TIMEOUT: Duration = Duration::from_secs(45);

/// What a ringing task tells a session.
#[derive(Debug)]
pub enum Push {
    /// A call for this session's user.
    Incoming(Offer),
    /// The ringing for call `id` stopped (answered elsewhere, cancelled, timed out).
    Stop {
        /// The call id.
        id: String,
        /// Why, as an `ended` reason.
        reason: &'static str,
        /// SIP-like code.
        code: u16,
    },
}

/// One ringing call offered to one session.
#[derive(Debug)]
pub struct Offer {
    /// The call id (server-chosen, `in-<n>`).
    pub id: String,
    /// The caller as the PBX names them (display name, else the SIP user).
    pub from: String,
    /// The caller's SIP URI.
    pub from_uri: String,
    /// The PBX offers video and the trunk passes it (a video port is held).
    pub video: bool,
    /// Where to answer.
    pub respond: mpsc::Sender<(u64, Answer)>,
}

/// A session's answer to an [`Offer`].
#[derive(Debug)]
pub enum Answer {
    /// Take the call with this WebRTC offer; call events go to `events`.
    Accept {
        /// The browser's SDP offer.
        sdp: String,
        /// The call's events for the session.
        events: mpsc::Sender<LegEvent>,
        /// The session gets its handle (with our SDP answer) here.
        reply: oneshot::Sender<Result<CallHandle, CallError>>,
    },
    /// Refuse the call on this device.
    Decline,
}

/// One open session of an account: its number and where pushes go.
pub type SessionTx = (u64, mpsc::Sender<Push>);

/// Which sessions each account has open.
#[derive(Debug, Default)]
pub struct Users {
    /// Plain std lock: held only to clone or edit the list, never across `.await`.
    sessions: Mutex<HashMap<String, Vec<SessionTx>>>,
    next: AtomicU64,
}

/// Keeps a session registered; unregisters it on drop.
#[derive(Debug)]
pub struct Registration {
    users: Arc<Users>,
    login: String,
    session: u64,
}

impl Users {
    /// Registers a session of `login`; pushes for it arrive on `tx`.
    pub fn register(self: &Arc<Self>, login: &str, tx: mpsc::Sender<Push>) -> Registration {
        let session = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.sessions.lock() {
            m.entry(login.to_owned()).or_default().push((session, tx));
        }
        Registration {
            users: Arc::clone(self),
            login: login.to_owned(),
            session,
        }
    }

    /// The open sessions of `login`.
    pub fn sessions(&self, login: &str) -> Vec<SessionTx> {
        self.sessions
            .lock()
            .ok()
            .and_then(|m| m.get(login).cloned())
            .unwrap_or_default()
    }
}

impl Registration {
    /// The session number (tags this session's answers).
    pub fn session(&self) -> u64 {
        self.session
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.users.sessions.lock()
            && let Some(v) = m.get_mut(&self.login)
        {
            v.retain(|(s, _)| *s != self.session);
            if v.is_empty() {
                m.remove(&self.login);
            }
        }
    }
}

static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// How calls on the trunk a call came in on run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkMedia {
    /// How the user's keys reach the PBX (`dtmf:`).
    pub dtmf: DtmfMode,
    /// Audio codecs we accept from the PBX, in preference order (`codecs:`).
    pub codecs: Vec<Codec>,
    /// Video codecs passed through (`video:`; empty for audio only).
    pub video: Vec<VideoCodec>,
}

impl TrunkMedia {
    /// What the dialplan's trunk says.
    pub fn of(trunk: &dialplans::Trunk) -> Self {
        Self {
            dtmf: trunk.dtmf,
            codecs: super::audio_codecs(&trunk.codecs),
            video: super::video_codecs(&trunk.video),
        }
    }
}

/// Rings `login`'s sessions for the incoming SIP call and runs it if one accepts.
/// `trunk` is how the calling trunk's calls run: the user's keys reach the PBX in its
/// DTMF mode, our answer picks from its codecs, video passes in its video codecs.
pub async fn ring(
    registry: Arc<CallRegistry>,
    sip: Sip,
    mut call: IncomingCall,
    login: String,
    trunk: TrunkMedia,
) {
    let h = call.call;
    let refuse = |code: u16, reason: &'static str| {
        let sip = sip.clone();
        async move {
            let _ = sip
                .with_call(h, move |c, _| drop(c.reject(code, reason)))
                .await;
        }
    };
    let sessions = registry.users.sessions(&login);
    if sessions.is_empty() {
        info!(%login, "no device online for the dialled login");
        return refuse(480, "Temporarily Unavailable").await;
    }
    let Some(pbx_offer) = call
        .offer
        .as_ref()
        .and_then(|b| SessionDescription::parse(&String::from_utf8_lossy(&b.data)).ok())
    else {
        // offer-less INVITEs (offer in our 200) are not supported for user calls
        return refuse(488, "Not Acceptable Here").await;
    };
    let from_addr = call.invite.headers.from().ok();
    let from_uri = from_addr
        .as_ref()
        .map(|f| f.uri.to_string())
        .unwrap_or_default();
    let from = from_addr
        .as_ref()
        .and_then(|f| f.display.clone())
        .map(|d| d.trim_matches('"').to_owned())
        .filter(|d| !d.is_empty())
        .or_else(|| from_addr.as_ref().and_then(|f| f.uri.user.clone()))
        .unwrap_or_else(|| "unknown".into());
    // Both media ports are taken before anything rings: with the range exhausted the
    // PBX gets 503 at once instead of a call that fails when the user picks up.
    let sockets = match bind_pair(&registry.sockets).await {
        Ok(s) => s,
        Err(e) => {
            warn!(cause = %e, %login, "no media port free; refusing the call");
            return refuse(503, "Service Unavailable").await;
        }
    };
    // a video port too when the phone offers a codec the trunk passes; the browser is
    // then asked for the phone's codecs in the phone's order
    let video = offered_video(&pbx_offer, &trunk.video);
    let video_socket = if !video.is_empty() {
        match registry.sockets.bind().await {
            Ok(s) => Some(s),
            Err(e) => {
                warn!(cause = %e, %login, "no media port free for video; refusing the call");
                return refuse(503, "Service Unavailable").await;
            }
        }
    } else {
        None
    };
    let id = format!("in-{}", NEXT_CALL.fetch_add(1, Ordering::Relaxed));
    info!(%login, %from, call = %id, devices = sessions.len(), "ringing a messenger user");
    let _ = sip
        .with_call(h, |c, now| drop(c.ring(now, 180, None)))
        .await;
    let (rtx, mut rrx) = mpsc::channel(8);
    let mut ringing: Vec<SessionTx> = Vec::new();
    for (session, tx) in sessions {
        let offer = Offer {
            id: id.clone(),
            from: from.clone(),
            from_uri: from_uri.clone(),
            video: video_socket.is_some(),
            respond: rtx.clone(),
        };
        if tx.send(Push::Incoming(offer)).await.is_ok() {
            ringing.push((session, tx));
        }
    }
    drop(rtx);
    let stop_all = |ringing: &[SessionTx], except: Option<u64>, reason, code| {
        for (s, tx) in ringing {
            if Some(*s) != except {
                let _ = tx.try_send(Push::Stop {
                    id: id.clone(),
                    reason,
                    code,
                });
            }
        }
    };
    let mut declined = 0;
    let deadline = tokio::time::sleep(RING_TIMEOUT);
    tokio::pin!(deadline);
    let (session, sdp, events, reply) = loop {
        tokio::select! {
            r = rrx.recv() => match r {
                Some((s, Answer::Accept { sdp, events, reply })) => break (s, sdp, events, reply),
                Some((_, Answer::Decline)) => {
                    declined += 1;
                    if declined >= ringing.len() {
                        stop_all(&ringing, None, "declined", 603);
                        return refuse(603, "Decline").await;
                    }
                }
                // every session went away
                None => {
                    return refuse(480, "Temporarily Unavailable").await;
                }
            },
            ev = call.events.recv() => match ev {
                Some(DialogEvent::Terminated { reason }) => {
                    debug!(?reason, "caller gave up");
                    stop_all(&ringing, None, "cancelled", 487);
                    return;
                }
                Some(_) => {}
                None => {
                    stop_all(&ringing, None, "cancelled", 487);
                    return;
                }
            },
            _ = &mut deadline => {
                stop_all(&ringing, None, "no-answer", 408);
                return refuse(480, "Temporarily Unavailable").await;
            }
        }
    };
    stop_all(&ringing, Some(session), "answered-elsewhere", 200);
    match answer(
        &registry,
        &sip,
        call,
        (sockets, video_socket),
        pbx_offer,
        (&sdp, &trunk, &video),
        events,
    )
    .await
    {
        Ok(handle) => {
            let _ = reply.send(Ok(handle));
        }
        Err((e, code)) => {
            warn!(cause = %e, "cannot take the incoming call");
            let _ = sip
                .with_call(h, move |c, _| drop(c.reject(code, "Not Acceptable Here")))
                .await;
            let _ = reply.send(Err(e));
        }
    }
}

/// The codecs of the offer's first enabled video stream that the trunk passes, in the
/// offer's order (its preference); empty when it has none of them.
fn offered_video(sd: &SessionDescription, passed: &[VideoCodec]) -> Vec<VideoCodec> {
    let Some(m) = sd
        .media
        .iter()
        .find(|m| m.kind == media::sdp::MediaKind::Video && m.port != 0)
    else {
        return Vec::new();
    };
    let mut codecs = Vec::new();
    for pt in m.payload_types() {
        let codec = m
            .rtpmap(pt)
            .and_then(|r| VideoCodec::from_name(&r.encoding));
        if let Some(c) = codec
            && passed.contains(&c)
            && !codecs.contains(&c)
        {
            codecs.push(c);
        }
    }
    codecs
}

/// Binds a call's two media sockets (WebRTC leg, RTP leg) from the port range.
pub(crate) async fn bind_pair(
    sockets: &crate::media_io::MediaSockets,
) -> Result<(MediaSocket, MediaSocket), CallError> {
    let webrtc = sockets.bind().await.map_err(CallError::NoMediaPort)?;
    let rtp = sockets.bind().await.map_err(CallError::NoMediaPort)?;
    Ok((webrtc, rtp))
}

/// Joins the accepting browser's leg and the PBX's leg; the call then runs in its own task.
async fn answer(
    registry: &CallRegistry,
    sip: &Sip,
    call: IncomingCall,
    ((webrtc_socket, rtp_socket), video_socket): ((MediaSocket, MediaSocket), Option<MediaSocket>),
    pbx_offer: SessionDescription,
    (browser_offer, trunk, video): (&str, &TrunkMedia, &[VideoCodec]),
    events: mpsc::Sender<LegEvent>,
) -> Result<CallHandle, (CallError, u16)> {
    let config = WebRtcConfig {
        local_addrs: vec![webrtc_socket.local],
        video: match video_socket {
            Some(_) => video.to_vec(),
            None => Vec::new(),
        },
        external_ip: registry.sockets.external_ip(),
    };
    let now = tokio::time::Instant::now().into_std();
    let (leg, browser_answer) =
        WebRtcLeg::accept_offer(now, &config, browser_offer).map_err(|e| (e.into(), 500))?;
    let mut sdp = RtpSdp::new(rtp_socket.local, rand::random::<u32>().into());
    if let (Some(vs), Some(m)) = (&video_socket, leg.video_media()) {
        // our answer takes the phone's video if it has the codec the browser sends
        sdp.set_video(vs.local.port(), m);
    }
    let dtmf = trunk.dtmf;
    let codecs = super::trunk::pbx_codecs(dtmf, &trunk.codecs);
    let (our_answer, negotiated) = sdp.answer(&pbx_offer, &codecs).map_err(|_| {
        (
            CallError::Refused {
                code: 488,
                reason: "not-acceptable",
            },
            488,
        )
    })?;
    let body = Body {
        content_type: "application/sdp".into(),
        data: our_answer.to_string().into_bytes().into(),
    };
    let h = call.call;
    sip.with_call(h, move |c, now| drop(c.answer(now, Some(body))))
        .await
        .map_err(|_| {
            (
                CallError::Refused {
                    code: 487,
                    reason: "cancelled",
                },
                487,
            )
        })?;
    let (tx, rx) = mpsc::channel(64);
    let answered = super::trunk::AnsweredCall {
        leg,
        webrtc_socket,
        rtp_socket,
        video_socket,
        sip: sip.clone(),
        call: h,
        dialog: call.events,
        sdp,
        pbx_offer,
        negotiated,
        dtmf,
        codecs: trunk.codecs.clone(),
        commands: rx,
        events,
        metrics: Arc::clone(&registry.metrics),
    };
    tokio::spawn(answered.run());
    Ok(CallHandle {
        answer: browser_answer,
        commands: tx,
    })
}
