//! [`Subscription`]: catch up from a checkpoint, then follow live, as one
//! `futures::Stream`.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::{future::Either, stream::BoxStream, Stream, StreamExt, TryStreamExt};

use super::AppendSignal;
use crate::{
    timer::sleep, EventStore, Position, ReadAll, ReadFilter, ReadStream, RecordedEvent, Result,
    StreamId, Version,
};

const DEFAULT_IDLE_POLL: Duration = Duration::from_millis(50);
/// After a wake-up that found nothing new, how long to keep looking at short
/// intervals, starting at the first and doubling up to the second.
const WOKEN_WATCH: Duration = Duration::from_secs(30);
const WOKEN_RETRY_FIRST: Duration = Duration::from_millis(2);
const WOKEN_RETRY_MAX: Duration = Duration::from_millis(100);
/// Backoff between reads that failed with a transient error.
const ERROR_RETRY_FIRST: Duration = Duration::from_millis(100);
const ERROR_RETRY_MAX: Duration = Duration::from_secs(5);

/// A subscription to the whole log (or the part a [`ReadFilter`] selects).
///
/// ```
/// use annals_core::{consume::SubscribeAll, Position, ReadFilter};
///
/// let orders = SubscribeAll::after(Position::new(41))
///     .filter(ReadFilter::new().stream_glob("order-*"));
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a SubscribeAll does nothing until passed to Subscribe::subscribe_all"]
pub struct SubscribeAll {
    after: Option<Position>,
    filter: ReadFilter,
    page: Option<u64>,
    idle_poll: Option<Duration>,
}

impl SubscribeAll {
    /// From the start of the log.
    pub fn from_start() -> Self {
        Self::default()
    }

    /// After `position` (exclusive): pass the position of the last event you
    /// processed — a checkpoint — to resume.
    pub fn after(position: Position) -> Self {
        SubscribeAll {
            after: Some(position),
            ..Self::default()
        }
    }

    /// After the checkpoint if there is one, else from the start.
    pub fn resume(checkpoint: Option<Position>) -> Self {
        SubscribeAll {
            after: checkpoint,
            ..Self::default()
        }
    }

    /// Only the events `filter` selects.
    pub fn filter(mut self, filter: ReadFilter) -> Self {
        self.filter = filter;
        self
    }

    /// The most events one read returns before the subscription starts the next
    /// (default: no limit). Memory does not depend on it: reads are streamed,
    /// and a backend's reads are paged, so a subscription holds at most one
    /// backend page, whatever the consumer's speed.
    pub fn page_size(mut self, events: u64) -> Self {
        self.page = Some(events.max(1));
        self
    }

    /// How long a caught-up subscription waits before looking for new events
    /// (default 50 ms). Appends committed by this process wake it at once when
    /// the backend has an [`AppendSignal`], and so do other processes' appends
    /// on PostgreSQL (`LISTEN/NOTIFY`); the poll bounds the latency for the
    /// rest (another process writing the same SQLite file) and covers a lost
    /// notification.
    pub fn idle_poll(mut self, wait: Duration) -> Self {
        self.idle_poll = Some(wait);
        self
    }
}

/// A subscription to one stream.
#[derive(Clone, Debug)]
#[must_use = "a SubscribeStream does nothing until passed to Subscribe::subscribe_stream"]
pub struct SubscribeStream {
    stream: StreamId,
    after: Option<Version>,
    page: Option<u64>,
    idle_poll: Option<Duration>,
}

impl SubscribeStream {
    /// Every event of `stream`, from its first.
    pub fn from_start(stream: &StreamId) -> Self {
        SubscribeStream {
            stream: stream.clone(),
            after: None,
            page: None,
            idle_poll: None,
        }
    }

    /// The events of `stream` after `version` (exclusive).
    pub fn after(stream: &StreamId, version: Version) -> Self {
        SubscribeStream {
            after: Some(version),
            ..Self::from_start(stream)
        }
    }

    /// The most events one read returns before the subscription starts the next
    /// (default: no limit; see [`SubscribeAll::page_size`]).
    pub fn page_size(mut self, events: u64) -> Self {
        self.page = Some(events.max(1));
        self
    }

    /// How long a caught-up subscription waits before looking again (default 50 ms).
    pub fn idle_poll(mut self, wait: Duration) -> Self {
        self.idle_poll = Some(wait);
        self
    }
}

/// Subscriptions for every [`EventStore`] (implemented for all of them).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> annals_core::Result<()> {
/// use annals_core::consume::{Subscribe, SubscribeAll};
/// use annals_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
/// use futures::TryStreamExt;
///
/// let store = annals_memory::MemoryEventStore::new();
/// let order = StreamId::new("order-1")?;
/// store.append(&order, ExpectedVersion::Any, vec![NewEvent::new("Placed", vec![])]).await?;
///
/// let mut events = store.subscribe_all(SubscribeAll::from_start());
/// let first = events.try_next().await?.expect("a live subscription never ends by itself");
/// assert_eq!(first.event_type, "Placed");
/// // Remember `events.position()` (or `first.position`) as the checkpoint; a new
/// // append is delivered next, within the idle poll interval.
/// store.append(&order, ExpectedVersion::Any, vec![NewEvent::new("Paid", vec![])]).await?;
/// assert_eq!(events.try_next().await?.map(|e| e.event_type), Some("Paid".to_owned()));
/// # Ok(()) }
/// ```
pub trait Subscribe: EventStore {
    /// Catches up on the log after the request's checkpoint, then follows it live.
    /// The stream ends only with an error (or when dropped).
    fn subscribe_all(&self, request: SubscribeAll) -> Subscription<'_> {
        let page = request.page;
        let filter = request.filter;
        let start = request.after.map_or(0, Position::get);
        Subscription::new(
            start,
            start,
            (request.idle_poll, self.watch_appends()),
            move |after| {
                let read = ReadAll::after(Position::new(after)).filter(filter.clone());
                self.read_all(match page {
                    Some(page) => read.limit(page),
                    None => read,
                })
            },
            |e| e.position.get(),
        )
    }

    /// Catches up on one stream after the request's version, then follows it live.
    fn subscribe_stream(&self, request: SubscribeStream) -> Subscription<'_> {
        let page = request.page;
        let stream = request.stream;
        Subscription::new(
            request.after.map_or(0, Version::get),
            0,
            (request.idle_poll, self.watch_appends()),
            move |after| {
                let read = ReadStream::forward(&stream).after(Version::new(after));
                self.read_stream(match page {
                    Some(page) => read.limit(page),
                    None => read,
                })
            },
            |e| e.version.get(),
        )
    }
}

impl<S: EventStore + ?Sized> Subscribe for S {}

/// What a [`Subscription`] is doing; see [`Subscription::state`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionState {
    /// Reading the events stored before it started.
    CatchingUp,
    /// Caught up: following new events as they are appended.
    Live,
    /// Reads fail with a transient error ([`Error::is_transient`](crate::Error::is_transient):
    /// the database is restarting, failing over or out of reach). The
    /// subscription retries with backoff (100 ms doubling to 5 s) and resumes
    /// after the last delivered event; nothing is skipped or repeated.
    Retrying {
        /// Failed reads in a row.
        attempts: u32,
        /// The last error.
        error: String,
    },
}

/// Where a subscription is, shared between its stream and its handle.
#[derive(Debug)]
struct Shared {
    position: AtomicU64,
    state: Mutex<SubscriptionState>,
}

impl Shared {
    fn set(&self, state: SubscriptionState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }
}

/// Streams a read after the cursor, handing its events out as the consumer asks
/// (the backend's reads are paged, so at most one backend page is held); when a
/// read ends, starts the next one, and when a read finds nothing (caught up),
/// waits for the append signal or `idle`, whichever comes first. A transient
/// read error is retried with backoff after the last delivered event; any other
/// error ends the stream.
fn follow_by<'a, F, K>(
    after: u64,
    idle: Duration,
    signal: Option<AppendSignal>,
    shared: Arc<Shared>,
    (read, key): (F, K),
) -> BoxStream<'a, Result<RecordedEvent>>
where
    F: Fn(u64) -> crate::EventStream<'a> + Send + 'a,
    K: Fn(&RecordedEvent) -> u64 + Send + 'a,
{
    struct Cursor<'a, F, K> {
        after: u64,
        /// The read in progress, the signal's generation from before it began,
        /// and whether it delivered anything yet.
        reading: Option<(crate::EventStream<'a>, Option<u64>, bool)>,
        failed: bool,
        signal: Option<AppendSignal>,
        /// Woken by the signal and not yet found what was appended: until when
        /// to keep looking at short intervals.
        woken_until: Option<Instant>,
        shared: Arc<Shared>,
        read: F,
        key: K,
    }
    let start = Cursor {
        after,
        reading: None,
        failed: false,
        signal,
        woken_until: None,
        shared,
        read,
        key,
    };
    futures::stream::unfold(start, move |mut cursor| async move {
        if cursor.failed {
            return None;
        }
        let mut retry = WOKEN_RETRY_FIRST;
        let mut failures = 0_u32;
        let mut backoff = ERROR_RETRY_FIRST;
        loop {
            let (events, seen, delivered) = cursor.reading.get_or_insert_with(|| {
                // The generation before the read begins: an append that commits
                // after that bumps it, so the wait below cannot miss it.
                let seen = cursor.signal.as_ref().map(AppendSignal::generation);
                ((cursor.read)(cursor.after), seen, false)
            });
            let (seen, delivered) = (*seen, *delivered);
            let next = events.next().await;
            if failures > 0 && !matches!(next, Some(Err(_))) {
                tracing::info!(after = cursor.after, attempts = failures, "subscription reads again");
                failures = 0;
                backoff = ERROR_RETRY_FIRST;
                cursor.shared.set(SubscriptionState::CatchingUp);
            }
            match next {
                Some(Ok(event)) => {
                    if let Some((_, _, delivered)) = cursor.reading.as_mut() {
                        *delivered = true;
                    }
                    cursor.woken_until = None;
                    cursor.after = (cursor.key)(&event);
                    return Some((Ok(event), cursor));
                }
                Some(Err(error)) if error.is_transient() => {
                    cursor.reading = None;
                    failures = failures.saturating_add(1);
                    tracing::warn!(%error, after = cursor.after, attempts = failures, "subscription read failed; retrying");
                    cursor.shared.set(SubscriptionState::Retrying {
                        attempts: failures,
                        error: error.to_string(),
                    });
                    sleep(backoff).await;
                    backoff = (backoff * 2).min(ERROR_RETRY_MAX);
                    continue;
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, after = cursor.after, "subscription read failed; ending it");
                    cursor.reading = None;
                    cursor.failed = true;
                    return Some((Err(error), cursor));
                }
                None => cursor.reading = None,
            }
            if delivered {
                continue; // the read ended (or hit its page limit): read on
            }
            // Caught up. Woken for an append not readable yet (a backend with a
            // gap-safe order holds it back behind an older writer)? Keep
            // looking at short intervals instead of waiting a whole idle poll.
            if cursor.woken_until.is_some_and(|until| Instant::now() < until) {
                let wait = retry.min(idle);
                retry = (retry * 2).min(WOKEN_RETRY_MAX);
                sleep(wait).await;
                continue;
            }
            cursor.woken_until = None;
            cursor.shared.set(SubscriptionState::Live);
            match (&cursor.signal, seen) {
                (Some(signal), Some(seen)) => {
                    let changed = std::pin::pin!(signal.changed(seen));
                    let poll = std::pin::pin!(sleep(idle));
                    if let Either::Left(_) = futures::future::select(changed, poll).await {
                        cursor.woken_until = Some(Instant::now() + WOKEN_WATCH);
                        retry = WOKEN_RETRY_FIRST;
                    }
                }
                _ => sleep(idle).await,
            }
        }
    })
    .boxed()
}

/// A live subscription: a `futures::Stream` of events, in order, each once. It
/// catches up first and then follows new events; it does nothing while not
/// polled (a slow consumer holds at most one backend page). Transient read errors are
/// retried (see [`SubscriptionState::Retrying`]); it ends only with another
/// error, or when dropped.
pub struct Subscription<'a> {
    events: BoxStream<'a, Result<RecordedEvent>>,
    shared: Arc<Shared>,
}

impl<'a> Subscription<'a> {
    /// Follows `read(cursor)` from `after` (a cursor in `key`'s terms), reporting
    /// each delivered event's position as progress (starting at `position`), and
    /// waiting for the store's append signal or the idle poll when caught up.
    fn new<F, K>(
        after: u64,
        position: u64,
        (idle, signal): (Option<Duration>, Option<AppendSignal>),
        read: F,
        key: K,
    ) -> Self
    where
        F: Fn(u64) -> crate::EventStream<'a> + Send + 'a,
        K: Fn(&RecordedEvent) -> u64 + Send + 'a,
    {
        let shared = Arc::new(Shared {
            position: AtomicU64::new(position),
            state: Mutex::new(SubscriptionState::CatchingUp),
        });
        let progress = Arc::clone(&shared);
        let events = follow_by(
            after,
            idle.unwrap_or(DEFAULT_IDLE_POLL),
            signal,
            Arc::clone(&shared),
            (read, key),
        )
        .inspect_ok(move |e| {
            progress.position.store(e.position.get(), Ordering::Release);
        })
        .boxed();
        Subscription { events, shared }
    }

    /// The position of the last event delivered (the checkpoint to resume after),
    /// or the starting point if none was delivered yet.
    pub fn position(&self) -> Position {
        Position::new(self.shared.position.load(Ordering::Acquire))
    }

    /// What the subscription is doing: catching up, live, or retrying after
    /// transient read errors (with the last one) — for health checks and
    /// dashboards.
    pub fn state(&self) -> SubscriptionState {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl std::fmt::Debug for Subscription<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("position", &self.position())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Stream for Subscription<'_> {
    type Item = Result<RecordedEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}
