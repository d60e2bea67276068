//! The sans-IO delivery state with a hand-driven clock: receipts stay
//! monotonic, undelivered messages expire, typing times out, presence
//! respects privacy. No database, no sleeps.

use bridges::delivery::{Delivery, DeliveryConfig, DeliveryEvent, Presence, PresenceView};
use bridges::model::{Payload, Visibility};
use bridges::store::{ReceiptState, Watermark};
use bridges::{Body, ConversationId, Login, Message, Seq, Stored, Timestamp};

fn l(s: &str) -> Login {
    Login::parse(s).unwrap()
}

fn stored(conv: &ConversationId, seq: i64, sender: &Login, ts: i64, audience: &[Login]) -> Stored {
    Stored {
        message: Message {
            conversation: conv.clone(),
            seq: Seq(seq),
            sender: sender.clone(),
            client_id: format!("c{seq}"),
            ts: Timestamp(ts),
            payload: Some(Payload::Post {
                body: Body::Text { text: "x".into() },
            }),
            edited_at: None,
            deleted: false,
        },
        cursor: seq,
        duplicate: false,
        audience: audience.to_vec(),
    }
}

fn wm(conv: &ConversationId, who: &Login, delivered: i64, read: i64) -> Watermark {
    Watermark {
        conversation: conv.clone(),
        login: who.clone(),
        delivered: Seq(delivered),
        read: Seq(read),
    }
}

fn drain(d: &mut Delivery) -> Vec<DeliveryEvent> {
    std::iter::from_fn(|| d.poll_event()).collect()
}

/// Out-of-order watermarks (a stale device, a slow task) never move a
/// receipt backwards, and read implies delivered.
#[test]
fn receipts_never_go_backwards() {
    let (a, b) = (l("alice"), l("bob"));
    let dm = ConversationId::direct(&a, &b);
    let mut d = Delivery::new(DeliveryConfig::default());
    d.on_stored(
        Timestamp(0),
        &stored(&dm, 1, &a, 0, &[a.clone(), b.clone()]),
    );
    d.on_stored(
        Timestamp(0),
        &stored(&dm, 2, &a, 0, &[a.clone(), b.clone()]),
    );
    assert_eq!(d.state(&dm, Seq(1), &b), ReceiptState::Sent);

    d.on_watermark(Timestamp(1), &wm(&dm, &b, 0, 2), true);
    assert_eq!(d.state(&dm, Seq(2), &b), ReceiptState::Read);
    let ev = drain(&mut d);
    assert!(ev.contains(&DeliveryEvent::Receipt {
        conversation: dm.clone(),
        member: b.clone(),
        delivered: Seq(2),
        read: Seq(2)
    }));
    assert!(
        ev.iter()
            .any(|e| matches!(e, DeliveryEvent::ReadElsewhere { read, .. } if *read == Seq(2)))
    );

    // A late "delivered up to 1" changes nothing and emits nothing.
    d.on_watermark(Timestamp(2), &wm(&dm, &b, 1, 0), false);
    assert_eq!(d.state(&dm, Seq(2), &b), ReceiptState::Read);
    assert!(drain(&mut d).is_empty());

    let agg = d.aggregate(&dm, Seq(2), std::slice::from_ref(&b));
    assert_eq!(agg.state(), ReceiptState::Read);
}

/// In a group the sender sees who read and who only has it.
#[test]
fn group_aggregate_lists() {
    let names: Vec<Login> = ["ann", "ben", "cat", "dan"].map(l).to_vec();
    let g = ConversationId::parse("g:ann:g1").unwrap();
    let mut d = Delivery::new(DeliveryConfig::default());
    d.on_stored(Timestamp(0), &stored(&g, 5, &names[0], 0, &names));
    d.on_watermark(Timestamp(1), &wm(&g, &names[1], 5, 5), true);
    d.on_watermark(Timestamp(1), &wm(&g, &names[2], 5, 0), false);
    let agg = d.aggregate(&g, Seq(5), &names[1..]);
    assert_eq!(agg.read_by, vec![names[1].clone()]);
    assert_eq!(agg.delivered_to, vec![names[2].clone()]);
    assert_eq!(agg.pending, vec![names[3].clone()]);
    assert_eq!(agg.state(), ReceiptState::Sent);
}

/// An undelivered message expires at ts + ttl and the sender is told, once;
/// a delivered one does not.
#[test]
fn expiry_with_driven_clock() {
    let (a, b, c) = (l("alice"), l("bob"), l("carol"));
    let g = ConversationId::parse("g:alice:x").unwrap();
    let mut d = Delivery::new(DeliveryConfig {
        undelivered_ttl_ms: Some(60_000),
        ..DeliveryConfig::default()
    });
    d.on_stored(
        Timestamp(1_000),
        &stored(&g, 1, &a, 1_000, &[a.clone(), b.clone(), c.clone()]),
    );
    assert_eq!(d.poll_timeout(), Some(Timestamp(61_000)));
    // bob gets it in time.
    d.on_watermark(Timestamp(30_000), &wm(&g, &b, 1, 0), false);
    drain(&mut d);
    d.handle_timeout(Timestamp(60_999));
    assert!(drain(&mut d).is_empty(), "nothing due yet");
    d.handle_timeout(Timestamp(61_000));
    assert_eq!(
        drain(&mut d),
        vec![DeliveryEvent::Expired {
            conversation: g.clone(),
            seq: Seq(1),
            sender: a.clone(),
            recipient: c.clone()
        }]
    );
    assert_eq!(d.poll_timeout(), None);
    d.handle_timeout(Timestamp(120_000));
    assert!(drain(&mut d).is_empty(), "told once");
}

/// Typing starts once, refreshes extend it, and it stops 6 s after the last
/// refresh or when the user sends.
#[test]
fn typing_expires() {
    let (a, b) = (l("alice"), l("bob"));
    let dm = ConversationId::direct(&a, &b);
    let mut d = Delivery::new(DeliveryConfig::default());
    d.typing(Timestamp(0), &dm, &a, true);
    d.typing(Timestamp(4_000), &dm, &a, true);
    let ev = drain(&mut d);
    assert_eq!(ev.len(), 1, "refresh is not a new start: {ev:?}");
    assert_eq!(d.poll_timeout(), Some(Timestamp(10_000)));
    d.handle_timeout(Timestamp(9_999));
    assert!(drain(&mut d).is_empty());
    d.handle_timeout(Timestamp(10_000));
    assert_eq!(
        drain(&mut d),
        vec![DeliveryEvent::Typing {
            conversation: dm.clone(),
            user: a.clone(),
            typing: false
        }]
    );
    // Sending a message stops typing at once.
    d.typing(Timestamp(20_000), &dm, &b, true);
    drain(&mut d);
    d.on_stored(
        Timestamp(21_000),
        &stored(&dm, 1, &b, 21_000, &[a.clone(), b.clone()]),
    );
    assert!(drain(&mut d).contains(&DeliveryEvent::Typing {
        conversation: dm.clone(),
        user: b.clone(),
        typing: false
    }));
    // A clock going backwards is clamped: the deadline does not move earlier.
    d.typing(Timestamp(30_000), &dm, &a, true);
    d.typing(Timestamp(1), &dm, &a, true);
    assert_eq!(d.poll_timeout(), Some(Timestamp(36_000)));
}

/// Last seen follows privacy: everyone, contacts only, nobody.
#[test]
fn last_seen_privacy() {
    let (a, b, c) = (l("alice"), l("bob"), l("carol"));
    let mut p = Presence::default();
    assert_eq!(p.view(&b, &a, true), PresenceView::Hidden, "never seen");
    p.connect(Timestamp(100), &a);
    p.connect(Timestamp(150), &a);
    assert_eq!(p.view(&b, &a, false), PresenceView::Online);
    assert!(!p.disconnect(Timestamp(200), &a), "second device still on");
    assert!(p.disconnect(Timestamp(300), &a));
    let seen = PresenceView::LastSeen { at: Timestamp(300) };
    assert_eq!(p.view(&b, &a, false), seen);

    p.set_visibility(&a, Visibility::Contacts);
    assert_eq!(p.view(&b, &a, true), seen);
    assert_eq!(p.view(&c, &a, false), PresenceView::Hidden);

    p.set_visibility(&a, Visibility::Nobody);
    assert_eq!(p.view(&b, &a, true), PresenceView::Hidden);
    assert_eq!(p.view(&a, &a, false), seen, "one always sees oneself");
}
