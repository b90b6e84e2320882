//! Snapshots: one row per stream; saving never replaces a newer one (the upsert's
//! `WHERE excluded.version >= snapshots.version`). Writes run on the writer
//! connection, loads on the rusqlite read connections.

use annals_core::backend;

use crate::{row::decode_snapshot, sql, Error, Result, Snapshot, SqliteEventStore, StreamId};

impl SqliteEventStore {
    /// Stores an already-validated snapshot unless the stored one is newer.
    pub(crate) async fn store_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<()> {
        let version = backend::to_i64(snapshot.version.get(), "snapshot version")?;
        let query = sqlx::query(sql::PUT_SNAPSHOT)
            .bind(stream.as_str())
            .bind(version)
            .bind(snapshot.content_type)
            .bind(i64::from(snapshot.schema_version))
            .bind(snapshot.state);
        let mut writer = self.writer.lock().await?;
        if let Err(e) = query.execute(writer.conn()?).await {
            writer.discard();
            return Err(Error::backend("saving a snapshot", e));
        }
        Ok(())
    }

    /// The stream's stored snapshot, if any.
    ///
    /// On the event-read connections, like the tail read that usually follows:
    /// loading an aggregate from a snapshot is one short hop to a blocking thread
    /// per call instead of a trip through sqlx's connection worker.
    pub(crate) async fn stored_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let what = "loading a snapshot";
        let name = stream.as_str().to_owned();
        self.rusqlite_readers
            .run(what, move |conn| {
                let mut statement = conn
                    .prepare_cached(sql::GET_SNAPSHOT)
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
        let query = sqlx::query(sql::DELETE_SNAPSHOT).bind(stream.as_str());
        let mut writer = self.writer.lock().await?;
        if let Err(e) = query.execute(writer.conn()?).await {
            writer.discard();
            return Err(Error::backend("deleting a snapshot", e));
        }
        Ok(())
    }
}
