//! The application: a repository of orders on the chosen store, and how results are
//! printed.

use std::{fmt, sync::Arc};

use annals_core::{
    futures::TryStreamExt, Aggregate, EventStore, ExecuteError, Loaded, ReadAll, ReadFilter,
    Repository, SnapshotPolicy, StreamId,
};
use annals_postgres::PostgresEventStore;
use annals_sqlite::SqliteEventStore;

use crate::{
    cli::{Storage, UsageError},
    order::{Order, OrderCommand, OrderError, Status},
};

/// Everything that can end the program early, with its exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppError {
    #[error("usage: {0}")]
    Usage(#[from] UsageError),
    #[error("rejected: {0}")]
    Rejected(#[from] OrderError),
    #[error("order `{0}` does not exist")]
    NotFound(String),
    #[error("{0}")]
    Input(String),
    #[error("storage error: {0}")]
    Store(#[from] annals_core::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

impl AppError {
    /// 1 rejected/not found, 2 usage or invalid input, 3 storage.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            AppError::Rejected(_) | AppError::NotFound(_) => 1,
            AppError::Usage(_) | AppError::Input(_) => 2,
            // An order id the store refuses (too long, NUL) is the user's input.
            AppError::Store(e) if e.is_invalid_input() => 2,
            AppError::Store(_) | AppError::DataDir { .. } => 3,
        }
    }
}

impl From<ExecuteError<OrderError>> for AppError {
    fn from(error: ExecuteError<OrderError>) -> Self {
        match error {
            ExecuteError::Domain(e) => AppError::Rejected(e),
            ExecuteError::Store(e) => AppError::Store(e),
            ExecuteError::RetriesExhausted { last, .. } => AppError::Store(last),
            // ExecuteError is non-exhaustive: a future kind is a store failure too.
            other => AppError::Store(annals_core::Error::backend(
                "executing a command",
                other.to_string(),
            )),
        }
    }
}

/// Opens the event store: an SQLite file in the data directory (created if
/// missing), or PostgreSQL.
pub(crate) async fn open_store(
    storage: &Storage,
) -> Result<(Arc<dyn EventStore>, String), AppError> {
    match storage {
        Storage::Sqlite { data_dir } => {
            std::fs::create_dir_all(data_dir).map_err(|source| AppError::DataDir {
                path: data_dir.display().to_string(),
                source,
            })?;
            let path = data_dir.join("orders.db");
            let store = SqliteEventStore::open(&path).await?;
            Ok((Arc::new(store), format!("SQLite file {}", path.display())))
        }
        Storage::Fs { root } => {
            let store = annals_fs::FsEventStore::open(root)
                .await
                .map_err(annals_core::Error::from)?;
            Ok((
                Arc::new(store),
                format!("annals-fs folder {}", root.display()),
            ))
        }
        Storage::Postgres { url } => {
            let store = PostgresEventStore::connect(url).await?;
            Ok((Arc::new(store), "PostgreSQL".to_owned()))
        }
    }
}

/// The order repository.
pub(crate) struct App {
    pub(crate) repo: Repository<Arc<dyn EventStore>>,
}

impl App {
    pub(crate) fn new(store: Arc<dyn EventStore>) -> Self {
        App {
            repo: Repository::new(store)
                .with_upcasters(crate::order::upcasters())
                .with_snapshot_policy(SnapshotPolicy::every(100)),
        }
    }

    /// Executes one command; returns the new state and version.
    pub(crate) async fn execute(
        &self,
        order: &str,
        command: &OrderCommand,
    ) -> Result<annals_core::Executed<Order>, AppError> {
        Ok(self.repo.execute::<Order>(order, command).await?)
    }

    /// Loads an order; `NotFound` if it has no events.
    pub(crate) async fn load(&self, order: &str) -> Result<Loaded<Order>, AppError> {
        let loaded = self.repo.load::<Order>(order).await?;
        if loaded.state.status == Status::New {
            return Err(AppError::NotFound(order.to_owned()));
        }
        Ok(loaded)
    }

    /// Whether an order has any events.
    pub(crate) async fn exists(&self, order: &str) -> Result<bool, AppError> {
        let stream = Order::stream_id(order)?;
        Ok(self.repo.store().stream_version(&stream).await?.get() > 0)
    }

    /// The ids of every order, in the order they were placed.
    pub(crate) async fn order_ids(&self) -> Result<Vec<String>, AppError> {
        let prefix = format!("{}-", Order::CATEGORY);
        let filter = ReadFilter::new()
            .stream_prefix(prefix.clone())
            .event_types(["OrderPlaced.v1", "OrderPlaced.v2"]);
        let placed: Vec<_> = self
            .repo
            .store()
            .read_all(ReadAll::forward().filter(filter))
            .try_collect()
            .await?;
        Ok(placed
            .iter()
            .filter_map(|e| e.stream_id.as_str().strip_prefix(&prefix))
            .map(str::to_owned)
            .collect())
    }
}

/// How an order is printed.
pub(crate) struct OrderView<'a> {
    pub(crate) id: &'a str,
    pub(crate) loaded: &'a Loaded<Order>,
    pub(crate) verbose: bool,
}

impl fmt::Display for OrderView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let order = &self.loaded.state;
        writeln!(
            f,
            "order {:<22} {:<11} customer {:<14} version {}",
            self.id,
            format!("[{}]", order.status),
            order.customer,
            self.loaded.version
        )?;
        for (sku, line) in &order.lines {
            writeln!(
                f,
                "    {:>3} × {:<16} @ {:>12} = {:>12}",
                line.quantity,
                sku,
                order.money(line.unit_price),
                order.money(u64::from(line.quantity).saturating_mul(line.unit_price))
            )?;
        }
        write!(f, "    total {}", order.money(order.total()))?;
        if order.paid > 0 {
            write!(f, ", paid {}", order.money(order.paid))?;
        }
        if let Some((carrier, tracking)) = &order.shipment {
            write!(f, ", shipped with {carrier}")?;
            if !tracking.is_empty() {
                write!(f, " ({tracking})")?;
            }
        }
        if let Some(reason) = &order.cancel_reason {
            write!(f, ", cancelled: {reason}")?;
        }
        if self.verbose {
            write!(f, "\n    {}", LoadInfo(self.loaded))?;
        }
        Ok(())
    }
}

/// "loaded from snapshot at version 100 + 52 newer events" / "replayed 7 events".
pub(crate) struct LoadInfo<'a>(pub &'a Loaded<Order>);

impl fmt::Display for LoadInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.snapshot_version {
            Some(snapshot) => write!(
                f,
                "loaded from the snapshot at version {snapshot} + {} newer events (instead of replaying all {})",
                self.0.replayed, self.0.version
            ),
            None => write!(f, "loaded by replaying all {} events (no snapshot)", self.0.replayed),
        }
    }
}

/// The stream id of an order (for messages).
pub(crate) fn stream_of(order: &str) -> Result<StreamId, AppError> {
    Ok(Order::stream_id(order)?)
}
