//! [`Projection`]: a named consumer that follows the log from its checkpoint into a
//! handler, with an error policy.

use std::{future::Future, time::Duration};

use futures::TryStreamExt;

use crate::{
    consume::{CheckpointStore, Lease, LeaseProvider, Subscribe, SubscribeAll},
    timer::sleep,
    BoxError, Error, EventStore, Position, ReadFilter, RecordedEvent,
};

/// What a [`Projection`] does when its handler fails on an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorPolicy {
    /// Retry the same event up to `attempts` times in total, waiting `backoff`
    /// (doubling each time) in between; then stop.
    Retry {
        /// Attempts in total, at least 1.
        attempts: u32,
        /// The first wait.
        backoff: Duration,
    },
    /// Record the failure (`tracing::warn!` and [`ProjectionReport::skipped`]) and go
    /// on with the next event.
    Skip,
    /// Stop at once with [`ProjectionError::Handler`].
    Stop,
}

/// Why a [`Projection`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The handler failed on the event at `position` (after the retries the policy
    /// allows). The checkpoint is still at the event before it.
    #[error("projection `{name}` stopped at position {position}: {source}")]
    Handler {
        /// The projection.
        name: String,
        /// The failing event's position.
        position: Position,
        /// The handler's error.
        #[source]
        source: BoxError,
    },
    /// Reading the log or saving the checkpoint failed.
    #[error(transparent)]
    Store(#[from] Error),
    /// The leader lease was lost while running (see [`Lease`]); another instance
    /// may have taken over. The checkpoint holds the last event handled.
    #[error("projection `{name}` lost its leader lease")]
    LeaseLost {
        /// The projection.
        name: String,
    },
}

/// What a [`Projection`] run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectionReport {
    /// Events handled successfully.
    pub handled: u64,
    /// Positions of events skipped under [`ErrorPolicy::Skip`].
    pub skipped: Vec<Position>,
    /// The checkpoint at the end of the run.
    pub checkpoint: Option<Position>,
}

/// A named consumer: reads its checkpoint, follows the log after it (catching up,
/// then live), hands each event to a handler, and saves the checkpoint after the
/// handler succeeds — **at-least-once**: after a crash, events after the last saved
/// checkpoint are handled again, none is missed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use annals_core::consume::{MemoryCheckpoints, Projection};
/// use annals_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
///
/// let store = annals_memory::MemoryEventStore::new();
/// let checkpoints = MemoryCheckpoints::new();
/// let s = StreamId::new("order-1")?;
/// store.append(&s, ExpectedVersion::Any, vec![NewEvent::new("Placed", vec![])]).await?;
///
/// let mut seen = 0;
/// let report = Projection::new("order-count")
///     .stop_after(1) // a real projection runs until shut down
///     .run(&store, &checkpoints, |_event| { seen += 1; async { Ok::<(), std::io::Error>(()) } })
///     .await?;
/// assert_eq!((seen, report.handled), (1, 1));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Projection {
    name: String,
    filter: ReadFilter,
    policy: ErrorPolicy,
    page: Option<u64>,
    idle_poll: Duration,
    stop_after: Option<u64>,
}

impl Projection {
    /// A projection named `name` (its checkpoint key) over the whole log, stopping
    /// on the first handler error.
    pub fn new(name: impl Into<String>) -> Self {
        Projection {
            name: name.into(),
            filter: ReadFilter::new(),
            policy: ErrorPolicy::Stop,
            page: None,
            idle_poll: Duration::from_millis(50),
            stop_after: None,
        }
    }

    /// Only the events `filter` selects.
    #[must_use]
    pub fn filter(mut self, filter: ReadFilter) -> Self {
        self.filter = filter;
        self
    }

    /// What to do when the handler fails.
    #[must_use]
    pub fn on_error(mut self, policy: ErrorPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The most events one read returns (default: no limit; see
    /// [`SubscribeAll::page_size`](super::SubscribeAll::page_size)).
    #[must_use]
    pub fn page_size(mut self, events: u64) -> Self {
        self.page = Some(events.max(1));
        self
    }

    /// How long to wait for new events once caught up (default 50 ms).
    #[must_use]
    pub fn idle_poll(mut self, wait: Duration) -> Self {
        self.idle_poll = wait;
        self
    }

    /// Returns after `events` events were handled or skipped (for tests and batch
    /// jobs); without it, `run` follows the log until its future is dropped.
    #[must_use]
    pub fn stop_after(mut self, events: u64) -> Self {
        self.stop_after = Some(events);
        self
    }

    /// The projection's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the projection. Cancel it by dropping the future: the checkpoint holds
    /// the last event fully handled.
    ///
    /// Nothing stops two instances from running at once; when several processes
    /// may start it, use [`run_as_leader`](Projection::run_as_leader).
    pub async fn run<S, C, H, Fut, E>(
        &self,
        store: &S,
        checkpoints: &C,
        handler: H,
    ) -> Result<ProjectionReport, ProjectionError>
    where
        S: EventStore + ?Sized,
        C: CheckpointStore + ?Sized,
        H: FnMut(&RecordedEvent) -> Fut + Send,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Into<BoxError>,
    {
        self.run_holding(None, store, checkpoints, handler).await
    }

    /// Waits for the projection's leader lease (named like the projection), then
    /// runs it as [`run`](Projection::run) does, as the only instance across the
    /// processes sharing `leases`' database. A second instance waits here and
    /// takes over when the first stops, is cancelled or dies. Before each event
    /// the lease is checked; a lost lease ends the run with
    /// [`ProjectionError::LeaseLost`].
    pub async fn run_as_leader<L, S, C, H, Fut, E>(
        &self,
        leases: &L,
        store: &S,
        checkpoints: &C,
        handler: H,
    ) -> Result<ProjectionReport, ProjectionError>
    where
        L: LeaseProvider + ?Sized,
        S: EventStore + ?Sized,
        C: CheckpointStore + ?Sized,
        H: FnMut(&RecordedEvent) -> Fut + Send,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Into<BoxError>,
    {
        let lease = leases.acquire(&self.name).await?;
        tracing::info!(projection = %self.name, "holding the leader lease");
        self.run_holding(Some(&lease), store, checkpoints, handler)
            .await
    }

    async fn run_holding<S, C, H, Fut, E>(
        &self,
        lease: Option<&Lease>,
        store: &S,
        checkpoints: &C,
        mut handler: H,
    ) -> Result<ProjectionReport, ProjectionError>
    where
        S: EventStore + ?Sized,
        C: CheckpointStore + ?Sized,
        H: FnMut(&RecordedEvent) -> Fut + Send,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Into<BoxError>,
    {
        let lost = || {
            lease
                .is_some_and(|l| !l.is_held())
                .then(|| ProjectionError::LeaseLost {
                    name: self.name.clone(),
                })
        };
        let start = checkpoints.load(&self.name).await?;
        let mut report = ProjectionReport {
            checkpoint: start,
            ..ProjectionReport::default()
        };
        let subscribe = SubscribeAll::resume(start)
            .filter(self.filter.clone())
            .idle_poll(self.idle_poll);
        let mut events = store.subscribe_all(match self.page {
            Some(page) => subscribe.page_size(page),
            None => subscribe,
        });
        let mut done = 0_u64;
        while self.stop_after.is_none_or(|n| done < n) {
            let Some(event) = events.try_next().await? else {
                break;
            };
            if let Some(lost) = lost() {
                return Err(lost);
            }
            let mut attempt = 1_u32;
            loop {
                let failure = match handler(&event).await {
                    Ok(()) => {
                        report.handled += 1;
                        break;
                    }
                    Err(e) => e.into(),
                };
                match self.policy {
                    ErrorPolicy::Retry { attempts, backoff } if attempt < attempts => {
                        tracing::debug!(projection = %self.name, position = %event.position, attempt, error = %failure, "handler failed; retrying");
                        let factor = 1_u32 << (attempt - 1).min(16);
                        sleep(backoff.saturating_mul(factor)).await;
                        attempt += 1;
                    }
                    ErrorPolicy::Skip => {
                        tracing::warn!(projection = %self.name, position = %event.position, error = %failure, "handler failed; skipping the event");
                        report.skipped.push(event.position);
                        break;
                    }
                    _ => {
                        return Err(ProjectionError::Handler {
                            name: self.name.clone(),
                            position: event.position,
                            source: failure,
                        })
                    }
                }
            }
            if let Some(lost) = lost() {
                return Err(lost);
            }
            checkpoints.save(&self.name, event.position).await?;
            report.checkpoint = Some(event.position);
            done += 1;
        }
        Ok(report)
    }
}
