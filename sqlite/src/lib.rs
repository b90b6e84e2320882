//! **annals-sqlite**: the annals event store in one SQLite file — zero setup, durable,
//! safe under concurrent use.
//!
//! This crate re-exports the whole core API (`annals_core::*`), so it is the only
//! annals dependency an application needs.
//!
//! # A guided tour
//!
//! Open a store with [`SqliteEventStore::open`]. The file and its parent
//! directories are created if missing and the schema is migrated before `open`
//! returns:
//!
//! ```
//! use annals_sqlite::{
//!     futures::TryStreamExt, AppendRequest, EventStore, ExpectedVersion, NewEvent, ReadAll,
//!     ReadFilter, ReadStream, SqliteEventStore, StreamId, Version,
//! };
//!
//! # async fn tour() -> annals_sqlite::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let store = SqliteEventStore::open(dir.path().join("data/events.db")).await?;
//!
//! // Append to a stream, expecting it not to exist yet (optimistic concurrency).
//! let order = StreamId::new("order-42")?;
//! let placed = NewEvent::json("OrderPlaced.v1", &serde_json::json!({"total": 30}))?;
//! let paid = NewEvent::json("OrderPaid.v1", &serde_json::json!({"amount": 30}))?;
//! let result = store.append(&order, ExpectedVersion::NoStream, vec![placed, paid]).await?;
//! assert_eq!(result.version, Version::new(2));
//!
//! // Appending with a stale expectation is a conflict, and writes nothing.
//! let late = NewEvent::json("OrderCancelled.v1", &serde_json::json!({}))?;
//! let err = store.append(&order, ExpectedVersion::Exact(Version::new(1)), vec![late]).await;
//! assert!(err.unwrap_err().is_conflict());
//!
//! // Read one stream back, in version order; reads are async streams.
//! let events: Vec<_> = store.read_stream(ReadStream::forward(&order)).try_collect().await?;
//! assert_eq!(events[1].event_type, "OrderPaid.v1");
//!
//! // Or newest first.
//! let last: Vec<_> = store.read_stream(ReadStream::backward(&order).limit(1)).try_collect().await?;
//! assert_eq!(last[0].version, Version::new(2));
//!
//! // Or the whole log in position order, optionally filtered (in SQL, before the limit).
//! let paid: Vec<_> = store
//!     .read_all(ReadAll::forward().filter(ReadFilter::new().event_type("OrderPaid.v1")))
//!     .try_collect()
//!     .await?;
//! assert_eq!(paid.len(), 1);
//!
//! // Append to several streams in one transaction: all of it or none of it.
//! let stock = StreamId::new("stock-7")?;
//! let shipped = NewEvent::json("OrderShipped.v1", &serde_json::json!({}))?;
//! let reserved = NewEvent::json("StockReserved.v1", &serde_json::json!({"qty": 1}))?;
//! let committed = store
//!     .commit(
//!         AppendRequest::new()
//!             .append(&order, ExpectedVersion::Exact(Version::new(2)), vec![shipped])
//!             .append(&stock, ExpectedVersion::NoStream, vec![reserved]),
//!     )
//!     .await?;
//! assert_eq!(committed.parts.len(), 2);
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(tour()).unwrap();
//! ```
//!
//! * **Options** — [`SqliteOptions`] sets the durability mode ([`Synchronous`]:
//!   `Full` by default, so every acknowledged append survives power loss; `Normal`
//!   trades the last acknowledged appends on power loss for speed), the busy
//!   timeout for other processes, and the reader pool size.
//!   [`SqliteOptions::in_memory`] gives a private store for tests.
//! * **Concurrency** — any number of tasks may append at once: appends queue for the
//!   single writer connection (on its own thread) and never fail with
//!   `SQLITE_BUSY`; the loser of a race on one stream gets [`Error::Conflict`].
//!   Appends queued together are committed together (group commit, one `fsync` for
//!   all), each still checked, failed and acknowledged on its own
//!   ([`SqliteOptions::max_group`]). An append to several streams
//!   ([`AppendRequest`]) is all-or-nothing. Reads run in parallel (WAL).
//! * **Safety** — [`open`](SqliteEventStore::open) refuses, without modifying it, a
//!   file that is not SQLite or whose schema is newer than this version
//!   ([`OpenError`]). An append is acknowledged only after its transaction
//!   commits: after a crash, every acknowledged append is there and no append is
//!   half-visible.
//! * **Memory** — reads are streamed in pages, so replaying millions of events
//!   runs in bounded memory.
//!
//! The schema, query plans, durability trade-offs and backup procedures are
//! described in `docs/backends/sqlite.md`.
#![deny(missing_docs)]

pub use annals_core::*;

mod append;
mod checkpoint;
mod error;
mod lease;
mod open;
mod options;
mod outbox;
// `query.rs` under another name: a module `query` would hide core's
// `annals_sqlite::query` (re-exported above) from users.
#[path = "query.rs"]
mod pushdown;
mod read;
mod readers;
mod row;
mod send;
mod snapshot;
mod sql;
mod store;
mod writer;

pub use checkpoint::SqliteCheckpoints;
pub use lease::SqliteLeases;
pub use open::{OpenError, SqliteEventStore};
pub use options::{SqliteOptions, Synchronous};
#[doc(hidden)]
pub use pushdown::first_page_statement;
/// The rusqlite this crate uses, re-exported for
/// [`SqliteEventStore::commit_with`] and [`SqliteEventStore::write_with`], whose
/// work runs on the store's rusqlite writer connection.
pub use rusqlite;
/// The sqlx this crate uses, re-exported for [`SqliteCheckpoints::save_in`] and
/// [`SqliteEventStore::reader_pool`], so you use the same version.
pub use sqlx;
