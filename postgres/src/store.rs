//! [`PostgresEventStore`]: connecting, migrating, and the [`EventStore`] impl.

use std::{str::FromStr, sync::Arc, time::Duration};

use annals_core::{
    backend::{from_i64, to_i64},
    AppendResult, EventId, EventStore, EventStream, ExpectedVersion, NewEvent, Position,
    ReadFilter, RecordedEvent, Result, Snapshot, StreamId, Version,
};
use futures::{future::BoxFuture, FutureExt};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    AssertSqlSafe, Connection, Executor, PgPool, Row,
};

use crate::{
    error, options::quote_ident, read, read::bounded, sql::Queries, Error, PostgresOptions,
};

/// Advisory-lock class (`'annm'`) guarding CREATE SCHEMA + migrations per schema.
const MIGRATION_LOCK_CLASS: i32 = 0x616e_6e6d;

/// An [`EventStore`] on PostgreSQL. Cloning is cheap: clones share the pool.
///
/// Build it with [`connect`](PostgresEventStore::connect) /
/// [`connect_with`](PostgresEventStore::connect_with) (the store owns its pool) or
/// [`from_pool`](PostgresEventStore::from_pool) (share your application's pool).
/// Either way the store's schema is created and migrated first.
///
/// ```no_run
/// use annals_postgres::{PostgresEventStore, PostgresOptions};
///
/// # async fn demo() -> annals_postgres::Result<()> {
/// let store = PostgresEventStore::connect_with(
///     "postgres://app@db.internal/app",
///     PostgresOptions::new().schema("orders_events").max_connections(16),
/// )
/// .await?;
/// # drop(store); Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresEventStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) queries: Queries,
    pub(crate) schema: String,
    pub(crate) options: PostgresOptions,
}

impl Inner {
    /// Maps a driver error, reporting the configured bound on timeouts.
    pub(crate) fn map_err(&self, err: sqlx::Error, doing: &str) -> Error {
        let bound = match &err {
            sqlx::Error::PoolTimedOut => self.options.acquire_timeout,
            _ => self
                .options
                .statement_timeout
                .unwrap_or(self.options.operation_timeout),
        };
        error::map(err, doing, bound)
    }
}

// Hand-written so no connection string (which may hold a password) can be printed.
impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore")
            .field("schema", &self.inner.schema)
            .field("pool_size", &self.inner.pool.size())
            .field("pool_idle", &self.inner.pool.num_idle())
            .finish_non_exhaustive()
    }
}

fn bad_url() -> Error {
    // Deliberately does not echo the URL or the parser's message: either may
    // contain the password.
    Error::invalid_input(
        "the PostgreSQL connection URL could not be parsed (not shown: it may contain a password); \
         expected postgres://user[:password]@host[:port]/database[?options]",
    )
}

impl PostgresEventStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`)
    /// with the default [`PostgresOptions`] (schema `annals`), creating and
    /// migrating the schema if needed.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects to the database at `url` with `options`.
    ///
    /// Errors: [`Error::InvalidInput`] for an invalid schema name or URL (the URL is
    /// never included in errors or logs), [`Error::Timeout`] if no connection could
    /// be made within the acquire timeout, [`Error::Backend`] otherwise.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self> {
        options.validate()?;
        let connect = PgConnectOptions::from_str(url).map_err(|_| bad_url())?;
        Self::connect_with_options(connect, options).await
    }

    /// Connects with already-built sqlx connection options (for TLS settings,
    /// passwords from a secret store, Unix sockets, …).
    pub async fn connect_with_options(
        connect: PgConnectOptions,
        options: PostgresOptions,
    ) -> Result<Self> {
        options.validate()?;
        let mut connect = connect;
        if let Some(name) = &options.application_name {
            connect = connect.application_name(name);
        }
        if let Some(timeout) = options.statement_timeout {
            connect = connect.options([("statement_timeout", format!("{}", timeout.as_millis()))]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        Self::from_pool_with(pool, options).await
    }

    /// Uses an existing pool with the default options (schema `annals`).
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        Self::from_pool_with(pool, PostgresOptions::default()).await
    }

    /// Uses an existing pool with `options`. Pool-level options (size, acquire
    /// timeout, statement timeout, application name) are the pool's own.
    pub async fn from_pool_with(pool: PgPool, options: PostgresOptions) -> Result<Self> {
        options.validate()?;
        let schema = options.schema.clone();
        let inner = Inner {
            queries: Queries::new(&schema),
            pool,
            schema,
            options,
        };
        let timeout = inner.options.operation_timeout;
        bounded(timeout, migrate(&inner)).await?;
        tracing::debug!(schema = %inner.schema, "annals-postgres store ready");
        Ok(PostgresEventStore {
            inner: Arc::new(inner),
        })
    }

    /// The pool the store uses (for your own queries or to close it).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema the store's tables live in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The options the store was built with.
    pub fn options(&self) -> &PostgresOptions {
        &self.inner.options
    }
}

/// Creates the schema and applies the embedded migrations, on one dedicated
/// connection whose `search_path` is the schema, under a per-schema advisory lock.
///
/// sqlx's migrator has its own lock, but it is keyed on the *database* name (so it
/// would serialise every schema's migrations) and is taken after nothing we could
/// use for `CREATE SCHEMA`, which can itself race (`IF NOT EXISTS` is not
/// concurrency-safe in PostgreSQL). So sqlx's locking is turned off and this lock
/// covers both. The connection is detached from the pool and closed afterwards, so
/// neither its `search_path` nor a lock left by a failure can leak into the pool.
async fn migrate(inner: &Inner) -> Result<()> {
    let conn = inner
        .pool
        .acquire()
        .await
        .map_err(|e| inner.map_err(e, "connecting to PostgreSQL"))?;
    let mut conn = conn.detach();
    let result = migrate_on(&mut conn, &inner.schema).await;
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the migration connection failed");
    }
    result.map_err(|e| inner.map_err(e, "migrating the annals schema"))
}

async fn migrate_on(conn: &mut sqlx::PgConnection, schema: &str) -> sqlx::Result<()> {
    let quoted = quote_ident(schema);
    sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
        .bind(MIGRATION_LOCK_CLASS)
        .bind(schema)
        .execute(&mut *conn)
        .await?;
    conn.execute(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted}"
    )))
    .await?;
    conn.execute(AssertSqlSafe(format!("SET search_path TO {quoted}")))
        .await?;
    let mut migrator = sqlx::migrate!("../migrations/postgres");
    migrator.set_locking(false);
    migrator.run(&mut *conn).await?;
    // A log restored or replicated from another cluster is ahead of this
    // cluster's transaction ids; the function moves the position clock past it.
    let moved: Option<i64> = sqlx::query_scalar("SELECT check_position_clock()")
        .fetch_one(&mut *conn)
        .await?;
    if let Some(offset) = moved {
        tracing::warn!(
            schema,
            offset,
            "the stored log is ahead of this cluster's transaction ids (restored or \
             replicated from another cluster); new positions continue above it"
        );
    }
    sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
        .bind(MIGRATION_LOCK_CLASS)
        .bind(schema)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl PostgresEventStore {
    pub(crate) async fn stream_version_now(&self, stream: &StreamId) -> Result<Version> {
        let inner = &*self.inner;
        let version: i64 = sqlx::query_scalar(inner.queries.stream_version())
            .bind(stream.as_str())
            .fetch_one(&inner.pool)
            .await
            .map_err(|e| inner.map_err(e, "reading a stream version"))?;
        Ok(Version::new(from_i64(version, "version")?))
    }

    pub(crate) async fn events_by_ids(&self, ids: &[EventId]) -> Result<Vec<RecordedEvent>> {
        let inner = &*self.inner;
        let ids: Vec<sqlx::types::Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        let rows = sqlx::query(inner.queries.events_by_ids())
            .bind(ids)
            .fetch_all(&inner.pool)
            .await
            .map_err(|e| inner.map_err(e, "looking up event ids"))?;
        let mut streams = read::StreamCache::default();
        rows.iter()
            .map(|row| read::decode_event(row, &mut streams))
            .collect()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    async fn get_event_now(&self, id: EventId) -> Result<RecordedEvent> {
        let inner = &*self.inner;
        let row = sqlx::query(inner.queries.get_event())
            .bind(*id.as_uuid())
            .fetch_optional(&inner.pool)
            .await
            .map_err(|e| inner.map_err(e, "reading an event"))?;
        match row {
            Some(row) => read::decode_event(&row, &mut read::StreamCache::default()),
            None => Err(Error::NotFound(format!("event {id}"))),
        }
    }

    async fn save_snapshot_now(&self, stream: &StreamId, snapshot: Snapshot) -> Result<()> {
        snapshot.validate()?;
        let inner = &*self.inner;
        sqlx::query(inner.queries.save_snapshot())
            .bind(stream.as_str())
            .bind(to_i64(snapshot.version.get(), "snapshot version")?)
            .bind(&snapshot.state)
            .bind(&snapshot.content_type)
            .bind(i64::from(snapshot.schema_version))
            .execute(&inner.pool)
            .await
            .map_err(|e| inner.map_err(e, "saving a snapshot"))?;
        Ok(())
    }

    async fn load_snapshot_now(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let inner = &*self.inner;
        let row = sqlx::query(inner.queries.load_snapshot())
            .bind(stream.as_str())
            .fetch_optional(&inner.pool)
            .await
            .map_err(|e| inner.map_err(e, "loading a snapshot"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let corrupt = |e: sqlx::Error| Error::backend("decoding a stored snapshot", e);
        let version: i64 = row.try_get(0).map_err(corrupt)?;
        let state: Vec<u8> = row.try_get(1).map_err(corrupt)?;
        let content_type: String = row.try_get(2).map_err(corrupt)?;
        let schema_version: i64 = row.try_get(3).map_err(corrupt)?;
        let schema_version = u32::try_from(schema_version)
            .map_err(|e| Error::backend("stored snapshot schema version is out of range", e))?;
        Ok(Some(
            Snapshot::new(Version::new(from_i64(version, "snapshot version")?), state)
                .with_content_type(content_type)
                .with_schema_version(schema_version),
        ))
    }

    async fn delete_snapshot_now(&self, stream: &StreamId) -> Result<()> {
        let inner = &*self.inner;
        sqlx::query(inner.queries.delete_snapshot())
            .bind(stream.as_str())
            .execute(&inner.pool)
            .await
            .map_err(|e| inner.map_err(e, "deleting a snapshot"))?;
        Ok(())
    }

    fn timeout(&self) -> Duration {
        self.inner.options.operation_timeout
    }
}

impl EventStore for PostgresEventStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<AppendResult>> {
        bounded(self.timeout(), self.append_now(stream, expected, events)).boxed()
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        limit: Option<u64>,
    ) -> EventStream<'a> {
        read::read_stream(&self.inner, stream, from, limit)
    }

    fn read_all<'a>(
        &'a self,
        from: Position,
        filter: ReadFilter,
        limit: Option<u64>,
    ) -> EventStream<'a> {
        read::read_all(&self.inner, from, filter, limit)
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        bounded(self.timeout(), self.stream_version_now(stream)).boxed()
    }

    fn get_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        bounded(self.timeout(), self.get_event_now(id)).boxed()
    }

    fn save_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        bounded(self.timeout(), self.save_snapshot_now(stream, snapshot)).boxed()
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        bounded(self.timeout(), self.load_snapshot_now(stream)).boxed()
    }

    fn delete_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        bounded(self.timeout(), self.delete_snapshot_now(stream)).boxed()
    }
}
