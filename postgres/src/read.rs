//! Reading: row decoding and the paged, bounded-memory event streams.

use std::time::{Duration, Instant};

use annals_core::{
    backend::{from_i64, to_i64},
    EventId, EventStream, Metadata, Position, ReadFilter, RecordedEvent, Result, StreamId,
    Timestamp, Version,
};
use futures::{stream, StreamExt, TryStreamExt};
use sqlx::{
    postgres::{PgRow, PgTypeInfo, PgValueFormat, PgValueRef},
    Decode, Postgres, Row, Type,
};

use crate::{store::Inner, Error};

/// A `timestamptz` decoded straight from PostgreSQL's binary format
/// (microseconds since 2000-01-01 UTC), without the `chrono`/`time` features.
pub(crate) struct PgMicros(pub(crate) i64);

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01).
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

impl Type<Postgres> for PgMicros {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("timestamptz")
    }
}

impl<'r> Decode<'r, Postgres> for PgMicros {
    fn decode(value: PgValueRef<'r>) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        if value.format() != PgValueFormat::Binary {
            return Err("timestamptz in text format is not supported".into());
        }
        let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
        let micros = i64::from_be_bytes(bytes);
        // ±infinity are i64::MAX/MIN; saturate rather than overflow.
        Ok(PgMicros(micros.saturating_add(PG_EPOCH_UNIX_MICROS)))
    }
}

fn corrupt(what: &str, err: impl Into<annals_core::BoxError>) -> Error {
    Error::backend(format!("decoding {what} of a stored event"), err)
}

/// Parses stored metadata JSON. Equivalent to [`Metadata::from_json`] for what
/// the store writes, but without serde's `flatten` buffering (this runs per row).
fn decode_metadata(json: &str) -> Result<Metadata> {
    if json == "{}" {
        return Ok(Metadata::default());
    }
    let map: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(json) {
        Ok(map) => map,
        // Anything unusual: let the reference decoder decide (and report).
        Err(_) => return Metadata::from_json(json),
    };
    let mut metadata = Metadata::new();
    for (key, value) in map {
        match (key.as_str(), value) {
            ("correlation_id", serde_json::Value::String(id)) => {
                metadata = metadata.with_correlation_id(id);
            }
            ("causation_id", serde_json::Value::String(id)) => {
                metadata = metadata.with_causation_id(id);
            }
            ("correlation_id" | "causation_id", _) => return Metadata::from_json(json),
            (_, value) => metadata = metadata.with_field(key, value),
        }
    }
    Ok(metadata)
}

/// Remembers the last decoded stream id, so consecutive rows of one stream share
/// it instead of validating and allocating it again.
#[derive(Default)]
pub(crate) struct StreamCache(Option<StreamId>);

impl StreamCache {
    pub(crate) fn with(stream: &StreamId) -> Self {
        StreamCache(Some(stream.clone()))
    }

    fn get(&mut self, name: &str) -> Result<StreamId> {
        match &self.0 {
            Some(cached) if cached.as_str() == name => Ok(cached.clone()),
            _ => {
                let id = StreamId::new(name)?;
                self.0 = Some(id.clone());
                Ok(id)
            }
        }
    }
}

/// Decodes one row selected with [`crate::sql`]'s event columns.
pub(crate) fn decode_event(row: &PgRow, streams: &mut StreamCache) -> Result<RecordedEvent> {
    fn get_err(what: &'static str) -> impl Fn(sqlx::Error) -> Error {
        move |e| corrupt(what, e)
    }
    let position: i64 = row.try_get(0).map_err(get_err("position"))?;
    let id: sqlx::types::Uuid = row.try_get(1).map_err(get_err("event id"))?;
    let stream: &str = row.try_get(2).map_err(get_err("stream id"))?;
    let version: i64 = row.try_get(3).map_err(get_err("version"))?;
    let event_type: String = row.try_get(4).map_err(get_err("event type"))?;
    let content_type: String = row.try_get(5).map_err(get_err("content type"))?;
    let payload: Vec<u8> = row.try_get(6).map_err(get_err("payload"))?;
    let metadata: &str = row.try_get(7).map_err(get_err("metadata"))?;
    let recorded_at: PgMicros = row.try_get(8).map_err(get_err("recorded_at"))?;
    Ok(RecordedEvent::new(
        EventId::from_uuid(id),
        streams.get(stream)?,
        Version::new(from_i64(version, "version")?),
        Position::new(from_i64(position, "position")?),
        event_type,
        payload,
        content_type,
        decode_metadata(metadata)?,
        Timestamp::from_unix_micros(recorded_at.0),
    ))
}

/// Runs `fut` under the store's operation timeout.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(Error::Timeout(timeout)))
}

/// Rows to ask for next: the page size, or fewer if the limit is nearer.
fn page_len(page: u32, remaining: u64) -> i64 {
    i64::from(page).min(i64::try_from(remaining).unwrap_or(i64::MAX))
}

struct StreamCursor {
    next: i64,
    remaining: u64,
    done: bool,
}

pub(crate) fn read_stream<'a>(
    inner: &'a Inner,
    stream: &'a StreamId,
    from: Version,
    limit: Option<u64>,
) -> EventStream<'a> {
    let start = to_i64(from.get().max(1), "version");
    let cursor = start.map(|next| StreamCursor {
        next,
        remaining: limit.unwrap_or(u64::MAX),
        done: false,
    });
    stream::try_unfold(Some(cursor), move |cursor| async move {
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        let mut cursor = cursor?;
        if cursor.done || cursor.remaining == 0 {
            return Ok(None);
        }
        let want = page_len(inner.options.page_size, cursor.remaining);
        let events = bounded(inner.options.operation_timeout, async {
            let mut streams = StreamCache::with(stream);
            let mut events = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
            let mut rows = sqlx::query(inner.queries.read_stream())
                .bind(stream.as_str())
                .bind(cursor.next)
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
        cursor.next = to_i64(last.version.get(), "version")?.saturating_add(1);
        cursor.remaining = cursor.remaining.saturating_sub(events.len() as u64);
        cursor.done = i64::try_from(events.len()).unwrap_or(i64::MAX) < want;
        Ok(Some((
            stream::iter(events.into_iter().map(Ok)),
            Some(Ok(cursor)),
        )))
    })
    .try_flatten()
    .boxed()
}

struct AllCursor {
    next: i64,
    remaining: u64,
    done: bool,
    event_types: Vec<String>,
    prefix: Option<String>,
}

/// First and longest pause while waiting for committed rows to become safe.
const SETTLE_POLL_MIN: Duration = Duration::from_millis(1);
const SETTLE_POLL_MAX: Duration = Duration::from_millis(25);

pub(crate) fn read_all(
    inner: &Inner,
    from: Position,
    filter: ReadFilter,
    limit: Option<u64>,
) -> EventStream<'_> {
    let start = to_i64(from.get().max(1), "position");
    // No stored text contains NUL (appends reject it), so a filter value with NUL
    // matches nothing; it is handled here because PostgreSQL rejects NUL in text.
    let prefix = filter.stream_prefix.filter(|p| !p.is_empty());
    let prefix_matches_nothing = prefix.as_deref().is_some_and(|p| p.contains('\0'));
    let types_given = !filter.event_types.is_empty();
    let event_types: Vec<String> = filter
        .event_types
        .into_iter()
        .filter(|t| !t.contains('\0'))
        .collect();
    let matches_nothing = prefix_matches_nothing || (types_given && event_types.is_empty());
    let cursor = start.map(|next| AllCursor {
        next,
        remaining: limit.unwrap_or(u64::MAX),
        done: matches_nothing,
        prefix,
        event_types,
    });
    stream::try_unfold(Some(cursor), move |cursor| async move {
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        let mut cursor = cursor?;
        if cursor.done || cursor.remaining == 0 {
            return Ok(None);
        }
        let want = page_len(inner.options.page_size, cursor.remaining);
        let mut stalled_since: Option<Instant> = None;
        let mut pause = SETTLE_POLL_MIN;
        loop {
            let (events, rows, blocked) = bounded(inner.options.operation_timeout, async {
                let mut streams = StreamCache::default();
                let mut events = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
                let mut rows = sqlx::query(inner.queries.read_all())
                    .bind(cursor.next)
                    .bind(&cursor.event_types)
                    .bind(cursor.prefix.as_deref())
                    .bind(want)
                    .fetch(&inner.pool);
                let mut seen = 0usize;
                let mut blocked = false;
                // Decode while the rest of the page is still arriving.
                while let Some(row) = rows
                    .try_next()
                    .await
                    .map_err(|e| inner.map_err(e, "reading the global log"))?
                {
                    seen += 1;
                    let safe: bool = row.try_get(9).map_err(|e| corrupt("the safety flag", e))?;
                    if !safe {
                        // Never return a row past one that is not yet safe.
                        blocked = true;
                        break;
                    }
                    events.push(decode_event(&row, &mut streams)?);
                }
                Ok((events, seen, blocked))
            })
            .await?;
            if let Some(last) = events.last() {
                cursor.next = to_i64(last.position.get(), "position")?.saturating_add(1);
                cursor.remaining = cursor.remaining.saturating_sub(events.len() as u64);
                cursor.done = !blocked && i64::try_from(rows).unwrap_or(i64::MAX) < want;
                return Ok(Some((
                    stream::iter(events.into_iter().map(Ok)),
                    Some(Ok(cursor)),
                )));
            }
            if !blocked {
                return Ok(None);
            }
            // Committed rows exist ahead, but an older transaction is still running:
            // wait (bounded) for it to finish rather than return a short read.
            let since = *stalled_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= inner.options.read_settle_timeout {
                tracing::debug!(
                    schema = %inner.schema,
                    position = cursor.next,
                    "read_all: committed events are not yet safe to return; ending the read early"
                );
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(SETTLE_POLL_MAX);
        }
    })
    .try_flatten()
    .boxed()
}
