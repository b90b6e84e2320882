//! [`SqliteOptions`]: where the store lives and how it talks to SQLite.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{Result, SqliteEventStore};

/// How hard SQLite works to make a commit survive a power loss.
///
/// The store always runs in WAL mode. The difference is whether a commit waits for
/// the write-ahead log to reach stable storage (`fsync`):
///
/// | mode | process crash (`kill -9`, panic, OOM) | OS crash or power loss |
/// |---|---|---|
/// | [`Full`](Synchronous::Full) (default) | every acknowledged append survives | every acknowledged append survives (on storage that honours `fsync`) |
/// | [`Normal`](Synchronous::Normal) | every acknowledged append survives | the last appends acknowledged before the crash may be lost; the file is never corrupt and no append is ever half-visible |
///
/// `Full` costs one `fsync` per commit. Batching events into one append amortises
/// it, and so does group commit: concurrent appends share one transaction and one
/// `fsync` (see [`SqliteOptions::max_group`]). Choose `Normal` only when losing the
/// last acknowledged appends on power loss is acceptable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Synchronous {
    /// `PRAGMA synchronous = NORMAL`: the WAL is synced at checkpoints, not on
    /// commit. Faster; an OS crash or power loss can lose the last acknowledged
    /// appends (never corrupts, never half an append).
    Normal,
    /// `PRAGMA synchronous = FULL`: the WAL is synced on every commit. The default.
    #[default]
    Full,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    File(PathBuf),
    Memory,
}

/// How to open a [`SqliteEventStore`]: the file, durability, timeouts, pool size.
///
/// ```
/// use std::time::Duration;
/// use annals_sqlite::{SqliteOptions, Synchronous};
///
/// # async fn demo() -> annals_sqlite::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("events.db");
/// let store = SqliteOptions::new(path)
///     .synchronous(Synchronous::Full)
///     .busy_timeout(Duration::from_secs(10))
///     .max_readers(8)
///     .open()
///     .await?;
/// # drop(store);
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub(crate) location: Location,
    pub(crate) synchronous: Synchronous,
    pub(crate) busy_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) max_readers: u32,
    pub(crate) statement_cache_capacity: usize,
    pub(crate) max_group: usize,
    pub(crate) max_group_bytes: usize,
    /// As given to [`SqliteOptions::table_prefix`]; validated by `open`.
    pub(crate) table_prefix: String,
}

impl SqliteOptions {
    /// Default [`busy_timeout`](SqliteOptions::busy_timeout): 5 seconds.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default [`acquire_timeout`](SqliteOptions::acquire_timeout): 30 seconds.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default [`max_readers`](SqliteOptions::max_readers): 4 connections.
    pub const DEFAULT_MAX_READERS: u32 = 4;
    /// Default [`max_group`](SqliteOptions::max_group): 128 appends per transaction.
    pub const DEFAULT_MAX_GROUP: usize = 128;
    /// Default [`max_group_bytes`](SqliteOptions::max_group_bytes): 8 MiB of payload.
    pub const DEFAULT_MAX_GROUP_BYTES: usize = 8 * 1024 * 1024;

    /// Options for a store in the file at `path` (created, with its parent
    /// directories, if missing), with the defaults: [`Synchronous::Full`], a 5 s
    /// busy timeout, 4 reader connections.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self::at(Location::File(path.as_ref().to_owned()))
    }

    /// Options for a private in-memory store, gone when the store is dropped.
    ///
    /// Meant for tests. Connections to one in-memory (shared-cache) database cannot
    /// wait for each other's locks, so an in-memory store runs one operation at a
    /// time: operations queue behind each other instead of running in parallel.
    pub fn in_memory() -> Self {
        Self::at(Location::Memory)
    }

    fn at(location: Location) -> Self {
        SqliteOptions {
            location,
            synchronous: Synchronous::default(),
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            max_readers: Self::DEFAULT_MAX_READERS,
            statement_cache_capacity: 512,
            max_group: Self::DEFAULT_MAX_GROUP,
            max_group_bytes: Self::DEFAULT_MAX_GROUP_BYTES,
            table_prefix: String::new(),
        }
    }

    /// The durability mode (see [`Synchronous`]).
    #[must_use]
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long SQLite waits for a lock held by **another process** before failing
    /// with a backend error. Writers inside this process never wait on SQLite's lock:
    /// they queue for the store's single writer thread instead.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How long an operation waits for a free connection (readers) or for its turn
    /// on the writer before failing with [`Error::Timeout`](crate::Error::Timeout).
    /// A write that waited longer is never started (nothing was written).
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The most read connections open at once (at least 1), for each of the two
    /// kinds: event reads (`read_stream`, `read_all`, `get_event`) and the sqlx
    /// [`reader_pool`](SqliteEventStore::reader_pool) for the rest. Reads run in
    /// parallel with each other and with the writer. There is always exactly one writer
    /// connection: SQLite allows one writer at a time, and queueing in-process
    /// writers in front of one connection is what keeps `SQLITE_BUSY` away.
    #[must_use]
    pub fn max_readers(mut self, readers: u32) -> Self {
        self.max_readers = readers.max(1);
        self
    }

    /// How many prepared statements each connection keeps (default 512).
    /// Multi-row inserts use one statement per batch size, so this bounds how many
    /// batch sizes stay prepared.
    #[must_use]
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.statement_cache_capacity = capacity;
        self
    }

    /// Group commit: the most appends the writer runs in one transaction (at least
    /// 1; default [`DEFAULT_MAX_GROUP`](Self::DEFAULT_MAX_GROUP)).
    ///
    /// When the writer becomes free it takes the next append and the appends queued
    /// behind it, up to this many and about [`max_group_bytes`](Self::max_group_bytes)
    /// of payload, and commits them together: one `BEGIN IMMEDIATE … COMMIT` and one
    /// `fsync` for all of them. Each keeps its own semantics (its own version check in
    /// its own savepoint: a conflict or bad input fails that append alone), and each
    /// is acknowledged only after the shared `COMMIT`. The writer never waits for
    /// company, so a lone appender's latency is unchanged. `1` turns grouping off (one
    /// transaction per append).
    #[must_use]
    pub fn max_group(mut self, appends: usize) -> Self {
        self.max_group = appends.max(1);
        self
    }

    /// Group commit: payload bytes after which a group takes no more appends
    /// (default [`DEFAULT_MAX_GROUP_BYTES`](Self::DEFAULT_MAX_GROUP_BYTES)). A single
    /// larger append still runs, alone.
    #[must_use]
    pub fn max_group_bytes(mut self, bytes: usize) -> Self {
        self.max_group_bytes = bytes;
        self
    }

    /// A prefix for the names of the store's tables and indexes, so that several
    /// independent stores share one database file: with `"billing_"` the events
    /// live in `billing_events`, the snapshots in `billing_snapshots`, the
    /// checkpoints in `billing_checkpoints` and the applied migrations in
    /// `billing__sqlx_migrations`. Each prefix is migrated and checked on its own;
    /// stores with different prefixes never see each other's events, snapshots or
    /// checkpoints, and their leader leases are separate too.
    ///
    /// The prefix is at most 32 characters of `a-z`, `0-9` and `_`, starting with a
    /// letter or `_` (see [`TablePrefix`](crate::backend::TablePrefix)), and not
    /// starting with `sqlite_` (SQLite reserves those names); anything else
    /// makes [`open`](Self::open) fail with [`Error::InvalidInput`](crate::Error::InvalidInput)
    /// before it touches the file. The empty prefix (the default) keeps the plain
    /// names (`events`, …), so existing files open unchanged.
    ///
    /// SQL you run yourself ([`write_with`](SqliteEventStore::write_with),
    /// [`commit_with`](SqliteEventStore::commit_with),
    /// [`reader_pool`](SqliteEventStore::reader_pool)) is not rewritten: name the
    /// prefixed tables in it. The stores share the file's single write lock: each
    /// has its own writer connection, so a write of one may wait for a write of
    /// another up to the [`busy_timeout`](Self::busy_timeout).
    ///
    /// ```
    /// use annals_sqlite::{EventStore, ExpectedVersion, NewEvent, SqliteOptions, StreamId};
    ///
    /// # async fn demo() -> annals_sqlite::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.db");
    /// let billing = SqliteOptions::new(&path).table_prefix("billing_").open().await?;
    /// let shipping = SqliteOptions::new(&path).table_prefix("shipping_").open().await?;
    ///
    /// let invoice = StreamId::new("invoice-1")?;
    /// billing
    ///     .append(&invoice, ExpectedVersion::NoStream, vec![NewEvent::new("Issued", "{}")])
    ///     .await?;
    /// // The same file, another store: it has no such stream.
    /// assert_eq!(shipping.stream_version(&invoice).await?.get(), 0);
    ///
    /// // Hostile or malformed prefixes are refused before anything is written.
    /// let err = SqliteOptions::new(&path).table_prefix("x; DROP TABLE events").open().await;
    /// assert!(err.unwrap_err().is_invalid_input());
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    #[must_use]
    pub fn table_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.table_prefix);
        self
    }

    /// The table prefix, as given to [`table_prefix`](Self::table_prefix) (empty by
    /// default).
    pub fn get_table_prefix(&self) -> &str {
        &self.table_prefix
    }

    /// The most appends per group commit.
    pub fn get_max_group(&self) -> usize {
        self.max_group
    }

    /// The durability mode.
    pub fn get_synchronous(&self) -> Synchronous {
        self.synchronous
    }

    /// The busy timeout.
    pub fn get_busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    /// The connection acquire timeout.
    pub fn get_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// The most read connections.
    pub fn get_max_readers(&self) -> u32 {
        self.max_readers
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        match &self.location {
            Location::File(path) => Some(path),
            Location::Memory => None,
        }
    }

    /// Opens the store: creates the file if missing, checks it, applies migrations.
    ///
    /// Same as [`SqliteEventStore::open_with`].
    pub async fn open(self) -> Result<SqliteEventStore> {
        SqliteEventStore::open_with(self).await
    }
}
