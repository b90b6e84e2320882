//! Snapshots: one row per stream; saving never replaces a newer one (the upsert's
//! `WHERE excluded.version >= snapshots.version`). Writes run on the writer
//! thread's connection, loads on the rusqlite read connections.

use annals_core::backend;

use crate::{
    row::decode_snapshot, writer::SnapshotWrite, Error, Result, Snapshot, SqliteEventStore,
    StreamId,
};

impl SqliteEventStore {
    /// Stores an already-validated snapshot unless the stored one is newer.
    pub(crate) async fn store_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<()> {
        let version = backend::to_i64(snapshot.version.get(), "snapshot version")?;
        self.writer
            .snapshot(SnapshotWrite::Put {
                stream: stream.as_str().to_owned(),
                version,
                content_type: snapshot.content_type,
                schema_version: i64::from(snapshot.schema_version),
                state: snapshot.state,
            })
            .await
    }

    /// The stream's stored snapshot, if any.
    ///
    /// On the event-read connections, like the tail read that usually follows:
    /// loading an aggregate from a snapshot is one short hop to a blocking thread
    /// per call instead of a trip through sqlx's connection worker.
    pub(crate) async fn stored_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let what = "loading a snapshot";
        let name = stream.as_str().to_owned();
        let sql = std::sync::Arc::clone(&self.sql);
        self.rusqlite_readers
            .run(what, move |conn| {
                let mut statement = conn
                    .prepare_cached(&sql.get_snapshot)
                    .map_err(|e| Error::backend(what, e))?;
                let mut rows = statement
                    .query([name.as_str()])
                    .map_err(|e| Error::backend(what, e))?;
                match rows.next().map_err(|e| Error::backend(what, e))? {
                    Some(row) => decode_snapshot(row).map(Some),
                    None => Ok(None),
                }
            })
            .await
    }

    /// Deletes the stream's snapshot, if any.
    pub(crate) async fn delete_stored_snapshot(&self, stream: &StreamId) -> Result<()> {
        self.writer
            .snapshot(SnapshotWrite::Delete {
                stream: stream.as_str().to_owned(),
            })
            .await
    }
}
