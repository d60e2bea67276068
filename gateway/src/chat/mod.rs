//! Chat glue: the gateway's shell around `bridges::ChatService`.
//!
//! [`Chat`] owns the one map from [`DeviceId`] to the sending half of that
//! device's frame channel; WebSocket sessions hold the receiving half in a
//! [`ChatLink`]. A chat frame from a session goes to
//! [`ChatService::handle_text`], and every `(device, frame)` it returns is
//! put into that device's channel ([`Chat::route`]); the session task writes
//! it to its socket. One timer task ([`Chat::run_timer`]) drives expiry and
//! typing timeouts.
//!
//! `send` and `ack` frames take another way: the session task parses them
//! and puts them into one queue; the writer, an OS thread of its own
//! ([`run_writer`]) with its own SQLite connection ([`BatchWriter`]),
//! takes everything queued (up to [`MAX_BATCH`]), writes it in one
//! transaction ([`ChatService::handle_writes`]) and routes the `ack`s,
//! pushes and receipts after the commit. One commit per batch instead of one per message is what
//! lets the store keep up under load, and nothing is acknowledged before
//! it is durable.
//!
//! Locks:
//! - `devices` is a std mutex held for map operations only, never across an
//!   `.await` and never together with the service's hub lock.
//! - `order` is an async mutex held from "the service answered" to "the
//!   frames are in the channels" for frames that push to other devices. The
//!   service commits in order, but its outbox leaves its lock; without this a
//!   later message could overtake an earlier one on the way to a device, and
//!   the device's cursor `ack` of the later one would mark the earlier one
//!   delivered while it is still in flight.
//!
//! A device whose channel is full (a socket that does not read) is dropped
//! from the map and disconnected from the service: its session sees the
//! channel close, tells the client, and a later chat frame re-attaches it;
//! `sync` from its stored cursor then fills the gap.

use std::collections::HashMap;
use std::path::Path;

pub mod company;
pub mod uploads;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bridges::delivery::DeliveryConfig;
use bridges::frames::{ClientFrame, ServerFrame};
use bridges::hub::Outbox;
use bridges::{BatchWriter, ChatService, ChatStore, DeviceId, Login, Timestamp};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, trace, warn};

/// Frames a device's channel holds before the device counts as stuck.
const DEVICE_QUEUE: usize = 1024;

/// Most `send` frames stored in one transaction.
pub const MAX_BATCH: usize = 1024;

/// A writer woken for fewer frames than this waits [`GATHER`] for more
/// before it commits (see [`run_writer`]).
const GATHER_BELOW: usize = 32;

/// How long a small batch waits for more frames: a commit delay that adds
/// at most a timer tick or two to a send's latency below saturation.
const GATHER: Duration = Duration::from_millis(1);

/// `send` frames waiting for the writer; a full queue makes sessions wait
/// (backpressure on the sockets that send).
const SEND_QUEUE: usize = 4 * MAX_BATCH;

/// How often the WAL is checkpointed (see [`run_checkpoints`]).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL size (pages) above which the writer finishes a checkpoint itself
/// between two batches, so that the WAL starts over (see [`run_writer`]).
const WAL_RESET_PAGES: i64 = 2_000;

/// Longest device id a client may choose (`?device=` on `/v1/ws`).
const MAX_DEVICE_ID: usize = 64;

/// Client frame types that belong to the chat (`docs/protocol.md`, "Chat").
pub const CHAT_TYPES: &[&str] = &[
    "send",
    "edit",
    "delete",
    "sync",
    "ack",
    "read",
    "typing",
    "history",
    "receipts",
    "conversations",
    "members",
    "group_create",
    "group_rename",
    "group_add",
    "group_remove",
    "group_promote",
    "group_leave",
    "presence",
    "privacy",
    "push_subscribe",
    "push_unsubscribe",
    "push_preview",
];

/// Chat frame types that only read and answer the asking device; they skip
/// the `order` lock.
const READ_ONLY: &[&str] = &[
    "history",
    "receipts",
    "conversations",
    "members",
    "presence",
    "privacy",
];

/// Now as chat time (unix milliseconds).
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Timestamp(ms)
}

/// The chat `type` of a text frame, if it is a chat frame.
///
/// Only the `type` field is decoded here; the frame itself is parsed once,
/// by `bridges`.
pub fn chat_type(text: &str) -> Option<&'static str> {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow, rename = "type")]
        kind: std::borrow::Cow<'a, str>,
    }
    let head: Head<'_> = serde_json::from_str(text).ok()?;
    CHAT_TYPES.iter().copied().find(|t| *t == head.kind)
}

/// A client-chosen device id if it is acceptable (1-64 of `A-Z a-z 0-9 - _`),
/// else a fresh random one. Sync cursors are stored per (login, device), so
/// a device id cannot reach another user's state.
pub fn device_id(hint: Option<&str>) -> DeviceId {
    match hint {
        Some(h)
            if !h.is_empty()
                && h.len() <= MAX_DEVICE_ID
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            DeviceId(h.to_owned())
        }
        _ => DeviceId(format!("d-{:016x}", rand::random::<u64>())),
    }
}

struct Route {
    token: u64,
    tx: mpsc::Sender<ServerFrame>,
}

/// The chat of this node: the service and the device routes.
pub struct Chat {
    service: ChatService,
    uploads: uploads::UploadStore,
    devices: Mutex<HashMap<DeviceId, Route>>,
    next_token: AtomicU64,
    order: tokio::sync::Mutex<()>,
    /// Wakes the timer task when a frame may have armed an earlier timer.
    timers: Notify,
    /// The VAPID public key, once push is on (`crate::push::start`).
    vapid: OnceLock<String>,
    /// Parsed `send` and `ack` frames for the writer thread.
    sends: mpsc::Sender<(DeviceId, ClientFrame)>,
    /// The WAL's size in pages at the last checkpoint.
    wal_pages: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").finish_non_exhaustive()
    }
}

impl Chat {
    /// Opens (creating if missing) the chat store `<data_dir>/chat.sqlite`
    /// and the upload folder `<data_dir>/uploads`, and re-arms the expiry
    /// timers of messages still waiting for a recipient.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated, or the upload folder
    /// cannot be created.
    pub async fn open(data_dir: &Path) -> anyhow::Result<Arc<Self>> {
        let db = data_dir.join("chat.sqlite");
        let opts = bridges::StoreOptions {
            background_checkpoint: true,
            ..bridges::StoreOptions::default()
        };
        let store = ChatStore::open_with(&format!("sqlite://{}", db.display()), opts)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the chat store {}: {e}", db.display()))?;
        let dir = data_dir.join("uploads");
        let uploads = uploads::UploadStore::open(dir.clone())
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let service = ChatService::new(store, DeliveryConfig::default());
        let pending = service
            .restore()
            .await
            .map_err(|e| anyhow::anyhow!("cannot restore the chat timers: {e}"))?;
        debug!(pending, "chat store restored");
        let (sends, queue) = mpsc::channel(SEND_QUEUE);
        let chat = Arc::new(Chat {
            service,
            uploads,
            devices: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            order: tokio::sync::Mutex::new(()),
            timers: Notify::new(),
            vapid: OnceLock::new(),
            sends,
            wal_pages: std::sync::atomic::AtomicI64::new(0),
        });
        let writer =
            chat.service.store().batch_writer().map_err(|e| {
                anyhow::anyhow!("cannot open the chat writer on {}: {e}", db.display())
            })?;
        let weak = Arc::downgrade(&chat);
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("chat-writer".into())
            .spawn(move || run_writer(weak, queue, writer, runtime))
            .map_err(|e| anyhow::anyhow!("cannot start the chat writer: {e}"))?;
        tokio::spawn(run_checkpoints(Arc::downgrade(&chat)));
        Ok(chat)
    }

    /// The upload folder.
    pub fn uploads(&self) -> &uploads::UploadStore {
        &self.uploads
    }

    /// Turns Web Push on (see [`crate::push`]); the key is served at
    /// `GET /v1/push/vapid`.
    ///
    /// # Errors
    /// When the VAPID key cannot be loaded or made.
    pub fn start_push(
        &self,
        data_dir: &Path,
        settings: &crate::push::PushSettings,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let key = crate::push::start(self, data_dir, settings, shutdown)?;
        let _ = self.vapid.set(key);
        Ok(())
    }

    /// The VAPID public key (base64url) when push is on.
    pub fn vapid_public(&self) -> Option<&str> {
        self.vapid.get().map(String::as_str)
    }

    /// The service, for admin reads.
    pub fn service(&self) -> &ChatService {
        &self.service
    }

    fn devices(&self) -> MutexGuard<'_, HashMap<DeviceId, Route>> {
        // map operations cannot leave the map half-changed
        self.devices.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connects `device` of `login`: frames for it arrive on the returned
    /// link until the link drops. A device id already connected is taken
    /// over; the older link's channel closes.
    pub fn attach(self: &Arc<Self>, login: Login, device: DeviceId) -> ChatLink {
        let (tx, rx) = mpsc::channel(DEVICE_QUEUE);
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let replaced = self
            .devices()
            .insert(device.clone(), Route { token, tx })
            .is_some();
        if replaced {
            // start over: the new socket is not live until it has synced
            debug!(device = %device.0, "chat device taken over by a new socket");
            let out = self.service.disconnect_routed(now(), &device);
            self.route(out);
        }
        let out = self
            .service
            .connect_routed(now(), device.clone(), login.clone());
        self.route(out);
        ChatLink {
            chat: Arc::clone(self),
            login,
            device,
            token,
            rx,
        }
    }

    fn detach(&self, device: &DeviceId, token: u64) {
        let mine = {
            let mut devices = self.devices();
            if devices.get(device).is_some_and(|r| r.token == token) {
                devices.remove(device);
                true
            } else {
                false
            }
        };
        if mine {
            let out = self.service.disconnect_routed(now(), device);
            self.route(out);
        }
    }

    /// Handles one chat text frame of `link`'s device; answers and pushes
    /// go out through the device channels.
    pub async fn handle(&self, link: &ChatLink, kind: &str, text: &str) {
        if kind == "send" || kind == "ack" {
            match ClientFrame::parse(text) {
                Ok(frame) => {
                    // the writer answers; it is gone only when the chat is
                    if self.sends.send((link.device.clone(), frame)).await.is_err() {
                        let e = ServerFrame::error_code("internal", "chat is shutting down", None);
                        self.route(vec![(link.device.clone(), e)]);
                    }
                }
                Err(e) => self.route(vec![(link.device.clone(), e)]),
            }
            return;
        }
        if READ_ONLY.contains(&kind) {
            let out = self.service.handle_text(now(), &link.device, text).await;
            self.route(out);
        } else {
            let _order = self.order.lock().await;
            let out = self.service.handle_text(now(), &link.device, text).await;
            self.route(out);
        }
        // typing and new messages arm timers that may be due before the
        // one the timer task sleeps for
        self.timers.notify_one();
    }

    /// Puts every frame into its device's channel. Frames for devices that
    /// are gone are dropped (they sync on reconnect); a full channel drops
    /// the device.
    pub fn route(&self, out: Outbox) {
        if out.is_empty() {
            return;
        }
        let mut stuck = Vec::new();
        {
            let devices = self.devices();
            for (device, frame) in out {
                let Some(route) = devices.get(&device) else {
                    continue;
                };
                match route.tx.try_send(frame) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        if !stuck.iter().any(|(d, _)| d == &device) {
                            stuck.push((device, route.token));
                        }
                    }
                    // the session is ending; its link drop detaches it
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        for (device, token) in stuck {
            warn!(device = %device.0, "chat device does not read its socket; dropped");
            self.detach(&device, token);
        }
    }

    /// Fires expiry and typing timers until `shutdown` flips.
    pub async fn run_timer(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let wait = match self.service.poll_timeout() {
                Some(at) => Duration::from_millis(u64::try_from(at.0 - now().0).unwrap_or(0)),
                // nothing armed: sleep until a frame wakes us
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    let _order = self.order.lock().await;
                    let out = self.service.handle_timeout(now());
                    self.route(out);
                }
                _ = self.timers.notified() => {}
                _ = shutdown.changed() => break,
            }
        }
    }
}

/// The writer: an OS thread of its own (the store's [`BatchWriter`] runs
/// SQLite synchronously), group commits of queued `send` and `ack` frames,
/// acks, pushes and receipts routed after each commit. Holds the chat
/// weakly; ends when the chat's queue closes.
fn run_writer(
    chat: std::sync::Weak<Chat>,
    mut queue: mpsc::Receiver<(DeviceId, ClientFrame)>,
    mut writer: BatchWriter,
    runtime: tokio::runtime::Handle,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        drain(&mut queue, &mut batch);
        if batch.len() < GATHER_BELOW {
            // Below saturation every commit would carry a frame or two and
            // its fixed cost (the transaction, a WAL write) would be paid
            // per frame. Waiting a moment lets the next few frames share it.
            std::thread::sleep(GATHER);
            drain(&mut queue, &mut batch);
        }
        let Some(chat) = chat.upgrade() else { return };
        let sends = std::mem::replace(&mut batch, Vec::with_capacity(MAX_BATCH));
        // Everything in here but the rare store reads for receipts and
        // pushes is synchronous, so this polls once and does not park.
        runtime.block_on(async {
            // the same order as every other write: commit, then route
            let _order = chat.order.lock().await;
            let out = chat.service.handle_writes(now(), sends, &mut writer).await;
            chat.route(out);
        });
        // new messages arm expiry timers
        chat.timers.notify_one();
        if chat.wal_pages.load(Ordering::Relaxed) > WAL_RESET_PAGES {
            // The background checkpoints copy the WAL while the writer
            // appends to it, so they never catch up with its end, and SQLite
            // starts the WAL over only once all of it is copied: the tail
            // (what came since the last background pass) is copied here,
            // with no batch in flight, and the next commit starts over.
            match writer.checkpoint() {
                // busy: the background checkpoint is running; next batch
                Ok((log, copied)) if log >= 0 => {
                    let left = if copied >= log { 0 } else { log };
                    chat.wal_pages.store(left, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(e) => warn!(cause = %e, "chat WAL checkpoint failed"),
            }
        }
    }
}

/// Moves what is queued now into `batch`, up to [`MAX_BATCH`].
fn drain(
    queue: &mut mpsc::Receiver<(DeviceId, ClientFrame)>,
    batch: &mut Vec<(DeviceId, ClientFrame)>,
) {
    while batch.len() < MAX_BATCH
        && let Ok(frame) = queue.try_recv()
    {
        batch.push(frame);
    }
}

/// The WAL checkpoints of the chat store, every [`CHECKPOINT_EVERY`] on a
/// connection of their own, so that no group commit waits for the bulk of
/// one (SQLite would otherwise run one inside the commit that crosses 1,000
/// WAL pages: page copies and two fsyncs while every queued `send` waits).
/// Under steady writes these never reach the WAL's end; the writer copies
/// the rest once the WAL exceeds [`WAL_RESET_PAGES`]. Ends with the chat.
async fn run_checkpoints(chat: std::sync::Weak<Chat>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(chat) = chat.upgrade() else { return };
        match chat.service.store().checkpoint().await {
            Ok((log, copied)) => {
                trace!(log, copied, "chat WAL checkpoint");
                if log >= 0 {
                    chat.wal_pages.store(log, Ordering::Relaxed);
                }
            }
            Err(e) => warn!(cause = %e, "chat WAL checkpoint failed"),
        }
    }
}

/// One session's connection to the chat: the device and its frame channel.
/// Dropping it disconnects the device.
pub struct ChatLink {
    chat: Arc<Chat>,
    login: Login,
    device: DeviceId,
    token: u64,
    rx: mpsc::Receiver<ServerFrame>,
}

impl ChatLink {
    /// The login this device runs as.
    pub fn login(&self) -> &Login {
        &self.login
    }

    /// The device id.
    pub fn device(&self) -> &DeviceId {
        &self.device
    }

    /// The next frame for this device; `None` once the chat dropped it
    /// (taken over by another socket, or stuck).
    pub async fn recv(&mut self) -> Option<ServerFrame> {
        self.rx.recv().await
    }

    /// The next frame if one is queued now.
    pub fn try_recv(&mut self) -> Option<ServerFrame> {
        self.rx.try_recv().ok()
    }
}

impl Drop for ChatLink {
    fn drop(&mut self) {
        self.chat.detach(&self.device, self.token);
    }
}

/// The next frame of an optional link; never resolves without one, so a
/// session can `select!` on it before it has chatted.
pub async fn next(link: &mut Option<ChatLink>) -> Option<ServerFrame> {
    match link {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_types_are_recognised_and_others_not() {
        assert_eq!(chat_type(r#"{"type":"send","x":1}"#), Some("send"));
        assert_eq!(chat_type(r#"{"type":"group_add"}"#), Some("group_add"));
        assert_eq!(chat_type(r#"{"type":"call","id":"c1"}"#), None);
        assert_eq!(chat_type(r#"{"type":"se\u006ed"}"#), Some("send"));
        assert_eq!(chat_type("not json"), None);
        assert_eq!(chat_type(r#"{"type":5}"#), None);
    }

    #[test]
    fn device_ids_are_checked() {
        assert_eq!(device_id(Some("tab-1_A")).0, "tab-1_A");
        for bad in [Some(""), Some("a b"), Some("x/y"), None] {
            let d = device_id(bad);
            assert!(d.0.starts_with("d-") && d.0.len() == 18, "{bad:?}: {d:?}");
        }
        assert!(device_id(Some(&"a".repeat(65))).0.starts_with("d-"));
    }
}
