//! ChatStore behaviour against a real SQLite file: durability, idempotency,
//! ordering, sync, groups, membership and receipts.

use std::collections::HashSet;
use std::sync::Arc;

use bridges::model::{GroupEvent, Payload};
use bridges::store::ReceiptState;
use bridges::{
    Body, ChatError, ChatStore, ClientId, ConversationId, DeviceId, Login, Seq, Timestamp,
};

fn l(s: &str) -> Login {
    Login::parse(s).unwrap()
}
fn cid(s: &str) -> ClientId {
    ClientId::parse(s).unwrap()
}
fn text(s: &str) -> Body {
    Body::Text { text: s.into() }
}
fn dev(s: &str) -> DeviceId {
    DeviceId(s.into())
}
fn t(ms: i64) -> Timestamp {
    Timestamp(ms)
}

async fn open(dir: &tempfile::TempDir) -> ChatStore {
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    ChatStore::open(&url).await.unwrap()
}

fn text_of(m: &bridges::Message) -> Option<&str> {
    match &m.payload {
        Some(Payload::Post {
            body: Body::Text { text },
        }) => Some(text),
        _ => None,
    }
}

/// A resend after a lost ack returns the original seq and stores nothing new.
#[tokio::test]
async fn idempotent_resend() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let (alice, bob) = (l("alice"), l("bob"));
    let dm = ConversationId::direct(&alice, &bob);
    let first = s
        .send(&alice, &dm, &cid("m1"), text("hi"), t(1))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.seq(), Seq(1));
    let again = s
        .send(&alice, &dm, &cid("m1"), text("hi"), t(2))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq(), first.seq());
    assert_eq!(again.ts(), first.ts());
    let next = s
        .send(&alice, &dm, &cid("m2"), text("there"), t(3))
        .await
        .unwrap();
    assert_eq!(next.seq(), Seq(2));
    let hist = s.fetch(&bob, &dev("b1"), &dm, Seq(0), 100).await.unwrap();
    assert_eq!(hist.len(), 2);
    // The same client id in another conversation is refused, not merged.
    let other = ConversationId::direct(&alice, &l("carol"));
    let err = s
        .send(&alice, &other, &cid("m1"), text("x"), t(4))
        .await
        .unwrap_err();
    assert!(matches!(err, ChatError::ClientIdReused), "{err:?}");
    // Another sender may use the same client id.
    let b = s
        .send(&bob, &dm, &cid("m1"), text("yo"), t(5))
        .await
        .unwrap();
    assert_eq!((b.seq(), b.duplicate), (Seq(3), false));
}

/// Concurrent senders in one conversation get distinct, gap-free seqs, and
/// each sender's messages keep their own order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_under_interleaved_senders() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir).await);
    let (alice, bob, carol) = (l("alice"), l("bob"), l("carol"));
    let g = s
        .create_group(
            &alice,
            &cid("g1"),
            "trio",
            &[bob.clone(), carol.clone()],
            t(0),
        )
        .await
        .unwrap()
        .message
        .conversation;
    let mut tasks = Vec::new();
    for who in [alice.clone(), bob.clone(), carol.clone()] {
        let (s, g) = (s.clone(), g.clone());
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..40 {
                let st = s
                    .send(
                        &who,
                        &g,
                        &cid(&format!("{who}-{i}")),
                        text(&format!("{who} {i}")),
                        t(i),
                    )
                    .await
                    .unwrap();
                seqs.push(st.seq());
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "per-sender order kept"
        );
        all.extend(seqs);
    }
    all.sort();
    let expected: Vec<Seq> = (2..=121).map(Seq).collect(); // seq 1 is the create event
    assert_eq!(all, expected);
    let hist = s.fetch(&carol, &dev("c"), &g, Seq(1), 500).await.unwrap();
    assert_eq!(hist.len(), 120);
    for who in ["alice", "bob", "carol"] {
        let mine: Vec<usize> = hist
            .iter()
            .filter(|m| m.sender.as_str() == who)
            .map(|m| {
                text_of(m)
                    .and_then(|t| t.rsplit(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap()
            })
            .collect();
        assert_eq!(mine, (0..40).collect::<Vec<_>>());
    }
}

/// 100 messages to an offline user survive a restart; the user's device then
/// syncs all of them in order, once each, in pages.
#[tokio::test]
async fn offline_delivery_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (l("alice"), l("bob"));
    let dm = ConversationId::direct(&alice, &bob);
    {
        let s = open(&dir).await;
        for i in 0..100 {
            s.send(
                &alice,
                &dm,
                &cid(&format!("m{i}")),
                text(&format!("{i}")),
                t(i),
            )
            .await
            .unwrap();
        }
        s.close().await;
    }
    let s = open(&dir).await;
    let phone = dev("bob-phone");
    let mut got = Vec::new();
    loop {
        let batch = s.sync(&bob, &phone, None, 30, t(1000)).await.unwrap();
        got.extend(batch.messages.iter().map(|(_, m)| m.clone()));
        s.ack_sync(&bob, &phone, batch.cursor).await.unwrap();
        if !batch.more {
            break;
        }
    }
    let texts: Vec<String> = got.iter().map(|m| text_of(m).unwrap().to_owned()).collect();
    assert_eq!(texts, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    let seqs: HashSet<Seq> = got.iter().map(|m| m.seq).collect();
    assert_eq!(seqs.len(), 100);
    // Once each: the cursor was stored, so the next sync is empty, even after
    // another restart.
    s.close().await;
    let s = open(&dir).await;
    assert!(
        s.sync(&bob, &phone, None, 100, t(1000))
            .await
            .unwrap()
            .messages
            .is_empty()
    );
    // A second device of bob's starts from zero and gets everything too.
    let laptop = s
        .sync(&bob, &dev("bob-laptop"), None, 500, t(1000))
        .await
        .unwrap();
    assert_eq!(laptop.messages.len(), 100);
    // The acks moved bob's delivered watermark: alice sees "delivered".
    let r = s.receipts(&alice, &dm, Seq(100)).await.unwrap();
    assert_eq!(r, vec![(bob.clone(), ReceiptState::Delivered)]);
}

/// Group of five; one member is removed mid-conversation and sees nothing
/// sent after the removal, while history before it stays readable.
#[tokio::test]
async fn group_of_five_with_removal() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let names: Vec<Login> = ["ann", "ben", "cat", "dan", "eve"].map(l).to_vec();
    let created = s
        .create_group(&names[0], &cid("grp"), "Five", &names[1..], t(0))
        .await
        .unwrap();
    let g = created.message.conversation.clone();
    assert_eq!(created.audience.len(), 5);
    // Retrying the create returns the same group.
    let again = s
        .create_group(&names[0], &cid("grp"), "Five", &names[1..], t(1))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.conversation, g);

    for (i, who) in names.iter().enumerate() {
        s.send(who, &g, &cid(&format!("a{i}")), text("before"), t(10))
            .await
            .unwrap();
    }
    // Only admins remove.
    let err = s
        .remove_member(&names[1], &g, &cid("rm0"), &names[4], t(11))
        .await
        .unwrap_err();
    assert!(matches!(err, ChatError::Forbidden));
    let removal = s
        .remove_member(&names[0], &g, &cid("rm1"), &names[4], t(12))
        .await
        .unwrap();
    assert!(removal.audience.contains(&names[4]), "eve sees her removal");
    for (i, who) in names[..4].iter().enumerate() {
        let st = s
            .send(who, &g, &cid(&format!("b{i}")), text("after"), t(20))
            .await
            .unwrap();
        assert!(!st.audience.contains(&names[4]));
        assert_eq!(st.audience.len(), 4);
    }
    let err = s
        .send(&names[4], &g, &cid("e-late"), text("let me in"), t(21))
        .await
        .unwrap_err();
    assert!(matches!(err, ChatError::Forbidden));

    let eve_hist = s
        .fetch(&names[4], &dev("e"), &g, Seq(0), 100)
        .await
        .unwrap();
    assert_eq!(eve_hist.last().unwrap().seq, removal.seq());
    assert!(eve_hist.iter().all(|m| text_of(m) != Some("after")));
    let eve_sync = s
        .sync(&names[4], &dev("e"), None, 100, t(30))
        .await
        .unwrap();
    assert_eq!(eve_sync.messages.len(), eve_hist.len());
    let dan_hist = s
        .fetch(&names[3], &dev("d"), &g, Seq(0), 100)
        .await
        .unwrap();
    assert_eq!(
        dan_hist
            .iter()
            .filter(|m| text_of(m) == Some("after"))
            .count(),
        4
    );

    let members = s.members(&names[0], &g).await.unwrap();
    assert_eq!(members.len(), 4);
    assert!(members.iter().find(|m| m.login == names[0]).unwrap().admin);

    // Rename, then the only admin leaves: the longest-standing member is promoted.
    let r = s
        .rename_group(&names[0], &g, &cid("rn"), "Four", t(40))
        .await
        .unwrap();
    assert!(matches!(
        r.message.payload,
        Some(Payload::Group { change: GroupEvent::Renamed { ref title } }) if title == "Four"
    ));
    s.leave(&names[0], &g, &cid("bye"), t(41)).await.unwrap();
    let members = s.members(&names[1], &g).await.unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().any(|m| m.admin));
    // Re-adding eve opens a new window: she sees the add and later messages.
    let admin = members.iter().find(|m| m.admin).unwrap().login.clone();
    let add = s
        .add_members(&admin, &g, &cid("readd"), &[names[4].clone()], t(50))
        .await
        .unwrap();
    let post = s
        .send(&names[4], &g, &cid("e-back"), text("back"), t(51))
        .await
        .unwrap();
    assert!(post.seq() > add.seq());
}

/// Read-by lists per message are right in a group.
#[tokio::test]
async fn read_by_lists() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let (a, b, c, d) = (l("ann"), l("ben"), l("cat"), l("dan"));
    let g = s
        .create_group(&a, &cid("g"), "G", &[b.clone(), c.clone(), d.clone()], t(0))
        .await
        .unwrap()
        .message
        .conversation;
    let m1 = s
        .send(&a, &g, &cid("1"), text("one"), t(1))
        .await
        .unwrap()
        .seq();
    let m2 = s
        .send(&a, &g, &cid("2"), text("two"), t(2))
        .await
        .unwrap()
        .seq();
    // ben read both, cat has m1 on a device, dan has nothing.
    s.mark_read(&b, &g, m2).await.unwrap();
    let c_batch = s.sync(&c, &dev("c"), None, 100, t(3)).await.unwrap();
    let m1_cursor = c_batch
        .messages
        .iter()
        .find(|(_, m)| m.seq == m1)
        .unwrap()
        .0;
    s.ack_sync(&c, &dev("c"), m1_cursor).await.unwrap();
    let r1 = s.receipts(&a, &g, m1).await.unwrap();
    assert_eq!(
        r1,
        vec![
            (b.clone(), ReceiptState::Read),
            (c.clone(), ReceiptState::Delivered),
            (d.clone(), ReceiptState::Sent)
        ]
    );
    let r2 = s.receipts(&a, &g, m2).await.unwrap();
    assert_eq!(r2[1], (c.clone(), ReceiptState::Sent));
    // Unread counts: dan has two unread posts, ben none.
    assert_eq!(s.unread(&d, &g).await.unwrap(), 2);
    assert_eq!(s.unread(&b, &g).await.unwrap(), 0);
    assert_eq!(
        s.unread(&a, &g).await.unwrap(),
        0,
        "own messages are not unread"
    );
}

/// Alice can neither read nor write Bob and Carol's conversation.
#[tokio::test]
async fn membership_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let (alice, bob, carol) = (l("alice"), l("bob"), l("carol"));
    let bc = ConversationId::direct(&bob, &carol);
    s.send(&bob, &bc, &cid("x"), text("secret"), t(1))
        .await
        .unwrap();
    let forbidden = |r: Result<_, ChatError>| matches!(r, Err(ChatError::Forbidden));
    assert!(forbidden(
        s.fetch(&alice, &dev("a"), &bc, Seq(0), 10)
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        s.send(&alice, &bc, &cid("y"), text("hi"), t(2))
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        s.mark_read(&alice, &bc, Seq(1)).await.map(|_| ())
    ));
    assert!(forbidden(s.receipts(&alice, &bc, Seq(1)).await.map(|_| ())));
    assert!(forbidden(s.members(&alice, &bc).await.map(|_| ())));
    let sync = s.sync(&alice, &dev("a"), None, 10, t(3)).await.unwrap();
    assert!(sync.messages.is_empty());
    // Edits and deletes: sender only.
    assert!(forbidden(
        s.edit(&carol, &bc, &cid("e"), Seq(1), text("mine"), t(4))
            .await
            .map(|_| ())
    ));
    assert!(forbidden(
        s.delete(&carol, &bc, &cid("d"), Seq(1), t(4))
            .await
            .map(|_| ())
    ));
    let g = s
        .create_group(&bob, &cid("g"), "bc", std::slice::from_ref(&carol), t(5))
        .await
        .unwrap();
    let gid = g.message.conversation;
    assert!(forbidden(
        s.add_members(
            &alice,
            &gid,
            &cid("sneak"),
            std::slice::from_ref(&alice),
            t(6)
        )
        .await
        .map(|_| ())
    ));
    assert!(forbidden(
        s.leave(&alice, &gid, &cid("l"), t(6)).await.map(|_| ())
    ));
}

/// Edits replace the body, deletes leave a tombstone at the same seq, and
/// both appear in the sync stream as their own entries.
#[tokio::test]
async fn edit_and_delete_keep_seq() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let (alice, bob) = (l("alice"), l("bob"));
    let dm = ConversationId::direct(&alice, &bob);
    let m = s
        .send(&alice, &dm, &cid("1"), text("helo"), t(1))
        .await
        .unwrap()
        .seq();
    s.edit(&alice, &dm, &cid("2"), m, text("hello"), t(2))
        .await
        .unwrap();
    let hist = s.fetch(&bob, &dev("b"), &dm, Seq(0), 10).await.unwrap();
    assert_eq!(text_of(&hist[0]), Some("hello"));
    assert_eq!(hist[0].edited_at, Some(t(2)));
    s.delete(&alice, &dm, &cid("3"), m, t(3)).await.unwrap();
    let hist = s.fetch(&bob, &dev("b"), &dm, Seq(0), 10).await.unwrap();
    assert_eq!(hist.len(), 3);
    assert_eq!(
        (hist[0].seq, hist[0].deleted, hist[0].payload.is_none()),
        (m, true, true)
    );
    assert!(matches!(hist[2].payload, Some(Payload::Delete { target }) if target == m));
    let err = s
        .edit(&alice, &dm, &cid("4"), m, text("zombie"), t(4))
        .await
        .unwrap_err();
    assert!(matches!(err, ChatError::Conflict(_)));
}

/// Read watermarks never go backwards and read implies delivered.
#[tokio::test]
async fn receipts_never_go_backwards_in_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let (alice, bob) = (l("alice"), l("bob"));
    let dm = ConversationId::direct(&alice, &bob);
    for i in 0..5 {
        s.send(&alice, &dm, &cid(&format!("{i}")), text("x"), t(i))
            .await
            .unwrap();
    }
    let wm = s.mark_read(&bob, &dm, Seq(4)).await.unwrap().unwrap();
    assert_eq!((wm.delivered, wm.read), (Seq(4), Seq(4)));
    assert!(s.mark_read(&bob, &dm, Seq(2)).await.unwrap().is_none());
    // Reading beyond the end clamps to the last seq.
    let wm = s.mark_read(&bob, &dm, Seq(99)).await.unwrap().unwrap();
    assert_eq!(wm.read, Seq(5));
    // An old device acking an old cursor does not lower delivered.
    let marks = s.ack_sync(&bob, &dev("old"), 1).await.unwrap();
    assert!(marks.is_empty());
    assert_eq!(
        s.receipts(&alice, &dm, Seq(5)).await.unwrap()[0].1,
        ReceiptState::Read
    );
}

/// Undelivered messages past their expiry are not handed to devices, but
/// delivered ones and the sender's own copies stay.
#[tokio::test]
async fn expired_messages_are_not_synced() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let opts = bridges::StoreOptions {
        undelivered_ttl: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    };
    let s = ChatStore::open_with(&url, opts).await.unwrap();
    let (alice, bob) = (l("alice"), l("bob"));
    let dm = ConversationId::direct(&alice, &bob);
    s.send(&alice, &dm, &cid("1"), text("old"), t(0))
        .await
        .unwrap();
    s.send(&alice, &dm, &cid("2"), text("new"), t(50_000))
        .await
        .unwrap();
    let b = s.sync(&bob, &dev("b"), None, 10, t(70_000)).await.unwrap();
    assert_eq!(b.messages.len(), 1);
    assert_eq!(text_of(&b.messages[0].1), Some("new"));
    let a = s
        .sync(&alice, &dev("a2"), None, 10, t(70_000))
        .await
        .unwrap();
    assert_eq!(a.messages.len(), 2);
}

/// Bad bodies are refused before anything is written.
#[tokio::test]
async fn invalid_bodies_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let (alice, bob) = (l("alice"), l("bob"));
    let dm = ConversationId::direct(&alice, &bob);
    let big = text(&"x".repeat(bridges::model::MAX_TEXT_BYTES + 1));
    assert!(matches!(
        s.send(&alice, &dm, &cid("1"), big, t(0)).await,
        Err(ChatError::Invalid { .. })
    ));
    let ok = s
        .send(&alice, &dm, &cid("1"), text("fine"), t(1))
        .await
        .unwrap();
    assert_eq!(ok.seq(), Seq(1));
}

/// Group commit: one transaction, per-request results, refusals isolated,
/// retries inside the batch deduplicated.
#[tokio::test]
async fn send_batch_isolates_refusals() {
    use bridges::store::SendRequest;
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let (alice, bob, carol) = (l("alice"), l("bob"), l("carol"));
    let ab = ConversationId::direct(&alice, &bob);
    let bc = ConversationId::direct(&bob, &carol);
    let req = |sender: &Login, conv: &ConversationId, id: &str, body: Body| SendRequest {
        sender: sender.clone(),
        conversation: conv.clone(),
        client_id: cid(id),
        body,
    };
    let res = s
        .send_batch(
            vec![
                req(&alice, &ab, "1", text("one")),
                req(&alice, &bc, "2", text("not mine")),
                req(&alice, &ab, "3", text("  ")),
                req(&bob, &ab, "4", text("two")),
                req(&alice, &ab, "1", text("one")),
            ],
            t(1),
        )
        .await
        .unwrap();
    assert_eq!(res[0].as_ref().unwrap().seq(), Seq(1));
    assert!(matches!(res[1], Err(ChatError::Forbidden)));
    assert!(matches!(res[2], Err(ChatError::Invalid { .. })));
    assert_eq!(res[3].as_ref().unwrap().seq(), Seq(2));
    let dup = res[4].as_ref().unwrap();
    assert!(dup.duplicate && dup.seq() == Seq(1));
    let hist = s.fetch(&bob, &dev("b"), &ab, Seq(0), 10).await.unwrap();
    assert_eq!(hist.len(), 2);
    assert!(
        s.fetch(&bob, &dev("b"), &bc, Seq(0), 10).await.is_err(),
        "bc was never created"
    );
}

/// The group commit (`write_batch`): one-to-one posts in bulk keep the
/// rules of `send` — seqs in request order after what is stored, retries
/// (earlier or in the same batch) answered with the original entry, a
/// client id from another conversation refused, outsiders refused — and
/// group posts and cursor acks in the same batch are written too.
#[tokio::test]
async fn group_commit_keeps_the_rules_of_send() {
    use bridges::store::{BatchDone, BatchWrite, SendRequest};
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let (alice, bob, carol) = (l("alice"), l("bob"), l("carol"));
    let ab = ConversationId::direct(&alice, &bob);
    let ac = ConversationId::direct(&alice, &carol);
    let first = s
        .send(&alice, &ab, &cid("a1"), text("one"), t(1))
        .await
        .unwrap();
    let group = s
        .create_group(&bob, &cid("g"), "team", std::slice::from_ref(&alice), t(2))
        .await
        .unwrap()
        .message
        .conversation;
    let send = |who: &Login, conv: &ConversationId, id: &str, body: &str| {
        BatchWrite::Send(SendRequest {
            sender: who.clone(),
            conversation: conv.clone(),
            client_id: cid(id),
            body: text(body),
        })
    };
    let writes = vec![
        send(&alice, &ab, "a2", "two"),
        send(&alice, &ac, "c1", "new conversation"),
        send(&bob, &group, "b1", "group post"),
        send(&alice, &ab, "a1", "retry of the stored one"),
        send(&alice, &ab, "a2", "retry within the batch"),
        send(&alice, &ac, "a2", "same id, other conversation"),
        send(&carol, &ab, "x1", "outsider"),
        send(&bob, &ab, "b2", "three"),
        // carol's device has everything: her new conversation is delivered
        BatchWrite::Ack {
            user: carol.clone(),
            device: dev("carol-phone"),
            cursor: i64::MAX,
        },
    ];
    let out = s.batch_writer().unwrap().write_batch(writes, t(3)).unwrap();
    let stored = |i: usize| match &out[i] {
        Ok(BatchDone::Stored(st)) => st.as_ref().clone(),
        other => panic!("write {i}: {other:?}"),
    };
    let (two, new, post, retry, again, three) = (
        stored(0),
        stored(1),
        stored(2),
        stored(3),
        stored(4),
        stored(7),
    );
    assert_eq!((two.seq(), two.duplicate), (Seq(2), false));
    assert_eq!(two.audience, vec![alice.clone(), bob.clone()]);
    assert_eq!((new.seq(), new.audience.len()), (Seq(1), 2));
    assert_eq!(post.seq(), Seq(2), "after the group's created event");
    assert_eq!(
        (retry.seq(), retry.duplicate, retry.cursor),
        (Seq(1), true, first.cursor)
    );
    assert_eq!(
        (again.seq(), again.duplicate, again.cursor),
        (Seq(2), true, two.cursor)
    );
    assert!(
        matches!(out[5], Err(ChatError::ClientIdReused)),
        "{:?}",
        out[5]
    );
    assert!(matches!(out[6], Err(ChatError::Forbidden)), "{:?}", out[6]);
    assert_eq!(three.seq(), Seq(3));
    assert!(two.cursor < three.cursor);
    match &out[8] {
        Ok(BatchDone::Marks(marks)) => {
            assert!(
                marks
                    .iter()
                    .any(|m| m.conversation == ac && m.delivered == Seq(1))
            )
        }
        other => panic!("ack: {other:?}"),
    }
    // the next single send continues the seqs; bob syncs everything once, in order
    let four = s
        .send(&alice, &ab, &cid("a4"), text("four"), t(4))
        .await
        .unwrap();
    assert_eq!(four.seq(), Seq(4));
    let batch = s
        .sync(&bob, &dev("bob-tab"), Some(0), 100, t(5))
        .await
        .unwrap();
    let in_ab: Vec<Seq> = batch
        .messages
        .iter()
        .filter(|(_, m)| m.conversation == ab)
        .map(|(_, m)| m.seq)
        .collect();
    assert_eq!(in_ab, vec![Seq(1), Seq(2), Seq(3), Seq(4)]);
    let cursors: Vec<i64> = batch.messages.iter().map(|(c, _)| *c).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]));
    // alice's own watermark moved with her posts
    let members = s.members(&alice, &ab).await.unwrap();
    let mine = members.iter().find(|m| m.login == alice).unwrap();
    assert_eq!((mine.delivered, mine.read), (Seq(4), Seq(4)));
}

/// Cursor acks of a group commit are written together: every device keeps
/// its highest cursor (never moving back), each user's delivered watermark
/// moves to the highest cursor any of their devices acked, and the moved
/// watermarks are answered to that user's last ack of the batch. The
/// cursors the bulk insert hands out are the ones `sync` later shows.
#[tokio::test]
async fn group_commit_writes_many_acks_at_once() {
    use bridges::store::{BatchDone, BatchWrite, SendRequest};
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let (alice, bob, carol) = (l("alice"), l("bob"), l("carol"));
    let ab = ConversationId::direct(&alice, &bob);
    let ac = ConversationId::direct(&alice, &carol);
    let send = |conv: &ConversationId, id: &str| {
        BatchWrite::Send(SendRequest {
            sender: alice.clone(),
            conversation: conv.clone(),
            client_id: cid(id),
            body: text(id),
        })
    };
    let mut writer = s.batch_writer().unwrap();
    let out = writer
        .write_batch(
            vec![
                send(&ab, "1"),
                send(&ac, "2"),
                send(&ab, "3"),
                send(&ac, "4"),
            ],
            t(1),
        )
        .unwrap();
    let cursor = |i: usize| match &out[i] {
        Ok(BatchDone::Stored(st)) => st.cursor,
        other => panic!("write {i}: {other:?}"),
    };
    let (c1, c2, c3, c4) = (cursor(0), cursor(1), cursor(2), cursor(3));
    let synced = s
        .sync(&bob, &dev("bob-phone"), Some(0), 100, t(2))
        .await
        .unwrap();
    let seen: Vec<i64> = synced.messages.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        seen,
        vec![c1, c3],
        "bob's entries with the cursors handed out"
    );
    let synced = s
        .sync(&carol, &dev("carol-phone"), Some(0), 100, t(2))
        .await
        .unwrap();
    let seen: Vec<i64> = synced.messages.iter().map(|(c, _)| *c).collect();
    assert_eq!(seen, vec![c2, c4]);
    let ack = |user: &Login, device: &str, cursor: i64| BatchWrite::Ack {
        user: user.clone(),
        device: dev(device),
        cursor,
    };
    let out = writer
        .write_batch(
            vec![
                ack(&bob, "bob-phone", c3),
                ack(&carol, "carol-phone", c2),
                ack(&bob, "bob-tab", c1),
                ack(&bob, "bob-phone", c1),
            ],
            t(3),
        )
        .unwrap();
    let marks = |i: usize| match &out[i] {
        Ok(BatchDone::Marks(m)) => m.clone(),
        other => panic!("ack {i}: {other:?}"),
    };
    // bob: up to seq 2 of ab (his highest cursor), on his last ack only
    assert!(marks(0).is_empty() && marks(2).is_empty());
    let bob_marks = marks(3);
    assert_eq!(bob_marks.len(), 1, "{bob_marks:?}");
    assert_eq!(
        (&bob_marks[0].conversation, &bob_marks[0].login),
        (&ab, &bob)
    );
    assert_eq!(bob_marks[0].delivered, Seq(2));
    let carol_marks = marks(1);
    assert_eq!(carol_marks.len(), 1, "{carol_marks:?}");
    assert_eq!(
        (&carol_marks[0].conversation, carol_marks[0].delivered),
        (&ac, Seq(1))
    );
    // the phone keeps c3 although its later ack said c1; the tab has c1
    let from_phone = s
        .sync(&bob, &dev("bob-phone"), None, 100, t(4))
        .await
        .unwrap();
    assert!(from_phone.messages.is_empty(), "{from_phone:?}");
    let from_tab = s
        .sync(&bob, &dev("bob-tab"), None, 100, t(4))
        .await
        .unwrap();
    let seen: Vec<i64> = from_tab.messages.iter().map(|(c, _)| *c).collect();
    assert_eq!(seen, vec![c3]);
    let members = s.members(&bob, &ab).await.unwrap();
    let bobs = members.iter().find(|m| m.login == bob).unwrap();
    assert_eq!(bobs.delivered, Seq(2));
}
