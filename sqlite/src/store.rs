//! [`SqliteEventStore`]: the [`EventStore`] on one SQLite file.

use std::{path::Path, sync::Arc, time::Duration};

use futures::{future::BoxFuture, FutureExt};
use sqlx::SqlitePool;

use crate::{
    append, backend, error::map_sqlx, open, read, AppendResult, EventId, EventStore, EventStream,
    ExpectedVersion, NewEvent, Position, ReadFilter, RecordedEvent, Result, Snapshot,
    SqliteOptions, StreamId, Version,
};
use crate::{readers::Readers, writer::Writer};

/// An [`EventStore`] in an SQLite database file (or in memory, for tests).
///
/// Open it with [`SqliteEventStore::open`] or [`SqliteOptions`]. Clones share the
/// same connections. Appends go through one writer connection, one
/// `BEGIN IMMEDIATE` transaction each, queued in the order callers arrive; reads run
/// on read-only connections, in parallel with each other and the writer (WAL
/// mode). Event reads run page by page on a blocking thread (rusqlite), see
/// `docs/backends/sqlite.md`.
#[derive(Clone, Debug)]
pub struct SqliteEventStore {
    pub(crate) writer: Arc<Writer>,
    pub(crate) readers: SqlitePool,
    /// The connections `read_stream`, `read_all` and `get_event` run on.
    pub(crate) pages: Arc<Readers>,
    pub(crate) acquire_timeout: Duration,
    pub(crate) options: SqliteOptions,
}

impl SqliteEventStore {
    /// Opens (creating it and its parent directories if missing) the store in the
    /// file at `path`, with default [`SqliteOptions`].
    ///
    /// Applies the embedded schema migrations before returning. Refuses, without
    /// changing the file, a file that is not an SQLite database or whose schema is
    /// newer than this version knows (see [`OpenError`](crate::OpenError)).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(SqliteOptions::new(path)).await
    }

    /// A private, empty in-memory store (for tests; see [`SqliteOptions::in_memory`]).
    pub async fn in_memory() -> Result<Self> {
        Self::open_with(SqliteOptions::in_memory()).await
    }

    /// Opens a store with explicit options.
    pub async fn open_with(options: SqliteOptions) -> Result<Self> {
        let pools = open::connect(&options).await?;
        Ok(SqliteEventStore {
            writer: Arc::new(pools.writer),
            readers: pools.readers,
            pages: Arc::new(pools.pages),
            acquire_timeout: options.acquire_timeout,
            options,
        })
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.options
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.options.path()
    }

    /// Waits for running operations, then closes every connection (checkpointing
    /// the WAL into the database file). Later operations on this store or its
    /// clones fail.
    pub async fn close(&self) {
        // Readers first: the last connection to close checkpoints the WAL into the
        // database file, and only the writer can.
        self.pages.close().await;
        self.readers.close().await;
        self.writer.release().await;
    }

    /// The sqlx pool of read-only connections, for inspection and maintenance
    /// queries (they cannot write). `stream_version`, snapshots and
    /// [`backup_to`](Self::backup_to) run on it; event reads (`read_stream`,
    /// `read_all`, `get_event`) run on separate read-only connections to the same
    /// database. For an in-memory store it is the store's only sqlx connection,
    /// which appends and event reads also hold while they run.
    pub fn reader_pool(&self) -> &SqlitePool {
        &self.readers
    }

    /// Writes a consistent copy of the whole database to a new file at `target`
    /// with `VACUUM INTO`, while the store stays in use (readers and writers are
    /// not blocked). The copy is a complete, compacted, ordinary SQLite database
    /// that [`SqliteEventStore::open`] opens. Fails if `target` already exists.
    ///
    /// ```
    /// # use annals_sqlite::SqliteEventStore;
    /// # async fn demo() -> annals_sqlite::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = SqliteEventStore::open(dir.path().join("events.db")).await?;
    /// store.backup_to(dir.path().join("backup.db")).await?;
    /// let copy = SqliteEventStore::open(dir.path().join("backup.db")).await?;
    /// # drop(copy);
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub async fn backup_to(&self, target: impl AsRef<Path>) -> Result<()> {
        let target = target.as_ref();
        let name = target.to_str().ok_or_else(|| {
            crate::Error::invalid_input(format!(
                "backup path `{}` is not valid UTF-8",
                target.display()
            ))
        })?;
        sqlx::query("VACUUM INTO ?")
            .bind(name.to_owned())
            .execute(&self.readers)
            .await
            .map_err(map_sqlx("backing up the database", self.acquire_timeout))?;
        Ok(())
    }

    async fn save_snapshot_now(&self, stream: &StreamId, snapshot: Snapshot) -> Result<()> {
        snapshot.validate()?;
        let version = backend::to_i64(snapshot.version.get(), "snapshot version")?;
        let query = sqlx::query(
            "INSERT INTO snapshots (stream_id, version, content_type, schema_version, state) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
             content_type = excluded.content_type, schema_version = excluded.schema_version, \
             state = excluded.state WHERE excluded.version >= snapshots.version",
        )
        .bind(stream.as_str())
        .bind(version)
        .bind(snapshot.content_type)
        .bind(i64::from(snapshot.schema_version))
        .bind(snapshot.state);
        let mut writer = self.writer.lock().await?;
        if let Err(e) = query.execute(writer.conn()?).await {
            writer.discard();
            return Err(crate::Error::backend("saving a snapshot", e));
        }
        Ok(())
    }

    async fn load_snapshot_now(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        // On the event-read connections, like the tail read that usually follows:
        // loading an aggregate from a snapshot is one short hop to a blocking thread
        // per call instead of a trip through sqlx's connection worker.
        let what = "loading a snapshot";
        let name = stream.as_str().to_owned();
        let row: Option<(i64, String, i64, Vec<u8>)> = self
            .pages
            .run(what, move |conn| {
                let mut statement = conn
                    .prepare_cached(
                        "SELECT version, content_type, schema_version, state \
                         FROM snapshots WHERE stream_id = ?",
                    )
                    .map_err(|e| crate::Error::backend(what, e))?;
                let mut rows = statement
                    .query([name.as_str()])
                    .map_err(|e| crate::Error::backend(what, e))?;
                let Some(row) = rows.next().map_err(|e| crate::Error::backend(what, e))? else {
                    return Ok(None);
                };
                let corrupt = |e| crate::Error::backend("decoding a stored snapshot", e);
                Ok(Some((
                    row.get(0).map_err(corrupt)?,
                    row.get(1).map_err(corrupt)?,
                    row.get(2).map_err(corrupt)?,
                    row.get(3).map_err(corrupt)?,
                )))
            })
            .await?;
        let Some((version, content_type, schema_version, state)) = row else {
            return Ok(None);
        };
        let schema_version = u32::try_from(schema_version).map_err(|e| {
            crate::Error::backend(
                format!("stored snapshot schema version {schema_version}"),
                e,
            )
        })?;
        Ok(Some(
            Snapshot::new(
                Version::new(backend::from_i64(version, "snapshot version")?),
                state,
            )
            .with_content_type(content_type)
            .with_schema_version(schema_version),
        ))
    }

    async fn stream_version_now(&self, stream: &StreamId) -> Result<Version> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM events WHERE stream_id = ?")
                .bind(stream.as_str())
                .fetch_one(&self.readers)
                .await
                .map_err(map_sqlx("reading a stream version", self.acquire_timeout))?;
        Ok(Version::new(backend::from_i64(
            version.unwrap_or(0),
            "version",
        )?))
    }
}

impl EventStore for SqliteEventStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<AppendResult>> {
        append::append(self, stream, expected, events).boxed()
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        limit: Option<u64>,
    ) -> EventStream<'a> {
        read::read_stream(self, stream, from, limit)
    }

    fn read_all<'a>(
        &'a self,
        from: Position,
        filter: ReadFilter,
        limit: Option<u64>,
    ) -> EventStream<'a> {
        read::read_all(self, from, filter, limit)
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        self.stream_version_now(stream).boxed()
    }

    fn get_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        read::get_event(self, id).boxed()
    }

    fn save_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        self.save_snapshot_now(stream, snapshot).boxed()
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        self.load_snapshot_now(stream).boxed()
    }

    fn delete_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        async move {
            let query =
                sqlx::query("DELETE FROM snapshots WHERE stream_id = ?").bind(stream.as_str());
            let mut writer = self.writer.lock().await?;
            if let Err(e) = query.execute(writer.conn()?).await {
                writer.discard();
                return Err(crate::Error::backend("deleting a snapshot", e));
            }
            Ok(())
        }
        .boxed()
    }
}
