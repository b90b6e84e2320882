//! In-memory backend for **annals**: the full [`EventStore`] contract with nothing
//! on disk, for tests and prototypes.
//!
//! It re-exports `annals-core`, so this one dependency is enough:
//!
//! ```
//! use annals_memory::{EventStore, ExpectedVersion, MemoryEventStore, NewEvent, ReadStream, StreamId};
//! use annals_memory::futures::TryStreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> annals_memory::Result<()> {
//! let store = MemoryEventStore::new();
//! let order = StreamId::new("order-1")?;
//! store
//!     .append(&order, ExpectedVersion::NoStream, vec![NewEvent::new("OrderPlaced", br#"{"total":30}"#.to_vec())])
//!     .await?;
//! let events: Vec<_> = store.read_stream(ReadStream::forward(&order)).try_collect().await?;
//! assert_eq!(events[0].event_type, "OrderPlaced");
//! # Ok(()) }
//! ```
//!
//! Clones share the same data, and every method is safe to call from many tasks at
//! once. Reads copy events out in small chunks, never holding the lock across an
//! `.await`, so a slow reader does not block writers.
#![deny(missing_docs)]

mod append;
mod inspect;
mod read;
mod snapshot;
mod store;

pub use annals_core::*;
pub use store::MemoryEventStore;
