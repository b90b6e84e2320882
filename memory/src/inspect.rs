//! Inspection for tests: what the store holds, read without `.await`, plus
//! [`reset`](MemoryEventStore::reset) for test isolation and
//! [`seed`](MemoryEventStore::seed) to fill it from a fixture in one call.
//!
//! Inspection is read-only: it copies events out and never changes what the
//! [`EventStore`](annals_core::EventStore) methods see. Seeding goes through the
//! ordinary [`commit`](annals_core::EventStore::commit) path, so it validates and
//! assigns versions and positions exactly as an application's append would.

use annals_core::{
    AppendRequest, Committed, Error, EventStore, RecordedEvent, Result, Snapshot, StreamId,
};
use futures::FutureExt;

use crate::MemoryEventStore;

impl MemoryEventStore {
    /// Forgets every event and snapshot: the store is as new. Clones see the reset
    /// too (they share the data).
    ///
    /// ```
    /// # use annals_memory::{AppendRequest, ExpectedVersion, MemoryEventStore, NewEvent, StreamId};
    /// let store = MemoryEventStore::new();
    /// let s = StreamId::new("order-1")?;
    /// store.seed(AppendRequest::new().append(&s, ExpectedVersion::NoStream, vec![NewEvent::new("Placed", vec![])]))?;
    /// store.reset();
    /// assert!(store.is_empty() && store.streams().is_empty());
    /// # Ok::<(), annals_memory::Error>(())
    /// ```
    pub fn reset(&self) {
        let mut state = self.write_lock();
        state.log.clear();
        state.streams.clear();
        state.by_id.clear();
        state.snapshots.clear();
    }

    /// Every stream that has events, in the order of its first event.
    pub fn streams(&self) -> Vec<StreamId> {
        let state = self.read();
        let mut streams: Vec<(usize, &StreamId)> = state
            .streams
            .iter()
            .filter_map(|(stream, indices)| indices.first().map(|&first| (first, stream)))
            .collect();
        streams.sort_unstable_by_key(|(first, _)| *first);
        streams.into_iter().map(|(_, s)| s.clone()).collect()
    }

    /// The events of `stream` in version order (empty for an unknown stream).
    pub fn events_of(&self, stream: &StreamId) -> Vec<RecordedEvent> {
        let state = self.read();
        state.streams.get(stream).map_or_else(Vec::new, |indices| {
            indices
                .iter()
                .filter_map(|&i| state.log.get(i).cloned())
                .collect()
        })
    }

    /// Every event in global position order.
    pub fn all_events(&self) -> Vec<RecordedEvent> {
        self.read().log.clone()
    }

    /// The snapshot stored for `stream`, if any.
    pub fn snapshot_of(&self, stream: &StreamId) -> Option<Snapshot> {
        self.read().snapshots.get(stream).cloned()
    }

    /// Appends a whole fixture — any number of streams, one [`AppendRequest`] —
    /// through the ordinary commit path, without `.await` (the in-memory commit
    /// never waits). All or nothing, like any commit.
    ///
    /// ```
    /// # use annals_memory::{AppendRequest, ExpectedVersion, MemoryEventStore, NewEvent, StreamId};
    /// let store = MemoryEventStore::new();
    /// let (a, b) = (StreamId::new("order-1")?, StreamId::new("order-2")?);
    /// store.seed(
    ///     AppendRequest::new()
    ///         .append(&a, ExpectedVersion::NoStream, vec![NewEvent::new("Placed", vec![])])
    ///         .append(&b, ExpectedVersion::NoStream, vec![NewEvent::new("Placed", vec![]), NewEvent::new("Paid", vec![])]),
    /// )?;
    /// assert_eq!(store.streams(), vec![a.clone(), b.clone()]);
    /// assert_eq!(store.events_of(&b).len(), 2);
    /// assert_eq!(store.all_events()[0].stream_id, a);
    /// # Ok::<(), annals_memory::Error>(())
    /// ```
    pub fn seed(&self, fixture: impl Into<AppendRequest>) -> Result<Committed> {
        self.commit(fixture.into())
            .now_or_never()
            .unwrap_or_else(|| {
                Err(Error::backend(
                    "seeding the in-memory store",
                    "the commit did not complete without waiting",
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use annals_core::{EventStore, ExpectedVersion, NewEvent, Snapshot, Version};

    use super::*;

    #[tokio::test]
    async fn inspection_sees_what_the_store_sees_and_reset_forgets_it() {
        let store = MemoryEventStore::new();
        let (a, b) = (StreamId::new("b-1").unwrap(), StreamId::new("a-1").unwrap());
        let event = |t: &str| NewEvent::new(t, b"{}".to_vec());
        store
            .seed(
                AppendRequest::new()
                    .append(&a, ExpectedVersion::NoStream, vec![event("X")])
                    .append(&b, ExpectedVersion::NoStream, vec![event("Y")]),
            )
            .unwrap();
        store
            .append(
                &a,
                ExpectedVersion::Exact(Version::new(1)),
                vec![event("Z")],
            )
            .await
            .unwrap();
        // First-event order, not name order.
        assert_eq!(store.streams(), vec![a.clone(), b.clone()]);
        let types = |events: Vec<RecordedEvent>| {
            events.into_iter().map(|e| e.event_type).collect::<Vec<_>>()
        };
        assert_eq!(types(store.events_of(&a)), ["X", "Z"]);
        assert_eq!(types(store.all_events()), ["X", "Y", "Z"]);
        assert!(store.events_of(&StreamId::new("none").unwrap()).is_empty());
        store
            .save_snapshot(&a, Snapshot::new(Version::new(2), b"{}".to_vec()))
            .await
            .unwrap();
        assert_eq!(store.snapshot_of(&a).unwrap().version, 2);

        // A seed that conflicts writes nothing at all.
        let err = store
            .seed(
                AppendRequest::new()
                    .append(&b, ExpectedVersion::Any, vec![event("W")])
                    .append(&a, ExpectedVersion::NoStream, vec![event("V")]),
            )
            .unwrap_err();
        assert!(err.is_conflict(), "{err}");
        assert_eq!(store.len(), 3);

        let clone = store.clone();
        store.reset();
        assert!(clone.is_empty() && clone.streams().is_empty());
        assert!(clone.snapshot_of(&a).is_none());
        assert_eq!(clone.load_snapshot(&a).await.unwrap(), None);
        // The reset store works like a new one: versions start at 1 again.
        let appended = clone
            .append(&a, ExpectedVersion::NoStream, vec![event("X")])
            .await
            .unwrap();
        assert_eq!(appended.version, 1);
        assert_eq!(appended.positions[0].get(), 1);
    }
}
