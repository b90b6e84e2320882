//! [`Capabilities`]: what one backend can do and the limits it enforces, as one
//! value ([`EventStore::capabilities`](crate::EventStore::capabilities)).

use crate::limits;

/// The limits a backend enforces. Core checks every request against them before
/// the backend sees it, so going over one is an
/// [`Error::InvalidInput`](crate::Error::InvalidInput) with nothing written.
///
/// ```
/// # fn demo(store: &impl annals_core::EventStore) {
/// let limits = store.capabilities();
/// let batch_size = limits.max_events_per_append.min(1_000);
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Most events one append (all parts together) may hold.
    pub max_events_per_append: usize,
    /// Most bytes one append may hold: payloads, metadata and names together.
    pub max_append_bytes: usize,
    /// Largest event payload or snapshot state, in bytes. This and the next two
    /// are core's own limits, the same on every backend (events move between
    /// backends unchanged); a backend can lower only the per-append limits above.
    pub max_payload_bytes: usize,
    /// Largest metadata of one event, serialized as JSON, in bytes.
    pub max_metadata_bytes: usize,
    /// Longest stream id, event type or content type, in bytes.
    pub max_name_bytes: usize,
}

impl Default for Capabilities {
    /// The limits core itself enforces; backends may lower the per-append ones
    /// ([`with_max_events_per_append`](Capabilities::with_max_events_per_append),
    /// [`with_max_append_bytes`](Capabilities::with_max_append_bytes)).
    fn default() -> Self {
        Capabilities {
            max_events_per_append: usize::MAX,
            max_append_bytes: usize::MAX,
            max_payload_bytes: limits::MAX_PAYLOAD_LEN,
            max_metadata_bytes: limits::MAX_METADATA_LEN,
            max_name_bytes: limits::MAX_NAME_LEN,
        }
    }
}

impl Capabilities {
    /// Lowers the most events one append may hold.
    #[must_use]
    pub fn with_max_events_per_append(mut self, max: usize) -> Self {
        self.max_events_per_append = max;
        self
    }

    /// Lowers the most bytes one append may hold.
    #[must_use]
    pub fn with_max_append_bytes(mut self, max: usize) -> Self {
        self.max_append_bytes = max;
        self
    }
}
