//! [`PostgresOptions`]: which schema (and table prefix) the store uses and how it
//! talks to PostgreSQL.

use std::time::Duration;

use annals_core::backend::TablePrefix;

use crate::{Error, Result};

/// How a [`PostgresEventStore`](crate::PostgresEventStore) uses its database: the
/// schema it lives in, the pool size and the time bounds.
///
/// Every setting has a documented default, so `PostgresOptions::default()` is a
/// working configuration. Options are checked when the store connects: an invalid
/// schema name or table prefix is an [`Error::InvalidInput`] then.
///
/// ```
/// use std::time::Duration;
/// use annals_postgres::PostgresOptions;
///
/// let options = PostgresOptions::new()
///     .schema("billing_events")
///     .max_connections(20)
///     .operation_timeout(Duration::from_secs(5))
///     .statement_timeout(Some(Duration::from_secs(4)))
///     .application_name("billing-service");
/// assert_eq!(options.schema_name(), "billing_events");
/// assert!(options.validate().is_ok());
/// assert!(PostgresOptions::new().schema("drop table x;").validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    pub(crate) schema: String,
    pub(crate) table_prefix: String,
    pub(crate) max_connections: u32,
    pub(crate) acquire_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) read_settle_timeout: Duration,
    pub(crate) page_size: u32,
    pub(crate) application_name: Option<String>,
    pub(crate) notifications: bool,
    pub(crate) prepared_statements: bool,
    pub(crate) migrate: bool,
    pub(crate) max_group: usize,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: Self::DEFAULT_SCHEMA.to_owned(),
            table_prefix: String::new(),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
            operation_timeout: Self::DEFAULT_OPERATION_TIMEOUT,
            statement_timeout: Some(Self::DEFAULT_STATEMENT_TIMEOUT),
            read_settle_timeout: Self::DEFAULT_READ_SETTLE_TIMEOUT,
            page_size: Self::DEFAULT_PAGE_SIZE,
            application_name: None,
            notifications: true,
            prepared_statements: true,
            migrate: true,
            max_group: Self::DEFAULT_MAX_GROUP,
        }
    }
}

impl PostgresOptions {
    /// Default [`schema`](PostgresOptions::schema): `annals`.
    pub const DEFAULT_SCHEMA: &'static str = "annals";
    /// Default [`max_connections`](PostgresOptions::max_connections): 10.
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
    /// Default [`acquire_timeout`](PostgresOptions::acquire_timeout): 10 seconds.
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default [`operation_timeout`](PostgresOptions::operation_timeout): 30 seconds.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default [`statement_timeout`](PostgresOptions::statement_timeout): 25 seconds.
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(25);
    /// Default [`read_settle_timeout`](PostgresOptions::read_settle_timeout): 2 seconds.
    pub const DEFAULT_READ_SETTLE_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default [`page_size`](PostgresOptions::page_size): 1,000 rows per query.
    pub const DEFAULT_PAGE_SIZE: u32 = 1000;
    /// Default [`max_group`](PostgresOptions::max_group): 64 appends.
    pub const DEFAULT_MAX_GROUP: usize = 64;
    /// Longest schema name PostgreSQL accepts, in bytes.
    pub const MAX_SCHEMA_LEN: usize = 63;

    /// The defaults (same as [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The schema holding the store's tables (default `annals`), created on connect
    /// if missing. Several stores can share a database in different schemas.
    ///
    /// Must be a plain identifier: 1 to 63 bytes of ASCII letters, digits and `_`,
    /// not starting with a digit and not starting with `pg_`. It is used exactly as
    /// written (quoted), so `Billing` and `billing` are different schemas.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// A prefix for the names of the store's tables, functions, indexes and
    /// constraints, and of its migration table (default: none, the names in
    /// `migrations/postgres`). With the prefix `billing_` the events live in
    /// `"<schema>".billing_events` and the migrations are recorded in
    /// `billing__sqlx_migrations`. Stores with different prefixes in one schema
    /// are fully independent: their own log, positions, snapshots, checkpoints,
    /// leases and notification channel.
    ///
    /// Prefer a separate [`schema`](PostgresOptions::schema) for each store; a
    /// prefix is for when you cannot create schemas, or must keep several stores
    /// in one (see docs/backends/postgres.md, "Schemas and table prefixes").
    ///
    /// Must be at most 32 characters of `a-z`, `0-9` and `_`, starting with a
    /// letter or `_` ([`TablePrefix`](annals_core::backend::TablePrefix)); any
    /// other prefix is an [`Error::InvalidInput`] when the store connects,
    /// before anything is created. Changing the prefix of an existing store
    /// opens a different, empty store.
    ///
    /// ```
    /// use annals_postgres::PostgresOptions;
    ///
    /// let options = PostgresOptions::new().schema("app").table_prefix("billing_");
    /// assert_eq!(options.table_prefix_name(), "billing_");
    /// assert!(options.validate().is_ok());
    /// assert!(PostgresOptions::new().table_prefix("x;DROP TABLE events").validate().is_err());
    /// assert!(PostgresOptions::new().table_prefix("Billing").validate().is_err());
    /// ```
    #[must_use]
    pub fn table_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.table_prefix);
        self
    }

    /// Largest number of pooled connections (default 10). Only used by
    /// [`connect`](crate::PostgresEventStore::connect_with); a pool passed to
    /// [`from_pool`](crate::PostgresEventStore::from_pool) keeps its own size.
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits for a pooled connection, including opening a new one
    /// (default 10 s). Exceeding it is [`Error::Timeout`]. Only used when the store
    /// builds its own pool.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Client-side bound on one store call (one page of a read) (default 30 s).
    ///
    /// Exceeding it is [`Error::Timeout`]. This is what turns an unresponsive or
    /// frozen server into an error instead of a hang: a server-side
    /// [`statement_timeout`](PostgresOptions::statement_timeout) cannot fire on a
    /// server that does not run. An append that timed out may or may not have been
    /// applied; re-sending it with the same event ids is safe.
    #[must_use]
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Server-side `statement_timeout` set on every connection the store opens
    /// (default 25 s; `None` keeps the server's setting). A statement cancelled by it
    /// is [`Error::Timeout`]. Only used when the store builds its own pool.
    ///
    /// It is sent as the `options` startup parameter, or, with
    /// [`prepared_statements(false)`](PostgresOptions::prepared_statements), set
    /// with `SET LOCAL` in each call's transaction (a transaction-mode pooler
    /// refuses or drops startup parameters).
    #[must_use]
    pub fn statement_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// How long [`read_all`](crate::EventStore::read_all) waits for events that are
    /// committed but not yet safe to return (default 2 s).
    ///
    /// An event is safe once every transaction of this database that started
    /// appending before it has finished (see the crate docs on ordering;
    /// transactions of other databases never count). That normally takes
    /// milliseconds; a long-running write transaction in this database can delay
    /// it. `read_all` waits only for events committed before it started; after this
    /// bound it fails with [`ReadBlocked`](crate::ReadBlocked) naming the
    /// transaction that holds them back — it never returns an event past one that
    /// is not safe, and never ends as if the log ended there. The events it
    /// returned are final; retry from the last one.
    #[must_use]
    pub fn read_settle_timeout(mut self, timeout: Duration) -> Self {
        self.read_settle_timeout = timeout;
        self
    }

    /// How many rows a read's first query fetches (default 1,000). Reads are
    /// paged, so memory stays bounded by one page however long the read; each full
    /// page of small events doubles the next, up to 16 times this size (a page's
    /// events stay under a few MiB).
    #[must_use]
    pub fn page_size(mut self, rows: u32) -> Self {
        self.page_size = rows.max(1);
        self
    }

    /// The `application_name` of the store's connections (visible in
    /// `pg_stat_activity`). Only used when the store builds its own pool; for a
    /// connection URL, `?application_name=` works too.
    #[must_use]
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Whether appends wake other processes' subscriptions at once (default on).
    ///
    /// On, the store sends a `NOTIFY` on channel `annals.<schema>` after its
    /// appends (from a background task, outside the append's transaction), and
    /// its first [subscription](annals_core::consume::Subscribe) makes it
    /// `LISTEN` on one extra connection of its own, outside the pool. Off,
    /// subscriptions find other processes' appends at their
    /// [idle poll](annals_core::consume::SubscribeAll::idle_poll). Turn it off
    /// behind a pooler in transaction mode (PgBouncer's `pool_mode =
    /// transaction`), where `LISTEN` does not work.
    #[must_use]
    pub fn notifications(mut self, on: bool) -> Self {
        self.notifications = on;
        self
    }

    /// Whether the store uses named, cached prepared statements (default on).
    ///
    /// On, every statement is prepared once per connection under a name and
    /// reused: one round trip per call. Off, every statement is sent as the
    /// protocol's *unnamed* statement, and every call runs in an explicit
    /// transaction of its own (`BEGIN` … `COMMIT`), so that the unnamed statement,
    /// which sqlx parses and binds in two separate round trips, cannot be
    /// replaced by another client's between the two: two to three more round
    /// trips per call.
    ///
    /// Turn it off behind a pooler in **transaction** mode that does not track
    /// prepared statements (PgBouncer before 1.21, or `max_prepared_statements =
    /// 0`), together with [`migrate(false)`](PostgresOptions::migrate) and
    /// [`notifications(false)`](PostgresOptions::notifications), or use
    /// [`transaction_pooler`](PostgresOptions::transaction_pooler), which sets
    /// all three. Off, a pool the store builds does not send
    /// [`statement_timeout`](PostgresOptions::statement_timeout) as a startup
    /// parameter (PgBouncer refuses or drops it): each call's transaction sets
    /// it with `SET LOCAL` instead. See docs/operations/high-availability.md,
    /// "pgbouncer".
    #[must_use]
    pub fn prepared_statements(mut self, on: bool) -> Self {
        self.prepared_statements = on;
        self
    }

    /// Group commit: the most one-stream appends written together in one
    /// statement and one transaction (default
    /// [`DEFAULT_MAX_GROUP`](PostgresOptions::DEFAULT_MAX_GROUP); `1` turns
    /// grouping off, `0` counts as `1`).
    ///
    /// Appends run alone, at once, while fewer than half the pool
    /// ([`max_connections`](PostgresOptions::max_connections) / 2, 1 to 4) do;
    /// appends that arrive beyond that are gathered (at most this many per
    /// group, one per stream, up to about 4 MiB, appends of at most 64 events)
    /// and written by one statement in one transaction, each with its own
    /// expectation check, so a conflict fails only its own append. One group
    /// is in flight at a time; it takes every append that queued while the
    /// previous one ran. A lone appender never waits for company. See
    /// docs/backends/postgres.md, "Group commit".
    #[must_use]
    pub fn max_group(mut self, appends: usize) -> Self {
        self.max_group = appends.max(1);
        self
    }

    /// Whether connecting creates and migrates the schema (default on).
    ///
    /// On, connecting takes a session advisory lock, creates the schema if
    /// missing, applies the embedded migrations and repairs the position clock
    /// (a restored log). That needs a direct connection to the primary: it
    /// fails on a hot standby, and breaks behind a transaction-mode pooler.
    ///
    /// Off, connecting only checks that the schema exists and has every
    /// embedded migration applied, and fails with [`Error::InvalidInput`] if
    /// not, saying to migrate through a direct connection first (connect one
    /// store with this on, e.g. at deploy time). Use it for stores behind a
    /// transaction-mode pooler and for read replicas.
    #[must_use]
    pub fn migrate(mut self, on: bool) -> Self {
        self.migrate = on;
        self
    }

    /// The settings for a store behind a pooler in **transaction** mode
    /// (PgBouncer's `pool_mode = transaction`): unnamed statements, each call in
    /// a transaction of its own
    /// ([`prepared_statements(false)`](PostgresOptions::prepared_statements),
    /// which also moves [`statement_timeout`](PostgresOptions::statement_timeout)
    /// from the startup parameter PgBouncer refuses to a `SET LOCAL`), no
    /// migration on connect ([`migrate(false)`](PostgresOptions::migrate)) and
    /// no `LISTEN` ([`notifications(false)`](PostgresOptions::notifications)).
    ///
    /// The schema must have been migrated through a direct connection before,
    /// and [`leases`](crate::PostgresEventStore::leases) need a direct
    /// connection (they hold a session advisory lock).
    ///
    /// ```
    /// use annals_postgres::PostgresOptions;
    ///
    /// let options = PostgresOptions::new().schema("billing").transaction_pooler();
    /// assert!(!options.uses_prepared_statements());
    /// assert!(!options.migrates());
    /// ```
    #[must_use]
    pub fn transaction_pooler(self) -> Self {
        self.prepared_statements(false)
            .migrate(false)
            .notifications(false)
    }

    /// Whether the store uses named prepared statements (see
    /// [`prepared_statements`](PostgresOptions::prepared_statements)).
    pub fn uses_prepared_statements(&self) -> bool {
        self.prepared_statements
    }

    /// Whether connecting migrates the schema (see
    /// [`migrate`](PostgresOptions::migrate)).
    pub fn migrates(&self) -> bool {
        self.migrate
    }

    /// The configured schema name.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// The configured table prefix (empty by default, see
    /// [`table_prefix`](PostgresOptions::table_prefix)).
    pub fn table_prefix_name(&self) -> &str {
        &self.table_prefix
    }

    /// The validated table prefix.
    pub(crate) fn prefix(&self) -> Result<TablePrefix> {
        TablePrefix::new(&self.table_prefix)
    }

    /// Checks the options: the schema name must be a plain identifier (see
    /// [`schema`](PostgresOptions::schema)), the table prefix a valid
    /// [`table_prefix`](PostgresOptions::table_prefix), and the application name
    /// must not contain NUL. Errors are [`Error::InvalidInput`].
    pub fn validate(&self) -> Result<()> {
        validate_schema_name(&self.schema)?;
        self.prefix()?;
        if let Some(name) = &self.application_name {
            if name.contains('\0') {
                return Err(Error::invalid_input(
                    "application name contains a NUL character",
                ));
            }
        }
        Ok(())
    }
}

/// Checks that `schema` is a plain identifier we can quote safely.
pub(crate) fn validate_schema_name(schema: &str) -> Result<()> {
    let invalid = |why: &str| {
        Err(Error::invalid_input(format!(
            "schema name `{}` is not allowed: {why}",
            schema.escape_debug()
        )))
    };
    if schema.is_empty() {
        return invalid("it is empty");
    }
    if schema.len() > PostgresOptions::MAX_SCHEMA_LEN {
        return invalid("PostgreSQL identifiers are at most 63 bytes");
    }
    if schema.starts_with(|c: char| c.is_ascii_digit()) {
        return invalid("it starts with a digit");
    }
    if !schema
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return invalid("use only ASCII letters, digits and `_`");
    }
    if schema.to_ascii_lowercase().starts_with("pg_") {
        return invalid("names starting with `pg_` are reserved by PostgreSQL");
    }
    Ok(())
}

/// The schema name as a quoted SQL identifier. Only called on validated names,
/// which contain no quote; doubling quotes keeps it correct regardless.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_identifiers() {
        for name in ["annals", "Billing_2", "_x", &"a".repeat(63)] {
            assert!(validate_schema_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for name in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a\"b",
            "a;drop",
            "a\0b",
            "pg_catalog",
            "PG_x",
            "é",
            &"a".repeat(64),
        ] {
            let err = validate_schema_name(name).unwrap_err();
            assert!(err.is_invalid_input(), "{name}: {err}");
        }
    }

    #[test]
    fn quotes() {
        assert_eq!(quote_ident("annals"), "\"annals\"");
    }
}
