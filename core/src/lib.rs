//! The backend-agnostic core of **annals**, an event store for Rust.
//!
//! This crate holds the vocabulary every backend shares — [`StreamId`], [`Version`],
//! [`Position`], [`NewEvent`], [`RecordedEvent`], [`ExpectedVersion`], [`Snapshot`],
//! [`ReadFilter`], the [`Error`] enum — and the [`EventStore`] trait. It does no I/O.
//!
//! Applications depend on one backend crate, which re-exports all of this:
//! `annals-sqlite` (embedded default), `annals-postgres`, `annals-fs` (a log in a
//! git repository), or `annals-memory` (tests and prototypes).
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
//!
//! # Where the event-sourcing layer lives
//!
//! The storage contract ([`EventStore`], [`backend`], [`AppendRequest`], reads,
//! [`consume`]) and the event-sourcing layer built on it ([`Aggregate`],
//! [`Repository`] with [`Repository::execute_across`], [`codec`], upcasting with
//! [`Upcasters`], [`typed`] events) are both in this crate, as modules side by
//! side; the layer was deliberately not split into a crate of its own. Users keep
//! one dependency (a backend crate re-exports everything), the [`Repository`] is
//! written against the [`EventStore`] trait and so needs this crate anyway, and
//! the dependency graph stays a tree with no cycles. A separate crate would
//! have to depend on this one and be re-exported by every backend, so it would
//! add a crate to version and publish without removing a single import path.
//! The layer reaches storage only through the [`EventStore`] trait, never a
//! backend's internals.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod across;
mod aggregate;
mod append;
pub mod backend;
mod capabilities;
pub mod cloud;
pub mod codec;
pub mod consume;
mod error;
mod event;
mod filter;
mod glob;
mod ids;
mod limits;
mod policy;
mod prefix;
pub mod query;
mod read;
mod repository;
mod send;
mod sink;
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
pub use query::EventQuery;
pub use read::{Direction, ReadAll, ReadStream};
pub use repository::{ExecuteError, Executed, Loaded, Repository};
pub use sink::EventSink;
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
