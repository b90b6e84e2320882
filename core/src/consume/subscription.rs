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

use futures::{
    future::{BoxFuture, Either},
    ready,
    stream::BoxStream,
    Stream, StreamExt,
};

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

/// How a pause ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wake {
    Signal,
    Timer,
}

/// The read in progress.
struct Read<'a> {
    events: crate::EventStream<'a>,
    /// The signal's generation from before the read began: an append that
    /// commits after that bumps it, so the wait after the read cannot miss it.
    seen: Option<u64>,
    delivered: bool,
}

/// Streams a read after the cursor, handing its events out as the consumer asks
/// (the backend's reads are paged, so at most one backend page is held); when a
/// read ends, starts the next one, and when a read finds nothing (caught up),
/// waits for the append signal or `idle`, whichever comes first. A transient
/// read error is retried with backoff after the last delivered event; any other
/// error ends the stream.
///
/// Written by hand rather than with `stream::unfold` so that handing out an
/// event that is already there costs one poll of the backend's stream and
/// nothing more: catch-up runs close to `read_all`'s speed.
struct Follow<'a, F, K> {
    after: u64,
    reading: Option<Read<'a>>,
    /// Sleeping (after an error, between short looks) or waiting for new events.
    pause: Option<BoxFuture<'a, Wake>>,
    failed: bool,
    idle: Duration,
    signal: Option<AppendSignal>,
    /// Woken by the signal and not yet found what was appended: until when to
    /// keep looking at short intervals.
    woken_until: Option<Instant>,
    retry: Duration,
    failures: u32,
    backoff: Duration,
    shared: Arc<Shared>,
    read: F,
    key: K,
}

impl<'a, F, K> Follow<'a, F, K>
where
    F: Fn(u64) -> crate::EventStream<'a> + Send + Unpin + 'a,
    K: Fn(&RecordedEvent) -> u64 + Send + Unpin + 'a,
{
    fn pause_for(&mut self, wait: Duration) {
        self.pause = Some(Box::pin(async move {
            sleep(wait).await;
            Wake::Timer
        }));
    }

    /// Reads succeed again after failures: say so.
    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                after = self.after,
                attempts = self.failures,
                "subscription reads again"
            );
            self.failures = 0;
            self.backoff = ERROR_RETRY_FIRST;
            self.shared.set(SubscriptionState::CatchingUp);
        }
    }

    /// A read ended: whether it handed anything out, and the signal's
    /// generation from before it began.
    fn ended(&mut self, delivered: bool, seen: Option<u64>) {
        if delivered {
            return; // the read ended (or hit its page limit): read on
        }
        // Caught up. Woken for an append not readable yet (a backend with a
        // gap-safe order holds it back behind an older writer)? Keep looking at
        // short intervals instead of waiting a whole idle poll.
        if self.woken_until.is_some_and(|until| Instant::now() < until) {
            let wait = self.retry.min(self.idle);
            self.retry = (self.retry * 2).min(WOKEN_RETRY_MAX);
            self.pause_for(wait);
            return;
        }
        self.woken_until = None;
        self.shared.set(SubscriptionState::Live);
        match (&self.signal, seen) {
            (Some(signal), Some(seen)) => {
                let (signal, idle) = (signal.clone(), self.idle);
                self.pause = Some(Box::pin(async move {
                    let changed = std::pin::pin!(signal.changed(seen));
                    let poll = std::pin::pin!(sleep(idle));
                    match futures::future::select(changed, poll).await {
                        Either::Left(_) => Wake::Signal,
                        Either::Right(_) => Wake::Timer,
                    }
                }));
            }
            _ => self.pause_for(self.idle),
        }
    }
}

impl<'a, F, K> Stream for Follow<'a, F, K>
where
    F: Fn(u64) -> crate::EventStream<'a> + Send + Unpin + 'a,
    K: Fn(&RecordedEvent) -> u64 + Send + Unpin + 'a,
{
    type Item = Result<RecordedEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        loop {
            if let Some(pause) = this.pause.as_mut() {
                let wake = ready!(pause.as_mut().poll(cx));
                this.pause = None;
                if wake == Wake::Signal {
                    this.woken_until = Some(Instant::now() + WOKEN_WATCH);
                    this.retry = WOKEN_RETRY_FIRST;
                }
            }
            let read = match this.reading.as_mut() {
                Some(read) => read,
                None => this.reading.insert(Read {
                    seen: this.signal.as_ref().map(AppendSignal::generation),
                    events: (this.read)(this.after),
                    delivered: false,
                }),
            };
            match ready!(read.events.poll_next_unpin(cx)) {
                Some(Ok(event)) => {
                    read.delivered = true;
                    this.recovered();
                    this.woken_until = None;
                    this.retry = WOKEN_RETRY_FIRST;
                    this.after = (this.key)(&event);
                    this.shared
                        .position
                        .store(event.position.get(), Ordering::Release);
                    return Poll::Ready(Some(Ok(event)));
                }
                Some(Err(error)) if error.is_transient() => {
                    this.reading = None;
                    this.failures = this.failures.saturating_add(1);
                    tracing::warn!(%error, after = this.after, attempts = this.failures, "subscription read failed; retrying");
                    this.shared.set(SubscriptionState::Retrying {
                        attempts: this.failures,
                        error: error.to_string(),
                    });
                    let backoff = this.backoff;
                    this.backoff = (backoff * 2).min(ERROR_RETRY_MAX);
                    this.pause_for(backoff);
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, after = this.after, "subscription read failed; ending it");
                    this.reading = None;
                    this.failed = true;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.recovered();
                    if let Some(read) = this.reading.take() {
                        this.ended(read.delivered, read.seen);
                    }
                }
            }
        }
    }
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
        F: Fn(u64) -> crate::EventStream<'a> + Send + Unpin + 'a,
        K: Fn(&RecordedEvent) -> u64 + Send + Unpin + 'a,
    {
        let shared = Arc::new(Shared {
            position: AtomicU64::new(position),
            state: Mutex::new(SubscriptionState::CatchingUp),
        });
        let events = Follow {
            after,
            reading: None,
            pause: None,
            failed: false,
            idle: idle.unwrap_or(DEFAULT_IDLE_POLL),
            signal,
            woken_until: None,
            retry: WOKEN_RETRY_FIRST,
            failures: 0,
            backoff: ERROR_RETRY_FIRST,
            shared: Arc::clone(&shared),
            read,
            key,
        }
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
