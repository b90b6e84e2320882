//! Shared helpers for the PostgreSQL integration tests.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use annals_postgres::{PostgresEventStore, PostgresOptions};
use annals_testing::postgres::TestSchema;

/// A store in a fresh schema of the test database, and the schema's guard (drop it
/// last: it drops the schema).
pub(crate) async fn store_with(options: PostgresOptions) -> (PostgresEventStore, TestSchema) {
    let schema = TestSchema::create().await;
    let store = PostgresEventStore::connect_with(schema.url(), options.schema(schema.name()))
        .await
        .expect("connecting the store to the test database");
    (store, schema)
}

/// A store in a fresh schema with a pool large enough for the racing tests.
pub(crate) async fn store() -> (PostgresEventStore, TestSchema) {
    store_with(PostgresOptions::new().max_connections(20)).await
}
