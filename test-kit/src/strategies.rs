//! [proptest] helpers for your own aggregates and events.
//!
//! * [`histories`]: valid histories of an aggregate, made by running generated
//!   commands through [`Aggregate::handle`] and keeping what it accepted — so every
//!   history is one your code could really have produced.
//! * [`events_from_json`]: your serde event type from generated JSON shapes.
//! * [`check_replay`]: the property "replaying a history gives the same state with
//!   or without a snapshot, at every version", including the round trip of every
//!   event through its stored form.
//!
//! ```
//! use annals_test_kit::strategies::{check_replay, histories};
//! use proptest::prelude::*;
//! # use annals_core::{Aggregate, DomainEvent};
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] enum Ev { Added { n: u32 }, Reset }
//! # impl DomainEvent for Ev {}
//! # #[derive(Debug, thiserror::Error)] #[error("too big")] struct TooBig;
//! # #[derive(Debug, Default, Serialize, Deserialize)] struct Counter { value: u32 }
//! # impl Aggregate for Counter {
//! #     type Event = Ev; type Command = Option<u32>; type Error = TooBig;
//! #     const CATEGORY: &'static str = "counter";
//! #     fn apply(&mut self, e: &Ev) { match e { Ev::Added { n } => self.value += n, Ev::Reset => self.value = 0 } }
//! #     fn handle(&self, c: &Option<u32>) -> Result<Vec<Ev>, TooBig> {
//! #         match c { None => Ok(vec![Ev::Reset]), Some(n) if self.value + n > 100 => Err(TooBig), Some(n) => Ok(vec![Ev::Added { n: *n }]) }
//! #     }
//! # }
//! proptest!(|(history in histories::<Counter, _>(proptest::option::of(0..50_u32), 20))| {
//!     prop_assert!(check_replay::<Counter>(&history).is_ok());
//! });
//! ```

use std::fmt::Debug;

use annals_core::{
    codec::Json, Aggregate, DomainEvent, Position, RecordedEvent, StreamId, Timestamp, Upcasters,
    Version,
};
use proptest::{collection, strategy::Strategy};
use serde_json::Value;

use crate::{
    diff::{diff_event, diff_value, to_json},
    or_fail, Mismatch,
};

/// Valid histories of `A`: up to `max_commands` commands from `commands`, each
/// handled against the state so far; the events of accepted ones are the history.
pub fn histories<A, S>(commands: S, max_commands: usize) -> impl Strategy<Value = Vec<A::Event>>
where
    A: Aggregate,
    A::Event: Clone + Debug,
    S: Strategy<Value = A::Command>,
{
    collection::vec(commands, 0..=max_commands).prop_map(|commands| {
        let mut state = A::default();
        let mut history = Vec::new();
        for command in &commands {
            if let Ok(events) = state.handle(command) {
                for event in events {
                    state.apply(&event);
                    history.push(event);
                }
            }
        }
        history
    })
}

/// Events of type `E` from generated JSON values (in serde's externally tagged
/// shape, `{"ItemAdded": {...}}`); values that are not an `E` are rejected.
pub fn events_from_json<E>(values: impl Strategy<Value = Value>) -> impl Strategy<Value = E>
where
    E: DomainEvent + Debug,
{
    values.prop_filter_map("not an event of this type", |v| {
        serde_json::from_value(v).ok()
    })
}

fn fold<A: Aggregate>(state: &mut A, events: &[A::Event]) {
    for event in events {
        state.apply(event);
    }
}

fn mismatch(e: impl std::fmt::Display) -> Mismatch {
    Mismatch::new(e.to_string())
}

/// Checks, for `history`:
/// * every event survives its stored form (encode, record, decode) unchanged;
/// * for every version `k`, a snapshot of the state at `k` (serialized as JSON and
///   read back) plus the events after `k` gives the state a full replay gives.
pub fn check_replay<A: Aggregate>(history: &[A::Event]) -> Result<(), Mismatch> {
    let stream = StreamId::new(format!("{}-replay", A::CATEGORY)).map_err(mismatch)?;
    for (i, event) in history.iter().enumerate() {
        let new = event.to_new_event_with(&Json).map_err(mismatch)?;
        let recorded = RecordedEvent::from_new(
            new,
            stream.clone(),
            Version::new(i as u64 + 1),
            Position::new(i as u64 + 1),
            Timestamp::UNIX_EPOCH,
        );
        let back =
            A::Event::from_recorded_with(&recorded, &Json, &Upcasters::new()).map_err(|e| {
                Mismatch::new(format!(
                    "events[{i}] does not decode from its stored form: {e}"
                ))
            })?;
        let mut lines = Vec::new();
        diff_event(
            i,
            &to_json(event).map_err(mismatch)?,
            &to_json(&back).map_err(mismatch)?,
            &mut lines,
        );
        if !lines.is_empty() {
            return Err(Mismatch::new(format!(
                "events[{i}] changes on its way through the store:\n  {}",
                lines.join("\n  ")
            )));
        }
    }
    let mut full = A::default();
    fold(&mut full, history);
    let full = to_json(&full).map_err(mismatch)?;
    for k in 0..=history.len() {
        let (before, after) = history.split_at(k);
        let mut at_k = A::default();
        fold(&mut at_k, before);
        let bytes = serde_json::to_vec(&at_k).map_err(mismatch)?;
        let mut resumed: A = serde_json::from_slice(&bytes).map_err(|e| {
            Mismatch::new(format!(
                "the state at version {k} does not read back from its snapshot: {e}"
            ))
        })?;
        fold(&mut resumed, after);
        let mut lines = Vec::new();
        diff_value(
            "state",
            "",
            &full,
            &to_json(&resumed).map_err(mismatch)?,
            &mut lines,
        );
        if !lines.is_empty() {
            return Err(Mismatch::new(format!(
                "replaying from a snapshot at version {k} gives another state than replaying all {} events:\n  {}",
                history.len(),
                lines.join("\n  ")
            )));
        }
    }
    Ok(())
}

/// Panicking [`check_replay`].
#[track_caller]
pub fn assert_replay<A: Aggregate>(history: &[A::Event]) {
    or_fail(check_replay::<A>(history));
}
