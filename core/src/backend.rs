//! The [`Backend`] trait: what a storage engine implements to become an
//! [`EventStore`](crate::EventStore).
//!
//! A backend only stores. Core owns the rules: it validates every request before the
//! backend sees it (a backend receives a [`PreparedAppend`], which only core can
//! build), decides conflicts and idempotent re-sends ([`PreparedAppend::decide`]),
//! answers empty reads itself, and wraps every operation in a `tracing` span. Every
//! `Backend` is an `EventStore` through a blanket implementation. See
//! `docs/backends/writing-a-backend.md` for a walk-through; application code does not
//! need this module.
//!
//! # Writing an append
//!
//! In one transaction (or critical section):
//! 1. load the current version of every stream in [`PreparedAppend::streams`], and
//!    the stored events whose ids are in [`PreparedAppend::event_ids`];
//! 2. call [`PreparedAppend::decide`] with them;
//! 3. on [`Decision::Write`](crate::Decision::Write), store
//!    [`PreparedAppend::rows`] with positions that increase in request order, and
//!    return [`PreparedAppend::committed`]; on
//!    [`Decision::Replayed`](crate::Decision::Replayed), write nothing and return the
//!    result it carries; on an error, write nothing and return it.
//!
//! A backend may skip the id lookup on its fast path if its storage rejects a
//! duplicate id by itself (a unique index), and only then look the ids up and
//! decide again.

use futures::future::BoxFuture;

pub use crate::prefix::TablePrefix;

use crate::{
    consume::AppendSignal, Capabilities, Committed, Error, EventId, EventQuery, EventStream,
    PreparedAppend, ReadAll, ReadStream, RecordedEvent, Result, Snapshot, StreamId, Version,
};

/// A storage engine for events. Implement it; use it through
/// [`EventStore`](crate::EventStore).
///
/// Every method receives input core has already checked:
/// * [`write`](Backend::write) gets a validated request;
/// * reads never get an empty range or a zero limit (core answers those), and their
///   ranges and limits fit in an `i64`;
/// * [`put_snapshot`](Backend::put_snapshot) gets a validated snapshot.
pub trait Backend: Send + Sync {
    /// The backend's limits; core checks requests against them.
    fn limits(&self) -> Capabilities;

    /// Commits a validated append all-or-nothing (see the [module docs](self)).
    fn write(&self, append: PreparedAppend) -> BoxFuture<'_, Result<Committed>>;

    /// A stream's events in `read`'s direction, within [`ReadStream::versions`], at
    /// most [`ReadStream::max_events`]. A missing stream reads as empty.
    fn scan_stream(&self, read: ReadStream) -> EventStream<'_>;

    /// The log's events `read` selects (its filter applied before the limit), in its
    /// direction, within [`ReadAll::positions`], at most [`ReadAll::max_events`].
    fn scan_all(&self, read: ReadAll) -> EventStream<'_>;

    /// The stream's current version (`Version::ZERO` if it has no events).
    fn head_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>>;

    /// One event by id; [`Error::NotFound`] if no event has it.
    fn find_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>>;

    /// Stores a (validated) snapshot unless the stored one is newer.
    fn put_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>>;

    /// The stream's stored snapshot, if any.
    fn get_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>>;

    /// Deletes the stream's snapshot, if any.
    fn remove_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>>;

    /// The events `query` selects, in its order, at most its limit.
    ///
    /// The default reads the log with [`scan_all`](Backend::scan_all) and filters
    /// in core ([`query::scan`](crate::query::scan)); SQL backends push the filters
    /// into their queries. Core answers queries that cannot match anything and
    /// rejects invalid ones before calling this.
    fn query(&self, query: EventQuery) -> EventStream<'_> {
        crate::query::scan(self, query)
    }

    /// The signal of this backend's subscribers, if it keeps one (an
    /// [`AppendSignal::new`] held for its lifetime, shared by its clones). Core
    /// notifies it after every successful [`write`](Backend::write); see
    /// [`EventStore::append_signal`](crate::EventStore::append_signal). The
    /// default is none: subscriptions then find new events by polling only.
    fn append_signal(&self) -> Option<AppendSignal> {
        None
    }

    /// The signal a [`Subscription`](crate::consume::Subscription) waits on. The
    /// default is [`append_signal`](Backend::append_signal). A backend that can
    /// also hear *other processes'* appends (PostgreSQL's `LISTEN/NOTIFY`)
    /// overrides it to start listening the first time a subscriber asks, and
    /// notifies the same signal when it hears one.
    fn watch_appends(&self) -> Option<AppendSignal> {
        self.append_signal()
    }
}

/// Checks `request` against core's rules and `limits`, exactly as
/// [`EventStore::commit`](crate::EventStore::commit) does before
/// [`Backend::write`]: for a backend's own write paths (an append inside the
/// caller's transaction), which must take only validated requests too.
///
/// ```
/// use annals_core::{backend, AppendRequest, Capabilities, ExpectedVersion, NewEvent, StreamId};
///
/// let stream = StreamId::new("order-1")?;
/// let request = AppendRequest::new().append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new("Placed", "{}")]);
/// let prepared = backend::prepare(request, &Capabilities::default())?;
/// assert_eq!(prepared.event_count(), 1);
/// assert!(backend::prepare(AppendRequest::new(), &Capabilities::default()).is_err());
/// # Ok::<(), annals_core::Error>(())
/// ```
pub fn prepare(request: crate::AppendRequest, limits: &Capabilities) -> Result<PreparedAppend> {
    request.prepare(limits)
}

/// Converts a version, position or limit to the `i64` SQL databases store.
pub fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::invalid_input(format!("{what} {value} is larger than the store supports"))
    })
}

/// Converts an `i64` read from a database back to `u64`; a negative value means the
/// stored data is corrupt.
pub fn from_i64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value)
        .map_err(|e| Error::backend(format!("stored {what} {value} is negative"), e))
}

/// The error for an event id no event has.
pub fn not_found(id: EventId) -> Error {
    Error::NotFound(format!("event {id}"))
}

/// A shared reference to a backend is a backend, so `Repository::new(&store)` works.
impl<B: Backend + ?Sized> Backend for &B {
    fn limits(&self) -> Capabilities {
        (**self).limits()
    }
    fn write(&self, append: PreparedAppend) -> BoxFuture<'_, Result<Committed>> {
        (**self).write(append)
    }
    fn scan_stream(&self, read: ReadStream) -> EventStream<'_> {
        (**self).scan_stream(read)
    }
    fn scan_all(&self, read: ReadAll) -> EventStream<'_> {
        (**self).scan_all(read)
    }
    fn head_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        (**self).head_version(stream)
    }
    fn find_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        (**self).find_event(id)
    }
    fn put_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        (**self).put_snapshot(stream, snapshot)
    }
    fn get_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        (**self).get_snapshot(stream)
    }
    fn remove_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        (**self).remove_snapshot(stream)
    }
    fn query(&self, query: EventQuery) -> EventStream<'_> {
        (**self).query(query)
    }
    fn append_signal(&self) -> Option<AppendSignal> {
        (**self).append_signal()
    }
    fn watch_appends(&self) -> Option<AppendSignal> {
        (**self).watch_appends()
    }
}
