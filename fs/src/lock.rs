//! One writer per root: an OS file lock on `.annals/lock`, held while the store is
//! open for writing.

use std::{
    fs::{File, OpenOptions},
    io,
    path::Path,
};

/// The held writer lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct WriterLock {
    _file: File,
}

/// Why the lock was not taken.
pub(crate) enum LockError {
    /// Another writer holds it.
    Held,
    /// The lock file could not be opened or locked.
    Io(io::Error),
}

impl WriterLock {
    pub(crate) fn acquire(path: &Path) -> Result<Self, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(LockError::Io)?;
        match file.try_lock() {
            Ok(()) => Ok(WriterLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Held),
            Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(e)),
        }
    }
}
