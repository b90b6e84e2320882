//! [`Status`]: forks, dangling parents and bad files, as reported to the user.

use std::path::PathBuf;

use crate::{Fork, FsError, FsEventStore};

/// What [`FsEventStore::status`] reports.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Status {
    /// Transactions in the order.
    pub transactions: usize,
    /// Positions assigned (visible events plus the gaps reconciles leave).
    pub positions: usize,
    /// Forks waiting to be reconciled.
    pub forks: Vec<Fork>,
    /// Transactions left out of the order because a parent is missing (a partial
    /// pull): the next pull that brings the parent heals them.
    pub dangling: Vec<Dangling>,
    /// Files left out of the order, and why.
    pub bad_files: Vec<BadFile>,
}

impl Status {
    /// True if there is nothing to act on.
    pub fn is_clean(&self) -> bool {
        self.forks.is_empty() && self.dangling.is_empty() && self.bad_files.is_empty()
    }
}

/// A transaction whose parents are not all present.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dangling {
    /// Its file, relative to the root.
    pub file: PathBuf,
    /// The parent transaction ids not found (empty when only an ancestor is
    /// missing).
    pub missing_parents: Vec<String>,
}

/// A file in `events/` that is not in the order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BadFile {
    /// The file, relative to the root.
    pub file: PathBuf,
    /// What is wrong with it.
    pub problem: FileProblem,
    pub(crate) name: String,
}

/// Why a file is left out.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileProblem {
    /// Its content does not match the hash it carries: edited by hand or
    /// corrupted.
    HashMismatch,
    /// It cannot be parsed as a transaction file.
    Malformed(String),
    /// Its name is not `<transaction id>-<hash prefix>.jsonl`.
    UnrecognizedName,
    /// Another file has the same transaction id.
    DuplicateTransaction,
    /// It could not be read.
    Unreadable(String),
    /// A dot file: not reported.
    #[doc(hidden)]
    Ignored,
}

impl FsEventStore {
    /// Reports forks, dangling transactions and files left out of the order.
    pub async fn status(&self) -> Result<Status, FsError> {
        let span = tracing::debug_span!("annals.fs_status", outcome = tracing::field::Empty);
        crate::state::traced(span, async move { self.status_now() }).await
    }

    fn status_now(&self) -> Result<Status, FsError> {
        self.inner.refresh_if_changed()?;
        let forks = self.fork_list()?;
        let state = self.inner.read();
        let dangling = state
            .derived
            .dangling
            .iter()
            .filter_map(|(t, missing)| {
                let tx = state.txs.get(*t)?;
                Some(Dangling {
                    file: PathBuf::from("events").join(&*tx.file),
                    missing_parents: missing.iter().map(ToString::to_string).collect(),
                })
            })
            .collect();
        Ok(Status {
            transactions: state.derived.order.len(),
            positions: state.derived.slots.len(),
            forks,
            dangling,
            bad_files: state.bad.clone(),
        })
    }
}
