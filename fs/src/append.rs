//! Appending: one immutable file per request, decided and written under the writer
//! mutex, made durable (tmp → fsync → rename → fsync dir) before it is indexed.

use annals_core::{
    Committed, Decision, Position, PreparedAppend, RecordedEvent, Result, Timestamp,
};
use uuid::Uuid;

use crate::{
    fork::forked_error,
    format::{self, ConditionRecord, Header, Kind, OutEvent, Write},
    layout,
    state::{Loader, Look},
    FsError, FsEventStore,
};

impl FsEventStore {
    pub(crate) fn append_now(&self, append: &PreparedAppend) -> Result<Committed> {
        if self.inner.writable.is_none() {
            return Err(FsError::ReadOnly.into());
        }
        let _writer = self.inner.writer();
        self.inner.refresh_locked(Look::Write)?;
        let (plan, header) = {
            let state = self.inner.read();
            if let Some(forked) = forked_error(&state, append.streams()) {
                return Err(forked.into());
            }
            let refs: Vec<_> = append
                .event_ids()
                .filter_map(|id| state.derived.by_id.get(&id).copied())
                .filter_map(|slot| state.event_ref(slot))
                .collect();
            let stored: Vec<RecordedEvent> = if refs.is_empty() {
                Vec::new()
            } else {
                let dir = self.inner.layout.events();
                let mut loader = Loader::default();
                refs.into_iter()
                    .map(|r| loader.load(&dir, r))
                    .collect::<std::result::Result<_, _>>()?
            };
            let plan = match append.decide(&stored, |stream| state.version(stream))? {
                Decision::Replayed(original) => return Ok(original),
                Decision::Write(plan) => plan,
            };
            if append.event_count() == 0 {
                // Only expectations were checked: nothing to store.
                return append.committed(&plan, &[]);
            }
            let writes = append
                .parts()
                .iter()
                .zip(plan.versions_before())
                .filter(|(part, _)| !part.events().is_empty())
                .map(|(part, before)| Write {
                    stream: part.stream().to_string(),
                    base: before.get(),
                    count: part.events().len() as u64,
                })
                .collect();
            let conditions = append
                .conditions()
                .iter()
                .map(|c| ConditionRecord {
                    stream: c.stream().to_string(),
                    expected: c.expected().to_string(),
                })
                .collect();
            let header = Header {
                hash: String::new(),
                format: format::FORMAT,
                tx: Uuid::now_v7().to_string(),
                replica: self.inner.replica.clone(),
                created: format::format_timestamp(Timestamp::now()),
                kind: Kind::Append,
                parents: state.head_ids(),
                writes,
                conditions,
                resolves: Vec::new(),
            };
            (plan, header)
        };
        let events: Vec<OutEvent<'_>> = append
            .rows(&plan)
            .map(|row| OutEvent {
                stream: row.stream,
                version: row.version,
                event: row.event,
                metadata: row.metadata,
            })
            .collect();
        let (name, bytes) = format::encode(&header, &events).map_err(FsError::Encode)?;
        let layout = &self.inner.layout;
        layout::write_durably(&layout.tmp(), &layout.events(), &name, &bytes)
            .map_err(FsError::io(format!("writing events/{name}")))?;
        let first = self.inner.add_written(&name, &bytes)? as u64 + 1;
        let positions: Vec<Position> = (first..first + append.event_count() as u64)
            .map(Position::new)
            .collect();
        append.committed(&plan, &positions)
    }
}
