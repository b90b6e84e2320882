//! Your own SQL on the store's writer: in one transaction with an append (the
//! transactional outbox: business rows and events commit together or not at all),
//! or alone (your tables in the store's file, written without fighting the store's
//! writer for SQLite's lock).
//!
//! SQLite has one writer per database. The store's is a dedicated connection on
//! its own thread (see `writer.rs`); a second writer connection of yours would
//! wait for it (`SQLITE_BUSY` after the busy timeout) and could never share its
//! transaction. So your work runs *on* that connection, in turn with the store's
//! appends: `BEGIN IMMEDIATE`, your closure, the append in its savepoint (the
//! same code as every append: checks, idempotency, positions), `COMMIT`.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
};

use annals_core::backend::{self, Backend};
use rusqlite::Connection;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::{
    append::{exec, one_member},
    sql::Statements,
    AppendRequest, Committed, Error, PreparedAppend, RetryPolicy, SqliteEventStore,
};

impl SqliteEventStore {
    /// Runs `work` and commits `request` in **one** transaction on the store's
    /// writer connection: your rows and the events are both stored, or neither
    /// is. The transactional outbox, on the embedded store.
    ///
    /// `work` runs first, on the writer thread, inside the open transaction: run
    /// your SQL on the connection it gets (do not `COMMIT` or `ROLLBACK`; the
    /// store does). Then the request is appended with every check of
    /// [`commit`](crate::EventStore::commit) — expected versions, idempotency,
    /// gap-safe positions — and the transaction commits. If `work` fails or
    /// panics, the request fails its checks (e.g. [`Error::Conflict`]) or the
    /// commit fails, everything rolls back and the error is returned. Your error
    /// type only needs `From<annals_sqlite::Error>` (as with sqlx's
    /// `Connection::transaction`).
    ///
    /// Keep `work` short: every other write of the store waits for it. It may
    /// not `.await` (it is a plain closure on the writer thread).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> annals_sqlite::Result<()> {
    /// use annals_sqlite::{
    ///     AppendRequest, Error, ExpectedVersion, NewEvent, SqliteEventStore, StreamId,
    /// };
    ///
    /// let store = SqliteEventStore::in_memory().await?;
    /// // Your own table, in the store's database.
    /// store
    ///     .write_with(|db| {
    ///         db.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, status TEXT)", [])
    ///             .map_err(|e| Error::backend("creating my table", e))
    ///     })
    ///     .await?;
    ///
    /// let order = StreamId::new("order-1")?;
    /// let placed = AppendRequest::new().append(
    ///     &order,
    ///     ExpectedVersion::NoStream,
    ///     vec![NewEvent::new("OrderPlaced", r#"{"total":30}"#)],
    /// );
    /// let (rows, committed) = store
    ///     .commit_with(placed, |db| {
    ///         db.execute("INSERT INTO orders VALUES ('order-1', 'placed')", [])
    ///             .map_err(|e| Error::backend("recording the order", e))
    ///     })
    ///     .await?;
    /// assert_eq!(rows, 1);
    /// assert_eq!(committed.positions().count(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn commit_with<T, E, F>(
        &self,
        request: AppendRequest,
        work: F,
    ) -> Result<(T, Committed), E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let prepared = backend::prepare(request, &self.limits())?;
        let span = tracing::debug_span!(
            "annals.commit_with",
            streams = prepared.parts().len(),
            events = prepared.event_count()
        );
        let work = move |conn: &Connection| work(conn).map(|value| (value, Some(prepared)));
        let (value, committed) = self.run_work(work).instrument(span).await?;
        match committed {
            Some(committed) => Ok((value, committed)),
            None => Err(E::from(Error::backend(
                "appending in the caller's transaction",
                "the append left no result",
            ))),
        }
    }

    /// Runs `work` in one transaction on the store's writer connection, with no
    /// append: for your own tables in the store's database file (read models,
    /// settings), written in turn with the store's appends instead of racing
    /// them for SQLite's lock. Commits when `work` returns `Ok`, rolls back when
    /// it fails or panics. See [`commit_with`](SqliteEventStore::commit_with).
    pub async fn write_with<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let span = tracing::debug_span!("annals.write_with");
        let work = move |conn: &Connection| work(conn).map(|value| (value, None));
        let (value, _) = self.run_work(work).instrument(span).await?;
        Ok(value)
    }

    /// The transactional publisher: runs `work` on the store's writer inside one
    /// transaction, appends the request it returns, commits — and on
    /// [`Error::Conflict`] rolls everything back and runs `work` again, up to
    /// `policy`'s attempts (then returns the last conflict). Errors of `work`
    /// itself are returned at once.
    ///
    /// `work` runs under SQLite's write lock, so a request built from what it
    /// reads there (your rows, the stream's version) cannot conflict; the retry
    /// is for requests built from state read *before* (an aggregate loaded
    /// outside), which `work` can reload.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> annals_sqlite::Result<()> {
    /// use annals_sqlite::{
    ///     AppendRequest, Error, ExpectedVersion, NewEvent, RetryPolicy, SqliteEventStore, StreamId,
    /// };
    ///
    /// let store = SqliteEventStore::in_memory().await?;
    /// store
    ///     .write_with(|db| {
    ///         db.execute_batch("CREATE TABLE stock (sku TEXT PRIMARY KEY, left INTEGER);
    ///                           INSERT INTO stock VALUES ('tea', 3);")
    ///             .map_err(|e| Error::backend("creating my table", e))
    ///     })
    ///     .await?;
    /// let sku = StreamId::new("sku-tea")?;
    /// let (left, _) = store
    ///     .transact(RetryPolicy::default(), move |db| {
    ///         let left: i64 = db
    ///             .query_row("UPDATE stock SET left = left - 1 WHERE sku = 'tea' RETURNING left", [], |r| r.get(0))
    ///             .map_err(|e| Error::backend("taking one from stock", e))?;
    ///         let taken = NewEvent::json("StockTaken", &serde_json::json!({ "left": left }))?;
    ///         Ok((left, AppendRequest::new().append(&sku, ExpectedVersion::Any, vec![taken])))
    ///     })
    ///     .await?;
    /// assert_eq!(left, 2);
    /// # Ok(()) }
    /// ```
    pub async fn transact<T, E, F>(&self, policy: RetryPolicy, work: F) -> Result<(T, Committed), E>
    where
        F: FnMut(&Connection) -> Result<(T, AppendRequest), E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let work = Arc::new(std::sync::Mutex::new(work));
        let limits = self.limits();
        let mut attempt = 1_u32;
        loop {
            let span = tracing::debug_span!("annals.transact", attempt);
            let (work, limits) = (Arc::clone(&work), limits.clone());
            let once = move |conn: &Connection| -> Result<_, Failure<E>> {
                let mut work = work
                    .lock()
                    .map_err(|_| Error::backend("transact", "an earlier attempt panicked"))?;
                let (value, request) = (*work)(conn).map_err(Failure::Work)?;
                let prepared = backend::prepare(request, &limits)?;
                Ok((value, Some(prepared)))
            };
            match self.run_work(once).instrument(span).await {
                Ok((value, Some(committed))) => return Ok((value, committed)),
                Ok((_, None)) => {
                    return Err(E::from(Error::backend(
                        "appending in the caller's transaction",
                        "the append left no result",
                    )))
                }
                Err(Failure::Work(e)) => return Err(e),
                Err(Failure::Store(e)) if !e.is_conflict() || attempt >= policy.max_attempts() => {
                    return Err(E::from(e))
                }
                Err(Failure::Store(_)) => {}
            }
            tracing::debug!(attempt, "annals: transact conflicted; retrying");
            tokio::time::sleep(policy.delay(attempt)).await;
            attempt += 1;
        }
    }

    async fn run_work<T, E, F>(&self, work: F) -> Result<(T, Option<Committed>), E>
    where
        F: FnOnce(&Connection) -> Result<(T, Option<PreparedAppend>), E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let sql = Arc::clone(&self.sql);
        self.writer
            .work(Box::new(move |conn| {
                if reply.is_closed() {
                    return; // cancelled before it started: nothing runs
                }
                let result = match conn {
                    Ok(conn) => in_transaction(conn, &sql, work),
                    Err(e) => Err(E::from(e)),
                };
                // Once started it runs to its end; a caller that went away misses
                // only the answer.
                let _ = reply.send(result);
            }))
            .await?;
        let result = answer
            .await
            .map_err(|_| Error::backend("writing to the store", "the store is closed"))?;
        if matches!(&result, Ok((_, Some(_)))) {
            self.signal.notify();
        }
        result
    }
}

/// How an attempt of [`transact`](SqliteEventStore::transact) failed: in the
/// store (a conflict is retried) or in the caller's work (returned as is).
enum Failure<E> {
    Store(Error),
    Work(E),
}

impl<E> From<Error> for Failure<E> {
    fn from(e: Error) -> Self {
        Failure::Store(e)
    }
}

/// `BEGIN IMMEDIATE`, `work`, the append it returns (if any) in its savepoint,
/// `COMMIT`; rolled back on any failure.
fn in_transaction<T, E, F>(
    conn: &mut Connection,
    sql: &Statements,
    work: F,
) -> Result<(T, Option<Committed>), E>
where
    F: FnOnce(&Connection) -> Result<(T, Option<PreparedAppend>), E>,
    E: From<Error>,
{
    const WHAT: &str = "running work in the store's transaction";
    let failed = |detail: String| E::from(Error::backend(WHAT, detail));
    exec(conn, "BEGIN IMMEDIATE").map_err(|e| {
        failed(format!(
            "starting the transaction failed, nothing was written: {e}"
        ))
    })?;
    let outcome = (|| {
        let (value, append) = match catch_unwind(AssertUnwindSafe(|| work(conn))) {
            Ok(result) => result?,
            Err(_) => return Err(failed("the work panicked; nothing was written".to_owned())),
        };
        if conn.is_autocommit() {
            return Err(E::from(Error::invalid_input(
                "the work ended the store's transaction (COMMIT or ROLLBACK); leave that to the store",
            )));
        }
        let committed = match append {
            None => None,
            Some(append) => match one_member(conn, sql, &append) {
                Ok(Ok((committed, _))) => Some(committed),
                Ok(Err(e)) => return Err(E::from(e)),
                Err(e) => {
                    return Err(failed(format!(
                        "the transaction failed, nothing was written: {e}"
                    )))
                }
            },
        };
        exec(conn, "COMMIT")
            .map_err(|e| failed(format!("COMMIT failed, nothing was written: {e}")))?;
        Ok((value, committed))
    })();
    if !conn.is_autocommit() {
        if let Err(e) = exec(conn, "ROLLBACK") {
            tracing::warn!(error = %e, "rolling back the caller's work failed");
        }
    }
    outcome
}
