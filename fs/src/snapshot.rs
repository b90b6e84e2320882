//! Snapshots: machine-local (`.annals/snapshots/`), one file per stream, each
//! recording a hash of the event ids it covers. A reconcile that changes what a
//! version means changes that hash, and the snapshot is no longer returned.

use std::{fs, io};

use annals_core::{Snapshot, StreamId, Version};
use serde::{Deserialize, Serialize};

use crate::{format, layout, state::State, FsError, FsEventStore};

#[derive(Serialize, Deserialize)]
struct Stored {
    stream: String,
    version: u64,
    content_type: String,
    schema_version: u32,
    state_hex: String,
    /// How many of the stream's events `lineage` covers (the snapshot's version,
    /// or fewer if the stream was shorter when it was saved).
    covered: u64,
    /// SHA-256 of the ids of the stream's first `covered` events.
    lineage: String,
}

fn file_name(stream: &StreamId) -> String {
    let hash = format::sha256_hex(stream.as_str().as_bytes());
    format!("{}.json", hash.get(..32).unwrap_or_default())
}

/// The lineage hash of a stream's first `n` events, or `None` if it is forked or
/// shorter.
fn lineage(state: &State, stream: &StreamId, n: u64) -> Option<String> {
    let settled = state.derived.settled(stream).ok()?;
    let n = usize::try_from(n).ok()?;
    let prefix = settled.get(..n)?;
    let mut bytes = Vec::with_capacity(prefix.len() * 16);
    for &slot in prefix {
        let (_, _, id) = state.event_head(slot)?;
        bytes.extend_from_slice(id.as_bytes());
    }
    Some(format::sha256_hex(&bytes))
}

impl FsEventStore {
    pub(crate) fn store_snapshot(
        &self,
        stream: &StreamId,
        snapshot: Snapshot,
    ) -> Result<(), FsError> {
        if self.inner.writable.is_none() {
            return Err(FsError::ReadOnly);
        }
        let _writer = self.inner.writer();
        if let Some(stored) = self.load_stored(stream)? {
            if stored.version > snapshot.version.get() && self.still_valid(stream, &stored) {
                return Ok(());
            }
        }
        let (covered, lineage) = {
            let state = self.inner.read();
            let covered = snapshot.version.get().min(state.version(stream).get());
            let lineage = lineage(&state, stream, covered).unwrap_or_default();
            (covered, lineage)
        };
        let stored = Stored {
            stream: stream.to_string(),
            version: snapshot.version.get(),
            content_type: snapshot.content_type,
            schema_version: snapshot.schema_version,
            state_hex: format::to_hex(&snapshot.state),
            covered,
            lineage,
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| FsError::Encode(e.to_string()))?;
        let layout = &self.inner.layout;
        layout::write_durably(
            &layout.tmp(),
            &layout.snapshots(),
            &file_name(stream),
            &bytes,
        )
        .map_err(FsError::io("writing a snapshot"))
    }

    fn load_stored(&self, stream: &StreamId) -> Result<Option<Stored>, FsError> {
        let path = self.inner.layout.snapshots().join(file_name(stream));
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::io("reading a snapshot")(e)),
        };
        // A local cache file we cannot parse is treated as absent (and replaced
        // by the next save).
        match serde_json::from_slice::<Stored>(&bytes) {
            Ok(stored) if stored.stream == stream.as_str() => Ok(Some(stored)),
            Ok(_) => {
                tracing::warn!(%stream, file = %path.display(), "annals-fs: the snapshot file belongs to another stream; treated as missing");
                Ok(None)
            }
            Err(error) => {
                tracing::warn!(%stream, file = %path.display(), %error, "annals-fs: the snapshot file does not parse; treated as missing");
                Ok(None)
            }
        }
    }

    fn still_valid(&self, stream: &StreamId, stored: &Stored) -> bool {
        let state = self.inner.read();
        lineage(&state, stream, stored.covered).as_deref() == Some(stored.lineage.as_str())
    }

    pub(crate) fn fetch_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, FsError> {
        self.inner.refresh_if_changed()?;
        let Some(stored) = self.load_stored(stream)? else {
            return Ok(None);
        };
        if !self.still_valid(stream, &stored) {
            tracing::info!(%stream, version = stored.version, "annals-fs: snapshot invalidated by a reconcile");
            return Ok(None);
        }
        let Some(state) = format::from_hex(&stored.state_hex) else {
            tracing::warn!(%stream, "annals-fs: the snapshot's state is not hex; treated as missing");
            return Ok(None);
        };
        Ok(Some(
            Snapshot::new(Version::new(stored.version), state)
                .with_content_type(stored.content_type)
                .with_schema_version(stored.schema_version),
        ))
    }

    pub(crate) fn delete_snapshot(&self, stream: &StreamId) -> Result<(), FsError> {
        if self.inner.writable.is_none() {
            return Err(FsError::ReadOnly);
        }
        let _writer = self.inner.writer();
        let dir = self.inner.layout.snapshots();
        match fs::remove_file(dir.join(file_name(stream))) {
            Ok(()) => layout::sync_dir(&dir).map_err(FsError::io("removing a snapshot")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FsError::io("removing a snapshot")(e)),
        }
    }
}
