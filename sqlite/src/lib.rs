//! Sqlite backend for annals (work in progress).
#![deny(missing_docs)]
pub use annals_core::*;
