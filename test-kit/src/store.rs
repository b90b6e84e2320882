//! Scenarios through a real [`Repository`] and store: [`StoreTest`].

use std::{fmt, sync::Arc};

use annals_core::{
    codec::Json, futures::future::BoxFuture, futures::TryStreamExt, Aggregate, DomainEvent, Draft,
    EventStore, ExecuteError, Executed, ExecutedAcross, Loaded, Position, ReadAll, ReadStream,
    RecordedEvent, Repository, RetryPolicy, Scope, Snapshot, SnapshotPolicy, StreamId, Upcasters,
    Version,
};
use annals_memory::MemoryEventStore;
use serde_json::Value;

use crate::{
    aggregate::{
        accepted_instead, compare_events, rejected_instead, setup_failed, state_predicate_failed,
        wrong_error, wrong_message,
    },
    diff::to_json,
    or_fail, Fixture, Ids, KitError, Mismatch,
};

/// The store type scenarios run on.
type Store = Arc<dyn EventStore>;

type TakeSnapshot = for<'a> fn(
    &'a dyn EventStore,
    &'a Upcasters,
    &'a StreamId,
    u64,
) -> BoxFuture<'a, Result<(), KitError>>;

/// A scenario through a real [`Repository`] on a real store — in memory by default,
/// any [`EventStore`] with [`on`](StoreTest::on), a temporary SQLite file with
/// `StoreTest::sqlite` (feature `sqlite`) — so the repository's snapshot, retry
/// and upcasting paths run as in production.
///
/// Given events are committed in one request before the command; then
/// [`when`](StoreTest::when) executes one command and
/// [`when_across`](StoreTest::when_across) a command over several aggregates.
///
/// ```
/// # use annals_core::{Aggregate, DomainEvent, SnapshotPolicy};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] enum Ev { Added { n: u32 } }
/// # impl DomainEvent for Ev {}
/// # #[derive(Debug, thiserror::Error)] #[error("too big")] struct TooBig;
/// # #[derive(Debug, Default, Serialize, Deserialize)] struct Counter { value: u32 }
/// # impl Aggregate for Counter {
/// #     type Event = Ev; type Command = u32; type Error = TooBig;
/// #     const CATEGORY: &'static str = "counter";
/// #     fn apply(&mut self, Ev::Added { n }: &Ev) { self.value += n }
/// #     fn handle(&self, n: &u32) -> Result<Vec<Ev>, TooBig> {
/// #         if self.value + n > 100 { Err(TooBig) } else { Ok(vec![Ev::Added { n: *n }]) }
/// #     }
/// # }
/// use annals_test_kit::StoreTest;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// StoreTest::memory()
///     .given_stored::<Counter>("c", (0..5).map(|_| Ev::Added { n: 1 }))
///     .given_snapshot::<Counter>("c", 3)
///     .with_snapshot_policy(SnapshotPolicy::Never)
///     .when::<Counter>("c", &10)
///     .await
///     .then_loaded_from_snapshot(3)
///     .then_expect(&[Ev::Added { n: 10 }])
///     .then_version(6)
///     .then_state(|c| c.value == 15);
/// # }
/// ```
pub struct StoreTest {
    store: Store,
    guard: Option<Arc<dyn std::any::Any + Send + Sync>>,
    fixture: Fixture,
    snapshots: Vec<(StreamId, u64, TakeSnapshot)>,
    upcasters: Upcasters,
    snapshot_policy: SnapshotPolicy,
    retry: RetryPolicy,
    ids: Option<Arc<Ids>>,
    error: Option<KitError>,
}

impl fmt::Debug for StoreTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreTest")
            .field("given", &self.fixture.len())
            .field("snapshots", &self.snapshots.len())
            .field("snapshot_policy", &self.snapshot_policy)
            .finish_non_exhaustive()
    }
}

fn snapshot_at<'a, A: Aggregate>(
    store: &'a dyn EventStore,
    upcasters: &'a Upcasters,
    stream: &'a StreamId,
    version: u64,
) -> BoxFuture<'a, Result<(), KitError>> {
    Box::pin(async move {
        let events: Vec<RecordedEvent> = store
            .read_stream(ReadStream::forward(stream).limit(version))
            .try_collect()
            .await?;
        if (events.len() as u64) < version || version == 0 {
            return Err(KitError::Setup(format!(
                "cannot put a snapshot of `{stream}` at version {version}: the given events reach version {}",
                events.len()
            )));
        }
        let mut state = A::default();
        for recorded in &events {
            state.apply(&A::Event::from_recorded_with(recorded, &Json, upcasters)?);
        }
        let snapshot = Snapshot::json(Version::new(version), &state)?
            .with_content_type(annals_core::JSON_CONTENT_TYPE)
            .with_schema_version(A::SNAPSHOT_SCHEMA_VERSION);
        store.save_snapshot(stream, snapshot).await?;
        Ok(())
    })
}

/// A seeded store and a repository on it, for tests that drive the store
/// themselves (projections, queries). Keeps a temporary SQLite file alive.
pub struct Seeded {
    store: Store,
    repository: Repository<Store>,
    _guard: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl fmt::Debug for Seeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Seeded").finish_non_exhaustive()
    }
}

impl Seeded {
    /// The store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// A repository on the store, configured like the scenario's.
    pub fn repository(&self) -> &Repository<Arc<dyn EventStore>> {
        &self.repository
    }
}

impl StoreTest {
    /// A scenario on a fresh [`MemoryEventStore`] whose recorded times come from
    /// a deterministic [`Clock`](crate::Clock) (2026-01-01T00:00:00Z, one second
    /// per event), so they are the same on every run.
    pub fn memory() -> Self {
        Self::on(MemoryEventStore::new().with_clock(crate::Clock::new()))
    }

    /// A scenario on `store` (keep a clone of a `MemoryEventStore` to inspect it
    /// afterwards).
    ///
    /// Given events get deterministic ids ([`Ids::seeded(0)`](crate::Ids)); when
    /// several scenarios share one store, give each its own seed through
    /// [`given_fixture`](StoreTest::given_fixture) and
    /// [`Fixture::with_ids`](crate::Fixture::with_ids), or equal ids are taken
    /// for retries of the same append.
    pub fn on(store: impl EventStore + 'static) -> Self {
        Self::on_arc(Arc::new(store))
    }

    /// A scenario on a shared store.
    pub fn on_arc(store: Arc<dyn EventStore>) -> Self {
        StoreTest {
            store,
            guard: None,
            fixture: Fixture::new(),
            snapshots: Vec::new(),
            upcasters: Upcasters::new(),
            snapshot_policy: SnapshotPolicy::default(),
            retry: RetryPolicy::default(),
            ids: None,
            error: None,
        }
    }

    /// A scenario on a fresh SQLite file in a temporary directory (removed when the
    /// scenario's outcome is dropped).
    #[cfg(feature = "sqlite")]
    pub async fn sqlite() -> Result<StoreTest, KitError> {
        let dir = tempfile::tempdir()
            .map_err(|e| KitError::Setup(format!("creating a temporary directory: {e}")))?;
        let store = annals_sqlite::SqliteEventStore::open(dir.path().join("events.db")).await?;
        let mut test = Self::on(store);
        test.guard = Some(Arc::new(dir));
        Ok(test)
    }

    /// Upcasters for the repository (and for decoding appended events).
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// The repository's snapshot policy (default: every 100 events).
    #[must_use]
    pub fn with_snapshot_policy(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshot_policy = policy;
        self
    }

    /// The repository's retry policy.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Ids for the events the command appends (fresh UUID v7 ids unless set), so
    /// that a test can name them: `Ids::seeded(1)` hands out the same ids on
    /// every run. Given events get theirs from the fixture.
    #[must_use]
    pub fn with_ids(mut self, ids: Ids) -> Self {
        self.ids = Some(Arc::new(ids));
        self
    }

    /// Stores past events of aggregate `id`.
    #[must_use]
    pub fn given_stored<A: Aggregate>(
        mut self,
        id: &str,
        events: impl IntoIterator<Item = A::Event>,
    ) -> Self {
        self.fixture = self.fixture.stream::<A>(id, events);
        self
    }

    /// Stores a past event of aggregate `id` in a stored shape given as JSON
    /// (an old schema version, read through the upcasters).
    #[must_use]
    pub fn given_raw<A: Aggregate>(mut self, id: &str, event_type: &str, payload: &Value) -> Self {
        self.fixture = self.fixture.raw::<A>(id, event_type, payload);
        self
    }

    /// Stores every event of `fixture`.
    #[must_use]
    pub fn given_fixture(mut self, fixture: Fixture) -> Self {
        self.fixture = self.fixture.extend(fixture);
        self
    }

    /// A snapshot of aggregate `id` exists at `version`: the state of its first
    /// `version` given events, saved as the repository would save it.
    #[must_use]
    pub fn given_snapshot<A: Aggregate>(mut self, id: &str, version: u64) -> Self {
        match A::stream_id(id) {
            Ok(stream) => self.snapshots.push((stream, version, snapshot_at::<A>)),
            Err(e) => {
                self.error.get_or_insert(e.into());
            }
        }
        self
    }

    fn repository(&self) -> Repository<Store> {
        let repository = Repository::new(Arc::clone(&self.store))
            .with_upcasters(self.upcasters.clone())
            .with_snapshot_policy(self.snapshot_policy)
            .with_retry_policy(self.retry);
        match &self.ids {
            Some(ids) => repository.with_ids(Arc::clone(ids)),
            None => repository,
        }
    }

    /// Stores the given events and snapshots; returns the head position after them.
    async fn setup(&mut self) -> Result<Option<Position>, KitError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if !self.fixture.is_empty() {
            self.store.commit(self.fixture.request()?).await?;
        }
        for (stream, version, take) in &self.snapshots {
            take(&*self.store, &self.upcasters, stream, *version).await?;
        }
        let last: Vec<RecordedEvent> = self
            .store
            .read_all(ReadAll::backward().limit(1))
            .try_collect()
            .await?;
        Ok(last.first().map(|e| e.position))
    }

    async fn appended_since(&self, head: Option<Position>) -> Result<Vec<RecordedEvent>, KitError> {
        let read = head.map_or_else(ReadAll::forward, ReadAll::after);
        Ok(self.store.read_all(read).try_collect().await?)
    }

    /// Stores the given events, then returns the store and a repository on it.
    pub async fn into_store(mut self) -> Result<Seeded, KitError> {
        self.setup().await?;
        Ok(Seeded {
            repository: self.repository(),
            store: self.store,
            _guard: self.guard,
        })
    }

    /// Stores the given events, then executes `command` on aggregate `id` with
    /// [`Repository::execute`].
    pub async fn when<A: Aggregate>(mut self, id: &str, command: &A::Command) -> StoreOutcome<A> {
        let ran = match self.setup().await {
            Err(e) => Err(e),
            Ok(head) => self.run::<A>(head, id, command).await,
        };
        StoreOutcome {
            ran,
            upcasters: self.upcasters,
            store: self.store,
            _guard: self.guard,
        }
    }

    async fn run<A: Aggregate>(
        &self,
        head: Option<Position>,
        id: &str,
        command: &A::Command,
    ) -> Result<Ran<A>, KitError> {
        let repo = self.repository();
        let stream = A::stream_id(id)?;
        let loaded = repo.load::<A>(id).await?;
        let result = repo.execute::<A>(id, command).await;
        let appended = self.appended_since(head).await?;
        Ok(Ran {
            stream,
            loaded,
            result,
            appended,
        })
    }

    /// Stores the given events, then runs a command over several aggregates with
    /// [`Repository::execute_across`].
    pub async fn when_across<T, E, F>(mut self, scope: &Scope, command: F) -> AcrossOutcome<T, E>
    where
        F: Fn(&mut Draft<'_, Json>) -> Result<T, ExecuteError<E>> + Send + Sync,
        T: Send,
        E: Send,
    {
        let ran = match self.setup().await {
            Err(e) => Err(e),
            Ok(head) => {
                let result = self.repository().execute_across(scope, command).await;
                self.appended_since(head)
                    .await
                    .map(|appended| (result, appended))
            }
        };
        AcrossOutcome {
            ran,
            upcasters: self.upcasters,
            store: self.store,
            _guard: self.guard,
        }
    }
}

struct Ran<A: Aggregate> {
    stream: StreamId,
    loaded: Loaded<A>,
    result: Result<Executed<A>, ExecuteError<A::Error>>,
    appended: Vec<RecordedEvent>,
}

/// Decodes the events of `stream` among `appended`.
fn decode_on<E: DomainEvent>(
    appended: &[RecordedEvent],
    stream: &StreamId,
    upcasters: &Upcasters,
) -> Result<Vec<Value>, Mismatch> {
    appended
        .iter()
        .filter(|e| &e.stream_id == stream)
        .map(|e| {
            E::from_recorded_with(e, &Json, upcasters)
                .map_err(|err| {
                    Mismatch::new(format!(
                        "the appended event {} (`{}`) on `{stream}` does not decode: {err}",
                        e.version, e.event_type
                    ))
                })
                .and_then(|ev| to_json(&ev).map_err(|err| Mismatch::new(err.to_string())))
        })
        .collect()
}

/// The streams appended to, in order of their first appended event.
fn streams_of(appended: &[RecordedEvent]) -> Vec<String> {
    let mut streams: Vec<String> = Vec::new();
    for event in appended {
        if !streams.iter().any(|s| s == event.stream_id.as_str()) {
            streams.push(event.stream_id.to_string());
        }
    }
    streams
}

fn store_error(error: &(impl fmt::Display + ?Sized)) -> Mismatch {
    Mismatch::new(format!(
        "the command failed in the store, not by a business rule: {error}"
    ))
}

/// What [`StoreTest::when`] did: the `then_` methods panic with a readable message,
/// their `try_` twins return it.
pub struct StoreOutcome<A: Aggregate> {
    ran: Result<Ran<A>, KitError>,
    upcasters: Upcasters,
    store: Store,
    _guard: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl<A: Aggregate> fmt::Debug for StoreOutcome<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOutcome").finish_non_exhaustive()
    }
}

impl<A: Aggregate> StoreOutcome<A> {
    fn ran(&self) -> Result<&Ran<A>, Mismatch> {
        self.ran.as_ref().map_err(setup_failed)
    }

    /// The store, to inspect or read further.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Every event the command appended, in position order.
    pub fn appended(&self) -> &[RecordedEvent] {
        self.ran.as_ref().map_or(&[], |r| &r.appended)
    }

    /// What the repository returned, if setup succeeded.
    pub fn result(&self) -> Option<&Result<Executed<A>, ExecuteError<A::Error>>> {
        self.ran.as_ref().ok().map(|r| &r.result)
    }

    /// The command succeeded and appended exactly `expected` to the aggregate's
    /// stream (compared structurally after decoding, through the upcasters).
    pub fn try_then_expect(&self, expected: &[A::Event]) -> Result<&Self, Mismatch> {
        let ran = self.ran()?;
        match &ran.result {
            Err(ExecuteError::Domain(error)) => {
                return Err(rejected_instead(expected.len(), error))
            }
            Err(other) => return Err(store_error(other)),
            Ok(_) => {}
        }
        let found = decode_on::<A::Event>(&ran.appended, &ran.stream, &self.upcasters)?;
        compare_events(expected, &found)?;
        Ok(self)
    }

    /// Panicking [`try_then_expect`](StoreOutcome::try_then_expect).
    #[track_caller]
    pub fn then_expect(&self, expected: &[A::Event]) -> &Self {
        or_fail(self.try_then_expect(expected))
    }

    /// The command was rejected by the aggregate with an error `matching` accepts.
    pub fn try_then_error(
        &self,
        matching: impl FnOnce(&A::Error) -> bool,
    ) -> Result<&Self, Mismatch> {
        let ran = self.ran()?;
        match &ran.result {
            Ok(_) => Err(accepted_instead(&decode_on::<A::Event>(
                &ran.appended,
                &ran.stream,
                &self.upcasters,
            )?)),
            Err(ExecuteError::Domain(error)) if matching(error) => Ok(self),
            Err(ExecuteError::Domain(error)) => Err(wrong_error(error)),
            Err(other) => Err(store_error(other)),
        }
    }

    /// Panicking [`try_then_error`](StoreOutcome::try_then_error).
    #[track_caller]
    pub fn then_error(&self, matching: impl FnOnce(&A::Error) -> bool) -> &Self {
        or_fail(self.try_then_error(matching))
    }

    /// The command was rejected with an error that displays as `message`.
    pub fn try_then_error_message(&self, message: &str) -> Result<&Self, Mismatch> {
        match self.ran.as_ref().map(|r| &r.result) {
            Ok(Err(ExecuteError::Domain(error))) if error.to_string() != message => {
                Err(wrong_message(message, error))
            }
            _ => self.try_then_error(|_| true),
        }
    }

    /// Panicking [`try_then_error_message`](StoreOutcome::try_then_error_message).
    #[track_caller]
    pub fn then_error_message(&self, message: &str) -> &Self {
        or_fail(self.try_then_error_message(message))
    }

    fn executed(&self) -> Result<&Executed<A>, Mismatch> {
        match &self.ran()?.result {
            Ok(executed) => Ok(executed),
            Err(ExecuteError::Domain(error)) => Err(Mismatch::new(format!(
                "expected the command to succeed, but it was rejected: {error} ({error:?})"
            ))),
            Err(other) => Err(store_error(other)),
        }
    }

    /// The command succeeded and the state after it satisfies `predicate`.
    pub fn try_then_state(&self, predicate: impl FnOnce(&A) -> bool) -> Result<&Self, Mismatch> {
        let executed = self.executed()?;
        if predicate(&executed.state) {
            Ok(self)
        } else {
            Err(state_predicate_failed(&executed.state))
        }
    }

    /// Panicking [`try_then_state`](StoreOutcome::try_then_state).
    #[track_caller]
    pub fn then_state(&self, predicate: impl FnOnce(&A) -> bool) -> &Self {
        or_fail(self.try_then_state(predicate))
    }

    /// The command succeeded and left the stream at `version`.
    pub fn try_then_version(&self, version: u64) -> Result<&Self, Mismatch> {
        let executed = self.executed()?;
        if executed.version == version {
            Ok(self)
        } else {
            Err(Mismatch::new(format!(
                "expected the stream at version {version} after the command, found version {}",
                executed.version
            )))
        }
    }

    /// Panicking [`try_then_version`](StoreOutcome::try_then_version).
    #[track_caller]
    pub fn then_version(&self, version: u64) -> &Self {
        or_fail(self.try_then_version(version))
    }

    /// The aggregate was loaded from the snapshot at `version` (not replayed in
    /// full, and not from another snapshot).
    pub fn try_then_loaded_from_snapshot(&self, version: u64) -> Result<&Self, Mismatch> {
        let loaded = &self.ran()?.loaded;
        match loaded.snapshot_version {
            Some(v) if v == version => Ok(self),
            Some(v) => Err(Mismatch::new(format!(
                "expected the load to start from the snapshot at version {version}, but it started from the snapshot at version {v} (then replayed {} events)",
                loaded.replayed
            ))),
            None => Err(Mismatch::new(format!(
                "expected the load to start from the snapshot at version {version}, but no snapshot was used: it replayed all {} events",
                loaded.replayed
            ))),
        }
    }

    /// Panicking [`try_then_loaded_from_snapshot`](StoreOutcome::try_then_loaded_from_snapshot).
    #[track_caller]
    pub fn then_loaded_from_snapshot(&self, version: u64) -> &Self {
        or_fail(self.try_then_loaded_from_snapshot(version))
    }

    /// The repository saved a snapshot at `version` after the command.
    pub fn try_then_snapshot_saved(&self, version: u64) -> Result<&Self, Mismatch> {
        let executed = self.executed()?;
        match executed.snapshot_saved {
            Some(v) if v == version => Ok(self),
            other => Err(Mismatch::new(format!(
                "expected a snapshot saved at version {version}, found {}",
                other.map_or_else(|| "none".to_owned(), |v| format!("one at version {v}"))
            ))),
        }
    }

    /// Panicking [`try_then_snapshot_saved`](StoreOutcome::try_then_snapshot_saved).
    #[track_caller]
    pub fn then_snapshot_saved(&self, version: u64) -> &Self {
        or_fail(self.try_then_snapshot_saved(version))
    }
}

/// What [`StoreTest::when_across`] did.
pub struct AcrossOutcome<T, E> {
    #[allow(clippy::type_complexity)]
    ran: Result<
        (
            Result<ExecutedAcross<T>, ExecuteError<E>>,
            Vec<RecordedEvent>,
        ),
        KitError,
    >,
    upcasters: Upcasters,
    store: Store,
    _guard: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl<T, E> fmt::Debug for AcrossOutcome<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcrossOutcome").finish_non_exhaustive()
    }
}

impl<T, E: fmt::Display + fmt::Debug> AcrossOutcome<T, E> {
    /// The store, to inspect or read further.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// What the command returned, if it succeeded.
    pub fn value(&self) -> Option<&T> {
        match &self.ran {
            Ok((Ok(done), _)) => Some(&done.value),
            _ => None,
        }
    }

    /// Every event the command appended, in position order.
    pub fn appended(&self) -> &[RecordedEvent] {
        self.ran.as_ref().map_or(&[], |(_, a)| a)
    }

    fn succeeded(&self) -> Result<&[RecordedEvent], Mismatch> {
        match &self.ran {
            Err(e) => Err(setup_failed(e)),
            Ok((Err(ExecuteError::Domain(error)), _)) => Err(Mismatch::new(format!(
                "expected the command to succeed, but it was rejected: {error} ({error:?})"
            ))),
            Ok((Err(other), _)) => Err(store_error(other)),
            Ok((Ok(_), appended)) => Ok(appended),
        }
    }

    /// The command succeeded and appended exactly `expected` to aggregate `id` of
    /// type `A` (other streams are checked by further calls and
    /// [`then_streams`](AcrossOutcome::then_streams)).
    pub fn try_then_appended<A: Aggregate>(
        &self,
        id: &str,
        expected: &[A::Event],
    ) -> Result<&Self, Mismatch> {
        let appended = self.succeeded()?;
        let stream = A::stream_id(id).map_err(|e| Mismatch::new(e.to_string()))?;
        let found = decode_on::<A::Event>(appended, &stream, &self.upcasters)?;
        compare_events(expected, &found)
            .map_err(|m| Mismatch::new(format!("on `{stream}`: {}", m.message())))?;
        Ok(self)
    }

    /// Panicking [`try_then_appended`](AcrossOutcome::try_then_appended).
    #[track_caller]
    pub fn then_appended<A: Aggregate>(&self, id: &str, expected: &[A::Event]) -> &Self {
        or_fail(self.try_then_appended::<A>(id, expected))
    }

    /// The command succeeded and appended to exactly these streams, in this order
    /// of first append.
    pub fn try_then_streams(&self, expected: &[&str]) -> Result<&Self, Mismatch> {
        let found = streams_of(self.succeeded()?);
        if found
            .iter()
            .map(String::as_str)
            .eq(expected.iter().copied())
        {
            Ok(self)
        } else {
            Err(Mismatch::new(format!(
                "expected appends to [{}], found appends to [{}]",
                expected.join(", "),
                found.join(", ")
            )))
        }
    }

    /// Panicking [`try_then_streams`](AcrossOutcome::try_then_streams).
    #[track_caller]
    pub fn then_streams(&self, expected: &[&str]) -> &Self {
        or_fail(self.try_then_streams(expected))
    }

    /// The command was rejected by a business rule `matching` accepts, and nothing
    /// was appended.
    pub fn try_then_error(&self, matching: impl FnOnce(&E) -> bool) -> Result<&Self, Mismatch> {
        match &self.ran {
            Err(e) => Err(setup_failed(e)),
            Ok((Ok(_), appended)) => {
                let shown: Vec<String> = appended
                    .iter()
                    .map(|e| format!("{} on {}", e.event_type, e.stream_id))
                    .collect();
                Err(Mismatch::new(if shown.is_empty() {
                    "expected the command to be rejected, but it succeeded and appended nothing"
                        .to_owned()
                } else {
                    format!(
                        "expected the command to be rejected, but it appended {}",
                        shown.join(", ")
                    )
                }))
            }
            Ok((Err(ExecuteError::Domain(error)), _)) if matching(error) => Ok(self),
            Ok((Err(ExecuteError::Domain(error)), _)) => Err(wrong_error(error)),
            Ok((Err(other), _)) => Err(store_error(other)),
        }
    }

    /// Panicking [`try_then_error`](AcrossOutcome::try_then_error).
    #[track_caller]
    pub fn then_error(&self, matching: impl FnOnce(&E) -> bool) -> &Self {
        or_fail(self.try_then_error(matching))
    }
}
