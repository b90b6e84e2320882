//! The [`EventStore`] trait applications use, implemented for every
//! [`Backend`](crate::backend::Backend).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{future::BoxFuture, stream::BoxStream, FutureExt, Stream, StreamExt};
use tracing::{field::Empty, Instrument, Span};

use crate::{
    backend::Backend, consume::AppendSignal, AppendRequest, AppendResult, Capabilities, Committed,
    EventId, EventQuery, ExpectedVersion, NewEvent, ReadAll, ReadStream, RecordedEvent, Result,
    Snapshot, StreamId, Version,
};

/// An async stream of stored events, in order, each read lazily from the backend.
///
/// Reading a million events through it runs in bounded memory. An `Err` item ends
/// the stream. Once ended it stays ended: polling it again returns `None` (it
/// never panics), so a caller can read in batches until a short one.
pub type EventStream<'a> = BoxStream<'a, Result<RecordedEvent>>;

/// An append-only log of events grouped in streams, with optimistic concurrency.
///
/// # The contract
///
/// Every backend (`annals-memory`, `annals-sqlite`, `annals-postgres`, `annals-fs`)
/// proves the same behaviour by running the `annals-testing` conformance suite.
/// A new backend implements [`Backend`] (which receives only requests core has
/// validated), never this trait: every `Backend` is an `EventStore`.
///
/// * **Versions**: a stream's version is its number of events; a missing stream is at
///   [`Version::ZERO`] and the first event gets version 1. Versions are contiguous
///   and never exceed [`Version::MAX`].
/// * **Atomic, checked appends**: [`commit`](EventStore::commit) stores every event
///   of an [`AppendRequest`] — across any number of streams — or none. If any
///   stream is not at its expected version it returns
///   [`Error::Conflict`](crate::Error::Conflict) naming every such stream, and
///   writes nothing. [`append`](EventStore::append) is the one-stream shorthand. An
///   empty part writes nothing but still checks its expected version.
/// * **Global order**: every event gets a [`Position`](crate::Position); positions
///   increase in the order readers can observe them, so a reader that has seen
///   position `P` never later sees a new event below `P`. One request's events take
///   positions in request order and become visible together. Gaps are allowed.
/// * **Idempotency**: event ids are unique store-wide. Re-sending exactly the same
///   request (same ids and content) returns the original result and stores nothing
///   new; reusing an id for different content is
///   [`Error::InvalidInput`](crate::Error::InvalidInput).
/// * **Bad input** (invalid ids or names, oversized payloads, NUL in text, a stream
///   named twice in one request, more than [`capabilities`](EventStore::capabilities)
///   allow) is [`Error::InvalidInput`](crate::Error::InvalidInput) and writes nothing.
/// * **Lazy**: nothing happens until a returned future or stream is polled; dropping
///   it unpolled does nothing.
///
/// Every operation runs in a `tracing` span named `annals.<operation>` (at `DEBUG`)
/// with the stream, the number of streams and events, and the outcome. Payloads
/// never go into spans.
///
/// # Generic or `dyn`
///
/// Methods return boxed futures and streams instead of being `async fn`s, so the
/// trait works as a generic bound (`S: EventStore`) and as `Arc<dyn EventStore>`
/// alike; every future is `Send`.
///
/// ```
/// # async fn demo(store: std::sync::Arc<dyn annals_core::EventStore>) -> annals_core::Result<()> {
/// use annals_core::{ExpectedVersion, NewEvent, ReadStream, StreamId, Version};
/// use futures::TryStreamExt;
///
/// let stream = StreamId::new("order-1")?;
/// let placed = NewEvent::json("OrderPlaced", &serde_json::json!({"total": 30}))?;
/// let result = store.append(&stream, ExpectedVersion::NoStream, vec![placed]).await?;
/// assert_eq!(result.version, Version::new(1));
///
/// let events: Vec<_> = store.read_stream(ReadStream::forward(&stream)).try_collect().await?;
/// assert_eq!(events.len(), 1);
/// # Ok(()) }
/// ```
pub trait EventStore: Send + Sync {
    /// The limits this store enforces.
    fn capabilities(&self) -> Capabilities;

    /// Commits `request` — appends to one or more streams, and read-only conditions
    /// — all-or-nothing. See [`AppendRequest`].
    fn commit(&self, request: AppendRequest) -> BoxFuture<'_, Result<Committed>>;

    /// Appends `events` to `stream` if the stream satisfies `expected`; atomic. The
    /// one-stream shorthand for [`commit`](EventStore::commit), provided in its
    /// terms.
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<AppendResult>> {
        let request = AppendRequest::new().append(stream, expected, events);
        async move { self.commit(request).await?.into_single() }.boxed()
    }

    /// Reads one stream's events; see [`ReadStream`]. A missing stream reads as
    /// empty.
    fn read_stream(&self, read: ReadStream) -> EventStream<'_>;

    /// Reads the store-wide log; see [`ReadAll`].
    fn read_all(&self, read: ReadAll) -> EventStream<'_>;

    /// The stream's current version (`Version::ZERO` if it has no events).
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>>;

    /// One event by id; [`Error::NotFound`](crate::Error::NotFound) if no event has it.
    fn get_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>>;

    /// Searches the log by CloudEvents attributes; see [`EventQuery`]. An invalid
    /// query (a NUL character in a filter value) yields one
    /// [`Error::InvalidInput`](crate::Error::InvalidInput).
    fn query(&self, query: EventQuery) -> EventStream<'_>;

    /// The event whose CloudEvents `(source, id)` is the given pair;
    /// [`Error::NotFound`](crate::Error::NotFound) if none is. The pair is looked up
    /// through the event id it maps to (see the [`cloud`](crate::cloud) module),
    /// so this costs one or two [`get_event`](EventStore::get_event)s.
    ///
    /// ```
    /// # async fn demo(store: &impl annals_core::EventStore, stream: &annals_core::StreamId) -> annals_core::Result<()> {
    /// use annals_core::{ExpectedVersion, NewEvent};
    ///
    /// let event = NewEvent::new("order.created", "{}")
    ///     .with_source("/shop/orders")
    ///     .with_cloud_id("A-1001");
    /// store.append(stream, ExpectedVersion::Any, vec![event]).await?;
    /// let found = store.get_by_source_id("/shop/orders", "A-1001").await?;
    /// assert_eq!(found.cloud_id(), "A-1001");
    /// # Ok(()) }
    /// ```
    fn get_by_source_id<'a>(
        &'a self,
        source: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<RecordedEvent>> {
        async move {
            let derived = EventId::for_cloud_event(source, id);
            let mut candidates = vec![derived];
            if let Ok(own) = id.parse::<EventId>() {
                candidates.push(own);
            }
            for candidate in candidates {
                match self.get_event(candidate).await {
                    Ok(event) if event.source() == source && event.cloud_id() == id => {
                        return Ok(event)
                    }
                    Ok(_) | Err(crate::Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Err(crate::Error::NotFound(format!(
                "no event has source `{}` and id `{}`",
                source.escape_debug(),
                id.escape_debug()
            )))
        }
        .boxed()
    }

    /// Saves a snapshot of `stream`, replacing the stored one unless the stored one
    /// is newer (then the call succeeds and changes nothing).
    fn save_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>>;

    /// The stream's stored snapshot, if any.
    fn load_snapshot<'a>(&'a self, stream: &'a StreamId)
        -> BoxFuture<'a, Result<Option<Snapshot>>>;

    /// Deletes the stream's snapshot, if any. Events are never affected.
    fn delete_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>>;

    /// The signal notified after every append this store commits in this process,
    /// if the backend has one. [`Subscription`](crate::consume::Subscription)s
    /// wait on it to deliver new events at once instead of at their next poll;
    /// without one they poll.
    fn append_signal(&self) -> Option<AppendSignal> {
        None
    }

    /// The signal [`Subscription`](crate::consume::Subscription)s wait on: the
    /// [`append_signal`](EventStore::append_signal), which a backend that can hear
    /// other processes' appends also notifies when it hears one (PostgreSQL
    /// starts `LISTEN`ing on the first call). Other processes' appends are
    /// otherwise found by polling.
    fn watch_appends(&self) -> Option<AppendSignal> {
        self.append_signal()
    }
}

/// Writes, then wakes the backend's subscribers (if it has an append signal).
async fn write_and_signal<B: Backend + ?Sized>(
    backend: &B,
    prepared: crate::PreparedAppend,
) -> Result<Committed> {
    let committed = backend.write(prepared).await?;
    if let Some(signal) = backend.append_signal() {
        signal.notify();
    }
    Ok(committed)
}

/// The `outcome` a span records: what kind of result the operation had.
pub(crate) fn outcome<T>(result: &Result<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.is_conflict() => "conflict",
        Err(e) if e.is_invalid_input() => "invalid_input",
        Err(e) if e.is_not_found() => "not_found",
        Err(e) if e.is_transient() => "transient",
        Err(_) => "error",
    }
}

/// Runs `future` in `span` and records its outcome there.
pub(crate) fn traced<'a, T: Send + 'a>(
    span: Span,
    future: impl std::future::Future<Output = Result<T>> + Send + 'a,
) -> BoxFuture<'a, Result<T>> {
    // No subscriber wants the span: skip the instrumentation layer entirely, so an
    // untraced store pays nothing per call.
    if span.is_disabled() {
        return future.boxed();
    }
    let recorder = span.clone();
    async move {
        let result = future.await;
        recorder.record("outcome", outcome(&result));
        result
    }
    .instrument(span)
    .boxed()
}

fn stream_span(name: &'static str, stream: &StreamId) -> Span {
    match name {
        "annals.stream_version" => {
            tracing::debug_span!("annals.stream_version", stream = %stream, outcome = Empty)
        }
        "annals.save_snapshot" => {
            tracing::debug_span!("annals.save_snapshot", stream = %stream, outcome = Empty)
        }
        "annals.load_snapshot" => {
            tracing::debug_span!("annals.load_snapshot", stream = %stream, outcome = Empty)
        }
        _ => tracing::debug_span!("annals.delete_snapshot", stream = %stream, outcome = Empty),
    }
}

impl<B: Backend> EventStore for B {
    fn capabilities(&self) -> Capabilities {
        self.limits()
    }

    fn commit(&self, request: AppendRequest) -> BoxFuture<'_, Result<Committed>> {
        let span = tracing::debug_span!(
            "annals.commit",
            stream = Empty,
            streams = request.stream_count(),
            events = request.event_count(),
            outcome = Empty
        );
        if let Some(first) = request.first_stream() {
            span.record("stream", tracing::field::display(first));
        }
        traced(span, async move {
            let prepared = request.prepare(&self.limits())?;
            write_and_signal(self, prepared).await
        })
    }

    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<AppendResult>> {
        let span = tracing::debug_span!(
            "annals.append",
            stream = %stream,
            events = events.len(),
            outcome = Empty
        );
        traced(span, async move {
            let prepared = AppendRequest::new()
                .append(stream, expected, events)
                .prepare(&self.limits())?;
            write_and_signal(self, prepared).await?.into_single()
        })
    }

    fn read_stream(&self, read: ReadStream) -> EventStream<'_> {
        let span = tracing::debug_span!(
            "annals.read_stream",
            stream = %read.stream(),
            backward = read.direction() == crate::Direction::Backward,
            events = Empty,
            outcome = Empty
        );
        let empty = read.is_empty();
        traced_read(span, empty, || self.scan_stream(read))
    }

    fn read_all(&self, read: ReadAll) -> EventStream<'_> {
        let span = tracing::debug_span!(
            "annals.read_all",
            from = read.positions().start,
            backward = read.direction() == crate::Direction::Backward,
            events = Empty,
            outcome = Empty
        );
        let empty = read.is_empty();
        traced_read(span, empty, || self.scan_all(read))
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
        traced(stream_span("annals.stream_version", stream), async move {
            self.head_version(stream).await
        })
    }

    fn get_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
        let span = tracing::debug_span!("annals.get_event", event_id = %id, outcome = Empty);
        traced(span, async move { self.find_event(id).await })
    }

    fn query(&self, query: EventQuery) -> EventStream<'_> {
        let span = tracing::debug_span!(
            "annals.query",
            backward = query.direction == crate::Direction::Backward,
            events = Empty,
            outcome = Empty
        );
        if let Err(e) = query.validate() {
            return futures::stream::once(std::future::ready(Err(e))).boxed();
        }
        let empty = query.is_empty();
        traced_read(span, empty, || Backend::query(self, query))
    }

    fn save_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        snapshot: Snapshot,
    ) -> BoxFuture<'a, Result<()>> {
        traced(stream_span("annals.save_snapshot", stream), async move {
            snapshot.validate()?;
            self.put_snapshot(stream, snapshot).await
        })
    }

    fn load_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Option<Snapshot>>> {
        traced(stream_span("annals.load_snapshot", stream), async move {
            self.get_snapshot(stream).await
        })
    }

    fn delete_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
        traced(stream_span("annals.delete_snapshot", stream), async move {
            self.remove_snapshot(stream).await
        })
    }

    fn append_signal(&self) -> Option<AppendSignal> {
        Backend::append_signal(self)
    }

    fn watch_appends(&self) -> Option<AppendSignal> {
        Backend::watch_appends(self)
    }
}

/// A read's events: nothing at all for an empty read (core answers it), the
/// backend's stream as is when no subscriber wants the span, else wrapped in it.
fn traced_read<'a>(
    span: Span,
    empty: bool,
    scan: impl FnOnce() -> EventStream<'a>,
) -> EventStream<'a> {
    if empty {
        futures::stream::empty().boxed()
    } else {
        let span = (!span.is_disabled()).then_some(span);
        Traced::new(scan(), span).boxed()
    }
}

/// A read's event stream as the contract promises it: it ends for good after
/// its last event or its first error (polling it again returns `None`, whatever
/// the backend's stream would do), and, when a subscriber wants the span, is
/// polled inside it and records how many events it gave and how it ended.
struct Traced<'a> {
    inner: EventStream<'a>,
    span: Option<Span>,
    events: u64,
    done: bool,
}

impl<'a> Traced<'a> {
    fn new(inner: EventStream<'a>, span: Option<Span>) -> Self {
        Traced {
            inner,
            span,
            events: 0,
            done: false,
        }
    }

    fn finish(&mut self, outcome: &'static str) {
        if !self.done {
            self.done = true;
            if let Some(span) = &self.span {
                span.record("events", self.events);
                span.record("outcome", outcome);
            }
        }
    }
}

impl Stream for Traced<'_> {
    type Item = Result<RecordedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let polled = match &this.span {
            Some(span) => {
                let _entered = span.enter();
                this.inner.poll_next_unpin(cx)
            }
            None => this.inner.poll_next_unpin(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(_))) => this.events += 1,
            Poll::Ready(Some(Err(e))) => {
                let what = if e.is_invalid_input() {
                    "invalid_input"
                } else {
                    "error"
                };
                this.finish(what);
            }
            Poll::Ready(None) => this.finish("ok"),
            Poll::Pending => {}
        }
        polled
    }
}

macro_rules! forward_event_store {
    ($($ptr:ty),*) => {$(
        impl<S: EventStore + ?Sized> EventStore for $ptr {
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            fn commit(&self, request: AppendRequest) -> BoxFuture<'_, Result<Committed>> {
                (**self).commit(request)
            }
            fn append<'a>(&'a self, stream: &'a StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> BoxFuture<'a, Result<AppendResult>> {
                (**self).append(stream, expected, events)
            }
            fn read_stream(&self, read: ReadStream) -> EventStream<'_> {
                (**self).read_stream(read)
            }
            fn read_all(&self, read: ReadAll) -> EventStream<'_> {
                (**self).read_all(read)
            }
            fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version>> {
                (**self).stream_version(stream)
            }
            fn get_event(&self, id: EventId) -> BoxFuture<'_, Result<RecordedEvent>> {
                (**self).get_event(id)
            }
            fn query(&self, query: EventQuery) -> EventStream<'_> {
                (**self).query(query)
            }
            fn get_by_source_id<'a>(&'a self, source: &'a str, id: &'a str) -> BoxFuture<'a, Result<RecordedEvent>> {
                (**self).get_by_source_id(source, id)
            }
            fn save_snapshot<'a>(&'a self, stream: &'a StreamId, snapshot: Snapshot) -> BoxFuture<'a, Result<()>> {
                (**self).save_snapshot(stream, snapshot)
            }
            fn load_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>>> {
                (**self).load_snapshot(stream)
            }
            fn delete_snapshot<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<()>> {
                (**self).delete_snapshot(stream)
            }
            fn append_signal(&self) -> Option<AppendSignal> {
                (**self).append_signal()
            }
            fn watch_appends(&self) -> Option<AppendSignal> {
                (**self).watch_appends()
            }
        }
    )*};
}

forward_event_store!(Arc<S>);
