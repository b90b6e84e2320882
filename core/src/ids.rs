//! Identifiers: [`StreamId`] names a stream, [`EventId`] names one event store-wide.

use std::{borrow::Borrow, fmt, str::FromStr, sync::Arc};

use crate::{limits, Error, Result};

/// The name of a stream: non-empty UTF-8, at most [`StreamId::MAX_LEN`] bytes, no NUL.
///
/// A stream usually holds the events of one aggregate (`order-42`). Ids are
/// compared byte-wise; [`ReadFilter::stream_prefix`](crate::ReadFilter::stream_prefix)
/// matches on a byte prefix, so a `category-id` naming scheme makes categories
/// cheap to read. Cloning is cheap (the name is reference counted).
///
/// ```
/// use annals_core::StreamId;
///
/// let id = StreamId::new("order-42")?;
/// assert_eq!(id.as_str(), "order-42");
/// assert!(StreamId::new("").is_err());
/// assert!(StreamId::new("a\0b").is_err());
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Longest allowed stream id, in bytes.
    pub const MAX_LEN: usize = limits::MAX_NAME_LEN;

    /// Validates and wraps a stream name; invalid names give [`Error::InvalidInput`].
    pub fn new(name: impl AsRef<str>) -> Result<Self> {
        let name = name.as_ref();
        limits::check_name("stream id", name)?;
        Ok(StreamId(Arc::from(name)))
    }

    /// The stream name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for StreamId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for StreamId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        StreamId::new(s)
    }
}

impl TryFrom<&str> for StreamId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        StreamId::new(s)
    }
}

impl TryFrom<String> for StreamId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        StreamId::new(s)
    }
}

impl serde::Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StreamId::new(s).map_err(serde::de::Error::custom)
    }
}

/// The store-wide unique id of an event. New ids are UUID v7 (time ordered).
///
/// Callers may choose the id (for example derived from a command id) to make a
/// retried append idempotent: re-sending the same events with the same ids does not
/// store them twice.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct EventId(uuid::Uuid);

impl EventId {
    /// A fresh UUID v7 id.
    pub fn new() -> Self {
        EventId(uuid::Uuid::now_v7())
    }

    /// Wraps an existing UUID.
    pub const fn from_uuid(id: uuid::Uuid) -> Self {
        EventId(id)
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }

    /// The 16 bytes of the UUID, big-endian.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Builds an id from the 16 bytes produced by [`EventId::as_bytes`].
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        EventId(uuid::Uuid::from_bytes(bytes))
    }
}

impl Default for EventId {
    fn default() -> Self {
        EventId::new()
    }
}

impl From<uuid::Uuid> for EventId {
    fn from(id: uuid::Uuid) -> Self {
        EventId(id)
    }
}

impl From<EventId> for uuid::Uuid {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl FromStr for EventId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        uuid::Uuid::parse_str(s)
            .map(EventId)
            .map_err(|e| Error::invalid_input(format!("`{s}` is not a UUID: {e}")))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
