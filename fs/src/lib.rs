//! File backend for **annals**: an event log that lives in a git repository,
//! merges with plain `git merge`, and turns concurrent histories into explicit
//! forks to reconcile — never a silent interleave.
//!
//! It re-exports `annals-core`, so this one dependency is enough:
//!
//! ```
//! use annals_fs::{EventStore, ExpectedVersion, FsEventStore, NewEvent, ReadStream, StreamId};
//! use annals_fs::futures::TryStreamExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = FsEventStore::open(dir.path().join("history")).await?;
//! let spec = StreamId::new("spec-login")?;
//! store
//!     .append(&spec, ExpectedVersion::NoStream, vec![NewEvent::new("Drafted", br#"{"by":"ana"}"#.to_vec())])
//!     .await?;
//! let events: Vec<_> = store.read_stream(ReadStream::forward(&spec)).try_collect().await?;
//! assert_eq!(events[0].event_type, "Drafted");
//! assert!(store.status().await?.is_clean());
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Only `events/` is committed: one immutable JSON Lines file per append request,
//! named `<transaction id (UUID v7)>-<hash prefix>.jsonl` so two clones never
//! collide. The first line is a header — format version, transaction id, replica
//! id, parent transactions, created time (fixed-width UTC), the base version of
//! each written stream, read-only conditions apart, and a SHA-256 over the header
//! and the events — then one line per event. Everything else (snapshots, the
//! writer lock, temporary files, the replica id) is in `.annals/`, which the store
//! adds to `.gitignore` without touching the user's other rules.
//!
//! # Order
//!
//! Causal parents first, then the key `(created, transaction id, file name)`: a
//! function of the files alone, so every clone computes the same order, and the
//! order right after an append equals a cold rebuild. Positions are assigned in
//! that order. A refresh that brings concurrent transactions from another clone
//! can renumber positions after the point where the histories diverged.
//!
//! # Forks
//!
//! Two transactions that wrote the same stream concurrently form a fork. Reads of a
//! forked stream — `read_stream`, `stream_version`, `get_event` of any of its
//! events, and `read_all` when it reaches one — and appends to it fail with
//! [`FsError::Forked`] until [`FsEventStore::reconcile`] writes one merge
//! transaction choosing a branch, both in a stated order, or new events. The
//! branches' events are read through [`FsEventStore::forks`]. Appends to other
//! streams never resolve a fork. See `docs/backends/fs.md` for a walkthrough with
//! two clones.
//!
//! # Files edited by hand
//!
//! A file that fails its hash is reported by [`FsEventStore::status`] and left out
//! of the order, at open and at every [`FsEventStore::refresh`] (which verifies
//! again every file whose size or modification time changed). Payloads are read
//! lazily; a read that finds its file changed since it was indexed fails with
//! [`FsError::FileChanged`] instead of serving the edited content.
#![deny(missing_docs)]

mod append;
mod error;
mod fork;
mod format;
mod ignore;
mod layout;
mod lock;
mod order;
mod read;
mod send;
mod snapshot;
mod state;
mod status;
mod store;

pub use annals_core::*;
pub use error::FsError;
pub use fork::{Branch, Choice, Fork, Reconciled};
pub use state::FsEventStore;
pub use status::{BadFile, Dangling, FileProblem, Status};

// The backend's page in docs/ compiles against this crate (annals-docs runs it too).
#[cfg(doctest)]
#[doc = include_str!("../../docs/backends/fs.md")]
struct DocsPage;
