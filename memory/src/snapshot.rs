//! Snapshots: one per stream; saving never replaces a newer one.

use annals_core::{Snapshot, StreamId};

use crate::MemoryEventStore;

impl MemoryEventStore {
    pub(crate) fn store_snapshot(&self, stream: &StreamId, snapshot: Snapshot) {
        let mut state = self.write_lock();
        match state.snapshots.get(stream) {
            Some(stored) if stored.version > snapshot.version => {}
            _ => {
                state.snapshots.insert(stream.clone(), snapshot);
            }
        }
    }
}
