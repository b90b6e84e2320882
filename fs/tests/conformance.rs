//! The shared conformance suite, single-replica, one temporary root per case.
#![allow(missing_docs, clippy::expect_used)]

use annals_fs::FsEventStore;
use annals_testing::Fixture;

async fn fs_store() -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FsEventStore::open(dir.path().join("store"))
        .await
        .expect("open a fresh store");
    Fixture::new(store).with_teardown(async move {
        drop(dir);
    })
}

annals_testing::conformance_suite!(fs_store());
