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

mod across;
mod aggregate;
mod append;
pub mod backend;
mod capabilities;
pub mod codec;
pub mod consume;
mod error;
mod event;
mod filter;
mod glob;
mod ids;
mod limits;
mod policy;
mod read;
mod repository;
mod send;
mod snapshot;
pub mod source;
mod store;
mod time;
mod timer;
pub mod typed;
mod upcast;
mod variant;
mod version;

pub use across::{Draft, ExecutedAcross, Handle, Scope};
pub use aggregate::Aggregate;
pub use append::{
    AppendRequest, AppendResult, Committed, Condition, Decision, PreparedAppend, PreparedPart, Row,
    WritePlan,
};
pub use capabilities::Capabilities;
pub use error::{BoxError, Error, Result, StreamConflict};
pub use event::{Metadata, NewEvent, RecordedEvent, JSON_CONTENT_TYPE};
pub use filter::ReadFilter;
pub use ids::{EventId, StreamId};
pub use policy::{RetryPolicy, SnapshotPolicy};
pub use read::{Direction, ReadAll, ReadStream};
pub use repository::{ExecuteError, Executed, Loaded, Repository};
pub use snapshot::Snapshot;
pub use store::{EventStore, EventStream};
pub use time::Timestamp;
pub use typed::DomainEvent;
pub use upcast::{EventType, Upcasters};
pub use version::{ExpectedVersion, Position, Version};

/// Glob patterns as PostgreSQL regular expressions (for SQL backends).
pub mod pattern {
    pub use crate::glob::to_regex;
}

/// Re-exported so backends and users name the same `futures` types.
pub use futures;
