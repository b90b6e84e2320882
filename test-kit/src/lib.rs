//! A test kit for applications built on **annals**: for people who write
//! aggregates, commands and projections, not for backend authors (their
//! conformance suite is `annals-testing`).
//!
//! Add one dev-dependency line — `annals-test-kit = "0.1"` (with
//! `features = ["sqlite"]` to run scenarios on a temporary SQLite file) — and:
//!
//! * [`given`] … [`when`](AggregateTest::when) … [`then_expect`](Outcome::then_expect),
//!   [`then_error`](Outcome::then_error) or [`then_state`](Outcome::then_state): an
//!   aggregate's rules tested without a store. The given events go through the same
//!   encode → store → decode (→ upcast) path a real load takes, and a mismatch is
//!   reported as a structural diff naming the event and the field.
//! * [`StoreTest`]: the same through a real [`Repository`](annals_core::Repository)
//!   and store (in memory by default), with
//!   [`given_stored`](StoreTest::given_stored), "a snapshot exists at version N"
//!   ([`given_snapshot`](StoreTest::given_snapshot)) and multi-aggregate commands
//!   ([`when_across`](StoreTest::when_across)).
//! * [`Fixture`], [`Ids`] and [`Clock`]: streams of many events in one line, with
//!   deterministic ids and times.
//! * [`assert`](mod@assert): stream contents by type sequence, payload predicate and version.
//! * [`strategies`]: proptest strategies for valid histories of your own aggregates,
//!   and the "same state with or without snapshots" property.
//!
//! Every panicking assertion (`then_…`, `assert_…`) has a twin (`try_then_…`,
//! `check_…`) returning a [`Mismatch`] instead, so failure messages can be checked
//! and combined.
//!
//! ```
//! use annals_core::{Aggregate, DomainEvent};
//! use annals_test_kit::given;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! enum Ev { Deposited { amount: u64 }, Withdrawn { amount: u64 } }
//! impl DomainEvent for Ev {}
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("insufficient funds: balance {balance}")]
//! struct Insufficient { balance: u64 }
//!
//! #[derive(Debug, Default, Serialize, Deserialize)]
//! struct Account { balance: u64 }
//!
//! impl Aggregate for Account {
//!     type Event = Ev;
//!     type Command = u64; // withdraw this much
//!     type Error = Insufficient;
//!     const CATEGORY: &'static str = "account";
//!     fn apply(&mut self, e: &Ev) {
//!         match e {
//!             Ev::Deposited { amount } => self.balance += amount,
//!             Ev::Withdrawn { amount } => self.balance -= amount,
//!         }
//!     }
//!     fn handle(&self, amount: &u64) -> Result<Vec<Ev>, Insufficient> {
//!         if *amount > self.balance {
//!             return Err(Insufficient { balance: self.balance });
//!         }
//!         Ok(vec![Ev::Withdrawn { amount: *amount }])
//!     }
//! }
//!
//! given::<Account>([Ev::Deposited { amount: 50 }])
//!     .when(&30)
//!     .then_expect(&[Ev::Withdrawn { amount: 30 }])
//!     .then_state(|a| a.balance == 20);
//!
//! given::<Account>([Ev::Deposited { amount: 10 }])
//!     .when(&30)
//!     .then_error(|e| e.balance == 10);
//! ```
#![deny(missing_docs)]

mod aggregate;
pub mod assert;
mod diff;
mod fixture;
mod send;
mod store;
pub mod strategies;

pub use aggregate::{given, AggregateTest, Outcome};
pub use fixture::{Clock, Fixture, Ids};
pub use store::{AcrossOutcome, Seeded, StoreOutcome, StoreTest};

/// The inspectable in-memory store scenarios run on by default.
pub use annals_memory::MemoryEventStore;
/// Re-exported so the kit is the one dev-dependency property tests need.
pub use proptest;

/// A check that did not hold: what was expected and what was found.
///
/// Returned by the `try_` assertions; the panicking ones panic with its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Mismatch {
    message: String,
}

impl Mismatch {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Mismatch {
            message: message.into(),
        }
    }

    /// The failure message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Why a test could not be set up (before any assertion ran).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KitError {
    /// The store failed, or an event or snapshot could not be encoded or decoded.
    #[error(transparent)]
    Store(#[from] annals_core::Error),
    /// A value could not be serialized for comparison.
    #[error("serializing for comparison: {0}")]
    Serialize(String),
    /// The test asked for something the given events cannot provide.
    #[error("{0}")]
    Setup(String),
}

/// Panics with the mismatch's message: the assertion failed.
#[track_caller]
// A failing assertion panics: that is how a Rust test fails.
#[allow(clippy::panic)]
pub(crate) fn or_fail<T>(result: Result<T, Mismatch>) -> T {
    match result {
        Ok(value) => value,
        Err(mismatch) => panic!("{mismatch}"),
    }
}

// The guide's examples are the kit's doctests too, so `cargo test -p
// annals-test-kit` proves them without building every backend (annals-docs
// runs them as well).
#[cfg(doctest)]
#[doc = include_str!("../../docs/testing.md")]
struct TestingGuide;
