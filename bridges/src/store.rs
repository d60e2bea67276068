//! `ChatStore`: durable store-and-forward on SQLite (WAL) through sqlx.
//!
//! Every write is one transaction, committed before the method returns, so
//! the caller may ack the client only after the message is durable. Writers
//! start with `BEGIN IMMEDIATE`: SQLite has one writer, and taking the write
//! lock first means a busy writer waits (`busy_timeout`) instead of failing
//! halfway with `SQLITE_BUSY` on a read-to-write upgrade.
//!
//! Membership is checked inside the same statements that read or write, so
//! there is no window between "is a member" and "writes". Receipts are
//! per-member watermarks (`delivered_seq`, `read_seq`) that only move up.
//!
//! SQL is kept portable to PostgreSQL (`$n` parameters, `ON CONFLICT`,
//! `RETURNING`, `CASE` instead of `MAX(a, b)`); only the migration's
//! `AUTOINCREMENT` and `BEGIN IMMEDIATE` are SQLite spellings.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::error::{ChatError, Result};
use crate::model::{
    Body, ClientId, CompanyName, ConversationId, DeviceId, GroupEvent, Login, MAX_GROUP_MEMBERS,
    MAX_TITLE_CHARS, Message, Payload, Seq, Timestamp,
};
use crate::push::Subscription;

/// Largest page returned by `fetch` and `sync`.
pub const MAX_PAGE: u32 = 500;

/// Tuning knobs for [`ChatStore::open_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size; forced to 1 for in-memory databases.
    pub max_connections: u32,
    /// Undelivered copies of a message are dropped after this long (and the
    /// sender is told, see `delivery`); `None` keeps them forever.
    pub undelivered_ttl: Option<Duration>,
    /// `synchronous=FULL` instead of `NORMAL`: survives power loss, not
    /// only process crashes, at a throughput cost.
    pub sync_full: bool,
    /// No WAL checkpoints inside commits (`wal_autocheckpoint=0`): the
    /// owner calls [`ChatStore::checkpoint`] from elsewhere, e.g. a timer,
    /// so no commit waits for a checkpoint's page copies and fsyncs.
    pub background_checkpoint: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 4,
            undelivered_ttl: Some(Duration::from_secs(30 * 24 * 3600)),
            sync_full: false,
            background_checkpoint: false,
        }
    }
}

/// One message of a [`ChatStore::send_batch`].
#[derive(Debug, Clone)]
pub struct SendRequest {
    /// Who sends.
    pub sender: Login,
    /// Where.
    pub conversation: ConversationId,
    /// Idempotency id.
    pub client_id: ClientId,
    /// Content.
    pub body: Body,
}

/// One write of a [`crate::BatchWriter::write_batch`].
#[derive(Debug, Clone)]
pub enum BatchWrite {
    /// A message.
    Send(SendRequest),
    /// A device's sync cursor ack.
    Ack {
        /// Whose device.
        user: Login,
        /// The device.
        device: DeviceId,
        /// Everything up to here is on the device.
        cursor: i64,
    },
}

/// The outcome of one [`BatchWrite`].
#[derive(Debug, Clone)]
pub enum BatchDone {
    /// What a send stored.
    Stored(Box<Stored>),
    /// The watermarks an ack moved.
    Marks(Vec<Watermark>),
}

/// A post waiting to reach one recipient (see [`ChatStore::undelivered`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The conversation.
    pub conversation: ConversationId,
    /// The post.
    pub seq: Seq,
    /// Who sent it.
    pub sender: Login,
    /// Who has not got it.
    pub recipient: Login,
    /// When it expires for them.
    pub deadline: Timestamp,
}

/// Result of a successful write: what was stored and who must hear of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The stored entry as devices will see it.
    pub message: Message,
    /// Global order of the entry, the unit of device sync cursors.
    pub cursor: i64,
    /// True when this was a retry of an already stored `client_id`.
    pub duplicate: bool,
    /// Members who can see it (the sender included), for fan-out.
    pub audience: Vec<Login>,
}

impl Stored {
    /// The server-assigned sequence number.
    pub fn seq(&self) -> Seq {
        self.message.seq
    }
    /// The server timestamp.
    pub fn ts(&self) -> Timestamp {
        self.message.ts
    }
}

/// A page of the per-device sync stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncBatch {
    /// Entries in global order, each with its cursor.
    pub messages: Vec<(i64, Message)>,
    /// Cursor to ack once these are safely on the device.
    pub cursor: i64,
    /// True when more entries are waiting after this page.
    pub more: bool,
}

/// State of one message for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    /// Stored, not yet on any device of the recipient.
    Sent,
    /// On at least one device of the recipient.
    Delivered,
    /// The recipient marked it read.
    Read,
}

/// A member of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Who.
    pub login: Login,
    /// May rename and add or remove members.
    pub admin: bool,
    /// Delivered up to this seq.
    pub delivered: Seq,
    /// Read up to this seq.
    pub read: Seq,
}

/// A watermark that moved: `login` has `conversation` delivered/read up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    /// The conversation.
    pub conversation: ConversationId,
    /// The member whose watermark moved.
    pub login: Login,
    /// New delivered watermark.
    pub delivered: Seq,
    /// New read watermark.
    pub read: Seq,
}

/// A conversation as listed for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationInfo {
    /// Its id.
    pub id: ConversationId,
    /// Group title (None for one-to-one).
    pub title: Option<String>,
    /// Last seq the user can see.
    pub last_seq: Seq,
    /// Messages from others after the user's read watermark.
    pub unread: u64,
    /// False once the user left or was removed.
    pub active: bool,
}

/// Handle to the chat database; cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct ChatStore {
    pool: SqlitePool,
    opts: StoreOptions,
    /// The database file; `None` in memory.
    file: Option<std::path::PathBuf>,
}

// Statements shared by the sqlx paths here and the batch writer
// (`crate::writer`), so both write by the same rules.

/// A stored entry by its sender's client id (`$1` sender, `$2` client id).
pub(crate) const SQL_DUPLICATE: &str = "SELECT m.id, m.conversation_id, m.seq, m.sender, \
     m.client_id, m.payload, m.ts, m.edited_at, m.deleted \
     FROM chat_messages m WHERE m.sender = $1 AND m.client_id = $2";
/// Takes the next seq of `$1` if `$2` is an active member.
pub(crate) const SQL_NEXT_SEQ: &str = "UPDATE chat_conversations SET last_seq = last_seq + 1 WHERE id = $1 AND EXISTS \
       (SELECT 1 FROM chat_members WHERE conversation_id = $1 AND login = $2 \
        AND left_seq IS NULL) \
     RETURNING last_seq";
/// Creates one-to-one conversation `$1` (by `$2`, at `$3`) unless it exists.
pub(crate) const SQL_NEW_DIRECT: &str = "INSERT INTO chat_conversations \
     (id, kind, created_by, created_at) VALUES ($1, 'direct', $2, $3) ON CONFLICT (id) DO NOTHING";
/// Creates company conversation `$1` (of `$2`, at `$3`) unless it exists.
pub(crate) const SQL_NEW_COMPANY: &str = "INSERT INTO chat_conversations \
     (id, kind, created_by, created_at) VALUES ($1, 'company', $2, $3) ON CONFLICT (id) DO NOTHING";
/// Member `$2` of `$1` (admin `$3`) from seq `$4`, watermarks at `$5`
/// ([`upsert_floor`]); reopens a former member's window.
pub(crate) const SQL_UPSERT_MEMBER: &str = "INSERT INTO chat_members \
       (conversation_id, login, is_admin, joined_seq, delivered_seq, read_seq) \
     VALUES ($1, $2, $3, $4, $5, $5) \
     ON CONFLICT (conversation_id, login) DO UPDATE SET \
       is_admin = excluded.is_admin, joined_seq = excluded.joined_seq, left_seq = NULL, \
       delivered_seq = excluded.delivered_seq, read_seq = excluded.read_seq";
/// A new entry; returns its id (the sync cursor).
pub(crate) const SQL_INSERT_ENTRY: &str = "INSERT INTO chat_messages \
       (conversation_id, seq, sender, client_id, kind, payload, ts, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id";
/// The sender `$2` has their own entry `$3` of `$1`.
pub(crate) const SQL_SENDER_MARKS: &str = "UPDATE chat_members SET delivered_seq = $3, read_seq = $3 \
     WHERE conversation_id = $1 AND login = $2";
/// Members of `$1` who can see seq `$2` (the window rule of `sync`).
pub(crate) const SQL_AUDIENCE: &str = "SELECT login FROM chat_members WHERE conversation_id = $1 AND joined_seq <= $2 \
       AND (left_seq IS NULL OR left_seq >= $2) ORDER BY login";
/// Device `$2` of `$1` has everything up to `$3` (never moves back).
pub(crate) const SQL_ACK_CURSOR: &str = "INSERT INTO chat_device_cursors (login, device, cursor) VALUES ($1, $2, $3) \
     ON CONFLICT (login, device) DO UPDATE SET cursor = \
     CASE WHEN excluded.cursor > chat_device_cursors.cursor \
          THEN excluded.cursor ELSE chat_device_cursors.cursor END";
/// Moves the delivered watermarks of `$1` up to cursor `$2`; returns the
/// moved ones (conversation, login, delivered, read).
///
/// Highest visible seq per conversation at or before the cursor. Seqs grow
/// with ids inside a conversation, so the last entry at or before the
/// cursor is found by walking the (conversation, seq) index down from the
/// top: a few steps, not a scan of the whole conversation. Clamped to the
/// member's window [joined, left].
pub(crate) const SQL_ACK_WATERMARKS: &str = "UPDATE chat_members SET delivered_seq = v.top FROM ( \
       SELECT cid, joined, \
         CASE WHEN lft IS NOT NULL AND last > lft THEN lft ELSE last END AS top \
       FROM (SELECT mb.conversation_id AS cid, mb.joined_seq AS joined, \
               mb.left_seq AS lft, \
               (SELECT m.seq FROM chat_messages m \
                WHERE m.conversation_id = mb.conversation_id AND m.id <= $2 \
                ORDER BY m.seq DESC LIMIT 1) AS last \
             FROM chat_members mb WHERE mb.login = $1) \
       WHERE last IS NOT NULL) AS v \
     WHERE chat_members.login = $1 AND chat_members.conversation_id = v.cid \
       AND v.top >= v.joined AND chat_members.delivered_seq < v.top \
     RETURNING conversation_id, login, delivered_seq, read_seq";

/// The watermarks of a member who joins at `joined`: just before it.
pub(crate) fn upsert_floor(joined: Seq) -> i64 {
    joined.0 - 1
}

/// The columns of a new entry with `payload`: kind, JSON, and when it
/// expires (`expires` applies to posts only: group events must reach
/// everyone, and company conversations have one member, where an expiry
/// notice for the company's messages would go to whoever holds its tenant
/// login).
pub(crate) fn payload_for(
    conversation: &ConversationId,
    payload: &Payload,
    expires: Option<i64>,
) -> Result<(&'static str, String, Option<i64>)> {
    let expires = match payload {
        Payload::Post { .. } if conversation.company_pair().is_none() => expires,
        _ => None,
    };
    Ok((payload.kind(), encode(payload)?, expires))
}

/// The columns of `SQL_DUPLICATE` after the id, in order: conversation,
/// seq, sender, client id, payload, ts, edited at, deleted.
pub(crate) type MessageParts = (
    String,
    i64,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
    i64,
);

/// A stored entry from its columns (see [`MessageParts`]).
pub(crate) fn message_of(parts: MessageParts) -> Result<Message> {
    let (conv, seq, sender, client_id, payload, ts, edited, deleted) = parts;
    let payload = match payload {
        Some(p) => Some(
            serde_json::from_str::<Payload>(&p)
                .map_err(|e| ChatError::Corrupt(format!("payload: {e}")))?,
        ),
        None => None,
    };
    Ok(Message {
        conversation: ConversationId::parse(&conv)
            .map_err(|e| ChatError::Corrupt(format!("conversation_id: {e}")))?,
        seq: Seq(seq),
        sender: Login::parse(&sender).map_err(|e| ChatError::Corrupt(format!("sender: {e}")))?,
        client_id,
        ts: Timestamp(ts),
        payload,
        edited_at: edited.map(Timestamp),
        deleted: deleted != 0,
    })
}

const MSG_COLS: &str = "m.id, m.conversation_id, m.seq, m.sender, m.client_id, m.payload, m.ts, m.edited_at, m.deleted";

fn login_col(row: &SqliteRow, col: &str) -> Result<Login> {
    let s: String = row.try_get(col)?;
    Login::parse(&s).map_err(|e| ChatError::Corrupt(format!("{col}: {e}")))
}

fn decode_message(row: &SqliteRow) -> Result<(i64, Message)> {
    let msg = message_of((
        row.try_get("conversation_id")?,
        row.try_get("seq")?,
        row.try_get("sender")?,
        row.try_get("client_id")?,
        row.try_get("payload")?,
        row.try_get("ts")?,
        row.try_get("edited_at")?,
        row.try_get("deleted")?,
    ))?;
    Ok((row.try_get("id")?, msg))
}

fn encode(payload: &Payload) -> Result<String> {
    serde_json::to_string(payload).map_err(|e| ChatError::Corrupt(format!("encode: {e}")))
}

fn check_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_PAGE))
}

impl ChatStore {
    /// Opens (creating if missing) the store at `url` (`sqlite://file.db`
    /// or `sqlite::memory:`) with default options and applies migrations.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, StoreOptions::default()).await
    }

    /// Like [`ChatStore::open`] with explicit options.
    pub async fn open_with(url: &str, mut opts: StoreOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if opts.sync_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            // Statement journals (every multi-row write of a group commit
            // has one) stay in memory instead of spilling to temp files
            // past 64 KiB: pwrite + close per statement in the profile.
            .pragma("temp_store", "memory")
            .busy_timeout(Duration::from_secs(5));
        let connect = if opts.background_checkpoint {
            connect.pragma("wal_autocheckpoint", "0")
        } else {
            connect
        };
        if url.contains(":memory:") {
            opts.max_connections = 1;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .connect_with(connect.clone())
            .await?;
        let mut migrator = sqlx::migrate!("./migrations");
        // Own bookkeeping table, so the chat store can share one database
        // file with the directory without either seeing "missing" versions.
        migrator.dangerous_set_table_name("_bridges_migrations");
        migrator.run(&pool).await?;
        let file = (!url.contains(":memory:")).then(|| connect.get_filename().to_path_buf());
        Ok(Self { pool, opts, file })
    }

    /// Copies the WAL's committed pages into the database file (a
    /// `PASSIVE` checkpoint: it waits for no reader or writer, and writers
    /// go on meanwhile), for stores opened with
    /// [`StoreOptions::background_checkpoint`]. Returns the WAL's size and
    /// the frames copied, in pages.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn checkpoint(&self) -> Result<(i64, i64)> {
        let (_busy, log, copied): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&self.pool)
                .await?;
        Ok((log, copied))
    }

    /// The database file (`None` for an in-memory store).
    pub(crate) fn file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// The options the store was opened with.
    pub(crate) fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn expires_at(&self, now: Timestamp) -> Option<i64> {
        self.opts.undelivered_ttl.map(|ttl| {
            now.plus_ms(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
                .0
        })
    }

    /// Stores a new message from `sender` in `conversation`.
    ///
    /// A one-to-one conversation is created on its first message. A retry
    /// with the same `client_id` returns the original entry
    /// (`duplicate = true`) and stores nothing.
    ///
    /// # Errors
    /// `Invalid` for a bad body, `Forbidden` if the sender is not an active
    /// member, `ClientIdReused` if the id was used in another conversation.
    pub async fn send(
        &self,
        sender: &Login,
        conversation: &ConversationId,
        client_id: &ClientId,
        body: Body,
        now: Timestamp,
    ) -> Result<Stored> {
        body.validate()?;
        let mut tx = self.begin().await?;
        let stored = self
            .send_in(&mut tx, sender, conversation, client_id, body, now)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Group commit: stores many messages in one transaction, so one disk
    /// sync covers them all. Each request gets its own result; a request
    /// refused for a domain reason (`Forbidden`, `Invalid`, …) writes
    /// nothing and does not affect the others. A storage error fails the
    /// whole batch and nothing is stored.
    pub async fn send_batch(
        &self,
        requests: Vec<SendRequest>,
        now: Timestamp,
    ) -> Result<Vec<Result<Stored>>> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(requests.len());
        for r in requests {
            if let Err(e) = r.body.validate() {
                out.push(Err(e));
                continue;
            }
            // Every refusal in `send_in` happens before its first write.
            match self
                .send_in(
                    &mut tx,
                    &r.sender,
                    &r.conversation,
                    &r.client_id,
                    r.body,
                    now,
                )
                .await
            {
                Err(e @ (ChatError::Storage(_) | ChatError::Corrupt(_))) => return Err(e),
                res => out.push(res),
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn send_in(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        sender: &Login,
        conversation: &ConversationId,
        client_id: &ClientId,
        body: Body,
        now: Timestamp,
    ) -> Result<Stored> {
        if let Some(dup) = self.duplicate(tx, sender, conversation, client_id).await? {
            return Ok(dup);
        }
        if let Some((a, b)) = conversation.direct_pair() {
            if sender != &a && sender != &b {
                return Err(ChatError::Forbidden);
            }
            // The common case first: the conversation exists, so the seq
            // is taken at once and the create statement is skipped.
            let seq = match self.try_next_seq(tx, conversation, sender).await? {
                Some(seq) => seq,
                None => {
                    ensure_direct(tx, conversation, &a, &b, now).await?;
                    self.next_seq(tx, conversation, sender).await?
                }
            };
            // Nobody joins or leaves a one-to-one conversation: its
            // audience is its two logins, no query needed.
            let mut audience = vec![a, b];
            audience.sort();
            audience.dedup();
            return self
                .insert_entry(
                    tx,
                    conversation,
                    sender,
                    client_id,
                    &Payload::Post { body },
                    seq,
                    now,
                    Some(audience),
                )
                .await;
        }
        if let Some((user, _)) = conversation.company_pair() {
            if sender != &user {
                return Err(ChatError::Forbidden);
            }
            ensure_company(tx, conversation, &user, now).await?;
        }
        self.append(
            tx,
            conversation,
            sender,
            client_id,
            &Payload::Post { body },
            now,
        )
        .await
    }

    /// Stores a message that `company` sent to `user` (a SIP MESSAGE from
    /// the company's PBX). The conversation is created if needed; the
    /// sender is the company's tenant login. A repeated `client_id` (see
    /// [`ClientId::for_sip`]) returns the original entry.
    pub async fn receive_from_company(
        &self,
        user: &Login,
        company: &CompanyName,
        client_id: &ClientId,
        body: Body,
        now: Timestamp,
    ) -> Result<Stored> {
        body.validate()?;
        let tenant = company.tenant();
        if &tenant == user {
            return Err(ChatError::invalid(
                "company",
                "a company cannot chat with itself",
            ));
        }
        let conversation = ConversationId::company(user, company);
        let mut tx = self.begin().await?;
        if let Some(dup) = self
            .duplicate(&mut tx, &tenant, &conversation, client_id)
            .await?
        {
            return Ok(dup);
        }
        ensure_company(&mut tx, &conversation, user, now).await?;
        // The company is no member: take the seq without the membership check.
        let seq: i64 = sqlx::query_scalar(
            "UPDATE chat_conversations SET last_seq = last_seq + 1 WHERE id = $1 \
             RETURNING last_seq",
        )
        .bind(conversation.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let stored = self
            .insert_entry(
                &mut tx,
                &conversation,
                &tenant,
                client_id,
                &Payload::Post { body },
                Seq(seq),
                now,
                None,
            )
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// The company's PBX accepted `seq` of a company conversation: moves the
    /// conversation's delivered watermark up. Returns it when it moved.
    pub async fn peer_delivered(
        &self,
        conversation: &ConversationId,
        seq: Seq,
    ) -> Result<Option<Seq>> {
        if conversation.company_pair().is_none() {
            return Err(ChatError::NotFound);
        }
        let mut tx = self.begin().await?;
        let moved: Option<i64> = sqlx::query_scalar(
            "UPDATE chat_conversations SET peer_delivered_seq = $2 \
             WHERE id = $1 AND peer_delivered_seq < $2 AND last_seq >= $2 \
             RETURNING peer_delivered_seq",
        )
        .bind(conversation.as_str())
        .bind(seq.0)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(moved.map(Seq))
    }

    /// Replaces the body of the sender's own message `target`; the edit is
    /// also appended as its own entry so offline devices replay it in order.
    pub async fn edit(
        &self,
        sender: &Login,
        conversation: &ConversationId,
        client_id: &ClientId,
        target: Seq,
        body: Body,
        now: Timestamp,
    ) -> Result<Stored> {
        body.validate()?;
        refuse_on_company(conversation, "a message sent to a company cannot be edited")?;
        let mut tx = self.begin().await?;
        if let Some(dup) = self
            .duplicate(&mut tx, sender, conversation, client_id)
            .await?
        {
            return Ok(dup);
        }
        let new = encode(&Payload::Post { body: body.clone() })?;
        own_post(&mut tx, sender, conversation, target).await?;
        sqlx::query(
            "UPDATE chat_messages SET payload = $1, edited_at = $2 \
             WHERE conversation_id = $3 AND seq = $4",
        )
        .bind(new)
        .bind(now.0)
        .bind(conversation.as_str())
        .bind(target.0)
        .execute(&mut *tx)
        .await?;
        let stored = self
            .append(
                &mut tx,
                conversation,
                sender,
                client_id,
                &Payload::Edit { target, body },
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Deletes the sender's own message `target`, leaving a tombstone that
    /// keeps its seq.
    pub async fn delete(
        &self,
        sender: &Login,
        conversation: &ConversationId,
        client_id: &ClientId,
        target: Seq,
        now: Timestamp,
    ) -> Result<Stored> {
        refuse_on_company(
            conversation,
            "a message sent to a company cannot be deleted",
        )?;
        let mut tx = self.begin().await?;
        if let Some(dup) = self
            .duplicate(&mut tx, sender, conversation, client_id)
            .await?
        {
            return Ok(dup);
        }
        own_post(&mut tx, sender, conversation, target).await?;
        sqlx::query(
            "UPDATE chat_messages SET payload = NULL, deleted = 1 \
             WHERE conversation_id = $1 AND seq = $2",
        )
        .bind(conversation.as_str())
        .bind(target.0)
        .execute(&mut *tx)
        .await?;
        let stored = self
            .append(
                &mut tx,
                conversation,
                sender,
                client_id,
                &Payload::Delete { target },
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Creates a group whose id derives from `creator` and `client_id`, so a
    /// retried create returns the same group. The creator is its admin.
    pub async fn create_group(
        &self,
        creator: &Login,
        client_id: &ClientId,
        title: &str,
        members: &[Login],
        now: Timestamp,
    ) -> Result<Stored> {
        let title = check_title(title)?;
        let mut all: Vec<Login> = vec![creator.clone()];
        for m in members {
            if !all.contains(m) {
                all.push(m.clone());
            }
        }
        if all.len() > MAX_GROUP_MEMBERS {
            return Err(ChatError::invalid("members", "group too large"));
        }
        let id = ConversationId::group(creator, client_id);
        let mut tx = self.begin().await?;
        if let Some(dup) = self.duplicate(&mut tx, creator, &id, client_id).await? {
            return Ok(dup);
        }
        sqlx::query(
            "INSERT INTO chat_conversations (id, kind, title, created_by, created_at) \
             VALUES ($1, 'group', $2, $3, $4)",
        )
        .bind(id.as_str())
        .bind(&title)
        .bind(creator.as_str())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        for m in &all {
            upsert_member(&mut tx, &id, m, m == creator, Seq(1)).await?;
        }
        let change = GroupEvent::Created {
            title,
            members: all,
        };
        let stored = self
            .append(
                &mut tx,
                &id,
                creator,
                client_id,
                &Payload::Group { change },
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Renames a group (admins only).
    pub async fn rename_group(
        &self,
        by: &Login,
        conversation: &ConversationId,
        client_id: &ClientId,
        title: &str,
        now: Timestamp,
    ) -> Result<Stored> {
        let title = check_title(title)?;
        let mut tx = self.begin().await?;
        if let Some(dup) = self.duplicate(&mut tx, by, conversation, client_id).await? {
            return Ok(dup);
        }
        require_admin(&mut tx, conversation, by).await?;
        sqlx::query("UPDATE chat_conversations SET title = $1 WHERE id = $2")
            .bind(&title)
            .bind(conversation.as_str())
            .execute(&mut *tx)
            .await?;
        let change = GroupEvent::Renamed { title };
        let stored = self
            .append(
                &mut tx,
                conversation,
                by,
                client_id,
                &Payload::Group { change },
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Adds members to a group (admins only); they see history from here on.
    pub async fn add_members(
        &self,
        by: &Login,
        conversation: &ConversationId,
        client_id: &ClientId,
        members: &[Login],
        now: Timestamp,
    ) -> Result<Stored> {
        let mut tx = self.begin().await?;
        if let Some(dup) = self.duplicate(&mut tx, by, conversation, client_id).await? {
            return Ok(dup);
        }
        require_admin(&mut tx, conversation, by).await?;
        let active = active_members(&mut tx, conversation).await?;
        let mut new: Vec<Login> = Vec::new();
        for m in members {
            if !active.contains(m) && !new.contains(m) {
                new.push(m.clone());
            }
        }
        if new.is_empty() {
            return Err(ChatError::Conflict("already members"));
        }
        if active.len() + new.len() > MAX_GROUP_MEMBERS {
            return Err(ChatError::invalid("members", "group too large"));
        }
        let change = GroupEvent::Added {
            members: new.clone(),
        };
        // Append first: the new members' window starts at this event.
        let seq = self.next_seq(&mut tx, conversation, by).await?;
        for m in &new {
            upsert_member(&mut tx, conversation, m, false, seq).await?;
        }
        let stored = self
            .insert_entry(
                &mut tx,
                conversation,
                by,
                client_id,
                &Payload::Group { change },
                seq,
                now,
                None,
            )
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Removes a member (admins only). The removed member sees the removal
    /// event and nothing after it.
    pub async fn remove_member(
        &self,
        by: &Login,
        conversation: &ConversationId,
        client_id: &ClientId,
        member: &Login,
        now: Timestamp,
    ) -> Result<Stored> {
        let mut tx = self.begin().await?;
        if let Some(dup) = self.duplicate(&mut tx, by, conversation, client_id).await? {
            return Ok(dup);
        }
        require_admin(&mut tx, conversation, by).await?;
        if by == member {
            return Err(ChatError::Conflict("use leave to remove yourself"));
        }
        if !active_members(&mut tx, conversation)
            .await?
            .contains(member)
        {
            return Err(ChatError::NotFound);
        }
        let change = GroupEvent::Removed {
            member: member.clone(),
        };
        let stored = self
            .append(
                &mut tx,
                conversation,
                by,
                client_id,
                &Payload::Group { change },
                now,
            )
            .await?;
        close_membership(&mut tx, conversation, member, stored.seq()).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Leaves a group. If the last admin leaves, the longest-standing
    /// remaining member becomes admin.
    pub async fn leave(
        &self,
        who: &Login,
        conversation: &ConversationId,
        client_id: &ClientId,
        now: Timestamp,
    ) -> Result<Stored> {
        if conversation.direct_pair().is_some() || conversation.company_pair().is_some() {
            return Err(ChatError::Conflict(
                "cannot leave a one-to-one conversation",
            ));
        }
        let mut tx = self.begin().await?;
        if let Some(dup) = self
            .duplicate(&mut tx, who, conversation, client_id)
            .await?
        {
            return Ok(dup);
        }
        let change = GroupEvent::Left {
            member: who.clone(),
        };
        let stored = self
            .append(
                &mut tx,
                conversation,
                who,
                client_id,
                &Payload::Group { change },
                now,
            )
            .await?;
        close_membership(&mut tx, conversation, who, stored.seq()).await?;
        let admins: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM chat_members \
             WHERE conversation_id = $1 AND left_seq IS NULL AND is_admin = 1",
        )
        .bind(conversation.as_str())
        .fetch_one(&mut *tx)
        .await?;
        if admins == 0 {
            sqlx::query(
                "UPDATE chat_members SET is_admin = 1 WHERE conversation_id = $1 AND login = \
                 (SELECT login FROM chat_members WHERE conversation_id = $1 AND left_seq IS NULL \
                  ORDER BY joined_seq, login LIMIT 1)",
            )
            .bind(conversation.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// Makes `member` an admin (admins only).
    pub async fn promote(
        &self,
        by: &Login,
        conversation: &ConversationId,
        client_id: &ClientId,
        member: &Login,
        now: Timestamp,
    ) -> Result<Stored> {
        let mut tx = self.begin().await?;
        if let Some(dup) = self.duplicate(&mut tx, by, conversation, client_id).await? {
            return Ok(dup);
        }
        require_admin(&mut tx, conversation, by).await?;
        let n = sqlx::query(
            "UPDATE chat_members SET is_admin = 1 \
             WHERE conversation_id = $1 AND login = $2 AND left_seq IS NULL",
        )
        .bind(conversation.as_str())
        .bind(member.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(ChatError::NotFound);
        }
        let change = GroupEvent::Promoted {
            member: member.clone(),
        };
        let stored = self
            .append(
                &mut tx,
                conversation,
                by,
                client_id,
                &Payload::Group { change },
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// History of one conversation after `after`, oldest first, limited to
    /// what `user` may see (their membership window).
    ///
    /// # Errors
    /// `Forbidden` if the user never was a member.
    pub async fn fetch(
        &self,
        user: &Login,
        _device: &DeviceId,
        conversation: &ConversationId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let mut conn = self.pool.acquire().await?;
        let window: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT joined_seq, left_seq FROM chat_members \
             WHERE conversation_id = $1 AND login = $2",
        )
        .bind(conversation.as_str())
        .bind(user.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        let Some((joined, left)) = window else {
            return Err(ChatError::Forbidden);
        };
        let sql = format!(
            "SELECT {MSG_COLS} FROM chat_messages m WHERE m.conversation_id = $1 \
             AND m.seq > $2 AND m.seq >= $3 AND m.seq <= $4 ORDER BY m.seq LIMIT $5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(conversation.as_str())
            .bind(after.0)
            .bind(joined)
            .bind(left.unwrap_or(i64::MAX))
            .bind(check_limit(limit))
            .fetch_all(&mut *conn)
            .await?;
        rows.iter()
            .map(|r| decode_message(r).map(|(_, m)| m))
            .collect()
    }

    /// The sync stream of one device: every entry of every conversation of
    /// `user` after the cursor (the device's stored cursor when `since` is
    /// `None`), in global order. Undelivered entries past their expiry are
    /// skipped. Call [`ChatStore::ack_sync`] when the device has them.
    pub async fn sync(
        &self,
        user: &Login,
        device: &DeviceId,
        since: Option<i64>,
        limit: u32,
        now: Timestamp,
    ) -> Result<SyncBatch> {
        let mut conn = self.pool.acquire().await?;
        let since = match since {
            Some(s) => s,
            None => sqlx::query_scalar(
                "SELECT cursor FROM chat_device_cursors WHERE login = $1 AND device = $2",
            )
            .bind(user.as_str())
            .bind(&device.0)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or(0),
        };
        let limit = check_limit(limit);
        let sql = format!(
            "SELECT {MSG_COLS} FROM chat_messages m \
             JOIN chat_members mb ON mb.conversation_id = m.conversation_id AND mb.login = $1 \
             WHERE m.id > $2 AND m.seq >= mb.joined_seq \
               AND (mb.left_seq IS NULL OR m.seq <= mb.left_seq) \
               AND (m.expires_at IS NULL OR m.expires_at > $3 \
                    OR m.seq <= mb.delivered_seq OR m.sender = $1) \
             ORDER BY m.id LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.as_str())
            .bind(since)
            .bind(now.0)
            .bind(limit + 1)
            .fetch_all(&mut *conn)
            .await?;
        let more = rows.len() as i64 > limit;
        let messages = rows
            .iter()
            .take(limit as usize)
            .map(decode_message)
            .collect::<Result<Vec<_>>>()?;
        let cursor = messages.last().map_or(since, |(id, _)| *id);
        Ok(SyncBatch {
            messages,
            cursor,
            more,
        })
    }

    /// Records that `device` has everything up to `cursor`: moves its sync
    /// cursor (never backwards) and the user's delivered watermarks.
    /// Returns the watermarks that moved, for receipts.
    pub async fn ack_sync(
        &self,
        user: &Login,
        device: &DeviceId,
        cursor: i64,
    ) -> Result<Vec<Watermark>> {
        let mut tx = self.begin().await?;
        let marks = ack_sync_in(&mut tx, user, device, cursor).await?;
        tx.commit().await?;
        Ok(marks)
    }
}

/// The writes of [`ChatStore::ack_sync`], inside a transaction.
async fn ack_sync_in(
    tx: &mut Transaction<'static, Sqlite>,
    user: &Login,
    device: &DeviceId,
    cursor: i64,
) -> Result<Vec<Watermark>> {
    sqlx::query(SQL_ACK_CURSOR)
        .bind(user.as_str())
        .bind(&device.0)
        .bind(cursor)
        .execute(&mut **tx)
        .await?;
    let rows = sqlx::query(SQL_ACK_WATERMARKS)
        .bind(user.as_str())
        .bind(cursor)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(decode_watermark).collect()
}

impl ChatStore {
    /// Marks `conversation` read by `user` up to `seq` (clamped to what
    /// exists; read implies delivered). Returns the new watermark if it
    /// moved, `None` if it was already there.
    pub async fn mark_read(
        &self,
        user: &Login,
        conversation: &ConversationId,
        seq: Seq,
    ) -> Result<Option<Watermark>> {
        let mut tx = self.begin().await?;
        let top: Option<(i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT c.last_seq, mb.left_seq, mb.read_seq FROM chat_conversations c \
             JOIN chat_members mb ON mb.conversation_id = c.id AND mb.login = $2 WHERE c.id = $1",
        )
        .bind(conversation.as_str())
        .bind(user.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((last, left, read)) = top else {
            return Err(ChatError::Forbidden);
        };
        let seq = seq.0.min(left.unwrap_or(last));
        if seq <= read {
            return Ok(None);
        }
        let row = sqlx::query(
            "UPDATE chat_members SET read_seq = $3, delivered_seq = \
               CASE WHEN delivered_seq > $3 THEN delivered_seq ELSE $3 END \
             WHERE conversation_id = $1 AND login = $2 \
             RETURNING conversation_id, login, delivered_seq, read_seq",
        )
        .bind(conversation.as_str())
        .bind(user.as_str())
        .bind(seq)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        decode_watermark(&row).map(Some)
    }

    /// Members of a conversation as seen by `user` (who must be a member,
    /// past or present). Only active members are listed.
    pub async fn members(
        &self,
        user: &Login,
        conversation: &ConversationId,
    ) -> Result<Vec<Member>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT login, is_admin, delivered_seq, read_seq, left_seq FROM chat_members \
             WHERE conversation_id = $1 ORDER BY joined_seq, login",
        )
        .bind(conversation.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let mut seen = false;
        let mut out = Vec::new();
        for r in &rows {
            let login = login_col(r, "login")?;
            if &login == user {
                seen = true;
            }
            let left: Option<i64> = r.try_get("left_seq")?;
            if left.is_none() {
                let admin: i64 = r.try_get("is_admin")?;
                out.push(Member {
                    login,
                    admin: admin != 0,
                    delivered: Seq(r.try_get("delivered_seq")?),
                    read: Seq(r.try_get("read_seq")?),
                });
            }
        }
        if !seen {
            return Err(ChatError::Forbidden);
        }
        Ok(out)
    }

    /// Per-recipient state of message `seq`, for its sender's "info" view:
    /// everyone (but the sender) who was a member when it was sent.
    pub async fn receipts(
        &self,
        user: &Login,
        conversation: &ConversationId,
        seq: Seq,
    ) -> Result<Vec<(Login, ReceiptState)>> {
        let mut conn = self.pool.acquire().await?;
        let sender: Option<String> = sqlx::query_scalar(
            "SELECT m.sender FROM chat_messages m JOIN chat_members mb \
               ON mb.conversation_id = m.conversation_id AND mb.login = $3 \
             WHERE m.conversation_id = $1 AND m.seq = $2 AND m.seq >= mb.joined_seq \
               AND (mb.left_seq IS NULL OR m.seq <= mb.left_seq)",
        )
        .bind(conversation.as_str())
        .bind(seq.0)
        .bind(user.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(sender) = sender else {
            return Err(ChatError::Forbidden);
        };
        let company = conversation
            .company_pair()
            .filter(|(u, _)| u.as_str() == sender)
            .map(|(_, c)| c.tenant());
        if let Some(tenant) = company {
            let top: i64 = sqlx::query_scalar(
                "SELECT peer_delivered_seq FROM chat_conversations WHERE id = $1",
            )
            .bind(conversation.as_str())
            .fetch_one(&mut *conn)
            .await?;
            let state = if top >= seq.0 {
                ReceiptState::Delivered
            } else {
                ReceiptState::Sent
            };
            return Ok(vec![(tenant, state)]);
        }
        let rows = sqlx::query(
            "SELECT login, delivered_seq, read_seq FROM chat_members \
             WHERE conversation_id = $1 AND login <> $2 AND joined_seq <= $3 \
               AND (left_seq IS NULL OR left_seq >= $3) ORDER BY login",
        )
        .bind(conversation.as_str())
        .bind(&sender)
        .bind(seq.0)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let (d, rd): (i64, i64) = (r.try_get("delivered_seq")?, r.try_get("read_seq")?);
                let state = if rd >= seq.0 {
                    ReceiptState::Read
                } else if d >= seq.0 {
                    ReceiptState::Delivered
                } else {
                    ReceiptState::Sent
                };
                Ok((login_col(r, "login")?, state))
            })
            .collect()
    }

    /// The user's conversations with unread counts (posts by others after
    /// the read watermark, tombstones excluded), most recent first.
    pub async fn conversations(&self, user: &Login) -> Result<Vec<ConversationInfo>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT c.id, c.title, mb.left_seq, \
               CASE WHEN mb.left_seq IS NULL THEN c.last_seq ELSE mb.left_seq END AS top, \
               (SELECT COUNT(*) FROM chat_messages m WHERE m.conversation_id = c.id \
                  AND m.seq > mb.read_seq AND m.seq >= mb.joined_seq \
                  AND (mb.left_seq IS NULL OR m.seq <= mb.left_seq) \
                  AND m.sender <> mb.login AND m.deleted = 0 \
                  AND m.kind = 'post') AS unread \
             FROM chat_members mb JOIN chat_conversations c ON c.id = mb.conversation_id \
             WHERE mb.login = $1 ORDER BY top DESC, c.id",
        )
        .bind(user.as_str())
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let left: Option<i64> = r.try_get("left_seq")?;
                let unread: i64 = r.try_get("unread")?;
                Ok(ConversationInfo {
                    id: ConversationId::parse(&id)
                        .map_err(|e| ChatError::Corrupt(format!("conversation id: {e}")))?,
                    title: r.try_get("title")?,
                    last_seq: Seq(r.try_get("top")?),
                    unread: u64::try_from(unread).unwrap_or(0),
                    active: left.is_none(),
                })
            })
            .collect()
    }

    /// Unread count of one conversation for `user`.
    pub async fn unread(&self, user: &Login, conversation: &ConversationId) -> Result<u64> {
        Ok(self
            .conversations(user)
            .await?
            .into_iter()
            .find(|c| &c.id == conversation)
            .map_or(0, |c| c.unread))
    }

    /// Posts that have not reached some recipient and will expire, as
    /// (conversation, seq, sender, recipient, expires at); used to re-arm
    /// the expiry timers of [`crate::delivery::Delivery`] after a restart.
    pub async fn undelivered(&self) -> Result<Vec<Pending>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT m.conversation_id, m.seq, m.sender, mb.login, m.expires_at \
             FROM chat_messages m JOIN chat_members mb ON mb.conversation_id = m.conversation_id \
             WHERE m.kind = 'post' AND m.deleted = 0 AND m.expires_at IS NOT NULL \
               AND mb.login <> m.sender AND m.seq > mb.delivered_seq AND m.seq >= mb.joined_seq \
               AND (mb.left_seq IS NULL OR m.seq <= mb.left_seq) \
             ORDER BY m.expires_at, m.id",
        )
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let conv: String = r.try_get("conversation_id")?;
                Ok(Pending {
                    conversation: ConversationId::parse(&conv)
                        .map_err(|e| ChatError::Corrupt(format!("conversation id: {e}")))?,
                    seq: Seq(r.try_get("seq")?),
                    sender: login_col(r, "sender")?,
                    recipient: login_col(r, "login")?,
                    deadline: Timestamp(r.try_get("expires_at")?),
                })
            })
            .collect()
    }

    /// True when `a` and `b` are both active members of some conversation
    /// (the "contacts" of presence privacy).
    pub async fn share_conversation(&self, a: &Login, b: &Login) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM chat_members x JOIN chat_members y \
               ON x.conversation_id = y.conversation_id \
             WHERE x.login = $1 AND y.login = $2 AND x.left_seq IS NULL AND y.left_seq IS NULL",
        )
        .bind(a.as_str())
        .bind(b.as_str())
        .fetch_one(&mut *conn)
        .await?;
        Ok(n > 0)
    }

    /// A retry of `client_id` by `sender`: the original entry, or
    /// `ClientIdReused` if it belongs to another conversation.
    async fn duplicate(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        sender: &Login,
        conversation: &ConversationId,
        client_id: &ClientId,
    ) -> Result<Option<Stored>> {
        let row = sqlx::query(SQL_DUPLICATE)
            .bind(sender.as_str())
            .bind(client_id.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (cursor, message) = decode_message(&row)?;
        if &message.conversation != conversation {
            return Err(ChatError::ClientIdReused);
        }
        let audience = audience(tx, conversation, message.seq).await?;
        Ok(Some(Stored {
            message,
            cursor,
            duplicate: true,
            audience,
        }))
    }

    /// Takes the next seq of `conversation` if `sender` is an active member.
    async fn next_seq(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        conversation: &ConversationId,
        sender: &Login,
    ) -> Result<Seq> {
        self.try_next_seq(tx, conversation, sender)
            .await?
            .ok_or(ChatError::Forbidden)
    }

    /// Like [`ChatStore::next_seq`]; `None` when the conversation does not
    /// exist or `sender` is no active member of it.
    async fn try_next_seq(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        conversation: &ConversationId,
        sender: &Login,
    ) -> Result<Option<Seq>> {
        let seq: Option<i64> = sqlx::query_scalar(SQL_NEXT_SEQ)
            .bind(conversation.as_str())
            .bind(sender.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        Ok(seq.map(Seq))
    }

    async fn append(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        conversation: &ConversationId,
        sender: &Login,
        client_id: &ClientId,
        payload: &Payload,
        now: Timestamp,
    ) -> Result<Stored> {
        let seq = self.next_seq(tx, conversation, sender).await?;
        self.insert_entry(tx, conversation, sender, client_id, payload, seq, now, None)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_entry(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        conversation: &ConversationId,
        sender: &Login,
        client_id: &ClientId,
        payload: &Payload,
        seq: Seq,
        now: Timestamp,
        known_audience: Option<Vec<Login>>,
    ) -> Result<Stored> {
        let (kind, encoded, expires) = payload_for(conversation, payload, self.expires_at(now))?;
        let cursor: i64 = sqlx::query_scalar(SQL_INSERT_ENTRY)
            .bind(conversation.as_str())
            .bind(seq.0)
            .bind(sender.as_str())
            .bind(client_id.as_str())
            .bind(kind)
            .bind(encoded)
            .bind(now.0)
            .bind(expires)
            .fetch_one(&mut **tx)
            .await?;
        // The sender has their own message: their watermarks move with it.
        sqlx::query(SQL_SENDER_MARKS)
            .bind(conversation.as_str())
            .bind(sender.as_str())
            .bind(seq.0)
            .execute(&mut **tx)
            .await?;
        let audience = match known_audience {
            Some(a) => a,
            None => audience(tx, conversation, seq).await?,
        };
        Ok(Stored {
            message: Message {
                conversation: conversation.clone(),
                seq,
                sender: sender.clone(),
                client_id: client_id.as_str().to_owned(),
                ts: now,
                payload: Some(payload.clone()),
                edited_at: None,
                deleted: false,
            },
            cursor,
            duplicate: false,
            audience,
        })
    }
}

fn decode_watermark(row: &SqliteRow) -> Result<Watermark> {
    let conv: String = row.try_get("conversation_id")?;
    Ok(Watermark {
        conversation: ConversationId::parse(&conv)
            .map_err(|e| ChatError::Corrupt(format!("conversation id: {e}")))?,
        login: login_col(row, "login")?,
        delivered: Seq(row.try_get("delivered_seq")?),
        read: Seq(row.try_get("read_seq")?),
    })
}

fn check_title(title: &str) -> Result<String> {
    let t = title.trim();
    if t.is_empty() || t.chars().count() > MAX_TITLE_CHARS || t.chars().any(char::is_control) {
        return Err(ChatError::invalid("title", "1-100 printable characters"));
    }
    Ok(t.to_owned())
}

/// Members who can see `seq` (the window rule of `sync`).
async fn audience(
    tx: &mut Transaction<'static, Sqlite>,
    conversation: &ConversationId,
    seq: Seq,
) -> Result<Vec<Login>> {
    let rows = sqlx::query(SQL_AUDIENCE)
        .bind(conversation.as_str())
        .bind(seq.0)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(|r| login_col(r, "login")).collect()
}

async fn active_members(
    tx: &mut Transaction<'static, Sqlite>,
    conversation: &ConversationId,
) -> Result<Vec<Login>> {
    let rows = sqlx::query(
        "SELECT login FROM chat_members WHERE conversation_id = $1 AND left_seq IS NULL",
    )
    .bind(conversation.as_str())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| login_col(r, "login")).collect()
}

async fn ensure_direct(
    tx: &mut Transaction<'static, Sqlite>,
    id: &ConversationId,
    a: &Login,
    b: &Login,
    now: Timestamp,
) -> Result<()> {
    let created = sqlx::query(SQL_NEW_DIRECT)
        .bind(id.as_str())
        .bind(a.as_str())
        .bind(now.0)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if created == 1 {
        for m in [a, b] {
            upsert_member(tx, id, m, false, Seq(1)).await?;
        }
    }
    Ok(())
}

/// Creates a company conversation with `user` as its only member.
async fn ensure_company(
    tx: &mut Transaction<'static, Sqlite>,
    id: &ConversationId,
    user: &Login,
    now: Timestamp,
) -> Result<()> {
    let created = sqlx::query(SQL_NEW_COMPANY)
        .bind(id.as_str())
        .bind(user.as_str())
        .bind(now.0)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if created == 1 {
        upsert_member(tx, id, user, false, Seq(1)).await?;
    }
    Ok(())
}

fn refuse_on_company(conversation: &ConversationId, why: &'static str) -> Result<()> {
    if conversation.company_pair().is_some() {
        return Err(ChatError::Conflict(why));
    }
    Ok(())
}

/// Inserts a member whose window starts at `joined`, or reopens the window
/// of a former member.
async fn upsert_member(
    tx: &mut Transaction<'static, Sqlite>,
    conversation: &ConversationId,
    login: &Login,
    admin: bool,
    joined: Seq,
) -> Result<()> {
    let floor = upsert_floor(joined);
    sqlx::query(SQL_UPSERT_MEMBER)
        .bind(conversation.as_str())
        .bind(login.as_str())
        .bind(i64::from(admin))
        .bind(joined.0)
        .bind(floor)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn close_membership(
    tx: &mut Transaction<'static, Sqlite>,
    conversation: &ConversationId,
    login: &Login,
    at: Seq,
) -> Result<()> {
    sqlx::query(
        "UPDATE chat_members SET left_seq = $3, is_admin = 0 \
         WHERE conversation_id = $1 AND login = $2",
    )
    .bind(conversation.as_str())
    .bind(login.as_str())
    .bind(at.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn require_admin(
    tx: &mut Transaction<'static, Sqlite>,
    conversation: &ConversationId,
    by: &Login,
) -> Result<()> {
    if conversation.direct_pair().is_some() {
        return Err(ChatError::Conflict(
            "one-to-one conversations have no admins",
        ));
    }
    let admin: Option<i64> = sqlx::query_scalar(
        "SELECT is_admin FROM chat_members \
         WHERE conversation_id = $1 AND login = $2 AND left_seq IS NULL",
    )
    .bind(conversation.as_str())
    .bind(by.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    match admin {
        Some(1) => Ok(()),
        _ => Err(ChatError::Forbidden),
    }
}

/// Checks that `target` is a live post written by `sender`.
async fn own_post(
    tx: &mut Transaction<'static, Sqlite>,
    sender: &Login,
    conversation: &ConversationId,
    target: Seq,
) -> Result<()> {
    let row: Option<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT sender, payload, deleted FROM chat_messages \
         WHERE conversation_id = $1 AND seq = $2",
    )
    .bind(conversation.as_str())
    .bind(target.0)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((owner, payload, deleted)) = row else {
        return Err(ChatError::NotFound);
    };
    if owner != sender.as_str() {
        return Err(ChatError::Forbidden);
    }
    let is_post = payload
        .as_deref()
        .and_then(|p| serde_json::from_str::<Payload>(p).ok())
        .is_some_and(|p| matches!(p, Payload::Post { .. }));
    if deleted != 0 || !is_post {
        return Err(ChatError::Conflict(
            "only live posts can be edited or deleted",
        ));
    }
    Ok(())
}

/// Web Push subscriptions and settings (`migrations/*_push.sql`).
impl ChatStore {
    /// Stores (or replaces) the push subscription of `device` of `user`.
    /// An endpoint moves with its browser: the same endpoint under another
    /// device or login is dropped, so one browser is never pushed twice.
    pub async fn push_subscribe(
        &self,
        user: &Login,
        device: &DeviceId,
        sub: &Subscription,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM chat_push_subscriptions WHERE endpoint = $1")
            .bind(&sub.endpoint)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO chat_push_subscriptions (login, device, endpoint, p256dh, auth, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (login, device) DO UPDATE SET endpoint = $3, p256dh = $4, auth = $5, \
               created_at = $6",
        )
        .bind(user.as_str())
        .bind(&device.0)
        .bind(&sub.endpoint)
        .bind(sub.p256dh_b64())
        .bind(sub.auth_b64())
        .bind(now.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Drops the push subscription of `device` of `user`; true if there was one.
    pub async fn push_unsubscribe(&self, user: &Login, device: &DeviceId) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let done =
            sqlx::query("DELETE FROM chat_push_subscriptions WHERE login = $1 AND device = $2")
                .bind(user.as_str())
                .bind(&device.0)
                .execute(&mut *conn)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Drops a subscription the push service says is gone (404/410).
    pub async fn push_forget_endpoint(&self, endpoint: &str) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let done = sqlx::query("DELETE FROM chat_push_subscriptions WHERE endpoint = $1")
            .bind(endpoint)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The subscribed devices of `user`, with their subscriptions.
    pub async fn push_subscriptions(&self, user: &Login) -> Result<Vec<(DeviceId, Subscription)>> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT device, endpoint, p256dh, auth FROM chat_push_subscriptions \
             WHERE login = $1 ORDER BY device",
        )
        .bind(user.as_str())
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|r| {
                let device: String = r.try_get("device")?;
                let endpoint: String = r.try_get("endpoint")?;
                let p256dh: String = r.try_get("p256dh")?;
                let auth: String = r.try_get("auth")?;
                let sub = Subscription::parse(&endpoint, &p256dh, &auth)
                    .map_err(|e| ChatError::Corrupt(format!("push subscription: {e}")))?;
                Ok((DeviceId(device), sub))
            })
            .collect()
    }

    /// Every subscribed device of `users`, with whether its user allowed
    /// previews: one query, however many offline members a group has.
    pub async fn push_targets(
        &self,
        users: &[Login],
    ) -> Result<Vec<(Login, DeviceId, Subscription, bool)>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await?;
        let mut q = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT s.login, s.device, s.endpoint, s.p256dh, s.auth, \
               COALESCE(p.preview, 0) AS preview \
             FROM chat_push_subscriptions s \
             LEFT JOIN chat_push_settings p ON p.login = s.login WHERE s.login IN (",
        );
        let mut list = q.separated(", ");
        for u in users {
            list.push_bind(u.as_str());
        }
        q.push(") ORDER BY s.login, s.device");
        let rows = q.build().fetch_all(&mut *conn).await?;
        rows.iter()
            .map(|r| {
                let device: String = r.try_get("device")?;
                let endpoint: String = r.try_get("endpoint")?;
                let p256dh: String = r.try_get("p256dh")?;
                let auth: String = r.try_get("auth")?;
                let preview: i64 = r.try_get("preview")?;
                let sub = Subscription::parse(&endpoint, &p256dh, &auth)
                    .map_err(|e| ChatError::Corrupt(format!("push subscription: {e}")))?;
                Ok((login_col(r, "login")?, DeviceId(device), sub, preview != 0))
            })
            .collect()
    }

    /// Sets whether `user`'s notifications may carry a text preview.
    pub async fn set_push_preview(&self, user: &Login, on: bool) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query(
            "INSERT INTO chat_push_settings (login, preview) VALUES ($1, $2) \
             ON CONFLICT (login) DO UPDATE SET preview = $2",
        )
        .bind(user.as_str())
        .bind(i64::from(on))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Whether `user` allowed previews (default: no).
    pub async fn push_preview(&self, user: &Login) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let on: Option<i64> =
            sqlx::query_scalar("SELECT preview FROM chat_push_settings WHERE login = $1")
                .bind(user.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        Ok(on.unwrap_or(0) != 0)
    }
}
