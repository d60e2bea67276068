//! Push subscriptions in the store and the service's push jobs: who gets a
//! job, with or without a preview, and that an endpoint follows its browser.

use bridges::delivery::DeliveryConfig;
use bridges::push::{PushJob, Subscription};
use bridges::{ChatService, ChatStore, DeviceId, Login, Timestamp};
use tokio::sync::mpsc;

const KEY: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

fn l(s: &str) -> Login {
    Login::parse(s).expect("login")
}

fn d(s: &str) -> DeviceId {
    DeviceId(s.to_owned())
}

fn sub(endpoint: &str) -> Subscription {
    Subscription::parse(endpoint, KEY, AUTH).expect("subscription")
}

#[tokio::test]
async fn targets_carry_the_preview_setting_and_endpoints_move() {
    let store = ChatStore::open("sqlite::memory:").await.expect("store");
    let (bob, carol) = (l("bob"), l("carol"));
    store
        .push_subscribe(&bob, &d("b1"), &sub("https://p.example/1"), Timestamp(1))
        .await
        .expect("subscribe");
    store
        .push_subscribe(&carol, &d("c1"), &sub("https://p.example/2"), Timestamp(1))
        .await
        .expect("subscribe");
    store.set_push_preview(&carol, true).await.expect("preview");
    assert!(store.push_preview(&carol).await.expect("read"));
    assert!(!store.push_preview(&bob).await.expect("read"));

    let t = store
        .push_targets(&[bob.clone(), carol.clone(), l("dave")])
        .await
        .expect("targets");
    let got: Vec<_> = t
        .iter()
        .map(|(u, dev, _, p)| (u.clone(), dev.0.clone(), *p))
        .collect();
    assert_eq!(
        got,
        vec![
            (bob.clone(), "b1".into(), false),
            (carol.clone(), "c1".into(), true)
        ]
    );

    // the same browser (endpoint) re-subscribing as a new device of bob's
    // replaces its old row: one browser, one push
    store
        .push_subscribe(&bob, &d("b2"), &sub("https://p.example/1"), Timestamp(2))
        .await
        .expect("subscribe");
    let t = store.push_subscriptions(&bob).await.expect("subs");
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].0, d("b2"));

    assert!(
        store
            .push_forget_endpoint("https://p.example/1")
            .await
            .expect("forget")
    );
    assert!(
        store
            .push_subscriptions(&bob)
            .await
            .expect("subs")
            .is_empty()
    );
    assert!(
        store
            .push_unsubscribe(&carol, &d("c1"))
            .await
            .expect("unsub")
    );
    assert!(
        store
            .push_targets(&[carol])
            .await
            .expect("targets")
            .is_empty()
    );
}

#[tokio::test]
async fn service_queues_jobs_only_for_offline_subscribed_recipients() {
    let store = ChatStore::open("sqlite::memory:").await.expect("store");
    let svc = ChatService::new(store, DeliveryConfig::default());
    let (tx, mut rx) = mpsc::channel::<PushJob>(16);
    svc.set_push_sink(tx);
    let (alice, bob) = (l("alice"), l("bob"));
    svc.connect(Timestamp(1), d("b1"), bob.clone());
    let ok = svc
        .handle_text(
            Timestamp(2),
            &d("b1"),
            &format!(
                r#"{{"type":"push_subscribe","endpoint":"https://p.example/b","p256dh":"{KEY}","auth":"{AUTH}"}}"#
            ),
        )
        .await;
    assert_eq!(ok[0].1.to_json(), r#"{"type":"ok"}"#);
    svc.connect(Timestamp(3), d("a1"), alice.clone());
    let send = |id: &str| {
        format!(
            r#"{{"type":"send","conversation":"dm:alice+bob","client_id":"{id}","body":{{"kind":"text","text":"hi {id}"}}}}"#
        )
    };
    svc.handle_text(Timestamp(4), &d("a1"), &send("m1")).await;
    assert!(rx.try_recv().is_err(), "bob is connected: no push");
    svc.disconnect(Timestamp(5), &d("b1"));
    svc.handle_text(Timestamp(6), &d("a1"), &send("m2")).await;
    let job = rx.try_recv().expect("bob is offline: a push");
    assert_eq!(
        (job.login.clone(), job.device.clone()),
        (bob.clone(), d("b1"))
    );
    assert_eq!(job.notice.seq.0, 2);
    assert_eq!(job.notice.preview, None);
    // a retry of m2 is not a new post
    svc.handle_text(Timestamp(7), &d("a1"), &send("m2")).await;
    assert!(rx.try_recv().is_err(), "no push for a duplicate");
    svc.store()
        .set_push_preview(&bob, true)
        .await
        .expect("preview");
    svc.handle_text(Timestamp(8), &d("a1"), &send("m3")).await;
    let job = rx.try_recv().expect("a push");
    assert_eq!(job.notice.preview.as_deref(), Some("hi m3"));
}
