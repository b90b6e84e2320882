//! [`Session`]: the pooled connection one store call runs on.
//!
//! With named prepared statements (the default) a session is a plain pooled
//! connection. Without them ([`PostgresOptions::prepared_statements`]) every
//! statement is the protocol's *unnamed* statement, and sqlx sends it in two
//! round trips: `Parse`/`Describe`/`Sync`, then, after the server answered,
//! `Bind`/`Execute`/`Sync`. A pooler in transaction mode (PgBouncer) hands the
//! server connection back to its pool at the first `ReadyForQuery` outside a
//! transaction, so the `Bind` may reach a server connection where another
//! client's `Parse` replaced the unnamed statement: it then fails, or binds the
//! wrong statement. So in that mode a session opens a transaction first
//! (`BEGIN`, a simple query): the pooler keeps the server connection for this
//! client until `COMMIT`/`ROLLBACK`.
//!
//! A session dropped while its transaction is open (a timeout, a dropped read
//! stream), or a write session dropped before it [ended](Session::end), closes
//! its connection instead of handing it back: the next caller must not inherit
//! an open transaction or wait behind abandoned work.
//!
//! [`PostgresOptions::prepared_statements`]: crate::PostgresOptions::prepared_statements

use sqlx::{
    pool::PoolConnection, AssertSqlSafe, Executor, PgConnection, PgPool, Postgres, SqlSafeStr,
    SqlStr,
};

/// A pooled connection for one store call (see the module docs).
pub(crate) struct Session {
    conn: Option<PoolConnection<Postgres>>,
    /// This session sent `BEGIN` and no `COMMIT`/`ROLLBACK` yet.
    open: bool,
    /// Close the connection if dropped before [`Session::end`] (writes).
    close_if_abandoned: bool,
}

/// How sessions start: in a transaction or not, and the `BEGIN` statement
/// (with `SET LOCAL statement_timeout` when the pool does not set it).
#[derive(Clone, Debug)]
pub(crate) struct SessionMode {
    /// Every session runs in a transaction (no named prepared statements).
    pub(crate) pinned: bool,
    begin: SqlStr,
}

impl SessionMode {
    /// `pinned`: every call in a transaction; `local_timeout_ms`: a
    /// `statement_timeout` to set with `SET LOCAL` in each transaction.
    pub(crate) fn new(pinned: bool, local_timeout_ms: Option<u128>) -> Self {
        let begin = match local_timeout_ms {
            // A number formatted into the text: nothing to inject.
            Some(ms) => format!("BEGIN; SET LOCAL statement_timeout = {ms}"),
            None => "BEGIN".to_owned(),
        };
        SessionMode {
            pinned,
            begin: AssertSqlSafe(begin).into_sql_str(),
        }
    }
}

impl Session {
    /// A connection from `pool`; in a transaction if `mode` is pinned or
    /// `transaction` is set. `write`: close the connection if the session is
    /// dropped before it ended.
    pub(crate) async fn start(
        pool: &PgPool,
        mode: &SessionMode,
        transaction: bool,
        write: bool,
    ) -> sqlx::Result<Session> {
        let conn = pool.acquire().await?;
        let mut session = Session {
            conn: Some(conn),
            open: false,
            close_if_abandoned: write,
        };
        if mode.pinned || transaction {
            let begin = if mode.pinned {
                mode.begin.clone()
            } else {
                AssertSqlSafe("BEGIN").into_sql_str()
            };
            // Marked open first: if BEGIN fails half-way, the drop closes it.
            session.open = true;
            session.conn()?.execute(sqlx::raw_sql(begin)).await?;
        }
        Ok(session)
    }

    /// The connection.
    pub(crate) fn conn(&mut self) -> sqlx::Result<&mut PgConnection> {
        self.conn.as_deref_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// Ends the session: `COMMIT` (or, with `commit` false, `ROLLBACK`) if it
    /// opened a transaction, and hands the connection back. A failed
    /// `COMMIT`/`ROLLBACK` closes the connection.
    pub(crate) async fn end(mut self, commit: bool) -> sqlx::Result<()> {
        if self.open {
            let sql = if commit { "COMMIT" } else { "ROLLBACK" };
            self.conn()?
                .execute(sqlx::raw_sql(AssertSqlSafe(sql).into_sql_str()))
                .await?;
            self.open = false;
        }
        self.close_if_abandoned = false;
        drop(self.conn.take());
        Ok(())
    }

    /// Ends the session after a call that returned `result`: commits if it
    /// succeeded, rolls back if it failed (a failed rollback only closes the
    /// connection). Returns `result`, or the error of the `COMMIT`.
    pub(crate) async fn finish<T>(self, result: sqlx::Result<T>) -> sqlx::Result<T> {
        match result {
            Ok(value) => self.end(true).await.map(|()| value),
            Err(e) => {
                if let Err(rollback) = self.end(false).await {
                    tracing::debug!(error = %rollback, "rolling back after a failed statement failed");
                }
                Err(e)
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.open || self.close_if_abandoned {
                tracing::debug!(
                    "closing a connection whose call was abandoned mid-statement or mid-transaction"
                );
                drop(conn.detach());
            }
        }
    }
}

/// One call's statement on a fresh [`Session`] of `inner` (an `&Inner`),
/// ended after it (committed if it succeeded, rolled back if not), with the
/// driver's error mapped for `doing`:
/// `on_session!(inner, doing, |conn| query.fetch_one(conn))` is a
/// `Result<T>`. A macro, not a function taking a closure, because the query
/// borrows from the caller and the connection from the session.
macro_rules! on_session {
    ($inner:expr, $doing:expr, |$conn:ident| $call:expr) => {{
        let (inner, doing) = ($inner, $doing);
        match inner.session(doing).await {
            Err(e) => Err(e),
            Ok(mut session) => {
                let result = match session.conn() {
                    Ok($conn) => $call.await,
                    Err(e) => Err(e),
                };
                session
                    .finish(result)
                    .await
                    .map_err(|e| inner.map_err(e, doing))
            }
        }
    }};
}
pub(crate) use on_session;
