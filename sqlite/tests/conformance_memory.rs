//! The shared conformance suite against in-memory stores.
#![allow(missing_docs, clippy::expect_used)]

use annals_sqlite::SqliteEventStore;
use annals_testing::Fixture;

async fn memory_store() -> Fixture {
    Fixture::new(
        SqliteEventStore::in_memory()
            .await
            .expect("open an in-memory SQLite store"),
    )
}

annals_testing::conformance_suite!(memory_store());
