//! The shared conformance suite against file-backed stores, one temporary directory
//! per case.
#![allow(missing_docs, clippy::expect_used)]

use annals_sqlite::SqliteEventStore;
use annals_testing::Fixture;

async fn file_store() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteEventStore::open(dir.path().join("events.db"))
        .await
        .expect("open a fresh SQLite store");
    let closing = store.clone();
    Fixture::new(store).with_teardown(async move {
        closing.close().await;
        drop(dir);
    })
}

annals_testing::conformance_suite!(file_store());
