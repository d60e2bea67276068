//! A call to a company's PBX: the back-to-back user agent joining the
//! caller's WebRTC leg and a SIP leg on the company's trunk.
//!
//! One task per call owns everything: the WebRTC leg and its UDP socket, the
//! RTP socket towards the PBX, the [`Bridge`] that transcodes between them,
//! and the SIP legs (one per extension rung; a simultaneous ring group forks).
//! Like `media_io::drive_leg` it is a thin shell: it moves datagrams, time,
//! client commands and dialog events into the sans-IO parts and drains their
//! output. The call goes through three stages:
//!
//! 1. **Ringing**: INVITEs are out (the caller's WebRTC leg is already up, so
//!    media starts the moment the callee answers). 180/183 become `ringing`;
//!    a final failure of every fork ends the call with the clearest status
//!    (busy beats unavailable); the ring timeout cancels the forks. When the
//!    trunk itself fails (every fork got 503 or 408 or no answer, or the ring
//!    timeout passed without the PBX ringing) and the route has failover
//!    trunks, the forks start again on the next trunk instead, and the
//!    failed trunk's `namecall_trunk_failovers_total` counts it.
//! 2. **Up**: the first 2xx wins (other forks are cancelled, a late 2xx gets
//!    BYE); its SDP answer configures the bridge's RTP leg. Re-INVITEs from
//!    the PBX (hold: sendonly/inactive/`c=0.0.0.0`, resume) are answered on
//!    the SIP leg alone: the WebRTC leg and its ICE are never touched, and on
//!    resume the RTP leg re-targets and re-latches so audio flows both ways.
//! 3. **Ending**: the caller's hangup (CANCEL before answer, BYE after),
//!    the PBX's BYE, or a failed WebRTC leg ends both legs. Dropping the task
//!    closes both sockets; its gauge returns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dialplans::{DtmfMode, Strategy};
use media::bridge::{Bridge, BridgeConfig, BridgeEvent, MediaFrame, PbxDtmf, WebrtcOutput};
use media::codec::Codec;
use media::dtmf::{DigitPlayer, InfoDtmf};
use media::keyframe::KeyframeForwarder;
use media::rtp::TsExtender;
use media::rtp_leg::RtpLegConfig;
use media::sdp::{Direction, NegotiatedAudio, RtpSdp, SessionDescription, pbx_video};
use media::video::{VideoLeg, VideoLegConfig, VideoLegEvent};
use media::webrtc::{Event, Output, Receive, WebRtcLeg};
use sip_trunk::dialog::{Body, DialogEvent, TerminatedReason};
use sip_trunk::resolve::TargetList;
use sip_trunk::ua::CallHandle as SipCall;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::route::{TrunkLegs, TrunkRoute, reason_of};
use crate::media_io::{LegCommand, LegEvent, MediaSocket};
use crate::metrics::{Gauge, Metrics};
use crate::sip::Sip;

/// The key-press duration announced in SIP INFO DTMF (`Duration=160`, as desk phones send).
const INFO_DTMF_MS: u32 = 160;

/// How long we wait for the SIP side to confirm a CANCEL or BYE before leaving.
const TEARDOWN_GRACE: Duration = Duration::from_secs(2);

/// Everything a trunk call needs; [`TrunkCall::run`] consumes it.
pub struct TrunkCall {
    /// The caller's leg, already answered.
    pub leg: WebRtcLeg,
    /// Its socket.
    pub webrtc_socket: MediaSocket,
    /// The RTP socket towards the PBX (its address is in our SDP offer).
    pub rtp_socket: MediaSocket,
    /// The video RTP socket towards the PBX, when the caller sends video and the
    /// trunk allows it (its address is in our SDP offer's `m=video`).
    pub video_socket: Option<MediaSocket>,
    /// The SIP task.
    pub sip: Sip,
    /// Where and whom to ring.
    pub route: TrunkRoute,
    /// Client commands.
    pub commands: mpsc::Receiver<LegCommand>,
    /// Progress for the client.
    pub events: mpsc::Sender<LegEvent>,
    /// Gauges.
    pub metrics: Arc<Metrics>,
}

/// A call a messenger user accepted from a desk phone: both legs are already
/// answered; [`AnsweredCall::run`] bridges them until either side hangs up.
pub struct AnsweredCall {
    /// The accepting browser's leg.
    pub leg: WebRtcLeg,
    /// Its socket.
    pub webrtc_socket: MediaSocket,
    /// The RTP socket our SDP answer named.
    pub rtp_socket: MediaSocket,
    /// The video socket our SDP answer named, when the call has video.
    pub video_socket: Option<MediaSocket>,
    /// The SIP task.
    pub sip: Sip,
    /// The PBX's leg (we sent 200).
    pub call: SipCall,
    /// Its dialog events.
    pub dialog: mpsc::UnboundedReceiver<DialogEvent>,
    /// Our negotiator (answers hold and resume re-INVITEs).
    pub sdp: RtpSdp,
    /// The PBX's offer (its video m-line configures video passthrough).
    pub pbx_offer: SessionDescription,
    /// What the PBX's offer and our answer agreed.
    pub negotiated: NegotiatedAudio,
    /// The calling trunk's DTMF mode (how the user's keys reach the PBX).
    pub dtmf: DtmfMode,
    /// The calling trunk's audio codecs (re-INVITEs may move the call to another).
    pub codecs: Vec<Codec>,
    /// Client commands.
    pub commands: mpsc::Receiver<LegCommand>,
    /// Progress for the client.
    pub events: mpsc::Sender<LegEvent>,
    /// Gauges.
    pub metrics: Arc<Metrics>,
}

impl AnsweredCall {
    /// Bridges the two legs until the call ends. Spawn it.
    pub async fn run(self) {
        let AnsweredCall {
            leg,
            webrtc_socket,
            rtp_socket,
            video_socket,
            sip,
            call,
            mut dialog,
            sdp,
            pbx_offer,
            negotiated,
            dtmf: dtmf_mode,
            codecs,
            mut commands,
            events,
            metrics,
        } = self;
        let _gauge = metrics.hold(Gauge::ActiveCalls);
        let (dialog_tx, dialog_rx) = mpsc::unbounded_channel();
        let fwd = dialog_tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = dialog.recv().await {
                if fwd.send((0, ev)).is_err() {
                    break;
                }
            }
        });
        let now = Instant::now();
        let mut running = Running {
            leg,
            wsock: webrtc_socket,
            rsock: rtp_socket,
            vsock: video_socket,
            video: None,
            video_out_ts: TsExtender::default(),
            video_gap_request: None,
            sip,
            sdp,
            offer: Body {
                content_type: "application/sdp".into(),
                data: Vec::new().into(),
            },
            trunk_key: String::new(),
            targets: TargetList::new(Vec::new()),
            configs: Vec::new(),
            alternates: VecDeque::new(),
            first_fork: 0,
            current_alerted: true,
            strategy: Strategy::Simultaneous,
            ring_timeout: Duration::ZERO,
            forks: vec![Fork {
                call,
                state: ForkState::Up,
                deadline: None,
            }],
            dialog_tx,
            dialog_rx,
            events,
            bridge: None,
            negotiated: None,
            held: false,
            winner: Some(0),
            ring_deadline: now,
            dtmf: DigitPlayer::new(48_000, rand::random()),
            out_ts: TsExtender::default(),
            ringing_sent: true,
            offered: None,
            early: None,
            ending: None,
            dtmf_mode,
            pbx_codecs: codecs,
        };
        match build_bridge(&negotiated, dtmf_mode) {
            Ok(b) => {
                running.bridge = Some(b);
                running.held = negotiated.remote_hold();
                running.negotiated = Some(negotiated);
                if running.vsock.is_some() {
                    running.setup_video(&pbx_offer);
                }
                let _ = running.events.send(LegEvent::Answered).await;
            }
            Err(e) => {
                warn!(cause = %e, "cannot build the media bridge");
                running.end(("media-error", 500));
            }
        }
        let (reason, code) = running.run(&mut commands).await;
        running.record_media(&metrics);
        info!(reason, code, "call from the pbx ended");
        let _ = running.events.send(LegEvent::Ended { reason, code }).await;
    }
}

/// The codecs we offer to (or accept from) the PBX under a trunk's DTMF mode:
/// `inband` leaves telephone-event out so the PBX listens for tones.
pub(crate) fn pbx_codecs(mode: DtmfMode, audio: &[Codec]) -> Vec<Codec> {
    let mut v: Vec<Codec> = audio
        .iter()
        .copied()
        .filter(|c| *c != Codec::TelephoneEvent)
        .collect();
    if mode != DtmfMode::Inband {
        v.push(Codec::TelephoneEvent);
    }
    v
}

/// Whether two negotiations of the PBX leg need different bridges (anything but the
/// address and the direction, which the running bridge follows).
fn media_changed(a: &NegotiatedAudio, b: &NegotiatedAudio) -> bool {
    (a.codec, a.pt, a.ptime, a.dtmf_pt, a.dtmf_clock, a.rtcp_mux)
        != (b.codec, b.pt, b.ptime, b.dtmf_pt, b.dtmf_clock, b.rtcp_mux)
}

/// The bridge for what the SDP exchange with the PBX agreed.
fn build_bridge(
    neg: &NegotiatedAudio,
    mode: DtmfMode,
) -> Result<Bridge, media::bridge::BridgeError> {
    let mut rtp = RtpLegConfig::new(rand::random(), neg.codec, neg.pt, neg.remote_addr);
    rtp.dtmf_pt = neg.dtmf_pt;
    rtp.dtmf_clock = neg.dtmf_clock;
    rtp.ptime = neg.ptime;
    rtp.rtcp_mux = neg.rtcp_mux;
    let mut cfg = BridgeConfig::new(rtp);
    cfg.pbx_dtmf = match mode {
        DtmfMode::Rfc4733 => PbxDtmf::Rfc4733,
        DtmfMode::Inband => PbxDtmf::Inband,
        // the controller sends each reported press as SIP INFO
        DtmfMode::Info => PbxDtmf::Signalled,
    };
    // str0m cannot write telephone-events towards the browser; PBX digits reach the
    // client as `dtmf` frames instead
    cfg.webrtc_dtmf_pt = None;
    cfg.webrtc_initial_ts = rand::random();
    let bridge = Bridge::new(Instant::now(), cfg)?;
    info!(codec = ?neg.codec, passthrough = bridge.is_passthrough(), "media bridge");
    Ok(bridge)
}

/// One SIP leg of the call (a fork, when a group rings several extensions).
#[derive(Debug)]
struct Fork {
    call: SipCall,
    state: ForkState,
    /// Sequential groups: when this member's ring time is up.
    deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    Trying,
    Ringing,
    Up,
    /// Cancel or BYE sent; waiting for it to end.
    Leaving,
    Done(Option<u16>),
}

impl ForkState {
    fn is_open(self) -> bool {
        matches!(self, ForkState::Trying | ForkState::Ringing)
    }
}

/// How the call ended, for the client.
type Ending = (&'static str, u16);

/// The running call.
struct Running {
    leg: WebRtcLeg,
    wsock: MediaSocket,
    rsock: MediaSocket,
    /// The video socket towards the PBX (offered when the caller sends video).
    vsock: Option<MediaSocket>,
    /// Video passthrough towards the PBX, once its SDP accepted our video.
    video: Option<VideoLeg>,
    /// Extends the PBX's 32-bit video timestamps for str0m.
    video_out_ts: TsExtender,
    /// When we last asked the browser for a keyframe after its video lost packets.
    video_gap_request: Option<Instant>,
    sip: Sip,
    sdp: RtpSdp,
    offer: Body,
    /// The trunk the current forks ring on (`tenant/trunk`).
    trunk_key: String,
    /// Its addresses (RFC 3263 order): each fork moves down them on 503 or timeout.
    targets: TargetList,
    /// The INVITEs of the current trunk, one per extension.
    configs: Vec<sip_trunk::dialog::CallConfig>,
    /// Trunks left to try when the current one fails.
    alternates: VecDeque<TrunkLegs>,
    /// Index in `forks` of the current trunk's first fork; earlier forks
    /// belong to trunks already given up (they end on their own).
    first_fork: usize,
    /// A fork of the current trunk rang (or answered): the trunk works, so
    /// its failures are the callee's and are not retried elsewhere.
    current_alerted: bool,
    strategy: Strategy,
    ring_timeout: Duration,
    forks: Vec<Fork>,
    /// Dialog events of every fork, tagged with the fork's index.
    dialog_tx: mpsc::UnboundedSender<(usize, DialogEvent)>,
    dialog_rx: mpsc::UnboundedReceiver<(usize, DialogEvent)>,
    events: mpsc::Sender<LegEvent>,
    bridge: Option<Bridge>,
    negotiated: Option<NegotiatedAudio>,
    /// The PBX put us on hold: nothing is sent its way.
    held: bool,
    /// The fork that answered.
    winner: Option<usize>,
    ring_deadline: Instant,
    dtmf: DigitPlayer,
    /// Extends the bridge's 32-bit WebRTC timestamps for str0m.
    out_ts: TsExtender,
    ringing_sent: bool,
    /// The negotiator as it was right after our offer: every fork's answer
    /// (early or final) is applied to a copy of it.
    offered: Option<RtpSdp>,
    /// The fork whose early media (183 with SDP) the bridge carries.
    early: Option<usize>,
    /// Set when the call is over; the loop then waits for the SIP side to settle.
    ending: Option<(Ending, Instant)>,
    /// How the caller's digits reach the PBX (the trunk's `dtmf:`).
    dtmf_mode: DtmfMode,
    /// The audio codecs offered to the PBX (the trunk's `codecs:`).
    pbx_codecs: Vec<Codec>,
}

impl TrunkCall {
    /// Places the call and runs it to the end. Spawn it.
    pub async fn run(self) {
        let TrunkCall {
            leg,
            webrtc_socket,
            rtp_socket,
            video_socket,
            sip,
            route,
            mut commands,
            events,
            metrics,
        } = self;
        let _gauge = metrics.hold(Gauge::ActiveCalls);
        let mut trunks: VecDeque<TrunkLegs> = route.trunks.into();
        let Some(first) = trunks.pop_front() else {
            warn!("a trunk route without trunks");
            let _ = events
                .send(LegEvent::Ended {
                    reason: "unavailable",
                    code: 503,
                })
                .await;
            return;
        };
        let mut sdp = RtpSdp::new(rtp_socket.local, rand::random::<u32>().into());
        if let (Some(vs), Some(m)) = (&video_socket, leg.video_media())
            && leg.video_codec().is_some_and(|c| first.video.contains(&c))
        {
            // the PBX is offered the codec the browser sends, on our video port
            sdp.set_video(vs.local.port(), m);
        }
        let offer = pbx_offer(&mut sdp, first.dtmf, &first.codecs);
        let (dialog_tx, dialog_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let mut call = Running {
            leg,
            wsock: webrtc_socket,
            rsock: rtp_socket,
            vsock: video_socket,
            video: None,
            video_out_ts: TsExtender::default(),
            video_gap_request: None,
            sip,
            sdp,
            offer,
            trunk_key: first.trunk_key,
            targets: first.targets,
            configs: first.legs,
            alternates: trunks,
            first_fork: 0,
            current_alerted: false,
            strategy: route.strategy,
            ring_timeout: route.ring_timeout,
            forks: Vec::new(),
            dialog_tx,
            dialog_rx,
            events,
            bridge: None,
            negotiated: None,
            held: false,
            winner: None,
            ring_deadline: now + route.ring_timeout,
            dtmf: DigitPlayer::new(48_000, rand::random()),
            out_ts: TsExtender::default(),
            ringing_sent: false,
            offered: None,
            early: None,
            ending: None,
            dtmf_mode: first.dtmf,
            pbx_codecs: first.codecs,
        };
        call.offered = Some(call.sdp.clone());
        info!(trunk = %call.trunk_key, targets = ?call.targets.as_slice(), forks = call.configs.len(), failover = call.alternates.len(), "calling the pbx");
        call.start_trunk().await;
        let (reason, code) = call.run(&mut commands).await;
        call.record_media(&metrics);
        info!(reason, code, "trunk call ended");
        let _ = call.events.send(LegEvent::Ended { reason, code }).await;
    }
}

impl Running {
    /// Rings the current trunk: every extension at once, or the first one.
    async fn start_trunk(&mut self) {
        let first = match self.strategy {
            Strategy::Sequential => 1,
            Strategy::Simultaneous => self.configs.len(),
        };
        for i in 0..first {
            if let Err(e) = self.start_fork(i).await {
                warn!(cause = %e, "cannot place the sip call");
                self.end(("unavailable", 503));
            }
        }
    }

    /// The forks of the current trunk.
    fn current(&self) -> &[Fork] {
        self.forks.get(self.first_fork..).unwrap_or_default()
    }

    /// Whether the current trunk failed as a trunk: nothing rang, and every
    /// fork ended with 503, 408 or without any answer.
    fn trunk_failed(&self) -> bool {
        !self.current_alerted
            && self.current().len() == self.configs.len()
            && self.current().iter().all(|f| {
                matches!(
                    f.state,
                    ForkState::Done(None | Some(503) | Some(408)) | ForkState::Leaving
                )
            })
    }

    /// Gives up on the current trunk and rings the next one; false when there is none.
    async fn fail_over(&mut self, why: &'static str) -> bool {
        if self.winner.is_some() || self.ending.is_some() {
            return false;
        }
        let Some(next) = self.alternates.pop_front() else {
            return false;
        };
        warn!(from = %self.trunk_key, to = %next.trunk_key, why, "trunk failed; trying the next trunk");
        self.sip.trunks.record_failover(&self.trunk_key);
        // whatever still rings on the old trunk is released; it ends on its own
        for i in self.first_fork..self.forks.len() {
            if self.forks[i].state.is_open() {
                self.leave_fork(i).await;
            }
        }
        self.first_fork = self.forks.len();
        self.trunk_key = next.trunk_key;
        self.targets = next.targets;
        self.configs = next.legs;
        // video only to a trunk that passes the codec the browser sends
        let next_video = self
            .leg
            .video_codec()
            .is_some_and(|c| next.video.contains(&c));
        let video_changed = next_video != self.sdp.has_video();
        if video_changed {
            match (&self.vsock, self.leg.video_media()) {
                (Some(vs), Some(m)) if next_video => self.sdp.set_video(vs.local.port(), m),
                _ => self.sdp.clear_video(),
            }
        }
        if next.dtmf != self.dtmf_mode || next.codecs != self.pbx_codecs || video_changed {
            // `inband` offers no telephone-event: the offer follows the trunk
            self.dtmf_mode = next.dtmf;
            self.pbx_codecs = next.codecs;
            self.offer = pbx_offer(&mut self.sdp, next.dtmf, &self.pbx_codecs);
            self.offered = Some(self.sdp.clone());
        }
        self.current_alerted = false;
        self.ring_deadline = Instant::now() + self.ring_timeout;
        self.start_trunk().await;
        true
    }

    async fn start_fork(&mut self, i: usize) -> Result<(), crate::sip::SipError> {
        let Some(cfg) = self.configs.get(i).cloned() else {
            return Ok(());
        };
        let (call, mut rx) = self
            .sip
            .invite_targets(cfg, Some(self.offer.clone()), self.targets.clone())
            .await?;
        let deadline = match self.strategy {
            Strategy::Sequential => Some(Instant::now() + self.ring_timeout),
            Strategy::Simultaneous => None,
        };
        self.forks.push(Fork {
            call,
            state: ForkState::Trying,
            deadline,
        });
        let idx = self.forks.len() - 1;
        let tx = self.dialog_tx.clone();
        // the SIP task drops its sender when the leg terminates, which ends this forwarder
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tx.send((idx, ev)).is_err() {
                    break;
                }
            }
        });
        Ok(())
    }

    async fn run(&mut self, commands: &mut mpsc::Receiver<LegCommand>) -> Ending {
        let mut wbuf = vec![0u8; 2048];
        let mut rbuf = vec![0u8; 2048];
        let mut vbuf = vec![0u8; 2048];
        let mut commands_open = true;
        loop {
            let leg_deadline = match self.drain().await {
                Ok(t) => t,
                Err(ending) => {
                    self.end(ending);
                    Instant::now() + TEARDOWN_GRACE
                }
            };
            if let Some((ending, until)) = self.ending
                && (self
                    .forks
                    .iter()
                    .all(|f| matches!(f.state, ForkState::Done(_)))
                    || Instant::now() >= until)
            {
                return ending;
            }
            let deadline = self.next_deadline(leg_deadline);
            tokio::select! {
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(LegCommand::Candidate(c)) => {
                        if let Err(e) = self.leg.add_remote_candidate(&c) {
                            debug!(cause = %e, "remote candidate refused");
                            let _ = self.events.send(LegEvent::Refused { code: "bad-candidate", message: e.to_string() }).await;
                        }
                    }
                    Some(LegCommand::Dtmf(digits)) => {
                        if let Err(e) = self.dtmf.push(&digits) {
                            let _ = self.events.send(LegEvent::Refused { code: "invalid", message: e.to_string() }).await;
                        }
                    }
                    Some(LegCommand::Hangup) => {
                        info!("the caller hung up");
                        self.end(("hangup", 200));
                    }
                    None => {
                        info!("the caller's session went away");
                        commands_open = false;
                        self.end(("hangup", 200));
                    }
                },
                r = self.wsock.socket.recv_from(&mut wbuf) => match r {
                    Ok((n, source)) => {
                        let input = Receive { source, destination: self.wsock.local, contents: &wbuf[..n] };
                        if let Err(e) = self.leg.handle_input(Instant::now(), input) {
                            debug!(cause = %e, %source, "webrtc datagram dropped");
                        }
                    }
                    Err(e) => debug!(cause = %e, "webrtc socket receive error"),
                },
                r = self.rsock.socket.recv_from(&mut rbuf) => match r {
                    Ok((n, source)) => {
                        if let Some(b) = self.bridge.as_mut() {
                            b.handle_rtp_input(Instant::now(), source, rbuf[..n].to_vec());
                        }
                    }
                    Err(e) => debug!(cause = %e, "rtp socket receive error"),
                },
                r = recv_opt(self.vsock.as_ref(), &mut vbuf) => match r {
                    Ok((n, source)) => {
                        if let Some(v) = self.video.as_mut() {
                            v.handle_input(Instant::now(), source, &vbuf[..n]);
                        }
                    }
                    Err(e) => debug!(cause = %e, "video socket receive error"),
                },
                Some((idx, ev)) = self.dialog_rx.recv() => self.on_dialog(idx, ev).await,
                _ = tokio::time::sleep_until(deadline.into()) => self.on_timeout().await,
            }
        }
    }

    /// The earliest thing the call waits for.
    fn next_deadline(&self, leg: Instant) -> Instant {
        let mut d = leg;
        if let Some(t) = self.bridge.as_ref().and_then(Bridge::poll_timeout) {
            d = d.min(t);
        }
        if let Some(v) = &self.video {
            d = d.min(v.poll_timeout());
        }
        // digits wait for the answer (an early-media bridge does not take them)
        if self.bridge.is_some()
            && self.winner.is_some()
            && let Some(t) = self.dtmf.poll_timeout()
        {
            d = d.min(t);
        }
        if self.winner.is_none() && self.ending.is_none() {
            d = d.min(self.ring_deadline);
            for f in &self.forks {
                if let (Some(t), true) = (f.deadline, f.state.is_open()) {
                    d = d.min(t);
                }
            }
        }
        if let Some((_, until)) = self.ending {
            d = d.min(until);
        }
        d
    }

    async fn on_timeout(&mut self) {
        let now = Instant::now();
        if let Err(e) = self.leg.handle_timeout(now) {
            warn!(cause = %e, "webrtc leg timeout failed");
            self.end(("media-error", 500));
        }
        if let Some(b) = self.bridge.as_mut() {
            if self.winner.is_some() {
                while let Some((ts, payload)) = self.dtmf.poll(now) {
                    b.handle_webrtc_dtmf(now, ts, &payload);
                }
            }
            b.handle_timeout(now);
        }
        if let Some(v) = self.video.as_mut() {
            v.handle_timeout(now);
        }
        if self.winner.is_some() || self.ending.is_some() {
            return;
        }
        if now >= self.ring_deadline {
            if !self.current_alerted && self.fail_over("no answer in time").await {
                return;
            }
            info!("nobody answered in time");
            self.end(("no-answer", 408));
            return;
        }
        // sequential groups: a member whose ring time is up is cancelled; the next one rings
        let expired: Vec<usize> = self
            .forks
            .iter()
            .enumerate()
            .filter(|(_, f)| f.state.is_open() && f.deadline.is_some_and(|t| now >= t))
            .map(|(i, _)| i)
            .collect();
        for i in expired {
            self.leave_fork(i).await;
            self.next_member().await;
        }
    }

    /// Sequential groups: rings the next member, if any.
    async fn next_member(&mut self) {
        if self.strategy != Strategy::Sequential || self.current().len() >= self.configs.len() {
            return;
        }
        let next = self.current().len();
        if let Err(e) = self.start_fork(next).await {
            warn!(cause = %e, "cannot ring the next member");
        }
    }

    async fn on_dialog(&mut self, idx: usize, ev: DialogEvent) {
        match ev {
            DialogEvent::Ringing { status, body } => {
                if let Some(f) = self.forks.get_mut(idx)
                    && f.state == ForkState::Trying
                {
                    f.state = ForkState::Ringing;
                }
                if idx >= self.first_fork {
                    self.current_alerted = true;
                }
                if self.winner.is_some() || self.ending.is_some() || idx < self.first_fork {
                    // a given-up trunk's fork rings late: its CANCEL goes out now
                    return;
                }
                let early = self.early.is_none()
                    && body
                        .as_ref()
                        .is_some_and(|b| self.start_early_media(idx, b));
                if !self.ringing_sent || early {
                    debug!(status, early, "callee alerted");
                    self.ringing_sent = true;
                    let _ = self.events.send(LegEvent::Ringing { early }).await;
                }
            }
            DialogEvent::Answered { body } => self.on_answered(idx, body).await,
            DialogEvent::TargetRefresh { offer } => self.on_refresh(idx, offer).await,
            DialogEvent::RefreshAnswered { body } => {
                // the PBX answered the offer we made in our 200 to its offer-less re-INVITE
                if let Some(sd) = body.as_ref().and_then(parse_sdp) {
                    match self.sdp.process_answer(&sd) {
                        Ok(neg) => {
                            self.renegotiated(neg);
                            self.setup_video(&sd);
                        }
                        Err(e) => debug!(cause = %e, "unusable refresh answer"),
                    }
                }
            }
            DialogEvent::Terminated { reason } => self.on_terminated(idx, reason).await,
            DialogEvent::Info { body } => {
                let Some(body) = body else {
                    return;
                };
                match InfoDtmf::parse(&body.content_type, &body.data) {
                    Ok(press) => {
                        info!(digit = %press.digit, "dtmf from the pbx (sip info)");
                        let _ = self.events.send(LegEvent::Digit(press.digit)).await;
                    }
                    Err(e) => debug!(cause = %e, "sip info without a dtmf key"),
                }
            }
            other => debug!(?other, "dialog event"),
        }
    }

    async fn on_answered(&mut self, idx: usize, body: Option<Body>) {
        if self.winner == Some(idx) {
            // the ACK to the 200 we sent (a call from the PBX): the dialog is confirmed
            debug!("pbx acknowledged our answer");
            return;
        }
        if self.winner.is_some() || self.ending.is_some() || idx < self.first_fork {
            // another fork won (or the caller hung up, or this fork's trunk was
            // given up and the call moved on) while this one answered: release it
            if let Some(f) = self.forks.get_mut(idx) {
                f.state = ForkState::Leaving;
                let call = f.call;
                let _ = self.sip.with_call(call, |c, _| drop(c.hangup())).await;
            }
            return;
        }
        let sd = body.as_ref().and_then(parse_sdp);
        let neg = sd
            .as_ref()
            .ok_or("no SDP in the answer")
            .and_then(|sd| self.apply_answer(sd).ok_or("no usable audio in the answer"));
        let neg = match neg {
            Ok(n) => n,
            Err(cause) => {
                warn!(cause, "pbx answer refused");
                if let Some(f) = self.forks.get_mut(idx) {
                    f.state = ForkState::Leaving;
                    let call = f.call;
                    let _ = self.sip.with_call(call, |c, _| drop(c.hangup())).await;
                }
                self.end(("not-acceptable", 488));
                return;
            }
        };
        info!(codec = ?neg.codec, remote = %neg.remote_addr, "pbx answered");
        let same_media =
            self.early == Some(idx) && self.negotiated.is_some_and(|n| !media_changed(&n, &neg));
        match self.bridge.as_mut() {
            // the early media stream simply goes on; follow the address if it moved
            Some(b) if same_media => {
                if b.rtp_leg().config().remote != neg.remote_addr {
                    b.rtp_leg_mut().set_remote(neg.remote_addr);
                }
            }
            _ => match build_bridge(&neg, self.dtmf_mode) {
                Ok(b) => self.bridge = Some(b),
                Err(e) => {
                    warn!(cause = %e, "cannot build the media bridge");
                    self.end(("media-error", 500));
                    return;
                }
            },
        }
        self.held = neg.remote_hold();
        self.negotiated = Some(neg);
        if let Some(sd) = &sd {
            self.setup_video(sd);
        }
        self.winner = Some(idx);
        if let Some(f) = self.forks.get_mut(idx) {
            f.state = ForkState::Up;
        }
        // the others stop ringing
        for i in 0..self.forks.len() {
            if i != idx && self.forks[i].state.is_open() {
                self.leave_fork(i).await;
            }
        }
        let _ = self.events.send(LegEvent::Answered).await;
    }

    /// Applies a fork's SDP answer to a copy of our negotiator as it was after the
    /// offer (several forks, or a 183 and then a 200, may each answer it).
    fn apply_answer(&mut self, sd: &SessionDescription) -> Option<NegotiatedAudio> {
        let mut sdp = self.offered.clone().unwrap_or_else(|| self.sdp.clone());
        let neg = sdp.process_answer(sd).ok()?;
        // later re-INVITEs are answered from the state of the winning answer
        self.sdp = sdp;
        Some(neg)
    }

    /// A 183 with SDP: bridge the PBX's early media (ringback, announcements)
    /// to the caller before anyone answers. Returns false when it cannot.
    fn start_early_media(&mut self, idx: usize, body: &Body) -> bool {
        let Some(sd) = parse_sdp(body) else {
            return false;
        };
        let Some(neg) = self.apply_answer(&sd) else {
            return false;
        };
        match build_bridge(&neg, self.dtmf_mode) {
            Ok(b) => {
                info!(codec = ?neg.codec, remote = %neg.remote_addr, "early media from the pbx");
                self.bridge = Some(b);
                self.negotiated = Some(neg);
                self.early = Some(idx);
                // early video too (a video IVR, a camera at the door): it goes on, or
                // is re-targeted, when the call is answered
                self.setup_video(&sd);
                true
            }
            Err(e) => {
                debug!(cause = %e, "early media refused");
                false
            }
        }
    }

    /// A re-INVITE or UPDATE from the PBX: hold, resume, or a new address.
    async fn on_refresh(&mut self, idx: usize, offer: Option<Body>) {
        let Some(call) = self.forks.get(idx).map(|f| f.call) else {
            return;
        };
        let Some(codec) = self.negotiated.map(|n| n.codec) else {
            let _ = self
                .sip
                .with_call(call, |c, _| drop(c.reject_refresh(491, "Request Pending")))
                .await;
            return;
        };
        // the current codec first (no change), then whatever else the trunk allows: a
        // transfer or the PBX's media bypass may move the call to another codec
        let mut codecs = vec![codec];
        codecs.extend(self.pbx_codecs.iter().filter(|&&c| c != codec));
        let codecs = pbx_codecs(self.dtmf_mode, &codecs);
        let body = match offer {
            Some(offer) => {
                let answer = parse_sdp(&offer)
                    .ok_or(())
                    .and_then(|sd| self.sdp.answer(&sd, &codecs).map_err(|_| ()));
                match answer {
                    Ok((sd, neg)) => {
                        self.renegotiated(neg);
                        if let Some(offer) = parse_sdp(&offer) {
                            self.setup_video(&offer);
                        }
                        sd
                    }
                    Err(()) => {
                        let _ = self
                            .sip
                            .with_call(call, |c, _| {
                                drop(c.reject_refresh(488, "Not Acceptable Here"))
                            })
                            .await;
                        return;
                    }
                }
            }
            // offer-less re-INVITE: we offer the current codec first, the ACK brings the
            // answer
            None => self.sdp.offer(&codecs, Direction::SendRecv),
        };
        let body = Body {
            content_type: "application/sdp".into(),
            data: body.to_string().into_bytes().into(),
        };
        let _ = self
            .sip
            .with_call(call, move |c, now| drop(c.accept_refresh(now, Some(body))))
            .await;
    }

    /// Starts (or re-targets) video passthrough from the PBX's SDP: its video m-line
    /// negotiated against the codec the browser sends. Without one the call stays (or
    /// becomes) audio only. Hold state comes from the audio side (`held`).
    fn setup_video(&mut self, sd: &SessionDescription) {
        let Some(browser) = self.leg.video_media() else {
            return;
        };
        let Some(pv) = pbx_video(browser, sd) else {
            if self.video.take().is_some() || self.winner.is_none() {
                info!("no video with the pbx; audio only");
            }
            return;
        };
        if let Some(v) = self.video.as_mut()
            && v.config().pt == pv.video.pt_b
            && v.config().codec == pv.video.codec
        {
            // hold or resume: follow the address if it moved (never to 0.0.0.0)
            if v.config().remote != pv.remote && !pv.remote.ip().is_unspecified() {
                v.set_remote(pv.remote);
            }
            return;
        }
        let mut cfg = VideoLegConfig::new(rand::random(), pv.video.codec, pv.video.pt_b, pv.remote);
        cfg.rtcp_mux = pv.rtcp_mux;
        // a phone that lists only `ccm fir` is asked with FIR
        let fb = &pv.video.rtcp_fb;
        cfg.use_fir = fb.iter().any(|f| f == "ccm fir") && !fb.iter().any(|f| f == "nack pli");
        cfg.initial_seq = rand::random();
        cfg.initial_ts = rand::random();
        info!(codec = ?pv.video.codec, remote = %pv.remote, feedback = ?fb, "video passthrough with the pbx");
        self.video = Some(VideoLeg::new(Instant::now(), cfg));
        // the PBX's decoder starts from a keyframe
        if let Err(e) = self.leg.request_keyframe() {
            debug!(cause = %e, "no keyframe request to the browser yet");
        }
    }

    /// Logs the PBX leg's quality (what Asterisk's RTCP summary and FreeSWITCH's
    /// rtp stats give) and adds it to the metrics, when the call had media.
    fn record_media(&self, metrics: &Metrics) {
        let Some(b) = &self.bridge else {
            return;
        };
        let s = b.stats();
        info!(
            codec = ?self.negotiated.map(|n| n.codec),
            passthrough = s.passthrough,
            sent = s.rtp.packets_sent,
            received = s.rtp.packets_received,
            lost = s.rtp.lost,
            jitter_ms = s.rtp.jitter.as_secs_f64() * 1000.0,
            rtt_ms = s.rtp.rtt.map(|r| r.as_secs_f64() * 1000.0),
            browser_lost = s.webrtc_lost,
            mos = format_args!("{:.2}", s.mos),
            "call media"
        );
        metrics.record_call_media(&s);
    }

    /// Applies a renegotiated PBX side (re-INVITE, UPDATE): a new bridge when the media
    /// changed (codec, payload types, ptime, telephone-event), then hold state and
    /// address.
    fn renegotiated(&mut self, neg: NegotiatedAudio) {
        if let Some(old) = self.negotiated
            && media_changed(&old, &neg)
        {
            info!(from = ?old.codec, to = ?neg.codec, ptime = neg.ptime, "pbx changed media");
            match build_bridge(&neg, self.dtmf_mode) {
                Ok(b) => self.bridge = Some(b),
                Err(e) => {
                    warn!(cause = %e, "cannot build the media bridge");
                    self.end(("media-error", 500));
                    return;
                }
            }
        }
        self.apply_negotiated(neg);
    }

    /// Applies a renegotiated PBX side: hold state and (on resume) the new address.
    fn apply_negotiated(&mut self, neg: NegotiatedAudio) {
        let held = neg.remote_hold();
        if held != self.held {
            info!(held, "pbx changed hold state");
            let ev = if held {
                LegEvent::Held
            } else {
                LegEvent::Resumed
            };
            let _ = self.events.try_send(ev);
        }
        let resumed = self.held && !held;
        self.held = held;
        if !held && let Some(b) = self.bridge.as_mut() {
            // re-target and re-latch: the phone may resume from another port
            b.rtp_leg_mut().set_remote(neg.remote_addr);
        }
        // the phone's decoder missed the frames of the hold: restart it from a keyframe
        if resumed
            && self.video.is_some()
            && let Err(e) = self.leg.request_keyframe()
        {
            debug!(cause = %e, "no keyframe request to the browser on resume");
        }
        self.negotiated = Some(neg);
    }

    async fn on_terminated(&mut self, idx: usize, reason: TerminatedReason) {
        let code = match reason {
            TerminatedReason::Rejected(c) => Some(c),
            _ => None,
        };
        let was = self.forks.get(idx).map(|f| f.state);
        if let Some(f) = self.forks.get_mut(idx) {
            f.state = ForkState::Done(code);
        }
        debug!(fork = idx, ?reason, "sip leg ended");
        if self.ending.is_some() {
            return;
        }
        if self.winner == Some(idx) {
            let ending = match reason {
                TerminatedReason::RemoteBye => ("remote-hangup", 200),
                TerminatedReason::SessionTimerExpired | TerminatedReason::Timeout => ("lost", 408),
                _ => ("hangup", 200),
            };
            self.end(ending);
            return;
        }
        if idx < self.first_fork {
            // a fork of a trunk already given up
            return;
        }
        if self.winner.is_some() || was == Some(ForkState::Leaving) {
            // a loser we released, or a late one
            if self.strategy == Strategy::Sequential && self.winner.is_none() {
                self.next_member().await;
            }
            return;
        }
        if self.strategy == Strategy::Sequential && self.current().len() < self.configs.len() {
            // this member failed: ring the next one
            if reason == TerminatedReason::Timeout || code.is_some() {
                self.next_member().await;
                return;
            }
        }
        if self.current().len() == self.configs.len()
            && self
                .current()
                .iter()
                .all(|f| matches!(f.state, ForkState::Done(_)))
        {
            if self.trunk_failed() && self.fail_over("503, 408 or no answer").await {
                return;
            }
            self.end(self.best_failure(reason));
        }
    }

    /// The status the caller sees when every fork failed (RFC 3261 16.7 in spirit:
    /// a busy member is more telling than an unavailable one).
    fn best_failure(&self, last: TerminatedReason) -> Ending {
        let codes: Vec<u16> = self
            .forks
            .iter()
            .filter_map(|f| match f.state {
                ForkState::Done(c) => c,
                _ => None,
            })
            .collect();
        let pick = codes
            .iter()
            .copied()
            .find(|c| *c >= 600)
            .or_else(|| codes.iter().copied().find(|c| *c == 486))
            .or_else(|| codes.iter().copied().find(|c| *c != 408 && *c != 487))
            .or_else(|| codes.first().copied());
        match pick {
            Some(c) => (reason_of(c), c),
            None if last == TerminatedReason::Timeout => ("unreachable", 408),
            None => ("failed", 500),
        }
    }

    /// Releases one fork: CANCEL while it rings, BYE once up.
    async fn leave_fork(&mut self, i: usize) {
        let Some(f) = self.forks.get_mut(i) else {
            return;
        };
        let state = f.state;
        let call = f.call;
        match state {
            ForkState::Trying | ForkState::Ringing => {
                f.state = ForkState::Leaving;
                let _ = self.sip.with_call(call, |c, _| drop(c.cancel())).await;
            }
            ForkState::Up => {
                f.state = ForkState::Leaving;
                let _ = self.sip.with_call(call, |c, _| drop(c.hangup())).await;
            }
            ForkState::Leaving | ForkState::Done(_) => {}
        }
    }

    /// Starts ending the call: both legs are released; the loop exits once the
    /// SIP side confirmed or the grace period passed.
    fn end(&mut self, ending: Ending) {
        if self.ending.is_some() {
            return;
        }
        self.ending = Some((ending, Instant::now() + TEARDOWN_GRACE));
        self.leg.close();
        let sip = self.sip.clone();
        let open: Vec<(SipCall, ForkState)> = self
            .forks
            .iter_mut()
            .filter(|f| !matches!(f.state, ForkState::Done(_) | ForkState::Leaving))
            .map(|f| {
                let s = f.state;
                f.state = ForkState::Leaving;
                (f.call, s)
            })
            .collect();
        if let Some(b) = self.bridge.as_mut() {
            b.rtp_leg_mut().send_bye(Instant::now());
        }
        if let Some(v) = self.video.as_mut() {
            v.send_bye(Instant::now());
        }
        tokio::spawn(async move {
            for (call, state) in open {
                let _ = sip
                    .with_call(call, move |c, _| {
                        let _ = if state == ForkState::Up {
                            c.hangup()
                        } else {
                            c.cancel()
                        };
                    })
                    .await;
            }
        });
    }

    /// Drains the WebRTC leg and the bridge; returns the leg's next deadline.
    async fn drain(&mut self) -> Result<Instant, Ending> {
        loop {
            let now = Instant::now();
            let out = self.leg.poll_output().map_err(|e| {
                warn!(cause = %e, "webrtc leg failed");
                ("media-error", 500)
            })?;
            match out {
                Output::Timeout(t) => {
                    // what the bridge and the video leg wrote into the leg goes out
                    // now, not at the call's next wake-up (up to a frame later)
                    // (`|`, not `||`: both always run)
                    let fed = self.drain_bridge().await | self.drain_video().await;
                    if !fed {
                        return Ok(t);
                    }
                }
                Output::Transmit(t) => {
                    if let Err(e) = self.wsock.socket.send_to(&t.contents, t.destination).await {
                        debug!(cause = %e, dest = %t.destination, "webrtc send failed");
                    }
                }
                Output::Event(Event::Connected) => {
                    info!("caller media connected");
                    let _ = self.events.send(LegEvent::Connected).await;
                }
                Output::Event(Event::Opus(frame)) => {
                    if let Some(b) = self.bridge.as_mut() {
                        b.handle_webrtc_media(
                            now,
                            MediaFrame {
                                seq: frame.seq as u16,
                                timestamp: frame.rtp_timestamp as u32,
                                marker: false,
                                payload: frame.payload.to_vec(),
                            },
                        );
                    }
                }
                Output::Event(Event::TelephoneEvent {
                    rtp_timestamp,
                    payload,
                }) => {
                    if let Some(b) = self.bridge.as_mut() {
                        b.handle_webrtc_dtmf(now, rtp_timestamp as u32, &payload);
                    }
                }
                Output::Event(Event::Video(frame)) => {
                    let Some(v) = self.video.as_mut() else {
                        continue;
                    };
                    if !self.held {
                        v.send_frame(now, frame.rtp_time, &frame.data);
                    }
                    // packets lost on the browser's side: the PBX's decoder needs a new
                    // keyframe (asked at most once per interval)
                    if !frame.contiguous
                        && self.video_gap_request.is_none_or(|t| {
                            now.saturating_duration_since(t) >= KeyframeForwarder::MIN_INTERVAL
                        })
                    {
                        self.video_gap_request = Some(now);
                        if let Err(e) = self.leg.request_keyframe() {
                            debug!(cause = %e, "keyframe request to the browser dropped");
                        }
                    }
                }
                Output::Event(Event::KeyframeRequest) => {
                    if let Some(v) = self.video.as_mut()
                        && v.request_keyframe(now)
                    {
                        debug!("browser keyframe request sent to the pbx");
                    }
                }
                Output::Event(Event::Failed) if self.ending.is_none() => {
                    return Err(("ice-failed", 408));
                }
                Output::Event(Event::Closed) if self.ending.is_none() => {
                    return Err(("remote-closed", 200));
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Sends what the bridge produced: RTP to the PBX, Opus to the browser; true when
    /// it wrote to the WebRTC leg (which then has packets to send).
    async fn drain_bridge(&mut self) -> bool {
        let Some(b) = self.bridge.as_mut() else {
            return false;
        };
        let mut fed = false;
        let now = Instant::now();
        while let Some(t) = b.poll_transmit() {
            if self.held || t.destination.ip().is_unspecified() {
                continue;
            }
            if let Err(e) = self.rsock.socket.send_to(&t.data, t.destination).await {
                debug!(cause = %e, dest = %t.destination, "rtp send failed");
            }
        }
        while let Some(out) = b.poll_webrtc() {
            match out {
                WebrtcOutput::Audio(f) => {
                    let ts = self.out_ts.extend(f.timestamp);
                    match self.leg.write_opus(now, ts, &f.payload) {
                        Ok(()) => fed = true,
                        Err(e) => debug!(cause = %e, "opus write dropped"),
                    }
                }
                WebrtcOutput::Gap(frames) => self.leg.skip_audio(frames),
                WebrtcOutput::Dtmf(_) => {}
            }
        }
        let mut infos = Vec::new();
        while let Some(ev) = b.poll_event() {
            match ev {
                BridgeEvent::WebrtcDigit(d) => {
                    info!(digit = %d, mode = ?self.dtmf_mode, "dtmf to the pbx");
                    if self.dtmf_mode == DtmfMode::Info {
                        infos.push(d);
                    }
                }
                BridgeEvent::PbxDigit(d) => {
                    info!(digit = %d, "dtmf from the pbx");
                    let _ = self.events.send(LegEvent::Digit(d)).await;
                }
                BridgeEvent::Latched(a) => debug!(%a, "rtp latched"),
                BridgeEvent::PbxBye => debug!("pbx sent rtcp bye"),
            }
        }
        for d in infos {
            self.send_info_digit(d).await;
        }
        fed
    }

    /// Sends what the video leg produced: RTP/RTCP to the PBX, frames and keyframe
    /// requests to the browser; true when it wrote to the WebRTC leg.
    async fn drain_video(&mut self) -> bool {
        let Some(v) = self.video.as_mut() else {
            return false;
        };
        let mut fed = false;
        let now = Instant::now();
        while let Some(t) = v.poll_transmit() {
            // on hold only RTCP goes out: reports, and keyframe requests so the PBX's
            // encoder resumes with a keyframe
            if (self.held && !t.rtcp) || t.destination.ip().is_unspecified() {
                continue;
            }
            if let Some(s) = &self.vsock
                && let Err(e) = s.socket.send_to(&t.data, t.destination).await
            {
                debug!(cause = %e, dest = %t.destination, "video send failed");
            }
        }
        let mut want_keyframe = false;
        while let Some(ev) = v.poll_event() {
            match ev {
                VideoLegEvent::Frame(f) => {
                    let ts = self.video_out_ts.extend(f.rtp_time);
                    match self.leg.write_video(now, ts, &f.data) {
                        Ok(()) => fed = true,
                        Err(e) => debug!(cause = %e, "video write dropped"),
                    }
                }
                VideoLegEvent::KeyframeRequest => want_keyframe = true,
                VideoLegEvent::Latched(a) => debug!(%a, "video rtp latched"),
                VideoLegEvent::Bye => debug!("pbx sent video rtcp bye"),
            }
        }
        if want_keyframe {
            match self.leg.request_keyframe() {
                Ok(()) => {
                    fed = true;
                    debug!("pbx keyframe request sent to the browser");
                }
                Err(e) => debug!(cause = %e, "keyframe request to the browser dropped"),
            }
        }
        fed
    }

    /// Sends one key press to the PBX as SIP INFO (`application/dtmf-relay`) on the
    /// answered leg; the player only hands out digits once there is one.
    async fn send_info_digit(&mut self, digit: char) {
        let Some(call) = self.winner.and_then(|i| self.forks.get(i)).map(|f| f.call) else {
            return;
        };
        let Ok(press) = InfoDtmf::new(digit, INFO_DTMF_MS) else {
            return;
        };
        let body = Body {
            content_type: InfoDtmf::DTMF_RELAY.into(),
            data: press.to_dtmf_relay().into_bytes().into(),
        };
        let sent = self
            .sip
            .with_call(call, move |c, _| {
                if let Err(e) = c.info(body) {
                    warn!(cause = %e, %digit, "cannot send sip info");
                }
            })
            .await;
        if let Err(e) = sent {
            warn!(cause = %e, %digit, "cannot send sip info");
        }
    }
}

/// Receives on the video socket, or waits forever when the call has none.
async fn recv_opt(
    socket: Option<&MediaSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, std::net::SocketAddr)> {
    match socket {
        Some(s) => s.socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

fn parse_sdp(body: &Body) -> Option<SessionDescription> {
    SessionDescription::parse(&String::from_utf8_lossy(&body.data)).ok()
}

/// The SDP offer to a PBX: the trunk's audio codecs, with telephone-event unless the
/// trunk's DTMF mode is `inband`.
fn pbx_offer(sdp: &mut RtpSdp, dtmf: DtmfMode, codecs: &[Codec]) -> Body {
    Body {
        content_type: "application/sdp".into(),
        data: sdp
            .offer(&pbx_codecs(dtmf, codecs), Direction::SendRecv)
            .to_string()
            .into_bytes()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_extend_across_wrap() {
        let mut t = TsExtender::default();
        assert_eq!(t.extend(u32::MAX - 959), u64::from(u32::MAX - 959));
        assert_eq!(t.extend(0), u64::from(u32::MAX) + 1);
        assert_eq!(t.extend(960), u64::from(u32::MAX) + 961);
        // a reordered frame steps back, not forward by 2^32
        assert_eq!(t.extend(0), u64::from(u32::MAX) + 1);
    }
}
