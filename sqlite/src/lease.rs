//! [`SqliteLeases`]: leader leases as OS file locks beside the database file.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use annals_core::{
    consume::{check_checkpoint_name, traced, ConsumeOp, Lease, LeaseProvider, MemoryLeases},
    Error, Result,
};
use futures::future::BoxFuture;

use crate::SqliteEventStore;

/// How often a waiting instance tries to take the lease.
const RETRY: Duration = Duration::from_millis(250);

/// Leader leases for the consumers of one SQLite store.
///
/// For a store in a file, each lease is an exclusive OS file lock on a file in
/// `<database>.leases/` beside the database (`<database>.<prefix>leases/` for a
/// store with a [`table_prefix`](crate::SqliteOptions::table_prefix)), so it is
/// exclusive across every process that opens the same database. The OS releases it when the holder's
/// process dies, even by SIGKILL; a waiting instance retries every 250 ms. A
/// file lock is never lost while held. For an in-memory store (private to its
/// process) leases are exclusive within the process.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use annals_sqlite::{consume::{LeaseProvider, MemoryCheckpoints, Projection}, SqliteEventStore};
/// # let dir = tempfile::tempdir()?;
/// let store = SqliteEventStore::open(dir.path().join("events.db")).await?;
/// let lease = store.leases().acquire("orders-by-status").await?;
/// assert!(lease.is_held());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteLeases {
    place: Place,
}

#[derive(Clone, Debug)]
enum Place {
    /// The folder of the lock files.
    Folder(PathBuf),
    /// An in-memory store: leases in this process, keyed by the store.
    Process(String),
}

impl SqliteEventStore {
    /// Leader leases for this store's database (see [`SqliteLeases`]).
    pub fn leases(&self) -> SqliteLeases {
        let place = match self.options.path() {
            Some(path) => {
                // `events.db.leases`, or `events.db.{prefix}leases`: the stores of
                // one file with different table prefixes have separate leases.
                let mut folder = path.as_os_str().to_owned();
                folder.push(".");
                folder.push(self.sql.prefix().as_str());
                folder.push("leases");
                Place::Folder(PathBuf::from(folder))
            }
            None => Place::Process(format!("{:p}", Arc::as_ptr(&self.writer))),
        };
        SqliteLeases { place }
    }
}

/// The lock file of a name: 64 bits of FNV-1a, so any name (any bytes, any
/// length) makes a valid file name. Two names with one hash would only wait for
/// each other, never share a lease.
fn file_name(name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}.lock")
}

/// Takes the file lock if it is free.
fn try_lock(folder: &PathBuf, name: &str) -> Result<Option<File>> {
    let io = |doing: &str, e| Error::backend(format!("{doing} for lease `{name}`"), e);
    std::fs::create_dir_all(folder).map_err(|e| io("creating the lease folder", e))?;
    let path = folder.join(file_name(name));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("opening the lock file", e))?;
    match file.try_lock() {
        Ok(()) => {
            // For people looking at the folder: whose lock this is.
            let _ = file.set_len(0);
            let _ = writeln!(file, "{name}\npid {}", std::process::id());
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(io("locking the lock file", e)),
    }
}

fn process_leases() -> &'static MemoryLeases {
    static LEASES: OnceLock<MemoryLeases> = OnceLock::new();
    LEASES.get_or_init(MemoryLeases::new)
}

impl LeaseProvider for SqliteLeases {
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>> {
        traced(ConsumeOp::LeaseAcquire, "sqlite", name, async move {
            check_checkpoint_name(name)?;
            match &self.place {
                Place::Process(store) => {
                    let key = format!("{store}/{}", file_name(name));
                    let lease = process_leases().acquire(&key).await?;
                    Ok(Lease::new(name, Arc::default(), lease))
                }
                Place::Folder(folder) => loop {
                    if let Some(file) = try_lock(folder, name)? {
                        tracing::debug!(lease = name, "leader lease taken");
                        return Ok(Lease::new(name, Arc::default(), file));
                    }
                    tokio::time::sleep(RETRY).await;
                },
            }
        })
    }
}
