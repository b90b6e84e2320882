//! [`traced`]: one `tracing` span per operation of a [`CheckpointStore`] or a
//! [`LeaseProvider`], the same on every backend.
//!
//! [`CheckpointStore`]: super::CheckpointStore
//! [`LeaseProvider`]: super::LeaseProvider

use std::future::Future;

use futures::future::BoxFuture;
use tracing::{field::Empty, Span};

use crate::Result;

/// An operation of a [`CheckpointStore`](super::CheckpointStore) or a
/// [`LeaseProvider`](super::LeaseProvider), naming its span (see [`traced`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsumeOp {
    /// [`CheckpointStore::load`](super::CheckpointStore::load): span
    /// `annals.checkpoint_load`.
    CheckpointLoad,
    /// [`CheckpointStore::save`](super::CheckpointStore::save): span
    /// `annals.checkpoint_save`.
    CheckpointSave,
    /// A backend's `save_in` (saving inside the caller's transaction): span
    /// `annals.checkpoint_save_in`.
    CheckpointSaveIn,
    /// [`CheckpointStore::reset`](super::CheckpointStore::reset): span
    /// `annals.checkpoint_reset`.
    CheckpointReset,
    /// [`LeaseProvider::acquire`](super::LeaseProvider::acquire), including the
    /// wait for the holder to let go: span `annals.lease_acquire`.
    LeaseAcquire,
}

/// Runs `future`, one operation of `backend`'s checkpoint store or lease
/// provider, in a `DEBUG` span named after `op` with the fields `backend`, `name`
/// (the checkpoint or lease name) and `outcome` (`ok`, `invalid_input`,
/// `transient`, … or `error`, recorded when it finishes; the same values as the
/// store's own spans). Positions and names are
/// all it records: nothing secret ever reaches it.
///
/// Every implementation in this workspace wraps each method in it; a new
/// backend should too, so checkpoints and leases trace alike everywhere.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> annals_core::Result<()> {
/// use annals_core::consume::{traced, ConsumeOp};
///
/// let loaded = traced(ConsumeOp::CheckpointLoad, "example", "orders", async {
///     Ok(None::<annals_core::Position>)
/// })
/// .await?;
/// assert_eq!(loaded, None);
/// # Ok(()) }
/// ```
pub fn traced<'a, T: Send + 'a>(
    op: ConsumeOp,
    backend: &'static str,
    name: &str,
    future: impl Future<Output = Result<T>> + Send + 'a,
) -> BoxFuture<'a, Result<T>> {
    crate::store::traced(span(op, backend, name), future)
}

fn span(op: ConsumeOp, backend: &'static str, name: &str) -> Span {
    // Span names are static: one macro call per name.
    match op {
        ConsumeOp::CheckpointLoad => {
            tracing::debug_span!("annals.checkpoint_load", backend, name, outcome = Empty)
        }
        ConsumeOp::CheckpointSave => {
            tracing::debug_span!("annals.checkpoint_save", backend, name, outcome = Empty)
        }
        ConsumeOp::CheckpointSaveIn => {
            tracing::debug_span!("annals.checkpoint_save_in", backend, name, outcome = Empty)
        }
        ConsumeOp::CheckpointReset => {
            tracing::debug_span!("annals.checkpoint_reset", backend, name, outcome = Empty)
        }
        ConsumeOp::LeaseAcquire => {
            tracing::debug_span!("annals.lease_acquire", backend, name, outcome = Empty)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::outcome;
    use crate::{Error, Result};

    #[test]
    fn outcomes_name_the_kind_of_result() {
        assert_eq!(outcome(&Result::Ok(())), "ok");
        assert_eq!(
            outcome::<()>(&Err(Error::invalid_input("bad name"))),
            "invalid_input"
        );
        assert_eq!(
            outcome::<()>(&Err(Error::backend("x", std::io::Error::other("y")))),
            "error"
        );
    }
}
