//! [`SqliteEventStore`] and opening it: check the file without touching it, then
//! connect and migrate. The [`Backend`](crate::backend::Backend) implementation is
//! in `store.rs`.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use annals_core::backend::TablePrefix;
use futures::{future::BoxFuture, FutureExt};
use sqlx::{
    migrate::{Migration, Migrator},
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
    },
    AssertSqlSafe, ConnectOptions, Connection, Row, SqlSafeStr,
};

use crate::{
    error::{backend, map_sqlx},
    options::{Location, SqliteOptions, Synchronous},
    readers::RusqliteReaders,
    sql::{self, Statements},
    writer::{Target, Writer},
    Error, Result,
};

/// An event store in an SQLite database file (or in memory, for tests). It is an
/// [`EventStore`](crate::EventStore) through the [`Backend`](crate::backend::Backend)
/// trait.
///
/// Open it with [`SqliteEventStore::open`] or [`SqliteOptions`]. Clones share the
/// same connections. Appends go through one writer connection on its own thread, in
/// the order callers arrive; appends queued together share one `BEGIN IMMEDIATE`
/// transaction (group commit), each in its own savepoint; reads run
/// on read-only connections, in parallel with each other and the writer (WAL
/// mode). Event reads run page by page on a blocking thread (rusqlite), see
/// `docs/backends/sqlite.md`.
#[derive(Clone, Debug)]
pub struct SqliteEventStore {
    /// The single writer connection's thread (appends, snapshot writes).
    pub(crate) writer: Arc<Writer>,
    /// The sqlx pool of read-only connections (`head_version`, `backup_to`,
    /// [`reader_pool`](SqliteEventStore::reader_pool)).
    pub(crate) sqlx_readers: SqlitePool,
    /// The rusqlite read-only connections event reads, `find_event` and snapshot
    /// loads run on.
    pub(crate) rusqlite_readers: Arc<RusqliteReaders>,
    pub(crate) acquire_timeout: Duration,
    pub(crate) options: SqliteOptions,
    /// The statements, with the store's table prefix applied.
    pub(crate) sql: Arc<Statements>,
    /// Notified by core after every commit: wakes this store's subscriptions.
    pub(crate) signal: annals_core::consume::AppendSignal,
    /// The checkpoints of an in-memory store (a file store keeps them in the file).
    pub(crate) memory_checkpoints: annals_core::consume::MemoryCheckpoints,
}

impl SqliteEventStore {
    /// Opens (creating it and its parent directories if missing) the store in the
    /// file at `path`, with default [`SqliteOptions`].
    ///
    /// Applies the embedded schema migrations before returning. Refuses, without
    /// changing the file, a file that is not an SQLite database or whose schema is
    /// newer than this version knows (see [`OpenError`]).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(SqliteOptions::new(path)).await
    }

    /// A private, empty in-memory store (for tests; see [`SqliteOptions::in_memory`]).
    pub async fn in_memory() -> Result<Self> {
        Self::open_with(SqliteOptions::in_memory()).await
    }

    /// Opens a store with explicit options.
    ///
    /// An invalid [`table_prefix`](SqliteOptions::table_prefix) is
    /// [`Error::InvalidInput`], before anything touches the file.
    pub async fn open_with(options: SqliteOptions) -> Result<Self> {
        let prefix = TablePrefix::new(&options.table_prefix)?;
        if prefix.as_str().starts_with("sqlite_") {
            return Err(Error::invalid_input(format!(
                "table prefix `{}`: names starting with `sqlite_` are reserved by SQLite",
                prefix.as_str()
            )));
        }
        let statements = Arc::new(Statements::new(prefix));
        let connections = connect(&options, &statements).await?;
        Ok(SqliteEventStore {
            writer: Arc::new(connections.writer),
            sqlx_readers: connections.sqlx_readers,
            rusqlite_readers: Arc::new(connections.rusqlite_readers),
            acquire_timeout: options.acquire_timeout,
            options,
            sql: statements,
            signal: annals_core::consume::AppendSignal::new(),
            memory_checkpoints: annals_core::consume::MemoryCheckpoints::new(),
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
        self.rusqlite_readers.close().await;
        self.sqlx_readers.close().await;
        self.writer.close().await;
    }

    /// The sqlx pool of read-only connections, for inspection and maintenance
    /// queries (they cannot write). `stream_version` and
    /// [`backup_to`](Self::backup_to) run on it; event reads (`read_stream`,
    /// `read_all`, `get_event`) and snapshot loads run on separate read-only
    /// connections to the same database. For an in-memory store it is the store's
    /// only sqlx connection, which appends and event reads also hold while they run.
    pub fn reader_pool(&self) -> &SqlitePool {
        &self.sqlx_readers
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
            Error::invalid_input(format!(
                "backup path `{}` is not valid UTF-8",
                target.display()
            ))
        })?;
        sqlx::query(sql::BACKUP)
            .bind(name.to_owned())
            .execute(&self.sqlx_readers)
            .await
            .map_err(map_sqlx("backing up the database", self.acquire_timeout))?;
        Ok(())
    }
}

/// The schema migrations in `migrations/sqlite/`, embedded at compile time.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// The migrations of a store: the embedded [`MIGRATOR`] as it is for the empty
/// prefix (same SQL, same checksums, same `_sqlx_migrations` table, so existing
/// files open unchanged), or a copy with every name of [`sql::NAMES`] prefixed and
/// its own `{prefix}_sqlx_migrations` table.
struct Migrations(Option<Migrator>);

impl Migrations {
    fn new(prefix: &TablePrefix) -> Self {
        if prefix.is_empty() {
            return Migrations(None);
        }
        let migrations = MIGRATOR
            .iter()
            .map(|m| {
                let sql = prefix.apply(m.sql.as_str(), sql::NAMES).into_owned();
                // Safe to splice: the prefix is validated to `[a-z_][a-z0-9_]*`.
                Migration::new(
                    m.version,
                    m.description.clone(),
                    m.migration_type,
                    AssertSqlSafe(sql).into_sql_str(),
                    m.no_tx,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(prefix.name(sql::MIGRATIONS_TABLE));
        Migrations(Some(migrator))
    }

    fn migrator(&self) -> &Migrator {
        self.0.as_ref().unwrap_or(&MIGRATOR)
    }
}

/// Rows a connection's worker thread buffers ahead of the reading task.
const ROW_BUFFER: usize = 512;

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Why [`SqliteEventStore::open`](crate::SqliteEventStore::open) refused a file.
///
/// Returned as the `source` of an [`Error::Backend`]; in each case the file was
/// left exactly as it was. Find it with `std::error::Error::source` and
/// `downcast_ref`:
///
/// ```
/// use annals_sqlite::{OpenError, SqliteEventStore};
///
/// # async fn demo() {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("notes.txt");
/// std::fs::write(&path, "not a database, just some text").unwrap();
///
/// let err = SqliteEventStore::open(&path).await.unwrap_err();
/// assert!(matches!(OpenError::find(&err), Some(OpenError::NotADatabase { .. })));
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file exists but is not an SQLite database.
    #[error("`{}` is not an SQLite database", path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// The database was migrated by a newer version of annals-sqlite: it has schema
    /// versions this code does not know, so writing to it could corrupt it.
    #[error(
        "`{}` has schema version(s) {unknown:?}, newer than this annals-sqlite knows (up to {known}); upgrade annals-sqlite",
        path.display()
    )]
    SchemaTooNew {
        /// The file.
        path: PathBuf,
        /// Applied schema versions this code does not know.
        unknown: Vec<i64>,
        /// The newest schema version this code knows.
        known: i64,
    },
    /// A schema migration this code knows was applied with different SQL: the file
    /// was created by an incompatible build.
    #[error("`{}` applied schema version {version} differently than this annals-sqlite", path.display())]
    SchemaMismatch {
        /// The file.
        path: PathBuf,
        /// The schema version whose checksum differs.
        version: i64,
    },
}

impl OpenError {
    /// The [`OpenError`] behind an [`Error`] returned by `open`, if that is why it failed.
    pub fn find(error: &Error) -> Option<&OpenError> {
        match error {
            Error::Backend { source, .. } => source.downcast_ref::<OpenError>(),
            _ => None,
        }
    }

    fn into_error(self) -> Error {
        Error::backend("opening the SQLite event store", self)
    }
}

/// What a store runs on: the writer, the sqlx reader pool, and the rusqlite read
/// connections.
struct Connections {
    writer: Writer,
    sqlx_readers: SqlitePool,
    rusqlite_readers: RusqliteReaders,
}

async fn connect(options: &SqliteOptions, statements: &Arc<Statements>) -> Result<Connections> {
    let migrations = Migrations::new(statements.prefix());
    match &options.location {
        Location::Memory => connect_memory(options, statements, &migrations).await,
        Location::File(path) => connect_file(options, statements, &migrations, path).await,
    }
}

fn base_options(options: &SqliteOptions) -> SqliteConnectOptions {
    tuned(SqliteConnectOptions::new(), options)
}

/// Applies the store's per-connection settings to `connect`.
fn tuned(connect: SqliteConnectOptions, options: &SqliteOptions) -> SqliteConnectOptions {
    connect
        .foreign_keys(true)
        .busy_timeout(options.busy_timeout)
        .statement_cache_capacity(options.statement_cache_capacity)
        // Let SQLite's worker thread run further ahead of a reader before it waits.
        .row_buffer_size(ROW_BUFFER)
}

async fn connect_memory(
    options: &SqliteOptions,
    statements: &Arc<Statements>,
    migrations: &Migrations,
) -> Result<Connections> {
    // A private *named* in-memory database in shared-cache mode: it lives as long as
    // one connection to it is open, so the anchor below keeps it alive even when the
    // pool replaces its connection. Statements run on the pool's connection, or on
    // the rusqlite read connection while a read holds the pool's connection (see
    // `readers::Target::Memory`), so shared-cache table locks never contend.
    let name = format!(
        "annals-memory-{}",
        annals_core::EventId::new().as_uuid().simple()
    );
    // The URI form: sqlx's `in_memory(true)` + `shared_cache(true)` builder options
    // do not share a named database between connections; `mode=memory&cache=shared`
    // does (checked by the conformance case `cancelled_append_is_all_or_nothing`).
    let uri = format!("file:{name}?mode=memory&cache=shared");
    let connect = tuned(
        format!("sqlite:{uri}")
            .parse::<SqliteConnectOptions>()
            .map_err(|e| backend("configuring an in-memory SQLite database", e))?,
        options,
    );
    let anchor = connect
        .connect()
        .await
        .map_err(|e| backend("opening an in-memory SQLite database", e))?;
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(|e| backend("opening an in-memory SQLite database", e))?;
    let mut conn = pool.acquire().await.map_err(map_sqlx(
        "applying the SQLite schema migrations",
        options.acquire_timeout,
    ))?;
    migrate(&mut conn, migrations.migrator())
        .await
        .map_err(|e| backend("applying the SQLite schema migrations", e))?;
    drop(conn);
    let writer = Writer::start(
        Target::Memory {
            uri: uri.clone(),
            turn: pool.clone(),
            anchor: std::sync::Mutex::new(anchor),
        },
        options,
        Arc::clone(statements),
    )
    .await?;
    Ok(Connections {
        writer,
        rusqlite_readers: RusqliteReaders::memory(uri, pool.clone(), options),
        sqlx_readers: pool,
    })
}

async fn connect_file(
    options: &SqliteOptions,
    statements: &Arc<Statements>,
    migrations: &Migrations,
    path: &Path,
) -> Result<Connections> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| backend(format!("creating the directory `{}`", parent.display()), e))?;
    }
    check_existing(options, statements.prefix(), migrations.migrator(), path).await?;

    let synchronous = match options.synchronous {
        Synchronous::Normal => SqliteSynchronous::Normal,
        Synchronous::Full => SqliteSynchronous::Full,
    };
    let connect = base_options(options)
        .filename(path)
        .synchronous(synchronous);
    let writer_options = connect
        .clone()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let mut writer = writer_options
        .connect()
        .await
        .map_err(|e| backend(format!("opening `{}`", path.display()), e))?;
    if let Err(e) = migrate(&mut writer, migrations.migrator()).await {
        if let Err(close) = writer.close().await {
            tracing::debug!(error = %close, "closing the writer after a failed migration");
        }
        return Err(backend("applying the SQLite schema migrations", e));
    }
    // The migrations ran on sqlx; appends and snapshot writes run on the writer
    // thread's own rusqlite connection.
    if let Err(e) = writer.close().await {
        tracing::debug!(error = %e, "closing the migration connection failed");
    }
    let writer = Writer::start(
        Target::File(path.to_owned()),
        options,
        Arc::clone(statements),
    )
    .await?;
    let sqlx_readers = SqlitePoolOptions::new()
        .max_connections(options.max_readers)
        .min_connections(0)
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect.read_only(true))
        .await
        .map_err(|e| backend(format!("opening `{}` for reading", path.display()), e))?;
    tracing::debug!(path = %path.display(), "opened SQLite event store");
    Ok(Connections {
        writer,
        sqlx_readers,
        rusqlite_readers: RusqliteReaders::file(path.to_owned(), options),
    })
}

/// Applies `migrator`'s migrations (see [`Migrations`]) on `conn`.
///
/// Not `Migrator::run`: awaiting it inside `open` makes rustc fail to prove the
/// `open` future `Send` ("implementation of `Acquire` is not general enough", a
/// higher-ranked lifetime limitation), which the crate's `_assert_send` check
/// catches. `run_direct` is sqlx's own way around it: the same migration run on a
/// connection, without `Acquire`.
fn migrate<'a>(
    conn: &'a mut sqlx::SqliteConnection,
    migrator: &'a Migrator,
) -> BoxFuture<'a, std::result::Result<(), sqlx::migrate::MigrateError>> {
    migrator.run_direct(None, conn, false).boxed()
}

/// Refuses, before anything writes to it, a file that is not an SQLite database or
/// whose schema is newer than ours. A missing or empty file is fine (it is created).
/// Only the migrations of this store's prefix are checked: stores with other
/// prefixes in the file are none of its business.
async fn check_existing(
    options: &SqliteOptions,
    prefix: &TablePrefix,
    migrator: &Migrator,
    path: &Path,
) -> Result<()> {
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    match std::fs::File::open(path) {
        Ok(file) => {
            file.take(SQLITE_HEADER.len() as u64)
                .read_to_end(&mut header)
                .map_err(|e| backend(format!("reading `{}`", path.display()), e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(backend(format!("opening `{}`", path.display()), e)),
    }
    if header.is_empty() {
        return Ok(());
    }
    if header != SQLITE_HEADER {
        return Err(OpenError::NotADatabase {
            path: path.to_owned(),
        }
        .into_error());
    }

    // A read-only connection cannot change the file. Without a WAL to replay, open
    // it `immutable` too, so SQLite does not even create `-wal`/`-shm` companions.
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_has_frames = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    let mut conn = base_options(options)
        .filename(path)
        .read_only(true)
        .immutable(!wal_has_frames)
        .connect()
        .await
        .map_err(|e| backend(format!("opening `{}` read-only", path.display()), e))?;
    let result = check_schema(&mut conn, prefix, migrator, path).await;
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the read-only check connection failed");
    }
    result
}

async fn check_schema(
    conn: &mut sqlx::SqliteConnection,
    prefix: &TablePrefix,
    migrator: &Migrator,
    path: &Path,
) -> Result<()> {
    // `_sqlx_migrations`, or this prefix's own copy of it.
    let query = |sql: &'static str| {
        AssertSqlSafe(prefix.apply(sql, &[sql::MIGRATIONS_TABLE])).into_sql_str()
    };
    let not_a_db = |e: sqlx::Error| -> Error {
        // SQLITE_NOTADB (26): the header looked right but the file is not a database.
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some("26") {
                return OpenError::NotADatabase {
                    path: path.to_owned(),
                }
                .into_error();
            }
        }
        backend(format!("reading the schema of `{}`", path.display()), e)
    };
    let has_table: bool = sqlx::query_scalar(query(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = '_sqlx_migrations')",
    ))
    .fetch_one(&mut *conn)
    .await
    .map_err(not_a_db)?;
    if !has_table {
        return Ok(());
    }
    let rows = sqlx::query(query(
        "SELECT version, checksum FROM _sqlx_migrations ORDER BY version",
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(not_a_db)?;
    let mut unknown = Vec::new();
    for row in rows {
        let version: i64 = row.try_get(0).map_err(not_a_db)?;
        let checksum: Vec<u8> = row.try_get(1).map_err(not_a_db)?;
        match migrator.iter().find(|m| m.version == version) {
            None => unknown.push(version),
            Some(m) if *m.checksum != *checksum => {
                return Err(OpenError::SchemaMismatch {
                    path: path.to_owned(),
                    version,
                }
                .into_error());
            }
            Some(_) => {}
        }
    }
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(OpenError::SchemaTooNew {
            path: path.to_owned(),
            unknown,
            known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
        }
        .into_error())
    }
}
