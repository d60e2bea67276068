//! `DirectoryError`, the one error type of this crate, and the helper that
//! turns SQL constraint violations into domain errors at the call site.

use std::time::Duration;

use crate::names::NameError;

/// Result with [`DirectoryError`] as the default error.
pub type Result<T, E = DirectoryError> = std::result::Result<T, E>;

/// Everything the directory can refuse or fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The login (or sub-name) is already taken in its namespace.
    #[error("name is already taken")]
    NameTaken,
    /// A name broke a validation rule.
    #[error("invalid name: {0}")]
    InvalidName(#[from] NameError),
    /// The password does not meet the policy (at least 8 characters).
    #[error("password too weak: at least {min} characters required")]
    WeakPassword {
        /// Minimum length in characters.
        min: usize,
    },
    /// Unknown login, wrong password, or unknown token or API key.
    #[error("bad credentials")]
    BadCredentials,
    /// The session token was valid but has expired.
    #[error("session expired")]
    TokenExpired,
    /// Too many failed logins for this login or client address.
    #[error("too many failed attempts, retry after {retry_after:?}")]
    RateLimited {
        /// How long the caller has to wait.
        retry_after: Duration,
    },
    /// The requested row does not exist.
    #[error("not found")]
    NotFound,
    /// A field value is out of range (port 0, empty host, ...).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Password hashing failed or a stored hash is unreadable.
    #[error("password hash error: {0}")]
    Hash(String),
    /// The hashing task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Applying embedded migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database failed.
    #[error("storage error: {0}")]
    Storage(#[from] sqlx::Error),
}

/// Maps unique-constraint violations to [`DirectoryError::NameTaken`], the
/// way realworld-axum-sqlx maps `on_constraint`.
pub(crate) trait ResultExt<T> {
    /// Turns a unique violation into `NameTaken`, anything else into `Storage`.
    fn name_taken_on_unique(self) -> Result<T>;
}

impl<T> ResultExt<T> for std::result::Result<T, sqlx::Error> {
    fn name_taken_on_unique(self) -> Result<T> {
        self.map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => DirectoryError::NameTaken,
            _ => DirectoryError::Storage(e),
        })
    }
}
