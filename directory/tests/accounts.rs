//! Registration, login, sessions, rate limits and API keys against a real
//! SQLite file, with time driven by hand.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{display, login, open_at, open_temp, t0};
use directory::DirectoryError;

/// A registered user logs in and the token authenticates them.
#[tokio::test]
async fn register_login_authenticate() {
    let (dir, _tmp) = open_temp().await;
    let id = dir
        .register(
            &login("alice"),
            &display("Alice Ångström"),
            "hunter2hunter2",
            t0(),
        )
        .await
        .expect("register");
    let s = dir
        .login(&login("alice"), "hunter2hunter2", None, t0())
        .await
        .expect("login");
    assert_eq!(s.user, id);
    assert_eq!(s.token.expose().len(), 64);
    let user = dir
        .authenticate(s.token.expose(), t0())
        .await
        .expect("auth");
    assert_eq!(user.id, id);
    assert_eq!(user.login.as_str(), "alice");
    assert_eq!(user.display_name.as_str(), "Alice Ångström");
    dir.logout(s.token.expose()).await.expect("logout");
    assert!(matches!(
        dir.authenticate(s.token.expose(), t0()).await,
        Err(DirectoryError::BadCredentials)
    ));
}

/// Wrong passwords and unknown logins are both `BadCredentials`.
#[tokio::test]
async fn wrong_password_and_unknown_login() {
    let (dir, _tmp) = open_temp().await;
    dir.register(&login("bob"), &display("Bob"), "longenough", t0())
        .await
        .expect("register");
    assert!(matches!(
        dir.login(&login("bob"), "longenougH", None, t0()).await,
        Err(DirectoryError::BadCredentials)
    ));
    assert!(matches!(
        dir.login(&login("nobody"), "longenough", None, t0()).await,
        Err(DirectoryError::BadCredentials)
    ));
    assert!(matches!(
        dir.authenticate("deadbeef", t0()).await,
        Err(DirectoryError::BadCredentials)
    ));
}

/// Passwords under 8 characters are refused before hashing.
#[tokio::test]
async fn weak_password_refused() {
    let (dir, _tmp) = open_temp().await;
    let r = dir
        .register(&login("carol"), &display("Carol"), "1234567", t0())
        .await;
    assert!(matches!(r, Err(DirectoryError::WeakPassword { min: 8 })));
    // the login stays free
    dir.register(&login("carol"), &display("Carol"), "12345678", t0())
        .await
        .expect("8 characters is enough");
}

/// One namespace: a user cannot take a tenant's name and vice versa.
#[tokio::test]
async fn duplicate_name_is_taken() {
    let (dir, _tmp) = open_temp().await;
    dir.register(&login("dave"), &display("Dave"), "password1", t0())
        .await
        .expect("register");
    let r = dir
        .register(&login("dave"), &display("Dave 2"), "password1", t0())
        .await;
    assert!(matches!(r, Err(DirectoryError::NameTaken)), "{r:?}");
    let r = dir
        .create_tenant(&login("dave"), &display("Dave Inc"), t0())
        .await;
    assert!(matches!(r, Err(DirectoryError::NameTaken)), "{r:?}");
    dir.create_tenant(&login("acme-bank"), &display("Acme Bank"), t0())
        .await
        .expect("tenant");
    let r = dir
        .register(&login("acme-bank"), &display("Mallory"), "password1", t0())
        .await;
    assert!(matches!(r, Err(DirectoryError::NameTaken)), "{r:?}");
}

/// Tokens stop working at expiry and answer `TokenExpired`.
#[tokio::test]
async fn token_expires() {
    let (dir, _tmp) = open_temp().await;
    dir.register(&login("erin"), &display("Erin"), "password1", t0())
        .await
        .expect("register");
    let s = dir
        .login(&login("erin"), "password1", None, t0())
        .await
        .expect("login");
    let ttl = s.expires_at.duration_since(t0()).expect("future");
    assert_eq!(ttl, Duration::from_secs(30 * 24 * 3600));
    let just_before = s.expires_at - Duration::from_millis(1);
    assert!(
        dir.authenticate(s.token.expose(), just_before)
            .await
            .is_ok()
    );
    assert!(matches!(
        dir.authenticate(s.token.expose(), s.expires_at).await,
        Err(DirectoryError::TokenExpired)
    ));
    // expired rows are deleted, so the token is now simply unknown
    assert!(matches!(
        dir.authenticate(s.token.expose(), t0()).await,
        Err(DirectoryError::BadCredentials)
    ));
}

/// Five failures lock the login for 15 minutes, even for the right
/// password; the lock ends on time.
#[tokio::test]
async fn rate_limit_per_login() {
    let (dir, _tmp) = open_temp().await;
    dir.register(&login("frank"), &display("Frank"), "password1", t0())
        .await
        .expect("register");
    for i in 0..5 {
        let now = t0() + Duration::from_secs(i);
        let r = dir.login(&login("frank"), "wrong-pass", None, now).await;
        assert!(
            matches!(r, Err(DirectoryError::BadCredentials)),
            "try {i}: {r:?}"
        );
    }
    let now = t0() + Duration::from_secs(10);
    match dir.login(&login("frank"), "password1", None, now).await {
        Err(DirectoryError::RateLimited { retry_after }) => {
            assert_eq!(retry_after, Duration::from_secs(900 - 6));
        }
        r => panic!("expected RateLimited, got {r:?}"),
    }
    let later = t0() + Duration::from_secs(4 + 900);
    dir.login(&login("frank"), "password1", None, later)
        .await
        .expect("lock over");
}

/// Failures from one address across many logins lock that address only.
#[tokio::test]
async fn rate_limit_per_ip() {
    let (dir, _tmp) = open_temp().await;
    dir.register(&login("grace"), &display("Grace"), "password1", t0())
        .await
        .expect("register");
    let attacker: IpAddr = "198.51.100.9".parse().expect("ip");
    let honest: IpAddr = "192.0.2.1".parse().expect("ip");
    for i in 0..5 {
        let victim = login(&format!("user{i}"));
        let r = dir.login(&victim, "whatever1", Some(attacker), t0()).await;
        assert!(matches!(r, Err(DirectoryError::BadCredentials)));
    }
    let r = dir
        .login(&login("grace"), "password1", Some(attacker), t0())
        .await;
    assert!(
        matches!(r, Err(DirectoryError::RateLimited { .. })),
        "{r:?}"
    );
    dir.login(&login("grace"), "password1", Some(honest), t0())
        .await
        .expect("other address unaffected");
}

/// API keys map back to their tenant until revoked.
#[tokio::test]
async fn api_keys() {
    let (dir, _tmp) = open_temp().await;
    let t = dir
        .create_tenant(&login("acme-bank"), &display("Acme Bank"), t0())
        .await
        .expect("tenant");
    let key = dir.create_api_key(t, t0()).await.expect("key");
    assert!(key.secret.starts_with("nck_"));
    assert!(!format!("{key:?}").contains(&key.secret));
    assert_eq!(dir.check_api_key(&key.secret).await.expect("valid"), t);
    assert!(matches!(
        dir.check_api_key("nck_00").await,
        Err(DirectoryError::BadCredentials)
    ));
    dir.revoke_api_key(&key.secret, t0()).await.expect("revoke");
    assert!(matches!(
        dir.check_api_key(&key.secret).await,
        Err(DirectoryError::BadCredentials)
    ));
    assert!(matches!(
        dir.create_api_key(directory::TenantId(999), t0()).await,
        Err(DirectoryError::NotFound)
    ));
}

/// Users, sessions and tenants survive closing and reopening the file.
#[tokio::test]
async fn data_survives_reopen() {
    let tmp = tempfile::tempdir().expect("tmp");
    let token = {
        let dir = open_at(&tmp).await;
        dir.register(&login("heidi"), &display("Heidi"), "password1", t0())
            .await
            .expect("register");
        dir.seed_demo(t0()).await.expect("demo");
        let s = dir
            .login(&login("heidi"), "password1", None, t0())
            .await
            .expect("login");
        dir.close().await;
        s.token
    };
    let dir = open_at(&tmp).await;
    let user = dir
        .authenticate(token.expose(), t0())
        .await
        .expect("token survives");
    assert_eq!(user.login.as_str(), "heidi");
    dir.login(&login("heidi"), "password1", None, t0())
        .await
        .expect("password survives");
    let acme = dir
        .tenant_by_name(&login("acme"))
        .await
        .expect("tenant survives");
    assert_eq!(dir.list_subnames(acme.id).await.expect("subs").len(), 2);
    let hits = dir.search("heidi", 5).await.expect("search");
    assert_eq!(hits.first().map(|h| h.name.as_str()), Some("heidi"));
}
