//! Building blocks for backend implementors.
//!
//! Every backend runs the same checks in the same order, so the rules live here
//! once: validate the batch ([`prepare_batch`]), detect an idempotent re-send
//! ([`replayed_append`]), then check the expected version ([`check_expected`]).
//! Application code does not need this module.

use std::collections::HashSet;

use crate::{
    AppendResult, Error, ExpectedVersion, NewEvent, RecordedEvent, Result, StreamId, Version,
};

/// Validates every event of a batch and returns each event's metadata as JSON.
///
/// Rejects (with [`Error::InvalidInput`]) invalid names, oversized payloads or
/// metadata, NUL characters in text, and the same event id twice in one batch.
pub fn prepare_batch(events: &[NewEvent]) -> Result<Vec<String>> {
    let mut seen = HashSet::with_capacity(events.len());
    events
        .iter()
        .map(|event| {
            if !seen.insert(event.id) {
                return Err(Error::invalid_input(format!(
                    "event id {} appears twice in one append",
                    event.id
                )));
            }
            event.validate()
        })
        .collect()
}

/// Returns [`Error::Conflict`] unless a stream at `actual` satisfies `expected`.
pub fn check_expected(stream: &StreamId, expected: ExpectedVersion, actual: Version) -> Result<()> {
    if expected.matches(actual) {
        Ok(())
    } else {
        Err(Error::Conflict {
            stream: stream.clone(),
            expected,
            actual,
        })
    }
}

/// Decides what to do when some ids of a batch are already stored.
///
/// `stored` holds the already-stored events that share an id with the batch (in
/// any order). Returns:
/// * `Ok(None)` if `stored` is empty: a fresh append, go ahead;
/// * `Ok(Some(result))` if the batch is exactly an append that already happened
///   (same ids, same content, same stream, contiguous versions, an expectation
///   the original append satisfied): return the original result, write nothing;
/// * [`Error::InvalidInput`] otherwise: an id was reused for something else.
pub fn replayed_append(
    stream: &StreamId,
    expected: ExpectedVersion,
    batch: &[NewEvent],
    stored: &[RecordedEvent],
) -> Result<Option<AppendResult>> {
    if stored.is_empty() {
        return Ok(None);
    }
    let reused = |id| {
        Error::invalid_input(format!(
            "event id {id} is already stored with different content or in a different append"
        ))
    };
    if stored.len() != batch.len() {
        let id = stored.first().map(|e| e.id).unwrap_or_default();
        return Err(reused(id));
    }
    let mut positions = Vec::with_capacity(batch.len());
    let mut previous: Option<Version> = None;
    let mut first_version = Version::ZERO;
    for event in batch {
        let Some(found) = stored.iter().find(|s| s.id == event.id) else {
            return Err(reused(stored.first().map(|e| e.id).unwrap_or_default()));
        };
        let contiguous = match previous {
            None => {
                first_version = found.version;
                true
            }
            Some(prev) => found.version == prev.next(),
        };
        if found.stream_id != *stream || !contiguous || !event.same_content_as(found) {
            return Err(reused(event.id));
        }
        previous = Some(found.version);
        positions.push(found.position);
    }
    let before = Version::new(first_version.get().saturating_sub(1));
    if !expected.matches(before) {
        return Err(Error::invalid_input(format!(
            "these events were already appended to `{stream}` at version {before}, which does not satisfy the expected {expected}"
        )));
    }
    Ok(Some(AppendResult::new(
        previous.unwrap_or(before),
        positions,
    )))
}

/// Converts a version, position or limit to the `i64` SQL databases store.
pub fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::invalid_input(format!("{what} {value} is larger than the store supports"))
    })
}

/// Converts an `i64` read from a database back to `u64`; a negative value means the
/// stored data is corrupt.
pub fn from_i64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value)
        .map_err(|e| Error::backend(format!("stored {what} {value} is negative"), e))
}
