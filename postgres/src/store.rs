//! The [`Backend`] implementation: every operation under the store's client-side
//! bound, forwarded to `append.rs`, `read.rs`, `event_query.rs` and `snapshot.rs`. Core validates
//! requests, short-circuits empty reads and traces every call
//! ([`EventStore`](annals_core::EventStore) is implemented for every `Backend`).

use annals_core::{
    backend::Backend, consume::AppendSignal, Capabilities, Committed, EventId, EventQuery,
    EventStream, PreparedAppend, ReadAll, ReadStream, RecordedEvent, Result, Snapshot, StreamId,
    Version,
};
use futures::{future::BoxFuture, FutureExt};

use crate::{
    append::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS},
    error::bounded,
    event_query, read, PostgresEventStore,
};

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
        read::read_stream(self.inner_arc(), &read)
    }

    fn scan_all(&self, read: ReadAll) -> EventStream<'_> {
        read::read_all(self.inner_arc(), &read)
    }

    /// Every filter in SQL (`event_query.rs`), paged and gap-safe like `read_all`.
    fn query(&self, query: EventQuery) -> EventStream<'_> {
        event_query::query(self.inner_arc(), &query)
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
