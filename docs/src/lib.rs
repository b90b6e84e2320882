//! Every Rust example in the README and in `docs/` is compiled — and, unless marked
//! `no_run`, run — by `cargo test -p annals-docs --doc`. `tests/pages.rs` fails when
//! a page with Rust examples is not listed here, or when an example is `ignore`d.
#![deny(missing_docs)]

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct Readme;

#[cfg(doctest)]
#[doc = include_str!("../getting-started.md")]
struct GettingStarted;

#[cfg(doctest)]
#[doc = include_str!("../concepts.md")]
struct Concepts;

#[cfg(doctest)]
#[doc = include_str!("../event-sourcing.md")]
struct EventSourcing;

#[cfg(doctest)]
#[doc = include_str!("../performance.md")]
struct Performance;

#[cfg(doctest)]
#[doc = include_str!("../outbox.md")]
struct Outbox;

#[cfg(doctest)]
#[doc = include_str!("../queries.md")]
struct Queries;

#[cfg(doctest)]
#[doc = include_str!("../backends/sqlite.md")]
struct Sqlite;

#[cfg(doctest)]
#[doc = include_str!("../backends/postgres.md")]
struct Postgres;

#[cfg(doctest)]
#[doc = include_str!("../backends/containers.md")]
struct Containers;

#[cfg(doctest)]
#[doc = include_str!("../backends/writing-a-backend.md")]
struct WritingABackend;

#[cfg(doctest)]
#[doc = include_str!("../testing.md")]
struct Testing;

#[cfg(doctest)]
#[doc = include_str!("../backends/fs.md")]
struct Fs;

#[cfg(doctest)]
#[doc = include_str!("../subscriptions.md")]
struct Subscriptions;

#[cfg(doctest)]
#[doc = include_str!("../operations/high-availability.md")]
struct HighAvailability;
