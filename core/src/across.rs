//! Commands across several aggregates: [`Repository::execute_across`].
//!
//! A [`Scope`] names the aggregates a command reads; the command decides over their
//! states in a [`Draft`] and appends to some of them. The repository commits one
//! [`AppendRequest`]: a part for each aggregate the command appended to and a
//! condition for each it only read, so the decision holds only if none of them moved
//! — and retries the whole command on a conflict, as
//! [`Repository::execute`] does for one aggregate.

use std::{any::TypeId, marker::PhantomData};

use futures::TryStreamExt;

use crate::{
    codec::Codec, repository::aggregate_stream, timer::sleep, Aggregate, AppendRequest, Committed,
    DomainEvent, Error, EventStore, ExecuteError, ExpectedVersion, Metadata, NewEvent, ReadStream,
    RecordedEvent, Repository, Result, StreamId, Version,
};

/// The aggregates a multi-aggregate command reads (see
/// [`Repository::execute_across`]).
#[derive(Debug, Default, Clone)]
pub struct Scope {
    entries: Vec<(StreamId, TypeId)>,
}

/// One aggregate of a [`Scope`]: pass it to [`Draft::state`] and [`Draft::append`].
#[derive(Debug)]
pub struct Handle<A> {
    index: usize,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for Handle<A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A> Copy for Handle<A> {}

impl Scope {
    /// An empty scope.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds aggregate `id` of type `A`; [`Error::InvalidInput`] for an invalid or
    /// repeated id.
    pub fn aggregate<A: Aggregate>(&mut self, id: &str) -> Result<Handle<A>> {
        let stream = aggregate_stream::<A>(id)?;
        if self.entries.iter().any(|(s, _)| *s == stream) {
            return Err(Error::invalid_input(format!(
                "stream `{stream}` is already in this scope"
            )));
        }
        self.entries.push((stream, TypeId::of::<A>()));
        Ok(Handle {
            index: self.entries.len() - 1,
            _aggregate: PhantomData,
        })
    }
}

/// The loaded aggregates of a [`Scope`], and the events a command appends to them.
#[derive(Debug)]
pub struct Draft<'r, C> {
    codec: &'r C,
    upcasters: &'r crate::Upcasters,
    skip_unknown: bool,
    loaded: Vec<Loaded>,
    metadata: &'r Metadata,
    ids: &'r dyn crate::source::IdSource,
}

#[derive(Debug)]
struct Loaded {
    stream: StreamId,
    type_id: TypeId,
    version: Version,
    events: Vec<RecordedEvent>,
    pending: Vec<NewEvent>,
}

impl<C: Codec> Draft<'_, C> {
    fn slot<A: Aggregate>(&self, handle: Handle<A>) -> Result<&Loaded> {
        self.loaded
            .get(handle.index)
            .filter(|l| l.type_id == TypeId::of::<A>())
            .ok_or_else(|| Error::invalid_input("this handle belongs to another scope"))
    }

    /// The aggregate's state as loaded (before this command's events).
    pub fn state<A: Aggregate>(&self, handle: Handle<A>) -> Result<A> {
        let slot = self.slot(handle)?;
        let mut state = A::default();
        for recorded in &slot.events {
            match A::Event::from_recorded_with(recorded, self.codec, self.upcasters) {
                Ok(event) => state.apply(&event),
                Err(Error::UnknownEventType { .. }) if self.skip_unknown => {}
                Err(e) => return Err(e),
            }
        }
        Ok(state)
    }

    /// The aggregate's version as loaded.
    pub fn version<A: Aggregate>(&self, handle: Handle<A>) -> Result<Version> {
        self.slot(handle).map(|s| s.version)
    }

    /// Records `events` to append to the aggregate when the command commits.
    pub fn append<A: Aggregate>(&mut self, handle: Handle<A>, events: &[A::Event]) -> Result<()> {
        let encoded = events
            .iter()
            .map(|e| {
                e.to_new_event_with(self.codec).map(|n| {
                    n.with_id(self.ids.next_id())
                        .with_metadata(self.metadata.clone())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.slot(handle)?;
        if let Some(slot) = self.loaded.get_mut(handle.index) {
            slot.pending.extend(encoded);
        }
        Ok(())
    }

    fn request(self) -> AppendRequest {
        self.loaded
            .into_iter()
            .fold(AppendRequest::new(), |request, slot| {
                let expected = ExpectedVersion::Exact(slot.version);
                if slot.pending.is_empty() {
                    request.require(&slot.stream, expected)
                } else {
                    request.append(&slot.stream, expected, slot.pending)
                }
            })
    }
}

/// What [`Repository::execute_across`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct ExecutedAcross<T> {
    /// What the command returned.
    pub value: T,
    /// What was stored (`None` if the command appended nothing).
    pub committed: Option<Committed>,
    /// Attempts used (1 unless a conflict was retried).
    pub attempts: u32,
}

impl<S: EventStore, C: Codec> Repository<S, C> {
    /// Runs a command over several aggregates, all-or-nothing.
    ///
    /// Loads every aggregate of `scope`, calls `command` with a [`Draft`] of them,
    /// and commits what it appended in one [`AppendRequest`]: each aggregate it
    /// appended to must still be at its loaded version, and so must each one it
    /// only read. If another writer moved any of them, it reloads and runs the
    /// command again, up to the [`RetryPolicy`](crate::RetryPolicy)'s attempts.
    /// Snapshots are not used or saved here: each aggregate is replayed in full.
    ///
    /// ```
    /// # use annals_core::{Aggregate, DomainEvent, Repository, Scope, ExecuteError};
    /// # use serde::{Deserialize, Serialize};
    /// # #[derive(Debug, Serialize, Deserialize)] enum Ev { Deposited(u64), Withdrawn(u64) }
    /// # impl DomainEvent for Ev {}
    /// # #[derive(Debug, thiserror::Error)] #[error("insufficient funds")] struct Insufficient;
    /// # #[derive(Debug, Default, Serialize, Deserialize)] struct Account { balance: u64 }
    /// # impl Aggregate for Account {
    /// #     type Event = Ev; type Command = (); type Error = Insufficient;
    /// #     const CATEGORY: &'static str = "account";
    /// #     fn apply(&mut self, e: &Ev) { match e { Ev::Deposited(n) => self.balance += n, Ev::Withdrawn(n) => self.balance -= n } }
    /// #     fn handle(&self, _: &()) -> Result<Vec<Ev>, Insufficient> { Ok(vec![]) }
    /// # }
    /// # async fn demo(repo: Repository<annals_memory::MemoryEventStore>) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut scope = Scope::new();
    /// let from = scope.aggregate::<Account>("alice")?;
    /// let to = scope.aggregate::<Account>("bob")?;
    /// let done = repo
    ///     .execute_across(&scope, |draft| {
    ///         if draft.state(from)?.balance < 30 {
    ///             return Err(ExecuteError::Domain(Insufficient));
    ///         }
    ///         draft.append(from, &[Ev::Withdrawn(30)])?;
    ///         draft.append(to, &[Ev::Deposited(30)])?;
    ///         Ok(())
    ///     })
    ///     .await;
    /// // alice has no money yet: the command said no, nothing was written.
    /// assert!(matches!(done, Err(ExecuteError::Domain(Insufficient))));
    /// # Ok(()) }
    /// ```
    pub async fn execute_across<T, E, F>(
        &self,
        scope: &Scope,
        command: F,
    ) -> std::result::Result<ExecutedAcross<T>, ExecuteError<E>>
    where
        F: Fn(&mut Draft<'_, C>) -> std::result::Result<T, ExecuteError<E>>,
    {
        self.execute_across_with(scope, &Metadata::new(), command)
            .await
    }

    /// [`execute_across`](Repository::execute_across) with metadata attached to
    /// every recorded event.
    pub async fn execute_across_with<T, E, F>(
        &self,
        scope: &Scope,
        metadata: &Metadata,
        command: F,
    ) -> std::result::Result<ExecutedAcross<T>, ExecuteError<E>>
    where
        F: Fn(&mut Draft<'_, C>) -> std::result::Result<T, ExecuteError<E>>,
    {
        if scope.entries.is_empty() {
            return Err(Error::invalid_input("the scope names no aggregate").into());
        }
        let mut attempt = 1_u32;
        loop {
            let mut loaded = Vec::with_capacity(scope.entries.len());
            for (stream, type_id) in &scope.entries {
                let events: Vec<RecordedEvent> = self
                    .store()
                    .read_stream(ReadStream::forward(stream))
                    .try_collect()
                    .await?;
                loaded.push(Loaded {
                    stream: stream.clone(),
                    type_id: *type_id,
                    version: events.last().map_or(Version::ZERO, |e| e.version),
                    events,
                    pending: Vec::new(),
                });
            }
            let mut draft = Draft {
                codec: self.codec(),
                upcasters: self.upcasters(),
                skip_unknown: self.skips_unknown(),
                loaded,
                metadata,
                ids: self.ids(),
            };
            let value = command(&mut draft)?;
            if draft.loaded.iter().all(|l| l.pending.is_empty()) {
                return Ok(ExecutedAcross {
                    value,
                    committed: None,
                    attempts: attempt,
                });
            }
            match self.store().commit(draft.request()).await {
                Ok(committed) => {
                    return Ok(ExecutedAcross {
                        value,
                        committed: Some(committed),
                        attempts: attempt,
                    })
                }
                Err(e) if e.is_conflict() && attempt < self.retry_policy().max_attempts() => {
                    tracing::debug!(attempt, error = %e, "conflict across aggregates; reloading and retrying");
                    sleep(self.retry_policy().delay(attempt)).await;
                    attempt += 1;
                }
                Err(e) if e.is_conflict() && attempt > 1 => {
                    return Err(ExecuteError::RetriesExhausted {
                        attempts: attempt,
                        last: e,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
