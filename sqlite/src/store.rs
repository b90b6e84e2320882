//! The [`Backend`] implementation of [`SqliteEventStore`]: it only forwards to
//! `append.rs`, `read.rs`, `query.rs` and `snapshot.rs`. Core's blanket
//! implementation makes it an [`EventStore`](crate::EventStore) (validation,
//! tracing, empty reads).

use futures::{future::BoxFuture, FutureExt};

use crate::{
    backend::Backend, consume::AppendSignal, Capabilities, Committed, EventId, EventQuery,
    EventStream, PreparedAppend, ReadAll, ReadStream, RecordedEvent, Result, Snapshot,
    SqliteEventStore, StreamId, Version,
};

impl Backend for SqliteEventStore {
    /// Core's defaults: SQLite stores text and blobs up to 1 GB and the store
    /// writes a request in chunks of statements, so no limit is lower than core's.
    fn limits(&self) -> Capabilities {
        Capabilities::default()
    }

    fn write(&self, append: PreparedAppend) -> BoxFuture<'_, Result<Committed>> {
        self.write_append(append).boxed()
    }

    fn scan_stream(&self, read: ReadStream) -> EventStream<'_> {
        self.stream_events(&read)
    }

    fn scan_all(&self, read: ReadAll) -> EventStream<'_> {
        self.log_events(&read)
    }

    /// Every filter in SQL, on the indexes of migration 0003 (see `query.rs`).
    fn query(&self, query: EventQuery) -> EventStream<'_> {
        self.query_events(&query)
    }

    fn head_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        self.current_version(stream).boxed()
    }

    fn find_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        self.event_by_id(id).boxed()
    }

    fn put_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        self.store_snapshot(stream, snapshot).boxed()
    }

    fn get_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        self.stored_snapshot(stream).boxed()
    }

    fn remove_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        self.delete_stored_snapshot(stream).boxed()
    }

    fn append_signal(&self) -> Option<AppendSignal> {
        Some(self.signal.clone())
    }
}
