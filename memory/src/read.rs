//! Reading: events are copied out in chunks, one short read lock per chunk, so a
//! long read never blocks writers for long and runs in bounded memory.

use std::ops::Range;

use annals_core::{Direction, EventStream, ReadAll, ReadStream, RecordedEvent};
use futures::{stream, StreamExt};

use crate::MemoryEventStore;

/// How many events a read copies out per lock acquisition.
const CHUNK: usize = 512;

/// Clamps a `u64` to `usize` (a bound larger than memory is "no bound").
fn clamp(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// Where a read is: the next index range still to scan, and how many events it may
/// still return.
struct Cursor {
    /// Indices (0-based) still to scan: forward reads take from the start, backward
    /// reads from the end.
    left: Range<usize>,
    remaining: usize,
    direction: Direction,
}

impl Cursor {
    /// 1-based `numbers` (versions or positions, start inclusive, end exclusive) as
    /// 0-based indices, cut to `len`.
    fn new(numbers: Range<u64>, len: usize, limit: Option<u64>, direction: Direction) -> Self {
        let start = clamp(numbers.start.saturating_sub(1)).min(len);
        let end = clamp(numbers.end.saturating_sub(1)).min(len);
        Cursor {
            left: start..end.max(start),
            remaining: limit.map_or(usize::MAX, clamp),
            direction,
        }
    }

    /// The next index to look at, if any.
    fn next_index(&mut self) -> Option<usize> {
        match self.direction {
            Direction::Forward => self.left.next(),
            Direction::Backward => self.left.next_back(),
        }
    }

    /// Copies out up to a chunk of the events `select` picks, scanning a bounded
    /// window per call (so a selective filter still releases the lock often).
    fn chunk(
        &mut self,
        mut select: impl FnMut(usize) -> Option<RecordedEvent>,
    ) -> Vec<RecordedEvent> {
        let want = CHUNK.min(self.remaining);
        let mut chunk = Vec::new();
        let mut scanned = 0;
        while chunk.len() < want && scanned < CHUNK * 8 {
            let Some(index) = self.next_index() else {
                break;
            };
            scanned += 1;
            if let Some(event) = select(index) {
                chunk.push(event);
            }
        }
        self.remaining -= chunk.len();
        chunk
    }

    fn finished(&self) -> bool {
        self.remaining == 0 || self.left.is_empty()
    }
}

impl MemoryEventStore {
    pub(crate) fn stream_events(&self, read: &ReadStream) -> EventStream<'_> {
        // The stream's length can grow while we read; a read covers the events that
        // exist when each chunk is copied (forward) or when the read starts (backward).
        let len = self.read().streams.get(read.stream()).map_or(0, Vec::len);
        let len = match read.direction() {
            Direction::Forward => usize::MAX,
            Direction::Backward => len,
        };
        let cursor = Cursor::new(read.versions(), len, read.max_events(), read.direction());
        let stream_id = read.stream().clone();
        stream::unfold(Some(cursor), move |cursor| {
            let stream_id = stream_id.clone();
            async move {
                let mut cursor = cursor?;
                let chunk = {
                    let state = self.read();
                    let indices = state.streams.get(&stream_id)?;
                    cursor.left.end = cursor.left.end.min(indices.len());
                    cursor.chunk(|i| indices.get(i).and_then(|&at| state.log.get(at)).cloned())
                };
                if chunk.is_empty() {
                    return None;
                }
                let next = (!cursor.finished()).then_some(cursor);
                Some((stream::iter(chunk.into_iter().map(Ok)), next))
            }
        })
        .flatten()
        .boxed()
    }

    pub(crate) fn log_events(&self, read: &ReadAll) -> EventStream<'_> {
        let len = match read.direction() {
            Direction::Forward => usize::MAX,
            Direction::Backward => self.read().log.len(),
        };
        let cursor = Cursor::new(read.positions(), len, read.max_events(), read.direction());
        let filter = read.selection().clone();
        stream::unfold(Some(cursor), move |cursor| {
            let filter = filter.clone();
            async move {
                let mut cursor = cursor?;
                let (chunk, at_end) = {
                    let state = self.read();
                    let chunk =
                        cursor.chunk(|i| state.log.get(i).filter(|e| filter.matches(e)).cloned());
                    let at_end = match cursor.direction {
                        Direction::Forward => cursor.left.start >= state.log.len(),
                        Direction::Backward => cursor.left.is_empty(),
                    };
                    (chunk, at_end)
                };
                if chunk.is_empty() && at_end {
                    return None;
                }
                let next = (!cursor.finished() && !at_end).then_some(cursor);
                Some((stream::iter(chunk.into_iter().map(Ok)), next))
            }
        })
        .flatten()
        .boxed()
    }
}
