//! Name search: the index kept next to every user, tenant and sub-name, and
//! the ranked, typo-tolerant query over it.
//!
//! # Index
//!
//! - `search_entries`: one row per callable name, with its normalised
//!   display name (`name_norm`, range-scanned for phrase prefixes) and its
//!   words (for re-scoring candidates without more queries).
//! - `search_words (word, entry_id)`: posting lists; a prefix is a range
//!   scan `word >= q AND word < q || U+10FFFF`.
//! - `search_vocab (word, df)`: the distinct words. Fuzzy matching runs on
//!   this vocabulary, which is far smaller than the entries (a million
//!   companies share a few hundred thousand words), and then maps back to
//!   entries through `search_words`.
//! - `search_grams (gram, word)`: per vocabulary word the word and its
//!   one-character deletions (a deletion neighbourhood, as in SymSpell).
//!   A query looks up its own one- and (for long words) two-character
//!   deletions: that finds every word one edit away, even short ones
//!   ("akme" -> "acme", which share no useful trigram), and most words two
//!   edits away, with exact index lookups. Candidates are then verified
//!   with Damerau-Levenshtein. A padded-trigram index was tried first and
//!   dropped: common trigrams have long posting lists, and reading and
//!   counting them dominated query time at 100k names (`BENCHMARKS.md`).
//!
//! # Ranking
//!
//! 1. `Exact`: the query is the login or `company/sub` path.
//! 2. `Prefix`: every query word is a word, or the start of a word, of the
//!    name or display name (or the query starts the name or display name).
//! 3. `Fuzzy`: some query word matched only within the edit distance of
//!    [`text::max_distance`] (Damerau-Levenshtein). Only computed when the
//!    first two tiers did not fill `limit`.
//!
//! Within a tier: fewer/smaller word penalties first, then shorter names.
//!
//! # Cost
//!
//! A query is 4-10 indexed SQLite statements plus re-scoring at most
//! 1,000 candidate entries in Rust; at 1M names p50 is 2-5 ms
//! (`benches/search.rs`, numbers in `BENCHMARKS.md`).

mod text;

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

pub use text::normalize_words;
use text::{
    damerau_levenshtein, entry_words, gram_keys, max_distance, prefix_upper_bound, query_keys,
    solid_word,
};

use crate::error::{DirectoryError, Result, ResultExt};
use crate::names::{DisplayName, LoginName};
use crate::store::{Directory, millis};

/// Largest `limit` a search honours.
const MAX_LIMIT: usize = 100;
/// Query words considered; the rest are ignored.
const MAX_QUERY_WORDS: usize = 6;
/// Vocabulary words kept per query word and tier.
const VOCAB_PER_WORD: usize = 32;
/// Entries re-scored per tier.
const CANDIDATE_CAP: usize = 1000;
/// Vocabulary words read when collecting fuzzy candidates.
const FUZZY_CANDIDATES: i64 = 4096;

/// What kind of thing a search hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A messenger user.
    User,
    /// A company.
    Tenant,
    /// A `company/sub` entry.
    SubName,
    /// A built-in target (`echo`).
    System,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::User => "user",
            EntryKind::Tenant => "tenant",
            EntryKind::SubName => "subname",
            EntryKind::System => "system",
        }
    }
    fn from_db(s: &str) -> Result<Self> {
        Ok(match s {
            "user" => EntryKind::User,
            "tenant" => EntryKind::Tenant,
            "subname" => EntryKind::SubName,
            "system" => EntryKind::System,
            _ => {
                return Err(DirectoryError::Invalid {
                    field: "entry kind",
                    reason: "unknown stored value",
                });
            }
        })
    }
}

/// How a hit matched, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// The query is the name itself.
    Exact,
    /// Every query word starts a word of the entry.
    Prefix,
    /// Some query word matched with typos.
    Fuzzy {
        /// Total edit distance over the query words.
        distance: u32,
    },
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SearchHit {
    /// The callable name (`acme-bank/support`); a `String` because system
    /// entries such as `echo` are reserved logins.
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Its display name.
    pub display_name: String,
    /// How it matched.
    pub matched: MatchKind,
}

/// A vocabulary word that may satisfy a query word.
#[derive(Debug, Clone)]
struct VocabMatch {
    word: String,
    df: i64,
}

/// Adds an entry to the index inside the caller's transaction.
pub(crate) async fn index_entry(
    conn: &mut SqliteConnection,
    name: &str,
    kind: EntryKind,
    display: &str,
) -> Result<()> {
    let words = entry_words(name, display);
    let solid = solid_word(name);
    let norm = normalize_words(display).join(" ");
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO search_entries (name, kind, display_name, name_norm, words) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(name)
    .bind(kind.as_str())
    .bind(display)
    .bind(&norm)
    .bind(words.join(" "))
    .fetch_one(&mut *conn)
    .await
    .name_taken_on_unique()?;
    for w in &words {
        sqlx::query("INSERT INTO search_words (word, entry_id) VALUES (?, ?)")
            .bind(w)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        let df: i64 = sqlx::query_scalar(
            "INSERT INTO search_vocab (word, df) VALUES (?, 1) \
             ON CONFLICT (word) DO UPDATE SET df = search_vocab.df + 1 RETURNING df",
        )
        .bind(w)
        .fetch_one(&mut *conn)
        .await?;
        if df == 1 && solid.as_ref() != Some(w) {
            for g in gram_keys(w) {
                sqlx::query(
                    "INSERT INTO search_grams (gram, word) VALUES (?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(g)
                .bind(w)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(())
}

/// Removes an entry from the index; a missing entry is not an error.
pub(crate) async fn unindex_entry(conn: &mut SqliteConnection, name: &str) -> Result<()> {
    let row: Option<(i64, String)> =
        sqlx::query_as("DELETE FROM search_entries WHERE name = ? RETURNING id, words")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((id, words)) = row else {
        return Ok(());
    };
    for w in words.split(' ').filter(|w| !w.is_empty()) {
        sqlx::query("DELETE FROM search_words WHERE word = ? AND entry_id = ?")
            .bind(w)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        let df: Option<i64> =
            sqlx::query_scalar("UPDATE search_vocab SET df = df - 1 WHERE word = ? RETURNING df")
                .bind(w)
                .fetch_optional(&mut *conn)
                .await?;
        if df.is_some_and(|d| d <= 0) {
            sqlx::query("DELETE FROM search_vocab WHERE word = ?")
                .bind(w)
                .execute(&mut *conn)
                .await?;
            for g in gram_keys(w) {
                sqlx::query("DELETE FROM search_grams WHERE gram = ? AND word = ?")
                    .bind(g)
                    .bind(w)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Per query word: the penalty of its best match among `entry_words`
/// (0 exact, 1 prefix, 2 + distance fuzzy), or `None`.
fn word_penalty(q: &str, entry_words: &[&str], fuzzy: bool) -> Option<u32> {
    let qlen = q.chars().count();
    let maxd = max_distance(qlen);
    let mut best: Option<u32> = None;
    for w in entry_words {
        let p = if *w == q {
            0
        } else if w.starts_with(q) {
            1
        } else if fuzzy && maxd > 0 && w.chars().count().abs_diff(qlen) <= maxd {
            let d = damerau_levenshtein(q, w);
            if d > maxd {
                continue;
            }
            2 + u32::try_from(d).unwrap_or(u32::MAX - 2)
        } else {
            continue;
        };
        best = Some(best.map_or(p, |b| b.min(p)));
    }
    best
}

/// An entry row loaded for scoring.
type EntryRow = (i64, String, String, String, String, String);

/// Scores one entry; `None` if some query word does not match it.
fn score(
    row: &EntryRow,
    raw: &str,
    qwords: &[String],
    phrase: &str,
    fuzzy: bool,
) -> Option<(MatchKind, u32)> {
    let (_, name, _, _, norm, words) = row;
    let ew: Vec<&str> = words.split(' ').collect();
    let mut total = 0u32;
    let mut distance = 0u32;
    for q in qwords {
        let p = word_penalty(q, &ew, fuzzy)?;
        total += p;
        distance += p.saturating_sub(2);
    }
    let kind = if name == raw {
        MatchKind::Exact
    } else if total <= qwords.len() as u32 && distance == 0
        || name.starts_with(raw)
        || norm.starts_with(phrase)
    {
        MatchKind::Prefix
    } else {
        MatchKind::Fuzzy { distance }
    };
    Some((kind, total))
}

impl Directory {
    /// Finds names by login, display-name words or a typo'd version of them.
    ///
    /// Returns at most `limit` (capped at 100) hits, best first; see the
    /// module docs for the ranking. Queries are trimmed, case- and
    /// diacritic-folded; an empty query gives no hits.
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let limit = limit.min(MAX_LIMIT);
        // Bound the work a hostile query can cause: names are at most
        // 63 + 1 + 63 characters, so longer text can only match as words.
        let query: String = query.chars().take(256).collect();
        let raw = query.trim().to_lowercase();
        let mut qwords = normalize_words(&query);
        qwords.truncate(MAX_QUERY_WORDS);
        for q in &mut qwords {
            if let Some((i, _)) = q.char_indices().nth(64) {
                q.truncate(i);
            }
        }
        if limit == 0 || qwords.is_empty() {
            return Ok(Vec::new());
        }
        let phrase = qwords.join(" ");
        let mut conn = self.pool.acquire().await?;
        let conn = &mut *conn;

        // Tier 1 and 2 candidates: the name itself, names and display names
        // starting with the query, and postings of words the query words start.
        let mut ids: Vec<i64> = Vec::new();
        let direct: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM search_entries WHERE name = ? \
             UNION ALL SELECT id FROM (SELECT id FROM search_entries \
               WHERE name > ? AND name < ? ORDER BY name LIMIT ?) \
             UNION ALL SELECT id FROM (SELECT id FROM search_entries \
               WHERE name_norm >= ? AND name_norm < ? ORDER BY name_norm LIMIT ?)",
        )
        .bind(&raw)
        .bind(&raw)
        .bind(prefix_upper_bound(&raw))
        .bind(limit as i64)
        .bind(&phrase)
        .bind(prefix_upper_bound(&phrase))
        .bind(limit as i64)
        .fetch_all(&mut *conn)
        .await?;
        ids.extend(direct);

        let mut per_word: Vec<Vec<VocabMatch>> = Vec::with_capacity(qwords.len());
        for q in &qwords {
            per_word.push(prefix_vocab(conn, q).await?);
        }
        ids.extend(postings_of_rarest(conn, &per_word).await?);
        let rows = load_rows(conn, &ids).await?;
        let mut hits = Vec::new();
        let mut missed = score_rows(rows, &raw, &qwords, &phrase, false, &mut hits)?;

        if hits.len() < limit {
            // Tier 3: add vocabulary words within edit distance, re-score the
            // candidates that missed without typos, and score the new ones.
            for (q, matches) in qwords.iter().zip(per_word.iter_mut()) {
                let fuzzy = fuzzy_vocab(conn, q).await?;
                let known: HashSet<String> = matches.iter().map(|m| m.word.clone()).collect();
                matches.extend(fuzzy.into_iter().filter(|m| !known.contains(&m.word)));
            }
            let seen: HashSet<i64> = ids.iter().copied().collect();
            let more: Vec<i64> = postings_of_rarest(conn, &per_word)
                .await?
                .into_iter()
                .filter(|i| !seen.contains(i))
                .collect();
            missed.extend(load_rows(conn, &more).await?);
            score_rows(missed, &raw, &qwords, &phrase, true, &mut hits)?;
        }

        hits.sort_by(|a, b| {
            (a.0.matched, a.1, a.0.name.len(), &a.0.name).cmp(&(
                b.0.matched,
                b.1,
                b.0.name.len(),
                &b.0.name,
            ))
        });
        let mut out: Vec<SearchHit> = Vec::with_capacity(limit);
        let mut names = HashSet::new();
        for (h, _) in hits {
            if names.insert(h.name.clone()) {
                out.push(h);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Creates many tenants in one transaction, for imports and the search
    /// benchmark: far faster than [`Directory::create_tenant`] in a loop.
    ///
    /// # Errors
    /// `NameTaken` if any name exists (nothing is then created).
    pub async fn bulk_create_tenants(
        &self,
        items: &[(LoginName, DisplayName)],
        now: std::time::SystemTime,
    ) -> Result<()> {
        let now = millis(now);
        let mut tx = self.write_tx().await?;
        for chunk in items.chunks(2000) {
            bulk_chunk(&mut tx, chunk, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Loads the candidate entries by id.
async fn load_rows(conn: &mut SqliteConnection, ids: &[i64]) -> Result<Vec<EntryRow>> {
    let mut uniq: Vec<i64> = ids.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let mut out = Vec::with_capacity(uniq.len());
    for chunk in uniq.chunks(500) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, name, kind, display_name, name_norm, words FROM search_entries \
             WHERE id IN (",
        );
        let mut sep = qb.separated(", ");
        for id in chunk {
            sep.push_bind(*id);
        }
        qb.push(")");
        out.extend(
            qb.build_query_as::<EntryRow>()
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    Ok(out)
}

/// Scores rows into `hits`; returns the rows some query word missed.
fn score_rows(
    rows: Vec<EntryRow>,
    raw: &str,
    qwords: &[String],
    phrase: &str,
    fuzzy: bool,
    hits: &mut Vec<(SearchHit, u32)>,
) -> Result<Vec<EntryRow>> {
    let mut missed = Vec::new();
    for row in rows {
        match score(&row, raw, qwords, phrase, fuzzy) {
            Some((matched, total)) => {
                let (_, name, kind, display_name, _, _) = row;
                let kind = EntryKind::from_db(&kind)?;
                hits.push((
                    SearchHit {
                        name,
                        kind,
                        display_name,
                        matched,
                    },
                    total,
                ));
            }
            None => missed.push(row),
        }
    }
    Ok(missed)
}

/// One chunk of [`Directory::bulk_create_tenants`] with multi-row inserts.
async fn bulk_chunk(
    conn: &mut SqliteConnection,
    chunk: &[(LoginName, DisplayName)],
    now: i64,
) -> Result<()> {
    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new("INSERT INTO names (name, kind, created_at) ");
    qb.push_values(chunk, |mut b, (n, _)| {
        b.push_bind(n.as_str()).push("'tenant'").push_bind(now);
    });
    qb.build()
        .execute(&mut *conn)
        .await
        .name_taken_on_unique()?;

    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new("INSERT INTO tenants (name, display_name, created_at) ");
    qb.push_values(chunk, |mut b, (n, d)| {
        b.push_bind(n.as_str()).push_bind(d.as_str()).push_bind(now);
    });
    qb.build()
        .execute(&mut *conn)
        .await
        .name_taken_on_unique()?;

    let prepared: Vec<(&str, &str, Vec<String>, String)> = chunk
        .iter()
        .map(|(n, d)| {
            (
                n.as_str(),
                d.as_str(),
                entry_words(n.as_str(), d.as_str()),
                normalize_words(d.as_str()).join(" "),
            )
        })
        .collect();
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO search_entries (name, kind, display_name, name_norm, words) ",
    );
    qb.push_values(&prepared, |mut b, (n, d, w, norm)| {
        b.push_bind(*n)
            .push("'tenant'")
            .push_bind(*d)
            .push_bind(norm.as_str())
            .push_bind(w.join(" "));
    });
    qb.push(" RETURNING id");
    let ids: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
    if ids.len() != prepared.len() {
        return Err(DirectoryError::Invalid {
            field: "bulk insert",
            reason: "row count mismatch",
        });
    }

    let mut postings: Vec<(&str, i64)> = Vec::new();
    let mut df: HashMap<&str, i64> = HashMap::new();
    let mut regular: HashSet<&str> = HashSet::new();
    for ((n, _, words, _), id) in prepared.iter().zip(&ids) {
        let solid = solid_word(n);
        for w in words {
            if solid.as_deref() != Some(w.as_str()) {
                regular.insert(w.as_str());
            }
            postings.push((w.as_str(), *id));
            *df.entry(w.as_str()).or_default() += 1;
        }
    }
    for part in postings.chunks(5000) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO search_words (word, entry_id) ");
        qb.push_values(part, |mut b, (w, id)| {
            b.push_bind(*w).push_bind(*id);
        });
        qb.build().execute(&mut *conn).await?;
    }

    let words: Vec<(&str, i64)> = df.into_iter().collect();
    let mut new_words: Vec<&str> = Vec::new();
    for part in words.chunks(5000) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT word FROM search_vocab WHERE word IN (");
        let mut sep = qb.separated(", ");
        for (w, _) in part {
            sep.push_bind(*w);
        }
        qb.push(")");
        let existing: HashSet<String> = qb
            .build_query_scalar()
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
        new_words.extend(
            part.iter()
                .map(|(w, _)| *w)
                .filter(|w| !existing.contains(*w) && regular.contains(w)),
        );

        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO search_vocab (word, df) ");
        qb.push_values(part, |mut b, (w, n)| {
            b.push_bind(*w).push_bind(*n);
        });
        qb.push(" ON CONFLICT (word) DO UPDATE SET df = search_vocab.df + excluded.df");
        qb.build().execute(&mut *conn).await?;
    }
    let grams: Vec<(String, &str)> = new_words
        .iter()
        .flat_map(|w| gram_keys(w).into_iter().map(move |g| (g, *w)))
        .collect();
    for part in grams.chunks(5000) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO search_grams (gram, word) ");
        qb.push_values(part, |mut b, (g, w)| {
            b.push_bind(g.as_str()).push_bind(*w);
        });
        qb.push(" ON CONFLICT DO NOTHING");
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Vocabulary words equal to or starting with `q`: the exact word first,
/// then the most frequent.
async fn prefix_vocab(conn: &mut SqliteConnection, q: &str) -> Result<Vec<VocabMatch>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT word, df FROM search_vocab WHERE word >= ? AND word < ? ORDER BY word LIMIT 256",
    )
    .bind(q)
    .bind(prefix_upper_bound(q))
    .fetch_all(&mut *conn)
    .await?;
    let mut m: Vec<VocabMatch> = rows
        .into_iter()
        .map(|(word, df)| VocabMatch { word, df })
        .collect();
    m.sort_by_key(|v| (v.word != q, std::cmp::Reverse(v.df)));
    m.truncate(VOCAB_PER_WORD);
    Ok(m)
}

/// Vocabulary words within [`max_distance`] of `q`, closest first.
async fn fuzzy_vocab(conn: &mut SqliteConnection, q: &str) -> Result<Vec<VocabMatch>> {
    let maxd = max_distance(q.chars().count());
    if maxd == 0 {
        return Ok(Vec::new());
    }
    let keys = query_keys(q, maxd);
    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT DISTINCT word FROM search_grams WHERE gram IN (");
    let mut sep = qb.separated(", ");
    for k in &keys {
        sep.push_bind(k.as_str());
    }
    qb.push(") LIMIT ");
    qb.push_bind(FUZZY_CANDIDATES);
    let words: Vec<String> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
    let mut verified: Vec<(usize, String)> = words
        .into_iter()
        .filter_map(|w| {
            let d = damerau_levenshtein(q, &w);
            (d > 0 && d <= maxd).then_some((d, w))
        })
        .collect();
    verified.sort();
    verified.truncate(VOCAB_PER_WORD);
    if verified.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT word, df FROM search_vocab WHERE word IN (");
    let mut sep = qb.separated(", ");
    for (_, w) in &verified {
        sep.push_bind(w.as_str());
    }
    qb.push(")");
    let dfs: HashMap<String, i64> = qb
        .build_query_as::<(String, i64)>()
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    Ok(verified
        .into_iter()
        .map(|(_, word)| {
            let df = dfs.get(&word).copied().unwrap_or(0);
            VocabMatch { word, df }
        })
        .collect())
}

/// Entry ids posted under the matches of the most selective query word
/// (smallest total document frequency), at most [`CANDIDATE_CAP`].
async fn postings_of_rarest(
    conn: &mut SqliteConnection,
    per_word: &[Vec<VocabMatch>],
) -> Result<Vec<i64>> {
    let Some(rarest) = per_word
        .iter()
        .min_by_key(|m| m.iter().map(|v| v.df).sum::<i64>())
    else {
        return Ok(Vec::new());
    };
    if rarest.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT entry_id FROM search_words WHERE word IN (");
    let mut sep = qb.separated(", ");
    for m in rarest {
        sep.push_bind(m.word.as_str());
    }
    qb.push(") LIMIT ");
    qb.push_bind(CANDIDATE_CAP as i64);
    let ids: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
    Ok(ids)
}
