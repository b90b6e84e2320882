//! Stream versions, global positions and the expected-version check.

use std::fmt;

/// The number of events in a stream; the version of an event is its 1-based index.
///
/// A stream that does not exist is at [`Version::ZERO`]; its first event has
/// version 1, and versions are contiguous.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// The version of a stream with no events.
    pub const ZERO: Version = Version(0);
    /// The version of a stream's first event.
    pub const FIRST: Version = Version(1);

    /// The highest version a stream can reach: `i64::MAX`, what every backend can
    /// store. An [`ExpectedVersion::Exact`] above it can never match (a conflict),
    /// and a read after it is empty — on every backend.
    pub const MAX: Version = Version(i64::MAX as u64);

    /// Wraps a raw version number.
    pub const fn new(version: u64) -> Self {
        Version(version)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version after this one (saturating).
    #[must_use]
    pub const fn next(self) -> Self {
        Version(self.0.saturating_add(1))
    }
}

impl From<u64> for Version {
    fn from(v: u64) -> Self {
        Version(v)
    }
}

impl From<Version> for u64 {
    fn from(v: Version) -> Self {
        v.0
    }
}

impl PartialEq<u64> for Version {
    fn eq(&self, other: &u64) -> bool {
        self.0 == *other
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// An event's place in the store-wide log.
///
/// Positions increase in the order readers can observe: once a reader has seen
/// position `P`, no event with a position below `P` appears later. Positions are
/// not dense — gaps are allowed (for example after a failed append on
/// PostgreSQL). Use [`Position::START`] to read the log from the beginning, and
/// [`Position::next`] of the last position you processed to continue.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Position(u64);

impl Position {
    /// Before every event: reading from here reads the whole log.
    pub const START: Position = Position(0);

    /// The highest position any backend gives an event: `i64::MAX`. A read after it
    /// is empty on every backend.
    pub const MAX: Position = Position(i64::MAX as u64);

    /// Wraps a raw position.
    pub const fn new(position: u64) -> Self {
        Position(position)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The position after this one (saturating): where to resume reading.
    #[must_use]
    pub const fn next(self) -> Self {
        Position(self.0.saturating_add(1))
    }
}

impl From<u64> for Position {
    fn from(p: u64) -> Self {
        Position(p)
    }
}

impl From<Position> for u64 {
    fn from(p: Position) -> Self {
        p.0
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What the caller believes about a stream before appending: the optimistic
/// concurrency check.
///
/// ```
/// use annals_core::{ExpectedVersion, Version};
///
/// assert!(ExpectedVersion::Any.matches(Version::new(7)));
/// assert!(ExpectedVersion::NoStream.matches(Version::ZERO));
/// assert!(ExpectedVersion::StreamExists.matches(Version::new(1)));
/// assert!(ExpectedVersion::Exact(Version::new(3)).matches(Version::new(3)));
/// assert!(!ExpectedVersion::Exact(Version::new(3)).matches(Version::new(4)));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
pub enum ExpectedVersion {
    /// No check: append whatever the stream's version.
    Any,
    /// The stream must have no events (version 0).
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream must be at exactly this version. `Exact(Version::ZERO)` is the
    /// same as [`NoStream`](ExpectedVersion::NoStream).
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn matches(self, actual: Version) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == Version::ZERO,
            ExpectedVersion::StreamExists => actual > Version::ZERO,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl From<Version> for ExpectedVersion {
    fn from(v: Version) -> Self {
        ExpectedVersion::Exact(v)
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}
