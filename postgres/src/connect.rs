//! [`PostgresEventStore`]: the store value, connecting, and migrating its schema.

use std::{str::FromStr, sync::Arc, time::Duration};

use annals_core::Result;
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    AssertSqlSafe, Connection, Executor, PgPool,
};

use crate::{
    error::{self, bounded},
    notify::Notifications,
    options::quote_ident,
    sql::Queries,
    Error, PostgresOptions,
};

/// Advisory-lock class (`'annm'`) guarding CREATE SCHEMA + migrations per schema.
const MIGRATION_LOCK_CLASS: i32 = 0x616e_6e6d;

/// An [`EventStore`](crate::EventStore) on PostgreSQL. Cloning is cheap: clones share the pool.
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
    /// Wakes this process's subscriptions after its own appends.
    pub(crate) signal: annals_core::consume::AppendSignal,
    /// `NOTIFY` after appends, `LISTEN` for subscribers (other processes' appends).
    pub(crate) notifications: Arc<Notifications>,
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
        let notifications = Arc::new(Notifications::new(&schema, options.notifications));
        let inner = Inner {
            queries: Queries::new(&schema),
            pool,
            schema,
            options,
            signal: annals_core::consume::AppendSignal::new(),
            notifications,
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

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The client-side bound on one call.
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.options.operation_timeout
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
    // `run_direct` on the connection itself, not `run(&mut *conn)`: `run` goes
    // through `Acquire<'a>`, whose higher-ranked bound makes the future not `Send`
    // (so `tokio::spawn(PostgresEventStore::connect(..))` would not compile).
    migrator
        .run_direct(None, &mut *conn, false)
        .await
        .map_err(sqlx::Error::from)?;
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
