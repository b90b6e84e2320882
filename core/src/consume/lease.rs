//! Leader leases: only one instance of a named consumer runs at a time, across
//! processes. [`LeaseProvider`] grants them; [`Lease`] is one held; the
//! in-process [`MemoryLeases`] is the provider for the memory backend and tests.

use std::{
    collections::HashSet,
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use futures::future::BoxFuture;

use super::{check_checkpoint_name, traced, AppendSignal, ConsumeOp};
use crate::Result;

/// Grants the lease of a named consumer to one holder at a time.
///
/// A backend's provider makes the lease exclusive across every process that
/// uses the same database: PostgreSQL holds an advisory lock on a dedicated
/// connection, SQLite an OS file lock beside the database file. When a holder
/// dies (even by SIGKILL) the database or the OS releases its lease, and a
/// waiting instance takes over within the provider's retry interval.
pub trait LeaseProvider: Send + Sync {
    /// Waits until this caller holds the lease for `name` (1 to 255 bytes, no
    /// NUL: the checkpoint name rules), then returns it. Dropping the returned
    /// [`Lease`] releases it; cancelling the wait takes nothing.
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>>;
}

/// A held lease. Released when dropped, or by the database or OS when the
/// process dies.
///
/// A lease can be **lost** while held, e.g. when the connection that holds a
/// PostgreSQL advisory lock breaks: another instance may then take over.
/// [`is_held`](Lease::is_held) turns false; a leader checks it before each unit
/// of work ([`Projection::run_as_leader`](super::Projection::run_as_leader)
/// does) and stops when it is gone.
pub struct Lease {
    name: String,
    lost: Arc<AtomicBool>,
    _holder: Box<dyn Send + Sync>,
}

impl Lease {
    /// A lease on `name` that stays held while `holder` lives (dropping `holder`
    /// releases it) and counts as lost once `lost` is set. For
    /// [`LeaseProvider`] implementations.
    pub fn new(
        name: impl Into<String>,
        lost: Arc<AtomicBool>,
        holder: impl Send + Sync + 'static,
    ) -> Self {
        Lease {
            name: name.into(),
            lost,
            _holder: Box::new(holder),
        }
    }

    /// The consumer name the lease is for.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// False once the lease was lost (see the type docs).
    pub fn is_held(&self) -> bool {
        !self.lost.load(Ordering::Acquire)
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("name", &self.name)
            .field("held", &self.is_held())
            .finish_non_exhaustive()
    }
}

/// Leases within one process (for the memory backend, tests, and a single
/// process that runs several instances). Clones share the same leases.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> annals_core::Result<()> {
/// use annals_core::consume::{LeaseProvider, MemoryLeases};
///
/// let leases = MemoryLeases::new();
/// let first = leases.acquire("orders").await?;
/// assert!(leases.try_acquire("orders")?.is_none(), "one holder at a time");
/// drop(first);
/// assert!(leases.try_acquire("orders")?.is_some(), "released on drop");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryLeases {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    held: Mutex<HashSet<String>>,
    released: AppendSignal,
}

/// Releases a memory lease when dropped.
struct Release {
    shared: Arc<Shared>,
    name: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.shared
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.name);
        self.shared.released.notify();
    }
}

impl MemoryLeases {
    /// No lease held.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lease for `name` if it is free now, else `None`.
    pub fn try_acquire(&self, name: &str) -> Result<Option<Lease>> {
        check_checkpoint_name(name)?;
        let mut held = self
            .shared
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !held.insert(name.to_owned()) {
            return Ok(None);
        }
        let release = Release {
            shared: Arc::clone(&self.shared),
            name: name.to_owned(),
        };
        Ok(Some(Lease::new(name, Arc::default(), release)))
    }
}

impl LeaseProvider for MemoryLeases {
    fn acquire<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Lease>> {
        traced(ConsumeOp::LeaseAcquire, "memory", name, async move {
            loop {
                let seen = self.shared.released.generation();
                if let Some(lease) = self.try_acquire(name)? {
                    return Ok(lease);
                }
                self.shared.released.changed(seen).await;
            }
        })
    }
}
