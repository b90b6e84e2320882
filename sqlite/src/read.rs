//! Reads: keyset-paged queries, each page run on a blocking thread and decoded
//! straight into [`RecordedEvent`]s.
//!
//! A read runs as a sequence of short queries ("pages"), each continuing after the
//! last row the previous one returned (`position > last` / `version > last`). A
//! page holds a read connection only while SQLite produces its rows, never while
//! the caller processes them, so a slow consumer neither pins a connection nor
//! keeps a read transaction open (which would stop WAL checkpoints and let the
//! `-wal` file grow). Memory is bounded by one page: at most [`PAGE_ROWS`] rows and,
//! about [`PAGE_BYTES`] of payload (plus one event).
//!
//! A page is one closure on a rusqlite connection from [`Readers`] (see there for
//! why not sqlx): prepare the cached statement, step the rows, decode each from
//! borrowed column values, return the page. `get_event` runs the same way. The
//! append's stored-id lookup runs on the writer (sqlx) and decodes its rows with
//! the same [`decode_row`].

use std::sync::Arc;

use annals_core::backend;
use futures::{stream, StreamExt};
use rusqlite::{
    params_from_iter,
    types::{FromSqlResult, Value, ValueRef},
    Connection, Row,
};
use sqlx::{sqlite::SqliteRow, Row as _};

use crate::{
    readers::Readers, Error, EventId, EventStream, Metadata, Position, ReadFilter, RecordedEvent,
    Result, SqliteEventStore, StreamId, Timestamp, Version,
};

/// Most rows one page returns.
pub(crate) const PAGE_ROWS: usize = 2048;

/// Payload bytes after which a page stops early.
pub(crate) const PAGE_BYTES: usize = 8 * 1024 * 1024;

/// The columns [`decode_row`] expects, in order.
pub(crate) const EVENT_COLUMNS: &str =
    "position, event_id, stream_id, version, event_type, content_type, payload, metadata, recorded_at";

/// Reuses the last decoded [`StreamId`] and [`Metadata`] when consecutive rows
/// share them (events of one stream, or of one request, come in runs): a clone
/// instead of a validation or a JSON parse per event.
#[derive(Default)]
pub(crate) struct StreamIdCache {
    stream: Option<StreamId>,
    metadata: Option<(String, Metadata)>,
}

impl StreamIdCache {
    fn get(&mut self, name: &str) -> Result<StreamId> {
        if let Some(id) = self.stream.as_ref().filter(|id| id.as_str() == name) {
            return Ok(id.clone());
        }
        let id = StreamId::new(name)
            .map_err(|e| Error::backend(format!("stored stream id `{name}` is invalid"), e))?;
        self.stream = Some(id.clone());
        Ok(id)
    }

    fn metadata(&mut self, json: &str) -> Result<Metadata> {
        if json == "{}" {
            return Ok(Metadata::default());
        }
        if let Some((_, metadata)) = self.metadata.as_ref().filter(|(text, _)| text == json) {
            return Ok(metadata.clone());
        }
        let metadata = Metadata::from_json(json)?;
        self.metadata = Some((json.to_owned(), metadata.clone()));
        Ok(metadata)
    }
}

/// The columns of a stored row, borrowed from the driver's row without copying:
/// reads decode rusqlite rows, the append's stored-id lookup (on the writer) sqlx
/// rows. `name` names the column in the error if the value has the wrong type.
pub(crate) trait StoredRow {
    /// An `INTEGER` column.
    fn int(&self, index: usize, name: &str) -> Result<i64>;
    /// A `TEXT` column.
    fn text(&self, index: usize, name: &str) -> Result<&str>;
    /// A `BLOB` column.
    fn blob(&self, index: usize, name: &str) -> Result<&[u8]>;
}

fn corrupt(name: &str, e: impl Into<crate::BoxError>) -> Error {
    Error::backend(format!("stored event column `{name}` is invalid"), e)
}

impl StoredRow for Row<'_> {
    fn int(&self, index: usize, name: &str) -> Result<i64> {
        rusqlite_column(self, index, name, ValueRef::as_i64)
    }
    fn text(&self, index: usize, name: &str) -> Result<&str> {
        rusqlite_column(self, index, name, ValueRef::as_str)
    }
    fn blob(&self, index: usize, name: &str) -> Result<&[u8]> {
        rusqlite_column(self, index, name, ValueRef::as_blob)
    }
}

fn rusqlite_column<'r, T>(
    row: &'r Row<'_>,
    index: usize,
    name: &str,
    get: impl FnOnce(&ValueRef<'r>) -> FromSqlResult<T>,
) -> Result<T> {
    let value = row.get_ref(index).map_err(|e| corrupt(name, e))?;
    get(&value).map_err(|e| corrupt(name, e))
}

impl StoredRow for SqliteRow {
    fn int(&self, index: usize, name: &str) -> Result<i64> {
        self.try_get(index).map_err(|e| corrupt(name, e))
    }
    fn text(&self, index: usize, name: &str) -> Result<&str> {
        self.try_get(index).map_err(|e| corrupt(name, e))
    }
    fn blob(&self, index: usize, name: &str) -> Result<&[u8]> {
        self.try_get(index).map_err(|e| corrupt(name, e))
    }
}

/// Decodes one row selected with [`EVENT_COLUMNS`].
pub(crate) fn decode_row(
    row: &impl StoredRow,
    streams: &mut StreamIdCache,
) -> Result<RecordedEvent> {
    let position = row.int(0, "position")?;
    let id = row.blob(1, "event_id")?;
    let id = <[u8; 16]>::try_from(id)
        .map_err(|e| Error::backend(format!("stored event id has {} bytes", id.len()), e))?;
    let stream_id = streams.get(row.text(2, "stream_id")?)?;
    let version = row.int(3, "version")?;
    let metadata = streams.metadata(row.text(7, "metadata")?)?;
    Ok(RecordedEvent::new(
        EventId::from_bytes(id),
        stream_id,
        Version::new(backend::from_i64(version, "version")?),
        Position::new(backend::from_i64(position, "position")?),
        row.text(4, "event_type")?.to_owned(),
        row.blob(6, "payload")?.to_vec(),
        row.text(5, "content_type")?.to_owned(),
        metadata,
        Timestamp::from_unix_micros(row.int(8, "recorded_at")?),
    ))
}

/// What a paged read asks for; `after` advances page by page.
#[derive(Clone)]
enum Query {
    Stream { stream: StreamId, after: i64 },
    All { after: i64, filter: ReadFilter },
}

impl Query {
    /// The page query and its parameters, for at most `limit` rows.
    fn sql_and_args(&self, limit: usize) -> (String, Vec<Value>) {
        let text = |s: &str| Value::Text(s.to_owned());
        let limit = Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX));
        match self {
            Query::Stream { stream, after } => (
                format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ? AND version > ? ORDER BY version LIMIT ?"
                ),
                vec![text(stream.as_str()), Value::Integer(*after), limit],
            ),
            Query::All { after, filter } => {
                let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE position > ?");
                let mut args = vec![Value::Integer(*after)];
                if let Some(prefix) = filter.stream_prefix.as_deref().filter(|p| !p.is_empty()) {
                    // Byte-wise prefix as a range the (stream_id, version) index can use.
                    sql.push_str(" AND stream_id >= ?");
                    args.push(text(prefix));
                    if let Some(end) = prefix_end(prefix) {
                        sql.push_str(" AND stream_id < ?");
                        args.push(Value::Text(end));
                    }
                }
                if let Some((first, rest)) = filter.event_types.split_first() {
                    sql.push_str(" AND event_type IN (?");
                    args.push(text(first));
                    for event_type in rest {
                        sql.push_str(",?");
                        args.push(text(event_type));
                    }
                    sql.push(')');
                }
                sql.push_str(" ORDER BY position LIMIT ?");
                args.push(limit);
                (sql, args)
            }
        }
    }

    fn advance(&mut self, last: &RecordedEvent) -> Result<()> {
        match self {
            Query::Stream { after, .. } => *after = backend::to_i64(last.version.get(), "version")?,
            Query::All { after, .. } => *after = backend::to_i64(last.position.get(), "position")?,
        }
        Ok(())
    }
}

/// The smallest string greater than every string that starts with `prefix`, or
/// `None` if there is none. UTF-8 byte order is code point order, so incrementing
/// the last code point that can be incremented (and dropping what follows) works.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Runs one page of `query` on `conn`: at most `rows` rows, stopping early after
/// [`PAGE_BYTES`] of payload. Runs on a blocking thread (see [`Readers`]). The
/// flag is true if this is the last page (it came back short).
fn fetch_page(conn: &Connection, query: &Query, rows: usize) -> Result<(Vec<RecordedEvent>, bool)> {
    let what = "reading events";
    let (sql, args) = query.sql_and_args(rows);
    let mut statement = conn
        .prepare_cached(&sql)
        .map_err(|e| Error::backend(what, e))?;
    let mut fetched = statement
        .query(params_from_iter(args))
        .map_err(|e| Error::backend(what, e))?;
    let mut page = Vec::with_capacity(rows);
    let mut bytes = 0usize;
    let mut cache = StreamIdCache::default();
    while let Some(row) = fetched.next().map_err(|e| Error::backend(what, e))? {
        let event = decode_row(row, &mut cache)?;
        bytes = bytes.saturating_add(event.payload.len());
        page.push(event);
        if bytes >= PAGE_BYTES {
            break;
        }
    }
    let last = page.len() < rows && bytes < PAGE_BYTES;
    Ok((page, last))
}

struct Pager {
    readers: Arc<Readers>,
    query: Query,
    remaining: u64,
    done: bool,
}

impl Pager {
    /// Fetches the next page; an empty page means the read is over.
    async fn next_page(&mut self) -> Result<Vec<RecordedEvent>> {
        let rows = usize::try_from(self.remaining).map_or(PAGE_ROWS, |r| r.min(PAGE_ROWS));
        let query = self.query.clone();
        let (page, last) = self
            .readers
            .run("reading events", move |conn| fetch_page(conn, &query, rows))
            .await?;
        self.done = last;
        if let Some(last) = page.last() {
            self.query.advance(last)?;
        }
        self.remaining = self.remaining.saturating_sub(page.len() as u64);
        if self.remaining == 0 {
            self.done = true;
        }
        Ok(page)
    }
}

fn paged(store: &SqliteEventStore, query: Query, limit: Option<u64>) -> EventStream<'static> {
    let pager = Pager {
        readers: Arc::clone(&store.pages),
        query,
        remaining: limit.unwrap_or(u64::MAX),
        done: limit == Some(0),
    };
    stream::unfold(pager, |mut pager| async move {
        if pager.done {
            return None;
        }
        let page = match pager.next_page().await {
            Ok(page) => page.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => {
                pager.done = true;
                vec![Err(e)]
            }
        };
        if page.is_empty() {
            return None;
        }
        Some((stream::iter(page), pager))
    })
    .flatten()
    .boxed()
}

pub(crate) fn read_stream(
    store: &SqliteEventStore,
    stream: &StreamId,
    from: Version,
    limit: Option<u64>,
) -> EventStream<'static> {
    match backend::to_i64(from.get().saturating_sub(1), "version") {
        Ok(after) => paged(
            store,
            Query::Stream {
                stream: stream.clone(),
                after,
            },
            limit,
        ),
        Err(_) => stream::empty().boxed(),
    }
}

pub(crate) fn read_all(
    store: &SqliteEventStore,
    from: Position,
    filter: ReadFilter,
    limit: Option<u64>,
) -> EventStream<'static> {
    match backend::to_i64(from.get().saturating_sub(1), "position") {
        Ok(after) => paged(store, Query::All { after, filter }, limit),
        Err(_) => stream::empty().boxed(),
    }
}

pub(crate) async fn get_event(store: &SqliteEventStore, id: EventId) -> Result<RecordedEvent> {
    let what = "reading an event by id";
    let found = store
        .pages
        .run(what, move |conn| {
            let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?");
            let mut statement = conn
                .prepare_cached(&sql)
                .map_err(|e| Error::backend(what, e))?;
            let mut rows = statement
                .query([id.as_bytes().as_slice()])
                .map_err(|e| Error::backend(what, e))?;
            match rows.next().map_err(|e| Error::backend(what, e))? {
                Some(row) => decode_row(row, &mut StreamIdCache::default()).map(Some),
                None => Ok(None),
            }
        })
        .await?;
    found.ok_or_else(|| Error::NotFound(format!("event {id}")))
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_code_point() {
        assert_eq!(prefix_end("order-").as_deref(), Some("order."));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), None);
        assert_eq!(prefix_end("é").as_deref(), Some("ê"));
    }

    #[test]
    fn prefix_range_matches_byte_prefix() {
        let prefix = "ab\u{FFFF}";
        let end = prefix_end(prefix).unwrap_or_default();
        for s in ["ab\u{FFFF}", "ab\u{FFFF}zz", "ab\u{FFFF}\u{10FFFF}"] {
            assert!(s >= prefix && s < end.as_str(), "{s:?}");
        }
        for s in ["ab", "ab\u{FFFE}", "ab\u{10000}", "ac"] {
            assert!(!(s >= prefix && s < end.as_str()), "{s:?}");
        }
    }
}

/// The query plans of every read and append query, checked against the real
/// (bundled) SQLite; `docs/backends/sqlite.md` quotes them.
#[cfg(test)]
mod plans {
    #![allow(clippy::unwrap_used, clippy::print_stdout)]

    use rusqlite::{params_from_iter, types::Value};

    use super::{Query, EVENT_COLUMNS};
    use crate::{ReadFilter, SqliteEventStore, StreamId};

    /// The plan of `sql` on a read connection; unbound parameters are NULL.
    async fn plan(store: &SqliteEventStore, sql: &str, mut args: Vec<Value>) -> String {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let plan = store
            .pages
            .run("explaining a query", move |conn| {
                let mut statement = conn.prepare(&explain).unwrap();
                args.resize(statement.parameter_count(), Value::Null);
                let rows = statement
                    .query_map(params_from_iter(args), |row| row.get::<_, String>(3))
                    .unwrap();
                Ok(rows.map(Result::unwrap).collect::<Vec<_>>())
            })
            .await
            .unwrap();
        let plan = plan.join(" / ");
        println!("{sql}\n    -> {plan}");
        plan
    }

    #[tokio::test]
    async fn reads_and_append_checks_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteEventStore::open(dir.path().join("plans.db"))
            .await
            .unwrap();
        let stream = Query::Stream {
            stream: StreamId::new("order-1").unwrap(),
            after: 0,
        };
        let (sql, args) = stream.sql_and_args(100);
        let p = plan(&store, &sql, args).await;
        assert_eq!(
            p,
            "SEARCH events USING INDEX events_stream_version (stream_id=? AND version>?)"
        );

        let all = Query::All {
            after: 0,
            filter: ReadFilter::new(),
        };
        let (sql, args) = all.sql_and_args(100);
        let p = plan(&store, &sql, args).await;
        assert_eq!(p, "SEARCH events USING INTEGER PRIMARY KEY (rowid>?)");

        let typed = Query::All {
            after: 0,
            filter: ReadFilter::new().event_types(["A", "B"]),
        };
        let (sql, args) = typed.sql_and_args(100);
        let p = plan(&store, &sql, args).await;
        assert_eq!(p, "SEARCH events USING INTEGER PRIMARY KEY (rowid>?)");

        let prefixed = Query::All {
            after: 0,
            filter: ReadFilter::new().stream_prefix("order-"),
        };
        let (sql, args) = prefixed.sql_and_args(100);
        let p = plan(&store, &sql, args).await;
        assert!(p.contains("USING"), "{p}");
        assert!(!p.starts_with("SCAN"), "{p}");

        let by_id = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN (?,?,?)");
        let p = plan(&store, &by_id, Vec::new()).await;
        assert_eq!(p, "SEARCH events USING INDEX events_event_id (event_id=?)");

        let heads = "SELECT (SELECT MAX(version) FROM events WHERE stream_id = ?1), (SELECT MAX(position) FROM events)";
        let p = plan(&store, heads, Vec::new()).await;
        assert!(p.contains("events_stream_version"), "{p}");
    }
}
