//! Appends: one `BEGIN IMMEDIATE` transaction on the single writer connection per
//! request, whatever the number of streams, so a request is all-or-nothing and
//! readers see all of its events or none.
//!
//! Inside the transaction: read the log's last position and the current version of
//! every stream the request names (one query), let core
//! [`decide`](PreparedAppend::decide), then insert the rows with multi-row
//! `INSERT`s and commit.
//!
//! **Stored ids.** Core decides an idempotent re-send from the stored events that
//! share an id with the request. Looking them up costs a query on every append, so
//! the fast path skips it: the `events_event_id` unique index refuses a stored id
//! by itself. The lookup runs only when it can change the answer: when the fast
//! decision is an error (a re-send usually conflicts with its own earlier
//! expectation), or when an insert hits a unique index (then the transaction is
//! rolled back and the request decided again in a new one, with the lookup).

use std::sync::Arc;

use annals_core::backend;
use sqlx::{
    sqlite::SqliteArguments, Arguments, AssertSqlSafe, Connection, Row as _, SqliteConnection,
};

use crate::{
    error::is_unique_violation,
    row::{decode_row, RowCache},
    sql, Committed, Decision, Error, Position, PreparedAppend, RecordedEvent, Result,
    SqliteEventStore, StreamId, Timestamp, Version, WritePlan,
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
        let mut writer = self.writer.lock().await?;
        let result = write_on(writer.conn()?, append).await;
        if matches!(result, Err(Error::Backend { .. })) {
            // Whatever broke, start the next write on a fresh connection.
            writer.discard();
        }
        result
    }
}

/// What one transaction attempt ended with.
enum Attempt {
    /// Decided and, if there was anything to write, committed.
    Done(Committed),
    /// The fast path hit a unique index: decide again with the stored-id lookup.
    LookUpIds,
}

async fn write_on(conn: &mut SqliteConnection, append: PreparedAppend) -> Result<Committed> {
    match attempt(conn, &append, false).await? {
        Attempt::Done(committed) => Ok(committed),
        Attempt::LookUpIds => match attempt(conn, &append, true).await? {
            Attempt::Done(committed) => Ok(committed),
            // With the lookup done, a unique violation is reported as a conflict
            // inside `attempt`; this arm is not reached.
            Attempt::LookUpIds => Err(Error::backend(
                "appending events",
                "the insert hit a unique index twice",
            )),
        },
    }
}

/// One transaction: decide, then write or roll back.
async fn attempt(
    conn: &mut SqliteConnection,
    append: &PreparedAppend,
    look_up_ids: bool,
) -> Result<Attempt> {
    let what = "appending events";
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| Error::backend(what, e))?;
    match decide_and_insert(&mut tx, append, look_up_ids).await {
        Ok(Outcome::Written(committed)) => {
            tx.commit().await.map_err(|e| Error::backend(what, e))?;
            Ok(Attempt::Done(committed))
        }
        Ok(Outcome::Unchanged(committed)) => {
            rollback(tx).await;
            Ok(Attempt::Done(committed))
        }
        Ok(Outcome::Refused) => {
            rollback(tx).await;
            Ok(Attempt::LookUpIds)
        }
        Err(e) => {
            rollback(tx).await;
            Err(e)
        }
    }
}

async fn rollback(tx: sqlx::Transaction<'_, sqlx::Sqlite>) {
    if let Err(e) = tx.rollback().await {
        // Nothing was committed; SQLite rolls back when the connection closes.
        tracing::warn!(error = %e, "rolling back an append failed");
    }
}

enum Outcome {
    /// New events were inserted; commit.
    Written(Committed),
    /// Nothing to write (idempotent re-send, or no events); roll back.
    Unchanged(Committed),
    /// A unique index refused a row on the fast path; roll back and retry with the
    /// stored-id lookup.
    Refused,
}

/// The request's checks and writes, inside the transaction.
async fn decide_and_insert(
    conn: &mut SqliteConnection,
    append: &PreparedAppend,
    look_up_ids: bool,
) -> Result<Outcome> {
    let stored = if look_up_ids {
        stored_with_ids(conn, append).await?
    } else {
        Vec::new()
    };
    let heads = heads(conn, append).await?;
    let plan = match append.decide(&stored, |s| heads.version(s)) {
        Ok(Decision::Write(plan)) => plan,
        Ok(Decision::Replayed(original)) => return Ok(Outcome::Unchanged(original)),
        // The fast path decided without the stored ids: a re-send (or an id reused
        // for other content) must be answered from them.
        Err(e) if !look_up_ids && append.event_count() > 0 => {
            let stored = stored_with_ids(conn, append).await?;
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
    match insert(conn, append, &plan, heads.last_position).await {
        Ok(committed) => Ok(Outcome::Written(committed)),
        Err(Insert::Unique) if !look_up_ids => Ok(Outcome::Refused),
        Err(Insert::Unique) => Err(conflict(conn, append).await),
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

/// Inserts the rows of `plan` after `last_position`, positions in request order;
/// returns what the request stored.
///
/// The rows are borrowed (the request stays whole for a retry), so payloads are
/// copied into the statement's arguments; stream ids, event types, content types
/// and metadata are shared across runs of equal values instead.
async fn insert(
    conn: &mut SqliteConnection,
    append: &PreparedAppend,
    plan: &WritePlan,
    last_position: i64,
) -> std::result::Result<Committed, Insert> {
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
    let (mut stream, mut event_type, mut content_type, mut metadata) = (
        Shared::default(),
        Shared::default(),
        Shared::default(),
        Shared::default(),
    );
    let mut rows = append.rows(plan).peekable();
    let mut position = last_position;
    let mut left = count;
    while rows.peek().is_some() {
        let size = INSERT_CHUNK.min(left);
        let mut args = SqliteArguments::default();
        args.reserve(size * sql::INSERT_COLUMNS, 0);
        for row in rows.by_ref().take(size) {
            position += 1;
            bind(&mut args, position)?;
            bind(&mut args, row.event.id.as_bytes().to_vec())?;
            bind(&mut args, stream.get(row.stream.as_str()))?;
            bind(
                &mut args,
                backend::to_i64(row.version.get(), "stream version")?,
            )?;
            bind(&mut args, event_type.get(&row.event.event_type))?;
            bind(&mut args, content_type.get(&row.event.content_type))?;
            bind(&mut args, row.event.payload.as_slice())?;
            bind(&mut args, metadata.get(row.metadata))?;
            bind(&mut args, recorded_at)?;
        }
        left -= size;
        let result = sqlx::query_with(AssertSqlSafe(sql::insert(size)), args)
            .execute(&mut *conn)
            .await;
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(Insert::Unique),
            Err(e) => return Err(Error::backend("inserting events", e).into()),
        }
    }
    Ok(committed)
}

/// The last text bound, shared by the next rows that bind the same text.
#[derive(Default)]
struct Shared(Option<Arc<str>>);

impl Shared {
    fn get(&mut self, text: &str) -> Arc<str> {
        match &self.0 {
            Some(shared) if &**shared == text => Arc::clone(shared),
            _ => {
                let shared: Arc<str> = Arc::from(text);
                self.0 = Some(Arc::clone(&shared));
                shared
            }
        }
    }
}

fn bind<'q, T>(args: &mut SqliteArguments, value: T) -> Result<()>
where
    T: sqlx::Encode<'q, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    args.add(value)
        .map_err(|e| Error::backend("binding an event column", e))
}

/// The one place a `UNIQUE` violation becomes [`Error::Conflict`].
///
/// The request was decided in this transaction, with the stored ids looked up, so
/// a violation means the database changed under us (a writer that bypassed the
/// lock); report the streams' real versions.
async fn conflict(conn: &mut SqliteConnection, append: &PreparedAppend) -> Error {
    let heads = match heads(conn, append).await {
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
async fn heads(conn: &mut SqliteConnection, append: &PreparedAppend) -> Result<Heads> {
    let what = "reading the stream versions";
    let streams: Vec<&StreamId> = append.streams().collect();
    let mut last_position = 0;
    let mut versions = Vec::with_capacity(streams.len());
    for chunk in streams.chunks(HEADS_CHUNK) {
        let mut query = match chunk.len() {
            // The one-stream append, without building the text.
            1 => sqlx::query(sql::HEADS_ONE),
            n => sqlx::query(AssertSqlSafe(sql::heads(n))),
        };
        for stream in chunk {
            query = query.bind(stream.as_str());
        }
        let row = query
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| Error::backend(what, e))?;
        let position: Option<i64> = row.try_get(0).map_err(|e| Error::backend(what, e))?;
        last_position = position.unwrap_or(0);
        for (i, stream) in chunk.iter().enumerate() {
            let version: Option<i64> = row.try_get(i + 1).map_err(|e| Error::backend(what, e))?;
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
async fn stored_with_ids(
    conn: &mut SqliteConnection,
    append: &PreparedAppend,
) -> Result<Vec<RecordedEvent>> {
    let ids: Vec<_> = append.event_ids().collect();
    let mut stored = Vec::new();
    let mut cache = RowCache::default();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let mut query = sqlx::query(AssertSqlSafe(sql::lookup_ids(chunk.len())));
        for id in chunk {
            query = query.bind(id.as_bytes().to_vec());
        }
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| Error::backend("looking up event ids", e))?;
        for row in &rows {
            stored.push(decode_row(row, &mut cache)?);
        }
    }
    Ok(stored)
}
