//! [`ReadFilter`]: which events a [`read_all`](crate::EventStore::read_all) returns.

use crate::RecordedEvent;

/// Selects events from the global log. The default selects everything.
///
/// The struct is `#[non_exhaustive]`: build it with [`ReadFilter::new`] and the
/// builder methods, so new criteria can be added without breaking callers.
///
/// ```
/// use annals_core::ReadFilter;
///
/// let filter = ReadFilter::new()
///     .event_types(["OrderPlaced.v1", "OrderShipped.v1"])
///     .stream_prefix("order-");
/// assert_eq!(filter.event_types.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadFilter {
    /// Only events whose type is one of these; empty means every type.
    pub event_types: Vec<String>,
    /// Only events whose stream id starts with this (byte-wise); `None` means every stream.
    pub stream_prefix: Option<String>,
    /// Only events whose stream id matches this glob (`*`, `?`, `[...]`, with
    /// SQLite's `GLOB` semantics: case-sensitive, `[*]` for a literal `*`).
    pub stream_glob: Option<String>,
}

impl ReadFilter {
    /// A filter that selects every event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only events of these types (replaces any earlier type list).
    #[must_use]
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one event type to the list of selected types.
    #[must_use]
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_types.push(event_type.into());
        self
    }

    /// Keeps only events of streams whose id starts with `prefix`.
    #[must_use]
    pub fn stream_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.stream_prefix = Some(prefix.into());
        self
    }

    /// True if the filter selects every event.
    pub fn is_everything(&self) -> bool {
        self.event_types.is_empty()
            && self.stream_prefix.as_deref().is_none_or(str::is_empty)
            && self.stream_glob.is_none()
    }

    /// Only events whose stream id matches the glob `pattern`: `*` any run of
    /// characters, `?` one character, `[abc]`, `[a-z]`, `[^abc]` a set.
    ///
    /// ```
    /// use annals_core::ReadFilter;
    /// let eu_orders = ReadFilter::new().stream_glob("order-eu-*");
    /// ```
    #[must_use]
    pub fn stream_glob(mut self, pattern: impl Into<String>) -> Self {
        self.stream_glob = Some(pattern.into());
        self
    }

    /// Whether `event` passes the filter (the reference semantics every backend
    /// implements, usually in SQL).
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        let type_ok = self.event_types.is_empty() || self.event_types.contains(&event.event_type);
        let prefix_ok = self.stream_prefix.as_deref().is_none_or(|p| {
            event
                .stream_id
                .as_str()
                .as_bytes()
                .starts_with(p.as_bytes())
        });
        let glob_ok = self
            .stream_glob
            .as_deref()
            .is_none_or(|g| crate::glob::matches(g, event.stream_id.as_str()));
        type_ok && prefix_ok && glob_ok
    }
}
