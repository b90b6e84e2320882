//! `list --by-status`: the "orders by status" read model — a table kept up to
//! date by a projection over the log, its checkpoint saved in the same
//! transaction as the rows it covers (exactly-once). Each run handles only the
//! events appended since the last one, so it survives restarts without
//! re-processing from zero.
//!
//! The table lives in an SQLite file: `orders.db` itself when the events are in
//! SQLite, else `read-model.db` in the data directory (PostgreSQL) or in the
//! git-ignored `.annals/` folder (annals-fs).

use std::path::{Path, PathBuf};

use annals_core::{
    consume::CheckpointStore, futures::TryStreamExt, EventStore, ReadAll, ReadFilter, RecordedEvent,
};
use annals_sqlite::{
    sqlx::{self, Connection, SqliteConnection},
    SqliteEventStore,
};

use crate::{app::AppError, cli::Storage, order::Order};

/// The projection's name: its checkpoint key.
const NAME: &str = "orders-by-status";
/// Events per read-model transaction.
const BATCH: usize = 100;

/// The read model after an update.
pub(crate) struct ByStatus {
    /// `(status, order id)`, sorted.
    pub(crate) rows: Vec<(String, String)>,
    /// Events this run handled (0 when nothing was appended since the last).
    pub(crate) handled: usize,
}

/// Where the read model lives for `storage`.
pub(crate) fn read_model_file(storage: &Storage) -> PathBuf {
    match storage {
        Storage::Sqlite { data_dir } => data_dir.join("orders.db"),
        Storage::Fs { root } => root.join(".annals").join("read-model.db"),
        Storage::Postgres { .. } => Path::new("data").join("read-model.db"),
    }
}

/// The status an order has after `event`, if the event changes it.
fn status_after(event: &RecordedEvent) -> Option<&'static str> {
    let name = event.event_type.split('.').next()?;
    Some(match name {
        "OrderPlaced" => "open",
        "OrderPaid" => "paid",
        "OrderShipped" => "shipped",
        "OrderCancelled" => "cancelled",
        _ => return None,
    })
}

fn sql_error(doing: &'static str) -> impl Fn(sqlx::Error) -> AppError {
    move |e| AppError::Store(annals_core::Error::backend(doing, e))
}

/// Brings the read model up to date with the log, then returns it.
pub(crate) async fn update(store: &dyn EventStore, file: &Path) -> Result<ByStatus, AppError> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| AppError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    // An annals SQLite file brings the `checkpoints` table.
    let checkpoints = SqliteEventStore::open(file).await?.checkpoints();
    let mut conn = SqliteConnection::connect(&format!("sqlite:{}", file.display()))
        .await
        .map_err(sql_error("opening the read model"))?;
    for statement in [
        "PRAGMA busy_timeout = 30000",
        "CREATE TABLE IF NOT EXISTS orders_by_status \
         (order_id TEXT PRIMARY KEY, status TEXT NOT NULL) STRICT",
    ] {
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .map_err(sql_error("preparing the read model"))?;
    }

    let after = checkpoints.load(NAME).await?;
    let prefix = format!("{}-", <Order as annals_core::Aggregate>::CATEGORY);
    let filter = ReadFilter::new().stream_prefix(prefix.clone());
    let read = match after {
        Some(position) => ReadAll::after(position),
        None => ReadAll::forward(),
    };
    let mut events = store.read_all(read.filter(filter));
    let mut handled = 0;
    loop {
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            match events.try_next().await? {
                Some(event) => batch.push(event),
                None => break,
            }
        }
        let Some(last) = batch.last().map(|e| e.position) else {
            break;
        };
        // The rows and the checkpoint commit together, or neither does.
        let mut tx = conn
            .begin()
            .await
            .map_err(sql_error("updating the read model"))?;
        for event in &batch {
            let (Some(status), Some(order)) = (
                status_after(event),
                event.stream_id.as_str().strip_prefix(&prefix),
            ) else {
                continue;
            };
            sqlx::query(
                "INSERT INTO orders_by_status (order_id, status) VALUES (?1, ?2) \
                 ON CONFLICT (order_id) DO UPDATE SET status = excluded.status",
            )
            .bind(order)
            .bind(status)
            .execute(&mut *tx)
            .await
            .map_err(sql_error("updating the read model"))?;
        }
        checkpoints.save_in(&mut tx, NAME, last).await?;
        tx.commit()
            .await
            .map_err(sql_error("updating the read model"))?;
        handled += batch.len();
    }

    let rows = sqlx::query_as::<_, (String, String)>(
        "SELECT status, order_id FROM orders_by_status ORDER BY status, order_id",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(sql_error("reading the read model"))?;
    Ok(ByStatus { rows, handled })
}
