//! The [`Aggregate`] trait: state rebuilt from events, commands decided against it.

use serde::{de::DeserializeOwned, Serialize};

use crate::{DomainEvent, Result, StreamId};

/// A consistency boundary rebuilt from its events.
///
/// The aggregate **is** its state: [`Default`] is the state before any event,
/// [`apply`](Aggregate::apply) folds one event into it, and
/// [`handle`](Aggregate::handle) decides a command against the current state,
/// returning the events to record — or a domain error, which records nothing.
///
/// * **Commands** are requests ("pay order 7"); they may be rejected.
/// * **Events** are facts ("order 7 was paid"); `apply` must accept every event
///   `handle` ever produced, so it cannot fail.
///
/// The state is serialized for snapshots; bump
/// [`SNAPSHOT_SCHEMA_VERSION`](Aggregate::SNAPSHOT_SCHEMA_VERSION) whenever the
/// state's shape or the meaning of `apply` changes, and old snapshots are ignored
/// (the state is rebuilt from events) instead of being mis-decoded.
///
/// ```
/// use annals_core::{Aggregate, DomainEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// enum CounterEvent { Incremented { by: u32 } }
/// impl DomainEvent for CounterEvent {}
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("counter would exceed 10")]
/// struct TooBig;
///
/// #[derive(Debug, Default, Serialize, Deserialize)]
/// struct Counter { value: u32 }
///
/// impl Aggregate for Counter {
///     type Event = CounterEvent;
///     type Command = u32;
///     type Error = TooBig;
///     const CATEGORY: &'static str = "counter";
///
///     fn apply(&mut self, event: &CounterEvent) {
///         match event { CounterEvent::Incremented { by } => self.value += by }
///     }
///     fn handle(&self, by: &u32) -> Result<Vec<CounterEvent>, TooBig> {
///         if self.value + by > 10 { return Err(TooBig); }
///         Ok(vec![CounterEvent::Incremented { by: *by }])
///     }
/// }
///
/// assert_eq!(Counter::stream_id("a")?.as_str(), "counter-a");
/// # Ok::<(), annals_core::Error>(())
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The events this aggregate records.
    type Event: DomainEvent;
    /// The commands it handles.
    type Command: Send + Sync;
    /// Why a command is rejected (a business rule), separate from store errors.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The stream category: an aggregate with id `42` lives in stream
    /// `{CATEGORY}-42`, so [`ReadFilter::stream_prefix`](crate::ReadFilter) reads a
    /// whole category.
    const CATEGORY: &'static str;

    /// The version of the state's serialized shape, stored with snapshots.
    const SNAPSHOT_SCHEMA_VERSION: u32 = 1;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// Decides `command` against the current state: the events to record (possibly
    /// none) or a domain error.
    fn handle(&self, command: &Self::Command)
        -> std::result::Result<Vec<Self::Event>, Self::Error>;

    /// The stream of the aggregate with this id: `{CATEGORY}-{id}` by default.
    fn stream_id(id: &str) -> Result<StreamId> {
        StreamId::new(format!("{}-{id}", Self::CATEGORY))
    }
}
