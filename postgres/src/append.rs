//! Appending: one statement (one round trip, autocommit) per batch.
//!
//! The statement reads the stream's version, and only if `expected` allows it
//! inserts the whole batch at the following versions, with positions from the
//! transaction's id (`position_base()`, see the migration) — no lock between
//! appenders. The database decides races: of two appends that read the same
//! version, the `UNIQUE (stream_id, version)` constraint lets one commit and fails
//! the other. Everything off the fast path (a version that does not match, an
//! event id that is already stored) is sorted out here, with extra queries only
//! on that path.

use annals_core::{
    backend::{self, from_i64, to_i64},
    AppendResult, EventId, ExpectedVersion, NewEvent, Position, Result, StreamId, Version,
};
use sqlx::Row;

use crate::{
    error::{classify_write, WriteFailure},
    Error, PostgresEventStore,
};

/// Largest total size of one batch (payloads + metadata + names), in bytes.
///
/// A batch travels as one statement, and PostgreSQL caps one protocol message and
/// one array value at 1 GiB; this bound keeps a batch far below that. Larger
/// batches are [`Error::InvalidInput`]: split them (each call is atomic on its own).
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// Most events in one batch: 2<sup>20</sup> − 1 = 1,048,575.
///
/// A position is `(transaction number) × 2^20 + the event's index in its batch`
/// (docs/backends/postgres.md, "The ordering guarantee"), so one append — one
/// transaction — has room for this many. Larger batches are
/// [`Error::InvalidInput`]: split them (each call is atomic on its own).
pub const MAX_BATCH_EVENTS: usize = (1 << 20) - 1;

/// How often an append is retried when a concurrent append to the same stream took
/// the version it computed but `expected` still allows appending (`Any`,
/// `StreamExists`).
const MAX_ATTEMPTS: usize = 64;

/// The version range a stream must be in to satisfy `expected`.
fn version_range(expected: ExpectedVersion) -> Result<(i64, i64)> {
    Ok(match expected {
        ExpectedVersion::Any => (0, i64::MAX),
        ExpectedVersion::NoStream => (0, 0),
        ExpectedVersion::StreamExists => (1, i64::MAX),
        ExpectedVersion::Exact(v) => {
            let v = to_i64(v.get(), "expected version")?;
            (v, v)
        }
    })
}

fn batch_bytes(events: &[NewEvent], metadata: &[String]) -> usize {
    let events: usize = events
        .iter()
        .map(|e| e.payload.len() + e.event_type.len() + e.content_type.len() + 16)
        .sum();
    events + metadata.iter().map(String::len).sum::<usize>()
}

/// What one attempt found.
enum Outcome {
    /// Written.
    Done(AppendResult),
    /// Nothing written: the stream's version did not satisfy `expected` (when it
    /// was read), or another append took the version first.
    Refused,
    /// Nothing written: an event id is already stored (maybe a re-send).
    IdTaken,
}

impl PostgresEventStore {
    pub(crate) async fn append_now(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        if events.len() > MAX_BATCH_EVENTS {
            return Err(Error::invalid_input(format!(
                "the batch has {} events; one PostgreSQL append takes at most {MAX_BATCH_EVENTS} — split it",
                events.len()
            )));
        }
        let (min, max) = version_range(expected)?;
        let metadata = backend::prepare_batch(&events)?;
        let size = batch_bytes(&events, &metadata);
        if size > MAX_BATCH_BYTES {
            return Err(Error::invalid_input(format!(
                "the batch is {size} bytes; one PostgreSQL append takes at most {MAX_BATCH_BYTES} — split it"
            )));
        }
        if events.is_empty() {
            // A no-op that still answers whether `expected` holds.
            let current = self.stream_version_now(stream).await?;
            backend::check_expected(stream, expected, current)?;
            return Ok(AppendResult::new(current, Vec::new()));
        }
        let mut checked_ids = false;
        for _ in 0..MAX_ATTEMPTS {
            let outcome = self
                .try_append(stream, min, max, &events, &metadata)
                .await?;
            let refused = match outcome {
                Outcome::Done(result) => return Ok(result),
                Outcome::Refused => true,
                Outcome::IdTaken => false,
            };
            // A re-sent append (its response was lost) fails the version check or
            // trips over its own ids; either way, if the ids are stored, answer as
            // the original append did. Checked once: ids never disappear.
            if !checked_ids || !refused {
                checked_ids = true;
                let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
                let stored = self.events_by_ids(&ids).await?;
                if let Some(original) =
                    backend::replayed_append(stream, expected, &events, &stored)?
                {
                    return Ok(original);
                }
            }
            let actual = self.stream_version_now(stream).await?;
            backend::check_expected(stream, expected, actual)?;
            // `expected` allows the stream's new version: try again on top of it.
        }
        Err(Error::backend(
            format!("appending to `{stream}` kept racing with concurrent appends"),
            format!("gave up after {MAX_ATTEMPTS} attempts"),
        ))
    }

    /// One attempt: the append statement.
    async fn try_append(
        &self,
        stream: &StreamId,
        min: i64,
        max: i64,
        events: &[NewEvent],
        metadata: &[String],
    ) -> Result<Outcome> {
        let inner = self.inner();
        let query = match (events, metadata) {
            // The common case — one command, one event — binds plain values: no
            // arrays to build, encode and unnest.
            ([event], [metadata]) => sqlx::query(inner.queries.append_one())
                .bind(stream.as_str())
                .bind(min)
                .bind(max)
                .bind(*event.id.as_uuid())
                .bind(event.event_type.as_str())
                .bind(event.content_type.as_str())
                .bind(event.payload.as_slice())
                .bind(metadata.as_str()),
            _ => sqlx::query(inner.queries.append())
                .bind(stream.as_str())
                .bind(min)
                .bind(max)
                .bind(events.iter().map(|e| *e.id.as_uuid()).collect::<Vec<_>>())
                .bind(
                    events
                        .iter()
                        .map(|e| e.event_type.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    events
                        .iter()
                        .map(|e| e.content_type.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    events
                        .iter()
                        .map(|e| e.payload.as_slice())
                        .collect::<Vec<_>>(),
                )
                .bind(metadata),
        };
        let conn = inner
            .pool
            .acquire()
            .await
            .map_err(|e| inner.map_err(e, "appending events"))?;
        let mut conn = AbandonGuard(Some(conn));
        let rows = match conn.0.as_mut() {
            Some(pooled) => query.fetch_all(&mut **pooled).await,
            None => Err(sqlx::Error::PoolClosed),
        };
        conn.finished();
        let rows = match rows {
            Ok(rows) => rows,
            Err(err) => {
                return match classify_write(err, inner.options.operation_timeout) {
                    WriteFailure::VersionTaken => Ok(Outcome::Refused),
                    WriteFailure::IdTaken => Ok(Outcome::IdTaken),
                    WriteFailure::Other(e) => Err(e),
                }
            }
        };
        if rows.is_empty() {
            return Ok(Outcome::Refused);
        }
        if rows.len() != events.len() {
            return Err(Error::backend(
                "appending events",
                format!(
                    "the database stored {} of {} events in one statement",
                    rows.len(),
                    events.len()
                ),
            ));
        }
        written(&rows).map(Outcome::Done)
    }
}

/// A pooled connection running an append. If the append future is dropped before
/// the statement finished (a client-side timeout), the server may still be
/// running it; the connection is then closed instead of going back to the pool,
/// where the next caller would wait behind the abandoned statement.
struct AbandonGuard(Option<sqlx::pool::PoolConnection<sqlx::Postgres>>);

impl AbandonGuard {
    /// The statement finished (either way): the connection may be reused.
    fn finished(mut self) {
        drop(self.0.take());
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            tracing::debug!("closing a connection whose append was abandoned mid-statement");
            drop(conn.detach());
        }
    }
}

/// The result of a written batch from its `RETURNING version, position` rows.
fn written(rows: &[sqlx::postgres::PgRow]) -> Result<AppendResult> {
    let corrupt = |e: sqlx::Error| Error::backend("decoding the append result", e);
    let mut stored = rows
        .iter()
        .map(|row| Ok((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?)))
        .collect::<std::result::Result<Vec<(i64, i64)>, sqlx::Error>>()
        .map_err(corrupt)?;
    // RETURNING follows insertion order in practice; sort by version to rely on
    // nothing: versions are the batch order.
    stored.sort_unstable();
    let mut current = 0;
    let mut positions = Vec::with_capacity(stored.len());
    for (version, position) in stored {
        current = version;
        positions.push(Position::new(from_i64(position, "position")?));
    }
    Ok(AppendResult::new(
        Version::new(from_i64(current, "version")?),
        positions,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(version_range(ExpectedVersion::Any).unwrap(), (0, i64::MAX));
        assert_eq!(version_range(ExpectedVersion::NoStream).unwrap(), (0, 0));
        assert_eq!(
            version_range(ExpectedVersion::StreamExists).unwrap(),
            (1, i64::MAX)
        );
        assert_eq!(
            version_range(ExpectedVersion::Exact(Version::new(7))).unwrap(),
            (7, 7)
        );
        assert!(
            version_range(ExpectedVersion::Exact(Version::new(u64::MAX)))
                .unwrap_err()
                .is_invalid_input()
        );
    }
}
