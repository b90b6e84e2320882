//! The [`Backend`] implementation: every operation under the store's client-side
//! bound, forwarded to `append.rs`, `read.rs` and `snapshot.rs`. Core validates
//! requests, short-circuits empty reads and traces every call
//! ([`EventStore`](annals_core::EventStore) is implemented for every `Backend`).

use annals_core::{
    backend::{from_i64, not_found, Backend},
    consume::AppendSignal,
    Capabilities, Committed, EventId, EventStream, PreparedAppend, ReadAll, ReadStream,
    RecordedEvent, Result, Snapshot, StreamId, Version,
};
use futures::{future::BoxFuture, FutureExt};

use crate::{
    append::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS},
    error::bounded,
    read,
    row::{decode_event, StreamCache},
    PostgresEventStore,
};

impl PostgresEventStore {
    pub(crate) async fn head_version_now(&self, stream: &StreamId) -> Result<Version> {
        let inner = self.inner();
        let version: i64 = sqlx::query_scalar(inner.queries.stream_version())
            .bind(stream.as_str())
            .fetch_one(&inner.pool)
            .await
            .map_err(|e| inner.map_err(e, "reading a stream version"))?;
        Ok(Version::new(from_i64(version, "version")?))
    }

    async fn find_event_now(&self, id: EventId) -> Result<RecordedEvent> {
        let inner = self.inner();
        let row = sqlx::query(inner.queries.get_event())
            .bind(*id.as_uuid())
            .fetch_optional(&inner.pool)
            .await
            .map_err(|e| inner.map_err(e, "reading an event"))?;
        match row {
            Some(row) => decode_event(&row, &mut StreamCache::default()),
            None => Err(not_found(id)),
        }
    }
}

impl Backend for PostgresEventStore {
    fn limits(&self) -> Capabilities {
        Capabilities::default()
            .with_max_events_per_append(MAX_BATCH_EVENTS)
            .with_max_append_bytes(MAX_BATCH_BYTES)
    }

    fn write(&self, append: PreparedAppend) -> BoxFuture<'_, Result<Committed>> {
        async move {
            let committed = bounded(self.timeout(), self.append_now(append)).await?;
            let inner = self.inner();
            inner.notifications.appended(&inner.pool);
            Ok(committed)
        }
        .boxed()
    }

    fn scan_stream(&self, read: ReadStream) -> EventStream<'_> {
        read::read_stream(self.inner(), &read)
    }

    fn scan_all(&self, read: ReadAll) -> EventStream<'_> {
        read::read_all(self.inner(), &read)
    }

    fn head_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        bounded(self.timeout(), self.head_version_now(stream)).boxed()
    }

    fn find_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        bounded(self.timeout(), self.find_event_now(id)).boxed()
    }

    fn put_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        bounded(self.timeout(), self.save_snapshot_now(stream, snapshot)).boxed()
    }

    fn get_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        bounded(self.timeout(), self.load_snapshot_now(stream)).boxed()
    }

    fn append_signal(&self) -> Option<AppendSignal> {
        Some(self.inner().signal.clone())
    }

    fn watch_appends(&self) -> Option<AppendSignal> {
        let inner = self.inner();
        inner.notifications.listen(&inner.pool, &inner.signal);
        Some(inner.signal.clone())
    }

    fn remove_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        bounded(self.timeout(), self.delete_snapshot_now(stream)).boxed()
    }
}
