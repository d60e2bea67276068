//! The tokio shell around `sip_trunk::ua::UserAgent`: one task owns one SIP
//! UDP socket, the TCP connections on the same port ([`tcp`]) and the user
//! agent that speaks on them.
//!
//! Every protocol decision (transactions, retransmissions, dialogs, digest
//! answers, registration refresh and back-off) is made by the sans-IO user
//! agent; this task only moves datagrams, time and commands into it and
//! drains its output after each one (the str0m run loop: one mutation, then
//! `poll_output` until `Timeout`). Other tasks reach it through a [`Sip`]
//! handle (an mpsc channel), so no lock is shared with the protocol state.
//!
//! Events go out on these paths: registration outcomes and keep-alive
//! results (trunk up/down) update the shared [`TrunkStatus`] table (read by
//! `/metrics`, the admin API, call routing and tests), call events go to
//! the channel the call's owner gave when it placed or accepted the call,
//! new incoming calls go to the `incoming` channel of [`spawn`], incoming
//! MESSAGEs to the `messages` channel of [`spawn_with_messages`] (answered
//! later through [`Sip::answer_message`]), and the outcome of a MESSAGE we
//! sent to the caller of [`Sip::send_message`].

pub mod dns;
pub mod inbound;
mod tcp;
pub mod trunks;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant as StdInstant, SystemTime};

use sip_trunk::dialog::{Body, Call, CallConfig, DialogEvent};
use sip_trunk::message::{NameAddr, Request, Uri};
use sip_trunk::registration::{RegistrationConfig, RegistrationEvent};
use sip_trunk::resolve::{Target, TargetList};
use sip_trunk::transaction::Transport;
use sip_trunk::ua::{
    CallHandle, IncomingMessageHandle, MessageHandle, OutgoingMessage, PeerHandle,
    RegistrationHandle, UaConfig, UaEvent, UaOutput, UserAgent,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Largest datagram we read; bigger SIP messages are refused by the parser (64 KiB).
const MAX_DATAGRAM: usize = 65_535;

/// Registration and keep-alive state of each trunk, keyed `tenant/trunk`,
/// and the SIP task's two leak gauges (call legs, transactions).
#[derive(Debug, Default)]
pub struct TrunkStatus {
    /// Plain std lock: held only to copy or replace one entry, never across `.await`.
    entries: RwLock<HashMap<String, TrunkState>>,
    /// Call legs the user agent holds, published by the SIP task after every drain.
    sip_calls: AtomicUsize,
    /// Live transactions of the user agent but keep-alive OPTIONS, published likewise.
    sip_transactions: AtomicUsize,
}

/// What we know of one trunk's registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrunkState {
    /// A binding is in place.
    pub registered: bool,
    /// Granted expiry of the last successful REGISTER, seconds.
    pub expires: u32,
    /// How many times the registrar granted a binding (first one and refreshes).
    pub registrations: u64,
    /// Last failure, if any.
    pub last_error: Option<String>,
    /// What the OPTIONS keep-alive says: `Some(true)` answered, `Some(false)`
    /// silent or 5xx, `None` not known yet or keep-alive off.
    pub up: Option<bool>,
    /// When `up` last changed, Unix seconds.
    pub last_change: Option<u64>,
    /// Calls this trunk failed (503, 408, no answer) that were retried on the
    /// next trunk of its failover list.
    pub failovers: u64,
    /// Addresses of the trunk (DNS SRV targets) whose keep-alive says down;
    /// calls try them last.
    pub down_targets: Vec<SocketAddr>,
    /// Every address the trunk's peer resolved to when it started: calls
    /// and MESSAGEs from these are the company's (a PBX found by SRV may
    /// send from a target whose IP the bare host name does not have).
    pub addresses: Vec<SocketAddr>,
}

impl TrunkState {
    /// Whether calls may be offered to the trunk: everything but a trunk
    /// whose keep-alive says it is down.
    pub fn usable(&self) -> bool {
        self.up != Some(false)
    }
}

impl TrunkStatus {
    /// A copy of one trunk's state.
    pub fn get(&self, key: &str) -> Option<TrunkState> {
        self.entries.read().ok().and_then(|m| m.get(key).cloned())
    }

    /// A copy of all states.
    pub fn all(&self) -> Vec<(String, TrunkState)> {
        let mut v: Vec<_> = self
            .entries
            .read()
            .map(|m| m.iter().map(|(k, s)| (k.clone(), s.clone())).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Whether calls may be offered to trunk `key` (see [`TrunkState::usable`]);
    /// a trunk never seen is usable.
    pub fn usable(&self, key: &str) -> bool {
        self.get(key).is_none_or(|s| s.usable())
    }

    /// Counts a call that failed on trunk `key` and moved to the next trunk.
    pub fn record_failover(&self, key: &str) {
        self.update(key, |s| s.failovers += 1);
    }

    /// (call legs, transactions) of the SIP user agent, as last published.
    pub fn sip_counts(&self) -> (usize, usize) {
        (
            self.sip_calls.load(Ordering::Relaxed),
            self.sip_transactions.load(Ordering::Relaxed),
        )
    }

    /// The SIP lines of `/metrics`: `namecall_sip_dialogs` and
    /// `namecall_sip_transactions` (gauges that return to their idle values
    /// once calls are over), `namecall_trunk_up{trunk}` (1 while calls may
    /// use it, 0 while its keep-alive says it is down) and
    /// `namecall_trunk_failovers_total{trunk}`.
    pub fn render_metrics(&self) -> String {
        let all = self.all();
        let (calls, transactions) = self.sip_counts();
        let mut out = format!(
            "# HELP namecall_sip_dialogs SIP call legs (dialogs) held by the user agent.\n# TYPE namecall_sip_dialogs gauge\nnamecall_sip_dialogs {calls}\n\
             # HELP namecall_sip_transactions Live SIP transactions other than keep-alive OPTIONS.\n# TYPE namecall_sip_transactions gauge\nnamecall_sip_transactions {transactions}\n"
        );
        out.push_str(
            "# HELP namecall_trunk_up 1 while calls may use the trunk, 0 while its keep-alive says it is down.\n# TYPE namecall_trunk_up gauge\n",
        );
        for (key, s) in &all {
            let _ = writeln!(
                out,
                "namecall_trunk_up{{trunk=\"{key}\"}} {}",
                u8::from(s.usable())
            );
        }
        out.push_str("# HELP namecall_trunk_failovers_total Calls that failed on the trunk and were retried on the next one.\n# TYPE namecall_trunk_failovers_total counter\n");
        for (key, s) in &all {
            let _ = writeln!(
                out,
                "namecall_trunk_failovers_total{{trunk=\"{key}\"}} {}",
                s.failovers
            );
        }
        out
    }

    fn remove(&self, key: &str) {
        if let Ok(mut m) = self.entries.write() {
            m.remove(key);
        }
    }

    pub(crate) fn update(&self, key: &str, f: impl FnOnce(&mut TrunkState)) {
        if let Ok(mut m) = self.entries.write() {
            f(m.entry(key.to_string()).or_default());
        }
    }
}

/// A new INVITE from a trunk, handed to call control.
pub struct IncomingCall {
    /// The leg, for [`Sip::with_call`].
    pub call: CallHandle,
    /// The INVITE (Request-URI user = the dialled name).
    pub invite: Box<Request>,
    /// The SDP offer, if any.
    pub offer: Option<Body>,
    /// Where it came from.
    pub source: Option<SocketAddr>,
    /// Call events of this leg arrive here (set by [`Sip::watch`]).
    pub events: mpsc::UnboundedReceiver<DialogEvent>,
}

/// A new out-of-dialog MESSAGE from a SIP peer; answer it with
/// [`Sip::answer_message`] (unanswered, it gets 500 after 20 s).
#[derive(Debug)]
pub struct IncomingMessage {
    /// Answer through this.
    pub handle: IncomingMessageHandle,
    /// The request (Request-URI user = the addressed login).
    pub request: Box<Request>,
    /// Where it came from.
    pub source: SocketAddr,
}

type CallOp = Box<dyn FnOnce(&mut Call, std::time::Instant) + Send>;

enum Command {
    Register {
        key: String,
        config: Box<RegistrationConfig>,
        targets: TargetList,
    },
    Unregister {
        key: String,
    },
    Watch {
        key: String,
        uri: Box<Uri>,
        targets: Vec<Target>,
        interval: Duration,
    },
    Unwatch {
        key: String,
    },
    Addresses {
        key: String,
        addresses: Vec<SocketAddr>,
    },
    Invite {
        config: Box<CallConfig>,
        offer: Option<Body>,
        targets: TargetList,
        events: mpsc::UnboundedSender<DialogEvent>,
        reply: oneshot::Sender<Option<CallHandle>>,
    },
    WithCall {
        call: CallHandle,
        op: CallOp,
        reply: oneshot::Sender<bool>,
    },
    Message {
        msg: Box<OutgoingMessage>,
        dest: SocketAddr,
        transport: Transport,
        reply: oneshot::Sender<Option<u16>>,
    },
    AnswerMessage {
        handle: IncomingMessageHandle,
        status: u16,
        reason: &'static str,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// Handle to the SIP task; cheap to clone.
#[derive(Clone)]
pub struct Sip {
    tx: mpsc::Sender<Command>,
    /// The address the socket is bound to.
    pub local_addr: SocketAddr,
    /// `host:port` we write in Via and Contact (what peers reach us on).
    pub sent_by: String,
    /// Registration state of every trunk.
    pub trunks: Arc<TrunkStatus>,
    /// RFC 3263 lookups (NAPTR/SRV/A) for trunk peers given by name; `None`
    /// uses the system resolver's A/AAAA answer only.
    pub dns: Option<dns::DnsLookup>,
}

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    /// The SIP task has stopped.
    #[error("sip task stopped")]
    Stopped,
    /// The call leg no longer exists.
    #[error("no such call")]
    NoSuchCall,
    /// A request was given no address to go to.
    #[error("no target address")]
    NoTarget,
}

impl Sip {
    /// Starts registering `config` at the first of `targets` (RFC 3263
    /// order), moving to the next after a timeout or 503; progress shows in
    /// [`Sip::trunks`] under `key`.
    pub async fn register(
        &self,
        key: &str,
        config: RegistrationConfig,
        targets: TargetList,
    ) -> Result<(), SipError> {
        if targets.is_empty() {
            return Err(SipError::NoTarget);
        }
        self.tx
            .send(Command::Register {
                key: key.to_string(),
                config: Box::new(config),
                targets,
            })
            .await
            .map_err(|_| SipError::Stopped)
    }

    /// Sends OPTIONS keep-alives to every address of trunk `key` every
    /// `interval` (replacing earlier ones for `key`); [`Sip::trunks`] shows
    /// the trunk up while any address answers and down once all are silent
    /// (or 5xx), and a registration of `key` is renewed at once when the
    /// trunk comes back after being down.
    pub async fn watch(
        &self,
        key: &str,
        uri: Uri,
        targets: Vec<Target>,
        interval: Duration,
    ) -> Result<(), SipError> {
        self.tx
            .send(Command::Watch {
                key: key.to_string(),
                uri: Box::new(uri),
                targets,
                interval,
            })
            .await
            .map_err(|_| SipError::Stopped)
    }

    /// Records the addresses trunk `key` resolved to (see [`TrunkState::addresses`]).
    /// Goes through the SIP task so it is ordered after an earlier
    /// [`Sip::unregister`] of the same key, which clears the entry.
    pub async fn set_addresses(
        &self,
        key: &str,
        addresses: Vec<SocketAddr>,
    ) -> Result<(), SipError> {
        self.tx
            .send(Command::Addresses {
                key: key.to_string(),
                addresses,
            })
            .await
            .map_err(|_| SipError::Stopped)
    }

    /// Stops the keep-alives of trunk `key` (a removed or changed trunk).
    pub async fn unwatch(&self, key: &str) -> Result<(), SipError> {
        self.tx
            .send(Command::Unwatch {
                key: key.to_string(),
            })
            .await
            .map_err(|_| SipError::Stopped)
    }

    /// Unregisters the trunk `key` (a removed or changed trunk); its status entry goes away.
    pub async fn unregister(&self, key: &str) -> Result<(), SipError> {
        self.tx
            .send(Command::Unregister {
                key: key.to_string(),
            })
            .await
            .map_err(|_| SipError::Stopped)
    }

    /// Sends an INVITE over UDP; the leg's events arrive on the returned receiver.
    pub async fn invite(
        &self,
        config: CallConfig,
        offer: Option<Body>,
        dest: SocketAddr,
    ) -> Result<(CallHandle, mpsc::UnboundedReceiver<DialogEvent>), SipError> {
        self.invite_over(config, offer, dest, Transport::Udp).await
    }

    /// Sends an INVITE over `transport`; the leg's events arrive on the returned receiver.
    pub async fn invite_over(
        &self,
        config: CallConfig,
        offer: Option<Body>,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<(CallHandle, mpsc::UnboundedReceiver<DialogEvent>), SipError> {
        let target = Target {
            transport,
            addr: dest,
        };
        self.invite_targets(config, offer, TargetList::new(vec![target]))
            .await
    }

    /// Sends an INVITE to the first of `targets` (RFC 3263 order), moving
    /// to the next while it times out or gets 503 before any other answer;
    /// the leg's events arrive on the returned receiver.
    ///
    /// # Errors
    /// [`SipError::NoTarget`] for an empty list, [`SipError::Stopped`] when
    /// the SIP task is gone.
    pub async fn invite_targets(
        &self,
        config: CallConfig,
        offer: Option<Body>,
        targets: TargetList,
    ) -> Result<(CallHandle, mpsc::UnboundedReceiver<DialogEvent>), SipError> {
        let (etx, erx) = mpsc::unbounded_channel();
        let (rtx, rrx) = oneshot::channel();
        self.tx
            .send(Command::Invite {
                config: Box::new(config),
                offer,
                targets,
                events: etx,
                reply: rtx,
            })
            .await
            .map_err(|_| SipError::Stopped)?;
        let h = rrx
            .await
            .map_err(|_| SipError::Stopped)?
            .ok_or(SipError::NoTarget)?;
        Ok((h, erx))
    }

    /// Runs `op` on a call leg inside the SIP task (answer, hang up, ring, re-INVITE ...).
    pub async fn with_call(
        &self,
        call: CallHandle,
        op: impl FnOnce(&mut Call, std::time::Instant) + Send + 'static,
    ) -> Result<(), SipError> {
        let (rtx, rrx) = oneshot::channel();
        self.tx
            .send(Command::WithCall {
                call,
                op: Box::new(op),
                reply: rtx,
            })
            .await
            .map_err(|_| SipError::Stopped)?;
        if rrx.await.map_err(|_| SipError::Stopped)? {
            Ok(())
        } else {
            Err(SipError::NoSuchCall)
        }
    }

    /// Sends an out-of-dialog MESSAGE over UDP and waits for its final
    /// status (`None`: no answer in time, or the transport failed).
    ///
    /// # Errors
    /// [`SipError::Stopped`] when the SIP task is gone.
    pub async fn send_message(
        &self,
        msg: OutgoingMessage,
        dest: SocketAddr,
    ) -> Result<Option<u16>, SipError> {
        self.send_message_over(msg, dest, Transport::Udp).await
    }

    /// Like [`Sip::send_message`] over `transport`.
    ///
    /// # Errors
    /// [`SipError::Stopped`] when the SIP task is gone.
    pub async fn send_message_over(
        &self,
        msg: OutgoingMessage,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<Option<u16>, SipError> {
        let (rtx, rrx) = oneshot::channel();
        self.tx
            .send(Command::Message {
                msg: Box::new(msg),
                dest,
                transport,
                reply: rtx,
            })
            .await
            .map_err(|_| SipError::Stopped)?;
        rrx.await.map_err(|_| SipError::Stopped)
    }

    /// Answers an [`IncomingMessage`] with a final status.
    ///
    /// # Errors
    /// [`SipError::Stopped`] when the SIP task is gone.
    pub async fn answer_message(
        &self,
        handle: IncomingMessageHandle,
        status: u16,
        reason: &'static str,
    ) -> Result<(), SipError> {
        self.tx
            .send(Command::AnswerMessage {
                handle,
                status,
                reason,
            })
            .await
            .map_err(|_| SipError::Stopped)
    }

    /// Unregisters every trunk (waiting briefly for the answers) and stops the task.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Shutdown { done }).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Where call legs' events go.
#[derive(Default)]
struct Routes {
    calls: HashMap<CallHandle, mpsc::UnboundedSender<DialogEvent>>,
    regs: HashMap<RegistrationHandle, String>,
    /// Keep-alive peers: trunk key and the address pinged.
    peers: HashMap<PeerHandle, (String, SocketAddr)>,
    messages: HashMap<MessageHandle, oneshot::Sender<Option<u16>>>,
}

/// Receive buffer asked for the SIP UDP socket.
const SIP_RECV_BUFFER: usize = 4 << 20;

/// Binds `bind`, builds the user agent for it and spawns the SIP task.
///
/// `advertised` is the host written in Via and Contact (the address peers
/// reach us on); incoming calls are sent to `incoming`.
pub async fn spawn(
    bind: SocketAddr,
    advertised: Option<String>,
    incoming: mpsc::Sender<IncomingCall>,
) -> std::io::Result<Sip> {
    spawn_inner(bind, advertised, incoming, None).await
}

/// Like [`spawn`], and hands incoming MESSAGEs to `messages` unanswered
/// (without it they are answered 200 and only logged).
pub async fn spawn_with_messages(
    bind: SocketAddr,
    advertised: Option<String>,
    incoming: mpsc::Sender<IncomingCall>,
    messages: mpsc::Sender<IncomingMessage>,
) -> std::io::Result<Sip> {
    spawn_inner(bind, advertised, incoming, Some(messages)).await
}

async fn spawn_inner(
    bind: SocketAddr,
    advertised: Option<String>,
    incoming: mpsc::Sender<IncomingCall>,
    messages: Option<mpsc::Sender<IncomingMessage>>,
) -> std::io::Result<Sip> {
    let socket = UdpSocket::bind(bind).await?;
    // A burst of requests (a PBX re-registering its phones, a call storm) must
    // wait in the kernel, not be dropped and cost the peer a 500 ms
    // retransmission: the default 208 KiB holds ~300 INVITEs. The kernel caps
    // the size at net.core.rmem_max; a smaller buffer is not an error.
    if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(SIP_RECV_BUFFER) {
        debug!(cause = %e, "SIP socket receive buffer not raised");
    }
    let local = socket.local_addr()?;
    let host = advertised.unwrap_or_else(|| {
        if local.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            local.ip().to_string()
        }
    });
    let sent_by = format!("{host}:{}", local.port());
    let contact = Uri::parse(&format!("sip:namecall@{sent_by}"))
        .map_err(|e| std::io::Error::other(format!("contact uri: {e}")))?;
    let mut config = UaConfig::new(contact, &sent_by, rand::random());
    config.user_agent = Some(format!("namecall/{}", env!("CARGO_PKG_VERSION")));
    config.auto_answer_messages = messages.is_none();
    let ua = UserAgent::new(config, StdInstant::now());
    // TCP listens on the same address and port; without it we stay UDP-only.
    let listener = match TcpListener::bind(local).await {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(cause = %e, %local, "sip tcp listener not started");
            None
        }
    };
    let tcp_up = listener.is_some();
    let (tcp, tcp_rx) = tcp::TcpTransport::start(listener);
    let (tx, rx) = mpsc::channel(256);
    let trunks = Arc::new(TrunkStatus::default());
    let driver = Driver {
        socket,
        tcp,
        tcp_rx,
        ua,
        rx,
        trunks: trunks.clone(),
        routes: Routes::default(),
        incoming,
        messages,
        last_source: None,
    };
    tokio::spawn(driver.run());
    info!(%local, %sent_by, tcp = tcp_up, "sip listening (udp)");
    Ok(Sip {
        tx,
        local_addr: local,
        sent_by,
        trunks,
        dns: None,
    })
}

/// Owns the socket and the user agent.
#[must_use = "the SIP driver must be spawned to do anything"]
struct Driver {
    socket: UdpSocket,
    tcp: tcp::TcpTransport,
    tcp_rx: mpsc::Receiver<tcp::TcpInput>,
    ua: UserAgent,
    rx: mpsc::Receiver<Command>,
    trunks: Arc<TrunkStatus>,
    routes: Routes,
    incoming: mpsc::Sender<IncomingCall>,
    messages: Option<mpsc::Sender<IncomingMessage>>,
    /// Source of the last datagram fed to the user agent.
    last_source: Option<SocketAddr>,
}

impl Driver {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut shutting_down: Option<(oneshot::Sender<()>, Instant)> = None;
        loop {
            let deadline = self.drain().await;
            self.trunks
                .sip_calls
                .store(self.ua.call_count(), Ordering::Relaxed);
            self.trunks
                .sip_transactions
                .store(self.ua.transaction_count(), Ordering::Relaxed);
            if let Some((_, until)) = &shutting_down {
                let all_gone = self.trunks.all().iter().all(|(_, s)| !s.registered);
                if all_gone || Instant::now() >= *until {
                    if let Some((done, _)) = shutting_down.take() {
                        let _ = done.send(());
                    }
                    return;
                }
            }
            let wake = shutting_down
                .as_ref()
                .map_or(deadline, |(_, u)| deadline.min(*u));
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        // new INVITEs drained right after this input came from here
                        self.last_source = Some(from);
                        self.ua.handle_input(StdInstant::now(), from, Transport::Udp, &buf[..n]);
                    }
                    // ICMP port-unreachable surfaces as an error on Linux UDP sockets; keep going
                    Err(e) => debug!(cause = %e, "sip recv error"),
                },
                Some(input) = self.tcp_rx.recv() => {
                    if let tcp::TcpInput::Unreachable { peer } = &input {
                        self.ua.handle_unreachable(StdInstant::now(), *peer, Transport::Tcp);
                    }
                    if let Some((from, data)) = self.tcp.handle(input) {
                        self.last_source = Some(from);
                        self.ua.handle_input(StdInstant::now(), from, Transport::Tcp, &data);
                    }
                },
                _ = tokio::time::sleep_until(wake) => {
                    self.ua.handle_timeout(StdInstant::now());
                }
                cmd = self.rx.recv(), if shutting_down.is_none() => match cmd {
                    Some(Command::Shutdown { done }) => {
                        let handles: Vec<RegistrationHandle> = self.routes.regs.keys().copied().collect();
                        for h in handles {
                            self.ua.unregister(StdInstant::now(), h);
                        }
                        shutting_down = Some((done, Instant::now() + std::time::Duration::from_secs(3)));
                    }
                    Some(cmd) => self.command(cmd),
                    None => return,
                },
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = StdInstant::now();
        match cmd {
            Command::Register {
                key,
                config,
                targets,
            } => {
                if let Some(h) = self.ua.register_targets(now, *config, targets) {
                    self.trunks.update(&key, |_| {});
                    self.routes.regs.insert(h, key);
                }
            }
            Command::Unregister { key } => {
                let handles: Vec<RegistrationHandle> = self
                    .routes
                    .regs
                    .iter()
                    .filter(|(_, k)| **k == key)
                    .map(|(h, _)| *h)
                    .collect();
                for h in handles {
                    self.ua.unregister(now, h);
                    // its last events (the un-REGISTER's answer) are no longer reported
                    self.routes.regs.remove(&h);
                }
                self.trunks.remove(&key);
            }
            Command::Watch {
                key,
                uri,
                targets,
                interval,
            } => {
                self.unwatch(&key);
                self.trunks.update(&key, |_| {});
                for t in targets {
                    let h =
                        self.ua
                            .add_peer_every(now, (*uri).clone(), t.addr, t.transport, interval);
                    self.routes.peers.insert(h, (key.clone(), t.addr));
                }
            }
            Command::Unwatch { key } => {
                self.unwatch(&key);
                if self.routes.regs.values().any(|k| *k == key) {
                    self.trunks.update(&key, |s| {
                        s.up = None;
                        s.last_change = None;
                        s.down_targets.clear();
                    });
                } else {
                    // an `ip` trunk: nothing else shows its state
                    self.trunks.remove(&key);
                }
            }
            Command::Addresses { key, addresses } => {
                self.trunks.update(&key, |s| s.addresses = addresses);
            }
            Command::Invite {
                config,
                offer,
                targets,
                events,
                reply,
            } => {
                let h = self.ua.invite_targets(now, *config, offer, targets);
                if let Some(h) = h {
                    self.routes.calls.insert(h, events);
                }
                let _ = reply.send(h);
            }
            Command::WithCall { call, op, reply } => match self.ua.call(call) {
                Some(c) => {
                    op(c, now);
                    let _ = reply.send(true);
                }
                None => {
                    let _ = reply.send(false);
                }
            },
            Command::Message {
                msg,
                dest,
                transport,
                reply,
            } => {
                let h = self.ua.send_message_with(now, *msg, dest, transport);
                self.routes.messages.insert(h, reply);
            }
            Command::AnswerMessage {
                handle,
                status,
                reason,
            } => {
                if !self.ua.answer_message(now, handle, status, reason) {
                    debug!(status, "sip MESSAGE answered too late");
                }
            }
            Command::Shutdown { .. } => {}
        }
    }

    /// Stops the keep-alives of trunk `key`.
    fn unwatch(&mut self, key: &str) {
        let handles: Vec<PeerHandle> = self
            .routes
            .peers
            .iter()
            .filter(|(_, (k, _))| k == key)
            .map(|(h, _)| *h)
            .collect();
        for h in handles {
            self.ua.remove_peer(h);
            self.routes.peers.remove(&h);
        }
    }

    /// A keep-alive answer changed an address's state. The trunk is up
    /// while any of its addresses answers, down once every one is down; a
    /// registration trunk that is back registers again at once (a restarted
    /// PBX forgot us).
    fn peer_changed(&mut self, peer: PeerHandle, up: bool) {
        let Some((key, addr)) = self.routes.peers.get(&peer).cloned() else {
            return;
        };
        if up {
            debug!(trunk = %key, %addr, "trunk address answers OPTIONS");
        } else {
            warn!(trunk = %key, %addr, "trunk address silent or 5xx to OPTIONS");
        }
        let states: Vec<(SocketAddr, Option<bool>)> = self
            .routes
            .peers
            .iter()
            .filter(|(_, (k, _))| *k == key)
            .map(|(h, (_, a))| (*a, self.ua.peer_up(*h)))
            .collect();
        let trunk_up = if states.iter().any(|(_, s)| *s == Some(true)) {
            Some(true)
        } else if states.iter().all(|(_, s)| *s == Some(false)) {
            Some(false)
        } else {
            None
        };
        let down: Vec<SocketAddr> = states
            .iter()
            .filter(|(_, s)| *s == Some(false))
            .map(|(a, _)| *a)
            .collect();
        let was = self.trunks.get(&key).and_then(|s| s.up);
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.trunks.update(&key, |s| {
            s.down_targets = down;
            if trunk_up.is_some() && trunk_up != s.up {
                s.up = trunk_up;
                s.last_change = Some(stamp);
            }
        });
        if trunk_up == was || trunk_up.is_none() {
            return;
        }
        if trunk_up == Some(true) {
            info!(trunk = %key, "trunk up (answers OPTIONS)");
        } else {
            warn!(trunk = %key, "trunk down (no answer to OPTIONS, or 5xx)");
        }
        if trunk_up == Some(true) && was == Some(false) {
            let regs: Vec<RegistrationHandle> = self
                .routes
                .regs
                .iter()
                .filter(|(_, k)| **k == key)
                .map(|(h, _)| *h)
                .collect();
            for h in regs {
                info!(trunk = %key, "registering again now that the trunk is back");
                self.ua.refresh_registration(StdInstant::now(), h);
            }
        }
    }

    /// Drains the user agent's output; returns when it next wants a timeout.
    async fn drain(&mut self) -> Instant {
        loop {
            match self.ua.poll_output() {
                UaOutput::Transmit(t) if t.transport == Transport::Tcp => {
                    if !self.tcp.send(t.dest, t.data.clone()) {
                        warn!(dest = %t.dest, "sip tcp send failed");
                        self.ua.handle_transport_error(StdInstant::now(), &t);
                    }
                }
                UaOutput::Transmit(t) => {
                    if let Err(e) = self.socket.send_to(&t.data, t.dest).await {
                        warn!(cause = %e, dest = %t.dest, "sip send failed");
                        self.ua.handle_transport_error(StdInstant::now(), &t);
                    }
                }
                UaOutput::Event(e) => self.event(e),
                UaOutput::Timeout(at) => {
                    let now_std = StdInstant::now();
                    let now = Instant::now();
                    return if at <= now_std {
                        now
                    } else {
                        now + (at - now_std)
                    };
                }
            }
        }
    }

    fn event(&mut self, e: UaEvent) {
        match e {
            UaEvent::Registration {
                registration,
                event,
            } => {
                let Some(key) = self.routes.regs.get(&registration).cloned() else {
                    return;
                };
                match event {
                    RegistrationEvent::Registered { expires } => {
                        info!(trunk = %key, expires, "trunk registered");
                        self.trunks.update(&key, |s| {
                            s.registered = true;
                            s.expires = expires;
                            s.registrations += 1;
                            s.last_error = None;
                        });
                    }
                    RegistrationEvent::Failed { status, reason, .. } => {
                        warn!(trunk = %key, ?status, %reason, "trunk registration failed");
                        self.trunks.update(&key, |s| {
                            s.registered = false;
                            s.last_error = Some(match status {
                                Some(st) => format!("{st} {reason}"),
                                None => reason,
                            });
                        });
                    }
                    RegistrationEvent::Unregistered => {
                        info!(trunk = %key, "trunk unregistered");
                        self.trunks.update(&key, |s| s.registered = false);
                    }
                }
            }
            UaEvent::Call { call, event } => {
                let terminated = matches!(event, DialogEvent::Terminated { .. });
                if let Some(tx) = self.routes.calls.get(&call) {
                    let _ = tx.send(event);
                }
                if terminated {
                    self.routes.calls.remove(&call);
                }
            }
            UaEvent::IncomingCall {
                call,
                invite,
                offer,
            } => {
                let (etx, erx) = mpsc::unbounded_channel();
                self.routes.calls.insert(call, etx);
                // the user agent reports a new INVITE while draining the input it came in
                let source = self.last_source;
                let ic = IncomingCall {
                    call,
                    invite,
                    offer,
                    source,
                    events: erx,
                };
                if let Err(e) = self.incoming.try_send(ic) {
                    // call control is saturated or gone: refuse rather than leave it ringing
                    warn!("incoming call dropped: {e}");
                    if let Some(c) = self.ua.call(call) {
                        let _ = c.reject(503, "Service Unavailable");
                    }
                }
            }
            UaEvent::IncomingMessage {
                message,
                request,
                source,
            } => {
                let sent = self.messages.as_ref().map(|tx| {
                    tx.try_send(IncomingMessage {
                        handle: message,
                        request,
                        source,
                    })
                });
                if !matches!(sent, Some(Ok(()))) {
                    // chat is saturated or gone: refuse rather than let the PBX wait
                    warn!("incoming sip MESSAGE dropped");
                    self.ua
                        .answer_message(StdInstant::now(), message, 503, "Service Unavailable");
                }
            }
            UaEvent::PeerUp { peer } => self.peer_changed(peer, true),
            UaEvent::PeerDown { peer } => self.peer_changed(peer, false),
            UaEvent::MessageResult { message, status } => {
                if let Some(reply) = self.routes.messages.remove(&message) {
                    let _ = reply.send(status);
                }
            }
            UaEvent::Message { from, to, body } => {
                debug!(from = %uri_of(&from), to = %uri_of(&to), has_body = body.is_some(), "sip MESSAGE");
            }
            other => debug!(?other, "sip event"),
        }
    }
}

fn uri_of(n: &NameAddr) -> String {
    n.uri.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-trunk metrics: up is 1 unless the keep-alive says down;
    /// failovers count per trunk; the two SIP gauges are always there.
    #[test]
    fn trunk_metrics_render() {
        let t = TrunkStatus::default();
        t.update("acme/main", |s| s.up = Some(false));
        t.update("acme/backup", |s| s.up = None);
        t.record_failover("acme/main");
        t.record_failover("acme/main");
        let text = t.render_metrics();
        for line in [
            "namecall_sip_dialogs 0\n",
            "namecall_sip_transactions 0\n",
            "namecall_trunk_up{trunk=\"acme/main\"} 0\n",
            "namecall_trunk_up{trunk=\"acme/backup\"} 1\n",
            "namecall_trunk_failovers_total{trunk=\"acme/main\"} 2\n",
            "namecall_trunk_failovers_total{trunk=\"acme/backup\"} 0\n",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert!(!t.usable("acme/main"));
        assert!(t.usable("acme/backup"));
        assert!(t.usable("acme/unknown"), "a trunk never seen is usable");
    }
}
