//! The single writer connection, handed to one task at a time.
//!
//! SQLite allows one writer per database. Appends and snapshot writes queue on a
//! `tokio` mutex in front of one connection, so in-process writers never contend
//! for SQLite's lock and never see `SQLITE_BUSY` (only another process can make a
//! write wait, for at most the busy timeout). Handing a connection over through
//! the mutex is cheaper than returning it to a pool after every write.

use std::time::Duration;

use sqlx::{
    pool::PoolConnection, sqlite::SqliteConnectOptions, ConnectOptions, Connection, Sqlite,
    SqliteConnection, SqlitePool,
};
use tokio::sync::{Mutex, MutexGuard};

use crate::{error::map_sqlx, Error, Result};

/// Where the writer connection comes from.
#[derive(Debug)]
pub(crate) enum Source {
    /// A file store owns its writer connection outright (reconnecting with these
    /// options if it is ever discarded).
    Connect(Box<SqliteConnectOptions>),
    /// An in-memory store shares its only pooled connection with readers, so it
    /// borrows it from the pool for each write and gives it back after. The pool may
    /// replace that connection (sqlx closes one left mid-command by a cancelled
    /// append); `_anchor`, a second connection that never runs a statement, keeps the
    /// named shared-cache database alive across such replacements.
    Pool {
        /// The store's connection pool (one connection).
        pool: SqlitePool,
        /// Holds the in-memory database open for the store's lifetime.
        _anchor: std::sync::Mutex<SqliteConnection>,
    },
}

#[derive(Debug)]
enum Conn {
    Owned(SqliteConnection),
    Pooled(PoolConnection<Sqlite>),
}

/// The writer connection slot.
#[derive(Debug)]
pub(crate) struct Writer {
    slot: Mutex<Option<Conn>>,
    source: Source,
    timeout: Duration,
}

impl Writer {
    /// A writer, optionally starting with an already-open connection.
    pub(crate) fn new(source: Source, conn: Option<SqliteConnection>, timeout: Duration) -> Self {
        Writer {
            slot: Mutex::new(conn.map(Conn::Owned)),
            source,
            timeout,
        }
    }

    /// Waits for the writer connection (at most the acquire timeout).
    pub(crate) async fn lock(&self) -> Result<WriterGuard<'_>> {
        let mut slot = tokio::time::timeout(self.timeout, self.slot.lock())
            .await
            .map_err(|_| Error::Timeout(self.timeout))?;
        if slot.is_none() {
            let what = "opening the writer connection";
            *slot = Some(match &self.source {
                Source::Connect(options) => Conn::Owned(
                    options
                        .connect()
                        .await
                        .map_err(|e| Error::backend(what, e))?,
                ),
                Source::Pool { pool, .. } => {
                    Conn::Pooled(pool.acquire().await.map_err(map_sqlx(what, self.timeout))?)
                }
            });
        }
        Ok(WriterGuard { slot })
    }

    /// Closes the writer connection (a later write reopens it).
    pub(crate) async fn release(&self) {
        if let Some(Conn::Owned(conn)) = self.slot.lock().await.take() {
            if let Err(e) = conn.close().await {
                tracing::debug!(error = %e, "closing the writer connection failed");
            }
        }
    }
}

/// Exclusive use of the writer connection.
pub(crate) struct WriterGuard<'a> {
    slot: MutexGuard<'a, Option<Conn>>,
}

impl WriterGuard<'_> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> Result<&mut SqliteConnection> {
        match self.slot.as_mut() {
            Some(Conn::Owned(conn)) => Ok(conn),
            Some(Conn::Pooled(conn)) => Ok(conn),
            None => Err(Error::backend("the writer connection", "is not open")),
        }
    }

    /// Drops the connection after a driver failure; the next writer opens a new one.
    pub(crate) fn discard(&mut self) {
        self.slot.take();
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        // A borrowed pool connection goes back after every write.
        if matches!(self.slot.as_ref(), Some(Conn::Pooled(_))) {
            self.slot.take();
        }
    }
}
