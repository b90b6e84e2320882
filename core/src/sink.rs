//! [`EventSink`]: a `futures::Sink` of append requests over a store, for message
//! publishers that write into the event log.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use futures::{future::BoxFuture, FutureExt, Sink};

use crate::{AppendRequest, Committed, Error, EventStore, Position};

/// A [`Sink`] that commits every [`AppendRequest`] sent to it, one at a time, in
/// the order sent; each request is atomic, as with
/// [`EventStore::commit`]. For publishers that speak `Sink` (a message
/// pipeline, `StreamExt::forward`) and should write into the log.
///
/// Backpressure is one request: [`poll_ready`](Sink::poll_ready) finishes the
/// previous commit first. The first failure (a conflict, bad input, a
/// database error) is returned from the next `poll_ready`, `poll_flush` or
/// `poll_close` — `send` and `send_all` return it — and the failed request wrote
/// nothing; requests sent before it are committed. The sink owns a clone of the
/// store (stores are cheap to clone), so it can be moved into a task.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> annals_core::Result<()> {
/// use annals_core::{AppendRequest, EventSink, EventStore, ExpectedVersion, NewEvent, StreamId};
/// use futures::{stream, SinkExt, StreamExt};
/// let store = annals_memory::MemoryEventStore::new();
///
/// let mut sink = EventSink::new(store.clone());
/// // A publisher's messages, each becoming one atomic append.
/// let orders = StreamId::new("orders")?;
/// let mut messages = stream::iter(1..=3).map(|n| {
///     Ok(AppendRequest::new().append(
///         &orders,
///         ExpectedVersion::Any,
///         vec![NewEvent::new("OrderReceived", format!(r#"{{"n":{n}}}"#))],
///     ))
/// });
/// sink.send_all(&mut messages).await?;
/// assert_eq!(store.stream_version(&orders).await?.get(), 3);
/// assert_eq!(sink.committed(), 3);
///
/// // A request that fails its check is the sink's error; it wrote nothing.
/// let stale = AppendRequest::new().append(&orders, ExpectedVersion::NoStream, vec![NewEvent::new("Late", "{}")]);
/// assert!(sink.send(stale).await.unwrap_err().is_conflict());
/// assert_eq!(store.stream_version(&orders).await?.get(), 3);
/// # Ok(()) }
/// ```
#[must_use = "a sink does nothing unless requests are sent to it"]
pub struct EventSink<S> {
    store: S,
    in_flight: Option<BoxFuture<'static, crate::Result<Committed>>>,
    committed: u64,
    last: Option<Position>,
}

impl<S> EventSink<S>
where
    S: EventStore + Clone + 'static,
{
    /// A sink committing into `store`.
    pub fn new(store: S) -> Self {
        EventSink {
            store,
            in_flight: None,
            committed: 0,
            last: None,
        }
    }

    /// How many requests the sink has committed.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The position of the last event the sink committed, if any.
    pub fn last_position(&self) -> Option<Position> {
        self.last
    }

    /// The store the sink commits into.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Finishes the commit in flight, if any.
    fn poll_in_flight(&mut self, cx: &mut Context<'_>) -> Poll<crate::Result<()>> {
        let Some(commit) = self.in_flight.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = futures::ready!(commit.poll_unpin(cx));
        self.in_flight = None;
        Poll::Ready(result.map(|committed| {
            self.committed += 1;
            if let Some(last) = committed.last_position() {
                self.last = Some(last);
            }
        }))
    }
}

impl<S> Sink<AppendRequest> for EventSink<S>
where
    S: EventStore + Clone + 'static,
{
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<crate::Result<()>> {
        self.get_mut().poll_in_flight(cx)
    }

    fn start_send(self: Pin<&mut Self>, request: AppendRequest) -> crate::Result<()> {
        let this = self.get_mut();
        if this.in_flight.is_some() {
            return Err(Error::invalid_input(
                "EventSink::start_send called before poll_ready finished the previous commit",
            ));
        }
        let store = this.store.clone();
        this.in_flight = Some(async move { store.commit(request).await }.boxed());
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<crate::Result<()>> {
        self.get_mut().poll_in_flight(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<crate::Result<()>> {
        self.get_mut().poll_in_flight(cx)
    }
}

// Nothing is pinned structurally (the store is only cloned, the commit in flight
// is boxed), so the sink moves freely whatever the store type.
impl<S> Unpin for EventSink<S> {}

impl<S> std::fmt::Debug for EventSink<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("in_flight", &self.in_flight.is_some())
            .field("committed", &self.committed)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}
