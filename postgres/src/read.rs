//! Reading: paged, bounded-memory event streams, one statement per read shape
//! (stream or log, forward or backward).

use std::{
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use annals_core::{
    backend::{from_i64, not_found, to_i64},
    Direction, EventId, EventStream, ReadAll, ReadStream, RecordedEvent, Result, StreamId, Version,
};
use futures::TryStreamExt;
use sqlx::{postgres::PgArguments, query::Query, Postgres, Row, SqlStr};

use crate::ahead::{paged, Fetched};
use crate::session::on_session;
use crate::{
    connect::Inner,
    error::{bounded, Blocker, ReadBlocked},
    row::{corrupt, decode_event, get, StreamCache, AFTER_EVENT_COLUMNS},
    sql::LogShape,
    Error, PostgresEventStore,
};

/// The two point reads, used by the `Backend` impl (`store.rs`) and by the append
/// path (`append.rs`) off its fast path.
impl PostgresEventStore {
    /// The stream's current version, read now.
    pub(crate) async fn head_version_now(&self, stream: &StreamId) -> Result<Version> {
        let inner = self.inner();
        let doing = "reading a stream version";
        let version = on_session!(inner, doing, |conn| sqlx::query_scalar::<_, i64>(
            inner.queries.stream_version()
        )
        .persistent(inner.prepared())
        .bind(stream.as_str())
        .fetch_one(conn))?;
        Ok(Version::new(from_i64(version, "version")?))
    }

    /// One event by id, read now.
    pub(crate) async fn find_event_now(&self, id: EventId) -> Result<RecordedEvent> {
        let inner = self.inner();
        let doing = "reading an event";
        let row = on_session!(inner, doing, |conn| sqlx::query(inner.queries.get_event())
            .persistent(inner.prepared())
            .bind(*id.as_uuid())
            .fetch_optional(conn))?;
        match row {
            Some(row) => decode_event(&row, &mut StreamCache::default()),
            None => Err(not_found(id)),
        }
    }
}

/// Rows to ask for next: the page size, or fewer if the limit is nearer.
fn page_len(page: u32, remaining: u64) -> i64 {
    i64::from(page).min(i64::try_from(remaining).unwrap_or(i64::MAX))
}

/// Pages grow up to this many times the configured page size…
const MAX_PAGE_GROWTH: u32 = 16;
/// …while a page's events stay under this many bytes (payloads and strings).
const PAGE_BYTES: usize = 8 << 20;

/// About how much memory a page's events hold.
fn page_bytes(events: &[RecordedEvent]) -> usize {
    events
        .iter()
        .map(|e| {
            size_of::<RecordedEvent>() + e.payload.len() + e.event_type.len() + e.content_type.len()
        })
        .sum()
}

/// Where a paged read is: the range still to read (`start..end`, start
/// inclusive, end exclusive), how many events it may still return, and whether
/// the last page was short (nothing more to read).
///
/// Pages start at the configured `page_size` and double after each full page
/// whose events took less than half of [`PAGE_BYTES`], up to
/// [`MAX_PAGE_GROWTH`] times `page_size` (a long replay makes few round trips,
/// a short read or a subscription's first page stays small); a page above
/// [`PAGE_BYTES`] halves the next one, down to `page_size`.
struct Cursor {
    start: i64,
    end: i64,
    remaining: u64,
    direction: Direction,
    done: bool,
    base: u32,
    page: u32,
    /// Matching rows to skip before the first returned one (an
    /// [`EventQuery`](annals_core::EventQuery)'s offset); 0 once a page returned
    /// events.
    skip: u64,
    /// No page has returned events yet.
    first: bool,
}

impl Cursor {
    fn new(
        range: Range<u64>,
        limit: Option<u64>,
        direction: Direction,
        page_size: u32,
    ) -> Result<Self> {
        // Core hands reads ranges within i64; `to_i64` only guards the conversion.
        let start = to_i64(range.start, "read start")?;
        let end = to_i64(range.end, "read end")?;
        Ok(Cursor {
            start,
            end,
            remaining: limit.unwrap_or(u64::MAX),
            direction,
            done: start >= end,
            base: page_size.max(1),
            page: page_size.max(1),
            skip: 0,
            first: true,
        })
    }

    /// Rows to ask for in the next query.
    fn want(&self) -> i64 {
        page_len(self.page, self.remaining)
    }

    /// Sizes the next page after one that returned `events` (`full`: as many
    /// rows as asked for).
    fn resize(&mut self, events: &[RecordedEvent], full: bool) {
        let bytes = page_bytes(events);
        if bytes > PAGE_BYTES {
            self.page = (self.page / 2).max(self.base);
        } else if full && bytes < PAGE_BYTES / 2 {
            self.page = self
                .page
                .saturating_mul(2)
                .min(self.base.saturating_mul(MAX_PAGE_GROWTH));
        }
    }

    fn finished(&self) -> bool {
        self.done || self.remaining == 0 || self.start >= self.end
    }

    /// Moves past a page whose last event is at `last` (a version or position).
    fn advance(&mut self, last: u64, returned: usize) -> Result<()> {
        let last = to_i64(last, "read cursor")?;
        match self.direction {
            Direction::Forward => self.start = last.saturating_add(1),
            Direction::Backward => self.end = last,
        }
        self.remaining = self.remaining.saturating_sub(returned as u64);
        self.skip = 0;
        self.first = false;
        Ok(())
    }
}

/// One stream's events, a page per query (the next fetched ahead, `ahead.rs`).
pub(crate) fn read_stream(inner: &Arc<Inner>, read: &ReadStream) -> EventStream<'static> {
    let cursor = Cursor::new(
        read.versions(),
        read.max_events(),
        read.direction(),
        inner.options.page_size,
    );
    let inner = Arc::clone(inner);
    let stream_id = read.stream().clone();
    paged(cursor, move |cursor| {
        stream_page(Arc::clone(&inner), stream_id.clone(), cursor)
    })
}

/// One page of a stream read at `cursor`, and the cursor after it.
async fn stream_page(
    inner: Arc<Inner>,
    stream_id: StreamId,
    mut cursor: Cursor,
) -> Result<Fetched<Cursor>> {
    if cursor.finished() {
        return Ok(None);
    }
    let want = cursor.want();
    let sql = match cursor.direction {
        Direction::Forward => inner.queries.read_stream_forward(),
        Direction::Backward => inner.queries.read_stream_backward(),
    };
    let events = bounded(inner.options.operation_timeout, async {
        let doing = "reading a stream";
        let mut streams = StreamCache::with(&stream_id);
        let mut events = Vec::with_capacity(usize::try_from(want.min(4096)).unwrap_or(0));
        let mut session = inner.read_session(doing).await?;
        let conn = session.conn().map_err(|e| inner.map_err(e, doing))?;
        let mut rows = sqlx::query(sql)
            .persistent(inner.prepared())
            .bind(stream_id.as_str())
            .bind(cursor.start)
            .bind(cursor.end)
            .bind(want)
            .fetch(conn);
        // Decode while the rest of the page is still arriving.
        while let Some(row) = rows.try_next().await.map_err(|e| inner.map_err(e, doing))? {
            events.push(decode_event(&row, &mut streams)?);
        }
        drop(rows);
        session
            .end(true)
            .await
            .map_err(|e| inner.map_err(e, doing))?;
        Ok(events)
    })
    .await?;
    let Some(last) = events.last() else {
        return Ok(None);
    };
    cursor.advance(last.version.get(), events.len())?;
    cursor.done = i64::try_from(events.len()).unwrap_or(i64::MAX) < want;
    cursor.resize(&events, !cursor.done);
    let next = (!cursor.finished()).then_some(cursor);
    Ok(Some((events, next)))
}

/// A `read_all` filter as bind values.
#[derive(Clone)]
struct LogFilter {
    event_types: Vec<String>,
    prefix: Option<String>,
    /// The stream glob as an anchored POSIX regex.
    regex: Option<String>,
    /// The filter cannot match any stored event.
    matches_nothing: bool,
}

impl LogFilter {
    fn new(read: &ReadAll) -> Self {
        let filter = read.selection();
        // No stored text contains NUL (appends reject it), so a filter value with
        // NUL matches nothing; it is handled here because PostgreSQL rejects NUL in
        // text.
        let prefix = filter.stream_prefix.clone().filter(|p| !p.is_empty());
        let glob = filter.stream_glob.clone();
        let types_given = !filter.event_types.is_empty();
        let event_types: Vec<String> = filter
            .event_types
            .iter()
            .filter(|t| !t.contains('\0'))
            .cloned()
            .collect();
        let matches_nothing = prefix.as_deref().is_some_and(|p| p.contains('\0'))
            || glob.as_deref().is_some_and(|g| g.contains('\0'))
            || (types_given && event_types.is_empty());
        LogFilter {
            event_types,
            prefix,
            regex: glob.as_deref().map(annals_core::pattern::to_regex),
            matches_nothing,
        }
    }
}

impl LogFilter {
    /// The statement shape for this filter (`sql.rs`).
    fn shape(&self) -> LogShape {
        LogShape {
            types: !self.event_types.is_empty(),
            prefix: self.prefix.is_some(),
            glob: self.regex.is_some(),
        }
    }
}

/// A statement being built with its bind values.
pub(crate) type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// What a paged read of the log selects: `read_all`'s [`LogFilter`], or an
/// [`EventQuery`](annals_core::EventQuery) (`event_query.rs`). Its statements take the
/// positions `[$1, $2)` and the page length `$3` and return [`EVENT_COLUMNS`],
/// then the `safe` flag and the `horizon` of `read_all_sql` (`sql.rs`), in
/// position order for the direction; [`read_log`] binds the first three
/// parameters, the selection the rest.
///
/// [`EVENT_COLUMNS`]: crate::row::EVENT_COLUMNS
pub(crate) trait LogSelect: Clone + Send + Sync {
    /// The statement for a page in this direction, skipping `skip` matching rows
    /// first when `skip > 0`; `first`: no page has returned events yet.
    fn statement(&self, inner: &Inner, backward: bool, skip: u64, first: bool) -> SqlStr;

    /// Binds the statement's parameters after `$3`.
    fn bind<'q>(&self, query: PgQuery<'q>, skip: u64) -> PgQuery<'q>;
}

impl LogSelect for LogFilter {
    fn statement(&self, inner: &Inner, backward: bool, _skip: u64, _first: bool) -> SqlStr {
        inner.queries.read_all(self.shape(), backward)
    }

    fn bind<'q>(&self, mut query: PgQuery<'q>, _skip: u64) -> PgQuery<'q> {
        // In the order of the shape's parameters (`LogShape::terms`).
        if !self.event_types.is_empty() {
            query = query.bind(&self.event_types);
        }
        if let Some(prefix) = &self.prefix {
            query = query.bind(prefix.as_str());
        }
        if let Some(regex) = &self.regex {
            query = query.bind(regex.as_str());
        }
        query
    }
}

/// First and longest pause while waiting for committed rows to become safe.
const SETTLE_POLL_MIN: Duration = Duration::from_millis(1);
const SETTLE_POLL_MAX: Duration = Duration::from_millis(25);

/// One page of the log.
struct Page {
    /// The safe rows, in the read's direction, before any unsafe one.
    events: Vec<RecordedEvent>,
    /// Rows the query returned up to (and including) the first unsafe one.
    rows: usize,
    /// The first row that is not yet safe, if the page reached one.
    unsafe_at: Option<i64>,
    /// The statement's `read_horizon()` (from its first row; `None` without rows).
    horizon: Option<i64>,
}

/// What to do with a page that stopped at a row that is not yet safe.
enum Stall {
    /// The row committed after the read began: the read has everything it must
    /// return below it; end here (a tailing reader reads it next time).
    AfterStart,
    /// The row was committed before the read began: wait for the transaction
    /// that holds it back, then error ([`ReadBlocked`]).
    Wait,
    /// The row is visible, yet at or above the first transaction id the
    /// statement's snapshot has not seen: the stored positions are ahead of this
    /// cluster's transaction ids (a restored log, and no store has connected
    /// since to repair the clock). An error, once the rows below are returned.
    ClockBehind,
}

/// The log, a page per query; only events below the safe position (see
/// `sql.rs`), forward or backward.
///
/// A read never ends as if it had reached the end while events committed before
/// it started are held back: it waits for them (`read_settle_timeout`), then
/// fails with [`ReadBlocked`] naming the transaction that holds them back.
/// Events committed after the read started may be left for the next read.
pub(crate) fn read_all(inner: &Arc<Inner>, read: &ReadAll) -> EventStream<'static> {
    let filter = LogFilter::new(read);
    let range = if filter.matches_nothing {
        0..0
    } else {
        read.positions()
    };
    read_log(inner, range, read.max_events(), read.direction(), 0, filter)
}

/// Where a paged log read is: its cursor, and the first statement's horizon
/// (rows at or above it committed after the read began; `None` before the
/// first statement).
type LogState = (Cursor, Option<i64>);

/// The paged, gap-safe read behind [`read_all`] and `EventQuery`s (`event_query.rs`):
/// the rows `filter` selects with positions in `range`, in `direction`, at most
/// `limit`, after skipping `skip` of them; see [`read_all`] for the guarantees.
/// The next page is fetched ahead (`ahead.rs`).
pub(crate) fn read_log<F: LogSelect + 'static>(
    inner: &Arc<Inner>,
    range: Range<u64>,
    limit: Option<u64>,
    direction: Direction,
    skip: u64,
    filter: F,
) -> EventStream<'static> {
    let cursor = Cursor::new(range, limit, direction, inner.options.page_size).map(|mut c| {
        c.skip = skip;
        c
    });
    let inner = Arc::clone(inner);
    paged(cursor.map(|c| (c, None)), move |state| {
        log_step(Arc::clone(&inner), filter.clone(), state)
    })
}

/// The next page of a log read from `state`: the events below the first row
/// that is not yet safe, after waiting (bounded) for rows that committed before
/// the read began to become safe; and the state after them.
async fn log_step<F: LogSelect>(
    inner: Arc<Inner>,
    filter: F,
    (mut cursor, mut start_horizon): LogState,
) -> Result<Fetched<LogState>> {
    let inner = &*inner;
    if cursor.finished() {
        return Ok(None);
    }
    let want = cursor.want();
    let mut stalled_since: Option<Instant> = None;
    let mut warned = false;
    let mut pause = SETTLE_POLL_MIN;
    loop {
        let page = log_page(inner, &cursor, &filter, want).await?;
        let horizon = *start_horizon.get_or_insert(page.horizon.unwrap_or(i64::MAX));
        if cursor.direction == Direction::Backward && horizon < cursor.end {
            // Retried pages and later pages leave out what committed since.
            cursor.end = horizon;
        }
        let stall = page.unsafe_at.map(|at| classify(at, horizon, page.horizon));
        if let Some(last) = page.events.last() {
            cursor.advance(last.position.get(), page.events.len())?;
            let full = i64::try_from(page.rows).unwrap_or(i64::MAX) >= want;
            let clean = stall.is_none();
            cursor.done = match stall {
                None => !full,
                Some(Stall::AfterStart) => true,
                Some(Stall::Wait | Stall::ClockBehind) => false,
            };
            cursor.resize(&page.events, full && clean);
            let next = (!cursor.finished()).then_some((cursor, start_horizon));
            return Ok(Some((page.events, next)));
        }
        let Some(at) = page.unsafe_at else {
            return Ok(None);
        };
        match stall {
            Some(Stall::AfterStart) => return Ok(None),
            Some(Stall::ClockBehind) => return Err(clock_behind(inner, at)),
            _ => {}
        }
        // Committed rows that were there when the read began exist ahead, but
        // an older transaction is still running: wait (bounded) for it rather
        // than return a short read.
        let since = *stalled_since.get_or_insert_with(Instant::now);
        let waited = since.elapsed();
        let settle = inner.options.read_settle_timeout;
        if !warned && waited >= settle / 2 {
            warned = true;
            let blocker = blocker(inner).await;
            tracing::warn!(
                schema = %inner.schema,
                position = at,
                waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                blocker = %describe(&blocker),
                "read_all is held back by a running transaction of this database"
            );
        }
        if waited >= settle {
            let blocked = ReadBlocked {
                position: u64::try_from(at).unwrap_or_default(),
                waited,
                blocker: blocker(inner).await,
            };
            tracing::warn!(schema = %inner.schema, "{blocked}");
            return Err(Error::blocked("reading the global log", blocked));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(SETTLE_POLL_MAX);
    }
}

/// Decides what a page that stopped at the unsafe row `at` means.
fn classify(at: i64, start_horizon: i64, horizon: Option<i64>) -> Stall {
    if horizon.is_some_and(|h| at >= h) {
        Stall::ClockBehind
    } else if at >= start_horizon {
        Stall::AfterStart
    } else {
        Stall::Wait
    }
}

/// The error for a visible row at or above the first transaction id the
/// statement's snapshot has not seen.
fn clock_behind(inner: &Inner, at: i64) -> Error {
    Error::backend(
        "reading the global log",
        format!(
            "the stored event at position {at} is ahead of this cluster's transaction \
             ids (schema `{}`): the log was restored or replicated from another \
             cluster and the position clock was not moved yet; connecting a store \
             to this schema repairs it (docs/backends/postgres.md, \"Moving the log \
             to another cluster\")",
            inner.schema
        ),
    )
}

fn describe(blocker: &Option<Blocker>) -> String {
    blocker
        .as_ref()
        .map_or_else(|| "unidentified".to_owned(), ToString::to_string)
}

/// The oldest running transaction of this database (best effort: `None` if it
/// cannot be found or the query fails).
async fn blocker(inner: &Inner) -> Option<Blocker> {
    let row = bounded(inner.options.operation_timeout, async {
        let doing = "looking up the transaction holding a read back";
        let mut session = inner.read_session(doing).await?;
        let row = match session.conn() {
            Ok(conn) => {
                sqlx::query(inner.queries.read_blocker())
                    .persistent(inner.prepared())
                    .fetch_optional(conn)
                    .await
            }
            Err(e) => Err(e),
        };
        session
            .finish(row)
            .await
            .map_err(|e| inner.map_err(e, doing))
    })
    .await
    .ok()??;
    let xid: i64 = row.try_get("xid").ok()?;
    let running_for: Option<f64> = row.try_get("running_for").ok()?;
    let application_name: Option<String> = row.try_get("application_name").ok()?;
    Some(Blocker {
        xid: u64::try_from(xid).ok()?,
        pid: row.try_get("pid").ok()?,
        database: row.try_get("database").ok()?,
        running_for: running_for
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64),
        state: row.try_get("state").ok()?,
        application_name: application_name.filter(|a| !a.is_empty()),
        prepared_gid: row.try_get("gid").ok()?,
    })
}

/// Reads one page of the log.
async fn log_page<F: LogSelect>(
    inner: &Inner,
    cursor: &Cursor,
    filter: &F,
    want: i64,
) -> Result<Page> {
    let backward = cursor.direction == Direction::Backward;
    let sql = filter.statement(inner, backward, cursor.skip, cursor.first);
    bounded(inner.options.operation_timeout, async {
        let doing = "reading the global log";
        let mut streams = StreamCache::default();
        let mut events = Vec::with_capacity(usize::try_from(want.min(4096)).unwrap_or(0));
        let mut session = inner.read_session(doing).await?;
        let query = sqlx::query(sql)
            .persistent(inner.prepared())
            .bind(cursor.start)
            .bind(cursor.end)
            .bind(want);
        let query = filter.bind(query, cursor.skip);
        let conn = session.conn().map_err(|e| inner.map_err(e, doing))?;
        let mut rows = query.fetch(conn);
        let mut seen = 0_usize;
        let mut unsafe_at = None;
        let mut horizon = None;
        // Decode while the rest of the page is still arriving.
        while let Some(row) = rows.try_next().await.map_err(|e| inner.map_err(e, doing))? {
            seen += 1;
            // Column types are checked on the first row only (`row::get`).
            let checked = seen > 1;
            if horizon.is_none() {
                horizon = Some(
                    row.try_get::<i64, _>(AFTER_EVENT_COLUMNS + 1)
                        .map_err(|e| corrupt("the read horizon", e))?,
                );
            }
            let safe: bool = get(&row, AFTER_EVENT_COLUMNS, checked)
                .map_err(|e| corrupt("the safety flag", e))?;
            if !safe {
                // Never return a row past one that is not yet safe (backward:
                // unsafe rows come first, and the page returns nothing).
                unsafe_at = Some(
                    row.try_get::<i64, _>(0)
                        .map_err(|e| corrupt("position", e))?,
                );
                break;
            }
            events.push(decode_event(&row, &mut streams)?);
        }
        // After stopping at an unsafe row the rest of the page is still
        // coming; ending the session (COMMIT, if it opened a transaction) reads
        // past it first.
        drop(rows);
        session
            .end(true)
            .await
            .map_err(|e| inner.map_err(e, doing))?;
        Ok(Page {
            events,
            rows: seen,
            unsafe_at,
            horizon,
        })
    })
    .await
}
