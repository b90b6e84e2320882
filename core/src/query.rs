//! [`EventQuery`]: the log searched by CloudEvents attributes — types, sources,
//! subjects, correlation id, time and position ranges — in pages, either way.

use std::ops::Range;

use futures::StreamExt;

use crate::{
    backend::Backend, Direction, EventStream, Position, ReadAll, ReadFilter, RecordedEvent,
    Timestamp,
};

const TOP: u64 = i64::MAX as u64;

/// A search of the log. Results come in position (log) order: ascending by
/// default, newest first after [`descending`](EventQuery::descending).
///
/// Every filter narrows the result (they are combined with AND; the values of one
/// list filter are alternatives). Page through results with a **keyset cursor**:
/// pass the position of the last event of a page to [`after`](EventQuery::after)
/// (ascending) or [`before`](EventQuery::before) (descending). That costs the same
/// on page 1,000 as on page 1; [`offset`](EventQuery::offset) also works but reads
/// and discards every skipped event, so it gets slower the further it skips.
///
/// **Guarantees.** An ascending query is gap-safe like
/// [`read_all`](crate::EventStore::read_all): it returns only events below the
/// store's read horizon, so a reader paging with `after` never skips an event that
/// commits later with a lower position. A descending query starts at the newest
/// event visible when it runs (on PostgreSQL, the newest below the read horizon)
/// and is a consistent view of the older events; paging on with `before` never
/// returns an event twice, but an event committed with a position below the cursor
/// after the first page was read is not returned.
///
/// ```
/// use annals_core::{EventQuery, Timestamp};
///
/// let day_ago = Timestamp::from_unix_micros(Timestamp::now().as_unix_micros() - 86_400_000_000);
/// let newest_orders = EventQuery::new()
///     .event_type("order.created")
///     .source("/shop/orders")
///     .time_from(day_ago)
///     .descending()
///     .limit(100);
/// assert_eq!(newest_orders.event_types, ["order.created"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "an EventQuery does nothing until it is passed to EventStore::query"]
pub struct EventQuery {
    /// Only events whose type is one of these; empty means every type.
    pub event_types: Vec<String>,
    /// Only events whose [`source`](RecordedEvent::source) is one of these.
    pub sources: Vec<String>,
    /// Only events whose [`subject`](RecordedEvent::subject) is one of these.
    pub subjects: Vec<String>,
    /// Only events whose subject starts with this (byte-wise).
    pub subject_prefix: Option<String>,
    /// Only events with this correlation id.
    pub correlation_id: Option<String>,
    /// Only events whose [`time`](RecordedEvent::time) is at or after this.
    pub time_from: Option<Timestamp>,
    /// Only events whose time is before this (exclusive).
    pub time_until: Option<Timestamp>,
    /// Only events at or after this position.
    pub position_from: Option<Position>,
    /// Only events before this position (exclusive).
    pub position_until: Option<Position>,
    /// The keyset cursor: only events after this position (ascending) or before
    /// it (descending), exclusive.
    pub cursor: Option<Position>,
    /// Ascending ([`Direction::Forward`]) or descending.
    pub direction: Direction,
    /// At most this many events.
    pub limit: Option<u64>,
    /// Skip this many matching events first (slow: see the type docs).
    pub offset: u64,
}

impl EventQuery {
    /// A query that matches every event, ascending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an event type to the selected types.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_types.push(event_type.into());
        self
    }

    /// Adds a source to the selected sources.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.sources.push(source.into());
        self
    }

    /// Adds a subject to the selected subjects (exact match).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subjects.push(subject.into());
        self
    }

    /// Only subjects starting with `prefix`.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = Some(prefix.into());
        self
    }

    /// Only events with this correlation id.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Only events whose time is at or after `time`.
    pub fn time_from(mut self, time: Timestamp) -> Self {
        self.time_from = Some(time);
        self
    }

    /// Only events whose time is before `time`.
    pub fn time_until(mut self, time: Timestamp) -> Self {
        self.time_until = Some(time);
        self
    }

    /// Only events in `positions` (start inclusive, end exclusive).
    pub fn positions(mut self, positions: Range<Position>) -> Self {
        self.position_from = Some(positions.start);
        self.position_until = Some(positions.end);
        self
    }

    /// Newest first.
    pub fn descending(mut self) -> Self {
        self.direction = Direction::Backward;
        self
    }

    /// Oldest first (the default).
    pub fn ascending(mut self) -> Self {
        self.direction = Direction::Forward;
        self
    }

    /// The next ascending page: events after `position` (the last one you got).
    pub fn after(mut self, position: Position) -> Self {
        self.direction = Direction::Forward;
        self.cursor = Some(position);
        self
    }

    /// The next descending page: events before `position` (the last one you got).
    pub fn before(mut self, position: Position) -> Self {
        self.direction = Direction::Backward;
        self.cursor = Some(position);
        self
    }

    /// At most `limit` events.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Skips the first `offset` matching events. Prefer a cursor: an offset reads
    /// every skipped event.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    /// The positions the query covers after its range and cursor, `start..end`
    /// (start inclusive, end exclusive, both at most `i64::MAX`). Empty when
    /// nothing can match.
    pub fn position_range(&self) -> Range<u64> {
        let mut start = self.position_from.map_or(1, Position::get).max(1);
        let mut end = self.position_until.map_or(TOP, Position::get).min(TOP);
        if let Some(cursor) = self.cursor.map(Position::get) {
            match self.direction {
                Direction::Forward => start = start.max(cursor.saturating_add(1)).min(TOP),
                Direction::Backward => end = end.min(cursor),
            }
        }
        start..end.max(start)
    }

    /// The time range, `start..end` in microseconds since the epoch.
    pub fn time_range(&self) -> Range<i64> {
        let start = self.time_from.map_or(i64::MIN, Timestamp::as_unix_micros);
        let end = self.time_until.map_or(i64::MAX, Timestamp::as_unix_micros);
        start..end.max(start)
    }

    /// At most this many events (never above `i64::MAX`).
    pub fn max_events(&self) -> Option<u64> {
        self.limit.map(|l| l.min(TOP))
    }

    /// Rejects filter values no event can carry: text with a NUL character.
    pub(crate) fn validate(&self) -> crate::Result<()> {
        let texts = self
            .event_types
            .iter()
            .chain(&self.sources)
            .chain(&self.subjects)
            .chain(&self.subject_prefix)
            .chain(&self.correlation_id);
        for text in texts {
            if text.contains('\0') {
                return Err(crate::Error::invalid_input(format!(
                    "query filter `{}` contains a NUL character",
                    text.escape_debug()
                )));
            }
        }
        Ok(())
    }

    /// True when no event can match (core answers such queries itself).
    pub(crate) fn is_empty(&self) -> bool {
        self.position_range().is_empty()
            || self.limit == Some(0)
            || (self.time_until.is_some() && self.time_range().is_empty())
    }

    /// Whether `event` passes every filter (ranges and cursor included): the
    /// reference semantics every backend implements, in SQL where it can.
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        let position = event.position.get();
        let time = event.time().as_unix_micros();
        let subject = event.subject();
        self.position_range().contains(&position)
            && self.time_range().contains(&time)
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
            && (self.sources.is_empty() || self.sources.iter().any(|s| s == event.source()))
            && (self.subjects.is_empty() || self.subjects.iter().any(|s| s == subject))
            && self
                .subject_prefix
                .as_deref()
                .is_none_or(|p| subject.as_bytes().starts_with(p.as_bytes()))
            && self
                .correlation_id
                .as_deref()
                .is_none_or(|c| event.metadata.correlation_id.as_deref() == Some(c))
    }
}

/// The reference implementation of [`Backend::query`]: the log read in the
/// query's direction from its range, filtered here. Correct on every backend
/// (and gap-safe, as `read_all` is); SQL backends push the filters down instead.
pub fn scan<B: Backend + ?Sized>(backend: &B, query: EventQuery) -> EventStream<'_> {
    let range = query.position_range();
    let read = match query.direction {
        Direction::Forward => ReadAll::after(Position::new(range.start - 1)),
        Direction::Backward => ReadAll::before(Position::new(range.end)),
    }
    .filter(ReadFilter::new().event_types(query.event_types.iter().cloned()));
    let skip = usize::try_from(query.offset).unwrap_or(usize::MAX);
    let take = query
        .max_events()
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    backend
        .scan_all(read)
        .take_while(move |item| {
            let inside = match item {
                Ok(e) => range.contains(&e.position.get()),
                Err(_) => true,
            };
            std::future::ready(inside)
        })
        .filter(move |item| {
            std::future::ready(match item {
                Ok(e) => query.matches(e),
                Err(_) => true,
            })
        })
        .skip(skip)
        .take(take)
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_combine_bounds_and_cursor() {
        let q = EventQuery::new().positions(Position::new(10)..Position::new(20));
        assert_eq!(q.position_range(), 10..20);
        assert_eq!(q.clone().after(Position::new(14)).position_range(), 15..20);
        assert_eq!(q.clone().before(Position::new(14)).position_range(), 10..14);
        assert!(q.before(Position::new(5)).is_empty());
        assert!(EventQuery::new().after(Position::new(u64::MAX)).is_empty());
        assert_eq!(EventQuery::new().position_range(), 1..TOP);
        assert!(EventQuery::new().limit(0).is_empty());
        let t = Timestamp::from_unix_micros(5);
        assert!(EventQuery::new().time_from(t).time_until(t).is_empty());
        assert!(!EventQuery::new().time_from(t).is_empty());
    }
}
