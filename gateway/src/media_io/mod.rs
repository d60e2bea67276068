//! The tokio shell around `media::webrtc::WebRtcLeg`: one task and one UDP socket per call.
//!
//! The task owns the socket and the leg, and does nothing but move bytes and
//! time into the sans-IO leg and its output back out (the quinn
//! `ConnectionDriver` shape): drain `poll_output` until `Timeout`, then wait
//! for a datagram, a command or the deadline. What to do with received audio
//! is the [`MediaPeer`]'s business (the echo target today, the SIP bridge
//! later). The task ends when the leg fails or closes, or when its command
//! channel closes (hangup, or the WebSocket session went away); its gauge
//! guards drop with it, so `/metrics` shows leaks.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use media::webrtc::{Event, OpusFrame, Output, Receive, WebRtcLeg};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::PortRange;
use crate::metrics::{Gauge, GaugeGuard, Metrics};

/// The other side of a media bridge: gets the caller's audio, may answer with audio.
pub trait MediaPeer: Send + 'static {
    /// Handles one received Opus frame; returns a frame to send back as `(rtp_time, payload)`.
    fn on_opus(&mut self, now: Instant, frame: &OpusFrame) -> Option<(u64, Arc<[u8]>)>;
}

/// What the call's owner can tell its media task.
#[derive(Debug)]
pub enum LegCommand {
    /// A trickled remote ICE candidate line.
    Candidate(String),
    /// DTMF digits to play towards the peer.
    Dtmf(String),
    /// End the call.
    Hangup,
}

/// What the media task reports to the call's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// ICE and DTLS are up.
    Connected,
    /// The callee is being alerted (SIP 180/183); `early` when the PBX's
    /// early media (ringback, announcements) is being played to the caller.
    Ringing {
        /// Early media flows.
        early: bool,
    },
    /// The callee picked up.
    Answered,
    /// The callee put the call on hold.
    Held,
    /// The callee resumed the call.
    Resumed,
    /// The callee pressed a key (RFC 4733, SIP INFO or in-band), once per press.
    Digit(char),
    /// A command was refused (for example an unparseable candidate).
    Refused {
        /// Stable error code.
        code: &'static str,
        /// Human-readable message.
        message: String,
    },
    /// The task ended; always the last event.
    Ended {
        /// Short reason token.
        reason: &'static str,
        /// SIP-like status code.
        code: u16,
    },
}

/// Binds UDP media sockets on the media IP within the configured port range.
#[derive(Debug)]
pub struct MediaSockets {
    ip: IpAddr,
    range: PortRange,
    /// Round-robin cursor so a just-closed port is not reused at once.
    next: AtomicU32,
    metrics: Arc<Metrics>,
    /// The public IP of a gateway behind 1:1 NAT (`--external-ip`), for srflx candidates.
    external_ip: Option<IpAddr>,
}

/// A bound media socket and the gauge that counts it.
#[derive(Debug)]
pub struct MediaSocket {
    /// The socket.
    pub socket: UdpSocket,
    /// Its local address (our ICE host candidate).
    pub local: SocketAddr,
    _gauge: GaugeGuard,
}

impl MediaSockets {
    /// A binder for `ip` and `range` (`0-0` lets the OS choose ports).
    pub fn new(ip: IpAddr, range: PortRange, metrics: Arc<Metrics>) -> Self {
        MediaSockets {
            ip,
            range,
            next: AtomicU32::new(0),
            metrics,
            external_ip: None,
        }
    }

    /// The same binder, announcing `ip` as the public address of its sockets (1:1 NAT).
    pub fn with_external_ip(mut self, ip: Option<IpAddr>) -> Self {
        self.external_ip = ip;
        self
    }

    /// The public IP announced as a server-reflexive candidate, if configured.
    pub fn external_ip(&self) -> Option<IpAddr> {
        self.external_ip
    }

    /// Binds the next free port of the range.
    ///
    /// # Errors
    /// The last bind error when every port of the range is taken.
    pub async fn bind(&self) -> io::Result<MediaSocket> {
        let span = u32::from(self.range.last - self.range.first) + 1;
        let mut last_err = io::Error::new(io::ErrorKind::AddrInUse, "no free media port");
        for _ in 0..span {
            let offset = self.next.fetch_add(1, Ordering::Relaxed) % span;
            // offset < span <= 65536 - first, so the sum fits a u16
            let port = self.range.first.saturating_add(offset as u16);
            match UdpSocket::bind(SocketAddr::new(self.ip, port)).await {
                Ok(socket) => {
                    let local = socket.local_addr()?;
                    return Ok(MediaSocket {
                        socket,
                        local,
                        _gauge: self.metrics.hold(Gauge::MediaSockets),
                    });
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }
}

/// Drives one WebRTC leg until it ends. Spawn it; it owns everything it needs.
#[must_use = "the leg only runs while this future is polled (spawn it)"]
pub async fn drive_leg(
    mut leg: WebRtcLeg,
    socket: MediaSocket,
    mut peer: Box<dyn MediaPeer>,
    mut commands: mpsc::Receiver<LegCommand>,
    events: mpsc::Sender<LegEvent>,
    metrics: Arc<Metrics>,
) {
    let _call_gauge = metrics.hold(Gauge::ActiveCalls);
    let mut buf = vec![0u8; 2048];
    let (reason, code) = loop {
        let deadline = match drain(&mut leg, &socket, peer.as_mut(), &events).await {
            Ok(Some(t)) => t,
            Ok(None) => break ("ice-failed", 408),
            Err(Ended::Closed) => break ("remote-closed", 200),
            Err(Ended::Error) => break ("media-error", 500),
        };
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(LegCommand::Candidate(c)) => {
                    if let Err(e) = leg.add_remote_candidate(&c) {
                        debug!(cause = %e, "remote candidate refused");
                        let _ = events.send(LegEvent::Refused { code: "bad-candidate", message: e.to_string() }).await;
                    }
                }
                Some(LegCommand::Dtmf(digits)) => {
                    // the echo target has no use for DTMF; the SIP bridge will forward it
                    info!(digits = %digits, "dtmf from caller");
                }
                Some(LegCommand::Hangup) | None => {
                    leg.close();
                    let _ = drain(&mut leg, &socket, peer.as_mut(), &events).await;
                    break ("hangup", 200);
                }
            },
            r = socket.socket.recv_from(&mut buf) => match r {
                Ok((n, source)) => {
                    let input = Receive { source, destination: socket.local, contents: &buf[..n] };
                    if let Err(e) = leg.handle_input(now(), input) {
                        debug!(cause = %e, %source, "datagram dropped");
                    }
                }
                Err(e) => {
                    // ICMP port unreachable shows up here on Linux; it is not fatal
                    debug!(cause = %e, "media socket receive error");
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                if let Err(e) = leg.handle_timeout(now()) {
                    warn!(cause = %e, "webrtc leg timeout failed");
                    break ("media-error", 500);
                }
            }
        }
    };
    info!(reason, code, "call media ended");
    let _ = events.send(LegEvent::Ended { reason, code }).await;
}

/// How a drain ended the leg.
enum Ended {
    /// The peer closed DTLS.
    Closed,
    /// str0m failed.
    Error,
}

/// Drains the leg's output: sends transmits, handles events; returns the next deadline.
///
/// `Ok(None)` means the leg failed ICE.
async fn drain(
    leg: &mut WebRtcLeg,
    socket: &MediaSocket,
    peer: &mut dyn MediaPeer,
    events: &mpsc::Sender<LegEvent>,
) -> Result<Option<Instant>, Ended> {
    loop {
        let out = leg.poll_output().map_err(|e| {
            warn!(cause = %e, "webrtc leg failed");
            Ended::Error
        })?;
        match out {
            Output::Timeout(t) => return Ok(Some(t)),
            Output::Transmit(t) => {
                if let Err(e) = socket.socket.send_to(&t.contents, t.destination).await {
                    debug!(cause = %e, dest = %t.destination, "media send failed");
                }
            }
            Output::Event(Event::Connected) => {
                info!("webrtc leg connected");
                let _ = events.send(LegEvent::Connected).await;
            }
            Output::Event(Event::Opus(frame)) => {
                let now = now();
                if let Some((rtp_time, payload)) = peer.on_opus(now, &frame)
                    && let Err(e) = leg.write_opus(now, rtp_time, &payload)
                {
                    debug!(cause = %e, "opus write dropped");
                }
            }
            Output::Event(Event::Failed) => return Ok(None),
            Output::Event(Event::Closed) => return Err(Ended::Closed),
            Output::Event(_) => {}
        }
    }
}

/// The shell's clock; the only place media time is read.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
