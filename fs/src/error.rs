//! [`FsError`]: what can go wrong in `annals-fs`, and how it travels inside
//! [`annals_core::Error`].

use std::{io, path::PathBuf};

use annals_core::StreamId;

/// An `annals-fs` error.
///
/// The [`FsEventStore`](crate::FsEventStore) methods of its own (`open`,
/// `reconcile`, …) return it directly. Through the [`EventStore`](annals_core::EventStore)
/// trait it arrives as [`annals_core::Error::Backend`] with this as its source: get
/// it back with [`FsError::find`].
///
/// ```
/// use annals_fs::FsError;
/// # fn demo(err: annals_fs::Error) {
/// if let Some(FsError::Forked { streams, .. }) = FsError::find(&err) {
///     eprintln!("reconcile {streams:?} first");
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// Another process (or another open store in this one) holds the writer lock.
    /// Open it with [`FsEventStore::open_read_only`](crate::FsEventStore::open_read_only)
    /// instead, or wait for the writer to close.
    #[error("the store at {} is locked by another writer", root.display())]
    StoreLocked {
        /// The store's root folder.
        root: PathBuf,
    },
    /// A stream has two or more concurrent histories: reads of it and appends to it
    /// fail until the fork is [reconciled](crate::FsEventStore::reconcile).
    #[error("forked: stream(s) {} have concurrent histories; reconcile fork(s) {} first", list(streams), forks.join(", "))]
    Forked {
        /// The forked streams the operation touched.
        streams: Vec<StreamId>,
        /// The ids of their forks (see [`Fork::id`](crate::Fork::id)).
        forks: Vec<String>,
    },
    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// No current fork has this id (it may already be reconciled).
    #[error("no current fork has id `{0}`")]
    UnknownFork(String),
    /// The reconcile choice does not fit the fork.
    #[error("invalid reconcile choice: {0}")]
    InvalidChoice(String),
    /// A transaction file changed (or disappeared) on disk after it was indexed —
    /// edited by hand, or rewritten by a checkout — so its events are not served.
    /// [`FsEventStore::refresh`](crate::FsEventStore::refresh) verifies it again:
    /// a file that fails its hash is then reported by
    /// [`status`](crate::FsEventStore::status) and left out of the order.
    #[error("{} changed on disk after it was indexed; refresh() verifies it again", file.display())]
    FileChanged {
        /// The file, relative to the root.
        file: PathBuf,
    },
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Encoding a transaction file failed.
    #[error("encoding a transaction file: {0}")]
    Encode(String),
    /// An error of the shared contract (invalid input, conflict, …).
    #[error(transparent)]
    Core(#[from] annals_core::Error),
}

fn list(streams: &[StreamId]) -> String {
    streams
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl FsError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> FsError {
        let context = context.into();
        move |source| FsError::Io { context, source }
    }

    /// The `FsError` inside an [`annals_core::Error`] returned through the
    /// `EventStore` trait, if it is one.
    pub fn find(error: &annals_core::Error) -> Option<&FsError> {
        match error {
            annals_core::Error::Backend { source, .. } => source.downcast_ref::<FsError>(),
            _ => None,
        }
    }

    /// True for [`FsError::Forked`].
    pub fn is_forked(&self) -> bool {
        matches!(self, FsError::Forked { .. })
    }

    /// True if `error` (from the `EventStore` trait) is a [`FsError::Forked`].
    pub fn is_forked_error(error: &annals_core::Error) -> bool {
        FsError::find(error).is_some_and(FsError::is_forked)
    }
}

impl From<FsError> for annals_core::Error {
    fn from(error: FsError) -> Self {
        match error {
            FsError::Core(inner) => inner,
            other => annals_core::Error::backend("annals-fs", other),
        }
    }
}
