//! The single writer connection, handed to one task at a time.
//!
//! SQLite allows one writer per database. Appends and snapshot writes queue on a
//! `tokio` mutex in front of one connection, so in-process writers never contend
//! for SQLite's lock and never see `SQLITE_BUSY` (only another process can make a
//! write wait, for at most the busy timeout). Handing a connection over through
//! the mutex is cheaper than returning it to a pool after every write.

use std::{ops::DerefMut, time::Duration};

use sqlx::{pool::PoolConnection, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, MutexGuard};

use crate::{error::map_sqlx, Error, Result};

/// The writer connection slot.
#[derive(Debug)]
pub(crate) struct Writer {
    slot: Mutex<Option<PoolConnection<Sqlite>>>,
    pool: SqlitePool,
    timeout: Duration,
    /// Keep the connection between writes (file stores). An in-memory store shares
    /// its only connection with readers, so it gives it back after each write.
    keep: bool,
}

impl Writer {
    pub(crate) fn new(pool: SqlitePool, timeout: Duration, keep: bool) -> Self {
        Writer {
            slot: Mutex::new(None),
            pool,
            timeout,
            keep,
        }
    }

    /// Waits for the writer connection (at most the acquire timeout).
    pub(crate) async fn lock(&self) -> Result<WriterGuard<'_>> {
        let mut slot = tokio::time::timeout(self.timeout, self.slot.lock())
            .await
            .map_err(|_| Error::Timeout(self.timeout))?;
        if slot.is_none() {
            let conn = self
                .pool
                .acquire()
                .await
                .map_err(map_sqlx("opening the writer connection", self.timeout))?;
            *slot = Some(conn);
        }
        Ok(WriterGuard {
            slot,
            keep: self.keep,
        })
    }

    /// Gives the connection back to its pool (before closing the pool).
    pub(crate) async fn release(&self) {
        self.slot.lock().await.take();
    }
}

/// Exclusive use of the writer connection.
pub(crate) struct WriterGuard<'a> {
    slot: MutexGuard<'a, Option<PoolConnection<Sqlite>>>,
    keep: bool,
}

impl WriterGuard<'_> {
    /// The connection.
    pub(crate) fn conn(&mut self) -> Result<&mut SqliteConnection> {
        self.slot
            .as_mut()
            .map(DerefMut::deref_mut)
            .ok_or_else(|| Error::backend("the writer connection", "is not open"))
    }

    /// Drops the connection after a driver failure; the next writer opens a new one.
    pub(crate) fn discard(&mut self) {
        self.slot.take();
    }
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.slot.take();
        }
    }
}
