//! The client WebSocket at `/v1/ws`: one task per socket, owning that client's calls.
//!
//! The session task `select!`s over three sources: frames from the client,
//! events from its calls' media tasks, and the server's shutdown signal. It
//! owns a map from the client's call ids to [`CallHandle`]s; when the socket
//! closes the map drops, every command channel closes and every media task
//! ends (see `calls`). Bad frames get an `error` frame; the socket stays open.

pub mod protocol;

use std::collections::HashMap;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::AppState;
use crate::accounts::Identity;
use crate::calls::CallHandle;
use crate::calls::incoming::{Answer, Offer, Push, Registration};
use crate::chat::ChatLink;
use crate::media_io::{LegCommand, LegEvent};
use crate::metrics::Gauge;
use protocol::{ClientFrame, FrameError, MAX_FRAME_BYTES, ServerFrame};

/// The transport-level cap: larger messages close the socket. Frames between
/// [`MAX_FRAME_BYTES`] and this get an `error` frame instead.
const HARD_MESSAGE_LIMIT: usize = 256 * 1024;

/// Read buffer of each socket. tungstenite's default (128 KiB, allocated
/// up front) is sized for a few busy sockets; a messenger has many idle
/// ones, and larger frames still arrive (the buffer is refilled).
const READ_BUFFER: usize = 4 * 1024;

/// Queued chat frames written to a socket with one flush.
const CHAT_BURST: usize = 64;

/// Query parameters of `/v1/ws`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct WsParams {
    /// The chat device id (`docs/protocol.md`, "Chat"); random when absent.
    pub device: Option<String>,
}

/// `GET /v1/ws`: upgrades to the client protocol.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    Query(params): Query<WsParams>,
    State(state): State<AppState>,
) -> Response {
    ws.max_message_size(HARD_MESSAGE_LIMIT)
        .max_frame_size(HARD_MESSAGE_LIMIT)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| {
            let mut session = Session::new(state);
            session.device = params.device;
            session.run(socket)
        })
}

/// One client's session state.
struct Session {
    state: AppState,
    /// Set by `hello`/`auth`; calls need it.
    identity: Option<Identity>,
    /// The client's calls by the client's ids.
    calls: HashMap<String, CallHandle>,
    /// Media tasks report here, tagged with the client's call id.
    events_tx: mpsc::Sender<(String, LegEvent)>,
    events_rx: mpsc::Receiver<(String, LegEvent)>,
    /// Set while an account is logged in: desk phones can ring this session.
    registration: Option<Registration>,
    /// Calls from desk phones ring here.
    push_tx: mpsc::Sender<Push>,
    push_rx: mpsc::Receiver<Push>,
    /// Incoming calls ringing on this session, by id.
    offers: HashMap<String, Offer>,
    /// The chat device id the client asked for (`?device=`).
    device: Option<String>,
    /// Set by the first chat frame of a logged-in account (see `chat`).
    chat: Option<ChatLink>,
}

impl Session {
    fn new(state: AppState) -> Self {
        let (events_tx, events_rx) = mpsc::channel(64);
        let (push_tx, push_rx) = mpsc::channel(16);
        Session {
            state,
            identity: None,
            calls: HashMap::new(),
            events_tx,
            events_rx,
            registration: None,
            push_tx,
            push_rx,
            offers: HashMap::new(),
            device: None,
            chat: None,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let _gauge = self.state.metrics.hold(Gauge::WsSessions);
        let mut shutdown = self.state.shutdown.clone();
        let (mut sink, mut stream) = socket.split();
        loop {
            let replies = tokio::select! {
                msg = stream.next() => match msg {
                    // boxed: the frame handlers' state is large and lives only
                    // while a frame is handled, not in every idle session
                    Some(Ok(Message::Text(text))) => Box::pin(self.on_text(text.as_str())).await,
                    Some(Ok(Message::Binary(_))) => vec![ServerFrame::from_error(&FrameError::Binary, None)],
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Vec::new(),
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        debug!(cause = %e, "websocket read failed");
                        break;
                    }
                },
                Some((id, ev)) = self.events_rx.recv() => self.on_leg_event(id, ev),
                Some(push) = self.push_rx.recv() => self.on_push(push),
                out = crate::chat::next(&mut self.chat) => match out {
                    Some(frame) => {
                        if sink.feed(Message::Text(frame.to_json().into())).await.is_err() {
                            return;
                        }
                        // frames already queued for this device leave in the
                        // same write: one syscall per burst, not per frame
                        let mut more = 0;
                        while more < CHAT_BURST
                            && let Some(frame) = self.chat.as_mut().and_then(ChatLink::try_recv)
                        {
                            if sink.feed(Message::Text(frame.to_json().into())).await.is_err() {
                                return;
                            }
                            more += 1;
                        }
                        if sink.flush().await.is_err() {
                            return;
                        }
                        Vec::new()
                    }
                    None => {
                        self.chat = None;
                        vec![error("chat-closed", "chat dropped this device; send sync to resume".into(), None)]
                    }
                },
                _ = shutdown.changed() => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            };
            for frame in replies {
                if sink
                    .send(Message::Text(frame.to_text().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        info!(calls = self.calls.len(), "websocket session closed");
        // dropping `self.calls` closes every command channel: the media tasks end
    }

    async fn on_text(&mut self, text: &str) -> Vec<ServerFrame> {
        if text.len() <= MAX_FRAME_BYTES
            && let Some(kind) = crate::chat::chat_type(text)
        {
            return self.on_chat(kind, text).await;
        }
        match ClientFrame::parse(text) {
            Ok((frame, _)) => self.on_frame(frame).await,
            Err((err, reference)) => {
                debug!(code = err.code(), cause = %err, "client frame refused");
                vec![ServerFrame::from_error(&err, reference)]
            }
        }
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Vec<ServerFrame> {
        match frame {
            ClientFrame::Hello { login } => self.login(&login, None).await,
            ClientFrame::Auth { login, password } => self.login(&login, Some(&password)).await,
            ClientFrame::Register { login, password } => {
                match self.state.accounts.register(&login, &password).await {
                    Ok(identity) => {
                        info!(login = %identity.login, "account registered");
                        vec![self.welcome(identity)]
                    }
                    Err(e) => vec![error("register-failed", e.to_string(), Some(login))],
                }
            }
            ClientFrame::Resume { token } => match self.state.accounts.resume(&token).await {
                Ok(identity) => {
                    info!(login = %identity.login, "session resumed");
                    vec![self.welcome(identity)]
                }
                Err(e) => vec![error("auth-failed", e.to_string(), Some("resume".into()))],
            },
            ClientFrame::Logout => {
                if let Some(token) = self.identity.as_ref().and_then(|i| i.token.clone())
                    && let Err(e) = self.state.accounts.logout(&token).await
                {
                    return vec![error("logout-failed", e.to_string(), Some("logout".into()))];
                }
                // the socket stays open as a fresh, not logged-in session
                self.identity = None;
                self.registration = None;
                self.offers.clear();
                self.calls.clear();
                vec![ServerFrame::LoggedOut]
            }
            ClientFrame::Search { query } => match self.state.accounts.search(&query).await {
                Ok(hits) => vec![ServerFrame::Results { query, hits }],
                Err(e) => vec![error("search-failed", e.to_string(), Some(query))],
            },
            ClientFrame::Call { id, to, sdp } => self.call(id, to, sdp).await,
            ClientFrame::Ice { id, candidate } => {
                self.command(id, LegCommand::Candidate(candidate)).await
            }
            ClientFrame::Dtmf { id, digits } => self.command(id, LegCommand::Dtmf(digits)).await,
            ClientFrame::Hangup { id } => self.command(id, LegCommand::Hangup).await,
            ClientFrame::Accept { id, sdp } => self.accept(id, sdp).await,
            ClientFrame::Decline { id } => match self.offers.remove(&id) {
                Some(offer) => {
                    let session = self.registration.as_ref().map_or(0, Registration::session);
                    let _ = offer.respond.send((session, Answer::Decline)).await;
                    vec![ServerFrame::Ended {
                        id,
                        reason: "declined".into(),
                        code: 603,
                    }]
                }
                None => vec![error(
                    "no-such-call",
                    "no incoming call with this id".into(),
                    Some(id),
                )],
            },
        }
    }

    async fn login(&mut self, login: &str, password: Option<&str>) -> Vec<ServerFrame> {
        match self.state.accounts.login(login, password).await {
            Ok(identity) => {
                info!(login = %identity.login, guest = identity.guest, "session logged in");
                vec![self.welcome(identity)]
            }
            Err(e) => vec![error("auth-failed", e.to_string(), Some(login.to_owned()))],
        }
    }

    /// Makes `identity` the session's and builds its `welcome`; an account
    /// session becomes reachable for calls from desk phones.
    fn welcome(&mut self, identity: Identity) -> ServerFrame {
        let frame = ServerFrame::Welcome {
            login: identity.login.clone(),
            guest: identity.guest,
            token: identity.token.clone(),
            ice_servers: self
                .state
                .ice
                .for_login(&identity.login, std::time::SystemTime::now()),
        };
        self.registration = (!identity.guest).then(|| {
            self.state
                .calls
                .users
                .register(&identity.login, self.push_tx.clone())
        });
        self.identity = Some(identity);
        frame
    }

    fn on_push(&mut self, push: Push) -> Vec<ServerFrame> {
        match push {
            Push::Incoming(offer) => {
                info!(call = %offer.id, from = %offer.from, "incoming call for this session");
                let frame = ServerFrame::Incoming {
                    id: offer.id.clone(),
                    from: offer.from.clone(),
                    from_uri: offer.from_uri.clone(),
                    video: offer.video,
                };
                self.offers.insert(offer.id.clone(), offer);
                vec![frame]
            }
            Push::Stop { id, reason, code } => match self.offers.remove(&id) {
                Some(_) => vec![ServerFrame::Ended {
                    id,
                    reason: reason.into(),
                    code,
                }],
                None => Vec::new(),
            },
        }
    }

    /// Takes a ringing incoming call with the browser's offer.
    async fn accept(&mut self, id: String, sdp: String) -> Vec<ServerFrame> {
        let Some(offer) = self.offers.remove(&id) else {
            return vec![error(
                "no-such-call",
                "no incoming call with this id".into(),
                Some(id),
            )];
        };
        let session = self.registration.as_ref().map_or(0, Registration::session);
        let events = self.tagged_events(&id);
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let answer = Answer::Accept {
            sdp,
            events,
            reply: reply_tx,
        };
        if offer.respond.send((session, answer)).await.is_err() {
            return vec![ServerFrame::Ended {
                id,
                reason: "cancelled".into(),
                code: 487,
            }];
        }
        match tokio::time::timeout(std::time::Duration::from_secs(10), reply_rx).await {
            Ok(Ok(Ok(handle))) => {
                let out = vec![
                    ServerFrame::Answer {
                        id: id.clone(),
                        sdp: handle.answer.clone(),
                    },
                    ServerFrame::Ice {
                        id: id.clone(),
                        candidate: String::new(),
                    },
                ];
                self.calls.insert(id, handle);
                out
            }
            Ok(Ok(Err(e))) => {
                let (reason, code) = e.reason_and_code();
                vec![ServerFrame::Ended {
                    id,
                    reason: reason.into(),
                    code,
                }]
            }
            // the ringing ended meanwhile (cancelled, or another device was faster)
            _ => vec![ServerFrame::Ended {
                id,
                reason: "cancelled".into(),
                code: 487,
            }],
        }
    }

    /// A sender whose events reach this session tagged with call `id`.
    fn tagged_events(&self, id: &str) -> mpsc::Sender<LegEvent> {
        let (tx, mut rx) = mpsc::channel(16);
        let tagged = self.events_tx.clone();
        let tag = id.to_owned();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tagged.send((tag.clone(), ev)).await.is_err() {
                    break;
                }
            }
        });
        tx
    }

    async fn call(&mut self, id: String, to: String, sdp: String) -> Vec<ServerFrame> {
        if self.identity.is_none() {
            return vec![error(
                "not-logged-in",
                "send hello or auth first".into(),
                Some(id),
            )];
        }
        if self.calls.contains_key(&id) {
            return vec![error(
                "duplicate-id",
                "a call with this id is active".into(),
                Some(id),
            )];
        }
        // this call's events reach the session tagged with its id
        let tx = self.tagged_events(&id);
        let mut out = Vec::new();
        let Some(identity) = self.identity.as_ref() else {
            return out;
        };
        match self.state.calls.start_call(identity, &to, &sdp, tx).await {
            Ok(handle) => {
                info!(call = %id, to = %to, "call started");
                out.push(ServerFrame::Answer {
                    id: id.clone(),
                    sdp: handle.answer.clone(),
                });
                // all our candidates are in the answer: tell the client gathering is done
                out.push(ServerFrame::Ice {
                    id: id.clone(),
                    candidate: String::new(),
                });
                self.calls.insert(id, handle);
            }
            Err(e) => {
                let (reason, code) = e.reason_and_code();
                info!(call = %id, to = %to, cause = %e, "call failed");
                if matches!(e, crate::calls::CallError::NoMediaPort(_)) {
                    // the port range is exhausted: say so before the call ends
                    out.push(error("no-media-port", e.to_string(), Some(id.clone())));
                }
                out.push(ServerFrame::Ended {
                    id,
                    reason: reason.into(),
                    code,
                });
            }
        }
        out
    }

    async fn command(&mut self, id: String, cmd: LegCommand) -> Vec<ServerFrame> {
        let Some(handle) = self.calls.get(&id) else {
            return vec![error(
                "no-such-call",
                "no active call with this id".into(),
                Some(id),
            )];
        };
        if handle.commands.send(cmd).await.is_err() {
            // the media task is gone; its `ended` event is on the way
            debug!(call = %id, "command to finished call");
        }
        Vec::new()
    }

    /// A chat frame: attaches this socket as a chat device of its account
    /// on first use, then hands the frame to the chat; answers arrive
    /// through the device channel.
    async fn on_chat(&mut self, kind: &str, text: &str) -> Vec<ServerFrame> {
        let reference = Some(kind.to_owned());
        let Some(chat) = self.state.chat.clone() else {
            return vec![error(
                "chat-unavailable",
                "chat is not enabled".into(),
                reference,
            )];
        };
        let login = match &self.identity {
            // the socket logged in again as a guest (or not at all): no chat
            None | Some(Identity { guest: true, .. }) if self.chat.is_some() => {
                self.chat = None;
                return vec![error(
                    "account-required",
                    "chat needs an account".into(),
                    reference,
                )];
            }
            None => {
                return vec![error(
                    "not-logged-in",
                    "send auth or register first".into(),
                    reference,
                )];
            }
            Some(id) if id.guest => {
                return vec![error(
                    "account-required",
                    "guests cannot chat; sign in with a password".into(),
                    reference,
                )];
            }
            Some(id) => match bridges::Login::parse(&id.login) {
                Ok(login) => login,
                Err(e) => return vec![error("invalid", e.to_string(), reference)],
            },
        };
        if self.chat.as_ref().is_none_or(|c| *c.login() != login) {
            // a new login on this socket is a new device session
            self.chat = None;
            let device = crate::chat::device_id(self.device.as_deref());
            self.chat = Some(chat.attach(login, device));
        }
        if let Some(link) = &self.chat {
            chat.handle(link, kind, text).await;
        }
        Vec::new()
    }

    fn on_leg_event(&mut self, id: String, ev: LegEvent) -> Vec<ServerFrame> {
        match ev {
            LegEvent::Connected => Vec::new(),
            LegEvent::Ringing { early } => vec![ServerFrame::Ringing { id, early }],
            LegEvent::Answered => vec![ServerFrame::Accepted { id }],
            LegEvent::Held => vec![ServerFrame::Hold { id, on: true }],
            LegEvent::Resumed => vec![ServerFrame::Hold { id, on: false }],
            LegEvent::Digit(d) => vec![ServerFrame::Dtmf {
                id,
                digit: d.to_string(),
            }],
            LegEvent::Refused { code, message } => vec![error(code, message, Some(id))],
            LegEvent::Ended { reason, code } => {
                self.calls.remove(&id);
                vec![ServerFrame::Ended {
                    id,
                    reason: reason.into(),
                    code,
                }]
            }
        }
    }
}

fn error(code: &str, message: String, reference: Option<String>) -> ServerFrame {
    ServerFrame::Error {
        code: code.to_owned(),
        message,
        reference,
    }
}

/// Keeps the limit constants linked in docs and checks their order at compile time.
const _: () = assert!(MAX_FRAME_BYTES < HARD_MESSAGE_LIMIT);
