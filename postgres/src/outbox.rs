//! The transactional outbox: an append inside **your** transaction, so your
//! rows and the events commit together or not at all.
//!
//! [`commit_in`](PostgresEventStore::commit_in) runs the same statement as every
//! multi-stream append (`append.rs`: checks on the statement's snapshot, rows in
//! the canonical order, guard rows for conditions, deleted before the end) on the
//! caller's connection, inside a `SAVEPOINT`:
//!
//! * **Schema.** Every statement names the store's schema (`"schema".events`,
//!   `"schema".position_base()`, with the table prefix if any), so the caller's `search_path` does not matter
//!   and is left alone. (`SET LOCAL search_path` would outlive the call: it lasts
//!   until the caller's transaction ends, and would redirect the caller's own
//!   unqualified statements after it.)
//! * **Failure keeps the caller's transaction usable.** A conflict, a reused id
//!   or a lost race rolls back to the savepoint; the savepoint is released
//!   either way, so nothing is left behind.
//! * **Positions** come from the caller's transaction id (`position_base()`), as
//!   for any append: readers' safe position holds every later-committed event
//!   back until the caller's transaction ends, so no reader skips its events. A
//!   second append in the same transaction continues the transaction's position
//!   slots after the rows it already stored (found on the rare path: its first
//!   try collides with them on the primary key).
//! * **Idempotency.** A re-sent request (same ids, same content), in the same
//!   transaction or after the first one committed, returns the original result.
//! * **Lost races.** Under `READ COMMITTED` (PostgreSQL's default) a lost race is
//!   tried again, each statement on a new snapshot. Under `REPEATABLE READ` or
//!   `SERIALIZABLE` the transaction's snapshot cannot see the winner, so the
//!   race is reported as [`Error::Conflict`] (retry the whole transaction).
//! * **Wake-ups.** With notifications on, `pg_notify` runs inside the caller's
//!   transaction, so PostgreSQL delivers it only if that transaction commits;
//!   its payload is no store's own token, so subscribers of every store —
//!   this one's too — wake. (Notifying transactions serialise their commits on
//!   one lock, which plain appends avoid by notifying afterwards;
//!   [`transact`](PostgresEventStore::transact) owns the transaction, so it
//!   does the same.)

use annals_core::{
    backend::{self, Backend},
    AppendRequest, AppendResult, Committed, Error, ExpectedVersion, NewEvent, PreparedAppend,
    Result, RetryPolicy, StreamConflict, StreamId, Version,
};
use futures::future::BoxFuture;
use sqlx::{error::ErrorKind, AssertSqlSafe, Executor, PgConnection, SqlSafeStr};
use tracing::Instrument;

use crate::{
    append::{
        committed, gave_up, many_found, rule, version_in, Batch, Many, Ruling, MAX_ATTEMPTS,
        MAX_BATCH_EVENTS,
    },
    error::{bounded, classify_write, WriteFailure},
    options::quote_ident,
    session::Session,
    sql::Names,
    PostgresEventStore,
};

/// The savepoint an append inside the caller's transaction runs in.
const SAVEPOINT: &str = "SAVEPOINT annals_commit_in";
const ROLLBACK_TO: &str = "ROLLBACK TO SAVEPOINT annals_commit_in";
const RELEASE: &str = "RELEASE SAVEPOINT annals_commit_in";

/// The payload of a `NOTIFY` sent inside the caller's transaction. No store's
/// token (16 hex digits) equals it, so every listener — this store's too —
/// wakes its subscribers.
const NOTIFY_PAYLOAD: &str = "annals.commit_in";

/// What one attempt of [`transact`](PostgresEventStore::transact) ended with.
enum Attempt<E> {
    /// The append conflicted: everything was rolled back, try again.
    Conflict(Error),
    /// Anything else: rolled back, returned to the caller.
    Failed(E),
}

impl PostgresEventStore {
    /// Appends `request` on `conn`, **inside the caller's open transaction**
    /// (`&mut *tx` of a [`sqlx::Transaction`]): the events commit when that
    /// transaction commits, together with whatever else it wrote, and vanish if
    /// it rolls back. The transactional outbox: no order row without its
    /// `OrderPlaced`, no event for a change that rolled back.
    ///
    /// Every check of [`commit`](crate::EventStore::commit) holds: expected
    /// versions and conditions (held until your transaction ends), all or
    /// nothing, idempotency (a re-sent request, in this transaction or after an
    /// earlier one committed, returns the original result), and gap-safe
    /// positions (they come from your transaction's id, so readers hold later
    /// events back until it ends and never skip these). Several calls in one
    /// transaction are fine.
    ///
    /// The append runs in a savepoint on the store's schema (whatever your
    /// `search_path`). If it returns [`Error::Conflict`] or
    /// [`Error::InvalidInput`], the savepoint was rolled back: nothing of the
    /// request is in your transaction and it is still usable (append something
    /// else, or roll back). After any other error (a timeout, a lost
    /// connection) roll your transaction back.
    ///
    /// Notes:
    /// * `conn` must be in a transaction: on a connection in autocommit mode
    ///   the call fails with [`Error::InvalidInput`] and writes nothing.
    /// * Use it at `READ COMMITTED` (PostgreSQL's default). Under `REPEATABLE
    ///   READ` or `SERIALIZABLE`, losing a race to a concurrent append is an
    ///   [`Error::Conflict`] at once (your snapshot cannot see the winner; its
    ///   `actual` is the version your snapshot sees plus one): retry the
    ///   transaction.
    /// * Your transaction holds the streams' next versions from this call to
    ///   its end: a concurrent append to the same stream waits for it, and
    ///   readers of the log wait for it too (for events committed after it
    ///   started, up to their `read_settle_timeout`). Keep it short.
    /// * This process's subscriptions are woken through `NOTIFY` when your
    ///   transaction commits (with [`PostgresOptions::notifications`] on);
    ///   otherwise they find the events at their next poll.
    /// * `conn` may be any connection to the store's database (the store's
    ///   [`pool`](PostgresEventStore::pool) or yours). Statements are named and
    ///   cached as the store's [`PostgresOptions::prepared_statements`] says.
    ///
    /// [`transact`](PostgresEventStore::transact) runs the whole transaction
    /// for you and retries it on conflicts.
    ///
    /// ```no_run
    /// use annals_postgres::{
    ///     sqlx, AppendRequest, ExpectedVersion, NewEvent, PostgresEventStore, StreamId,
    /// };
    ///
    /// # async fn demo(store: PostgresEventStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO orders (id, total) VALUES ($1, $2)")
    ///     .bind("order-1")
    ///     .bind(30_i64)
    ///     .execute(&mut *tx)
    ///     .await?;
    /// let order = StreamId::new("order-1")?;
    /// let placed = AppendRequest::new().append(
    ///     &order,
    ///     ExpectedVersion::NoStream,
    ///     vec![NewEvent::new("OrderPlaced.v1", r#"{"total":30}"#)],
    /// );
    /// let committed = store.commit_in(&mut tx, placed).await?;
    /// tx.commit().await?; // the row and the event, together
    /// assert_eq!(committed.positions().count(), 1);
    /// # Ok(()) }
    /// ```
    ///
    /// [`PostgresOptions::notifications`]: crate::PostgresOptions::notifications
    /// [`PostgresOptions::prepared_statements`]: crate::PostgresOptions::prepared_statements
    pub async fn commit_in(
        &self,
        conn: &mut PgConnection,
        request: AppendRequest,
    ) -> Result<Committed> {
        let prepared = backend::prepare(request, &self.limits())?;
        let span = tracing::debug_span!(
            "annals.commit_in",
            streams = prepared.parts().len(),
            events = prepared.event_count()
        );
        let (committed, _) = bounded(
            self.timeout(),
            self.commit_prepared_in(conn, &prepared, true),
        )
        .instrument(span)
        .await?;
        Ok(committed)
    }

    /// [`commit_in`](PostgresEventStore::commit_in) for one stream: appends
    /// `events` to `stream` inside the caller's transaction on `conn`, if the
    /// stream is at the `expected` version.
    ///
    /// ```no_run
    /// use annals_postgres::{ExpectedVersion, NewEvent, PostgresEventStore, StreamId, Version};
    ///
    /// # async fn demo(store: PostgresEventStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = store.pool().begin().await?;
    /// let order = StreamId::new("order-1")?;
    /// let paid = vec![NewEvent::new("OrderPaid.v1", "{}")];
    /// let appended = store
    ///     .append_in(&mut tx, &order, ExpectedVersion::Exact(Version::new(1)), paid)
    ///     .await?;
    /// tx.commit().await?;
    /// assert_eq!(appended.version, Version::new(2));
    /// # Ok(()) }
    /// ```
    pub async fn append_in(
        &self,
        conn: &mut PgConnection,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let request = AppendRequest::new().append(stream, expected, events);
        self.commit_in(conn, request)
            .await?
            .parts
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::backend(
                    "appending in the caller's transaction",
                    "the append left no result",
                )
            })
    }

    /// Runs `work` and commits the request it returns in **one** transaction on
    /// the store's pool, retrying the whole transaction when the append
    /// conflicts: the transactional publisher.
    ///
    /// Each attempt begins a transaction, calls `work` with its connection (run
    /// your SQL there; do not `COMMIT` or `ROLLBACK`), appends the
    /// [`AppendRequest`] `work` returns with
    /// [`commit_in`](PostgresEventStore::commit_in), and commits. Returns what
    /// `work` returned beside the request, and what was appended.
    ///
    /// * If the append gets [`Error::Conflict`] (another writer got there
    ///   first), the attempt is rolled back — nothing of it was committed — and
    ///   `work` runs again in a new transaction (so it sees the new state), after
    ///   the `policy`'s backoff, up to its [`max_attempts`](RetryPolicy::max_attempts);
    ///   then the last conflict is returned.
    /// * If `work` fails (or panics), the append fails otherwise, or `COMMIT`
    ///   fails, the transaction is rolled back and the error is returned, with no
    ///   retry. Your error type only needs `From<annals_postgres::Error>`.
    /// * After the commit, this process's subscriptions are woken and other
    ///   processes' are notified, as after [`commit`](crate::EventStore::commit).
    ///
    /// `work` returns a boxed future borrowing the connection
    /// (`|tx| async move { … }.boxed()`, with `futures::FutureExt`); move what
    /// it needs into the future (clone a store handle into it, for example).
    /// Each call is bounded like the store's other calls for the append; `work`
    /// itself is not.
    ///
    /// ```no_run
    /// use annals_postgres::{
    ///     futures::FutureExt, sqlx, AppendRequest, Error, ExpectedVersion, NewEvent,
    ///     PostgresEventStore, RetryPolicy, StreamId,
    /// };
    ///
    /// # async fn demo(store: PostgresEventStore) -> annals_postgres::Result<()> {
    /// let (order_id, committed) = store
    ///     .transact(RetryPolicy::default(), |tx| {
    ///         async move {
    ///             let id: i64 =
    ///                 sqlx::query_scalar("INSERT INTO orders (total) VALUES (30) RETURNING id")
    ///                     .fetch_one(&mut *tx)
    ///                     .await
    ///                     .map_err(|e| Error::backend("recording the order", e))?;
    ///             let order = StreamId::new(format!("order-{id}"))?;
    ///             let placed = AppendRequest::new().append(
    ///                 &order,
    ///                 ExpectedVersion::NoStream,
    ///                 vec![NewEvent::new("OrderPlaced.v1", r#"{"total":30}"#)],
    ///             );
    ///             Ok::<_, Error>((id, placed))
    ///         }
    ///         .boxed()
    ///     })
    ///     .await?;
    /// # let _ = (order_id, committed);
    /// # Ok(()) }
    /// ```
    pub async fn transact<T, E, F>(
        &self,
        policy: RetryPolicy,
        mut work: F,
    ) -> std::result::Result<(T, Committed), E>
    where
        F: for<'c> FnMut(
            &'c mut PgConnection,
        ) -> BoxFuture<'c, std::result::Result<(T, AppendRequest), E>>,
        E: From<Error>,
    {
        let mut attempt = 1_u32;
        loop {
            match self.transact_once(&mut work).await {
                Ok((value, committed, wrote)) => {
                    if wrote {
                        let inner = self.inner();
                        inner.signal.notify();
                        inner.notifications.appended(&inner.pool);
                    }
                    return Ok((value, committed));
                }
                Err(Attempt::Conflict(conflict)) if attempt < policy.max_attempts() => {
                    tracing::debug!(attempt, %conflict, "annals: transact conflicted; retrying");
                    tokio::time::sleep(policy.delay(attempt)).await;
                    attempt += 1;
                }
                Err(Attempt::Conflict(conflict)) => return Err(E::from(conflict)),
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
    }

    /// One attempt of [`transact`](PostgresEventStore::transact): the value,
    /// the result, and whether anything was written (not a replay).
    async fn transact_once<T, E, F>(
        &self,
        work: &mut F,
    ) -> std::result::Result<(T, Committed, bool), Attempt<E>>
    where
        F: for<'c> FnMut(
            &'c mut PgConnection,
        ) -> BoxFuture<'c, std::result::Result<(T, AppendRequest), E>>,
        E: From<Error>,
    {
        let inner = self.inner();
        let doing = "running a transaction with an append";
        let failed = |e: sqlx::Error| Attempt::Failed(E::from(inner.map_err(e, doing)));
        // A session (not `pool.begin()`): it begins the way the store's mode
        // says (with `SET LOCAL statement_timeout` behind a pooler), and closes
        // its connection if this future is dropped mid-transaction.
        let mut session = Session::start(&inner.pool, &inner.mode, true, true)
            .await
            .map_err(failed)?;
        let outcome = match session.conn() {
            Ok(conn) => self.work_and_append(conn, work).await,
            Err(e) => Err(failed(e)),
        };
        match outcome {
            Ok((value, committed, wrote)) => {
                session.end(true).await.map_err(|e| {
                    Attempt::Failed(E::from(
                        inner.map_err(e, "committing a transaction with an append"),
                    ))
                })?;
                Ok((value, committed, wrote))
            }
            Err(e) => {
                if let Err(rollback) = session.end(false).await {
                    tracing::debug!(error = %rollback, "rolling back a failed transact attempt failed");
                }
                Err(e)
            }
        }
    }

    async fn work_and_append<T, E, F>(
        &self,
        conn: &mut PgConnection,
        work: &mut F,
    ) -> std::result::Result<(T, Committed, bool), Attempt<E>>
    where
        F: for<'c> FnMut(
            &'c mut PgConnection,
        ) -> BoxFuture<'c, std::result::Result<(T, AppendRequest), E>>,
        E: From<Error>,
    {
        let (value, request) = work(&mut *conn).await.map_err(Attempt::Failed)?;
        let prepared =
            backend::prepare(request, &self.limits()).map_err(|e| Attempt::Failed(E::from(e)))?;
        let span = tracing::debug_span!(
            "annals.transact",
            streams = prepared.parts().len(),
            events = prepared.event_count()
        );
        // No NOTIFY inside: the caller notifies after COMMIT, like any append.
        match bounded(
            self.timeout(),
            self.commit_prepared_in(conn, &prepared, false),
        )
        .instrument(span)
        .await
        {
            Ok((committed, wrote)) => Ok((value, committed, wrote)),
            Err(e) if e.is_conflict() => Err(Attempt::Conflict(e)),
            Err(e) => Err(Attempt::Failed(E::from(e))),
        }
    }

    /// Appends a validated request in a savepoint of the caller's transaction
    /// on `conn`; `notify`: `pg_notify` inside it. Returns the result and
    /// whether anything was written (not a replay or an empty request).
    pub(crate) async fn commit_prepared_in(
        &self,
        conn: &mut PgConnection,
        append: &PreparedAppend,
        notify: bool,
    ) -> Result<(Committed, bool)> {
        let inner = self.inner();
        if let Err(e) = simple(conn, SAVEPOINT).await {
            return Err(
                match e.as_database_error().and_then(|db| db.code()).as_deref() {
                    // no_active_sql_transaction
                    Some("25P01") => Error::invalid_input(
                        "commit_in needs a connection inside a transaction (pass `&mut *tx` of \
                     `pool.begin()`); this one is in autocommit mode (or its transaction was \
                     already committed or rolled back), nothing was written",
                    ),
                    // in_failed_sql_transaction
                    Some("25P02") => Error::invalid_input(
                        "the caller's transaction is aborted (an earlier statement in it failed): \
                     roll it back; nothing was written",
                    ),
                    _ => inner.map_err(e, "starting a savepoint for the append"),
                },
            );
        }
        let mut outcome = self.in_savepoint(conn, append).await;
        if notify {
            if let (Ok((_, true)), Some(channel)) =
                (&outcome, inner.notifications.channel_if_enabled())
            {
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .persistent(inner.prepared())
                    .bind(channel)
                    .bind(NOTIFY_PAYLOAD)
                    .execute(&mut *conn)
                    .await;
                if let Err(e) = sent {
                    outcome = Err(inner.map_err(e, "notifying subscribers of the append"));
                }
            }
        }
        match outcome {
            Ok(done) => {
                simple(conn, RELEASE)
                    .await
                    .map_err(|e| inner.map_err(e, "releasing the append's savepoint"))?;
                Ok(done)
            }
            Err(e) => {
                // Nothing of the request stays in the caller's transaction.
                let undone = match simple(conn, ROLLBACK_TO).await {
                    Ok(()) => simple(conn, RELEASE).await,
                    Err(e) => Err(e),
                };
                if let Err(undo) = undone {
                    tracing::warn!(
                        error = %undo,
                        "rolling back to the append's savepoint failed; roll the transaction back"
                    );
                }
                Err(e)
            }
        }
    }

    /// The append protocol of `append.rs`'s multi-stream path, on `conn`,
    /// inside the savepoint (which a failed statement is rolled back to).
    async fn in_savepoint(
        &self,
        conn: &mut PgConnection,
        append: &PreparedAppend,
    ) -> Result<(Committed, bool)> {
        let inner = self.inner();
        if append.event_count() == 0 {
            // Nothing to write: the expectations are checked on one snapshot.
            let names: Vec<&StreamId> = append.streams().collect();
            let versions = self.stream_versions_in(conn, &names).await?;
            let result = committed(append, &[], |s| version_in(&versions, s), &[])?;
            return Ok((result, false));
        }
        let mut batch = Batch::new(append)?;
        let mut shifted = false;
        let mut checked_ids = false;
        // Known once a race was lost: whether each statement gets a new snapshot.
        let mut read_committed = None;
        for _ in 0..MAX_ATTEMPTS {
            let (versions, refused) = match self.many_statement(conn, &batch).await {
                Ok(found) => match many_found(found)? {
                    Many::Done(versions, positions) => {
                        return Ok((batch.committed(&versions, positions)?, true))
                    }
                    Many::Refused(versions) => (Some(versions), true),
                    Many::IdTaken | Many::Retry => (None, false),
                },
                Err(err) => {
                    simple(conn, ROLLBACK_TO)
                        .await
                        .map_err(|e| inner.map_err(e, "rolling back to the append's savepoint"))?;
                    if !shifted && position_taken(&err, inner.queries.names()) {
                        // This transaction already stored rows: continue its slots.
                        shifted = true;
                        let used = self.used_slots(conn).await?;
                        let room = MAX_BATCH_EVENTS.saturating_sub(batch.total());
                        if usize::try_from(used).map_or(true, |used| used > room) {
                            return Err(Error::invalid_input(format!(
                                "one transaction holds at most {MAX_BATCH_EVENTS} appended rows; \
                                 this one has {used} and the request adds {}",
                                batch.total()
                            )));
                        }
                        batch.shift_slots(used);
                        continue;
                    }
                    match classify_write(
                        err,
                        inner.options.operation_timeout,
                        inner.queries.names(),
                    ) {
                        WriteFailure::VersionTaken | WriteFailure::Retry => {
                            if self.is_read_committed(conn, &mut read_committed).await? {
                                continue;
                            }
                            return Err(self.lost_in_snapshot(conn, append).await);
                        }
                        WriteFailure::IdTaken => (None, false),
                        WriteFailure::Other(e) => return Err(e),
                    }
                }
            };
            let stored = if !checked_ids || !refused {
                checked_ids = true;
                self.events_by_ids_in(conn, append).await?
            } else {
                Vec::new()
            };
            let versions = match versions {
                Some(versions) => versions,
                None => {
                    self.stream_versions_in(conn, &batch.checked_streams())
                        .await?
                }
            };
            if let Ruling::Return(result) = rule(append, &stored, |s| version_in(&versions, s))? {
                return Ok((result, false));
            }
            // The expectations hold on what this transaction sees: try again, if
            // the next statement can see more.
            if !self.is_read_committed(conn, &mut read_committed).await? {
                return Err(self.lost_in_snapshot(conn, append).await);
            }
        }
        Err(gave_up(&format!(
            "{} streams",
            batch.checked_streams().len()
        )))
    }

    /// How many position slots the caller's transaction already used: the
    /// offset of its highest visible row in its position range.
    async fn used_slots(&self, conn: &mut PgConnection) -> Result<i64> {
        let s = quote_ident(self.schema());
        let sql = format!(
            "SELECT coalesce(max(e.position) - b.base, 0)::bigint \
             FROM (SELECT {s}.position_base() AS base) b \
             LEFT JOIN {s}.events e ON e.position > b.base AND e.position < b.base + 1048576 \
             GROUP BY b.base"
        );
        // The schema is validated and quoted, the table prefix validated; nothing
        // else is spliced in.
        let sql = self.inner().queries.names().apply_owned(sql);
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
            .persistent(false)
            .fetch_one(conn)
            .await
            .map_err(|e| {
                self.inner()
                    .map_err(e, "reading the transaction's appended rows")
            })
    }

    /// Whether the caller's transaction is `READ COMMITTED` (asked once).
    async fn is_read_committed(
        &self,
        conn: &mut PgConnection,
        known: &mut Option<bool>,
    ) -> Result<bool> {
        if let Some(known) = *known {
            return Ok(known);
        }
        let level: String = sqlx::query_scalar("SELECT current_setting('transaction_isolation')")
            .persistent(self.inner().prepared())
            .fetch_one(conn)
            .await
            .map_err(|e| self.inner().map_err(e, "reading the isolation level"))?;
        let rc = level == "read committed";
        *known = Some(rc);
        Ok(rc)
    }

    /// The conflict for a race lost in a `REPEATABLE READ` / `SERIALIZABLE`
    /// transaction, whose snapshot cannot see the winner: on the request's
    /// first stream, at the version the snapshot sees plus one (the winner
    /// wrote at least one event).
    async fn lost_in_snapshot(&self, conn: &mut PgConnection, append: &PreparedAppend) -> Error {
        let part = append
            .parts()
            .iter()
            .find(|p| !p.events().is_empty())
            .or_else(|| append.parts().first());
        let Some(part) = part else {
            return Error::backend("appending in the caller's transaction", "empty request");
        };
        let seen = match self.stream_versions_in(conn, &[part.stream()]).await {
            Ok(versions) => version_in(&versions, part.stream()),
            Err(e) => return e,
        };
        let actual = Version::new(seen.get().saturating_add(1));
        Error::conflict(vec![StreamConflict::new(
            part.stream().clone(),
            part.expected(),
            actual,
        )])
        .unwrap_or_else(|| Error::backend("appending in the caller's transaction", "lost a race"))
    }
}

/// Runs a statement without parameters in one round trip (simple protocol).
async fn simple(conn: &mut PgConnection, sql: &'static str) -> sqlx::Result<()> {
    conn.execute(sqlx::raw_sql(AssertSqlSafe(sql).into_sql_str()))
        .await
        .map(drop)
}

/// The insert hit a position this transaction already stored (the primary key
/// `events_pkey`, with the store's table prefix).
fn position_taken(err: &sqlx::Error, names: &Names) -> bool {
    err.as_database_error().is_some_and(|db| {
        db.kind() == ErrorKind::UniqueViolation
            && db.constraint() == Some(names.position_key.as_str())
    })
}
