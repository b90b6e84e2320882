//! Appends: one `BEGIN IMMEDIATE` transaction on the single writer connection.

use annals_core::backend;
use sqlx::{sqlite::SqliteArguments, Arguments, AssertSqlSafe, Connection, SqliteConnection};

use crate::{
    error::is_unique_violation,
    read::{decode_row, StreamIdCache, EVENT_COLUMNS},
    AppendResult, Error, ExpectedVersion, NewEvent, Position, RecordedEvent, Result,
    SqliteEventStore, StreamId, Timestamp, Version,
};

/// Rows per multi-row `INSERT` (9 parameters each, far below SQLite's limit of
/// 32,766). A batch of `n ≤ INSERT_CHUNK` events is one statement; each distinct
/// `n` is prepared once per connection and then reused from the statement cache.
const INSERT_CHUNK: usize = 256;

/// Columns bound per inserted event.
const COLUMNS: usize = 9;

/// Ids per `event_id IN (…)` lookup.
const LOOKUP_CHUNK: usize = 512;

pub(crate) async fn append(
    store: &SqliteEventStore,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<AppendResult> {
    let metadata = backend::prepare_batch(&events)?;
    let mut writer = store.writer.lock().await?;
    let result = append_on(writer.conn()?, stream, expected, events, metadata).await;
    if matches!(result, Err(Error::Backend { .. })) {
        // Whatever broke, start the next write on a fresh connection.
        writer.discard();
    }
    result
}

async fn append_on(
    conn: &mut SqliteConnection,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    metadata: Vec<String>,
) -> Result<AppendResult> {
    let what = "appending events";
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| Error::backend(what, e))?;
    match append_in(&mut tx, stream, expected, events, metadata).await {
        Ok(Outcome::Written(result)) => {
            tx.commit().await.map_err(|e| Error::backend(what, e))?;
            Ok(result)
        }
        Ok(Outcome::Unchanged(result)) => {
            rollback(tx).await;
            Ok(result)
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
    Written(AppendResult),
    /// Nothing to write (idempotent re-send or empty batch); roll back.
    Unchanged(AppendResult),
}

/// The append's checks and writes, inside the transaction. The order is the one
/// every backend follows: stored ids → re-send → expected version → write.
async fn append_in(
    conn: &mut SqliteConnection,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    metadata: Vec<String>,
) -> Result<Outcome> {
    let stored = stored_with_ids(conn, &events).await?;
    if let Some(original) = backend::replayed_append(stream, expected, &events, &stored)? {
        return Ok(Outcome::Unchanged(original));
    }
    let (current, last_position) = heads(conn, stream).await?;
    backend::check_expected(stream, expected, current)?;
    if events.is_empty() {
        return Ok(Outcome::Unchanged(AppendResult::new(current, Vec::new())));
    }

    let recorded_at = Timestamp::now().as_unix_micros();
    let overflow = || Error::invalid_input("the stream version or log position would overflow");
    let mut version = backend::to_i64(current.get(), "stream version")?;
    let mut position = backend::to_i64(last_position.get(), "position")?;
    let mut positions = Vec::with_capacity(events.len());
    let mut rows = events.into_iter().zip(metadata).peekable();
    while rows.peek().is_some() {
        let mut args = SqliteArguments::default();
        args.reserve(INSERT_CHUNK.min(rows.len()) * COLUMNS, 0);
        let mut count = 0;
        for (event, metadata) in rows.by_ref().take(INSERT_CHUNK) {
            position = position.checked_add(1).ok_or_else(overflow)?;
            version = version.checked_add(1).ok_or_else(overflow)?;
            positions.push(Position::new(backend::from_i64(position, "position")?));
            bind(&mut args, position)?;
            bind(&mut args, event.id.as_bytes().to_vec())?;
            bind(&mut args, stream.as_str())?;
            bind(&mut args, version)?;
            bind(&mut args, event.event_type)?;
            bind(&mut args, event.content_type)?;
            bind(&mut args, event.payload)?;
            bind(&mut args, metadata)?;
            bind(&mut args, recorded_at)?;
            count += 1;
        }
        let result = sqlx::query_with(AssertSqlSafe(insert_sql(count)), args)
            .execute(&mut *conn)
            .await;
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(conflict(conn, stream, expected).await),
            Err(e) => return Err(Error::backend("inserting events", e)),
        }
    }
    let version = Version::new(backend::from_i64(version, "version")?);
    Ok(Outcome::Written(AppendResult::new(version, positions)))
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
/// The checks above run under the write lock, so a violation means the database
/// changed under us (a writer that bypassed the lock); the `(stream_id, version)`
/// index refused the rows, so report the stream's real version.
async fn conflict(
    conn: &mut SqliteConnection,
    stream: &StreamId,
    expected: ExpectedVersion,
) -> Error {
    match heads(conn, stream).await {
        Ok((actual, _)) => Error::Conflict {
            stream: stream.clone(),
            expected,
            actual,
        },
        Err(e) => e,
    }
}

/// The stream's current version and the log's last position.
async fn heads(conn: &mut SqliteConnection, stream: &StreamId) -> Result<(Version, Position)> {
    let (version, position): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT MAX(version) FROM events WHERE stream_id = ?1), (SELECT MAX(position) FROM events)",
    )
    .bind(stream.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| Error::backend("reading the stream version", e))?;
    Ok((
        Version::new(backend::from_i64(version.unwrap_or(0), "version")?),
        Position::new(backend::from_i64(position.unwrap_or(0), "position")?),
    ))
}

/// Already-stored events that share an id with the batch.
async fn stored_with_ids(
    conn: &mut SqliteConnection,
    events: &[NewEvent],
) -> Result<Vec<RecordedEvent>> {
    let mut stored = Vec::new();
    let mut cache = StreamIdCache::default();
    for chunk in events.chunks(LOOKUP_CHUNK) {
        let mut query = sqlx::query(AssertSqlSafe(lookup_sql(chunk.len())));
        for event in chunk {
            query = query.bind(event.id.as_bytes().to_vec());
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

fn lookup_sql(ids: usize) -> String {
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN (?");
    sql.push_str(&",?".repeat(ids.saturating_sub(1)));
    sql.push(')');
    sql
}

fn insert_sql(rows: usize) -> String {
    const ROW: &str = "(?,?,?,?,?,?,?,?,?)";
    let mut sql = String::with_capacity(120 + rows * (ROW.len() + 1));
    sql.push_str(
        "INSERT INTO events (position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(ROW);
    }
    sql
}
