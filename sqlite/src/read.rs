//! Reads: keyset-paged queries, each page run on a blocking thread and decoded
//! straight into [`RecordedEvent`]s.
//!
//! A read runs as a sequence of short queries ("pages") over a half-open range of
//! versions or positions, `start <= key < end`. Each page narrows the range past the
//! last row it returned: a forward page moves `start` to after it, a backward page
//! (`ORDER BY … DESC`) moves `end` down to it. A page holds a read connection only
//! while SQLite produces its rows, never while the caller processes them, so a slow
//! consumer neither pins a connection nor keeps a read transaction open (which
//! would stop WAL checkpoints and let the `-wal` file grow). After a full page the
//! next one is fetched ahead, while the caller handles the current one. Memory is
//! bounded by two pages: at most [`PAGE_ROWS`] rows and about [`PAGE_BYTES`] of
//! payload (plus one event) each.
//!
//! A page is one closure on a rusqlite connection from [`RusqliteReaders`] (see there
//! for why not sqlx): prepare the cached statement, step the rows, decode each from
//! borrowed column values, return the page. `find_event` runs the same way.

use std::{borrow::Cow, sync::Arc};

use futures::{stream, StreamExt};
use rusqlite::{params_from_iter, types::Value, Connection, ToSql};

use crate::{
    backend,
    readers::RusqliteReaders,
    row::{decode_row, RowCache},
    Direction, Error, EventId, EventStream, ReadAll, ReadStream, RecordedEvent, Result,
    SqliteEventStore,
};

/// Most rows one page returns.
pub(crate) const PAGE_ROWS: usize = 2048;

/// Payload bytes after which a page stops early.
pub(crate) const PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Which number of an event a read pages by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    /// The stream version (`read_stream`).
    Version,
    /// The global position (`read_all`).
    Position,
}

impl Key {
    fn of(self, event: &RecordedEvent) -> u64 {
        match self {
            Key::Version => event.version.get(),
            Key::Position => event.position.get(),
        }
    }
}

/// What stays the same for every page of one read: the page query and the
/// parameters after `?1` (start), `?2` (end) and `?3` (row limit).
#[derive(Debug)]
pub(crate) struct Scan {
    pub(crate) sql: Cow<'static, str>,
    pub(crate) args: Vec<Value>,
    /// Whether the query ends with `OFFSET ?n`, `?n` the parameter after `args`:
    /// the pager binds the read's offset on the first page and 0 on the others.
    pub(crate) offset: bool,
}

/// Where a paged read is: the range still to read, and how many events it may
/// still return.
pub(crate) struct Pager {
    readers: Arc<RusqliteReaders>,
    scan: Arc<Scan>,
    key: Key,
    direction: Direction,
    /// Still to read: `start <= key < end`.
    start: i64,
    end: i64,
    remaining: u64,
    /// Matching events the next page skips first (only the first page skips).
    skip: u64,
    done: bool,
    /// The next page, already being fetched while the caller handles this one.
    ahead: Option<tokio::task::JoinHandle<Result<Page>>>,
}

impl Drop for Pager {
    fn drop(&mut self) {
        // A read dropped mid-way: stop waiting for the page fetched ahead (its
        // closure still finishes and gives its connection back by itself).
        if let Some(ahead) = self.ahead.take() {
            ahead.abort();
        }
    }
}

/// One fetched page, and whether it is the last (it came back short).
type Page = (Vec<RecordedEvent>, bool);

/// Fetches one page of `scan` over `start..end` (at most `rows` rows) on a read
/// connection.
async fn fetch(
    readers: Arc<RusqliteReaders>,
    scan: Arc<Scan>,
    start: i64,
    end: i64,
    rows: usize,
    skip: u64,
) -> Result<Page> {
    readers
        .run("reading events", move |conn| {
            fetch_page(conn, &scan, start, end, rows, skip)
        })
        .await
}

/// A range bound as SQLite's integer; bounds above `i64::MAX` (which core never
/// passes) select nothing more than `i64::MAX` does.
fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Pager {
    pub(crate) fn new(
        store: &SqliteEventStore,
        scan: Scan,
        key: Key,
        direction: Direction,
        range: std::ops::Range<u64>,
        limit: Option<u64>,
    ) -> Self {
        let (start, end) = (bound(range.start), bound(range.end));
        Pager {
            readers: Arc::clone(&store.rusqlite_readers),
            scan: Arc::new(scan),
            key,
            direction,
            start,
            end,
            remaining: limit.unwrap_or(u64::MAX),
            skip: 0,
            done: start >= end || limit == Some(0),
            ahead: None,
        }
    }

    /// Skips the first `offset` matching events (the scan must end with `OFFSET`).
    pub(crate) fn skipping(mut self, offset: u64) -> Self {
        self.skip = offset;
        self
    }

    /// Rows the next page may return.
    fn page_rows(&self) -> usize {
        usize::try_from(self.remaining).map_or(PAGE_ROWS, |r| r.min(PAGE_ROWS))
    }

    /// Fetches the next page (or takes the one fetched ahead); an empty page means
    /// the read is over. After a full page, starts fetching the following one, so
    /// that SQLite produces page *n + 1* on a blocking thread while the caller
    /// handles page *n*: at most two pages are held at once.
    async fn next_page(&mut self) -> Result<Vec<RecordedEvent>> {
        let (page, last) = match self.ahead.take() {
            Some(ahead) => ahead
                .await
                .map_err(|e| Error::backend("reading events", e))??,
            None => {
                let rows = self.page_rows();
                fetch(
                    Arc::clone(&self.readers),
                    Arc::clone(&self.scan),
                    self.start,
                    self.end,
                    rows,
                    self.skip,
                )
                .await?
            }
        };
        self.done = last;
        self.skip = 0;
        if let Some(event) = page.last() {
            let key = backend::to_i64(self.key.of(event), "stored key")?;
            match self.direction {
                Direction::Forward => self.start = key.saturating_add(1),
                Direction::Backward => self.end = key,
            }
        }
        self.remaining = self.remaining.saturating_sub(page.len() as u64);
        if self.remaining == 0 || self.start >= self.end {
            self.done = true;
        }
        if !self.done {
            self.ahead = Some(tokio::spawn(fetch(
                Arc::clone(&self.readers),
                Arc::clone(&self.scan),
                self.start,
                self.end,
                self.page_rows(),
                0,
            )));
        }
        Ok(page)
    }

    pub(crate) fn into_stream(self) -> EventStream<'static> {
        stream::unfold(self, |mut pager| async move {
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
}

/// Runs one page of `scan` over `start..end` on `conn`: at most `rows` rows after
/// skipping `skip` (if the scan has an offset), stopping early after
/// [`PAGE_BYTES`] of payload. Runs on a blocking thread (see
/// [`RusqliteReaders`]). The flag is true if this is the last page (it came back
/// short).
fn fetch_page(
    conn: &Connection,
    scan: &Scan,
    start: i64,
    end: i64,
    rows: usize,
    skip: u64,
) -> Result<(Vec<RecordedEvent>, bool)> {
    let what = "reading events";
    let limit = i64::try_from(rows).unwrap_or(i64::MAX);
    let skip = bound(skip);
    let fixed: [&dyn ToSql; 3] = [&start, &end, &limit];
    let offset: Option<&dyn ToSql> = scan.offset.then_some(&skip);
    let args = fixed
        .into_iter()
        .chain(scan.args.iter().map(|a| a as &dyn ToSql))
        .chain(offset);
    let mut statement = conn
        .prepare_cached(&scan.sql)
        .map_err(|e| Error::backend(what, e))?;
    let mut fetched = statement
        .query(params_from_iter(args))
        .map_err(|e| Error::backend(what, e))?;
    let mut page = Vec::with_capacity(rows);
    let mut bytes = 0usize;
    let mut cache = RowCache::default();
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

impl SqliteEventStore {
    /// One stream's events, paged by version.
    pub(crate) fn stream_events(&self, read: &ReadStream) -> EventStream<'static> {
        let scan = Scan {
            sql: self.sql.stream_page(read.direction()).clone(),
            args: vec![Value::Text(read.stream().as_str().to_owned())],
            offset: false,
        };
        Pager::new(
            self,
            scan,
            Key::Version,
            read.direction(),
            read.versions(),
            read.max_events(),
        )
        .into_stream()
    }

    /// The log's events the read selects, paged by position; the filter is part of
    /// the page query, so it applies before each page's limit.
    pub(crate) fn log_events(&self, read: &ReadAll) -> EventStream<'static> {
        let (sql, args) = self.sql.log_page(read.direction(), read.selection());
        let scan = Scan {
            sql: Cow::Owned(sql),
            args: args.into_iter().map(Value::Text).collect(),
            offset: false,
        };
        Pager::new(
            self,
            scan,
            Key::Position,
            read.direction(),
            read.positions(),
            read.max_events(),
        )
        .into_stream()
    }

    /// One event by id.
    pub(crate) async fn event_by_id(&self, id: EventId) -> Result<RecordedEvent> {
        let what = "reading an event by id";
        let sql = Arc::clone(&self.sql);
        let found = self
            .rusqlite_readers
            .run(what, move |conn| {
                let mut statement = conn
                    .prepare_cached(&sql.get_event)
                    .map_err(|e| Error::backend(what, e))?;
                let mut rows = statement
                    .query([id.as_bytes().as_slice()])
                    .map_err(|e| Error::backend(what, e))?;
                match rows.next().map_err(|e| Error::backend(what, e))? {
                    Some(row) => decode_row(row, &mut RowCache::default()).map(Some),
                    None => Ok(None),
                }
            })
            .await?;
        found.ok_or_else(|| backend::not_found(id))
    }

    /// The stream's current version.
    pub(crate) async fn current_version(&self, stream: &crate::StreamId) -> Result<crate::Version> {
        let version: Option<i64> = sqlx::query_scalar(self.sql.stream_version.clone())
            .bind(stream.as_str())
            .fetch_one(&self.sqlx_readers)
            .await
            .map_err(crate::error::map_sqlx(
                "reading a stream version",
                self.acquire_timeout,
            ))?;
        Ok(crate::Version::new(backend::from_i64(
            version.unwrap_or(0),
            "version",
        )?))
    }
}

/// The query plans of every read and append query, checked against the real
/// (bundled) SQLite; `docs/backends/sqlite.md` quotes them.
#[cfg(test)]
mod plans {
    #![allow(clippy::unwrap_used, clippy::print_stdout)]

    use rusqlite::{params_from_iter, types::Value};

    use crate::{row::EVENT_COLUMNS, sql, Direction, ReadFilter, SqliteEventStore};

    /// The plan of `sql` on a read connection; parameters are NULL.
    async fn plan(store: &SqliteEventStore, sql: &str) -> String {
        plan_with(store, sql, Vec::new()).await
    }

    /// The plan of `sql` with `args` bound from `?1` on (the rest NULL).
    async fn plan_with(store: &SqliteEventStore, sql: &str, mut args: Vec<Value>) -> String {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let plan = store
            .rusqlite_readers
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
        let stream_plan =
            "SEARCH events USING INDEX events_stream_version (stream_id=? AND version>? AND version<?)";
        for direction in [Direction::Forward, Direction::Backward] {
            let p = plan(&store, sql::stream_page(direction)).await;
            assert_eq!(p, stream_plan, "{direction:?}");
        }

        for (direction, log_plan) in [
            (
                Direction::Forward,
                "SEARCH events USING INTEGER PRIMARY KEY (rowid>?)",
            ),
            (
                Direction::Backward,
                "SEARCH events USING INTEGER PRIMARY KEY (rowid<?)",
            ),
        ] {
            let (all, _) = sql::log_page(direction, &ReadFilter::new());
            assert_eq!(plan(&store, &all).await, log_plan, "{direction:?}");
            let (typed, _) = sql::log_page(direction, &ReadFilter::new().event_types(["A", "B"]));
            assert_eq!(plan(&store, &typed).await, log_plan, "{direction:?}");
            let (glob, _) = sql::log_page(direction, &ReadFilter::new().stream_glob("order-*"));
            assert_eq!(plan(&store, &glob).await, log_plan, "{direction:?}");
        }

        // Stream prefixes and globs, with a real page limit bound: SQLite walks the
        // log by position and checks the stream per row (the prefix range could
        // use the (stream_id, version) index plus a sort, which the planner rates
        // more expensive for a 2,048-row page). Never a full scan.
        for direction in [Direction::Forward, Direction::Backward] {
            for filter in [
                ReadFilter::new().stream_prefix("order-"),
                ReadFilter::new().stream_glob("order-*"),
                ReadFilter::new().stream_glob("*-1"),
            ] {
                let (sql, filter_args) = sql::log_page(direction, &filter);
                let mut args = vec![
                    Value::Integer(1),
                    Value::Integer(i64::MAX),
                    Value::Integer(2048),
                ];
                args.extend(filter_args.into_iter().map(Value::Text));
                let p = plan_with(&store, &sql, args).await;
                assert!(!p.contains("SCAN events"), "{p}");
            }
        }

        let by_id = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN (?,?,?)");
        let p = plan(&store, &by_id).await;
        assert_eq!(p, "SEARCH events USING INDEX events_event_id (event_id=?)");
        assert_eq!(plan(&store, &sql::lookup_ids(3)).await, p);
        assert_eq!(
            plan(&store, sql::GET_EVENT).await,
            "SEARCH events USING INDEX events_event_id (event_id=?)"
        );

        let p = plan(&store, &sql::heads(2)).await;
        assert!(p.contains("events_stream_version"), "{p}");
        assert!(!p.contains("SCAN events"), "{p}");
    }
}
