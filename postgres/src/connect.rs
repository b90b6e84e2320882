//! [`PostgresEventStore`]: the store value, connecting, and migrating its schema.

use std::{str::FromStr, sync::Arc, time::Duration};

use annals_core::Result;
use sqlx::{
    migrate::{Migration, Migrator},
    postgres::{PgConnectOptions, PgPoolOptions},
    AssertSqlSafe, Connection, Executor, PgPool, SqlSafeStr,
};

use crate::{
    error::{self, bounded},
    notify::Notifications,
    options::quote_ident,
    session::{Session, SessionMode},
    sql::{Names, Queries},
    Error, PostgresOptions,
};

/// Advisory-lock class (`'annm'`) guarding CREATE SCHEMA + migrations per schema.
const MIGRATION_LOCK_CLASS: i32 = 0x616e_6e6d;

/// An [`EventStore`](crate::EventStore) on PostgreSQL. Cloning is cheap: clones share the pool.
///
/// Build it with [`connect`](PostgresEventStore::connect) /
/// [`connect_with`](PostgresEventStore::connect_with) (the store owns its pool) or
/// [`from_pool`](PostgresEventStore::from_pool) (share your application's pool).
/// Either way the store's schema is created and migrated first (unless
/// [`PostgresOptions::migrate`] is off).
///
/// [`with_read_replica`](PostgresEventStore::with_read_replica) makes a store
/// that reads the log and streams from a hot standby and writes to the primary.
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
    /// The primary: appends, snapshots, checkpoints and the reads that must see
    /// this store's own writes.
    pub(crate) pool: PgPool,
    /// Where `read_all` and `read_stream` run: the primary's pool, or a replica's
    /// ([`PostgresEventStore::with_read_replica`]).
    pub(crate) read_pool: PgPool,
    /// Whether `read_pool` is a replica's.
    pub(crate) replica: bool,
    /// How calls get their connection (see `session.rs`).
    pub(crate) mode: SessionMode,
    pub(crate) queries: Queries,
    pub(crate) schema: String,
    pub(crate) options: PostgresOptions,
    /// Wakes this process's subscriptions after its own appends.
    pub(crate) signal: annals_core::consume::AppendSignal,
    /// `NOTIFY` after appends, `LISTEN` for subscribers (other processes' appends).
    pub(crate) notifications: Arc<Notifications>,
    /// Group commit (`group.rs`).
    pub(crate) groups: crate::group::Groups,
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

    /// Whether statements are named and cached ([`PostgresOptions::prepared_statements`]).
    pub(crate) fn prepared(&self) -> bool {
        self.options.prepared_statements
    }

    /// A connection to the primary for one read or small write.
    pub(crate) async fn session(&self, doing: &str) -> Result<Session> {
        Session::start(&self.pool, &self.mode, false, false)
            .await
            .map_err(|e| self.map_err(e, doing))
    }

    /// A connection to the primary for one append, closed if the append is
    /// abandoned; in a transaction if `transaction` (or if every call is).
    pub(crate) async fn write_session(&self, transaction: bool) -> Result<Session> {
        Session::start(&self.pool, &self.mode, transaction, true)
            .await
            .map_err(|e| self.map_err(e, "appending events"))
    }

    /// A connection for one page of `read_all` / `read_stream`: to the replica,
    /// if the store has one.
    pub(crate) async fn read_session(&self, doing: &str) -> Result<Session> {
        Session::start(&self.read_pool, &self.mode, false, false)
            .await
            .map_err(|e| self.map_err(e, doing))
    }
}

// Hand-written so no connection string (which may hold a password) can be printed.
impl std::fmt::Debug for PostgresEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEventStore")
            .field("schema", &self.inner.schema)
            .field("table_prefix", &self.inner.queries.names().prefix.as_str())
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
    /// Errors: [`Error::InvalidInput`] for an invalid schema name, table prefix or
    /// URL (the URL is
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
        let pool = build_pool(connect, &options);
        let local_timeout = local_statement_timeout(&options);
        Self::build(pool, options, local_timeout).await
    }

    /// Uses an existing pool with the default options (schema `annals`).
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        Self::from_pool_with(pool, PostgresOptions::default()).await
    }

    /// Uses an existing pool with `options`. Pool-level options (size, acquire
    /// timeout, statement timeout, application name) are the pool's own.
    pub async fn from_pool_with(pool: PgPool, options: PostgresOptions) -> Result<Self> {
        Self::build(pool, options, None).await
    }

    async fn build(
        pool: PgPool,
        options: PostgresOptions,
        local_timeout_ms: Option<u128>,
    ) -> Result<Self> {
        options.validate()?;
        let schema = options.schema.clone();
        let prefix = options.prefix()?;
        let notifications = Arc::new(Notifications::new(
            &schema,
            prefix.as_str(),
            options.notifications,
            options.prepared_statements,
        ));
        let inner = Inner {
            queries: Queries::new(&schema, &prefix),
            read_pool: pool.clone(),
            pool,
            replica: false,
            mode: SessionMode::new(!options.prepared_statements, local_timeout_ms),
            schema,
            options,
            signal: annals_core::consume::AppendSignal::new(),
            notifications,
            groups: crate::group::Groups::default(),
        };
        let timeout = inner.options.operation_timeout;
        if inner.options.migrate {
            bounded(timeout, migrate(&inner)).await?;
        } else {
            bounded(timeout, check_migrated(&inner, &inner.pool, "the primary")).await?;
        }
        tracing::debug!(
            schema = %inner.schema,
            table_prefix = inner.queries.names().prefix.as_str(),
            "annals-postgres store ready"
        );
        Ok(PostgresEventStore {
            inner: Arc::new(inner),
        })
    }

    /// This store, reading the log and streams from a hot standby: `replica` is
    /// a pool of connections to it (e.g. HAProxy's replica port).
    ///
    /// On the replica: [`read_all`](crate::EventStore::read_all),
    /// [`read_stream`](crate::EventStore::read_stream), and with them
    /// subscriptions, projections and catch-up readers. They stay gap-safe on a
    /// standby (docs/operations/high-availability.md, "Reads from replicas"), and
    /// see the primary's appends after the replication lag.
    ///
    /// On the primary, because they must see this store's own writes:
    /// appends (with their idempotency and conflict checks),
    /// [`stream_version`](crate::EventStore::stream_version),
    /// [`get_event`](crate::EventStore::get_event), snapshots, checkpoints,
    /// leases and `NOTIFY`/`LISTEN`. Code that loads an aggregate with
    /// `read_stream` and appends with [`ExpectedVersion::Exact`](crate::ExpectedVersion)
    /// reads from the replica, so a lagging replica shows up as a
    /// [`Conflict`](Error::Conflict) (nothing is lost; reload and retry): use a
    /// store without a replica for command handling that must not see that.
    ///
    /// The replica's schema must be migrated (through the primary: it
    /// replicates), which is checked here; errors as for
    /// [`migrate(false)`](PostgresOptions::migrate). Pool settings are the
    /// pool's own. The returned store shares the primary's pool with `self`.
    ///
    /// ```no_run
    /// use annals_postgres::{sqlx::PgPool, PostgresEventStore, PostgresOptions};
    ///
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = PostgresEventStore::connect_with(
    ///     "postgres://app:pw@127.0.0.1:5440/app",
    ///     PostgresOptions::new().schema("orders"),
    /// )
    /// .await?
    /// .with_read_replica(PgPool::connect_lazy("postgres://app:pw@127.0.0.1:5439/app")?)
    /// .await?;
    /// # drop(store); Ok(()) }
    /// ```
    pub async fn with_read_replica(self, replica: PgPool) -> Result<Self> {
        let inner = &self.inner;
        let timeout = inner.options.operation_timeout;
        bounded(timeout, check_migrated(inner, &replica, "the read replica")).await?;
        let inner = Inner {
            pool: inner.pool.clone(),
            read_pool: replica,
            replica: true,
            mode: inner.mode.clone(),
            queries: Queries::new(&inner.schema, &inner.queries.names().prefix),
            schema: inner.schema.clone(),
            options: inner.options.clone(),
            signal: inner.signal.clone(),
            notifications: Arc::clone(&inner.notifications),
            groups: crate::group::Groups::default(),
        };
        Ok(PostgresEventStore {
            inner: Arc::new(inner),
        })
    }

    /// [`with_read_replica`](PostgresEventStore::with_read_replica) with a pool
    /// the store builds for `url`, with this store's pool settings
    /// ([`max_connections`](PostgresOptions::max_connections),
    /// [`acquire_timeout`](PostgresOptions::acquire_timeout),
    /// [`statement_timeout`](PostgresOptions::statement_timeout),
    /// [`application_name`](PostgresOptions::application_name)).
    ///
    /// Errors: [`Error::InvalidInput`] for a URL that cannot be parsed (it is
    /// never shown) or a replica whose schema is not migrated.
    pub async fn with_read_replica_url(self, url: &str) -> Result<Self> {
        let mut connect = PgConnectOptions::from_str(url).map_err(|_| bad_url())?;
        if let Some(name) = &self.inner.options.application_name {
            connect = connect.application_name(name);
        }
        let pool = build_pool(connect, &self.inner.options);
        self.with_read_replica(pool).await
    }

    /// Whether `read_all` and `read_stream` go to a read replica
    /// ([`with_read_replica`](PostgresEventStore::with_read_replica)).
    pub fn reads_from_replica(&self) -> bool {
        self.inner.replica
    }

    /// The pool the store uses (for your own queries or to close it); with a
    /// read replica, the primary's.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The pool `read_all` and `read_stream` use: the replica's, or the same as
    /// [`pool`](PostgresEventStore::pool).
    pub fn read_pool(&self) -> &PgPool {
        &self.inner.read_pool
    }

    /// The schema the store's tables live in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The prefix of the store's table names (empty by default, see
    /// [`PostgresOptions::table_prefix`]).
    pub fn table_prefix(&self) -> &str {
        self.inner.queries.names().prefix.as_str()
    }

    /// The options the store was built with.
    pub fn options(&self) -> &PostgresOptions {
        &self.inner.options
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// What group commit has done in this store: for tests and benchmarks, not
    /// part of the API.
    #[doc(hidden)]
    pub fn __group_stats(&self) -> crate::group::GroupStats {
        self.inner.groups.stats()
    }

    /// The shared state, for work that outlives one call (group commit).
    pub(crate) fn inner_arc(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The client-side bound on one call.
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.options.operation_timeout
    }
}

/// The pool a store builds for `connect` with `options`' pool settings. The
/// `statement_timeout` goes into the `options` startup parameter, except without
/// named prepared statements (behind a transaction-mode pooler, which refuses
/// or drops it): then each call sets it with `SET LOCAL`.
fn build_pool(mut connect: PgConnectOptions, options: &PostgresOptions) -> PgPool {
    if options.prepared_statements {
        if let Some(timeout) = options.statement_timeout {
            connect = connect.options([("statement_timeout", format!("{}", timeout.as_millis()))]);
        }
    }
    PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect_lazy_with(connect)
}

/// The `statement_timeout` each call's transaction sets, for a pool the store
/// built without named prepared statements.
fn local_statement_timeout(options: &PostgresOptions) -> Option<u128> {
    if options.prepared_statements {
        None
    } else {
        options.statement_timeout.map(|t| t.as_millis().max(1))
    }
}

/// The embedded migrations, for a store with `names`' table prefix.
///
/// Without a prefix, exactly `sqlx::migrate!`'s migrator (same SQL, checksums
/// and `_sqlx_migrations` table), so existing schemas open unchanged. With one,
/// the same migrations with the prefix in front of every name the schema
/// defines (`sql::SCHEMA_NAMES`, in string literals too, so the functions
/// `set_position_clock` creates with dynamic SQL follow), their checksums
/// computed from that text, recorded in `<prefix>_sqlx_migrations`.
fn migrator(names: &Names) -> Migrator {
    let embedded = sqlx::migrate!("../migrations/postgres");
    if names.prefix.is_empty() {
        return embedded;
    }
    let migrations = embedded
        .iter()
        .map(|m| {
            // The prefix is validated (`[a-z_][a-z0-9_]*`) and the text is the
            // embedded migration's.
            let sql = AssertSqlSafe(names.apply(m.sql.as_str()).into_owned()).into_sql_str();
            Migration::new(
                m.version,
                m.description.clone(),
                m.migration_type,
                sql,
                m.no_tx,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(names.migrations_table.clone());
    migrator
}

/// The newest embedded migration.
fn expected_migration() -> i64 {
    sqlx::migrate!("../migrations/postgres")
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// With [`PostgresOptions::migrate`] off: checks that `pool`'s database has the
/// schema with every embedded migration applied.
async fn check_migrated(inner: &Inner, pool: &PgPool, server: &str) -> Result<()> {
    let expected = expected_migration();
    let schema = &inner.schema;
    let not_migrated = |found: &str| {
        Error::invalid_input(format!(
            "the annals schema `{schema}` on {server} is not migrated ({found}; this version \
             of annals needs migration {expected}); connecting with \
             PostgresOptions::migrate(false) does not migrate: connect a store with \
             migrate(true) (the default) through a direct connection to the primary first \
             (not through a transaction-mode pooler, not to a replica)"
        ))
    };
    let sql = format!(
        "SELECT max(version) FROM {}.{} WHERE success",
        quote_ident(schema),
        inner.queries.names().migrations_table
    );
    let doing = "checking the annals schema's migrations";
    let mut session = Session::start(pool, &inner.mode, false, false)
        .await
        .map_err(|e| inner.map_err(e, doing))?;
    let found = match session.conn() {
        Ok(conn) => {
            sqlx::query_scalar::<_, Option<i64>>(AssertSqlSafe(sql))
                .persistent(false)
                .fetch_one(conn)
                .await
        }
        Err(e) => Err(e),
    };
    let found = match session.finish(found).await {
        Ok(found) => found,
        // undefined_table, invalid_schema_name: nothing was ever migrated here.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("42P01" | "3F000")) =>
        {
            return Err(not_migrated(
                "the schema or its migration table does not exist",
            ));
        }
        Err(e) => return Err(inner.map_err(e, doing)),
    };
    match found {
        Some(version) if version >= expected => {
            if version > expected {
                tracing::warn!(
                    schema = %schema,
                    applied = version,
                    expected,
                    "the annals schema has migrations newer than this version of annals"
                );
            }
            Ok(())
        }
        Some(version) => Err(not_migrated(&format!("its newest migration is {version}"))),
        None => Err(not_migrated("no migration was applied")),
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
    let result = migrate_on(&mut conn, &inner.schema, inner.queries.names()).await;
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the migration connection failed");
    }
    result.map_err(|e| inner.map_err(e, "migrating the annals schema"))
}

async fn migrate_on(
    conn: &mut sqlx::PgConnection,
    schema: &str,
    names: &Names,
) -> sqlx::Result<()> {
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
    let mut migrator = migrator(names);
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
    let check = names.apply("SELECT check_position_clock()");
    let moved: Option<i64> = sqlx::query_scalar(AssertSqlSafe(check.into_owned()))
        .fetch_one(&mut *conn)
        .await?;
    if let Some(offset) = moved {
        tracing::warn!(
            schema,
            table_prefix = names.prefix.as_str(),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use annals_core::backend::TablePrefix;

    use super::*;

    #[test]
    fn default_migrator_is_the_embedded_one() {
        let embedded = sqlx::migrate!("../migrations/postgres");
        let default = migrator(&Names::new(&TablePrefix::default()));
        assert_eq!(default.table_name, "_sqlx_migrations");
        assert_eq!(default.migrations.len(), embedded.migrations.len());
        for (a, b) in default.iter().zip(embedded.iter()) {
            assert_eq!(a.version, b.version);
            assert_eq!(a.checksum, b.checksum);
            assert_eq!(a.sql.as_str(), b.sql.as_str());
        }
    }

    #[test]
    fn prefixed_migrator_has_its_own_table_and_text() {
        let embedded = sqlx::migrate!("../migrations/postgres");
        let prefixed = migrator(&Names::new(&TablePrefix::new("two_").unwrap()));
        assert_eq!(prefixed.table_name, "two__sqlx_migrations");
        assert_eq!(prefixed.migrations.len(), embedded.migrations.len());
        for (a, b) in prefixed.iter().zip(embedded.iter()) {
            assert_eq!(a.version, b.version);
            assert_eq!(a.description, b.description);
            assert_eq!(a.migration_type, b.migration_type);
            assert_ne!(a.checksum, b.checksum);
        }
        let first = prefixed.iter().next().unwrap().sql.as_str();
        assert!(first.contains("CREATE TABLE two_events ("));
        assert!(first.contains("CREATE OR REPLACE FUNCTION two_position_base()"));
    }
}
