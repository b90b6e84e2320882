//! [`CheckpointStore`]: where a named consumer remembers the position of the last
//! event it finished.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures::future::BoxFuture;

use super::{traced, ConsumeOp};
use crate::{Error, Position, Result};

/// Remembers, per consumer name, the position of the last event it handled.
///
/// Saving after the handler succeeded gives **at-least-once** delivery: after a
/// crash the consumer resumes after the last saved position and may see the events
/// after it again, never miss one. Make handlers idempotent (or keep the read model
/// and the checkpoint in one transaction for exactly-once).
pub trait CheckpointStore: Send + Sync {
    /// The saved position of `name`, if any.
    fn load<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Position>>>;

    /// Saves `position` for `name`. A position lower than the saved one is ignored:
    /// checkpoints never move backward (use [`reset`](CheckpointStore::reset) to
    /// rebuild).
    fn save<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<()>>;

    /// Forgets `name`'s checkpoint, so its consumer starts from the beginning.
    fn reset<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>>;
}

/// Checkpoints in memory: for tests, and for consumers whose read model is in
/// memory too (rebuilt at every start). Clones share the same checkpoints.
#[derive(Clone, Debug, Default)]
pub struct MemoryCheckpoints {
    saved: Arc<Mutex<HashMap<String, Position>>>,
}

impl MemoryCheckpoints {
    /// No checkpoints.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Checks a checkpoint name: 1 to 255 bytes, no NUL. Every [`CheckpointStore`]
/// applies this rule, so a name valid on one backend is valid on all;
/// implementations call it first.
///
/// ```
/// use annals_core::consume::check_checkpoint_name;
/// assert!(check_checkpoint_name("orders-by-status").is_ok());
/// assert!(check_checkpoint_name("").unwrap_err().is_invalid_input());
/// ```
pub fn check_checkpoint_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 || name.contains('\0') {
        return Err(Error::invalid_input(format!(
            "checkpoint name `{}` must be 1 to 255 bytes without NUL",
            name.escape_debug()
        )));
    }
    Ok(())
}

impl CheckpointStore for MemoryCheckpoints {
    fn load<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Position>>> {
        traced(ConsumeOp::CheckpointLoad, "memory", name, async move {
            check_checkpoint_name(name)?;
            let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(saved.get(name).copied())
        })
    }

    fn save<'a>(&'a self, name: &'a str, position: Position) -> BoxFuture<'a, Result<()>> {
        traced(ConsumeOp::CheckpointSave, "memory", name, async move {
            check_checkpoint_name(name)?;
            let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = saved.entry(name.to_owned()).or_insert(position);
            *entry = (*entry).max(position);
            Ok(())
        })
    }

    fn reset<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<()>> {
        traced(ConsumeOp::CheckpointReset, "memory", name, async move {
            check_checkpoint_name(name)?;
            self.saved
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name);
            Ok(())
        })
    }
}
