//! The in-memory store: one lock around a log, a stream index, an id index and the
//! snapshots — and the [`Backend`] implementation, which only forwards to
//! `append.rs`, `read.rs` and `snapshot.rs`.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use annals_core::{
    backend::Backend,
    consume::AppendSignal,
    source::{SystemClock, TimeSource},
    Capabilities, Committed, EventId, EventStream, PreparedAppend, ReadAll, ReadStream,
    RecordedEvent, Result, Snapshot, StreamId, Version,
};
use futures::future::{BoxFuture, FutureExt};

/// An event store that keeps everything in memory. Clones share the same store.
///
/// Use it for tests and prototypes: it passes the same conformance suite as the
/// durable backends, and loses everything when the last clone is dropped.
///
/// ```
/// use annals_memory::{EventStore, ExpectedVersion, MemoryEventStore, NewEvent, StreamId};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> annals_memory::Result<()> {
/// let store = MemoryEventStore::new();
/// let stream = StreamId::new("order-1")?;
/// store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new("Placed", vec![])]).await?;
/// assert_eq!(store.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryEventStore {
    inner: Arc<RwLock<State>>,
    /// The time recorded with each event.
    pub(crate) clock: Arc<dyn TimeSource>,
    /// Notified after every commit: wakes this store's subscriptions.
    pub(crate) signal: AppendSignal,
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        MemoryEventStore {
            inner: Arc::default(),
            clock: Arc::new(SystemClock),
            signal: AppendSignal::new(),
        }
    }
}

#[derive(Default)]
pub(crate) struct State {
    /// The global log; the event at index `i` has position `i + 1`.
    pub(crate) log: Vec<RecordedEvent>,
    /// For each stream, the log indices of its events in version order.
    pub(crate) streams: HashMap<StreamId, Vec<usize>>,
    /// Log index of every event id.
    pub(crate) by_id: HashMap<EventId, usize>,
    pub(crate) snapshots: HashMap<StreamId, Snapshot>,
}

impl State {
    pub(crate) fn version(&self, stream: &StreamId) -> Version {
        Version::new(self.streams.get(stream).map_or(0, Vec::len) as u64)
    }

    pub(crate) fn event(&self, id: &EventId) -> Option<&RecordedEvent> {
        self.by_id.get(id).and_then(|&i| self.log.get(i))
    }
}

impl std::fmt::Debug for MemoryEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.read();
        f.debug_struct("MemoryEventStore")
            .field("events", &state.log.len())
            .field("streams", &state.streams.len())
            .finish()
    }
}

impl MemoryEventStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `clock`'s time with each appended event instead of the wall
    /// clock ([`SystemClock`]), for tests whose recorded times must repeat.
    /// Clones made afterwards share the clock.
    ///
    /// ```
    /// use annals_memory::{EventStore, ExpectedVersion, MemoryEventStore, NewEvent, ReadStream, StreamId};
    /// use annals_core::{futures::TryStreamExt, source::TimeSource, RecordedEvent, Timestamp};
    ///
    /// #[derive(Debug)]
    /// struct Frozen;
    /// impl TimeSource for Frozen {
    ///     fn now(&self) -> Timestamp {
    ///         Timestamp::from_unix_micros(1_000_000)
    ///     }
    /// }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> annals_memory::Result<()> {
    /// let store = MemoryEventStore::new().with_clock(Frozen);
    /// let stream = StreamId::new("s")?;
    /// store.append(&stream, ExpectedVersion::Any, vec![NewEvent::new("E", vec![])]).await?;
    /// let events: Vec<RecordedEvent> = store.read_stream(ReadStream::forward(&stream)).try_collect().await?;
    /// assert_eq!(events[0].recorded_at, Timestamp::from_unix_micros(1_000_000));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_clock(mut self, clock: impl TimeSource + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The number of stored events.
    pub fn len(&self) -> usize {
        self.read().log.len()
    }

    /// True if no event is stored.
    pub fn is_empty(&self) -> bool {
        self.read().log.is_empty()
    }

    // A panic while holding the lock cannot leave the state half-written: appends
    // decide everything before the first mutation. So a poisoned lock is still sound.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write_lock(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Backend for MemoryEventStore {
    fn limits(&self) -> Capabilities {
        Capabilities::default()
    }

    fn write(&self, append: PreparedAppend) -> BoxFuture<'_, Result<Committed>> {
        async move { self.append_now(append) }.boxed()
    }

    fn append_signal(&self) -> Option<AppendSignal> {
        Some(self.signal.clone())
    }

    fn scan_stream(&self, read: ReadStream) -> EventStream<'_> {
        self.stream_events(&read)
    }

    fn scan_all(&self, read: ReadAll) -> EventStream<'_> {
        self.log_events(&read)
    }

    fn head_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        async move { Ok(self.read().version(stream)) }.boxed()
    }

    fn find_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        async move {
            self.read()
                .event(&id)
                .cloned()
                .ok_or_else(|| annals_core::backend::not_found(id))
        }
        .boxed()
    }

    fn put_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            self.store_snapshot(stream, snapshot);
            Ok(())
        }
        .boxed()
    }

    fn get_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        async move { Ok(self.read().snapshots.get(stream).cloned()) }.boxed()
    }

    fn remove_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        async move {
            self.write_lock().snapshots.remove(stream);
            Ok(())
        }
        .boxed()
    }
}
