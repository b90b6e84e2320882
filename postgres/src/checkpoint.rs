//! [`PostgresCheckpoints`]: consumer checkpoints in the store's own schema, saved
//! on their own (at-least-once) or in the caller's transaction together with a
//! read model (exactly-once).

use annals_core::{
    backend::{from_i64, to_i64},
    consume::{check_checkpoint_name, traced, CheckpointStore, ConsumeOp},
    Position, Result,
};
use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::session::on_session;
use crate::{error::bounded, options::quote_ident, PostgresEventStore};

/// Checkpoints in the `checkpoints` table of the store's schema (name, position,
/// updated_at; `<prefix>checkpoints` with a
/// [`table_prefix`](crate::PostgresOptions::table_prefix)), created by the
/// store's migrations.
///
/// Saving after the handler succeeded gives at-least-once delivery. For
/// **exactly-once** into a read model in the same database, write the read model
/// and the checkpoint in one transaction with
/// [`save_in`](PostgresCheckpoints::save_in): either both commit or neither does,
/// so a crash between handler and commit replays exactly the uncommitted events.
///
/// ```no_run
/// use annals_postgres::{consume::CheckpointStore, sqlx, PostgresEventStore, Position};
/// # async fn demo(store: PostgresEventStore, event_position: Position) -> Result<(), Box<dyn std::error::Error>> {
/// let checkpoints = store.checkpoints();
/// let resume_after = checkpoints.load("orders-by-status").await?;
///
/// // For each event: the read model row and the checkpoint in one transaction.
/// let mut tx = store.pool().begin().await?;
/// sqlx::query("INSERT INTO orders_by_status (id, status) VALUES ($1, $2)")
///     .bind("order-1")
///     .bind("paid")
///     .execute(&mut *tx)
///     .await?;
/// checkpoints.save_in(&mut tx, "orders-by-status", event_position).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresCheckpoints {
    store: PostgresEventStore,
    load: String,
    save: String,
    reset: String,
}

impl PostgresEventStore {
    /// The store's checkpoints (sharing its pool).
    pub fn checkpoints(&self) -> PostgresCheckpoints {
        let table = format!(
            "{}.{}",
            quote_ident(self.schema()),
            self.inner().queries.names().prefix.name("checkpoints")
        );
        PostgresCheckpoints {
            store: self.clone(),
            load: format!("SELECT position FROM {table} WHERE name = $1"),
            // Never backward: a lower position than the saved one changes nothing.
            save: format!(
                "INSERT INTO {table} AS t (name, position) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE \
                 SET position = greatest(t.position, EXCLUDED.position), updated_at = now()"
            ),
            reset: format!("DELETE FROM {table} WHERE name = $1"),
        }
    }
}

impl PostgresCheckpoints {
    /// Saves `position` for `name` on `conn` — typically inside the caller's
    /// transaction (`&mut *tx`), so that it commits or rolls back with the read
    /// model rows written there. Never moves a checkpoint backward.
    pub async fn save_in(
        &self,
        conn: &mut PgConnection,
        name: &str,
        position: Position,
    ) -> Result<()> {
        traced(ConsumeOp::CheckpointSaveIn, "postgres", name, async move {
            check_checkpoint_name(name)?;
            let position = to_i64(position.get(), "checkpoint position")?;
            let inner = self.store.inner();
            bounded(inner.options.operation_timeout, async {
                sqlx::query(sqlx::AssertSqlSafe(self.save.as_str()))
                    .persistent(inner.prepared())
                    .bind(name)
                    .bind(position)
                    .execute(conn)
                    .await
                    .map_err(|e| inner.map_err(e, "saving a checkpoint"))?;
                Ok(())
            })
            .await
        })
        .await
    }
}

impl CheckpointStore for PostgresCheckpoints {
    fn load<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Position>>> {
        traced(ConsumeOp::CheckpointLoad, "postgres", name, async move {
            check_checkpoint_name(name)?;
            let inner = self.store.inner();
            let saved: Option<i64> = bounded(inner.options.operation_timeout, async {
                let doing = "loading a checkpoint";
                on_session!(inner, doing, |conn| sqlx::query_scalar(
                    sqlx::AssertSqlSafe(self.load.as_str())
                )
                .persistent(inner.prepared())
                .bind(name)
                .fetch_optional(conn))
            })
            .await?;
            saved
                .map(|p| from_i64(p, "checkpoint position").map(Position::new))
                .transpose()
        })
    }

    fn save<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<()>> {
        traced(ConsumeOp::CheckpointSave, "postgres", name, async move {
            check_checkpoint_name(name)?;
            let inner = self.store.inner();
            let doing = "saving a checkpoint";
            let mut session = bounded(inner.options.acquire_timeout, inner.session(doing)).await?;
            let conn = session.conn().map_err(|e| inner.map_err(e, doing))?;
            let saved = self.save_in(conn, name, position).await;
            let ended = session
                .end(saved.is_ok())
                .await
                .map_err(|e| inner.map_err(e, doing));
            saved.and(ended)
        })
    }

    fn reset<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        traced(ConsumeOp::CheckpointReset, "postgres", name, async move {
            check_checkpoint_name(name)?;
            let inner = self.store.inner();
            bounded(inner.options.operation_timeout, async {
                let doing = "resetting a checkpoint";
                on_session!(inner, doing, |conn| sqlx::query(sqlx::AssertSqlSafe(
                    self.reset.as_str()
                ))
                .persistent(inner.prepared())
                .bind(name)
                .execute(conn))?;
                Ok(())
            })
            .await
        })
    }
}
