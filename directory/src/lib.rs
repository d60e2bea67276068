//! The namecall directory: who and what can be called by name.
//!
//! It owns the one namespace of logins (users and companies share it), the
//! tenants (companies) with their sub-names (`acme-bank/support`), users and
//! their devices, the SIP trunks of each tenant, credentials (argon2id
//! passwords, session tokens, API keys, failed-login limits) and the
//! typo-tolerant name search. Storage is sqlx on SQLite (one file in WAL
//! mode by default); the SQL stays close to portable so a PostgreSQL backend
//! can follow.
//!
//! # Run loop
//!
//! ```no_run
//! # async fn demo() -> directory::Result<()> {
//! use std::time::SystemTime;
//! use directory::{Directory, DisplayName, LoginName};
//!
//! let dir = Directory::open("sqlite://namecall.db").await?;
//! let alice = LoginName::parse("alice")?;
//! dir.register(&alice, &DisplayName::parse("Alice")?, "correct horse", SystemTime::now()).await?;
//! let session = dir.login(&alice, "correct horse", None, SystemTime::now()).await?;
//! let user = dir.authenticate(session.token.expose(), SystemTime::now()).await?;
//! let hits = dir.search("acme bnk", 10).await?;
//! # let _ = (user, hits); Ok(()) }
//! ```
//!
//! # Time
//!
//! No function here reads the clock: every call that depends on time (token
//! expiry, last seen, the failed-login limiter) takes `now: SystemTime`, so
//! tests drive time by hand. Stored times are unix milliseconds.
//!
//! # Errors vs panics
//!
//! Every failure is a [`DirectoryError`]; bad input (names, passwords,
//! tokens, search text) never panics. Unique violations become
//! [`DirectoryError::NameTaken`] at the call site.
//!
//! # Out of scope
//!
//! HTTP, SIP and the dialplan: the gateway turns these types and errors into
//! answers. The failed-login limiter lives in process memory (one node);
//! scale-out would move it to a shared store.
//!
//! # Layout
//!
//! - `names`: validated name and id types
//! - `store`: opening the database, migrations, time helpers
//! - `accounts`: register, login, sessions, API keys, password hashing
//! - `ratelimit`: the sans-IO failed-login limiter
//! - `tenants`: tenants, sub-names, trunks, users, devices, presence
//! - `search`: the search index and query ranking
//! - `demo`: demo data for `namecall serve --demo`

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod accounts;
mod demo;
mod error;
mod names;
mod ratelimit;
mod search;
mod store;
mod tenants;

pub use accounts::{ApiKey, HashCost, PASSWORD_MIN_CHARS, Session, SessionToken, User};
pub use error::{DirectoryError, Result};
pub use names::{
    DISPLAY_MAX_CHARS, DeviceId, DisplayName, LOGIN_MIN_LEN, LoginName, NAME_MAX_LEN, Name,
    NameError, RESERVED_LOGINS, SubName, SubNameId, TenantId, TrunkId, UserId,
};
pub use ratelimit::{LimitKey, LimitPolicy, LoginLimiter};
pub use search::{EntryKind, MatchKind, SearchHit, normalize_words};
pub use store::{Directory, DirectoryOptions};
pub use tenants::{
    Device, DeviceKind, NewTrunk, Resolved, SubNameEntry, Tenant, Transport, Trunk, TrunkKind,
};
