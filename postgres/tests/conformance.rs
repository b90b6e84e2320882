//! The shared conformance suite and properties, each case in its own schema.

mod common;

async fn fixture() -> annals_testing::Fixture {
    let (store, schema) = common::store().await;
    annals_testing::Fixture::new(store).with_teardown(schema.teardown())
}

annals_testing::conformance_suite!(fixture());
