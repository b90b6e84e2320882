//! Appending: decide and write under one write lock, so a request — one stream or
//! many — is all-or-nothing and readers see all of its events or none.

use annals_core::{Committed, Decision, Position, PreparedAppend, RecordedEvent, Result};

use crate::MemoryEventStore;

impl MemoryEventStore {
    pub(crate) fn append_now(&self, append: PreparedAppend) -> Result<Committed> {
        let mut guard = self.write_lock();
        let state = &mut *guard;
        let stored: Vec<RecordedEvent> = append
            .event_ids()
            .filter_map(|id| state.event(&id).cloned())
            .collect();
        let plan = match append.decide(&stored, |stream| state.version(stream))? {
            Decision::Replayed(original) => return Ok(original),
            Decision::Write(plan) => plan,
        };
        // The event at log index `i` has position `i + 1`: the request's positions
        // are the next ones, in request order.
        let first = state.log.len() as u64 + 1;
        let positions: Vec<Position> = (first..first + append.event_count() as u64)
            .map(Position::new)
            .collect();
        let committed = append.committed(&plan, &positions)?;
        let now = self.clock.now();
        for ((stream, version, event), position) in
            append.into_rows(&plan).into_iter().zip(positions)
        {
            let index = state.log.len();
            state.by_id.insert(event.id, index);
            state.streams.entry(stream.clone()).or_default().push(index);
            state.log.push(RecordedEvent::from_new(
                event, stream, version, position, now,
            ));
        }
        Ok(committed)
    }
}
