//! Reads as values: [`ReadStream`] (one stream, by version) and [`ReadAll`] (the
//! store-wide log, by position), each forward or backward.
//!
//! Cursors are **exclusive**: `ReadAll::after(p)` starts with the first event after
//! `p`, so resuming from the last event you processed is `after(last.position)` — no
//! `+ 1` to remember. Backward reads (`backward()`, `before(..)`) return the newest
//! events first.

use std::ops::Range;

use crate::{Position, ReadFilter, StreamId, Version};

/// Which way a read walks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Oldest first (ascending versions or positions).
    #[default]
    Forward,
    /// Newest first (descending versions or positions).
    Backward,
}

/// A read of one stream's events.
///
/// ```
/// use annals_core::{ReadStream, StreamId, Version};
///
/// let order = StreamId::new("order-42")?;
/// let everything = ReadStream::forward(&order);
/// let resume = ReadStream::forward(&order).after(Version::new(10)).limit(100);
/// let last_ten = ReadStream::backward(&order).limit(10);
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a ReadStream does nothing until it is passed to EventStore::read_stream"]
pub struct ReadStream {
    stream: StreamId,
    direction: Direction,
    cursor: Option<u64>,
    limit: Option<u64>,
}

impl ReadStream {
    /// Every event of `stream`, oldest first.
    pub fn forward(stream: &StreamId) -> Self {
        ReadStream {
            stream: stream.clone(),
            direction: Direction::Forward,
            cursor: None,
            limit: None,
        }
    }

    /// Every event of `stream`, newest first.
    pub fn backward(stream: &StreamId) -> Self {
        ReadStream {
            direction: Direction::Backward,
            ..Self::forward(stream)
        }
    }

    /// Starts after `version` (exclusive): on a forward read the first event is
    /// `version + 1`. Makes the read forward.
    pub fn after(mut self, version: Version) -> Self {
        self.direction = Direction::Forward;
        self.cursor = Some(version.get());
        self
    }

    /// Starts before `version` (exclusive), newest first: the first event is
    /// `version - 1`. Makes the read backward.
    pub fn before(mut self, version: Version) -> Self {
        self.direction = Direction::Backward;
        self.cursor = Some(version.get());
        self
    }

    /// Returns at most `limit` events.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The stream read.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// At most this many events (never above `i64::MAX`).
    pub fn max_events(&self) -> Option<u64> {
        self.limit.map(clamp)
    }

    /// The versions the read covers, `start..end` (start inclusive, end exclusive,
    /// both at most `i64::MAX`), whatever the direction. Empty when nothing can
    /// match.
    pub fn versions(&self) -> Range<u64> {
        bounds(self.direction, self.cursor, 1)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.versions().is_empty() || self.limit == Some(0)
    }
}

/// A read of the store-wide log, in position order, optionally filtered.
///
/// ```
/// use annals_core::{Position, ReadAll, ReadFilter};
///
/// let everything = ReadAll::forward();
/// let resume = ReadAll::after(Position::new(1_000)).limit(500);
/// let latest_order = ReadAll::backward()
///     .filter(ReadFilter::new().event_type("OrderPlaced.v1"))
///     .limit(1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "a ReadAll does nothing until it is passed to EventStore::read_all"]
pub struct ReadAll {
    direction: Direction,
    cursor: Option<u64>,
    filter: ReadFilter,
    limit: Option<u64>,
}

impl ReadAll {
    /// The whole log, oldest first.
    pub fn forward() -> Self {
        Self::default()
    }

    /// The whole log, newest first.
    pub fn backward() -> Self {
        ReadAll {
            direction: Direction::Backward,
            ..Self::default()
        }
    }

    /// The log after `position` (exclusive), oldest first: pass the position of the
    /// last event you processed to resume.
    pub fn after(position: Position) -> Self {
        ReadAll {
            cursor: Some(position.get()),
            ..Self::default()
        }
    }

    /// The log before `position` (exclusive), newest first.
    pub fn before(position: Position) -> Self {
        ReadAll {
            direction: Direction::Backward,
            cursor: Some(position.get()),
            ..Self::default()
        }
    }

    /// Only the events `filter` selects (applied before the limit).
    pub fn filter(mut self, filter: ReadFilter) -> Self {
        self.filter = filter;
        self
    }

    /// Returns at most `limit` events.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The direction.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The filter.
    pub fn selection(&self) -> &ReadFilter {
        &self.filter
    }

    /// At most this many events (never above `i64::MAX`).
    pub fn max_events(&self) -> Option<u64> {
        self.limit.map(clamp)
    }

    /// The positions the read covers, `start..end` (start inclusive, end exclusive,
    /// both at most `i64::MAX`), whatever the direction. Empty when nothing can
    /// match.
    pub fn positions(&self) -> Range<u64> {
        bounds(self.direction, self.cursor, 1)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.positions().is_empty() || self.limit == Some(0)
    }
}

const TOP: u64 = i64::MAX as u64;

fn clamp(value: u64) -> u64 {
    value.min(TOP)
}

/// `start..end` for a cursor. Values above `i64::MAX` are the same rule on every
/// backend: nothing is stored there, so a forward read after them is empty and a
/// backward read before them is the whole range.
fn bounds(direction: Direction, cursor: Option<u64>, first: u64) -> Range<u64> {
    match (direction, cursor) {
        (Direction::Forward, None) => first..TOP,
        (Direction::Forward, Some(after)) => clamp(after.saturating_add(1)).max(first)..TOP,
        (Direction::Backward, None) => first..TOP,
        (Direction::Backward, Some(before)) => first..clamp(before),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_exclusive_and_clamped() {
        let s = StreamId::new("s").unwrap();
        assert_eq!(ReadStream::forward(&s).versions(), 1..TOP);
        assert_eq!(
            ReadStream::forward(&s).after(Version::new(3)).versions(),
            4..TOP
        );
        assert_eq!(
            ReadStream::backward(&s).before(Version::new(3)).versions(),
            1..3
        );
        assert!(ReadStream::forward(&s)
            .after(Version::new(u64::MAX))
            .is_empty());
        assert!(ReadStream::forward(&s).after(Version::MAX).is_empty());
        assert!(ReadStream::backward(&s).before(Version::FIRST).is_empty());
        assert!(ReadStream::forward(&s).limit(0).is_empty());
        assert_eq!(ReadAll::before(Position::new(u64::MAX)).positions(), 1..TOP);
        assert!(ReadAll::after(Position::new(u64::MAX - 1)).is_empty());
        assert_eq!(ReadAll::after(Position::START).positions(), 1..TOP);
        assert_eq!(ReadAll::forward().limit(u64::MAX).max_events(), Some(TOP));
    }
}
