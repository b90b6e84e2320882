//! Turning sqlx errors into [`annals_core::Error`], in one place.

use std::time::Duration;

use sqlx::error::ErrorKind;

use crate::{sql::Names, Error};

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

/// Why a `read_all` ended with an error instead of a short read: committed events
/// that were in the log before the read started sit above a transaction of this
/// database that is still running, and the read waited `read_settle_timeout`
/// for it to end. Returning the events past it could break the ordering guarantee
/// (it may still commit an event below them); ending the read normally would be a
/// silent short read.
///
/// It is the source of an [`Error::Blocked`](annals_core::Error::Blocked); find
/// it with [`ReadBlocked::find`]. Subscriptions treat it as transient: they
/// retry and show it in their state. The read can be retried (from the last event it
/// returned): nothing was skipped. See docs/backends/postgres.md, "Reads held
/// back by a running transaction".
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ReadBlocked {
    /// The first committed event (in the read's direction) that could not be
    /// returned yet.
    pub position: u64,
    /// How long the read waited.
    pub waited: Duration,
    /// The oldest running transaction holding the read back, if it could be
    /// identified (it may have ended meanwhile).
    pub blocker: Option<Blocker>,
}

/// A running transaction that holds readers back (see [`ReadBlocked`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Blocker {
    /// Its transaction id (`pg_current_xact_id()`).
    pub xid: u64,
    /// The backend running it (`pg_stat_activity.pid`); `None` for a prepared
    /// transaction or a backend not listed.
    pub pid: Option<i32>,
    /// The database it runs in, if known.
    pub database: Option<String>,
    /// How long it has been running, if the server shows it to this role
    /// (`xact_start` needs the same role or `pg_read_all_stats`).
    pub running_for: Option<Duration>,
    /// Its session state (`active`, `idle in transaction`, …), if shown.
    pub state: Option<String>,
    /// Its session's `application_name`, if shown and not empty.
    pub application_name: Option<String>,
    /// The global id of a prepared transaction (`PREPARE TRANSACTION`).
    pub prepared_gid: Option<String>,
}

impl ReadBlocked {
    /// The [`ReadBlocked`] behind an error, if that is what it is.
    pub fn find(err: &Error) -> Option<&ReadBlocked> {
        let source = std::error::Error::source(err)?;
        source.downcast_ref::<ReadBlocked>()
    }
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "transaction {}", self.xid)?;
        let mut details = Vec::new();
        if let Some(pid) = self.pid {
            details.push(format!("pid {pid}"));
        }
        if let Some(gid) = &self.prepared_gid {
            details.push(format!("prepared as `{gid}`"));
        }
        if let Some(db) = &self.database {
            details.push(format!("database `{db}`"));
        }
        if let Some(state) = &self.state {
            details.push(state.clone());
        }
        if let Some(running) = self.running_for {
            details.push(format!("running for {:.1} s", running.as_secs_f64()));
        }
        if let Some(app) = &self.application_name {
            details.push(format!("application `{app}`"));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

impl std::fmt::Display for ReadBlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read_all waited {:.1} s at position {} for an older transaction of this \
             database to end; ",
            self.waited.as_secs_f64(),
            self.position
        )?;
        match &self.blocker {
            Some(blocker) => write!(f, "{blocker} is still running")?,
            None => write!(f, "the transaction could not be identified")?,
        }
        write!(
            f,
            "; events committed above it cannot be returned until it ends \
             (nothing was skipped: retry, or end that transaction)"
        )
    }
}

impl std::error::Error for ReadBlocked {}

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
/// violations (by sqlx's [`ErrorKind`] and the constraint name, with the
/// store's table prefix: `names`).
pub(crate) fn classify_write(err: sqlx::Error, timeout: Duration, names: &Names) -> WriteFailure {
    if let sqlx::Error::Database(db) = &err {
        if db.kind() == ErrorKind::UniqueViolation {
            let constraint = db.constraint();
            if constraint == Some(names.stream_version_key.as_str()) {
                return WriteFailure::VersionTaken;
            }
            if constraint == Some(names.event_id_key.as_str()) {
                return WriteFailure::IdTaken;
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
    if connection_lost(&err) {
        return Error::unavailable(doing.to_owned(), err);
    }
    Error::backend(doing.to_owned(), err)
}

/// The server is out of reach, restarting, failing over or refusing
/// connections, or the connection broke: a retry may succeed (on a new
/// connection).
fn connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // Class 08: connection exceptions.
            Some(code) if code.starts_with("08") => true,
            // admin_shutdown, crash_shutdown, cannot_connect_now (starting up,
            // in recovery), too_many_connections, and a write reaching a
            // server that was demoted to a read-only replica by a failover.
            Some("57P01" | "57P02" | "57P03" | "53300" | "25006") => true,
            _ => false,
        },
        _ => false,
    }
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
    fn lost_connections_are_unavailable() {
        for err in [
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::WorkerCrashed,
        ] {
            let err = map(err, "reading", Duration::from_secs(1));
            assert!(matches!(err, Error::Unavailable { .. }), "{err}");
            assert!(err.is_transient());
        }
    }

    #[test]
    fn other_errors_are_backend_errors() {
        let err = map(sqlx::Error::RowNotFound, "reading", Duration::from_secs(1));
        assert!(matches!(err, Error::Backend { .. }), "{err}");
        assert!(matches!(
            classify_write(
                sqlx::Error::RowNotFound,
                Duration::from_secs(1),
                &Names::new(&Default::default())
            ),
            WriteFailure::Other(Error::Backend { .. })
        ));
    }
}
