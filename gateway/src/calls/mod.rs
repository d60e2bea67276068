//! The call registry: turns `call {to, sdp}` into a running call, and knows the targets.
//!
//! Today the only target is the built-in `echo`; the SIP call control (dial
//! plans, trunks) will add targets here. A started call is a [`CallHandle`]
//! owned by the WebSocket session: dropping the handle closes the command
//! channel, which ends the media task, so a vanished session cannot leak a call.

mod echo;

pub use echo::Echo;

use std::sync::Arc;

use media::webrtc::{WebRtcConfig, WebRtcError, WebRtcLeg};
use tokio::sync::mpsc;

use crate::media_io::{self, LegCommand, LegEvent, MediaSockets};
use crate::metrics::Metrics;

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
}

impl CallError {
    /// The short reason token and SIP-like code for the `ended` frame.
    pub fn reason_and_code(&self) -> (&'static str, u16) {
        match self {
            CallError::NotFound(_) => ("not-found", 404),
            CallError::BadOffer(_) => ("not-acceptable", 488),
            CallError::NoMediaPort(_) => ("unavailable", 503),
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
#[derive(Debug)]
pub struct CallRegistry {
    sockets: MediaSockets,
    metrics: Arc<Metrics>,
}

impl CallRegistry {
    /// A registry binding media sockets through `sockets`.
    pub fn new(sockets: MediaSockets, metrics: Arc<Metrics>) -> Self {
        CallRegistry { sockets, metrics }
    }

    /// Places a call to `to` with the caller's SDP offer; events arrive on `events`.
    ///
    /// # Errors
    /// [`CallError`] when the name is unknown, the offer unusable or no port is free.
    pub async fn start_call(
        &self,
        to: &str,
        offer_sdp: &str,
        events: mpsc::Sender<LegEvent>,
    ) -> Result<CallHandle, CallError> {
        if to.trim() != ECHO {
            return Err(CallError::NotFound(to.trim().to_owned()));
        }
        let socket = self.sockets.bind().await.map_err(CallError::NoMediaPort)?;
        let config = WebRtcConfig {
            local_addrs: vec![socket.local],
        };
        let now = tokio::time::Instant::now().into_std();
        let (leg, answer) = WebRtcLeg::accept_offer(now, &config, offer_sdp)?;
        let (tx, rx) = mpsc::channel(64);
        let peer = Box::new(Echo::new(rand::random()));
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
