//! `ChatService`: the glue between [`ChatStore`] and the sans-IO [`Hub`],
//! so the gateway's WebSocket task only parses nothing and forwards
//! everything: text in, `(DeviceId, ServerFrame)` pairs out.
//!
//! Two locks, each for one reason:
//! - `hub` is a std mutex: every critical section is a few map operations
//!   and never spans an `.await`.
//! - `order` is an async mutex held from "commit" to "push" of every write
//!   and from "last sync read" to "device is live". Pushes then leave in
//!   commit order, and no entry can be committed between a device's final
//!   sync page and it going live (it would be neither synced nor pushed).
//!   SQLite has a single writer anyway, so this costs little throughput.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use tokio::sync::mpsc;

use crate::delivery::DeliveryConfig;
use crate::error::{ChatError, Result};
use crate::frames::{ClientFrame, ConversationItem, Entry, MemberItem, ServerFrame};
use crate::hub::{Hub, Outbox};
use crate::model::{
    Body, ClientId, CompanyName, ConversationId, DeviceId, Login, Payload, Seq, Timestamp,
};
use crate::push::{Notice, PushJob, Subscription, preview_of};
use crate::store::{BatchDone, BatchWrite, ChatStore, SendRequest, Stored, Watermark};
use crate::writer::BatchWriter;

/// Default page size for `sync` and `history`.
const DEFAULT_PAGE: u32 = 100;

/// Carries the messages of company conversations (`co:`) to the
/// companies; the gateway implements it over SIP MESSAGE.
pub trait CompanyRelay: Send + Sync + std::fmt::Debug {
    /// Whether `user` may write to `company` now, checked before anything
    /// is stored. Refusals are [`ChatError::Company`] (or `Forbidden`).
    ///
    /// # Errors
    /// Why the message cannot go out (unknown name, no chat, no trunk).
    fn admit(&self, user: &Login, company: &CompanyName) -> Result<()>;

    /// A post of a user to a company is stored: deliver it. Must not block;
    /// the outcome comes back through [`ChatService::peer_delivered`] or
    /// [`ChatService::peer_failed`].
    fn relay(&self, stored: &Stored);
}

/// The chat of one node: a store and a hub.
#[derive(Debug)]
pub struct ChatService {
    store: ChatStore,
    hub: Mutex<Hub>,
    order: tokio::sync::Mutex<()>,
    /// Where push jobs go; unset means no push (and no store reads for it).
    push: OnceLock<mpsc::Sender<PushJob>>,
    /// Delivery to companies; unset means company conversations refuse sends.
    company: OnceLock<Arc<dyn CompanyRelay>>,
}

impl ChatService {
    /// A service over `store` with the given delivery timers.
    pub fn new(store: ChatStore, config: DeliveryConfig) -> Self {
        Self {
            store,
            hub: Mutex::new(Hub::new(config)),
            order: tokio::sync::Mutex::new(()),
            push: OnceLock::new(),
            company: OnceLock::new(),
        }
    }

    /// Turns chat with companies on: sends to `co:` conversations are
    /// admitted and relayed by `relay`. Only the first call has an effect.
    pub fn set_company_relay(&self, relay: Arc<dyn CompanyRelay>) {
        let _ = self.company.set(relay);
    }

    /// Stores a message from `company` to `user` (an incoming SIP MESSAGE)
    /// and returns the `message` frames for the user's live devices. The
    /// write is durable when this returns `Ok`, so the caller may answer
    /// the company's PBX with 200 then.
    ///
    /// # Errors
    /// `Invalid` for a bad body, storage errors.
    pub async fn receive_from_company(
        &self,
        now: Timestamp,
        user: &Login,
        company: &CompanyName,
        client_id: &ClientId,
        body: Body,
    ) -> Result<Outbox> {
        let _order = self.order.lock().await;
        let stored = self
            .store
            .receive_from_company(user, company, client_id, body, now)
            .await?;
        let (out, offline) = {
            let mut hub = self.hub();
            let out = hub.on_stored_remote(&stored);
            let offline = if self.push.get().is_some() {
                hub.wants_push(&stored)
            } else {
                Vec::new()
            };
            (out, offline)
        };
        if !offline.is_empty()
            && let Err(err) = self.queue_push(&offline, &stored).await
        {
            tracing::warn!(cause = %err, "push not queued");
        }
        Ok(out)
    }

    /// The company's PBX accepted post `seq` of a company conversation: the
    /// user's devices get a `receipt` with the company's tenant login as
    /// `member` (nothing when the watermark was already there).
    ///
    /// # Errors
    /// `NotFound` for a conversation that is not a company's, storage errors.
    pub async fn peer_delivered(&self, conversation: &ConversationId, seq: Seq) -> Result<Outbox> {
        let Some((user, company)) = conversation.company_pair() else {
            return Err(ChatError::NotFound);
        };
        let Some(delivered) = self.store.peer_delivered(conversation, seq).await? else {
            return Ok(Vec::new());
        };
        let frame = ServerFrame::Receipt {
            conversation: conversation.clone(),
            member: company.tenant(),
            delivered,
            read: Seq(0),
        };
        Ok(self.hub().to_devices_of(&user, &frame))
    }

    /// A post to a company was not delivered: every device of the user gets
    /// an `error` frame with `err`'s code and the post's client id.
    pub fn peer_failed(
        &self,
        conversation: &ConversationId,
        client_id: &str,
        err: &ChatError,
    ) -> Outbox {
        let Some((user, _)) = conversation.company_pair() else {
            return Vec::new();
        };
        let frame = ServerFrame::Error {
            code: err.code().to_owned(),
            message: err.to_string(),
            client_id: Some(client_id.to_owned()),
        };
        self.hub().to_devices_of(&user, &frame)
    }

    /// Turns push on: from now on a new post for a user with no connected
    /// device becomes one [`PushJob`] per subscribed device of theirs, put
    /// into `sink` without waiting (a full sink drops the job: chat never
    /// waits for push). Only the first call has an effect.
    pub fn set_push_sink(&self, sink: mpsc::Sender<PushJob>) {
        let _ = self.push.set(sink);
    }

    /// The store, for admin reads.
    pub fn store(&self) -> &ChatStore {
        &self.store
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock leaves maps consistent enough to
        // keep routing; better than taking every socket down with it.
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-arms expiry timers from the store; call once after opening it,
    /// before serving, so senders are told about expiries across restarts.
    pub async fn restore(&self) -> Result<usize> {
        let pending = self.store.undelivered().await?;
        let mut hub = self.hub();
        for p in &pending {
            hub.delivery_mut().track(p);
        }
        Ok(pending.len())
    }

    /// A device of `login` connected (after the gateway authenticated it).
    /// It should send `sync` next; pushes start when it has caught up.
    pub fn connect(&self, now: Timestamp, device: DeviceId, login: Login) {
        self.hub().register(now, device, login);
    }

    /// A device disconnected.
    pub fn disconnect(&self, now: Timestamp, device: &DeviceId) {
        self.hub().unregister(now, device);
    }

    /// Like [`ChatService::connect`]; returns the `presence` frames for the
    /// devices watching this user when the user just came online.
    pub fn connect_routed(&self, now: Timestamp, device: DeviceId, login: Login) -> Outbox {
        self.hub().register_routed(now, device, login)
    }

    /// Like [`ChatService::disconnect`]; returns the `presence` frames for
    /// the devices watching this user when their last device left.
    pub fn disconnect_routed(&self, now: Timestamp, device: &DeviceId) -> Outbox {
        self.hub().unregister_routed(now, device)
    }

    /// Fires due timers; call at [`ChatService::poll_timeout`].
    pub fn handle_timeout(&self, now: Timestamp) -> Outbox {
        self.hub().handle_timeout(now)
    }

    /// When [`ChatService::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.hub().poll_timeout()
    }

    /// Handles one text frame from `device`. Never fails: errors become an
    /// `error` frame to that device.
    pub async fn handle_text(&self, now: Timestamp, device: &DeviceId, text: &str) -> Outbox {
        match ClientFrame::parse(text) {
            Ok(frame) => self.handle(now, device, frame).await,
            Err(err) => vec![(device.clone(), err)],
        }
    }

    /// Handles one parsed frame from `device`.
    pub async fn handle(&self, now: Timestamp, device: &DeviceId, frame: ClientFrame) -> Outbox {
        let Some(login) = self.hub().login_of(device).cloned() else {
            return vec![(
                device.clone(),
                ServerFrame::error_code("not_registered", "device is not connected", None),
            )];
        };
        let client_id = frame.client_id().cloned();
        match self.dispatch(now, device, &login, frame).await {
            Ok(out) => out,
            Err(err) => {
                if matches!(err.code(), "internal") {
                    tracing::error!(cause = %err, "chat request failed");
                }
                vec![(
                    device.clone(),
                    ServerFrame::from_error(&err, client_id.as_ref()),
                )]
            }
        }
    }

    /// Group commit of many `send` and `ack` frames: every one that passes
    /// its checks is written in one transaction by `writer`
    /// ([`BatchWriter::write_batch`], synchronously on the caller's thread:
    /// call this from a thread of its own; one disk write for all), and
    /// only then are the `ack`s, pushes and
    /// receipts made, in commit order, under the same `order` lock as every
    /// other write. Other frames get an error frame; refusals of one send
    /// (`Forbidden`, `Invalid`, …) do not affect the others; a storage
    /// error answers every frame of the batch with `internal` and writes
    /// nothing. Never fails, like [`ChatService::handle`].
    pub async fn handle_writes(
        &self,
        now: Timestamp,
        frames: Vec<(DeviceId, ClientFrame)>,
        writer: &mut BatchWriter,
    ) -> Outbox {
        let mut out = Vec::new();
        let mut requests = Vec::with_capacity(frames.len());
        // (device, relay for company posts, client id) per request, in order
        let mut origins = Vec::with_capacity(frames.len());
        for (device, frame) in frames {
            let Some(login) = self.hub().login_of(&device).cloned() else {
                out.push((
                    device,
                    ServerFrame::error_code("not_registered", "device is not connected", None),
                ));
                continue;
            };
            let (conversation, client_id, body) = match frame {
                ClientFrame::Send {
                    conversation,
                    client_id,
                    body,
                } => (conversation, client_id, body),
                ClientFrame::Ack { cursor } => {
                    origins.push((device.clone(), None, None));
                    requests.push(BatchWrite::Ack {
                        user: login,
                        device,
                        cursor,
                    });
                    continue;
                }
                other => {
                    let id = other.client_id().cloned();
                    out.push((
                        device,
                        ServerFrame::error_code(
                            "bad_frame",
                            "only send and ack frames are batched",
                            id.as_ref(),
                        ),
                    ));
                    continue;
                }
            };
            let relay = match self.admit_send(&login, &conversation) {
                Ok(r) => r,
                Err(err) => {
                    out.push((device, ServerFrame::from_error(&err, Some(&client_id))));
                    continue;
                }
            };
            origins.push((device, relay, Some(client_id.clone())));
            requests.push(BatchWrite::Send(SendRequest {
                sender: login,
                conversation,
                client_id,
                body,
            }));
        }
        if requests.is_empty() {
            return out;
        }
        let _order = self.order.lock().await;
        let results = match writer.write_batch(requests, now) {
            Ok(r) => r,
            Err(err) => {
                tracing::error!(cause = %err, "chat group commit failed");
                for (device, _, client_id) in origins {
                    out.push((device, ServerFrame::from_error(&err, client_id.as_ref())));
                }
                return out;
            }
        };
        let mut done: Vec<_> = origins.into_iter().zip(results).collect();
        // Devices must get entries in cursor order (an ack of a later
        // cursor covers the earlier ones); the store gives cursors to
        // one-to-one posts first, so route by cursor, not request order.
        done.sort_by_key(|(_, res)| match res {
            Ok(BatchDone::Stored(st)) => st.cursor,
            _ => 0,
        });
        for ((device, relay, client_id), res) in done {
            match res {
                Ok(BatchDone::Stored(st)) => {
                    if let Some(relay) = relay
                        && !st.duplicate
                    {
                        relay.relay(&st);
                    }
                    out.extend(self.stored(now, &device, *st).await);
                }
                Ok(BatchDone::Marks(marks)) => {
                    out.extend(self.receipts_for(now, &device, &marks).await);
                }
                Err(err) => out.push((device, ServerFrame::from_error(&err, client_id.as_ref()))),
            }
        }
        out
    }

    /// Receipts for the watermarks an ack of `device` moved.
    async fn receipts_for(&self, now: Timestamp, device: &DeviceId, marks: &[Watermark]) -> Outbox {
        for wm in marks {
            if let Err(err) = self.ensure_audience(&wm.login, &wm.conversation).await {
                // the watermark is stored; receipts follow with its next move
                tracing::warn!(cause = %err, "receipt audience not loaded");
                return Vec::new();
            }
        }
        self.hub().on_watermarks(now, device, marks, false)
    }

    /// The checks of a send that come before the store: a company
    /// conversation is the sender's own and admitted by the relay.
    fn admit_send(
        &self,
        login: &Login,
        conversation: &ConversationId,
    ) -> Result<Option<Arc<dyn CompanyRelay>>> {
        let Some((user, company)) = conversation.company_pair() else {
            return Ok(None);
        };
        if &user != login {
            return Err(ChatError::Forbidden);
        }
        let relay = self.company.get().ok_or_else(|| ChatError::Company {
            code: "company_unavailable",
            why: "this server does not chat with companies".into(),
        })?;
        relay.admit(login, &company)?;
        Ok(Some(Arc::clone(relay)))
    }

    async fn stored(&self, now: Timestamp, device: &DeviceId, stored: Stored) -> Outbox {
        let (out, offline) = {
            let mut hub = self.hub();
            let out = hub.on_stored(now, device, &stored);
            let offline = if self.push.get().is_some() {
                hub.wants_push(&stored)
            } else {
                Vec::new()
            };
            (out, offline)
        };
        if !offline.is_empty()
            && let Err(err) = self.queue_push(&offline, &stored).await
        {
            // the message is stored and will sync; only the nudge is lost
            tracing::warn!(cause = %err, "push not queued");
        }
        out
    }

    async fn queue_push(&self, offline: &[Login], stored: &Stored) -> Result<()> {
        let Some(sink) = self.push.get() else {
            return Ok(());
        };
        let msg = &stored.message;
        let preview = match &msg.payload {
            Some(Payload::Post { body }) => match body {
                Body::Text { text } => preview_of(text),
                Body::Image(_) => "[image]".to_owned(),
                Body::Video(_) => "[video]".to_owned(),
                Body::File(_) => "[file]".to_owned(),
                Body::Location(_) => "[location]".to_owned(),
                Body::Contact(_) => "[contact]".to_owned(),
            },
            _ => return Ok(()),
        };
        for (login, device, subscription, allows_preview) in
            self.store.push_targets(offline).await?
        {
            let job = PushJob {
                notice: Notice {
                    conversation: msg.conversation.clone(),
                    seq: msg.seq,
                    sender: msg.sender.clone(),
                    preview: allows_preview.then(|| preview.clone()),
                },
                login,
                device,
                subscription,
            };
            if sink.try_send(job).is_err() {
                tracing::warn!("push queue full; notification dropped");
            }
        }
        Ok(())
    }

    async fn ensure_audience(&self, login: &Login, conversation: &ConversationId) -> Result<()> {
        if self.hub().needs_audience(conversation) {
            let members = self.store.members(login, conversation).await?;
            let logins = members.into_iter().map(|m| m.login).collect();
            self.hub().set_audience(conversation.clone(), logins);
        }
        Ok(())
    }

    async fn dispatch(
        &self,
        now: Timestamp,
        device: &DeviceId,
        login: &Login,
        frame: ClientFrame,
    ) -> Result<Outbox> {
        let s = &self.store;
        let one = |f: ServerFrame| vec![(device.clone(), f)];
        match frame {
            ClientFrame::Send {
                conversation,
                client_id,
                body,
            } => {
                let relay = self.admit_send(login, &conversation)?;
                let _order = self.order.lock().await;
                let st = s.send(login, &conversation, &client_id, body, now).await?;
                if let Some(relay) = relay
                    && !st.duplicate
                {
                    relay.relay(&st);
                }
                Ok(self.stored(now, device, st).await)
            }
            ClientFrame::Edit {
                conversation,
                client_id,
                target,
                body,
            } => {
                let _order = self.order.lock().await;
                let st = s
                    .edit(login, &conversation, &client_id, target, body, now)
                    .await?;
                Ok(self.stored(now, device, st).await)
            }
            ClientFrame::Delete {
                conversation,
                client_id,
                target,
            } => {
                let _order = self.order.lock().await;
                let st = s
                    .delete(login, &conversation, &client_id, target, now)
                    .await?;
                Ok(self.stored(now, device, st).await)
            }
            ClientFrame::GroupCreate {
                client_id,
                title,
                members,
            } => {
                let _order = self.order.lock().await;
                let st = s
                    .create_group(login, &client_id, &title, &members, now)
                    .await?;
                Ok(self.stored(now, device, st).await)
            }
            ClientFrame::GroupRename {
                conversation,
                client_id,
                title,
            } => {
                let _order = self.order.lock().await;
                let st = s
                    .rename_group(login, &conversation, &client_id, &title, now)
                    .await?;
                Ok(self.stored(now, device, st).await)
            }
            ClientFrame::GroupAdd {
                conversation,
                client_id,
                members,
            } => {
                let _order = self.order.lock().await;
                let st = s
                    .add_members(login, &conversation, &client_id, &members, now)
                    .await?;
                Ok(self.stored(now, device, st).await)
            }
            ClientFrame::GroupRemove {
                conversation,
                client_id,
                member,
            } => {
                let _order = self.order.lock().await;
                let st = s
                    .remove_member(login, &conversation, &client_id, &member, now)
                    .await?;
                Ok(self.stored(now, device, st).await)
            }
            ClientFrame::GroupPromote {
                conversation,
                client_id,
                member,
            } => {
                let _order = self.order.lock().await;
                let st = s
                    .promote(login, &conversation, &client_id, &member, now)
                    .await?;
                Ok(self.stored(now, device, st).await)
            }
            ClientFrame::GroupLeave {
                conversation,
                client_id,
            } => {
                let _order = self.order.lock().await;
                let st = s.leave(login, &conversation, &client_id, now).await?;
                Ok(self.stored(now, device, st).await)
            }
            ClientFrame::Sync { since, limit } => {
                let _order = self.order.lock().await;
                let batch = s
                    .sync(login, device, since, limit.unwrap_or(DEFAULT_PAGE), now)
                    .await?;
                if !batch.more {
                    self.hub().set_live(device);
                }
                Ok(one(ServerFrame::Batch {
                    messages: batch
                        .messages
                        .into_iter()
                        .map(|(cursor, message)| Entry { cursor, message })
                        .collect(),
                    cursor: batch.cursor,
                    more: batch.more,
                }))
            }
            ClientFrame::Ack { cursor } => {
                let marks = s.ack_sync(login, device, cursor).await?;
                for wm in &marks {
                    self.ensure_audience(login, &wm.conversation).await?;
                }
                Ok(self.hub().on_watermarks(now, device, &marks, false))
            }
            ClientFrame::Read { conversation, seq } => {
                let mark = s.mark_read(login, &conversation, seq).await?;
                self.ensure_audience(login, &conversation).await?;
                let marks: Vec<_> = mark.into_iter().collect();
                let mut out = self.hub().on_watermarks(now, device, &marks, true);
                out.push((device.clone(), ServerFrame::Ok {}));
                Ok(out)
            }
            ClientFrame::Typing { conversation, on } => {
                self.ensure_audience(login, &conversation).await?;
                Ok(self.hub().on_typing(now, device, &conversation, on))
            }
            ClientFrame::History {
                conversation,
                after,
                limit,
            } => {
                let messages = s
                    .fetch(
                        login,
                        device,
                        &conversation,
                        after,
                        limit.unwrap_or(DEFAULT_PAGE),
                    )
                    .await?;
                Ok(one(ServerFrame::History {
                    conversation,
                    messages,
                }))
            }
            ClientFrame::Receipts { conversation, seq } => {
                let rows = s.receipts(login, &conversation, seq).await?;
                let (mut read_by, mut delivered_to, mut pending) = (vec![], vec![], vec![]);
                for (who, state) in rows {
                    match state {
                        crate::store::ReceiptState::Read => read_by.push(who),
                        crate::store::ReceiptState::Delivered => delivered_to.push(who),
                        crate::store::ReceiptState::Sent => pending.push(who),
                    }
                }
                Ok(one(ServerFrame::Receipts {
                    conversation,
                    seq,
                    read_by,
                    delivered_to,
                    pending,
                }))
            }
            ClientFrame::Members { conversation } => {
                let members = s.members(login, &conversation).await?;
                // past members (removed, left) no longer see who is in it
                if !members.iter().any(|m| &m.login == login) {
                    return Err(ChatError::Forbidden);
                }
                Ok(one(ServerFrame::Members {
                    conversation,
                    members: members.into_iter().map(MemberItem::from).collect(),
                }))
            }
            ClientFrame::Conversations {} => {
                let items = s
                    .conversations(login)
                    .await?
                    .into_iter()
                    .map(ConversationItem::from)
                    .collect();
                Ok(one(ServerFrame::Conversations { items }))
            }
            ClientFrame::Presence { login: subject } => {
                let contacts = s.share_conversation(login, &subject).await?;
                let view = {
                    let mut hub = self.hub();
                    // later changes are pushed to this device
                    hub.watch(device, login, &subject, contacts);
                    hub.presence(login, &subject, contacts)
                };
                Ok(one(ServerFrame::Presence {
                    login: subject,
                    view,
                }))
            }
            ClientFrame::Privacy { visibility } => {
                self.hub().set_visibility(login, visibility);
                Ok(one(ServerFrame::Ok {}))
            }
            ClientFrame::PushSubscribe {
                endpoint,
                p256dh,
                auth,
            } => {
                let sub = Subscription::parse(&endpoint, &p256dh, &auth)?;
                s.push_subscribe(login, device, &sub, now).await?;
                Ok(one(ServerFrame::Ok {}))
            }
            ClientFrame::PushUnsubscribe {} => {
                s.push_unsubscribe(login, device).await?;
                Ok(one(ServerFrame::Ok {}))
            }
            ClientFrame::PushPreview { on } => {
                s.set_push_preview(login, on).await?;
                Ok(one(ServerFrame::Ok {}))
            }
        }
    }
}

impl From<ChatError> for ServerFrame {
    fn from(err: ChatError) -> Self {
        ServerFrame::from_error(&err, None)
    }
}
