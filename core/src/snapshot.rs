//! [`Snapshot`]: a saved aggregate state at a stream version.

use serde::Serialize;

use crate::{event::JSON_CONTENT_TYPE, limits, Error, Result, Version};

/// An aggregate's state as of a stream version, saved to shorten replays.
///
/// A snapshot is only an optimisation: deleting every snapshot must not change any
/// loaded state. Stores keep one snapshot per stream. Saving replaces the stored one
/// when the new [`version`](Snapshot::version) is the same or newer; a snapshot
/// **older** than the stored one is ignored (concurrent snapshotters can race, and
/// the newest state wins).
///
/// [`schema_version`](Snapshot::schema_version) is the version of the state's own
/// type: when the state type changes, bump it and old snapshots are ignored instead
/// of being mis-decoded.
///
/// ```
/// use annals_core::{Snapshot, Version};
///
/// let snap = Snapshot::json(Version::new(100), &serde_json::json!({"total": 5}))?
///     .with_schema_version(2);
/// assert_eq!(snap.content_type, "application/json");
/// # Ok::<(), annals_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The stream version the state includes (every event up to and including it).
    pub version: Version,
    /// The encoded state.
    pub state: Vec<u8>,
    /// How [`state`](Snapshot::state) is encoded.
    pub content_type: String,
    /// The version of the state's type (0 unless set).
    pub schema_version: u32,
}

impl Snapshot {
    /// A JSON snapshot from already-encoded bytes.
    pub fn new(version: Version, state: impl Into<Vec<u8>>) -> Self {
        Snapshot {
            version,
            state: state.into(),
            content_type: JSON_CONTENT_TYPE.to_owned(),
            schema_version: 0,
        }
    }

    /// A snapshot whose state is `value` serialized as JSON.
    pub fn json<T: Serialize + ?Sized>(version: Version, value: &T) -> Result<Self> {
        let state = serde_json::to_vec(value)
            .map_err(|e| Error::codec("encoding snapshot state as JSON", e))?;
        Ok(Snapshot::new(version, state))
    }

    /// Sets the content type of the state bytes.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    /// Sets the state type's schema version.
    #[must_use]
    pub fn with_schema_version(mut self, schema_version: u32) -> Self {
        self.schema_version = schema_version;
        self
    }

    /// Checks the snapshot against the store's rules (content type, size).
    pub fn validate(&self) -> Result<()> {
        limits::check_name("snapshot content type", &self.content_type)?;
        limits::check_payload("snapshot state", self.state.len())
    }
}
