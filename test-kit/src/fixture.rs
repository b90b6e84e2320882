//! Fixtures and deterministic sources: [`Fixture`], [`Ids`], [`Clock`].

use std::{
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

use annals_core::{
    codec::Json,
    source::{IdSource, TimeSource},
    Aggregate, AppendRequest, DomainEvent, EventId, ExpectedVersion, Metadata, NewEvent, Position,
    RecordedEvent, StreamId, Timestamp, Version,
};
use serde_json::Value;

use crate::KitError;

/// Deterministic event ids: `Ids::seeded(7)` always hands out the same ids in the
/// same order (the seed in the high 64 bits, a counter from 1 in the low ones).
///
/// ```
/// use annals_test_kit::Ids;
/// let ids = Ids::seeded(7);
/// assert_eq!(ids.next_id().to_string(), "00000000-0000-0007-0000-000000000001");
/// ```
#[derive(Debug, Default)]
pub struct Ids {
    seed: u64,
    next: AtomicU64,
}

impl Ids {
    /// Ids from seed 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ids from `seed`: different seeds never produce the same id.
    pub fn seeded(seed: u64) -> Self {
        Ids {
            seed,
            next: AtomicU64::new(0),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> EventId {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        EventId::from_bytes(((u128::from(self.seed) << 64) | u128::from(n)).to_be_bytes())
    }
}

/// Ids injected where a store or repository makes new ones, e.g.
/// [`Repository::with_ids`](annals_core::Repository::with_ids).
impl IdSource for Ids {
    fn next_id(&self) -> EventId {
        Ids::next_id(self)
    }
}

impl Clone for Ids {
    fn clone(&self) -> Self {
        Ids {
            seed: self.seed,
            next: AtomicU64::new(self.next.load(Ordering::Relaxed)),
        }
    }
}

/// A deterministic clock: every [`tick`](Clock::tick) is one step later than the
/// last, starting at [`Clock::DEFAULT_START`] (2026-01-01T00:00:00Z) with one-second
/// steps unless told otherwise.
///
/// ```
/// use std::time::Duration;
/// use annals_test_kit::Clock;
/// let clock = Clock::new().with_step(Duration::from_millis(500));
/// assert_eq!(clock.tick().to_string(), "2026-01-01T00:00:00.000000Z");
/// assert_eq!(clock.tick().to_string(), "2026-01-01T00:00:00.500000Z");
/// ```
#[derive(Debug)]
pub struct Clock {
    start: Timestamp,
    step_micros: i64,
    ticks: AtomicI64,
}

impl Clock {
    /// 2026-01-01T00:00:00Z.
    pub const DEFAULT_START: Timestamp = Timestamp::from_unix_micros(1_767_225_600_000_000);

    /// A clock at [`Clock::DEFAULT_START`], stepping one second.
    pub fn new() -> Self {
        Self::starting_at(Self::DEFAULT_START)
    }

    /// A clock starting at `start`, stepping one second.
    pub fn starting_at(start: Timestamp) -> Self {
        Clock {
            start,
            step_micros: 1_000_000,
            ticks: AtomicI64::new(0),
        }
    }

    /// Sets the step between ticks.
    #[must_use]
    pub fn with_step(mut self, step: Duration) -> Self {
        self.step_micros = i64::try_from(step.as_micros()).unwrap_or(i64::MAX);
        self
    }

    /// The current time, then advances by one step.
    pub fn tick(&self) -> Timestamp {
        let n = self.ticks.fetch_add(1, Ordering::Relaxed);
        Timestamp::from_unix_micros(
            self.start
                .as_unix_micros()
                .saturating_add(n.saturating_mul(self.step_micros)),
        )
    }
}

/// The clock injected where a store records times, e.g.
/// [`MemoryEventStore::with_clock`](annals_memory::MemoryEventStore::with_clock):
/// every recorded event is one step later than the one before.
impl TimeSource for Clock {
    fn now(&self) -> Timestamp {
        self.tick()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for Clock {
    fn clone(&self) -> Self {
        Clock {
            start: self.start,
            step_micros: self.step_micros,
            ticks: AtomicI64::new(self.ticks.load(Ordering::Relaxed)),
        }
    }
}

/// Pre-populated streams, built in a line or two, with deterministic ids and
/// metadata under the test's control.
///
/// Seed a store with [`request`](Fixture::request) (one all-or-nothing commit;
/// [`MemoryEventStore::seed`](annals_memory::MemoryEventStore::seed) takes it
/// without `.await`), or get the events as a store would record them with
/// [`recorded`](Fixture::recorded).
///
/// ```
/// use annals_memory::MemoryEventStore;
/// use annals_test_kit::Fixture;
/// # use annals_core::{Aggregate, DomainEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] enum Ev { Added { n: u32 } }
/// # impl DomainEvent for Ev {}
/// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
/// # #[derive(Debug, Default, Serialize, Deserialize)] struct Counter { value: u32 }
/// # impl Aggregate for Counter {
/// #     type Event = Ev; type Command = (); type Error = Never;
/// #     const CATEGORY: &'static str = "counter";
/// #     fn apply(&mut self, Ev::Added { n }: &Ev) { self.value += n }
/// #     fn handle(&self, _: &()) -> Result<Vec<Ev>, Never> { Ok(vec![]) }
/// # }
/// let fixture = Fixture::new()
///     .stream_of::<Counter>("big", 150, |i| Ev::Added { n: i as u32 })
///     .stream::<Counter>("small", [Ev::Added { n: 1 }]);
/// let store = MemoryEventStore::new();
/// store.seed(fixture.request()?)?;
/// assert_eq!(store.len(), 151);
/// assert_eq!(store.streams()[1].as_str(), "counter-small");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Fixture {
    ids: Ids,
    metadata: Metadata,
    streams: Vec<(StreamId, Vec<NewEvent>)>,
    error: Option<String>,
}

impl Fixture {
    /// An empty fixture with ids from seed 0 and no metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ids for the events added from now on.
    #[must_use]
    pub fn with_ids(mut self, ids: Ids) -> Self {
        self.ids = ids;
        self
    }

    /// Metadata attached to the events added from now on.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Appends typed events to aggregate `id` of type `A`.
    #[must_use]
    pub fn stream<A: Aggregate>(
        mut self,
        id: &str,
        events: impl IntoIterator<Item = A::Event>,
    ) -> Self {
        for event in events {
            let new = event.to_new_event_with(&Json);
            self.push(A::stream_id(id), new);
        }
        self
    }

    /// Appends `count` events made by `event(0)`, `event(1)`, … to aggregate `id`.
    #[must_use]
    pub fn stream_of<A: Aggregate>(
        self,
        id: &str,
        count: usize,
        event: impl FnMut(usize) -> A::Event,
    ) -> Self {
        self.stream::<A>(id, (0..count).map(event))
    }

    /// Appends an event in a stored shape given as JSON — typically an old schema
    /// version (`"OrderPlaced.v1"`) that upcasters must turn into the current one.
    #[must_use]
    pub fn raw<A: Aggregate>(mut self, id: &str, event_type: &str, payload: &Value) -> Self {
        let new = NewEvent::json(event_type, payload);
        self.push(A::stream_id(id), new);
        self
    }

    /// Adds every event of `other`, after this fixture's.
    #[must_use]
    pub fn extend(mut self, other: Fixture) -> Self {
        for (stream, events) in other.streams {
            for event in events {
                self.push(Ok(stream.clone()), Ok(event));
            }
        }
        if self.error.is_none() {
            self.error = other.error;
        }
        self
    }

    fn push(
        &mut self,
        stream: annals_core::Result<StreamId>,
        event: annals_core::Result<NewEvent>,
    ) {
        let (stream, event) = match (stream, event) {
            (Ok(stream), Ok(event)) => (stream, event),
            (Err(e), _) | (_, Err(e)) => {
                self.error.get_or_insert_with(|| e.to_string());
                return;
            }
        };
        let event = event
            .with_id(self.ids.next_id())
            .with_metadata(self.metadata.clone());
        match self.streams.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, events)) => events.push(event),
            None => self.streams.push((stream, vec![event])),
        }
    }

    /// The streams, in the order they were first given.
    pub fn streams(&self) -> impl Iterator<Item = &StreamId> + '_ {
        self.streams.iter().map(|(s, _)| s)
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.streams.iter().map(|(_, e)| e.len()).sum()
    }

    /// True if the fixture has no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One request appending every stream (with [`ExpectedVersion::Any`], so it can
    /// go on top of existing events). Fails if an event could not be encoded or an
    /// id is not a valid stream id.
    pub fn request(&self) -> Result<AppendRequest, KitError> {
        if let Some(error) = &self.error {
            return Err(KitError::Setup(format!("building the fixture: {error}")));
        }
        Ok(self
            .streams
            .iter()
            .fold(AppendRequest::new(), |request, (stream, events)| {
                request.append(stream, ExpectedVersion::Any, events.clone())
            }))
    }

    /// The events as a store would record them on an empty store: versions per
    /// stream, positions in request order, times from `clock`.
    pub fn recorded(&self, clock: &Clock) -> Result<Vec<RecordedEvent>, KitError> {
        if let Some(error) = &self.error {
            return Err(KitError::Setup(format!("building the fixture: {error}")));
        }
        let mut position = 0_u64;
        let mut out = Vec::with_capacity(self.len());
        for (stream, events) in &self.streams {
            for (version, event) in (1_u64..).zip(events) {
                position += 1;
                out.push(RecordedEvent::from_new(
                    event.clone(),
                    stream.clone(),
                    Version::new(version),
                    Position::new(position),
                    clock.tick(),
                ));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_clocks_are_reproducible() {
        let (a, b) = (Ids::seeded(1), Ids::seeded(1));
        assert_eq!(a.next_id(), b.next_id());
        assert_ne!(a.next_id(), Ids::seeded(2).next_id());
        let clock = Clock::starting_at(Timestamp::UNIX_EPOCH);
        assert_eq!(clock.tick(), Timestamp::UNIX_EPOCH);
        assert_eq!(clock.tick().as_unix_micros(), 1_000_000);
        let copy = clock.clone();
        assert_eq!(copy.tick().as_unix_micros(), 2_000_000);
        assert_eq!(clock.tick().as_unix_micros(), 2_000_000);
    }

    #[test]
    fn invalid_stream_ids_fail_the_request() {
        #[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
        struct Nothing;
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        enum Ev {
            A,
        }
        impl DomainEvent for Ev {}
        #[derive(Debug, thiserror::Error)]
        #[error("no")]
        struct No;
        impl Aggregate for Nothing {
            type Event = Ev;
            type Command = ();
            type Error = No;
            const CATEGORY: &'static str = "n";
            fn apply(&mut self, _: &Ev) {}
            fn handle(&self, _: &()) -> Result<Vec<Ev>, No> {
                Ok(vec![])
            }
        }
        let long = "x".repeat(1000);
        let fixture = Fixture::new().stream::<Nothing>(&long, [Ev::A]);
        let err = fixture.request().unwrap_err().to_string();
        assert!(err.starts_with("building the fixture: "), "{err}");
        assert!(fixture.recorded(&Clock::new()).is_err());
    }
}
