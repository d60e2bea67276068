//! Who a WebSocket session runs as: the [`Accounts`] seam.
//!
//! The directory crate (argon2 accounts in SQLite/PostgreSQL) is being
//! written in parallel; until it is wired in, [`GuestAccounts`] accepts any
//! valid login name and marks the session as an unauthenticated guest. The
//! session code only sees the trait, so swapping in the directory changes
//! one line in `lib.rs`.

use std::future::Future;
use std::pin::Pin;

/// The identity a session runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The login name.
    pub login: String,
    /// True when no account backs the login.
    pub guest: bool,
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Unknown login or wrong password.
    #[error("invalid login or password")]
    InvalidCredentials,
    /// The account store failed.
    #[error("account store unavailable")]
    Unavailable,
}

/// A boxed future, so the trait stays object safe (`Arc<dyn Accounts>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Authenticates client sessions.
pub trait Accounts: Send + Sync + 'static {
    /// Checks a login (and password, when given) and returns the session identity.
    fn login<'a>(
        &'a self,
        login: &'a str,
        password: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Identity, AuthError>>;
}

/// Placeholder: every login is accepted as a guest, passwords are ignored.
#[derive(Debug, Default, Clone, Copy)]
pub struct GuestAccounts;

impl Accounts for GuestAccounts {
    fn login<'a>(
        &'a self,
        login: &'a str,
        _password: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            Ok(Identity {
                login: login.to_owned(),
                guest: true,
            })
        })
    }
}
