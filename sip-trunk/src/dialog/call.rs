//! The INVITE session of one call leg: a dialog plus the rules of RFC 3261
//! sections 13-15, RFC 4028 and RFC 3311 that act on it.
//!
//! One [`Call`] is one leg, UAC (we sent the INVITE) or UAS (we received it).
//! It holds the dialog state that outlives transactions and turns
//! application calls (`answer`, `hangup`, `reinvite` ...) and network input
//! (`handle_request`, `handle_response`) into [`Send`] items and
//! [`DialogEvent`]s. Its own timers (2xx retransmission, glare back-off,
//! session refresh and expiry) fire through [`Call::handle_timeout`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::session_timer::{Refresher, SessionExpires, SessionTimer};
use super::{Body, DialogError, DialogEvent, DialogId, DialogState, TerminatedReason};
use crate::auth::{Challenge, ChallengeKind, Credentials, DigestClient};
use crate::message::{Method, NameAddr, Request, Response, Uri, names};

/// Methods we answer inside a dialog, advertised in `Allow`.
const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, UPDATE, INFO, MESSAGE, OPTIONS, REFER, NOTIFY, PRACK";

/// Settings for one call leg.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// Our identity: From as UAC. As UAS the INVITE's To is used instead.
    pub local: Uri,
    /// Display name in our From as UAC (`"Alice" <sip:alice@...>`), quoted and escaped on the wire.
    pub display_name: Option<String>,
    /// The callee: To as UAC. Ignored as UAS.
    pub remote: Uri,
    /// Request-URI of the initial INVITE (UAC); usually equal to `remote`.
    pub request_uri: Uri,
    /// Our Contact (remote target the peer uses for in-dialog requests).
    pub contact: Uri,
    /// `Via` transport and sent-by, e.g. `("UDP", "192.0.2.1:5060")`.
    pub via: (String, String),
    /// Credentials to answer a challenged INVITE (once).
    pub credentials: Option<Credentials>,
    /// Session interval we ask for or accept (RFC 4028); `None` disables session timers.
    pub session_expires: Option<u32>,
    /// Smallest session interval we accept (`Min-SE`, at least 90).
    pub min_se: u32,
    /// RFC 3261 T1, the 2xx retransmission start interval.
    pub t1: Duration,
    /// RFC 3261 T2, the 2xx retransmission interval cap.
    pub t2: Duration,
    /// `User-Agent`/`Server` header value, if any.
    pub user_agent: Option<String>,
    /// How long the initial INVITE may stay unanswered: the UAC then cancels, the UAS answers 480.
    pub answer_timeout: Option<Duration>,
    /// UAC: advertise `Supported: 100rel` (RFC 3262) so the peer may send
    /// reliable provisional responses. Reliable ones are PRACKed either way.
    pub supports_100rel: bool,
    /// UAS: send provisional responses reliably (RFC 3262) when the INVITE
    /// lists `100rel` in `Supported`. An INVITE that `Require`s it always
    /// gets reliable provisionals.
    pub reliable_provisionals: bool,
}

impl CallConfig {
    /// Defaults: session timer 1800 s with Min-SE 90, T1 500 ms, T2 4 s.
    pub fn new(local: Uri, remote: Uri, contact: Uri, via: (String, String)) -> Self {
        Self {
            request_uri: remote.clone(),
            local,
            display_name: None,
            remote,
            contact,
            via,
            credentials: None,
            session_expires: Some(1800),
            min_se: 90,
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            user_agent: None,
            answer_timeout: Some(Duration::from_secs(180)),
            supports_100rel: true,
            reliable_provisionals: false,
        }
    }
}

/// A message to put on the wire, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    /// Starts a client transaction.
    Request(Request),
    /// ACK for a 2xx: straight to the transport, no transaction (RFC 3261 13.2.2.4).
    Ack(Request),
    /// Answers the server transaction of the request it was built from (matched by Via branch and CSeq).
    Response(Response),
    /// A retransmitted 2xx to INVITE: straight to the transport (RFC 3261 13.3.1.4).
    Retransmit(Response),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Uac,
    Uas,
}

/// Why we sent a client request, to know what its response means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Invite,
    Cancel,
    Bye,
    /// re-INVITE or UPDATE; `refresh_only` when sent by the session timer.
    Offer {
        refresh_only: bool,
    },
    /// REFER (RFC 3515); its final response is reported.
    Refer,
    /// NOTIFY about a REFER we accepted.
    Notify,
    /// PRACK for a reliable provisional response (RFC 3262); its outcome
    /// changes nothing here: a UAS that misses it gives up on the INVITE.
    Prack,
    Other,
}

#[derive(Debug, Clone)]
struct ClientTx {
    cseq: u32,
    method: Method,
    purpose: Purpose,
    /// Body of a re-INVITE/UPDATE, kept to resend after 491 glare.
    body: Option<Body>,
    /// The in-dialog request as sent, kept to resend with credentials after 401/407.
    request: Option<Request>,
    /// This request already carries an answer to a challenge.
    auth_answered: bool,
}

/// A 2xx to INVITE being retransmitted until its ACK arrives.
#[derive(Debug, Clone)]
struct Pending2xx {
    response: Response,
    cseq: u32,
    next: Instant,
    interval: Duration,
    give_up: Instant,
    /// The 2xx answered the initial INVITE (its ACK reports `Answered`).
    initial: bool,
}

/// UAS: a reliable provisional response retransmitted until its PRACK (RFC 3262 3).
#[derive(Debug, Clone)]
struct PendingReliable {
    response: Response,
    rseq: u32,
    next: Instant,
    interval: Duration,
    /// 64*T1 after the first send: the INVITE is then refused with 5xx.
    give_up: Instant,
    /// It carried SDP: a 2xx must wait for its PRACK.
    has_body: bool,
}

/// What RFC 3262 says to do with a provisional response.
enum Reliable {
    /// Not reliable: handle as usual.
    No,
    /// Reliable and next in sequence: handle and PRACK with this RSeq.
    Prack(u32),
    /// A retransmission or out of order: ignore.
    Discard,
}

/// Our re-INVITE/UPDATE to resend when the glare timer fires.
#[derive(Debug, Clone)]
struct GlareRetry {
    at: Instant,
    method: Method,
    body: Option<Body>,
}

/// The sans-IO state machine of one call leg.
///
/// Verbs: `handle_request`, `handle_response`, `handle_transaction_timeout`,
/// `handle_timeout`, then drain `poll_transmit` and `poll_event` and re-arm
/// with `poll_timeout`. Application actions (`ring`, `answer`, `reject`,
/// `cancel`, `hangup`, `reinvite`, `update`, `info`, `message`,
/// `accept_refresh`, `reject_refresh`) queue output the same way.
#[derive(Debug)]
pub struct Call {
    role: Role,
    config: CallConfig,
    rng: StdRng,
    state: DialogState,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// From (UAC) or To (UAS) without tag.
    local_party: NameAddr,
    /// To (UAC) or From (UAS) without tag.
    remote_party: NameAddr,
    remote_target: Uri,
    /// Route set in the order requests use it (already reversed for the UAC).
    route_set: Vec<NameAddr>,
    local_cseq: u32,
    remote_cseq: Option<u32>,
    /// The initial INVITE: ours as UAC (latest auth retry), the peer's as UAS.
    invite: Request,
    invite_final: bool,
    provisional_seen: bool,
    cancel_requested: bool,
    invite_auth_answered: bool,
    invite_422_answered: bool,
    /// Session interval we ask for; raised by 422.
    session_expires: Option<u32>,
    /// UAS: what we will put in our 2xx for the pending INVITE/UPDATE.
    negotiated: Option<SessionExpires>,
    session: Option<SessionTimer>,
    peer_allows_update: bool,
    /// Last SDP we sent, reused by session-refresh re-INVITEs.
    local_body: Option<Body>,
    /// Initial offer (UAC), resent with auth or 422 retries.
    offer: Option<Body>,
    digest: Option<DigestClient>,
    clients: Vec<ClientTx>,
    /// Last ACK for a 2xx, resent when that 2xx is retransmitted.
    last_ack: Option<(u32, Request)>,
    uas_2xx: Option<Pending2xx>,
    /// Our 2xx to the initial INVITE, resent if that INVITE is retransmitted.
    initial_2xx: Option<Response>,
    /// When an unanswered initial INVITE is given up (`answer_timeout`).
    answer_deadline: Option<Instant>,
    /// The answer timeout fired: a later 487 or timeout reports `Timeout`, not `Cancelled`.
    gave_up: bool,
    /// Peer's re-INVITE/UPDATE waiting for `accept_refresh`/`reject_refresh`.
    incoming_offer: Option<Request>,
    glare: Option<GlareRetry>,
    /// UAC: highest RSeq acknowledged per early dialog (remote tag), RFC 3262 4.
    prack_rseq: Vec<(String, u32)>,
    /// UAS: provisional responses to this INVITE go out reliably (RFC 3262).
    uas_reliable: bool,
    /// UAS: RSeq of our next reliable provisional.
    next_rseq: u32,
    /// UAS: the reliable provisional waiting for its PRACK; only one at a time.
    pending_rel: Option<PendingReliable>,
    /// UAS: provisionals held back until the pending one is PRACKed.
    queued_rel: VecDeque<(u16, Option<Body>)>,
    /// UAS: the 2xx asked for while a reliable provisional with SDP is unacknowledged.
    held_answer: Option<Option<Body>>,
    transmit: VecDeque<Send>,
    events: VecDeque<DialogEvent>,
}

impl Call {
    /// UAC: starts a call by sending INVITE with `offer` at `now`.
    pub fn outgoing(config: CallConfig, now: Instant, offer: Option<Body>, rng_seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let call_id = format!("{}@{}", random_hex(&mut rng, 12), config.contact.host);
        let local_tag = random_hex(&mut rng, 6);
        let digest = config.credentials.clone().map(DigestClient::new);
        let mut call = Self {
            role: Role::Uac,
            rng,
            state: DialogState::Initial,
            call_id,
            local_tag,
            remote_tag: None,
            local_party: NameAddr {
                display: config.display_name.as_deref().map(quote_display),
                ..NameAddr::new(config.local.clone())
            },
            remote_party: NameAddr::new(config.remote.clone()),
            remote_target: config.request_uri.clone(),
            route_set: Vec::new(),
            local_cseq: 0,
            remote_cseq: None,
            invite: Request::new(Method::Invite, config.request_uri.clone()),
            invite_final: false,
            provisional_seen: false,
            cancel_requested: false,
            invite_auth_answered: false,
            invite_422_answered: false,
            session_expires: config.session_expires,
            negotiated: None,
            session: None,
            peer_allows_update: false,
            local_body: offer.clone(),
            offer,
            digest,
            clients: Vec::new(),
            last_ack: None,
            uas_2xx: None,
            initial_2xx: None,
            answer_deadline: config.answer_timeout.map(|d| now + d),
            gave_up: false,
            incoming_offer: None,
            glare: None,
            prack_rseq: Vec::new(),
            uas_reliable: false,
            next_rseq: 1,
            pending_rel: None,
            queued_rel: VecDeque::new(),
            held_answer: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            config,
        };
        call.send_initial_invite(None);
        call
    }

    /// UAS: takes an incoming INVITE (outside any dialog).
    ///
    /// # Errors
    /// The response to send instead of creating the call: 400 when a
    /// mandatory header is unusable, 422 when the session interval is below our Min-SE.
    pub fn incoming(
        config: CallConfig,
        now: Instant,
        invite: &Request,
        rng_seed: u64,
    ) -> Result<Self, Box<Response>> {
        let bad = |why: &str| Box::new(Response::from_request(invite, 400, why));
        let from = invite.headers.from().map_err(|_| bad("Bad From"))?;
        let to = invite.headers.to().map_err(|_| bad("Bad To"))?;
        let call_id = invite.headers.call_id().map_err(|_| bad("Bad Call-ID"))?;
        let cseq = invite.headers.cseq().map_err(|_| bad("Bad CSeq"))?;
        let remote_tag = from.tag.clone().ok_or_else(|| bad("Missing From tag"))?;
        let contact = invite
            .headers
            .contact()
            .ok()
            .and_then(|c| c.into_iter().next())
            .ok_or_else(|| bad("Missing Contact"))?;
        let route_set = invite.headers.record_route().unwrap_or_default();
        let digest = config.credentials.clone().map(DigestClient::new);
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let local_tag = random_hex(&mut rng, 6);
        let mut call = Self {
            role: Role::Uas,
            rng,
            state: DialogState::Initial,
            call_id: call_id.to_owned(),
            local_tag,
            remote_tag: Some(remote_tag),
            local_party: NameAddr { tag: None, ..to },
            remote_party: NameAddr { tag: None, ..from },
            remote_target: contact.uri,
            route_set,
            local_cseq: 0,
            remote_cseq: Some(cseq.seq),
            invite: invite.clone(),
            invite_final: false,
            provisional_seen: false,
            cancel_requested: false,
            invite_auth_answered: false,
            invite_422_answered: false,
            session_expires: config.session_expires,
            negotiated: None,
            session: None,
            peer_allows_update: allows_update(invite),
            local_body: None,
            offer: None,
            digest,
            clients: Vec::new(),
            last_ack: None,
            uas_2xx: None,
            initial_2xx: None,
            answer_deadline: config.answer_timeout.map(|d| now + d),
            gave_up: false,
            incoming_offer: None,
            glare: None,
            prack_rseq: Vec::new(),
            uas_reliable: false,
            next_rseq: 1,
            pending_rel: None,
            queued_rel: VecDeque::new(),
            held_answer: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            config,
        };
        call.negotiated = call.negotiate_incoming(invite, true)?;
        let lists_100rel = |name: &str| {
            invite.headers.get_all(name).any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("100rel"))
            })
        };
        call.uas_reliable = lists_100rel("Require")
            || (call.config.reliable_provisionals && lists_100rel("Supported"));
        // RFC 3262 3: the first RSeq is random in 1..2^31-1, leaving room to count up.
        call.next_rseq = call.rng.random_range(1..(1u32 << 31) - 0x10000);
        Ok(call)
    }

    // ---- getters -------------------------------------------------------

    /// Dialog life-cycle state.
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// The dialog id, once the peer's tag is known.
    pub fn id(&self) -> Option<DialogId> {
        Some(DialogId {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
            remote_tag: self.remote_tag.clone()?,
        })
    }

    /// The Call-ID of this leg.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Where in-dialog requests go (the peer's Contact).
    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    /// Route set, in the order it is written into requests.
    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    /// Negotiated session interval and whether we refresh, if a session timer runs.
    pub fn session_timer(&self) -> Option<(Duration, bool)> {
        self.session.map(|s| (s.interval, s.we_refresh))
    }

    /// UAS: recognises a retransmission of the initial INVITE (same Call-ID, From tag
    /// and CSeq) that reached a new server transaction because our 2xx ended the first
    /// one; queues the 2xx again for it. `false` when `req` is not that INVITE.
    pub fn absorb_invite_retransmission(&mut self, req: &Request) -> bool {
        if self.role != Role::Uas || req.method != Method::Invite {
            return false;
        }
        let same = req.headers.call_id().ok() == Some(self.call_id.as_str())
            && req.headers.from().ok().and_then(|f| f.tag) == self.remote_tag
            && req.headers.cseq().ok().map(|c| c.seq)
                == self.invite.headers.cseq().ok().map(|c| c.seq);
        if !same {
            return false;
        }
        if let Some(resp) = &self.initial_2xx {
            self.transmit.push_back(Send::Response(resp.clone()));
        }
        true
    }

    /// Whether the leg is over and owes nothing: terminated, no request of ours pending, no output queued.
    pub fn is_finished(&self) -> bool {
        self.state == DialogState::Terminated && self.clients.is_empty() && self.transmit.is_empty()
    }

    /// Whether an incoming request belongs to this leg (dialog id, or CANCEL of our INVITE).
    pub fn accepts_request(&self, req: &Request) -> bool {
        if req.headers.call_id().ok() != Some(self.call_id.as_str()) {
            return false;
        }
        let from_tag = req.headers.from().ok().and_then(|f| f.tag);
        if from_tag.is_none() || from_tag != self.remote_tag {
            return false;
        }
        let to_tag = req.headers.to().ok().and_then(|t| t.tag);
        match to_tag {
            Some(t) => t == self.local_tag,
            // Only CANCEL (and the initial INVITE's ACK for non-2xx, absorbed by the transaction) lack our tag.
            None => self.role == Role::Uas && req.method == Method::Cancel,
        }
    }

    // ---- poll ----------------------------------------------------------

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Send> {
        self.transmit.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<DialogEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == DialogState::Terminated {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if !self.invite_final
            && !self.gave_up
            && let Some(d) = self.answer_deadline
        {
            consider(d);
        }
        if let Some(p) = &self.uas_2xx {
            consider(p.next.min(p.give_up));
        }
        if !self.invite_final
            && let Some(p) = &self.pending_rel
        {
            consider(p.next.min(p.give_up));
        }
        if let Some(g) = &self.glare {
            consider(g.at);
        }
        if let Some(s) = &self.session {
            if s.we_refresh && !s.refreshing && !self.offer_busy() {
                consider(s.refresh_at());
            } else {
                consider(s.expires_at());
            }
        }
        next
    }

    /// Fires due timers; spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == DialogState::Terminated {
            return;
        }
        if !self.invite_final && !self.gave_up && self.answer_deadline.is_some_and(|d| now >= d) {
            self.gave_up = true;
            match self.role {
                Role::Uac => {
                    let _ = self.cancel();
                }
                Role::Uas => {
                    self.invite_final = true;
                    let resp = Response::from_request(&self.invite, 480, "Temporarily Unavailable")
                        .with_to_tag(&self.local_tag);
                    self.transmit.push_back(Send::Response(resp));
                    self.terminate(TerminatedReason::Timeout);
                    return;
                }
            }
        }
        if !self.invite_final
            && let Some(mut p) = self.pending_rel.take()
        {
            if now >= p.give_up {
                // RFC 3262 3: no PRACK within 64*T1, the INVITE is refused with 5xx.
                self.queued_rel.clear();
                self.held_answer = None;
                self.invite_final = true;
                let resp = Response::from_request(&self.invite, 504, "No PRACK Received")
                    .with_to_tag(&self.local_tag);
                self.transmit.push_back(Send::Response(resp));
                self.terminate(TerminatedReason::Timeout);
                return;
            }
            if now >= p.next {
                // Through the INVITE server transaction, which still takes provisionals.
                self.transmit.push_back(Send::Response(p.response.clone()));
                p.interval *= 2;
                p.next = now + p.interval;
            }
            self.pending_rel = Some(p);
        }
        if let Some(mut p) = self.uas_2xx.take() {
            if now >= p.give_up {
                // RFC 3261 13.3.1.4: no ACK within 64*T1, end the session with BYE.
                self.send_bye();
                self.terminate(TerminatedReason::Timeout);
                return;
            }
            if now >= p.next {
                self.transmit
                    .push_back(Send::Retransmit(p.response.clone()));
                p.interval = (p.interval * 2).min(self.config.t2);
                p.next = now + p.interval;
            }
            self.uas_2xx = Some(p);
        }
        if let Some(g) = self.glare.take() {
            if now >= g.at {
                if self.offer_busy() {
                    // The peer's own offer is being handled; try again a bit later.
                    self.glare = Some(GlareRetry {
                        at: now + self.glare_delay(),
                        ..g
                    });
                } else {
                    self.send_offer(g.method, g.body, false);
                }
            } else {
                self.glare = Some(g);
            }
        }
        if let Some(s) = self.session {
            if now >= s.expires_at() {
                self.send_bye();
                self.terminate(TerminatedReason::SessionTimerExpired);
                return;
            }
            if s.we_refresh && !s.refreshing && !self.offer_busy() && now >= s.refresh_at() {
                let method = if self.peer_allows_update {
                    Method::Update
                } else {
                    Method::Invite
                };
                let body = if method == Method::Invite {
                    self.local_body.clone()
                } else {
                    None
                };
                self.send_offer(method, body, true);
            }
        }
    }

    // ---- application actions ------------------------------------------------

    /// UAS: sends a provisional response (180 Ringing, 183 with early media).
    ///
    /// When the INVITE asked for reliable provisionals (RFC 3262) the response
    /// carries `Require: 100rel` and an `RSeq`, and is retransmitted from `now`
    /// until its PRACK arrives; a second one waits for the first one's PRACK.
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] unless the INVITE is still unanswered.
    pub fn ring(
        &mut self,
        now: Instant,
        status: u16,
        body: Option<Body>,
    ) -> Result<(), DialogError> {
        if self.role != Role::Uas
            || self.invite_final
            || self.held_answer.is_some()
            || self.state == DialogState::Terminated
            || !(101..200).contains(&status)
        {
            return Err(DialogError::InvalidState("ring"));
        }
        self.state = DialogState::Early;
        if !self.uas_reliable {
            let invite = self.invite.clone();
            let resp = self.dialog_response(&invite, status, ring_reason(status), body.as_ref());
            self.transmit.push_back(Send::Response(resp));
        } else if self.pending_rel.is_some() {
            self.queued_rel.push_back((status, body));
        } else {
            self.send_reliable(now, status, body);
        }
        Ok(())
    }

    /// UAS: answers the INVITE with 200 and retransmits it until the ACK arrives.
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] unless the INVITE is still unanswered.
    pub fn answer(&mut self, now: Instant, body: Option<Body>) -> Result<(), DialogError> {
        if self.role != Role::Uas
            || self.invite_final
            || self.held_answer.is_some()
            || self.state == DialogState::Terminated
        {
            return Err(DialogError::InvalidState("answer"));
        }
        // RFC 3262 3: no 2xx while a reliable provisional with SDP is unacknowledged.
        if self.pending_rel.as_ref().is_some_and(|p| p.has_body)
            || self.queued_rel.iter().any(|(_, b)| b.is_some())
        {
            self.held_answer = Some(body);
            return Ok(());
        }
        self.pending_rel = None;
        self.queued_rel.clear();
        self.invite_final = true;
        let invite = self.invite.clone();
        let cseq = invite.headers.cseq().map_or(0, |c| c.seq);
        self.send_2xx(now, &invite, cseq, body, true);
        self.state = DialogState::Confirmed;
        Ok(())
    }

    /// UAS: refuses the INVITE with a final status (486 Busy Here, 603 Decline ...).
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] unless the INVITE is still unanswered.
    pub fn reject(&mut self, status: u16, reason: &str) -> Result<(), DialogError> {
        if self.role != Role::Uas || self.invite_final || !(300..700).contains(&status) {
            return Err(DialogError::InvalidState("reject"));
        }
        self.pending_rel = None;
        self.queued_rel.clear();
        self.held_answer = None;
        self.invite_final = true;
        let resp =
            Response::from_request(&self.invite, status, reason).with_to_tag(&self.local_tag);
        self.transmit.push_back(Send::Response(resp));
        self.terminate(TerminatedReason::Rejected(status));
        Ok(())
    }

    /// UAC: cancels the unanswered INVITE (sent once a provisional response has arrived).
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] when the INVITE already has a final response.
    pub fn cancel(&mut self) -> Result<(), DialogError> {
        if self.role != Role::Uac || self.invite_final {
            return Err(DialogError::InvalidState("cancel"));
        }
        if self.cancel_requested {
            return Ok(());
        }
        self.cancel_requested = true;
        // RFC 3261 9.1: a CANCEL must not be sent before a provisional response.
        if self.provisional_seen {
            self.send_cancel();
        }
        Ok(())
    }

    /// UAC: sends the INVITE again (new CSeq and branch) after the caller moved to the next
    /// RFC 3263 target because the last one timed out or answered 503.
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] once any dialog-forming or final response arrived, or after cancel.
    pub fn restart_invite(&mut self) -> Result<(), DialogError> {
        if self.role != Role::Uac
            || self.invite_final
            || self.cancel_requested
            || self.state != DialogState::Initial
        {
            return Err(DialogError::InvalidState("restart_invite"));
        }
        self.clients.retain(|c| c.purpose != Purpose::Invite);
        let auth = self.cached_authorization();
        self.send_initial_invite(auth);
        Ok(())
    }

    /// Ends the call the right way for its state: CANCEL, 480 or BYE.
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] when the call is already over.
    pub fn hangup(&mut self) -> Result<(), DialogError> {
        match (self.role, self.state, self.invite_final) {
            (_, DialogState::Terminated, _) => Err(DialogError::InvalidState("hangup")),
            (Role::Uac, _, false) => self.cancel(),
            (Role::Uas, _, false) => self.reject(480, "Temporarily Unavailable"),
            _ => {
                self.send_bye();
                self.terminate(TerminatedReason::LocalBye);
                Ok(())
            }
        }
    }

    /// Sends a re-INVITE with a new offer (hold/unhold, codec change).
    ///
    /// # Errors
    /// [`DialogError::Busy`] while another offer is pending; `InvalidState` outside a confirmed dialog.
    pub fn reinvite(&mut self, offer: Option<Body>) -> Result<(), DialogError> {
        self.start_offer(Method::Invite, offer)
    }

    /// Sends an UPDATE (RFC 3311), with or without an offer.
    ///
    /// # Errors
    /// As for [`reinvite`](Self::reinvite).
    pub fn update(&mut self, offer: Option<Body>) -> Result<(), DialogError> {
        self.start_offer(Method::Update, offer)
    }

    /// Sends an in-dialog INFO (e.g. DTMF relay).
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] outside a confirmed dialog.
    pub fn info(&mut self, body: Body) -> Result<(), DialogError> {
        self.send_simple(Method::Info, body)
    }

    /// Sends an in-dialog MESSAGE.
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] outside a confirmed dialog.
    pub fn message(&mut self, body: Body) -> Result<(), DialogError> {
        self.send_simple(Method::Message, body)
    }

    /// Asks the peer to call `target` (RFC 3515 blind transfer); the outcome arrives as
    /// [`DialogEvent::ReferResult`] and then [`DialogEvent::ReferProgress`] NOTIFYs.
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] outside a confirmed dialog.
    pub fn refer(&mut self, target: &Uri) -> Result<(), DialogError> {
        let refer_to = NameAddr::new(target.clone()).to_string();
        let referred_by = NameAddr::new(self.local_party.uri.clone()).to_string();
        self.send_in_dialog(
            Method::Refer,
            None,
            &[("Refer-To", refer_to), ("Referred-By", referred_by)],
            Purpose::Refer,
        )
    }

    /// Reports the progress of a REFER we accepted with a NOTIFY carrying a sipfrag
    /// status line; a final status (200 and up) ends the implicit subscription.
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] outside a confirmed dialog.
    pub fn refer_progress(&mut self, status: u16, reason: &str) -> Result<(), DialogError> {
        let state = if status >= 200 {
            "terminated;reason=noresource".to_owned()
        } else {
            "active;expires=60".to_owned()
        };
        let body = Body {
            content_type: "message/sipfrag;version=2.0".into(),
            data: format!("SIP/2.0 {status} {reason}").into_bytes().into(),
        };
        self.send_in_dialog(
            Method::Notify,
            Some(body),
            &[("Event", "refer".to_owned()), ("Subscription-State", state)],
            Purpose::Notify,
        )
    }

    /// Answers the peer's pending re-INVITE/UPDATE with 200 and our `answer`.
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] when no such request is pending.
    pub fn accept_refresh(
        &mut self,
        now: Instant,
        answer: Option<Body>,
    ) -> Result<(), DialogError> {
        let req = self
            .incoming_offer
            .take()
            .ok_or(DialogError::InvalidState("accept_refresh"))?;
        let cseq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
        if req.method == Method::Invite {
            self.send_2xx(now, &req, cseq, answer, false);
        } else {
            let resp = self.dialog_response(&req, 200, "OK", answer.as_ref());
            if answer.is_some() {
                self.local_body = answer;
            }
            self.transmit.push_back(Send::Response(resp));
            self.start_session_from_negotiated(now);
        }
        Ok(())
    }

    /// Refuses the peer's pending re-INVITE/UPDATE (488 Not Acceptable Here ...); the session goes on.
    ///
    /// # Errors
    /// [`DialogError::InvalidState`] when no such request is pending.
    pub fn reject_refresh(&mut self, status: u16, reason: &str) -> Result<(), DialogError> {
        let req = self
            .incoming_offer
            .take()
            .ok_or(DialogError::InvalidState("reject_refresh"))?;
        self.negotiated = None;
        let resp = Response::from_request(&req, status, reason);
        self.transmit.push_back(Send::Response(resp));
        Ok(())
    }

    // ---- network input ---------------------------------------------------

    /// Consumes an in-dialog request (including ACK and CANCEL) routed here by [`accepts_request`](Self::accepts_request).
    pub fn handle_request(&mut self, now: Instant, req: &Request) {
        if !self.accepts_request(req) {
            if let Some(resp) = super::unknown_dialog_response(req) {
                self.transmit.push_back(Send::Response(resp));
            }
            return;
        }
        let Ok(cseq) = req.headers.cseq() else {
            self.transmit
                .push_back(Send::Response(Response::from_request(req, 400, "Bad CSeq")));
            return;
        };
        match req.method {
            Method::Ack => return self.on_ack(req, cseq.seq),
            Method::Cancel => return self.on_cancel(req, cseq.seq),
            _ => {}
        }
        if self.state == DialogState::Terminated {
            let resp = Response::from_request(req, 481, "Call/Transaction Does Not Exist");
            self.transmit.push_back(Send::Response(resp));
            return;
        }
        // A re-INVITE retransmitted after its server transaction ended with our 2xx:
        // answer with the same 2xx instead of calling it out of order.
        if req.method == Method::Invite
            && let Some(p) = &self.uas_2xx
            && p.cseq == cseq.seq
        {
            self.transmit.push_back(Send::Response(p.response.clone()));
            return;
        }
        // RFC 3261 12.2.2: a lower CSeq than the last one is out of order.
        if let Some(last) = self.remote_cseq
            && cseq.seq <= last
        {
            let resp = Response::from_request(req, 500, "Server Internal Error");
            self.transmit.push_back(Send::Response(resp));
            return;
        }
        self.remote_cseq = Some(cseq.seq);
        match req.method {
            Method::Bye => {
                self.transmit
                    .push_back(Send::Response(Response::from_request(req, 200, "OK")));
                if self.role == Role::Uas && !self.invite_final {
                    // BYE in an early dialog ends the INVITE with 487 (RFC 3261 15.1.2).
                    self.invite_final = true;
                    let r = Response::from_request(&self.invite, 487, "Request Terminated")
                        .with_to_tag(&self.local_tag);
                    self.transmit.push_back(Send::Response(r));
                }
                self.terminate(TerminatedReason::RemoteBye);
            }
            Method::Invite | Method::Update => self.on_incoming_offer(now, req),
            Method::Info => {
                self.transmit
                    .push_back(Send::Response(Response::from_request(req, 200, "OK")));
                self.events.push_back(DialogEvent::Info {
                    body: Body::of(&req.headers, &req.body),
                });
            }
            Method::Message => {
                self.transmit
                    .push_back(Send::Response(Response::from_request(req, 200, "OK")));
                self.events.push_back(DialogEvent::Message {
                    body: Body::of(&req.headers, &req.body),
                });
            }
            Method::Options => {
                let resp = Response::from_request(req, 200, "OK").with_header("Allow", ALLOW);
                self.transmit.push_back(Send::Response(resp));
            }
            Method::Refer => self.on_refer(req),
            Method::Notify => self.on_notify(req),
            Method::Prack => self.on_prack(now, req),
            _ => {
                let resp =
                    Response::from_request(req, 501, "Not Implemented").with_header("Allow", ALLOW);
                self.transmit.push_back(Send::Response(resp));
            }
        }
    }

    /// Consumes a response to one of our client transactions.
    pub fn handle_response(&mut self, now: Instant, resp: &Response) {
        if resp.headers.call_id().ok() != Some(self.call_id.as_str()) {
            return;
        }
        let Ok(cseq) = resp.headers.cseq() else {
            return;
        };
        let status = resp.status.0;
        let to_tag = resp.headers.to().ok().and_then(|t| t.tag);
        if (200..300).contains(&status)
            && cseq.method == Method::Invite
            && let Some((acked, ack)) = &self.last_ack
            && *acked == cseq.seq
        {
            if to_tag == self.remote_tag {
                // A retransmitted 2xx to an INVITE we already ACKed: ACK again.
                self.transmit.push_back(Send::Ack(ack.clone()));
            } else if let Some(tag) = to_tag {
                // A 2xx from another fork: confirm and end that dialog at once (RFC 3261 13.2.2.4).
                self.end_fork(resp, tag, cseq.seq);
            }
            return;
        }
        let Some(pos) = self
            .clients
            .iter()
            .position(|c| c.cseq == cseq.seq && c.method == cseq.method)
        else {
            return;
        };
        let tx = if status >= 200 {
            self.clients.remove(pos)
        } else {
            self.clients[pos].clone()
        };
        if matches!(status, 401 | 407)
            && tx.purpose != Purpose::Invite
            && self.retry_with_credentials(resp, &tx)
        {
            return;
        }
        match tx.purpose {
            Purpose::Invite => self.on_invite_response(now, resp, tx.cseq),
            Purpose::Offer { refresh_only } => self.on_offer_response(now, resp, &tx, refresh_only),
            Purpose::Cancel | Purpose::Bye => {}
            Purpose::Refer if status >= 200 => {
                self.events.push_back(DialogEvent::ReferResult { status });
            }
            Purpose::Refer | Purpose::Notify | Purpose::Prack => {}
            Purpose::Other => {
                if status == 481 || status == 408 {
                    self.send_bye();
                    self.terminate(TerminatedReason::Timeout);
                }
            }
        }
    }

    /// A client transaction of ours (`method`, `cseq`) timed out or hit a transport error.
    pub fn handle_transaction_timeout(&mut self, _now: Instant, method: &Method, cseq: u32) {
        let Some(pos) = self
            .clients
            .iter()
            .position(|c| c.cseq == cseq && &c.method == method)
        else {
            return;
        };
        let tx = self.clients.remove(pos);
        match tx.purpose {
            Purpose::Invite => {
                if !self.invite_final {
                    self.invite_final = true;
                    let reason = if self.cancel_requested {
                        self.cancel_reason()
                    } else {
                        TerminatedReason::Timeout
                    };
                    self.terminate(reason);
                }
            }
            // RFC 3261 12.2.1.2: a timed-out in-dialog request ends the dialog.
            Purpose::Offer { .. } | Purpose::Other => {
                self.send_bye();
                self.terminate(TerminatedReason::Timeout);
            }
            Purpose::Refer => self
                .events
                .push_back(DialogEvent::ReferResult { status: 408 }),
            Purpose::Cancel | Purpose::Bye | Purpose::Notify | Purpose::Prack => {}
        }
    }

    // ---- internals: UAC --------------------------------------------------

    fn send_initial_invite(&mut self, auth: Option<(&'static str, String)>) {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        let mut from = self.local_party.clone();
        from.tag = Some(self.local_tag.clone());
        let mut req = Request::new(Method::Invite, self.config.request_uri.clone())
            .with_header(names::VIA, self.via())
            .with_header(names::MAX_FORWARDS, "70")
            .with_header(names::FROM, from.to_string())
            .with_header(names::TO, self.remote_party.to_string())
            .with_header(names::CALL_ID, self.call_id.clone())
            .with_header(names::CSEQ, format!("{cseq} INVITE"))
            .with_header(
                names::CONTACT,
                NameAddr::new(self.config.contact.clone()).to_string(),
            )
            .with_header("Allow", ALLOW)
            .with_header(
                "Supported",
                if self.config.supports_100rel {
                    "timer, 100rel"
                } else {
                    "timer"
                },
            );
        if let Some(se) = self.session_expires {
            req = req
                .with_header("Session-Expires", se.to_string())
                .with_header("Min-SE", self.config.min_se.to_string());
        }
        if let Some(ua) = &self.config.user_agent {
            req = req.with_header("User-Agent", ua.clone());
        }
        if let Some((name, value)) = auth {
            req = req.with_header(name, value);
        }
        if let Some(body) = &self.offer {
            req = req.with_body(&body.content_type, body.data.clone());
        }
        self.invite = req.clone();
        self.provisional_seen = false;
        self.clients.push(ClientTx {
            cseq,
            method: Method::Invite,
            purpose: Purpose::Invite,
            body: None,
            request: None,
            auth_answered: false,
        });
        self.transmit.push_back(Send::Request(req));
    }

    fn send_cancel(&mut self) {
        let inv = &self.invite;
        let cseq = inv.headers.cseq().map(|c| c.seq).unwrap_or(self.local_cseq);
        let mut req = Request::new(Method::Cancel, inv.uri.clone());
        // RFC 3261 9.1: same Request-URI, Call-ID, To, From, CSeq number and top Via as the INVITE.
        for name in [
            names::VIA,
            names::ROUTE,
            names::FROM,
            names::TO,
            names::CALL_ID,
        ] {
            for v in inv.headers.get_all(name) {
                req.headers.push(name, v);
            }
        }
        req.headers.push(names::MAX_FORWARDS, "70");
        req.headers.push(names::CSEQ, format!("{cseq} CANCEL"));
        self.clients.push(ClientTx {
            cseq,
            method: Method::Cancel,
            purpose: Purpose::Cancel,
            body: None,
            request: None,
            auth_answered: false,
        });
        self.transmit.push_back(Send::Request(req));
    }

    fn on_invite_response(&mut self, now: Instant, resp: &Response, cseq: u32) {
        let status = resp.status.0;
        let to_tag = resp.headers.to().ok().and_then(|t| t.tag);
        match status {
            100 => {}
            101..=199 => {
                let prack = match self.reliable_provisional(resp, to_tag.as_deref()) {
                    Reliable::No => None,
                    // Already acknowledged, or ahead of a lost one that the
                    // UAS will retransmit first: discard (RFC 3262 4).
                    Reliable::Discard => return,
                    Reliable::Prack(rseq) => Some(rseq),
                };
                self.provisional_seen = true;
                if let Some(tag) = to_tag {
                    self.establish(resp, tag);
                    if self.state == DialogState::Initial {
                        self.state = DialogState::Early;
                    }
                }
                if let Some(rseq) = prack {
                    self.send_prack(rseq, cseq);
                }
                self.events.push_back(DialogEvent::Ringing {
                    status,
                    body: Body::of(&resp.headers, &resp.body),
                });
                if self.cancel_requested && !self.invite_final {
                    self.send_cancel();
                }
            }
            200..=299 => {
                self.invite_final = true;
                let Some(tag) = to_tag else {
                    // A 2xx without To tag cannot form a dialog; treat as a broken peer.
                    self.terminate(TerminatedReason::Rejected(status));
                    return;
                };
                self.establish(resp, tag);
                self.peer_allows_update = allows_update_resp(resp);
                self.state = DialogState::Confirmed;
                self.send_ack(cseq);
                if self.cancel_requested {
                    // CANCEL lost the race with 200: the call must still be torn down (RFC 3261 9.1).
                    self.send_bye();
                    self.terminate(self.cancel_reason());
                    return;
                }
                self.session = self.session_from_response(now, resp, None);
                self.events.push_back(DialogEvent::Answered {
                    body: Body::of(&resp.headers, &resp.body),
                });
            }
            401 | 407 if !self.cancel_requested => {
                if !self.answer_challenge(resp) {
                    self.invite_final = true;
                    self.terminate(TerminatedReason::Rejected(status));
                }
            }
            422 if !self.invite_422_answered && !self.cancel_requested => {
                let min = resp
                    .headers
                    .get("Min-SE")
                    .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok());
                match min {
                    Some(min) => {
                        self.invite_422_answered = true;
                        self.session_expires = Some(min.max(self.session_expires.unwrap_or(0)));
                        self.config.min_se = self.config.min_se.max(min);
                        let auth = self.cached_authorization();
                        self.send_initial_invite(auth);
                    }
                    None => {
                        self.invite_final = true;
                        self.terminate(TerminatedReason::Rejected(status));
                    }
                }
            }
            _ => {
                self.invite_final = true;
                let reason = if status == 487 && self.cancel_requested {
                    self.cancel_reason()
                } else {
                    TerminatedReason::Rejected(status)
                };
                self.terminate(reason);
            }
        }
    }

    /// Classifies a provisional response for RFC 3262: unreliable, a reliable
    /// one to PRACK, or a retransmitted/out-of-order one to discard. The
    /// first RSeq of each early dialog is taken as is; later ones must be one
    /// higher than the last acknowledged.
    fn reliable_provisional(&mut self, resp: &Response, to_tag: Option<&str>) -> Reliable {
        let required = resp.headers.get_all("Require").any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("100rel"))
        });
        let rseq = resp
            .headers
            .get("RSeq")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|&r| r >= 1);
        // Without RSeq or To tag there is no early dialog to PRACK in.
        let (true, Some(rseq), Some(tag)) = (required, rseq, to_tag) else {
            return Reliable::No;
        };
        match self.prack_rseq.iter_mut().find(|(t, _)| t == tag) {
            None => {
                self.prack_rseq.push((tag.to_string(), rseq));
                Reliable::Prack(rseq)
            }
            Some((_, last)) if rseq == last.wrapping_add(1) => {
                *last = rseq;
                Reliable::Prack(rseq)
            }
            Some(_) => Reliable::Discard,
        }
    }

    /// PRACK in the early dialog the provisional response created (RFC 3262 7.2).
    fn send_prack(&mut self, rseq: u32, invite_cseq: u32) {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        let req = self
            .build_request(Method::Prack, cseq, None)
            .with_header("RAck", format!("{rseq} {invite_cseq} INVITE"));
        self.clients.push(ClientTx {
            cseq,
            method: Method::Prack,
            purpose: Purpose::Prack,
            body: None,
            request: Some(req.clone()),
            auth_answered: false,
        });
        self.transmit.push_back(Send::Request(req));
    }

    /// Answers a 401/407 on the initial INVITE once; `false` means give up.
    fn answer_challenge(&mut self, resp: &Response) -> bool {
        let header = if resp.status.0 == 407 {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let Some(challenge) = Challenge::select(resp.headers.get_all(header)) else {
            return false;
        };
        let Some(digest) = self.digest.as_mut() else {
            return false;
        };
        let kind = digest.accept_challenge(challenge);
        let retry = match kind {
            ChallengeKind::Stale => true,
            ChallengeKind::Fresh => !self.invite_auth_answered,
            ChallengeKind::Repeated => false,
        };
        if !retry {
            return false;
        }
        self.invite_auth_answered = true;
        let uri = self.config.request_uri.to_string();
        let body = self
            .offer
            .as_ref()
            .map(|b| b.data.clone())
            .unwrap_or_default();
        match digest.authorize("INVITE", &uri, &body, &mut self.rng) {
            Ok(auth) => {
                let name = if resp.status.0 == 407 {
                    "Proxy-Authorization"
                } else {
                    "Authorization"
                };
                self.send_initial_invite(Some((name, auth.to_string())));
                true
            }
            Err(_) => false,
        }
    }

    /// Credentials for a resent INVITE when a challenge was already answered.
    fn cached_authorization(&mut self) -> Option<(&'static str, String)> {
        let name = if self.invite.headers.contains("Proxy-Authorization") {
            "Proxy-Authorization"
        } else if self.invite.headers.contains("Authorization") {
            "Authorization"
        } else {
            return None;
        };
        let uri = self.config.request_uri.to_string();
        let body = self
            .offer
            .as_ref()
            .map(|b| b.data.clone())
            .unwrap_or_default();
        let auth = self
            .digest
            .as_mut()?
            .authorize("INVITE", &uri, &body, &mut self.rng)
            .ok()?;
        Some((name, auth.to_string()))
    }

    /// Takes the remote tag, target and (reversed) route set from a dialog-creating response.
    fn establish(&mut self, resp: &Response, tag: String) {
        self.remote_tag = Some(tag);
        if let Some(c) = resp
            .headers
            .contact()
            .ok()
            .and_then(|c| c.into_iter().next())
        {
            self.remote_target = c.uri;
        }
        // The route set is fixed by the first response that creates the dialog (RFC 3261 12.1.2),
        // but a 2xx after early dialogs replaces it.
        let mut rr = resp.headers.record_route().unwrap_or_default();
        rr.reverse();
        if self.state != DialogState::Confirmed {
            self.route_set = rr;
        }
    }

    /// ACK and BYE a dialog created by another fork's 2xx, leaving ours untouched.
    fn end_fork(&mut self, resp: &Response, tag: String, invite_cseq: u32) {
        let mut rr = resp.headers.record_route().unwrap_or_default();
        rr.reverse();
        let target = resp
            .headers
            .contact()
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| c.uri)
            .unwrap_or_else(|| self.config.request_uri.clone());
        let saved = (
            self.remote_tag.replace(tag),
            std::mem::replace(&mut self.remote_target, target),
            std::mem::replace(&mut self.route_set, rr),
        );
        let ack = self.build_request(Method::Ack, invite_cseq, None);
        // The fork's dialog has its own CSeq space; ours continues unaffected.
        let bye = self.build_request(Method::Bye, invite_cseq + 1, None);
        (self.remote_tag, self.remote_target, self.route_set) = saved;
        self.transmit.push_back(Send::Ack(ack));
        self.transmit.push_back(Send::Request(bye));
    }

    fn send_ack(&mut self, cseq: u32) {
        let ack = self.build_request(Method::Ack, cseq, None);
        self.last_ack = Some((cseq, ack.clone()));
        self.transmit.push_back(Send::Ack(ack));
    }

    // ---- internals: both roles ---------------------------------------------

    fn on_ack(&mut self, req: &Request, cseq: u32) {
        let Some(p) = &self.uas_2xx else {
            return; // retransmitted ACK, absorbed
        };
        if p.cseq != cseq {
            return;
        }
        let initial = p.initial;
        self.uas_2xx = None;
        if self.state == DialogState::Terminated {
            return;
        }
        let body = Body::of(&req.headers, &req.body);
        if initial {
            self.events.push_back(DialogEvent::Answered { body });
        } else if body.is_some() {
            // The peer's re-INVITE had no offer; our 2xx carried one and the ACK has the answer.
            self.events.push_back(DialogEvent::RefreshAnswered { body });
        }
    }

    /// CANCEL of the unanswered INVITE: 487 on the INVITE (RFC 3261 9.2).
    ///
    /// The 200 for the CANCEL itself is the transaction layer's job, which
    /// answers it before passing it up.
    fn on_cancel(&mut self, _req: &Request, cseq: u32) {
        let invite_cseq = self.invite.headers.cseq().map(|c| c.seq).ok();
        if self.role != Role::Uas || self.invite_final || invite_cseq != Some(cseq) {
            return;
        }
        self.pending_rel = None;
        self.queued_rel.clear();
        self.held_answer = None;
        self.invite_final = true;
        let r = Response::from_request(&self.invite, 487, "Request Terminated")
            .with_to_tag(&self.local_tag);
        self.transmit.push_back(Send::Response(r));
        self.terminate(TerminatedReason::Cancelled);
    }

    /// PRACK of our reliable provisional (RFC 3262 3): 200, stop its
    /// retransmission, then send the next held provisional or the held 2xx.
    /// A PRACK that matches nothing unacknowledged gets 481.
    fn on_prack(&mut self, now: Instant, req: &Request) {
        let invite_cseq = self.invite.headers.cseq().map(|c| c.seq).ok();
        let rack = req.headers.get("RAck").and_then(|v| {
            let mut it = v.split_whitespace();
            let rseq = it.next()?.parse::<u32>().ok()?;
            let cseq = it.next()?.parse::<u32>().ok()?;
            let method = it.next()?;
            method
                .eq_ignore_ascii_case("INVITE")
                .then_some((rseq, cseq))
        });
        let matches = match (&self.pending_rel, rack) {
            (Some(p), Some((rseq, cseq))) => {
                p.rseq == rseq && Some(cseq) == invite_cseq && self.role == Role::Uas
            }
            _ => false,
        };
        if !matches || self.invite_final {
            let resp = Response::from_request(req, 481, "Call/Transaction Does Not Exist");
            self.transmit.push_back(Send::Response(resp));
            return;
        }
        self.pending_rel = None;
        self.transmit
            .push_back(Send::Response(Response::from_request(req, 200, "OK")));
        if let Some((status, body)) = self.queued_rel.pop_front() {
            self.send_reliable(now, status, body);
            return;
        }
        if let Some(body) = self.held_answer.take() {
            // Cannot fail: the INVITE is unanswered and nothing is pending any more.
            let _ = self.answer(now, body);
        }
    }

    /// UAS: sends a provisional with `Require: 100rel` and the next `RSeq`,
    /// and arms its retransmission (T1, doubling; give up at 64*T1).
    fn send_reliable(&mut self, now: Instant, status: u16, body: Option<Body>) {
        let rseq = self.next_rseq;
        self.next_rseq = self.next_rseq.wrapping_add(1);
        let invite = self.invite.clone();
        let resp = self
            .dialog_response(&invite, status, ring_reason(status), body.as_ref())
            .with_header("Require", "100rel")
            .with_header("RSeq", rseq.to_string());
        self.transmit.push_back(Send::Response(resp.clone()));
        self.pending_rel = Some(PendingReliable {
            response: resp,
            rseq,
            next: now + self.config.t1,
            interval: self.config.t1,
            give_up: now + self.config.t1 * 64,
            has_body: body.is_some(),
        });
    }

    /// An in-dialog REFER: 202, the first NOTIFY (100 Trying), and an event for the application.
    fn on_refer(&mut self, req: &Request) {
        let targets: Vec<&str> = req.headers.get_all("Refer-To").collect();
        let [refer_to] = targets.as_slice() else {
            // RFC 3515 2.4.1: exactly one Refer-To.
            let resp = Response::from_request(req, 400, "Bad Refer-To");
            self.transmit.push_back(Send::Response(resp));
            return;
        };
        let Ok(refer_to) = NameAddr::parse(refer_to) else {
            let resp = Response::from_request(req, 400, "Bad Refer-To");
            self.transmit.push_back(Send::Response(resp));
            return;
        };
        let referred_by = req
            .headers
            .get("Referred-By")
            .and_then(|v| NameAddr::parse(v).ok());
        let resp = Response::from_request(req, 202, "Accepted");
        self.transmit.push_back(Send::Response(resp));
        // RFC 3515 2.4.4: the implicit subscription starts with a NOTIFY at once.
        let _ = self.refer_progress(100, "Trying");
        self.events.push_back(DialogEvent::Refer {
            refer_to: Box::new(refer_to),
            referred_by: referred_by.map(Box::new),
        });
    }

    /// A NOTIFY for our REFER: 200, and the sipfrag status as progress.
    fn on_notify(&mut self, req: &Request) {
        let is_refer = req.headers.get("Event").is_some_and(|e| {
            e.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("refer"))
        });
        if !is_refer {
            let resp = Response::from_request(req, 489, "Bad Event");
            self.transmit.push_back(Send::Response(resp));
            return;
        }
        self.transmit
            .push_back(Send::Response(Response::from_request(req, 200, "OK")));
        let status = std::str::from_utf8(&req.body)
            .ok()
            .and_then(|b| b.strip_prefix("SIP/2.0 "))
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok());
        let done = req.headers.get("Subscription-State").is_some_and(|s| {
            s.trim_start()
                .to_ascii_lowercase()
                .starts_with("terminated")
        });
        if let Some(status) = status {
            self.events
                .push_back(DialogEvent::ReferProgress { status, done });
        }
    }

    fn on_incoming_offer(&mut self, now: Instant, req: &Request) {
        if self.state != DialogState::Confirmed && req.method == Method::Invite {
            let resp = Response::from_request(req, 491, "Request Pending");
            self.transmit.push_back(Send::Response(resp));
            return;
        }
        if self.incoming_offer.is_some() || self.uas_2xx.as_ref().is_some_and(|p| !p.initial) {
            // RFC 3261 14.2: a second offer while one is open gets 500 with Retry-After 0-10 s.
            let secs = self.rng.random_range(0..=10u32);
            let resp = Response::from_request(req, 500, "Server Internal Error")
                .with_header("Retry-After", secs.to_string());
            self.transmit.push_back(Send::Response(resp));
            return;
        }
        if self.our_offer_pending() {
            // Glare (RFC 3261 14.2): both sides sent an offer; the peer backs off too.
            let resp = Response::from_request(req, 491, "Request Pending");
            self.transmit.push_back(Send::Response(resp));
            return;
        }
        match self.negotiate_incoming(req, false) {
            Ok(n) => self.negotiated = n,
            Err(resp) => {
                self.transmit.push_back(Send::Response(*resp));
                return;
            }
        }
        if let Some(c) = req
            .headers
            .contact()
            .ok()
            .and_then(|c| c.into_iter().next())
        {
            self.remote_target = c.uri;
        }
        let offer = Body::of(&req.headers, &req.body);
        if req.method == Method::Update && offer.is_none() {
            // A bodiless UPDATE is a pure session refresh: answer it ourselves.
            let resp = self.dialog_response(req, 200, "OK", None);
            self.transmit.push_back(Send::Response(resp));
            self.start_session_from_negotiated(now);
            return;
        }
        self.incoming_offer = Some(req.clone());
        self.events.push_back(DialogEvent::TargetRefresh { offer });
    }

    fn on_offer_response(
        &mut self,
        now: Instant,
        resp: &Response,
        tx: &ClientTx,
        refresh_only: bool,
    ) {
        let status = resp.status.0;
        if status < 200 {
            return;
        }
        if let Some(s) = self.session.as_mut() {
            s.refreshing = false;
        }
        match status {
            200..=299 => {
                if tx.method == Method::Invite {
                    self.send_ack(tx.cseq);
                }
                if let Some(c) = resp
                    .headers
                    .contact()
                    .ok()
                    .and_then(|c| c.into_iter().next())
                {
                    self.remote_target = c.uri;
                }
                let previous = self.session;
                self.session = self.session_from_response(now, resp, previous);
                if !refresh_only {
                    self.events.push_back(DialogEvent::RefreshAnswered {
                        body: Body::of(&resp.headers, &resp.body),
                    });
                }
            }
            491 => {
                let at = now + self.glare_delay();
                self.glare = Some(GlareRetry {
                    at,
                    method: tx.method.clone(),
                    body: tx.body.clone(),
                });
            }
            408 | 481 => {
                self.send_bye();
                self.terminate(TerminatedReason::Timeout);
            }
            _ => {
                if refresh_only {
                    // Stop refreshing; the expiry timer will end the session if the peer stays silent.
                    if let Some(s) = self.session.as_mut() {
                        s.refreshing = true;
                    }
                } else {
                    self.events
                        .push_back(DialogEvent::RefreshRejected { status });
                }
            }
        }
    }

    fn start_offer(&mut self, method: Method, offer: Option<Body>) -> Result<(), DialogError> {
        if self.state != DialogState::Confirmed {
            return Err(DialogError::InvalidState("re-INVITE/UPDATE"));
        }
        if self.offer_busy() || self.glare.is_some() {
            return Err(DialogError::Busy);
        }
        self.send_offer(method, offer, false);
        Ok(())
    }

    fn send_offer(&mut self, method: Method, body: Option<Body>, refresh_only: bool) {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        let req = self.build_request(method.clone(), cseq, body.as_ref());
        if body.is_some() {
            self.local_body = body.clone();
        }
        if let Some(s) = self.session.as_mut() {
            s.refreshing = true;
        }
        self.clients.push(ClientTx {
            cseq,
            method,
            purpose: Purpose::Offer { refresh_only },
            body,
            request: Some(req.clone()),
            auth_answered: false,
        });
        self.transmit.push_back(Send::Request(req));
    }

    fn send_simple(&mut self, method: Method, body: Body) -> Result<(), DialogError> {
        self.send_in_dialog(method, Some(body), &[], Purpose::Other)
    }

    fn send_in_dialog(
        &mut self,
        method: Method,
        body: Option<Body>,
        extra: &[(&str, String)],
        purpose: Purpose,
    ) -> Result<(), DialogError> {
        if self.state != DialogState::Confirmed {
            return Err(DialogError::InvalidState("in-dialog request"));
        }
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        let mut req = self.build_request(method.clone(), cseq, body.as_ref());
        for (name, value) in extra {
            req.headers.push(name, value.clone());
        }
        self.clients.push(ClientTx {
            cseq,
            method,
            purpose,
            body: None,
            request: Some(req.clone()),
            auth_answered: false,
        });
        self.transmit.push_back(Send::Request(req));
        Ok(())
    }

    /// Resends a challenged in-dialog request once with credentials; `false` when it cannot.
    fn retry_with_credentials(&mut self, resp: &Response, tx: &ClientTx) -> bool {
        let (header, auth_name) = if resp.status.0 == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let (Some(orig), false) = (tx.request.as_ref(), tx.auth_answered) else {
            return false;
        };
        let Some(challenge) = Challenge::select(resp.headers.get_all(header)) else {
            return false;
        };
        let Some(digest) = self.digest.as_mut() else {
            return false;
        };
        if digest.accept_challenge(challenge) == ChallengeKind::Repeated {
            return false;
        }
        let uri = orig.uri.to_string();
        let method = orig.method.to_string();
        let Ok(auth) = digest.authorize(&method, &uri, &orig.body, &mut self.rng) else {
            return false;
        };
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        let mut req = orig.clone();
        req.headers.set(names::CSEQ, format!("{cseq} {method}"));
        let via = self.via();
        req.headers.set(names::VIA, via);
        req.headers.set(auth_name, auth.to_string());
        self.clients.push(ClientTx {
            cseq,
            request: Some(req.clone()),
            auth_answered: true,
            ..tx.clone()
        });
        self.transmit.push_back(Send::Request(req));
        true
    }

    fn send_bye(&mut self) {
        if self.remote_tag.is_none() {
            return;
        }
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        let req = self.build_request(Method::Bye, cseq, None);
        self.clients.push(ClientTx {
            cseq,
            method: Method::Bye,
            purpose: Purpose::Bye,
            body: None,
            request: Some(req.clone()),
            auth_answered: false,
        });
        self.transmit.push_back(Send::Request(req));
    }

    /// Sends a 2xx to INVITE and arms its retransmission (T1 doubling to T2, give up at 64*T1).
    fn send_2xx(
        &mut self,
        now: Instant,
        req: &Request,
        cseq: u32,
        body: Option<Body>,
        initial: bool,
    ) {
        let resp = self.dialog_response(req, 200, "OK", body.as_ref());
        if body.is_some() {
            self.local_body = body;
        }
        self.transmit.push_back(Send::Response(resp.clone()));
        if initial {
            self.initial_2xx = Some(resp.clone());
        }
        self.uas_2xx = Some(Pending2xx {
            response: resp,
            cseq,
            next: now + self.config.t1,
            interval: self.config.t1,
            give_up: now + self.config.t1 * 64,
            initial,
        });
        self.start_session_from_negotiated(now);
    }

    /// A response that creates or lives in the dialog: To tag, Contact, Record-Route, session timer.
    fn dialog_response(
        &self,
        req: &Request,
        status: u16,
        reason: &str,
        body: Option<&Body>,
    ) -> Response {
        let mut resp = Response::from_request(req, status, reason).with_to_tag(&self.local_tag);
        if req.method == Method::Invite {
            // RFC 3261 12.1.1: Record-Route is copied into dialog-creating responses.
            for rr in req.headers.get_all(names::RECORD_ROUTE) {
                resp.headers.push(names::RECORD_ROUTE, rr);
            }
        }
        if matches!(req.method, Method::Invite | Method::Update) {
            resp.headers.push(
                names::CONTACT,
                NameAddr::new(self.config.contact.clone()).to_string(),
            );
            resp.headers.push("Allow", ALLOW);
            if (200..300).contains(&status)
                && let Some(se) = self.negotiated
            {
                resp.headers.push("Session-Expires", se.to_string());
                if se.refresher == Some(Refresher::Uac) {
                    resp.headers.push("Require", "timer");
                }
            }
        }
        if let Some(ua) = &self.config.user_agent {
            resp.headers.push("Server", ua.clone());
        }
        if let Some(b) = body {
            resp = resp.with_body(&b.content_type, b.data.clone());
        }
        resp
    }

    /// Builds an in-dialog request (RFC 3261 12.2.1.1), loose or strict routing.
    fn build_request(&mut self, method: Method, cseq: u32, body: Option<&Body>) -> Request {
        let strict = self
            .route_set
            .first()
            .is_some_and(|r| r.uri.param("lr").is_none());
        let (ruri, routes): (Uri, Vec<String>) = if strict {
            let mut routes: Vec<String> =
                self.route_set[1..].iter().map(|r| r.to_string()).collect();
            routes.push(NameAddr::new(self.remote_target.clone()).to_string());
            (self.route_set[0].uri.clone(), routes)
        } else {
            (
                self.remote_target.clone(),
                self.route_set.iter().map(|r| r.to_string()).collect(),
            )
        };
        let mut from = self.local_party.clone();
        from.tag = Some(self.local_tag.clone());
        let mut to = self.remote_party.clone();
        to.tag = self.remote_tag.clone();
        let mut req = Request::new(method.clone(), ruri)
            .with_header(names::VIA, self.via())
            .with_header(names::MAX_FORWARDS, "70")
            .with_header(names::FROM, from.to_string())
            .with_header(names::TO, to.to_string())
            .with_header(names::CALL_ID, self.call_id.clone())
            .with_header(names::CSEQ, format!("{cseq} {method}"));
        for r in routes {
            req = req.with_header(names::ROUTE, r);
        }
        if matches!(method, Method::Invite | Method::Update) {
            req = req
                .with_header(
                    names::CONTACT,
                    NameAddr::new(self.config.contact.clone()).to_string(),
                )
                .with_header("Allow", ALLOW)
                .with_header("Supported", "timer");
            if let Some(s) = self.session {
                let se = SessionExpires {
                    interval: u32::try_from(s.interval.as_secs()).unwrap_or(u32::MAX),
                    // Roles are per transaction: we send, so "uac" means us.
                    refresher: Some(if s.we_refresh {
                        Refresher::Uac
                    } else {
                        Refresher::Uas
                    }),
                };
                req = req
                    .with_header("Session-Expires", se.to_string())
                    .with_header("Min-SE", self.config.min_se.to_string());
            }
        }
        if let Some(b) = body {
            req = req.with_body(&b.content_type, b.data.clone());
        }
        req
    }

    /// RFC 4028 on a received INVITE/UPDATE: what goes into our 2xx, or a 422.
    fn negotiate_incoming(
        &self,
        req: &Request,
        initial: bool,
    ) -> Result<Option<SessionExpires>, Box<Response>> {
        let their = req
            .headers
            .get("Session-Expires")
            .and_then(SessionExpires::parse);
        let supports_timer = req
            .headers
            .get_all("Supported")
            .chain(req.headers.get_all("Require"))
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("timer")));
        let their_min = req
            .headers
            .get("Min-SE")
            .and_then(|v| v.split(';').next()?.trim().parse::<u32>().ok())
            .unwrap_or(90);
        let Some(ours) = self.session_expires else {
            // We do not run timers; a refresher=uac request still works without us.
            // Intervals below the RFC 4028 floor of 90 s are ignored rather than obeyed.
            return Ok(their.filter(|t| t.interval >= 90).map(|t| SessionExpires {
                interval: t.interval,
                refresher: Some(Refresher::Uac),
            }));
        };
        let default_refresher = if supports_timer {
            Refresher::Uac
        } else {
            Refresher::Uas
        };
        match their {
            Some(t) if t.interval < self.config.min_se => Err(Box::new(
                Response::from_request(req, 422, "Session Interval Too Small")
                    .with_header("Min-SE", self.config.min_se.to_string()),
            )),
            Some(t) => Ok(Some(SessionExpires {
                // We may shorten the interval, but not below either side's Min-SE.
                interval: t.interval.min(ours.max(their_min).max(self.config.min_se)),
                refresher: Some(t.refresher.unwrap_or(default_refresher)),
            })),
            None if initial || self.session.is_some() => Ok(Some(SessionExpires {
                interval: ours.max(their_min),
                refresher: Some(default_refresher),
            })),
            None => Ok(None),
        }
    }

    /// Starts or restarts the session timer from what our 2xx carried.
    fn start_session_from_negotiated(&mut self, now: Instant) {
        self.session = self.negotiated.take().map(|se| SessionTimer {
            interval: Duration::from_secs(u64::from(se.interval)),
            // The peer sent the request, so "uas" means us.
            we_refresh: se.refresher == Some(Refresher::Uas),
            last_refresh: now,
            refreshing: false,
        });
    }

    /// RFC 4028 on a 2xx to our INVITE/UPDATE.
    fn session_from_response(
        &self,
        now: Instant,
        resp: &Response,
        previous: Option<SessionTimer>,
    ) -> Option<SessionTimer> {
        let se = resp
            .headers
            .get("Session-Expires")
            .and_then(SessionExpires::parse);
        match se {
            Some(se) if se.interval > 0 => Some(SessionTimer {
                interval: Duration::from_secs(u64::from(se.interval)),
                // We sent the request: "uac" (or no refresher) means us.
                we_refresh: se.refresher != Some(Refresher::Uas),
                last_refresh: now,
                refreshing: false,
            }),
            _ => previous.map(|p| SessionTimer {
                last_refresh: now,
                refreshing: false,
                ..p
            }),
        }
    }

    fn our_offer_pending(&self) -> bool {
        self.clients
            .iter()
            .any(|c| matches!(c.purpose, Purpose::Offer { .. }))
    }

    fn offer_busy(&self) -> bool {
        self.our_offer_pending()
            || self.incoming_offer.is_some()
            || self.uas_2xx.as_ref().is_some_and(|p| !p.initial)
    }

    /// RFC 3261 14.1: 2.1-4 s when we own the Call-ID (we sent the INVITE), else 0-2 s, in 10 ms units.
    fn glare_delay(&mut self) -> Duration {
        let ticks = match self.role {
            Role::Uac => self.rng.random_range(210..=400u64),
            Role::Uas => self.rng.random_range(0..=200u64),
        };
        Duration::from_millis(ticks * 10)
    }

    fn via(&mut self) -> String {
        let (transport, sent_by) = &self.config.via;
        // We choose the branch so CANCEL can reuse the INVITE's (RFC 3261 9.1).
        format!(
            "SIP/2.0/{transport} {sent_by};branch=z9hG4bK{};rport",
            random_hex(&mut self.rng, 8)
        )
    }

    /// Why a cancelled INVITE ended: our own timeout or the application's cancel.
    fn cancel_reason(&self) -> TerminatedReason {
        if self.gave_up {
            TerminatedReason::Timeout
        } else {
            TerminatedReason::Cancelled
        }
    }

    fn terminate(&mut self, reason: TerminatedReason) {
        if self.state == DialogState::Terminated {
            return;
        }
        self.state = DialogState::Terminated;
        self.uas_2xx = None;
        self.pending_rel = None;
        self.queued_rel.clear();
        self.held_answer = None;
        self.glare = None;
        self.session = None;
        self.events.push_back(DialogEvent::Terminated { reason });
    }
}

fn ring_reason(status: u16) -> &'static str {
    match status {
        183 => "Session Progress",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        _ => "Ringing",
    }
}

fn allows_update(req: &Request) -> bool {
    req.headers
        .get_all("Allow")
        .any(|v| v.split(',').any(|m| m.trim() == "UPDATE"))
}

fn allows_update_resp(resp: &Response) -> bool {
    resp.headers
        .get_all("Allow")
        .any(|v| v.split(',').any(|m| m.trim() == "UPDATE"))
}

fn random_hex(rng: &mut dyn RngCore, bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rng.fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// A display name as the inside of a quoted string (RFC 3261 25.1; `NameAddr` adds the
/// quotes): backslash and quote escaped, control characters dropped, so any
/// user-chosen name is safe in a header.
pub(crate) fn quote_display(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    for c in name.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
