//! Tenants, sub-names, trunks, users, devices, presence and name resolution.

mod common;

use std::time::Duration;

use common::{display, login, open_temp, t0};
use directory::{
    DeviceKind, DirectoryError, Name, NewTrunk, Resolved, SubName, TenantId, Transport, TrunkKind,
};

fn trunk(priority: i32) -> NewTrunk {
    NewTrunk {
        kind: TrunkKind::Registration,
        host: "pbx.acme.example".into(),
        port: 5060,
        transport: Transport::Udp,
        username: Some("gw".into()),
        password: Some("s3cret".into()),
        realm: Some("acme".into()),
        allowed_peers: vec!["203.0.113.10".into(), "203.0.113.0/28".into()],
        priority,
        enabled: true,
    }
}

/// Sub-names are added, listed, refused when duplicate, and removed.
#[tokio::test]
async fn tenant_subnames() {
    let (dir, _tmp) = open_temp().await;
    let t = dir
        .create_tenant(&login("acme-bank"), &display("Acme Bank"), t0())
        .await
        .expect("tenant");
    let support = SubName::parse("support").expect("sub");
    dir.add_subname(t, &support, &display("Support"), "24/7 help")
        .await
        .expect("add");
    dir.add_subname(
        t,
        &SubName::parse("200").expect("sub"),
        &display("Desk 200"),
        "",
    )
    .await
    .expect("digits allowed in sub-names");
    let r = dir.add_subname(t, &support, &display("Again"), "").await;
    assert!(matches!(r, Err(DirectoryError::NameTaken)), "{r:?}");
    let subs = dir.list_subnames(t).await.expect("list");
    let names: Vec<&str> = subs.iter().map(|s| s.sub.as_str()).collect();
    assert_eq!(names, ["200", "support"]);
    assert_eq!(subs[1].description, "24/7 help");
    dir.remove_subname(t, &support).await.expect("remove");
    assert!(matches!(
        dir.remove_subname(t, &support).await,
        Err(DirectoryError::NotFound)
    ));
    assert!(matches!(
        dir.add_subname(TenantId(4242), &support, &display("x"), "")
            .await,
        Err(DirectoryError::NotFound)
    ));
    let all = dir.list_tenants().await.expect("tenants");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].display_name.as_str(), "Acme Bank");
}

/// Trunks round-trip every field and list by priority; bad fields are refused.
#[tokio::test]
async fn trunks() {
    let (dir, _tmp) = open_temp().await;
    let t = dir
        .create_tenant(&login("acme"), &display("Acme"), t0())
        .await
        .expect("tenant");
    let backup = dir.add_trunk(t, &trunk(10)).await.expect("trunk");
    let mut ip = trunk(1);
    ip.kind = TrunkKind::Ip;
    ip.username = None;
    ip.password = None;
    ip.transport = Transport::Tls;
    ip.port = 5061;
    let primary = dir.add_trunk(t, &ip).await.expect("trunk");
    let list = dir.list_trunks(t).await.expect("list");
    assert_eq!(
        list.iter().map(|t| t.id).collect::<Vec<_>>(),
        [primary, backup]
    );
    assert_eq!(list[0].config, ip);
    assert_eq!(list[1].config, trunk(10));
    dir.set_trunk_enabled(backup, false).await.expect("disable");
    assert!(!dir.trunk(backup).await.expect("get").config.enabled);
    dir.remove_trunk(backup).await.expect("remove");
    assert!(matches!(
        dir.trunk(backup).await,
        Err(DirectoryError::NotFound)
    ));

    let mut bad = trunk(0);
    bad.port = 0;
    assert!(matches!(
        dir.add_trunk(t, &bad).await,
        Err(DirectoryError::Invalid { field: "port", .. })
    ));
    let mut bad = trunk(0);
    bad.username = None;
    assert!(matches!(
        dir.add_trunk(t, &bad).await,
        Err(DirectoryError::Invalid {
            field: "username",
            ..
        })
    ));
    assert!(matches!(
        dir.add_trunk(TenantId(77), &trunk(0)).await,
        Err(DirectoryError::NotFound)
    ));
}

/// Devices belong to a user; touching one updates the user's last seen.
#[tokio::test]
async fn devices_and_presence() {
    let (dir, _tmp) = open_temp().await;
    let u = dir
        .register(&login("alice"), &display("Alice"), "password1", t0())
        .await
        .expect("user");
    assert_eq!(dir.last_seen(u).await.expect("seen"), None);
    let laptop = dir
        .add_device(u, "laptop", DeviceKind::Webrtc, None, t0())
        .await
        .expect("device");
    let phone = dir
        .add_device(u, "phone", DeviceKind::Push, Some("fcm:abc"), t0())
        .await
        .expect("device");
    let later = t0() + Duration::from_secs(60);
    dir.touch_device(laptop, later).await.expect("touch");
    assert_eq!(dir.last_seen(u).await.expect("seen"), Some(later));
    // an older report never moves last seen backwards
    dir.touch_user(u, t0()).await.expect("touch");
    assert_eq!(dir.user(u).await.expect("user").last_seen, Some(later));
    let devs = dir.devices(u).await.expect("devices");
    assert_eq!(devs.len(), 2);
    assert_eq!(devs[0].last_seen, Some(later));
    assert_eq!(devs[1].push_token.as_deref(), Some("fcm:abc"));
    dir.remove_device(u, phone).await.expect("remove");
    assert!(matches!(
        dir.remove_device(u, phone).await,
        Err(DirectoryError::NotFound)
    ));
    assert!(matches!(
        dir.add_device(u, "  ", DeviceKind::Sip, None, t0()).await,
        Err(DirectoryError::Invalid { .. })
    ));
    dir.delete_user(u).await.expect("delete");
    assert!(matches!(dir.user(u).await, Err(DirectoryError::NotFound)));
    // the login is free again
    dir.register(&login("alice"), &display("Alice 2"), "password1", t0())
        .await
        .expect("reuse");
}

/// Dialled names resolve to users, tenants, sub-names and system entries.
#[tokio::test]
async fn resolve_names() {
    let (dir, _tmp) = open_temp().await;
    let acme = dir.seed_demo(t0()).await.expect("demo");
    assert_eq!(dir.seed_demo(t0()).await.expect("idempotent"), acme);
    dir.register(&login("bob"), &display("Bob"), "password1", t0())
        .await
        .expect("user");
    let name = |s: &str| Name::parse(s).expect("name");
    match dir.resolve(&name("acme/support")).await.expect("resolve") {
        Resolved::Tenant {
            tenant,
            sub: Some(sub),
        } => {
            assert_eq!(tenant.id, acme);
            assert_eq!(tenant.display_name.as_str(), "Acme Corporation");
            assert_eq!(sub.sub.as_str(), "support");
        }
        r => panic!("unexpected {r:?}"),
    }
    assert!(matches!(
        dir.resolve(&name("acme")).await,
        Ok(Resolved::Tenant { sub: None, .. })
    ));
    assert!(
        matches!(dir.resolve(&name("bob")).await, Ok(Resolved::User(u)) if u.login.as_str() == "bob")
    );
    assert!(matches!(
        dir.resolve(&name("acme/nope")).await,
        Err(DirectoryError::NotFound)
    ));
    assert!(matches!(
        dir.resolve(&name("bob/x")).await,
        Err(DirectoryError::NotFound)
    ));
    assert!(matches!(
        dir.resolve(&name("nobody")).await,
        Err(DirectoryError::NotFound)
    ));
    // echo is reserved for users, but resolves as the built-in target
    assert!(Name::parse("echo").is_err());
    assert!(
        matches!(dir.resolve_text("echo").await, Ok(Resolved::System(n)) if n.as_str() == "echo")
    );
    assert!(matches!(
        dir.resolve_text("acme/sales").await,
        Ok(Resolved::Tenant { sub: Some(_), .. })
    ));
    assert!(matches!(
        dir.resolve_text("Bad Name").await,
        Err(DirectoryError::InvalidName(_))
    ));
}
