//! The call registry: turns `call {to, sdp}` into a running call.
//!
//! The dialled name goes through the dialplans (`route`): the built-in
//! `echo` is answered here, a company name becomes a [`trunk::TrunkCall`]
//! (the back-to-back user agent towards the company's PBX), anything else is
//! refused with a status the client can show. Only logged-in accounts reach a
//! trunk: a guest session may call `echo` and nothing that costs the company
//! (toll fraud). A started call is a [`CallHandle`] owned by the WebSocket
//! session: dropping the handle closes the command channel, which ends the
//! call's task, so a vanished session cannot leak a call.

mod echo;
pub mod incoming;
pub mod route;
pub mod trunk;

pub use echo::Echo;

use std::sync::Arc;

use media::codec::Codec;
use media::sdp::VideoCodec;
use media::webrtc::{WebRtcConfig, WebRtcError, WebRtcLeg};
use tokio::sync::mpsc;

use crate::accounts::Identity;
use crate::media_io::{self, LegCommand, LegEvent, MediaSockets};
use crate::metrics::Metrics;
use crate::sip::Sip;
use route::Route;

/// The name of the built-in echo target.
pub const ECHO: &str = "echo";

/// Why a call could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// Nobody answers to that name.
    #[error("no such name: {0}")]
    NotFound(String),
    /// The SDP offer cannot be answered.
    #[error("cannot answer the offer: {0}")]
    BadOffer(#[from] WebRtcError),
    /// No media port could be bound.
    #[error("no media port available")]
    NoMediaPort(#[source] std::io::Error),
    /// A guest asked for a destination that needs an account.
    #[error("log in with an account to call {0}")]
    LoginRequired(String),
    /// The dialplan refused the call.
    #[error("refused with {code} ({reason})")]
    Refused {
        /// SIP-like status.
        code: u16,
        /// Short reason token.
        reason: &'static str,
    },
}

impl CallError {
    /// The short reason token and SIP-like code for the `ended` frame.
    pub fn reason_and_code(&self) -> (&'static str, u16) {
        match self {
            CallError::NotFound(_) => ("not-found", 404),
            CallError::BadOffer(_) => ("not-acceptable", 488),
            CallError::NoMediaPort(_) => ("unavailable", 503),
            CallError::LoginRequired(_) => ("login-required", 403),
            CallError::Refused { code, reason } => (reason, *code),
        }
    }
}

/// A started call, owned by whoever placed it.
#[derive(Debug)]
pub struct CallHandle {
    /// The SDP answer for the caller.
    pub answer: String,
    /// Commands to the call's media task; dropping it ends the call.
    pub commands: mpsc::Sender<LegCommand>,
}

/// Starts calls to targets.
pub struct CallRegistry {
    sockets: MediaSockets,
    metrics: Arc<Metrics>,
    routing: Option<Routing>,
    /// Open sessions per account, for calls from desk phones to users.
    pub users: Arc<incoming::Users>,
}

/// What trunk calls need: the dialplans and the SIP task.
struct Routing {
    plans: Arc<crate::plans::SharedPlans>,
    sip: Sip,
    local: route::Local,
}

impl std::fmt::Debug for CallRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRegistry")
            .field("sockets", &self.sockets)
            .field("trunk_calls", &self.routing.is_some())
            .finish()
    }
}

impl CallRegistry {
    /// A registry binding media sockets through `sockets`; only `echo` answers.
    pub fn new(sockets: MediaSockets, metrics: Arc<Metrics>) -> Self {
        CallRegistry {
            sockets,
            metrics,
            routing: None,
            users: Arc::default(),
        }
    }

    /// Routes calls through `plans` and places trunk calls with `sip`.
    pub fn with_trunks(mut self, plans: Arc<crate::plans::SharedPlans>, sip: Sip) -> Self {
        let local = route::Local {
            sent_by: sip.sent_by.clone(),
            trunks: sip.trunks.clone(),
            dns: sip.dns.clone(),
        };
        self.routing = Some(Routing { plans, sip, local });
        self
    }

    /// Places a call from `caller` to `to` with the caller's SDP offer; events arrive on `events`.
    ///
    /// # Errors
    /// [`CallError`] when the name is unknown or refused, the caller may not
    /// call it, the offer is unusable or no port is free.
    pub async fn start_call(
        &self,
        caller: &Identity,
        to: &str,
        offer_sdp: &str,
        events: mpsc::Sender<LegEvent>,
    ) -> Result<CallHandle, CallError> {
        let to = to.trim();
        let route = match &self.routing {
            Some(r) => {
                let plans = r.plans.get();
                route::route(&plans, &r.local, &caller.login, &caller.login, to).await
            }
            None if to == ECHO => Route::Echo,
            None => return Err(CallError::NotFound(to.to_owned())),
        };
        match route {
            Route::Echo => self.start_echo(offer_sdp, events).await,
            Route::Refuse { code: 404, .. } => Err(CallError::NotFound(to.to_owned())),
            Route::Refuse { code, reason } => Err(CallError::Refused { code, reason }),
            Route::Trunk(_) if caller.guest => Err(CallError::LoginRequired(to.to_owned())),
            Route::Trunk(t) => self.start_trunk_call(t, offer_sdp, events).await,
        }
    }

    async fn start_trunk_call(
        &self,
        route: route::TrunkRoute,
        offer_sdp: &str,
        events: mpsc::Sender<LegEvent>,
    ) -> Result<CallHandle, CallError> {
        let Some(routing) = &self.routing else {
            let key = route
                .first()
                .map(|t| t.trunk_key.clone())
                .unwrap_or_default();
            return Err(CallError::NotFound(key));
        };
        // both ports are taken before the PBX is rung (an exhausted range refuses here)
        let (webrtc_socket, rtp_socket) = incoming::bind_pair(&self.sockets).await?;
        let config = WebRtcConfig {
            local_addrs: vec![webrtc_socket.local],
            // video passes through only to trunks that allow it (the first, or a failover);
            // the first such trunk's codec list decides what the browser is asked to send
            video: route
                .trunks
                .iter()
                .find(|t| !t.video.is_empty())
                .map(|t| t.video.clone())
                .unwrap_or_default(),
            external_ip: self.sockets.external_ip(),
        };
        let now = tokio::time::Instant::now().into_std();
        let (leg, answer) = WebRtcLeg::accept_offer(now, &config, offer_sdp)?;
        // the video port too, when the caller sends video (an exhausted range refuses here)
        let video_socket = match leg.video_media() {
            Some(_) => Some(self.sockets.bind().await.map_err(CallError::NoMediaPort)?),
            None => None,
        };
        let (tx, rx) = mpsc::channel(64);
        let call = trunk::TrunkCall {
            leg,
            webrtc_socket,
            rtp_socket,
            video_socket,
            sip: routing.sip.clone(),
            route,
            commands: rx,
            events,
            metrics: Arc::clone(&self.metrics),
        };
        tokio::spawn(call.run());
        Ok(CallHandle {
            answer,
            commands: tx,
        })
    }

    async fn start_echo(
        &self,
        offer_sdp: &str,
        events: mpsc::Sender<LegEvent>,
    ) -> Result<CallHandle, CallError> {
        let socket = self.sockets.bind().await.map_err(CallError::NoMediaPort)?;
        let config = WebRtcConfig {
            local_addrs: vec![socket.local],
            video: Vec::new(),
            external_ip: self.sockets.external_ip(),
        };
        let now = tokio::time::Instant::now().into_std();
        let (leg, answer) = WebRtcLeg::accept_offer(now, &config, offer_sdp)?;
        let (tx, rx) = mpsc::channel(64);
        let peer = Box::new(Echo::new(rand::random()));
        // the echo picks up at once
        let _ = events.try_send(LegEvent::Answered);
        tokio::spawn(media_io::drive_leg(
            leg,
            socket,
            peer,
            rx,
            events,
            Arc::clone(&self.metrics),
        ));
        Ok(CallHandle {
            answer,
            commands: tx,
        })
    }
}

/// A trunk's `video:` codecs as the media crate names them.
pub(crate) fn video_codecs(codecs: &[dialplans::VideoCodec]) -> Vec<VideoCodec> {
    codecs
        .iter()
        .map(|c| match c {
            dialplans::VideoCodec::Vp8 => VideoCodec::Vp8,
            dialplans::VideoCodec::H264 => VideoCodec::H264,
        })
        .collect()
}

/// A trunk's `codecs:` as the media crate names them.
pub(crate) fn audio_codecs(codecs: &[dialplans::AudioCodec]) -> Vec<Codec> {
    codecs
        .iter()
        .map(|c| match c {
            dialplans::AudioCodec::Opus => Codec::Opus,
            dialplans::AudioCodec::G722 => Codec::G722,
            dialplans::AudioCodec::Pcmu => Codec::Pcmu,
            dialplans::AudioCodec::Pcma => Codec::Pcma,
        })
        .collect()
}
