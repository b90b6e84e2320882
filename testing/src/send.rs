//! Compile-time proof that every public future of `annals-testing` is `Send`, so
//! a backend's tests can run the suite's helpers inside `tokio::spawn` (checked
//! complete by `tests/send_list.rs`). If a change makes one of these futures
//! `!Send`, this module stops compiling.

#![allow(dead_code)]

use std::{future::Future, sync::Arc, time::Duration};

use annals_core::{
    consume::{CheckpointStore, LeaseProvider},
    EventStore,
};

use crate::{checkpoints, fixture, generators, leases, torture, Fixture};

fn is_send<T: Send>(_: T) {}

fn helper_futures_are_send(
    store: Arc<dyn EventStore>,
    setup: impl Future<Output = Fixture> + Send,
    checkpoint_store: &dyn CheckpointStore,
    lease_provider: &dyn LeaseProvider,
) {
    is_send(fixture::run_case(setup, |_store| async {}));
    is_send(checkpoints::checkpoint_store_contract(checkpoint_store));
    is_send(leases::lease_provider_contract(
        lease_provider,
        lease_provider,
    ));
    is_send(torture::subscriptions_under_concurrent_writers(
        Arc::clone(&store),
        2,
        2,
        Duration::from_secs(1),
    ));
    is_send(generators::check(
        store,
        1,
        proptest::strategy::Just(()),
        |_store, ()| async {},
    ));
}

#[cfg(feature = "postgres")]
fn postgres_futures_are_send(
    schema: crate::postgres::TestSchema,
    request: testcontainers_modules::testcontainers::ContainerRequest<
        testcontainers_modules::postgres::Postgres,
    >,
) {
    use crate::postgres::{self, TestSchema};

    is_send(postgres::database_url());
    is_send(TestSchema::create());
    is_send(TestSchema::teardown(schema));
    is_send(postgres::drop_schema("", ""));
    is_send(postgres::start(request));
}

// Every conformance case, from the suite's one list.
crate::__case_list!(send);
