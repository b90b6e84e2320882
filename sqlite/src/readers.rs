//! The read-only rusqlite connections that reads run on, each page on a blocking
//! thread.
//!
//! sqlx's SQLite driver copies every value of every row and hands each row from its
//! worker thread to the async task through a channel; that caps a replay at about
//! 300,000 rows/s. Here a read page runs as one closure on
//! [`tokio::task::spawn_blocking`], steps the statement and decodes straight into
//! `RecordedEvent`s, and hands the whole page back at once. rusqlite links the same
//! `libsqlite3-sys` as sqlx, so this is the same SQLite library, not a second one.
//!
//! The pool is a list of idle connections behind a semaphore with one permit per
//! connection (`max_readers`); a connection is opened when none is idle. A closure
//! owns its connection and permit until it returns, and puts the connection back
//! itself, so a read dropped while its page runs never leaks either.

use std::{path::PathBuf, sync::Arc, sync::Mutex, time::Duration};

use rusqlite::{Connection, OpenFlags};
use sqlx::{pool::PoolConnection, Sqlite, SqlitePool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{error::map_sqlx, Error, Result, SqliteOptions};

/// What the read connections open.
#[derive(Debug)]
enum Target {
    /// The database file.
    File(PathBuf),
    /// A named shared-cache in-memory database (`file:…?mode=memory&cache=shared`).
    ///
    /// Connections to one shared cache lock whole tables and do not wait for each
    /// other (no busy timeout applies), so a read and an append running at once
    /// would fail with `SQLITE_LOCKED`. Every read therefore also holds the store's
    /// only sqlx connection, which every append borrows too: reads and writes take
    /// turns, as they do on a single connection.
    Memory { uri: String, turn: SqlitePool },
}

/// The read-only rusqlite connections that event reads, `get_event` and snapshot
/// loads run on, and how to open more.
#[derive(Debug)]
pub(crate) struct RusqliteReaders {
    target: Target,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    size: u32,
    busy_timeout: Duration,
    acquire_timeout: Duration,
    statement_cache_capacity: usize,
}

/// What a read holds while its closure runs.
struct Lease {
    conn: Option<Connection>,
    _permit: OwnedSemaphorePermit,
    _turn: Option<PoolConnection<Sqlite>>,
}

impl RusqliteReaders {
    /// Readers on the database file at `path`, at most `max_readers` at once.
    pub(crate) fn file(path: PathBuf, options: &SqliteOptions) -> Self {
        Self::new(Target::File(path), options.max_readers, options)
    }

    /// One reader on the shared-cache in-memory database at `uri`, taking turns
    /// with the writer on `turn` (the store's single sqlx connection).
    pub(crate) fn memory(uri: String, turn: SqlitePool, options: &SqliteOptions) -> Self {
        Self::new(Target::Memory { uri, turn }, 1, options)
    }

    fn new(target: Target, size: u32, options: &SqliteOptions) -> Self {
        RusqliteReaders {
            target,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size as usize)),
            size,
            busy_timeout: options.busy_timeout,
            acquire_timeout: options.acquire_timeout,
            statement_cache_capacity: options.statement_cache_capacity,
        }
    }

    /// Runs `read` on a read connection on a blocking thread, after waiting at most
    /// the acquire timeout for one ([`Error::Timeout`]). `what` names the operation
    /// in errors.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, what: &'static str, read: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let lease = tokio::time::timeout(self.acquire_timeout, self.lease(what))
            .await
            .map_err(|_| Error::Timeout(self.acquire_timeout))??;
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || readers.run_blocking(lease, what, read))
            .await
            .map_err(|e| Error::backend(what, e))?
    }

    async fn lease(&self, what: &str) -> Result<Lease> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::backend(what, "the store is closed"))?;
        let turn = match &self.target {
            Target::File(_) => None,
            Target::Memory { turn, .. } => Some(
                turn.acquire()
                    .await
                    .map_err(map_sqlx(what, self.acquire_timeout))?,
            ),
        };
        let conn = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        Ok(Lease {
            conn,
            _permit: permit,
            _turn: turn,
        })
    }

    fn run_blocking<T>(
        &self,
        mut lease: Lease,
        what: &str,
        read: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let conn = match lease.conn.take() {
            Some(conn) => conn,
            None => self.open().map_err(|e| Error::backend(what, e))?,
        };
        let result = read(&conn);
        // A connection that failed is dropped; the next read opens a fresh one.
        if result.is_ok() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(conn);
            }
        }
        result
    }

    /// Opens a read-only connection with the store's settings (`foreign_keys` and
    /// `synchronous`, which the sqlx connections also set, only affect writes).
    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match &self.target {
            Target::File(path) => {
                Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE)?
            }
            Target::Memory { uri, .. } => Connection::open_with_flags(
                uri,
                flags | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_SHARED_CACHE,
            )?,
        };
        conn.busy_timeout(self.busy_timeout)?;
        // A connection joining an existing shared cache may not honour READ_ONLY;
        // `query_only` refuses writes on any connection.
        conn.pragma_update(None, "query_only", true)?;
        conn.set_prepared_statement_cache_capacity(self.statement_cache_capacity);
        Ok(conn)
    }

    /// Waits for running reads, then closes every connection; later reads fail.
    pub(crate) async fn close(&self) {
        if let Ok(all) = self.permits.acquire_many(self.size).await {
            all.forget();
        }
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
