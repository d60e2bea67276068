//! Conversations between a user and a company (`co:<login>+<name>`): only
//! the user is a member, the company's messages come from its tenant login
//! without making it a member, delivery is a conversation watermark, and
//! the service admits and relays sends through a `CompanyRelay`.

use std::sync::{Arc, Mutex};

use bridges::delivery::DeliveryConfig;
use bridges::frames::ServerFrame;
use bridges::store::{ReceiptState, Stored};
use bridges::{
    Body, ChatError, ChatService, ChatStore, ClientId, CompanyName, CompanyRelay, ConversationId,
    DeviceId, Login, Seq, Timestamp,
};

fn l(s: &str) -> Login {
    Login::parse(s).unwrap()
}
fn cid(s: &str) -> ClientId {
    ClientId::parse(s).unwrap()
}
fn co(s: &str) -> CompanyName {
    CompanyName::parse(s).unwrap()
}
fn text(s: &str) -> Body {
    Body::Text { text: s.into() }
}
fn dev(s: &str) -> DeviceId {
    DeviceId(s.into())
}

async fn open(dir: &tempfile::TempDir) -> ChatStore {
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    ChatStore::open(&url).await.unwrap()
}

/// The user writes, the company answers, the user's devices sync both; the
/// company's tenant login, even when it is also someone's account, and any
/// other user can neither read nor write the conversation.
#[tokio::test]
async fn only_the_user_sees_their_company_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let (alice, bob, acme) = (l("alice"), l("bob"), l("acme"));
    let sales = co("acme/sales");
    let id = ConversationId::company(&alice, &sales);

    let st = s
        .send(
            &alice,
            &id,
            &cid("a1"),
            text("is my order ready?"),
            Timestamp(1),
        )
        .await
        .unwrap();
    assert_eq!(
        (st.seq(), st.audience.clone()),
        (Seq(1), vec![alice.clone()])
    );

    let sip = ClientId::for_sip("call-1@pbx", 1);
    let reply = s
        .receive_from_company(&alice, &sales, &sip, text("it ships today"), Timestamp(2))
        .await
        .unwrap();
    assert_eq!(reply.message.sender, acme);
    assert_eq!(reply.message.conversation, id);
    assert_eq!((reply.seq(), reply.duplicate), (Seq(2), false));
    // the same MESSAGE again (a retransmission in a new transaction) is stored once
    let again = s
        .receive_from_company(&alice, &sales, &sip, text("it ships today"), Timestamp(3))
        .await
        .unwrap();
    assert_eq!((again.seq(), again.duplicate), (Seq(2), true));

    let sync = s
        .sync(&alice, &dev("a-1"), None, 100, Timestamp(4))
        .await
        .unwrap();
    let senders: Vec<&str> = sync
        .messages
        .iter()
        .map(|(_, m)| m.sender.as_str())
        .collect();
    assert_eq!(senders, ["alice", "acme"]);

    for intruder in [&bob, &acme] {
        for res in [
            s.fetch(intruder, &dev("x"), &id, Seq(0), 100).await.err(),
            s.send(intruder, &id, &cid("x1"), text("hi"), Timestamp(5))
                .await
                .err(),
            s.members(intruder, &id).await.err(),
            s.receipts(intruder, &id, Seq(1)).await.err(),
            s.mark_read(intruder, &id, Seq(2)).await.err(),
        ] {
            assert!(
                matches!(res, Some(ChatError::Forbidden)),
                "{intruder}: {res:?}"
            );
        }
        let b = s
            .sync(intruder, &dev("x"), Some(0), 100, Timestamp(5))
            .await
            .unwrap();
        assert!(b.messages.is_empty(), "{intruder} synced {:?}", b.messages);
        assert!(s.conversations(intruder).await.unwrap().is_empty());
        assert!(!s.share_conversation(intruder, &alice).await.unwrap());
    }
    // the company's messages never wait for an expiry that would tell its login
    assert!(s.undelivered().await.unwrap().is_empty());
    let list = s.conversations(&alice).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].id.clone(), list[0].unread), (id, 1));
}

/// Delivery to the company is a watermark on the conversation that only
/// moves up; receipts show the company as the recipient of the user's posts.
#[tokio::test]
async fn company_delivery_is_a_monotonic_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let alice = l("alice");
    let id = ConversationId::company(&alice, &co("acme/sales"));
    for (i, c) in ["a1", "a2", "a3"].iter().enumerate() {
        s.send(&alice, &id, &cid(c), text("hi"), Timestamp(i as i64))
            .await
            .unwrap();
    }
    assert_eq!(
        s.receipts(&alice, &id, Seq(2)).await.unwrap(),
        vec![(l("acme"), ReceiptState::Sent)]
    );
    assert_eq!(s.peer_delivered(&id, Seq(2)).await.unwrap(), Some(Seq(2)));
    assert_eq!(s.peer_delivered(&id, Seq(1)).await.unwrap(), None);
    assert_eq!(s.peer_delivered(&id, Seq(2)).await.unwrap(), None);
    assert_eq!(
        s.peer_delivered(&id, Seq(9)).await.unwrap(),
        None,
        "beyond the last seq"
    );
    assert_eq!(
        s.receipts(&alice, &id, Seq(2)).await.unwrap(),
        vec![(l("acme"), ReceiptState::Delivered)]
    );
    assert_eq!(
        s.receipts(&alice, &id, Seq(3)).await.unwrap(),
        vec![(l("acme"), ReceiptState::Sent)]
    );
    let dm = ConversationId::direct(&alice, &l("bob"));
    assert!(matches!(
        s.peer_delivered(&dm, Seq(1)).await,
        Err(ChatError::NotFound)
    ));
    // no edits or deletes of what went out as SIP, no leaving
    assert!(matches!(
        s.edit(&alice, &id, &cid("e1"), Seq(1), text("x"), Timestamp(9))
            .await,
        Err(ChatError::Conflict(_))
    ));
    assert!(matches!(
        s.delete(&alice, &id, &cid("d1"), Seq(1), Timestamp(9))
            .await,
        Err(ChatError::Conflict(_))
    ));
    assert!(matches!(
        s.leave(&alice, &id, &cid("l1"), Timestamp(9)).await,
        Err(ChatError::Conflict(_))
    ));
}

#[derive(Debug, Default)]
struct FakeRelay {
    relayed: Mutex<Vec<(ConversationId, Seq)>>,
}

impl CompanyRelay for FakeRelay {
    fn admit(&self, _user: &Login, company: &CompanyName) -> bridges::Result<()> {
        if company.sub() == "sales" {
            Ok(())
        } else {
            Err(ChatError::Company {
                code: "company_no_chat",
                why: format!("{company} does not take chat messages"),
            })
        }
    }

    fn relay(&self, stored: &Stored) {
        self.relayed
            .lock()
            .unwrap()
            .push((stored.message.conversation.clone(), stored.seq()));
    }
}

/// The service admits before storing, relays each new post once (not its
/// retry), and turns outcomes into frames for every device of the user.
#[tokio::test]
async fn service_admits_relays_and_reports_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let svc = ChatService::new(
        ChatStore::open(&url).await.unwrap(),
        DeliveryConfig::default(),
    );
    let now = Timestamp(10);
    for (d, who) in [("a1", "alice"), ("a2", "alice"), ("b1", "bob")] {
        svc.connect(now, dev(d), l(who));
        svc.handle_text(now, &dev(d), r#"{"type":"sync"}"#).await;
    }
    let send = |conv: &str, c: &str| {
        format!(
            r#"{{"type":"send","conversation":"{conv}","client_id":"{c}","body":{{"kind":"text","text":"hi"}}}}"#
        )
    };
    // without a relay, company sends are refused
    let out = svc
        .handle_text(now, &dev("a1"), &send("co:alice+acme/sales", "c0"))
        .await;
    assert!(
        matches!(&out[..], [(_, ServerFrame::Error { code, .. })] if code == "company_unavailable"),
        "{out:?}"
    );
    let relay = Arc::new(FakeRelay::default());
    svc.set_company_relay(relay.clone());

    let out = svc
        .handle_text(now, &dev("a1"), &send("co:alice+acme/support", "c1"))
        .await;
    assert!(
        matches!(&out[..], [(_, ServerFrame::Error { code, client_id: Some(c), .. })] if code == "company_no_chat" && c == "c1"),
        "{out:?}"
    );
    let out = svc
        .handle_text(now, &dev("b1"), &send("co:alice+acme/sales", "c2"))
        .await;
    assert!(
        matches!(&out[..], [(_, ServerFrame::Error { code, .. })] if code == "forbidden"),
        "{out:?}"
    );
    assert!(
        svc.store()
            .conversations(&l("alice"))
            .await
            .unwrap()
            .is_empty()
    );

    let id = ConversationId::parse("co:alice+acme/sales").unwrap();
    let out = svc
        .handle_text(now, &dev("a1"), &send("co:alice+acme/sales", "c3"))
        .await;
    assert!(matches!(&out[0], (d, ServerFrame::Ack { seq: Seq(1), .. }) if d.0 == "a1"));
    svc.handle_text(now, &dev("a1"), &send("co:alice+acme/sales", "c3"))
        .await;
    assert_eq!(*relay.relayed.lock().unwrap(), vec![(id.clone(), Seq(1))]);

    let out = svc.peer_delivered(&id, Seq(1)).await.unwrap();
    let mut devices: Vec<&str> = out.iter().map(|(d, _)| d.0.as_str()).collect();
    devices.sort();
    assert_eq!(devices, ["a1", "a2"]);
    assert!(out.iter().all(|(_, f)| matches!(f,
        ServerFrame::Receipt { member, delivered: Seq(1), .. } if member.as_str() == "acme")));
    assert!(svc.peer_delivered(&id, Seq(1)).await.unwrap().is_empty());

    let err = ChatError::Company {
        code: "company_rejected",
        why: "the company's PBX answered 404".into(),
    };
    let out = svc.peer_failed(&id, "c3", &err);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(_, f)| matches!(f,
        ServerFrame::Error { code, client_id: Some(c), .. } if code == "company_rejected" && c == "c3")));

    // a reply from the company reaches both of alice's devices, not bob
    let out = svc
        .receive_from_company(
            now,
            &l("alice"),
            &co("acme/sales"),
            &ClientId::for_sip("x@y", 1),
            text("hello"),
        )
        .await
        .unwrap();
    let mut devices: Vec<&str> = out.iter().map(|(d, _)| d.0.as_str()).collect();
    devices.sort();
    assert_eq!(devices, ["a1", "a2"]);
}
