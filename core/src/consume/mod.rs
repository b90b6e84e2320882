//! Consuming the log: [`Subscription`]s that catch up and then follow live,
//! [`CheckpointStore`]s that remember how far a consumer got, and [`Projection`]s
//! that tie the two together with an error policy, and a [`Replay`] for one-off jobs.
//!
//! Everything here is built on the [`EventStore`](crate::EventStore) contract — the
//! gap-safe global order and exclusive `after` cursors — so it works the same on
//! every backend: a subscription never skips an event, never reorders, and never
//! delivers one twice within a run.

mod checkpoint;
mod lease;
mod projection;
mod replay;
mod signal;
mod subscription;
mod trace;

pub use checkpoint::{check_checkpoint_name, CheckpointStore, MemoryCheckpoints};
pub use lease::{Lease, LeaseProvider, MemoryLeases};
pub use projection::{ErrorPolicy, Projection, ProjectionError, ProjectionReport};
pub use replay::{Progress, Replay};
pub use signal::{AppendSignal, Changed};
pub use subscription::{Subscribe, SubscribeAll, SubscribeStream, Subscription, SubscriptionState};
pub use trace::{traced, ConsumeOp};
