//! Reading: the index says which events and where; payloads are loaded from their
//! files in chunks, outside the index lock, reading each file once per run.

use std::ops::Range;

use annals_core::{
    Direction, Error, EventStream, Metadata, Position, ReadAll, ReadFilter, ReadStream,
    RecordedEvent, Timestamp, Version,
};
use futures::{stream, StreamExt};

use crate::{
    fork::forked_error,
    state::{EventRef, Loader, State},
    FsEventStore,
};

/// How many events a read looks up per index lock.
const CHUNK: usize = 512;

fn clamp(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Where a read is.
struct Cursor {
    /// 0-based indices still to scan (into a stream's versions or the slots).
    left: Range<usize>,
    remaining: usize,
    direction: Direction,
    started: bool,
    loader: Loader,
}

impl Cursor {
    fn new(numbers: Range<u64>, limit: Option<u64>, direction: Direction) -> Self {
        let start = clamp(numbers.start.saturating_sub(1));
        let end = clamp(numbers.end.saturating_sub(1));
        Cursor {
            left: start..end.max(start),
            remaining: limit.map_or(usize::MAX, clamp),
            direction,
            started: false,
            loader: Loader::default(),
        }
    }

    fn next_index(&mut self) -> Option<usize> {
        match self.direction {
            Direction::Forward => self.left.next(),
            Direction::Backward => self.left.next_back(),
        }
    }

    /// Cuts the range to `len` items; a backward read fixes its end at the first
    /// chunk, a forward read follows the log as it grows.
    fn fit(&mut self, len: usize) {
        if !self.started || self.direction == Direction::Forward {
            self.left.end = self.left.end.min(len);
            self.left.start = self.left.start.min(self.left.end);
        }
        self.started = true;
    }

    fn finished(&self) -> bool {
        self.remaining == 0 || self.left.is_empty()
    }
}

/// A stand-in for the filter: the index's fields, no payload.
fn selected(filter: &ReadFilter, state: &State, slot: usize) -> bool {
    if filter.is_everything() {
        return true;
    }
    let Some((stream, event_type, id)) = state.event_head(slot) else {
        return false;
    };
    let probe = RecordedEvent::new(
        id,
        stream.clone(),
        Version::ZERO,
        Position::START,
        event_type.to_string(),
        Vec::new(),
        String::new(),
        Metadata::default(),
        Timestamp::UNIX_EPOCH,
    );
    filter.matches(&probe)
}

type Chunk = Vec<annals_core::Result<RecordedEvent>>;

impl FsEventStore {
    fn load_chunk(&self, cursor: &mut Cursor, refs: Vec<EventRef>) -> Chunk {
        let dir = self.inner.layout.events();
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            match cursor.loader.load(&dir, r) {
                Ok(event) => out.push(Ok(event)),
                Err(e) => {
                    out.push(Err(Error::from(e)));
                    cursor.remaining = 0;
                    break;
                }
            }
        }
        out
    }

    pub(crate) fn stream_events(&self, read: &ReadStream) -> EventStream<'_> {
        let cursor = Cursor::new(read.versions(), read.max_events(), read.direction());
        let stream_id = read.stream().clone();
        stream::unfold(Some(cursor), move |cursor| {
            let stream_id = stream_id.clone();
            async move {
                let mut cursor = cursor?;
                if !cursor.started {
                    if let Err(e) = self.inner.refresh_if_changed() {
                        return Some((vec![Err(e.into())], None));
                    }
                }
                let refs = {
                    let state = self.inner.read();
                    let Ok(settled) = state.derived.settled(&stream_id) else {
                        let err = forked_error(&state, [&stream_id]);
                        return err.map(|e| (vec![Err(e.into())], None));
                    };
                    cursor.fit(settled.len());
                    let want = CHUNK.min(cursor.remaining);
                    let mut refs = Vec::with_capacity(want);
                    while refs.len() < want {
                        let Some(i) = cursor.next_index() else {
                            break;
                        };
                        if let Some(r) = settled.get(i).and_then(|&slot| state.event_ref(slot)) {
                            refs.push(r);
                        }
                    }
                    cursor.remaining -= refs.len();
                    refs
                };
                if refs.is_empty() {
                    return None;
                }
                let chunk = self.load_chunk(&mut cursor, refs);
                let next = (!cursor.finished()).then_some(cursor);
                Some((chunk, next))
            }
        })
        .flat_map(stream::iter)
        .boxed()
    }

    pub(crate) fn log_events(&self, read: &ReadAll) -> EventStream<'_> {
        let cursor = Cursor::new(read.positions(), read.max_events(), read.direction());
        let filter = read.selection().clone();
        stream::unfold(Some(cursor), move |cursor| {
            let filter = filter.clone();
            async move {
                let mut cursor = cursor?;
                if !cursor.started {
                    if let Err(e) = self.inner.refresh_if_changed() {
                        return Some((vec![Err(e.into())], None));
                    }
                }
                let (refs, at_end) = {
                    let state = self.inner.read();
                    cursor.fit(state.derived.slots.len());
                    let want = CHUNK.min(cursor.remaining);
                    let mut refs = Vec::with_capacity(want);
                    let mut scanned = 0;
                    while refs.len() < want && scanned < CHUNK * 8 {
                        let Some(i) = cursor.next_index() else {
                            break;
                        };
                        scanned += 1;
                        let visible = state.derived.slots.get(i).is_some_and(|s| !s.hidden);
                        if !visible || !selected(&filter, &state, i) {
                            continue;
                        }
                        if let Some(r) = state.event_ref(i) {
                            if let Some(forked) = forked_error(&state, [&r.stream]) {
                                return Some((vec![Err(forked.into())], None));
                            }
                            refs.push(r);
                        }
                    }
                    cursor.remaining -= refs.len();
                    (refs, cursor.left.is_empty())
                };
                if refs.is_empty() && at_end {
                    return None;
                }
                let chunk = self.load_chunk(&mut cursor, refs);
                let next = (!cursor.finished()).then_some(cursor);
                Some((chunk, next))
            }
        })
        .flat_map(stream::iter)
        .boxed()
    }
}
