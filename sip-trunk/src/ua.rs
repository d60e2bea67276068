//! The user agent of one SIP socket: transaction layer, calls, registrations,
//! OPTIONS keep-alives and MESSAGE, behind one set of sans-IO verbs.
//!
//! The gateway runs one [`UserAgent`] per SIP socket and drives it like
//! str0m's `Rtc`: feed datagrams with [`UserAgent::handle_input`], fire
//! timers with [`UserAgent::handle_timeout`], and after every input or
//! command drain [`UserAgent::poll_output`] until it returns
//! [`UaOutput::Timeout`]. The user agent does the routing between layers that
//! would otherwise be repeated in every shell: which transaction belongs to
//! which call or registration, which server transaction a dialog response
//! answers, where ACKs and 2xx retransmissions go (straight to the
//! transport), 481 for unknown dialogs and the automatic answers to
//! out-of-dialog OPTIONS and MESSAGE.
//!
//! Destinations are given by the caller (resolved with [`crate::resolve`]);
//! failing over to the next target is the caller's decision on `Timeout` or
//! 503.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::auth::{
    Authorization, Challenge, ChallengeKind, Credentials, DigestClient, DigestVerifier,
    VerifierConfig, VerifyError,
};
use crate::dialog::{Body, Call, CallConfig, DialogEvent, Send, unknown_dialog_response};
use crate::message::{Method, NameAddr, Request, Response, Uri, names};
use crate::registration::{Registration, RegistrationConfig, RegistrationEvent};
use crate::resolve::TargetList;
use crate::transaction::{
    self, Input, Output, TransactionId, TransactionLayer, Transmit, Transport, TxEvent,
};

/// How long an incoming MESSAGE waits for [`UserAgent::answer_message`]
/// before it is answered 500 (the sender gives up after 32 s, Timer F).
pub const MESSAGE_ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a peer that is down is probed, at most: its return should be
/// noticed in seconds, not after a whole keep-alive interval. While the peer
/// stays silent one OPTIONS transaction is in flight at a time (Timer F), so
/// this costs a retransmission every T2 and no more.
pub const DOWN_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Methods we accept, for `Allow` in OPTIONS answers.
const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, UPDATE, INFO, MESSAGE, OPTIONS, REFER, NOTIFY, PRACK";

/// Option tags a request may `Require` of us as UAS (RFC 4028 session
/// timers, RFC 3262 reliable provisional responses).
const UAS_EXTENSIONS: &[&str] = &["timer", "100rel"];

/// The option tags of `req`'s `Require` that we do not implement as UAS.
fn unsupported_requirements(req: &Request) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for tag in req
        .headers
        .get_all("Require")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let known = UAS_EXTENSIONS.iter().any(|k| k.eq_ignore_ascii_case(tag));
        if !known && !out.iter().any(|o| o.eq_ignore_ascii_case(tag)) {
            out.push(tag.to_owned());
        }
    }
    out
}

/// Settings of one user agent.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// Our Contact URI (user part optional).
    pub contact: Uri,
    /// `host:port` written in Via.
    pub sent_by: String,
    /// Transport token of that Via (`UDP`, `TCP` ...).
    pub via_transport: String,
    /// Interval between keep-alive OPTIONS to each peer.
    pub keepalive_interval: Duration,
    /// `User-Agent`/`Server` header value.
    pub user_agent: Option<String>,
    /// Seed for tags, Call-IDs and jitter.
    pub rng_seed: u64,
    /// Transaction layer settings (timers, 100 Trying).
    pub transactions: transaction::Config,
    /// Challenge incoming INVITEs with digest auth (desk phones calling in); `None` trusts the peer.
    pub inbound_auth: Option<InboundAuth>,
    /// Answer incoming out-of-dialog MESSAGEs 200 at once and report
    /// [`UaEvent::Message`] (`true`, the default), or report
    /// [`UaEvent::IncomingMessage`] and wait for
    /// [`UserAgent::answer_message`], so the application answers only once
    /// the message is stored, or refuses it.
    pub auto_answer_messages: bool,
}

/// Digest challenge settings for incoming INVITEs.
#[derive(Debug, Clone)]
pub struct InboundAuth {
    /// Realm, algorithm and nonce lifetime.
    pub verifier: VerifierConfig,
    /// Passwords by user name.
    pub users: HashMap<String, String>,
}

impl UaConfig {
    /// Defaults for a contact and sent-by: UDP, keep-alive every 30 s.
    pub fn new(contact: Uri, sent_by: &str, rng_seed: u64) -> Self {
        Self {
            contact,
            sent_by: sent_by.to_owned(),
            via_transport: "UDP".into(),
            keepalive_interval: Duration::from_secs(30),
            user_agent: None,
            rng_seed,
            transactions: transaction::Config {
                rng_seed: Some(rng_seed),
                sent_by: Some(sent_by.to_owned()),
                ..transaction::Config::default()
            },
            inbound_auth: None,
            auto_answer_messages: true,
        }
    }
}

/// Handle of a call leg owned by a [`UserAgent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallHandle(u64);

/// Handle of a registration owned by a [`UserAgent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegistrationHandle(u64);

/// Handle of a keep-alive peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerHandle(u64);

/// Handle of an out-of-dialog MESSAGE we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageHandle(u64);

/// Handle of a received MESSAGE that waits for [`UserAgent::answer_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IncomingMessageHandle(u64);

/// An out-of-dialog MESSAGE for [`UserAgent::send_message_with`].
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// Our URI in From.
    pub from: Uri,
    /// Display name in From (quoted and escaped when written).
    pub display_name: Option<String>,
    /// Request-URI and To.
    pub to: Uri,
    /// Content (`text/plain` for chat).
    pub body: Body,
    /// Answers one 401/407 challenge (and stale nonces) when set.
    pub credentials: Option<Credentials>,
}

/// What the user agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UaEvent {
    /// A new INVITE: ring, answer or reject it through [`UserAgent::call`].
    IncomingCall {
        /// The new leg.
        call: CallHandle,
        /// The INVITE (From, To, Request-URI for routing).
        invite: Box<Request>,
        /// The offer, if any.
        offer: Option<Body>,
    },
    /// Something happened on a call leg.
    Call {
        /// The leg.
        call: CallHandle,
        /// What happened.
        event: DialogEvent,
    },
    /// Something happened to a registration.
    Registration {
        /// The registration.
        registration: RegistrationHandle,
        /// What happened.
        event: RegistrationEvent,
    },
    /// A keep-alive peer answered after being down (or for the first time).
    PeerUp {
        /// The peer.
        peer: PeerHandle,
    },
    /// A keep-alive peer stopped answering.
    PeerDown {
        /// The peer.
        peer: PeerHandle,
    },
    /// An out-of-dialog MESSAGE arrived (already answered 200).
    Message {
        /// Sender.
        from: Box<NameAddr>,
        /// Recipient.
        to: Box<NameAddr>,
        /// Content.
        body: Option<Body>,
    },
    /// An out-of-dialog MESSAGE arrived and waits for
    /// [`UserAgent::answer_message`] (only with `auto_answer_messages` off;
    /// unanswered after [`MESSAGE_ANSWER_TIMEOUT`] it gets 500).
    IncomingMessage {
        /// Answer through this.
        message: IncomingMessageHandle,
        /// The request (Request-URI, From, To, Call-ID, CSeq, body).
        request: Box<Request>,
        /// Where it came from.
        source: SocketAddr,
    },
    /// The final outcome of a MESSAGE we sent; `status` is `None` on timeout.
    MessageResult {
        /// The message.
        message: MessageHandle,
        /// Final status, if any arrived.
        status: Option<u16>,
    },
}

/// Output of [`UserAgent::poll_output`]; always ends with `Timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaOutput {
    /// Bytes to send.
    Transmit(Transmit),
    /// Something for the application.
    Event(UaEvent),
    /// Call [`UserAgent::handle_timeout`] at this instant.
    Timeout(Instant),
}

/// Who owns a client transaction.
#[derive(Debug, Clone)]
enum Owner {
    Call(CallHandle, Method, u32),
    Registration(RegistrationHandle),
    Peer(PeerHandle),
    Message(MessageHandle),
}

#[derive(Debug)]
struct CallSlot {
    call: Call,
    dest: SocketAddr,
    transport: Transport,
    /// Server transactions of requests the call still has to answer, by (CSeq, method).
    server: HashMap<(u32, Method), TransactionId>,
    /// Remaining RFC 3263 targets for the initial INVITE (UAC only).
    targets: Option<TargetList>,
}

#[derive(Debug)]
struct RegSlot {
    reg: Registration,
    dest: SocketAddr,
    transport: Transport,
    /// RFC 3263 targets, rotated after a timeout or 503.
    targets: Option<TargetList>,
}

/// A MESSAGE we sent, kept until its final answer so a challenge can be answered.
#[derive(Debug)]
struct OutMessage {
    /// The request as first built, without Via: each resend gets a new branch.
    request: Request,
    dest: SocketAddr,
    transport: Transport,
    digest: Option<DigestClient>,
    /// A fresh challenge was answered once already.
    answered: bool,
    stale_retries: u8,
}

/// A received MESSAGE waiting for the application's answer.
#[derive(Debug)]
struct InMessage {
    transaction: TransactionId,
    request: Request,
    deadline: Instant,
}

#[derive(Debug)]
struct Peer {
    uri: Uri,
    dest: SocketAddr,
    transport: Transport,
    /// Time between the end of one OPTIONS and the next while the peer is up.
    interval: Duration,
    up: Option<bool>,
    next_ping: Instant,
    in_flight: bool,
}

/// One SIP socket's worth of protocol state.
pub struct UserAgent {
    config: UaConfig,
    layer: TransactionLayer,
    rng: StdRng,
    now: Instant,
    next_handle: u64,
    /// Boxed so that growing the map moves pointers, not whole calls.
    calls: HashMap<CallHandle, Box<CallSlot>>,
    /// Call-ID to leg, for routing requests and stray 2xx.
    by_call_id: HashMap<String, CallHandle>,
    regs: HashMap<RegistrationHandle, RegSlot>,
    peers: HashMap<PeerHandle, Peer>,
    owners: HashMap<TransactionId, Owner>,
    /// MESSAGEs we sent that have no final answer yet.
    out_messages: HashMap<MessageHandle, OutMessage>,
    /// Received MESSAGEs the application has not answered yet.
    in_messages: HashMap<IncomingMessageHandle, InMessage>,
    /// Nonce bookkeeping for `inbound_auth`.
    verifier: Option<DigestVerifier>,
    events: VecDeque<UaEvent>,
    transmits: VecDeque<Transmit>,
}

impl std::fmt::Debug for UserAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgent")
            .field("calls", &self.calls.len())
            .field("registrations", &self.regs.len())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl UserAgent {
    /// A user agent with nothing going on.
    pub fn new(config: UaConfig, now: Instant) -> Self {
        let verifier = config
            .inbound_auth
            .as_ref()
            .map(|a| DigestVerifier::new(a.verifier.clone()));
        Self {
            layer: TransactionLayer::new(config.transactions.clone(), now),
            rng: StdRng::seed_from_u64(config.rng_seed),
            config,
            now,
            next_handle: 1,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            regs: HashMap::new(),
            peers: HashMap::new(),
            owners: HashMap::new(),
            out_messages: HashMap::new(),
            in_messages: HashMap::new(),
            verifier,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
        }
    }

    // ---- inputs ----------------------------------------------------------

    /// Feeds one received datagram (or one framed stream message).
    pub fn handle_input(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        data: &[u8],
    ) {
        self.clamp(now);
        self.layer.handle_input(
            self.now,
            Input::Receive {
                from,
                transport,
                data,
            },
        );
        self.pump();
    }

    /// Reports that sending `transmit` failed.
    pub fn handle_transport_error(&mut self, now: Instant, transmit: &Transmit) {
        self.clamp(now);
        if let Some(id) = transmit.transaction {
            self.layer
                .handle_input(self.now, Input::TransportError { id });
        }
        self.pump();
    }

    /// Reports that a stream connection to `dest` could not be opened (or
    /// broke before an answer): every client transaction waiting on it fails
    /// now, as a transport error (RFC 3261 17.1.4), so a registration or a
    /// call moves to its next target at once instead of after Timer B or F.
    pub fn handle_unreachable(&mut self, now: Instant, dest: SocketAddr, transport: Transport) {
        self.clamp(now);
        for id in self.layer.waiting_on(dest, transport) {
            self.layer
                .handle_input(self.now, Input::TransportError { id });
        }
        self.pump();
    }

    /// Fires due timers of every layer; spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clamp(now);
        let now = self.now;
        self.layer.handle_timeout(now);
        for slot in self.calls.values_mut() {
            slot.call.handle_timeout(now);
        }
        for slot in self.regs.values_mut() {
            slot.reg.handle_timeout(now);
        }
        let due: Vec<PeerHandle> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.in_flight && p.next_ping <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in due {
            self.ping(h);
        }
        let late: Vec<IncomingMessageHandle> = self
            .in_messages
            .iter()
            .filter(|(_, m)| m.deadline <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in late {
            self.answer_message(now, h, 500, "Server Internal Error");
        }
        self.pump();
    }

    // ---- commands --------------------------------------------------------

    /// Starts an outgoing call to `dest`.
    pub fn invite(
        &mut self,
        now: Instant,
        config: CallConfig,
        offer: Option<Body>,
        dest: SocketAddr,
        transport: Transport,
    ) -> CallHandle {
        self.start_call(now, config, offer, dest, transport, None)
    }

    /// Starts an outgoing call to RFC 3263 targets, moving to the next one while
    /// the INVITE times out or gets 503 before any other response; `None` when the list is empty.
    pub fn invite_targets(
        &mut self,
        now: Instant,
        config: CallConfig,
        offer: Option<Body>,
        targets: TargetList,
    ) -> Option<CallHandle> {
        let first = *targets.current()?;
        Some(self.start_call(
            now,
            config,
            offer,
            first.addr,
            first.transport,
            Some(targets),
        ))
    }

    fn start_call(
        &mut self,
        now: Instant,
        config: CallConfig,
        offer: Option<Body>,
        dest: SocketAddr,
        transport: Transport,
        targets: Option<TargetList>,
    ) -> CallHandle {
        self.clamp(now);
        let seed = self.rng.next_u64();
        let call = Call::outgoing(config, self.now, offer, seed);
        let h = CallHandle(self.alloc());
        self.by_call_id.insert(call.call_id().to_owned(), h);
        self.calls.insert(
            h,
            Box::new(CallSlot {
                call,
                dest,
                transport,
                server: HashMap::new(),
                targets,
            }),
        );
        self.pump();
        h
    }

    /// Moves a call's INVITE to its next target; `false` when there is none or the call is past that point.
    fn fail_over(&mut self, h: CallHandle) -> bool {
        let Some(slot) = self.calls.get_mut(&h) else {
            return false;
        };
        let Some(next) = slot.targets.as_mut().and_then(|t| t.next_target().copied()) else {
            return false;
        };
        if slot.call.restart_invite().is_err() {
            return false;
        }
        slot.dest = next.addr;
        slot.transport = next.transport;
        true
    }

    /// How many call legs (dialogs, early or confirmed) the user agent holds;
    /// a count that does not return to zero once calls are over is a leak.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// How many transactions other than OPTIONS are alive (including those
    /// lingering in Completed or Accepted state for retransmissions);
    /// keep-alives are left out so the count returns to zero when idle.
    pub fn transaction_count(&self) -> usize {
        self.layer.len_without_options()
    }

    /// Borrows a call leg for an action (`ring`, `answer`, `hangup` ...); output follows on the next `poll_output`.
    pub fn call(&mut self, h: CallHandle) -> Option<&mut Call> {
        self.calls.get_mut(&h).map(|s| &mut s.call)
    }

    /// Starts registering with the registrar at `dest`.
    pub fn register(
        &mut self,
        now: Instant,
        config: RegistrationConfig,
        dest: SocketAddr,
        transport: Transport,
    ) -> RegistrationHandle {
        self.clamp(now);
        let seed = self.rng.next_u64();
        let mut reg = Registration::new(config, self.now, seed);
        reg.handle_timeout(self.now);
        let h = RegistrationHandle(self.alloc());
        self.regs.insert(
            h,
            RegSlot {
                reg,
                dest,
                transport,
                targets: None,
            },
        );
        self.pump();
        h
    }

    /// Registers with RFC 3263 targets, rotating to the next (and round again) after a timeout or 503;
    /// `None` when the list is empty.
    pub fn register_targets(
        &mut self,
        now: Instant,
        config: RegistrationConfig,
        targets: TargetList,
    ) -> Option<RegistrationHandle> {
        let first = *targets.current()?;
        let h = self.register(now, config, first.addr, first.transport);
        if let Some(slot) = self.regs.get_mut(&h) {
            slot.targets = Some(targets);
        }
        Some(h)
    }

    /// Un-registers (expires=0), e.g. on shutdown.
    pub fn unregister(&mut self, now: Instant, h: RegistrationHandle) {
        self.clamp(now);
        if let Some(slot) = self.regs.get_mut(&h) {
            slot.reg.unregister(self.now);
        }
        self.pump();
    }

    /// Starts OPTIONS keep-alives to a trunk peer every
    /// [`UaConfig::keepalive_interval`]; the first ping goes out now.
    pub fn add_peer(
        &mut self,
        now: Instant,
        uri: Uri,
        dest: SocketAddr,
        transport: Transport,
    ) -> PeerHandle {
        let interval = self.config.keepalive_interval;
        self.add_peer_every(now, uri, dest, transport, interval)
    }

    /// Starts OPTIONS keep-alives to a trunk peer every `interval` (a
    /// trunk's own setting); the first ping goes out now.
    ///
    /// The peer is reported up ([`UaEvent::PeerUp`]) on any final answer
    /// but a 5xx, and down ([`UaEvent::PeerDown`]) on a 5xx, a transaction
    /// timeout (Timer F) or a transport error; each only when it changes.
    /// While down it is probed every [`DOWN_PROBE_INTERVAL`] at most.
    pub fn add_peer_every(
        &mut self,
        now: Instant,
        uri: Uri,
        dest: SocketAddr,
        transport: Transport,
        interval: Duration,
    ) -> PeerHandle {
        self.clamp(now);
        let h = PeerHandle(self.alloc());
        self.peers.insert(
            h,
            Peer {
                uri,
                dest,
                transport,
                interval,
                up: None,
                next_ping: self.now,
                in_flight: false,
            },
        );
        self.ping(h);
        self.pump();
        h
    }

    /// Stops the keep-alives to a peer (a trunk removed by a reload); an
    /// OPTIONS still in flight finishes silently.
    pub fn remove_peer(&mut self, h: PeerHandle) {
        self.peers.remove(&h);
    }

    /// Whether a peer answered its last keep-alive; `None` before the first
    /// answer or timeout, or for an unknown handle.
    pub fn peer_up(&self, h: PeerHandle) -> Option<bool> {
        self.peers.get(&h).and_then(|p| p.up)
    }

    /// Sends a registration's REGISTER now instead of at its refresh or
    /// back-off time: its registrar was seen coming back after an outage
    /// and has probably forgotten the binding. A no-op while a REGISTER is
    /// in flight or after [`UserAgent::unregister`].
    pub fn refresh_registration(&mut self, now: Instant, h: RegistrationHandle) {
        self.clamp(now);
        if let Some(slot) = self.regs.get_mut(&h) {
            slot.reg.refresh_now(self.now);
        }
        self.pump();
    }

    /// Sends an out-of-dialog MESSAGE (RFC 3428).
    pub fn send_message(
        &mut self,
        now: Instant,
        from: Uri,
        to: Uri,
        body: Body,
        dest: SocketAddr,
        transport: Transport,
    ) -> MessageHandle {
        let msg = OutgoingMessage {
            from,
            display_name: None,
            to,
            body,
            credentials: None,
        };
        self.send_message_with(now, msg, dest, transport)
    }

    /// Sends an out-of-dialog MESSAGE (RFC 3428) with a display name and,
    /// when the PBX challenges it, digest credentials. The outcome is one
    /// [`UaEvent::MessageResult`].
    pub fn send_message_with(
        &mut self,
        now: Instant,
        msg: OutgoingMessage,
        dest: SocketAddr,
        transport: Transport,
    ) -> MessageHandle {
        self.clamp(now);
        let h = MessageHandle(self.alloc());
        let mut req = self.out_of_dialog(Method::Message, msg.from, msg.to);
        if let Some(name) = msg.display_name.as_deref()
            && let Ok(mut from) = req.headers.from()
        {
            from.display = Some(crate::dialog::quote_display(name));
            req.headers.set(names::FROM, from.to_string());
        }
        let req = req.with_body(&msg.body.content_type, msg.body.data);
        self.out_messages.insert(
            h,
            OutMessage {
                request: req.clone(),
                dest,
                transport,
                digest: msg.credentials.map(DigestClient::new),
                answered: false,
                stale_retries: 0,
            },
        );
        self.start(req, dest, transport, Owner::Message(h));
        self.pump();
        h
    }

    /// Answers a received MESSAGE reported as [`UaEvent::IncomingMessage`]
    /// with a final `status` (200 once it is stored, 403, 404, 415 ...).
    /// Returns `false` when the handle is unknown (already answered or
    /// timed out).
    pub fn answer_message(
        &mut self,
        now: Instant,
        h: IncomingMessageHandle,
        status: u16,
        reason: &str,
    ) -> bool {
        self.clamp(now);
        let Some(m) = self.in_messages.remove(&h) else {
            return false;
        };
        let status = if (200..700).contains(&status) {
            status
        } else {
            500
        };
        let tag = self.tag();
        let resp = Response::from_request(&m.request, status, reason).with_to_tag(&tag);
        let _ = self.layer.send_response(self.now, m.transaction, resp);
        self.pump();
        true
    }

    /// Resends a challenged MESSAGE with credentials; `false` when it must fail instead.
    fn answer_message_challenge(&mut self, h: MessageHandle, resp: &Response) -> bool {
        let header = if resp.status.0 == 407 {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let Some(challenge) = Challenge::select(resp.headers.get_all(header)) else {
            return false;
        };
        let Some(m) = self.out_messages.get_mut(&h) else {
            return false;
        };
        let Some(digest) = m.digest.as_mut() else {
            return false;
        };
        let retry = match digest.accept_challenge(challenge) {
            ChallengeKind::Stale if m.stale_retries < 2 => {
                m.stale_retries += 1;
                true
            }
            ChallengeKind::Fresh if !m.answered => {
                m.answered = true;
                true
            }
            _ => false,
        };
        if !retry {
            return false;
        }
        let uri = m.request.uri.to_string();
        let Ok(auth) = digest.authorize("MESSAGE", &uri, &m.request.body, &mut self.rng) else {
            return false;
        };
        let name = if resp.status.0 == 407 {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        // Same Call-ID and From tag, next CSeq (RFC 3261 8.1.3.5).
        let cseq = m.request.headers.cseq().map(|c| c.seq).unwrap_or(1) + 1;
        m.request
            .headers
            .set(names::CSEQ, format!("{cseq} MESSAGE"));
        m.request.headers.remove("Authorization");
        m.request.headers.remove("Proxy-Authorization");
        let req = m.request.clone().with_header(name, auth.to_string());
        let (dest, transport) = (m.dest, m.transport);
        self.start(req, dest, transport, Owner::Message(h));
        true
    }

    // ---- output ----------------------------------------------------------

    /// Next output; drain until `Timeout` after every input or command.
    pub fn poll_output(&mut self) -> UaOutput {
        self.pump();
        if let Some(t) = self.transmits.pop_front() {
            return UaOutput::Transmit(t);
        }
        if let Some(e) = self.events.pop_front() {
            return UaOutput::Event(e);
        }
        let mut next = self.layer.poll_timeout();
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for s in self.calls.values() {
            consider(s.call.poll_timeout());
        }
        for s in self.regs.values() {
            consider(s.reg.poll_timeout());
        }
        for p in self.peers.values() {
            if !p.in_flight {
                consider(Some(p.next_ping));
            }
        }
        for m in self.in_messages.values() {
            consider(Some(m.deadline));
        }
        UaOutput::Timeout(next.unwrap_or(self.now + Duration::from_secs(3600)))
    }

    // ---- internals -------------------------------------------------------

    fn clamp(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn alloc(&mut self) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    /// Moves work between the layers until nothing changes.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            // Transaction layer output first: events may make calls produce more.
            loop {
                match self.layer.poll_output() {
                    Output::Transmit(t) => {
                        progressed = true;
                        self.transmits.push_back(t);
                    }
                    Output::Event(e) => {
                        progressed = true;
                        self.on_tx_event(e);
                    }
                    Output::Timeout(_) => break,
                }
            }
            progressed |= self.drain_calls();
            progressed |= self.drain_regs();
            if !progressed {
                break;
            }
        }
        // Finished legs are dropped once nothing of theirs is pending (a challenged BYE may be resent).
        let done: Vec<CallHandle> = self
            .calls
            .iter()
            .filter(|(_, s)| s.call.is_finished())
            .map(|(h, _)| *h)
            .collect();
        for h in done {
            if let Some(s) = self.calls.remove(&h) {
                self.by_call_id.remove(s.call.call_id());
            }
        }
    }

    fn drain_calls(&mut self) -> bool {
        let mut progressed = false;
        let handles: Vec<CallHandle> = self.calls.keys().copied().collect();
        for h in handles {
            while let Some(slot) = self.calls.get_mut(&h) {
                if let Some(ev) = slot.call.poll_event() {
                    progressed = true;
                    self.events.push_back(UaEvent::Call { call: h, event: ev });
                    continue;
                }
                let Some(send) = slot.call.poll_transmit() else {
                    break;
                };
                progressed = true;
                let (dest, transport) = (slot.dest, slot.transport);
                match send {
                    Send::Request(req) => {
                        let method = req.method.clone();
                        let cseq = req.headers.cseq().map(|c| c.seq).unwrap_or(0);
                        self.start(req, dest, transport, Owner::Call(h, method, cseq));
                    }
                    Send::Ack(req) => self.layer.send_stateless(dest, transport, req.to_bytes()),
                    Send::Retransmit(resp) => {
                        self.layer.send_stateless(dest, transport, resp.to_bytes())
                    }
                    Send::Response(resp) => {
                        let key = resp.headers.cseq().map(|c| (c.seq, c.method)).ok();
                        let id = key.and_then(|k| {
                            let slot = self.calls.get_mut(&h)?;
                            if resp.status.is_final() {
                                slot.server.remove(&k)
                            } else {
                                slot.server.get(&k).copied()
                            }
                        });
                        match id {
                            Some(id) => {
                                // The transaction may be gone (e.g. it timed out); nothing else to do then.
                                let _ = self.layer.send_response(self.now, id, resp);
                            }
                            None => self.layer.send_stateless(dest, transport, resp.to_bytes()),
                        }
                    }
                }
            }
        }
        progressed
    }

    fn drain_regs(&mut self) -> bool {
        let mut progressed = false;
        let handles: Vec<RegistrationHandle> = self.regs.keys().copied().collect();
        for h in handles {
            while let Some(slot) = self.regs.get_mut(&h) {
                if let Some(ev) = slot.reg.poll_event() {
                    progressed = true;
                    if let RegistrationEvent::Failed {
                        status: None | Some(503),
                        ..
                    } = ev
                        && let Some(targets) = slot.targets.as_mut()
                    {
                        let next = match targets.next_target() {
                            Some(t) => Some(*t),
                            None => {
                                targets.rewind();
                                targets.current().copied()
                            }
                        };
                        if let Some(t) = next {
                            slot.dest = t.addr;
                            slot.transport = t.transport;
                        }
                    }
                    self.events.push_back(UaEvent::Registration {
                        registration: h,
                        event: ev,
                    });
                    continue;
                }
                let Some(req) = slot.reg.poll_transmit() else {
                    break;
                };
                progressed = true;
                let (dest, transport) = (slot.dest, slot.transport);
                self.start(req, dest, transport, Owner::Registration(h));
            }
        }
        progressed
    }

    /// Starts a client transaction and remembers who owns it.
    fn start(&mut self, req: Request, dest: SocketAddr, transport: Transport, owner: Owner) {
        match self.layer.send_request(self.now, req, dest, transport) {
            Ok(id) => {
                self.owners.insert(id, owner);
            }
            Err(_) => self.owner_failed(owner),
        }
    }

    /// The request could not even start (or its transaction died): report it like a timeout.
    fn owner_failed(&mut self, owner: Owner) {
        let now = self.now;
        match owner {
            Owner::Call(h, method, cseq) => {
                if method == Method::Invite && self.fail_over(h) {
                    return;
                }
                if let Some(s) = self.calls.get_mut(&h) {
                    s.call.handle_transaction_timeout(now, &method, cseq);
                }
            }
            Owner::Registration(h) => {
                if let Some(s) = self.regs.get_mut(&h) {
                    s.reg.handle_transaction_timeout(now);
                }
            }
            Owner::Peer(h) => self.peer_result(h, false),
            Owner::Message(h) => {
                self.out_messages.remove(&h);
                self.events.push_back(UaEvent::MessageResult {
                    message: h,
                    status: None,
                })
            }
        }
    }

    fn on_tx_event(&mut self, e: TxEvent) {
        let now = self.now;
        match e {
            TxEvent::Request {
                id,
                request,
                source,
                transport,
            } => self.on_request(id, request, source, transport),
            TxEvent::Response { id, response } => {
                let final_ = response.status.is_final();
                let owner = if final_ {
                    self.owners.remove(&id)
                } else {
                    self.owners.get(&id).cloned()
                };
                match owner {
                    Some(Owner::Call(h, Method::Invite, _))
                        if response.status.0 == 503 && self.fail_over(h) => {}
                    Some(Owner::Call(h, ..)) => {
                        if let Some(s) = self.calls.get_mut(&h) {
                            s.call.handle_response(now, &response);
                        }
                    }
                    Some(Owner::Registration(h)) => {
                        if let Some(s) = self.regs.get_mut(&h) {
                            s.reg.handle_response(now, &response);
                        }
                    }
                    // Any final answer, even 404, 405 or 407, proves the peer is alive;
                    // a 5xx says the PBX behind it cannot take calls now.
                    Some(Owner::Peer(h)) if final_ => self.peer_result(h, response.status.0 < 500),
                    Some(Owner::Message(h))
                        if matches!(response.status.0, 401 | 407)
                            && self.answer_message_challenge(h, &response) => {}
                    Some(Owner::Message(h)) if final_ => {
                        self.out_messages.remove(&h);
                        self.events.push_back(UaEvent::MessageResult {
                            message: h,
                            status: Some(response.status.0),
                        })
                    }
                    _ => {}
                }
            }
            TxEvent::Timeout { id, .. } | TxEvent::TransportError { id } => {
                if let Some(owner) = self.owners.remove(&id) {
                    self.owner_failed(owner);
                }
            }
            TxEvent::Ack { request, .. } => {
                if let Some(s) = self.call_for(&request) {
                    s.call.handle_request(now, &request);
                }
            }
            TxEvent::Invite2xxRetransmission { response } => {
                let h = response
                    .headers
                    .call_id()
                    .ok()
                    .and_then(|c| self.by_call_id.get(c).copied());
                if let Some(s) = h.and_then(|h| self.calls.get_mut(&h)) {
                    s.call.handle_response(now, &response);
                }
            }
            TxEvent::Cancelled { id: _, cancel } => {
                if let Some(s) = self.call_for(&cancel) {
                    s.call.handle_request(now, &cancel);
                }
            }
        }
    }

    /// An initial INVITE seen again after our 2xx ended its transaction: not a new call.
    fn absorb_retransmission(&mut self, id: TransactionId, req: &Request) -> bool {
        let Some(h) = req
            .headers
            .call_id()
            .ok()
            .and_then(|c| self.by_call_id.get(c).copied())
        else {
            return false;
        };
        let Some(slot) = self.calls.get_mut(&h) else {
            return false;
        };
        if !slot.call.absorb_invite_retransmission(req) {
            return false;
        }
        if let Ok(c) = req.headers.cseq() {
            slot.server.insert((c.seq, c.method), id);
        }
        true
    }

    fn call_for(&mut self, req: &Request) -> Option<&mut CallSlot> {
        let h = self.by_call_id.get(req.headers.call_id().ok()?).copied()?;
        let slot = self.calls.get_mut(&h)?;
        slot.call.accepts_request(req).then_some(slot)
    }

    fn on_request(
        &mut self,
        id: TransactionId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        let now = self.now;
        // RFC 3261 8.2.2.3: an extension we do not implement (e.g. 100rel, reliable
        // provisionals as UAS) is refused before anything else, naming it, so the peer
        // can retry without it. ACK and CANCEL are never refused this way.
        if !matches!(req.method, Method::Ack | Method::Cancel) {
            let unknown = unsupported_requirements(&req);
            if !unknown.is_empty() {
                let tag = self.tag();
                let resp = Response::from_request(&req, 420, "Bad Extension")
                    .with_header("Unsupported", unknown.join(", "))
                    .with_to_tag(&tag);
                let _ = self.layer.send_response(now, id, resp);
                return;
            }
        }
        let in_dialog = req.headers.to().ok().and_then(|t| t.tag).is_some();
        if in_dialog {
            let key = req.headers.cseq().map(|c| (c.seq, c.method)).ok();
            if let Some(slot) = self.call_for(&req) {
                if let Some(k) = key {
                    slot.server.insert(k, id);
                }
                slot.call.handle_request(now, &req);
                return;
            }
            if let Some(resp) = unknown_dialog_response(&req) {
                let _ = self.layer.send_response(now, id, resp);
            }
            return;
        }
        match req.method {
            Method::Invite if self.absorb_retransmission(id, &req) => {}
            Method::Invite => self.on_new_invite(id, req, source, transport),
            Method::Options => {
                let mut resp = Response::from_request(&req, 200, "OK")
                    .with_header("Allow", ALLOW)
                    .with_header("Accept", "application/sdp, text/plain")
                    .with_header("Supported", "timer");
                if let Some(ua) = &self.config.user_agent {
                    resp = resp.with_header("Server", ua.clone());
                }
                let tag = self.tag();
                let _ = self.layer.send_response(now, id, resp.with_to_tag(&tag));
            }
            Method::Message if !self.config.auto_answer_messages => {
                let h = IncomingMessageHandle(self.alloc());
                self.in_messages.insert(
                    h,
                    InMessage {
                        transaction: id,
                        request: req.clone(),
                        deadline: now + MESSAGE_ANSWER_TIMEOUT,
                    },
                );
                self.events.push_back(UaEvent::IncomingMessage {
                    message: h,
                    request: Box::new(req),
                    source,
                });
            }
            Method::Message => {
                let tag = self.tag();
                let resp = Response::from_request(&req, 200, "OK").with_to_tag(&tag);
                let _ = self.layer.send_response(now, id, resp);
                if let (Ok(from), Ok(to)) = (req.headers.from(), req.headers.to()) {
                    self.events.push_back(UaEvent::Message {
                        from: Box::new(from),
                        to: Box::new(to),
                        body: Body::of(&req.headers, &req.body),
                    });
                }
            }
            _ => {
                let resp = Response::from_request(&req, 405, "Method Not Allowed")
                    .with_header("Allow", ALLOW);
                let _ = self.layer.send_response(now, id, resp);
            }
        }
    }

    /// Checks the credentials of an incoming INVITE; `Some(response)` refuses it.
    fn authenticate(&mut self, req: &Request) -> Option<Response> {
        let (Some(verifier), Some(auth)) =
            (self.verifier.as_mut(), self.config.inbound_auth.as_ref())
        else {
            return None;
        };
        let creds = req
            .headers
            .get("Authorization")
            .and_then(|v| Authorization::parse(v).ok());
        let stale = match creds {
            None => false,
            Some(c) => {
                let Some(password) = auth.users.get(&c.username) else {
                    return Some(Response::from_request(req, 403, "Forbidden"));
                };
                let uri = req.uri.to_string();
                match verifier.verify(self.now, &c, "INVITE", &uri, password, &req.body) {
                    Ok(()) => return None,
                    Err(VerifyError::StaleNonce | VerifyError::Replay) => true,
                    Err(_) => return Some(Response::from_request(req, 403, "Forbidden")),
                }
            }
        };
        let challenge = verifier.challenge(self.now, stale, &mut self.rng);
        Some(
            Response::from_request(req, 401, "Unauthorized")
                .with_header("WWW-Authenticate", challenge.to_string()),
        )
    }

    fn on_new_invite(
        &mut self,
        id: TransactionId,
        req: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        if let Some(refusal) = self.authenticate(&req) {
            let tag = self.tag();
            let _ = self
                .layer
                .send_response(self.now, id, refusal.with_to_tag(&tag));
            return;
        }
        let mut config = CallConfig::new(
            self.config.contact.clone(),
            self.config.contact.clone(),
            self.config.contact.clone(),
            (
                // our in-dialog requests travel the way the INVITE came
                if transport == Transport::Udp {
                    self.config.via_transport.clone()
                } else {
                    transport.via_token().to_owned()
                },
                self.config.sent_by.clone(),
            ),
        );
        config.user_agent = self.config.user_agent.clone();
        let seed = self.rng.next_u64();
        match Call::incoming(config, self.now, &req, seed) {
            Ok(call) => {
                let h = CallHandle(self.alloc());
                let mut server = HashMap::new();
                if let Ok(c) = req.headers.cseq() {
                    server.insert((c.seq, c.method), id);
                }
                self.by_call_id.insert(call.call_id().to_owned(), h);
                self.calls.insert(
                    h,
                    Box::new(CallSlot {
                        call,
                        dest: source,
                        transport,
                        server,
                        targets: None,
                    }),
                );
                let offer = Body::of(&req.headers, &req.body);
                self.events.push_back(UaEvent::IncomingCall {
                    call: h,
                    invite: Box::new(req),
                    offer,
                });
            }
            Err(resp) => {
                let _ = self.layer.send_response(self.now, id, *resp);
            }
        }
    }

    fn ping(&mut self, h: PeerHandle) {
        let Some(p) = self.peers.get_mut(&h) else {
            return;
        };
        p.in_flight = true;
        let (uri, dest, transport) = (p.uri.clone(), p.dest, p.transport);
        let req = self.out_of_dialog(Method::Options, self.config.contact.clone(), uri);
        self.start(req, dest, transport, Owner::Peer(h));
    }

    fn peer_result(&mut self, h: PeerHandle, alive: bool) {
        let now = self.now;
        let Some(p) = self.peers.get_mut(&h) else {
            return;
        };
        p.in_flight = false;
        p.next_ping = now
            + if alive {
                p.interval
            } else {
                p.interval.min(DOWN_PROBE_INTERVAL)
            };
        if p.up != Some(alive) {
            p.up = Some(alive);
            self.events.push_back(if alive {
                UaEvent::PeerUp { peer: h }
            } else {
                UaEvent::PeerDown { peer: h }
            });
        }
    }

    /// A request outside any dialog: fresh Call-ID and From tag, CSeq 1.
    fn out_of_dialog(&mut self, method: Method, from: Uri, to: Uri) -> Request {
        let mut from = NameAddr::new(from);
        from.tag = Some(self.tag());
        let call_id = self.layer.new_call_id(&self.config.contact.host);
        let mut req = Request::new(method.clone(), to.clone())
            .with_header(names::FROM, from.to_string())
            .with_header(names::TO, NameAddr::new(to).to_string())
            .with_header(names::CALL_ID, call_id)
            .with_header(names::CSEQ, format!("1 {method}"))
            .with_header(names::MAX_FORWARDS, "70");
        if let Some(ua) = &self.config.user_agent {
            req = req.with_header("User-Agent", ua.clone());
        }
        req
    }

    fn tag(&mut self) -> String {
        self.layer.new_tag()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::TerminatedReason;

    const A: &str = "192.0.2.1:5060";
    const B: &str = "192.0.2.2:5060";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn uri(s: &str) -> Uri {
        Uri::parse(s).expect("test uri")
    }

    /// Two user agents joined by an instant network that can black-hole B.
    struct Net {
        a: UserAgent,
        b: UserAgent,
        now: Instant,
        b_unreachable: bool,
        /// Packets whose first line starts with one of these are dropped once each.
        drop_once: Vec<&'static str>,
        ev_a: Vec<UaEvent>,
        ev_b: Vec<UaEvent>,
    }

    impl Net {
        fn new() -> Self {
            let now = Instant::now();
            let a = UserAgent::new(UaConfig::new(uri("sip:gw@192.0.2.1:5060"), A, 1), now);
            let b = UserAgent::new(UaConfig::new(uri("sip:pbx@192.0.2.2:5060"), B, 2), now);
            Self {
                a,
                b,
                now,
                b_unreachable: false,
                drop_once: Vec::new(),
                ev_a: Vec::new(),
                ev_b: Vec::new(),
            }
        }

        /// Drains both agents and delivers packets until quiet; returns the earliest timeout.
        fn settle(&mut self) -> Instant {
            loop {
                let mut moved = false;
                let mut to_b = Vec::new();
                let mut to_a = Vec::new();
                let ta = loop {
                    match self.a.poll_output() {
                        UaOutput::Transmit(t) => to_b.push(t),
                        UaOutput::Event(e) => self.ev_a.push(e),
                        UaOutput::Timeout(t) => break t,
                    }
                };
                let tb = loop {
                    match self.b.poll_output() {
                        UaOutput::Transmit(t) => to_a.push(t),
                        UaOutput::Event(e) => self.ev_b.push(e),
                        UaOutput::Timeout(t) => break t,
                    }
                };
                for t in to_b {
                    moved = true;
                    // Anything not addressed to B is lost (a dead target).
                    if t.dest == addr(B) && !self.b_unreachable && !self.lose(&t.data) {
                        self.b
                            .handle_input(self.now, addr(A), Transport::Udp, &t.data);
                    }
                }
                for t in to_a {
                    moved = true;
                    assert_eq!(t.dest, addr(A));
                    if !self.b_unreachable && !self.lose(&t.data) {
                        self.a
                            .handle_input(self.now, addr(B), Transport::Udp, &t.data);
                    }
                }
                if !moved {
                    return ta.min(tb);
                }
            }
        }

        /// Whether this packet is one of the `drop_once` victims.
        fn lose(&mut self, data: &[u8]) -> bool {
            let text = String::from_utf8_lossy(data);
            match self.drop_once.iter().position(|p| text.starts_with(p)) {
                Some(i) => {
                    self.drop_once.remove(i);
                    true
                }
                None => false,
            }
        }

        /// Advances time timeout by timeout until `until`.
        fn run_until(&mut self, until: Instant) {
            loop {
                let next = self.settle();
                if next > until {
                    self.now = until;
                    self.a.handle_timeout(until);
                    self.b.handle_timeout(until);
                    self.settle();
                    return;
                }
                self.now = next;
                self.a.handle_timeout(next);
                self.b.handle_timeout(next);
            }
        }

        fn call_events(events: &mut Vec<UaEvent>) -> Vec<DialogEvent> {
            let mut out = Vec::new();
            events.retain(|e| match e {
                UaEvent::Call { event, .. } => {
                    out.push(event.clone());
                    false
                }
                _ => true,
            });
            out
        }
    }

    fn call_config() -> CallConfig {
        CallConfig::new(
            uri("sip:gw@192.0.2.1"),
            uri("sip:200@192.0.2.2"),
            uri("sip:gw@192.0.2.1:5060"),
            ("UDP".into(), A.into()),
        )
    }

    /// A calls B through both transaction layers: ringing, answer, ACK, BYE.
    #[test]
    fn call_between_two_agents() {
        let mut net = Net::new();
        let t0 = net.now;
        let ca = net.a.invite(
            t0,
            call_config(),
            Some(Body::sdp("v=0 a")),
            addr(B),
            Transport::Udp,
        );
        net.settle();
        let Some(UaEvent::IncomingCall {
            call: cb,
            offer,
            invite,
        }) = net.ev_b.pop()
        else {
            panic!("expected IncomingCall, got {:?}", net.ev_b);
        };
        assert_eq!(offer, Some(Body::sdp("v=0 a")));
        assert_eq!(invite.uri.to_string(), "sip:200@192.0.2.2");
        net.b
            .call(cb)
            .expect("leg")
            .ring(net.now, 180, None)
            .expect("unanswered");
        net.settle();
        assert!(matches!(
            Net::call_events(&mut net.ev_a).as_slice(),
            [DialogEvent::Ringing { status: 180, .. }]
        ));
        net.b
            .call(cb)
            .expect("leg")
            .answer(net.now, Some(Body::sdp("v=0 b")))
            .expect("unanswered");
        net.settle();
        assert_eq!(
            Net::call_events(&mut net.ev_a),
            vec![DialogEvent::Answered {
                body: Some(Body::sdp("v=0 b"))
            }]
        );
        assert_eq!(
            Net::call_events(&mut net.ev_b),
            vec![DialogEvent::Answered { body: None }]
        );

        // A minute passes without retransmission storms or spurious events.
        net.run_until(t0 + Duration::from_secs(60));
        assert!(
            net.ev_a.is_empty() && net.ev_b.is_empty(),
            "{:?} {:?}",
            net.ev_a,
            net.ev_b
        );

        net.a.call(ca).expect("leg").hangup().expect("confirmed");
        net.settle();
        assert_eq!(
            Net::call_events(&mut net.ev_a),
            vec![DialogEvent::Terminated {
                reason: TerminatedReason::LocalBye
            }]
        );
        assert_eq!(
            Net::call_events(&mut net.ev_b),
            vec![DialogEvent::Terminated {
                reason: TerminatedReason::RemoteBye
            }]
        );
        assert!(
            net.a.call(ca).is_none() && net.b.call(cb).is_none(),
            "finished legs are dropped"
        );
    }

    /// CANCEL before answer: the layer answers the CANCEL, the leg answers 487, both sides end Cancelled.
    #[test]
    fn cancel_through_agents() {
        let mut net = Net::new();
        let ca = net
            .a
            .invite(net.now, call_config(), None, addr(B), Transport::Udp);
        net.settle();
        let Some(UaEvent::IncomingCall { call: cb, .. }) = net.ev_b.pop() else {
            panic!("expected IncomingCall");
        };
        net.b
            .call(cb)
            .expect("leg")
            .ring(net.now, 180, None)
            .expect("unanswered");
        net.settle();
        net.a.call(ca).expect("leg").cancel().expect("unanswered");
        net.settle();
        assert_eq!(
            Net::call_events(&mut net.ev_b),
            vec![DialogEvent::Terminated {
                reason: TerminatedReason::Cancelled
            }]
        );
        assert_eq!(
            Net::call_events(&mut net.ev_a),
            vec![
                DialogEvent::Ringing {
                    status: 180,
                    body: None
                },
                DialogEvent::Terminated {
                    reason: TerminatedReason::Cancelled
                }
            ]
        );
    }

    /// OPTIONS keep-alive: up at once, down after Timer F when the peer goes silent, up again after.
    #[test]
    fn keepalive_marks_peer_up_and_down() {
        let mut net = Net::new();
        let t0 = net.now;
        let p = net
            .a
            .add_peer(t0, uri("sip:192.0.2.2"), addr(B), Transport::Udp);
        net.settle();
        assert_eq!(net.ev_a, vec![UaEvent::PeerUp { peer: p }]);
        net.ev_a.clear();
        net.b_unreachable = true;
        // Next ping at 30 s; Timer F = 64*T1 = 32 s later it is declared down.
        net.run_until(t0 + Duration::from_secs(61));
        assert!(net.ev_a.is_empty(), "still within Timer F: {:?}", net.ev_a);
        net.run_until(t0 + Duration::from_secs(63));
        assert_eq!(net.ev_a, vec![UaEvent::PeerDown { peer: p }]);
        net.ev_a.clear();
        net.b_unreachable = false;
        net.run_until(t0 + Duration::from_secs(100));
        assert_eq!(net.ev_a, vec![UaEvent::PeerUp { peer: p }]);
    }

    /// A peer's own interval spaces its pings; a 5xx answer marks it down and
    /// brings the next probe within [`DOWN_PROBE_INTERVAL`]; a 200 marks it up.
    #[test]
    fn keepalive_interval_per_peer_and_5xx_is_down() {
        let now = Instant::now();
        let mut ua = UserAgent::new(UaConfig::new(uri("sip:gw@192.0.2.1:5060"), A, 1), now);
        let p = ua.add_peer_every(
            now,
            uri("sip:192.0.2.2"),
            addr(B),
            Transport::Udp,
            Duration::from_secs(7),
        );
        // Drains the output: the OPTIONS sent, if any, and the events.
        let drain = |ua: &mut UserAgent| {
            let mut options = None;
            let mut events = Vec::new();
            loop {
                match ua.poll_output() {
                    UaOutput::Transmit(t) => {
                        if let Ok(crate::message::SipMessage::Request(req)) =
                            crate::message::parse_message(&t.data)
                        {
                            assert_eq!(req.method, Method::Options);
                            options = Some(req);
                        }
                    }
                    UaOutput::Event(e) => events.push(e),
                    UaOutput::Timeout(_) => break,
                }
            }
            (options, events)
        };
        // Answers `req` with `status` at `at`; returns the events.
        let answer = |ua: &mut UserAgent, at: Instant, req: &Request, status: u16| {
            let resp = Response::from_request(req, status, "Whatever");
            ua.handle_input(at, addr(B), Transport::Udp, &resp.to_bytes());
            drain(ua).1
        };
        let (first, _) = drain(&mut ua);
        let first = first.expect("the first ping goes out at once");
        assert_eq!(
            ua.transaction_count(),
            0,
            "keep-alives are not counted as transactions to leak"
        );
        assert_eq!(
            answer(&mut ua, now, &first, 200),
            vec![UaEvent::PeerUp { peer: p }]
        );
        assert_eq!(ua.peer_up(p), Some(true));
        // Up: the next ping after the peer's own 7 s, not the UA default 30 s.
        ua.handle_timeout(now + Duration::from_millis(6_900));
        assert!(drain(&mut ua).0.is_none(), "no ping before 7 s");
        let t7 = now + Duration::from_secs(7);
        ua.handle_timeout(t7);
        let second = drain(&mut ua).0.expect("a ping at 7 s");
        assert_eq!(
            answer(&mut ua, t7, &second, 503),
            vec![UaEvent::PeerDown { peer: p }]
        );
        assert_eq!(ua.peer_up(p), Some(false));
        // Down: probed again after DOWN_PROBE_INTERVAL.
        ua.handle_timeout(t7 + DOWN_PROBE_INTERVAL - Duration::from_millis(100));
        assert!(drain(&mut ua).0.is_none(), "no probe before the interval");
        let t9 = t7 + DOWN_PROBE_INTERVAL;
        ua.handle_timeout(t9);
        let third = drain(&mut ua).0.expect("a probe while down");
        // 407 (a PBX that challenges OPTIONS) is an answer: up again.
        assert_eq!(
            answer(&mut ua, t9, &third, 407),
            vec![UaEvent::PeerUp { peer: p }]
        );
        let next3 = t9 + Duration::from_secs(7);
        ua.remove_peer(p);
        assert_eq!(ua.peer_up(p), None);
        ua.handle_timeout(next3);
        assert!(drain(&mut ua).0.is_none(), "a removed peer is not pinged");
    }

    /// A request requiring an extension we lack gets 420 naming it (RFC 3261 8.2.2.3);
    /// one requiring only session timers goes on.
    #[test]
    fn unknown_required_extensions_get_420() {
        let now = Instant::now();
        let mut ua = UserAgent::new(UaConfig::new(uri("sip:gw@192.0.2.1:5060"), A, 1), now);
        let request = |require: &str, branch: &str| {
            format!(
                "OPTIONS sip:gw@192.0.2.1 SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK{branch}\r\n\
                 From: <sip:pbx@192.0.2.2>;tag=f1\r\n\
                 To: <sip:gw@192.0.2.1>\r\n\
                 Call-ID: {branch}@192.0.2.2\r\n\
                 CSeq: 1 OPTIONS\r\n\
                 Max-Forwards: 70\r\n\
                 Require: {require}\r\n\
                 Content-Length: 0\r\n\r\n"
            )
        };
        let answer = |ua: &mut UserAgent, msg: String| -> String {
            ua.handle_input(now, addr(B), Transport::Udp, msg.as_bytes());
            loop {
                match ua.poll_output() {
                    UaOutput::Transmit(t) => return String::from_utf8_lossy(&t.data).into_owned(),
                    UaOutput::Event(_) => {}
                    UaOutput::Timeout(_) => panic!("no answer to {msg}"),
                }
            }
        };
        let refused = answer(&mut ua, request("100rel, timer, Foo, 100rel", "a1"));
        assert!(
            refused.starts_with("SIP/2.0 420 Bad Extension\r\n"),
            "{refused}"
        );
        assert!(refused.contains("\r\nUnsupported: Foo\r\n"), "{refused}");
        let fine = answer(&mut ua, request("100rel, timer", "a2"));
        assert!(fine.starts_with("SIP/2.0 200 OK\r\n"), "{fine}");
    }

    fn text(s: &str) -> Body {
        Body {
            content_type: "text/plain".into(),
            data: s.to_owned().into_bytes().into(),
        }
    }

    /// With `auto_answer_messages` off, a MESSAGE waits for the
    /// application: the sender sees exactly the status it chose.
    #[test]
    fn incoming_message_waits_for_the_application_answer() {
        let mut net = Net::new();
        let mut cfg = UaConfig::new(uri("sip:pbx@192.0.2.2:5060"), B, 2);
        cfg.auto_answer_messages = false;
        net.b = UserAgent::new(cfg, net.now);
        let m = net.a.send_message_with(
            net.now,
            OutgoingMessage {
                from: uri("sip:alice@192.0.2.1"),
                display_name: Some("Alice \"A\"".into()),
                to: uri("sip:100@192.0.2.2"),
                body: text("hello"),
                credentials: None,
            },
            addr(B),
            Transport::Udp,
        );
        net.settle();
        assert!(net.ev_a.is_empty(), "{:?}", net.ev_a);
        let [
            UaEvent::IncomingMessage {
                message,
                request,
                source,
            },
        ] = net.ev_b.as_slice()
        else {
            panic!("expected an IncomingMessage, got {:?}", net.ev_b);
        };
        assert_eq!(*source, addr(A));
        assert_eq!(request.uri.to_string(), "sip:100@192.0.2.2");
        let from = request.headers.from().expect("from");
        assert_eq!(from.display.as_deref(), Some("Alice \\\"A\\\""));
        assert_eq!(&request.body[..], b"hello");
        let h = *message;
        assert!(net.b.answer_message(net.now, h, 404, "Not Found"));
        assert!(
            !net.b.answer_message(net.now, h, 200, "OK"),
            "answered once only"
        );
        net.settle();
        assert_eq!(
            net.ev_a,
            vec![UaEvent::MessageResult {
                message: m,
                status: Some(404)
            }]
        );
    }

    /// An unanswered MESSAGE gets 500 before the sender's Timer F fires.
    #[test]
    fn unanswered_incoming_message_times_out_with_500() {
        let mut net = Net::new();
        let mut cfg = UaConfig::new(uri("sip:pbx@192.0.2.2:5060"), B, 2);
        cfg.auto_answer_messages = false;
        net.b = UserAgent::new(cfg, net.now);
        let m = net.a.send_message(
            net.now,
            uri("sip:gw@192.0.2.1"),
            uri("sip:100@192.0.2.2"),
            text("hi"),
            addr(B),
            Transport::Udp,
        );
        let start = net.now;
        net.run_until(start + MESSAGE_ANSWER_TIMEOUT + Duration::from_secs(1));
        assert_eq!(
            net.ev_a,
            vec![UaEvent::MessageResult {
                message: m,
                status: Some(500)
            }]
        );
    }

    /// A 407 to a MESSAGE is answered once with Proxy-Authorization, same
    /// Call-ID, next CSeq; a second 407 for the same nonce is the result.
    #[test]
    fn challenged_message_is_resent_once_with_credentials() {
        use crate::message::SipMessage;
        use crate::message::parse::parse_message;
        let now = Instant::now();
        let mut a = UserAgent::new(UaConfig::new(uri("sip:gw@192.0.2.1:5060"), A, 1), now);
        let m = a.send_message_with(
            now,
            OutgoingMessage {
                from: uri("sip:alice@192.0.2.1"),
                display_name: None,
                to: uri("sip:100@pbx.lab"),
                body: text("hi"),
                credentials: Some(Credentials::new("trunk", "secret")),
            },
            addr(B),
            Transport::Udp,
        );
        let mut sent = Vec::new();
        let mut events = Vec::new();
        let drain = |a: &mut UserAgent, sent: &mut Vec<Request>, events: &mut Vec<UaEvent>| loop {
            match a.poll_output() {
                UaOutput::Transmit(t) => match parse_message(&t.data) {
                    Ok(SipMessage::Request(r)) => sent.push(r),
                    other => panic!("unexpected {other:?}"),
                },
                UaOutput::Event(e) => events.push(e),
                UaOutput::Timeout(_) => break,
            }
        };
        drain(&mut a, &mut sent, &mut events);
        assert_eq!(sent.len(), 1);
        let challenge = |req: &Request| {
            Response::from_request(req, 407, "Proxy Authentication Required")
                .with_to_tag("t1")
                .with_header(
                    "Proxy-Authenticate",
                    r#"Digest realm="pbx.lab", nonce="n1", qop="auth""#,
                )
        };
        let first = sent[0].clone();
        a.handle_input(now, addr(B), Transport::Udp, &challenge(&first).to_bytes());
        drain(&mut a, &mut sent, &mut events);
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(sent.len(), 2);
        let second = sent[1].clone();
        assert_eq!(second.headers.call_id().ok(), first.headers.call_id().ok());
        assert_eq!(second.headers.cseq().expect("cseq").seq, 2);
        let auth = second
            .headers
            .get("Proxy-Authorization")
            .expect("credentials");
        assert!(auth.contains(r#"username="trunk""#), "{auth}");
        assert_eq!(&second.body[..], b"hi");
        a.handle_input(now, addr(B), Transport::Udp, &challenge(&second).to_bytes());
        drain(&mut a, &mut sent, &mut events);
        assert_eq!(sent.len(), 2, "no third try for a repeated nonce");
        assert_eq!(
            events,
            vec![UaEvent::MessageResult {
                message: m,
                status: Some(407)
            }]
        );
    }

    /// MESSAGE outside a dialog is delivered and answered 200; unknown methods get 405.
    #[test]
    fn message_and_registration_results() {
        let mut net = Net::new();
        let m = net.a.send_message(
            net.now,
            uri("sip:gw@192.0.2.1"),
            uri("sip:100@192.0.2.2"),
            Body {
                content_type: "text/plain".into(),
                data: "hello".into(),
            },
            addr(B),
            Transport::Udp,
        );
        net.settle();
        assert_eq!(
            net.ev_a,
            vec![UaEvent::MessageResult {
                message: m,
                status: Some(200)
            }]
        );
        let [UaEvent::Message { from, body, .. }] = net.ev_b.as_slice() else {
            panic!("expected a Message, got {:?}", net.ev_b);
        };
        assert_eq!(from.uri.to_string(), "sip:gw@192.0.2.1");
        assert_eq!(body.as_ref().map(|b| &b.data[..]), Some(&b"hello"[..]));
        net.ev_a.clear();

        // B is no registrar: REGISTER gets 405 and the registration reports the failure.
        let cfg = RegistrationConfig::new(
            uri("sip:gw@192.0.2.2"),
            uri("sip:192.0.2.2"),
            uri("sip:gw@192.0.2.1:5060"),
            ("UDP".into(), A.into()),
        );
        let r = net.a.register(net.now, cfg, addr(B), Transport::Udp);
        net.settle();
        assert!(
            matches!(
                net.ev_a.as_slice(),
                [UaEvent::Registration { registration, event: RegistrationEvent::Failed { status: Some(405), .. } }]
                    if *registration == r
            ),
            "{:?}",
            net.ev_a
        );
    }

    /// Desk phones calling in are challenged: the right password gets through, a wrong one gets 403.
    #[test]
    fn inbound_invite_is_challenged() {
        for (password, expect_call) in [("s3cret", true), ("wrong", false)] {
            let now = Instant::now();
            let a = UserAgent::new(UaConfig::new(uri("sip:gw@192.0.2.1:5060"), A, 1), now);
            let mut cfg_b = UaConfig::new(uri("sip:pbx@192.0.2.2:5060"), B, 2);
            cfg_b.inbound_auth = Some(InboundAuth {
                verifier: VerifierConfig::new("namecall"),
                users: HashMap::from([("desk1".to_owned(), "s3cret".to_owned())]),
            });
            let b = UserAgent::new(cfg_b, now);
            let mut net = Net {
                a,
                b,
                now,
                b_unreachable: false,
                drop_once: Vec::new(),
                ev_a: Vec::new(),
                ev_b: Vec::new(),
            };
            let mut cfg = call_config();
            cfg.credentials = Some(crate::auth::Credentials::new("desk1", password));
            net.a.invite(now, cfg, None, addr(B), Transport::Udp);
            net.settle();
            let incoming = net
                .ev_b
                .iter()
                .any(|e| matches!(e, UaEvent::IncomingCall { .. }));
            assert_eq!(incoming, expect_call, "password {password}");
            if !expect_call {
                assert_eq!(
                    Net::call_events(&mut net.ev_a),
                    vec![DialogEvent::Terminated {
                        reason: TerminatedReason::Rejected(403)
                    }]
                );
            }
        }
    }

    /// A dead first target: the INVITE times out (Timer B) and moves to the next target.
    #[test]
    fn invite_fails_over_to_next_target() {
        use crate::resolve::Target;
        let mut net = Net::new();
        let t0 = net.now;
        let dead = Target {
            transport: Transport::Udp,
            addr: addr("192.0.2.99:5060"),
        };
        let live = Target {
            transport: Transport::Udp,
            addr: addr(B),
        };
        let empty = net
            .a
            .invite_targets(t0, call_config(), None, TargetList::new(Vec::new()));
        assert!(empty.is_none());
        net.a
            .invite_targets(t0, call_config(), None, TargetList::new(vec![dead, live]))
            .expect("targets");
        net.run_until(t0 + Duration::from_secs(31));
        assert!(net.ev_b.is_empty(), "still trying the dead target");
        net.run_until(t0 + Duration::from_secs(33));
        assert!(
            matches!(net.ev_b.as_slice(), [UaEvent::IncomingCall { .. }]),
            "{:?}",
            net.ev_b
        );
        assert!(net.ev_a.is_empty(), "failover is silent: {:?}", net.ev_a);
    }

    /// A registrar that times out makes the registration move on to the next target.
    #[test]
    fn registration_rotates_targets_after_timeout() {
        use crate::resolve::Target;
        let mut net = Net::new();
        let t0 = net.now;
        let targets = TargetList::new(vec![
            Target {
                transport: Transport::Udp,
                addr: addr("192.0.2.98:5060"),
            },
            Target {
                transport: Transport::Udp,
                addr: addr(B),
            },
        ]);
        let cfg = RegistrationConfig::new(
            uri("sip:gw@192.0.2.2"),
            uri("sip:192.0.2.2"),
            uri("sip:gw@192.0.2.1:5060"),
            ("UDP".into(), A.into()),
        );
        net.a.register_targets(t0, cfg, targets).expect("targets");
        // Timer F (32 s) on the dead registrar, then a 2 s (+-20 %) back-off, then B answers 405.
        net.run_until(t0 + Duration::from_secs(36));
        let statuses: Vec<Option<u16>> = net
            .ev_a
            .iter()
            .filter_map(|e| match e {
                UaEvent::Registration {
                    event: RegistrationEvent::Failed { status, .. },
                    ..
                } => Some(*status),
                _ => None,
            })
            .collect();
        assert_eq!(statuses, [None, Some(405)], "{:?}", net.ev_a);
    }

    /// An INVITE retransmitted after our 200 is answered with the same 200, not taken as a new call.
    #[test]
    fn invite_retransmission_after_2xx_is_not_a_new_call() {
        let mut net = Net::new();
        net.a
            .invite(net.now, call_config(), None, addr(B), Transport::Udp);
        let UaOutput::Transmit(first) = net.a.poll_output() else {
            panic!("expected the INVITE");
        };
        net.b
            .handle_input(net.now, addr(A), Transport::Udp, &first.data);
        net.settle();
        let Some(UaEvent::IncomingCall { call: cb, .. }) = net.ev_b.pop() else {
            panic!("expected IncomingCall");
        };
        net.b
            .call(cb)
            .expect("leg")
            .answer(net.now, None)
            .expect("unanswered");
        net.settle();
        net.ev_a.clear();
        net.ev_b.clear();
        // The same INVITE arrives again (the UAC never saw our 100 or 200).
        let replies = |net: &mut Net| {
            net.b
                .handle_input(net.now, addr(A), Transport::Udp, &first.data);
            let mut replies = Vec::new();
            loop {
                match net.b.poll_output() {
                    UaOutput::Transmit(t) => {
                        replies.push(String::from_utf8_lossy(&t.data).into_owned())
                    }
                    UaOutput::Event(e) => panic!("unexpected event {e:?}"),
                    UaOutput::Timeout(_) => break,
                }
            }
            replies
        };
        // RFC 6026 8.5: the Accepted transaction absorbs it silently; the
        // dialog's own 2xx retransmission covers a lost 200.
        assert_eq!(replies(&mut net), Vec::<String>::new());
        // After Timer L the transaction is gone; the dialog still knows the
        // INVITE and answers it with the 200 instead of starting a new call.
        net.run_until(net.now + Duration::from_secs(33));
        net.ev_a.clear();
        net.ev_b.clear();
        let again = replies(&mut net);
        assert!(
            again.iter().any(|r| r.starts_with("SIP/2.0 200")),
            "{again:?}"
        );
    }

    /// A lost 200 and a lost ACK are recovered by 2xx retransmission and re-ACK.
    #[test]
    fn lost_200_and_ack_are_recovered() {
        let mut net = Net::new();
        let t0 = net.now;
        net.drop_once = vec!["SIP/2.0 200", "ACK "];
        net.a
            .invite(t0, call_config(), None, addr(B), Transport::Udp);
        net.settle();
        let Some(UaEvent::IncomingCall { call: cb, .. }) = net.ev_b.pop() else {
            panic!("expected IncomingCall");
        };
        net.b
            .call(cb)
            .expect("leg")
            .answer(t0, None)
            .expect("unanswered");
        net.settle();
        assert!(Net::call_events(&mut net.ev_a).is_empty(), "first 200 lost");
        // T1 later B retransmits the 200; A answers and ACKs, but that ACK is lost too.
        net.run_until(t0 + Duration::from_millis(600));
        assert_eq!(
            Net::call_events(&mut net.ev_a),
            vec![DialogEvent::Answered { body: None }]
        );
        assert!(Net::call_events(&mut net.ev_b).is_empty(), "first ACK lost");
        // 2*T1 later the next 200 retransmission is re-ACKed from A's dialog.
        net.run_until(t0 + Duration::from_millis(1600));
        assert_eq!(
            Net::call_events(&mut net.ev_b),
            vec![DialogEvent::Answered { body: None }]
        );
        assert!(net.drop_once.is_empty());
        net.run_until(t0 + Duration::from_secs(40));
        assert!(
            net.ev_a.is_empty() && net.ev_b.is_empty(),
            "{:?} {:?}",
            net.ev_a,
            net.ev_b
        );
    }

    /// A BYE for a dialog nobody has is answered 481.
    #[test]
    fn unknown_dialog_bye_gets_481() {
        let mut net = Net::new();
        let bye = Request::new(Method::Bye, uri("sip:pbx@192.0.2.2:5060"))
            .with_header("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKstray")
            .with_header("From", "<sip:gw@192.0.2.1>;tag=x")
            .with_header("To", "<sip:pbx@192.0.2.2>;tag=y")
            .with_header("Call-ID", "nosuchcall")
            .with_header("CSeq", "2 BYE")
            .with_header("Max-Forwards", "70");
        net.b
            .handle_input(net.now, addr(A), Transport::Udp, &bye.to_bytes());
        let UaOutput::Transmit(t) = net.b.poll_output() else {
            panic!("expected a response");
        };
        let text = String::from_utf8_lossy(&t.data).into_owned();
        assert!(text.starts_with("SIP/2.0 481"), "{text}");
    }
}
