//! `Hub`: the sans-IO router of the chat. It knows which devices are
//! connected and for whom, owns the [`Delivery`] and [`Presence`] state, and
//! turns store results and timer expiries into `(DeviceId, ServerFrame)`
//! pairs. It never touches the database or a socket: the async
//! [`crate::service::ChatService`] feeds it, and the gateway forwards what
//! comes out.
//!
//! A device is *live* once its sync stream has caught up; only live devices
//! get messages pushed. Before that they would receive pushes out of order
//! with the backlog, and a cursor `ack` could skip unsynced entries.

use std::collections::{BTreeSet, HashMap};

use crate::delivery::{Delivery, DeliveryConfig, DeliveryEvent, Presence, PresenceView};
use crate::frames::{Entry, ServerFrame};
use crate::model::{ConversationId, DeviceId, Login, Payload, Timestamp, Visibility};
use crate::store::{Stored, Watermark};

/// Frames to send: each to one device.
pub type Outbox = Vec<(DeviceId, ServerFrame)>;

#[derive(Debug)]
struct Device {
    login: Login,
    live: bool,
}

/// The in-memory routing state of one node.
#[derive(Debug, Default)]
pub struct Hub {
    devices: HashMap<DeviceId, Device>,
    by_user: HashMap<Login, BTreeSet<DeviceId>>,
    /// Active members per conversation, learned from the store; dropped on
    /// group changes so the next use reloads it.
    audience: HashMap<ConversationId, Vec<Login>>,
    delivery: Delivery,
    presence: Presence,
    /// Devices that asked for a user's presence, to be told when it
    /// changes: subject → device → (viewer, shares a conversation).
    watchers: HashMap<Login, HashMap<DeviceId, (Login, bool)>>,
    /// Reverse index of `watchers`, to forget a device's watches.
    watching: HashMap<DeviceId, BTreeSet<Login>>,
}

impl Hub {
    /// A hub with the given delivery timers.
    pub fn new(config: DeliveryConfig) -> Self {
        Self {
            delivery: Delivery::new(config),
            ..Self::default()
        }
    }

    /// A device of `login` connected. It is not live until its sync caught
    /// up ([`Hub::set_live`]).
    pub fn register(&mut self, now: Timestamp, device: DeviceId, login: Login) {
        if let Some(old) = self.devices.get(&device) {
            // Same device id reconnecting without a clean unregister.
            if old.login == login {
                return;
            }
            self.unregister(now, &device);
        }
        self.presence.connect(now, &login);
        self.by_user
            .entry(login.clone())
            .or_default()
            .insert(device.clone());
        self.devices.insert(device, Device { login, live: false });
    }

    /// A device disconnected; its typing stops being refreshed and times out.
    pub fn unregister(&mut self, now: Timestamp, device: &DeviceId) {
        let Some(d) = self.devices.remove(device) else {
            return;
        };
        if let Some(set) = self.by_user.get_mut(&d.login) {
            set.remove(device);
            if set.is_empty() {
                self.by_user.remove(&d.login);
            }
        }
        self.presence.disconnect(now, &d.login);
    }

    /// Like [`Hub::register`], and tells the devices watching `login`
    /// when the user just came online.
    pub fn register_routed(&mut self, now: Timestamp, device: DeviceId, login: Login) -> Outbox {
        let was_online = self.by_user.contains_key(&login);
        self.register(now, device, login.clone());
        if was_online {
            Vec::new()
        } else {
            self.presence_changed(&login)
        }
    }

    /// Like [`Hub::unregister`], and tells the devices watching the user
    /// when their last device left (`last_seen`).
    pub fn unregister_routed(&mut self, now: Timestamp, device: &DeviceId) -> Outbox {
        self.unwatch(device);
        let Some(login) = self.login_of(device).cloned() else {
            return Vec::new();
        };
        self.unregister(now, device);
        if self.by_user.contains_key(&login) {
            Vec::new()
        } else {
            self.presence_changed(&login)
        }
    }

    /// `device` (of `viewer`) wants `subject`'s presence changes pushed
    /// until it disconnects; `contacts`: they share a conversation.
    pub fn watch(&mut self, device: &DeviceId, viewer: &Login, subject: &Login, contacts: bool) {
        self.watchers
            .entry(subject.clone())
            .or_default()
            .insert(device.clone(), (viewer.clone(), contacts));
        self.watching
            .entry(device.clone())
            .or_default()
            .insert(subject.clone());
    }

    fn unwatch(&mut self, device: &DeviceId) {
        for subject in self.watching.remove(device).into_iter().flatten() {
            if let Some(w) = self.watchers.get_mut(&subject) {
                w.remove(device);
                if w.is_empty() {
                    self.watchers.remove(&subject);
                }
            }
        }
    }

    fn presence_changed(&self, subject: &Login) -> Outbox {
        self.watchers
            .get(subject)
            .into_iter()
            .flatten()
            .map(|(dev, (viewer, contacts))| {
                let view = self.presence.view(viewer, subject, *contacts);
                (
                    dev.clone(),
                    ServerFrame::Presence {
                        login: subject.clone(),
                        view,
                    },
                )
            })
            .collect()
    }

    /// The login a device is registered for.
    pub fn login_of(&self, device: &DeviceId) -> Option<&Login> {
        self.devices.get(device).map(|d| &d.login)
    }

    /// Marks a device live: from now on it gets messages pushed.
    pub fn set_live(&mut self, device: &DeviceId) {
        if let Some(d) = self.devices.get_mut(device) {
            d.live = true;
        }
    }

    /// Whether a device gets pushes.
    pub fn is_live(&self, device: &DeviceId) -> bool {
        self.devices.get(device).is_some_and(|d| d.live)
    }

    /// Connected devices of `login`.
    pub fn devices_of(&self, login: &Login) -> impl Iterator<Item = &DeviceId> {
        self.by_user.get(login).into_iter().flatten()
    }

    /// True when the active members of `conversation` are not cached.
    pub fn needs_audience(&self, conversation: &ConversationId) -> bool {
        !self.audience.contains_key(conversation)
    }

    /// Caches the active members of `conversation` (from the store).
    pub fn set_audience(&mut self, conversation: ConversationId, members: Vec<Login>) {
        self.audience.insert(conversation, members);
    }

    /// Read access to the delivery state (for aggregates and tests).
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// Mutable access to the delivery state, e.g. to seed watermarks.
    pub fn delivery_mut(&mut self) -> &mut Delivery {
        &mut self.delivery
    }

    /// A write from `origin` is durable: ack it, push the entry to every
    /// other live device of its audience, and start its expiry timers.
    pub fn on_stored(&mut self, now: Timestamp, origin: &DeviceId, stored: &Stored) -> Outbox {
        let msg = &stored.message;
        let mut out = vec![(
            origin.clone(),
            ServerFrame::Ack {
                client_id: msg.client_id.clone(),
                conversation: msg.conversation.clone(),
                seq: msg.seq,
                ts: msg.ts,
                duplicate: stored.duplicate,
            },
        )];
        if matches!(msg.payload, Some(Payload::Group { .. })) {
            self.audience.remove(&msg.conversation);
        }
        if !stored.duplicate {
            let entry = Entry {
                cursor: stored.cursor,
                message: msg.clone(),
            };
            for login in &stored.audience {
                for dev in self.by_user.get(login).into_iter().flatten() {
                    if dev != origin && self.devices.get(dev).is_some_and(|d| d.live) {
                        out.push((dev.clone(), ServerFrame::Message(Box::new(entry.clone()))));
                    }
                }
            }
        }
        self.delivery.on_stored(now, stored);
        self.drain(Some(origin), &mut out);
        out
    }

    /// An entry written from outside any device (a company's SIP MESSAGE):
    /// push it to every live device of its audience. No ack, and no expiry
    /// timers: the sender is no messenger user to be told.
    pub fn on_stored_remote(&mut self, stored: &Stored) -> Outbox {
        let mut out = Vec::new();
        if stored.duplicate {
            return out;
        }
        let entry = Entry {
            cursor: stored.cursor,
            message: stored.message.clone(),
        };
        for login in &stored.audience {
            for dev in self.by_user.get(login).into_iter().flatten() {
                if self.devices.get(dev).is_some_and(|d| d.live) {
                    out.push((dev.clone(), ServerFrame::Message(Box::new(entry.clone()))));
                }
            }
        }
        out
    }

    /// `frame` for every connected device of `login`.
    pub fn to_devices_of(&self, login: &Login, frame: &ServerFrame) -> Outbox {
        let mut out = Vec::new();
        self.to_user(login, None, frame, &mut out);
        out
    }

    /// Who should get a push notification for `stored`: the recipients
    /// of a new post none of whose devices is connected. Call right after
    /// [`Hub::on_stored`], under the same lock, so "connected" is the state
    /// the post was routed with.
    pub fn wants_push(&self, stored: &Stored) -> Vec<Login> {
        let msg = &stored.message;
        if stored.duplicate || !matches!(msg.payload, Some(Payload::Post { .. })) {
            return Vec::new();
        }
        stored
            .audience
            .iter()
            .filter(|l| **l != msg.sender && !self.by_user.contains_key(*l))
            .cloned()
            .collect()
    }

    /// Watermarks moved in the store (`from_read`: by a `read` frame from
    /// `origin`); routes receipts to the conversation's members.
    pub fn on_watermarks(
        &mut self,
        now: Timestamp,
        origin: &DeviceId,
        marks: &[Watermark],
        from_read: bool,
    ) -> Outbox {
        for wm in marks {
            self.delivery.on_watermark(now, wm, from_read);
        }
        let mut out = Vec::new();
        self.drain(Some(origin), &mut out);
        out
    }

    /// A typing frame from `device` (whose login must be an active member;
    /// the caller checked via the audience).
    pub fn on_typing(
        &mut self,
        now: Timestamp,
        device: &DeviceId,
        conversation: &ConversationId,
        on: bool,
    ) -> Outbox {
        let Some(login) = self.login_of(device).cloned() else {
            return Vec::new();
        };
        let member = self
            .audience
            .get(conversation)
            .is_some_and(|a| a.contains(&login));
        if !member {
            return vec![(
                device.clone(),
                ServerFrame::error_code("forbidden", "forbidden", None),
            )];
        }
        self.delivery.typing(now, conversation, &login, on);
        let mut out = Vec::new();
        self.drain(Some(device), &mut out);
        out
    }

    /// Fires due timers (expiry, typing) and routes what they produce.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Outbox {
        self.delivery.handle_timeout(now);
        let mut out = Vec::new();
        self.drain(None, &mut out);
        out
    }

    /// When [`Hub::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.delivery.poll_timeout()
    }

    /// Sets a user's presence privacy.
    pub fn set_visibility(&mut self, login: &Login, v: Visibility) {
        self.presence.set_visibility(login, v);
    }

    /// A user's presence privacy.
    pub fn visibility(&self, login: &Login) -> Visibility {
        self.presence.visibility(login)
    }

    /// What `viewer` may see of `subject` (`contacts`: they share a conversation).
    pub fn presence(&self, viewer: &Login, subject: &Login, contacts: bool) -> PresenceView {
        self.presence.view(viewer, subject, contacts)
    }

    fn to_user(
        &self,
        login: &Login,
        skip: Option<&DeviceId>,
        frame: &ServerFrame,
        out: &mut Outbox,
    ) {
        for dev in self.by_user.get(login).into_iter().flatten() {
            if Some(dev) != skip {
                out.push((dev.clone(), frame.clone()));
            }
        }
    }

    fn drain(&mut self, origin: Option<&DeviceId>, out: &mut Outbox) {
        while let Some(ev) = self.delivery.poll_event() {
            match ev {
                DeliveryEvent::Receipt {
                    conversation,
                    member,
                    delivered,
                    read,
                } => {
                    let frame = ServerFrame::Receipt {
                        conversation: conversation.clone(),
                        member: member.clone(),
                        delivered,
                        read,
                    };
                    // Others learn the member's progress; the member's own
                    // devices learn it through `read_elsewhere`.
                    for login in self.audience.get(&conversation).into_iter().flatten() {
                        if *login != member {
                            self.to_user(login, None, &frame, out);
                        }
                    }
                }
                DeliveryEvent::ReadElsewhere {
                    user,
                    conversation,
                    read,
                } => {
                    let frame = ServerFrame::ReadElsewhere { conversation, read };
                    self.to_user(&user, origin, &frame, out);
                }
                DeliveryEvent::Expired {
                    conversation,
                    seq,
                    sender,
                    recipient,
                } => {
                    let frame = ServerFrame::Expired {
                        conversation,
                        seq,
                        recipient,
                    };
                    self.to_user(&sender, None, &frame, out);
                }
                DeliveryEvent::Typing {
                    conversation,
                    user,
                    typing,
                } => {
                    let frame = ServerFrame::Typing {
                        conversation: conversation.clone(),
                        user: user.clone(),
                        typing,
                    };
                    for login in self.audience.get(&conversation).into_iter().flatten() {
                        if *login != user {
                            self.to_user(login, None, &frame, out);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::PresenceView;

    fn login(s: &str) -> Login {
        Login::parse(s).unwrap()
    }

    fn dev(s: &str) -> DeviceId {
        DeviceId(s.to_owned())
    }

    /// Push goes to recipients with no connected device, only for new
    /// posts, never to the sender, never for a retry.
    #[test]
    fn push_is_wanted_only_for_offline_recipients_of_new_posts() {
        use crate::model::{Body, ConversationId, Message, Seq};
        let mut hub = Hub::new(DeliveryConfig::default());
        let (alice, bob, carol) = (login("alice"), login("bob"), login("carol"));
        hub.register(Timestamp(1), dev("a1"), alice.clone());
        hub.register(Timestamp(1), dev("c1"), carol.clone());
        let post = |payload: Payload, duplicate: bool| Stored {
            message: Message {
                conversation: ConversationId::parse("g:alice:x1").unwrap(),
                seq: Seq(1),
                sender: alice.clone(),
                client_id: "k".into(),
                ts: Timestamp(2),
                payload: Some(payload),
                edited_at: None,
                deleted: false,
            },
            cursor: 1,
            duplicate,
            audience: vec![alice.clone(), bob.clone(), carol.clone()],
        };
        let text = || Payload::Post {
            body: Body::Text { text: "hi".into() },
        };
        assert_eq!(hub.wants_push(&post(text(), false)), vec![bob.clone()]);
        assert!(hub.wants_push(&post(text(), true)).is_empty());
        assert!(
            hub.wants_push(&post(Payload::Delete { target: Seq(1) }, false))
                .is_empty()
        );
        // a connected but not yet live device counts as online: it syncs
        hub.register(Timestamp(3), dev("b1"), bob.clone());
        assert!(hub.wants_push(&post(text(), false)).is_empty());
        hub.unregister(Timestamp(4), &dev("c1"));
        assert_eq!(hub.wants_push(&post(text(), false)), vec![carol]);
    }

    /// A watcher hears the subject's last device leave and the first come
    /// back, not the comings and goings of further devices; a watcher that
    /// left hears nothing.
    #[test]
    fn presence_changes_reach_watchers_until_they_leave() {
        let mut hub = Hub::new(DeliveryConfig::default());
        let (alice, bob) = (login("alice"), login("bob"));
        assert!(
            hub.register_routed(Timestamp(1), dev("b1"), bob.clone())
                .is_empty()
        );
        assert!(
            hub.register_routed(Timestamp(2), dev("a1"), alice.clone())
                .is_empty()
        );
        hub.watch(&dev("b1"), &bob, &alice, true);
        assert!(
            hub.register_routed(Timestamp(3), dev("a2"), alice.clone())
                .is_empty()
        );
        assert!(hub.unregister_routed(Timestamp(4), &dev("a1")).is_empty());
        let out = hub.unregister_routed(Timestamp(5), &dev("a2"));
        assert_eq!(
            out,
            vec![(
                dev("b1"),
                ServerFrame::Presence {
                    login: alice.clone(),
                    view: PresenceView::LastSeen { at: Timestamp(5) },
                }
            )]
        );
        let out = hub.register_routed(Timestamp(6), dev("a3"), alice.clone());
        assert!(
            matches!(&out[..], [(d, ServerFrame::Presence { view: PresenceView::Online, .. })] if *d == dev("b1")),
            "{out:?}"
        );
        hub.unregister_routed(Timestamp(7), &dev("b1"));
        assert!(hub.unregister_routed(Timestamp(8), &dev("a3")).is_empty());
    }

    /// Privacy applies to pushed presence as to asked presence.
    #[test]
    fn pushed_presence_respects_privacy() {
        let mut hub = Hub::new(DeliveryConfig::default());
        let (alice, bob) = (login("alice"), login("bob"));
        hub.register_routed(Timestamp(1), dev("b1"), bob.clone());
        hub.register_routed(Timestamp(1), dev("a1"), alice.clone());
        hub.set_visibility(&alice, Visibility::Contacts);
        hub.watch(&dev("b1"), &bob, &alice, false);
        let out = hub.unregister_routed(Timestamp(2), &dev("a1"));
        assert!(
            matches!(
                &out[..],
                [(
                    _,
                    ServerFrame::Presence {
                        view: PresenceView::Hidden,
                        ..
                    }
                )]
            ),
            "{out:?}"
        );
    }
}
