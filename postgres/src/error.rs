//! Turning sqlx errors into [`annals_core::Error`], in one place.

use std::time::Duration;

use sqlx::error::ErrorKind;

use crate::Error;

/// The unique constraint behind optimistic concurrency (see the migration).
pub(crate) const STREAM_VERSION_KEY: &str = "events_stream_version_key";
/// The unique constraint behind idempotency.
pub(crate) const EVENT_ID_KEY: &str = "events_event_id_key";

/// What a failed write means for the append protocol.
#[derive(Debug)]
pub(crate) enum WriteFailure {
    /// Another append stored one of these versions first: a conflict.
    VersionTaken,
    /// One of these event ids was stored concurrently: check for a re-send.
    IdTaken,
    /// The server aborted the statement to break a lock cycle or a serialization
    /// failure (SQLSTATE 40P01, 40001): nothing was written, try again.
    Retry,
    /// Anything else.
    Other(Error),
}

/// Runs `fut` under the store's client-side bound, [`Error::Timeout`] past it.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = annals_core::Result<T>>,
) -> annals_core::Result<T> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(Error::Timeout(timeout)))
}

/// Classifies a write error. This is the only place that inspects unique
/// violations (by sqlx's [`ErrorKind`] and the constraint name).
pub(crate) fn classify_write(err: sqlx::Error, timeout: Duration) -> WriteFailure {
    if let sqlx::Error::Database(db) = &err {
        if db.kind() == ErrorKind::UniqueViolation {
            match db.constraint() {
                Some(STREAM_VERSION_KEY) => return WriteFailure::VersionTaken,
                Some(EVENT_ID_KEY) => return WriteFailure::IdTaken,
                _ => {}
            }
        }
        if matches!(db.code().as_deref(), Some("40P01" | "40001")) {
            return WriteFailure::Retry;
        }
    }
    WriteFailure::Other(map(err, "appending events", timeout))
}

/// Maps any sqlx error to the store's error type.
///
/// `timeout` is the bound reported when the pool timed out or the server cancelled
/// the statement (`statement_timeout`, SQLSTATE 57014).
pub(crate) fn map(err: sqlx::Error, doing: &str, timeout: Duration) -> Error {
    match &err {
        sqlx::Error::PoolTimedOut => return Error::Timeout(timeout),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // query_canceled: statement_timeout or a cancel request.
            Some("57014") => return Error::Timeout(timeout),
            // Values PostgreSQL refuses to store (NUL in text, out-of-range values,
            // invalid JSON, program_limit_exceeded): the caller's input.
            Some(code) if code.starts_with("22") || code == "54000" => {
                return Error::invalid_input(format!("{doing}: {}", db.message()));
            }
            _ => {}
        },
        _ => {}
    }
    Error::backend(doing.to_owned(), err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeout_is_timeout() {
        let err = map(sqlx::Error::PoolTimedOut, "x", Duration::from_secs(3));
        assert!(matches!(err, Error::Timeout(d) if d == Duration::from_secs(3)));
    }

    #[test]
    fn other_errors_are_backend_errors() {
        let err = map(sqlx::Error::PoolClosed, "reading", Duration::from_secs(1));
        assert!(matches!(err, Error::Backend { .. }), "{err}");
        assert!(matches!(
            classify_write(sqlx::Error::RowNotFound, Duration::from_secs(1)),
            WriteFailure::Other(Error::Backend { .. })
        ));
    }
}
