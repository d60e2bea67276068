//! [`BatchWriter`]: the group commit of `send` and cursor `ack` frames on a
//! SQLite connection of its own, driven synchronously.
//!
//! Why not sqlx here: sqlx runs each SQLite connection on a worker thread
//! of its own and hands every statement *and every result row* over
//! through a channel, with a wake-up each way. A group commit is a dozen
//! statements or more, so below saturation most of the chat's CPU went to
//! those hand-overs and wake-ups (20% context switches, 44% on sqlx's
//! worker in a profile at 4,000 msgs/s). The writer instead owns a plain
//! `rusqlite` connection on the thread that calls it (the gateway gives it
//! an OS thread), with its statements prepared once and cached: a
//! statement is a function call, so one send is a few cached statements
//! and no multi-row SQL is needed. `rusqlite` 0.39 links the same
//! `libsqlite3-sys` (0.37) as sqlx, so one SQLite library is in the
//! process (`cargo tree -i libsqlite3-sys`). Everything else of the store
//! stays on sqlx, and the sqlx migrations stay the schema's source of
//! truth: the writer opens the file only after [`ChatStore::open_with`]
//! has migrated it.
//!
//! The rules are those of [`ChatStore::send`] and [`ChatStore::ack_sync`]:
//! one transaction per batch (`BEGIN IMMEDIATE`), refusals of one write
//! (`Forbidden`, `Invalid`, …) write nothing and do not affect the others,
//! a storage error rolls the whole batch back. The pragmas are the store's
//! (WAL, `synchronous` as [`StoreOptions::sync_full`], `temp_store=memory`,
//! no checkpoints inside commits with
//! [`StoreOptions::background_checkpoint`]).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, named_params};

use crate::error::{ChatError, Result};
use crate::model::{ConversationId, DeviceId, Login, Message, Payload, Seq, Timestamp};
use crate::store::{
    BatchDone, BatchWrite, ChatStore, SQL_ACK_CURSOR, SQL_ACK_WATERMARKS, SQL_AUDIENCE,
    SQL_DUPLICATE, SQL_INSERT_ENTRY, SQL_NEW_COMPANY, SQL_NEW_DIRECT, SQL_NEXT_SEQ,
    SQL_SENDER_MARKS, SQL_UPSERT_MEMBER, SendRequest, StoreOptions, Stored, Watermark, message_of,
    payload_for, upsert_floor,
};

// Parameters are bound by name: the shared statements number them `$n`
// as sqlx wants, and SQLite numbers named parameters in order of first
// appearance, which is not always `$1, $2, …`.

/// Prepared statements kept per connection (the writer uses about a dozen).
const STATEMENTS: usize = 32;

/// Page cache of the writer's connection, in KiB as `PRAGMA cache_size`
/// wants it (negative). One-to-one posts land all over the
/// `(conversation, seq)` and `(sender, client id)` indexes: with 1,000
/// active conversations a batch touches a leaf of each per conversation,
/// some 10 MB of hot pages, and SQLite's default cache (2 MiB) spilled
/// dirty pages mid-transaction and read pages back at every batch
/// (`pagerStress` and `pread` ~5% of the gateway's profile).
const WRITER_CACHE_KIB: i64 = -32 * 1024;

/// The chat store's group-commit writer on its own connection; see the
/// module docs. Not `Sync`: one thread drives it.
#[derive(Debug)]
pub struct BatchWriter {
    conn: Connection,
    ttl: Option<Duration>,
}

impl From<rusqlite::Error> for ChatError {
    fn from(e: rusqlite::Error) -> Self {
        ChatError::Sqlite(e)
    }
}

impl BatchWriter {
    /// Opens the migrated store file `path` with the store's pragmas.
    pub(crate) fn open(path: &Path, opts: &StoreOptions) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(ChatError::Corrupt(format!(
                "chat store not in WAL mode: {mode}"
            )));
        }
        let sync = if opts.sync_full { "FULL" } else { "NORMAL" };
        conn.pragma_update(None, "synchronous", sync)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        if opts.background_checkpoint {
            // returns the new value as a row
            let _: i64 = conn.query_row("PRAGMA wal_autocheckpoint = 0", [], |r| r.get(0))?;
        }
        Ok(Self {
            conn,
            ttl: opts.undelivered_ttl,
        })
    }

    /// Copies the WAL's committed pages into the database file (`PASSIVE`,
    /// as [`ChatStore::checkpoint`]); returns the WAL's size and the frames
    /// copied, in pages. Between two batches nothing of this writer is in
    /// flight, so the copy reaches the WAL's end unless a reader holds it.
    ///
    /// # Errors
    /// Storage errors.
    pub fn checkpoint(&mut self) -> Result<(i64, i64)> {
        Ok(self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })?)
    }

    /// Sends and cursor acks, in order, in one transaction. Each write gets
    /// its own result; a storage error fails the whole batch and nothing is
    /// stored. Acks are written after the sends (a device can only ack
    /// what an earlier commit stored); a user's acks move their delivered
    /// watermarks to the highest cursor any of their devices acked, and the
    /// watermarks that moved are answered to that user's last ack of the
    /// batch (the receipts carry the final watermark anyway).
    ///
    /// # Errors
    /// Storage errors (the batch is rolled back).
    pub fn write_batch(
        &mut self,
        writes: Vec<BatchWrite>,
        now: Timestamp,
    ) -> Result<Vec<Result<BatchDone>>> {
        let expires = self.ttl.map(|ttl| {
            now.plus_ms(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
                .0
        });
        let tx =
            rusqlite::Transaction::new(&mut self.conn, rusqlite::TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(writes.len());
        let mut acks = Vec::new();
        for (i, w) in writes.into_iter().enumerate() {
            match w {
                BatchWrite::Send(r) => {
                    let res = match r.body.validate() {
                        Ok(()) => send(&tx, r, now, expires),
                        Err(e) => Err(e),
                    };
                    match res {
                        Err(e @ (ChatError::Sqlite(_) | ChatError::Corrupt(_))) => return Err(e),
                        res => out.push(res.map(|st| BatchDone::Stored(Box::new(st)))),
                    }
                }
                BatchWrite::Ack {
                    user,
                    device,
                    cursor,
                } => {
                    out.push(Ok(BatchDone::Marks(Vec::new())));
                    acks.push((i, user, device, cursor));
                }
            }
        }
        if !acks.is_empty() {
            for (i, marks) in write_acks(&tx, &acks)? {
                out[i] = Ok(BatchDone::Marks(marks));
            }
        }
        tx.commit()?;
        Ok(out)
    }
}

impl ChatStore {
    /// A [`BatchWriter`] on a connection of its own to this store's file.
    ///
    /// # Errors
    /// For in-memory stores (another connection would see another
    /// database), and when the file cannot be opened.
    pub fn batch_writer(&self) -> Result<BatchWriter> {
        let path = self.file().ok_or(ChatError::Conflict(
            "an in-memory chat store has no batch writer",
        ))?;
        BatchWriter::open(path, self.options())
    }
}

/// One send, as [`ChatStore::send`]: every refusal comes before the first
/// write, so a refused send leaves nothing in the transaction.
fn send(
    tx: &Transaction<'_>,
    r: SendRequest,
    now: Timestamp,
    expires: Option<i64>,
) -> Result<Stored> {
    let SendRequest {
        sender,
        conversation,
        client_id,
        body,
    } = r;
    let direct = conversation.direct_pair();
    // a retry of an entry stored earlier (or earlier in this batch)
    let dup = tx
        .prepare_cached(SQL_DUPLICATE)?
        .query_row(
            named_params! {"$1": sender.as_str(), "$2": client_id.as_str()},
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    (
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, Option<String>>(5)?,
                        row.get::<_, i64>(6)?,
                        row.get::<_, Option<i64>>(7)?,
                        row.get::<_, i64>(8)?,
                    ),
                ))
            },
        )
        .optional()?;
    if let Some((cursor, parts)) = dup {
        let message = message_of(parts)?;
        if message.conversation != conversation {
            return Err(ChatError::ClientIdReused);
        }
        let audience = match &direct {
            Some((a, b)) => pair(a, b),
            None => audience(tx, &conversation, message.seq)?,
        };
        return Ok(Stored {
            message,
            cursor,
            duplicate: true,
            audience,
        });
    }
    let (seq, known) = if let Some((a, b)) = direct {
        if sender != a && sender != b {
            return Err(ChatError::Forbidden);
        }
        let seq = match next_seq(tx, &conversation, &sender)? {
            Some(seq) => seq,
            None => {
                let created = tx.prepare_cached(SQL_NEW_DIRECT)?.execute(
                    named_params! {"$1": conversation.as_str(), "$2": a.as_str(), "$3": now.0},
                )?;
                if created == 1 {
                    for m in [&a, &b] {
                        upsert_member(tx, &conversation, m)?;
                    }
                }
                next_seq(tx, &conversation, &sender)?.ok_or(ChatError::Forbidden)?
            }
        };
        // nobody joins or leaves a one-to-one conversation
        (seq, Some(pair(&a, &b)))
    } else {
        if let Some((user, _)) = conversation.company_pair() {
            if sender != user {
                return Err(ChatError::Forbidden);
            }
            let created = tx.prepare_cached(SQL_NEW_COMPANY)?.execute(
                named_params! {"$1": conversation.as_str(), "$2": user.as_str(), "$3": now.0},
            )?;
            if created == 1 {
                upsert_member(tx, &conversation, &user)?;
            }
        }
        let seq = next_seq(tx, &conversation, &sender)?.ok_or(ChatError::Forbidden)?;
        (seq, None)
    };
    let payload = Payload::Post { body };
    let (kind, encoded, expires) = payload_for(&conversation, &payload, expires)?;
    let cursor: i64 = tx.prepare_cached(SQL_INSERT_ENTRY)?.query_row(
        named_params! {
            "$1": conversation.as_str(),
            "$2": seq.0,
            "$3": sender.as_str(),
            "$4": client_id.as_str(),
            "$5": kind,
            "$6": encoded,
            "$7": now.0,
            "$8": expires,
        },
        |row| row.get(0),
    )?;
    // the sender has their own message: their watermarks move with it
    tx.prepare_cached(SQL_SENDER_MARKS)?
        .execute(named_params! {"$1": conversation.as_str(), "$2": sender.as_str(), "$3": seq.0})?;
    let audience = match known {
        Some(a) => a,
        None => audience(tx, &conversation, seq)?,
    };
    Ok(Stored {
        message: Message {
            conversation,
            seq,
            sender,
            client_id: client_id.as_str().to_owned(),
            ts: now,
            payload: Some(payload),
            edited_at: None,
            deleted: false,
        },
        cursor,
        duplicate: false,
        audience,
    })
}

/// The two logins of a one-to-one conversation, sorted (one for a note to
/// oneself).
fn pair(a: &Login, b: &Login) -> Vec<Login> {
    let mut v = vec![a.clone(), b.clone()];
    v.sort();
    v.dedup();
    v
}

fn next_seq(
    tx: &Transaction<'_>,
    conversation: &ConversationId,
    sender: &Login,
) -> Result<Option<Seq>> {
    Ok(tx
        .prepare_cached(SQL_NEXT_SEQ)?
        .query_row(
            named_params! {"$1": conversation.as_str(), "$2": sender.as_str()},
            |row| row.get::<_, i64>(0),
        )
        .optional()?
        .map(Seq))
}

/// A member of a conversation just created (joined at seq 1).
fn upsert_member(tx: &Transaction<'_>, conversation: &ConversationId, login: &Login) -> Result<()> {
    let joined = Seq(1);
    tx.prepare_cached(SQL_UPSERT_MEMBER)?
        .execute(named_params! {
            "$1": conversation.as_str(),
            "$2": login.as_str(),
            "$3": 0_i64,
            "$4": joined.0,
            "$5": upsert_floor(joined),
        })?;
    Ok(())
}

fn audience(tx: &Transaction<'_>, conversation: &ConversationId, seq: Seq) -> Result<Vec<Login>> {
    let mut st = tx.prepare_cached(SQL_AUDIENCE)?;
    let rows = st.query_map(
        named_params! {"$1": conversation.as_str(), "$2": seq.0},
        |row| row.get::<_, String>(0),
    )?;
    let mut out = Vec::new();
    for login in rows {
        let login = login?;
        out.push(Login::parse(&login).map_err(|e| ChatError::Corrupt(format!("login: {e}")))?);
    }
    Ok(out)
}

/// The cursor acks of a batch: each device's highest cursor (never moving
/// back), then each user's delivered watermarks up to the highest cursor
/// any of their devices acked; the moved watermarks go to the user's last
/// ack of the batch.
fn write_acks(
    tx: &Transaction<'_>,
    acks: &[(usize, Login, DeviceId, i64)],
) -> Result<Vec<(usize, Vec<Watermark>)>> {
    let mut devices: HashMap<(&str, &str), i64> = HashMap::new();
    // per user: highest cursor, index of the last ack, first appearance
    let mut users: HashMap<&str, (i64, usize)> = HashMap::new();
    let mut order = Vec::new();
    for (i, user, device, cursor) in acks {
        let c = devices.entry((user.as_str(), &device.0)).or_insert(*cursor);
        *c = (*c).max(*cursor);
        let u = users.entry(user.as_str()).or_insert_with(|| {
            order.push(user.as_str());
            (*cursor, *i)
        });
        *u = (u.0.max(*cursor), *i);
    }
    {
        let mut st = tx.prepare_cached(SQL_ACK_CURSOR)?;
        for ((login, device), cursor) in &devices {
            st.execute(named_params! {"$1": login, "$2": device, "$3": cursor})?;
        }
    }
    let mut out = Vec::new();
    let mut st = tx.prepare_cached(SQL_ACK_WATERMARKS)?;
    for user in order {
        let Some(&(cursor, last)) = users.get(user) else {
            continue;
        };
        let rows = st.query_map(named_params! {"$1": user, "$2": cursor}, |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })?;
        let mut marks = Vec::new();
        for row in rows {
            let (conv, login, delivered, read) = row?;
            marks.push(Watermark {
                conversation: ConversationId::parse(&conv)
                    .map_err(|e| ChatError::Corrupt(format!("conversation id: {e}")))?,
                login: Login::parse(&login)
                    .map_err(|e| ChatError::Corrupt(format!("login: {e}")))?,
                delivered: Seq(delivered),
                read: Seq(read),
            });
        }
        out.push((last, marks));
    }
    Ok(out)
}
