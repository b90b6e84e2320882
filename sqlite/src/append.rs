//! Appends: requests run on the writer thread (see `writer.rs`) in groups, one
//! `BEGIN IMMEDIATE` transaction per group and one `SAVEPOINT` per request inside it,
//! so a request is all-or-nothing and readers see all of its events or none.
//!
//! Inside its savepoint a request reads the log's last position and the current
//! version of every stream it names (one query; earlier members of the group are
//! visible to it), lets core [`decide`](PreparedAppend::decide), then inserts its rows
//! with multi-row `INSERT`s. A request that fails (conflict, bad input, an id reused
//! for other content) rolls back to its savepoint and fails alone; its neighbours
//! commit. The group is acknowledged only after `COMMIT`: if the `COMMIT` (or the
//! transaction) fails, every request that had written rows fails with
//! [`Error::Backend`] saying nothing of it was written.
//!
//! **Stored ids.** Core decides an idempotent re-send from the stored events that
//! share an id with the request. Looking them up costs a query on every append, so
//! the fast path skips it: the `events_event_id` unique index refuses a stored id
//! by itself. The lookup runs only when it can change the answer: when the fast
//! decision is an error (a re-send usually conflicts with its own earlier
//! expectation), or when an insert hits a unique index (then the request rolls back
//! to its savepoint and is decided again, with the lookup).

use annals_core::backend;
use rusqlite::{ffi, Connection};

use crate::{
    row::{decode_row, RowCache},
    sql::Statements,
    writer::Member,
    Committed, Decision, Error, Position, PreparedAppend, RecordedEvent, Result, SqliteEventStore,
    StreamId, Timestamp, Version, WritePlan,
};

/// Rows per multi-row `INSERT` (9 parameters each, far below SQLite's limit of
/// 32,766). A batch of `n ≤ INSERT_CHUNK` events is one statement; each distinct
/// `n` is prepared once per connection and then reused from the statement cache.
const INSERT_CHUNK: usize = 256;

/// Ids per `event_id IN (…)` lookup.
const LOOKUP_CHUNK: usize = 512;

/// Streams per version query (one result column each; SQLite allows 2,000).
const HEADS_CHUNK: usize = 256;

impl SqliteEventStore {
    /// Commits `append` (see the module docs).
    pub(crate) async fn write_append(&self, append: PreparedAppend) -> Result<Committed> {
        self.writer.append(append).await
    }
}

/// Runs a statement without results from the connection's statement cache.
pub(crate) fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Runs `members` in one transaction and answers each of them. Returns true if the
/// connection is left inside a transaction and must be discarded (closing it rolls
/// the transaction back).
pub(crate) fn run_group(conn: &mut Connection, sql: &Statements, members: Vec<Member>) -> bool {
    let what = "appending events";
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let reason = e.to_string();
        for member in members {
            let _ = member.reply.send(Err(Error::backend(
                what,
                format!("starting the transaction failed, nothing was written: {reason}"),
            )));
        }
        return !conn.is_autocommit();
    }
    let mut answers = Vec::with_capacity(members.len());
    let mut broken: Option<String> = None;
    for member in members {
        let answer = match &broken {
            Some(reason) => Err(Error::backend(
                what,
                format!("the transaction failed, nothing was written: {reason}"),
            )),
            None => match one_member(conn, sql, &member.append) {
                Ok(answer) => answer,
                Err(e) => {
                    broken = Some(e.to_string());
                    Err(Error::backend(
                        what,
                        format!("the transaction failed, nothing was written: {e}"),
                    ))
                }
            },
        };
        answers.push((member, answer));
    }
    let wrote = answers
        .iter()
        .any(|(_, answer)| matches!(answer, Ok((_, true))));
    let failure = if wrote && broken.is_none() {
        match exec(conn, "COMMIT") {
            Ok(()) => None,
            Err(e) => Some(format!("COMMIT failed: {e}")),
        }
    } else {
        broken.map(|reason| format!("the transaction failed: {reason}"))
    };
    if !conn.is_autocommit() {
        if let Err(e) = exec(conn, "ROLLBACK") {
            tracing::warn!(error = %e, "rolling back an append group failed");
        }
    }
    for (member, answer) in answers {
        let answer = match (answer, &failure) {
            (Ok((_, true)), Some(reason)) => Err(Error::backend(
                what,
                format!("the transaction was rolled back, nothing of this append was written ({reason})"),
            )),
            (answer, _) => answer.map(|(committed, _)| committed),
        };
        // The caller may have gone away (a cancelled append): the outcome stands.
        let _ = member.reply.send(answer);
    }
    !conn.is_autocommit()
}

const SAVEPOINT: &str = "SAVEPOINT annals_append";
const ROLLBACK_TO: &str = "ROLLBACK TO annals_append";
const RELEASE: &str = "RELEASE annals_append";

/// One request inside its savepoint: its answer, and whether it wrote rows (which
/// the group's `COMMIT` must make durable before it is acknowledged). An `Err` here
/// means the savepoint itself failed: the transaction is unusable.
pub(crate) fn one_member(
    conn: &Connection,
    sql: &Statements,
    append: &PreparedAppend,
) -> rusqlite::Result<Result<(Committed, bool)>> {
    exec(conn, SAVEPOINT)?;
    let mut outcome = decide_and_insert(conn, sql, append, false);
    if matches!(outcome, Ok(Outcome::Refused)) {
        exec(conn, ROLLBACK_TO)?;
        outcome = decide_and_insert(conn, sql, append, true);
    }
    let answer = match outcome {
        Ok(Outcome::Written(committed)) => {
            exec(conn, RELEASE)?;
            return Ok(Ok((committed, true)));
        }
        Ok(Outcome::Unchanged(committed)) => Ok((committed, false)),
        // With the lookup done, a unique violation is reported as a conflict inside
        // `decide_and_insert`; this arm is not reached.
        Ok(Outcome::Refused) => Err(Error::backend(
            "appending events",
            "the insert hit a unique index twice",
        )),
        Err(e) => Err(e),
    };
    exec(conn, ROLLBACK_TO)?;
    exec(conn, RELEASE)?;
    Ok(answer)
}

enum Outcome {
    /// New events were inserted.
    Written(Committed),
    /// Nothing to write (idempotent re-send, or no events).
    Unchanged(Committed),
    /// A unique index refused a row on the fast path; roll back to the savepoint and
    /// decide again with the stored-id lookup.
    Refused,
}

/// The request's checks and writes, inside its savepoint.
fn decide_and_insert(
    conn: &Connection,
    sql: &Statements,
    append: &PreparedAppend,
    look_up_ids: bool,
) -> Result<Outcome> {
    let stored = if look_up_ids {
        stored_with_ids(conn, sql, append)?
    } else {
        Vec::new()
    };
    let heads = heads(conn, sql, append)?;
    let plan = match append.decide(&stored, |s| heads.version(s)) {
        Ok(Decision::Write(plan)) => plan,
        Ok(Decision::Replayed(original)) => return Ok(Outcome::Unchanged(original)),
        // The fast path decided without the stored ids: a re-send (or an id reused
        // for other content) must be answered from them.
        Err(e) if !look_up_ids && append.event_count() > 0 => {
            let stored = stored_with_ids(conn, sql, append)?;
            if stored.is_empty() {
                return Err(e);
            }
            return match append.decide(&stored, |s| heads.version(s))? {
                Decision::Replayed(original) => Ok(Outcome::Unchanged(original)),
                // A stored id always decides a replay or an error; never write here.
                Decision::Write(_) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    if append.event_count() == 0 {
        return Ok(Outcome::Unchanged(append.committed(&plan, &[])?));
    }
    match insert(conn, sql, append, &plan, heads.last_position) {
        Ok(committed) => Ok(Outcome::Written(committed)),
        Err(Insert::Unique) if !look_up_ids => Ok(Outcome::Refused),
        Err(Insert::Unique) => Err(conflict(conn, sql, append)),
        Err(Insert::Failed(e)) => Err(e),
    }
}

/// Why an insert failed.
enum Insert {
    /// A unique index refused a row.
    Unique,
    /// Anything else.
    Failed(Error),
}

impl From<Error> for Insert {
    fn from(e: Error) -> Self {
        Insert::Failed(e)
    }
}

/// True if `e` is a `UNIQUE` or `PRIMARY KEY` constraint violation (by extended
/// result code, not text).
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Inserts the rows of `plan` after `last_position`, positions in request order;
/// returns what the request stored. Values are bound straight from the request
/// (SQLite copies them), on cached multi-row statements.
fn insert(
    conn: &Connection,
    statements: &Statements,
    append: &PreparedAppend,
    plan: &WritePlan,
    last_position: i64,
) -> std::result::Result<Committed, Insert> {
    let what = "inserting events";
    let count = append.event_count();
    let last = i64::try_from(count)
        .ok()
        .and_then(|n| last_position.checked_add(n))
        .ok_or_else(|| Error::invalid_input("the log position would overflow"))?;
    let positions = (last_position + 1..=last)
        .map(|p| backend::from_i64(p, "position").map(Position::new))
        .collect::<Result<Vec<_>>>()?;
    let committed = append.committed(plan, &positions)?;

    let recorded_at = Timestamp::now().as_unix_micros();
    let mut rows = append.rows(plan).peekable();
    let mut position = last_position;
    let mut left = count;
    let failed = |e: rusqlite::Error| {
        if is_unique_violation(&e) {
            Insert::Unique
        } else {
            Insert::Failed(Error::backend(what, e))
        }
    };
    while rows.peek().is_some() {
        let size = INSERT_CHUNK.min(left);
        let text;
        let sql = if size == 1 {
            statements.insert_one.as_ref()
        } else {
            text = statements.insert(size);
            text.as_str()
        };
        let mut statement = conn.prepare_cached(sql).map_err(failed)?;
        let mut index = 0usize;
        for row in rows.by_ref().take(size) {
            position += 1;
            let version = backend::to_i64(row.version.get(), "stream version")?;
            let id = row.event.id.as_bytes();
            let mut bind = |value: &dyn rusqlite::ToSql| {
                index += 1;
                statement.raw_bind_parameter(index, value)
            };
            bind(&position)
                .and_then(|()| bind(&&id[..]))
                .and_then(|()| bind(&row.stream.as_str()))
                .and_then(|()| bind(&version))
                .and_then(|()| bind(&row.event.event_type.as_str()))
                .and_then(|()| bind(&row.event.content_type.as_str()))
                .and_then(|()| bind(&row.event.payload.as_slice()))
                .and_then(|()| bind(&row.metadata))
                .and_then(|()| bind(&recorded_at))
                .map_err(failed)?;
        }
        left -= size;
        statement.raw_execute().map_err(failed)?;
    }
    Ok(committed)
}

/// The one place a `UNIQUE` violation becomes [`Error::Conflict`].
///
/// The request was decided in this transaction, with the stored ids looked up, so
/// a violation means the database changed under us (a writer that bypassed the
/// lock); report the streams' real versions.
fn conflict(conn: &Connection, sql: &Statements, append: &PreparedAppend) -> Error {
    let heads = match heads(conn, sql, append) {
        Ok(heads) => heads,
        Err(e) => return e,
    };
    match append.decide(&[], |s| heads.version(s)) {
        Err(e) => e,
        Ok(_) => match append.parts().first() {
            Some(part) => Error::Conflict {
                stream: part.stream().clone(),
                expected: part.expected(),
                actual: heads.version(part.stream()),
                others: Vec::new(),
            },
            None => Error::backend("appending events", "a unique index refused the rows"),
        },
    }
}

/// The log's last position and the current version of every stream of a request.
struct Heads {
    last_position: i64,
    /// `(stream, version)` in [`PreparedAppend::streams`] order.
    versions: Vec<(StreamId, Version)>,
    /// The same, indexed, for requests naming many streams.
    index: Option<std::collections::HashMap<StreamId, Version>>,
}

impl Heads {
    fn version(&self, stream: &StreamId) -> Version {
        match &self.index {
            Some(index) => index.get(stream).copied(),
            None => self
                .versions
                .iter()
                .find(|(s, _)| s == stream)
                .map(|(_, v)| *v),
        }
        .unwrap_or(Version::ZERO)
    }
}

/// Reads the log's last position and each stream's version: one query per
/// [`HEADS_CHUNK`] streams (one for almost every request).
fn heads(conn: &Connection, statements: &Statements, append: &PreparedAppend) -> Result<Heads> {
    let what = "reading the stream versions";
    let fail = |e| Error::backend(what, e);
    let streams: Vec<&StreamId> = append.streams().collect();
    let mut last_position = 0;
    let mut versions = Vec::with_capacity(streams.len());
    for chunk in streams.chunks(HEADS_CHUNK) {
        let text;
        let sql = match chunk.len() {
            // The one-stream append, without building the text.
            1 => statements.heads_one.as_ref(),
            n => {
                text = statements.heads(n);
                text.as_str()
            }
        };
        let mut statement = conn.prepare_cached(sql).map_err(fail)?;
        for (i, stream) in chunk.iter().enumerate() {
            statement
                .raw_bind_parameter(i + 1, stream.as_str())
                .map_err(fail)?;
        }
        let mut rows = statement.raw_query();
        let row = rows
            .next()
            .map_err(fail)?
            .ok_or_else(|| Error::backend(what, "the query returned no row"))?;
        let position: Option<i64> = row.get(0).map_err(fail)?;
        last_position = position.unwrap_or(0);
        for (i, stream) in chunk.iter().enumerate() {
            let version: Option<i64> = row.get(i + 1).map_err(fail)?;
            let version = Version::new(backend::from_i64(version.unwrap_or(0), "version")?);
            versions.push(((*stream).clone(), version));
        }
    }
    backend::from_i64(last_position, "position")?;
    let index = (versions.len() > 16).then(|| versions.iter().cloned().collect());
    Ok(Heads {
        last_position,
        versions,
        index,
    })
}

/// Already-stored events that share an id with the request.
fn stored_with_ids(
    conn: &Connection,
    sql: &Statements,
    append: &PreparedAppend,
) -> Result<Vec<RecordedEvent>> {
    let what = "looking up event ids";
    let fail = |e| Error::backend(what, e);
    let ids: Vec<_> = append.event_ids().collect();
    let mut stored = Vec::new();
    let mut cache = RowCache::default();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let mut statement = conn
            .prepare_cached(&sql.lookup_ids(chunk.len()))
            .map_err(fail)?;
        for (i, id) in chunk.iter().enumerate() {
            statement
                .raw_bind_parameter(i + 1, &id.as_bytes()[..])
                .map_err(fail)?;
        }
        let mut rows = statement.raw_query();
        while let Some(row) = rows.next().map_err(fail)? {
            stored.push(decode_row(row, &mut cache)?);
        }
    }
    Ok(stored)
}
