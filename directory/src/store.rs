//! Opening the database: connection options (WAL, foreign keys), embedded
//! migrations, the `Directory` handle itself, and unix-millisecond helpers.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::accounts::HashCost;
use crate::error::Result;
use crate::ratelimit::{LimitPolicy, LoginLimiter};

/// Tuning knobs for [`Directory::open_with`].
#[derive(Debug, Clone)]
pub struct DirectoryOptions {
    /// Cost of argon2id password hashing.
    pub hash_cost: HashCost,
    /// Lifetime of a session token.
    pub session_ttl: Duration,
    /// Failed-login limits.
    pub limits: LimitPolicy,
    /// Pool size; forced to 1 for in-memory databases, which are
    /// per-connection in SQLite.
    pub max_connections: u32,
}

impl Default for DirectoryOptions {
    fn default() -> Self {
        Self {
            hash_cost: HashCost::Default,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            limits: LimitPolicy::default(),
            max_connections: 4,
        }
    }
}

/// Handle to the directory database; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Directory {
    pub(crate) pool: SqlitePool,
    pub(crate) opts: DirectoryOptions,
    /// std mutex, not tokio: the limiter is pure and its critical sections
    /// never span an `.await`.
    pub(crate) limiter: Mutex<LoginLimiter>,
}

impl Directory {
    /// Opens (creating if missing) the database at `url`
    /// (`sqlite://path/to/file.db` or `sqlite::memory:`) and applies the
    /// embedded migrations, with default options.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, DirectoryOptions::default()).await
    }

    /// Like [`Directory::open`] with explicit options.
    pub async fn open_with(url: &str, mut opts: DirectoryOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if url.contains(":memory:") {
            opts.max_connections = 1;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .connect_with(connect)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        let limiter = Mutex::new(LoginLimiter::new(opts.limits.clone()));
        let dir = Self {
            pool,
            opts,
            limiter,
        };
        dir.ensure_system_entries().await?;
        Ok(dir)
    }

    /// The underlying pool, for the gateway's health checks.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction that takes SQLite's write lock up front
    /// (`BEGIN IMMEDIATE`). A deferred transaction that reads first and
    /// then writes fails with "database is locked" instead of waiting when
    /// another connection is still writing (e.g. rolling back a dropped
    /// transaction); an immediate one waits for `busy_timeout`.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Creates the built-in `echo` target if it is missing.
    async fn ensure_system_entries(&self) -> Result<()> {
        let echo = crate::names::LoginName::system("echo")?;
        let mut tx = self.write_tx().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT name FROM names WHERE name = ?")
            .bind(echo.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            sqlx::query("INSERT INTO names (name, kind, created_at) VALUES (?, 'system', 0)")
                .bind(echo.as_str())
                .execute(&mut *tx)
                .await?;
            crate::search::index_entry(
                &mut tx,
                echo.as_str(),
                crate::search::EntryKind::System,
                "Echo test",
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Unix milliseconds of `t` (times before 1970 clamp to 0).
pub(crate) fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The `SystemTime` of stored unix milliseconds.
pub(crate) fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
