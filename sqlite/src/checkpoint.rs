//! [`SqliteCheckpoints`]: consumer checkpoints in the store's own database file,
//! saved on their own (at-least-once) or in the caller's transaction together
//! with a read model (exactly-once).

use std::sync::Arc;

use annals_core::{
    backend::{from_i64, to_i64},
    consume::{check_checkpoint_name, traced, CheckpointStore, ConsumeOp, MemoryCheckpoints},
    Error, Position, Result, Timestamp,
};
use futures::future::BoxFuture;
use sqlx::{
    sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteSynchronous},
    SqlStr, SqliteConnection, SqlitePool,
};

use crate::{backend::TablePrefix, sql::sql_text, SqliteEventStore, Synchronous};

const LOAD: &str = "SELECT position FROM checkpoints WHERE name = ?1";
// Never backward: a lower position than the saved one changes nothing.
const SAVE: &str = "INSERT INTO checkpoints (name, position, updated_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (name) DO UPDATE \
     SET position = max(position, excluded.position), updated_at = excluded.updated_at";
const RESET: &str = "DELETE FROM checkpoints WHERE name = ?1";

/// Checkpoints in the `checkpoints` table of the store's database file (name,
/// position, updated_at), created by the store's migrations.
///
/// Saving after the handler succeeded gives at-least-once delivery. For
/// **exactly-once** into a read model kept in the same file, write the read model
/// and the checkpoint in one transaction on your own connection with
/// [`save_in`](SqliteCheckpoints::save_in): both commit or neither does.
///
/// The checkpoints of an in-memory store live in memory beside it (the database
/// is private to the store): `load`, `save` and `reset` work, `save_in` does not
/// apply.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use annals_sqlite::{consume::CheckpointStore, sqlx, Position, SqliteEventStore};
/// use sqlx::Connection;
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("events.db");
/// let store = SqliteEventStore::open(&path).await?;
/// let checkpoints = store.checkpoints();
///
/// // The read model row and the checkpoint in one transaction.
/// let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display())).await?;
/// sqlx::query("CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, n INTEGER)")
///     .execute(&mut conn)
///     .await?;
/// let mut tx = conn.begin().await?;
/// sqlx::query("INSERT INTO totals VALUES ('orders', 1)").execute(&mut *tx).await?;
/// checkpoints.save_in(&mut tx, "totals", Position::new(1)).await?;
/// tx.commit().await?;
///
/// assert_eq!(checkpoints.load("totals").await?, Some(Position::new(1)));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteCheckpoints {
    place: Place,
    sql: Arc<Statements>,
}

/// The checkpoint statements, with the store's table prefix applied.
#[derive(Debug)]
struct Statements {
    load: SqlStr,
    save: SqlStr,
    reset: SqlStr,
}

impl Statements {
    fn new(prefix: &TablePrefix) -> Self {
        Statements {
            load: sql_text(prefix, LOAD),
            save: sql_text(prefix, SAVE),
            reset: sql_text(prefix, RESET),
        }
    }
}

#[derive(Clone, Debug)]
enum Place {
    /// One lazily opened write connection to the store's file.
    File(SqlitePool),
    Memory(MemoryCheckpoints),
}

impl SqliteEventStore {
    /// The store's checkpoints (see [`SqliteCheckpoints`]), in its own
    /// `checkpoints` table (`{prefix}checkpoints` with a
    /// [`table_prefix`](crate::SqliteOptions::table_prefix)). Each call opens its
    /// own connection on first use; keep one and clone it.
    pub fn checkpoints(&self) -> SqliteCheckpoints {
        let place = match self.options.path() {
            Some(path) => {
                let connect = SqliteConnectOptions::new()
                    .filename(path)
                    .busy_timeout(self.options.get_busy_timeout())
                    .synchronous(match self.options.get_synchronous() {
                        Synchronous::Normal => SqliteSynchronous::Normal,
                        Synchronous::Full => SqliteSynchronous::Full,
                    });
                Place::File(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(self.options.get_acquire_timeout())
                        .connect_lazy_with(connect),
                )
            }
            None => Place::Memory(self.memory_checkpoints.clone()),
        };
        SqliteCheckpoints {
            place,
            sql: Arc::new(Statements::new(self.sql.prefix())),
        }
    }
}

fn map(doing: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => Error::unavailable(doing, e),
        e => Error::backend(doing, e),
    }
}

impl SqliteCheckpoints {
    /// Saves `position` for `name` on `conn` — typically inside the caller's
    /// transaction on the same database file (`&mut tx`), so that it commits or
    /// rolls back with the read model rows written there. Never moves a
    /// checkpoint backward.
    pub async fn save_in(
        &self,
        conn: &mut SqliteConnection,
        name: &str,
        position: Position,
    ) -> Result<()> {
        traced(ConsumeOp::CheckpointSaveIn, "sqlite", name, async move {
            check_checkpoint_name(name)?;
            let position = to_i64(position.get(), "checkpoint position")?;
            sqlx::query(self.sql.save.clone())
                .bind(name)
                .bind(position)
                .bind(Timestamp::now().as_unix_micros())
                .execute(conn)
                .await
                .map_err(map("saving a checkpoint"))?;
            Ok(())
        })
        .await
    }
}

impl CheckpointStore for SqliteCheckpoints {
    fn load<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Position>>> {
        traced(ConsumeOp::CheckpointLoad, "sqlite", name, async move {
            let pool = match &self.place {
                Place::File(pool) => pool,
                Place::Memory(memory) => return memory.load(name).await,
            };
            check_checkpoint_name(name)?;
            let saved: Option<i64> = sqlx::query_scalar(self.sql.load.clone())
                .bind(name)
                .fetch_optional(pool)
                .await
                .map_err(map("loading a checkpoint"))?;
            saved
                .map(|p| from_i64(p, "checkpoint position").map(Position::new))
                .transpose()
        })
    }

    fn save<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<()>> {
        traced(ConsumeOp::CheckpointSave, "sqlite", name, async move {
            let pool = match &self.place {
                Place::File(pool) => pool,
                Place::Memory(memory) => return memory.save(name, position).await,
            };
            let mut conn = pool.acquire().await.map_err(map("saving a checkpoint"))?;
            self.save_in(&mut conn, name, position).await
        })
    }

    fn reset<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        traced(ConsumeOp::CheckpointReset, "sqlite", name, async move {
            let pool = match &self.place {
                Place::File(pool) => pool,
                Place::Memory(memory) => return memory.reset(name).await,
            };
            check_checkpoint_name(name)?;
            sqlx::query(self.sql.reset.clone())
                .bind(name)
                .execute(pool)
                .await
                .map_err(map("resetting a checkpoint"))?;
            Ok(())
        })
    }
}
