//! The one error type every annals operation returns.

use crate::{EventId, ExpectedVersion, StreamId, Version};

/// Boxed error used as the `source` of [`Error::Codec`] and [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, annals_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in annals.
///
/// Match on the variant to decide what to do: a [`Conflict`](Error::Conflict) is
/// retried by reloading, an [`InvalidInput`](Error::InvalidInput) is a bug in the
/// caller, a [`Backend`](Error::Backend) or [`Timeout`](Error::Timeout) is an
/// infrastructure problem that may go away. The enum is `#[non_exhaustive]`: new
/// variants are not breaking changes, so keep a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stream was not at the version the append expected. Nothing was written.
    ///
    /// An append to several streams ([`AppendRequest`](crate::AppendRequest)) names
    /// every stream that did not match: the first here, the rest in `others`
    /// ([`Error::conflicts`] lists them all).
    #[error("wrong expected version for stream `{stream}`: expected {expected}, actual version is {actual}{}", others_suffix(others))]
    Conflict {
        /// The (first) stream whose version did not match.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was checked (0 if it does not exist).
        actual: Version,
        /// The other streams of the same request whose versions did not match
        /// (empty for a single-stream append).
        others: Vec<StreamConflict>,
    },

    /// The input breaks a documented rule (empty or oversized stream id, NUL in a
    /// text field, oversized payload, an event id reused for different content,
    /// …). Nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The thing asked for does not exist (for example an event id passed to
    /// [`EventStore::get_event`](crate::EventStore::get_event)).
    #[error("not found: {0}")]
    NotFound(String),

    /// Serializing or deserializing a payload, snapshot or metadata failed.
    #[error("codec error: {context}: {source}")]
    Codec {
        /// What was being encoded or decoded (event id and type, snapshot, …).
        context: String,
        /// The codec's own error.
        #[source]
        source: BoxError,
    },

    /// A stored event has a type no registered decoder knows.
    #[error("unknown event type `{event_type}` (event {event_id})")]
    UnknownEventType {
        /// The stored event's type name.
        event_type: String,
        /// The stored event's id.
        event_id: EventId,
    },

    /// The operation did not finish within the configured time bound. The write may
    /// or may not have been applied; retrying the same append (same event ids) is safe.
    #[error("operation timed out after {0:?}")]
    Timeout(std::time::Duration),

    /// The database could not be reached, or the connection broke (a server
    /// restart, a failover, a network fault). Retrying later may succeed.
    ///
    /// For a read, nothing was returned past what was already delivered. For an
    /// append, the outcome is **unknown** when the connection broke after the
    /// request was sent: retry it with the same event ids, which makes the retry
    /// idempotent (a request that did commit is answered with its original
    /// result).
    #[error("database unavailable: {message}: {source}")]
    Unavailable {
        /// What was being done.
        message: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },

    /// A read cannot return everything committed before it started: an older
    /// transaction that could still commit events below the ones already
    /// committed is running (PostgreSQL's gap-safe order holds readers back
    /// behind it), and the read waited its bound for it. Nothing was skipped:
    /// retry from the last event returned. `source` names the blocker
    /// (`annals_postgres::ReadBlocked`).
    #[error("read held back: {message}: {source}")]
    Blocked {
        /// What was being done.
        message: String,
        /// What holds the read back.
        #[source]
        source: BoxError,
    },

    /// The storage backend failed (I/O, driver error, corrupt file, …) in a way
    /// retrying will not fix.
    #[error("backend error: {message}: {source}")]
    Backend {
        /// What the store was doing.
        message: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

/// One stream whose version did not match in an [`Error::Conflict`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamConflict {
    /// The stream.
    pub stream: StreamId,
    /// What the request expected of it.
    pub expected: ExpectedVersion,
    /// Its version when the request was checked.
    pub actual: Version,
}

impl StreamConflict {
    /// One mismatch. Core builds these when it decides an append; a backend that
    /// finds a mismatch on its own path (a unique index) can name it too.
    pub fn new(stream: StreamId, expected: ExpectedVersion, actual: Version) -> Self {
        StreamConflict {
            stream,
            expected,
            actual,
        }
    }
}

fn others_suffix(others: &[StreamConflict]) -> String {
    others
        .iter()
        .map(|c| {
            format!(
                "; stream `{}`: expected {}, actual version is {}",
                c.stream, c.expected, c.actual
            )
        })
        .collect()
}

impl Error {
    /// A conflict naming every mismatched stream; `None` if `conflicts` is empty.
    pub fn conflict(conflicts: Vec<StreamConflict>) -> Option<Self> {
        let mut all = conflicts.into_iter();
        let first = all.next()?;
        Some(Error::Conflict {
            stream: first.stream,
            expected: first.expected,
            actual: first.actual,
            others: all.collect(),
        })
    }

    /// Every stream an [`Error::Conflict`] names (empty for other errors).
    pub fn conflicts(&self) -> Vec<StreamConflict> {
        match self {
            Error::Conflict {
                stream,
                expected,
                actual,
                others,
            } => std::iter::once(StreamConflict::new(stream.clone(), *expected, *actual))
                .chain(others.iter().cloned())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Builds an [`Error::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    /// Builds an [`Error::Backend`] from a driver error and what was being done.
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            message: message.into(),
            source: source.into(),
        }
    }

    /// Builds an [`Error::Unavailable`] from a driver's connection error and what
    /// was being done.
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: source.into(),
        }
    }

    /// Builds an [`Error::Blocked`] from what holds a read back.
    pub fn blocked(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Blocked {
            message: message.into(),
            source: source.into(),
        }
    }

    /// True for errors that may go away on their own: [`Error::Timeout`],
    /// [`Error::Unavailable`] and [`Error::Blocked`]. Retry those (an append with
    /// the same event ids, a read from the last event returned); the others will
    /// fail the same way again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Timeout(_) | Error::Unavailable { .. } | Error::Blocked { .. }
        )
    }

    /// Builds an [`Error::Codec`] from a codec error and what was being (de)coded.
    pub fn codec(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Codec {
            context: context.into(),
            source: source.into(),
        }
    }

    /// True for [`Error::Conflict`]: another writer got there first.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// True for [`Error::InvalidInput`].
    pub fn is_invalid_input(&self) -> bool {
        matches!(self, Error::InvalidInput(_))
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }
}
