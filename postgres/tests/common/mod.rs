//! Shared helpers for the PostgreSQL integration tests.
//!
//! `ANNALS_TEST_PG_DIRECT_URL`: when set, `DATABASE_URL` is taken to be a pooler
//! in transaction mode (PgBouncer): each test's schema is migrated through this
//! direct URL, and the store under test connects through `DATABASE_URL` with
//! [`PostgresOptions::transaction_pooler`] (unnamed statements, no migration,
//! no `LISTEN`). `scripts/ha-test.sh` runs the conformance suite that way.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use annals_postgres::{PostgresEventStore, PostgresOptions};
use annals_testing::postgres::TestSchema;

/// The variable naming a direct URL for migrations (see the module docs).
pub(crate) const DIRECT_URL_VAR: &str = "ANNALS_TEST_PG_DIRECT_URL";

/// The direct URL, if the tests run through a transaction-mode pooler.
pub(crate) fn direct_url() -> Option<String> {
    std::env::var(DIRECT_URL_VAR)
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// A store in a fresh schema of the test database, and the schema's guard (drop it
/// last: it drops the schema).
pub(crate) async fn store_with(options: PostgresOptions) -> (PostgresEventStore, TestSchema) {
    let schema = TestSchema::create().await;
    let store = store_in(&schema, options).await;
    (store, schema)
}

/// A store in `schema` (which may already hold other stores, with other table
/// prefixes), connected as [`store_with`] does.
pub(crate) async fn store_in(schema: &TestSchema, options: PostgresOptions) -> PostgresEventStore {
    let options = options.schema(schema.name());
    match direct_url() {
        Some(direct) => {
            let migrator = PostgresEventStore::connect_with(&direct, options.clone())
                .await
                .expect("migrating the test schema through ANNALS_TEST_PG_DIRECT_URL");
            migrator.pool().close().await;
            PostgresEventStore::connect_with(schema.url(), options.transaction_pooler())
                .await
                .expect("connecting the store through the pooler (DATABASE_URL)")
        }
        None => PostgresEventStore::connect_with(schema.url(), options)
            .await
            .expect("connecting the store to the test database"),
    }
}

/// A store in a fresh schema with a pool large enough for the racing tests.
pub(crate) async fn store() -> (PostgresEventStore, TestSchema) {
    store_with(PostgresOptions::new().max_connections(20)).await
}
