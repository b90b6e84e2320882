//! Appends as values: [`AppendRequest`] (what the caller asks for), [`PreparedAppend`]
//! (the same request after core validated it — the only form a backend receives),
//! [`Decision`] (what core rules the backend must do), and [`Committed`] (what was
//! stored).
//!
//! The rules live here once. A backend loads the state core asks for (the current
//! versions of the request's streams, the stored events that share an id with the
//! request), calls [`PreparedAppend::decide`], and writes exactly what the returned
//! [`WritePlan`] says, in one transaction.

use std::collections::{HashMap, HashSet};

use crate::{
    error::StreamConflict, Capabilities, Error, EventId, ExpectedVersion, NewEvent, Position,
    RecordedEvent, Result, StreamId, Version,
};

/// What a successful append did to one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppendResult {
    /// The stream.
    pub stream: StreamId,
    /// The stream's version after the append: the version of its last event. Pass
    /// it as [`ExpectedVersion::Exact`] to append again.
    pub version: Version,
    /// The global positions of the appended events, in request order (empty when
    /// nothing was appended to this stream).
    pub positions: Vec<Position>,
}

impl AppendResult {
    /// Position of the first appended event.
    pub fn first_position(&self) -> Option<Position> {
        self.positions.first().copied()
    }

    /// Position of the last appended event.
    pub fn last_position(&self) -> Option<Position> {
        self.positions.last().copied()
    }
}

/// What a successful [`EventStore::commit`](crate::EventStore::commit) stored: one
/// [`AppendResult`] per stream part, in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed {
    /// One result per stream the request appended to, in request order.
    pub parts: Vec<AppendResult>,
}

impl Committed {
    /// The result for `stream`, if the request appended to it.
    pub fn stream(&self, stream: &StreamId) -> Option<&AppendResult> {
        self.parts.iter().find(|p| &p.stream == stream)
    }

    /// Every position the request's events got, in request order.
    pub fn positions(&self) -> impl Iterator<Item = Position> + '_ {
        self.parts.iter().flat_map(|p| p.positions.iter().copied())
    }

    /// The position of the request's last event (`None` if nothing was appended).
    pub fn last_position(&self) -> Option<Position> {
        self.positions().max()
    }

    /// The single part of a one-stream request.
    pub(crate) fn into_single(self) -> Result<AppendResult> {
        self.parts
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid_input("the append has no stream part"))
    }
}

/// An append to one or more streams, committed all-or-nothing.
///
/// A request holds **parts** — `(stream, expected version, events)` — and
/// **conditions** — `(stream, expected version)` for streams that are only read: the
/// request commits only if every part's and every condition's stream is at the
/// expected version, and then stores every part's events. Otherwise it returns
/// [`Error::Conflict`] naming every stream that did not match, and writes nothing.
///
/// ```
/// # async fn demo(store: impl annals_core::EventStore) -> annals_core::Result<()> {
/// use annals_core::{AppendRequest, ExpectedVersion, NewEvent, StreamId, Version};
///
/// let alice = StreamId::new("account-alice")?;
/// let bob = StreamId::new("account-bob")?;
/// let rates = StreamId::new("fee-rates")?;
/// let transfer = AppendRequest::new()
///     .append(&alice, ExpectedVersion::Exact(Version::new(3)), vec![NewEvent::json("Debited", &serde_json::json!({"amount": 10}))?])
///     .append(&bob, ExpectedVersion::Any, vec![NewEvent::json("Credited", &serde_json::json!({"amount": 10}))?])
///     .require(&rates, ExpectedVersion::Exact(Version::new(1)));
/// let committed = store.commit(transfer).await?;
/// assert_eq!(committed.parts.len(), 2);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "an AppendRequest does nothing until it is committed"]
pub struct AppendRequest {
    parts: Vec<Part>,
    conditions: Vec<Condition>,
}

#[derive(Clone, Debug)]
struct Part {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
}

/// A stream a request only reads: it must still be at `expected` when the request
/// commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    stream: StreamId,
    expected: ExpectedVersion,
}

impl Condition {
    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The version it must be at.
    pub fn expected(&self) -> ExpectedVersion {
        self.expected
    }
}

impl AppendRequest {
    /// An empty request; add parts with [`append`](Self::append).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a part: append `events` to `stream` if it is at `expected`. An empty
    /// `events` checks `expected` and writes nothing to the stream.
    pub fn append(
        mut self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Self {
        self.parts.push(Part {
            stream: stream.clone(),
            expected,
            events: events.into_iter().collect(),
        });
        self
    }

    /// Adds a condition: `stream` is only read, and must still be at `expected` when
    /// the request commits.
    pub fn require(mut self, stream: &StreamId, expected: ExpectedVersion) -> Self {
        self.conditions.push(Condition {
            stream: stream.clone(),
            expected,
        });
        self
    }

    /// The number of events the request appends.
    pub fn event_count(&self) -> usize {
        self.parts.iter().map(|p| p.events.len()).sum()
    }

    /// The number of streams the request names (parts and conditions).
    pub fn stream_count(&self) -> usize {
        self.parts.len() + self.conditions.len()
    }

    pub(crate) fn first_stream(&self) -> Option<&StreamId> {
        self.parts
            .first()
            .map(|p| &p.stream)
            .or_else(|| self.conditions.first().map(|c| &c.stream))
    }

    /// Checks the request against core's rules and the backend's `limits`.
    ///
    /// Rejects ([`Error::InvalidInput`]) a request with no part and no condition, a
    /// stream named twice, an event id used twice, too many events or bytes for the
    /// backend, and any invalid event (see [`NewEvent::validate`]).
    pub(crate) fn prepare(self, limits: &Capabilities) -> Result<PreparedAppend> {
        if self.parts.is_empty() && self.conditions.is_empty() {
            return Err(Error::invalid_input(
                "the append request names no stream: add a part or a condition",
            ));
        }
        let mut streams = HashSet::with_capacity(self.parts.len() + self.conditions.len());
        let named = self
            .parts
            .iter()
            .map(|p| &p.stream)
            .chain(self.conditions.iter().map(|c| &c.stream));
        for stream in named {
            if !streams.insert(stream) {
                return Err(Error::invalid_input(format!(
                    "stream `{stream}` appears twice in one append request; merge its events into one part"
                )));
            }
        }
        let count = self.event_count();
        if count > limits.max_events_per_append {
            return Err(Error::invalid_input(format!(
                "the append has {count} events; this backend takes at most {} in one append — split it",
                limits.max_events_per_append
            )));
        }
        let mut ids = HashSet::with_capacity(count);
        let mut bytes = 0_usize;
        let mut parts = Vec::with_capacity(self.parts.len());
        for part in self.parts {
            let mut metadata = Vec::with_capacity(part.events.len());
            for event in &part.events {
                if !ids.insert(event.id) {
                    return Err(Error::invalid_input(format!(
                        "event id {} appears twice in one append",
                        event.id
                    )));
                }
                let json = event.validate()?;
                bytes = bytes.saturating_add(
                    event.payload.len() + event.event_type.len() + event.content_type.len(),
                );
                bytes = bytes.saturating_add(json.len());
                metadata.push(json);
            }
            parts.push(PreparedPart {
                stream: part.stream,
                expected: part.expected,
                events: part.events,
                metadata,
            });
        }
        if bytes > limits.max_append_bytes {
            return Err(Error::invalid_input(format!(
                "the append is {bytes} bytes; this backend takes at most {} in one append — split it",
                limits.max_append_bytes
            )));
        }
        Ok(PreparedAppend {
            parts,
            conditions: self.conditions,
        })
    }
}

/// An [`AppendRequest`] that core has validated: the only form a
/// [`Backend`](crate::backend::Backend) receives. It cannot be built outside core.
#[derive(Debug)]
pub struct PreparedAppend {
    parts: Vec<PreparedPart>,
    conditions: Vec<Condition>,
}

/// One validated stream part of a [`PreparedAppend`].
#[derive(Debug)]
pub struct PreparedPart {
    stream: StreamId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    metadata: Vec<String>,
}

impl PreparedPart {
    /// The stream to append to.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The version the stream must be at.
    pub fn expected(&self) -> ExpectedVersion {
        self.expected
    }

    /// The events, in order.
    pub fn events(&self) -> &[NewEvent] {
        &self.events
    }

    /// Each event's metadata as the JSON object core validated, in event order.
    pub fn metadata(&self) -> &[String] {
        &self.metadata
    }
}

/// One event of a [`WritePlan`], with the version it gets and its metadata as JSON.
#[derive(Debug)]
#[non_exhaustive]
pub struct Row<'a> {
    /// Its index in the request (0-based, request order): positions must follow it.
    pub index: usize,
    /// The stream it goes to.
    pub stream: &'a StreamId,
    /// The version it gets.
    pub version: Version,
    /// The event.
    pub event: &'a NewEvent,
    /// Its metadata, serialized as a JSON object.
    pub metadata: &'a str,
}

impl PreparedAppend {
    /// The stream parts, in request order.
    pub fn parts(&self) -> &[PreparedPart] {
        &self.parts
    }

    /// The read-only conditions.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Every stream the request names: parts first, then conditions.
    pub fn streams(&self) -> impl Iterator<Item = &StreamId> + '_ {
        self.parts
            .iter()
            .map(|p| &p.stream)
            .chain(self.conditions.iter().map(|c| &c.stream))
    }

    /// Every event id of the request, in request order.
    pub fn event_ids(&self) -> impl Iterator<Item = EventId> + '_ {
        self.parts
            .iter()
            .flat_map(|p| p.events.iter().map(|e| e.id))
    }

    /// The number of events the request appends.
    pub fn event_count(&self) -> usize {
        self.parts.iter().map(|p| p.events.len()).sum()
    }

    /// The first stream part, when the request has exactly one part and no condition.
    pub fn single(&self) -> Option<&PreparedPart> {
        match (self.parts.as_slice(), self.conditions.is_empty()) {
            ([part], true) => Some(part),
            _ => None,
        }
    }

    /// Decides the request, given what the backend found *inside the transaction it
    /// will write in*:
    ///
    /// * `stored`: the stored events whose ids the request uses (any order; empty on
    ///   the common path);
    /// * `version_of`: the current version of each stream the request names.
    ///
    /// Returns [`Decision::Replayed`] when the request is exactly one that already
    /// committed (an idempotent re-send: write nothing, answer as the original
    /// append did), [`Decision::Write`] when every expectation holds, and otherwise
    /// [`Error::Conflict`] naming every mismatched stream, or
    /// [`Error::InvalidInput`] when an id is reused for something else.
    pub fn decide(
        &self,
        stored: &[RecordedEvent],
        mut version_of: impl FnMut(&StreamId) -> Version,
    ) -> Result<Decision> {
        if !stored.is_empty() {
            return self.replayed(stored, version_of).map(Decision::Replayed);
        }
        let mut conflicts = Vec::new();
        let mut before = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let actual = version_of(&part.stream);
            if !part.expected.matches(actual) {
                conflicts.push(StreamConflict::new(
                    part.stream.clone(),
                    part.expected,
                    actual,
                ));
            }
            if actual.get().saturating_add(part.events.len() as u64) > Version::MAX.get() {
                return Err(Error::invalid_input(format!(
                    "stream `{}` would grow past version {}",
                    part.stream,
                    Version::MAX
                )));
            }
            before.push(actual);
        }
        for condition in &self.conditions {
            let actual = version_of(&condition.stream);
            if !condition.expected.matches(actual) {
                conflicts.push(StreamConflict::new(
                    condition.stream.clone(),
                    condition.expected,
                    actual,
                ));
            }
        }
        match Error::conflict(conflicts) {
            Some(conflict) => Err(conflict),
            None => Ok(Decision::Write(WritePlan { before })),
        }
    }

    /// The events to write under `plan`, in request order, with their versions.
    pub fn rows<'a>(&'a self, plan: &'a WritePlan) -> impl Iterator<Item = Row<'a>> + 'a {
        let mut index = 0;
        self.parts
            .iter()
            .zip(&plan.before)
            .flat_map(move |(part, before)| {
                part.events
                    .iter()
                    .zip(&part.metadata)
                    .zip(1..)
                    .map(move |((event, metadata), n)| (part, before, event, metadata, n))
            })
            .map(move |(part, before, event, metadata, n)| {
                let row = Row {
                    index,
                    stream: &part.stream,
                    version: Version::new(before.get().saturating_add(n)),
                    event,
                    metadata,
                };
                index += 1;
                row
            })
    }

    /// Consumes the request into owned rows (see [`rows`](Self::rows)): `(stream,
    /// version, event)` in request order.
    pub fn into_rows(self, plan: &WritePlan) -> Vec<(StreamId, Version, NewEvent)> {
        let mut rows = Vec::with_capacity(self.event_count());
        for (part, before) in self.parts.into_iter().zip(&plan.before) {
            let mut version = *before;
            for event in part.events {
                version = version.next();
                rows.push((part.stream.clone(), version, event));
            }
        }
        rows
    }

    /// What the request stored under `plan`, given each event's position in request
    /// order.
    pub fn committed(&self, plan: &WritePlan, positions: &[Position]) -> Result<Committed> {
        if positions.len() != self.event_count() {
            return Err(Error::backend(
                "committing an append",
                format!(
                    "the backend reported {} positions for {} events",
                    positions.len(),
                    self.event_count()
                ),
            ));
        }
        let mut rest = positions;
        let mut parts = Vec::with_capacity(self.parts.len());
        for (part, before) in self.parts.iter().zip(&plan.before) {
            let (mine, others) = rest.split_at(part.events.len());
            rest = others;
            parts.push(AppendResult {
                stream: part.stream.clone(),
                version: Version::new(before.get().saturating_add(part.events.len() as u64)),
                positions: mine.to_vec(),
            });
        }
        Ok(Committed { parts })
    }

    /// The original result of a request whose ids are all stored already.
    fn replayed(
        &self,
        stored: &[RecordedEvent],
        mut version_of: impl FnMut(&StreamId) -> Version,
    ) -> Result<Committed> {
        let reused = |id: EventId| {
            Error::invalid_input(format!(
                "event id {id} is already stored with different content or in a different append"
            ))
        };
        let by_id: HashMap<EventId, &RecordedEvent> = stored.iter().map(|e| (e.id, e)).collect();
        if by_id.len() != self.event_count() {
            let id = stored.first().map(|e| e.id).unwrap_or_default();
            return Err(reused(id));
        }
        let mut parts = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let mut previous: Option<Version> = None;
            let mut positions = Vec::with_capacity(part.events.len());
            let mut first = None;
            for event in &part.events {
                let found = by_id.get(&event.id).ok_or_else(|| reused(event.id))?;
                let contiguous = previous.is_none_or(|prev| found.version == prev.next());
                if found.stream_id != part.stream || !contiguous || !event.same_content_as(found) {
                    return Err(reused(event.id));
                }
                first.get_or_insert(found.version);
                previous = Some(found.version);
                positions.push(found.position);
            }
            let version = match (first, previous) {
                (Some(first), Some(last)) => {
                    let before = Version::new(first.get().saturating_sub(1));
                    if !part.expected.matches(before) {
                        return Err(Error::invalid_input(format!(
                            "these events were already appended to `{}` at version {before}, which does not satisfy the expected {}",
                            part.stream, part.expected
                        )));
                    }
                    last
                }
                _ => version_of(&part.stream),
            };
            parts.push(AppendResult {
                stream: part.stream.clone(),
                version,
                positions,
            });
        }
        Ok(Committed { parts })
    }
}

/// What core ruled a backend must do with a [`PreparedAppend`]. Exhaustive on
/// purpose: a backend handles both cases, with no catch-all arm to invent.
#[derive(Debug)]
pub enum Decision {
    /// The request already committed (an idempotent re-send): write nothing and
    /// return this original result.
    Replayed(Committed),
    /// Every expectation holds: write the request's rows
    /// ([`PreparedAppend::rows`]) and build the result with
    /// [`PreparedAppend::committed`].
    Write(WritePlan),
}

/// The versions each part's events start after, decided by
/// [`PreparedAppend::decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WritePlan {
    before: Vec<Version>,
}

impl WritePlan {
    /// The version each part's stream was at, in part order.
    pub fn versions_before(&self) -> &[Version] {
        &self.before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str) -> StreamId {
        StreamId::new(name).unwrap()
    }

    fn event(kind: &str) -> NewEvent {
        NewEvent::new(kind, vec![1, 2, 3])
    }

    fn prepare(request: AppendRequest) -> Result<PreparedAppend> {
        request.prepare(&Capabilities::default())
    }

    #[test]
    fn rejects_empty_requests_and_repeated_streams_and_ids() {
        assert!(prepare(AppendRequest::new())
            .unwrap_err()
            .is_invalid_input());
        let a = stream("a");
        let twice = AppendRequest::new()
            .append(&a, ExpectedVersion::Any, vec![event("X")])
            .require(&a, ExpectedVersion::Any);
        assert!(prepare(twice).unwrap_err().to_string().contains("twice"));
        let e = event("X");
        let same_id = AppendRequest::new()
            .append(&a, ExpectedVersion::Any, vec![e.clone()])
            .append(&stream("b"), ExpectedVersion::Any, vec![e]);
        assert!(prepare(same_id).unwrap_err().is_invalid_input());
        let too_many =
            AppendRequest::new().append(&a, ExpectedVersion::Any, vec![event("X"), event("Y")]);
        let limits = Capabilities {
            max_events_per_append: 1,
            ..Capabilities::default()
        };
        assert!(too_many.prepare(&limits).unwrap_err().is_invalid_input());
    }

    #[test]
    fn conflicts_name_every_stream_and_rows_follow_request_order() {
        let (a, b, c) = (stream("a"), stream("b"), stream("c"));
        let prepared = prepare(
            AppendRequest::new()
                .append(
                    &a,
                    ExpectedVersion::Exact(Version::new(2)),
                    vec![event("1"), event("2")],
                )
                .append(&b, ExpectedVersion::NoStream, vec![event("3")])
                .require(&c, ExpectedVersion::Exact(Version::new(5))),
        )
        .unwrap();
        let err = prepared
            .decide(&[], |s| {
                if s == &a {
                    Version::new(3)
                } else {
                    Version::new(4)
                }
            })
            .unwrap_err();
        let names: Vec<_> = err.conflicts().into_iter().map(|c| c.stream).collect();
        assert_eq!(names, vec![a.clone(), b.clone(), c]);
        let Decision::Write(plan) = prepared
            .decide(&[], |s| match s.as_str() {
                "a" => Version::new(2),
                "b" => Version::ZERO,
                _ => Version::new(5),
            })
            .unwrap()
        else {
            panic!("expected a write");
        };
        let rows: Vec<_> = prepared
            .rows(&plan)
            .map(|r| (r.index, r.stream.clone(), r.version))
            .collect();
        assert_eq!(
            rows,
            vec![
                (0, a.clone(), Version::new(3)),
                (1, a.clone(), Version::new(4)),
                (2, b.clone(), Version::new(1)),
            ]
        );
        let committed = prepared
            .committed(
                &plan,
                &[Position::new(7), Position::new(8), Position::new(9)],
            )
            .unwrap();
        assert_eq!(committed.stream(&a).unwrap().version, Version::new(4));
        assert_eq!(
            committed.stream(&b).unwrap().positions,
            vec![Position::new(9)]
        );
        assert!(prepared.committed(&plan, &[Position::new(1)]).is_err());
    }
}
