//! Appending: one `append_events` call (one statement, one round trip) per batch.

use annals_core::{
    backend::{self, from_i64, to_i64},
    AppendResult, EventId, ExpectedVersion, NewEvent, Position, Result, StreamId, Version,
};
use sqlx::Row;

use crate::{
    error::{classify_write, WriteFailure},
    sql::RELEASE_APPEND_LOCK,
    Error, PostgresEventStore,
};

/// Largest total size of one batch (payloads + metadata + names), in bytes.
///
/// A batch travels as one statement, and PostgreSQL caps one protocol message and
/// one array value at 1 GiB; this bound keeps a batch far below that. Larger
/// batches are [`Error::InvalidInput`]: split them (each call is atomic on its own).
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

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

enum Outcome {
    Done(AppendResult),
    Conflict(Version),
    ExistingIds,
}

impl PostgresEventStore {
    pub(crate) async fn append_now(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let metadata = backend::prepare_batch(&events)?;
        let size = batch_bytes(&events, &metadata);
        if size > MAX_BATCH_BYTES {
            return Err(Error::invalid_input(format!(
                "the batch is {size} bytes; one PostgreSQL append takes at most {MAX_BATCH_BYTES} — split it"
            )));
        }
        let (min, max) = version_range(expected)?;
        for _ in 0..MAX_ATTEMPTS {
            let outcome = match self.call_append(stream, min, max, &events, &metadata).await {
                Ok(outcome) => outcome,
                Err(WriteFailure::VersionTaken) => {
                    // A concurrent append won the race for this version.
                    Outcome::Conflict(self.stream_version_now(stream).await?)
                }
                Err(WriteFailure::IdTaken) => Outcome::ExistingIds,
                Err(WriteFailure::Other(e)) => return Err(e),
            };
            match outcome {
                Outcome::Done(result) => return Ok(result),
                Outcome::Conflict(actual) => {
                    backend::check_expected(stream, expected, actual)?;
                    // `expected` allows the new version: retry on top of it.
                }
                Outcome::ExistingIds => {
                    let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
                    let stored = self.events_by_ids(&ids).await?;
                    if let Some(original) =
                        backend::replayed_append(stream, expected, &events, &stored)?
                    {
                        return Ok(original);
                    }
                    // Not stored after all (cannot normally happen): try again.
                }
            }
        }
        Err(Error::backend(
            format!("appending to `{stream}` kept racing with concurrent appends"),
            format!("gave up after {MAX_ATTEMPTS} attempts"),
        ))
    }

    async fn call_append(
        &self,
        stream: &StreamId,
        min: i64,
        max: i64,
        events: &[NewEvent],
        metadata: &[String],
    ) -> std::result::Result<Outcome, WriteFailure> {
        let inner = self.inner();
        let ids: Vec<sqlx::types::Uuid> = events.iter().map(|e| *e.id.as_uuid()).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let content_types: Vec<&str> = events.iter().map(|e| e.content_type.as_str()).collect();
        let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
        let conn = inner
            .pool
            .acquire()
            .await
            .map_err(|e| WriteFailure::Other(inner.map_err(e, "appending events")))?;
        let mut conn = AppendConnection {
            conn: Some(conn),
            clean: false,
        };
        let Some(pooled) = conn.conn.as_mut() else {
            return Err(WriteFailure::Other(Error::backend(
                "appending events",
                "connection vanished",
            )));
        };
        let result = sqlx::query(inner.queries.append())
            .bind(stream.as_str())
            .bind(min)
            .bind(max)
            .bind(ids)
            .bind(types)
            .bind(content_types)
            .bind(payloads)
            .bind(metadata)
            .fetch_one(&mut **pooled)
            .await;
        match result {
            Ok(row) => {
                conn.clean = true;
                decode_outcome(&row).map_err(WriteFailure::Other)
            }
            Err(err) => {
                // The function releases the append lock on every error path; make
                // sure, or else keep this connection out of the pool.
                let released = sqlx::query(RELEASE_APPEND_LOCK)
                    .bind(&inner.schema)
                    .execute(&mut **pooled)
                    .await;
                conn.clean = released.is_ok();
                Err(classify_write(err, inner.options.operation_timeout))
            }
        }
    }
}

/// A pooled connection used for one append. Unless the append finished cleanly
/// (or the lock was verifiably released after an error), it is detached from the
/// pool and closed on drop — also when the append future is dropped mid-flight
/// (client-side timeout) — so a session that might still hold the append lock is
/// never handed to another caller.
struct AppendConnection {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    clean: bool,
}

impl Drop for AppendConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !self.clean {
                tracing::debug!("closing a connection whose append did not finish cleanly");
                drop(conn.detach());
            }
        }
    }
}

fn decode_outcome(row: &sqlx::postgres::PgRow) -> Result<Outcome> {
    let corrupt = |e: sqlx::Error| Error::backend("decoding the append result", e);
    let status: &str = row.try_get(0).map_err(corrupt)?;
    let current: Option<i64> = row.try_get(1).map_err(corrupt)?;
    let current = Version::new(from_i64(current.unwrap_or(0), "version")?);
    match status {
        "ok" => {
            let positions: Vec<i64> = row
                .try_get::<Option<Vec<i64>>, _>(2)
                .map_err(corrupt)?
                .unwrap_or_default();
            let positions = positions
                .into_iter()
                .map(|p| from_i64(p, "position").map(Position::new))
                .collect::<Result<Vec<_>>>()?;
            Ok(Outcome::Done(AppendResult::new(current, positions)))
        }
        "conflict" => Ok(Outcome::Conflict(current)),
        "existing_ids" => Ok(Outcome::ExistingIds),
        other => Err(Error::backend(
            "decoding the append result",
            format!("unexpected status `{other}`"),
        )),
    }
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
