//! The [`Backend`] implementation: it only forwards to `append.rs`, `read.rs` and
//! `snapshot.rs`.

use annals_core::{
    backend::{self, Backend},
    consume::AppendSignal,
    Capabilities, Committed, EventId, EventStream, PreparedAppend, ReadAll, ReadStream,
    RecordedEvent, Result, Snapshot, StreamId, Version,
};
use futures::future::{BoxFuture, FutureExt};

use crate::{
    fork::forked_error,
    state::{off_runtime, Loader},
    FsEventStore,
};

impl Backend for FsEventStore {
    fn limits(&self) -> Capabilities {
        Capabilities::default()
    }

    fn append_signal(&self) -> Option<AppendSignal> {
        Some(self.inner.signal.clone())
    }

    fn write(&self, append: PreparedAppend) -> BoxFuture<'_, Result<Committed>> {
        async move {
            let this = self.clone();
            off_runtime(move || this.append_now(&append)).await?
        }
        .boxed()
    }

    fn scan_stream(&self, read: ReadStream) -> EventStream<'_> {
        self.stream_events(&read)
    }

    fn scan_all(&self, read: ReadAll) -> EventStream<'_> {
        self.log_events(&read)
    }

    fn head_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        async move {
            self.inner.refresh_if_changed()?;
            let state = self.inner.read();
            if let Some(forked) = forked_error(&state, [stream]) {
                return Err(forked.into());
            }
            Ok(state.version(stream))
        }
        .boxed()
    }

    fn find_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        async move {
            self.inner.refresh_if_changed()?;
            let found = {
                let state = self.inner.read();
                let found = state
                    .derived
                    .by_id
                    .get(&id)
                    .and_then(|&slot| state.event_ref(slot));
                // Like a read of its stream: an event of a forked stream has no
                // agreed version until the fork is reconciled.
                if let Some(forked) = found
                    .as_ref()
                    .and_then(|r| forked_error(&state, [&r.stream]))
                {
                    return Err(forked.into());
                }
                found
            };
            let found = found.ok_or_else(|| backend::not_found(id))?;
            Ok(Loader::default().load(&self.inner.layout.events(), found)?)
        }
        .boxed()
    }

    fn put_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        async move {
            let (this, stream) = (self.clone(), stream.clone());
            Ok(off_runtime(move || this.store_snapshot(&stream, snapshot)).await??)
        }
        .boxed()
    }

    fn get_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        async move { Ok(self.fetch_snapshot(stream)?) }.boxed()
    }

    fn remove_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        async move {
            let (this, stream) = (self.clone(), stream.clone());
            Ok(off_runtime(move || this.delete_snapshot(&stream)).await??)
        }
        .boxed()
    }
}
