//! Assertions on stored events — a stream's contents by type sequence, by payload
//! predicate, by version, or structurally against typed events.
//!
//! They take `&[RecordedEvent]`, wherever it came from:
//! [`MemoryEventStore::events_of`](annals_memory::MemoryEventStore::events_of), a
//! read, [`StoreOutcome::appended`](crate::StoreOutcome::appended). Each `assert_`
//! panics with a message saying what was expected and what was found; each
//! `check_` returns that message as a [`Mismatch`].
//!
//! ```
//! use annals_memory::{AppendRequest, ExpectedVersion, MemoryEventStore, NewEvent, StreamId};
//! use annals_test_kit::assert::{assert_types, assert_version, check_types};
//!
//! let store = MemoryEventStore::new();
//! let s = StreamId::new("order-1")?;
//! store.seed(AppendRequest::new().append(&s, ExpectedVersion::NoStream, vec![
//!     NewEvent::new("OrderPlaced.v2", b"{}".to_vec()),
//!     NewEvent::new("OrderPaid.v1", b"{}".to_vec()),
//! ]))?;
//! let events = store.events_of(&s);
//! assert_types(&events, &["OrderPlaced", "OrderPaid.v1"]);
//! assert_version(&events, 2);
//! let wrong = check_types(&events, &["OrderPlaced", "OrderShipped"]).unwrap_err();
//! assert_eq!(wrong.message(), "event types differ at events[1]: expected `OrderShipped`, found `OrderPaid.v1`\n\
//!     expected: [OrderPlaced, OrderShipped]\n\
//!     found:    [OrderPlaced.v2, OrderPaid.v1]");
//! # Ok::<(), annals_memory::Error>(())
//! ```

use annals_core::{codec::Json, DomainEvent, EventType, RecordedEvent, Upcasters};

use crate::{aggregate::compare_events, diff::to_json, or_fail, Mismatch};

fn type_list(types: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let types: Vec<String> = types.into_iter().map(|t| t.as_ref().to_owned()).collect();
    format!("[{}]", types.join(", "))
}

/// `expected` names a stored type: `OrderPaid` matches any version,
/// `OrderPaid.v1` only that one.
fn type_matches(expected: &str, stored: &str) -> bool {
    if expected == stored {
        return true;
    }
    let parsed = EventType::parse(stored);
    let expected_parsed = EventType::parse(expected);
    if expected_parsed.name == expected {
        // No version given: compare names only.
        parsed.name == expected
    } else {
        parsed == expected_parsed
    }
}

/// The events have exactly these types, in order. `"OrderPaid"` matches any schema
/// version; `"OrderPaid.v1"` only that one.
pub fn check_types(events: &[RecordedEvent], expected: &[&str]) -> Result<(), Mismatch> {
    let found: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let first_difference =
        (0..expected.len().max(found.len())).find(|&i| match (expected.get(i), found.get(i)) {
            (Some(e), Some(f)) => !type_matches(e, f),
            _ => true,
        });
    let Some(i) = first_difference else {
        return Ok(());
    };
    let show = |t: Option<&&str>| t.map_or_else(|| "no event".to_owned(), |t| format!("`{t}`"));
    Err(Mismatch::new(format!(
        "event types differ at events[{i}]: expected {}, found {}\nexpected: {}\nfound:    {}",
        show(expected.get(i)),
        show(found.get(i)),
        type_list(expected),
        type_list(&found)
    )))
}

/// Panicking [`check_types`].
#[track_caller]
pub fn assert_types(events: &[RecordedEvent], expected: &[&str]) {
    or_fail(check_types(events, expected));
}

/// The last event is at `version` (0 for no events): the stream's version.
pub fn check_version(events: &[RecordedEvent], version: u64) -> Result<(), Mismatch> {
    let found = events.last().map_or(0, |e| e.version.get());
    if found == version {
        return Ok(());
    }
    let stream = events
        .last()
        .map_or_else(String::new, |e| format!(" `{}`", e.stream_id));
    Err(Mismatch::new(format!(
        "expected the stream{stream} at version {version}, found version {found} ({})",
        crate::diff::count(events.len(), "event")
    )))
}

/// Panicking [`check_version`].
#[track_caller]
pub fn assert_version(events: &[RecordedEvent], version: u64) {
    or_fail(check_version(events, version));
}

/// At least one event decodes as `E` and satisfies `predicate`; `what` describes
/// it for the failure message. Events of other types are skipped.
pub fn check_any<E: DomainEvent>(
    events: &[RecordedEvent],
    what: &str,
    predicate: impl Fn(&E) -> bool,
) -> Result<(), Mismatch> {
    let upcasters = Upcasters::new();
    let matched = events
        .iter()
        .any(|e| E::from_recorded_with(e, &Json, &upcasters).is_ok_and(|event| predicate(&event)));
    if matched {
        return Ok(());
    }
    Err(Mismatch::new(format!(
        "no event is {what}; found {}: {}",
        crate::diff::count(events.len(), "event"),
        type_list(events.iter().map(|e| &e.event_type))
    )))
}

/// Panicking [`check_any`].
#[track_caller]
pub fn assert_any<E: DomainEvent>(
    events: &[RecordedEvent],
    what: &str,
    predicate: impl Fn(&E) -> bool,
) {
    or_fail(check_any(events, what, predicate));
}

/// The events decode (through `upcasters`) to exactly `expected`, compared
/// structurally: the message names the event index and the field.
pub fn check_events<E: DomainEvent>(
    events: &[RecordedEvent],
    expected: &[E],
    upcasters: &Upcasters,
) -> Result<(), Mismatch> {
    let found = events
        .iter()
        .map(|e| {
            E::from_recorded_with(e, &Json, upcasters)
                .map_err(|err| {
                    Mismatch::new(format!(
                        "event {} (`{}`) of `{}` does not decode: {err}",
                        e.version, e.event_type, e.stream_id
                    ))
                })
                .and_then(|event| to_json(&event).map_err(|err| Mismatch::new(err.to_string())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    compare_events(expected, &found).map_err(|m| {
        Mismatch::new(m.message().replacen(
            "the command recorded other events than expected",
            "the stored events differ from the expected ones",
            1,
        ))
    })
}

/// Panicking [`check_events`].
#[track_caller]
pub fn assert_events<E: DomainEvent>(
    events: &[RecordedEvent],
    expected: &[E],
    upcasters: &Upcasters,
) {
    or_fail(check_events(events, expected, upcasters));
}
