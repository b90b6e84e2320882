//! Group commit: concurrent one-stream appends share one statement and one
//! commit.
//!
//! PostgreSQL already shares WAL flushes between concurrent commits, but every
//! append is still its own transaction: a round trip, a transaction id, a commit
//! record, and the server CPU that goes with them. When appends arrive while
//! another is in flight, this store gathers them and writes them with **one**
//! statement in one transaction, then answers each of them.
//!
//! * **A lone appender never waits.** An append runs alone on the normal path
//!   (`append.rs`) while fewer than `n` run alone and no group is queued or in
//!   flight (`n` is half the pool, 1 to 4). Only appends that arrive beyond that
//!   queue up, and one task drains the queue, running a group as soon as it has
//!   one (all that queued meanwhile): nobody waits for company. Once groups
//!   form, appends keep queuing until the queue is empty, instead of refilling
//!   the slots for appends alone: under load every append joins a group.
//! * **Each append keeps its own semantics.** The statement checks every member's
//!   expectation on its own (a member whose stream is not where it expected
//!   inserts nothing, its neighbours still do), at most one member per stream in a
//!   group (a second append to the same stream waits for the next group, so it
//!   sees the first one's events), and every member's events get consecutive
//!   versions and consecutive positions of the group's transaction (gap-safe like
//!   any append: one transaction, one position range).
//! * **Anything unusual goes back to the normal path.** A member refused by its
//!   check continues exactly as after a refused single append: core rules on the
//!   stored state (conflict, idempotent re-send, or try again alone). If the
//!   statement fails as a whole (an id already stored, a version taken by a
//!   concurrent writer, a lost connection), every member is tried again alone:
//!   nothing of a failed statement was written, or — if the connection broke
//!   after the commit was sent — the members' own event ids make the retry
//!   idempotent, so an append that did commit is answered with its result and
//!   never written twice.
//! * **Cancellation.** A member whose caller has gone away before its group
//!   started is skipped; once started, the group runs to its end on its own task,
//!   so a member is written entirely or not at all.
//! * **A group never holds the queue forever.** The group's statement is bounded
//!   by the operation timeout, like every call: a group that gets no answer in
//!   time (a primary that died without closing the connection, a lock that is
//!   never released) is abandoned, its connection closed, and its members are
//!   answered "try again alone" (as after any failed statement: the ones whose
//!   caller still waits retry under their own bound, idempotently). The queue
//!   then moves on to the next group.
//!
//! [`PostgresOptions::max_group`](crate::PostgresOptions::max_group) bounds a
//! group (and `max_group(1)` turns grouping off).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use futures::channel::oneshot;
use sqlx::{types::Uuid, Row};

use crate::{append::Single, connect::Inner};

/// Payload and metadata bytes after which a group takes no more members.
pub(crate) const MAX_GROUP_BYTES: usize = 4 * 1024 * 1024;

/// Most appends in flight alone per store. Fewer lost at 4 concurrent appenders
/// on 2 cores (one or two connections at work instead of four; see
/// docs/performance.md).
const MAX_IN_FLIGHT: usize = 4;

/// Groups in flight per store: one. The queue is drained by one task, so each
/// group takes everything that queued while the previous one ran.
///
/// Measured on 2 cores with the appenders as spawned tasks (docs/performance.md,
/// 2026-12-03): with four groups in flight (one per append alone), 16 appenders
/// formed groups of ~3 and were no faster than grouping off (0.83-1.03x); with
/// one, they were 1.13-1.41x grouping off, 64 appenders 2.3-3.2x, and 1 and 4
/// appenders unchanged (they run alone).
const GROUPS_IN_FLIGHT: usize = 1;

/// Appends with more events than this run alone: a large batch is one statement
/// already, and gains nothing from company.
pub(crate) const MAX_MEMBER_EVENTS: usize = 64;

/// One queued append: what its statement binds, and where its answer goes.
pub(crate) struct Member {
    pub(crate) stream: String,
    pub(crate) lo: i64,
    pub(crate) hi: i64,
    pub(crate) events: Vec<MemberEvent>,
    /// `Some(answer)`, or `None`: try again alone.
    pub(crate) reply: oneshot::Sender<Option<Single>>,
}

/// One event of a queued append, owned (the group runs on its own task).
pub(crate) struct MemberEvent {
    pub(crate) id: Uuid,
    pub(crate) event_type: String,
    pub(crate) content_type: String,
    pub(crate) payload: Vec<u8>,
    /// As core validated it.
    pub(crate) metadata: String,
}

impl Member {
    fn bytes(&self) -> usize {
        self.events
            .iter()
            .map(|e| e.payload.len() + e.metadata.len())
            .sum()
    }
}

#[derive(Default)]
struct State {
    queue: Vec<Member>,
    /// Appends running alone right now.
    alone: usize,
    /// Tasks draining `queue` right now.
    drains: usize,
}

/// A store's group commit state.
#[derive(Default)]
pub(crate) struct Groups {
    state: Mutex<State>,
    /// Groups written, and the most members one had (for tests and benches).
    groups: AtomicU64,
    largest: AtomicUsize,
}

/// What group commit has done so far in one store (see
/// `PostgresEventStore::__group_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Appends running alone now.
    pub alone: usize,
    /// Appends waiting for a group now.
    pub queued: usize,
    /// Group statements run.
    pub groups: u64,
    /// The most appends one group held.
    pub largest: usize,
}

/// What [`Groups::join`] decided for an append.
pub(crate) enum Joined {
    /// Run alone now; the guard marks the append as in flight until dropped.
    Alone(AloneGuard),
    /// Queued: the answer arrives here.
    Queued(oneshot::Receiver<Option<Single>>),
}

/// An append running alone (see [`Joined::Alone`]).
pub(crate) struct AloneGuard(Arc<Inner>);

impl Drop for AloneGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.0.groups.state);
        state.alone = state.alone.saturating_sub(1);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // No code panics while holding the lock; if one ever did, the state is
    // still consistent (plain counters and a queue), so carry on.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Groups {
    pub(crate) fn stats(&self) -> GroupStats {
        let state = lock(&self.state);
        GroupStats {
            alone: state.alone,
            queued: state.queue.len(),
            groups: self.groups.load(Ordering::Relaxed),
            largest: self.largest.load(Ordering::Relaxed),
        }
    }

    /// Runs `member` alone if fewer than the limit run alone and no group is
    /// queued or in flight, else queues it (and starts the draining task if it
    /// is not running).
    ///
    /// Not running alone while a group is in flight keeps every append of a
    /// busy store in groups. Measured on 2 cores (docs/performance.md,
    /// 2026-12-03 07:16): 16 appenders 1.17-1.41x plain commits against
    /// 1.01-1.12x when appends alone refilled their slots beside the group,
    /// 64 appenders 2.8-3.4x against 1.9-2.4x, 1 and 4 appenders unchanged.
    pub(crate) fn join(
        inner: &Arc<Inner>,
        build: impl FnOnce(oneshot::Sender<Option<Single>>) -> Member,
    ) -> Joined {
        let limit = in_flight(inner);
        // The draining tasks need a Tokio runtime; without one (sqlx needs it
        // anyway, but never panic over it) every append runs alone.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let mut state = lock(&inner.groups.state);
        let grouping = !state.queue.is_empty() || state.drains > 0;
        if runtime.is_none() || (state.alone < limit && !grouping) {
            state.alone += 1;
            return Joined::Alone(AloneGuard(Arc::clone(inner)));
        }
        let (reply, answer) = oneshot::channel();
        state.queue.push(build(reply));
        if let Some(runtime) = runtime.filter(|_| state.drains < GROUPS_IN_FLIGHT) {
            state.drains += 1;
            runtime.spawn(drain(Arc::clone(inner)));
        }
        Joined::Queued(answer)
    }
}

/// How many appends run alone at once: half the pool, at most
/// [`MAX_IN_FLIGHT`], so appends leave connections to reads.
fn in_flight(inner: &Inner) -> usize {
    usize::try_from(inner.options.max_connections / 2)
        .unwrap_or(MAX_IN_FLIGHT)
        .clamp(1, MAX_IN_FLIGHT)
}

/// Runs groups until the queue is empty.
async fn drain(inner: Arc<Inner>) {
    loop {
        let members = {
            let mut state = lock(&inner.groups.state);
            let members = take_group(&mut state.queue, inner.options.max_group);
            if members.is_empty() {
                state.drains -= 1;
                return;
            }
            members
        };
        run(&inner, members).await;
    }
}

/// The next group from `queue`, in arrival order: members whose caller is still
/// waiting, one per stream, at most `max` of them and about [`MAX_GROUP_BYTES`].
/// Members left behind keep their order.
fn take_group(queue: &mut Vec<Member>, max: usize) -> Vec<Member> {
    let mut group: Vec<Member> = Vec::new();
    let mut rest = Vec::new();
    let mut bytes = 0;
    for member in queue.drain(..) {
        if member.reply.is_canceled() {
            continue; // its caller went away before it started: skip it
        }
        let full = group.len() >= max || (!group.is_empty() && bytes >= MAX_GROUP_BYTES);
        if full || group.iter().any(|m| m.stream == member.stream) {
            rest.push(member);
        } else {
            bytes += member.bytes();
            group.push(member);
        }
    }
    *queue = rest;
    group
}

/// Writes `members` with one statement and answers each of them.
async fn run(inner: &Inner, members: Vec<Member>) {
    inner.groups.groups.fetch_add(1, Ordering::Relaxed);
    inner
        .groups
        .largest
        .fetch_max(members.len(), Ordering::Relaxed);
    let bound = inner.options.operation_timeout;
    let outcome = tokio::time::timeout(bound, write(inner, &members))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within the operation timeout ({bound:?}); its connection is closed"
            ))
        });
    match outcome {
        Ok(mut written) => {
            for member in members {
                let answer = match written.remove(&member.stream) {
                    // Its check held: all of its events are in.
                    Some(rows) if rows.len() == member.events.len() => Some(Single::Done(rows)),
                    // Cannot happen (one statement inserts all of a member's rows
                    // or none); if it did, the rows are stored: let the normal
                    // path find them by id.
                    Some(_) => None,
                    // Its stream was not where it expected: nothing of it written.
                    None => Some(Single::Refused),
                };
                // The caller may have gone away (cancelled): the outcome stands.
                let _ = member.reply.send(answer);
            }
        }
        Err(reason) => {
            tracing::debug!(
                members = members.len(),
                %reason,
                "a group append failed; its members try again alone"
            );
            for member in members {
                let _ = member.reply.send(None);
            }
        }
    }
}

/// Runs the group statement: every inserted row's `(version, position)` by
/// stream, or why the statement failed.
async fn write(
    inner: &Inner,
    members: &[Member],
) -> Result<HashMap<String, Vec<(i64, i64)>>, String> {
    let rows: usize = members.iter().map(|m| m.events.len()).sum();
    let mut stream = Vec::with_capacity(rows);
    let mut offset = Vec::with_capacity(rows);
    let mut slot = Vec::with_capacity(rows);
    let mut ids = Vec::with_capacity(rows);
    let mut types = Vec::with_capacity(rows);
    let mut content_types = Vec::with_capacity(rows);
    let mut payloads = Vec::with_capacity(rows);
    let mut metadata = Vec::with_capacity(rows);
    let mut next_slot = 0_i64;
    for m in members {
        for (e, n) in m.events.iter().zip(1_i64..) {
            next_slot += 1;
            stream.push(m.stream.as_str());
            offset.push(n);
            slot.push(next_slot);
            ids.push(e.id);
            types.push(e.event_type.as_str());
            content_types.push(e.content_type.as_str());
            payloads.push(e.payload.as_slice());
            metadata.push(e.metadata.as_str());
        }
    }
    let query = sqlx::query(inner.queries.append_group())
        .persistent(inner.prepared())
        .bind(
            members
                .iter()
                .map(|m| m.stream.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(members.iter().map(|m| m.lo).collect::<Vec<_>>())
        .bind(members.iter().map(|m| m.hi).collect::<Vec<_>>())
        .bind(stream)
        .bind(offset)
        .bind(slot)
        .bind(ids)
        .bind(types)
        .bind(content_types)
        .bind(payloads)
        .bind(metadata);
    let mut session = inner
        .write_session(false)
        .await
        .map_err(|e| e.to_string())?;
    let result = match session.conn() {
        Ok(conn) => query.fetch_all(conn).await,
        Err(e) => Err(e),
    };
    let rows = session.finish(result).await.map_err(|e| e.to_string())?;
    let mut written: HashMap<String, Vec<(i64, i64)>> = HashMap::with_capacity(members.len());
    for row in rows {
        let (stream, version, position) = (|| {
            Ok::<_, sqlx::Error>((
                row.try_get::<String, _>(0)?,
                row.try_get::<i64, _>(1)?,
                row.try_get::<i64, _>(2)?,
            ))
        })()
        .map_err(|e| format!("decoding the group's result: {e}"))?;
        written.entry(stream).or_default().push((version, position));
    }
    Ok(written)
}
