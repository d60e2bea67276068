//! Shared test helpers: a directory in a fresh temp file with fast hashing,
//! and a hand-driven clock.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use directory::{Directory, DirectoryOptions, DisplayName, HashCost, LoginName};

/// A directory on a temp file; keep the `TempDir` alive while using it.
pub async fn open_temp() -> (Directory, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_at(&dir).await;
    (db, dir)
}

/// Opens (or reopens) the database inside `dir` with test hashing.
pub async fn open_at(dir: &tempfile::TempDir) -> Directory {
    let url = format!("sqlite://{}", dir.path().join("dir.db").display());
    let opts = DirectoryOptions {
        hash_cost: HashCost::Test,
        ..DirectoryOptions::default()
    };
    Directory::open_with(&url, opts)
        .await
        .expect("open directory")
}

/// A fixed start time; tests add durations to it.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Parses a login that the test knows is valid.
pub fn login(s: &str) -> LoginName {
    LoginName::parse(s).expect("valid login")
}

/// Parses a display name that the test knows is valid.
pub fn display(s: &str) -> DisplayName {
    DisplayName::parse(s).expect("valid display name")
}
