//! Appending. Core validated the request ([`PreparedAppend`]); this module
//! stores it.
//!
//! * **One stream** (the common case): one autocommit statement per batch. It
//!   reads the stream's version and, only if the expectation allows it, inserts the
//!   whole batch at the following versions with positions from the transaction's
//!   id (`position_base()`, see the migration) — no lock between appenders. The
//!   `UNIQUE (stream_id, version)` constraint decides races: of two appends that
//!   read the same version, one commits and the other fails.
//! * **Several streams, or conditions**: one statement inserts every row of the
//!   request in the canonical `(stream, version)` order after checking every
//!   expectation on the statement's snapshot, so all events share one
//!   transaction id (positions in request order, visible together) and two
//!   requests over the same streams wait for each other in the same order instead
//!   of deadlocking. A condition (a stream only read) gets a **guard row** at the
//!   version after its current one, inserted in the same statement: a concurrent
//!   writer of that stream blocks on the unique index until this request ends, so
//!   no write can slip in between the check and the commit (no write skew). The
//!   guard rows are deleted before `COMMIT`, so no reader ever sees one.
//!
//! Anything off the fast path (a version that does not match, an id that is
//! already stored, a lost race) loads the state and lets core
//! ([`PreparedAppend::decide`]) rule: replay the original result, report the
//! conflict or the reused id, or try again.

use std::collections::HashMap;

use annals_core::{
    backend::from_i64, Committed, Decision, EventId, ExpectedVersion, Position, PreparedAppend,
    PreparedPart, RecordedEvent, Result, StreamId, Version,
};
use sqlx::{postgres::PgRow, PgConnection, Row};

use crate::group::{self, Groups, Joined, Member, MemberEvent};
use crate::session::on_session;
use crate::{
    error::{classify_write, WriteFailure},
    row::{decode_event, StreamCache},
    Error, PostgresEventStore,
};

/// Largest total size of one append (payloads + metadata + names), in bytes.
///
/// An append travels as one statement, and PostgreSQL caps one protocol message
/// and one array value at 1 GiB; this bound keeps an append far below that.
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

/// Most rows in one append: 2<sup>20</sup> − 1 = 1,048,575.
///
/// A position is `(transaction number) × 2^20 + the row's index in its
/// transaction` (docs/backends/postgres.md, "The ordering guarantee"), so one
/// append — one transaction — has room for this many rows (events and guard rows
/// together).
pub(crate) const MAX_BATCH_EVENTS: usize = (1 << 20) - 1;

/// How often an append is tried again after losing a race to a concurrent append
/// while its expectations still allow it (`Any`, `StreamExists`). Each lost race
/// means another append committed; the operation timeout bounds the whole call.
pub(crate) const MAX_ATTEMPTS: usize = 256;

/// The event type of guard rows (never visible: deleted before commit).
const GUARD_TYPE: &str = "$annals.guard";

/// The version range a stream must be in to satisfy `expected`. An exact version
/// no stream can have (above `i64::MAX`) gives an empty range: core rules it a
/// conflict.
fn version_range(expected: ExpectedVersion) -> (i64, i64) {
    match expected {
        ExpectedVersion::Any => (0, i64::MAX),
        ExpectedVersion::NoStream => (0, 0),
        ExpectedVersion::StreamExists => (1, i64::MAX),
        ExpectedVersion::Exact(v) => i64::try_from(v.get()).map_or((1, 0), |v| (v, v)),
    }
}

/// The metadata of each event of `part` as JSON, exactly as core validated it.
fn metadata_of(part: &PreparedPart) -> Result<Vec<String>> {
    part.events().iter().map(|e| e.validate()).collect()
}

/// Builds the result of a write: core's plan for the versions the write started
/// from (it must be a write: the database checked the same expectations).
pub(crate) fn committed(
    append: &PreparedAppend,
    stored: &[RecordedEvent],
    version_of: impl FnMut(&StreamId) -> Version,
    positions: &[Position],
) -> Result<Committed> {
    match append.decide(stored, version_of)? {
        Decision::Write(plan) => append.committed(&plan, positions),
        Decision::Replayed(original) => Ok(original),
    }
}

/// What core ruled after a failed attempt: return this, or try again.
pub(crate) enum Ruling {
    Return(Committed),
    Retry,
}

pub(crate) fn rule(
    append: &PreparedAppend,
    stored: &[RecordedEvent],
    version_of: impl FnMut(&StreamId) -> Version,
) -> Result<Ruling> {
    match append.decide(stored, version_of)? {
        Decision::Replayed(original) => Ok(Ruling::Return(original)),
        // The expectations hold on the newer state: write on top of it.
        Decision::Write(_) => Ok(Ruling::Retry),
    }
}

pub(crate) fn gave_up(what: &str) -> Error {
    Error::backend(
        format!("appending to {what} kept racing with concurrent appends"),
        format!("gave up after {MAX_ATTEMPTS} attempts"),
    )
}

/// What one single-stream attempt found.
pub(crate) enum Single {
    /// Written: `(version, position)` of every event.
    Done(Vec<(i64, i64)>),
    /// Nothing written: the stream's version did not satisfy `expected` (when it
    /// was read), or another append took the version first.
    Refused,
    /// Nothing written: an event id is already stored (maybe a re-send).
    IdTaken,
    /// Nothing written; just try again.
    Retry,
}

/// The rows of a multi-stream statement, as parallel arrays (one bind each).
#[derive(Default)]
struct Rows<'a> {
    stream: Vec<&'a str>,
    /// 1-based offset after the stream's current version.
    offset: Vec<i64>,
    /// 1-based offset in the transaction's position slot.
    slot: Vec<i64>,
    id: Vec<sqlx::types::Uuid>,
    event_type: Vec<&'a str>,
    content_type: Vec<&'a str>,
    payload: Vec<&'a [u8]>,
    metadata: Vec<String>,
}

/// One request's multi-stream statement: every stream it checks, with the
/// version range each expectation allows, and every row it inserts (events, then
/// guard rows), as the statement's parameters.
pub(crate) struct Batch<'a> {
    append: &'a PreparedAppend,
    checked: Vec<(&'a StreamId, ExpectedVersion)>,
    streams: Vec<&'a str>,
    lo: Vec<i64>,
    hi: Vec<i64>,
    rows: Rows<'a>,
    guard_ids: Vec<sqlx::types::Uuid>,
    /// Rows inserted: events and guard rows.
    total: usize,
}

impl<'a> Batch<'a> {
    /// The statement's parameters for `append`, which has at least one event.
    pub(crate) fn new(append: &'a PreparedAppend) -> Result<Self> {
        let parts = append.parts();
        let conditions = append.conditions();
        // Every stream the request names, with the range its expectation allows.
        let checked: Vec<(&StreamId, ExpectedVersion)> = parts
            .iter()
            .map(|p| (p.stream(), p.expected()))
            .chain(conditions.iter().map(|c| (c.stream(), c.expected())))
            .collect();
        // Streams the request only reads but whose version it depends on: a
        // condition, or an empty part, expecting anything but `Any`.
        let guarded: Vec<&StreamId> = parts
            .iter()
            .filter(|p| p.events().is_empty())
            .map(|p| (p.stream(), p.expected()))
            .chain(conditions.iter().map(|c| (c.stream(), c.expected())))
            .filter(|(_, expected)| *expected != ExpectedVersion::Any)
            .map(|(stream, _)| stream)
            .collect();
        let total = append.event_count() + guarded.len();
        if total > MAX_BATCH_EVENTS {
            return Err(Error::invalid_input(format!(
                "the append has {} events and {} read-only streams to hold; PostgreSQL takes at most \
                 {MAX_BATCH_EVENTS} of them together in one append — split it",
                append.event_count(),
                guarded.len()
            )));
        }
        let mut rows = Rows::default();
        let mut slot = 0_i64;
        for part in parts {
            let metadata = metadata_of(part)?;
            for ((event, metadata), offset) in part.events().iter().zip(metadata).zip(1_i64..) {
                slot += 1;
                rows.stream.push(part.stream().as_str());
                rows.offset.push(offset);
                rows.slot.push(slot);
                rows.id.push(*event.id.as_uuid());
                rows.event_type.push(&event.event_type);
                rows.content_type.push(&event.content_type);
                rows.payload.push(&event.payload);
                rows.metadata.push(metadata);
            }
        }
        let mut guard_ids = Vec::with_capacity(guarded.len());
        for stream in &guarded {
            slot += 1;
            let id = *EventId::new().as_uuid();
            guard_ids.push(id);
            rows.stream.push(stream.as_str());
            rows.offset.push(1);
            rows.slot.push(slot);
            rows.id.push(id);
            rows.event_type.push(GUARD_TYPE);
            rows.content_type.push("application/octet-stream");
            rows.payload.push(&[]);
            rows.metadata.push("{}".to_owned());
        }
        let streams: Vec<&str> = checked.iter().map(|(s, _)| s.as_str()).collect();
        let (lo, hi): (Vec<i64>, Vec<i64>) = checked.iter().map(|(_, e)| version_range(*e)).unzip();
        Ok(Batch {
            append,
            checked,
            streams,
            lo,
            hi,
            rows,
            guard_ids,
            total,
        })
    }

    /// Rows the statement inserts (events and guard rows).
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Every stream the request checks.
    pub(crate) fn checked_streams(&self) -> Vec<&'a StreamId> {
        self.checked.iter().map(|(s, _)| *s).collect()
    }

    /// Moves every row's slot in the transaction's position range up by `by`:
    /// for a transaction that already stored `by` rows (an append inside the
    /// caller's transaction, `outbox.rs`).
    pub(crate) fn shift_slots(&mut self, by: i64) {
        for slot in &mut self.rows.slot {
            *slot += by;
        }
    }

    /// The result of a statement that wrote: `versions` of the checked streams
    /// before it, and the positions of every row it inserted.
    pub(crate) fn committed(
        &self,
        versions: &HashMap<String, Version>,
        mut positions: Vec<Position>,
    ) -> Result<Committed> {
        if positions.len() != self.total {
            return Err(Error::backend(
                "appending events",
                format!(
                    "the database stored {} of {} rows in one statement",
                    positions.len(),
                    self.total
                ),
            ));
        }
        // Positions follow the slot offsets: the events' come first, in request
        // order, then the (deleted) guard rows'.
        positions.sort_unstable();
        positions.truncate(self.append.event_count());
        committed(self.append, &[], |s| version_in(versions, s), &positions)
    }
}

/// What one multi-stream statement found.
pub(crate) enum Many {
    /// Written: every checked stream's version before, and every row's position.
    Done(HashMap<String, Version>, Vec<Position>),
    /// Nothing written: some expectation did not hold on these versions.
    Refused(HashMap<String, Version>),
    /// Nothing written: an event id is already stored (maybe a re-send).
    IdTaken,
    /// Nothing written: another append took a version first; try again.
    Retry,
}

impl PostgresEventStore {
    /// Stores a validated request (see the module docs).
    pub(crate) async fn append_now(&self, append: PreparedAppend) -> Result<Committed> {
        match append.single() {
            Some(part) if !part.events().is_empty() => self.append_to_one(&append, part).await,
            _ => self.append_to_many(&append).await,
        }
    }

    /// The one-stream fast path.
    async fn append_to_one(
        &self,
        append: &PreparedAppend,
        part: &PreparedPart,
    ) -> Result<Committed> {
        let stream = part.stream();
        let (min, max) = version_range(part.expected());
        let metadata = metadata_of(part)?;
        let mut checked_ids = false;
        for attempt in 0..MAX_ATTEMPTS {
            let outcome = if attempt == 0 {
                self.first_attempt(stream, min, max, part, &metadata)
                    .await?
            } else {
                self.try_append(stream, min, max, part, &metadata).await?
            };
            let refused = match outcome {
                Single::Done(mut rows) => {
                    // Versions are the batch order; sort so nothing relies on
                    // RETURNING's order.
                    rows.sort_unstable();
                    let first = rows.first().map_or(1, |(version, _)| *version);
                    let before = Version::new(from_i64(first, "version")?.saturating_sub(1));
                    let positions = rows
                        .iter()
                        .map(|(_, p)| from_i64(*p, "position").map(Position::new))
                        .collect::<Result<Vec<_>>>()?;
                    return committed(append, &[], |_| before, &positions);
                }
                Single::Retry => continue,
                Single::Refused => true,
                Single::IdTaken => false,
            };
            // A re-sent append (its response was lost) fails the version check or
            // trips over its own ids; either way, if the ids are stored, core
            // answers as the original append did. Looked up once on refusals: ids
            // never disappear.
            let stored = if !checked_ids || !refused {
                checked_ids = true;
                self.events_by_ids(append).await?
            } else {
                Vec::new()
            };
            let current = self.head_version_now(stream).await?;
            if let Ruling::Return(result) = rule(append, &stored, |_| current)? {
                return Ok(result);
            }
        }
        Err(gave_up(&format!("`{stream}`")))
    }

    /// The first attempt of a one-stream append: alone, or in a group with
    /// other appends in flight (`group.rs`). A group that failed as a whole
    /// answers nothing, and the append is tried alone.
    async fn first_attempt(
        &self,
        stream: &StreamId,
        min: i64,
        max: i64,
        part: &PreparedPart,
        metadata: &[String],
    ) -> Result<Single> {
        let inner = self.inner_arc();
        let events = part.events();
        if inner.options.max_group > 1 && events.len() <= group::MAX_MEMBER_EVENTS {
            let joined = Groups::join(inner, |reply| Member {
                stream: stream.as_str().to_owned(),
                lo: min,
                hi: max,
                events: events
                    .iter()
                    .zip(metadata)
                    .map(|(e, metadata)| MemberEvent {
                        id: *e.id.as_uuid(),
                        event_type: e.event_type.clone(),
                        content_type: e.content_type.clone(),
                        payload: e.payload.clone(),
                        metadata: metadata.clone(),
                    })
                    .collect(),
                reply,
            });
            match joined {
                Joined::Alone(_in_flight) => {
                    return self.try_append(stream, min, max, part, metadata).await;
                }
                Joined::Queued(answer) => {
                    if let Ok(Some(single)) = answer.await {
                        return Ok(single);
                    }
                }
            }
        }
        self.try_append(stream, min, max, part, metadata).await
    }

    /// One single-stream attempt: the append statement.
    async fn try_append(
        &self,
        stream: &StreamId,
        min: i64,
        max: i64,
        part: &PreparedPart,
        metadata: &[String],
    ) -> Result<Single> {
        let inner = self.inner();
        let events = part.events();
        let query = match (events, metadata) {
            // The common case — one command, one event — binds plain values: no
            // arrays to build, encode and unnest.
            ([event], [metadata]) => sqlx::query(inner.queries.append_one())
                .persistent(inner.prepared())
                .bind(stream.as_str())
                .bind(min)
                .bind(max)
                .bind(*event.id.as_uuid())
                .bind(event.event_type.as_str())
                .bind(event.content_type.as_str())
                .bind(event.payload.as_slice())
                .bind(metadata.as_str()),
            _ => sqlx::query(inner.queries.append())
                .persistent(inner.prepared())
                .bind(stream.as_str())
                .bind(min)
                .bind(max)
                .bind(events.iter().map(|e| *e.id.as_uuid()).collect::<Vec<_>>())
                .bind(
                    events
                        .iter()
                        .map(|e| e.event_type.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    events
                        .iter()
                        .map(|e| e.content_type.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    events
                        .iter()
                        .map(|e| e.payload.as_slice())
                        .collect::<Vec<_>>(),
                )
                .bind(metadata),
        };
        let mut session = inner.write_session(false).await?;
        let rows = match session.conn() {
            Ok(conn) => query.fetch_all(conn).await,
            Err(e) => Err(e),
        };
        let rows = match session.finish(rows).await {
            Ok(rows) => rows,
            Err(err) => {
                return match classify_write(
                    err,
                    inner.options.operation_timeout,
                    inner.queries.names(),
                ) {
                    WriteFailure::VersionTaken => Ok(Single::Refused),
                    WriteFailure::IdTaken => Ok(Single::IdTaken),
                    WriteFailure::Retry => Ok(Single::Retry),
                    WriteFailure::Other(e) => Err(e),
                }
            }
        };
        if rows.is_empty() {
            return Ok(Single::Refused);
        }
        if rows.len() != events.len() {
            return Err(Error::backend(
                "appending events",
                format!(
                    "the database stored {} of {} events in one statement",
                    rows.len(),
                    events.len()
                ),
            ));
        }
        let corrupt = |e: sqlx::Error| Error::backend("decoding the append result", e);
        rows.iter()
            .map(|row| Ok((row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?)))
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()
            .map(Single::Done)
            .map_err(corrupt)
    }

    /// Several streams, conditions, or an empty part.
    async fn append_to_many(&self, append: &PreparedAppend) -> Result<Committed> {
        if append.event_count() == 0 {
            // Nothing to write: the expectations are checked on one snapshot.
            let names: Vec<&StreamId> = append.streams().collect();
            let versions = self.stream_versions(&names).await?;
            return committed(append, &[], |s| version_in(&versions, s), &[]);
        }
        let batch = Batch::new(append)?;
        let mut checked_ids = false;
        for _ in 0..MAX_ATTEMPTS {
            let (versions, refused) = match self.try_append_many(&batch).await? {
                Many::Done(versions, positions) => return batch.committed(&versions, positions),
                Many::Retry => continue,
                Many::Refused(versions) => (Some(versions), true),
                Many::IdTaken => (None, false),
            };
            let stored = if !checked_ids || !refused {
                checked_ids = true;
                self.events_by_ids(append).await?
            } else {
                Vec::new()
            };
            let versions = match versions {
                Some(versions) => versions,
                None => self.stream_versions(&batch.checked_streams()).await?,
            };
            if let Ruling::Return(result) = rule(append, &stored, |s| version_in(&versions, s))? {
                return Ok(result);
            }
        }
        Err(gave_up(&format!("{} streams", batch.checked.len())))
    }

    /// One multi-stream attempt: the statement, on its own (autocommit) when there
    /// are no guard rows, else in a transaction that deletes them before COMMIT.
    async fn try_append_many(&self, batch: &Batch<'_>) -> Result<Many> {
        let inner = self.inner();
        // Guard rows are deleted before COMMIT: those appends need a transaction.
        let mut session = inner.write_session(!batch.guard_ids.is_empty()).await?;
        let result = match session.conn() {
            Ok(conn) => self.many_statement(conn, batch).await,
            Err(e) => Err(e),
        };
        let result = match result {
            // Refused: nothing to keep. A failed rollback only closes the
            // connection.
            Ok(found) if found.1.is_empty() => {
                if let Err(e) = session.end(false).await {
                    tracing::debug!(error = %e, "rolling back a refused append failed");
                }
                Ok(found)
            }
            other => session.finish(other).await,
        };
        match result {
            Ok(result) => many_found(result),
            Err(err) => {
                match classify_write(err, inner.options.operation_timeout, inner.queries.names()) {
                    WriteFailure::VersionTaken | WriteFailure::Retry => Ok(Many::Retry),
                    WriteFailure::IdTaken => Ok(Many::IdTaken),
                    WriteFailure::Other(e) => Err(e),
                }
            }
        }
    }

    /// Runs the multi-stream statement on `conn`: `(stream, version)` of every
    /// checked stream and the positions of the inserted rows (none when
    /// refused); then, if it wrote, deletes the guard rows (`conn` is in a
    /// transaction when there are any, which its owner commits or rolls back).
    pub(crate) async fn many_statement(
        &self,
        conn: &mut PgConnection,
        batch: &Batch<'_>,
    ) -> sqlx::Result<(Vec<(String, i64)>, Vec<i64>)> {
        let inner = self.inner();
        let rows = &batch.rows;
        let result: Vec<PgRow> = sqlx::query(inner.queries.append_many())
            .persistent(inner.prepared())
            .bind(&batch.streams)
            .bind(&batch.lo)
            .bind(&batch.hi)
            .bind(&rows.stream)
            .bind(&rows.offset)
            .bind(&rows.slot)
            .bind(&rows.id)
            .bind(&rows.event_type)
            .bind(&rows.content_type)
            .bind(&rows.payload)
            .bind(&rows.metadata)
            .fetch_all(&mut *conn)
            .await?;
        let mut versions = Vec::with_capacity(batch.streams.len());
        let mut positions = Vec::with_capacity(rows.stream.len());
        for row in &result {
            match row.try_get::<Option<String>, _>(0)? {
                Some(stream) => versions.push((stream, row.try_get::<i64, _>(1)?)),
                None => positions.push(row.try_get::<i64, _>(2)?),
            }
        }
        if !positions.is_empty() && !batch.guard_ids.is_empty() {
            sqlx::query(inner.queries.delete_guards())
                .persistent(inner.prepared())
                .bind(&batch.guard_ids)
                .execute(&mut *conn)
                .await?;
        }
        Ok((versions, positions))
    }

    /// The stored events that have one of the request's ids.
    async fn events_by_ids(&self, append: &PreparedAppend) -> Result<Vec<RecordedEvent>> {
        let inner = self.inner();
        let ids = ids_of(append);
        let doing = "looking up event ids";
        let rows = on_session!(inner, doing, |conn| self.events_by_ids_query(conn, &ids))?;
        decode_events(&rows)
    }

    /// [`events_by_ids`](Self::events_by_ids) on `conn` (in the caller's
    /// transaction: its own uncommitted events count).
    pub(crate) async fn events_by_ids_in(
        &self,
        conn: &mut PgConnection,
        append: &PreparedAppend,
    ) -> Result<Vec<RecordedEvent>> {
        let rows = self
            .events_by_ids_query(conn, &ids_of(append))
            .await
            .map_err(|e| self.inner().map_err(e, "looking up event ids"))?;
        decode_events(&rows)
    }

    async fn events_by_ids_query(
        &self,
        conn: &mut PgConnection,
        ids: &[sqlx::types::Uuid],
    ) -> sqlx::Result<Vec<PgRow>> {
        let inner = self.inner();
        sqlx::query(inner.queries.events_by_ids())
            .persistent(inner.prepared())
            .bind(ids)
            .fetch_all(conn)
            .await
    }

    /// Several streams' versions, from one snapshot.
    async fn stream_versions(&self, streams: &[&StreamId]) -> Result<HashMap<String, Version>> {
        let inner = self.inner();
        let names: Vec<&str> = streams.iter().map(|s| s.as_str()).collect();
        let doing = "reading stream versions";
        let rows = on_session!(inner, doing, |conn| self
            .stream_versions_query(conn, &names))?;
        decode_versions(&rows)
    }

    /// [`stream_versions`](Self::stream_versions) on `conn` (in the caller's
    /// transaction: its own uncommitted events count).
    pub(crate) async fn stream_versions_in(
        &self,
        conn: &mut PgConnection,
        streams: &[&StreamId],
    ) -> Result<HashMap<String, Version>> {
        let names: Vec<&str> = streams.iter().map(|s| s.as_str()).collect();
        let rows = self
            .stream_versions_query(conn, &names)
            .await
            .map_err(|e| self.inner().map_err(e, "reading stream versions"))?;
        decode_versions(&rows)
    }

    async fn stream_versions_query(
        &self,
        conn: &mut PgConnection,
        names: &[&str],
    ) -> sqlx::Result<Vec<PgRow>> {
        let inner = self.inner();
        sqlx::query(inner.queries.stream_versions())
            .persistent(inner.prepared())
            .bind(names)
            .fetch_all(conn)
            .await
    }
}

/// What the multi-stream statement's result means: written or refused.
pub(crate) fn many_found((versions, positions): (Vec<(String, i64)>, Vec<i64>)) -> Result<Many> {
    let versions = versions
        .into_iter()
        .map(|(stream, v)| Ok((stream, Version::new(from_i64(v, "version")?))))
        .collect::<Result<HashMap<_, _>>>()?;
    if positions.is_empty() {
        return Ok(Many::Refused(versions));
    }
    let positions = positions
        .into_iter()
        .map(|p| from_i64(p, "position").map(Position::new))
        .collect::<Result<Vec<_>>>()?;
    Ok(Many::Done(versions, positions))
}

fn ids_of(append: &PreparedAppend) -> Vec<sqlx::types::Uuid> {
    append.event_ids().map(|id| *id.as_uuid()).collect()
}

fn decode_events(rows: &[PgRow]) -> Result<Vec<RecordedEvent>> {
    let mut streams = StreamCache::default();
    rows.iter()
        .map(|row| decode_event(row, &mut streams))
        .collect()
}

fn decode_versions(rows: &[PgRow]) -> Result<HashMap<String, Version>> {
    rows.iter()
        .map(|row| {
            let stream: String = row
                .try_get(0)
                .map_err(|e| Error::backend("decoding a stream version", e))?;
            let version: i64 = row
                .try_get(1)
                .map_err(|e| Error::backend("decoding a stream version", e))?;
            Ok((stream, Version::new(from_i64(version, "version")?)))
        })
        .collect()
}

/// A stream's version in a map read from the database (`ZERO` if absent, which
/// only happens for a stream the map was not read for).
pub(crate) fn version_in(versions: &HashMap<String, Version>, stream: &StreamId) -> Version {
    versions
        .get(stream.as_str())
        .copied()
        .unwrap_or(Version::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(version_range(ExpectedVersion::Any), (0, i64::MAX));
        assert_eq!(version_range(ExpectedVersion::NoStream), (0, 0));
        assert_eq!(version_range(ExpectedVersion::StreamExists), (1, i64::MAX));
        assert_eq!(
            version_range(ExpectedVersion::Exact(Version::new(7))),
            (7, 7)
        );
        // No stored version is in an empty range: core rules it a conflict.
        let (lo, hi) = version_range(ExpectedVersion::Exact(Version::new(u64::MAX)));
        assert!(lo > hi);
    }
}
