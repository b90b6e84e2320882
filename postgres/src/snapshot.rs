//! Snapshots: one row per stream; saving never replaces a newer one (the
//! statement's `WHERE`).

use annals_core::{
    backend::{from_i64, to_i64},
    Result, Snapshot, StreamId, Version,
};
use sqlx::Row;

use crate::session::on_session;
use crate::{Error, PostgresEventStore};

impl PostgresEventStore {
    /// Stores a validated snapshot unless the stored one is newer.
    pub(crate) async fn save_snapshot_now(
        &self,
        stream: &StreamId,
        snapshot: Snapshot,
    ) -> Result<()> {
        let inner = self.inner();
        let version = to_i64(snapshot.version.get(), "snapshot version")?;
        let doing = "saving a snapshot";
        on_session!(inner, doing, |conn| sqlx::query(
            inner.queries.save_snapshot()
        )
        .persistent(inner.prepared())
        .bind(stream.as_str())
        .bind(version)
        .bind(&snapshot.state)
        .bind(&snapshot.content_type)
        .bind(i64::from(snapshot.schema_version))
        .execute(conn))?;
        Ok(())
    }

    pub(crate) async fn load_snapshot_now(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let inner = self.inner();
        let doing = "loading a snapshot";
        let row = on_session!(inner, doing, |conn| sqlx::query(
            inner.queries.load_snapshot()
        )
        .persistent(inner.prepared())
        .bind(stream.as_str())
        .fetch_optional(conn))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let corrupt = |e: sqlx::Error| Error::backend("decoding a stored snapshot", e);
        let version: i64 = row.try_get(0).map_err(corrupt)?;
        let state: Vec<u8> = row.try_get(1).map_err(corrupt)?;
        let content_type: String = row.try_get(2).map_err(corrupt)?;
        let schema_version: i64 = row.try_get(3).map_err(corrupt)?;
        let schema_version = u32::try_from(schema_version)
            .map_err(|e| Error::backend("stored snapshot schema version is out of range", e))?;
        Ok(Some(
            Snapshot::new(Version::new(from_i64(version, "snapshot version")?), state)
                .with_content_type(content_type)
                .with_schema_version(schema_version),
        ))
    }

    pub(crate) async fn delete_snapshot_now(&self, stream: &StreamId) -> Result<()> {
        let inner = self.inner();
        let doing = "deleting a snapshot";
        on_session!(inner, doing, |conn| sqlx::query(
            inner.queries.delete_snapshot()
        )
        .persistent(inner.prepared())
        .bind(stream.as_str())
        .execute(conn))?;
        Ok(())
    }
}
