//! Where new event ids and store times come from: [`IdSource`] and [`TimeSource`].
//!
//! Production code never needs these: a [`Repository`](crate::Repository) gives
//! new events fresh UUID v7 ids ([`UuidV7Ids`]) and stores read the wall clock
//! ([`SystemClock`]). Tests inject deterministic ones so that ids and recorded
//! times are the same on every run (`annals-test-kit`'s `Ids` and `Clock`
//! implement both traits).
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use annals_core::{source::IdSource, EventId};
//!
//! /// Ids 1, 2, 3, … — reproducible across runs.
//! #[derive(Debug, Default)]
//! struct Counting(AtomicU64);
//!
//! impl IdSource for Counting {
//!     fn next_id(&self) -> EventId {
//!         let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
//!         EventId::from_bytes(u128::from(n).to_be_bytes())
//!     }
//! }
//!
//! let ids = Counting::default();
//! assert_eq!(ids.next_id().to_string(), "00000000-0000-0000-0000-000000000001");
//! ```

use std::{fmt, sync::Arc};

use crate::{EventId, Timestamp};

/// Hands out the ids of new events.
///
/// Ids must be unique store-wide: two events with the same id are one event
/// (an append that repeats an id is an idempotent replay or a conflict).
pub trait IdSource: Send + Sync + fmt::Debug {
    /// The next id.
    fn next_id(&self) -> EventId;
}

/// Tells the time a store records with each event.
pub trait TimeSource: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// Fresh UUID v7 ids, time ordered: the default [`IdSource`].
#[derive(Clone, Copy, Debug, Default)]
pub struct UuidV7Ids;

impl IdSource for UuidV7Ids {
    fn next_id(&self) -> EventId {
        EventId::new()
    }
}

/// The wall clock: the default [`TimeSource`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl TimeSource for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

impl<T: IdSource + ?Sized> IdSource for Arc<T> {
    fn next_id(&self) -> EventId {
        (**self).next_id()
    }
}

impl<T: TimeSource + ?Sized> TimeSource for Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}
