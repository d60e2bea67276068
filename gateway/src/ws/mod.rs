//! The client WebSocket at `/v1/ws`: one task per socket, owning that client's calls.
//!
//! The session task `select!`s over three sources: frames from the client,
//! events from its calls' media tasks, and the server's shutdown signal. It
//! owns a map from the client's call ids to [`CallHandle`]s; when the socket
//! closes the map drops, every command channel closes and every media task
//! ends (see `calls`). Bad frames get an `error` frame; the socket stays open.

pub mod protocol;

use std::collections::HashMap;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::AppState;
use crate::accounts::Identity;
use crate::calls::CallHandle;
use crate::media_io::{LegCommand, LegEvent};
use crate::metrics::Gauge;
use protocol::{ClientFrame, FrameError, MAX_FRAME_BYTES, ServerFrame};

/// The transport-level cap: larger messages close the socket. Frames between
/// [`MAX_FRAME_BYTES`] and this get an `error` frame instead.
const HARD_MESSAGE_LIMIT: usize = 256 * 1024;

/// `GET /v1/ws`: upgrades to the client protocol.
pub async fn upgrade(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    ws.max_message_size(HARD_MESSAGE_LIMIT)
        .max_frame_size(HARD_MESSAGE_LIMIT)
        .on_upgrade(move |socket| Session::new(state).run(socket))
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
}

impl Session {
    fn new(state: AppState) -> Self {
        let (events_tx, events_rx) = mpsc::channel(64);
        Session {
            state,
            identity: None,
            calls: HashMap::new(),
            events_tx,
            events_rx,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let _gauge = self.state.metrics.hold(Gauge::WsSessions);
        let mut shutdown = self.state.shutdown.clone();
        let (mut sink, mut stream) = socket.split();
        loop {
            let replies = tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => vec![ServerFrame::from_error(&FrameError::Binary, None)],
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Vec::new(),
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        debug!(cause = %e, "websocket read failed");
                        break;
                    }
                },
                Some((id, ev)) = self.events_rx.recv() => self.on_leg_event(id, ev),
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

    /// Makes `identity` the session's and builds its `welcome`.
    fn welcome(&mut self, identity: Identity) -> ServerFrame {
        let frame = ServerFrame::Welcome {
            login: identity.login.clone(),
            guest: identity.guest,
            token: identity.token.clone(),
        };
        self.identity = Some(identity);
        frame
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
        let (tx, mut rx) = mpsc::channel(16);
        // tag this call's events with its id on the session's one channel
        let tagged = self.events_tx.clone();
        let tag = id.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if tagged.send((tag.clone(), ev)).await.is_err() {
                    break;
                }
            }
        });
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

    fn on_leg_event(&mut self, id: String, ev: LegEvent) -> Vec<ServerFrame> {
        match ev {
            LegEvent::Connected => Vec::new(),
            LegEvent::Ringing => vec![ServerFrame::Ringing { id }],
            LegEvent::Answered => vec![ServerFrame::Accepted { id }],
            LegEvent::Held => vec![ServerFrame::Hold { id, on: true }],
            LegEvent::Resumed => vec![ServerFrame::Hold { id, on: false }],
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
