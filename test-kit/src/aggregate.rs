//! Given/when/then for one aggregate, without a store.

use std::fmt;

use annals_core::{codec::Json, Aggregate, DomainEvent, Upcasters};
use serde_json::Value;

use crate::{
    diff::{count, diff_events, diff_value, names, show_event, to_json},
    or_fail, Clock, Fixture, KitError, Mismatch,
};

/// The aggregate id the store-free tests use (stream `{CATEGORY}-under-test`).
const ID: &str = "under-test";

/// Starts a test of aggregate `A` from these past events:
/// `given::<Order>([placed, added]).when(&pay).then_expect(&[paid])`.
pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> AggregateTest<A> {
    AggregateTest::new().given(events)
}

/// A store-free aggregate test: past events, then one command.
///
/// The given events take the path a real load takes: encoded to their stored form
/// (`Name.vN`, JSON), decoded back — through the [`Upcasters`] when the stored
/// version is older — and applied in order. So an event that does not survive
/// storage, or an upcaster that is missing, fails here too.
pub struct AggregateTest<A: Aggregate> {
    fixture: Fixture,
    upcasters: Upcasters,
    _aggregate: std::marker::PhantomData<fn() -> A>,
}

impl<A: Aggregate> fmt::Debug for AggregateTest<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateTest")
            .field("aggregate", &A::CATEGORY)
            .field("given", &self.fixture.len())
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Default for AggregateTest<A> {
    fn default() -> Self {
        AggregateTest {
            fixture: Fixture::new(),
            upcasters: Upcasters::new(),
            _aggregate: std::marker::PhantomData,
        }
    }
}

impl<A: Aggregate> AggregateTest<A> {
    /// A test with no past events (a new aggregate).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds past events.
    #[must_use]
    pub fn given(mut self, events: impl IntoIterator<Item = A::Event>) -> Self {
        self.fixture = self.fixture.stream::<A>(ID, events);
        self
    }

    /// Adds a past event in its stored shape — `given_raw("OrderPlaced.v1",
    /// &json!({"customer": "ann"}))` — so the upcasters turn it into the current
    /// one, as on a real load.
    #[must_use]
    pub fn given_raw(mut self, event_type: &str, payload: &Value) -> Self {
        self.fixture = self.fixture.raw::<A>(ID, event_type, payload);
        self
    }

    /// The upcasters the application registers on its repository.
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// The state the given events produce.
    pub fn state(&self) -> Result<A, KitError> {
        let mut state = A::default();
        for recorded in self.fixture.recorded(&Clock::new())? {
            state.apply(&A::Event::from_recorded_with(
                &recorded,
                &Json,
                &self.upcasters,
            )?);
        }
        Ok(state)
    }

    /// Decides `command` against the given state.
    pub fn when(self, command: &A::Command) -> Outcome<A> {
        let ran = self.state().map(|mut state| {
            let result = state.handle(command);
            if let Ok(events) = &result {
                for event in events {
                    state.apply(event);
                }
            }
            (state, result)
        });
        Outcome { ran }
    }
}

/// What a command did in an [`AggregateTest`]: check it with the `then_` methods
/// (which panic with a readable message) or their `try_` twins.
pub struct Outcome<A: Aggregate> {
    ran: Result<Decided<A>, KitError>,
}

/// The state after the command, and what the command decided.
type Decided<A> = (
    A,
    Result<Vec<<A as Aggregate>::Event>, <A as Aggregate>::Error>,
);

impl<A: Aggregate + fmt::Debug> fmt::Debug for Outcome<A>
where
    A::Event: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome").field("ran", &self.ran).finish()
    }
}

pub(crate) fn setup_failed(error: &KitError) -> Mismatch {
    Mismatch::new(format!(
        "the test setup failed before the command ran: {error}"
    ))
}

/// Compares the recorded events with the expected ones, as JSON.
pub(crate) fn compare_events<E: serde::Serialize>(
    expected: &[E],
    found: &[Value],
) -> Result<(), Mismatch> {
    let expected = expected
        .iter()
        .map(to_json)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Mismatch::new(e.to_string()))?;
    let lines = diff_events(&expected, found);
    if lines.is_empty() {
        return Ok(());
    }
    Err(Mismatch::new(format!(
        "the command recorded other events than expected:\n  {}\nexpected {}: {}\nfound    {}: {}",
        lines.join("\n  "),
        count(expected.len(), "event"),
        names(&expected),
        count(found.len(), "event"),
        names(found),
    )))
}

pub(crate) fn rejected_instead(
    expected: usize,
    error: &(impl fmt::Display + fmt::Debug),
) -> Mismatch {
    Mismatch::new(format!(
        "expected {}, but the command was rejected: {error} ({error:?})",
        count(expected, "event")
    ))
}

pub(crate) fn accepted_instead(found: &[Value]) -> Mismatch {
    let shown: Vec<String> = found.iter().map(show_event).collect();
    Mismatch::new(if found.is_empty() {
        "expected the command to be rejected, but it succeeded and recorded no events".to_owned()
    } else {
        format!(
            "expected the command to be rejected, but it recorded {}: {}",
            count(found.len(), "event"),
            shown.join(", ")
        )
    })
}

pub(crate) fn wrong_error(error: &(impl fmt::Display + fmt::Debug)) -> Mismatch {
    Mismatch::new(format!(
        "the command was rejected, but not with the expected error: found `{error}` ({error:?})"
    ))
}

pub(crate) fn wrong_message(expected: &str, error: &impl fmt::Display) -> Mismatch {
    Mismatch::new(format!(
        "expected the rejection `{expected}`, found `{error}`"
    ))
}

pub(crate) fn state_predicate_failed<A: serde::Serialize>(state: &A) -> Mismatch {
    match to_json(state) {
        Ok(json) => Mismatch::new(format!(
            "the state after the command does not satisfy the predicate; state: {json}"
        )),
        Err(e) => Mismatch::new(e.to_string()),
    }
}

pub(crate) fn compare_state<A: serde::Serialize>(expected: &A, found: &A) -> Result<(), Mismatch> {
    let (e, f) = match (to_json(expected), to_json(found)) {
        (Ok(e), Ok(f)) => (e, f),
        (Err(err), _) | (_, Err(err)) => return Err(Mismatch::new(err.to_string())),
    };
    let mut lines = Vec::new();
    diff_value("state", "", &e, &f, &mut lines);
    if lines.is_empty() {
        Ok(())
    } else {
        Err(Mismatch::new(format!(
            "the state after the command differs from the expected state:\n  {}",
            lines.join("\n  ")
        )))
    }
}

impl<A: Aggregate> Outcome<A> {
    /// The events the command recorded, if it was accepted.
    pub fn events(&self) -> Option<&[A::Event]> {
        match &self.ran {
            Ok((_, Ok(events))) => Some(events),
            _ => None,
        }
    }

    /// The domain error, if the command was rejected.
    pub fn error(&self) -> Option<&A::Error> {
        match &self.ran {
            Ok((_, Err(error))) => Some(error),
            _ => None,
        }
    }

    /// The state after the command's events (the given state if it was rejected).
    pub fn state(&self) -> Option<&A> {
        self.ran.as_ref().ok().map(|(state, _)| state)
    }

    fn found(events: &[A::Event]) -> Result<Vec<Value>, Mismatch> {
        events
            .iter()
            .map(to_json)
            .collect::<Result<_, _>>()
            .map_err(|e| Mismatch::new(e.to_string()))
    }

    /// The command was accepted and recorded exactly `expected` (compared
    /// structurally; the message names the event and field that differ).
    pub fn try_then_expect(&self, expected: &[A::Event]) -> Result<&Self, Mismatch> {
        match &self.ran {
            Err(e) => Err(setup_failed(e)),
            Ok((_, Err(error))) => Err(rejected_instead(expected.len(), error)),
            Ok((_, Ok(events))) => {
                compare_events(expected, &Self::found(events)?)?;
                Ok(self)
            }
        }
    }

    /// Panicking [`try_then_expect`](Outcome::try_then_expect).
    #[track_caller]
    pub fn then_expect(&self, expected: &[A::Event]) -> &Self {
        or_fail(self.try_then_expect(expected))
    }

    /// The command was accepted and recorded nothing (an idempotent no-op).
    #[track_caller]
    pub fn then_no_events(&self) -> &Self {
        or_fail(self.try_then_expect(&[]))
    }

    /// The command was rejected with an error for which `matching` is true
    /// (`|e| matches!(e, OrderError::Unpaid)`).
    pub fn try_then_error(
        &self,
        matching: impl FnOnce(&A::Error) -> bool,
    ) -> Result<&Self, Mismatch> {
        match &self.ran {
            Err(e) => Err(setup_failed(e)),
            Ok((_, Ok(events))) => Err(accepted_instead(&Self::found(events)?)),
            Ok((_, Err(error))) if matching(error) => Ok(self),
            Ok((_, Err(error))) => Err(wrong_error(error)),
        }
    }

    /// Panicking [`try_then_error`](Outcome::try_then_error).
    #[track_caller]
    pub fn then_error(&self, matching: impl FnOnce(&A::Error) -> bool) -> &Self {
        or_fail(self.try_then_error(matching))
    }

    /// The command was rejected with an error that displays as `message`.
    pub fn try_then_error_message(&self, message: &str) -> Result<&Self, Mismatch> {
        match &self.ran {
            Ok((_, Err(error))) if error.to_string() != message => {
                Err(wrong_message(message, error))
            }
            _ => self.try_then_error(|_| true),
        }
    }

    /// Panicking [`try_then_error_message`](Outcome::try_then_error_message).
    #[track_caller]
    pub fn then_error_message(&self, message: &str) -> &Self {
        or_fail(self.try_then_error_message(message))
    }

    /// The state after the command satisfies `predicate` (the message shows the
    /// state as JSON).
    pub fn try_then_state(&self, predicate: impl FnOnce(&A) -> bool) -> Result<&Self, Mismatch> {
        match &self.ran {
            Err(e) => Err(setup_failed(e)),
            Ok((state, _)) if predicate(state) => Ok(self),
            Ok((state, _)) => Err(state_predicate_failed(state)),
        }
    }

    /// Panicking [`try_then_state`](Outcome::try_then_state).
    #[track_caller]
    pub fn then_state(&self, predicate: impl FnOnce(&A) -> bool) -> &Self {
        or_fail(self.try_then_state(predicate))
    }

    /// The state after the command equals `expected`, compared structurally.
    pub fn try_then_state_is(&self, expected: &A) -> Result<&Self, Mismatch> {
        match &self.ran {
            Err(e) => Err(setup_failed(e)),
            Ok((state, _)) => compare_state(expected, state).map(|()| self),
        }
    }

    /// Panicking [`try_then_state_is`](Outcome::try_then_state_is).
    #[track_caller]
    pub fn then_state_is(&self, expected: &A) -> &Self {
        or_fail(self.try_then_state_is(expected))
    }
}
