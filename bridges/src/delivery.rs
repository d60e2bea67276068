//! Sans-IO delivery state: receipts (sent → delivered → read), expiry of
//! undelivered messages, typing indicators and presence.
//!
//! Nothing here does I/O or reads a clock. The store is the durable truth
//! of receipts (per-member watermarks); [`Delivery`] turns watermark moves
//! into events, keeps them monotonic when inputs arrive out of order (two
//! devices, two gateway tasks), and owns the timers: message expiry and the
//! typing timeout. Drive it like quinn-proto: feed inputs, then drain
//! [`Delivery::poll_event`], and call [`Delivery::handle_timeout`] when
//! [`Delivery::poll_timeout`] says so.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;

use crate::model::{ConversationId, Login, Payload, Seq, Timestamp, Visibility};
use crate::store::{Pending, ReceiptState, Stored, Watermark};

/// How long a typing indicator lasts without a refresh.
pub const TYPING_TTL_MS: i64 = 6_000;

/// Timer settings of [`Delivery`].
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// An undelivered message expires this long after it was stored;
    /// `None` never expires. Keep equal to the store's `undelivered_ttl`.
    pub undelivered_ttl_ms: Option<i64>,
    /// Typing indicators stop this long after the last refresh.
    pub typing_ttl_ms: i64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            undelivered_ttl_ms: Some(30 * 24 * 3600 * 1000),
            typing_ttl_ms: TYPING_TTL_MS,
        }
    }
}

/// What the delivery state wants the hub to tell devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryEvent {
    /// `member`'s watermarks in `conversation` moved up; tell its members.
    Receipt {
        /// The conversation.
        conversation: ConversationId,
        /// Whose watermarks.
        member: Login,
        /// Delivered up to.
        delivered: Seq,
        /// Read up to.
        read: Seq,
    },
    /// `user` read `conversation` up to `read` on one device; their other
    /// devices clear their unread badge.
    ReadElsewhere {
        /// The reader.
        user: Login,
        /// The conversation.
        conversation: ConversationId,
        /// Read up to.
        read: Seq,
    },
    /// Message `seq` reached none of `recipient`'s devices in time.
    Expired {
        /// The conversation.
        conversation: ConversationId,
        /// The expired message.
        seq: Seq,
        /// Who sent it (to be told).
        sender: Login,
        /// Who never got it.
        recipient: Login,
    },
    /// `user` started or stopped typing in `conversation`.
    Typing {
        /// The conversation.
        conversation: ConversationId,
        /// Who.
        user: Login,
        /// True on start, false on stop or timeout.
        typing: bool,
    },
}

/// How one message stands for its sender, aggregated over recipients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Aggregate {
    /// Recipients who read it.
    pub read_by: Vec<Login>,
    /// Recipients who have it on a device but did not read it.
    pub delivered_to: Vec<Login>,
    /// Recipients who have not got it yet.
    pub pending: Vec<Login>,
}

impl Aggregate {
    /// The one-to-one view: the least advanced state over all recipients.
    pub fn state(&self) -> ReceiptState {
        if !self.pending.is_empty() {
            ReceiptState::Sent
        } else if !self.delivered_to.is_empty() {
            ReceiptState::Delivered
        } else {
            ReceiptState::Read
        }
    }
}

type Key = (ConversationId, Login);

/// Receipt, expiry and typing state of all conversations of one node.
#[derive(Debug, Default)]
pub struct Delivery {
    config: DeliveryConfig,
    /// Latest known (delivered, read) per member; only ever grows.
    marks: HashMap<Key, (Seq, Seq)>,
    /// Expiry queue: (deadline, conversation, seq, recipient) → sender.
    expiry: BTreeMap<(Timestamp, ConversationId, Seq, Login), Login>,
    /// Index of `expiry` per recipient, to cancel on delivery.
    waiting: HashMap<Key, BTreeSet<(Seq, Timestamp)>>,
    /// Typing deadlines per (conversation, user).
    typing: HashMap<Key, Timestamp>,
    events: VecDeque<DeliveryEvent>,
    /// Latest time seen; earlier times are clamped to it.
    now: Timestamp,
}

impl Delivery {
    /// A new state with the given timers.
    pub fn new(config: DeliveryConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    fn clamp(&mut self, now: Timestamp) -> Timestamp {
        // Time never goes backwards inside the machine (str0m's rule).
        self.now = self.now.max(now);
        self.now
    }

    /// A message was stored: its recipients start waiting for it, and the
    /// sender's typing indicator stops.
    pub fn on_stored(&mut self, now: Timestamp, stored: &Stored) {
        self.clamp(now);
        let msg = &stored.message;
        self.stop_typing(&msg.conversation, &msg.sender);
        // The sender has their own message; no receipt event for that.
        self.seed(&msg.conversation, &msg.sender, msg.seq, msg.seq);
        if stored.duplicate || !matches!(msg.payload, Some(Payload::Post { .. })) {
            return;
        }
        let Some(ttl) = self.config.undelivered_ttl_ms else {
            return;
        };
        let deadline = msg.ts.plus_ms(ttl);
        for r in stored.audience.iter().filter(|r| **r != msg.sender) {
            let key = (msg.conversation.clone(), r.clone());
            if self.marks.get(&key).is_some_and(|(d, _)| *d >= msg.seq) {
                continue;
            }
            self.expiry.insert(
                (deadline, msg.conversation.clone(), msg.seq, r.clone()),
                msg.sender.clone(),
            );
            self.waiting
                .entry(key)
                .or_default()
                .insert((msg.seq, deadline));
        }
    }

    /// Re-arms the expiry timer of a post still waiting for a recipient
    /// (from [`crate::ChatStore::undelivered`] after a restart).
    pub fn track(&mut self, p: &Pending) {
        let key = (p.conversation.clone(), p.recipient.clone());
        if self.marks.get(&key).is_some_and(|(d, _)| *d >= p.seq) {
            return;
        }
        self.expiry.insert(
            (
                p.deadline,
                p.conversation.clone(),
                p.seq,
                p.recipient.clone(),
            ),
            p.sender.clone(),
        );
        self.waiting
            .entry(key)
            .or_default()
            .insert((p.seq, p.deadline));
    }

    /// A watermark from the store (after `ack_sync` or `mark_read`).
    /// `from_read` is true when the user read on one of their devices.
    pub fn on_watermark(&mut self, now: Timestamp, wm: &Watermark, from_read: bool) {
        self.clamp(now);
        self.merge(
            &wm.conversation,
            &wm.login,
            wm.delivered,
            wm.read,
            from_read,
        );
    }

    /// Seeds a member's watermarks loaded from the store without emitting
    /// events (e.g. after a restart).
    pub fn seed(
        &mut self,
        conversation: &ConversationId,
        member: &Login,
        delivered: Seq,
        read: Seq,
    ) {
        let e = self
            .marks
            .entry((conversation.clone(), member.clone()))
            .or_default();
        e.1 = e.1.max(read);
        e.0 = e.0.max(delivered).max(e.1);
    }

    fn merge(
        &mut self,
        conversation: &ConversationId,
        member: &Login,
        delivered: Seq,
        read: Seq,
        from_read: bool,
    ) {
        let key = (conversation.clone(), member.clone());
        let old = self.marks.get(&key).copied().unwrap_or_default();
        let read = old.1.max(read);
        // Read implies delivered.
        let delivered = old.0.max(delivered).max(read);
        if (delivered, read) == old {
            return;
        }
        self.marks.insert(key.clone(), (delivered, read));
        if let Some(w) = self.waiting.get_mut(&key) {
            let done: Vec<(Seq, Timestamp)> = w
                .range(..=(delivered, Timestamp(i64::MAX)))
                .copied()
                .collect();
            for (seq, deadline) in done {
                w.remove(&(seq, deadline));
                self.expiry
                    .remove(&(deadline, conversation.clone(), seq, member.clone()));
            }
            if w.is_empty() {
                self.waiting.remove(&key);
            }
        }
        self.events.push_back(DeliveryEvent::Receipt {
            conversation: conversation.clone(),
            member: member.clone(),
            delivered,
            read,
        });
        if from_read && read > old.1 {
            self.events.push_back(DeliveryEvent::ReadElsewhere {
                user: member.clone(),
                conversation: conversation.clone(),
                read,
            });
        }
    }

    /// The state of message `seq` for one recipient, as far as known here.
    pub fn state(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        recipient: &Login,
    ) -> ReceiptState {
        match self.marks.get(&(conversation.clone(), recipient.clone())) {
            Some((_, r)) if *r >= seq => ReceiptState::Read,
            Some((d, _)) if *d >= seq => ReceiptState::Delivered,
            _ => ReceiptState::Sent,
        }
    }

    /// Who read / has / lacks message `seq`, over `recipients`.
    pub fn aggregate(
        &self,
        conversation: &ConversationId,
        seq: Seq,
        recipients: &[Login],
    ) -> Aggregate {
        let mut agg = Aggregate::default();
        for r in recipients {
            match self.state(conversation, seq, r) {
                ReceiptState::Read => agg.read_by.push(r.clone()),
                ReceiptState::Delivered => agg.delivered_to.push(r.clone()),
                ReceiptState::Sent => agg.pending.push(r.clone()),
            }
        }
        agg
    }

    /// `user` typed (`on`) or cleared the input (`!on`) in `conversation`.
    /// Only transitions produce events; refreshes extend the deadline.
    pub fn typing(
        &mut self,
        now: Timestamp,
        conversation: &ConversationId,
        user: &Login,
        on: bool,
    ) {
        let now = self.clamp(now);
        if !on {
            self.stop_typing(conversation, user);
            return;
        }
        let deadline = now.plus_ms(self.config.typing_ttl_ms);
        let was = self
            .typing
            .insert((conversation.clone(), user.clone()), deadline);
        if was.is_none() {
            self.events.push_back(DeliveryEvent::Typing {
                conversation: conversation.clone(),
                user: user.clone(),
                typing: true,
            });
        }
    }

    fn stop_typing(&mut self, conversation: &ConversationId, user: &Login) {
        if self
            .typing
            .remove(&(conversation.clone(), user.clone()))
            .is_some()
        {
            self.events.push_back(DeliveryEvent::Typing {
                conversation: conversation.clone(),
                user: user.clone(),
                typing: false,
            });
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let now = self.clamp(now);
        while let Some(entry) = self.expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((deadline, conversation, seq, recipient), sender) = entry.remove_entry();
            let key = (conversation.clone(), recipient.clone());
            if let Some(w) = self.waiting.get_mut(&key) {
                w.remove(&(seq, deadline));
                if w.is_empty() {
                    self.waiting.remove(&key);
                }
            }
            self.events.push_back(DeliveryEvent::Expired {
                conversation,
                seq,
                sender,
                recipient,
            });
        }
        let mut stopped: Vec<Key> = self
            .typing
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(k, _)| k.clone())
            .collect();
        stopped.sort();
        for (c, u) in stopped {
            self.stop_typing(&c, &u);
        }
    }

    /// When [`Delivery::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let expiry = self.expiry.keys().next().map(|k| k.0);
        let typing = self.typing.values().min().copied();
        match (expiry, typing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event to route, if any.
    pub fn poll_event(&mut self) -> Option<DeliveryEvent> {
        self.events.pop_front()
    }
}

/// What a viewer may see of someone's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PresenceView {
    /// At least one device is connected.
    Online,
    /// Offline; last device disconnected at this time.
    LastSeen {
        /// When.
        at: Timestamp,
    },
    /// Never seen, or hidden by the subject's privacy setting.
    Hidden,
}

#[derive(Debug, Default)]
struct PresenceEntry {
    devices: u32,
    last_seen: Option<Timestamp>,
    visibility: Visibility,
}

/// Online state and last-seen time per user, with privacy.
#[derive(Debug, Default)]
pub struct Presence {
    users: HashMap<Login, PresenceEntry>,
}

impl Presence {
    /// A device of `user` connected; true if the user just came online.
    pub fn connect(&mut self, now: Timestamp, user: &Login) -> bool {
        let e = self.users.entry(user.clone()).or_default();
        e.devices += 1;
        e.last_seen = Some(now);
        e.devices == 1
    }

    /// A device of `user` disconnected; true if the user just went offline.
    pub fn disconnect(&mut self, now: Timestamp, user: &Login) -> bool {
        let e = self.users.entry(user.clone()).or_default();
        e.devices = e.devices.saturating_sub(1);
        e.last_seen = Some(now);
        e.devices == 0
    }

    /// Sets who may see `user`'s presence.
    pub fn set_visibility(&mut self, user: &Login, v: Visibility) {
        self.users.entry(user.clone()).or_default().visibility = v;
    }

    /// Who may see `user`'s presence.
    pub fn visibility(&self, user: &Login) -> Visibility {
        self.users
            .get(user)
            .map(|e| e.visibility)
            .unwrap_or_default()
    }

    /// What `viewer` may see of `subject`; `contacts` says whether they
    /// share a conversation (the store knows, see `share_conversation`).
    pub fn view(&self, viewer: &Login, subject: &Login, contacts: bool) -> PresenceView {
        let Some(e) = self.users.get(subject) else {
            return PresenceView::Hidden;
        };
        let allowed = viewer == subject
            || match e.visibility {
                Visibility::Everyone => true,
                Visibility::Contacts => contacts,
                Visibility::Nobody => false,
            };
        match (allowed, e.devices, e.last_seen) {
            (false, _, _) => PresenceView::Hidden,
            (true, n, _) if n > 0 => PresenceView::Online,
            (true, _, Some(at)) => PresenceView::LastSeen { at },
            (true, _, None) => PresenceView::Hidden,
        }
    }
}
