//! Accounts: registration with argon2id password hashes, login into
//! session tokens, token authentication, and tenant API keys.
//!
//! Secrets are never stored: passwords as argon2id PHC strings, session
//! tokens and API keys (256 random bits each) as SHA-256 hex digests. A fast
//! hash is enough for those because they are random, not chosen by people.
//! argon2 is slow on purpose, so it runs on `spawn_blocking`, and tests use
//! [`HashCost::Test`] to stay fast.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

use crate::error::{DirectoryError, Result, ResultExt};
use crate::names::{DisplayName, LoginName, TenantId, UserId};
use crate::ratelimit::LimitKey;
use crate::search::{self, EntryKind};
use crate::store::{Directory, from_millis, millis};

/// Shortest accepted password, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;

/// Cost of argon2id hashing for new passwords (verification always uses the
/// cost stored in the hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCost {
    /// The argon2 crate's defaults (19 MiB, 2 passes): use in production.
    Default,
    /// 8 KiB, 1 pass: insecure, only so tests finish quickly.
    Test,
}

impl HashCost {
    fn hasher(self) -> Result<Argon2<'static>> {
        let params = match self {
            HashCost::Default => Params::default(),
            HashCost::Test => {
                Params::new(8, 1, 1, None).map_err(|e| DirectoryError::Hash(e.to_string()))?
            }
        };
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// A secret bearer token; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// The token text, to hand to the client once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

/// A logged-in session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The bearer token; only its hash is stored.
    pub token: SessionToken,
    /// Whose session it is.
    pub user: UserId,
    /// When the token stops working.
    pub expires_at: SystemTime,
}

/// A tenant API key, shown once at creation.
#[derive(Clone)]
pub struct ApiKey {
    /// The owning tenant.
    pub tenant: TenantId,
    /// The key text (`nck_` + 64 hex digits); only its hash is stored.
    pub secret: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// A messenger user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Row id.
    pub id: UserId,
    /// Login name.
    pub login: LoginName,
    /// Display name.
    pub display_name: DisplayName,
    /// Registration time.
    pub created_at: SystemTime,
    /// Last time any device of the user was seen online.
    pub last_seen: Option<SystemTime>,
}

type UserRow = (i64, String, String, i64, Option<i64>);

pub(crate) fn user_from_row((id, login, display, created, seen): UserRow) -> Result<User> {
    Ok(User {
        id: UserId(id),
        login: LoginName::system(&login)?,
        display_name: DisplayName::parse(&display)?,
        created_at: from_millis(created),
        last_seen: seen.map(from_millis),
    })
}

/// 256 random bits as 64 lower-case hex digits.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

impl Directory {
    /// Creates a user with an argon2id-hashed password.
    ///
    /// # Errors
    /// `WeakPassword` below [`PASSWORD_MIN_CHARS`]; `NameTaken` if the login
    /// is used by a user, tenant or system entry.
    pub async fn register(
        &self,
        login: &LoginName,
        display: &DisplayName,
        password: &str,
        now: SystemTime,
    ) -> Result<UserId> {
        if password.chars().count() < PASSWORD_MIN_CHARS {
            return Err(DirectoryError::WeakPassword {
                min: PASSWORD_MIN_CHARS,
            });
        }
        let hash = self.hash_password(password).await?;
        let now = millis(now);
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO names (name, kind, created_at) VALUES (?, 'user', ?)")
            .bind(login.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .name_taken_on_unique()?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (name, display_name, password_hash, created_at) \
             VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(login.as_str())
        .bind(display.as_str())
        .bind(&hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .name_taken_on_unique()?;
        search::index_entry(&mut tx, login.as_str(), EntryKind::User, display.as_str()).await?;
        tx.commit().await?;
        Ok(UserId(id))
    }

    /// Checks a password and opens a session.
    ///
    /// Failures count against the login and, if given, the client address;
    /// a locked key answers `RateLimited` without checking the password.
    /// Unknown logins and wrong passwords both answer `BadCredentials`
    /// (logins are public in the directory, so no timing equalisation).
    ///
    /// Known limits: attempts running concurrently for one key are checked
    /// before any of them fails, so a burst can exceed the limit by the
    /// number in flight; and anyone can lock a login out by failing on
    /// purpose (the per-address limit slows that down, it cannot stop a
    /// distributed attacker).
    pub async fn login(
        &self,
        login: &LoginName,
        password: &str,
        client_ip: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<Session> {
        let mut keys = vec![LimitKey::Login(login.clone())];
        keys.extend(client_ip.map(LimitKey::Ip));
        {
            let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
            limiter.handle_timeout(now);
            let wait = keys
                .iter()
                .filter_map(|k| limiter.check(k, now).err())
                .max();
            if let Some(retry_after) = wait {
                return Err(DirectoryError::RateLimited { retry_after });
            }
        }
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT id, password_hash FROM users WHERE name = ?")
                .bind(login.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let ok = match &row {
            Some((_, hash)) => verify_password(hash.clone(), password.to_owned()).await?,
            None => false,
        };
        let user = {
            let mut limiter = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
            match row.filter(|_| ok) {
                Some((id, _)) => {
                    limiter.record_success(&LimitKey::Login(login.clone()));
                    Some(UserId(id))
                }
                None => {
                    for k in keys {
                        limiter.record_failure(k, now);
                    }
                    None
                }
            }
        };
        let user = user.ok_or(DirectoryError::BadCredentials)?;
        self.open_session(user, now).await
    }

    /// Issues a session for `user` without a password (after a login that
    /// happened elsewhere, e.g. an admin action).
    pub async fn open_session(&self, user: UserId, now: SystemTime) -> Result<Session> {
        let token = random_secret();
        let expires_at = now + self.opts.session_ttl;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(sha256_hex(&token))
        .bind(user.0)
        .bind(millis(now))
        .bind(millis(expires_at))
        .execute(&self.pool)
        .await?;
        Ok(Session {
            token: SessionToken(token),
            user,
            expires_at,
        })
    }

    /// The user behind a session token.
    ///
    /// # Errors
    /// `BadCredentials` for unknown tokens, `TokenExpired` after expiry
    /// (the expired row is deleted).
    pub async fn authenticate(&self, token: &str, now: SystemTime) -> Result<User> {
        let hash = sha256_hex(token);
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT user_id, expires_at FROM sessions WHERE token_hash = ?")
                .bind(&hash)
                .fetch_optional(&self.pool)
                .await?;
        let (user, expires) = row.ok_or(DirectoryError::BadCredentials)?;
        if expires <= millis(now) {
            sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
                .bind(&hash)
                .execute(&self.pool)
                .await?;
            return Err(DirectoryError::TokenExpired);
        }
        self.user(UserId(user)).await
    }

    /// Ends a session; unknown tokens are ignored.
    pub async fn logout(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(sha256_hex(token))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes sessions that expired before `now`; returns how many.
    pub async fn purge_expired_sessions(&self, now: SystemTime) -> Result<u64> {
        let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(millis(now))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Creates an API key for a tenant; the secret is returned only here.
    pub async fn create_api_key(&self, tenant: TenantId, now: SystemTime) -> Result<ApiKey> {
        let secret = format!("nck_{}", random_secret());
        let r =
            sqlx::query("INSERT INTO api_keys (tenant_id, key_hash, created_at) VALUES (?, ?, ?)")
                .bind(tenant.0)
                .bind(sha256_hex(&secret))
                .bind(millis(now))
                .execute(&self.pool)
                .await;
        match r {
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(DirectoryError::NotFound)
            }
            r => {
                r?;
                Ok(ApiKey { tenant, secret })
            }
        }
    }

    /// The tenant owning a (not revoked) API key, or `BadCredentials`.
    pub async fn check_api_key(&self, secret: &str) -> Result<TenantId> {
        let t: Option<i64> = sqlx::query_scalar(
            "SELECT tenant_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
        )
        .bind(sha256_hex(secret))
        .fetch_optional(&self.pool)
        .await?;
        t.map(TenantId).ok_or(DirectoryError::BadCredentials)
    }

    /// Revokes an API key; `NotFound` if it is unknown or already revoked.
    pub async fn revoke_api_key(&self, secret: &str, now: SystemTime) -> Result<()> {
        let r = sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE key_hash = ? AND revoked_at IS NULL",
        )
        .bind(millis(now))
        .bind(sha256_hex(secret))
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(DirectoryError::NotFound);
        }
        Ok(())
    }

    /// Hashes a password on the blocking pool.
    async fn hash_password(&self, password: &str) -> Result<String> {
        let cost = self.opts.hash_cost;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            cost.hasher()?
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| DirectoryError::Hash(e.to_string()))
        })
        .await?
    }
}

/// Verifies on the blocking pool, with the cost stored in the hash.
async fn verify_password(hash: String, password: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash).map_err(|e| DirectoryError::Hash(e.to_string()))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}
