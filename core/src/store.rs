//! The [`EventStore`] trait every backend implements.

use std::sync::Arc;

use futures::{future::BoxFuture, stream::BoxStream};

use crate::{
    EventId, ExpectedVersion, NewEvent, Position, ReadFilter, RecordedEvent, Result, Snapshot,
    StreamId, Version,
};

/// An async stream of stored events, in order, each read lazily from the backend.
///
/// Reading a million events through it runs in bounded memory. An `Err` item ends
/// the stream.
pub type EventStream<'a> = BoxStream<'a, Result<RecordedEvent>>;

/// What a successful [`EventStore::append`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppendResult {
    /// The stream's version after the append: the version of its last event. Pass
    /// it as [`ExpectedVersion::Exact`] to append again.
    pub version: Version,
    /// The global positions of the appended events, in batch order (empty for an
    /// empty batch).
    pub positions: Vec<Position>,
}

impl AppendResult {
    /// Builds a result (used by backends).
    pub fn new(version: Version, positions: Vec<Position>) -> Self {
        AppendResult { version, positions }
    }

    /// Position of the first appended event.
    pub fn first_position(&self) -> Option<Position> {
        self.positions.first().copied()
    }

    /// Position of the last appended event.
    pub fn last_position(&self) -> Option<Position> {
        self.positions.last().copied()
    }
}

/// An append-only log of events grouped in streams, with optimistic concurrency.
///
/// # The contract
///
/// Every backend (`annals-memory`, `annals-sqlite`, `annals-postgres`) proves the same
/// behaviour by running the `annals-testing` conformance suite:
///
/// * **Versions**: a stream's version is its number of events; a missing stream is at
///   [`Version::ZERO`] and the first event gets version 1. Versions are contiguous.
/// * **Atomic, checked appends**: [`append`](EventStore::append) stores all events of
///   a call or none. If the stream does not satisfy `expected` it returns
///   [`Error::Conflict`](crate::Error::Conflict) and writes nothing. An empty batch
///   writes nothing but still checks `expected`.
/// * **Global order**: every event gets a [`Position`]; positions increase in the
///   order readers can observe them, so a reader that has seen position `P` never
///   later sees a new event below `P`. Gaps are allowed.
/// * **Idempotency**: event ids are unique store-wide. Re-sending exactly the same
///   append (same ids and content) returns the original [`AppendResult`] and stores
///   nothing new; reusing an id for different content is
///   [`Error::InvalidInput`](crate::Error::InvalidInput).
/// * **Bad input** (invalid ids or names, oversized payloads, NUL in text) is
///   [`Error::InvalidInput`](crate::Error::InvalidInput) and writes nothing.
///
/// # Generic or `dyn`
///
/// Methods return boxed futures ([`BoxFuture`]) and boxed streams ([`EventStream`])
/// instead of being `async fn`s. That keeps the trait *dyn-compatible*: it works as
/// a generic bound (`S: EventStore`) and as `Arc<dyn EventStore>` alike, at the cost
/// of one small allocation per call — noise next to any I/O. `Arc<S>`, `Box<S>` and
/// `&S` implement the trait too, so a `Repository<Arc<dyn EventStore>>` just works.
///
/// ```
/// # async fn demo(store: std::sync::Arc<dyn annals_core::EventStore>) -> annals_core::Result<()> {
/// use annals_core::{ExpectedVersion, NewEvent, StreamId, Version};
/// use futures::TryStreamExt;
///
/// let stream = StreamId::new("order-1")?;
/// let placed = NewEvent::json("OrderPlaced", &serde_json::json!({"total": 30}))?;
/// let result = store.append(&stream, ExpectedVersion::NoStream, vec![placed]).await?;
/// assert_eq!(result.version, Version::new(1));
///
/// let events: Vec<_> = store.read_stream(&stream, Version::FIRST, None).try_collect().await?;
/// assert_eq!(events.len(), 1);
/// # Ok(()) }
/// ```
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream` if the stream satisfies `expected`; atomic.
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<AppendResult>>;

    /// Reads a stream's events in version order, starting at version `from`
    /// (inclusive; `Version::ZERO` and `Version::FIRST` both mean the start), at most
    /// `limit` of them. A missing stream reads as empty.
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        limit: Option<u64>,
    ) -> EventStream<'a>;

    /// Reads the global log in position order from position `from` (inclusive), the
    /// events `filter` selects, at most `limit` of them.
    ///
    /// To follow the log, remember the last position you processed and call again
    /// with its [`next`](Position::next).
    fn read_all<'a>(
        &'a self,
        from: Position,
        filter: ReadFilter,
        limit: Option<u64>,
    ) -> EventStream<'a>;

    /// The stream's current version (`Version::ZERO` if it has no events).
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>>;

    /// One event by id; [`Error::NotFound`](crate::Error::NotFound) if no event has it.
    fn get_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>>;

    /// Saves a snapshot of `stream`, replacing the stored one unless the stored one
    /// is newer (then the call succeeds and changes nothing).
    fn save_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>>;

    /// The stream's stored snapshot, if any.
    fn load_snapshot<'a>(&'a self, stream: &'a StreamId)
        -> BoxFuture<'a, Result<Option<Snapshot>>>;

    /// Deletes the stream's snapshot, if any. Events are never affected.
    fn delete_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>>;
}

macro_rules! forward_event_store {
    ($($ptr:ty),*) => {$(
        impl<S: EventStore + ?Sized> EventStore for $ptr {
            fn append<'a>(&'a self, stream: &'a StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> BoxFuture<'a, Result<AppendResult>> {
                (**self).append(stream, expected, events)
            }
            fn read_stream<'a>(&'a self, stream: &'a StreamId, from: Version, limit: Option<u64>) -> EventStream<'a> {
                (**self).read_stream(stream, from, limit)
            }
            fn read_all<'a>(&'a self, from: Position, filter: ReadFilter, limit: Option<u64>) -> EventStream<'a> {
                (**self).read_all(from, filter, limit)
            }
            fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
                (**self).stream_version(stream)
            }
            fn get_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
                (**self).get_event(id)
            }
            fn save_snapshot<'a>(&'a self, stream: &'a StreamId, snapshot: Snapshot) -> BoxFuture<'a, Result<()>> {
                (**self).save_snapshot(stream, snapshot)
            }
            fn load_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
                (**self).load_snapshot(stream)
            }
            fn delete_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
                (**self).delete_snapshot(stream)
            }
        }
    )*};
}

forward_event_store!(Arc<S>, Box<S>, &S);
