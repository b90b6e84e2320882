//! The [`Repository`]: loads aggregates (snapshot + tail), executes commands with
//! optimistic concurrency, retries conflicts, saves snapshots by policy.

use std::{fmt, marker::PhantomData, sync::Arc};

use futures::TryStreamExt;

use crate::{
    codec::{decode_stored, Codec, Json},
    policy::{RetryPolicy, SnapshotPolicy},
    source::{IdSource, UuidV7Ids},
    timer::sleep,
    Aggregate, DomainEvent, Error, EventStore, ExpectedVersion, Metadata, ReadStream, Result,
    Snapshot, StreamId, Upcasters, Version,
};

/// Loads and saves [`Aggregate`]s through any [`EventStore`].
///
/// Works with a concrete store (`Repository<SqliteEventStore>`), a shared one
/// (`Repository<Arc<S>>`) and a trait object (`Repository<Arc<dyn EventStore>>`).
///
/// * [`load`](Repository::load): the stored snapshot if its schema version and
///   content type fit, then the events after it; without a usable snapshot, every
///   event. Both give the same state.
/// * [`execute`](Repository::execute): load, decide the command, append the new
///   events with [`ExpectedVersion::Exact`]. If another writer appended first
///   ([`Error::Conflict`]) it reloads and decides again, up to the
///   [`RetryPolicy`]'s attempts. A rejected command is
///   [`ExecuteError::Domain`]; a storage failure is [`ExecuteError::Store`].
/// * After a successful append it saves a snapshot when the [`SnapshotPolicy`] says
///   so. A failed snapshot save is logged (`tracing::warn!`), never returned: the
///   events are already committed.
///
/// Events are written with the repository's codec ([`Json`] unless set with
/// [`with_codec`](Repository::with_codec)); reads pick the codec by each stored
/// content type, so changing codecs keeps old events readable.
///
/// ```
/// # use annals_core::{Aggregate, DomainEvent, EventStore, Repository};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Added { n: u32 } }
/// # impl DomainEvent for Ev {}
/// # #[derive(Debug, thiserror::Error)] #[error("too big")] struct TooBig;
/// # #[derive(Debug, Default, Serialize, Deserialize)] struct Counter { value: u32 }
/// # impl Aggregate for Counter {
/// #     type Event = Ev; type Command = u32; type Error = TooBig;
/// #     const CATEGORY: &'static str = "counter";
/// #     fn apply(&mut self, Ev::Added { n }: &Ev) { self.value += n }
/// #     fn handle(&self, n: &u32) -> Result<Vec<Ev>, TooBig> { Ok(vec![Ev::Added { n: *n }]) }
/// # }
/// # async fn demo(store: std::sync::Arc<dyn EventStore>) -> Result<(), Box<dyn std::error::Error>> {
/// use annals_core::{ExecuteError, SnapshotPolicy};
///
/// let repo = Repository::new(store).with_snapshot_policy(SnapshotPolicy::every(50));
/// let done = repo.execute::<Counter>("c1", &5).await?;
/// assert_eq!(done.state.value, 5);
/// match repo.execute::<Counter>("c1", &100).await {
///     Err(ExecuteError::Domain(TooBig)) => { /* business rule said no */ }
///     Err(other) => return Err(other.into()), // store failure, or retries ran out
///     Ok(_) => {}
/// }
/// let loaded = repo.load::<Counter>("c1").await?;
/// println!("counter at version {}: {}", loaded.version, loaded.state.value);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Repository<S, C = Json> {
    store: S,
    codec: C,
    upcasters: Upcasters,
    retry: RetryPolicy,
    snapshots: SnapshotPolicy,
    skip_unknown: bool,
    ids: Arc<dyn IdSource>,
}

impl<S, C: fmt::Debug> fmt::Debug for Repository<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("codec", &self.codec)
            .field("upcasters", &self.upcasters)
            .field("retry", &self.retry)
            .field("snapshots", &self.snapshots)
            .field("skip_unknown", &self.skip_unknown)
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

/// An aggregate as loaded by [`Repository::load`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The stream version the state includes (0 for a new aggregate).
    pub version: Version,
    /// The version of the snapshot the load started from, if one was used.
    pub snapshot_version: Option<Version>,
    /// How many events were read and applied after the snapshot (or from the start).
    pub replayed: u64,
}

/// What [`Repository::execute`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Executed<A: Aggregate> {
    /// The state after the new events.
    pub state: A,
    /// The stream version after the append (unchanged if the command produced no
    /// events).
    pub version: Version,
    /// The events recorded (empty if the command was a no-op).
    pub events: Vec<A::Event>,
    /// Attempts used (1 unless a conflict was retried).
    pub attempts: u32,
    /// The version of the snapshot saved after this append, if one was saved.
    pub snapshot_saved: Option<Version>,
}

/// Why [`Repository::execute`] failed: the domain said no, the store failed, or
/// every attempt lost a race.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecuteError<E> {
    /// The aggregate rejected the command (a business rule). Nothing was written.
    #[error(transparent)]
    Domain(E),
    /// Loading or appending failed.
    #[error(transparent)]
    Store(#[from] Error),
    /// Every attempt the [`RetryPolicy`] allows conflicted with a concurrent writer.
    /// Nothing was written. For aggregates many tasks write at once, raise
    /// [`RetryPolicy::with_max_attempts`] to at least the number of concurrent
    /// writers (see docs/event-sourcing.md, "Retries").
    #[error("gave up after {attempts} attempts, each conflicting with a concurrent writer (raise RetryPolicy::with_max_attempts for contended aggregates); last conflict: {last}")]
    RetriesExhausted {
        /// How many attempts ran.
        attempts: u32,
        /// The last attempt's [`Error::Conflict`].
        last: Error,
    },
}

impl<E> ExecuteError<E> {
    /// The domain error, if that is what this is.
    pub fn domain(&self) -> Option<&E> {
        match self {
            ExecuteError::Domain(e) => Some(e),
            _ => None,
        }
    }

    /// True if the command lost a race for good (or a conflict came back with
    /// retries switched off): reload and decide again later, or give up.
    pub fn is_conflict(&self) -> bool {
        match self {
            ExecuteError::RetriesExhausted { .. } => true,
            ExecuteError::Store(e) => e.is_conflict(),
            ExecuteError::Domain(_) => false,
        }
    }
}

impl<S: EventStore> Repository<S, Json> {
    /// A repository writing JSON, with the default retry and snapshot policies.
    pub fn new(store: S) -> Self {
        Repository {
            store,
            codec: Json,
            upcasters: Upcasters::new(),
            retry: RetryPolicy::default(),
            snapshots: SnapshotPolicy::default(),
            skip_unknown: false,
            ids: Arc::new(UuidV7Ids),
        }
    }
}

impl<S: EventStore, C: Codec> Repository<S, C> {
    /// Writes events and snapshots with `codec` from now on (reads still decode
    /// every stored content type the build knows).
    pub fn with_codec<C2: Codec>(self, codec: C2) -> Repository<S, C2> {
        Repository {
            store: self.store,
            codec,
            upcasters: self.upcasters,
            retry: self.retry,
            snapshots: self.snapshots,
            skip_unknown: self.skip_unknown,
            ids: self.ids,
        }
    }

    /// Upcasters applied to old event versions on read.
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// The conflict retry policy.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The snapshot policy.
    #[must_use]
    pub fn with_snapshot_policy(mut self, snapshots: SnapshotPolicy) -> Self {
        self.snapshots = snapshots;
        self
    }

    /// Skip stored events whose type the aggregate's event enum does not know,
    /// instead of failing with [`Error::UnknownEventType`] (the default). Useful
    /// when several writers share a stream; dangerous when it hides a missing
    /// variant.
    #[must_use]
    pub fn skip_unknown_events(mut self, skip: bool) -> Self {
        self.skip_unknown = skip;
        self
    }

    /// Where the ids of new events come from: fresh UUID v7 ids
    /// ([`UuidV7Ids`]) unless set here. Tests inject a deterministic source
    /// (`annals_test_kit::Ids`) so that recorded ids repeat from run to run.
    ///
    /// ```
    /// use annals_core::{source::UuidV7Ids, Repository};
    /// # fn demo<S: annals_core::EventStore>(store: S) {
    /// let repo = Repository::new(store).with_ids(UuidV7Ids);
    /// # }
    /// ```
    #[must_use]
    pub fn with_ids(mut self, ids: impl IdSource + 'static) -> Self {
        self.ids = Arc::new(ids);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The codec used for writes.
    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// The retry policy for conflicting commands.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The snapshot policy.
    pub fn snapshot_policy(&self) -> &SnapshotPolicy {
        &self.snapshots
    }

    pub(crate) fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    pub(crate) fn skips_unknown(&self) -> bool {
        self.skip_unknown
    }

    pub(crate) fn ids(&self) -> &dyn IdSource {
        &*self.ids
    }

    /// `event` encoded as a new event with an id from the repository's
    /// [`IdSource`] and `metadata`.
    pub(crate) fn encode_new<E: DomainEvent>(
        &self,
        event: &E,
        metadata: &Metadata,
    ) -> Result<crate::NewEvent> {
        Ok(event
            .to_new_event_with(&self.codec)?
            .with_id(self.ids.next_id())
            .with_metadata(metadata.clone()))
    }

    /// Loads the aggregate `id` (stream [`A::stream_id(id)`](Aggregate::stream_id)).
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<Loaded<A>> {
        self.load_stream(&aggregate_stream::<A>(id)?).await
    }

    /// Loads an aggregate from an explicit stream.
    pub async fn load_stream<A: Aggregate>(&self, stream: &StreamId) -> Result<Loaded<A>> {
        let (mut state, mut version, snapshot_version) = match self.usable_snapshot(stream).await? {
            Some((state, version)) => (state, version, Some(version)),
            None => (A::default(), Version::ZERO, None),
        };
        let mut replayed = 0_u64;
        let mut events = self
            .store
            .read_stream(ReadStream::forward(stream).after(version));
        while let Some(recorded) = events.try_next().await? {
            match A::Event::from_recorded_with(&recorded, &self.codec, &self.upcasters) {
                Ok(event) => state.apply(&event),
                Err(Error::UnknownEventType {
                    event_type,
                    event_id,
                }) if self.skip_unknown => {
                    tracing::debug!(%event_id, %event_type, %stream, "skipping unknown event type");
                }
                Err(e) => return Err(e),
            }
            version = recorded.version;
            replayed += 1;
        }
        Ok(Loaded {
            state,
            version,
            snapshot_version,
            replayed,
        })
    }

    /// The stored snapshot decoded, if it exists, has `A`'s schema version and
    /// decodes; otherwise `None` (logged).
    async fn usable_snapshot<A: Aggregate>(
        &self,
        stream: &StreamId,
    ) -> Result<Option<(A, Version)>> {
        let Some(snapshot) = self.store.load_snapshot(stream).await? else {
            return Ok(None);
        };
        if snapshot.schema_version != A::SNAPSHOT_SCHEMA_VERSION {
            tracing::debug!(
                %stream,
                stored = snapshot.schema_version,
                current = A::SNAPSHOT_SCHEMA_VERSION,
                "ignoring snapshot with another schema version"
            );
            return Ok(None);
        }
        match decode_stored(
            &self.codec,
            &snapshot.content_type,
            PhantomData::<A>,
            &snapshot.state,
        ) {
            Ok(state) => Ok(Some((state, snapshot.version))),
            Err(error) => {
                tracing::warn!(%stream, version = %snapshot.version, %error, "ignoring undecodable snapshot");
                Ok(None)
            }
        }
    }

    /// Executes `command` on aggregate `id`; see the [type docs](Repository).
    pub async fn execute<A: Aggregate>(
        &self,
        id: &str,
        command: &A::Command,
    ) -> std::result::Result<Executed<A>, ExecuteError<A::Error>> {
        self.execute_with(id, command, &Metadata::new()).await
    }

    /// [`execute`](Repository::execute) with metadata (correlation id, user, …)
    /// attached to every recorded event.
    pub async fn execute_with<A: Aggregate>(
        &self,
        id: &str,
        command: &A::Command,
        metadata: &Metadata,
    ) -> std::result::Result<Executed<A>, ExecuteError<A::Error>> {
        let stream = aggregate_stream::<A>(id)?;
        let mut attempt = 1_u32;
        loop {
            let loaded = self.load_stream::<A>(&stream).await?;
            let events = loaded.state.handle(command).map_err(ExecuteError::Domain)?;
            if events.is_empty() {
                return Ok(Executed {
                    state: loaded.state,
                    version: loaded.version,
                    events,
                    attempts: attempt,
                    snapshot_saved: None,
                });
            }
            let batch = events
                .iter()
                .map(|e| self.encode_new(e, metadata))
                .collect::<Result<Vec<_>>>()?;
            match self
                .store
                .append(&stream, ExpectedVersion::Exact(loaded.version), batch)
                .await
            {
                Ok(appended) => {
                    let mut state = loaded.state;
                    for event in &events {
                        state.apply(event);
                    }
                    let base = loaded.snapshot_version.unwrap_or(Version::ZERO).get();
                    let due = self
                        .snapshots
                        .is_due(appended.version.get().saturating_sub(base));
                    let snapshot_saved = if due {
                        self.save_snapshot_quietly(&stream, appended.version, &state)
                            .await
                    } else {
                        None
                    };
                    return Ok(Executed {
                        state,
                        version: appended.version,
                        events,
                        attempts: attempt,
                        snapshot_saved,
                    });
                }
                Err(e) if e.is_conflict() && attempt < self.retry.max_attempts() => {
                    tracing::debug!(%stream, attempt, error = %e, "conflict; reloading and retrying");
                    sleep(self.retry.delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) if e.is_conflict() && attempt > 1 => {
                    return Err(ExecuteError::RetriesExhausted {
                        attempts: attempt,
                        last: e,
                    })
                }
                Err(e) => return Err(ExecuteError::Store(e)),
            }
        }
    }

    /// Loads aggregate `id` and saves a snapshot of it now, whatever the policy.
    /// Returns the snapshot's version (nothing is saved for an empty stream).
    pub async fn snapshot<A: Aggregate>(&self, id: &str) -> Result<Option<Version>> {
        let stream = aggregate_stream::<A>(id)?;
        let loaded = self.load_stream::<A>(&stream).await?;
        if loaded.version == Version::ZERO {
            return Ok(None);
        }
        self.save_snapshot(&stream, loaded.version, &loaded.state)
            .await?;
        Ok(Some(loaded.version))
    }

    async fn save_snapshot<A: Aggregate>(
        &self,
        stream: &StreamId,
        version: Version,
        state: &A,
    ) -> Result<()> {
        let bytes = self.codec.encode(state).map_err(|e| {
            Error::codec(format!("encoding snapshot of `{stream}` at {version}"), e)
        })?;
        let snapshot = Snapshot::new(version, bytes)
            .with_content_type(self.codec.content_type())
            .with_schema_version(A::SNAPSHOT_SCHEMA_VERSION);
        self.store.save_snapshot(stream, snapshot).await
    }

    async fn save_snapshot_quietly<A: Aggregate>(
        &self,
        stream: &StreamId,
        version: Version,
        state: &A,
    ) -> Option<Version> {
        match self.save_snapshot(stream, version, state).await {
            Ok(()) => Some(version),
            Err(error) => {
                tracing::warn!(%stream, %version, %error, "saving a snapshot failed; loads replay events instead");
                None
            }
        }
    }
}

/// The stream of aggregate `id`, rejecting an empty id (it would name the bare
/// category stream) and saying that the category prefix counts toward the limit.
pub(crate) fn aggregate_stream<A: Aggregate>(id: &str) -> Result<StreamId> {
    if id.is_empty() {
        return Err(Error::invalid_input(format!(
            "the aggregate id must not be empty (category `{}`)",
            A::CATEGORY
        )));
    }
    A::stream_id(id).map_err(|e| match e {
        Error::InvalidInput(message) => Error::invalid_input(format!(
            "{message} (the stream id of aggregate `{id}` includes the category prefix `{}-`)",
            A::CATEGORY
        )),
        other => other,
    })
}
