//! The in-memory [`EventStore`]: one lock around a log, a stream index, an id index
//! and the snapshots.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use annals_core::{
    backend, AppendResult, EventId, EventStore, EventStream, ExpectedVersion, NewEvent, Position,
    ReadFilter, RecordedEvent, Result, Snapshot, StreamId, Timestamp, Version,
};
use futures::{future::BoxFuture, stream, FutureExt, StreamExt};

/// How many events a read copies out per lock acquisition.
const CHUNK: usize = 512;

/// An event store that keeps everything in memory. Clones share the same store.
#[derive(Clone, Default)]
pub struct MemoryEventStore {
    inner: Arc<RwLock<State>>,
}

#[derive(Default)]
struct State {
    /// The global log; the event at index `i` has position `i + 1`.
    log: Vec<RecordedEvent>,
    /// For each stream, the log indices of its events in version order.
    streams: HashMap<StreamId, Vec<usize>>,
    /// Log index of every event id.
    by_id: HashMap<EventId, usize>,
    snapshots: HashMap<StreamId, Snapshot>,
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

    /// The number of stored events.
    pub fn len(&self) -> usize {
        self.read().log.len()
    }

    /// True if no event is stored.
    pub fn is_empty(&self) -> bool {
        self.read().log.is_empty()
    }

    // A panic while holding the lock cannot leave the state half-written: appends
    // check everything before the first mutation. So a poisoned lock is still sound.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn append_now(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        backend::prepare_batch(&events)?;
        let mut state = self.write();
        let stored: Vec<RecordedEvent> = events
            .iter()
            .filter_map(|e| {
                state
                    .by_id
                    .get(&e.id)
                    .and_then(|&i| state.log.get(i))
                    .cloned()
            })
            .collect();
        if let Some(original) = backend::replayed_append(stream, expected, &events, &stored)? {
            return Ok(original);
        }
        let current = version_of(state.streams.get(stream).map_or(0, Vec::len));
        backend::check_expected(stream, expected, current)?;
        if events.is_empty() {
            return Ok(AppendResult::new(current, Vec::new()));
        }
        let now = Timestamp::now();
        let mut positions = Vec::with_capacity(events.len());
        let mut version = current;
        let state = &mut *state;
        let indices = state.streams.entry(stream.clone()).or_default();
        for event in events {
            let index = state.log.len();
            version = version.next();
            let position = position_of(index);
            state.by_id.insert(event.id, index);
            indices.push(index);
            state.log.push(RecordedEvent::from_new(
                event,
                stream.clone(),
                version,
                position,
                now,
            ));
            positions.push(position);
        }
        Ok(AppendResult::new(version, positions))
    }
}

fn version_of(len: usize) -> Version {
    Version::new(len as u64)
}

fn position_of(index: usize) -> Position {
    Position::new(index as u64 + 1)
}

/// Clamps a `u64` to `usize` (a limit or offset larger than memory is "no limit").
fn clamp(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl EventStore for MemoryEventStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<AppendResult>> {
        let result = self.append_now(stream, expected, events);
        async move { result }.boxed()
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        limit: Option<u64>,
    ) -> EventStream<'a> {
        // `next` is the 0-based index into the stream of the next event to return.
        let start = clamp(from.get().saturating_sub(1));
        let remaining = limit.map_or(usize::MAX, clamp);
        stream::unfold((start, remaining), move |(next, remaining)| async move {
            if remaining == 0 {
                return None;
            }
            let chunk: Vec<RecordedEvent> = {
                let state = self.read();
                let indices = state.streams.get(stream)?;
                let end = next.saturating_add(CHUNK.min(remaining)).min(indices.len());
                indices
                    .get(next..end)?
                    .iter()
                    .filter_map(|&i| state.log.get(i).cloned())
                    .collect()
            };
            if chunk.is_empty() {
                return None;
            }
            let taken = chunk.len();
            Some((
                stream::iter(chunk.into_iter().map(Ok)),
                (next + taken, remaining - taken),
            ))
        })
        .flatten()
        .boxed()
    }

    fn read_all<'a>(
        &'a self,
        from: Position,
        filter: ReadFilter,
        limit: Option<u64>,
    ) -> EventStream<'a> {
        let start = clamp(from.get().saturating_sub(1));
        let remaining = limit.map_or(usize::MAX, clamp);
        stream::unfold(
            (start, remaining, filter),
            move |(mut next, remaining, filter)| async move {
                if remaining == 0 {
                    return None;
                }
                let chunk: Vec<RecordedEvent> = {
                    let state = self.read();
                    let mut chunk = Vec::new();
                    // Scan a bounded window per lock acquisition, even when few events match.
                    let scan_end = next.saturating_add(CHUNK * 8).min(state.log.len());
                    while next < scan_end && chunk.len() < CHUNK.min(remaining) {
                        if let Some(event) = state.log.get(next).filter(|e| filter.matches(e)) {
                            chunk.push(event.clone());
                        }
                        next += 1;
                    }
                    if chunk.is_empty() && next >= state.log.len() {
                        return None;
                    }
                    chunk
                };
                let taken = chunk.len();
                Some((
                    stream::iter(chunk.into_iter().map(Ok)),
                    (next, remaining - taken, filter),
                ))
            },
        )
        .flatten()
        .boxed()
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        let version = version_of(self.read().streams.get(stream).map_or(0, Vec::len));
        async move { Ok(version) }.boxed()
    }

    fn get_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        let found = {
            let state = self.read();
            state
                .by_id
                .get(&id)
                .and_then(|&i| state.log.get(i))
                .cloned()
        };
        async move { found.ok_or_else(|| annals_core::Error::NotFound(format!("event {id}"))) }
            .boxed()
    }

    fn save_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        let result = snapshot.validate().map(|()| {
            let mut state = self.write();
            match state.snapshots.get(stream) {
                Some(stored) if stored.version > snapshot.version => {}
                _ => {
                    state.snapshots.insert(stream.clone(), snapshot);
                }
            }
        });
        async move { result }.boxed()
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        let found = self.read().snapshots.get(stream).cloned();
        async move { Ok(found) }.boxed()
    }

    fn delete_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        self.write().snapshots.remove(stream);
        async move { Ok(()) }.boxed()
    }
}
