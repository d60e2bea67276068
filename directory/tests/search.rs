//! Search ranking: exact login, then prefixes, then typo-tolerant matches.

mod common;

use common::{display, login, open_temp, t0};
use directory::{Directory, EntryKind, MatchKind, SubName};

async fn seeded() -> (Directory, tempfile::TempDir) {
    let (dir, tmp) = open_temp().await;
    let bank = dir
        .create_tenant(&login("acme-bank"), &display("Acme Bank"), t0())
        .await
        .expect("tenant");
    dir.add_subname(
        bank,
        &SubName::parse("support").expect("sub"),
        &display("Acme Bank Support"),
        "",
    )
    .await
    .expect("sub");
    dir.seed_demo(t0()).await.expect("demo");
    for (l, d) in [
        ("acmeville", "Acmeville Bakery"),
        ("zurich-re", "Zürich Rückversicherung"),
        ("bankhaus", "Bankhaus Müller"),
        ("corp-one", "Consolidated Corporation"),
    ] {
        dir.create_tenant(&login(l), &display(d), t0())
            .await
            .expect("tenant");
    }
    dir.register(&login("alice"), &display("Alice Ackme"), "password1", t0())
        .await
        .expect("user");
    (dir, tmp)
}

fn names(hits: &[directory::SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.name.as_str()).collect()
}

/// The exact login ranks first, before names it is a prefix of.
#[tokio::test]
async fn exact_then_prefix() {
    let (dir, _tmp) = seeded().await;
    let hits = dir.search("acme", 10).await.expect("search");
    assert_eq!(hits[0].name, "acme");
    assert_eq!(hits[0].matched, MatchKind::Exact);
    assert_eq!(hits[0].kind, EntryKind::Tenant);
    let n = names(&hits);
    for want in [
        "acme-bank",
        "acme/sales",
        "acme/support",
        "acme-bank/support",
        "acmeville",
    ] {
        assert!(n.contains(&want), "{want} missing from {n:?}");
    }
    assert!(
        hits.windows(2).all(|w| w[0].matched <= w[1].matched),
        "{hits:?}"
    );
    let prefix: Vec<&str> = hits
        .iter()
        .filter(|h| h.matched == MatchKind::Prefix)
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(prefix.len(), 5, "{hits:?}");
    // whole-word matches before mere prefixes: acmeville is the last prefix
    assert_eq!(prefix.last(), Some(&"acmeville"));
    // the limit was not filled, so typo matches follow: "Ackme" is one edit away
    assert_eq!(n.last(), Some(&"alice"));
    assert_eq!(
        hits.last().map(|h| h.matched),
        Some(MatchKind::Fuzzy { distance: 1 })
    );
}

/// Sub-name paths match exactly; display words match as prefixes.
#[tokio::test]
async fn paths_and_display_words() {
    let (dir, _tmp) = seeded().await;
    let hits = dir.search("acme-bank/support", 5).await.expect("search");
    assert_eq!(hits[0].name, "acme-bank/support");
    assert_eq!(hits[0].matched, MatchKind::Exact);
    assert_eq!(hits[0].kind, EntryKind::SubName);

    let hits = dir.search("Bank Supp", 5).await.expect("search");
    assert_eq!(names(&hits), ["acme-bank/support"]);

    let hits = dir.search("zurich", 5).await.expect("search");
    assert_eq!(names(&hits), ["zurich-re"]);
    let hits = dir.search("RÜCKVERS", 5).await.expect("diacritics folded");
    assert_eq!(names(&hits), ["zurich-re"]);
}

/// Typos still find the name, ranked after real prefix matches.
#[tokio::test]
async fn fuzzy_matches() {
    let (dir, _tmp) = seeded().await;
    let hits = dir.search("acme bnk", 5).await.expect("search");
    assert_eq!(
        hits.first().map(|h| h.name.as_str()),
        Some("acme-bank"),
        "{hits:?}"
    );
    assert_eq!(hits[0].matched, MatchKind::Fuzzy { distance: 1 });

    let hits = dir.search("akme", 10).await.expect("search");
    let n = names(&hits);
    assert!(n.contains(&"acme"), "{n:?}");
    // "Alice Ackme": ackme is also one edit from akme
    assert!(n.contains(&"alice"), "{n:?}");
    assert!(
        hits.iter()
            .all(|h| matches!(h.matched, MatchKind::Fuzzy { distance: 1 }))
    );

    let hits = dir
        .search("consolidatde corportaion", 5)
        .await
        .expect("search");
    assert_eq!(names(&hits), ["corp-one"]);
    assert!(matches!(hits[0].matched, MatchKind::Fuzzy { .. }));
}

/// Queries that match nothing, or nothing at all, give no hits.
#[tokio::test]
async fn no_match_and_empty() {
    let (dir, _tmp) = seeded().await;
    assert!(dir.search("xyzzyq", 5).await.expect("search").is_empty());
    assert!(dir.search("   ", 5).await.expect("search").is_empty());
    assert!(dir.search("!!!", 5).await.expect("search").is_empty());
    assert!(dir.search("acme", 0).await.expect("search").is_empty());
    // hostile input: long, odd scripts, control characters, SQL-ish text
    let long = "ä".repeat(10_000) + " acme";
    assert!(dir.search(&long, 5).await.is_ok());
    for q in [
        "'; DROP TABLE names; --",
        "%_%",
        "\u{0}\u{7}",
        "\u{10FFFF}",
        "acme\u{0}",
    ] {
        assert!(dir.search(q, 5).await.is_ok(), "{q:?}");
    }
    assert!(dir.tenant_by_name(&login("acme")).await.is_ok());
    // every query word must match: "acme" matches, "zurich" does not
    assert!(
        dir.search("acme zurich", 5)
            .await
            .expect("search")
            .is_empty()
    );
}

/// The built-in echo target is searchable; `limit` is honoured.
#[tokio::test]
async fn echo_and_limit() {
    let (dir, _tmp) = seeded().await;
    let hits = dir.search("echo", 5).await.expect("search");
    assert_eq!(hits[0].name, "echo");
    assert_eq!(hits[0].kind, EntryKind::System);
    assert_eq!(dir.search("acme", 2).await.expect("search").len(), 2);
}

/// Removed sub-names and renamed users leave the index.
#[tokio::test]
async fn index_follows_changes() {
    let (dir, _tmp) = seeded().await;
    let acme = dir.tenant_by_name(&login("acme")).await.expect("acme");
    dir.remove_subname(acme.id, &SubName::parse("sales").expect("sub"))
        .await
        .expect("remove");
    let n: Vec<String> = dir
        .search("sales", 5)
        .await
        .expect("s")
        .into_iter()
        .map(|h| h.name)
        .collect();
    assert!(n.is_empty(), "{n:?}");
    let alice = dir.user_by_login(&login("alice")).await.expect("alice");
    dir.set_display_name(alice.id, &display("Alice Wonder"))
        .await
        .expect("rename");
    let hits = dir.search("wonder", 5).await.expect("search");
    assert_eq!(names(&hits), ["alice"]);
    assert!(
        dir.search("ackme", 5)
            .await
            .expect("search")
            .iter()
            .all(|h| h.name != "alice")
    );
}

/// Bulk-loaded tenants are searchable like created ones, and a duplicate
/// in a bulk load refuses the whole load.
#[tokio::test]
async fn bulk_load_is_searchable() {
    let (dir, _tmp) = open_temp().await;
    let items = vec![
        (login("zorvex-bank"), display("Zorvex Bank")),
        (login("zorvex-bank-zurich"), display("Zorvex Bank Zürich")),
        (login("kalimo-dental"), display("Kalimo Dental Group")),
    ];
    dir.bulk_create_tenants(&items, t0()).await.expect("bulk");
    let hits = dir.search("zorvex-bank", 5).await.expect("search");
    assert_eq!(names(&hits), ["zorvex-bank", "zorvex-bank-zurich"]);
    assert_eq!(hits[0].matched, MatchKind::Exact);
    // the solid form finds by prefix
    let hits = dir.search("zorvexbank", 5).await.expect("search");
    assert_eq!(names(&hits), ["zorvex-bank", "zorvex-bank-zurich"]);
    // typos in both words
    let hits = dir.search("zorvx bnak", 5).await.expect("search");
    assert_eq!(names(&hits), ["zorvex-bank", "zorvex-bank-zurich"]);
    assert!(matches!(hits[0].matched, MatchKind::Fuzzy { distance: 2 }));
    let hits = dir.search("kalimo grop", 5).await.expect("search");
    assert_eq!(names(&hits), ["kalimo-dental"]);
    // tenant rows exist too
    assert_eq!(dir.list_tenants().await.expect("list").len(), 3);
    let again = vec![
        (login("fresh-one"), display("Fresh")),
        (login("kalimo-dental"), display("Dup")),
    ];
    let r = dir.bulk_create_tenants(&again, t0()).await;
    assert!(
        matches!(r, Err(directory::DirectoryError::NameTaken)),
        "{r:?}"
    );
    assert!(dir.search("fresh", 5).await.expect("search").is_empty());
}
