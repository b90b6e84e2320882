//! [`Replay`]: feed one stream, or one event type from a point in time, into a
//! handler, with progress.

use std::future::Future;

use futures::TryStreamExt;

use crate::{
    consume::ProjectionError, BoxError, EventStore, ReadAll, ReadFilter, ReadStream, RecordedEvent,
    StreamId, Timestamp,
};

/// What to replay.
#[derive(Clone, Debug)]
enum Target {
    Stream(StreamId),
    EventType {
        event_type: String,
        since: Option<Timestamp>,
    },
}

/// Progress of a [`Replay`]: events handled so far out of the total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Events handled so far.
    pub done: u64,
    /// Events the replay covers (counted when it started).
    pub total: u64,
}

/// Replays stored events into a handler — a one-off job, unlike a
/// [`Projection`](crate::consume::Projection) it does not follow the log or keep a
/// checkpoint. The time bound uses the time the store recorded
/// ([`RecordedEvent::recorded_at`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use annals_core::consume::Replay;
/// use annals_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
///
/// let store = annals_memory::MemoryEventStore::new();
/// let s = StreamId::new("order-1")?;
/// store.append(&s, ExpectedVersion::Any, vec![NewEvent::new("Placed", vec![]), NewEvent::new("Paid", vec![])]).await?;
///
/// let mut seen = Vec::new();
/// let report = Replay::stream(&s)
///     .run(&store, |e| { seen.push(e.event_type.clone()); async { Ok::<(), std::io::Error>(()) } }, |p| println!("{}/{}", p.done, p.total))
///     .await?;
/// assert_eq!((seen.len(), report.total), (2, 2));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Replay {
    target: Target,
    every: u64,
}

impl Replay {
    /// Every event of `stream`, in version order.
    pub fn stream(stream: &StreamId) -> Self {
        Replay {
            target: Target::Stream(stream.clone()),
            every: 1_000,
        }
    }

    /// Every event of type `event_type`, in log order.
    pub fn event_type(event_type: impl Into<String>) -> Self {
        Replay {
            target: Target::EventType {
                event_type: event_type.into(),
                since: None,
            },
            every: 1_000,
        }
    }

    /// Only events recorded at or after `since` (for [`event_type`](Self::event_type)
    /// replays; ignored for one stream).
    #[must_use]
    pub fn since(mut self, since: Timestamp) -> Self {
        if let Target::EventType { since: bound, .. } = &mut self.target {
            *bound = Some(since);
        }
        self
    }

    /// Calls the progress callback every `events` events (default 1,000) and once
    /// at the end.
    #[must_use]
    pub fn progress_every(mut self, events: u64) -> Self {
        self.every = events.max(1);
        self
    }

    fn read<'a, S: EventStore + ?Sized>(&self, store: &'a S) -> crate::EventStream<'a> {
        match &self.target {
            Target::Stream(stream) => store.read_stream(ReadStream::forward(stream)),
            Target::EventType { event_type, .. } => store.read_all(
                ReadAll::forward().filter(ReadFilter::new().event_type(event_type.clone())),
            ),
        }
    }

    fn selects(&self, event: &RecordedEvent) -> bool {
        match &self.target {
            Target::EventType {
                since: Some(since), ..
            } => event.recorded_at >= *since,
            _ => true,
        }
    }

    /// Counts the events, then feeds them to `handler` in order, reporting progress.
    /// Stops at the first handler error with the failing position
    /// ([`ProjectionError::Handler`]). The count is a first read pass over the same
    /// events (payloads included), so a replay reads them twice.
    pub async fn run<S, H, Fut, E, P>(
        &self,
        store: &S,
        mut handler: H,
        mut progress: P,
    ) -> Result<Progress, ProjectionError>
    where
        S: EventStore + ?Sized,
        H: FnMut(&RecordedEvent) -> Fut + Send,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Into<BoxError>,
        P: FnMut(Progress) + Send,
    {
        let total = self
            .read(store)
            .try_fold(0_u64, |n, e| {
                let counted = n + u64::from(self.selects(&e));
                async move { Ok(counted) }
            })
            .await?;
        let mut state = Progress { done: 0, total };
        let mut events = self.read(store);
        while let Some(event) = events.try_next().await? {
            if !self.selects(&event) {
                continue;
            }
            if state.done == total {
                break; // appended after the count: not part of this replay
            }
            handler(&event)
                .await
                .map_err(|e| ProjectionError::Handler {
                    name: "replay".to_owned(),
                    position: event.position,
                    source: e.into(),
                })?;
            state.done += 1;
            if state.done.is_multiple_of(self.every) {
                progress(state);
            }
        }
        progress(state);
        Ok(state)
    }
}
