//! The frame-level flow through `ChatService` (store + hub), as the gateway
//! will drive it: JSON text in, `(device, frame)` pairs out.

use bridges::delivery::DeliveryConfig;
use bridges::frames::ServerFrame;
use bridges::hub::Outbox;
use bridges::{ChatService, ChatStore, DeviceId, Login, Seq, Timestamp};

fn l(s: &str) -> Login {
    Login::parse(s).unwrap()
}
fn dev(s: &str) -> DeviceId {
    DeviceId(s.into())
}

async fn service(dir: &tempfile::TempDir, config: DeliveryConfig) -> ChatService {
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    ChatService::new(ChatStore::open(&url).await.unwrap(), config)
}

fn to<'a>(out: &'a Outbox, d: &str) -> Vec<&'a ServerFrame> {
    out.iter()
        .filter(|(x, _)| x.0 == d)
        .map(|(_, f)| f)
        .collect()
}

async fn go_live(svc: &ChatService, now: i64, d: &str) -> Outbox {
    svc.handle_text(Timestamp(now), &dev(d), r#"{"type":"sync"}"#)
        .await
}

/// Live push to the recipient's devices, ack to the sender, receipts back,
/// and a read on one device clears the badge on the other.
#[tokio::test]
async fn send_push_ack_receipt_read_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir, DeliveryConfig::default()).await;
    svc.connect(Timestamp(0), dev("a1"), l("alice"));
    svc.connect(Timestamp(0), dev("b1"), l("bob"));
    svc.connect(Timestamp(0), dev("b2"), l("bob"));
    for d in ["a1", "b1", "b2"] {
        go_live(&svc, 0, d).await;
    }
    let out = svc
        .handle_text(
            Timestamp(10),
            &dev("a1"),
            r#"{"type":"send","conversation":"dm:alice+bob","client_id":"m1","body":{"kind":"text","text":"hi bob"}}"#,
        )
        .await;
    assert!(matches!(
        to(&out, "a1")[..],
        [ServerFrame::Ack {
            seq: Seq(1),
            duplicate: false,
            ..
        }]
    ));
    let cursor = match to(&out, "b1")[..] {
        [ServerFrame::Message(e)] => e.cursor,
        ref other => panic!("{other:?}"),
    };
    assert_eq!(to(&out, "b2").len(), 1);

    // b1 stores it and acks: alice gets "delivered".
    let ack = format!(r#"{{"type":"ack","cursor":{cursor}}}"#);
    let out = svc.handle_text(Timestamp(11), &dev("b1"), &ack).await;
    assert!(to(&out, "a1").iter().any(|f| matches!(
        f,
        ServerFrame::Receipt {
            delivered: Seq(1),
            read: Seq(0),
            ..
        }
    )));

    // Bob reads on b1: alice gets "read", b2 gets read_elsewhere, b1 gets ok.
    let out = svc
        .handle_text(
            Timestamp(12),
            &dev("b1"),
            r#"{"type":"read","conversation":"dm:alice+bob","seq":1}"#,
        )
        .await;
    assert!(
        to(&out, "a1")
            .iter()
            .any(|f| matches!(f, ServerFrame::Receipt { read: Seq(1), .. }))
    );
    assert!(
        to(&out, "b2")
            .iter()
            .any(|f| matches!(f, ServerFrame::ReadElsewhere { read: Seq(1), .. }))
    );
    assert!(
        !to(&out, "b1")
            .iter()
            .any(|f| matches!(f, ServerFrame::ReadElsewhere { .. }))
    );

    // A resend after a lost ack: same seq, no second push.
    let out = svc
        .handle_text(
            Timestamp(13),
            &dev("a1"),
            r#"{"type":"send","conversation":"dm:alice+bob","client_id":"m1","body":{"kind":"text","text":"hi bob"}}"#,
        )
        .await;
    assert_eq!(out.len(), 1);
    assert!(matches!(
        out[0].1,
        ServerFrame::Ack {
            seq: Seq(1),
            duplicate: true,
            ..
        }
    ));
}

/// A device that is offline gets nothing pushed; on reconnect its sync
/// returns the backlog and then it is live.
#[tokio::test]
async fn offline_device_catches_up_then_goes_live() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir, DeliveryConfig::default()).await;
    svc.connect(Timestamp(0), dev("a1"), l("alice"));
    go_live(&svc, 0, "a1").await;
    for i in 0..3 {
        let f = format!(
            r#"{{"type":"send","conversation":"dm:alice+bob","client_id":"m{i}","body":{{"kind":"text","text":"{i}"}}}}"#
        );
        let out = svc.handle_text(Timestamp(i), &dev("a1"), &f).await;
        assert_eq!(out.len(), 1, "only the ack: bob is offline");
    }
    svc.connect(Timestamp(100), dev("b1"), l("bob"));
    // Not yet synced: not live, no push.
    let f = r#"{"type":"send","conversation":"dm:alice+bob","client_id":"m3","body":{"kind":"text","text":"3"}}"#;
    let out = svc.handle_text(Timestamp(101), &dev("a1"), f).await;
    assert!(to(&out, "b1").is_empty());
    let out = go_live(&svc, 102, "b1").await;
    match to(&out, "b1")[..] {
        [
            ServerFrame::Batch {
                messages,
                more: false,
                ..
            },
        ] => {
            let seqs: Vec<i64> = messages.iter().map(|e| e.message.seq.0).collect();
            assert_eq!(seqs, vec![1, 2, 3, 4]);
        }
        ref other => panic!("{other:?}"),
    }
    let f = r#"{"type":"send","conversation":"dm:alice+bob","client_id":"m4","body":{"kind":"text","text":"4"}}"#;
    let out = svc.handle_text(Timestamp(103), &dev("a1"), f).await;
    assert_eq!(to(&out, "b1").len(), 1, "live now");
}

/// Bad frames and forbidden requests become error frames with codes.
#[tokio::test]
async fn bad_frames_get_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir, DeliveryConfig::default()).await;
    let code = |out: &Outbox| match &out[..] {
        [(_, ServerFrame::Error { code, .. })] => code.clone(),
        other => panic!("{other:?}"),
    };
    let out = svc
        .handle_text(Timestamp(0), &dev("x"), r#"{"type":"sync"}"#)
        .await;
    assert_eq!(code(&out), "not_registered");
    svc.connect(Timestamp(0), dev("a1"), l("alice"));
    assert_eq!(
        code(&svc.handle_text(Timestamp(0), &dev("a1"), "not json").await),
        "bad_frame"
    );
    let out = svc
        .handle_text(
            Timestamp(0),
            &dev("a1"),
            r#"{"type":"history","conversation":"dm:bob+carol"}"#,
        )
        .await;
    assert_eq!(code(&out), "forbidden");
    let out = svc
        .handle_text(
            Timestamp(0),
            &dev("a1"),
            r#"{"type":"send","conversation":"dm:bob+carol","client_id":"z","body":{"kind":"text","text":"hi"}}"#,
        )
        .await;
    assert_eq!(code(&out), "forbidden");
    match &out[0].1 {
        ServerFrame::Error { client_id, .. } => assert_eq!(client_id.as_deref(), Some("z")),
        other => panic!("{other:?}"),
    }
    let out = svc
        .handle_text(
            Timestamp(0),
            &dev("a1"),
            r#"{"type":"send","conversation":"dm:alice+bob","client_id":"z","body":{"kind":"location","lat":123,"lon":0}}"#,
        )
        .await;
    assert_eq!(code(&out), "invalid");
}

/// Group typing reaches the other members, stops after 6 s without refresh,
/// and undelivered messages produce an `expired` frame for the sender.
#[tokio::test]
async fn group_typing_and_expiry_frames() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(
        &dir,
        DeliveryConfig {
            undelivered_ttl_ms: Some(60_000),
            ..DeliveryConfig::default()
        },
    )
    .await;
    for (d, u) in [("a1", "ann"), ("b1", "ben")] {
        svc.connect(Timestamp(0), dev(d), l(u));
        go_live(&svc, 0, d).await;
    }
    let out = svc
        .handle_text(
            Timestamp(1),
            &dev("a1"),
            r#"{"type":"group_create","client_id":"g1","title":"Team","members":["ben","cat"]}"#,
        )
        .await;
    assert!(matches!(to(&out, "b1")[..], [ServerFrame::Message(_)]));
    let out = svc
        .handle_text(
            Timestamp(2),
            &dev("b1"),
            r#"{"type":"typing","conversation":"g:ann:g1","on":true}"#,
        )
        .await;
    assert!(matches!(
        to(&out, "a1")[..],
        [ServerFrame::Typing { typing: true, .. }]
    ));
    assert_eq!(svc.poll_timeout(), Some(Timestamp(6_002)));
    let out = svc.handle_timeout(Timestamp(6_002));
    assert!(matches!(
        to(&out, "a1")[..],
        [ServerFrame::Typing { typing: false, .. }]
    ));

    // cat never connects; ben acks. After the ttl ann is told about cat only.
    let out = svc
        .handle_text(
            Timestamp(10_000),
            &dev("a1"),
            r#"{"type":"send","conversation":"g:ann:g1","client_id":"m1","body":{"kind":"text","text":"hello"}}"#,
        )
        .await;
    let cursor = match to(&out, "b1")[..] {
        [ServerFrame::Message(e)] => e.cursor,
        ref other => panic!("{other:?}"),
    };
    svc.handle_text(
        Timestamp(10_001),
        &dev("b1"),
        &format!(r#"{{"type":"ack","cursor":{cursor}}}"#),
    )
    .await;
    let out = svc.handle_timeout(Timestamp(70_000));
    match to(&out, "a1")[..] {
        [
            ServerFrame::Expired {
                recipient,
                seq: Seq(2),
                ..
            },
        ] => assert_eq!(recipient.as_str(), "cat"),
        ref other => panic!("{other:?}"),
    }
    // Receipts frame: ben delivered, cat pending.
    let out = svc
        .handle_text(
            Timestamp(70_001),
            &dev("a1"),
            r#"{"type":"receipts","conversation":"g:ann:g1","seq":2}"#,
        )
        .await;
    match to(&out, "a1")[..] {
        [
            ServerFrame::Receipts {
                delivered_to,
                pending,
                read_by,
                ..
            },
        ] => {
            assert_eq!(delivered_to, &vec![l("ben")]);
            assert_eq!(pending, &vec![l("cat")]);
            assert!(read_by.is_empty());
        }
        ref other => panic!("{other:?}"),
    }
}

/// Presence through frames honours the subject's privacy setting.
#[tokio::test]
async fn presence_frames_respect_privacy() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir, DeliveryConfig::default()).await;
    for (d, u) in [("a1", "alice"), ("b1", "bob"), ("c1", "carol")] {
        svc.connect(Timestamp(0), dev(d), l(u));
    }
    // alice and bob share a conversation; carol shares none with alice.
    svc.handle_text(
        Timestamp(1),
        &dev("a1"),
        r#"{"type":"send","conversation":"dm:alice+bob","client_id":"m1","body":{"kind":"text","text":"hi"}}"#,
    )
    .await;
    svc.handle_text(
        Timestamp(2),
        &dev("a1"),
        r#"{"type":"privacy","visibility":"contacts"}"#,
    )
    .await;
    svc.disconnect(Timestamp(500), &dev("a1"));
    let ask = r#"{"type":"presence","login":"alice"}"#;
    let bob_view = svc.handle_text(Timestamp(600), &dev("b1"), ask).await;
    assert_eq!(
        bob_view[0].1.to_json(),
        r#"{"type":"presence","login":"alice","state":"last_seen","at":500}"#
    );
    let carol_view = svc.handle_text(Timestamp(600), &dev("c1"), ask).await;
    assert_eq!(
        carol_view[0].1.to_json(),
        r#"{"type":"presence","login":"alice","state":"hidden"}"#
    );
}

/// Expiry timers survive a restart: a new service over the reopened store
/// re-arms them and the sender is still told.
#[tokio::test]
async fn expiry_rearmed_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = DeliveryConfig {
        undelivered_ttl_ms: Some(60_000),
        ..DeliveryConfig::default()
    };
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let opts = || bridges::StoreOptions {
        undelivered_ttl: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    };
    {
        let svc = ChatService::new(
            ChatStore::open_with(&url, opts()).await.unwrap(),
            config.clone(),
        );
        svc.connect(Timestamp(0), dev("a1"), l("alice"));
        let f = r#"{"type":"send","conversation":"dm:alice+bob","client_id":"m1","body":{"kind":"text","text":"hi"}}"#;
        svc.handle_text(Timestamp(1_000), &dev("a1"), f).await;
        svc.store().close().await;
    }
    let svc = ChatService::new(ChatStore::open_with(&url, opts()).await.unwrap(), config);
    assert_eq!(svc.restore().await.unwrap(), 1);
    assert_eq!(svc.poll_timeout(), Some(Timestamp(61_000)));
    svc.connect(Timestamp(2_000), dev("a2"), l("alice"));
    let out = svc.handle_timeout(Timestamp(61_000));
    assert!(matches!(
        to(&out, "a2")[..],
        [ServerFrame::Expired { seq: Seq(1), .. }]
    ));
}
