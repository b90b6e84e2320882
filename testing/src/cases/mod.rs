//! The conformance cases. Each is `pub async fn(Arc<dyn EventStore>)` on a fresh,
//! empty store and panics (fails) when the store breaks the contract.
//!
//! Run them all with [`conformance_suite!`](crate::conformance_suite); call one
//! directly to debug it.

mod aggregate;
mod append;
mod cloud;
mod concurrent;
mod consume;
mod edges;
mod filters;
mod idempotency;
mod multi;
mod properties;
mod reads;
mod scale;
mod snapshots;
mod support;
mod validation;

pub use aggregate::*;
pub use append::*;
pub use cloud::*;
pub use concurrent::*;
pub use consume::*;
pub use edges::*;
pub use filters::*;
pub use idempotency::*;
pub use multi::*;
pub use properties::*;
pub use reads::*;
pub use scale::*;
pub use snapshots::*;
pub use validation::*;
