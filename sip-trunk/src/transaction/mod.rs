//! The RFC 3261 transaction layer (section 17), sans-IO.
//!
//! [`TransactionLayer`] owns every client and server transaction of one SIP
//! endpoint, keyed as RFC 3261 17.1.3 / 17.2.3 say (branch + sent-by + method,
//! ACK and CANCEL matched to their INVITE; an approximate RFC 2543 key when the
//! branch lacks the magic cookie). It performs no I/O and reads no clock:
//!
//! - (B) inputs: [`TransactionLayer::handle_input`] with a received datagram or
//!   a transport error, [`TransactionLayer::handle_timeout`];
//! - (C) commands from the transaction user: [`TransactionLayer::send_request`],
//!   [`TransactionLayer::send_response`], [`TransactionLayer::cancel`],
//!   [`TransactionLayer::send_stateless`];
//! - (D) output: [`TransactionLayer::poll_output`], drained after every
//!   input or command until it returns [`Output::Timeout`] (as in str0m).
//!
//! Retransmitting a 2xx to INVITE belongs to the dialog layer (RFC 3261
//! 13.3.1.4); [`Uas2xxRetransmitter`] is the small sans-IO helper for it.

mod timer;
mod uas2xx;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use timer::{Timer, Timings};
pub use uas2xx::{Uas2xxEvent, Uas2xxRetransmitter};

use crate::message::{
    HeaderError, MAGIC_COOKIE, Method, Request, Response, SipMessage, Via, names, parse_message,
};
use timer::TimerTable;

/// How long `poll_output` sleeps when no timer is armed.
const IDLE: Duration = Duration::from_secs(3600);

/// A transport protocol, as used in Via and for the reliable/unreliable split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (unreliable: retransmissions and lingering timers apply).
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    /// True for every transport except UDP (RFC 3261 17: Timers A, E, G are
    /// not used and D, I, J, K are zero).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The token used in Via (`UDP`, `TCP`, `TLS`, `WS`, `WSS`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// Default port when a Via or URI has none.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls | Transport::Wss => 5061,
            _ => 5060,
        }
    }
}

/// Configuration of a [`TransactionLayer`].
#[derive(Debug, Clone)]
pub struct Config {
    /// T1, T2, T4 and Timer D.
    pub timings: Timings,
    /// Send `100 Trying` as soon as an INVITE server transaction is created
    /// (RFC 3261 17.2.1 allows the TU to do it within 200 ms instead).
    pub send_100_trying: bool,
    /// Seed for branches, tags and Call-IDs; `None` seeds from the OS.
    pub rng_seed: Option<u64>,
    /// `host[:port]` written in the Via of requests sent without one; `None`
    /// makes [`TransactionLayer::send_request`] require a Via.
    pub sent_by: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            timings: Timings::default(),
            send_100_trying: true,
            rng_seed: None,
            sent_by: None,
        }
    }
}

/// Opaque handle of one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(u64);

/// Input from the I/O shell.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A datagram or a framed stream message arrived.
    Receive {
        /// Where it came from (the connection's peer for streams).
        from: SocketAddr,
        /// Transport it came on.
        transport: Transport,
        /// The bytes of exactly one message.
        data: &'a [u8],
    },
    /// Sending a [`Transmit`] of this transaction failed (RFC 3261 17.1.4).
    TransportError {
        /// `Transmit::transaction` of the failed send.
        id: TransactionId,
    },
}

/// Bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination address.
    pub dest: SocketAddr,
    /// Transport to use (for streams: the connection to `dest`).
    pub transport: Transport,
    /// The serialised message.
    pub data: Vec<u8>,
    /// The transaction that sent it, for [`Input::TransportError`].
    pub transaction: Option<TransactionId>,
}

/// What the transaction user must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxEvent {
    /// A new request created a server transaction; answer it with
    /// [`TransactionLayer::send_response`]. Retransmissions are absorbed.
    /// The top Via already carries `received`/`rport` (RFC 3261 18.2.1, RFC 3581).
    Request {
        /// The server transaction.
        id: TransactionId,
        /// The request.
        request: Request,
        /// Source address.
        source: SocketAddr,
        /// Transport it came on.
        transport: Transport,
    },
    /// A provisional or final response for a client transaction.
    Response {
        /// The client transaction.
        id: TransactionId,
        /// The response.
        response: Response,
    },
    /// A transaction timed out: Timer B or F (act as if 408 had arrived,
    /// RFC 3261 8.1.3.1) or Timer H (the ACK never came).
    Timeout {
        /// The transaction, now terminated.
        id: TransactionId,
        /// Which timer fired.
        timer: Timer,
    },
    /// The shell reported a send failure for this transaction; it is terminated.
    TransportError {
        /// The transaction.
        id: TransactionId,
    },
    /// An ACK that matched no INVITE server transaction: the ACK for a 2xx,
    /// which the dialog layer handles (RFC 3261 17.2.3, 13.3.1.4).
    Ack {
        /// The ACK.
        request: Request,
        /// Source address.
        source: SocketAddr,
    },
    /// A 2xx to INVITE after its client transaction ended: a retransmission
    /// the dialog layer must ACK again (RFC 3261 13.2.2.4).
    Invite2xxRetransmission {
        /// The response.
        response: Response,
    },
    /// A CANCEL matched this INVITE server transaction. The layer already
    /// answered the CANCEL with 200; the TU should answer the INVITE with 487
    /// if it has not sent a final response (RFC 3261 9.2).
    Cancelled {
        /// The INVITE server transaction.
        id: TransactionId,
        /// The CANCEL request.
        cancel: Request,
    },
}

/// Output of [`TransactionLayer::poll_output`]; the last one is always `Timeout`.
// Events carry whole messages; boxing them would add an allocation per
// event to shrink the Timeout variant, which is returned once per drain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes.
    Transmit(Transmit),
    /// Tell the transaction user.
    Event(TxEvent),
    /// Nothing more to do: call `handle_timeout` at this instant.
    Timeout(Instant),
}

/// Misuse of the command API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// ACK is never a client transaction; send it with `send_stateless`.
    #[error("ack is sent outside transactions")]
    AckIsNotATransaction,
    /// The request has no Via and the config has no `sent_by`.
    #[error("request has no via and no sent_by is configured")]
    MissingVia,
    /// A header the transaction needs is missing or malformed.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The CSeq method differs from the request method.
    #[error("cseq method does not match request method")]
    CSeqMethodMismatch,
    /// A transaction with this branch and method already exists.
    #[error("a transaction with this branch already exists")]
    DuplicateBranch,
    /// No live transaction has this id.
    #[error("unknown or terminated transaction")]
    UnknownTransaction,
    /// The transaction cannot take this command in its current state.
    #[error("{0}")]
    InvalidState(&'static str),
}

/// Counters for dropped and absorbed messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams that did not parse.
    pub malformed: u64,
    /// Stateless error replies sent for malformed requests.
    pub bad_request_replies: u64,
    /// Responses that matched no client transaction and were dropped.
    pub stray_responses: u64,
    /// Retransmitted requests or responses absorbed by a transaction.
    pub retransmissions_absorbed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TxKey {
    Client {
        branch: String,
        method: Method,
    },
    Server {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// RFC 2543 fallback (17.2.3): approximate, the To tag is not compared.
    Server2543 {
        request_uri: String,
        from_tag: String,
        call_id: String,
        cseq: u32,
        top_via: String,
        method: Method,
    },
}

fn server_method(m: &Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

fn server_key(req: &Request, via: &Via, method: Method) -> Result<TxKey, HeaderError> {
    if via.has_rfc3261_branch() {
        Ok(TxKey::Server {
            branch: via.branch.clone().unwrap_or_default(),
            sent_by: via.sent_by().to_ascii_lowercase(),
            method,
        })
    } else {
        Ok(TxKey::Server2543 {
            request_uri: req.uri.to_string(),
            from_tag: req.headers.from()?.tag.unwrap_or_default(),
            call_id: req.headers.call_id()?.to_string(),
            cseq: req.headers.cseq()?.seq,
            top_via: format!("{}/{}", via.transport, via.sent_by().to_ascii_lowercase()),
            method,
        })
    }
}

/// The four machines of RFC 3261 17.1.1, 17.1.2, 17.2.1 and 17.2.2.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    /// RFC 6026: a 2xx to INVITE was sent (server) or received (client).
    Accepted,
    Terminated,
}

struct Transaction {
    id: TransactionId,
    key: TxKey,
    kind: Kind,
    state: State,
    timers: TimerTable,
    dest: SocketAddr,
    transport: Transport,
    /// Client: the request as sent. Server: the request as received.
    request: Request,
    /// Client: bytes to retransmit.
    request_bytes: Vec<u8>,
    /// Server: the last response sent, to resend on retransmissions.
    last_response: Option<Vec<u8>>,
    /// Server INVITE: the To header of the last response (for CANCEL's 200).
    last_to: Option<String>,
    /// Client INVITE in Completed: the ACK to resend.
    ack_bytes: Option<Vec<u8>>,
    /// Current A/E/G interval.
    interval: Duration,
}

/// Borrowed pieces of the layer a transaction needs while it runs.
struct Ctx<'a> {
    now: Instant,
    timings: Timings,
    out: &'a mut VecDeque<Output>,
    heap: &'a mut BinaryHeap<Reverse<(Instant, TransactionId)>>,
    stats: &'a mut Stats,
}

impl Transaction {
    fn arm(&mut self, ctx: &mut Ctx<'_>, timer: Timer, after: Duration) {
        let at = ctx.now + after;
        self.timers.set(timer, at);
        ctx.heap.push(Reverse((at, self.id)));
    }

    /// A lingering timer: the given duration on UDP, zero on reliable transports.
    fn arm_linger(&mut self, ctx: &mut Ctx<'_>, timer: Timer, unreliable: Duration) {
        let d = if self.transport.is_reliable() {
            Duration::ZERO
        } else {
            unreliable
        };
        self.arm(ctx, timer, d);
    }

    fn send(&self, ctx: &mut Ctx<'_>, data: Vec<u8>) {
        ctx.out.push_back(Output::Transmit(Transmit {
            dest: self.dest,
            transport: self.transport,
            data,
            transaction: Some(self.id),
        }));
    }

    fn event(ctx: &mut Ctx<'_>, e: TxEvent) {
        ctx.out.push_back(Output::Event(e));
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timers.stop_all();
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: Timer) {
        let t = ctx.timings;
        match (self.kind, self.state, timer) {
            (Kind::ClientInvite, State::Calling, Timer::A) => {
                self.send(ctx, self.request_bytes.clone());
                self.interval *= 2;
                self.arm(ctx, Timer::A, self.interval);
            }
            (Kind::ClientInvite, State::Calling, Timer::B)
            | (Kind::ClientNonInvite, State::Trying | State::Proceeding, Timer::F)
            | (Kind::ServerInvite, State::Completed, Timer::H) => {
                self.terminate();
                Self::event(ctx, TxEvent::Timeout { id: self.id, timer });
            }
            (Kind::ClientInvite, State::Completed, Timer::D)
            | (Kind::ClientNonInvite, State::Completed, Timer::K)
            | (Kind::ServerInvite, State::Confirmed, Timer::I)
            | (Kind::ServerNonInvite, State::Completed, Timer::J)
            | (Kind::ServerInvite, State::Accepted, Timer::L)
            | (Kind::ClientInvite, State::Accepted, Timer::M) => self.terminate(),
            (Kind::ClientNonInvite, State::Trying | State::Proceeding, Timer::E) => {
                self.send(ctx, self.request_bytes.clone());
                self.interval = if self.state == State::Trying {
                    (self.interval * 2).min(t.t2)
                } else {
                    t.t2
                };
                self.arm(ctx, Timer::E, self.interval);
            }
            (Kind::ServerInvite, State::Completed, Timer::G) => {
                if let Some(r) = self.last_response.clone() {
                    self.send(ctx, r);
                }
                self.interval = (self.interval * 2).min(t.t2);
                self.arm(ctx, Timer::G, self.interval);
            }
            // A timer left over from an earlier state: nothing to do.
            _ => {}
        }
    }

    /// A response for this client transaction.
    fn on_response(&mut self, ctx: &mut Ctx<'_>, resp: Response) {
        let t = ctx.timings;
        let code = resp.status;
        match (self.kind, self.state) {
            (Kind::ClientInvite, State::Calling | State::Proceeding) => {
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                if code.is_provisional() {
                    self.state = State::Proceeding;
                } else if code.is_success() {
                    // RFC 6026 7.2: stay to hand 2xx retransmissions and
                    // other forks' 2xx to the TU until Timer M.
                    self.state = State::Accepted;
                    self.arm(ctx, Timer::M, t.t1_x64());
                } else {
                    let ack = self.build_ack(&resp).to_bytes();
                    self.send(ctx, ack.clone());
                    self.ack_bytes = Some(ack);
                    self.state = State::Completed;
                    self.arm_linger(ctx, Timer::D, t.d);
                }
                Self::event(
                    ctx,
                    TxEvent::Response {
                        id: self.id,
                        response: resp,
                    },
                );
            }
            (Kind::ClientInvite, State::Accepted) => {
                if code.is_success() {
                    // The TU ACKs every 2xx itself (RFC 3261 13.2.2.4).
                    Self::event(ctx, TxEvent::Invite2xxRetransmission { response: resp });
                } else {
                    ctx.stats.retransmissions_absorbed += 1;
                }
            }
            (Kind::ClientInvite, State::Completed) => {
                if code.is_final() && !code.is_success() {
                    ctx.stats.retransmissions_absorbed += 1;
                    if let Some(a) = self.ack_bytes.clone() {
                        self.send(ctx, a);
                    }
                }
            }
            (Kind::ClientNonInvite, State::Trying | State::Proceeding) => {
                if code.is_provisional() {
                    self.state = State::Proceeding;
                } else {
                    self.timers.stop(Timer::E);
                    self.timers.stop(Timer::F);
                    self.state = State::Completed;
                    self.arm_linger(ctx, Timer::K, t.t4);
                }
                Self::event(
                    ctx,
                    TxEvent::Response {
                        id: self.id,
                        response: resp,
                    },
                );
            }
            _ => ctx.stats.retransmissions_absorbed += 1,
        }
    }

    /// The ACK for a non-2xx final response (RFC 3261 17.1.1.3): same branch,
    /// Request-URI, Call-ID, From and CSeq number; To from the response.
    fn build_ack(&self, resp: &Response) -> Request {
        let orig = &self.request;
        let mut ack = Request::new(Method::Ack, orig.uri.clone());
        if let Some(v) = orig.headers.get(names::VIA) {
            let top = crate::message::typed::split_list(v)[0].to_string();
            ack.headers.push(names::VIA, top);
        }
        ack.headers.push(names::MAX_FORWARDS, "70");
        for name in [names::FROM] {
            if let Some(v) = orig.headers.get(name) {
                ack.headers.push(name, v);
            }
        }
        if let Some(v) = resp.headers.get(names::TO).or(orig.headers.get(names::TO)) {
            ack.headers.push(names::TO, v);
        }
        if let Some(v) = orig.headers.get(names::CALL_ID) {
            ack.headers.push(names::CALL_ID, v);
        }
        if let Ok(c) = orig.headers.cseq() {
            ack.headers.push(names::CSEQ, format!("{} ACK", c.seq));
        }
        for r in orig.headers.get_all(names::ROUTE) {
            ack.headers.push(names::ROUTE, r);
        }
        ack
    }

    /// A retransmission of the request that created this server transaction.
    fn on_request_retransmission(&mut self, ctx: &mut Ctx<'_>) {
        ctx.stats.retransmissions_absorbed += 1;
        // In Trying (non-INVITE, nothing sent yet) there is nothing to resend.
        let resend = matches!(
            (self.kind, self.state),
            (
                Kind::ServerInvite | Kind::ServerNonInvite,
                State::Proceeding | State::Completed
            )
        );
        if resend && let Some(r) = self.last_response.clone() {
            self.send(ctx, r);
        }
    }

    fn on_ack(&mut self, ctx: &mut Ctx<'_>) {
        ctx.stats.retransmissions_absorbed += u64::from(self.state != State::Completed);
        if self.kind == Kind::ServerInvite && self.state == State::Completed {
            self.timers.stop(Timer::G);
            self.timers.stop(Timer::H);
            self.state = State::Confirmed;
            let t4 = ctx.timings.t4;
            self.arm_linger(ctx, Timer::I, t4);
        }
    }

    fn respond(&mut self, ctx: &mut Ctx<'_>, resp: &Response) -> Result<(), TransactionError> {
        let code = resp.status;
        let bytes = resp.to_bytes();
        match (self.kind, self.state) {
            (Kind::ServerInvite, State::Proceeding) => {
                self.send(ctx, bytes.clone());
                self.last_to = resp.headers.get(names::TO).map(str::to_string);
                if code.is_provisional() {
                    self.last_response = Some(bytes);
                } else if code.is_success() {
                    // 2xx retransmission is the dialog layer's job (13.3.1.4);
                    // RFC 6026 7.1: stay Accepted until Timer L so that INVITE
                    // retransmissions are absorbed, not taken as new calls.
                    self.last_response = None;
                    self.state = State::Accepted;
                    let l = ctx.timings.t1_x64();
                    self.arm(ctx, Timer::L, l);
                } else {
                    self.last_response = Some(bytes);
                    self.state = State::Completed;
                    let t = ctx.timings;
                    if !self.transport.is_reliable() {
                        self.interval = t.t1;
                        self.arm(ctx, Timer::G, t.t1);
                    }
                    self.arm(ctx, Timer::H, t.t1_x64());
                }
                Ok(())
            }
            (Kind::ServerInvite, State::Accepted) if code.is_success() => {
                // RFC 6026 8.7: 2xx retransmissions from the TU go out as given.
                self.send(ctx, bytes);
                Ok(())
            }
            (Kind::ServerNonInvite, State::Trying | State::Proceeding) => {
                self.send(ctx, bytes.clone());
                self.last_response = Some(bytes);
                if code.is_provisional() {
                    self.state = State::Proceeding;
                } else {
                    self.state = State::Completed;
                    let j = ctx.timings.t1_x64();
                    self.arm_linger(ctx, Timer::J, j);
                }
                Ok(())
            }
            (Kind::ServerInvite | Kind::ServerNonInvite, _) => Err(TransactionError::InvalidState(
                "a final response was already sent",
            )),
            _ => Err(TransactionError::InvalidState(
                "responses are sent on server transactions",
            )),
        }
    }
}

/// All transactions of one SIP endpoint; see the module docs for the verbs.
pub struct TransactionLayer {
    config: Config,
    rng: StdRng,
    now: Instant,
    next_id: u64,
    /// Boxed: tens of thousands linger for Timers J/K/L/M under load, and a
    /// rehash of inline transactions (each holding its request) moved
    /// megabytes at once, a stall of tens of milliseconds at 1,000 calls/s.
    txs: HashMap<TransactionId, Box<Transaction>>,
    keys: HashMap<TxKey, TransactionId>,
    heap: BinaryHeap<Reverse<(Instant, TransactionId)>>,
    out: VecDeque<Output>,
    stats: Stats,
    /// How many of `txs` are OPTIONS transactions, kept on insert and
    /// removal so [`TransactionLayer::len_without_options`] is O(1).
    options: usize,
}

impl std::fmt::Debug for TransactionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionLayer")
            .field("now", &self.now)
            .field("transactions", &self.txs.len())
            .field("queued_output", &self.out.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn strip_brackets(h: &str) -> &str {
    h.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(h)
}

impl TransactionLayer {
    /// A layer whose clock starts at `now`.
    pub fn new(config: Config, now: Instant) -> TransactionLayer {
        let rng = match config.rng_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        TransactionLayer {
            config,
            rng,
            now,
            next_id: 1,
            txs: HashMap::new(),
            keys: HashMap::new(),
            heap: BinaryHeap::new(),
            out: VecDeque::new(),
            stats: Stats::default(),
            options: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Drop and absorption counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Number of live transactions other than OPTIONS: keep-alives come and
    /// go every few seconds, so this is the count that returns to zero once
    /// calls, registrations and messages are over (a leak check).
    pub fn len_without_options(&self) -> usize {
        self.txs.len().saturating_sub(self.options)
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// True while the transaction exists (not yet terminated).
    pub fn contains(&self, id: TransactionId) -> bool {
        self.txs.contains_key(&id)
    }

    /// Client transactions to `dest` over `transport` still waiting for a
    /// final response (Calling, Trying or Proceeding): the ones to fail with
    /// [`Input::TransportError`] when a stream connection to `dest` cannot be
    /// opened (RFC 3261 17.1.4), rather than at Timer B or F.
    pub fn waiting_on(&self, dest: SocketAddr, transport: Transport) -> Vec<TransactionId> {
        let mut ids: Vec<TransactionId> = self
            .txs
            .values()
            .filter(|tx| {
                matches!(tx.kind, Kind::ClientInvite | Kind::ClientNonInvite)
                    && matches!(tx.state, State::Calling | State::Trying | State::Proceeding)
                    && tx.dest == dest
                    && tx.transport == transport
            })
            .map(|tx| tx.id)
            .collect();
        ids.sort_by_key(|id| id.0);
        ids
    }

    fn random_token(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    }

    /// A fresh RFC 3261 branch (`z9hG4bK` + 16 random characters).
    pub fn new_branch(&mut self) -> String {
        format!("{MAGIC_COOKIE}{}", self.random_token(16))
    }

    /// A fresh From/To tag.
    pub fn new_tag(&mut self) -> String {
        self.random_token(12)
    }

    /// A fresh Call-ID, `random@host`.
    pub fn new_call_id(&mut self, host: &str) -> String {
        format!("{}@{host}", self.random_token(20))
    }

    /// Time never goes backwards inside the layer (str0m does the same).
    fn clamp(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    fn alloc_id(&mut self) -> TransactionId {
        let id = TransactionId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Runs `f` on a transaction with a context, then drops it if it ended.
    fn with_tx<R>(
        &mut self,
        id: TransactionId,
        f: impl FnOnce(&mut Transaction, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let tx = self.txs.get_mut(&id)?;
        let mut ctx = Ctx {
            now: self.now,
            timings: self.config.timings,
            out: &mut self.out,
            heap: &mut self.heap,
            stats: &mut self.stats,
        };
        let r = f(tx, &mut ctx);
        if tx.state == State::Terminated {
            let key = tx.key.clone();
            if tx.request.method == Method::Options {
                self.options = self.options.saturating_sub(1);
            }
            self.txs.remove(&id);
            if self.keys.get(&key) == Some(&id) {
                self.keys.remove(&key);
            }
        }
        Some(r)
    }

    fn insert(&mut self, tx: Transaction) {
        self.keys.insert(tx.key.clone(), tx.id);
        if tx.request.method == Method::Options {
            self.options += 1;
        }
        self.txs.insert(tx.id, Box::new(tx));
    }

    /// Feeds a received message or a transport error.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        let now = self.clamp(now);
        match input {
            Input::Receive {
                from,
                transport,
                data,
            } => self.receive(now, from, transport, data),
            Input::TransportError { id } => {
                self.with_tx(id, |tx, ctx| {
                    tx.terminate();
                    Transaction::event(ctx, TxEvent::TransportError { id });
                });
            }
        }
    }

    fn receive(&mut self, _now: Instant, from: SocketAddr, transport: Transport, data: &[u8]) {
        match parse_message(data) {
            Err(e) => {
                self.stats.malformed += 1;
                tracing::debug!(cause = %e, %from, "dropping malformed sip message");
                if let Some(reply) = e.bad_request_reply(data) {
                    self.stats.bad_request_replies += 1;
                    self.push_transmit(from, transport, reply, None);
                }
            }
            Ok(SipMessage::Request(req)) => self.receive_request(req, from, transport),
            Ok(SipMessage::Response(resp)) => self.receive_response(resp),
        }
    }

    fn push_transmit(
        &mut self,
        dest: SocketAddr,
        transport: Transport,
        data: Vec<u8>,
        transaction: Option<TransactionId>,
    ) {
        self.out.push_back(Output::Transmit(Transmit {
            dest,
            transport,
            data,
            transaction,
        }));
    }

    fn stateless_reply(
        &mut self,
        req: &Request,
        dest: SocketAddr,
        transport: Transport,
        code: u16,
        reason: &str,
    ) {
        let resp = Response::from_request(req, code, reason);
        self.stats.bad_request_replies += 1;
        self.push_transmit(dest, transport, resp.to_bytes(), None);
    }

    fn receive_request(&mut self, mut req: Request, from: SocketAddr, transport: Transport) {
        // Parsing already checked the Via; keep the layer panic-free anyway.
        let Ok(mut via) = req.headers.via() else {
            self.stats.malformed += 1;
            return;
        };
        // RFC 3261 18.2.1 and RFC 3581 4: record where the request came from.
        let sent_ip: Option<IpAddr> = strip_brackets(&via.host).parse().ok();
        let rport_asked = via.rport.is_some();
        if sent_ip != Some(from.ip()) || rport_asked {
            via.received = Some(from.ip().to_string());
        }
        if rport_asked {
            via.rport = Some(Some(from.port()));
        }
        req.headers.set_top_via(&via);
        let dest = if transport.is_reliable() || rport_asked {
            from
        } else {
            SocketAddr::new(from.ip(), via.port.unwrap_or(transport.default_port()))
        };

        // RFC 4475 3.2.1: a bare magic cookie identifies nothing.
        if via.branch.as_deref() == Some(MAGIC_COOKIE) {
            if req.method != Method::Ack {
                self.stateless_reply(&req, dest, transport, 400, "Bad Request (empty branch)");
            }
            return;
        }
        let Ok(key) = server_key(&req, &via, server_method(&req.method)) else {
            self.stats.malformed += 1;
            return;
        };

        if req.method == Method::Ack {
            let accepted =
                |id: &TransactionId| self.txs.get(id).is_some_and(|t| t.state == State::Accepted);
            match self.keys.get(&key).copied().filter(|id| !accepted(id)) {
                Some(id) => {
                    self.with_tx(id, |tx, ctx| tx.on_ack(ctx));
                }
                // RFC 6026 8.6: an ACK in Accepted goes to the TU (it is the
                // ACK for the 2xx), like one that matches nothing.
                None => self.out.push_back(Output::Event(TxEvent::Ack {
                    request: req,
                    source: from,
                })),
            }
            return;
        }
        if let Some(id) = self.keys.get(&key).copied() {
            self.with_tx(id, |tx, ctx| tx.on_request_retransmission(ctx));
            return;
        }

        let id = self.alloc_id();
        let kind = if req.method == Method::Invite {
            Kind::ServerInvite
        } else {
            Kind::ServerNonInvite
        };
        let state = if kind == Kind::ServerInvite {
            State::Proceeding
        } else {
            State::Trying
        };
        let is_cancel = req.method == Method::Cancel;
        let invite_key = if is_cancel {
            server_key(&req, &via, Method::Invite).ok()
        } else {
            None
        };
        self.insert(Transaction {
            id,
            key,
            kind,
            state,
            timers: TimerTable::default(),
            dest,
            transport,
            request: req.clone(),
            request_bytes: Vec::new(),
            last_response: None,
            last_to: None,
            ack_bytes: None,
            interval: self.config.timings.t1,
        });

        if is_cancel {
            // RFC 3261 9.2: answer the CANCEL ourselves, tell the TU about the INVITE.
            let invite = invite_key.and_then(|k| self.keys.get(&k).copied());
            let live_invite = invite.filter(|i| {
                self.txs
                    .get(i)
                    .is_some_and(|t| t.kind == Kind::ServerInvite)
            });
            // After a 2xx the CANCEL still gets its 200 but has no effect
            // (RFC 3261 9.2), so the TU is not told.
            let accepted = live_invite
                .and_then(|i| self.txs.get(&i))
                .is_some_and(|t| t.state == State::Accepted);
            let mut resp = match live_invite {
                Some(_) => Response::from_request(&req, 200, "OK"),
                None => Response::from_request(&req, 481, "Call/Transaction Does Not Exist"),
            };
            if let Some(to) = live_invite.and_then(|i| self.txs.get(&i)?.last_to.clone()) {
                resp.headers.set(names::TO, to);
            }
            self.with_tx(id, |tx, ctx| tx.respond(ctx, &resp));
            if let Some(invite_id) = live_invite.filter(|_| !accepted) {
                self.out.push_back(Output::Event(TxEvent::Cancelled {
                    id: invite_id,
                    cancel: req,
                }));
            }
            return;
        }

        if kind == Kind::ServerInvite && self.config.send_100_trying {
            let trying = Response::from_request(&req, 100, "Trying");
            self.with_tx(id, |tx, ctx| tx.respond(ctx, &trying));
        }
        self.out.push_back(Output::Event(TxEvent::Request {
            id,
            request: req,
            source: from,
            transport,
        }));
    }

    fn receive_response(&mut self, resp: Response) {
        let (Ok(via), Ok(cseq)) = (resp.headers.via(), resp.headers.cseq()) else {
            self.stats.stray_responses += 1;
            return;
        };
        let key = TxKey::Client {
            branch: via.branch.clone().unwrap_or_default(),
            method: cseq.method.clone(),
        };
        match self.keys.get(&key).copied() {
            Some(id) => {
                self.with_tx(id, |tx, ctx| tx.on_response(ctx, resp));
            }
            None if cseq.method == Method::Invite && resp.status.is_success() => {
                self.out
                    .push_back(Output::Event(TxEvent::Invite2xxRetransmission {
                        response: resp,
                    }));
            }
            None => {
                self.stats.stray_responses += 1;
                tracing::debug!(status = resp.status.0, "dropping stray response");
            }
        }
    }

    /// Starts a client transaction and sends the request to `dest`.
    ///
    /// Adds a Via (from `Config::sent_by`) if there is none, a branch if the
    /// top Via has none, and `Max-Forwards: 70` if missing.
    ///
    /// # Errors
    /// ACK requests, missing Via without `sent_by`, missing or malformed
    /// From/To/Call-ID/CSeq, CSeq method mismatch, duplicate branch.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut req: Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<TransactionId, TransactionError> {
        self.clamp(now);
        if req.method == Method::Ack {
            return Err(TransactionError::AckIsNotATransaction);
        }
        let via = if req.headers.contains(names::VIA) {
            let mut via = req.headers.via()?;
            if !via.has_rfc3261_branch() {
                via.branch = Some(self.new_branch());
                req.headers.set_top_via(&via);
            }
            via
        } else {
            let sent_by = self
                .config
                .sent_by
                .clone()
                .ok_or(TransactionError::MissingVia)?;
            let (host, port) = match crate::message::typed::parse_host_port(&sent_by) {
                Some((h, p)) => (h.to_string(), p),
                None => (sent_by.clone(), None),
            };
            let branch = self.new_branch();
            let via = Via::new(transport.via_token(), &host, port, &branch);
            req.headers.push_front(names::VIA, via.to_string());
            via
        };
        req.headers.from()?;
        req.headers.to()?;
        req.headers.call_id()?;
        if req.headers.cseq()?.method != req.method {
            return Err(TransactionError::CSeqMethodMismatch);
        }
        if !req.headers.contains(names::MAX_FORWARDS) {
            req.headers.push(names::MAX_FORWARDS, "70");
        }
        let key = TxKey::Client {
            branch: via.branch.clone().unwrap_or_default(),
            method: req.method.clone(),
        };
        if self.keys.contains_key(&key) {
            return Err(TransactionError::DuplicateBranch);
        }
        let id = self.alloc_id();
        let kind = if req.method == Method::Invite {
            Kind::ClientInvite
        } else {
            Kind::ClientNonInvite
        };
        let bytes = req.to_bytes();
        let t = self.config.timings;
        self.insert(Transaction {
            id,
            key,
            kind,
            state: if kind == Kind::ClientInvite {
                State::Calling
            } else {
                State::Trying
            },
            timers: TimerTable::default(),
            dest,
            transport,
            request: req,
            request_bytes: bytes.clone(),
            last_response: None,
            last_to: None,
            ack_bytes: None,
            interval: t.t1,
        });
        self.with_tx(id, |tx, ctx| {
            tx.send(ctx, bytes);
            let (retransmit, timeout) = match kind {
                Kind::ClientInvite => (Timer::A, Timer::B),
                _ => (Timer::E, Timer::F),
            };
            if !tx.transport.is_reliable() {
                tx.arm(ctx, retransmit, t.t1);
            }
            tx.arm(ctx, timeout, t.t1_x64());
        });
        Ok(id)
    }

    /// Sends a response on a server transaction.
    ///
    /// # Errors
    /// Unknown/terminated transaction, a client transaction, or a response
    /// after the final one.
    pub fn send_response(
        &mut self,
        now: Instant,
        id: TransactionId,
        resp: Response,
    ) -> Result<(), TransactionError> {
        self.clamp(now);
        self.with_tx(id, |tx, ctx| tx.respond(ctx, &resp))
            .unwrap_or(Err(TransactionError::UnknownTransaction))
    }

    /// Sends CANCEL for a pending INVITE client transaction (RFC 3261 9.1):
    /// same Request-URI, Call-ID, From, To, CSeq number, top Via and Route.
    ///
    /// # Errors
    /// Unknown transaction, not an INVITE, or the INVITE already has a final response.
    pub fn cancel(
        &mut self,
        now: Instant,
        invite: TransactionId,
    ) -> Result<TransactionId, TransactionError> {
        let tx = self
            .txs
            .get(&invite)
            .ok_or(TransactionError::UnknownTransaction)?;
        if tx.kind != Kind::ClientInvite || !matches!(tx.state, State::Calling | State::Proceeding)
        {
            return Err(TransactionError::InvalidState(
                "only a pending INVITE client transaction can be cancelled",
            ));
        }
        let orig = &tx.request;
        let mut c = Request::new(Method::Cancel, orig.uri.clone());
        if let Some(v) = orig.headers.get(names::VIA) {
            c.headers.push(
                names::VIA,
                crate::message::typed::split_list(v)[0].to_string(),
            );
        }
        c.headers.push(names::MAX_FORWARDS, "70");
        for name in [names::FROM, names::TO, names::CALL_ID] {
            if let Some(v) = orig.headers.get(name) {
                c.headers.push(name, v);
            }
        }
        let seq = orig.headers.cseq()?.seq;
        c.headers.push(names::CSEQ, format!("{seq} CANCEL"));
        for r in orig.headers.get_all(names::ROUTE) {
            c.headers.push(names::ROUTE, r);
        }
        let (dest, transport) = (tx.dest, tx.transport);
        self.send_request(now, c, dest, transport)
    }

    /// Queues bytes outside any transaction (the ACK for a 2xx, stateless replies).
    pub fn send_stateless(&mut self, dest: SocketAddr, transport: Transport, data: Vec<u8>) {
        self.push_transmit(dest, transport, data, None);
    }

    /// Fires every expired timer. Spurious calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        let mut due = Vec::new();
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if !due.contains(&id) {
                due.push(id);
            }
        }
        for id in due {
            for timer in Timer::VALUES {
                let expired = self
                    .txs
                    .get(&id)
                    .is_some_and(|tx| tx.timers.is_expired(timer, now));
                if expired {
                    self.with_tx(id, |tx, ctx| {
                        tx.timers.stop(timer);
                        tx.on_timer(ctx, timer);
                    });
                }
            }
        }
    }

    /// The next instant `handle_timeout` has work to do, if any.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop heap entries of stopped timers and ended transactions.
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            let live = self
                .txs
                .get(&id)
                .and_then(|tx| tx.timers.next_timeout())
                .is_some_and(|next| next <= at);
            if live {
                return Some(at);
            }
            self.heap.pop();
            // The transaction may still have a later timer; it has its own entry.
        }
        None
    }

    /// Next output. Drain until `Output::Timeout` after every input or command.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        Output::Timeout(self.poll_timeout().unwrap_or(self.now + IDLE))
    }

    /// The armed deadline of one timer of a transaction (for tests and metrics).
    pub fn timer(&self, id: TransactionId, timer: Timer) -> Option<Instant> {
        self.txs.get(&id)?.timers.get(timer)
    }
}
