//! The backend-agnostic core of **annals**, an event store for Rust.
//!
//! This crate holds the vocabulary every backend shares — [`StreamId`], [`Version`],
//! [`Position`], [`NewEvent`], [`RecordedEvent`], [`ExpectedVersion`], [`Snapshot`],
//! [`ReadFilter`], the [`Error`] enum — and the [`EventStore`] trait. It does no I/O.
//!
//! Applications depend on one backend crate, which re-exports all of this:
//! `annals-sqlite` (embedded default), `annals-postgres`, or `annals-memory`
//! (tests and prototypes).
//!
//! # A tour
//!
//! * Events are appended to a **stream** (usually one per aggregate, like
//!   `order-42`) with an [`ExpectedVersion`]: the optimistic concurrency check that
//!   makes "append only if nobody else did first" one call.
//! * Every stored event has a stream [`Version`] (1, 2, 3, … per stream) and a
//!   global [`Position`] in the store-wide log, readable in order with
//!   [`EventStore::read_all`].
//! * Reads return [`EventStream`]s (`futures::Stream`), so replays run in bounded
//!   memory.
//! * Failures are one [`Error`] enum: [`Error::Conflict`] when someone else appended
//!   first, [`Error::InvalidInput`] for bad input (nothing written), and so on.
//!
//! See the [`EventStore`] docs for the full contract.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod aggregate;
pub mod backend;
pub mod codec;
mod error;
mod event;
mod filter;
mod ids;
pub mod limits;
mod policy;
mod repository;
mod snapshot;
mod store;
mod time;
pub mod typed;
mod upcast;
mod variant;
mod version;

pub use aggregate::Aggregate;
pub use error::{BoxError, Error, Result};
pub use event::{Metadata, NewEvent, RecordedEvent, JSON_CONTENT_TYPE};
pub use filter::ReadFilter;
pub use ids::{EventId, StreamId};
pub use policy::{RetryPolicy, SnapshotPolicy};
pub use repository::{ExecuteError, Executed, Loaded, Repository};
pub use snapshot::Snapshot;
pub use store::{AppendResult, EventStore, EventStream};
pub use time::Timestamp;
pub use typed::DomainEvent;
pub use upcast::{EventType, Upcasters};
pub use version::{ExpectedVersion, Position, Version};

/// Re-exported so backends and users name the same `futures` types.
pub use futures;
