//! Compile-time proof that every public future of `annals-test-kit` is `Send`, so
//! scenarios run under any runtime and inside spawned tasks. If a change makes one
//! of these futures `!Send`, this module stops compiling.

#![allow(dead_code)]

use annals_core::{Aggregate, ExecuteError, Scope};

use crate::StoreTest;

fn is_send<T: Send>(_: T) {}

fn store_test_futures_are_send<A: Aggregate>(command: &A::Command, scope: &Scope) {
    is_send(StoreTest::when::<A>(StoreTest::memory(), "id", command));
    is_send(StoreTest::when_across(
        StoreTest::memory(),
        scope,
        |_draft| Ok::<(), ExecuteError<A::Error>>(()),
    ));
    is_send(StoreTest::into_store(StoreTest::memory()));
    #[cfg(feature = "sqlite")]
    is_send(StoreTest::sqlite());
}
