//! Reading: paged, bounded-memory event streams, one statement per read shape
//! (stream or log, forward or backward).

use std::{
    ops::Range,
    time::{Duration, Instant},
};

use annals_core::{
    backend::to_i64, Direction, EventStream, ReadAll, ReadStream, RecordedEvent, Result,
};
use futures::{stream, StreamExt, TryStreamExt};
use sqlx::Row;

use crate::{
    connect::Inner,
    error::bounded,
    row::{corrupt, decode_event, StreamCache, AFTER_EVENT_COLUMNS},
};

/// Rows to ask for next: the page size, or fewer if the limit is nearer.
fn page_len(page: u32, remaining: u64) -> i64 {
    i64::from(page).min(i64::try_from(remaining).unwrap_or(i64::MAX))
}

/// Where a paged read is: the range still to read (`start..end`, start
/// inclusive, end exclusive), how many events it may still return, and whether
/// the last page was short (nothing more to read).
struct Cursor {
    start: i64,
    end: i64,
    remaining: u64,
    direction: Direction,
    done: bool,
}

impl Cursor {
    fn new(range: Range<u64>, limit: Option<u64>, direction: Direction) -> Result<Self> {
        // Core hands reads ranges within i64; `to_i64` only guards the conversion.
        let start = to_i64(range.start, "read start")?;
        let end = to_i64(range.end, "read end")?;
        Ok(Cursor {
            start,
            end,
            remaining: limit.unwrap_or(u64::MAX),
            direction,
            done: start >= end,
        })
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
        Ok(())
    }
}

/// One stream's events, a page per query.
pub(crate) fn read_stream<'a>(inner: &'a Inner, read: &ReadStream) -> EventStream<'a> {
    let cursor = Cursor::new(read.versions(), read.max_events(), read.direction());
    let stream_id = read.stream().clone();
    stream::try_unfold(Some(cursor), move |cursor| {
        let stream_id = stream_id.clone();
        async move {
            let Some(cursor) = cursor else {
                return Ok(None);
            };
            let mut cursor = cursor?;
            if cursor.finished() {
                return Ok(None);
            }
            let want = page_len(inner.options.page_size, cursor.remaining);
            let sql = match cursor.direction {
                Direction::Forward => inner.queries.read_stream_forward(),
                Direction::Backward => inner.queries.read_stream_backward(),
            };
            let events = bounded(inner.options.operation_timeout, async {
                let mut streams = StreamCache::with(&stream_id);
                let mut events = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
                let mut rows = sqlx::query(sql)
                    .bind(stream_id.as_str())
                    .bind(cursor.start)
                    .bind(cursor.end)
                    .bind(want)
                    .fetch(&inner.pool);
                // Decode while the rest of the page is still arriving.
                while let Some(row) = rows
                    .try_next()
                    .await
                    .map_err(|e| inner.map_err(e, "reading a stream"))?
                {
                    events.push(decode_event(&row, &mut streams)?);
                }
                Ok(events)
            })
            .await?;
            let Some(last) = events.last() else {
                return Ok(None);
            };
            cursor.advance(last.version.get(), events.len())?;
            cursor.done = i64::try_from(events.len()).unwrap_or(i64::MAX) < want;
            Ok(Some((
                stream::iter(events.into_iter().map(Ok)),
                Some(Ok(cursor)),
            )))
        }
    })
    .try_flatten()
    .boxed()
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

/// First and longest pause while waiting for committed rows to become safe.
const SETTLE_POLL_MIN: Duration = Duration::from_millis(1);
const SETTLE_POLL_MAX: Duration = Duration::from_millis(25);

/// One page of the log: the events to return, how many rows the query gave,
/// and whether it stopped at a row that is not yet safe.
struct Page {
    events: Vec<RecordedEvent>,
    rows: usize,
    blocked: bool,
}

/// The log, a page per query; only events below the safe position (see
/// `sql.rs`), forward or backward.
pub(crate) fn read_all<'a>(inner: &'a Inner, read: &ReadAll) -> EventStream<'a> {
    let filter = LogFilter::new(read);
    let cursor = Cursor::new(read.positions(), read.max_events(), read.direction()).map(|mut c| {
        c.done |= filter.matches_nothing;
        c
    });
    stream::try_unfold(Some(cursor), move |cursor| {
        let filter = filter.clone();
        async move {
            let Some(cursor) = cursor else {
                return Ok(None);
            };
            let mut cursor = cursor?;
            if cursor.finished() {
                return Ok(None);
            }
            let want = page_len(inner.options.page_size, cursor.remaining);
            let mut stalled_since: Option<Instant> = None;
            let mut pause = SETTLE_POLL_MIN;
            loop {
                let page = log_page(inner, &cursor, &filter, want).await?;
                if let Some(last) = page.events.last() {
                    cursor.advance(last.position.get(), page.events.len())?;
                    cursor.done =
                        !page.blocked && i64::try_from(page.rows).unwrap_or(i64::MAX) < want;
                    return Ok(Some((
                        stream::iter(page.events.into_iter().map(Ok)),
                        Some(Ok(cursor)),
                    )));
                }
                if !page.blocked {
                    return Ok(None);
                }
                // Committed rows exist ahead, but an older transaction is still
                // running: wait (bounded) for it to finish rather than return a
                // short read.
                let since = *stalled_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= inner.options.read_settle_timeout {
                    tracing::debug!(
                        schema = %inner.schema,
                        position = cursor.start,
                        "read_all: committed events are not yet safe to return; ending the read early"
                    );
                    return Ok(None);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(SETTLE_POLL_MAX);
            }
        }
    })
    .try_flatten()
    .boxed()
}

/// Reads one page of the log.
async fn log_page(inner: &Inner, cursor: &Cursor, filter: &LogFilter, want: i64) -> Result<Page> {
    let forward = cursor.direction == Direction::Forward;
    let sql = if forward {
        inner.queries.read_all_forward()
    } else {
        inner.queries.read_all_backward()
    };
    bounded(inner.options.operation_timeout, async {
        let mut streams = StreamCache::default();
        let mut events = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        let mut rows = sqlx::query(sql)
            .bind(cursor.start)
            .bind(cursor.end)
            .bind(&filter.event_types)
            .bind(filter.prefix.as_deref())
            .bind(filter.regex.as_deref())
            .bind(want)
            .fetch(&inner.pool);
        let mut seen = 0_usize;
        let mut blocked = false;
        // Decode while the rest of the page is still arriving.
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|e| inner.map_err(e, "reading the global log"))?
        {
            seen += 1;
            // Backward reads select only safe rows; forward reads flag them.
            if forward {
                let safe: bool = row
                    .try_get(AFTER_EVENT_COLUMNS)
                    .map_err(|e| corrupt("the safety flag", e))?;
                if !safe {
                    // Never return a row past one that is not yet safe.
                    blocked = true;
                    break;
                }
            }
            events.push(decode_event(&row, &mut streams)?);
        }
        Ok(Page {
            events,
            rows: seen,
            blocked,
        })
    })
    .await
}
