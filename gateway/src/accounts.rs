//! Who a WebSocket session runs as: the [`Accounts`] seam.
//!
//! [`DirectoryAccounts`] is what `namecall serve` runs: argon2id accounts,
//! failed-login rate limits and name search from the `directory` crate.
//! [`GuestAccounts`] accepts any login as an unauthenticated guest and is
//! kept for unit tests of the session code. A guest (a `hello` without a
//! password) may call the built-in `echo` only; calls that would reach a
//! company's trunk need an account (the toll-fraud rule).

use std::future::Future;
use std::pin::Pin;

/// The identity a session runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The login name.
    pub login: String,
    /// True when no account backs the login.
    pub guest: bool,
    /// The account session's token (for `resume`); `None` for guests.
    pub token: Option<String>,
}

impl Identity {
    /// A guest named `login`.
    pub fn guest(login: impl Into<String>) -> Self {
        Identity {
            login: login.into(),
            guest: true,
            token: None,
        }
    }
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
    /// The login name breaks a naming rule.
    #[error("invalid login name: {0}")]
    InvalidName(String),
    /// The login name belongs to someone else.
    #[error("login name is taken")]
    NameTaken,
    /// The password is too weak.
    #[error("password too short: at least {0} characters")]
    WeakPassword(usize),
    /// Too many failed logins; try again later.
    #[error("too many failed logins; retry in {0} s")]
    RateLimited(u64),
    /// This account store cannot do that.
    #[error("not supported")]
    Unsupported,
}

/// One directory search result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hit {
    /// The name to call (`acme`, `acme/sales`, `alice`, `echo`).
    pub name: String,
    /// `user`, `company`, `sub-name` or `system`.
    pub kind: String,
    /// Display name.
    pub display_name: String,
    /// `exact`, `prefix` or `fuzzy`.
    pub matched: String,
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

    /// Creates an account and logs it in.
    fn register<'a>(
        &'a self,
        _login: &'a str,
        _password: &'a str,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async { Err(AuthError::Unsupported) })
    }

    /// Searches the directory of names.
    fn search<'a>(&'a self, _query: &'a str) -> BoxFuture<'a, Result<Vec<Hit>, AuthError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Resumes an account session from its token.
    fn resume<'a>(&'a self, _token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async { Err(AuthError::Unsupported) })
    }

    /// Ends an account session; its token stops working.
    fn logout<'a>(&'a self, _token: &'a str) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Accounts and search backed by the `directory` crate.
pub struct DirectoryAccounts {
    dir: directory::Directory,
}

impl DirectoryAccounts {
    /// Wraps an open directory.
    pub fn new(dir: directory::Directory) -> Self {
        DirectoryAccounts { dir }
    }

    /// The directory, for seeding names from the dialplans.
    pub fn directory(&self) -> &directory::Directory {
        &self.dir
    }
}

fn map_dir_error(e: directory::DirectoryError) -> AuthError {
    use directory::DirectoryError as D;
    match e {
        D::BadCredentials | D::NotFound | D::TokenExpired => AuthError::InvalidCredentials,
        D::NameTaken => AuthError::NameTaken,
        D::InvalidName(n) => AuthError::InvalidName(n.to_string()),
        D::WeakPassword { min } => AuthError::WeakPassword(min),
        D::RateLimited { retry_after } => AuthError::RateLimited(retry_after.as_secs().max(1)),
        other => {
            tracing::warn!(cause = %other, "directory error");
            AuthError::Unavailable
        }
    }
}

impl Accounts for DirectoryAccounts {
    fn login<'a>(
        &'a self,
        login: &'a str,
        password: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            let name = directory::LoginName::parse(login)
                .map_err(|e| AuthError::InvalidName(e.to_string()))?;
            match password {
                // a guest: may only reach built-in targets
                None => Ok(Identity::guest(name.to_string())),
                Some(pw) => {
                    let session = self
                        .dir
                        .login(&name, pw, None, std::time::SystemTime::now())
                        .await
                        .map_err(map_dir_error)?;
                    Ok(Identity {
                        login: name.to_string(),
                        guest: false,
                        token: Some(session.token.expose().to_owned()),
                    })
                }
            }
        })
    }

    fn register<'a>(
        &'a self,
        login: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            let name = directory::LoginName::parse(login)
                .map_err(|e| AuthError::InvalidName(e.to_string()))?;
            let display = directory::DisplayName::parse(login)
                .map_err(|e| AuthError::InvalidName(e.to_string()))?;
            let now = std::time::SystemTime::now();
            let user = self
                .dir
                .register(&name, &display, password, now)
                .await
                .map_err(map_dir_error)?;
            let session = self
                .dir
                .open_session(user, now)
                .await
                .map_err(map_dir_error)?;
            Ok(Identity {
                login: name.to_string(),
                guest: false,
                token: Some(session.token.expose().to_owned()),
            })
        })
    }

    fn search<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<Vec<Hit>, AuthError>> {
        Box::pin(async move {
            let hits = self.dir.search(query, 10).await.map_err(map_dir_error)?;
            Ok(hits
                .into_iter()
                .map(|h| Hit {
                    name: h.name,
                    kind: format!("{:?}", h.kind).to_lowercase(),
                    display_name: h.display_name,
                    matched: match h.matched {
                        directory::MatchKind::Exact => "exact".into(),
                        directory::MatchKind::Prefix => "prefix".into(),
                        _ => "fuzzy".into(),
                    },
                })
                .collect())
        })
    }

    fn resume<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Identity, AuthError>> {
        Box::pin(async move {
            let user = self
                .dir
                .authenticate(token, std::time::SystemTime::now())
                .await
                .map_err(map_dir_error)?;
            Ok(Identity {
                login: user.login.to_string(),
                guest: false,
                token: Some(token.to_owned()),
            })
        })
    }

    fn logout<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<(), AuthError>> {
        Box::pin(async move { self.dir.logout(token).await.map_err(map_dir_error) })
    }
}

impl DirectoryAccounts {
    /// Drops expired session rows (run periodically).
    pub async fn purge_sessions(&self) -> usize {
        self.dir
            .purge_expired_sessions(std::time::SystemTime::now())
            .await
            .map(|n| n as usize)
            .unwrap_or(0)
    }
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
        Box::pin(async move { Ok(Identity::guest(login)) })
    }
}
