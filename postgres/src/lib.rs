//! The **PostgreSQL backend** of annals: an [`EventStore`] for many concurrent
//! writers and readers, on [sqlx](https://docs.rs/sqlx).
//!
//! This crate re-exports the whole `annals-core` API, so it is the only annals
//! dependency an application needs.
//!
//! # A guided tour
//!
//! **Connect.** [`PostgresEventStore::connect`] takes a connection URL, creates the
//! store's schema (`annals` by default, see [`PostgresOptions::schema`]) and runs
//! the embedded migrations. [`PostgresEventStore::from_pool`] shares a pool your
//! application already has. Several stores share a database in different schemas,
//! or in one schema with different [`PostgresOptions::table_prefix`]es.
//!
//! ```no_run
//! use annals_postgres::{
//!     AppendRequest, EventStore, ExpectedVersion, NewEvent, Position, PostgresEventStore,
//!     PostgresOptions, ReadAll, ReadFilter, ReadStream, StreamId, Version,
//! };
//! use futures::TryStreamExt;
//!
//! # async fn demo() -> annals_postgres::Result<()> {
//! let store = PostgresEventStore::connect_with(
//!     "postgres://postgres@127.0.0.1:5432/postgres",
//!     PostgresOptions::new().schema("shop"),
//! )
//! .await?;
//!
//! // Append with an optimistic-concurrency check: the stream must be new.
//! let order = StreamId::new("order-42")?;
//! let placed = NewEvent::json("OrderPlaced.v1", &serde_json::json!({"total": 30}))?;
//! let appended = store.append(&order, ExpectedVersion::NoStream, vec![placed]).await?;
//! assert_eq!(appended.version, Version::new(1));
//!
//! // Several streams at once, all-or-nothing, with a read-only condition.
//! let stock = StreamId::new("stock-sku-7")?;
//! let prices = StreamId::new("prices")?;
//! let reserve = AppendRequest::new()
//!     .append(&order, ExpectedVersion::Exact(Version::new(1)), vec![NewEvent::new("OrderReserved.v1", "{}")])
//!     .append(&stock, ExpectedVersion::Any, vec![NewEvent::new("StockReserved.v1", "{}")])
//!     .require(&prices, ExpectedVersion::NoStream);
//! store.commit(reserve).await?;
//!
//! // Read one stream back, in version order (or the newest first)…
//! let events: Vec<_> = store.read_stream(ReadStream::forward(&order)).try_collect().await?;
//! assert_eq!(events.len(), 2);
//! let latest: Vec<_> = store.read_stream(ReadStream::backward(&order).limit(1)).try_collect().await?;
//! assert_eq!(latest[0].version, Version::new(2));
//!
//! // …or follow the global log from a checkpoint, in position order.
//! let mut checkpoint = Position::START;
//! let orders = ReadFilter::new().stream_glob("order-*");
//! let mut log = store.read_all(ReadAll::after(checkpoint).filter(orders));
//! while let Some(event) = log.try_next().await? {
//!     checkpoint = event.position;
//! }
//! # let _ = checkpoint;
//! # Ok(()) }
//! ```
//!
//! **Concurrency.** Versions are protected by a `UNIQUE (stream_id, version)`
//! constraint: of two appends racing for the same version exactly one wins and the
//! other gets [`Error::Conflict`]. An append to one stream is one statement (one
//! round trip), however many events it carries. A
//! [`commit`](EventStore::commit) to several streams inserts all its rows in one
//! statement, in one canonical order (so concurrent requests never deadlock), and
//! holds each read-only condition with a short-lived guard row, so no writer can
//! change a condition's stream before the request commits.
//!
//! **Global order, gap-safe.** Rows become visible when their transaction
//! *commits*, not in the order appends start, so a naive `WHERE position > last`
//! reader could skip a slow append. This store derives each event's position from
//! its transaction's id (`xid × 2^20 + index in the batch`; positions are unique,
//! increasing, and may have gaps) and [`read_all`](EventStore::read_all) returns only
//! events below the first position of the oldest transaction of this database
//! still running. A reader that has seen position `P` therefore never later sees a
//! new event below `P` — and appenders never wait for each other. A read that
//! cannot return events committed before it started (an older transaction holds
//! them back past `read_settle_timeout`) fails with [`ReadBlocked`] instead of
//! ending short. The full argument, and what it
//! costs, is in `docs/backends/postgres.md`.
//!
//! **Searching.** [`EventStore::query`] runs every filter of an [`EventQuery`]
//! (types, CloudEvents sources and subjects, correlation id, time and position
//! ranges) in SQL, one statement per filter shape, on the indexes of migration
//! 0004; ascending queries are gap-safe like `read_all`.
//!
//! **Time bounds.** Every call is bounded by [`PostgresOptions::operation_timeout`]
//! on the client and (for pools the store builds) by a server-side
//! `statement_timeout`; both surface as [`Error::Timeout`], so a frozen server
//! cannot hang a caller.
//!
//! **Poolers and replicas.** Behind PgBouncer in transaction mode, use
//! [`PostgresOptions::transaction_pooler`] (unnamed statements, each call in its
//! own transaction, no migration on connect, no `LISTEN`) and migrate once
//! through a direct connection. [`PostgresEventStore::with_read_replica`] sends
//! `read_all`, `read_stream` and subscriptions to a hot standby (gap-safe there
//! too) and keeps appends and the reads that must see them on the primary. See
//! `docs/operations/high-availability.md`.
//!
//! **Schema.** `events` (position, event id, stream id, version, type, content
//! type, `bytea` payload, `jsonb` metadata, `timestamptz` recorded_at) and
//! `snapshots` (one per stream, newest wins), created by the
//! plain-SQL migrations in `migrations/postgres/`.
#![deny(missing_docs)]

mod ahead;
mod append;
mod checkpoint;
mod connect;
mod error;
mod event_query;
mod group;
mod lease;
mod notify;
mod options;
mod outbox;
mod read;
mod row;
mod send;
mod session;
mod snapshot;
mod sql;
mod store;

pub use annals_core::*;
pub use checkpoint::PostgresCheckpoints;
pub use connect::PostgresEventStore;
pub use error::{Blocker, ReadBlocked};
pub use lease::PostgresLeases;
pub use options::PostgresOptions;

/// The read statements with their parameter types, for the plan tests
/// (`postgres/tests/plans.rs`); not part of the API.
#[doc(hidden)]
pub use sql::read_statements as __read_statements;

/// The first-page statement of an [`EventQuery`] with its parameter types, for
/// the plan tests (`postgres/tests/queries.rs`); not part of the API.
#[doc(hidden)]
pub use event_query::query_statement as __query_statement;
#[doc(hidden)]
pub use group::GroupStats as __GroupStats;

/// The sqlx types this crate's API mentions ([`PgPool`](sqlx::PgPool),
/// [`PgConnectOptions`](sqlx::postgres::PgConnectOptions)), re-exported so you
/// use the same sqlx version.
pub use sqlx;
